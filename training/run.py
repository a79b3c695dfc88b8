"""A whole protocol: every fold trained and evaluated, predictions and metrics as the result tables' rows.

The units of a run, for any registered model (training/models/), all pure (no storage: the flows read and
write): ``build_protocol`` (folds and rows from a catalog and its features in memory; flows/protocol.py
``load_protocol`` reads them), ``train_folds`` (folds through the model's ``run_folds``), ``collect``
(skipped folds and shortfalls into the notes) and ``finish`` (metrics, floor, the runs row: a
``TrainedRun``: what chose what and the model's title recorded from the registry). flows/protocol.py
``run_protocol`` runs them in the one sequence (the train flow with each a Prefect task, ``train_protocol``
directly, for a notebook); storage/results.py ``write_run`` writes the tables. ``metric_rows`` scores every
(split, model, α) of the prediction rows (training/predictions.py); rows marked ``chosen`` (a model that
chooses on validation subjects: Meta-MMFNet's fused rows at each fold's α) add their own metrics rows.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd

from merflow.configs.features import FeatureConfig
from merflow.configs.names import check_name
from merflow.configs.train import TrainConfig
from merflow.tasks import sample_lists as published_lists
from merflow.training.data import FeatureSource
from merflow.training.errors import DataError
from merflow.training.folds import Fold, folds, leak_reasons, macro_samples, protocol_samples
from merflow.training.metrics import summarise
from merflow.training.models import FoldResult, ModelInfo, RunPlan
from merflow.training.models import get as get_model
from merflow.training.stages import recipe_feature_mismatch


def metric_rows(predictions: pd.DataFrame, classes: tuple[str, ...]) -> pd.DataFrame:
    """Metrics per fold, per dataset and pooled, for every (split, model, α), plus the fused model
    at each fold's chosen α (model 'fused', α null, chosen true)."""
    indexed = predictions.assign(label=predictions["label"].map(classes.index),
                                 pred=predictions["pred"].map(classes.index),
                                 alpha=predictions["alpha"].astype(float))
    table = summarise(indexed, classes, by=("split", "model", "alpha")).assign(chosen=False)  # α NaN kept as a group
    chosen = summarise(indexed[indexed["chosen"]].assign(alpha=np.nan), classes, by=("split", "model", "alpha"))
    table = pd.concat([table, chosen.assign(chosen=True)], ignore_index=True)
    return table


def git_commit() -> str | None:
    """The checked-out commit of merflow's source, or None outside a git checkout."""
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
    # Protocol samples left out before the folds were built, because the features flow quarantined
    # them: sample key -> {"reason", "detail"} (the store's completion marks, storage/features.py).
    excluded: dict[str, dict] = field(default_factory=dict)
    # --sample-list: what the list kept and which of its rows matched nothing (tasks/sample_lists.py).
    sample_list: dict | None = None

    @property
    def classes(self) -> tuple[str, ...]:
        """The protocol's class names, in label-index order."""
        return self.folds[0].classes

    def identity(self) -> dict:
        """What a run's weights are made from: protocol rows and labels, CK+ rows, the features. A run id
        reused with another protocol, class set, catalog or feature store has another identity."""
        column = self.folds[0].label_column
        rows = [[k, str(self.samples.at[k, "subject_key"]), str(self.samples.at[k, column]),
                 self.source.fingerprints.get(k, "")] for k in self.samples.index]
        macro = [[k, label, self.source.fingerprints.get(k, "")]
                 for k, label in zip(self.macro_keys, self.macro_labels)]
        digest = hashlib.sha256(json.dumps({"rows": rows, "macro": macro}).encode()).hexdigest()[:16]
        return {"protocol": self.folds[0].protocol, "label_column": column, "classes": list(self.classes),
                "samples": len(rows), "excluded": sorted(self.excluded), "catalog_and_features": digest,
                "feature_config_hash": self.feature_config.hash}

    def fold(self, name: str) -> Fold:
        """The protocol's fold ``name``."""
        for fold in self.folds:
            if fold.name == name:
                return fold
        raise LookupError(f"no fold {name!r}; the protocol has {len(self.folds)} folds")


def protocol_datasets(catalog: pd.DataFrame, protocol: str, dataset: str | None,
                      class_set: str | None = None) -> list[str]:
    """The datasets whose features a protocol reads (CK+ not included); a protocol with no samples in the
    catalog is an error saying what is missing (training.folds)."""
    wanted = protocol_samples(catalog, protocol, dataset, class_set)
    if wanted.empty:
        folds(catalog, protocol, dataset, class_set=class_set)  # raises: says what is missing
    return sorted(wanted["dataset"].unique())


