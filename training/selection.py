"""Choosing among the configurations of a search without looking at test subjects (nested selection).

A search trains several configurations (shots, learning rates) on every fold and scores each on
the whole α grid. Which one to report is itself a setting, so it is chosen like the epochs and α
are: **in each fold, on that fold's validation subjects only**. Pooling the validation scores of all
folds to choose one global configuration would leak: a subject that validates in one fold is the
test subject of another, so its labels would pick the setting that is then tested on it.

``select_per_fold`` takes a search's predictions (every completed (configuration, fold) trial, both
splits, every model and α) and returns, per fold and model, the validation and test rows of the
variant that scored best on validation, relabelled as the trial ``selected``. Test rows ride along;
their labels never enter a comparison.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from merflow.configs.results import SELECTED
from merflow.configs.search import SELECTION_METRICS
from merflow.training.metrics import scores


def _validation_score(rows: pd.DataFrame, classes: tuple[str, ...], by: str) -> float:
    if rows.empty:
        return float("nan")
    value = scores(rows["label"].map(classes.index), rows["pred"].map(classes.index), classes)[by]
    return float(value)


def select_per_fold(predictions: pd.DataFrame, classes: tuple[str, ...], by: str = "accuracy") -> pd.DataFrame:
    """Per (fold, model), the rows of the (trial, α) scoring best on the fold's validation split.

    Ties go to fewer shots, then the trial id, then the smaller α (less fusion): a fixed order, so
    the choice is repeatable. A fold without validation subjects takes the first variant in that
    order. The returned rows have ``trial = "selected"`` and ``chosen_from`` = the chosen trial.
    """
    if by not in SELECTION_METRICS:
        raise ValueError(f"select by one of {SELECTION_METRICS}, not {by!r}")
    if predictions.empty:
        return predictions.assign(chosen_from=pd.Series(dtype=str))
    frame = predictions.assign(alpha=predictions["alpha"].astype(float))
    chosen = []
    for (_fold, _model), rows in frame.groupby(["fold", "model"], sort=True):
        candidates = []
        for (trial, alpha), variant in rows.groupby(["trial", "alpha"], sort=False, dropna=False):
            validation = variant[variant["split"] == "validation"]
            score = _validation_score(validation, classes, by)
            shots = int(variant["shots"].iloc[0]) if variant["shots"].notna().all() else 0
            # α: a model without fusion (no α) first, then the smaller α
            order = (0, 0.0) if pd.isna(alpha) else (1, float(alpha))
            candidates.append((-score if score == score else np.inf, shots, str(trial), order, variant))
        candidates.sort(key=lambda c: c[:4])
        best = candidates[0]
        chosen.append(best[4].assign(chosen_from=best[2]))
    selected = pd.concat(chosen, ignore_index=True)
    return selected.assign(trial=SELECTED)


def selection_choices(selected: pd.DataFrame) -> pd.DataFrame:
    """One row per (fold, model): the trial, shots and α chosen on the fold's validation split."""
    columns = ["fold", "model", "chosen_from", "shots", "alpha"]
    return selected[columns].drop_duplicates().sort_values(["fold", "model"]).reset_index(drop=True)
