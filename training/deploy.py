"""A model you can apply: a bundle's spotters and recognition model as values, fitted on every subject of a run.

Pure (no storage): flows/export.py reads a run's data and calls the fit functions here; storage/bundles.py
writes and reads the files (bundle.json, the weights as .npz arrays, the manifest); flows/recognise.py
applies an ``AppliedModel`` to a user's video. What a bundle holds is listed in docs/spotting.md ("A model
you can apply"), after ZOO.md section 3's proposal.

- **Spotters** (one per expression type): training/spotting/loso.py ``FittedSpotter`` fitted on every subject
  (``fit_spotter(videos, videos, ...)``: its settings chosen on them as a fold's are on its training
  subjects), stored with k, p and the length filters in frames and in seconds at the ``fps`` they were set
  at, SOFTNet's weights as its state_dict's arrays. ``AppliedModel.spotters_at(fps)`` turns them to a
  video's frame rate (k and the filters kept in seconds).
- **The recognition model** (``Recogniser``): one small ``fit`` and ``apply`` per registered model in
  ``RECOGNISERS``, so that each moves with its model when the model seam changes: ``nearest-centroid``
  (class means of the scaled flow u, v, the difference or both: training/models/nearest_centroid.py) and
  ``survey-cnn`` (the survey's CNN trained once on every sample, main4.m's fixed schedule:
  training/models/survey_cnn.py ``fit_all``). Meta-MMFNet has none yet (``UNSUPPORTED`` says why). Each
  reads a clip's arrays as tasks/features.py ``clip_arrays`` makes them with the bundle's ``FeatureConfig``,
  from frames read as its training clips' were (``frames``: grey or colour).
- **The golden check** (``golden_outputs``, ``golden_drift``): a synthetic clip rendered at export
  (tasks/synthetic/long_videos.py) and what each stage gave on it (face box, per-frame motion, spotter
  scores and intervals, class scores); on load they are computed again and each stage that moved beyond
  its tolerance is named in one line (a library upgrade: OpenCV's flow, torch, the detector).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from merflow.configs.features import FeatureConfig
from merflow.configs.spotting import SpotFeatureConfig, frames
from merflow.tasks.faces import FaceBox
from merflow.tasks.spotting_features import Segment, Track, chunk_features, clip_features, detect_at
from merflow.training.spotting import softnet
from merflow.training.spotting.loso import FittedSpotter
from merflow.training.spotting.recognise import UV, centroid_scores_of
from merflow.training.spotting.recognise import fit_nearest_centroid as fit_flow_centroids

BUNDLE_FORMAT = "merflow-model"
BUNDLE_VERSION = 1
FRAME_MODES = ("grey", "colour")
# A spotting window under this many frames cannot tell an onset from an apex (ZOO.md, "a user's video": k is
# fps x T½ with T½ ~0.2 s: 6 frames at CAS(ME)^2's 30 fps, 37 at SAMM's 200).
MIN_WINDOW_FRAMES = 2
UNSUPPORTED = {
    "meta-mmfnet": "Meta-MMFNet has no bundle yet: its deployed form needs prototypes over every training sample, "
                   "both encoders, τ and an α chosen without test subjects (ZOO.md section 3, items 5-6), which "
                   "its training code does not make; export a nearest-centroid or survey-cnn run",
}


class InputMismatch(ValueError):
    """A video the bundle's settings cannot be applied to (frame rate, length): one line saying what it needs."""


class BundleError(ValueError):
    """A bundle that cannot be applied here (a format this merflow does not read, weights that do not fit)."""


