"""Ingesting one source (an archive or a folder, local or an fsspec URL): fingerprint it, unpack it
safely once, recognise its dataset(s) and read them through their adapters.

The flow in flows/ingest.py fetches a source and places its unpacked content through storage/sources.py,
calls these, and writes the catalog; nothing here opens a location.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from merflow.configs.catalog import RAW_DIR
from merflow.configs.ingest import ExtractionLimits, IngestConfig
from merflow.tasks.archives import archive_kind, content_root, safe_extract, sha256_file
from merflow.tasks.datasets import adapter, detect_datasets
from merflow.tasks.datasets.base import CorruptSheetError, corrupt_sheets

Location = str | os.PathLike


class UnrecognisedDatasetError(ValueError):
    """No adapter recognises the content of a source."""


@dataclass(frozen=True)
class PreparedSource:
    """A source ready for the adapters: its name, checksum, kind, the folder to read, and what this call unpacked."""

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


def fingerprint(source: str, local: Path) -> tuple[str, str]:
    """(kind, sha256) of a source at the local path ``local`` (storage/sources.py ``fetch`` gives it)."""
    if local.is_dir():
        return "folder", folder_fingerprint(local)
    kind = archive_kind(local)
    if kind is None:
        raise UnrecognisedDatasetError(f"{source} is neither a folder nor an archive merflow reads "
                                       "(zip, tar, tar.gz, tar.bz2, tar.xz, 7z)")
    return kind, sha256_file(local)


def unpack(source: str, local: Path, kind: str, sha: str, target: Path,
           limits: ExtractionLimits = ExtractionLimits(), progress=None) -> PreparedSource:
    """Unpack a fingerprinted archive once into ``target`` (its raw/<sha>/ folder, storage/sources.py
    ``raw_dir``); a folder is used in place.

    An archive already unpacked (same checksum) is not unpacked again; safe_extract renames a
    complete extraction into place, so an existing folder is always a whole one.
    """
    if kind == "folder":
        return PreparedSource(source, sha, kind, local)
    if target.is_dir():
        return PreparedSource(source, sha, kind, content_root(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    safe_extract(local, target, limits, progress=progress)
    return PreparedSource(source, sha, kind, content_root(target), unpacked=target)


def prepare(source: str, catalog_dir: Location, limits: ExtractionLimits = ExtractionLimits()) -> PreparedSource:
    """Fingerprint and unpack a local source in one call (for notebooks and tests), an archive into the
    local ``catalog_dir``'s raw/<sha>/ as the ingest flow does; the flow itself also takes URLs."""
    if "://" in os.fspath(source) or "://" in os.fspath(catalog_dir):
        raise ValueError(f"prepare takes a local source and catalog ({source}, {catalog_dir}): "
                         "the ingest flow (flows/ingest.py) fetches URLs")
    local = Path(source).expanduser().resolve()
    if not local.exists():
        raise FileNotFoundError(f"dataset source {source} does not exist ({local})")
    kind, sha = fingerprint(source, local)
    return unpack(source, local, kind, sha, Path(catalog_dir).expanduser().resolve() / RAW_DIR / sha[:16], limits)


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
    """The source's row of the catalog's sources table (checksum, kind, datasets, time, the ingest configuration)."""
    return {"source": prepared.source, "source_sha256": prepared.source_sha256, "kind": prepared.kind,
            "root": str(prepared.root), "datasets": datasets,
            "ingested_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "config": config.to_json()}


def unchanged_reason(sources, source: str, sha: str, config: IngestConfig) -> str | None:
    """Why a source needs no work, given the catalog's sources table (storage/catalog.py read_sources):
    the same content ingested with the same settings, from this source or another; None when it needs work."""
    same = sources[(sources["source_sha256"] == sha) & (sources["config"] == config.to_json())]
    if (same["source"] == source).any():
        return "unchanged since its last ingest"
    if len(same):
        return f"same content as {same['source'].iloc[0]}, already ingested"
    return None
