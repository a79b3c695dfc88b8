import math

import numpy as np
import pandas as pd
import pytest

from merflow.training.metrics import confusion_matrix, scores, summarise

ABC = ("a", "b", "c")


def test_three_classes_hand_computed():
    y_true = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    y_pred = [0, 0, 0, 1, 1, 1, 2, 2, 2, 1]
    # confusion (rows true, columns predicted):
    #   a: [3, 1, 0]   b: [0, 2, 1]   c: [0, 1, 2]
    # a: TP 3, FP 0, FN 1 -> F1 = 6 / (6 + 0 + 1) = 6/7,  recall 3/4
    # b: TP 2, FP 2, FN 1 -> F1 = 4 / (4 + 2 + 1) = 4/7,  recall 2/3
    # c: TP 2, FP 1, FN 1 -> F1 = 4 / (4 + 1 + 1) = 2/3,  recall 2/3
    # UF1 = (6/7 + 4/7 + 2/3) / 3 = 44/63;  UAR = (3/4 + 2/3 + 2/3) / 3 = 25/36;  accuracy = 7/10
    result = scores(y_true, y_pred, ABC)
    assert result["n"] == 10
    assert result["accuracy"] == pytest.approx(7 / 10)
    assert result["uf1"] == pytest.approx(44 / 63)
    assert result["uar"] == pytest.approx(25 / 36)
    assert result["per_class_accuracy"] == pytest.approx({"a": 3 / 4, "b": 2 / 3, "c": 2 / 3})
    assert result["confusion"] == [[3, 1, 0], [0, 2, 1], [0, 1, 2]]


def test_class_absent_and_never_predicted_is_left_out():
    # a: [1, 1, 0]  b: [0, 2, 0]  c: never true, never predicted
    # a: F1 = 2 / (2 + 0 + 1) = 2/3;  b: F1 = 4 / (4 + 1 + 0) = 4/5;  c: 0/0, left out
    # UF1 = (2/3 + 4/5) / 2 = 11/15;  UAR = (1/2 + 2/2) / 2 = 3/4
    result = scores([0, 0, 1, 1], [0, 1, 1, 1], ABC)
    assert result["uf1"] == pytest.approx(11 / 15)
    assert result["uar"] == pytest.approx(3 / 4)
    assert math.isnan(result["per_class_accuracy"]["c"])


def test_class_absent_but_predicted_counts_in_uf1_only():
    # a: [1, 0, 1]  b: [0, 2, 0]  c: never true, predicted once (a false positive)
    # a: F1 = 2 / (2 + 0 + 1) = 2/3;  b: F1 = 4 / 4 = 1;  c: F1 = 0 / (0 + 1 + 0) = 0, counted
    # UF1 = (2/3 + 1 + 0) / 3 = 5/9;  UAR ignores c: (1/2 + 1) / 2 = 3/4
    result = scores([0, 0, 1, 1], [0, 2, 1, 1], ABC)
    assert result["uf1"] == pytest.approx(5 / 9)
    assert result["uar"] == pytest.approx(3 / 4)
    assert result["accuracy"] == pytest.approx(3 / 4)


def test_perfect_and_all_wrong():
    perfect = scores([0, 1, 2, 2], [0, 1, 2, 2], ABC)
    assert (perfect["accuracy"], perfect["uf1"], perfect["uar"]) == (1.0, 1.0, 1.0)
    wrong = scores([0, 1, 2, 2], [1, 2, 0, 0], ABC)
    assert (wrong["accuracy"], wrong["uf1"], wrong["uar"]) == (0.0, 0.0, 0.0)
    assert wrong["per_class_accuracy"] == {"a": 0.0, "b": 0.0, "c": 0.0}


def test_confusion_rows_are_true_columns_predicted():
    matrix = confusion_matrix([0, 0, 1], [1, 1, 1], 3)
    assert matrix.dtype == np.int64 and matrix.shape == (3, 3)
    assert matrix[0, 1] == 2 and matrix[1, 1] == 1 and matrix.sum() == 3
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix([0, 3], [0, 0], 3)
    with pytest.raises(ValueError, match="labels"):
        confusion_matrix([0, 1], [0], 3)


def test_no_predictions_score_nan():
    result = scores([], [], ABC)
    assert result["n"] == 0 and math.isnan(result["accuracy"]) and math.isnan(result["uf1"])
    assert result["confusion"] == [[0] * 3] * 3


def _two_fold_predictions() -> pd.DataFrame:
    # classes x (0), y (1). Fold f1 (casme2): all x, all right. Fold f2 (samm): all y, one right.
    return pd.DataFrame({"fold": ["f1", "f1", "f2", "f2"], "dataset": ["casme2", "casme2", "samm", "samm"],
                         "label": [0, 0, 1, 1], "pred": [0, 0, 0, 1]})


def test_pooled_uf1_differs_from_mean_of_folds():
    table = summarise(_two_fold_predictions(), ("x", "y"))
    by_scope = {(r.scope, r.key): r for r in table.itertuples()}
    # f1: x F1 = 4/4 = 1; y never true nor predicted, left out          -> UF1 1
    # f2: x F1 = 0/(0 + 1 + 0) = 0; y F1 = 2/(2 + 0 + 1) = 2/3          -> UF1 1/3
    # mean of folds = (1 + 1/3) / 2 = 2/3
    # pooled [x: 2 right, 0 missed; y: 1 right, 1 called x]:
    #   x F1 = 4/(4 + 1 + 0) = 4/5; y F1 = 2/(2 + 0 + 1) = 2/3          -> UF1 (4/5 + 2/3)/2 = 11/15
    assert by_scope[("fold", "f1")].uf1 == pytest.approx(1.0)
    assert by_scope[("fold", "f2")].uf1 == pytest.approx(1 / 3)
    pooled = by_scope[("pooled", "all")]
    assert pooled.uf1 == pytest.approx(11 / 15)
    mean_of_folds = table.loc[table["scope"] == "fold", "uf1"].mean()
    assert mean_of_folds == pytest.approx(2 / 3) and pooled.uf1 != pytest.approx(mean_of_folds)
    assert pooled.uar == pytest.approx((1 + 1 / 2) / 2) and pooled.accuracy == pytest.approx(3 / 4)
    assert pooled.n == 4 and pooled.confusion == [[2, 0], [1, 1]]
    assert by_scope[("dataset", "samm")].per_class_accuracy == pytest.approx({"x": math.nan, "y": 0.5},
                                                                             nan_ok=True)
    assert list(table.columns) == ["scope", "key", "n", "accuracy", "uf1", "uar", "per_class_accuracy",
                                   "confusion"]


def test_summarise_groups_keep_missing_values():
    micro = _two_fold_predictions().assign(model="micro", alpha=np.nan)
    fused = _two_fold_predictions().assign(model="fused", alpha=0.5, pred=[0, 0, 1, 1])
    table = summarise(pd.concat([micro, fused]), ("x", "y"), by=("model", "alpha"))
    assert list(table.columns[:4]) == ["model", "alpha", "scope", "key"]
    assert len(table) == 2 * (1 + 2 + 2)  # per model: pooled, two folds, two datasets
    pooled = table[table["scope"] == "pooled"].set_index("model")
    assert pooled.loc["fused", "uf1"] == 1.0 and pooled.loc["micro", "uf1"] == pytest.approx(11 / 15)
    assert math.isnan(pooled.loc["micro", "alpha"])
    with pytest.raises(ValueError, match="lack columns"):
        summarise(micro.drop(columns="dataset"), ("x", "y"))