def build_protocol(catalog: pd.DataFrame, source: FeatureSource, protocol: str, dataset: str | None,
                   class_set: str | None = None, seed: int = 0, validation_fraction: float = 0.2,
                   selection: dict | None = None, where: dict | None = None) -> ProtocolData:
    """The protocol's folds, rows and features from a catalog and its features in memory (pure: the
    reading is flows/protocol.py ``load_protocol``'s). Samples the features flow quarantined are left out
    before the folds are built (``ProtocolData.excluded`` says which and why), so every fold runs; samples
    whose features were never computed are a ``DataError`` (run `merflow features`). ``where`` names the
    catalog and the store in the messages."""
    where = where or {"catalog": "CATALOG", "store": "STORE"}
    wanted = protocol_samples(catalog, protocol, dataset, class_set)
    without = [k for k in wanted["sample_key"] if k not in source]
    excluded = {k: source.quarantined[k] for k in without if k in source.quarantined}
    never = [k for k in without if k not in excluded]
    if never:
        raise DataError(f"{len(never)} samples of protocol {protocol} have no features in {where['store']} (never "
                        f"computed, e.g. {', '.join(never[:3])}): run `merflow features --catalog {where['catalog']} "
                        f"--store {where['store']}` with the features' settings first")
    catalog = catalog[~catalog["sample_key"].isin(list(excluded))]
    chosen_folds = folds(catalog, protocol, dataset, class_set=class_set, validation_fraction=validation_fraction,
                         seed=seed)
    if not chosen_folds:
        raise ValueError(f"protocol {protocol} has no folds in {where['catalog']}" + (f" for {dataset}" if dataset else ""))
    samples = protocol_samples(catalog, protocol, dataset, class_set).set_index("sample_key", drop=False)
    macro = macro_samples(catalog)
    macro = macro[macro["sample_key"].map(source.__contains__).astype(bool)]
    return ProtocolData(chosen_folds, samples, source, source.config, macro["sample_key"].tolist(),
                        macro["label_ckplus7"].tolist(), tuple(sorted(macro["label_ckplus7"].unique())), excluded,
                        selection)


def new_run_id() -> str:
    """A new run id: the UTC time and six random hex digits."""
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


def run_id(given: str | None) -> str:
    """``given`` checked as a name (configs/names.py: an empty id is refused, not replaced), or a new id for None."""
    return new_run_id() if given is None else check_name(given, "run id")


def fold_batches(info: ModelInfo, fold_list: list[Fold]) -> list[list[Fold]]:
    """The folds in the units the model trains at once (``ModelInfo.folds_per_task``; None: all together)."""
    size = info.folds_per_task or max(len(fold_list), 1)
    return [fold_list[i:i + size] for i in range(0, len(fold_list), size)]


def timing_key(info: ModelInfo, batch: list[Fold]) -> str:
    """The runs row's timing of a batch: ``fold:<name>`` for one fold a unit, ``folds`` for stacked folds."""
    return f"fold:{batch[0].name}" if info.folds_per_task == 1 else "folds"


def train_folds(data: ProtocolData, model: str, fold_list: list[Fold], config, checkpoints, *, prepared=None,
                on_fold=None, timings: dict | None = None) -> list[FoldResult]:
    """``fold_list`` through the model's ``run_folds``, a unit (``fold_batches``) at a time, in order: the
    plain loop (no Prefect). ``on_fold(done, total, fold)`` hears each finished fold; ``timings`` gets each
    unit's seconds (``timing_key``)."""
    info = get_model(model)
    module = info.load()
    outcomes: list[FoldResult] = []
    for batch in fold_batches(info, fold_list):
        stage = time.perf_counter()
        hear = None
        if on_fold:
            def hear(done, _, fold, offset=len(outcomes)):
                on_fold(offset + done, len(fold_list), fold)
        outcomes += module.run_folds(data, batch, config, checkpoints, prepared=prepared, on_fold=hear)
        if timings is not None:
            key = timing_key(info, batch)
            timings[key] = round(timings.get(key, 0.0) + time.perf_counter() - stage, 2)
    return outcomes


def fold_message(index: int, total: int, outcome: FoldResult) -> str | None:
    """The line told when a fold ends: why it was skipped, or the α and epochs it chose (None where it chose nothing)."""
    if outcome.skipped:
        return f"fold {outcome.fold.name} skipped: {outcome.skipped}"
    chosen = outcome.chosen
    if "alpha" not in chosen:
        return None
    return (f"fold {index}/{total} {outcome.fold.name}: α {chosen['alpha']:.1f}, epochs micro "
            f"{chosen['micro_pretrain_epoch']:d}+{chosen['micro_meta_epoch']:d}, macro {chosen['macro_meta_epoch']:d}")


