"""The train flow: a registered model (training/models/) on every fold of a protocol, results as Parquet tables.

Prefect tasks around the units of training/run.py (and flows/protocol.py's read), run in the flow's process one after another (no
task runner, no workers): ``load-protocol`` (the catalog and the feature store read), ``macro-pretrain``
(Meta-MMFNet only: CK+ once a run), one ``fold`` task per fold (Meta-MMFNet) or per batch of folds trained
together (``ModelInfo.folds_per_task``: survey-cnn stacks every fold's network, nearest-centroid builds its
feature matrix once: one task for all their folds), ``floor`` (the nearest centroid on the folds that
trained) and ``write-results`` (storage/results.py ``write_run``). A failed fold or pretraining is
retried (its finished stages are checkpointed, so a retry resumes), except on ``training.errors.DataError``
(FoldSkipped among them), which no retry can mend. The pooled test table is kept as a Prefect artifact.
"""

from __future__ import annotations

import time

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from merflow.configs.names import RunId
from merflow.configs.train import TrainConfig
from merflow.flows.defaults import default
from merflow.flows.parameters import RESULTS, Evaluation, Protocol
from merflow.flows.protocol import load_protocol
from merflow.storage import locations, results
from merflow.storage.checkpoints import Checkpoints, check_run_identity, run_checkpoints
from merflow.training import models
from merflow.training import run as units
from merflow.training.errors import DataError
from merflow.training.models import nearest_centroid
from merflow.training.models.nearest_centroid import CentroidConfig
from merflow.training.models.ststnet import StstnetConfig
from merflow.training.models.survey_cnn import SurveyConfig
from merflow.training.report import floor_table, pooled_table

UNIT_RETRIES = 2  # a fold (or the CK+ pretraining) that fails for another reason than its data is run again


def unless_data_error(task, task_run, state) -> bool:
    """Prefect's retry condition: retry a failed unit unless its data can never train (a ``DataError``)."""
    try:
        state.result()
    except DataError:
        return False
    except Exception:
        return True
    return True


# Task inputs hold arrays and models (the loaded protocol, the pretrained encoder): no cache keys are made of them.
UNIT = {"cache_policy": NO_CACHE}
RETRIED = UNIT | {"retries": UNIT_RETRIES, "retry_condition_fn": unless_data_error}


@task(name="load-protocol", **UNIT)
def load_protocol_task(catalog_dir: str, store: str, protocol: str, dataset: str | None, class_set: str | None,
                       config, **options) -> units.ProtocolData:
    """The protocol's folds, catalog rows and features (flows/protocol.py ``load_protocol``)."""
    return load_protocol(catalog_dir, store, protocol, dataset, class_set, config.seed, config.validation_fraction,
                         **options)


@task(name="macro-pretrain", **RETRIED)
def pretrain_task(model: str, data: units.ProtocolData, config, checkpoints: Checkpoints):
    """The model's run-wide work before the folds (Meta-MMFNet: the CK+ macro encoder, checkpointed)."""
    return models.load(model).prepare(data, config, checkpoints)


@task(name="fold", task_run_name="fold {label}", **RETRIED)
def fold_task(label: str, model: str, data: units.ProtocolData, fold_list: list, config, checkpoints: Checkpoints,
              prepared) -> list[models.FoldResult]:
    """One unit of folds (one fold, or a stacked batch) through training.run.train_folds."""
    logger = get_run_logger()

    def progress(done, total, fold):
        if total > 1 and (done == total or done % 50 == 0):
            logger.info("%s: %d/%d folds trained (last %s)", model, done, total, fold.name)

    return units.train_folds(data, model, fold_list, config, checkpoints, prepared=prepared, on_fold=progress)


@task(name="floor", **UNIT)
def floor_task(data: units.ProtocolData, fold_list: list) -> dict:
    """The floor (nearest centroid, flow u, v) on the folds that trained."""
    return nearest_centroid.floor(data, fold_list)


@task(name="write-results", **UNIT)
def write_task(out: str, trained: units.TrainedRun) -> None:
    """The run's tables through storage (floor, metrics, predictions, then the runs row)."""
    results.write_run(out, **trained.tables())


def model_config(model: str, config: TrainConfig | None, survey_config: SurveyConfig | None,
                 centroid_config: CentroidConfig | None, balance: str | None, ststnet_config: StstnetConfig | None = None):
    """The configuration the flow's parameters give ``model`` (its default where none), with ``balance``."""
    given = {models.DEFAULT_MODEL: config, "survey-cnn": survey_config, "nearest-centroid": centroid_config,
             "ststnet": ststnet_config}[model]
    return units.with_balance(given or models.load(model).default_config(), balance)


