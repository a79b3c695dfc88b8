"""Reading one source whose content already lies in a local folder: find its content root, recognise
its dataset(s), read them through their adapters into sample and quarantine rows, and say whether a
source needs ingesting at all (``unchanged_reason``).

Pure: everything here reads and returns values, nothing writes. Fetching, fingerprinting (the format
and checksum of the stored copy) and unpacking into ``raw/<sha>/`` are storage/sources.py's (the
archive formats and their hostile-archive checks storage/archives.py's), writing the catalog is
storage/catalog.py's, and flows/ingest.py wires them (``prepare`` does the same for one source
without Prefect).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from merflow.configs.ingest import IngestConfig
from merflow.tasks.datasets import LONG_VIDEO_ADAPTERS, adapter, detect_datasets, detect_long_videos
from merflow.tasks.datasets.base import JUNK_NAMES, CorruptSheetError, corrupt_sheets
from merflow.tasks.datasets.long_videos import LongVideoResult


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


def content_root(directory: str | os.PathLike[str]) -> Path:
    """Descend through folders that are the only thing in their parent, as archives often nest one."""
    current = Path(directory)
    while True:
        children = [child for child in current.iterdir() if child.name not in JUNK_NAMES]
        if len(children) != 1 or not children[0].is_dir():
            return current
        current = children[0]


def prepared_source(source: str, sha: str, kind: str, folder: Path,
                    unpacked: Path | None = None) -> PreparedSource:
    """The source whose content lies in ``folder`` (storage/sources.py ``unpack``), ready for the
    adapters: they read its content root."""
    return PreparedSource(source, sha, kind, content_root(folder), unpacked)


def read(prepared: PreparedSource, config: IngestConfig) -> tuple[list[str], list[dict], list[dict]]:
    """(datasets found, sample rows, quarantine rows) of a prepared source."""
    if config.dataset in LONG_VIDEO_ADAPTERS:  # --dataset samm_lv: long videos only (read_long_videos)
        return [], [], []
    names = [config.dataset] if config.dataset else detect_datasets(prepared.root)
    if not names and detect_long_videos(prepared.root):  # long videos without clips (SAMM Long Videos)
        return [], [], []
    if not names:
        _raise_if_corrupt_sheets(prepared)
        raise UnrecognisedDatasetError(
            f"{prepared.source}: no known dataset layout found (looked for the CASME, CASME II, "
            "CAS(ME)^2, SAMM and SAMM Long Videos sheets, SMIC's HS/VIS/NIR folders and CK+'s cohn-kanade-images/); "
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


def read_long_videos(prepared: PreparedSource, config: IngestConfig) -> dict[str, LongVideoResult]:
    """The long-video sets of a prepared source (spotting; tasks/datasets/long_videos.py), by name: the one
    ``config.dataset`` names, or every one detected (a CAS(ME)^2 source gives its clips to ``read`` and its
    long videos here); empty when it holds none."""
    if config.dataset:
        names = [config.dataset] if config.dataset in LONG_VIDEO_ADAPTERS else []
    else:
        names = detect_long_videos(prepared.root)
    return {name: LONG_VIDEO_ADAPTERS[name].read(prepared.root) for name in names}


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
