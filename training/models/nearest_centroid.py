"""The floor: a nearest-centroid classifier that learns nothing, beside every model.

Per fold, every sample that is not a test sample trains it: the fold's fit and validation keys together
(a nearest centroid chooses nothing, so it needs no validation subjects and uses every training
subject). Each feature channel is divided by its largest |value| over those training samples only
(``training.data.FlowScale``, as training/stages.py scales Meta-MMFNet's flow), each class's mean of the scaled,
flattened features is its centroid, and a test sample gets the class of the nearest centroid
(Euclidean); its scores are the negative distances. Features: ``flow`` (u, v), ``flow-strain`` (u, v and
strain), ``difference`` (the apex - onset difference), ``both`` (flow u, v and the difference) or ``apex``
(the apex image's raw pixels, all channels). Channels are found by name in the array's convention
(training/data.py FeatureSource ``conventions``): a computed flow is stored u, v, magnitude, strain; an
imported STSTNet-style flow image strain, v, u (0..255 per image).

As a model (``merflow train --model nearest-centroid``) its run gives the same result tables as the others,
method ``nearest-centroid``. As the floor it runs inside every ``merflow train`` (any model) and
``merflow tune`` on the same fold objects (``floor``, flow u, v), written into the result tables
``floor_metrics`` and ``floor_predictions`` of the same run (storage/results.py ``write_floor``), model
``floor``; ``merflow results summary`` prints it beside the models. The floor's input is the flow's u, v where
the inputs hold a flow, else the apex image's pixels (imported images only: the survey's C4/C9); which one,
with its channels and scaling, is in the run's notes (``floor``).

The computation is pure numpy: ``centroid_scores`` on arrays, ``fold_scores`` for one fold of a
protocol, ``floor_rows`` for many folds at once (each feature matrix built once; a fold's class sums
are the totals minus its non-training rows, so LOVO's hundreds of folds take seconds).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from pydantic import Field

from merflow.configs.base import Config as ConfigBase
from merflow.configs.base import choice
from merflow.training.data import FlowScale
from merflow.training.folds import Fold
from merflow.training.metrics import summarise
from merflow.training.models import FoldResult, ModelInfo, RunPlan, register_model
from merflow.training.predictions import prediction_frame

NAME = "nearest-centroid"
FLOOR = "floor"                 # the model column of the floor's rows
FEATURES = ("flow", "flow-strain", "difference", "both", "apex")
# Each choice's (array, channels by name; None: every channel of the array).
FEATURE_CHANNELS: dict[str, tuple[tuple[str, tuple[str, ...] | None], ...]] = {
    "flow": (("flow", ("u", "v")),),
    "flow-strain": (("flow", ("u", "v", "strain")),),
    "difference": (("diff", None),),
    "both": (("flow", ("u", "v")), ("diff", None)),
    "apex": (("apex", None),),
}
# The floor's input, in order of preference: the flow's u, v where the inputs hold a flow (every computed
# group, an imported flow), else the apex image's pixels (imported images only).
FLOOR_INPUTS = {"flow": "flow", "apex": "apex"}
CentroidFeatures = choice(FEATURES)


class CentroidConfig(ConfigBase):
    """Everything that decides a nearest-centroid run's numbers (it has no recipe and draws nothing at random)."""

    features: CentroidFeatures = Field(
        "flow", description="nearest-centroid: flow u, v (the floor's, where there is a flow), u, v and strain, the "
                            "apex - onset difference, flow u, v and the difference, or the apex image's pixels")
    seed: int = 0               # the folds' seed (training.folds); the classifier itself draws nothing
    recipe: None = None         # none: there is no published recipe to follow

    @property
    def validation_fraction(self) -> float:
        """No validation split: the centroid chooses nothing (its training samples are fit and validation keys anyway)."""
        return 0.0


Config = CentroidConfig


def default_config(**overrides) -> CentroidConfig:
    """The default configuration (flow u, v), with ``overrides``."""
    return CentroidConfig(**overrides)


MODEL = register_model(ModelInfo(
    NAME, __name__,
    "the floor: class means of the training samples' flow u, v (or difference, or both), each channel scaled on "
    "the training samples only; the nearest mean wins, nothing learned", CentroidConfig,
    optional_inputs=("diff", "flow", "apex"), options=("features", "seed"), rename={"features": "centroid_features"},
    title="class means of the training samples", folds_per_task=None))


