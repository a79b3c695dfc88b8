"""The CLI's local Prefect server ends with the CLI: when it exits, and when it is SIGKILLed mid-flow."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from merflow.flows import ephemeral

BIN = Path(sys.executable).parent


def _env(home: Path) -> dict:
    """No PREFECT_API_URL (the case the CLI's own server is for), a private PREFECT_HOME."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")} | {
        "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


def _servers(pid: int) -> list[psutil.Process]:
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    found = []
    for child in children:
        try:
            if ephemeral.MARK in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:  # gone, or a zombie, meanwhile
            pass
    return found


def _wait_gone(process: psutil.Process, timeout: float = 20.0) -> bool:
    try:
        process.wait(timeout=timeout)
    except psutil.TimeoutExpired:
        return False
    return True


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    from merflow.configs.synth import SynthConfig
    from merflow.tasks.synthetic import synthesize

    return synthesize(SynthConfig("casme2", subjects=3, samples_per_subject=4, archive="zip", seed=3, scale=0.2),
                      tmp_path_factory.mktemp("ephemeral-synth"))


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """One PREFECT_HOME for both CLI runs: its database is migrated once (~15 s on 2 cores)."""
    return tmp_path_factory.mktemp("ephemeral-home")


@pytest.mark.integration
@pytest.mark.slow
def test_a_sigkilled_cli_takes_its_prefect_server_with_it(archive, home, tmp_path):
    cli = subprocess.Popen([str(BIN / "merflow"), "ingest", str(archive), "--out", str(tmp_path / "catalog")],
                           env=_env(home), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, server, url = time.monotonic() + 120, None, None
        while time.monotonic() < deadline and cli.poll() is None and url is None:
            servers = _servers(cli.pid)
            if servers:
                server = servers[0]
                url = f"http://127.0.0.1:{server.cmdline()[-2]}/api"
                try:
                    httpx.get(f"{url}/health", timeout=1).raise_for_status()
                except httpx.HTTPError:
                    url = None
            time.sleep(0.1)
        assert server is not None and url is not None, "the CLI started no local Prefect server"
        cli.send_signal(signal.SIGKILL)
        assert cli.wait(timeout=10) == -signal.SIGKILL  # killed mid-run, not finished
    finally:
        if cli.poll() is None:
            cli.kill()
    assert _wait_gone(server), f"the Prefect server {server.pid} outlived its SIGKILLed CLI"
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/health", timeout=1)


@pytest.mark.integration
@pytest.mark.slow
def test_the_cli_runs_its_flow_on_its_own_server_and_stops_it(archive, home, tmp_path):
    cli = subprocess.Popen([str(BIN / "merflow"), "ingest", str(archive), "--out", str(tmp_path / "catalog")],
                           env=_env(home), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    while cli.poll() is None:
        seen += [s for s in _servers(cli.pid) if s.pid not in {p.pid for p in seen}]
        time.sleep(0.1)
    output = cli.stdout.read()
    assert cli.returncode == 0, output
    assert len(seen) == 1, "one server per CLI process"
    assert _wait_gone(seen[0], timeout=1)
    assert (home / "prefect.db").exists()  # the flow run was recorded in the user's PREFECT_HOME


def test_a_configured_server_is_used_and_none_is_started(monkeypatch):
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with ephemeral.local_api() as url:
        assert url == "http://127.0.0.1:9/api"
        assert {p.pid for p in psutil.Process().children(recursive=True)} == before