# ------------------------------------------------------------------------------------------ recognisers
@dataclass
class Recogniser:
    """A recognition model fitted on every clip given: its registered name, configuration, classes (in score
    order), the clips' feature configuration, how its clips' frames were read, and its weights as arrays."""

    model: str
    config: dict
    classes: tuple[str, ...]
    features: FeatureConfig
    frames: str                          # grey | colour: how the frames of its training clips were read
    arrays: dict[str, np.ndarray]
    trained_on: dict = field(default_factory=dict)

    def scores(self, clips: list[dict[str, np.ndarray]]) -> np.ndarray:
        """Scores (len(clips), classes) of clips' arrays (tasks/features.py ``clip_arrays``)."""
        if not clips:
            return np.zeros((0, len(self.classes)), np.float64)
        return np.asarray(RECOGNISERS[self.model].apply(self, clips), dtype=np.float64)

    def confidence(self, scores: np.ndarray) -> np.ndarray:
        """Each clip's confidence in each class, rows summing to 1 (each model's rule: ``RecogniserKind.rule``)."""
        return RECOGNISERS[self.model].confidence(np.asarray(scores, dtype=np.float64))

    def describe(self) -> dict:
        """Plain JSON values of everything but the arrays (bundle.json's ``recogniser``)."""
        kind = RECOGNISERS[self.model]
        return {"model": self.model, "config": self.config, "classes": list(self.classes),
                "features": self.features.to_dict(), "frames": self.frames, "inputs": list(kind.inputs),
                "confidence": kind.rule, "trained_on": self.trained_on}


@dataclass(frozen=True)
class RecogniserKind:
    """One model's part of a bundle: ``fit(clips, labels, classes, config) -> arrays`` on every clip given,
    ``apply(recogniser, clips) -> scores``, the clip arrays it reads and its confidence rule."""

    fit: Callable[[list[dict], list[str], tuple[str, ...], dict], dict[str, np.ndarray]]
    apply: Callable[[Recogniser, list[dict]], np.ndarray]
    inputs: tuple[str, ...]
    confidence: Callable[[np.ndarray], np.ndarray]
    rule: str


# nearest-centroid: training/models/nearest_centroid.py (the spot flow's classifier is its flow u, v case)
# the flow's u, v found by name (configs/features.py FLOW_CHANNELS), the difference's channels all
CENTROID_CHANNELS = {"flow": (("flow", UV),), "difference": (("diff", None),), "both": (("flow", UV), ("diff", None))}


def _centroid_input(clip: dict[str, np.ndarray], features: str) -> np.ndarray:
    """A clip's channels as nearest_centroid.py ``sample_features`` takes them: flow u, v, the difference, or both."""
    return np.concatenate([np.asarray(clip[name], np.float32) if channels is None
                           else np.asarray(clip[name], np.float32)[channels]
                           for name, channels in CENTROID_CHANNELS[features]])


def fit_nearest_centroid(clips: list[dict], labels: list[str], classes: tuple[str, ...], config: dict
                         ) -> dict[str, np.ndarray]:
    """Each channel's scale (its largest |value| over every clip) and each class's mean of the scaled channels:
    ``divisors``, ``means`` (classes, channels * H * W; NaN for a class without clips), ``counts``."""
    features = config.get("features", "flow")
    if features == "flow":  # the spot flow's classifier: it finds u, v in the whole flow by name
        return fit_flow_centroids(np.stack([np.asarray(c["flow"], np.float32) for c in clips]), labels, classes)
    x = np.stack([_centroid_input(c, features) for c in clips])
    from merflow.training.data import FlowScale
    from merflow.training.models.nearest_centroid import class_means

    scale = FlowScale.fit(x)
    means, counts = class_means(scale.apply(x), np.array([classes.index(y) for y in labels]), len(classes))
    return {"divisors": np.asarray(scale.divisors, np.float32), "means": means, "counts": counts}


def apply_nearest_centroid(recogniser: Recogniser, clips: list[dict]) -> np.ndarray:
    """Minus each clip's distance to each class mean, in the scale fitted on the training clips."""
    if recogniser.config.get("features", "flow") == "flow":  # u, v found by name in the whole flow
        return centroid_scores_of(recogniser.arrays, np.stack([np.asarray(c["flow"], np.float32) for c in clips]))
    # the difference (and both): each channel scaled the same way
    x = np.stack([_centroid_input(c, recogniser.config.get("features", "flow")) for c in clips])
    from merflow.training.models.nearest_centroid import distance_scores

    scaled = x / np.asarray(recogniser.arrays["divisors"], np.float32).reshape(1, -1, 1, 1)
    return distance_scores(recogniser.arrays["means"], recogniser.arrays["counts"], scaled)


