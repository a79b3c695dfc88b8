"""Writer locks: which process writes a catalog, a feature store's plan or shard, or a results run now.

A lock records its holder: the command (``owner``), host, pid and start time. A writer that finds the
lock held is refused with one line naming them (``LockHeld``), or waits where waiting is right; the
writers say which (README.md, "Two people, one catalog"). Every lock is re-entrant within a process: a
flow holding a run's lock may call writers (from its tasks' threads too) that take it again.

Two kinds of location, one API (``acquire``, ``hold``):

- **Local folders** (a network file system mounted on every host included): the kernel's ``flock`` on
  ``<name>.lock``, beside the holder's record ``<name>.json``. The kernel drops a lock when its process
  ends, killed or not, so a lock whose process is gone is free; the next holder finds the old record
  and reports the take-over (``Lock.took_over``). NFSv4 does the same across hosts (a dead host's lease
  expires after ~90 s). A live process keeps its lock however long it works: no heartbeat is needed.
  ``shared=True`` takes a shared lock (``sources.in_use``: ingests reading an unpacked archive).
- **Object stores** (``s3://``, through s3fs): the record ``<name>.json`` is the lock. It is created with
  a conditional PUT (``If-None-Match: *``: of two creators exactly one wins), refreshed by a heartbeat
  thread every ``HEARTBEAT`` seconds (PUT ``If-Match`` its own ETag), and deleted with a conditional DELETE.
  A record whose heartbeat is older than ``STALE_AFTER`` seconds, or whose process is gone on this
  host, is stale; it is taken over by a PUT ``If-Match`` the stale record's ETag, which only one taker
  wins. A holder that stalled past ``STALE_AFTER`` and lost its lock learns it at its next heartbeat:
  ``Lock.check()`` raises ``LockLost``, and writers check before they commit. Staleness compares the
  holder's clock with the reader's: hosts must keep their clocks in sync (NTP), to within ``STALE_AFTER``.
  AWS S3 (conditional writes since 2024), MinIO, and moto (the tests) honour these headers.
  Other fsspec stores (gcs://, az://, memory://) get the best their backend offers: an exclusive create
  where fsspec has one (``pipe_file(mode="create")``), a take-over by delete and create: best effort.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from merflow.storage import locations

# Seconds without a heartbeat after which an object-store lock is stale (its holder stalled or its host
# died); a heartbeat is written every HEARTBEAT seconds. MERFLOW_LOCK_STALE_SECONDS sets it (tests: 2).
STALE_AFTER = float(os.environ.get("MERFLOW_LOCK_STALE_SECONDS") or 120)
HEARTBEAT = max(0.2, min(15.0, STALE_AFTER / 4))
POLL = 0.25  # seconds between two tries of a waiting writer
LOCKS_DIR = ".locks"  # a folder of a catalog, store or results folder holding its locks
log = logging.getLogger("merflow.locks")


def command() -> str:
    """Who writes, as a user reads it: ``$MERFLOW_COMMAND`` (the CLI sets it; Dask workers inherit it),
    else this process's command line; at most 200 characters."""
    text = os.environ.get("MERFLOW_COMMAND") or " ".join([os.path.basename(sys.argv[0] or "python"), *sys.argv[1:]])
    return text if len(text) <= 200 else text[:197] + "..."


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def pid_alive(pid: int) -> bool:
    """Whether a process of this id runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@dataclass(frozen=True)
class Holder:
    """What a lock records of the process holding it."""

    owner: str            # the command (``command()``)
    host: str
    pid: int
    started_at: float     # epoch seconds
    heartbeat_at: float   # epoch seconds: the last sign of life (object stores; the start locally)
    token: str            # this acquisition's random id

    @classmethod
    def me(cls) -> Holder:
        now = time.time()
        return cls(command(), socket.gethostname(), os.getpid(), now, now, secrets.token_hex(8))

    @classmethod
    def parse(cls, data: bytes) -> Holder | None:
        try:
            fields = json.loads(data)
            return cls(str(fields["owner"]), str(fields["host"]), int(fields["pid"]), float(fields["started_at"]),
                       float(fields["heartbeat_at"]), str(fields["token"]))
        except (ValueError, KeyError, TypeError):
            return None

    def encode(self) -> bytes:
        return json.dumps(asdict(self) | {"started": _iso(self.started_at)}).encode()

    def describe(self) -> str:
        """`merflow ingest b.zip --out C` (pid 4242 on lab1, since 2026-12-03 10:04:05 UTC)."""
        return f"`{self.owner}` (pid {self.pid} on {self.host}, since {_iso(self.started_at)})"

    def gone(self) -> bool:
        """Its process is known to be gone: it ran on this host and runs no more."""
        return self.host == socket.gethostname() and not pid_alive(self.pid)

    def stale(self, stale_after: float) -> bool:
        """Gone, or silent for longer than ``stale_after`` seconds (object stores)."""
        return self.gone() or time.time() - self.heartbeat_at > stale_after


class LockHeld(RuntimeError):
    """Another process holds the lock: one line naming it (who, where, since when) and what to do."""

    def __init__(self, what: str, holder: Holder | None, advice: str = ""):
        who = holder.describe() if holder else "another process (its record is not written yet)"
        super().__init__(f"{what} is in use by {who}" + (f": {advice}" if advice else ""))
        self.what, self.holder = what, holder


class LockLost(RuntimeError):
    """A holder stalled past ``STALE_AFTER`` and another process took its lock over: nothing more may be committed."""


class Lock:
    """A held lock. ``took_over`` is the record of a dead or stale holder this one replaced, else None."""

    def __init__(self, location: str, what: str, shared: bool):
        self.location, self.what, self.shared = location, what, shared
        self.holder = Holder.me()
        self.took_over: Holder | None = None
        self.count = 0  # re-entrant holds within this process
        self.key: tuple | None = None  # its key among this process's held locks

    @property
    def record(self) -> str:
        return self.location + ".json"

    def check(self) -> None:
        """Raise ``LockLost`` if another process took this lock over (object stores); writers call it
        before they commit (a shard's mark, a catalog's sources table)."""

    def try_acquire(self, stale_after: float) -> bool | Holder | None:
        """True when acquired, else the holder (None where its record is not readable yet)."""
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Lock:
        return self

    def __exit__(self, *exc) -> None:
        release(self)


class _FileLock(Lock):
    """``flock`` on a local file; the record beside it, written whole (locations.write_bytes)."""

    fd: int | None = None
    name_holder = True  # read the holder's record when refused (try_exclusive needs no name)

    def try_acquire(self, stale_after: float) -> bool | Holder | None:
        import fcntl

        path = self.location + ".lock"
        os.makedirs(os.path.dirname(path), exist_ok=True)
        for _ in range(5):
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None if self.shared or not self.name_holder else self._read_holder()
            try:  # the file locked must still be the one at the path (a remover may have unlinked it)
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self.fd = fd
                break
            os.close(fd)
        else:
            return None
        if not self.shared:
            self.holder = Holder.me()
            before = self._read_holder(tries=1)
            if before is not None:  # a record left behind: its process ended without releasing (killed)
                self.took_over = before
            locations.write_bytes(self.record, self.holder.encode())
        return True

    def _read_holder(self, tries: int = 8) -> Holder | None:
        for attempt in range(tries):  # the holder writes its record just after it locks
            try:
                with open(self.record, "rb") as file:
                    holder = Holder.parse(file.read())
                if holder is not None:
                    return holder
            except FileNotFoundError:
                pass
            if attempt + 1 < tries:
                time.sleep(0.05)
        return None

    def release(self) -> None:
        import fcntl

        if self.fd is None:
            return
        if not self.shared:
            try:
                os.unlink(self.record)
            except FileNotFoundError:
                pass
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None

    def remove_file(self) -> None:
        """Delete the lock file while holding it exclusively (a folder being removed with it): whoever
        opened it before locks a file no longer at the path, notices, and tries again."""
        try:
            os.unlink(self.location + ".lock")
        except FileNotFoundError:
            pass


def _precondition_failed(error: BaseException) -> bool:
    """An S3 412 (the condition did not hold: another writer came first) or a missing object, as s3fs raises them."""
    if isinstance(error, (FileExistsError, FileNotFoundError)):
        return True
    code = getattr(error.__cause__, "response", {}).get("Error", {}).get("Code")
    text = str(error).lower()
    return code in ("PreconditionFailed", "412", "NoSuchKey") or "pre-condition" in text or "precondition" in text


class _ObjectLock(Lock):
    """The record object is the lock: conditional PUTs (S3), a heartbeat thread (see the module's text)."""

    etag: str | None = None

    def __init__(self, location: str, what: str, shared: bool):
        super().__init__(location, what, shared)
        self.fs, self.path = locations.filesystem(self.record)
        self.s3 = locations.protocol(location) in ("s3", "s3a")
        self.lost: Holder | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _put(self, data: bytes, create: bool = False, if_match: str | None = None) -> str | None:
        if self.s3:
            kwargs = {"IfMatch": if_match} if if_match else {}
            out = self.fs.pipe_file(self.path, data, mode="create" if create else "overwrite", **kwargs)
            etag = (out or {}).get("ETag")
            return etag or self.fs.info(self.path)["ETag"]
        self.fs.pipe_file(self.path, data, mode="create" if create else "overwrite")
        return None

    def _read(self) -> tuple[Holder | None, str | None]:
        try:
            self.fs.invalidate_cache(self.path)
            etag = self.fs.info(self.path).get("ETag") if self.s3 else None
            return Holder.parse(self.fs.cat_file(self.path)), etag
        except FileNotFoundError:
            return None, None

    def try_acquire(self, stale_after: float) -> bool | Holder | None:
        self.holder = Holder.me()  # its heartbeat is now, however long this process waited
        try:
            self.etag = self._put(self.holder.encode(), create=True)
            self._start_heartbeat()
            return True
        except (FileExistsError, OSError) as error:
            if not _precondition_failed(error):
                raise
        holder, etag = self._read()
        if holder is None:
            return None  # released meanwhile (or not parseable yet): try again
        if not holder.stale(stale_after):
            return holder
        try:
            if self.s3:  # only one taker's PUT matches the stale record's ETag
                self.etag = self._put(self.holder.encode(), if_match=etag)
            else:  # best effort: delete and create
                self.fs.rm_file(self.path)
                self._put(self.holder.encode(), create=True)
        except (FileExistsError, OSError) as error:
            if not _precondition_failed(error):
                raise
            return holder
        self.took_over = holder
        self._start_heartbeat()
        return True

    def _start_heartbeat(self) -> None:
        self._thread = threading.Thread(target=self._beat, name=f"merflow-lock-heartbeat {self.record}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT):
            fresh = Holder(**{**asdict(self.holder), "heartbeat_at": time.time()})
            try:
                if self.s3:
                    self.etag = self._put(fresh.encode(), if_match=self.etag)
                else:
                    current, _ = self._read()
                    if current is None or current.token != self.holder.token:
                        raise FileNotFoundError(self.path)
                    self._put(fresh.encode())
                self.holder = fresh
            except (FileExistsError, OSError) as error:
                if not _precondition_failed(error):
                    log.warning("heartbeat of the lock %s failed (%s); trying again", self.record, error)
                    continue
                self.lost = self._read()[0]
                log.warning("%s: lost the lock to %s", self.what, self.lost.describe() if self.lost else "another process")
                return

    def check(self) -> None:
        if self.lost is not None:
            who = self.lost.describe() if self.lost else "another process"
            raise LockLost(f"{self.what}: this process stalled for more than {STALE_AFTER:.0f} s and {who} took its "
                           "lock over; nothing more is written by this one")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.lost is not None:
            return
        if self.s3:
            bucket, key, _ = self.fs.split_path(self.path)
            try:
                self.fs.call_s3("delete_object", Bucket=bucket, Key=key, IfMatch=self.etag)
                self.fs.invalidate_cache(self.path)
                return
            except (FileExistsError, OSError) as error:
                if _precondition_failed(error):
                    return  # no longer ours
                log.debug("conditional delete refused (%s): deleting after a check", error)
        current, _ = self._read()
        if current is not None and current.token == self.holder.token:
            self.fs.rm_file(self.path)


# ------------------------------------------------------------------------------------------- the API
_held: dict[tuple[str, bool, int | None], Lock] = {}
_registry = threading.Lock()


def lock_location(place: str | os.PathLike, name: str) -> str:
    """Where the lock ``name`` of a catalog, store or results folder lives: ``place/.locks/name``."""
    return locations.join(locations.normalise(place), LOCKS_DIR, name)


def acquire(location: str | os.PathLike, what: str, *, wait: bool | float = False, advice: str = "",
            shared: bool = False, reentrant: bool = True, per_thread: bool = False, stale_after: float | None = None,
            on_wait: Callable[[str], None] | None = None) -> Lock:
    """The lock at ``location`` (a local path or a URL, without extension), held by this process.

    ``wait``: False refuses at once (``LockHeld``: one line naming the holder, then ``advice``); True waits
    as long as the holder lives; a number waits that many seconds, then refuses. ``on_wait(line)`` is
    told once that this process waits, and for whom. ``shared`` (local folders only): a shared lock,
    which excludes exclusive ones only. ``reentrant=False``: a lock this process already holds counts as
    held by another (a prune must not remove what this process itself still reads). ``per_thread``:
    re-entrant in this thread only, another thread of this process counts as another holder (a shard's
    claim: two runs' tasks may share a Dask worker process).
    """
    text = locations.normalise(location)
    stale_after = STALE_AFTER if stale_after is None else stale_after
    key = (text, shared, threading.get_ident() if per_thread else None)
    if reentrant:
        with _registry:
            held = _held.get(key)
            if held is not None:
                held.count += 1
                return held
    if shared and locations.is_remote(text):
        raise ValueError("shared locks are for local folders only")
    lock = (_ObjectLock if locations.is_remote(text) else _FileLock)(text, what, shared)
    lock.key = key
    deadline = None if wait is True else time.monotonic() + (float(wait) if wait else 0.0)
    told = False
    while True:
        outcome = lock.try_acquire(stale_after)
        if outcome is True:
            break
        if deadline is not None and time.monotonic() >= deadline:
            raise LockHeld(what, outcome if isinstance(outcome, Holder) else None, advice)
        if not told and isinstance(outcome, Holder):
            told = True
            line = f"{what} is in use by {outcome.describe()}: waiting for it"
            (on_wait or log.warning)(line)
        time.sleep(POLL)
    if lock.took_over is not None:
        reason = ("its process ended without releasing it" if isinstance(lock, _FileLock) else
                  "its process is gone" if lock.took_over.gone() else
                  f"no heartbeat since {_iso(lock.took_over.heartbeat_at)}")
        log.warning("%s: took over the lock of %s (%s)", what, lock.took_over.describe(), reason)
    lock.count = 1
    if reentrant:
        with _registry:
            _held[key] = lock
    return lock


def release(lock: Lock) -> None:
    """Release one hold of ``lock``; the lock itself when the last hold of this process ends."""
    with _registry:
        lock.count -= 1
        if lock.count > 0:
            return
        if _held.get(lock.key) is lock:
            del _held[lock.key]
    lock.release()


@contextmanager
def hold(location: str | os.PathLike, what: str, **options) -> Iterator[Lock]:
    """``acquire`` as a context manager: released when the block ends, whatever ends it."""
    lock = acquire(location, what, **options)
    try:
        yield lock
    finally:
        release(lock)


def try_exclusive(location: str | os.PathLike, what: str = "") -> Lock | None:
    """An exclusive lock of a local file if nobody (this process included) holds it, else None at once;
    not re-entrant. For a remover (``sources.prune_unpacked``): ``release`` it, after ``remove_file`` if the
    thing it guards is gone."""
    lock = _FileLock(locations.normalise(location), what or os.fspath(location), shared=False)
    lock.name_holder = False
    if lock.try_acquire(STALE_AFTER) is not True:
        return None
    lock.count = 1
    return lock


def holder(location: str | os.PathLike) -> Holder | None:
    """The record of whoever holds (or last held, if killed) the lock at ``location``; None if none.
    For a report: whether it is still held is what ``acquire`` finds out."""
    record = locations.normalise(location) + ".json"
    try:
        return Holder.parse(locations.read_bytes(record))
    except FileNotFoundError:
        return None


def held_here(location: str | os.PathLike, shared: bool = False, per_thread: bool = False) -> Lock | None:
    """The lock at ``location`` if this process (this thread, ``per_thread``) holds it, else None."""
    with _registry:
        return _held.get((locations.normalise(location), shared, threading.get_ident() if per_thread else None))
