"""Scores of class predictions: accuracy, UF1, UAR, per-class accuracy and the confusion matrix, for one
set of predictions (``scores``) or a results table pooled, per fold and per dataset (``summarise``).

Definitions follow MEGC2019 (docs/method.md "Metrics"), on predictions pooled over all folds:
- UF1 = mean over classes of F1_c = 2TP_c / (2TP_c + FP_c + FN_c). A class never true and never
  predicted has 0/0: it is left out of the mean (it says nothing about the model). A class never true
  but predicted scores F1 = 0 and counts: those predictions are errors.
- UAR = mean over the classes present in y_true of TP_c / N_c (recall); absent classes have no recall.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

SCORE_COLUMNS = ("n", "accuracy", "uf1", "uar", "per_class_accuracy", "confusion")


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> np.ndarray:
    """int64 matrix of shape (n_classes, n_classes): rows are the true class, columns the predicted one."""
    true = np.asarray(y_true, dtype=np.int64).ravel()
    pred = np.asarray(y_pred, dtype=np.int64).ravel()
    if true.shape != pred.shape:
        raise ValueError(f"y_true has {true.size} labels but y_pred has {pred.size}")
    if n_classes < 1:
        raise ValueError(f"n_classes must be at least 1, got {n_classes}")
    for name, values in (("y_true", true), ("y_pred", pred)):
        if values.size and (values.min() < 0 or values.max() >= n_classes):
            raise ValueError(f"{name} holds class indices outside [0, {n_classes}): "
                             f"{sorted(set(values[(values < 0) | (values >= n_classes)].tolist()))}")
    counts = np.bincount(true * n_classes + pred, minlength=n_classes * n_classes)
    return counts.reshape(n_classes, n_classes).astype(np.int64)


def scores(y_true: Sequence[int], y_pred: Sequence[int], classes: Sequence[str]) -> dict:
    """n, accuracy, UF1, UAR, per-class accuracy (recall; nan for a class absent from y_true), confusion.

    Scores with nothing to average over (no predictions) are nan.
    """
    classes = list(classes)
    matrix = confusion_matrix(y_true, y_pred, len(classes))
    n = int(matrix.sum())
    true_positives = np.diag(matrix).astype(float)
    support = matrix.sum(axis=1)       # N_c = TP + FN
    predicted = matrix.sum(axis=0)     # TP + FP
    f1_denominator = support + predicted  # 2TP + FP + FN
    scored = f1_denominator > 0
    present = support > 0
    recall = np.divide(true_positives, support, out=np.full(len(classes), np.nan), where=present)
    return {
        "n": n,
        "accuracy": float(true_positives.sum() / n) if n else float("nan"),
        "uf1": float(np.mean(2 * true_positives[scored] / f1_denominator[scored])) if scored.any() else float("nan"),
        "uar": float(np.mean(recall[present])) if present.any() else float("nan"),
        "per_class_accuracy": {c: float(r) for c, r in zip(classes, recall)},
        "confusion": matrix.tolist(),
    }


def summarise(predictions: pd.DataFrame, classes: Sequence[str], by: Sequence[str] = ()) -> pd.DataFrame:
    """Scores per group of ``by`` (e.g. model, alpha): one row with scope "pooled" (key "all": every fold's
    predictions together, the MEGC convention), one per fold (scope "fold", key = fold name) and one per
    dataset (scope "dataset", key = dataset: the breakdown of a composite).

    ``predictions`` has integer class indices "label" and "pred", plus "fold", "dataset" and the ``by``
    columns. Groups whose ``by`` value is missing (e.g. alpha for a model without fusion) are kept.
    """
    by = list(by)
    missing = [c for c in ("label", "pred", "fold", "dataset", *by) if c not in predictions.columns]
    if missing:
        raise ValueError(f"predictions lack columns {missing}")
    groups = predictions.groupby(by, sort=True, dropna=False) if by else [((), predictions)]
    rows = []
    for group_values, group in groups:
        group_columns = dict(zip(by, group_values))
        parts = [("pooled", "all", group),
                 *(("fold", fold, part) for fold, part in group.groupby("fold", sort=True)),
                 *(("dataset", dataset, part) for dataset, part in group.groupby("dataset", sort=True))]
        rows.extend(group_columns | {"scope": scope, "key": key} | scores(part["label"], part["pred"], classes)
                    for scope, key, part in parts)
    return pd.DataFrame(rows, columns=[*by, "scope", "key", *SCORE_COLUMNS])
