"""A spotting run's result tables (storage/results.py ``spot_intervals``, ``spot_metrics``, ``spot_runs``), pure.

``spotting_tables`` matches the predictions with the ground truth (MEGC, training/spotting/metrics.py),
scores them per type and overall, pooled over every video and per fold, and, where the micro-expressions
were classified, computes STRS both ways: ``strs-official`` (the official evaluator's port, with MEAN's
three classes as the analysed set) and ``strs-corrected``.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from importlib.metadata import version

import numpy as np
import pandas as pd

from merflow.configs.spotting import SpotConfig, SpotFeatureConfig
from merflow.training.run import git_commit
from merflow.training.spotting.loso import fold_name
from merflow.training.spotting.metrics import match_intervals, megc_counts, strs_corrected, strs_official

EVALUATORS = ("megc", "strs-official", "strs-corrected")
# Published figures (ZOO.md section 2, read from the authors' result images): docs/spotting.md prints them beside
# merflow's; `merflow results summary` names them under its spotting table.
# The baseline's are the MEGC2020 baseline's (MDMD: ZOO.md section 2), whose p was swept against the ground truth.
PUBLISHED = {
    ("casme_sq_lv", "baseline"): {"micro": 0.0082, "macro": 0.1196, "overall": 0.0376},
    ("samm_lv", "baseline"): {"micro": 0.0364, "macro": 0.0629, "overall": 0.0445},
    ("casme_sq_lv", "softnet"): {"micro": 0.1173, "macro": 0.2410, "overall": 0.2022},
    ("samm_lv", "softnet"): {"micro": 0.1520, "macro": 0.2169, "overall": 0.1881},
    ("casme_sq_lv", "mean"): {"micro": 0.1214, "strs": 0.0809},
    ("samm_lv", "mean"): {"micro": 0.0949, "strs": 0.0499},
}


def spotting_tables(predictions: pd.DataFrame, truths: pd.DataFrame, settings: pd.DataFrame, config: SpotConfig,
                    classes: tuple[str, ...]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(spot_intervals rows, spot_metrics rows) of a run, without the run and protocol columns.

    ``predictions``: training/spotting/loso.py's columns, plus ``predicted`` and ``class_scores`` where the
    micro intervals were classified; ``truths``: video_key, subject_key, type, onset, offset, interval_key,
    label (every annotated interval of the run's videos); ``settings``: loso.py's per-fold rows.
    """
    predictions = predictions.copy()
    for column in ("predicted", "class_scores"):
        if column not in predictions.columns:
            predictions[column] = None
    matched_preds, matched_truths = match_intervals(predictions, truths)
    metrics = []
    for row in megc_counts(matched_preds, matched_truths, config.types):
        metrics.append({"evaluator": "megc", "scope": "pooled", "key": "all", **row, "chosen_on": config.chosen_on})
    for subject in sorted(truths["subject_key"].unique()):
        fold = fold_name(subject)
        chosen = settings[settings["fold"] == fold]
        fold_settings = json.dumps({r.type: {"k": r.k, **(json.loads(r.settings) if r.settings else {}),
                                             **({"note": r.note} if r.note else {})} for r in chosen.itertuples()})
        for row in megc_counts(matched_preds[matched_preds["subject_key"] == subject],
                               matched_truths[matched_truths["subject_key"] == subject], config.types):
            metrics.append({"evaluator": "megc", "scope": "fold", "key": fold, **row, "chosen_on": config.chosen_on,
                            "settings": fold_settings})
    if "micro" in config.types and matched_preds["predicted"].notna().any():
        micro_preds = matched_preds[matched_preds["type"] == "micro"]
        micro_truths = matched_truths[matched_truths["type"] == "micro"]
        official = strs_official(
            pd.DataFrame({"subject": micro_preds["subject_key"], "video": micro_preds["video_key"],
                          "onset": micro_preds["start"], "offset": micro_preds["end"],
                          "emotion": micro_preds["predicted"]}),
            pd.DataFrame({"subject": micro_truths["subject_key"], "video": micro_truths["video_key"],
                          "onset": micro_truths["onset"], "offset": micro_truths["offset"],
                          "emotion": micro_truths["label"]}), analysis=classes)
        corrected = strs_corrected(micro_preds.assign(emotion=micro_preds["predicted"]),
                                   micro_truths.assign(emotion=micro_truths["label"]), classes)
        for name, scores in (("strs-official", official), ("strs-corrected", corrected)):
            metrics.append({"evaluator": name, "scope": "pooled", "key": "all", "type": "micro",
                            "n_truth": len(micro_truths), "n_pred": len(micro_preds), **scores,
                            "chosen_on": config.chosen_on})
    intervals = _interval_rows(matched_preds, matched_truths)
    return intervals, pd.DataFrame(metrics)


