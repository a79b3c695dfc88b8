"""Archive formats (zip, tar and its compressions, 7z; RAR recognised and refused): telling them
apart by content, and unpacking one safely into a folder that must not exist yet.

Dataset archives come from many hands, so every archive is treated as hostile: its whole listing is
validated before a single byte is written, the bytes actually written are counted against the
declared sizes, and extraction lands in a temporary sibling directory that is renamed into place
only once everything succeeded (whole or absent).

All of it is storage's, the read-only parts too: the listing checks and the writes are one pass (the
validated entries are what gets written; py7zr's writers refuse any name the listing did not
validate), and ``archive_kind`` is what picks the reader. storage/sources.py calls ``safe_extract``
to unpack a source into its ``raw/<sha>/``; nothing in tasks/ opens an archive.
"""

from __future__ import annotations

import errno
import io
import lzma
import os
import re
import secrets
import shutil
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

import py7zr
from py7zr.io import Py7zIO, WriterFactory

from merflow.configs.ingest import ExtractionLimits

ArchiveKind = Literal["zip", "tar", "7z", "rar"]
Progress = Callable[[int, int], None]

_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_SEVEN_ZIP_MAGIC = b"7z\xbc\xaf\x27\x1c"
_RAR_MAGIC = b"Rar!\x1a\x07"
_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")
_PATH_SEPARATORS = re.compile(r"[\\/]")
_COPY_CHUNK_BYTES = 1 << 20
_PROGRESS_STEP_BYTES = 4 << 20
# Only ever caught around reads from an archive, never around writes, so a full disk stays an OSError.
_READ_ERRORS = (
    zipfile.BadZipFile,
    tarfile.TarError,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    OSError,  # gzip and bz2 report damaged streams as OSError
)
# py7zr reads and writes inside one call, so OSError is left out here for the reason above.
_SEVEN_ZIP_ERRORS = (
    py7zr.exceptions.ArchiveError,
    py7zr.exceptions.PasswordRequired,
    EOFError,
    zlib.error,
    lzma.LZMAError,
)


class ArchiveError(ValueError):
    """The archive is corrupt, truncated, encrypted or of an unsupported kind."""


class UnsafeArchiveError(ArchiveError):
    """An entry would escape the target, is a link or device, or the archive exceeds the limits."""

    def __init__(self, archive: Path, entry: str, reason: str) -> None:
        super().__init__(f"refusing to extract {archive}: entry {entry!r} {reason}")
        self.archive = archive
        self.entry = entry
        self.reason = reason


def archive_kind(path: str | os.PathLike[str]) -> ArchiveKind | None:
    """Recognise an archive by its content, since downloaded files are often misnamed.

    Compressed tars of any compression count as 'tar'. A gzip, bzip2 or xz stream too damaged to
    tell whether it holds a tar raises ArchiveError.
    """
    path = Path(path)
    with open(path, "rb") as file:
        head = file.read(8)
    if head.startswith(_ZIP_MAGICS):
        return "zip"
    if head.startswith(_SEVEN_ZIP_MAGIC):
        return "7z"
    if head.startswith(_RAR_MAGIC):
        return "rar"
    # is_tarfile only swallows TarError; a damaged gzip/bz2/xz stream raises from the decompressor.
    with _read_errors_as_archive_error(path):
        is_tar = tarfile.is_tarfile(path)
    return "tar" if is_tar else None


