"""A search's result rows, computed and returned as DataFrames (storage/results.py writes them).

``trial_rows``: one row per trial from what Tune returned; ``skipped_trial_rows``: rows for folds left out
before the search; ``search_tables``: every configuration's metrics, the per-fold ``selected`` result and
the runs row, from the predictions the trials wrote; ``search_summary``: what the flow and the CLI report
(its counts, ``trial_counts``, also from a stored trials table: ``merflow tune`` after failed trials).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from merflow.configs.results import SELECTED, TRIAL_COLUMNS
from merflow.configs.search import SearchConfig
from merflow.training.run import metric_rows, run_row
from merflow.training.search.reports import COMPLETED, DATA_ERROR, METRIC
from merflow.training.search.space import trial_train_config
from merflow.training.selection import select_per_fold
from merflow.training.stages import FoldSkipped


def trial_rows(outcomes: list[dict], search: SearchConfig, run: str, failures: dict[str, int]) -> pd.DataFrame:
    """One row per trial: status, failed attempts, error, and what it chose on validation.

    Each outcome is one trial as the driver read it from Tune: ``spec`` (the trial's (configuration, fold)),
    ``metrics`` (its last report), ``failed`` (its last attempt raised), ``error`` (the last error's text,
    None if none) and ``trial_id`` (Tune's id); ``failures`` counts each trial's failed attempts.
    """
    rows = []
    for outcome in outcomes:
        spec, metrics = outcome["spec"], outcome["metrics"] or {}
        status = ("error" if outcome["failed"] or metrics.get(DATA_ERROR)
                  else "completed" if metrics.get(COMPLETED) else "stopped")
        trial_id = outcome["trial_id"]
        config = trial_train_config(search, spec["searched"])
        rows.append({
            "run": run, "protocol": search.protocol, "trial": spec["id"], "fold": spec["fold"],
            "tune_trial_id": trial_id, "status": status, "failures": failures.get(trial_id, 0),
            "error": outcome["error"],
            "shots": config.shots, "searched": json.dumps(spec["searched"], sort_keys=True),
            "config": json.dumps(config.to_dict(), sort_keys=True),
            "validation_accuracy": metrics.get(METRIC) if status == "completed" else None,
            "alpha": metrics.get("alpha") if status == "completed" else None,
            "epochs": metrics.get("epochs") if status == "completed" else None,
            "seconds": metrics.get("seconds")})
    return pd.DataFrame(rows, columns=list(TRIAL_COLUMNS))


def skipped_trial_rows(specs: list[dict], search: SearchConfig, run: str, skipped: dict[str, str]) -> pd.DataFrame:
    """Trial rows for folds left out before the search (``stages.fold_problem``): status error, no attempt."""
    rows = []
    for spec in specs:
        config = trial_train_config(search, spec["searched"])
        reason = f"{FoldSkipped.__name__}: {FoldSkipped(spec['fold'], skipped[spec['fold']])}"
        rows.append({"run": run, "protocol": search.protocol, "trial": spec["id"], "fold": spec["fold"],
                     "tune_trial_id": None, "status": "error", "failures": 0, "error": reason,
                     "shots": config.shots, "searched": json.dumps(spec["searched"], sort_keys=True),
                     "config": json.dumps(config.to_dict(), sort_keys=True), "validation_accuracy": None,
                     "alpha": None, "epochs": None, "seconds": None})
    return pd.DataFrame(rows, columns=list(TRIAL_COLUMNS))


def search_tables(search: SearchConfig, run: str, data, trials: pd.DataFrame, predictions: pd.DataFrame,
                  timings: dict, skipped: dict | None = None) -> dict:
    """The rows a search writes after its trials, from ``predictions`` (the parts the trials wrote).

    Returns ``metrics`` (part name -> rows: each configuration's, then the selection's), ``selected`` (the
    per-fold, validation-chosen predictions; empty where no trial completed) and ``runs`` (the run's row).
    """
    protocol, classes = search.protocol, data.classes
    completed = trials[trials["status"] == "completed"]
    predictions = predictions[predictions["trial"] != SELECTED]
    done = set(zip(completed["trial"], completed["fold"]))
    # A boolean array, not a list: an empty list would select no columns (a search with no completed trial).
    predictions = predictions[np.array([pair in done for pair in zip(predictions["trial"], predictions["fold"])],
                                       dtype=bool)]
    fold_count = trials["fold"].nunique()
    chosen_alpha = {(t, f): a for t, f, a in zip(completed["trial"], completed["fold"], completed["alpha"])}
    metrics = {}
    for trial, rows in predictions.groupby("trial"):
        # Rows marked chosen: the fused model at the α this configuration chose on each fold's validation.
        alphas = np.array([chosen_alpha[(trial, fold)] for fold in rows["fold"]], dtype=float)
        chosen = (rows["model"] == "fused") & np.isclose(rows["alpha"].astype(float), alphas)
        scores = metric_rows(rows.assign(chosen=chosen), classes)
        # A configuration's pooled scores only where it finished every fold: a partial pool misleads.
        if rows["fold"].nunique() < fold_count:
            scores = scores[scores["scope"] == "fold"]
        metrics[trial] = scores.assign(run=run, protocol=protocol, trial=trial, shots=int(rows["shots"].iloc[0]),
                                       recipe=search.base.recipe)
    selected = select_per_fold(predictions, classes, by=search.select_by) if len(predictions) else predictions
    if len(selected):
        selected = selected.assign(shots=None, run=run, protocol=protocol, recipe=search.base.recipe)
        selected_metrics = metric_rows(selected.assign(alpha=None, chosen=False), classes)
        selected_metrics = selected_metrics[~selected_metrics["chosen"]].assign(chosen=True)
        metrics[SELECTED] = selected_metrics.assign(run=run, protocol=protocol, trial=SELECTED, shots=None,
                                                    recipe=search.base.recipe)
    row = run_row(
        run, protocol, search.dataset, {"search": search.recorded(), "kind": "tune"}
        | ({"sample_list": data.sample_list} if data.sample_list else {})
        # samples quarantined by the features flow (left out before the folds) and folds left out
        | {"data": {"excluded_samples": dict(sorted(data.excluded.items())), "skipped_folds": skipped or {}}},
        data.feature_config, classes, timings)
    return {"metrics": metrics, "selected": selected, "runs": row}


def search_summary(search: SearchConfig, run: str, data, trials: pd.DataFrame, selected: pd.DataFrame,
                   timings: dict, skipped: dict | None = None) -> dict:
    """What a search reports: trials by status, failed attempts, the errors' rows, folds selected, notes."""
    return {"run": run, "protocol": search.protocol, "dataset": search.dataset, "classes": data.classes,
            **trial_counts(trials), "selected_folds": int(selected["fold"].nunique()) if len(selected) else 0,
            "timings": timings, "results": str(search.out),
            "notes": {"excluded_samples": dict(sorted(data.excluded.items())), "skipped_folds": skipped or {}}}


def trial_counts(trials: pd.DataFrame) -> dict:
    """A search's trials counted: folds, configurations, trials, each status, failed attempts, the error rows."""
    return {"folds": trials["fold"].nunique(), "configurations": trials["trial"].nunique(), "trials": len(trials),
            "status": trials["status"].value_counts().to_dict(), "failures": int(trials["failures"].sum()),
            "errors": trials[trials["status"] == "error"]}