def _interval_rows(predictions: pd.DataFrame, truths: pd.DataFrame) -> pd.DataFrame:
    predicted = pd.DataFrame({
        "fold": predictions["fold"], "video_key": predictions["video_key"], "subject_key": predictions["subject_key"],
        "role": "predicted", "type": predictions["type"], "start": predictions["start"], "end": predictions["end"],
        "score": predictions["score"], "interval_key": predictions["matched"], "iou": predictions["iou"],
        "tp": predictions["tp"].astype(bool), "label": None, "predicted": predictions["predicted"],
        "class_scores": predictions["class_scores"]})
    ious = [float(predictions.at[int(p), "iou"]) if p is not None and p == p else None for p in truths["matched_by"]]
    truth = pd.DataFrame({
        "fold": [fold_name(s) for s in truths["subject_key"]], "video_key": truths["video_key"],
        "subject_key": truths["subject_key"], "role": "truth", "type": truths["type"], "start": truths["onset"],
        "end": truths["offset"], "score": None, "interval_key": truths["interval_key"], "iou": ious,
        "tp": truths["found"].astype(bool), "label": truths["label"], "predicted": None, "class_scores": None})
    return pd.concat([predicted, truth], ignore_index=True)


def spot_run_row(run: str, protocol: str, dataset: str, config: SpotConfig, features: SpotFeatureConfig,
                 recognition: dict | None, timings: dict, inputs: dict | None = None) -> dict:
    """The ``spot_runs`` row: how the run was made (configurations, code, versions), how long it took, and where
    it read its data (``inputs``: catalog and store, which `merflow export` reads back)."""
    versions = {name: version(name) for name in ("merflow", "torch", "numpy", "zarr", "opencv-contrib-python-headless",
                                                  "yuface")}
    return {"run": run, "protocol": protocol, "dataset": dataset,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "spotter": config.spotter, "recipe": config.recipe, "chosen_on": config.chosen_on, "leaky": config.leaky,
            "config": json.dumps(config.to_dict(), sort_keys=True),
            "feature_config": json.dumps(features.to_dict(), sort_keys=True), "feature_config_hash": features.hash,
            "recognition": None if recognition is None else json.dumps(recognition, sort_keys=True),
            "git_commit": git_commit(), "versions": json.dumps(versions, sort_keys=True),
            "timings": json.dumps({k: round(float(v), 2) for k, v in timings.items()}),
            "inputs": None if inputs is None else json.dumps(inputs, sort_keys=True)}


def summary_table(metrics: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per spotting run: pooled MEGC F1 per type and overall, STRS official and corrected, what chose
    the settings, and the published figures of the same dataset and spotter (ZOO.md) beside them."""
    rows = []
    pooled = metrics[metrics["scope"] == "pooled"]
    for run in runs.itertuples():
        mine = pooled[(pooled["run"] == run.run) & (pooled["protocol"] == run.protocol)]

        def pick(evaluator: str, kind: str, column: str, mine=mine):
            found = mine[(mine["evaluator"] == evaluator) & (mine["type"] == kind)][column]
            return float(found.iloc[0]) if len(found) and found.iloc[0] == found.iloc[0] else np.nan

        published = PUBLISHED.get((run.dataset, run.spotter), {})
        mean = PUBLISHED.get((run.dataset, "mean"), {})
        rows.append({"run": run.run, "dataset": run.dataset, "spotter": run.spotter, "recipe": run.recipe,
                     "micro F1": pick("megc", "micro", "f1"), "macro F1": pick("megc", "macro", "f1"),
                     "overall F1": pick("megc", "overall", "f1"),
                     "STRS official": pick("strs-official", "micro", "strs"),
                     "STRS corrected": pick("strs-corrected", "micro", "strs"),
                     "published overall F1": published.get("overall", np.nan),
                     "MEAN micro F1 / STRS": (f"{mean['micro']:.4f} / {mean['strs']:.4f}" if mean else ""),
                     "chosen on": run.chosen_on})
    return pd.DataFrame(rows)
