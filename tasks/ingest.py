"""Ingesting one source (an archive or a folder, local or an fsspec URL): fingerprint it, unpack it
safely once, recognise its dataset(s) and read them through their adapters.

Pure functions: the Prefect flow in flows/ingest.py only calls these and writes the catalog.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from merflow.storage import locations
from merflow.tasks.archives import ExtractionLimits, archive_kind, content_root, materialize, safe_extract, sha256_file
from merflow.tasks.datasets import adapter, detect_datasets
from merflow.tasks.datasets.base import CorruptSheetError, corrupt_sheets

# CATALOG_DIR/raw/<sha256[:16]>/: each archive's content, unpacked once; CATALOG_DIR/downloads/: URL sources.
# Both must be local files (OpenCV reads the frames): for a catalog on object storage they are in the local
# cache instead (locations.cache_dir: $MERFLOW_CACHE/<the catalog's URL>/raw, .../downloads).
RAW_DIR = "raw"
DOWNLOADS_DIR = "downloads"
Location = str | os.PathLike


class UnrecognisedDatasetError(ValueError):
    """No adapter recognises the content of a source."""


@dataclass(frozen=True)
class IngestConfig:
    """How sources were ingested; recorded as JSON with every source row of the catalog."""

    dataset: str | None = None                 # None: detect from the content
    limits: ExtractionLimits = field(default_factory=ExtractionLimits)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


@dataclass(frozen=True)
class PreparedSource:
    source: str
    source_sha256: str
    kind: str      # zip | tar | 7z | folder
    root: Path     # the folder the adapters read
    unpacked: Path | None = None  # raw/<sha>, where this call unpacked it (None: a folder, or unpacked before)


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


def fingerprint(source: str, catalog_dir: Location) -> tuple[Path, str, str]:
    """(local path, kind, sha256) of a source; URLs are downloaded into the catalog's downloads/."""
    local = materialize(source, locations.cache_dir(catalog_dir, DOWNLOADS_DIR))
    if local.is_dir():
        return local, "folder", folder_fingerprint(local)
    kind = archive_kind(local)
    if kind is None:
        raise UnrecognisedDatasetError(f"{source} is neither a folder nor an archive merflow reads "
                                       "(zip, tar, tar.gz, tar.bz2, tar.xz, 7z)")
    return local, kind, sha256_file(local)


def unpack(source: str, local: Path, kind: str, sha: str, catalog_dir: Location,
           limits: ExtractionLimits = ExtractionLimits(), progress=None) -> PreparedSource:
    """Unpack a fingerprinted archive once into CATALOG_DIR/raw/<sha>/ (a folder is used in place).

    An archive already unpacked (same checksum) is not unpacked again; safe_extract renames a
    complete extraction into place, so an existing folder is always a whole one.
    """
    if kind == "folder":
        return PreparedSource(source, sha, kind, local)
    target = locations.cache_dir(catalog_dir, RAW_DIR, sha[:16])
    if target.is_dir():
        return PreparedSource(source, sha, kind, content_root(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    safe_extract(local, target, limits, progress=progress)
    return PreparedSource(source, sha, kind, content_root(target), unpacked=target)


def discard_unpacked(prepared: PreparedSource) -> Path | None:
    """Remove what ``unpack`` unpacked for a source that then failed (its dataset not recognised, its
    sheet unreadable): a failed ingest leaves no files behind. Content unpacked by an earlier ingest
    stays. Returns the folder removed."""
    if prepared.unpacked is None or not prepared.unpacked.is_dir():
        return None
    shutil.rmtree(prepared.unpacked)
    return prepared.unpacked


def prepare(source: str, catalog_dir: Location, limits: ExtractionLimits = ExtractionLimits()) -> PreparedSource:
    """Fingerprint and unpack in one call (for notebooks and tests)."""
    return unpack(source, *fingerprint(source, catalog_dir), catalog_dir, limits)


def prune_unpacked(catalog_dir: Location, live_checksums: set[str]) -> list[Path]:
    """Remove unpacked archives that no source of the catalog refers to any more (a changed
    archive leaves its old content behind). Returns what was removed."""
    raw = locations.cache_dir(catalog_dir, RAW_DIR)
    live = {sha[:16] for sha in live_checksums}
    stale = [p for p in raw.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in live] \
        if raw.is_dir() else []
    for path in stale:
        shutil.rmtree(path)
    return stale


def read(prepared: PreparedSource, config: IngestConfig) -> tuple[list[str], list[dict], list[dict]]:
    """(datasets found, sample rows, quarantine rows) of a prepared source."""
    names = [config.dataset] if config.dataset else detect_datasets(prepared.root)
    if not names:
        _raise_if_corrupt_sheets(prepared)
        raise UnrecognisedDatasetError(
            f"{prepared.source}: no known dataset layout found (looked for the CASME, CASME II, "
            "CAS(ME)^2 and SAMM sheets, SMIC's HS/VIS/NIR folders and CK+'s cohn-kanade-images/); "
            "pass --dataset to name it")
    samples, problems = [], []
    for name in names:
        try:
            result = adapter(name).read(prepared.root)
        except (FileNotFoundError, ValueError):  # e.g. --dataset named, and its sheet is there but corrupt
            _raise_if_corrupt_sheets(prepared)
            raise
        samples.extend(result.samples)
        problems.extend(result.problems)
    return names, samples, problems


def _raise_if_corrupt_sheets(prepared: PreparedSource) -> None:
    corrupt = corrupt_sheets(prepared.root)
    if corrupt:
        path, reason = corrupt[0]
        more = f" (and {len(corrupt) - 1} more sheet(s) that do not open)" if len(corrupt) > 1 else ""
        raise CorruptSheetError(f"{prepared.source}: corrupt annotation sheet {path.relative_to(prepared.root)}: "
                                f"{reason}{more}; replace it with an intact copy and ingest again")


def source_row(prepared: PreparedSource, datasets: list[str], config: IngestConfig) -> dict:
    return {"source": prepared.source, "source_sha256": prepared.source_sha256, "kind": prepared.kind,
            "root": str(prepared.root), "datasets": datasets,
            "ingested_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "config": config.to_json()}
