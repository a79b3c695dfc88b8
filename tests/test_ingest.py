"""Tests for merflow.tasks.ingest: the content root of an unpacked source, reading it through the
adapters, and the skip decision on the sources table (the flow itself: tests/test_ingest_flow.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from merflow.configs.ingest import IngestConfig
from merflow.tasks import ingest


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def test_content_root_descends_single_folder_chains_ignoring_junk(tmp_path: Path) -> None:
    files = {"a/b/sub01/img.jpg": b"", "a/b/sub02/img.jpg": b"", "__MACOSX/a/._b": b"", ".DS_Store": b""}
    write_tree(tmp_path / "x", files)
    assert ingest.content_root(tmp_path / "x") == tmp_path / "x" / "a" / "b"


def test_content_root_stops_at_a_folder_beside_a_file(tmp_path: Path) -> None:
    write_tree(tmp_path / "x", {"a/readme.txt": b"", "a/b/img.jpg": b""})
    assert ingest.content_root(tmp_path / "x") == tmp_path / "x" / "a"
    write_tree(tmp_path / "y", {"only.txt": b""})
    assert ingest.content_root(tmp_path / "y") == tmp_path / "y"


def test_a_prepared_folder_is_read_from_its_content_root_and_writes_nothing(synth_folders, tmp_path) -> None:
    folder = synth_folders["casme2"]
    before = sorted((p, p.stat().st_mtime_ns) for p in folder.rglob("*"))
    prepared = ingest.prepared_source(str(folder), "0" * 64, "folder", folder)
    assert prepared.root == ingest.content_root(folder) and prepared.unpacked is None
    datasets, samples, problems = ingest.read(prepared, IngestConfig())
    assert datasets == ["casme2"] and samples and all(s["dataset"] == "casme2" for s in samples)
    row = ingest.source_row(prepared, datasets, IngestConfig())
    assert row["root"] == str(prepared.root) and row["datasets"] == ["casme2"]
    assert sorted((p, p.stat().st_mtime_ns) for p in folder.rglob("*")) == before
    (tmp_path / "holiday").mkdir()
    (tmp_path / "holiday" / "beach.jpg").write_bytes(b"")
    with pytest.raises(ingest.UnrecognisedDatasetError, match="no known dataset layout"):
        ingest.read(ingest.prepared_source("holiday", "1" * 64, "folder", tmp_path / "holiday"), IngestConfig())


def test_unchanged_reason_skips_the_same_content_with_the_same_settings_only() -> None:
    config = IngestConfig()
    table = pd.DataFrame([{"source": "a.zip", "source_sha256": "s1", "config": config.to_json()}])
    assert ingest.unchanged_reason(table, "a.zip", "s1", config) == "unchanged since its last ingest"
    assert ingest.unchanged_reason(table, "copy.zip", "s1", config) == "same content as a.zip, already ingested"
    assert ingest.unchanged_reason(table, "a.zip", "s2", config) is None
    assert ingest.unchanged_reason(table, "a.zip", "s1", IngestConfig(dataset="casme2")) is None


def test_reading_a_source_imports_no_storage():
    code = ("import sys, merflow.tasks.ingest; print(sorted(m for m in sys.modules "
            "if m.startswith(('merflow.storage', 'merflow.training', 'merflow.flows'))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
