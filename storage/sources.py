"""The local copies of a catalog's sources: ``CATALOG/downloads/`` (URL sources fetched whole) and
``CATALOG/raw/<sha256[:16]>/`` (each archive's content, unpacked once by tasks/archives.py's
``safe_extract``), and removing what no source needs any more.

Both must be local files (OpenCV reads the frames): for a catalog on object storage they are in the
local cache instead (``locations.cache_dir``: ``$MERFLOW_CACHE/<the catalog's URL>/raw``, ``.../downloads``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from merflow.configs.catalog import DOWNLOADS_DIR, RAW_DIR
from merflow.storage import locations


def fetch(source: str, catalog_dir: str | os.PathLike) -> Path:
    """A local path of a source: local paths as they are, URLs downloaded into the catalog's downloads/."""
    return locations.materialize(source, locations.cache_dir(catalog_dir, DOWNLOADS_DIR))


def raw_dir(catalog_dir: str | os.PathLike, sha: str) -> Path:
    """The local folder the archive of checksum ``sha`` unpacks into (not created)."""
    return locations.cache_dir(catalog_dir, RAW_DIR, sha[:16])


def discard_unpacked(folder: Path | None) -> Path | None:
    """Remove what was unpacked for a source that then failed (its dataset not recognised, its sheet
    unreadable), so that a failed ingest leaves no files behind; None (unpacked by an earlier ingest,
    or a folder source) removes nothing. Returns the folder removed."""
    if folder is None or not folder.is_dir():
        return None
    shutil.rmtree(folder)
    return folder


def prune_unpacked(catalog_dir: str | os.PathLike, live_checksums: set[str]) -> list[Path]:
    """Remove unpacked archives that no source of the catalog refers to any more (a changed
    archive leaves its old content behind). Returns what was removed."""
    raw = locations.cache_dir(catalog_dir, RAW_DIR)
    live = {sha[:16] for sha in live_checksums}
    stale = [p for p in raw.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in live] \
        if raw.is_dir() else []
    for path in stale:
        shutil.rmtree(path)
    return stale
