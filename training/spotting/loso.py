"""Leave-one-subject-out spotting over long videos, every setting chosen without the test subject.

Each fold holds out every video of one person (``subject_key``). Per expression type:

- k: SOFTNet's rule on the training subjects' intervals of the type (``softnet_k``);
- ``baseline``: p and the length filter chosen on the training subjects' videos (training/spotting/baseline.py);
- ``softnet`` (recipe merflow): some training subjects (``validation_fraction``, at least one) held out of
  fitting; SOFTNet trained on the others; p chosen on the held-out ones' videos (pooled MEGC F1 of the
  decoded peaks); the test subject's videos scored by that model;
- ``softnet`` (recipe published): SOFTNet's own choices, which saw every subject: k from the intervals of
  all subjects, the test subject's included, p = 0.55, trained on all training subjects. A labelled
  comparison (``SpotConfig.chosen_on``), never an honest result.

Pure: videos are ``SpotVideo`` values and their per-frame arrays come from ``load(video_key, k, arrays)``
(flows/spotting.py reads them through storage/spotting_features.py). Returns the predicted intervals and
each fold's settings as DataFrames.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from merflow.configs.spotting import SpotConfig, frames
from merflow.training.spotting import baseline, softnet
from merflow.training.spotting.intervals import moving_average, peak_intervals, pseudo_labels, smooth, softnet_k
from merflow.training.spotting.metrics import match_video, prf

Loader = Callable[[str, int, tuple[str, ...]], dict[str, np.ndarray]]
PREDICTION_COLUMNS = ("fold", "video_key", "subject_key", "type", "start", "end", "score")
SETTING_COLUMNS = ("fold", "type", "k", "settings", "chosen_on", "train_f1", "validation_subjects", "note")


@dataclass(frozen=True)
class TruthInterval:
    """An annotated interval: key, type (micro | macro), inclusive 0-based frames, class (or None)."""

    key: str
    type: str
    onset: int
    offset: int
    label: str | None = None


@dataclass(frozen=True)
class SpotVideo:
    """A long video as the spotters see it."""

    key: str
    subject: str                    # subject_key: the person
    n_frames: int
    fps: float
    truths: tuple[TruthInterval, ...]

    def spans(self, kind: str) -> list[tuple[int, int]]:
        """(onset, offset) of its intervals of one type."""
        return [(t.onset, t.offset) for t in self.truths if t.type == kind]


def fold_name(subject: str) -> str:
    """The fold that holds out ``subject``: ``loso-<subject key>``."""
    return f"loso-{subject}"


def durations(videos: list[SpotVideo], kind: str) -> list[int]:
    """offset - onset of every interval of one type (what SOFTNet's k averages)."""
    return [t.offset - t.onset for v in videos for t in v.truths if t.type == kind]


def fold_k(train: list[SpotVideo], every: list[SpotVideo], kind: str, config: SpotConfig) -> int | None:
    """The window of one fold and type: from the training subjects (merflow), or every subject (published)."""
    source = every if config.recipe == "published" else train
    spans = durations(source, kind)
    return softnet_k(spans) if spans else None


def windows_needed(videos: list[SpotVideo], config: SpotConfig) -> dict[str, set[int]]:
    """The windows k the folds will ask for, per type: the per-frame features to compute first."""
    needed: dict[str, set[int]] = {kind: set() for kind in config.types}
    for subject in sorted({v.subject for v in videos}):
        train = [v for v in videos if v.subject != subject]
        for kind in config.types:
            k = fold_k(train, videos, kind, config)
            if k is not None:
                needed[kind].add(k)
    return needed


def split_validation(subjects: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(fit subjects, validation subjects): ``fraction`` of them (at least one, at most all but one) drawn with
    ``seed``; with a single subject there is nothing to hold out (validation empty)."""
    subjects = sorted(subjects)
    if len(subjects) < 2:
        return subjects, []
    count = min(max(int(round(fraction * len(subjects))), 1), len(subjects) - 1)
    held = set(np.random.default_rng(seed).choice(subjects, size=count, replace=False).tolist())
    return [s for s in subjects if s not in held], sorted(held)


def _pooled_f1(decoded: list[tuple[list, list[tuple[int, int]]]]) -> float:
    tp = n_pred = n_truth = 0
    for intervals, spans in decoded:
        matched = match_video([(i.start, i.end, i.score) for i in intervals], spans)
        tp += sum(1 for truth, _ in matched if truth is not None)
        n_pred += len(intervals)
        n_truth += len(spans)
    return prf(tp, n_pred - tp, n_truth - tp)[2]


def _frames(video: SpotVideo, k: int, load: Loader) -> np.ndarray:
    return load(video.key, k, ("roi",))["roi"][:max(video.n_frames - k, 0)]


def _softnet_scores(model, video: SpotVideo, k: int, load: Loader) -> np.ndarray:
    return softnet.scores(model, _frames(video, k, load))


def choose_p(scored: list[tuple[np.ndarray, int, list[tuple[int, int]]]], k: int, grid: tuple[float, ...]
             ) -> tuple[float, float]:
    """The p of ``grid`` whose decoded peaks score the best pooled F1 on ``scored`` (scores, n_frames, spans);
    ties to the first."""
    smoothed = [(smooth(values, k), n_frames, spans) for values, n_frames, spans in scored]
    best_p, best_f1 = grid[0], -1.0
    for p in grid:
        f1 = _pooled_f1([(peak_intervals(values, p, k, n_frames), spans) for values, n_frames, spans in smoothed])
        if f1 > best_f1:
            best_p, best_f1 = p, f1
    return best_p, best_f1


@dataclass
class FittedSpotter:
    """A spotter of one expression type fitted on some subjects: its window k, its chosen settings and, for
    SOFTNet, its network. ``intervals`` spots a video's per-frame arrays (``roi`` for SOFTNet, ``motion`` for the
    baseline, tasks/spotting_features.py) whatever video they come from: a held-out subject's, or a user's."""

    spotter: str
    kind: str
    k: int
    settings: dict                  # what was chosen: {"k", "p"} (softnet) or BaselineSettings.to_dict() (baseline)
    train_f1: float | None          # the F1 that chose them (on training or validation subjects)
    validation_subjects: tuple[str, ...] = ()
    model: softnet.SoftNet | None = None
    note: str | None = None

    @property
    def arrays(self) -> tuple[str, ...]:
        """The per-frame arrays it reads."""
        return ("roi",) if self.spotter == "softnet" else ("motion",)

    def intervals(self, arrays: dict[str, np.ndarray], n_frames: int) -> list:
        """The spotted intervals of one video from its per-frame arrays of window ``self.k``."""
        return self.decode(self.signal(arrays, n_frames), n_frames)

    def signal(self, arrays: dict[str, np.ndarray], n_frames: int) -> np.ndarray:
        """Each frame's score before decoding: SOFTNet's output on ``roi`` (frames 0 .. n_frames - k - 1), or the
        baseline's ``motion``. Computed chunk by chunk where a video is long (its parts concatenated are the
        whole signal: ``decode`` looks at the whole video, for the threshold and the smoothing)."""
        if self.spotter == "baseline":
            return np.asarray(arrays["motion"], dtype=np.float32)
        return softnet.scores(self.model, arrays["roi"][:max(n_frames - self.k, 0)])

    def decode(self, signal: np.ndarray, n_frames: int) -> list:
        """The intervals from a whole video's ``signal`` (baseline: T, runs, length filter; SOFTNet: the score
        smoothed over 2k frames, T, peaks k apart)."""
        if self.spotter == "baseline":
            return baseline.predict(signal, n_frames, baseline.BaselineSettings(
                self.k, self.settings["p"], self.settings["low"],
                float("inf") if self.settings["high"] is None else self.settings["high"]))
        return peak_intervals(smooth(signal, self.k), self.settings["p"], self.k, n_frames)

    def smoothed(self, signal: np.ndarray) -> np.ndarray:
        """The curve ``decode`` thresholds (a timeline's line): the baseline's moving average over k, SOFTNet's 2k."""
        if self.spotter == "baseline":
            return moving_average(signal, self.k)
        return smooth(signal, self.k)

    def at_fps(self, fitted_fps: float, fps: float) -> FittedSpotter:
        """The same spotter for a video of another frame rate: k and the length filter kept in seconds (ZOO.md's
        recipe for a user's video), p and the network as they are."""
        k = frames(self.k / fitted_fps, fps)
        settings = dict(self.settings, k=k) if "k" in self.settings else dict(self.settings)
        if self.spotter == "baseline":
            settings |= {"k": k, "low": self.settings["low"] * fps / fitted_fps,
                         "high": None if self.settings["high"] is None else self.settings["high"] * fps / fitted_fps}
        return dataclasses.replace(self, k=k, settings=settings)

    def in_seconds(self, fps: float) -> dict:
        """The settings with every frame count in seconds at the ``fps`` they were chosen at (a user's video
        turns them back into frames at its own fps: configs/spotting.py ``frames``)."""
        found = {"k_seconds": self.k / fps, "p": self.settings["p"]}
        if self.spotter == "baseline":
            found |= {"low_seconds": self.settings["low"] / fps,
                      "high_seconds": None if self.settings["high"] is None else self.settings["high"] / fps}
        return found


def fit_spotter(train: list[SpotVideo], every: list[SpotVideo], load: Loader, config: SpotConfig, kind: str,
                seed: int) -> FittedSpotter | None:
    """One type's spotter fitted on the videos ``train`` (``every``: all videos, which only the published recipe's
    k reads); None where ``train`` holds no interval of the type. Every setting is chosen on ``train``."""
    k = fold_k(train, every, kind, config)
    if k is None:
        return None
    if config.spotter == "baseline":
        chosen, f1 = baseline.fit([(load(v.key, k, ("motion",))["motion"], v.n_frames, v.spans(kind)) for v in train],
                                  k, config)
        return FittedSpotter("baseline", kind, k, chosen.to_dict(), f1)
    micro = kind == "micro"
    if config.recipe == "published":
        fit_videos, held = train, []
    else:
        fit_subjects, held = split_validation(sorted({v.subject for v in train}), config.validation_fraction, seed)
        fit_videos = [v for v in train if v.subject in fit_subjects]
    x = np.concatenate([_frames(v, k, load) for v in fit_videos])
    y = np.concatenate([pseudo_labels(v.n_frames, k, v.spans(kind)) for v in fit_videos])
    model = softnet.train(x, y, config, micro, seed)
    note = None
    if config.recipe == "published":
        p, f1 = config.published_p, None
    else:
        chosen_on = [v for v in train if v.subject in held] or fit_videos
        if not held:  # one training subject: p chosen on its own (fitted) videos, said so
            note = "one training subject: p chosen on the videos SOFTNet was fitted on"
        p, f1 = choose_p([(_softnet_scores(model, v, k, load), v.n_frames, v.spans(kind)) for v in chosen_on], k,
                         config.p_grid)
    return FittedSpotter("softnet", kind, k, {"k": k, "p": p}, f1, tuple(held), model, note)


def spot_fold(test_subject: str, videos: list[SpotVideo], load: Loader, config: SpotConfig, fold_index: int
              ) -> tuple[list[dict], list[dict]]:
    """One fold: (prediction rows of the test subject's videos, the settings row of each type)."""
    fold = fold_name(test_subject)
    train = [v for v in videos if v.subject != test_subject]
    test = [v for v in videos if v.subject == test_subject]
    predictions, settings = [], []
    for kind in config.types:
        seed = config.seed * 1000 + fold_index * 2 + (0 if kind == "micro" else 1)
        fitted = fit_spotter(train, videos, load, config, kind, seed)
        row = {"fold": fold, "type": kind, "chosen_on": config.chosen_on}
        if fitted is None:
            settings.append(row | {"k": None, "settings": None, "train_f1": None, "validation_subjects": None,
                                   "note": f"no {kind} intervals in the training subjects: nothing spotted"})
            continue
        settings.append(row | {"k": fitted.k, "settings": json.dumps(fitted.settings), "train_f1": fitted.train_f1,
                               "validation_subjects": ",".join(fitted.validation_subjects) or None,
                               "note": fitted.note})
        for video in test:
            found = fitted.intervals(load(video.key, fitted.k, fitted.arrays), video.n_frames)
            predictions += [_row(fold, video, kind, i) for i in found]
    return predictions, settings


def _row(fold: str, video: SpotVideo, kind: str, interval) -> dict:
    return {"fold": fold, "video_key": video.key, "subject_key": video.subject, "type": kind,
            "start": int(interval.start), "end": int(interval.end), "score": float(interval.score)}


def spot_loso(videos: list[SpotVideo], load: Loader, config: SpotConfig,
              on_fold: Callable[[int, int, str], None] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every fold in turn: (predictions, settings) DataFrames (``PREDICTION_COLUMNS``, ``SETTING_COLUMNS``);
    ``on_fold(done, total, fold)`` hears each finished fold."""
    subjects = sorted({v.subject for v in videos})
    if len(subjects) < 2:
        raise ValueError(f"leave-one-subject-out needs videos of two people at least; these are all of "
                         f"{subjects or 'nobody'}")
    predictions, settings = [], []
    for index, subject in enumerate(subjects):
        found, chosen = spot_fold(subject, videos, load, config, index)
        predictions += found
        settings += chosen
        on_fold and on_fold(index + 1, len(subjects), fold_name(subject))
    return (pd.DataFrame(predictions, columns=list(PREDICTION_COLUMNS)),
            pd.DataFrame(settings, columns=list(SETTING_COLUMNS)))
