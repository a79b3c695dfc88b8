"""A whole protocol: every fold trained and evaluated, predictions and metrics as result tables.

Pure functions around fit.py; the train flow calls ``train_protocol``, the Ray Tune trainable
(training/tune.py) ``load_protocol`` and ``fold_predictions``. Fused rows exist for every α of the
grid; rows marked ``chosen`` use, in each fold, the α chosen on that fold's validation subjects
(the honest number to report).
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd

from merflow.storage import catalog as catalog_store
from merflow.storage import results
from merflow.storage.features import FeatureConfig, open_features
from merflow.training.data import FeatureSource
from merflow.training.fit import TrainConfig, pretrain_macro, run_fold
from merflow.training.folds import Fold, folds, macro_samples, protocol_samples
from merflow.training.metrics import summarise


def fold_predictions(result: dict, samples: pd.DataFrame, alphas: tuple[float, ...]) -> pd.DataFrame:
    """One row per (split, model, α, sample) of a fold, with its label, prediction and scores."""
    fold: Fold = result["fold"]
    rows = []
    for split in ("validation", "test"):
        keys = result["keys"][split]
        micro, macro = result["scores"]["micro"][split], result["scores"]["macro"][split]
        variants = [("micro", None, micro), ("macro", None, macro)]
        variants += [("fused", alpha, micro + alpha * macro) for alpha in alphas]
        for model, alpha, scores in variants:
            for key, row_scores in zip(keys, scores):
                rows.append({"fold": fold.name, "split": split, "model": model, "alpha": alpha, "sample_key": key,
                             "dataset": samples.at[key, "dataset"], "subject_key": samples.at[key, "subject_key"],
                             "label": samples.at[key, fold.label_column],
                             "pred": fold.classes[int(np.argmax(row_scores))],
                             "scores": [float(s) for s in row_scores],
                             "chosen": model == "fused" and alpha == result["chosen"]["alpha"]})
    return pd.DataFrame(rows)


def metric_rows(predictions: pd.DataFrame, classes: tuple[str, ...]) -> pd.DataFrame:
    """Metrics per fold, per dataset and pooled, for every (split, model, α), plus the fused model
    at each fold's chosen α (model 'fused', α null, chosen true)."""
    indexed = predictions.assign(label=predictions["label"].map(classes.index),
                                 pred=predictions["pred"].map(classes.index),
                                 alpha=predictions["alpha"].astype(float).fillna(-1.0))
    table = summarise(indexed, classes, by=("split", "model", "alpha")).assign(chosen=False)
    chosen = summarise(indexed[indexed["chosen"]].assign(alpha=-1.0), classes, by=("split", "model", "alpha"))
    table = pd.concat([table, chosen.assign(chosen=True)], ignore_index=True)
    table["alpha"] = table["alpha"].where(table["alpha"] >= 0, None)
    return table


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parent).stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


@dataclass
class ProtocolData:
    """What every fold of a protocol reads: its folds, catalog rows, features and the CK+ samples."""

    folds: list[Fold]
    samples: pd.DataFrame          # the protocol's catalog rows, indexed by sample_key
    source: FeatureSource
    feature_config: FeatureConfig
    macro_keys: list[str]
    macro_labels: list[str]
    macro_classes: tuple[str, ...]

    @property
    def classes(self) -> tuple[str, ...]:
        return self.folds[0].classes

    def fold(self, name: str) -> Fold:
        for fold in self.folds:
            if fold.name == name:
                return fold
        raise LookupError(f"no fold {name!r}; the protocol has {len(self.folds)} folds")

    def macro_model(self, config: TrainConfig, checkpoints: Path) -> dict:
        return pretrain_macro(self.source, self.macro_keys, self.macro_labels, self.macro_classes, config, checkpoints)


