"""The CLI's local Prefect server: one per PREFECT_HOME, shared by every merflow command, started by the
first command that needs it, found again by the next, gone when idle.

Why (benchmarks/startup.py, figures in benchmarks/README.md): without PREFECT_API_URL, Prefect 3.8.8
starts a server of its own on the first API call of every process (``SubprocessASGIServer``) and the
CLI started one per command; starting it (the server's imports, its database checked) cost 5-15 s of
every flow command, against ~1 s of a small ingest's work. Running the flows against Prefect's API in
the CLI's own process costs the same start (the server's imports and database, in process), and
running the flows as plain functions without Prefect would lose their runs' records and logs and keep
two code paths. A server kept for the next command costs its start once; a command then finds it in
~10 ms and pays only its own imports (Prefect's ~1 s among them) and its flow run's bookkeeping.

How, all under ``$PREFECT_HOME/merflow-server/``:

- ``start.lock``: one command at a time looks for the server and, when none answers, starts one and
  waits for its health check; two commands started at once thus share one server.
- ``server.json``: the running server's pid, API URL and Prefect version.
- ``leases/``: each command holds a file lock on a lease of its own while it runs (taken under
  ``start.lock``, so a server about to stop sees it); the kernel frees it when the command ends, even
  when it is SIGKILLed. Its Dask workers and Ray trials report to the same URL (inherited
  PREFECT_API_URL).
- The server (``serve``, detached in a session of its own, its output in ``server.log``) stops after
  ``MERFLOW_PREFECT_SERVER_IDLE`` seconds (default 600) with no lease held and no request, under
  ``start.lock``, removing ``server.json`` first; and at once when its folder is deleted.

A user's own server (PREFECT_API_URL set, in the environment or the Prefect profile) is used as is and
none is started: the deployment path (prefect.yaml, ``prefect server start``, a worker) is unchanged.
``python -m merflow.flows.local_server status|stop`` shows or stops the local server.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

MARK = "merflow.flows.local_server"  # in the server's command line, so that tests and users can find it
FOLDER = "merflow-server"            # under PREFECT_HOME
IDLE_ENV = "MERFLOW_PREFECT_SERVER_IDLE"
DEFAULT_IDLE = 600.0                 # seconds without a command or a request before the server stops
PORT_IN_USE = 3                      # uvicorn's exit status when it cannot bind (Prefect retries on it too)
HEALTH_TIMEOUT = 2.0                 # seconds for the found server's health check
LOG_LIMIT = 5 * 2**20                # server.log is set aside as server.log.1 past this size, when a server starts


def configured_api_url() -> str | None:
    """The API URL a user has set (environment or active Prefect profile), or None."""
    from prefect.settings import get_current_settings

    return os.environ.get("PREFECT_API_URL") or get_current_settings().api.url


def state_folder() -> Path:
    """``$PREFECT_HOME/merflow-server``: where the server is recorded, locked and leased."""
    from prefect.settings import get_current_settings

    return Path(get_current_settings().home).expanduser() / FOLDER


def idle_seconds() -> float:
    """How long the server waits for the next command (``MERFLOW_PREFECT_SERVER_IDLE``, seconds)."""
    text = os.environ.get(IDLE_ENV, "")
    try:
        value = float(text) if text else DEFAULT_IDLE
    except ValueError:
        raise ValueError(f"{IDLE_ENV}={text!r} is not a number of seconds") from None
    if value <= 0:
        raise ValueError(f"{IDLE_ENV} must be above 0 seconds, not {text}")
    return value


def _startup_timeout() -> float:
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

    return float(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value())


def read_state(folder: Path) -> dict | None:
    """The recorded server (pid, url, ...), or None."""
    try:
        return json.loads((folder / "server.json").read_text())
    except (OSError, ValueError):
        return None


def _write_state(folder: Path, state: dict) -> None:
    temp = folder / f".server.json.{secrets.token_hex(4)}"
    temp.write_text(json.dumps(state, indent=2))
    os.replace(temp, folder / "server.json")


def _healthy(url: str, timeout: float = HEALTH_TIMEOUT) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process holds the pid now
        return True
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_lock(folder: Path) -> FileLock:
    return FileLock(folder / "start.lock", timeout=_startup_timeout() + 30)


@contextmanager
def lease(folder: Path):
    """A lease of this process on the local server, held (a file lock) for the block; the server stops
    only when no lease is held. Take it under ``start.lock`` (see ``local_api``)."""
    leases = folder / "leases"
    leases.mkdir(parents=True, exist_ok=True)
    path = leases / f"{os.getpid()}-{secrets.token_hex(4)}.lease"
    lock = FileLock(path, timeout=0)
    lock.acquire()
    try:
        yield path
    finally:
        lock.release()
        path.unlink(missing_ok=True)


def held_leases(folder: Path, remove_stale: bool = False) -> int:
    """How many leases are held by a live process; stale ones (their process ended, however) are removed
    with ``remove_stale`` (only under ``start.lock``: a lease being taken is not yet locked)."""
    held = 0
    for path in (folder / "leases").glob("*.lease"):
        probe = FileLock(path, timeout=0)
        try:
            probe.acquire()
        except Timeout:
            held += 1
            continue
        except OSError:  # removed meanwhile
            continue
        probe.release()
        if remove_stale:
            path.unlink(missing_ok=True)
    return held


def start_server(folder: Path, timeout: float | None = None, on_spawn=None) -> tuple[subprocess.Popen, str]:
    """Start the server process, detached (it outlives this command), and wait for its health check;
    (process, API URL). ``on_spawn(pid, url)`` hears of each process started. Call it under ``start.lock``."""
    from prefect.settings import get_current_settings

    timeout = timeout or _startup_timeout()
    # What Prefect's SubprocessASGIServer gives its server: the profile's settings, no UI, ephemeral mode
    # (no scheduler or other services: a local API for the CLI's flow runs).
    env = {**os.environ, **get_current_settings().to_environment_variables(exclude_unset=True),
           "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
    env.pop("PREFECT_API_URL", None)
    deadline = time.monotonic() + timeout
    log = folder / "server.log"
    if log.exists() and log.stat().st_size > LOG_LIMIT:
        os.replace(log, log.with_suffix(".log.1"))  # one older log kept
    while True:
        port = _free_port()
        with open(log, "ab") as output:
            # Its own session: a Ctrl-C or a kill of this command's process group does not reach it; its
            # output goes to server.log, never to this command's stdout (a pipe would wait for it).
            process = subprocess.Popen([sys.executable, "-m", MARK, "serve", str(port), str(folder)], env=env,
                                       stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                       cwd=folder, start_new_session=True)
        url = f"http://127.0.0.1:{port}/api"
        if on_spawn:
            on_spawn(process.pid, url)
        while time.monotonic() < deadline and process.poll() is None:
            if _healthy(url):
                return process, url
            time.sleep(0.1)
        if process.poll() == PORT_IN_USE and time.monotonic() < deadline:
            continue  # another process took the port between our check and uvicorn's bind
        stop_process(process)
        raise RuntimeError(f"the local Prefect server did not start within {timeout:.0f} s (exit status "
                           f"{process.returncode}; its log: {log}); set PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS "
                           "higher, or start one with `prefect server start` and set PREFECT_API_URL")


def stop_process(process: subprocess.Popen) -> None:
    """Terminate a server process this command started, if it still runs."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def find_or_start(folder: Path) -> tuple[str, bool]:
    """The local server's API URL, and whether this call started it. Call it under ``start.lock``."""
    from prefect import __version__

    state = read_state(folder)
    running = bool(state) and _alive(state["pid"]) and _is_server(state["pid"])
    if running and state.get("prefect") != __version__:
        raise RuntimeError(f"the local Prefect server of this PREFECT_HOME ({folder}) runs Prefect {state.get('prefect')} "
                           f"({state.get('python')}), this merflow Prefect {__version__}: stop it (python -m {MARK} "
                           "stop) or give this installation a PREFECT_HOME of its own")
    if running and (_healthy(state["url"]) or (state.get("starting") and _wait_healthy(state["url"], state["pid"]))):
        return state["url"], False  # (a command killed while it started one left it starting: it is waited for)
    if running:
        _terminate(state["pid"])  # recorded, running, and not answering: hung
    (folder / "server.json").unlink(missing_ok=True)
    recorded = {"prefect": __version__, "python": sys.executable, "idle_seconds": idle_seconds(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "started_by": os.getpid()}
    # Recorded as starting as soon as it is spawned: a command killed meanwhile leaves no unrecorded server.
    process, url = start_server(folder, on_spawn=lambda pid, url: _write_state(
        folder, recorded | {"pid": pid, "url": url, "starting": True}))
    _write_state(folder, recorded | {"pid": process.pid, "url": url})
    return url, True


def _wait_healthy(url: str, pid: int) -> bool:
    deadline = time.monotonic() + _startup_timeout()
    while time.monotonic() < deadline and _alive(pid):
        if _healthy(url):
            return True
        time.sleep(0.1)
    return False


def _is_server(pid: int) -> bool:
    try:
        return MARK in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return sys.platform != "linux"  # no /proc: trust the record


def _terminate(pid: int, timeout: float = 10.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)


@contextmanager
def local_api():
    """Run the body against the user's Prefect API if one is configured, else against the local server
    (found, or started and left running for the next command), holding a lease on it. Yields the URL."""
    url = configured_api_url()
    if url:
        yield url
        return
    from prefect.settings import PREFECT_API_URL, temporary_settings

    idle_seconds()  # a bad setting is one line before anything starts
    folder = state_folder()
    folder.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        try:
            with _start_lock(folder):
                stack.enter_context(lease(folder))  # before the server is found: it can't stop under us
                url, started = find_or_start(folder)
        except Timeout:
            raise RuntimeError(f"another merflow command has been starting the local Prefect server for too "
                               f"long (lock {folder / 'start.lock'}); see {folder / 'server.log'}") from None
        if started:
            print(f"started a local Prefect server at {url} for this and later commands (it stops after "
                  f"{idle_seconds():g} s idle: {IDLE_ENV}; set PREFECT_API_URL to use your own)", file=sys.stderr)
        os.environ["PREFECT_API_URL"] = url  # for child processes (Dask workers, Ray trials) too
        try:
            with temporary_settings(updates={PREFECT_API_URL: url} | _no_heartbeats()):
                try:
                    yield url
                finally:
                    drain_prefect()
        finally:
            os.environ.pop("PREFECT_API_URL", None)


def _no_heartbeats() -> dict:
    """Flow run heartbeats off, unless the user set their frequency: they let a server's proactive
    triggers mark a silent run crashed, and the local server, in Prefect's ephemeral mode, runs none;
    and a flow run waits up to a second at its end for its heartbeat thread (measured:
    benchmarks/startup.py)."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY

    named = ("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "PREFECT_RUNNER_HEARTBEAT_FREQUENCY")
    return {} if any(name in os.environ for name in named) else {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}


def drain_prefect(timeout: float = 15.0) -> None:
    """Send Prefect's queued logs and events while the lease still holds the server (as prefect_test_harness
    does): after it, an idle server may be gone and they would be retried against a closed port at exit."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        try:
            worker.drain_all(timeout=timeout)
        except RuntimeError:  # never started
            pass


