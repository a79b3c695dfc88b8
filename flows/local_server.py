"""A local Prefect API for one CLI process, which goes away with that process however it ends.

Without PREFECT_API_URL, Prefect 3.8.8 starts an ephemeral server on its first API call
(``prefect/server/api/server.py``, ``SubprocessASGIServer``: ``python -m uvicorn --factory
prefect.server.api.server:create_app`` through ``subprocess.Popen``) and stops it from an ``atexit``
hook. A CLI killed with SIGKILL (the OOM killer, a batch system's ``kill -9``) never runs that hook,
and the server lives on, holding its port and the database in PREFECT_HOME.

So the flow-running commands of the CLI start that server themselves, the same way and with the same
settings, before any flow runs, and point Prefect at it (PREFECT_API_URL, in this process's settings
and in the environment its children inherit, so Prefect starts no server of its own). The server
process watches its parent and exits when the CLI is gone: at once on Linux (``PR_SET_PDEATHSIG``),
and everywhere through a thread that notices within half a second that its parent process changed.
A user's own server (PREFECT_API_URL set, in the environment or the Prefect profile) is used as is.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PORT_IN_USE = 3       # uvicorn's exit status when it cannot bind (Prefect retries on it too)
MARK = "merflow.flows.ephemeral"  # in the server's command line, so that tests and users can find it


def configured_api_url() -> str | None:
    """The API URL a user has set (environment or active Prefect profile), or None."""
    from prefect.settings import get_current_settings

    return os.environ.get("PREFECT_API_URL") or get_current_settings().api.url


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(timeout: float | None = None) -> tuple[subprocess.Popen, str]:
    """Start the server process and wait for its health check; (process, API URL)."""
    import httpx
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, get_current_settings

    timeout = timeout or PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()
    # What Prefect's SubprocessASGIServer gives its server: the profile's settings, no UI, ephemeral mode.
    env = {**os.environ, **get_current_settings().to_environment_variables(exclude_unset=True),
           "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
    env.pop("PREFECT_API_URL", None)
    deadline = time.monotonic() + timeout
    while True:
        port = _free_port()
        process = subprocess.Popen([sys.executable, "-m", MARK, str(port), str(os.getpid())], env=env)
        url = f"http://127.0.0.1:{port}/api"
        with httpx.Client() as client:
            while time.monotonic() < deadline and process.poll() is None:
                try:
                    if client.get(f"{url}/health", timeout=2).status_code == 200:
                        return process, url
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        if process.poll() == PORT_IN_USE and time.monotonic() < deadline:
            continue  # another process took the port between our check and uvicorn's bind
        stop_server(process)
        raise RuntimeError(f"the local Prefect server did not start within {timeout:.0f} s (exit status "
                           f"{process.returncode}); set PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS higher, "
                           "or start one with `prefect server start` and set PREFECT_API_URL")


def stop_server(process: subprocess.Popen) -> None:
    """Terminate the CLI's local Prefect server if it still runs."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def local_api():
    """Run the body against the user's Prefect API if one is configured, else against a server of this
    process's own that ends with it. Yields the API URL."""
    url = configured_api_url()
    if url:
        yield url
        return
    from prefect.settings import PREFECT_API_URL, temporary_settings

    process, url = start_server()
    os.environ["PREFECT_API_URL"] = url  # for child processes (Dask workers, Ray trials) too
    try:
        with temporary_settings(updates={PREFECT_API_URL: url}):
            try:
                yield url
            finally:
                drain_prefect()
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        stop_server(process)


def drain_prefect(timeout: float = 15.0) -> None:
    """Send Prefect's queued logs and events before the server goes (as prefect_test_harness does): after
    it, they would be retried against a closed port for a minute and more at exit."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        try:
            worker.drain_all(timeout=timeout)
        except RuntimeError:  # never started
            pass


def _exit_with_parent(parent: int) -> None:
    """Terminate this process when ``parent`` is no longer its parent (it died; we were re-parented)."""
    if sys.platform.startswith("linux"):
        # The kernel sends SIGTERM when the thread that started us exits: the CLI's main thread, which
        # lives as long as the CLI does.
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)  # uvicorn shuts down cleanly on SIGTERM
        time.sleep(10)
        os._exit(1)                           # and if it did not

    if os.getppid() != parent:  # it died before we got here
        os._exit(1)
    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def serve(port: int, parent: int) -> None:
    """The server process: Prefect's API app under uvicorn, as SubprocessASGIServer runs it."""
    _exit_with_parent(parent)
    import uvicorn

    uvicorn.run("prefect.server.api.server:create_app", factory=True, host="127.0.0.1", port=port,
                log_level="error", lifespan="on")


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]))
