"""How spotting is scored: the MEGC metric, and spot-then-recognise's STRS as the official evaluator computes
it (a faithful port, quirks included) beside a corrected one.

MEGC (ZOO.md section 2; HeyingGithub/Baseline-project-for-MEGC2020_spotting@7d186cf, and the
``MeanAveragePrecision2d`` SOFTNet and MEAN score with, genbing99/SoftNet-SpotME@dd43d1e
Utils/mean_average_precision utils.py ``compute_iou``, ``check_box``): intervals are inclusive frame sets,
IoU = inter / (len1 + len2 - inter) with inter = min(e1, e2) - max(s1, s2) + 1. Per video and type, the
predictions in order of falling score each look at the ground-truth interval of highest IoU (on a tie, the
last: ``argsort(iou)[::-1]``); it is a true positive when that IoU is at least 0.5 and the interval is not
matched yet (greedy, one to one), else a false positive; unmatched ground truth is a false negative.
Counts are pooled over the videos, per type, and "overall" pools both types.

STRS (genbing99/STRS-Metric@eb86468 strs_metric.py, ``Evaluator.evaluate_STRS``): F1 of spotting times F1
of the analysis (classification) of the spotted true positives. ``strs_official`` ports it line by line;
its quirks, each kept and tested (tests/test_spotting_metrics.py):

1. one prediction may match several ground-truth intervals (the inner loop does not stop at the first
   match), each a true positive;
2. the subjects scored are those with a prediction: a subject without one loses no false negatives, and
   predictions on a video absent from the ground truth are ignored;
3. no expression type: micro and macro intervals match each other (MEAN gives it micro only);
4. per class, ``confusion_matrix(gt, pred).ravel()`` fails when the true positives hold one class only in
   both lists (all of them that class, or none), and the class then scores precision and recall 0, even
   when every one was classified right;
5. the analysis F1 is 2 mean(P) mean(R) / (mean(P) + mean(R)) over the analysed classes, NaN when both are 0;
6. its "UAR" is the mean of the per-class precisions.

``strs_corrected`` keeps the definition (spotting F1 x analysis F1 of the true positives) and drops the
quirks: one-to-one MEGC matching of the given type, every video of the ground truth scored, per-class
counts computed directly (classes with neither ground truth nor prediction left out of the means), the
analysis F1 0 when precision and recall are, UAR the mean recall.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

from merflow.configs.spotting import MEGC_IOU


def iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    """IoU of two inclusive frame intervals (start, end)."""
    inter = min(a[1], b[1]) - max(a[0], b[0]) + 1
    if inter <= 0:
        return 0.0
    return inter / ((a[1] - a[0] + 1) + (b[1] - b[0] + 1) - inter)


def match_video(predictions: list[tuple[int, int, float]], truths: list[tuple[int, int]],
                iou_threshold: float = MEGC_IOU) -> list[tuple[int | None, float]]:
    """MEGC's greedy one-to-one matching in one video (one type): for each prediction (start, end, score),
    the index of the ground-truth interval it is a true positive of (None: a false positive) and the IoU."""
    result: list[tuple[int | None, float]] = [(None, 0.0)] * len(predictions)
    matched: set[int] = set()
    order = sorted(range(len(predictions)), key=lambda i: -predictions[i][2])
    for index in order:
        start, end, _ = predictions[index]
        if not truths:
            continue
        ious = [iou((start, end), truth) for truth in truths]
        best = len(ious) - 1 - int(np.argmax(ious[::-1]))   # argsort(iou)[::-1][0]: the last of the highest
        if ious[best] >= iou_threshold and best not in matched:
            matched.add(best)
            result[index] = (best, ious[best])
        else:
            result[index] = (None, ious[best])
    return result


def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Precision, recall, F1 (0 where undefined, as SOFTNet's and the STRS evaluator's calculate_metrics)."""
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def match_intervals(predictions: pd.DataFrame, truths: pd.DataFrame,
                    iou_threshold: float = MEGC_IOU) -> tuple[pd.DataFrame, pd.DataFrame]:
    """MEGC matching of every video and type. ``predictions``: video_key, type, start, end, score (any other
    columns kept); ``truths``: video_key, type, onset, offset, interval_key. Returns the predictions with
    ``matched`` (the interval_key, or None), ``iou`` and ``tp``, and the truths with ``matched_by`` (the
    prediction's row position) and ``found``."""
    predictions = predictions.reset_index(drop=True).copy()
    truths = truths.reset_index(drop=True).copy()
    predictions["matched"], predictions["iou"], predictions["tp"] = None, 0.0, False
    truths["matched_by"], truths["found"] = None, False
    for (video, kind), pred_rows in predictions.groupby(["video_key", "type"], sort=False):
        truth_rows = truths[(truths["video_key"] == video) & (truths["type"] == kind)]
        found = match_video(list(zip(pred_rows["start"], pred_rows["end"], pred_rows["score"])),
                            list(zip(truth_rows["onset"], truth_rows["offset"])), iou_threshold)
        for position, (truth, overlap) in zip(pred_rows.index, found):
            predictions.at[position, "iou"] = overlap
            if truth is not None:
                truth_index = truth_rows.index[truth]
                predictions.at[position, "matched"] = truths.at[truth_index, "interval_key"]
                predictions.at[position, "tp"] = True
                truths.at[truth_index, "matched_by"] = int(position)
                truths.at[truth_index, "found"] = True
    return predictions, truths


