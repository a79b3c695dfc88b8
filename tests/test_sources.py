"""Tests for merflow.storage.sources: fingerprints of a source's local copy, unpacking it once into
raw/<sha>/ (whole or absent, reused on a rerun), and removing unpacked content."""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from merflow.configs.ingest import ExtractionLimits
from merflow.storage import sources
from merflow.storage.archives import ArchiveError, UnsafeArchiveError


def _zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as bundle:
        for name, data in entries.items():
            bundle.writestr(name, data)
    return path


def test_sha256_file_matches_hashlib_across_chunks(tmp_path: Path) -> None:
    data = random.Random(1).randbytes(10_000)
    (tmp_path / "a.bin").write_bytes(data)
    assert sources.sha256_file(tmp_path / "a.bin", chunk=999) == hashlib.sha256(data).hexdigest()


def test_fingerprint_names_the_kind_by_content_and_changes_with_the_content(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "download.bin", {"a.txt": b"a"})
    assert sources.fingerprint("download.bin", archive) == ("zip", sources.sha256_file(archive))
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "x.jpg").write_bytes(b"1")
    kind, first = sources.fingerprint("folder", folder)
    assert kind == "folder" and first == sources.folder_fingerprint(folder)
    (folder / "sub" / "x.jpg").write_bytes(b"22")
    assert sources.fingerprint("folder", folder)[1] != first
    (tmp_path / "notes.txt").write_text("not an archive\n")
    with pytest.raises(ArchiveError, match="notes.txt is neither a folder nor an archive"):
        sources.fingerprint("notes.txt", tmp_path / "notes.txt")


def test_an_archive_unpacks_once_into_its_raw_folder_and_is_reused(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "CASME2.zip", {"CASME2/sub01/img1.jpg": b"jpeg"})
    kind, sha = sources.fingerprint(str(archive), archive)
    catalog_dir = tmp_path / "catalog"

    first = sources.unpack(archive, kind, sha, catalog_dir)
    assert first.folder == first.created == sources.raw_dir(catalog_dir, sha) == catalog_dir / "raw" / sha[:16]
    assert (first.folder / "CASME2" / "sub01" / "img1.jpg").read_bytes() == b"jpeg"
    stamp = first.folder.stat().st_mtime_ns
    again = sources.unpack(archive, kind, sha, catalog_dir)
    assert again.folder == first.folder and again.created is None, "an unpacked archive is not unpacked again"
    assert first.folder.stat().st_mtime_ns == stamp
    folder = tmp_path / "plain"
    folder.mkdir()
    assert sources.unpack(folder, "folder", "f" * 64, catalog_dir) == sources.Unpacked(folder)


def test_a_refused_archive_leaves_no_raw_folder(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "evil.zip", {"ok.txt": b"fine", "../../escaped.txt": b"gotcha"})
    kind, sha = sources.fingerprint(str(archive), archive)
    with pytest.raises(UnsafeArchiveError, match="escaped.txt"):
        sources.unpack(archive, kind, sha, tmp_path / "catalog", ExtractionLimits())
    raw = tmp_path / "catalog" / "raw"
    assert not raw.exists() or not any(raw.iterdir())


def test_discard_and_prune_remove_only_what_no_source_needs(tmp_path: Path) -> None:
    catalog_dir = tmp_path / "catalog"
    live, stale, partial = (catalog_dir / "raw" / name for name in ("a" * 16, "b" * 16, ".partial-x"))
    for folder in (live, stale, partial):
        folder.mkdir(parents=True)
    assert sources.prune_unpacked(catalog_dir, {"a" * 64}) == [stale]
    assert live.is_dir() and partial.is_dir() and not stale.exists()
    assert sources.discard_unpacked(None) is None
    assert sources.discard_unpacked(live) == live and not live.exists()


READER = """
import sys, time
from merflow.storage import sources
with sources.in_use(sys.argv[1], sys.argv[2], "zip"):
    print("reading", flush=True)
    time.sleep(60)
"""


def test_a_prune_never_removes_an_archive_a_running_ingest_reads(tmp_path: Path) -> None:
    """Another process holds raw/<sha>/ (``in_use``: an ingest between unpacking and merging its rows, whose
    source the catalog does not name yet): a prune, and a failed ingest's discard, leave it; once that
    process has ended (killed here), the prune removes it."""
    catalog_dir = tmp_path / "catalog"
    sha = "c" * 64
    reading = sources.raw_dir(catalog_dir, sha)
    (reading / "CASME2").mkdir(parents=True)
    reader = subprocess.Popen([sys.executable, "-c", READER, str(catalog_dir), sha], stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "reading"
        assert sources.prune_unpacked(catalog_dir) == [] and reading.is_dir()  # the catalog has no source at all
        assert sources.discard_unpacked(reading, catalog_dir) is None and reading.is_dir()
        with sources.in_use(catalog_dir, sha, "zip"):  # this process reads it too: its own prune leaves it
            reader.kill()
            reader.wait()
            assert sources.prune_unpacked(catalog_dir) == [] and reading.is_dir()
    finally:
        reader.kill()
        reader.wait()
    assert sources.prune_unpacked(catalog_dir) == [reading] and not reading.exists()


def test_unpacking_imports_no_tasks():
    code = ("import sys, merflow.storage.sources, merflow.storage.archives; print(sorted(m for m in sys.modules "
            "if m.startswith(('merflow.tasks', 'merflow.training', 'merflow.flows'))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