# ------------------------------------------------------------------------------------------ the server
class _Activity:
    """Requests in flight and the time the last one ended, counted by the app's wrapper."""

    def __init__(self):
        self.open = 0
        self.last = time.monotonic()


ACTIVITY = _Activity()


def create_app():
    """Prefect's API app (ephemeral mode, as Prefect's own local server), each request counted in ACTIVITY."""
    from prefect.server.api.server import create_app as prefect_app

    app = prefect_app(ephemeral=True, final=True)

    async def counted(scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await app(scope, receive, send)
        ACTIVITY.open += 1
        try:
            return await app(scope, receive, send)
        finally:
            ACTIVITY.open -= 1
            ACTIVITY.last = time.monotonic()

    return counted


def watch_idle(server, folder: Path, idle: float, poll: float = 1.0) -> None:
    """Stop ``server`` (uvicorn's) once no lease was held and no request made for ``idle`` seconds, or when
    its folder is gone. The last word is said under ``start.lock``, where commands take their leases."""
    quiet_since = time.monotonic()
    while not server.should_exit:
        time.sleep(poll)
        if not folder.is_dir():
            server.should_exit = True
            return
        now = time.monotonic()
        if ACTIVITY.open or held_leases(folder):
            quiet_since = now
            continue
        if now - max(quiet_since, ACTIVITY.last) < idle:
            continue
        try:
            with FileLock(folder / "start.lock", timeout=poll):
                if held_leases(folder, remove_stale=True) or ACTIVITY.open:
                    quiet_since = time.monotonic()
                    continue
                _forget(folder)
                server.should_exit = True
                return
        except Timeout:  # a command is looking for the server: it will take a lease
            quiet_since = time.monotonic()


def _forget(folder: Path) -> None:
    """Remove server.json if it records this process (a command then starts a new server)."""
    state = read_state(folder)
    if state and state.get("pid") == os.getpid():
        (folder / "server.json").unlink(missing_ok=True)


def serve(port: int, folder: Path) -> None:
    """The server process: Prefect's API under uvicorn on 127.0.0.1:``port``, stopping when idle."""
    import uvicorn

    config = uvicorn.Config(f"{MARK}:create_app", factory=True, host="127.0.0.1", port=port, log_level="error",
                            lifespan="on")
    server = uvicorn.Server(config)
    threading.Thread(target=watch_idle, args=(server, folder, idle_seconds()), name="idle-watch", daemon=True).start()
    try:
        server.run()
    finally:
        if folder.is_dir():
            _forget(folder)
    if not server.started:
        sys.exit(PORT_IN_USE)


def status(folder: Path | None = None) -> dict | None:
    """The local server of this PREFECT_HOME (or of ``folder``) as recorded, with ``healthy`` and ``leases``;
    None if none is recorded."""
    folder = folder or state_folder()
    state = read_state(folder)
    if state is None:
        return None
    return state | {"healthy": _healthy(state["url"]), "leases": held_leases(folder)}


def stop(folder: Path | None = None) -> bool:
    """Stop the local server of this PREFECT_HOME (or of ``folder``) now: commands using it lose their API.
    False if none was running."""
    folder = folder or state_folder()
    state = read_state(folder)
    if not state or not _alive(state["pid"]) or not _is_server(state["pid"]):
        return False
    _terminate(state["pid"])
    (folder / "server.json").unlink(missing_ok=True)
    return True


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve(int(sys.argv[2]), Path(sys.argv[3]))
    elif sys.argv[1:2] == ["status"]:
        found = status()
        print(json.dumps(found, indent=2) if found else "no local Prefect server recorded")
    elif sys.argv[1:2] == ["stop"]:
        print("stopped" if stop() else "no local Prefect server was running")
    else:
        sys.exit(f"usage: python -m {MARK} status|stop")