def load_protocol(catalog_dir: Path, store: str, protocol: str, dataset: str | None, class_set: str | None = None,
                  seed: int = 0) -> ProtocolData:
    catalog = catalog_store.read_samples(catalog_dir)
    chosen_folds = folds(catalog, protocol, dataset, class_set=class_set, seed=seed)
    if not chosen_folds:
        raise ValueError(f"protocol {protocol} has no folds in {catalog_dir}" + (f" for {dataset}" if dataset else ""))
    samples = protocol_samples(catalog, protocol, dataset, class_set).set_index("sample_key", drop=False)
    feature_config = _feature_config(store, sorted(samples["dataset"].unique()))
    macro = macro_samples(catalog)
    source = FeatureSource(store, sorted(samples["dataset"].unique()) + (["ckplus"] if len(macro) else []),
                           feature_config)
    macro = macro[macro["sample_key"].isin(list(source.diff))]
    return ProtocolData(chosen_folds, samples, source, feature_config, macro["sample_key"].tolist(),
                        macro["label_ckplus7"].tolist(), tuple(sorted(macro["label_ckplus7"].unique())))


def new_run_id() -> str:
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


def train_protocol(catalog_dir: Path, store: str, protocol: str, dataset: str | None, config: TrainConfig,
                   out: Path, run: str | None = None, class_set: str | None = None, on_fold=None) -> dict:
    """Train and evaluate every fold of a protocol; write runs, metrics and predictions under ``out``."""
    started = time.perf_counter()
    run = run or new_run_id()
    data = load_protocol(catalog_dir, store, protocol, dataset, class_set, config.seed)
    checkpoints = Path(out) / "checkpoints" / run
    timings = {}
    stage = time.perf_counter()
    macro_model = data.macro_model(config, checkpoints)
    timings["macro_pretrain"] = round(time.perf_counter() - stage, 2)
    predictions, chosen = [], {}
    for index, fold in enumerate(data.folds, start=1):
        stage = time.perf_counter()
        result = run_fold(fold, data.source, data.samples, macro_model, config, checkpoints)
        predictions.append(fold_predictions(result, data.samples, config.alphas))
        chosen[fold.name] = result["chosen"]
        timings[f"fold:{fold.name}"] = round(time.perf_counter() - stage, 2)
        if on_fold:
            on_fold(index, len(data.folds), fold, result)
    predictions = pd.concat(predictions, ignore_index=True)
    metrics = metric_rows(predictions, data.classes)
    timings["total"] = round(time.perf_counter() - started, 2)
    write_results(Path(out), run, protocol, dataset, config, data.feature_config, data.classes, metrics, predictions,
                  timings)
    return {"run": run, "protocol": protocol, "dataset": dataset, "classes": data.classes, "folds": len(data.folds),
            "chosen": chosen, "metrics": metrics, "predictions": predictions, "timings": timings,
            "macro": {k: macro_model[k] for k in ("samples", "weight_change", "epochs")}}


def _feature_config(store: str, datasets: list[str]) -> FeatureConfig:
    configs = {open_features(store, d).config for d in datasets}
    if len(configs) != 1:
        raise LookupError(f"the datasets {datasets} have features of {len(configs)} configurations in {store}")
    return configs.pop()


def run_row(run: str, protocol: str, dataset: str | None, config: dict, feature_config: FeatureConfig,
            classes: tuple[str, ...], timings: dict) -> dict:
    """The ``runs`` row: how a run was made (configuration, features, code, versions) and how long it took."""
    versions = {name: version(name) for name in ("merflow", "torch", "numpy", "zarr", "ray")}
    return {"run": run, "protocol": protocol, "dataset": dataset,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "config": json.dumps(config, sort_keys=True), "feature_config_hash": feature_config.hash,
            "git_commit": git_commit(), "versions": json.dumps(versions, sort_keys=True),
            "timings": json.dumps(timings), "classes": list(classes)}


def write_results(out: Path, run: str, protocol: str, dataset: str | None, config: TrainConfig,
                  feature_config: FeatureConfig, classes: tuple[str, ...], metrics: pd.DataFrame,
                  predictions: pd.DataFrame, timings: dict) -> None:
    common = {"run": run, "protocol": protocol, "trial": "", "shots": config.shots}
    results.write_part(out, "metrics", run, protocol, "all", metrics.assign(**common))
    results.write_part(out, "predictions", run, protocol, "all", predictions.drop(columns=["chosen"]).assign(**common))
    results.write_part(out, "runs", run, protocol, "all",
                       [run_row(run, protocol, dataset, config.to_dict(), feature_config, classes, timings)])
