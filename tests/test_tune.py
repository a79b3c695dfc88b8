"""Ray Tune searches through a real local Ray (2 CPUs) and real DuckDB: rows for every trial and fold,
retried and reported failures, resuming, early stopping compared within a fold only."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import ray.cloudpickle
from ray import tune

import merflow.training.search.reports as reports
from merflow.configs.search import SearchConfig, SearchSpace
from merflow.configs.train import TrainConfig
from merflow.flows.cli import main
from merflow.flows.search import check_resources, run_search
from merflow.flows.trial import fold_trial
from merflow.flows.tune import tune_flow
from merflow.storage import queries, results
from merflow.training.search.scheduler import foldwise_asha
from merflow.training.search.space import config_id, parse_grid, trial_specs

# The first test of a search fixture pays for it (and for training_set when it is the first user): a
# limit above the suite's 300 s for every test here; the unit tests' limit does not matter.
pytestmark = pytest.mark.timeout(600)

TINY = TrainConfig(macro_epochs=3, pretrain_epochs=4, meta_epochs=2, batches_per_epoch=3)
GRID = SearchSpace(shots=(1, 3), alphas=(0.5, 1.0))
FOLDS = 3

# Ray workers can't import this test module: send its functions by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _search(training_set, out: Path, run: str, **changes) -> SearchConfig:
    return SearchConfig(**{"catalog_dir": str(training_set["catalog"]), "store": training_set["store"],
                           "protocol": "loso", "dataset": "casme2", "out": str(out), "run": run, "base": TINY,
                           "space": GRID, "scheduler": "fifo", "max_folds": FOLDS, "max_failures": 1} | changes)


@pytest.fixture(scope="module")
def searched(training_set, ray_local, tmp_path_factory):
    """A 2 x 2 search (shots 1, 3; α 0.5, 1.0) on 3 LOSO folds through the real Prefect flow."""
    out = tmp_path_factory.mktemp("tune")
    summary = tune_flow(catalog_dir=str(training_set["catalog"]), store=training_set["store"], dataset="casme2",
                        out=str(out), shots=[1, 3], alphas=[0.5, 1.0], config=TINY, scheduler="fifo",
                        max_folds=FOLDS, run="grid")
    return summary, out


@pytest.mark.integration
@pytest.mark.slow
def test_a_2x2_search_has_rows_for_every_trial_and_fold(searched):
    summary, out = searched
    assert summary["trials"] == 2 * FOLDS and summary["status"] == {"completed": 2 * FOLDS}
    trials = results.read_table(out, "trials", run="grid")
    assert len(trials) == 2 * FOLDS and (trials["status"] == "completed").all() and (trials["failures"] == 0).all()
    assert sorted(trials["shots"].unique()) == [1, 3] and trials["fold"].nunique() == FOLDS
    metrics = results.read_table(out, "metrics", run="grid")
    per_fold = metrics[(metrics["scope"] == "fold") & ~metrics["chosen"] & (metrics["trial"] != "selected")]
    # A row per (trial, fold, model, α) and split: micro, macro, fused at α 0.5 and 1.0.
    counts = per_fold.groupby(["trial", "key", "split"]).size()
    assert len(counts) == 2 * FOLDS * 2 and (counts == 4).all()
    assert sorted(per_fold["alpha"].dropna().round(2).unique()) == [0.5, 1.0]
    pooled = metrics[(metrics["scope"] == "pooled") & (metrics["split"] == "test")]
    assert set(pooled["trial"]) == set(trials["trial"]) | {"selected"}
    # Each configuration's fused model at the α it chose on each fold's validation subjects.
    own_choice = pooled[pooled["chosen"] & (pooled["trial"] != "selected")]
    assert sorted(own_choice["trial"]) == sorted(trials["trial"].unique()) and (own_choice["model"] == "fused").all()
    selected = pooled[pooled["trial"] == "selected"]
    assert sorted(selected["model"]) == ["fused", "macro", "micro"] and selected["chosen"].all()
    assert [Path(p).exists() and Path(p).stat().st_size > 1000 for p in summary["pictures"]] == \
           [True] * len(summary["pictures"]) and len(summary["pictures"]) >= 2


@pytest.mark.integration
@pytest.mark.slow
def test_queries_return_what_the_trainer_measured(searched):
    _, out = searched
    measured = queries.query(out, """
        select trial, avg((label = pred)::int) as accuracy, count(*) as n from predictions
        where split = 'test' and model = 'micro' and trial <> 'selected' group by trial order by trial""")
    tabled = queries.query(out, """
        select trial, accuracy, n from metrics
        where scope = 'pooled' and split = 'test' and model = 'micro' and trial <> 'selected' order by trial""")
    assert len(measured) == 2
    assert measured["accuracy"].tolist() == pytest.approx(tabled["accuracy"].tolist())
    assert measured["n"].tolist() == tabled["n"].tolist()
    # The per-fold choice: each fold's selected rows come from one of that fold's completed trials.
    chosen = queries.query(out, """
        select distinct p.fold, p.model, p.chosen_from from predictions p where p.trial = 'selected'""")
    trials = queries.query(out, "select trial, fold from trials where status = 'completed'")
    assert set(zip(chosen["chosen_from"], chosen["fold"])) <= set(zip(trials["trial"], trials["fold"]))
    assert len(chosen) == FOLDS * 3


@pytest.mark.integration
@pytest.mark.slow
def test_selection_never_takes_a_test_subject_into_a_choice(searched):
    _, out = searched
    predictions = results.read_table(out, "predictions", run="grid")
    search = predictions[predictions["trial"] != "selected"]
    # Every fold's test samples belong to its held-out subject only, which validates nowhere in that fold.
    for fold, rows in search.groupby("fold"):
        test_subjects = set(rows.loc[rows["split"] == "test", "subject_key"])
        assert len(test_subjects) == 1
        assert not test_subjects & set(rows.loc[rows["split"] == "validation", "subject_key"]), fold


@pytest.mark.integration
@pytest.mark.slow
def test_a_rerun_resumes_and_trains_nothing(searched, training_set):
    summary, out = searched
    stamps = {p: p.stat().st_mtime_ns for p in (out / "checkpoints" / "grid").rglob("*.pt")}
    again = run_search(_search(training_set, out, "grid"))
    assert again["status"] == {"completed": 2 * FOLDS}
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert set((out / "checkpoints" / "grid").rglob("*.pt")) == set(stamps)
    trials = results.read_table(out, "trials", run="grid")
    assert (trials["failures"] == 0).all()  # restored from the experiment: no trial ran a second time


@pytest.mark.integration
@pytest.mark.slow
def test_changed_settings_do_not_resume_another_run(searched, training_set):
    _, out = searched
    with pytest.raises(ValueError, match="other settings"):
        run_search(_search(training_set, out, "grid", space=SearchSpace(shots=(1, 5), alphas=(0.5, 1.0))))


def flaky_trial(params, search, run):
    """The real trial, except that one is killed (SIGKILL, as a lost worker) while it trains on its first
    attempt and one always fails."""
    spec = params["trial"]
    marker = Path(search.out) / f"killed-{spec['id']}"
    if spec["searched"]["shots"] == 1 and spec["fold"].endswith("sub01") and not marker.exists():
        marker.touch()
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGKILL)).start()
    if spec["searched"]["shots"] == 3 and spec["fold"].endswith("sub02"):
        raise RuntimeError("made to fail: unreadable features")
    return fold_trial(params, search, run)


@pytest.mark.integration
@pytest.mark.slow
def test_failed_trials_are_retried_and_reported(training_set, ray_local, tmp_path):
    summary = run_search(_search(training_set, tmp_path, "flaky"), trainable=flaky_trial)
    assert summary["status"] == {"completed": 2 * FOLDS - 1, "error": 1}
    trials = results.read_table(tmp_path, "trials", run="flaky").set_index(["shots", "fold"])
    killed = trials.loc[(1, "loso-casme2-sub01")]
    assert killed["status"] == "completed" and killed["failures"] == 1 and killed["error"]
    failed = trials.loc[(3, "loso-casme2-sub02")]
    assert failed["status"] == "error" and failed["failures"] == 2 and "made to fail" in failed["error"]
    assert len(summary["errors"]) == 1
    # The failed trial has no rows; its fold is still selected from the configuration that completed.
    metrics = results.read_table(tmp_path, "metrics", run="flaky")
    assert not ((metrics["shots"] == 3) & (metrics["key"] == "loso-casme2-sub02")).any()
    selected = results.read_table(tmp_path, "predictions", run="flaky").query("trial == 'selected'")
    assert set(selected["fold"]) == {f"loso-casme2-sub0{i}" for i in (1, 2, 3)}
    assert set(selected.loc[selected["fold"] == "loso-casme2-sub02", "shots"].dropna()) <= {1}


@pytest.mark.integration
@pytest.mark.slow
def test_an_interrupted_search_resumes_where_it_stopped(training_set, ray_local, tmp_path):
    script = textwrap.dedent(f"""
        from merflow.configs.train import TrainConfig
        from merflow.flows.search import run_search
        from merflow.configs.search import SearchConfig, SearchSpace
        if __name__ == "__main__":
            run_search(SearchConfig(catalog_dir={str(training_set['catalog'])!r}, store={training_set['store']!r},
                                    dataset="casme2", out={str(tmp_path)!r}, run="cut", base=TrainConfig(**{TINY.to_dict()!r}),
                                    space=SearchSpace(shots=(1, 3), alphas=(0.5, 1.0)), scheduler="fifo", max_folds={FOLDS},
                                    cpus_per_trial=2))
        """)
    (tmp_path / "search.py").write_text(script)
    driver = subprocess.Popen([sys.executable, str(tmp_path / "search.py")], start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = tmp_path / "predictions" / "run=cut" / "protocol=loso"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and len(list(parts.glob("part-*.parquet"))) < 2 and driver.poll() is None:
        time.sleep(0.5)
    os.killpg(driver.pid, signal.SIGKILL)  # the driver, its local Ray and the trial running: all gone
    driver.wait()
    finished = sorted(parts.glob("part-*.parquet"))
    assert 2 <= len(finished) < 2 * FOLDS, "the search was not cut in the middle"
    evaluated = {p: p.stat().st_mtime_ns for p in (tmp_path / "checkpoints" / "cut").rglob("evaluation-*.pt")}
    summary = run_search(_search(training_set, tmp_path, "cut", cpus_per_trial=2, max_failures=2))
    assert summary["status"] == {"completed": 2 * FOLDS}
    # What finished before the cut was not trained again.
    assert all(p.stat().st_mtime_ns == stamp for p, stamp in evaluated.items())
    assert len(list(parts.glob("part-*.parquet"))) == 2 * FOLDS + 1  # every trial, and the selection


@pytest.mark.integration
@pytest.mark.slow
def test_trials_asking_for_a_fraction_of_a_gpu_get_one(training_set, ray_local, tmp_path):
    """On the logical GPU of ``ray_local`` (no CUDA here: the trial still trains on the CPU)."""
    summary = run_search(_search(training_set, tmp_path, "gpu", gpus_per_trial=0.5, max_folds=1,
                                 space=SearchSpace(shots=(1, 3), alphas=(1.0,))), trainable=gpu_recording_trial)
    assert summary["status"] == {"completed": 2}
    seen = [json.loads(p.read_text()) for p in tmp_path.glob("gpu-*.json")]
    assert len(seen) == 2 and all(s["gpu_ids"] == [0] and s["cuda_visible"] == "0" for s in seen)


def gpu_recording_trial(params, search, run):
    spec = params["trial"]
    Path(search.out, f"gpu-{spec['id']}.json").write_text(json.dumps(
        {"gpu_ids": [int(i) for i in ray.get_gpu_ids()], "cuda_visible": os.environ.get("CUDA_VISIBLE_DEVICES")}))
    return fold_trial(params, search, run)


# ------------------------------------------------------------------------------------------ early stopping
CURVES = {("A", "good"): 0.9, ("A", "weak"): 0.8, ("B", "good"): 0.3, ("B", "weak"): 0.2}


def scripted_trial(params):
    spec = params["trial"]
    score = CURVES[(spec["fold"], spec["id"])]
    for epoch in (1, 2):
        tune.report({reports.METRIC: score, reports.TIME_ATTR: epoch})
    tune.report({reports.METRIC: score, reports.TIME_ATTR: 3, reports.COMPLETED: True})


def _early_stopping(scheduler, storage: Path) -> dict:
    specs = [{"fold": fold, "id": name} for fold, name in CURVES]  # A's trials first, one at a time
    grid = tune.Tuner(tune.with_resources(scripted_trial, {"cpu": 2}), param_space={"trial": tune.grid_search(specs)},
                      tune_config=tune.TuneConfig(scheduler=scheduler),
                      run_config=tune.RunConfig(storage_path=str(storage), verbose=0)).fit()
    return {(r.config["trial"]["fold"], r.config["trial"]["id"]): bool(r.metrics.get(reports.COMPLETED)) for r in grid}


@pytest.mark.integration
def test_early_stopping_compares_a_trial_only_within_its_fold(ray_local, tmp_path):
    completed = _early_stopping(foldwise_asha(max_t=3), tmp_path / "foldwise")
    assert completed == {("A", "good"): True, ("A", "weak"): False, ("B", "good"): True, ("B", "weak"): False}
    # Plain ASHA pools the folds: fold B's best configuration falls below fold A's scores and is stopped,
    # so which settings fold B keeps would depend on other folds' validation subjects.
    from ray.tune.schedulers import AsyncHyperBandScheduler

    plain = AsyncHyperBandScheduler(time_attr=reports.TIME_ATTR, metric=reports.METRIC, mode="max", max_t=3,
                                    grace_period=1, reduction_factor=2)
    assert _early_stopping(plain, tmp_path / "plain")[("B", "good")] is False


# ------------------------------------------------------------------------------------------ settings
def test_grids_read_ranges_and_lists():
    assert parse_grid("0.1:1.0:0.1") == tuple(round(0.1 * i, 1) for i in range(1, 11))
    assert parse_grid("1,3,5,10", int) == (1, 3, 5, 10)
    assert parse_grid("3,1,3", int) == (1, 3)
    for bad in ("1.5,2", "a,b", "1:0:0.1", "0:1:0", ""):
        with pytest.raises(ValueError):
            parse_grid(bad, int)


def test_search_space_and_configuration_ids():
    space = SearchSpace(shots=(1, 3), meta_lr=(0.05, 0.01))
    configurations = space.configurations()
    assert len(configurations) == 4 and {c["shots"] for c in configurations} == {1, 3}
    ids = {config_id(c) for c in configurations}
    assert len(ids) == 4 and config_id({"shots": 1, "meta_lr": 0.05}) in ids
    specs = trial_specs(SearchConfig(catalog_dir="c", store="s", space=space), ["f1", "f2"])
    assert [(s["id"], s["fold"]) for s in specs[:2]] == [(specs[0]["id"], "f1"), (specs[0]["id"], "f2")]
    assert set(itertools.product(ids, ["f1", "f2"])) == {(s["id"], s["fold"]) for s in specs}
    with pytest.raises(ValueError, match="shots"):
        SearchConfig(catalog_dir="c", store="s", space=SearchSpace(shots=(0,)))
    with pytest.raises(ValueError, match="scheduler"):
        SearchConfig(catalog_dir="c", store="s", scheduler="pbt")


@pytest.mark.integration
@pytest.mark.slow
def test_cli_tune_runs_a_search_and_prints_the_selected_result(training_set, ray_local, tmp_path, capsys):
    status = main(["tune", "--catalog", str(training_set["catalog"]), "--store", training_set["store"],
                   "--dataset", "casme2", "--shots", "2", "--alpha", "0:1:0.5", "--max-folds", "1",
                   "--macro-epochs", "2", "--pretrain-epochs", "2", "--meta-epochs", "1", "--batches-per-epoch", "2",
                   "--out", str(tmp_path), "--run", "cli"])
    output = capsys.readouterr().out
    assert status == 0, output
    assert "fused" in output and "trials: 1 (completed 1)" in output
    assert "floor (nearest-centroid, flow u, v)" in output  # the floor on the same folds, beside the selected result
    assert main(["tune", "--catalog", "x", "--store", "y", "--shots", "1.5"]) == 2
    assert "whole numbers" in capsys.readouterr().out


def test_a_trial_larger_than_the_cluster_is_refused_with_a_reason():
    check_resources({"cpu": 2, "gpu": 0.25}, {"CPU": 16.0, "GPU": 1.0})
    with pytest.raises(ValueError, match="GPU.*the Ray cluster has 0"):
        check_resources({"cpu": 1, "gpu": 0.25}, {"CPU": 2.0})
    with pytest.raises(ValueError, match="cpus-per-trial"):
        check_resources({"cpu": 4}, {"CPU": 2.0})


# ------------------------------------------------------------------------------------------ data errors
def _catalog_of_one_class(training_set, folder: Path) -> Path:
    """A copy of the catalog in which every CASME II sample is labelled surprise: no fold has two classes to
    train on, which no retry can change (training/stages.py fold_problem raises FoldSkipped, a DataError)."""
    from merflow.storage import catalog

    folder.mkdir(parents=True, exist_ok=True)
    for name in (catalog.SAMPLES_FILE, catalog.QUARANTINE_FILE, catalog.SOURCES_FILE):
        if (training_set["catalog"] / name).exists():
            (folder / name).write_bytes((training_set["catalog"] / name).read_bytes())
    samples = catalog.read_samples(folder)
    samples["label_casme2_4"] = samples["label_casme2_4"].where(samples["label_casme2_4"].isna(), "surprise")
    catalog.write_table(folder, catalog.SAMPLES_FILE, samples)
    return folder


@pytest.mark.integration
@pytest.mark.slow
def test_a_search_where_every_trial_fails_writes_its_tables_and_exits_1(training_set, ray_local, tmp_path, capsys):
    """A data error fails every trial once each (no retry, though 2 are allowed); each reason is in the trials
    table and on the console, the runs row is written, and the exit status is 1."""
    catalog_dir = _catalog_of_one_class(training_set, tmp_path / "catalog")
    out = tmp_path / "results"
    status = main(["tune", "--catalog", str(catalog_dir), "--store", training_set["store"], "--dataset", "casme2",
                   "--shots", "1", "--alpha", "0:1:0.5", "--max-folds", "2", "--max-failures", "2",
                   "--macro-epochs", "1", "--pretrain-epochs", "1", "--meta-epochs", "1", "--batches-per-epoch", "1",
                   "--scheduler", "fifo", "--out", str(out), "--run", "allfail"])
    output = capsys.readouterr().out
    assert status == 1, output
    trials = results.read_table(out, "trials", run="allfail")
    assert len(trials) == 2 and (trials["status"] == "error").all()
    assert (trials["failures"] == 0).all()  # a DataError is not retried
    for row in trials.itertuples():
        assert row.error.startswith(f"FoldSkipped: fold {row.fold} skipped") and "surprise" in row.error, row.error
        assert f"{row.fold} failed" in output
    assert "fewer than 2 classes" in output and "Traceback" not in output
    assert "run allfail again (the same --run)" in output  # how to resume, in the error line
    assert "trials: 2 (error 2)" in output  # the trials' counts, printed from the stored tables
    assert len(results.read_table(out, "runs", run="allfail")) == 1
    assert results.read_table(out, "metrics", run="allfail").empty


@pytest.mark.integration
@pytest.mark.slow
def test_a_failed_search_prints_from_its_stored_tables_what_the_flow_returns(searched, capsys):
    """With failed trials the flow raises (TrialsFailed carries no summary) and `merflow tune` prints from the
    stored tables and plots: read back, a search's summary prints exactly as the flow's returned one."""
    from merflow.flows.cli.commands import stored_search_summary
    from merflow.flows.cli.render import print_tune_summary

    summary, out = searched
    capsys.readouterr()
    print_tune_summary(summary, out)
    returned = capsys.readouterr().out
    print_tune_summary(stored_search_summary(str(out), summary["run"]), out)
    assert capsys.readouterr().out == returned and "plot: " in returned and "fused" in returned


@pytest.mark.integration
def test_failed_trials_fail_the_flow_run_and_a_calling_flow(prefect_backend):
    """TrialsFailed is raised, not returned as a Failed state (whose data a caller would get as a TypeError):
    the flow run fails, so does a flow calling it as a subflow (the pipeline), and the caller (the CLI) gets
    the run and the results location, also through a pickled copy."""
    import pickle

    from prefect import flow

    from merflow.flows.tune import TrialsFailed

    @flow
    def failing_search():
        raise TrialsFailed("1 trial(s) failed", "r1", "/results")

    @flow
    def calling_flow():
        return failing_search()

    state = calling_flow(return_state=True)
    assert state.is_failed()
    with pytest.raises(TrialsFailed) as raised:
        state.result()
    copied = pickle.loads(pickle.dumps(raised.value))
    assert (str(copied), copied.run, copied.results) == ("1 trial(s) failed", "r1", "/results")
    assert (raised.value.run, raised.value.results) == ("r1", "/results")


# ------------------------------------------------------------------------------------------ a node lost
NODE_LOSS_SCRIPT = '''
import json, os, sys, threading, time
from pathlib import Path

import ray
import ray._common.utils
from ray.cluster_utils import Cluster

from merflow.configs.train import TrainConfig
from merflow.flows.search import run_search
from merflow.configs.search import SearchConfig, SearchSpace
from merflow.flows.trial import fold_trial

out = Path(sys.argv[1])
settings = json.loads(sys.argv[2])


def recording_trial(params, search, run):
    """The real trial; each attempt first says which node it runs on."""
    spec = params["trial"]
    node = ray.get_runtime_context().get_node_id()
    stamp = f"{spec['id']}-{spec['fold']}-{time.monotonic_ns()}"
    Path(search.out, "attempts", stamp + ".json").write_text(json.dumps({"trial": spec["id"], "fold": spec["fold"],
                                                                         "node": node}))
    return fold_trial(params, search, run)


if __name__ == "__main__":
    (out / "attempts").mkdir(parents=True, exist_ok=True)
    # Two nodes of one CPU each: one trial runs on each. The driver's own Ray: the test process may hold
    # another (the ray_local fixture), so this runs in a process of its own.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    # Cluster records its address as this machine's current cluster (/tmp/ray/ray_current_cluster), where
    # any other process's plain ray.init() would then join it: forget it (we connect by address).
    ray._common.utils.reset_ray_address()
    worker = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    worker_id = worker.node_id
    search = SearchConfig(catalog_dir=settings["catalog"], store=settings["store"], dataset="casme2", out=str(out),
                          run="nodeloss", base=TrainConfig(**settings["base"]),
                          space=SearchSpace(shots=(1, 3), alphas=(0.5, 1.0)), scheduler="fifo", max_folds=2,
                          max_failures=2)
    outcome = {}
    searching = threading.Thread(target=lambda: outcome.update(summary=run_search(search, trainable=recording_trial)))
    searching.start()

    def on_worker_node():
        seen = [json.loads(p.read_text()) for p in (out / "attempts").glob("*.json")]
        return [s for s in seen if s["node"] == worker_id]

    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not on_worker_node():
        time.sleep(0.2)
    lost = on_worker_node()
    time.sleep(1.5)  # the trial is training on the node now
    cluster.remove_node(worker, allow_graceful=False)
    searching.join(600)
    summary = outcome["summary"]
    (out / "report.json").write_text(json.dumps({"lost": lost, "status": summary["status"],
                                                 "failures": summary["failures"], "worker_node": worker_id}))
    ray.shutdown()
    cluster.shutdown()
'''


@pytest.mark.timeout(900)  # its own two-node cluster, in a subprocess given 600 s
@pytest.mark.integration
@pytest.mark.slow
def test_a_node_removed_mid_search_retries_its_trials_and_every_table_is_complete(training_set, tmp_path):
    """A two-node Ray cluster (ray.cluster_utils.Cluster, in its own process: the session's ray_local
    fixture may hold this process's Ray); the worker node is removed while a trial trains on it."""
    (tmp_path / "nodeloss.py").write_text(NODE_LOSS_SCRIPT)
    settings = {"catalog": str(training_set["catalog"]), "store": training_set["store"], "base": TINY.to_dict()}
    done = subprocess.run([sys.executable, str(tmp_path / "nodeloss.py"), str(tmp_path), json.dumps(settings)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["lost"], "no trial ran on the node that was removed"
    assert report["status"] == {"completed": 4}, report
    trials = results.read_table(tmp_path, "trials", run="nodeloss")
    assert len(trials) == 4 and (trials["status"] == "completed").all()
    lost = {(s["trial"], s["fold"]) for s in report["lost"]}
    retried = trials[[pair in lost for pair in zip(trials["trial"], trials["fold"])]]
    assert (retried["failures"] >= 1).all() and retried["error"].notna().all(), retried
    # Every table complete: a prediction part per (configuration, fold) and the selection, metrics of every
    # configuration and of the selection, the runs row.
    predictions = results.read_table(tmp_path, "predictions", run="nodeloss")
    assert set(zip(predictions["trial"], predictions["fold"])) >= set(zip(trials["trial"], trials["fold"]))
    assert set(predictions.loc[predictions["trial"] == "selected", "fold"]) == set(trials["fold"])
    metrics = results.read_table(tmp_path, "metrics", run="nodeloss")
    pooled = metrics[(metrics["scope"] == "pooled") & (metrics["split"] == "test")]
    assert set(pooled["trial"]) == set(trials["trial"]) | {"selected"}
    assert len(results.read_table(tmp_path, "runs", run="nodeloss")) == 1


@pytest.mark.integration
@pytest.mark.slow
def test_a_fold_with_nothing_to_train_on_is_left_out_of_the_grid_with_its_reason(training_set, ray_local, tmp_path):
    """LOVO where one class has a single sample: that sample's fold has one class to fit on. The search
    leaves it out (the run's row says why) instead of failing a trial of every configuration on it."""
    import shutil

    from merflow.storage import catalog as catalog_store

    catalog = catalog_store.read_samples(training_set["catalog"])
    column = "label_casme2_4"
    rows = catalog[catalog[column].notna()]
    happy = rows[rows[column] == "happiness"].iloc[0]
    others = sorted(set(rows["subject_key"]) - {happy["subject_key"]})[:4]
    disgust = rows[(rows[column] == "disgust") & rows["subject_key"].isin(others)]["sample_key"].iloc[:6]
    edited = catalog.copy()
    edited.loc[~edited["sample_key"].isin(set(disgust) | {happy["sample_key"]}), column] = None
    shutil.copytree(training_set["catalog"], tmp_path / "catalog")
    catalog_store.write_table(tmp_path / "catalog", catalog_store.SAMPLES_FILE, edited)
    summary = run_search(SearchConfig(catalog_dir=str(tmp_path / "catalog"), store=training_set["store"],
                                      protocol="lovo", dataset="casme2", out=str(tmp_path / "out"), run="lone",
                                      base=TINY, space=SearchSpace(shots=(1,), alphas=(1.0,)), scheduler="fifo",
                                      max_folds=2, max_failures=0))
    lone = f"lovo-{happy['sample_key']}"
    assert list(summary["notes"]["skipped_folds"]) == [lone]
    assert "fewer than 2 classes" in summary["notes"]["skipped_folds"][lone]
    assert summary["status"] == {"completed": 2} and lone not in set(results.read_table(
        tmp_path / "out", "trials", run="lone")["fold"])
    recorded = json.loads(results.read_table(tmp_path / "out", "runs", run="lone").loc[0, "config"])["data"]
    assert recorded["skipped_folds"] == summary["notes"]["skipped_folds"]