# ------------------------------------------------------------------------------------------ the computation
def class_means(train_x: np.ndarray, train_y: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The mean row of each class (n_classes, d) in float64, and each class's count; a class without
    training samples has a NaN mean and count 0."""
    train_x = np.asarray(train_x).reshape(len(train_x), -1)
    counts = np.bincount(np.asarray(train_y, dtype=np.int64), minlength=n_classes)[:n_classes]
    sums = np.zeros((n_classes, train_x.shape[1]), np.float64)
    np.add.at(sums, np.asarray(train_y, dtype=np.int64), train_x.astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts[:, None], counts


def distance_scores(means: np.ndarray, counts: np.ndarray, test_x: np.ndarray) -> np.ndarray:
    """Negative Euclidean distance of each test row to each class mean (n_test, n_classes); -inf for a
    class without training samples (no centroid: never the nearest)."""
    test_x = np.asarray(test_x, dtype=np.float64).reshape(len(test_x), -1)
    scores = np.full((len(test_x), len(means)), -np.inf)
    present = counts > 0
    if len(test_x) and present.any():
        difference = test_x[:, None, :] - means[present][None, :, :]
        scores[:, present] = -np.sqrt(np.einsum("ncd,ncd->nc", difference, difference))
    return scores


def centroid_scores(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, n_classes: int) -> np.ndarray:
    """Nearest-centroid scores of ``test_x`` (n_test, n_classes): minus the distance to each class mean of
    ``train_x`` (labels ``train_y`` in 0..n_classes-1); features as given (scale them first), rows flattened."""
    means, counts = class_means(train_x, train_y, n_classes)
    return distance_scores(means, counts, test_x)


def _selection(source, features: str) -> list[tuple[dict, list[int] | None]]:
    """(the array by sample key, its channel indices or None for all) per part of ``features``; a missing array
    or channel is one line naming it (FeatureSource.require / channel_index)."""
    if features not in FEATURE_CHANNELS:
        raise ValueError(f"features must be one of {', '.join(FEATURES)}, not {features!r}")
    return [(source.require(array, NAME), None if channels is None else [source.channel_index(array, c) for c in channels])
            for array, channels in FEATURE_CHANNELS[features]]


def sample_features(source, key: str, features: str, selection=None) -> np.ndarray:
    """One sample's (channels, H, W) features from a FeatureSource: flow u, v (found by name), u, v and strain,
    the difference, both, or the apex pixels. ``selection``: ``_selection(source, features)``, made once."""
    parts = [values[key] if indices is None else values[key][indices]
             for values, indices in (selection or _selection(source, features))]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def describe_input(source, features: str) -> dict:
    """What ``features`` reads from ``source``: per array its channels used, origin and scaling (the runs row's
    note ``floor``, and the label of the floor's row)."""
    parts = []
    for array, channels in FEATURE_CHANNELS[features]:
        convention = source.conventions.get(array, {})
        used = list(channels) if channels is not None else list(convention.get("channels", []))
        parts.append({"array": array, "channels": used, "origin": convention.get("origin", "computed"),
                      "stored_channels": list(convention.get("channels", [])),
                      "scaling": convention.get("scaling", "")})
    text = " + ".join(("imported " if p["origin"] == "imported" else "") + f"{p['array']} {', '.join(p['channels'])}"
                      for p in parts)
    return {"features": features, "text": text, "arrays": parts}


def floor_array(held) -> str | None:
    """The array the floor reads of groups holding ``held`` (names): the flow, else the apex images; None: neither."""
    return next((name for name in FLOOR_INPUTS if name in held), None)


def floor_features(source) -> str | None:
    """The floor's features on ``source``: ``flow`` (u, v) where it holds a flow, else ``apex`` (pixels)."""
    array = floor_array(source.arrays)
    return FLOOR_INPUTS[array] if array else None


class FeatureMatrix:
    """The features of a set of samples, stacked once: (N, channels, H*W) float32, each sample's largest
    |value| per channel (the scale of any subset is the max of its rows' peaks) and its class index."""

    def __init__(self, source, samples: pd.DataFrame, keys, label_column: str, classes: tuple[str, ...],
                 features: str):
        self.keys = list(keys)
        self.row = {k: i for i, k in enumerate(self.keys)}
        selection = _selection(source, features)
        stacked = np.stack([sample_features(source, k, features, selection) for k in self.keys]).astype(np.float32)
        self.peaks = np.abs(stacked).max(axis=(2, 3))                      # (N, channels)
        self.x = stacked.reshape(len(self.keys), stacked.shape[1], -1)     # (N, channels, H*W)
        self.y = np.array([classes.index(samples.at[k, label_column]) for k in self.keys], dtype=np.int64)
        self.n_classes = len(classes)
        self.totals = np.stack([self.x[self.y == c].sum(axis=0, dtype=np.float64)
                                for c in range(self.n_classes)])          # (classes, channels, H*W)
        self.counts = np.bincount(self.y, minlength=self.n_classes)

    def scale(self, train: np.ndarray) -> FlowScale:
        """Per-channel divisors fitted on the rows ``train`` only: FlowScale.fit's rule (largest |value|,
        1 where it is 0) over their peaks, which is the same as over their whole arrays."""
        return FlowScale.fit(self.peaks[train][:, :, None, None])

    def centroids(self, train: np.ndarray) -> tuple[np.ndarray, np.ndarray, FlowScale]:
        """Class means of the rows ``train`` in scaled units (classes, channels * H*W), counts, scale.
        The class sums are the totals minus the rows outside ``train`` (few, for LOSO and LOVO)."""
        outside = np.setdiff1d(np.arange(len(self.keys)), train)
        sums, counts = self.totals.copy(), self.counts.copy()
        for c in range(self.n_classes):
            rows = outside[self.y[outside] == c]
            if len(rows):
                sums[c] -= self.x[rows].sum(axis=0, dtype=np.float64)
                counts[c] -= len(rows)
        scale = self.scale(train)
        divisors = np.asarray(scale.divisors, np.float64)[None, :, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            means = sums / np.maximum(counts, 1)[:, None, None] / divisors
        means[counts == 0] = np.nan
        return means.reshape(self.n_classes, -1), counts, scale

    def scores(self, train: np.ndarray, test: np.ndarray) -> np.ndarray:
        """Scores (len(test), classes) of the rows ``test`` against the centroids of the rows ``train``."""
        means, counts, scale = self.centroids(train)
        test_x = self.x[test] / np.asarray(scale.divisors, np.float32)[None, :, None]
        return distance_scores(means, counts, test_x)


def training_keys(fold: Fold) -> tuple[str, ...]:
    """What the nearest centroid trains on: every non-test sample of the fold (fit and validation keys:
    it chooses nothing, so it needs no validation subjects)."""
    return fold.fit_keys + fold.validation_keys


def _matrix(folds: list[Fold], source, samples: pd.DataFrame, features: str) -> FeatureMatrix:
    keys = sorted({k for fold in folds for k in training_keys(fold) + fold.test_keys})
    return FeatureMatrix(source, samples, keys, folds[0].label_column, folds[0].classes, features)


def _rows(matrix: FeatureMatrix, fold: Fold) -> tuple[np.ndarray, np.ndarray]:
    return (np.array([matrix.row[k] for k in training_keys(fold)], dtype=np.int64),
            np.array([matrix.row[k] for k in fold.test_keys], dtype=np.int64))


def fold_centroids(fold: Fold, source, samples: pd.DataFrame, features: str = "flow"
                   ) -> tuple[np.ndarray, np.ndarray, FlowScale]:
    """One fold's class means (scaled), class counts and the scale fitted on its training samples."""
    matrix = _matrix([fold], source, samples, features)
    return matrix.centroids(_rows(matrix, fold)[0])


def fold_scores(fold: Fold, source, samples: pd.DataFrame, features: str = "flow") -> np.ndarray:
    """Nearest-centroid scores (len(fold.test_keys), classes) of one fold: trained on its fit and validation
    samples, scaled on them only; ``source`` a training.data.FeatureSource, ``samples`` the catalog rows by key."""
    matrix = _matrix([fold], source, samples, features)
    return matrix.scores(*_rows(matrix, fold))


def predictions(folds: list[Fold], source, samples: pd.DataFrame, features: str = "flow",
                model: str = NAME) -> list[pd.DataFrame]:
    """One predictions frame per fold (training/predictions.py's columns: test split, α null, chosen false)."""
    if not folds:
        return []
    matrix = _matrix(folds, source, samples, features)
    frames = []
    for fold in folds:
        train, test = _rows(matrix, fold)
        scores = matrix.scores(train, test)
        frames.append(prediction_frame(fold, samples, "test", fold.test_keys, scores, model=model))
    return frames


def metric_rows(predictions: pd.DataFrame, classes: tuple[str, ...]) -> pd.DataFrame:
    """Metrics per fold, per dataset and pooled; nothing is chosen (α null, chosen false), as survey-cnn's."""
    indexed = predictions.assign(label=predictions["label"].map(classes.index),
                                 pred=predictions["pred"].map(classes.index))
    return summarise(indexed, classes, by=("split", "model")).assign(alpha=None, chosen=False)


# ------------------------------------------------------------------------------------------ the floor
def floor_rows(data, folds: list[Fold], features: str | None = None) -> pd.DataFrame:
    """The floor's predictions on exactly ``folds`` (the folds a model trained, skipped ones left out) of a
    protocol loaded by flows/protocol.py load_protocol (``data``): nearest centroid on ``features`` (default
    ``floor_features``: flow u, v, or the apex pixels where there is no flow), model 'floor'."""
    features = features or floor_features(data.source)
    frames = predictions(list(folds), data.source, data.samples, features, model=FLOOR) if features else []
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def floor(data, folds: list[Fold]) -> dict:
    """The floor on ``folds``: its metrics and predictions (empty where there are no folds, or no flow or apex
    images to read), its seconds and its ``input`` (``describe_input``; None where it had none)."""
    started = time.perf_counter()
    features = floor_features(data.source)
    rows = floor_rows(data, folds, features) if features else pd.DataFrame()
    metrics = metric_rows(rows, folds[0].classes) if len(rows) else pd.DataFrame()
    return {"metrics": metrics, "predictions": rows, "seconds": round(time.perf_counter() - started, 3),
            "input": describe_input(data.source, features) if features else None}


# ------------------------------------------------------------------------------------------ the model
def _trainable(fold: Fold, samples: pd.DataFrame) -> str | None:
    """Why a fold can't be scored (fewer than two classes among its training samples), or None."""
    present = {samples.at[k, fold.label_column] for k in training_keys(fold)}
    if len(present) < 2:
        return f"its training samples hold {len(present)} class(es): a nearest centroid needs 2"
    return None


def plan(data, config: CentroidConfig, protocol: str, dataset: str | None, class_set: str | None = None) -> RunPlan:
    """Every fold of the protocol; nothing is trained or chosen (the notes say so)."""
    _selection(data.source, config.features)  # the features' arrays and channels are there, or one line
    notes = {"excluded_samples": dict(sorted(data.excluded.items())), "skipped_folds": {},
             "sample_list": data.sample_list, "schedule": "nothing trained or chosen: class means of the training "
             f"samples, features {config.features}, each channel scaled on the training samples only",
             "input": describe_input(data.source, config.features), "leaky": protocol == "lovo"}
    from merflow.training import run as protocol_run  # run.py imports stages.py (torch); the computation needs neither

    messages = protocol_run.notes_messages(notes | {"fold_shortfalls": {}, "feature_mismatch": []})
    return RunPlan(data.folds, notes, data.identity() | {"model": NAME}, messages,
                   {"model": NAME, **config.to_dict()}, protocol == "lovo")


def prepare(data, config: CentroidConfig, checkpoints) -> None:
    """Nothing to do before the folds."""
    return None


def run_folds(data, folds: list[Fold], config: CentroidConfig, checkpoints=None, *, prepared=None,
              on_fold=None) -> list[FoldResult]:
    """Score ``folds`` (registry interface): nothing is trained or chosen, so nothing is checkpointed. Folds
    whose training samples hold fewer than two classes come back skipped, with the reason."""
    problems = {fold.name: _trainable(fold, data.samples) for fold in folds}
    scored = iter(predictions([f for f in folds if not problems[f.name]], data.source, data.samples, config.features))
    outcomes = []
    for index, fold in enumerate(folds, start=1):
        problem = problems[fold.name]
        outcomes.append(FoldResult(fold, None, {}, problem) if problem else FoldResult(fold, next(scored), {}))
        if on_fold:
            on_fold(index, len(folds), fold)
    return outcomes


def smoke_step(seed: int = 0) -> dict:
    """The registry's tiny test. A nearest centroid has no optimisation step; its one update is adding
    samples to the class means: centroids of 8 random samples, then of 4 more. ``loss``: the cross-entropy
    of the softmax of the scores (minus distances) on the first 8, ``change``: how far the centroids moved
    (norm), ``logits``: the scores' shape."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(12, 2, 6, 6)).astype(np.float32)
    y = np.arange(12) % 4
    scale = FlowScale.fit(x[:8])
    scaled = scale.apply(x)
    scores = centroid_scores(scaled[:8], y[:8], scaled[:8], 4)
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = float(-log_probabilities[np.arange(8), y[:8]].mean())
    before, _ = class_means(scaled[:8], y[:8], 4)
    after, _ = class_means(scaled, y, 4)
    return {"loss": loss, "change": float(np.linalg.norm(after - before)), "logits": scores.shape}