def safe_extract(
    archive: str | os.PathLike[str],
    target_dir: str | os.PathLike[str],
    limits: ExtractionLimits = ExtractionLimits(),
    progress: Progress | None = None,
) -> Path:
    """Extract a zip, tar (plain, gz, bz2, xz) or 7z archive into `target_dir`, which must not exist.

    The whole listing is checked first, and any entry that is absolute, climbs out with '..',
    is a symbolic or hard link (all links are refused, even ones pointing inside: a link
    extracted early can redirect a later entry outside the target), or is a device, FIFO or
    socket raises UnsafeArchiveError before anything is written; so do more than
    `limits.max_entries` entries, a declared total over `limits.max_total_bytes`, or a declared
    total over `limits.ratio_floor_bytes` that is more than `limits.max_ratio` times the archive.
    While writing, a member that yields more than its declared size, or a running total over the
    limit, aborts too. Only file contents and directories are recreated: permissions, owners and
    times are not. Compressed tars are decompressed twice (once to list, once to extract).

    Everything is written into `.partial-<name>-<random>` beside `target_dir` and renamed to
    `target_dir` at the end; on any error or interrupt that directory is removed and the error
    re-raised. Corrupt or truncated archives raise ArchiveError, RAR archives too (there is no
    maintained pure-Python RAR reader). `progress(done_bytes, total_bytes)` is called at the
    start, every few MiB written and at the end.
    """
    archive = Path(archive)
    target_dir = Path(target_dir)
    if target_dir.exists():
        raise FileExistsError(f"{target_dir} already exists; not extracting {archive} into it")
    kind = archive_kind(archive)
    if kind == "rar":
        raise ArchiveError(
            f"{archive} is a RAR archive and there is no maintained pure-Python RAR reader; "
            "extract it with unrar or 7-Zip and pass the extracted folder instead"
        )
    if kind is None:
        raise ArchiveError(f"{archive} is not a zip, tar or 7z archive")

    target_dir.parent.mkdir(parents=True, exist_ok=True)
    partial = target_dir.parent / f".partial-{target_dir.name}-{secrets.token_hex(8)}"
    partial.mkdir()
    try:
        _EXTRACTORS[kind](archive, partial, limits, progress)
        _publish(partial, target_dir)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return target_dir


@dataclass(frozen=True)
class _Entry:
    name: str
    parts: tuple[str, ...]
    is_dir: bool
    size: int
    member: Any  # the format's own handle (ZipInfo, TarInfo), used to open the entry for reading


class _Inventory:
    """An archive's listing, validated entry by entry so the first offending entry is the one named."""

    def __init__(self, archive: Path, limits: ExtractionLimits) -> None:
        self.archive = archive
        self.limits = limits
        self.archive_bytes = max(archive.stat().st_size, 1)
        self.entries: list[_Entry] = []
        self.total_bytes = 0

    def add(self, name: str, *, is_dir: bool, size: int, member: Any = None) -> None:
        parts = _relative_parts(self.archive, name, is_dir)
        if len(self.entries) >= self.limits.max_entries:
            raise UnsafeArchiveError(
                self.archive, name, f"goes over the limit of {self.limits.max_entries} entries"
            )
        self.total_bytes += size
        if self.total_bytes > self.limits.max_total_bytes:
            raise UnsafeArchiveError(
                self.archive,
                name,
                f"brings the declared uncompressed total to {self.total_bytes} bytes, "
                f"over the limit of {self.limits.max_total_bytes}",
            )
        ratio = self.total_bytes / self.archive_bytes
        if self.total_bytes > self.limits.ratio_floor_bytes and ratio > self.limits.max_ratio:
            raise UnsafeArchiveError(
                self.archive,
                name,
                f"brings the uncompressed total to {self.total_bytes} bytes, {ratio:.0f} times the "
                f"{self.archive_bytes}-byte archive (limit {self.limits.max_ratio:g}); "
                "this looks like a decompression bomb",
            )
        self.entries.append(_Entry(name, parts, is_dir, size, member))


class _WriteBudget:
    """Counts the bytes actually written, because declared sizes in headers can lie."""

    def __init__(self, inventory: _Inventory, progress: Progress | None) -> None:
        self.archive = inventory.archive
        self.max_total_bytes = inventory.limits.max_total_bytes
        self.total_bytes = inventory.total_bytes
        self.progress = progress
        self.done_bytes = 0
        self.reported_bytes = 0
        self._report()

    def spend(self, entry: _Entry, member_bytes: int, chunk_bytes: int) -> None:
        """Account for a chunk before it is written; `member_bytes` includes it."""
        if member_bytes > entry.size:
            raise UnsafeArchiveError(
                self.archive, entry.name, f"holds more data than its declared {entry.size} bytes"
            )
        self.done_bytes += chunk_bytes
        if self.done_bytes > self.max_total_bytes:
            raise UnsafeArchiveError(
                self.archive,
                entry.name,
                f"takes the bytes written past the limit of {self.max_total_bytes}",
            )
        if self.done_bytes - self.reported_bytes >= _PROGRESS_STEP_BYTES:
            self._report()

    def finish(self) -> None:
        self._report()

    def _report(self) -> None:
        self.reported_bytes = self.done_bytes
        if self.progress is not None:
            self.progress(self.done_bytes, self.total_bytes)