def first_folds(plan: RunPlan, max_folds: int | None) -> list[Fold]:
    """The plan's first ``max_folds`` folds (all where None): a quick look, not a result to report; a cut
    is recorded in the plan's notes (the runs row) as ``max_folds``: the folds run and the protocol's."""
    if max_folds is not None and max_folds < 1:
        raise ValueError(f"max_folds must be at least 1, got {max_folds}")
    if max_folds is None or max_folds >= len(plan.folds):
        return list(plan.folds)
    plan.notes["max_folds"] = {"first": max_folds, "of": len(plan.folds)}
    return list(plan.folds[:max_folds])


def collect(plan: RunPlan, outcomes: list[FoldResult], run: str, protocol: str) -> list[FoldResult]:
    """The folds that trained; each skipped fold's reason and each fit split's shortfalls go into the plan's
    notes (the runs row). Every fold skipped is a ``DataError``."""
    trained = []
    for outcome in outcomes:
        if outcome.skipped:
            plan.notes.setdefault("skipped_folds", {})[outcome.fold.name] = outcome.skipped
            continue
        trained.append(outcome)
        if outcome.chosen.get("shortfalls"):
            plan.notes.setdefault("fold_shortfalls", {})[outcome.fold.name] = outcome.chosen["shortfalls"]
    if not trained:
        raise DataError(f"run {run}: every fold of {protocol} was skipped: "
                        + "; ".join(f"{k}: {v}" for k, v in list(plan.notes.get("skipped_folds", {}).items())[:3]))
    return trained


@dataclass
class TrainedRun:
    """A finished training run: the rows of its result tables (not yet written: ``tables()`` are
    storage/results.py ``write_run``'s arguments) and what the train flow reports."""

    run: str
    protocol: str
    dataset: str | None
    method: str
    classes: tuple[str, ...]
    folds: int                      # the folds that trained (skipped ones left out)
    chosen: dict                    # fold name -> what it chose on its validation subjects (Meta-MMFNet)
    metrics: pd.DataFrame
    predictions: pd.DataFrame
    runs_row: dict
    columns: dict                   # the model's columns of every row: shots, method, recipe
    notes: dict
    timings: dict
    floor_metrics: pd.DataFrame
    floor_predictions: pd.DataFrame
    leaky: bool = False
    macro: dict | None = None       # the CK+ pretraining's samples, weight change and epochs (Meta-MMFNet)

    def tables(self) -> dict:
        """The keyword arguments of storage/results.py ``write_run`` (after the location)."""
        return {"run": self.run, "protocol": self.protocol, "columns": self.columns, "metrics": self.metrics,
                "predictions": self.predictions, "runs_row": self.runs_row, "floor_metrics": self.floor_metrics,
                "floor_predictions": self.floor_predictions}

    def summary(self) -> dict:
        """What the run was, without its tables (the train flow's result)."""
        summary = {"run": self.run, "protocol": self.protocol, "dataset": self.dataset, "classes": self.classes,
                   "folds": self.folds, "chosen": self.chosen, "timings": self.timings, "notes": self.notes,
                   "method": self.method, "leaky": self.leaky}
        return summary | ({"macro": self.macro} if self.macro is not None else {})


MACRO_SUMMARY = ("samples", "weight_change", "epochs")  # what a run reports of its CK+ pretraining


def finish(data: ProtocolData, plan: RunPlan, trained: list[FoldResult], floor: dict, config, *, run: str,
           protocol: str, dataset: str | None, model: str, timings: dict, started: float,
           prepared=None) -> TrainedRun:
    """The run's rows: predictions, metrics, the floor's (``nearest_centroid.floor`` on the folds that
    trained) and the runs row (configuration, notes, timings up to now since ``started``)."""
    predictions = pd.concat([o.predictions for o in trained], ignore_index=True)
    classes = trained[0].fold.classes
    metrics = metric_rows(predictions, classes)
    timings["floor"] = floor["seconds"]
    if floor.get("input"):  # which input the floor read (flow u, v or the apex pixels), its channels and scaling
        plan.notes["floor"] = floor["input"]
    timings["total"] = round(time.perf_counter() - started, 2)
    # What chose what, and whether the numbers read test labels: recorded with the run (its summary reads them).
    plan.notes.setdefault("leaks", leak_reasons(protocol, plan.settings.get("balance")))
    plan.notes.setdefault("recipe_differences", list(getattr(config, "recipe_differences", [])))
    plan.notes["chosen"] = run_choices(model, config)
    # What chose its settings and the headline's title, as the registry says: the summaries read them from here.
    info = get_model(model)
    plan.notes["chooses"] = info.chooses
    if info.title:
        plan.notes["title"] = info.title.format(**config.to_dict())
    recipe = recorded_recipe(config)
    columns = {"shots": plan.shots, "method": model, "recipe": recipe}
    row = run_row(run, protocol, dataset, plan.settings | {"data": plan.notes}, data.feature_config, classes,
                  timings) | {"method": model, "recipe": recipe}
    macro = {k: prepared[k] for k in MACRO_SUMMARY} if get_model(model).macro_pretraining else None
    return TrainedRun(run, protocol, dataset, model, classes, len(trained),
                      {o.fold.name: o.chosen for o in trained if o.chosen}, metrics, predictions, row, columns,
                      plan.notes, timings, floor["metrics"], floor["predictions"],
                      plan.leaky or bool(plan.notes["leaks"]), macro)


