"""Per-fold selection of a search's configuration and α: chosen on each fold's validation split only."""

import numpy as np
import pandas as pd
import pytest

from merflow.training.selection import select_per_fold, selection_choices

CLASSES = ("negative", "positive", "surprise")


def _predictions(seed: int = 0) -> pd.DataFrame:
    """Two configurations (shots 1 and 5) x α 0.5 / 1.0 on three folds, 6 validation and 3 test samples each."""
    rng = np.random.default_rng(seed)
    rows = []
    for fold in ("f1", "f2", "f3"):
        for split, n in (("validation", 6), ("test", 3)):
            labels = rng.choice(CLASSES, size=n)
            for trial, shots in (("c_one", 1), ("c_five", 5)):
                for model, alpha in (("micro", None), ("macro", None), ("fused", 0.5), ("fused", 1.0)):
                    preds = [label if rng.random() < 0.6 else CLASSES[(CLASSES.index(label) + 1) % 3]
                             for label in labels]
                    rows += [{"trial": trial, "shots": shots, "fold": fold, "split": split, "model": model,
                              "alpha": alpha, "sample_key": f"{fold}/{split}/{i}", "dataset": "casme2",
                              "subject_key": f"{fold}-{split}", "label": label, "pred": pred}
                             for i, (label, pred) in enumerate(zip(labels, preds))]
    return pd.DataFrame(rows)


def _validation_accuracy(predictions, fold, model, trial, alpha):
    rows = predictions[(predictions["fold"] == fold) & (predictions["model"] == model) &
                       (predictions["trial"] == trial) & (predictions["split"] == "validation")]
    rows = rows[rows["alpha"].isna()] if alpha != alpha or alpha is None else rows[rows["alpha"] == alpha]
    return (rows["label"] == rows["pred"]).mean()


def test_each_fold_takes_its_best_validation_variant():
    predictions = _predictions()
    choices = selection_choices(select_per_fold(predictions, CLASSES))
    assert len(choices) == 3 * 3
    for choice in choices.itertuples():
        chosen = _validation_accuracy(predictions, choice.fold, choice.model, choice.chosen_from, choice.alpha)
        for trial in ("c_one", "c_five"):
            for alpha in ((None,) if choice.model != "fused" else (0.5, 1.0)):
                assert chosen >= _validation_accuracy(predictions, choice.fold, choice.model, trial, alpha)


def test_test_labels_change_no_choice():
    predictions = _predictions()
    shuffled = predictions.copy()
    test = shuffled["split"] == "test"
    shuffled.loc[test, "label"] = shuffled.loc[test, "label"].map(lambda c: CLASSES[(CLASSES.index(c) + 1) % 3])
    shuffled.loc[test, "pred"] = shuffled.loc[test, "pred"].sample(frac=1, random_state=3).to_numpy()
    assert selection_choices(select_per_fold(predictions, CLASSES)).equals(
        selection_choices(select_per_fold(shuffled, CLASSES)))


def test_another_folds_validation_changes_no_choice_of_this_fold():
    predictions = _predictions()
    changed = predictions.copy()
    other = (changed["fold"] == "f2") & (changed["split"] == "validation")
    changed.loc[other, "pred"] = changed.loc[other, "label"]  # fold f2 becomes perfect for every variant
    before, after = (selection_choices(select_per_fold(p, CLASSES)) for p in (predictions, changed))
    assert before[before["fold"] != "f2"].equals(after[after["fold"] != "f2"])


def test_ties_go_to_fewer_shots_then_less_fusion():
    predictions = _predictions()
    tied = predictions.assign(pred=predictions["label"])  # every variant perfect
    choices = selection_choices(select_per_fold(tied, CLASSES))
    assert set(choices["chosen_from"]) == {"c_one"}
    assert set(choices.loc[choices["model"] == "fused", "alpha"]) == {0.5}


def test_selected_rows_carry_validation_and_test_of_the_chosen_variant():
    selected = select_per_fold(_predictions(), CLASSES)
    assert set(selected["trial"]) == {"selected"}
    per_fold = selected.groupby(["fold", "model"])
    assert (per_fold["chosen_from"].nunique() == 1).all()
    assert (selected.groupby(["fold", "model", "split"]).size() == selected["split"].map(
        {"validation": 6, "test": 3}).groupby([selected["fold"], selected["model"], selected["split"]]).first()).all()
    with pytest.raises(ValueError, match="select by"):
        select_per_fold(_predictions(), CLASSES, by="loss")