def _relative_parts(archive: Path, name: str, is_dir: bool) -> tuple[str, ...]:
    # Backslashes count as separators: Windows-made archives use them, and so do attacks on Windows.
    if name.startswith(("/", "\\")) or _DRIVE_LETTER.match(name):
        raise UnsafeArchiveError(archive, name, "has an absolute path")
    parts = tuple(part for part in _PATH_SEPARATORS.split(name) if part not in ("", "."))
    if ".." in parts:
        raise UnsafeArchiveError(archive, name, "has a '..' component that climbs out of the target")
    if not parts and not is_dir:
        raise UnsafeArchiveError(archive, name, "is a file without a name")
    return parts


def _destination(archive: Path, root: Path, entry: _Entry) -> Path:
    destination = root.joinpath(*entry.parts)
    resolved = destination.resolve()
    if not resolved.is_relative_to(root):
        raise UnsafeArchiveError(archive, entry.name, f"resolves to {resolved}, outside the target")
    return destination


@contextmanager
def _read_errors_as_archive_error(archive: Path, entry: str | None = None) -> Iterator[None]:
    try:
        yield
    except _READ_ERRORS as error:
        where = f" in entry {entry!r}" if entry is not None else ""
        raise ArchiveError(f"{archive} is corrupt or truncated{where}: {error}") from error


def _publish(partial: Path, target_dir: Path) -> None:
    try:
        os.rename(partial, target_dir)
    except OSError as error:
        # Another extraction of the same archive may have finished first.
        if error.errno in (errno.EEXIST, errno.ENOTEMPTY):
            raise FileExistsError(f"{target_dir} appeared while extracting into it") from error
        raise


def _write_entries(
    inventory: _Inventory,
    root: Path,
    open_member: Callable[[Any], BinaryIO],
    progress: Progress | None,
) -> None:
    archive = inventory.archive
    root = root.resolve()
    budget = _WriteBudget(inventory, progress)
    for entry in inventory.entries:
        destination = _destination(archive, root, entry)
        if entry.is_dir:
            destination.mkdir(parents=True, exist_ok=True)
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        with _read_errors_as_archive_error(archive, entry.name):
            source = open_member(entry.member)
        with source, open(destination, "wb") as output:
            _copy_member(archive, entry, source, output, budget)
    budget.finish()


def _copy_member(
    archive: Path, entry: _Entry, source: BinaryIO, output: BinaryIO, budget: _WriteBudget
) -> None:
    member_bytes = 0
    while True:
        with _read_errors_as_archive_error(archive, entry.name):
            chunk = source.read(_COPY_CHUNK_BYTES)
        if not chunk:
            return
        member_bytes += len(chunk)
        budget.spend(entry, member_bytes, len(chunk))
        output.write(chunk)


def _zip_member_is_dir(archive: Path, info: zipfile.ZipInfo) -> bool:
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise UnsafeArchiveError(archive, info.filename, "is a symbolic link, and links are never extracted")
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise UnsafeArchiveError(archive, info.filename, "is a device, FIFO or socket")
    if info.flag_bits & 0x1:
        raise ArchiveError(f"{archive}: entry {info.filename!r} is encrypted, which is not supported")
    return info.filename.endswith(("/", "\\")) or stat.S_ISDIR(mode)


def _extract_zip(archive: Path, root: Path, limits: ExtractionLimits, progress: Progress | None) -> None:
    with _read_errors_as_archive_error(archive):
        zip_file = zipfile.ZipFile(archive)
    with zip_file:
        inventory = _Inventory(archive, limits)
        for info in zip_file.infolist():
            is_dir = _zip_member_is_dir(archive, info)
            inventory.add(info.filename, is_dir=is_dir, size=0 if is_dir else info.file_size, member=info)
        _write_entries(inventory, root, zip_file.open, progress)


def _tar_member_is_dir(archive: Path, member: tarfile.TarInfo) -> bool:
    if member.issym() or member.islnk():
        kind = "symbolic" if member.issym() else "hard"
        raise UnsafeArchiveError(
            archive, member.name, f"is a {kind} link to {member.linkname!r}, and links are never extracted"
        )
    if member.ischr() or member.isblk() or member.isfifo():
        raise UnsafeArchiveError(archive, member.name, "is a device or FIFO")
    if not (member.isreg() or member.isdir()):
        raise UnsafeArchiveError(archive, member.name, f"has the unsupported tar type {member.type!r}")
    return member.isdir()