def centroid_confidence(scores: np.ndarray) -> np.ndarray:
    """Each class's share of the inverse distances (1 / d over the classes with a mean): 1 / classes for a clip
    as far from every mean, near 1 on a mean. A nearest centroid has no probabilities: this only ranks."""
    distance = -np.asarray(scores, dtype=np.float64)
    finite = np.isfinite(distance)
    inverse = np.zeros_like(distance)
    inverse[finite] = 1.0 / np.maximum(distance[finite], 1e-12)
    total = inverse.sum(axis=1, keepdims=True)
    return np.divide(inverse, total, out=np.zeros_like(inverse), where=total > 0)


# survey-cnn: training/models/survey_cnn.py (one network on every sample, main4.m's schedule)
def _survey_images(clips: list[dict], config: dict) -> np.ndarray:
    """Each clip's survey input: its annotated apex crop, or, without one, the middle frame (the survey's rule
    for SMIC, ``unannotated_apex`` 'middle') or the spotted apex ('spotted'); 28 x 28, 0..255."""
    from merflow.training.models.survey_cnn import survey_image

    images = []
    for clip in clips:
        annotated = clip.get("apex_source") == "annotated"
        name = "apex" if annotated or config.get("unannotated_apex", "middle") == "spotted" else "middle"
        grey = bool(np.array_equal(clip[name][0], clip[name][1]) and np.array_equal(clip[name][0], clip[name][2]))
        images.append(survey_image(clip[name], config.get("grey_channels") == "first" and grey))
    return np.stack(images)


def fit_survey_cnn(clips: list[dict], labels: list[str], classes: tuple[str, ...], config: dict
                   ) -> dict[str, np.ndarray]:
    """The survey's network trained on every clip (its ``SurveyConfig``), weights and mean image."""
    from merflow.training.models.survey_cnn import SurveyConfig, fit_all

    settings = SurveyConfig.model_validate({k: v for k, v in config.items() if k in SurveyConfig.model_fields})
    return fit_all(_survey_images(clips, config), np.array([classes.index(y) for y in labels]), len(classes), settings)


def apply_survey_cnn(recogniser: Recogniser, clips: list[dict]) -> np.ndarray:
    """The network's softmax scores."""
    from merflow.training.models.survey_cnn import probabilities_of

    return probabilities_of(recogniser.arrays, _survey_images(clips, recogniser.config), len(recogniser.classes),
                            recogniser.config.get("dropout", 0.5))


RECOGNISERS: dict[str, RecogniserKind] = {
    "nearest-centroid": RecogniserKind(fit_nearest_centroid, apply_nearest_centroid, ("flow", "diff"),
                                       centroid_confidence, "share of the inverse distances to the class means "
                                                            "(not a probability)"),
    "survey-cnn": RecogniserKind(fit_survey_cnn, apply_survey_cnn, ("apex", "middle"), lambda s: s,
                                 "the network's softmax probability"),
}


def check_exportable(model: str) -> None:
    """A ValueError naming why ``model`` cannot be put in a bundle (and which can), or nothing."""
    if model in UNSUPPORTED:
        raise ValueError(UNSUPPORTED[model])
    if model not in RECOGNISERS:
        raise ValueError(f"model {model!r} has no bundle; bundles hold {', '.join(RECOGNISERS)}")


