"""The local copies of a catalog's sources: ``CATALOG/downloads/`` (URL sources fetched whole) and
``CATALOG/raw/<sha256[:16]>/`` (each archive's content, unpacked once), and removing what no source
needs any more.

A source's whole life as stored bytes is here: ``fetch`` (a local path), ``fingerprint`` (its format,
by content, and checksum, which names its ``raw/`` folder), ``unpack`` (storage/archives.py's
``safe_extract`` into ``raw/<sha>/``, reused when already there), ``discard_unpacked`` and
``prune_unpacked``. What the unpacked content means (its content root, datasets, samples) is
tasks/ingest.py's, which reads and writes nothing of this.

Both folders must be local (OpenCV reads the frames): for a catalog on object storage they are in the
local cache instead (``locations.cache_dir``: ``$MERFLOW_CACHE/<the catalog's URL>/raw``, ``.../downloads``).

Nothing a running ingest reads is removed: an ingest holds a shared lock on ``.locks/raw-<sha>.lock``
(``in_use``) from before it unpacks until its rows are merged, and ``prune_unpacked`` removes a folder
only holding that lock exclusively (storage/locks.py ``try_exclusive``), reading which checksums the
catalog still names under the catalog's lock.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from merflow.configs.catalog import DOWNLOADS_DIR, RAW_DIR
from merflow.configs.ingest import ExtractionLimits
from merflow.storage import locations, locks
from merflow.storage.archives import ArchiveError, Progress, archive_kind, safe_extract


@dataclass(frozen=True)
class Unpacked:
    """Where a source's content lies locally, and what this call unpacked."""

    folder: Path                   # a folder source itself, or the archive's raw/<sha>/
    created: Path | None = None    # raw/<sha>/ when this call unpacked it (None: a folder, or unpacked before)