def megc_counts(predictions: pd.DataFrame, truths: pd.DataFrame, types: Iterable[str]) -> list[dict]:
    """Pooled counts and P, R, F1 per type and overall, from ``match_intervals``' output (predictions with
    ``tp``, truths with ``found``)."""
    rows = []
    totals = {"n_truth": 0, "n_pred": 0, "tp": 0}
    for kind in types:
        preds = predictions[predictions["type"] == kind]
        truth = truths[truths["type"] == kind]
        tp = int(preds["tp"].sum())
        counts = {"n_truth": int(len(truth)), "n_pred": int(len(preds)), "tp": tp}
        for name in totals:
            totals[name] += counts[name]
        rows.append({"type": kind, **counts})
    rows.append({"type": "overall", **totals})
    for row in rows:
        row["fp"], row["fn"] = row["n_pred"] - row["tp"], row["n_truth"] - row["tp"]
        row["precision"], row["recall"], row["f1"] = prf(row["tp"], row["fp"], row["fn"])
    return rows


# ---------------------------------------------------------------------------------------------- STRS
STRS_COLUMNS = ("subject", "video", "onset", "offset", "emotion")


def _confusion_counts(gt: list[int], pred: list[int]) -> tuple[int, int, int]:
    """(FP, FN, TP) as ``_, FP, FN, TP = confusion_matrix(gt, pred).ravel()`` gives them, or zeros where that
    unpacking fails (a 1x1 matrix: one value in both lists, or none at all), as the evaluator's ``except``."""
    values = set(gt) | set(pred)
    if len(values) < 2:
        return 0, 0, 0
    tp = sum(1 for g, p in zip(gt, pred) if g == 1 and p == 1)
    fp = sum(1 for g, p in zip(gt, pred) if g == 0 and p == 1)
    fn = sum(1 for g, p in zip(gt, pred) if g == 1 and p == 0)
    return fp, fn, tp


