"""Hyperparameter searches with Ray Tune: one trial per (configuration, fold), early stopping per fold.

**A trial is one configuration on one fold.** Choosing a configuration is a setting like an epoch
or α, so it must be chosen per fold on that fold's validation subjects (training/selection.py): a
trial that averaged over folds would report a score in which every subject's labels take part,
and comparing those would let a test subject choose its own settings. One (configuration, fold)
per trial also gives the cluster many small independent units to spread over CPUs and fractions
of GPUs, and a failed trial costs one fold, not a whole protocol.

What a trial does: it trains and evaluates the fold with ``fit.run_fold`` (every stage
checkpointed under ``RESULTS/checkpoints/<run>/<fold>/``, stages named by the settings they depend
on, so configurations that differ in shots share the fold's pretrained encoder, and a retried or
resumed trial trains only what is missing), reports the micro model's validation accuracy after
each meta-training epoch (early stopping), evaluates the whole α grid without retraining, writes
its per-sample predictions as one Parquet part, and reports the fused validation accuracy last.
Test labels never reach Ray: test rows go to Parquet only.

Early stopping (``scheduler="asha"``): ASHA, but with one set of rungs per fold, so a trial is only
ever compared with the other configurations of its own fold, on that fold's validation subjects.

After the search the driver reads the grid (``Tuner.fit()`` does not raise on failed trials, so
every trial's status, failures and error go to the ``trials`` table), computes every
configuration's metrics and the per-fold ``selected`` result, and writes the result tables. A rerun
with the same run id restores the Tune experiment (``Tuner.restore``) and finishes what is left.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import posixpath
import re
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

# Ray's defaults that break or clutter an offline machine (../shared/STACK.md), set before Ray is
# imported; a user's own settings win.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import ray  # noqa: E402
import torch  # noqa: E402
from ray import tune  # noqa: E402
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler  # noqa: E402
from ray.tune.schedulers.async_hyperband import _Bracket  # noqa: E402  (Ray 2.60's; pinned in pyproject.toml)

from merflow.storage import catalog as catalog_store  # noqa: E402
from merflow.storage import (
    locations,  # noqa: E402
    results,  # noqa: E402
)
from merflow.storage.results import SELECTED  # noqa: E402
from merflow.training.errors import DataError  # noqa: E402
from merflow.training.fit import FoldSkipped, TrainConfig, fold_problem, run_fold  # noqa: E402
from merflow.training.run import check_run_identity, fold_predictions, load_protocol, metric_rows, new_run_id, run_row  # noqa: E402
from merflow.training.selection import select_per_fold  # noqa: E402

SCHEDULERS = ("asha", "fifo")
SEARCHED = ("shots", "meta_lr", "pretrain_lr")  # TrainConfig fields a search may vary
METRIC = "validation_accuracy"
TIME_ATTR = "meta_epoch"
COMPLETED = "fold_evaluated"  # in the last report only (Tune's own "done" is set on stopped trials too)
DATA_ERROR = "data_error"      # the last report of a trial ended by a DataError (not retried)


def parse_grid(text: str, kind=float) -> tuple:
    """'0.1:1.0:0.1' (start:stop:step, stop included) or '1,3,5' into a sorted tuple without repeats."""
    text = text.strip()
    try:
        if ":" in text:
            start, stop, step = (float(part) for part in text.split(":"))
            if step <= 0 or stop < start:
                raise ValueError
            count = int((stop - start) / step + 1e-9) + 1
            values = [round(start + i * step, 10) for i in range(count)]
        else:
            values = [float(part) for part in text.split(",") if part.strip()]
        if kind is int:
            if any(v != int(v) for v in values):
                raise ValueError
            values = [int(v) for v in values]
    except ValueError:
        raise ValueError(f"can't read the grid {text!r}: give start:stop:step (e.g. 0.1:1.0:0.1) or a comma list "
                         f"(e.g. 1,3,5){' of whole numbers' if kind is int else ''}") from None
    if not values:
        raise ValueError(f"the grid {text!r} is empty")
    return tuple(sorted(set(values)))


@dataclass(frozen=True)
class SearchSpace:
    """The settings searched: every combination is a configuration, evaluated on every fold; the α
    grid is scored inside each trial (α changes no weights)."""

    shots: tuple[int, ...] = (1, 3, 5, 10)
    alphas: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(1, 11))
    meta_lr: tuple[float, ...] = ()       # empty: the base configuration's value only
    pretrain_lr: tuple[float, ...] = ()

    def configurations(self) -> list[dict]:
        grid = [{"shots": shots} for shots in self.shots]
        for name in ("meta_lr", "pretrain_lr"):
            values = getattr(self, name)
            if values:
                grid = [g | {name: v} for g in grid for v in values]
        return grid


def config_id(searched: dict) -> str:
    """A short name of a configuration, the same for the same settings in any run."""
    return "c" + hashlib.sha256(json.dumps(searched, sort_keys=True).encode()).hexdigest()[:8]


@dataclass(frozen=True)
class SearchConfig:
    """A whole search: what to train, what to vary, where it runs; recorded in the run's row."""

    catalog_dir: str
    store: str
    protocol: str = "loso"
    dataset: str | None = "casme2"
    class_set: str | None = None
    out: str = "results"
    run: str | None = None
    base: TrainConfig = field(default_factory=TrainConfig)
    space: SearchSpace = field(default_factory=SearchSpace)
    scheduler: str = "asha"
    select_by: str = "accuracy"          # the validation metric that picks each fold's configuration
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_failures: int = 2                # retries of a failed trial
    max_folds: int | None = None         # the first N folds only: a quick look, not a result to report
    ray_address: str | None = None       # None: a local Ray; "auto" or ray://HOST:10001: a cluster
    sample_list: str | None = None       # 'survey': only the samples of the survey's lists (tasks/sample_lists.py)
    sample_lists: str | None = None      # their folder (default $MERFLOW_SAMPLE_LISTS)
    feature_config: str | None = None    # hash of the store's feature configuration, where it holds several

    def __post_init__(self):
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {SCHEDULERS}, not {self.scheduler!r}")
        if self.cpus_per_trial <= 0 or self.gpus_per_trial < 0:
            raise ValueError("cpus per trial must be positive and gpus per trial not negative")
        if any(shots < 1 for shots in self.space.shots):
            raise ValueError(f"shots must be at least 1, got {self.space.shots}")
        if self.base.validation_fraction == 0:
            raise ValueError("a search chooses each fold's configuration and α on its validation subjects: "
                             "validation_fraction must be above 0")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def absolute(self) -> SearchConfig:
        """The same search with local paths made absolute (Tune runs each trial in its own folder) and
        URLs as they are (storage/locations.py)."""
        lists = self.sample_lists or (os.environ.get("MERFLOW_SAMPLE_LISTS") if self.sample_list else None)
        return dataclasses.replace(self, catalog_dir=locations.normalise(self.catalog_dir),
                                   store=locations.normalise(self.store), out=locations.normalise(self.out),
                                   sample_lists=locations.normalise(lists) if lists else None)

    def recorded(self) -> dict:
        """What decides the numbers (not where it ran): compared when a run is resumed."""
        settings = self.to_dict()
        for name in ("run", "ray_address", "cpus_per_trial", "gpus_per_trial", "max_failures", "out"):
            settings.pop(name)
        settings["base"].pop("device")
        return json.loads(json.dumps(settings))


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def trial_train_config(search: SearchConfig, searched: dict) -> TrainConfig:
    return dataclasses.replace(search.base, alphas=search.space.alphas, **searched)


