"""prefect.yaml against a real `prefect server start` on 127.0.0.1, as a user runs it: the process work
pool, `prefect --no-prompt deploy --all`, every deployment run by a process worker on small synthetic
data, and the server's scheduler creating runs from a schedule (SQLAlchemy 2.1 broke exactly that).

The server, the worker and the CLI are real processes started here with their own PREFECT_HOME; the
server is stopped at the end whatever happens.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from requires import requires_prefect_server

# A worker run may take up to 600 s by itself (Server.prefect(..., timeout=600) below).
pytestmark = [pytest.mark.integration, pytest.mark.slow, requires_prefect_server, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
POOL = "merflow-process"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prefect server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"prefect server not healthy after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


class Server:
    """A `prefect server start` of its own, and the environment that points Prefect's CLI at it."""

    def __init__(self, home: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/api"
        self.log = home / "server.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")} | {
            "PREFECT_HOME": str(home), "PREFECT_API_URL": self.url, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "false",  # nothing here looks at it; saves building the UI
            # The scheduler's loop is 60 s by default; 1 s lets the schedule test end in seconds.
            "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "1",
            "MERFLOW_HOME": str(ROOT), "DASK_LOGGING__DISTRIBUTED": "warning", "RAY_AUTH_MODE": "disabled",
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
        self.process = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port",
                                         str(self.port)], env=self.env, stdout=self.log.open("w"),
                                        stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_healthy(self.url, self.process, self.log)
        except BaseException:
            self.stop()
            raise

    def prefect(self, *args: str, timeout: float = 300, cwd: Path = ROOT) -> str:
        """Run the `prefect` CLI against this server; its output, or a failure with it."""
        done = subprocess.run([str(BIN / "prefect"), *args], env=self.env, cwd=cwd, capture_output=True, text=True,
                              timeout=timeout)
        assert done.returncode == 0, f"prefect {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        return done.stdout + done.stderr

    def client(self):
        """The Python client pointed at this server (also inside other tests' private Prefect API)."""
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        class _Client:
            async def __aenter__(inner):
                inner.settings = temporary_settings(updates={PREFECT_API_URL: self.url})
                inner.settings.__enter__()
                inner.client = get_client()
                return await inner.client.__aenter__()

            async def __aexit__(inner, *exc):
                try:
                    await inner.client.__aexit__(*exc)
                finally:
                    inner.settings.__exit__(*exc)

        return _Client()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # its own session: the server and anything it started
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("prefect-home"))
    try:
        yield server
    finally:
        server.stop()


def run_async(coroutine):
    import asyncio

    return asyncio.run(coroutine)


def test_the_scheduler_creates_runs_from_a_schedule(server):
    """An active interval schedule gets scheduled runs from the server's scheduler service (not from the
    client). With SQLAlchemy 2.1 the service fails every loop, only in the server log, and none appear."""
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.client.schemas.schedules import IntervalSchedule

    async def scheduled_runs() -> int:
        async with server.client() as client:
            flow_id = await client.create_flow_from_name("scheduled-probe")
            deployment_id = await client.create_deployment(
                flow_id=flow_id, name="every-hour", entrypoint="probe.py:probe",
                schedules=[DeploymentScheduleCreate(schedule=IntervalSchedule(interval=3600), active=True)])
            deadline = time.monotonic() + 60
            runs = []
            while time.monotonic() < deadline and not runs:
                runs = await client.read_flow_runs(
                    deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))
                if not runs:
                    import asyncio

                    await asyncio.sleep(1)
            assert all(run.state.is_scheduled() for run in runs)
            return len(runs)

    count = run_async(scheduled_runs())
    log = server.log.read_text()
    assert count >= 1, f"no scheduled runs after 60 s; server log:\n{log[-3000:]}"
    assert "Can't evaluate bulk DML statement" not in log


# Tiny settings, passed as deployment parameters: the point is the orchestration, not the numbers.
TINY = {"macro_epochs": 1, "pretrain_epochs": 1, "meta_epochs": 1, "batches_per_epoch": 2}
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


