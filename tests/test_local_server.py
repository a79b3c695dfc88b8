"""flows/local_server.py: without a configured PREFECT_API_URL the flow commands share one local Prefect server
per PREFECT_HOME: started once (two commands at once start one), found again, kept while any command holds a
lease (a SIGKILLed command's lease goes with it), stopped when idle."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
from filelock import FileLock

from merflow.flows import local_server

BIN = Path(sys.executable).parent
IDLE = 2.0  # seconds: the servers of these tests stop soon after their last lease


def _env(home: Path) -> dict:
    """No PREFECT_API_URL (the case the local server is for), a private PREFECT_HOME, a short idle time."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")} | {
        "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", local_server.IDLE_ENV: str(IDLE)}


def _servers(folder: Path) -> list[psutil.Process]:
    """The server processes of one state folder, wherever they are in the process tree."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        command = " ".join(process.info["cmdline"] or [])
        if local_server.MARK in command and str(folder) in command and " serve " in f" {command} ":
            found.append(process)
    return found


def _wait(condition, timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    from merflow.configs.synth import SynthConfig
    from merflow.tasks.synthetic import synthesize

    return synthesize(SynthConfig("casme2", subjects=3, samples_per_subject=4, archive="zip", seed=3, scale=0.2),
                      tmp_path_factory.mktemp("local-server-synth"))


def _ingest(archive: Path, home: Path, catalog: Path, **popen) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "merflow"), "ingest", str(archive), "--out", str(catalog)], env=_env(home),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


@pytest.mark.integration
@pytest.mark.slow
def test_commands_share_one_server_that_outlives_a_killed_command_and_stops_when_idle(archive, tmp_path):
    home = tmp_path / "home"
    folder = home / local_server.FOLDER
    # Three commands at once and no server yet: one starts it, the others wait for it and find it.
    commands = [_ingest(archive, home, tmp_path / f"catalog{i}") for i in range(3)]
    # Once the server runs, one command that did not start it (the starter's stderr says so, and a
    # SIGKILLed starter's words are lost) is SIGKILLed mid-run, holding its lease: its lease goes with it (the
    # kernel drops its lock) and the server stays for the other two.
    def _victim():
        state = local_server.read_state(folder)
        if state is None or state.get("starting"):
            return None
        leased = {int(path.stem.split("-")[0]) for path in (folder / "leases").glob("*.lease") if _held(path)}
        return next((p for p in commands if p.pid != state["started_by"] and p.pid in leased and p.poll() is None),
                    None)

    assert _wait(lambda: _victim() is not None or all(p.poll() is not None for p in commands), 300), \
        [p.communicate() for p in commands]
    killed = _victim()
    if killed is None:
        pytest.skip("every command finished before one could be killed mid-run")
    killed.send_signal(signal.SIGKILL)
    assert killed.wait(timeout=10) == -signal.SIGKILL
    survivors = [p for p in commands if p is not killed]
    state = local_server.read_state(folder)
    outputs = [p.communicate(timeout=300) for p in survivors]
    assert [p.returncode for p in survivors] == [0, 0], outputs
    assert sum("started a local Prefect server" in err for _, err in outputs) == 1, outputs
    assert [p.pid for p in _servers(folder)] == [state["pid"]], "one server for the three commands"
    assert all(path.stem.split("-")[0] != str(killed.pid) or not _held(path) for path in (folder / "leases").glob("*"))
    # No lease held: the server stops after IDLE seconds, and says so by removing its record.
    try:
        psutil.Process(state["pid"]).wait(timeout=IDLE + 20)
    except psutil.TimeoutExpired:
        local_server.stop(folder)
        pytest.fail(f"the local server {state['pid']} outlived {IDLE} s idle by 20 s")
    except psutil.NoSuchProcess:
        pass
    assert local_server.read_state(folder) is None and not _servers(folder)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{state['url']}/health", timeout=1)


def _held(path: Path) -> bool:
    probe = FileLock(path, timeout=0)
    try:
        probe.acquire()
    except Exception:  # noqa: BLE001 - filelock's Timeout: held
        return True
    probe.release()
    return False


def _hold(path: str, ready) -> None:
    with local_server.lease(Path(path)):
        ready.set()
        time.sleep(600)


def test_a_lease_is_held_while_its_process_lives_even_one_killed_with_sigkill(tmp_path):
    folder = tmp_path / local_server.FOLDER
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    holder = context.Process(target=_hold, args=(str(folder), ready))
    holder.start()
    try:
        assert ready.wait(60)
        assert local_server.held_leases(folder) == 1
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(10)
        assert local_server.held_leases(folder) == 0  # the lock went with the process; its file may stay
        assert len(list((folder / "leases").glob("*.lease"))) == 1
        assert local_server.held_leases(folder, remove_stale=True) == 0 and not list((folder / "leases").glob("*"))
    finally:
        holder.kill()


class _FakeUvicorn:
    should_exit = False


def test_the_idle_watch_keeps_the_server_while_leased_and_stops_it_when_idle_or_its_folder_is_gone(tmp_path):
    import threading

    folder = tmp_path / local_server.FOLDER
    folder.mkdir()
    server = _FakeUvicorn()
    with local_server.lease(folder):
        watch = threading.Thread(target=local_server.watch_idle, args=(server, folder, 0.3, 0.05), daemon=True)
        watch.start()
        time.sleep(1.0)
        assert not server.should_exit  # leased: busy
    assert _wait(lambda: server.should_exit, 5)
    gone = _FakeUvicorn()
    other = tmp_path / "other"
    other.mkdir()
    watch = threading.Thread(target=local_server.watch_idle, args=(gone, other, 600, 0.05), daemon=True)
    watch.start()
    other.rmdir()
    assert _wait(lambda: gone.should_exit, 5)


def test_a_configured_server_is_used_and_none_is_started(monkeypatch):
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with local_server.local_api() as url:
        assert url == "http://127.0.0.1:9/api"
        assert {p.pid for p in psutil.Process().children(recursive=True)} == before


def test_a_bad_idle_setting_is_one_line(monkeypatch):
    monkeypatch.setenv(local_server.IDLE_ENV, "soon")
    with pytest.raises(ValueError, match="MERFLOW_PREFECT_SERVER_IDLE='soon' is not a number of seconds"):
        local_server.idle_seconds()
