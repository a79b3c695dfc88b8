"""The MEGC spotting metric and STRS on hand-made cases: each quirk of the official STRS evaluator
(genbing99/STRS-Metric@eb86468 strs_metric.py) is shown against the corrected variant."""

import math

import pandas as pd
import pytest

from merflow.training.spotting.metrics import (
    analysis_scores,
    iou,
    match_intervals,
    match_video,
    megc_counts,
    prf,
    strs_corrected,
    strs_official,
)

CLASSES = ("negative", "positive", "surprise")


def test_iou_counts_inclusive_frames():
    assert iou((0, 9), (0, 9)) == 1.0
    assert iou((0, 9), (5, 14)) == pytest.approx(5 / 15)
    assert iou((0, 4), (4, 8)) == pytest.approx(1 / 9)     # one shared frame
    assert iou((0, 4), (5, 8)) == 0.0


def test_megc_matching_is_one_to_one_in_order_of_score():
    truths = [(0, 9)]
    found = match_video([(1, 10, 0.2), (0, 9, 0.9)], truths)
    assert found == [(None, pytest.approx(9 / 11)), (0, 1.0)]   # the higher score takes the interval


def test_a_prediction_looks_only_at_its_best_interval_as_the_greedy_matcher_does():
    truths = [(0, 9), (3, 12)]
    # The second prediction's best interval (0..9, IoU 0.82) is taken: a false positive, although 3..12 (0.67) is free.
    found = match_video([(0, 9, 0.9), (1, 10, 0.5)], truths)
    assert [t for t, _ in found] == [0, None]
    # Its best is free: a true positive.
    assert [t for t, _ in match_video([(0, 9, 0.9), (2, 11, 0.5)], truths)] == [0, 1]


def test_megc_counts_per_type_and_overall():
    predictions = pd.DataFrame({"video_key": ["v", "v", "v", "w"], "type": ["micro", "micro", "macro", "micro"],
                                "start": [10, 50, 100, 0], "end": [19, 59, 139, 9], "score": [1.0, 1.0, 1.0, 1.0]})
    truths = pd.DataFrame({"video_key": ["v", "v", "v"], "type": ["micro", "macro", "macro"],
                           "onset": [11, 100, 200], "offset": [20, 140, 260], "interval_key": ["a", "b", "c"]})
    matched_preds, matched_truths = match_intervals(predictions, truths)
    assert matched_preds["matched"].tolist() == ["a", None, "b", None]
    assert matched_truths["found"].tolist() == [True, True, False]
    rows = {r["type"]: r for r in megc_counts(matched_preds, matched_truths, ("micro", "macro"))}
    assert (rows["micro"]["tp"], rows["micro"]["fp"], rows["micro"]["fn"]) == (1, 2, 0)
    assert (rows["macro"]["tp"], rows["macro"]["fp"], rows["macro"]["fn"]) == (1, 0, 1)
    assert (rows["overall"]["tp"], rows["overall"]["fp"], rows["overall"]["fn"]) == (2, 2, 1)
    assert rows["overall"]["f1"] == pytest.approx(prf(2, 2, 1)[2])


def test_a_micro_prediction_never_matches_a_macro_interval():
    predictions = pd.DataFrame({"video_key": ["v"], "type": ["micro"], "start": [0], "end": [9], "score": [1.0]})
    truths = pd.DataFrame({"video_key": ["v"], "type": ["macro"], "onset": [0], "offset": [9], "interval_key": ["a"]})
    matched_preds, matched_truths = match_intervals(predictions, truths)
    assert not matched_preds["tp"].any() and not matched_truths["found"].any()


def frame(rows):
    return pd.DataFrame(rows, columns=["subject", "video", "onset", "offset", "emotion"])


def corrected(predictions: pd.DataFrame, truths: pd.DataFrame) -> dict:
    preds = pd.DataFrame({"video_key": predictions["video"], "type": "micro", "start": predictions["onset"],
                          "end": predictions["offset"], "score": 1.0, "emotion": predictions["emotion"]})
    gts = pd.DataFrame({"video_key": truths["video"], "type": "micro", "onset": truths["onset"],
                        "offset": truths["offset"], "interval_key": [f"t{i}" for i in range(len(truths))],
                        "emotion": truths["emotion"]})
    matched_preds, matched_truths = match_intervals(preds, gts)
    return strs_corrected(matched_preds, matched_truths, CLASSES)