@flow(name="train", log_prints=True)
def train_flow(catalog_dir: str, store: str, protocol: Protocol = default(Evaluation, "protocol"),
               dataset: str | None = default(Evaluation, "dataset"), out: str = RESULTS, class_set: str | None = None, config: TrainConfig | None = None,
               run: RunId | None = None, sample_list: str | None = None, sample_lists: str | None = None,
               feature_config: str | None = None, model: str = models.DEFAULT_MODEL,
               survey_config: SurveyConfig | None = None, balance: str | None = None,
               centroid_config: CentroidConfig | None = None, max_folds: int | None = None,
               ststnet_config: StstnetConfig | None = None) -> dict:
    """Train and evaluate every fold of ``protocol``; write runs, metrics and predictions under ``out``.
    ``sample_list`` ('survey'): only the samples of that published list (folder ``sample_lists``);
    ``feature_config``: the hash of the store's feature configuration to train on, where it holds several.
    ``model`` (training/models/): meta-mmfnet with ``config``, survey-cnn with ``survey_config``, ststnet with
    ``ststnet_config``, or nearest-centroid with ``centroid_config``;
    ``balance`` (none | undersample) overrides the model's default; ``max_folds``: the first N folds only,
    a quick look, not a result to report (recorded in the runs row's notes)."""
    locations.require(catalog_dir, store, out)  # a missing extra is one line, before any work
    logger = get_run_logger()
    started = time.perf_counter()
    info = models.get(model)
    settings = model_config(model, config, survey_config, centroid_config, balance, ststnet_config)
    run = units.run_id(run)
    with results.writing_run(out, run):  # another command writing this run id: refused, one line
        data = load_protocol_task(catalog_dir, store, protocol, dataset, class_set, settings, sample_list=sample_list,
                                  sample_lists=sample_lists, feature_config=feature_config, model=model)
        plan = info.load().plan(data, settings, protocol, dataset, class_set)
        check_run_identity(out, run, plan.identity)  # a run id reused for other data: refused
        for message in plan.messages:
            logger.warning(message)
        checkpoints = run_checkpoints(out, run)
        timings = {}
        stage = time.perf_counter()
        prepared = pretrain_task(model, data, settings, checkpoints) if info.macro_pretraining else None
        if info.macro_pretraining:
            timings["macro_pretrain"] = round(time.perf_counter() - stage, 2)
        outcomes, fold_list = [], units.first_folds(plan, max_folds)
        for batch in units.fold_batches(info, fold_list):
            stage = time.perf_counter()
            label = batch[0].name if len(batch) == 1 else f"{batch[0].name} .. {batch[-1].name} ({len(batch)})"
            for outcome in fold_task(label, model, data, batch, settings, checkpoints, prepared):
                outcomes.append(outcome)
                message = units.fold_message(len(outcomes), len(fold_list), outcome)
                if message:
                    (logger.warning if outcome.skipped else logger.info)(message)
            key = units.timing_key(info, batch)
            timings[key] = round(timings.get(key, 0.0) + time.perf_counter() - stage, 2)
        trained = units.collect(plan, outcomes, run, protocol)
        floor = floor_task(data, [o.fold for o in trained])
        result = units.finish(data, plan, trained, floor, settings, run=run, protocol=protocol, dataset=dataset,
                              model=model, timings=timings, started=started, prepared=prepared)
        write_task(out, result)
        table = pooled_rows(result, settings) + floor_rows(result)
        create_table_artifact(table, key="train-pooled-test", description=(
            f"{protocol} {dataset or ''}: pooled test metrics" if model == models.DEFAULT_MODEL
            else f"{model} {protocol}: pooled test metrics"))
        return result.summary() | {"pooled": table, "results": str(out)}


def floor_rows(result: units.TrainedRun) -> list[dict]:
    """The floor's pooled test row, named with the input it read (the run's note ``floor``: flow u, v, or the
    apex pixels of imported images)."""
    rows = floor_table(result.floor_metrics)
    used = result.notes.get("floor")
    for row in rows if used else []:
        row["model"] = f"floor (nearest-centroid, {used['text']})"
    return rows


def pooled_rows(result: units.TrainedRun, config) -> list[dict]:
    """The run's pooled test rows: a model that chooses on validation (Meta-MMFNet) as micro, macro and
    fused (α chosen, then the α grid); any other as its one row. A row whose number reads test labels (LOVO,
    balancing before the split) says so."""
    leaks = result.notes.get("leaks") or []
    leaky = (" (leaky: " + "; ".join(reason.split(":")[0] for reason in leaks) + ")") if leaks else ""
    if result.chosen:
        # Without validation subjects (--recipe published) nothing chooses α: the plain sum, α = 1.0.
        rows = pooled_table(result.metrics, " (α chosen on validation)" if config.validation_fraction > 0
                            else " (α 1.0, fixed: no validation split to choose on)")
        return [row | {"model": row["model"] + leaky} for row in rows]
    return [{"model": r.model + leaky, "alpha": None, "n": int(r.n), "accuracy": round(r.accuracy, 4),
             "uf1": round(r.uf1, 4), "uar": round(r.uar, 4)}
            for r in result.metrics.itertuples() if r.scope == "pooled" and r.split == "test"]
