"""The train flow: a registered model (training/models/) on every fold of a protocol, results as Parquet tables.

flows/protocol.py ``run_protocol`` (the one run sequence) with each unit a Prefect task, run in the flow's
process one after another (no task runner, no workers): ``load-protocol`` (the catalog and the feature store
read), ``prepare`` (the model's run-wide work: Meta-MMFNet's CK+ pretraining), one ``fold`` task per unit of
folds (``ModelInfo.folds_per_task``: one fold, or every fold where the model trains them together),
``floor`` (the nearest centroid on the folds that trained) and ``write-results`` (storage/results.py ``write_run``). A failed fold or pretraining is
retried (its finished stages are checkpointed, so a retry resumes), except on ``training.errors.DataError``
(FoldSkipped among them), which no retry can mend. The pooled test table is kept as a Prefect artifact.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from merflow.configs.base import Config
from merflow.configs.names import RunId
from merflow.flows.defaults import default
from merflow.flows.parameters import RESULTS, Evaluation, Protocol
from merflow.flows.protocol import Steps, folds_unit, load_protocol, prepare_unit, run_protocol
from merflow.storage import locations, results
from merflow.storage.checkpoints import Checkpoints
from merflow.training import models
from merflow.training import run as units
from merflow.training.errors import DataError
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
                       seed: int, validation_fraction: float, **options) -> units.ProtocolData:
    """The protocol's folds, catalog rows and features (flows/protocol.py ``load_protocol``)."""
    return load_protocol(catalog_dir, store, protocol, dataset, class_set, seed, validation_fraction, **options)


@task(name="prepare", **RETRIED)
def prepare_task(model: str, data: units.ProtocolData, config, checkpoints: Checkpoints):
    """The model's run-wide work before the folds (Meta-MMFNet: the CK+ macro encoder, checkpointed)."""
    return prepare_unit(model, data, config, checkpoints)


@task(name="fold", task_run_name="fold {label}", **RETRIED)
def fold_task(label: str, model: str, data: units.ProtocolData, fold_list: list, config, checkpoints: Checkpoints,
              prepared) -> list[models.FoldResult]:
    """One unit of folds (one fold, or a stacked batch) through training.run.train_folds."""
    logger = get_run_logger()

    def progress(done, total, fold):
        if total > 1 and (done == total or done % 50 == 0):
            logger.info("%s: %d/%d folds trained (last %s)", model, done, total, fold.name)

    return folds_unit(label, model, data, fold_list, config, checkpoints, prepared, on_fold=progress)


@task(name="floor", **UNIT)
def floor_task(data: units.ProtocolData, fold_list: list) -> dict:
    """The floor (nearest centroid, flow u, v) on the folds that trained."""
    return Steps().floor(data, fold_list)


@task(name="write-results", **UNIT)
def write_task(out: str, trained: units.TrainedRun) -> None:
    """The run's tables through storage (floor, metrics, predictions, then the runs row)."""
    results.write_run(out, **trained.tables())


TASKS = Steps(load=load_protocol_task, prepare=prepare_task, folds=fold_task, floor=floor_task)


@flow(name="train", log_prints=True)
def train_flow(catalog_dir: str, store: str, protocol: Protocol = default(Evaluation, "protocol"),
               dataset: str | None = default(Evaluation, "dataset"), out: str = RESULTS, class_set: str | None = None,
               config: dict[str, Any] | Config | None = None, run: RunId | None = None, sample_list: str | None = None,
               sample_lists: str | None = None, feature_config: str | None = None, model: str = models.DEFAULT_MODEL,
               balance: str | None = None, max_folds: int | None = None) -> dict:
    """Train and evaluate every fold of ``protocol`` with ``model`` (training/models/); write runs, metrics
    and predictions under ``out``. ``config``: the model's configuration, whole: its config model, or a dict of
    its fields (a deployment's form), validated by the registry (a wrong field is one line naming it); None:
    its defaults. ``sample_list`` ('survey'): only the samples of that published list (folder
    ``sample_lists``); ``feature_config``: the hash of the store's feature configuration to train on, where it
    holds several; ``balance`` (none | undersample | undersample-training) overrides the model's default;
    ``max_folds``: the first N folds only, a quick look, not a result to report (recorded in the runs row)."""
    locations.require(catalog_dir, store, out)  # a missing extra is one line, before any work
    logger = get_run_logger()
    settings = models.get(model).make_config(config, balance=balance)
    result = run_protocol(catalog_dir, store, protocol, dataset, settings, out, model=model, run=run,
                          class_set=class_set, max_folds=max_folds, sample_list=sample_list, sample_lists=sample_lists,
                          feature_config=feature_config, steps=TASKS, on_note=logger.warning,
                          on_fold_done=logger.info)
    write_task(out, result)
    table = pooled_rows(result, settings) + floor_rows(result)
    create_table_artifact(table, key="train-pooled-test",
                          description=f"{model} {protocol} {dataset or ''}: pooled test metrics")
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