def test_quirk_one_prediction_may_match_several_intervals():
    truths = frame([("s1", "v1", 0, 9, "negative"), ("s1", "v1", 1, 10, "positive")])
    predictions = frame([("s1", "v1", 0, 10, "negative")])
    official = strs_official(predictions, truths, CLASSES)
    assert (official["tp"], official["fp"], official["fn"]) == (2, 0, 0)   # one prediction, two true positives
    fixed = corrected(predictions, truths)
    assert (fixed["tp"], fixed["fp"], fixed["fn"]) == (1, 0, 1)


def test_quirk_a_subject_without_a_prediction_is_not_counted():
    truths = frame([("s1", "v1", 0, 9, "negative"), ("s2", "v2", 0, 9, "positive"), ("s2", "v2", 30, 39, "surprise")])
    predictions = frame([("s1", "v1", 0, 9, "negative")])
    official = strs_official(predictions, truths, CLASSES)
    assert (official["tp"], official["fn"], official["recall"]) == (1, 0, 1.0)   # s2's two intervals are never missed
    fixed = corrected(predictions, truths)
    assert (fixed["fn"], fixed["recall"]) == (2, pytest.approx(1 / 3))


def test_quirk_a_prediction_on_a_video_without_ground_truth_is_ignored():
    truths = frame([("s1", "v1", 0, 9, "negative")])
    predictions = frame([("s1", "v1", 0, 9, "negative"), ("s1", "v9", 0, 9, "negative")])
    assert strs_official(predictions, truths, CLASSES)["fp"] == 0
    assert corrected(predictions, truths)["fp"] == 1


def test_quirk_one_class_classified_right_scores_zero():
    truths = frame([("s1", "v1", 0, 9, "negative"), ("s1", "v1", 30, 39, "negative")])
    predictions = frame([("s1", "v1", 0, 9, "negative"), ("s1", "v1", 30, 39, "negative")])
    official = strs_official(predictions, truths, CLASSES)
    assert official["f1"] == 1.0
    # confusion_matrix(gt, pred).ravel() has one cell when every pair is "negative": the evaluator's except
    # gives the class P = R = 0, the other classes have no pairs either: the analysis F1 is 0 / 0.
    assert official["analysis_precision"] == 0.0 and math.isnan(official["analysis_f1"]) and math.isnan(official["strs"])
    fixed = corrected(predictions, truths)
    assert fixed["analysis_f1"] == 1.0 and fixed["strs"] == 1.0


def test_quirk_its_uar_is_the_mean_precision():
    truths = frame([("s1", "v1", 10 * i, 10 * i + 9, e) for i, e in enumerate(["negative", "negative", "negative",
                                                                                "positive"])])
    predictions = frame([("s1", "v1", 10 * i, 10 * i + 9, e) for i, e in enumerate(["negative", "negative", "positive",
                                                                                     "positive"])])
    official = strs_official(predictions, truths, CLASSES)
    # per class: negative P 2/2 R 2/3, positive P 1/2 R 1/1, surprise (no pair) P = R = 0
    assert official["analysis_precision"] == pytest.approx(0.5)
    assert official["analysis_recall"] == pytest.approx((2 / 3 + 1) / 3)
    assert official["analysis_uar"] == official["analysis_precision"]
    fixed = corrected(predictions, truths)
    assert fixed["analysis_uar"] == pytest.approx((2 / 3 + 1) / 2)   # the mean recall of the classes with truth
    assert fixed["analysis_precision"] == pytest.approx((1 + 0.5) / 2)


def test_strs_is_spotting_f1_times_analysis_f1():
    truths = frame([("s1", "v1", 0, 9, "negative"), ("s1", "v1", 30, 39, "positive"), ("s1", "v1", 60, 69, "surprise")])
    predictions = frame([("s1", "v1", 0, 9, "negative"), ("s1", "v1", 30, 39, "surprise"), ("s1", "v1", 90, 99, "positive")])
    for scores in (strs_official(predictions, truths, CLASSES), corrected(predictions, truths)):
        assert scores["f1"] == pytest.approx(2 / 3)
        assert scores["strs"] == pytest.approx(scores["f1"] * scores["analysis_f1"])


def test_analysis_scores_leave_out_classes_nobody_has():
    scores = analysis_scores(["negative", "negative"], ["negative", "positive"], CLASSES)
    # negative: P 1, R 1/2; positive: predicted once, never true: P 0 (no truth: no recall); surprise: left out
    assert scores["analysis_precision"] == pytest.approx(0.5)
    assert scores["analysis_recall"] == pytest.approx(0.5)
    assert scores["analysis_uar"] == pytest.approx(0.5)