def recorded_recipe(config) -> str | None:
    """The recipe a run's rows record: the configuration's, except that a published recipe with any of its
    settings changed is recorded as "custom" (``recipe_differences`` lists what changed; the base recipe is in
    the runs row's configuration)."""
    recipe = config.recipe
    return "custom" if recipe == "published" and getattr(config, "recipe_differences", []) else recipe


def run_choices(model: str, config) -> dict:
    """What chose each setting of a run's headline numbers, as its record keeps it (``data.chosen``):
    ``validation subjects``, ``fixed`` (nothing chose it) or ``nothing learned`` (the registry's
    ``ModelInfo.chooses``; a model choosing on validation subjects chooses its α and, unless it keeps the
    last, its epochs there)."""
    info = get_model(model)
    if info.chooses != "validation subjects":
        if config.recipe is None:  # nothing learned: no schedule, no recipe
            return {"model": f"nothing learned or chosen: {info.title or info.description}"}
        return {"epochs": f"fixed: {config.epochs} epochs, the last epoch", "settings": f"recipe {recorded_recipe(config)}"}
    validated = config.validation_fraction > 0
    return {"epochs": "validation subjects" if getattr(config, "epoch_choice", "last") != "last"
            else "fixed: each stage's last epoch",
            "alpha": "validation subjects" if validated else "fixed: 1.0 (no validation subjects to choose on)",
            "settings": f"recipe {recorded_recipe(config)}"}


def run_notes(data: ProtocolData, config: TrainConfig) -> dict:
    """What a run's row records besides its configuration: the samples left out (and why), the folds
    skipped (and why), the folds whose fit split was short of a class, and how the features differ
    from the recipe's."""
    return {"excluded_samples": {k: v for k, v in sorted(data.excluded.items())}, "skipped_folds": {},
            "fold_shortfalls": {}, "feature_mismatch": recipe_feature_mismatch(config, data.feature_config),
            "sample_list": data.sample_list}


def notes_messages(notes: dict) -> list[str]:
    """One line per note worth telling before the folds train."""
    messages = published_lists.report_lines(notes["sample_list"]) if notes.get("sample_list") else []
    excluded = notes["excluded_samples"]
    if excluded:
        reasons = pd.Series([v["reason"] for v in excluded.values()]).value_counts()
        messages.append(f"{len(excluded)} samples left out, quarantined by the features flow ("
                        + ", ".join(f"{reason} {n}" for reason, n in reasons.items()) + "): "
                        + ", ".join(list(excluded)[:5]) + (" ..." if len(excluded) > 5 else ""))
    if notes["feature_mismatch"]:
        messages.append("recipe published on features that differ from the published code's ("
                        + "; ".join(notes["feature_mismatch"]) + "): recorded with the run; for the published "
                        "inputs run `merflow features --size 80 --first-frame onset+1` into a store and train on it")
    return messages


def run_row(run: str, protocol: str, dataset: str | None, config: dict, feature_config: FeatureConfig,
            classes: tuple[str, ...], timings: dict) -> dict:
    """The ``runs`` row: how a run was made (configuration, features, code, versions) and how long it took."""
    versions = {name: version(name) for name in ("merflow", "torch", "numpy", "zarr", "ray")}
    return {"run": run, "protocol": protocol, "dataset": dataset,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "config": json.dumps(config, sort_keys=True), "feature_config_hash": feature_config.hash,
            "git_commit": git_commit(), "versions": json.dumps(versions, sort_keys=True),
            "timings": json.dumps(timings), "classes": list(classes),
            # the TrainConfig's recipe (configs/train.py RECIPES); a search's is its base configuration's
            "recipe": config.get("recipe", config.get("search", {}).get("base", {}).get("recipe"))}