def fetch(source: str, catalog_dir: str | os.PathLike) -> Path:
    """A local path of a source: local paths as they are, URLs downloaded into the catalog's downloads/."""
    return locations.materialize(source, locations.cache_dir(catalog_dir, DOWNLOADS_DIR))


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks so multi-GB archives need no memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def folder_fingerprint(folder: Path) -> str:
    """A checksum of a folder's listing (relative path, size, mtime): changes when any file does."""
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            stat = path.stat()
            digest.update(f"{path.relative_to(folder)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def fingerprint(source: str, local: Path) -> tuple[str, str]:
    """(kind, sha256) of a source at the local path ``local`` (``fetch`` gives it): kind is ``folder``
    or the archive's format read from its content; ArchiveError for any other file."""
    if local.is_dir():
        return "folder", folder_fingerprint(local)
    kind = archive_kind(local)
    if kind is None:
        raise ArchiveError(f"{source} is neither a folder nor an archive merflow reads "
                           "(zip, tar, tar.gz, tar.bz2, tar.xz, 7z)")
    return kind, sha256_file(local)


MAT_MAGIC = b"MATLAB 5.0 MAT-file"  # the first bytes of a MATLAB level-5 MAT-file's header


def content_checksum(folder: Path) -> str:
    """A checksum of a folder's content: every file's relative path and the SHA-256 of its bytes (not its
    time): the same files give the same checksum wherever they lie, and any changed byte another."""
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            digest.update(f"{path.relative_to(folder).as_posix()}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def import_fingerprint(source: str, local: Path) -> tuple[str, str]:
    """(kind, sha256) of a source of `merflow import-features` at the local path ``local``: ``folder`` (its
    content, ``content_checksum``), ``mat`` (a MAT-file, by its header) or an archive's format (as ``fingerprint``),
    with the checksum of its content."""
    if local.is_dir():
        return "folder", content_checksum(local)
    if local.is_file():
        with open(local, "rb") as file:
            if file.read(len(MAT_MAGIC)) == MAT_MAGIC:
                return "mat", sha256_file(local)
    if not local.exists():
        raise FileNotFoundError(f"{source} does not exist")
    return fingerprint(source, local)


def raw_dir(catalog_dir: str | os.PathLike, sha: str) -> Path:
    """The local folder the archive of checksum ``sha`` unpacks into (not created)."""
    return locations.cache_dir(catalog_dir, RAW_DIR, sha[:16])


def unpack(local: Path, kind: str, sha: str, catalog_dir: str | os.PathLike,
           limits: ExtractionLimits = ExtractionLimits(), progress: Progress | None = None) -> Unpacked:
    """A fingerprinted source's content as a local folder: an archive unpacked once into its
    ``raw_dir``, a folder used in place.

    An archive already unpacked (same checksum) is not unpacked again: safe_extract renames a
    complete extraction into place, so an existing raw/<sha>/ is always a whole one.
    """
    if kind == "folder":
        return Unpacked(local)
    target = raw_dir(catalog_dir, sha)
    if target.is_dir():
        return Unpacked(target)
    try:
        safe_extract(local, target, limits, progress=progress)
    except FileExistsError:
        if target.is_dir():  # another ingest of the same archive finished unpacking first: the same content
            return Unpacked(target)
        raise
    return Unpacked(target, created=target)


def _use_lock(catalog_dir: str | os.PathLike, sha: str) -> Path:
    """The local lock guarding raw/<sha>/ against removal: ``CATALOG/.locks/raw-<sha>`` (in the local cache
    for a catalog on object storage, beside its raw/)."""
    return locations.cache_dir(catalog_dir, locks.LOCKS_DIR, f"raw-{sha[:16]}")


@contextmanager
def in_use(catalog_dir: str | os.PathLike, sha: str, kind: str) -> Iterator[None]:
    """Hold the archive of checksum ``sha``'s ``raw/`` folder against removal while the block runs (a
    shared lock: ingests of the same archive share it; a prune waits for none and skips it). Enter it
    before ``unpack`` and leave it after the source's rows are merged. A folder source needs nothing."""
    if kind == "folder":
        yield
        return
    with locks.hold(_use_lock(catalog_dir, sha), f"the unpacked archive {raw_dir(catalog_dir, sha)}", shared=True,
                    wait=True):
        yield


def _remove_unused(catalog_dir: str | os.PathLike, folder: Path) -> bool:
    """Remove an unpacked archive's folder unless an ingest holds it (``in_use``, this process's included)."""
    lock = locks.try_exclusive(_use_lock(catalog_dir, folder.name))
    if lock is None:
        return False
    try:
        if not folder.is_dir():
            return False
        shutil.rmtree(folder)
        lock.remove_file()
        return True
    finally:
        locks.release(lock)


def discard_unpacked(folder: Path | None, catalog_dir: str | os.PathLike | None = None) -> Path | None:
    """Remove what was unpacked for a source that then failed (its dataset not recognised, its sheet
    unreadable), so that a failed ingest leaves no files behind; None (unpacked by an earlier ingest,
    a folder source, or read by another ingest right now) removes nothing. Call it after leaving
    ``in_use``. Returns the folder removed."""
    if folder is None or not folder.is_dir():
        return None
    if catalog_dir is None:  # raw/<sha>/ lies in the catalog folder (a local catalog)
        catalog_dir = folder.parent.parent
    return folder if _remove_unused(catalog_dir, folder) else None


def prune_unpacked(catalog_dir: str | os.PathLike, live_checksums: set[str] | None = None) -> list[Path]:
    """Remove unpacked archives that no source of the catalog refers to any more (a changed
    archive leaves its old content behind) and that no running ingest holds (``in_use``). Without
    ``live_checksums`` the catalog's sources table is read under the catalog's lock, which is held
    while removing: nothing merged meanwhile is lost. Returns what was removed."""
    from merflow.storage import catalog

    with catalog.writing(catalog_dir):
        if live_checksums is None:
            live_checksums = set(catalog.read_sources(catalog_dir)["source_sha256"])
        raw = locations.cache_dir(catalog_dir, RAW_DIR)
        live = {sha[:16] for sha in live_checksums}
        stale = [p for p in sorted(raw.iterdir()) if p.is_dir() and not p.name.startswith(".") and p.name not in live] \
            if raw.is_dir() else []
        return [path for path in stale if _remove_unused(catalog_dir, path)]