# ------------------------------------------------------------------------------------------ the trial
def _protocol_data(catalog_dir: str, store: str, protocol: str, dataset: str | None, class_set: str | None, seed: int,
                   validation_fraction: float = 0.2, sample_list: str | None = None, sample_lists: str | None = None,
                   feature_config: str | None = None):
    # Trials of one search in one worker process (actors are reused) read the features once; a catalog
    # written since (a re-ingest between two searches of one process) is read again.
    stamp = locations.stamp(locations.join(catalog_dir, catalog_store.SAMPLES_FILE))
    return _cached_protocol_data(catalog_dir, store, protocol, dataset, class_set, seed, stamp, validation_fraction,
                                 sample_list, sample_lists, feature_config)


@functools.lru_cache(maxsize=2)
def _cached_protocol_data(catalog_dir, store, protocol, dataset, class_set, seed, catalog_stamp, validation_fraction,
                          sample_list=None, sample_lists=None, feature_config=None):
    return load_protocol(catalog_dir, store, protocol, dataset, class_set, seed, validation_fraction,
                         sample_list=sample_list, sample_lists=sample_lists, feature_config=feature_config)


def fold_trial(params: dict, search: SearchConfig, run: str) -> None:
    """The Tune trainable: one configuration on one fold (see the module's docstring)."""
    torch.set_num_threads(max(1, int(search.cpus_per_trial)))
    spec = params["trial"]
    config = trial_train_config(search, spec["searched"])
    out = search.out
    checkpoints = locations.join(out, "checkpoints", run)
    started = time.perf_counter()
    data = _protocol_data(search.catalog_dir, search.store, search.protocol, search.dataset, search.class_set,
                          search.base.seed, search.base.validation_fraction, search.sample_list, search.sample_lists,
                          search.feature_config)
    fold = data.fold(spec["fold"])
    macro = data.macro_model(config, checkpoints)

    def on_epoch(epoch: int, accuracy: float) -> None:
        tune.report({METRIC: accuracy, TIME_ATTR: epoch, "stage": "micro_meta"})

    result = run_fold(fold, data.source, data.samples, macro, config, checkpoints, on_epoch=on_epoch)
    predictions = fold_predictions(result, data.samples, config.alphas).drop(columns=["chosen"])
    predictions = predictions.assign(run=run, protocol=search.protocol, trial=spec["id"], shots=config.shots,
                                     recipe=config.recipe)
    results.write_part(out, "predictions", run, search.protocol, f"{spec['id']}-{safe_name(fold.name)}", predictions)
    chosen = result["chosen"]
    # Last report: after it the trial counts as completed; its predictions are already on disk.
    tune.report({METRIC: chosen["validation_accuracy"] if chosen["validation_accuracy"] is not None else float("nan"),
                 TIME_ATTR: config.meta_epochs + 1, "stage": "evaluated", COMPLETED: True, "alpha": chosen["alpha"],
                 "epochs": json.dumps({k: v for k, v in chosen.items() if k.endswith("epoch")}),
                 "seconds": round(time.perf_counter() - started, 2)})


