"""The one builder of prediction rows: every model's folds come back as these rows (the result tables'
``predictions`` columns before the run's own: storage/results.py adds run, protocol, trial, shots, method,
recipe). A model with one output calls ``prediction_frame(fold, samples, "test", keys, scores, model=NAME)``;
Meta-MMFNet (training/models/meta_mmfnet.py) adds its micro, macro and fused-over-α rows with ``model`` and
``alpha``, and marks the fused rows at the α its fold chose (``chosen``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

# The columns of a fold's prediction rows, in order.
PREDICTION_COLUMNS = ("fold", "split", "model", "alpha", "sample_key", "dataset", "subject_key", "label", "pred",
                      "scores", "chosen")


def prediction_rows(fold, samples: pd.DataFrame, split: str, keys, scores, *, model: str,
                    alpha: float | None = None, chosen: bool = False) -> list[dict]:
    """One row per sample of ``keys`` (``scores``: one row of class scores each, in ``fold.classes``' order):
    its dataset, subject and label (``samples``, indexed by sample key), the class of its highest score."""
    return [{"fold": fold.name, "split": split, "model": model, "alpha": alpha, "sample_key": key,
             "dataset": samples.at[key, "dataset"], "subject_key": samples.at[key, "subject_key"],
             "label": samples.at[key, fold.label_column], "pred": fold.classes[int(np.argmax(row))],
             "scores": [float(s) for s in row], "chosen": chosen} for key, row in zip(keys, scores)]


def prediction_frame(fold, samples: pd.DataFrame, split: str, keys, scores, *, model: str,
                     alpha: float | None = None, chosen: bool = False) -> pd.DataFrame:
    """``prediction_rows`` as a frame with ``PREDICTION_COLUMNS`` (also when it has no rows)."""
    return pd.DataFrame(prediction_rows(fold, samples, split, keys, scores, model=model, alpha=alpha, chosen=chosen),
                        columns=list(PREDICTION_COLUMNS))