def fit_recogniser(model: str, config: dict, classes: tuple[str, ...], features: FeatureConfig, frame_mode: str,
                   clips: list[dict], labels: list[str], trained_on: dict) -> Recogniser:
    """``model`` fitted on every clip (``RECOGNISERS``); a ValueError where it cannot be (``check_exportable``, fewer
    than two classes)."""
    check_exportable(model)
    present = sorted(set(labels))
    if len(present) < 2:
        raise ValueError(f"the clips to train {model} on hold {len(present)} class(es) ({', '.join(present) or 'none'}) "
                         "of " + ", ".join(classes) + ": a classifier needs two at least")
    arrays = RECOGNISERS[model].fit(clips, labels, tuple(classes), config)
    counts = {c: int(labels.count(c)) for c in classes}
    return Recogniser(model, config, tuple(classes), features, frame_mode, arrays, trained_on | {"per_class": counts})


# ------------------------------------------------------------------------------------------ spotters
def spotter_record(fitted: FittedSpotter, fps: float) -> tuple[dict, dict[str, np.ndarray]]:
    """(bundle.json's record of one type's spotter, its weights' arrays: SOFTNet's state_dict, or none)."""
    record = {"spotter": fitted.spotter, "kind": fitted.kind, "k": fitted.k, "settings": fitted.settings,
              "fps": fps, "in_seconds": fitted.in_seconds(fps), "train_f1": fitted.train_f1,
              "validation_subjects": list(fitted.validation_subjects), "note": fitted.note}
    return record, (softnet.state_arrays(fitted.model) if fitted.model is not None else {})


def spotter_from_record(record: dict, arrays: dict[str, np.ndarray], roi: int) -> FittedSpotter:
    """The inverse of ``spotter_record``; a BundleError where SOFTNet's weights do not fit its network."""
    model = None
    if record["spotter"] == "softnet":
        try:
            model = softnet.from_state_arrays(arrays, roi)
        except (KeyError, RuntimeError) as error:
            raise BundleError(f"the {record['kind']} spotter's weights do not fit SOFTNet: "
                              f"{str(error).splitlines()[0]}") from None
    return FittedSpotter(record["spotter"], record["kind"], int(record["k"]), dict(record["settings"]),
                         record.get("train_f1"), tuple(record.get("validation_subjects") or ()), model,
                         record.get("note"))


# ------------------------------------------------------------------------------------------ the applied model
@dataclass
class AppliedModel:
    """What recognise applies: the per-frame feature settings, the spotters at the fps they were set at, the
    recognition model, and the bundle's own record (bundle.json)."""

    spot_features: SpotFeatureConfig
    spotters: dict[str, FittedSpotter]
    fps: float
    recogniser: Recogniser
    card: dict = field(default_factory=dict)

    def spotters_at(self, fps: float) -> dict[str, FittedSpotter]:
        """Each spotter for a video at ``fps``: k and the length filters kept in seconds (``FittedSpotter.at_fps``)."""
        return {kind: spotter.at_fps(self.fps, fps) for kind, spotter in self.spotters.items()}

    def check_input(self, n_frames: int, fps: float, video: str = "the video") -> None:
        """An InputMismatch (one line) where the video's frame rate or length cannot meet the spotters' windows."""
        if not fps or not math.isfinite(fps) or fps <= 0:
            raise InputMismatch(f"{video} has no usable frame rate ({fps!r}): give it with --fps")
        for kind, spotter in self.spotters.items():
            seconds = spotter.k / self.fps
            if seconds * fps < MIN_WINDOW_FRAMES - 0.5:
                need = math.ceil((MIN_WINDOW_FRAMES - 0.5) / seconds)
                raise InputMismatch(
                    f"{video} runs at {fps:g} fps: the model's {kind}-expression window of {seconds:.3f} s (k = "
                    f"{spotter.k} frames at {self.fps:g} fps) would be {frames(seconds, fps)} frame there, too few to "
                    f"tell an onset from an apex; it needs {need} fps or more (give the true rate with --fps if the "
                    "container's is wrong)")
        windows = [frames(s.k / self.fps, fps) for s in self.spotters.values()]
        need = 2 * max(windows) + 2
        if n_frames < need:
            raise InputMismatch(f"{video} has {n_frames} frames ({n_frames / fps:.2f} s at {fps:g} fps): the model's "
                                f"spotting window needs {need} frames ({need / fps:.2f} s) at least")