def ending_on_data_errors(trainable):
    """``trainable``, except that a ``DataError`` (training/errors.py) ends its trial at once.

    Tune retries every exception a trial raises (FailureConfig has no per-type setting in Ray 2.60),
    and a fold whose data can't be trained on fails the same way every time: the trial catches it
    and reports it as its last result instead, so Tune counts the trial finished, with no retry, and
    ``trial_rows`` records it as an error with the message.
    """

    @functools.wraps(trainable)
    def trial(params: dict, search: SearchConfig, run: str):
        try:
            return trainable(params, search, run)
        except DataError as error:
            # TIME_ATTR 0: below every rung, so early stopping records nothing of this trial.
            tune.report({METRIC: float("nan"), TIME_ATTR: 0, "stage": "data_error",
                         DATA_ERROR: f"{type(error).__name__}: {error}"})

    return trial


# ------------------------------------------------------------------------------------------ scheduler
def foldwise_asha(max_t: int, grace_period: int = 1, reduction_factor: float = 2):
    """ASHA with its own rungs per fold: a trial is compared only with the other configurations of its
    fold, on that fold's validation subjects (see the module's docstring for why)."""

    class FoldwiseASHA(AsyncHyperBandScheduler):
        def __init__(self):
            super().__init__(time_attr=TIME_ATTR, metric=METRIC, mode="max", max_t=max_t,
                             grace_period=grace_period, reduction_factor=reduction_factor)
            self._fold_brackets: dict[str, _Bracket] = {}

        def on_trial_add(self, tune_controller, trial):
            super().on_trial_add(tune_controller, trial)  # checks metric and mode
            fold = trial.config["trial"]["fold"]
            if fold not in self._fold_brackets:
                self._fold_brackets[fold] = _Bracket(grace_period, max_t, reduction_factor, 0)
            self._trial_info[trial.trial_id] = self._fold_brackets[fold]

        def fold_rungs(self) -> dict[str, list]:
            """Per fold, the scores recorded at each rung: what early stopping compared."""
            return {fold: [(milestone, dict(recorded)) for milestone, recorded in bracket._rungs]
                    for fold, bracket in self._fold_brackets.items()}

    return FoldwiseASHA()


# ------------------------------------------------------------------------------------------ the search
def trial_specs(search: SearchConfig, fold_names: list[str]) -> list[dict]:
    """Every (configuration, fold), configuration-major: concurrent trials then work on different folds
    (no one waits for another's pretraining) and later configurations find the folds' encoders trained."""
    return [{"id": config_id(searched), "searched": searched, "fold": fold}
            for searched in search.space.configurations() for fold in fold_names]


