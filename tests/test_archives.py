"""Tests for merflow.storage.archives, on real archives built in tmp_path."""

from __future__ import annotations

import io
import os
import random
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path

import py7zr
import pytest

from merflow.configs.ingest import ExtractionLimits
from merflow.storage.archives import ArchiveError, UnsafeArchiveError, archive_kind, safe_extract

SAMPLE_FILES = {
    "README.txt": b"CASME-like sample dataset\n",
    "sub01/EP02_01f/img46.jpg": bytes(range(256)) * 40,
    "sub01/EP02_01f/img47.jpg": random.Random(0).randbytes(5000),
    "sub02/EP03_02/empty.jpg": b"",
    "coding/CASME2-coding.csv": b"Subject,Filename,Onset,Apex,Offset\n01,EP02_01f,46,59,86\n" * 50,
}
EMPTY_DIRS = ("sub03/",)
MiB = 1 << 20


class Zeros(io.RawIOBase):
    """A stream of `size` zero bytes, so bombs are built without holding them in memory."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = min(len(buffer), self.left)
        buffer[:count] = bytes(count)
        self.left -= count
        return count


def write_tree(root: Path, files: dict[str, bytes], empty_dirs=()) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    for name in empty_dirs:
        (root / name).mkdir(parents=True, exist_ok=True)
    return root


def read_tree(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes() for path in root.rglob("*") if path.is_file()
    }


def snapshot(root: Path) -> set[str]:
    return {path.relative_to(root).as_posix() for path in root.rglob("*")}


def build_archive(source: Path, archive: Path, suffix: str) -> Path:
    paths = sorted(source.rglob("*"))
    if suffix == "zip":
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zip_file:
            for path in paths:
                zip_file.write(path, path.relative_to(source).as_posix())
    elif suffix == "7z":
        with py7zr.SevenZipFile(archive, "w") as seven_zip:
            for path in paths:
                seven_zip.write(path, path.relative_to(source).as_posix())
    else:
        compression = suffix.removeprefix("tar").lstrip(".")
        with tarfile.open(archive, f"w:{compression}") as tar_file:
            for path in paths:
                tar_file.add(path, path.relative_to(source).as_posix(), recursive=False)
    return archive


def zip_with(archive: Path, entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zip_file:
        for info, data in entries:
            zip_file.writestr(info, data)
    return archive


def tar_with(archive: Path, members: list[tarfile.TarInfo], mode: str = "w") -> Path:
    with tarfile.open(archive, mode) as tar_file:
        for member in members:
            tar_file.addfile(member, io.BytesIO(bytes(member.size)) if member.isreg() else None)
    return archive


def tar_member(
    name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, linkname: str = ""
) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type = kind
    member.size = size
    member.linkname = linkname
    return member


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """tmp_path with an `archives` folder, an empty `out` folder to extract into and an `outside` folder."""
    for name in ("archives", "out", "outside"):
        (tmp_path / name).mkdir()
    return tmp_path


def assert_refused(
    workspace: Path, archive: Path, entry: str, because: str, limits: ExtractionLimits = ExtractionLimits()
) -> None:
    """Refused, naming `entry` and `because`, before writing starts (when progress is first reported)."""
    before = snapshot(workspace)
    progress_calls: list[tuple[int, int]] = []
    with pytest.raises(UnsafeArchiveError) as refusal:
        safe_extract(archive, workspace / "out" / "target", limits, lambda *call: progress_calls.append(call))
    assert refusal.value.entry == entry
    assert repr(entry) in str(refusal.value) and str(archive) in str(refusal.value)
    assert because in refusal.value.reason
    assert progress_calls == []
    assert snapshot(workspace) == before, "something was written or left behind"


@pytest.mark.parametrize("suffix", ["zip", "tar", "tar.gz", "tar.bz2", "tar.xz", "7z"])
def test_round_trip_is_byte_identical(workspace: Path, suffix: str) -> None:
    source = write_tree(workspace / "source", SAMPLE_FILES, EMPTY_DIRS)
    archive = build_archive(source, workspace / "archives" / f"sample.{suffix}", suffix)
    target = workspace / "out" / "target"

    assert safe_extract(archive, target) == target
    assert read_tree(target) == SAMPLE_FILES
    assert (target / "sub03").is_dir()
    assert sorted(os.listdir(workspace / "out")) == ["target"]
    assert archive_kind(archive) == suffix.split(".")[0]


def test_archive_kind_reads_content_not_extension(workspace: Path) -> None:
    archive = zip_with(workspace / "archives" / "download.bin", [("a.txt", b"a")])
    rar = workspace / "archives" / "CASME2.zip"
    rar.write_bytes(b"Rar!\x1a\x07\x01\x00" + bytes(100))
    text = workspace / "archives" / "notes.tar"
    text.write_text("not an archive\n")

    assert archive_kind(archive) == "zip"
    assert archive_kind(rar) == "rar"
    assert archive_kind(text) is None


def test_rar_and_unknown_files_are_refused_with_advice(workspace: Path) -> None:
    rar = workspace / "archives" / "SAMM.rar"
    rar.write_bytes(b"Rar!\x1a\x07\x00" + bytes(100))
    text = workspace / "archives" / "notes.zip"
    text.write_text("not an archive\n")
    before = snapshot(workspace)

    with pytest.raises(ArchiveError, match="RAR.*folder"):
        safe_extract(rar, workspace / "out" / "target")
    with pytest.raises(ArchiveError, match="not a zip, tar or 7z"):
        safe_extract(text, workspace / "out" / "target")
    assert snapshot(workspace) == before


def test_tar_of_dot_and_windows_zip_separators_extract_inside(workspace: Path) -> None:
    source = write_tree(workspace / "source", SAMPLE_FILES)
    tar_archive = workspace / "archives" / "dot.tar.gz"
    with tarfile.open(tar_archive, "w:gz") as tar_file:
        tar_file.add(source, arcname=".")
    windows_zip = zip_with(workspace / "archives" / "windows.zip", [("sub01\\img.jpg", b"jpeg")])

    assert read_tree(safe_extract(tar_archive, workspace / "out" / "dot")) == SAMPLE_FILES
    assert read_tree(safe_extract(windows_zip, workspace / "out" / "windows")) == {"sub01/img.jpg": b"jpeg"}


HOSTILE_NAMES = [
    ("../evil.txt", "'..'"),
    ("sub01/../../evil.txt", "'..'"),
    ("{outside}/evil.txt", "absolute"),
    ("C:/evil.txt", "absolute"),
    ("\\evil.txt", "absolute"),
    ("..\\evil.txt", "'..'"),
]


@pytest.mark.parametrize(("name_template", "because"), HOSTILE_NAMES)
def test_zip_entries_escaping_the_target_are_refused(
    workspace: Path, name_template: str, because: str
) -> None:
    name = name_template.format(outside=workspace / "outside")
    entries = [("ok.txt", b"fine"), (zipfile.ZipInfo(name), b"evil")]
    archive = zip_with(workspace / "archives" / "slip.zip", entries)
    assert_refused(workspace, archive, name, because)


@pytest.mark.parametrize(("name_template", "because"), HOSTILE_NAMES)
def test_tar_entries_escaping_the_target_are_refused(
    workspace: Path, name_template: str, because: str
) -> None:
    name = name_template.format(outside=workspace / "outside")
    members = [tar_member("ok.txt", size=4), tar_member(name, size=4)]
    archive = tar_with(workspace / "archives" / "slip.tar", members)
    assert_refused(workspace, archive, name, because)


@pytest.mark.parametrize("link_target", ["/etc", "../..", "{outside}"])
def test_tar_symlink_out_of_the_target_is_refused_before_files_through_it(
    workspace: Path, link_target: str
) -> None:
    members = [
        tar_member("link", tarfile.SYMTYPE, linkname=link_target.format(outside=workspace / "outside")),
        tar_member("link/x", size=4),
    ]
    archive = tar_with(workspace / "archives" / "symlink.tar.gz", members, "w:gz")
    assert_refused(workspace, archive, "link", "symbolic link")


def test_tar_hardlink_to_outside_is_refused(workspace: Path) -> None:
    (workspace / "outside" / "secret.txt").write_text("secret")
    members = [
        tar_member("ok.txt", size=4),
        tar_member("hard", tarfile.LNKTYPE, linkname="../outside/secret.txt"),
    ]
    archive = tar_with(workspace / "archives" / "hardlink.tar", members)
    assert_refused(workspace, archive, "hard", "hard link")


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE])
def test_tar_device_and_fifo_entries_are_refused(workspace: Path, kind: bytes) -> None:
    device = tar_member("dev/sda", kind)
    device.devmajor, device.devminor = 8, 0
    archive = tar_with(workspace / "archives" / "device.tar", [device])
    assert_refused(workspace, archive, "dev/sda", "device or FIFO")


def test_zip_symlink_entry_is_refused(workspace: Path) -> None:
    link = zipfile.ZipInfo("link")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive = zip_with(workspace / "archives" / "symlink.zip", [("ok.txt", b"fine"), (link, b"/etc/passwd")])
    assert_refused(workspace, archive, "link", "symbolic link")


def test_7z_symlink_entry_is_refused(workspace: Path) -> None:
    source = write_tree(workspace / "source", {"ok.txt": b"fine"})
    (source / "link").symlink_to("/etc")
    archive = workspace / "archives" / "symlink.7z"
    with py7zr.SevenZipFile(archive, "w") as seven_zip:
        seven_zip.write(source / "ok.txt", "ok.txt")
        seven_zip.write(source / "link", "link")
    assert_refused(workspace, archive, "link", "symbolic link")


def test_zip_bomb_is_refused_with_default_limits(workspace: Path) -> None:
    bomb = zipfile.ZipInfo("zeros.bin")
    bomb.compress_type = zipfile.ZIP_DEFLATED
    archive = workspace / "archives" / "bomb.zip"
    with zipfile.ZipFile(archive, "w") as zip_file, zip_file.open(bomb, "w") as member:
        shutil.copyfileobj(Zeros(64 * MiB), member, MiB)
    assert_refused(workspace, archive, "zeros.bin", "decompression bomb")


def test_tar_gz_bomb_is_refused_with_default_limits(workspace: Path) -> None:
    archive = workspace / "archives" / "bomb.tar.gz"
    with tarfile.open(archive, "w:gz") as tar_file:
        bomb = tar_member("zeros.bin", size=64 * MiB)
        tar_file.addfile(bomb, Zeros(bomb.size))
    assert_refused(workspace, archive, "zeros.bin", "decompression bomb")


def test_small_archive_of_compressible_text_is_below_the_ratio_floor(workspace: Path) -> None:
    text = b"Subject,Filename,Onset,Apex,Offset,Emotion\n" * 100_000
    archive = zip_with(workspace / "archives" / "coding.zip", [("coding.csv", text)])
    assert len(text) / archive.stat().st_size > ExtractionLimits().max_ratio

    assert read_tree(safe_extract(archive, workspace / "out" / "target")) == {"coding.csv": text}


def test_entry_count_and_total_size_limits_name_the_entry_that_crosses_them(workspace: Path) -> None:
    entries = [(f"f{index}.txt", b"12345") for index in range(5)]
    archive = zip_with(workspace / "archives" / "many.zip", entries)
    assert_refused(workspace, archive, "f3.txt", "limit of 3 entries", ExtractionLimits(max_entries=3))
    assert_refused(workspace, archive, "f2.txt", "over the limit of 12", ExtractionLimits(max_total_bytes=12))


def test_zip_whose_central_directory_understates_a_member_size_is_refused(workspace: Path) -> None:
    entries = [("ok.txt", b"fine"), ("big.bin", bytes(100_000))]
    archive = zip_with(workspace / "archives" / "liar.zip", entries)
    data = bytearray(archive.read_bytes())
    liar_record = data.rindex(b"PK\x01\x02")
    data[liar_record + 24 : liar_record + 28] = (10).to_bytes(4, "little")
    archive.write_bytes(data)
    before = snapshot(workspace)

    with pytest.raises(ArchiveError, match="big.bin"):
        safe_extract(archive, workspace / "out" / "target")
    assert snapshot(workspace) == before


def damage_by_truncating(archive: Path) -> None:
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])


def damage_by_flipping_a_data_byte(archive: Path) -> None:
    data = bytearray(archive.read_bytes())
    data[len(data) // 3] ^= 0xFF
    archive.write_bytes(data)


@pytest.mark.parametrize(
    ("suffix", "damage"),
    [
        ("zip", damage_by_truncating),
        ("tar.gz", damage_by_truncating),
        ("7z", damage_by_truncating),
        ("zip", damage_by_flipping_a_data_byte),
        ("tar.xz", damage_by_flipping_a_data_byte),
        ("7z", damage_by_flipping_a_data_byte),
    ],
)
def test_damaged_archives_raise_archive_error_and_leave_nothing(workspace: Path, suffix: str, damage) -> None:
    incompressible = {f"sub01/img{index}.jpg": random.Random(index).randbytes(20_000) for index in range(4)}
    source = write_tree(workspace / "source", incompressible)
    archive = build_archive(source, workspace / "archives" / f"damaged.{suffix}", suffix)
    damage(archive)
    before = snapshot(workspace)

    with pytest.raises(ArchiveError, match="corrupt"):
        safe_extract(archive, workspace / "out" / "target")
    assert snapshot(workspace) == before


def test_encrypted_zip_is_reported_as_unsupported(workspace: Path) -> None:
    archive = zip_with(workspace / "archives" / "locked.zip", [("sub01/img46.jpg", b"ciphertext")])
    data = bytearray(archive.read_bytes())
    data[data.rindex(b"PK\x01\x02") + 8] |= 0x1  # zipfile never writes the "encrypted" flag, so set it
    archive.write_bytes(data)
    before = snapshot(workspace)

    with pytest.raises(ArchiveError, match="encrypted"):
        safe_extract(archive, workspace / "out" / "target")
    assert snapshot(workspace) == before


def test_existing_target_is_not_touched(workspace: Path) -> None:
    archive = zip_with(workspace / "archives" / "a.zip", [("a.txt", b"new")])
    target = write_tree(workspace / "out" / "target", {"a.txt": b"old"})

    with pytest.raises(FileExistsError):
        safe_extract(archive, target)
    assert read_tree(target) == {"a.txt": b"old"}
    assert os.listdir(workspace / "out") == ["target"]


@pytest.mark.parametrize("suffix", ["tar", "7z"])
def test_progress_reports_from_zero_to_the_total(workspace: Path, suffix: str) -> None:
    files = {"a.bin": bytes(5 * MiB), "b.bin": bytes(3 * MiB)}
    source = write_tree(workspace / "source", files)
    archive = build_archive(source, workspace / "archives" / f"p.{suffix}", suffix)
    calls: list[tuple[int, int]] = []

    safe_extract(archive, workspace / "out" / "target", progress=lambda *call: calls.append(call))

    total = 8 * MiB
    assert calls[0] == (0, total) and calls[-1] == (total, total)
    assert any(0 < done < total for done, _ in calls)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


def test_interrupt_midway_removes_the_partial_extraction(workspace: Path) -> None:
    files = {"a.bin": bytes(5 * MiB), "b.bin": bytes(3 * MiB)}
    archive = build_archive(write_tree(workspace / "source", files), workspace / "archives" / "p.zip", "zip")
    before = snapshot(workspace)

    def interrupt_once_started(done: int, total: int) -> None:
        if done > 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        safe_extract(archive, workspace / "out" / "target", progress=interrupt_once_started)
    assert snapshot(workspace) == before