# ------------------------------------------------------------------------------------------ the golden check
GOLDEN_WINDOW = 4        # frames i whose features (against i + k) the golden check computes, per window k
# Tolerances, relative to each output's own scale (its largest |value|): float noise passes, a changed
# algorithm or weights do not. The face box in pixels.
GOLDEN_TOLERANCE = {"box": 0.5, "motion": 1e-3, "signal": 1e-3, "scores": 1e-3}


def golden_frames(fps: float, spotters: dict[str, FittedSpotter], colour: bool = True, size=(120, 160),
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """The golden input: a synthetic face (tasks/synthetic/long_videos.py, scikit-image's faces: nothing licensed)
    with one micro-expression planted; (frame indices kept, their frames (N, H, W, 3) uint8 RGB, the expression's
    (onset, offset)). Only the frames the check reads are kept: 0 .. GOLDEN_WINDOW - 1 and the same after each k,
    and the expression's."""
    from merflow.tasks.synthetic.faces import subject_identity
    from merflow.tasks.synthetic.long_videos import PlantedInterval, render_long_video

    length = max(frames(0.3, fps, 5), 5)
    onset, offset = 1, 1 + length - 1
    ks = sorted({s.k for s in spotters.values()})
    needed = set(range(GOLDEN_WINDOW)) | set(range(onset, offset + 1))
    for k in ks:
        needed |= set(range(k, k + GOLDEN_WINDOW))
    n_frames = max(needed) + 1
    rng = np.random.default_rng(seed)
    planted = [PlantedInterval("micro", "happiness", onset, onset + length // 2, offset)]
    kept = {}
    rendered = render_long_video(subject_identity(7, seed), planted, [], n_frames, fps, size, True, rng)
    for index, frame in enumerate(rendered):
        if index in needed:
            kept[index] = frame
    indices = np.array(sorted(kept), dtype=np.int64)
    return indices, np.stack([kept[i] for i in indices]), (onset, offset)


class _Kept:
    """The golden frames as a frame sequence (indices not kept raise): grey or colour."""

    def __init__(self, indices: np.ndarray, images: np.ndarray, n_frames: int, colour: bool):
        self.row = {int(i): j for j, i in enumerate(indices)}
        self.images, self.n_frames, self.colour = images, n_frames, colour

    def __len__(self) -> int:
        return self.n_frames

    def __getitem__(self, index: int) -> np.ndarray:
        image = self.images[self.row[int(index)]]
        if self.colour:
            return image
        import cv2

        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)


def golden_outputs(model: AppliedModel, indices: np.ndarray, images: np.ndarray, clip: tuple[int, int]
                   ) -> dict[str, np.ndarray]:
    """What every stage gives on the golden frames: the face box at frame 0 (cx, cy, side, angle), each window's
    motion and each spotter's signal on frames 0 .. GOLDEN_WINDOW - 1, each spotter's intervals on a fixed
    synthetic signal (its decoding), and the recogniser's scores of the planted clip."""
    n_frames = int(indices.max()) + 1
    grey = _Kept(indices, images, n_frames, colour=False)
    out: dict[str, np.ndarray] = {}
    found = detect_at(grey, [0], model.spot_features)[0]
    if found is None:
        out["box"] = np.full(4, np.nan)
        return out
    box = FaceBox.from_dict(found)
    out["box"] = np.array([box.cx, box.cy, box.side, box.angle], np.float64)
    track = Track(n_frames, (Segment(0, n_frames, box, 0),), (0,), ())
    for kind, spotter in sorted(model.spotters.items()):
        roi, motion = chunk_features(grey, 0, GOLDEN_WINDOW, spotter.k, track, model.spot_features)
        out[f"motion_{kind}"] = motion.astype(np.float64)
        out[f"signal_{kind}"] = spotter.signal({"roi": roi, "motion": motion}, GOLDEN_WINDOW + spotter.k).astype(np.float64)
        probe = _probe_signal(spotter.k)
        decoded = spotter.decode(probe, len(probe) + (spotter.k if spotter.spotter == "softnet" else 0))
        out[f"decoded_{kind}"] = np.array([[i.start, i.end] for i in decoded], np.float64).reshape(-1, 2)
    frames_ = _Kept(indices, images, n_frames, colour=model.recogniser.frames == "colour")
    try:
        arrays, info = clip_features(frames_, clip[0], clip[1], None, model.recogniser.features)
    except ValueError:  # no face on the onset frame, now: the drift says so
        out["scores"] = np.full(len(model.recogniser.classes), np.nan)
        return out
    out["scores"] = model.recogniser.scores([arrays | {"apex_source": info["apex_source"]}])[0]
    return out


def _probe_signal(k: int) -> np.ndarray:
    """A fixed signal with two bumps over a low ripple: what each spotter's decoding gives on it is part of the check."""
    n = 12 * k + 20
    t = np.arange(n, dtype=np.float64)
    bumps = np.exp(-0.5 * ((t - 3 * k - 5) / max(k / 2, 1)) ** 2) + 0.6 * np.exp(-0.5 * ((t - 8 * k - 10) / max(k / 2, 1)) ** 2)
    return (0.05 + 0.02 * np.sin(t / 3.0) + bumps).astype(np.float32)


def golden_drift(expected: dict[str, np.ndarray], actual: dict[str, np.ndarray]) -> list[str]:
    """One line per output of the golden check that moved beyond its tolerance (empty: none did)."""
    lines = []
    for name in sorted(expected):
        want, got = np.asarray(expected[name], np.float64), np.asarray(actual.get(name, np.array([])), np.float64)
        stage = name.split("_")[0]
        if stage == "decoded":  # intervals (n, 2): an empty list reads back without its second axis
            want, got = want.reshape(-1, 2), got.reshape(-1, 2)
        label = {"box": "the face box", "motion": "the per-frame motion", "signal": "the spotter's scores",
                 "decoded": "the spotter's decoding", "scores": "the class scores"}[stage]
        label += f" ({name.split('_', 1)[1]})" if "_" in name else ""
        if want.shape != got.shape or (np.isnan(want) != np.isnan(got)).any() or (np.isinf(want) != np.isinf(got)).any():
            lines.append(f"golden check: {label} changed shape or validity (expected {want.shape}, got {got.shape})")
            continue
        finite = np.isfinite(want)
        if not finite.any():
            continue
        difference = float(np.abs(want[finite] - got[finite]).max())
        if stage == "box" or stage == "decoded":
            if difference > (GOLDEN_TOLERANCE["box"] if stage == "box" else 0):
                lines.append(f"golden check: {label} moved by {difference:.3g} (tolerance "
                             f"{GOLDEN_TOLERANCE['box'] if stage == 'box' else 0})")
            continue
        scale = max(float(np.abs(want[finite]).max()), 1e-9)
        if difference / scale > GOLDEN_TOLERANCE[stage]:
            lines.append(f"golden check: {label} differs by {100 * difference / scale:.3g} % of its scale "
                         f"(tolerance {100 * GOLDEN_TOLERANCE[stage]:g} %)")
    return lines


# ------------------------------------------------------------------------------------------ bundle.json
def card_arrays(model: AppliedModel, golden: tuple[np.ndarray, np.ndarray, tuple[int, int]] | None
                ) -> dict[str, dict[str, np.ndarray]]:
    """The bundle's arrays by file name (storage/bundles.py writes each as ``<name>.npz``)."""
    arrays = {"recogniser": model.recogniser.arrays}
    for kind, spotter in model.spotters.items():
        if spotter.model is not None:
            arrays[f"spotter-{kind}"] = softnet.state_arrays(spotter.model)
    if golden is not None:
        arrays["golden"] = {"indices": golden[0], "frames": golden[1]}
    return arrays


def make_card(model: AppliedModel, source: dict, spot_config: dict, versions: dict, created_at: str,
              golden: tuple[np.ndarray, np.ndarray, tuple[int, int]], expected: dict[str, np.ndarray]) -> dict:
    """bundle.json: everything but the arrays (module docstring; docs/spotting.md lists each field)."""
    spotters = {kind: spotter_record(s, model.fps)[0] for kind, s in model.spotters.items()}
    return {"format": BUNDLE_FORMAT, "version": BUNDLE_VERSION, "created_at": created_at, "versions": versions,
            "source": source,
            "spotting": {"features": model.spot_features.to_dict(), "config": spot_config, "fps": model.fps,
                         "frames": "grey", "spotters": spotters},
            "recogniser": model.recogniser.describe(),
            "golden": {"clip": list(golden[2]), "window": GOLDEN_WINDOW, "tolerance": GOLDEN_TOLERANCE,
                       "expected": {name: np.asarray(v, np.float64).tolist() for name, v in expected.items()}}}


def _check_environment(features: FeatureConfig, spot_features: SpotFeatureConfig) -> None:
    """A BundleError where this installation lacks a detector or flow the bundle's features use."""
    import importlib.util

    import cv2

    for config in (features.face, spot_features.face):
        if "yunet" in config.detectors and importlib.util.find_spec("yuface") is None:
            raise BundleError("this model finds faces with YuNet, which needs the yuface package: pip install yuface")
    for motion in (features.motion, spot_features.motion):
        if "tvl1" in (motion.algorithm, motion.spot_algorithm) and not hasattr(cv2, "optflow"):
            raise BundleError("this model's features use TV-L1 flow, which this OpenCV lacks (cv2.optflow): install "
                              "opencv-contrib-python-headless (OpenCV 5 has no TV-L1, ../shared/STACK.md)")


def model_from_card(card: dict, arrays: dict[str, dict[str, np.ndarray]]) -> AppliedModel:
    """The applied model of a bundle's card and arrays (``make_card``, ``card_arrays``); a BundleError naming
    what this merflow cannot read or this installation cannot run."""
    if card.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"not a merflow model bundle (format {card.get('format')!r})")
    if int(card.get("version", 0)) > BUNDLE_VERSION:
        raise BundleError(f"a bundle of version {card.get('version')}; this merflow reads version {BUNDLE_VERSION}: "
                          "upgrade merflow")
    spotting, described = card["spotting"], card["recogniser"]
    spot_features = SpotFeatureConfig.from_dict(spotting["features"])
    features = FeatureConfig.from_dict(described["features"])
    _check_environment(features, spot_features)
    if described["model"] not in RECOGNISERS:
        raise BundleError(f"the bundle's recognition model {described['model']!r} is not one this merflow applies "
                          f"({', '.join(RECOGNISERS)})")
    spotters = {kind: spotter_from_record(record, arrays.get(f"spotter-{kind}", {}), spot_features.roi)
                for kind, record in spotting["spotters"].items()}
    recogniser = Recogniser(described["model"], described["config"], tuple(described["classes"]), features,
                            described["frames"], arrays["recogniser"], described.get("trained_on", {}))
    return AppliedModel(spot_features, spotters, float(spotting["fps"]), recogniser, card)


def verify_golden(model: AppliedModel, arrays: dict[str, dict[str, np.ndarray]]) -> list[str]:
    """The golden check on load: the stored synthetic input through every stage again, compared with the outputs
    stored at export (``golden_drift``); one line per stage that moved, empty when none did."""
    golden = model.card.get("golden")
    if not golden or "golden" not in arrays:
        return ["golden check: the bundle holds no golden input (nothing to compare)"]
    expected = {name: np.asarray(values, np.float64) for name, values in golden["expected"].items()}
    actual = golden_outputs(model, arrays["golden"]["indices"], arrays["golden"]["frames"], tuple(golden["clip"]))
    return golden_drift(expected, actual)