def _experiment_path(search: SearchConfig, run: str) -> str:
    """The Tune experiment's location: RESULTS/tune/<run>, a local folder or a URL like --out."""
    return locations.join(locations.normalise(search.out), "tune", safe_name(run))


def _experiment_storage(location: str) -> tuple[str, object]:
    """(path, pyarrow file system) for Ray: a local path and None (Ray's own), or a remote location's
    path on the fsspec file system wrapped for pyarrow, so that Ray's storage uses the same settings
    (endpoint, credentials) as every other access (storage/locations.py)."""
    if not locations.is_remote(location):
        return location, None
    filesystem, path = locations.arrow_filesystem(location)
    return path, filesystem


def _check_same_search(search: SearchConfig, run: str) -> None:
    recorded = locations.join(search.out, "checkpoints", run, "search.json")
    if locations.exists(recorded):
        before = json.loads(locations.read_text(recorded))
        if before != search.recorded():
            changed = sorted(k for k in before.keys() | search.recorded().keys()
                             if before.get(k) != search.recorded().get(k))
            raise ValueError(f"run {run!r} was started with other settings ({', '.join(changed)} differ): "
                             "resume it with the same settings, or start a new run (another --run)")
    locations.write_text(recorded, json.dumps(search.recorded(), indent=2, sort_keys=True))


def init_ray(address: str | None, num_cpus: int | None = None) -> bool:
    """Connect to a Ray cluster, or start a local one; False if Ray was already initialised here."""
    locations.require_ray_client(address)  # ray:// needs ray[client]: one line naming the install
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    return True


def check_resources(per_trial: dict[str, float], cluster: dict[str, float]) -> None:
    """A trial that asks for more than the whole cluster has would wait forever: say so instead."""
    names = {"cpu": "CPU", "gpu": "GPU"}
    for kind, amount in per_trial.items():
        have = cluster.get(names[kind], 0.0)
        if amount > have:
            raise ValueError(f"each trial asks for {amount:g} {names[kind]}(s) but the Ray cluster has {have:g}: "
                             f"lower --{kind}s-per-trial" + (" or give --ray-address of a cluster with GPUs"
                                                             if kind == "gpu" else ""))


class ProgressCallback(tune.Callback):
    """Hands each finished trial to ``on_trial(spec, status)``: the CLI's progress bar, the flow's log."""

    def __init__(self, on_trial):
        self.on_trial = on_trial

    def on_trial_complete(self, iteration, trials, trial, **info):
        last = trial.last_result or {}
        self.on_trial(trial.config["trial"], "error" if last.get(DATA_ERROR) else
                      "completed" if last.get(COMPLETED) else "stopped")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.on_trial(trial.config["trial"], "error")


