"""A protocol's data read through storage, and a whole training run without Prefect (for a notebook).

``load_protocol`` is the one read of a run's inputs: the catalog (storage/catalog.py), a published sample
list (tasks/sample_lists.py), the feature configuration and the arrays the model reads
(storage/features.py), handed to training/run.py ``build_protocol``, which builds the folds and rows
(pure). ``run_protocol`` is the one run sequence (load, plan, prepare, fold units, floor, finish) for any
registered model; its ``Steps`` say how each unit is called: ``train_protocol`` calls them directly (no
Prefect, Dask or Ray: a notebook), the train flow (flows/train.py) passes Prefect tasks. This module
imports no Prefect.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from merflow.storage import catalog as catalog_store
from merflow.storage import features as feature_store
from merflow.storage import results
from merflow.storage.checkpoints import check_run_identity, run_checkpoints
from merflow.tasks import sample_lists as published_lists
from merflow.training import models
from merflow.training import run as units
from merflow.training.data import FeatureSource
from merflow.training.folds import macro_samples
from merflow.training.models import nearest_centroid


def load_protocol(catalog_dir: str | os.PathLike, store: str, protocol: str, dataset: str | None,
                  class_set: str | None = None, seed: int = 0, validation_fraction: float = 0.2,
                  sample_list: str | None = None, sample_lists: str | None = None,
                  feature_config: str | None = None, model: str = models.DEFAULT_MODEL) -> units.ProtocolData:
    """The protocol's folds, rows and features, with the arrays ``model`` reads (``ModelInfo.inputs``).
    ``sample_list`` ('survey'): only the samples of that published list (folder ``sample_lists``);
    ``feature_config``: the hash (or its start) of the store's feature configuration, where it holds several."""
    catalog = catalog_store.read_samples(catalog_dir)
    catalog, selection = published_lists.apply(catalog, sample_list, sample_lists)
    datasets = units.protocol_datasets(catalog, protocol, dataset, class_set)
    config = feature_store.resolve_feature_config(store, datasets, feature_config)
    info = models.get(model)
    # What the model reads and the floor's input (nearest_centroid.floor_array: the flow where the groups
    # hold one, else the apex images); of those, what the groups hold is read (an imported group holds
    # only what it imported), and an input the model cannot run without is one line here.
    floor = nearest_centroid.floor_array(config.arrays())
    arrays = tuple(dict.fromkeys(info.inputs + info.optional_inputs + ((floor,) if floor else ())))
    # CK+ (Meta-MMFNet's macro pretraining) has computed features only.
    macro = len(macro_samples(catalog)) and config.imported is None
    read = datasets + (["ckplus"] if macro else [])
    source = FeatureSource(**feature_store.read_feature_arrays(store, read, config, arrays))
    for name in info.inputs:
        source.require(name, model)
    return units.build_protocol(catalog, source, protocol, dataset, class_set, seed, validation_fraction, selection,
                                where={"catalog": str(catalog_dir), "store": str(store)})


def run_inputs(catalog_dir: str | os.PathLike, store: str, protocol: str, dataset: str | None, class_set: str | None,
               sample_list: str | None, sample_lists: str | None, feature_config: str | None) -> dict:
    """Where a run read its data and which of it, as its runs row records them (its notes' ``inputs``):
    `merflow export` reads them back to fit the run's model on every subject."""
    from merflow.storage import locations

    return {"catalog": locations.normalise(catalog_dir), "store": locations.normalise(store), "protocol": protocol,
            "dataset": dataset, "class_set": class_set, "sample_list": sample_list,
            "sample_lists": None if sample_lists is None else locations.normalise(sample_lists),
            "feature_config": feature_config}


def prepare_unit(model: str, data: units.ProtocolData, config, checkpoints):
    """The model's run-wide work before the folds (``prepare``: Meta-MMFNet's CK+ macro encoder, checkpointed)."""
    return models.load(model).prepare(data, config, checkpoints)


def folds_unit(label: str, model: str, data: units.ProtocolData, fold_list: list, config, checkpoints,
               prepared, on_fold=None) -> list[models.FoldResult]:
    """One unit of folds (one fold, or a batch trained together) through the model's ``run_folds``."""
    return units.train_folds(data, model, fold_list, config, checkpoints, prepared=prepared, on_fold=on_fold)


@dataclass(frozen=True)
class Steps:
    """How ``run_protocol`` runs each unit of the one run sequence: called directly (a notebook,
    ``train_protocol``), or as Prefect tasks (flows/train.py), which pass their own with the same arguments."""

    load: Callable = load_protocol            # (catalog_dir, store, protocol, dataset, class_set, seed, fraction, **options)
    prepare: Callable = prepare_unit          # (model, data, config, checkpoints)
    folds: Callable = folds_unit              # (label, model, data, fold_list, config, checkpoints, prepared[, on_fold])
    floor: Callable = nearest_centroid.floor  # (data, fold_list)