@pytest.fixture(scope="module")
def deployed(server, tmp_path_factory):
    """Synthetic archives (CASME II, 3 subjects, as a zip; CK+ as a folder) where prefect.yaml's default
    parameters look (MERFLOW_DATA), the work pool, and every deployment deployed with the commands at the
    top of prefect.yaml."""
    from merflow.configs.synth import SynthConfig
    from merflow.tasks.synthetic import synthesize

    root = tmp_path_factory.mktemp("deployed")
    sources = [synthesize(SynthConfig("casme2", subjects=3, samples_per_subject=10, archive="zip", seed=5, scale=0.2),
                          root / "archives"),
               synthesize(SynthConfig("ckplus", subjects=3, samples=12, archive="none", seed=5, scale=0.2),
                          root / "archives")]
    server.env["MERFLOW_DATA"] = str(root)  # read by `prefect deploy`: the deployments' default paths
    server.prefect("work-pool", "create", POOL, "--type", "process")
    output = server.prefect("--no-prompt", "deploy", "--all")
    names = [d["name"] for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]]
    for name in names:
        assert name in output, output
    return {"root": root, "sources": [str(s) for s in sources], "catalog": str(root / "catalog"),
            "store": str(root / "features.zarr"), "out": str(root / "results")}


def run_deployment(server, name: str, parameters: dict):
    """`prefect deployment run NAME --params JSON`, then a process worker with `--run-once`; the flow run,
    its subflow runs and their artifacts, read back through the client."""
    import re

    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
    )

    created = server.prefect("deployment", "run", name, "--params", json.dumps(parameters))
    flow_run_id = re.search(UUID, created).group(0)
    worker = server.prefect("worker", "start", "--pool", POOL, "--run-once", timeout=600)

    async def read():
        async with server.client() as client:
            run = await client.read_flow_run(flow_run_id)
            children = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id])))
            ids = [run.id] + [c.id for c in children]
            artifacts = await client.read_artifacts(artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=ids)))
            return run, children, artifacts

    run, children, artifacts = run_async(read())
    assert run.state.is_completed(), f"{name}: {run.state.type} {run.state.message}\nworker:\n{worker[-4000:]}"
    return run, children, {a.key: a for a in artifacts if a.key}


def test_every_deployment_runs_on_a_process_worker(server, deployed):
    from merflow.storage import results

    d = deployed
    # The deployed paths are prefect.yaml's, under MERFLOW_DATA; only sizes and epochs are made tiny.
    _, _, artifacts = run_deployment(server, "ingest/ingest-archives", {})
    assert "ingest-summary" in artifacts and "casme2" in artifacts["ingest-summary"].data
    assert "ckplus" in artifacts["ingest-summary"].data

    _, _, artifacts = run_deployment(server, "features/features", {"size": 28, "n_workers": 1})
    assert "features-summary" in artifacts

    common = {"config": TINY}
    _, _, artifacts = run_deployment(server, "train/train-casme2", common | {"run": "deployed-train"})
    assert "train-pooled-test" in artifacts
    assert not results.read_table(d["out"], "metrics", run="deployed-train").empty

    _, _, artifacts = run_deployment(server, "tune/tune-casme2", common | {
        "run": "deployed-tune", "shots": [1], "alphas": [0.0, 1.0], "scheduler": "fifo", "max_folds": 1,
        "ray_address": None, "gpus_per_trial": 0, "cpus_per_trial": 1})
    assert {"tune-selected-test", "tune-plots"} <= set(artifacts)

    # The whole chain on the same catalog and store: nothing to ingest, no shard to compute, then a search
    # and its report.
    pipeline, children, artifacts = run_deployment(server, "pipeline/pipeline-nightly", {
        "mode": "tune", "features": {"size": 28, "n_workers": 1}, "training": TINY,
        "search": {"shots": [1], "alphas": [0.0, 1.0], "scheduler": "fifo", "max_folds": 1}})
    subflows = sorted(_flow_name(server, run) for run in children)
    assert subflows == ["features", "ingest", "report", "tune"], subflows
    assert all(run.state.is_completed() for run in children)
    assert {"ingest-summary", "features-summary", "tune-selected-test", "pipeline-report"} <= set(artifacts)
    assert "0 shards computed" in artifacts["features-summary"].data
    assert "| skipped |" in artifacts["ingest-summary"].data
    report = artifacts["pipeline-report"].data
    runs = results.read_table(d["out"], "runs")
    pipeline_runs = sorted(r for r in runs["run"].unique() if r.startswith("tune-"))
    assert len(pipeline_runs) == 1 and f"`{pipeline_runs[0]}`" in report and d["out"] in report


