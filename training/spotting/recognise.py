"""Spot-then-recognise: the class of each spotted interval, from a recognition model trained on the short clips
of the other subjects.

The clips are the annotated micro-expression intervals of the training subjects with one of MEAN's three
classes (negative, positive, surprise: genbing99/MEAN_Spot-then-recognize@9009b5c prepare_training.py);
each clip's features (the flow from its onset to its apex, tasks/features.py, the apex spotted where the
sheet has none) are computed by the caller, and so are the spotted intervals' (onset = the interval's
start, apex = the frame of most motion from it: MEAN's rule where no apex is known). The classifier is a
parameter (``CLASSIFIERS``): ``nearest-centroid`` (training/models/nearest_centroid.py's, on the flow's
u and v, each channel scaled by its largest |value| over the training clips only). ``fit_nearest_centroid``
and ``centroid_scores_of`` are its two halves: a bundle (training/deploy.py) keeps what the first returns.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from merflow.configs.features import FLOW_CHANNELS
from merflow.training.data import FlowScale
from merflow.training.models.nearest_centroid import class_means, distance_scores

# u and v of the computed flow (u, v, magnitude, strain): what the floor reads of a flow.
UV = [FLOW_CHANNELS.index("u"), FLOW_CHANNELS.index("v")]


def fit_nearest_centroid(train_x: np.ndarray, train_y: list[str], classes: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The fitted classifier as arrays: ``divisors`` (the flow scale of u, v over the training clips), ``means``
    (classes, 2 * H * W: each class's mean scaled flow, NaN for a class without clips) and ``counts``."""
    train = np.asarray(train_x, dtype=np.float32)[:, UV]
    scale = FlowScale.fit(train)
    labels = np.array([classes.index(y) for y in train_y], dtype=np.int64)
    means, counts = class_means(scale.apply(train), labels, len(classes))
    return {"divisors": np.asarray(scale.divisors, np.float32), "means": means, "counts": counts}


def centroid_scores_of(fitted: dict[str, np.ndarray], test_x: np.ndarray) -> np.ndarray:
    """Scores (len(test_x), classes) of clips' flows against a ``fit_nearest_centroid`` result: minus the distance
    to each class's mean (-inf for a class without clips)."""
    test = np.asarray(test_x, dtype=np.float32)[:, UV]
    scaled = test / np.asarray(fitted["divisors"], np.float32).reshape(1, -1, 1, 1)
    return distance_scores(fitted["means"], fitted["counts"], scaled)


def nearest_centroid(train_x: np.ndarray, train_y: list[str], test_x: np.ndarray, classes: tuple[str, ...]
                     ) -> np.ndarray:
    """Scores (len(test_x), classes): minus the distance to each class's mean flow u, v, scaled on training clips."""
    return centroid_scores_of(fit_nearest_centroid(train_x, train_y, classes), test_x)


CLASSIFIERS: dict[str, Callable[[np.ndarray, list[str], np.ndarray, tuple[str, ...]], np.ndarray]] = {
    "nearest-centroid": nearest_centroid,
}


def classify(classifier: str, train_x: np.ndarray, train_y: list[str], test_x: np.ndarray,
             classes: tuple[str, ...]) -> tuple[list[str | None], np.ndarray]:
    """(class of each test interval, scores (n, classes)); no class where the training clips hold none."""
    if classifier not in CLASSIFIERS:
        raise ValueError(f"unknown classifier {classifier!r}; the classifiers are {', '.join(CLASSIFIERS)}")
    if not len(test_x):
        return [], np.zeros((0, len(classes)), np.float32)
    if not len(train_x):
        return [None] * len(test_x), np.full((len(test_x), len(classes)), np.nan, np.float32)
    scores = CLASSIFIERS[classifier](train_x, train_y, test_x, classes)
    return [classes[int(np.argmax(row))] for row in scores], scores.astype(np.float32)