def run_protocol(catalog_dir: str | os.PathLike, store: str, protocol: str, dataset: str | None, config,
                 out: str | os.PathLike, *, model: str = models.DEFAULT_MODEL, run: str | None = None,
                 class_set: str | None = None, max_folds: int | None = None, sample_list: str | None = None,
                 sample_lists: str | None = None, feature_config: str | None = None, steps: Steps = Steps(),
                 on_note=None, on_fold=None, on_fold_done=None) -> units.TrainedRun:
    """The run sequence, the one every training path runs (the train flow, ``train_protocol``, a search's
    trial reads its protocol the same way): load the protocol, plan, check the run id, prepare, train the
    folds a unit at a time (``ModelInfo.folds_per_task``), collect, the floor on the folds that trained, and
    finish (the tables, returned unwritten). ``config``: the model's configuration, whole
    (``ModelInfo.make_config``). ``on_note(message)`` hears each warning (samples left out, a recipe's
    feature mismatch, a skipped fold); ``on_fold_done(message)`` each finished fold's choice;
    ``on_fold(done, total, fold)`` (the plain path only) each finished fold inside a unit."""
    started = time.perf_counter()
    run = units.run_id(run)
    info = models.get(model)
    note = on_note or (lambda message: None)
    with results.writing_run(out, run):  # its checkpoints: another command on this run id is refused
        data = steps.load(catalog_dir, store, protocol, dataset, class_set, config.seed, config.validation_fraction,
                          sample_list=sample_list, sample_lists=sample_lists, feature_config=feature_config,
                          model=model)
        plan = info.load().plan(data, config, protocol, dataset, class_set)
        plan.notes["inputs"] = run_inputs(catalog_dir, store, protocol, dataset, class_set, sample_list, sample_lists,
                                          feature_config)  # `merflow export` reads them back
        check_run_identity(out, run, plan.identity)  # a run id reused for other data: refused
        for message in plan.messages:
            note(message)
        checkpoints = run_checkpoints(out, run)  # out: a local path or an fsspec URL
        timings = {}
        stage = time.perf_counter()
        prepared = steps.prepare(model, data, config, checkpoints)
        if info.macro_pretraining:
            timings["macro_pretrain"] = round(time.perf_counter() - stage, 2)
        outcomes, fold_list = [], units.first_folds(plan, max_folds)
        for batch in units.fold_batches(info, fold_list):
            stage = time.perf_counter()
            label = batch[0].name if len(batch) == 1 else f"{batch[0].name} .. {batch[-1].name} ({len(batch)})"
            extra = {}
            if on_fold:
                def hear(done, _, fold, offset=len(outcomes)):
                    on_fold(offset + done, len(fold_list), fold)
                extra = {"on_fold": hear}
            for outcome in steps.folds(label, model, data, batch, config, checkpoints, prepared, **extra):
                outcomes.append(outcome)
                message = units.fold_message(len(outcomes), len(fold_list), outcome)
                if message and outcome.skipped:
                    note(message)
                elif message and on_fold_done:
                    on_fold_done(message)
            key = units.timing_key(info, batch)
            timings[key] = round(timings.get(key, 0.0) + time.perf_counter() - stage, 2)
        trained = units.collect(plan, outcomes, run, protocol)
        floor = steps.floor(data, [o.fold for o in trained])
        return units.finish(data, plan, trained, floor, config, run=run, protocol=protocol, dataset=dataset,
                            model=model, timings=timings, started=started, prepared=prepared)


def train_protocol(catalog_dir: str | os.PathLike, store: str, protocol: str, dataset: str | None, config,
                   out: str | os.PathLike, run: str | None = None, class_set: str | None = None, on_fold=None,
                   on_note=None, max_folds: int | None = None, sample_list: str | None = None,
                   sample_lists: str | None = None, feature_config: str | None = None,
                   model: str = models.DEFAULT_MODEL) -> units.TrainedRun:
    """Train and evaluate every fold of a protocol with ``model`` and its ``config`` (None: its defaults; a
    dict of its fields; its config model), without Prefect: ``run_protocol`` with its units called directly
    (the train flow runs the same sequence with them as tasks). Checkpoints go under ``out``/checkpoints/<run>;
    the result tables are returned, not written: ``storage.results.write_run(out, **trained.tables())``
    writes them.

    A run id already used for other data (``check_run_identity``) is refused. ``on_note(message)``
    hears the samples left out, a recipe's feature mismatch and each skipped fold (all recorded in the
    run's row too); ``on_fold(done, total, fold)`` each finished fold. ``max_folds``: the first N folds
    only, a quick look, not a result to report."""
    config = models.get(model).make_config(config)
    return run_protocol(catalog_dir, store, protocol, dataset, config, out, model=model, run=run, class_set=class_set,
                        max_folds=max_folds, sample_list=sample_list, sample_lists=sample_lists,
                        feature_config=feature_config, on_note=on_note, on_fold=on_fold)