def run_search(search: SearchConfig, trainable=None, on_trial=None) -> dict:
    """Run (or resume) a search and write its result tables; returns a summary.

    ``trainable`` replaces ``fold_trial`` (same signature), e.g. to wrap it in a test.
    """
    started = time.perf_counter()
    # Missing extras (s3fs for s3://, ray[client] for ray://) are one line, before any work.
    locations.require(search.catalog_dir, search.store, search.out)
    locations.require_ray_client(search.ray_address)
    search = search.absolute()
    run = search.run or new_run_id()
    data = _protocol_data(search.catalog_dir, search.store, search.protocol, search.dataset, search.class_set,
                          search.base.seed, search.base.validation_fraction, search.sample_list, search.sample_lists,
                          search.feature_config)
    # A fold with nothing to train on (fit.fold_problem: fewer than two classes) is left out of the
    # grid with its reason in the run's row, instead of failing every configuration's trial on it.
    skipped = {f.name: problem for f in data.folds if (problem := fold_problem(f, data.samples[f.label_column]))}
    fold_names = [f.name for f in data.folds if f.name not in skipped][: search.max_folds or None]
    specs = trial_specs(search, fold_names)
    _check_same_search(search, run)
    check_run_identity(search.out, run, data.identity())  # another protocol, catalog or store: refused
    if not specs:
        # Every fold skipped: nothing for Ray to run. Each (configuration, fold) is an error row with the
        # fold's reason (as its trial would have ended, without retries), so the tables and the exit
        # status say what a search of failed trials says.
        folds = [f.name for f in data.folds][: search.max_folds or None]
        trials = skipped_trial_rows(trial_specs(search, folds), search, run, skipped)
        summary = write_search_results(search, run, data, trials,
                                       {"search": round(time.perf_counter() - started, 2)}, skipped)
        return summary | {"experiment": _experiment_path(search, run)}
    started_ray = init_ray(search.ray_address, num_cpus=None)
    try:
        resources = {"cpu": search.cpus_per_trial} | ({"gpu": search.gpus_per_trial} if search.gpus_per_trial else {})
        check_resources(resources, ray.cluster_resources())
        wrapped = tune.with_resources(tune.with_parameters(ending_on_data_errors(trainable or fold_trial),
                                                           search=search, run=run), resources)
        path, storage = _experiment_storage(_experiment_path(search, run))
        callbacks = [ProgressCallback(on_trial)] if on_trial else []
        if tune.Tuner.can_restore(path, storage_filesystem=storage):
            tuner = tune.Tuner.restore(path, trainable=wrapped, resume_errored=True, storage_filesystem=storage,
                                       param_space={"trial": tune.grid_search(specs)})
        else:
            scheduler = (foldwise_asha(max_t=search.base.meta_epochs + 1) if search.scheduler == "asha"
                         else FIFOScheduler())
            tuner = tune.Tuner(
                wrapped, param_space={"trial": tune.grid_search(specs)},
                tune_config=tune.TuneConfig(scheduler=scheduler, reuse_actors=True,
                                            trial_dirname_creator=_trial_dirname),
                run_config=tune.RunConfig(name=posixpath.basename(path), storage_path=posixpath.dirname(path),
                                          storage_filesystem=storage, verbose=0, callbacks=callbacks,
                                          failure_config=tune.FailureConfig(max_failures=search.max_failures)))
        grid = tuner.fit()
        # Tune counts each trial's failed attempts (across restores too) in its experiment state.
        failures = {t.trial_id: t.num_failures
                    for t in tune.ExperimentAnalysis(path, storage_filesystem=storage).trials}
        trials = trial_rows(grid, search, run, failures)
    finally:
        if started_ray:
            ray.shutdown()
    search_seconds = round(time.perf_counter() - started, 2)
    summary = write_search_results(search, run, data, trials, {"search": search_seconds}, skipped)
    return summary | {"experiment": _experiment_path(search, run)}


def _trial_dirname(trial) -> str:
    spec = trial.config["trial"]
    return f"{spec['id']}-{safe_name(spec['fold'])}-{trial.trial_id}"


def _error_text(result) -> str | None:
    if result.error is not None:
        return str(result.error)[-2000:]
    if (result.metrics or {}).get(DATA_ERROR):
        return str(result.metrics[DATA_ERROR])[-2000:]
    if result.path:  # an attempt failed and a retry then succeeded (the trial's folder may be remote)
        import pyarrow.fs

        filesystem = result.filesystem or pyarrow.fs.LocalFileSystem()
        error_file = posixpath.join(result.path, "error.txt")
        if filesystem.get_file_info(error_file).type == pyarrow.fs.FileType.File:
            with filesystem.open_input_stream(error_file) as stream:
                return stream.read().decode(errors="replace")[-2000:]
    return None


def trial_rows(grid, search: SearchConfig, run: str, failures: dict[str, int]) -> pd.DataFrame:
    """One row per trial of the grid: status, failed attempts, error, and what it chose on validation."""
    rows = []
    for result in grid:
        spec = result.config["trial"]
        metrics = result.metrics or {}
        status = ("error" if result.error is not None or metrics.get(DATA_ERROR)
                  else "completed" if metrics.get(COMPLETED) else "stopped")
        # A trial that failed before its first report has no metrics: its folder ends in its id (_trial_dirname).
        trial_id = metrics.get("trial_id") or posixpath.basename(result.path).rsplit("-", 1)[-1]
        config = trial_train_config(search, spec["searched"])
        rows.append({
            "run": run, "protocol": search.protocol, "trial": spec["id"], "fold": spec["fold"],
            "tune_trial_id": trial_id, "status": status, "failures": failures.get(trial_id, 0),
            "error": _error_text(result),
            "shots": config.shots, "searched": json.dumps(spec["searched"], sort_keys=True),
            "config": json.dumps(config.to_dict(), sort_keys=True),
            "validation_accuracy": metrics.get(METRIC) if status == "completed" else None,
            "alpha": metrics.get("alpha") if status == "completed" else None,
            "epochs": metrics.get("epochs") if status == "completed" else None,
            "seconds": metrics.get("seconds")})
    return pd.DataFrame(rows, columns=results.TRIALS_SCHEMA.names)


