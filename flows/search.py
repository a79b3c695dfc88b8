"""The search engine: Ray started (or joined) and stopped, the Tuner run or restored, its trials read back.

``run_search`` is the tune flow's driver: it reads the protocol data through the trainable's cache
(flows/trial.py), leaves out folds with nothing to train on, runs every (configuration, fold)
as a Tune trial (``fold_trial``; early stopping per fold with ``foldwise_asha``), reads each trial's
status, failed attempts and error from Tune (``Tuner.fit()`` does not raise on failed trials), has
training/search/tables.py compute the rows and storage/results.py write them, and returns the summary
with the tables as written. A rerun with the same run id restores the Tune experiment
(``Tuner.restore``) and finishes what is left.
"""

from __future__ import annotations

import json
import os
import posixpath
import time

import ray
from ray import tune
from ray.tune.schedulers import FIFOScheduler

import merflow.training.search  # noqa: F401  (Ray's offline defaults, set before ray.init)
from merflow.configs.names import check_name
from merflow.configs.search import SearchConfig
from merflow.flows.trial import ending_on_data_errors, fold_trial, in_environment, protocol_data, trial_environment
from merflow.storage import locations, results
from merflow.storage.checkpoints import check_run_identity
from merflow.training.models import nearest_centroid
from merflow.training.run import run_id
from merflow.training.search.reports import COMPLETED, DATA_ERROR
from merflow.training.search.scheduler import foldwise_asha
from merflow.training.search.space import safe_name, trial_specs
from merflow.training.search.tables import search_summary, search_tables, skipped_trial_rows, trial_rows
from merflow.training.stages import fold_problem


def absolute(search: SearchConfig) -> SearchConfig:
    """The same search with local paths made absolute (Tune runs each trial in its own folder) and URLs as
    they are (storage/locations.py); the sample lists' folder from $MERFLOW_SAMPLE_LISTS where not given."""
    lists = search.sample_lists or (os.environ.get("MERFLOW_SAMPLE_LISTS") if search.sample_list else None)
    return search.replace(catalog_dir=locations.normalise(search.catalog_dir), store=locations.normalise(search.store),
                          out=locations.normalise(search.out), sample_lists=locations.normalise(lists) if lists else None)


def experiment_path(search: SearchConfig, run: str) -> str:
    """The Tune experiment's location: RESULTS/tune/<run>, a local folder or a URL like --out; the run id a
    name (configs/names.py), never rewritten: two searches never share one experiment."""
    return locations.join(locations.normalise(search.out), "tune", check_name(run, "run id"))


def _experiment_storage(location: str) -> tuple[str, object]:
    """(path, pyarrow file system) for Ray: a local path and None (Ray's own), or a remote location's
    path on the fsspec file system wrapped for pyarrow, so that Ray's storage uses the same settings
    (endpoint, credentials) as every other access (storage/locations.py)."""
    if not locations.is_remote(location):
        return location, None
    filesystem, path = locations.arrow_filesystem(location)
    return path, filesystem


def _check_same_search(search: SearchConfig, run: str) -> None:
    recorded = locations.join(search.out, "checkpoints", check_name(run, "run id"), "search.json")
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
        """A trial ended: completed, stopped early, or ended by a data error."""
        last = trial.last_result or {}
        self.on_trial(trial.config["trial"], "error" if last.get(DATA_ERROR) else
                      "completed" if last.get(COMPLETED) else "stopped")

    def on_trial_error(self, iteration, trials, trial, **info):
        """A trial failed its last attempt."""
        self.on_trial(trial.config["trial"], "error")


def run_search(search: SearchConfig, trainable=None, on_trial=None) -> dict:
    """Run (or resume) a search and write its result tables; returns a summary.

    The summary's ``tables`` holds the ``trials``, ``metrics`` and ``runs`` rows as written (for the flow's
    artifacts, without reading them back). ``trainable`` replaces ``fold_trial`` (same signature), e.g. to
    wrap it in a test.
    """
    started = time.perf_counter()
    # Missing extras (s3fs for s3://, ray[client] for ray://) are one line, before any work.
    locations.require(search.catalog_dir, search.store, search.out)
    locations.require_ray_client(search.ray_address)
    search = absolute(search)
    run = run_id(search.run)
    with results.writing_run(search.out, run):  # another command writing this run id: refused, one line
        data = protocol_data(search)
        # A fold with nothing to train on (stages.fold_problem: fewer than two classes) is left out of the
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
            return _finish(search, run, data, trials, {"search": round(time.perf_counter() - started, 2)}, skipped)
        started_ray = init_ray(search.ray_address, num_cpus=None)
        try:
            resources = {"cpu": search.cpus_per_trial} | ({"gpu": search.gpus_per_trial} if search.gpus_per_trial else {})
            check_resources(resources, ray.cluster_resources())
            trial = in_environment(ending_on_data_errors(trainable or fold_trial), trial_environment())
            wrapped = tune.with_resources(tune.with_parameters(trial, search=search, run=run), resources)
            path, storage = _experiment_storage(experiment_path(search, run))
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
            trials = trial_rows([trial_outcome(result) for result in grid], search, run, failures)
        finally:
            if started_ray:
                ray.shutdown()
        search_seconds = round(time.perf_counter() - started, 2)
        # The floor (nearest centroid, flow u, v) on the search's folds, once per search, into the floor tables.
        floor = nearest_centroid.floor(data, [data.fold(n) for n in fold_names])
        results.write_floor(search.out, run, search.protocol, floor["metrics"], floor["predictions"])
        return _finish(search, run, data, trials, {"search": search_seconds, "floor": floor["seconds"]}, skipped,
                       floor["metrics"])


def _finish(search: SearchConfig, run: str, data, trials, timings: dict, skipped: dict, floor_metrics=None) -> dict:
    """Every configuration's metrics and the per-fold selection, from the predictions the trials wrote; the
    floor's metrics (written already) ride along in the returned tables."""
    predictions = results.read_table(search.out, "predictions", run=run)
    tables = search_tables(search, run, data, trials, predictions, timings, skipped)
    written = results.write_search(search.out, run, search.protocol, trials, tables["metrics"], tables["selected"],
                                   tables["runs"])
    return (search_summary(search, run, data, trials, tables["selected"], timings, skipped)
            | {"experiment": experiment_path(search, run), "tables": written | {"floor_metrics": floor_metrics}})


def _trial_dirname(trial) -> str:
    spec = trial.config["trial"]
    return f"{spec['id']}-{safe_name(spec['fold'])}-{trial.trial_id}"


def trial_outcome(result) -> dict:
    """One trial of Tune's result grid as ``tables.trial_rows`` takes it: spec, last report, error, Tune's id."""
    metrics = result.metrics or {}
    # A trial that failed before its first report has no metrics: its folder ends in its id (_trial_dirname).
    trial_id = metrics.get("trial_id") or posixpath.basename(result.path).rsplit("-", 1)[-1]
    return {"spec": result.config["trial"], "metrics": metrics, "failed": result.error is not None,
            "error": _error_text(result), "trial_id": trial_id}


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
