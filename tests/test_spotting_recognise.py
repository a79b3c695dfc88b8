"""Spot-then-recognise's classifier (training/spotting/recognise.py): trained on other subjects' clips."""

import numpy as np
import pytest

from merflow.training.spotting.recognise import classify

CLASSES = ("negative", "positive", "surprise")


def test_nearest_centroid_gives_the_class_of_the_nearest_mean_flow():
    rng = np.random.default_rng(0)
    means = {"negative": -1.0, "positive": 0.0, "surprise": 1.0}
    labels = [c for c in CLASSES for _ in range(5)]
    train = np.stack([np.full((4, 6, 6), means[c]) + rng.normal(0, 0.1, (4, 6, 6)) for c in labels])
    test = np.stack([np.full((4, 6, 6), 0.95), np.full((4, 6, 6), -0.9)])
    predicted, scores = classify("nearest-centroid", train, labels, test, CLASSES)
    assert predicted == ["surprise", "negative"] and scores.shape == (2, 3)


def test_without_training_clips_nothing_is_classified_and_an_unknown_classifier_is_named():
    predicted, scores = classify("nearest-centroid", np.zeros((0, 4, 6, 6)), [], np.zeros((2, 4, 6, 6)), CLASSES)
    assert predicted == [None, None] and np.isnan(scores).all()
    with pytest.raises(ValueError, match="unknown classifier 'svm'"):
        classify("svm", np.zeros((1, 4, 6, 6)), ["negative"], np.zeros((1, 4, 6, 6)), CLASSES)