def skipped_trial_rows(specs: list[dict], search: SearchConfig, run: str, skipped: dict[str, str]) -> pd.DataFrame:
    """Trial rows for folds left out before the search (``fit.fold_problem``): status error, no attempt."""
    rows = []
    for spec in specs:
        config = trial_train_config(search, spec["searched"])
        reason = f"{FoldSkipped.__name__}: {FoldSkipped(spec['fold'], skipped[spec['fold']])}"
        rows.append({"run": run, "protocol": search.protocol, "trial": spec["id"], "fold": spec["fold"],
                     "tune_trial_id": None, "status": "error", "failures": 0, "error": reason,
                     "shots": config.shots, "searched": json.dumps(spec["searched"], sort_keys=True),
                     "config": json.dumps(config.to_dict(), sort_keys=True), "validation_accuracy": None,
                     "alpha": None, "epochs": None, "seconds": None})
    return pd.DataFrame(rows, columns=results.TRIALS_SCHEMA.names)


def write_search_results(search: SearchConfig, run: str, data, trials: pd.DataFrame, timings: dict,
                         skipped: dict | None = None) -> dict:
    """Metrics of every configuration and the per-fold selection, from the predictions the trials wrote."""
    out, protocol, classes = search.out, search.protocol, data.classes
    results.write_part(out, "trials", run, protocol, "all", trials)
    completed = trials[trials["status"] == "completed"]
    predictions = results.read_table(out, "predictions", run=run)
    predictions = predictions[predictions["trial"] != SELECTED]
    done = set(zip(completed["trial"], completed["fold"]))
    # A boolean array, not a list: an empty list would select no columns (a search with no completed trial).
    predictions = predictions[np.array([pair in done for pair in zip(predictions["trial"], predictions["fold"])],
                                       dtype=bool)]
    fold_count = trials["fold"].nunique()
    chosen_alpha = {(t, f): a for t, f, a in zip(completed["trial"], completed["fold"], completed["alpha"])}
    for trial, rows in predictions.groupby("trial"):
        # Rows marked chosen: the fused model at the α this configuration chose on each fold's validation.
        alphas = np.array([chosen_alpha[(trial, fold)] for fold in rows["fold"]], dtype=float)
        chosen = (rows["model"] == "fused") & np.isclose(rows["alpha"].astype(float), alphas)
        metrics = metric_rows(rows.assign(chosen=chosen), classes)
        # A configuration's pooled scores only where it finished every fold: a partial pool misleads.
        if rows["fold"].nunique() < fold_count:
            metrics = metrics[metrics["scope"] == "fold"]
        results.write_part(out, "metrics", run, protocol, trial,
                           metrics.assign(run=run, protocol=protocol, trial=trial, shots=int(rows["shots"].iloc[0]),
                                          recipe=search.base.recipe))
    selected = select_per_fold(predictions, classes, by=search.select_by) if len(predictions) else predictions
    if len(selected):
        selected = selected.assign(shots=None, run=run, protocol=protocol, recipe=search.base.recipe)
        results.write_part(out, "predictions", run, protocol, SELECTED, selected)
        selected_metrics = metric_rows(selected.assign(alpha=None, chosen=False), classes)
        selected_metrics = selected_metrics[~selected_metrics["chosen"]].assign(chosen=True)
        results.write_part(out, "metrics", run, protocol, SELECTED,
                           selected_metrics.assign(run=run, protocol=protocol, trial=SELECTED, shots=None,
                                                   recipe=search.base.recipe))
    results.write_part(out, "runs", run, protocol, "all", [run_row(
        run, protocol, search.dataset, {"search": search.recorded(), "kind": "tune"}
        | ({"sample_list": data.sample_list} if data.sample_list else {})
        # samples quarantined by the features flow (left out before the folds) and folds left out
        | {"data": {"excluded_samples": dict(sorted(data.excluded.items())), "skipped_folds": skipped or {}}},
        data.feature_config, classes, timings)])
    counts = trials["status"].value_counts().to_dict()
    return {"run": run, "protocol": protocol, "dataset": search.dataset, "classes": classes, "folds": fold_count,
            "configurations": trials["trial"].nunique(), "trials": len(trials), "status": counts,
            "failures": int(trials["failures"].sum()), "errors": trials[trials["status"] == "error"],
            "selected_folds": int(selected["fold"].nunique()) if len(selected) else 0,
            "timings": timings, "results": str(out),
            "notes": {"excluded_samples": dict(sorted(data.excluded.items())), "skipped_folds": skipped or {}}}