def _extract_tar(archive: Path, root: Path, limits: ExtractionLimits, progress: Progress | None) -> None:
    with _read_errors_as_archive_error(archive):
        tar_file = tarfile.open(archive)
    with tar_file:
        inventory = _Inventory(archive, limits)
        # Iterating (rather than getmembers) stops reading a tar with too many entries at the limit.
        with _read_errors_as_archive_error(archive):
            for member in tar_file:
                is_dir = _tar_member_is_dir(archive, member)
                inventory.add(member.name, is_dir=is_dir, size=0 if is_dir else member.size, member=member)
        _write_entries(inventory, root, tar_file.extractfile, progress)


class _SevenZipMemberWriter(Py7zIO):
    """Where py7zr writes one member's decompressed bytes: a file in the target, under the budget."""

    def __init__(self, entry: _Entry, destination: Path, budget: _WriteBudget) -> None:
        destination.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(destination, "wb")
        self._entry = entry
        self._budget = budget
        self._written = 0

    def write(self, s: bytes | bytearray) -> int:
        self._written += len(s)
        self._budget.spend(self._entry, self._written, len(s))
        return self._file.write(s)

    def read(self, size: int | None = None) -> bytes:
        raise io.UnsupportedOperation("extracted 7z members are not read back")

    def seek(self, offset: int, whence: int = 0) -> int:
        raise io.UnsupportedOperation("extracted 7z members are not read back")

    def seekable(self) -> bool:
        return False

    def flush(self) -> None:
        self._file.flush()

    def size(self) -> int:
        return self._written

    def close(self) -> None:
        self._file.close()


class _SevenZipWriters(WriterFactory):
    """Hands py7zr a writer per member, refusing any name that was not in the validated listing."""

    def __init__(self, inventory: _Inventory, root: Path, budget: _WriteBudget) -> None:
        self._inventory = inventory
        self._entries = {entry.parts: entry for entry in inventory.entries}
        self._root = root
        self._budget = budget
        self.writers: list[_SevenZipMemberWriter] = []

    def create(self, filename: str) -> Py7zIO:
        parts = Path(filename).relative_to(self._root).parts
        entry = self._entries.get(parts)
        if entry is None:
            # py7zr renames duplicate members and keeps backslashes, so its name can differ from ours.
            raise ArchiveError(
                f"{self._inventory.archive}: py7zr wants to write {filename!r}, "
                "which is not a validated entry of the listing"
            )
        writer = _SevenZipMemberWriter(
            entry, _destination(self._inventory.archive, self._root, entry), self._budget
        )
        self.writers.append(writer)
        return writer


def _seven_zip_member_is_dir(archive: Path, info: py7zr.FileInfo) -> bool:
    if info.is_symlink:
        raise UnsafeArchiveError(archive, info.filename, "is a symbolic link, and links are never extracted")
    if not (info.is_file or info.is_directory):
        raise UnsafeArchiveError(archive, info.filename, "is a device, socket or junction")
    return info.is_directory


def _extract_seven_zip(
    archive: Path, root: Path, limits: ExtractionLimits, progress: Progress | None
) -> None:
    root = root.resolve()
    # An open file rather than a path keeps py7zr single-threaded, so progress runs on our thread.
    with open(archive, "rb") as archive_file:
        with _seven_zip_errors_as_archive_error(archive):
            seven_zip = py7zr.SevenZipFile(archive_file)
        with seven_zip:
            inventory = _Inventory(archive, limits)
            for info in seven_zip.list():
                is_dir = _seven_zip_member_is_dir(archive, info)
                inventory.add(info.filename, is_dir=is_dir, size=0 if is_dir else info.uncompressed)
            budget = _WriteBudget(inventory, progress)
            # py7zr hands directories to no writer, so they are created from the listing.
            for entry in inventory.entries:
                if entry.is_dir:
                    _destination(archive, root, entry).mkdir(parents=True, exist_ok=True)
            writers = _SevenZipWriters(inventory, root, budget)
            try:
                with _seven_zip_errors_as_archive_error(archive):
                    seven_zip.extractall(path=root, factory=writers)
            finally:
                # py7zr leaves a member's writer open when decompressing it fails.
                for writer in writers.writers:
                    writer.close()
            budget.finish()


@contextmanager
def _seven_zip_errors_as_archive_error(archive: Path) -> Iterator[None]:
    try:
        yield
    except _SEVEN_ZIP_ERRORS as error:
        raise ArchiveError(f"{archive} is corrupt, truncated or encrypted: {error!r}") from error


_EXTRACTORS: dict[str, Callable[[Path, Path, ExtractionLimits, Progress | None], None]] = {
    "zip": _extract_zip,
    "tar": _extract_tar,
    "7z": _extract_seven_zip,
}
