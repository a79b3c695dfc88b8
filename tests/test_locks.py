"""storage/locks.py: writer locks on local folders (flock) and on S3 (conditional PUTs, heartbeats), with
real processes holding them: refused with one line naming the holder, waited for, taken over when stale."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from merflow.storage import locks

HOLD = """
import sys, time
from merflow.storage import locks
lock = locks.acquire(sys.argv[1], "the test's place")
print("held", flush=True)
time.sleep(float(sys.argv[2]))
locks.release(lock)
"""


def holder_process(location, seconds: float = 60, owner: str = "merflow ingest b.zip --out C") -> subprocess.Popen:
    """A process holding the lock at ``location`` for ``seconds`` (started: it has said so)."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(location), str(seconds)], stdout=subprocess.PIPE,
                               text=True, env=os.environ | {"MERFLOW_COMMAND": owner})
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_second_writer_is_refused_with_one_line_naming_the_holder(tmp_path):
    process = holder_process(tmp_path / ".locks" / "catalog")
    try:
        with pytest.raises(locks.LockHeld) as refused:
            locks.acquire(tmp_path / ".locks" / "catalog", f"the catalog at {tmp_path}", advice="try again later")
        line = str(refused.value)
        assert "\n" not in line and line.startswith(f"the catalog at {tmp_path} is in use by `merflow ingest b.zip --out C`")
        assert f"pid {process.pid} on {socket.gethostname()}, since 20" in line and line.endswith("UTC): try again later")
        assert refused.value.holder.pid == process.pid
    finally:
        process.kill()
        process.wait()


def test_a_lock_whose_process_was_killed_is_taken_over_and_a_waiter_gets_a_released_one(tmp_path):
    location = tmp_path / ".locks" / "plan"
    killed = holder_process(location)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    with locks.hold(location, "the plan") as lock:  # the kernel dropped its flock; its record is left behind
        assert lock.took_over is not None and lock.took_over.pid == killed.pid
        assert json.loads((tmp_path / ".locks" / "plan.json").read_text())["pid"] == os.getpid()
    assert not (tmp_path / ".locks" / "plan.json").exists()  # a released lock leaves no record

    told = []
    holder_process(location, seconds=1.0)  # releases by itself
    started = time.monotonic()
    with locks.hold(location, "the plan", wait=30, on_wait=told.append) as lock:
        assert lock.took_over is None  # released properly: nothing to take over
    assert 0.3 < time.monotonic() - started < 20
    assert len(told) == 1 and told[0].startswith("the plan is in use by `merflow ingest") and "waiting for it" in told[0]


def test_locks_are_reentrant_in_a_process_and_shared_locks_keep_a_remover_out(tmp_path):
    location = tmp_path / "x"
    with locks.hold(location, "x") as outer, locks.hold(location, "x") as inner:
        assert inner is outer and locks.held_here(location) is outer
    assert locks.held_here(location) is None
    with locks.hold(location, "x", shared=True), locks.hold(location, "x", shared=True, reentrant=False):
        assert locks.try_exclusive(location) is None  # this process's own readers count too
    remover = locks.try_exclusive(location)
    assert remover is not None
    with pytest.raises(locks.LockHeld):
        locks.acquire(location, "x", reentrant=False)
    locks.release(remover)
    # A shard's claim is re-entrant in its thread only: another thread of the process is another writer.
    with locks.hold(location, "shard", per_thread=True) as claim:
        assert locks.acquire(location, "shard", per_thread=True) is claim
        locks.release(claim)
        outcome = []
        worker = threading.Thread(target=lambda: outcome.append(
            pytest.raises(locks.LockHeld, locks.acquire, location, "shard", per_thread=True)))
        worker.start()
        worker.join()
        assert len(outcome) == 1


def test_object_store_locks_use_conditional_writes(s3_server, monkeypatch):
    """On S3 the record is the lock: created with If-None-Match (a second creator is refused, naming the
    first), refreshed by heartbeats (PUT If-Match), taken over when stale, lost when another takes it over."""
    import s3fs

    monkeypatch.setattr(locks, "HEARTBEAT", 0.2)
    fs = s3fs.S3FileSystem()
    location = "s3://merflow/locks-test/catalog/.locks/catalog"
    record = "merflow/locks-test/catalog/.locks/catalog.json"
    lock = locks.acquire(location, "the catalog at s3://merflow/locks-test/catalog")
    first = lock.etag
    with pytest.raises(locks.LockHeld, match=f"in use by .* \\(pid {os.getpid()} on "):
        locks.acquire(location, "the catalog", reentrant=False)
    time.sleep(0.7)
    assert lock.etag != first and lock.lost is None  # heartbeats went through, each on the last ETag
    locks.release(lock)
    fs.invalidate_cache()
    assert not fs.exists(record)

    # A record without a heartbeat for longer than stale_after, of a process on another host: taken over.
    dead = {"owner": "merflow tune --run r1", "host": "elsewhere", "pid": 1, "started_at": time.time() - 600,
            "heartbeat_at": time.time() - 600, "token": "old"}
    fs.pipe_file(record, json.dumps(dead).encode())
    with pytest.raises(locks.LockHeld, match="merflow tune --run r1"):  # not stale yet by a 1-hour measure
        locks.acquire(location, "the catalog", stale_after=3600)
    lock = locks.acquire(location, "the catalog", stale_after=60)
    assert lock.took_over is not None and lock.took_over.token == "old"
    # Another process takes it over while this one stalls: the next heartbeat finds out, check() refuses.
    fs.invalidate_cache()
    fs.pipe_file(record, json.dumps(dead | {"token": "new", "heartbeat_at": time.time()}).encode())
    time.sleep(0.7)
    with pytest.raises(locks.LockLost, match="took its lock over"):
        lock.check()
    locks.release(lock)  # releases nothing of the new holder's
    fs.invalidate_cache()
    assert json.loads(fs.cat_file(record))["token"] == "new"
    fs.rm(record)