def strs_official(predictions: pd.DataFrame, truths: pd.DataFrame, analysis: Iterable[str] | None = None) -> dict:
    """The official STRS evaluator (genbing99/STRS-Metric@eb86468 ``evaluate_STRS``), quirks and all (module
    docstring). Both frames have ``subject``, ``video``, ``onset``, ``offset``, ``emotion``; ``analysis``: the
    analysed emotions (the ground truth's, by default, as there). Rows are visited in the frames' order."""
    analysis = set(truths["emotion"].dropna().unique()) if analysis is None else set(analysis)
    pairs: list[tuple[dict, dict]] = []
    false_positives = false_negatives = 0
    for subject in predictions["subject"].unique():
        subject_truths = truths[truths["subject"] == subject]
        for video in subject_truths["video"].unique():
            preds = predictions[(predictions["video"] == video) & (predictions["subject"] == subject)]
            gts = truths[(truths["video"] == video) & (truths["subject"] == subject)]
            matched: set = set()
            for _, pred in preds.iterrows():
                hit = False
                for gt_row, gt in gts.iterrows():
                    overlap = iou((int(pred["onset"]), int(pred["offset"])), (int(gt["onset"]), int(gt["offset"])))
                    if overlap >= MEGC_IOU and gt_row not in matched:
                        pairs.append((pred.to_dict(), gt.to_dict()))
                        matched.add(gt_row)
                        hit = True
                if not hit:
                    false_positives += 1
            false_negatives += len(gts) - len(matched)
    tp_spot = len(pairs)
    p_spot, r_spot, f1_spot = prf(tp_spot, false_positives, false_negatives)
    analysed = [(pred, gt) for pred, gt in pairs if gt["emotion"] in analysis]
    precisions, recalls, f1s = [], [], []
    for emotion in analysis:
        gt_bin = [1 if gt["emotion"] == emotion else 0 for _, gt in analysed]
        pred_bin = [1 if pred["emotion"] == emotion else 0 for pred, _ in analysed]
        fp, fn, tp = _confusion_counts(gt_bin, pred_bin)
        precision, recall, f1 = prf(tp, fp, fn)
        precisions.append(precision)
        recalls.append(recall)
        f1s.append(f1)
    mean_p = float(np.mean(precisions)) if precisions else math.nan
    mean_r = float(np.mean(recalls)) if recalls else math.nan
    f1_analysis = 2 * mean_p * mean_r / (mean_p + mean_r) if mean_p + mean_r else math.nan
    return {"tp": tp_spot, "fp": false_positives, "fn": false_negatives, "precision": p_spot, "recall": r_spot,
            "f1": f1_spot, "analysis_n": len(analysed), "analysis_precision": mean_p, "analysis_recall": mean_r,
            "analysis_f1": f1_analysis, "analysis_uf1": float(np.mean(f1s)) if f1s else math.nan,
            "analysis_uar": mean_p, "strs": f1_spot * f1_analysis}


def analysis_scores(labels: list[str], predicted: list[str | None], classes: Iterable[str]) -> dict:
    """Per-class precision and recall of classified true positives, their means, the analysis F1
    (2 P R / (P + R), 0 where both are 0), UF1 (mean per-class F1) and UAR (mean recall over the classes in
    ``labels``); classes in neither list are left out."""
    present = [c for c in classes if c in labels or c in predicted]
    precisions, recalls, f1s = [], [], []
    for c in present:
        tp = sum(1 for t, p in zip(labels, predicted) if t == c and p == c)
        fp = sum(1 for t, p in zip(labels, predicted) if t != c and p == c)
        fn = sum(1 for t, p in zip(labels, predicted) if t == c and p != c)
        precision, recall, f1 = prf(tp, fp, fn)
        precisions.append(precision)
        recalls.append(recall if c in labels else None)
        f1s.append(f1)
    mean_p = float(np.mean(precisions)) if precisions else 0.0
    with_truth = [r for r in recalls if r is not None]
    mean_r = float(np.mean(with_truth)) if with_truth else 0.0
    f1 = 2 * mean_p * mean_r / (mean_p + mean_r) if mean_p + mean_r else 0.0
    return {"analysis_n": len(labels), "analysis_precision": mean_p, "analysis_recall": mean_r, "analysis_f1": f1,
            "analysis_uf1": float(np.mean(f1s)) if f1s else 0.0, "analysis_uar": mean_r}


def strs_corrected(predictions: pd.DataFrame, truths: pd.DataFrame, classes: Iterable[str]) -> dict:
    """STRS without the official evaluator's quirks (module docstring): ``match_intervals``' output of one
    type (predictions with ``tp``, ``matched`` and ``emotion``; truths with ``found`` and ``emotion``), every
    video of ``truths`` scored; the analysis over the matched pairs whose true class is in ``classes``."""
    tp = int(predictions["tp"].sum())
    precision, recall, f1 = prf(tp, len(predictions) - tp, len(truths) - tp)
    classes = tuple(classes)
    truth_class = dict(zip(truths["interval_key"], truths["emotion"]))
    pairs = [(truth_class.get(key), emotion) for key, emotion, hit in
             zip(predictions["matched"], predictions["emotion"], predictions["tp"]) if hit]
    pairs = [(label, emotion) for label, emotion in pairs if label in classes]
    scores = analysis_scores([label for label, _ in pairs], [emotion for _, emotion in pairs], classes)
    return {"tp": tp, "fp": len(predictions) - tp, "fn": len(truths) - tp, "precision": precision, "recall": recall,
            "f1": f1, **scores, "strs": f1 * scores["analysis_f1"]}