def _flow_name(server, run) -> str:
    async def read():
        async with server.client() as client:
            return (await client.read_flow(run.flow_id)).name

    return run_async(read())


def test_a_resumed_example_schedule_gets_its_runs(server, deployed):
    """prefect.yaml's example schedule, turned on with the commands at its top, gets runs from the server's
    scheduler (they start at 02:00 UTC, so no worker picks them up here)."""
    import re

    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowRunFilter,
        FlowRunFilterStateName,
    )

    listed = server.prefect("deployment", "schedule", "ls", "pipeline/pipeline-nightly")
    schedule_id = re.search(UUID, listed).group(0)
    server.prefect("deployment", "schedule", "resume", "pipeline/pipeline-nightly", schedule_id)

    async def scheduled() -> list:
        async with server.client() as client:
            deadline, runs = time.monotonic() + 60, []
            while time.monotonic() < deadline and not runs:
                runs = await client.read_flow_runs(
                    deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["pipeline-nightly"])),
                    flow_run_filter=FlowRunFilter(state=dict(name=FlowRunFilterStateName(any_=["Scheduled"]))))
                if not runs:
                    time.sleep(1)
            return runs

    runs = run_async(scheduled())
    assert runs, f"no scheduled runs 60 s after resuming; server log:\n{server.log.read_text()[-3000:]}"
    assert {run.expected_start_time.strftime("%H:%M") for run in runs} == {"02:00"}


def test_a_scheduled_pipeline_run_lands_its_results_in_a_local_s3_bucket(server, deployed, s3_server):
    """The issue's whole path: a pipeline run scheduled on the server (to start in a few seconds), picked
    up by a process worker, with its catalog, feature store and results all in a bucket of the local S3
    server (moto on 127.0.0.1); `merflow results` then reads them from the bucket."""
    import re

    from merflow.flows.cli import main
    from merflow.storage import locations, results

    # The worker and its flow run reach the bucket as a user's would: through the AWS_* environment.
    server.env |= {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    bucket = "s3://merflow/scheduled"
    parameters = {"sources": deployed["sources"], "catalog_dir": f"{bucket}/catalog",
                  "store": f"{bucket}/features.zarr", "out": f"{bucket}/results", "mode": "train",
                  "features": {"size": 28, "n_workers": 1}, "training": TINY, "run": "scheduled-s3"}
    created = server.prefect("deployment", "run", "pipeline/pipeline-nightly", "--params", json.dumps(parameters),
                             "--start-in", "in 3 seconds")
    flow_run_id = re.search(UUID, created).group(0)

    async def state():
        async with server.client() as client:
            return (await client.read_flow_run(flow_run_id)).state

    assert run_async(state()).is_scheduled()
    time.sleep(3)
    worker = server.prefect("worker", "start", "--pool", POOL, "--run-once", timeout=600)
    final = run_async(state())
    assert final.is_completed(), f"{final.type} {final.message}\nworker:\n{worker[-4000:]}"
    assert not (ROOT / "s3:").exists() and not Path("s3:").exists()  # no local folder named after the URL
    for name in ("catalog/samples.parquet", "results/runs", "results/metrics", "results/predictions"):
        assert locations.exists(f"{bucket}/{name}"), name
    assert not results.read_table(f"{bucket}/results", "metrics", run="scheduled-s3").empty
    assert main(["results", "summary", "--results", f"{bucket}/results", "--run", "scheduled-s3"]) == 0
