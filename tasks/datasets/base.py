"""The one interface every dataset adapter implements, and the checks shared by all of them.

An adapter module defines ``KIND`` (its catalog ``dataset`` value or values), ``detect(root) -> bool``
and ``read(root) -> AdapterResult``; the sheet-based ones are a :class:`SheetDataset` each, whose
``detect`` and ``read`` they expose. ``read`` turns the dataset's own annotation (a sheet, folder
names, label files) into :class:`Annotation` objects, fixing the dataset's quirks in code, then hands
them to :func:`build_samples`, which finds the frames on disk and sends every row that can't be used
to the quarantine with a reason: nothing is dropped silently.

A sheet is someone's data, and can be hostile or broken: the sheet adapters read it through
:func:`read_excel` (a formula with no saved value is marked, not read as a blank) and each row through
:class:`Cells` (a frame cell that is not a frame number, negative, beyond what the catalog stores, or a
formula without a saved value becomes a problem of the row, named with the sheet row). Then
:func:`build_samples`, for every adapter, quarantines a row whose subject or clip is not exactly one
folder name (an absolute path, ``..``: configs/names.py), whose clip folder or frames resolve outside
the source (a symbolic link), or whose interval reaches past the clip's frames, without ever listing
more frame numbers than the clip holds.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import cv2
import pandas as pd

from merflow.configs.catalog import APEX_OUTSIDE_CLIP, INGESTED
from merflow.configs.names import folder_name_problem
from merflow.tasks.labels import normalise_emotion, protocol_labels

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})
SHEET_SUFFIXES = frozenset({".xlsx", ".xlsm", ".xls"})
MAX_SEARCH_DEPTH = 6
# Files that archivers and desktops add next to the real content; folder walks and
# tasks/ingest.py's content_root pass over them.
JUNK_NAMES = frozenset({"__MACOSX", ".DS_Store", "Thumbs.db"})

_MISSING_MARKS = {"", "/", "\\", "-", "nan", "none", "-1", "n/a", "na"}
# The largest frame number the catalog stores (its frame columns are int32, storage/catalog.py): a larger
# one in a sheet is a broken cell, quarantined, not an allocation or a write error sinking the archive.
MAX_FRAME = 2**31 - 1


@dataclass
class Annotation:
    """One annotated sample as the dataset states it, before its frames are checked."""

    dataset: str
    subject: str
    sample_id: str
    clip_dir: Path | None
    onset: int | None
    apex: int | None
    offset: int | None
    fps: float
    emotion_raw: str | None
    action_units: str | None = None
    objective_class: str | None = None
    is_macro: bool = False
    apex_source: str = "annotated"
    where: str | None = None        # where the annotation came from, e.g. "CASME2-coding.xlsx row 17"
    subject_group: str | None = None  # people shared across datasets (SMIC HS/VIS/NIR) share a group
    problems: list[tuple[str, str]] = field(default_factory=list)  # quirks found while reading
    clip_id: str | None = None      # the clip as the sheet names it, where one clip holds several samples

    @property
    def sample_key(self) -> str:
        """The catalog key ``dataset/subject/sample_id`` (a missing part shown as ``?``)."""
        return f"{self.dataset}/{self.subject if self.subject is not None else '?'}/" \
               f"{self.sample_id if self.sample_id is not None else '?'}"

    @property
    def clip(self) -> str:
        """The clip (folder) this sample is cut from: its own id unless the clip holds several expressions."""
        return self.clip_id or self.sample_id


@dataclass
class AdapterResult:
    """What an adapter's ``read`` returns: catalog sample rows, and quarantine rows with their reasons."""

    samples: list[dict]
    problems: list[dict]


class UncachedFormula(str):
    """A sheet cell holding a formula whose value was never saved (a workbook written by a program, not
    Excel): its text is the formula. ``read_excel`` puts it where pandas reads a blank."""


def parse_frame(value: object) -> int | None:
    """A frame number from a sheet cell: ints, '123', 123.0; None for '/', '\\', blanks and -1 (and for
    anything else it cannot read: ``frame_cell`` says why)."""
    number, _ = frame_cell(value)
    return number


def frame_cell(value: object) -> tuple[int | None, str | None]:
    """(frame number, problem) of a sheet cell: (n, None) for a frame number (ints, '123', 123.0 rounded),
    (None, None) for a cell marking "not annotated" ('/', '\\', '-', -1, blank), and (None, why) for any
    other value: text, a negative number, one beyond ``MAX_FRAME``, a formula with no saved value."""
    if isinstance(value, UncachedFormula):
        return None, f"holds the formula {str(value)!r} with no saved value"
    number = _cell_number(value)
    if number is None or number == -1:
        known = number == -1 or value is None or (isinstance(value, float) and value != value) or \
            str(value).strip().lower() in _MISSING_MARKS
        return None, None if known else f"{value!r} is not a frame number"
    if number < 0:
        return None, f"{value!r} is not a frame number (negative)"
    if number > MAX_FRAME:
        return None, f"{value!r} is beyond the largest frame number stored ({MAX_FRAME})"
    return number, None


def _cell_number(value: object) -> int | None:
    """A cell's number, rounded (NaN, blanks and text that is no number: None)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):  # NaN, infinities
            return None if value != value else (MAX_FRAME + 1 if value > 0 else -2)
        return int(round(value))
    if isinstance(value, int):
        return value
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return _cell_number(number)


def clean_text(value: object) -> str | None:
    """A sheet cell as stripped text ('12.0' read back as '12'); None for blanks, NaN and a formula with no
    saved value (``Cells.text`` says so)."""
    if value is None or (isinstance(value, float) and value != value) or isinstance(value, UncachedFormula):
        return None
    text = str(value).strip()
    if text.endswith(".0") and text[:-2].isdigit():  # AU 12 read as 12.0
        text = text[:-2]
    return text or None


_FRAME_NUMBER = re.compile(r"(\d+)(?!.*\d)")


def frame_number(name: str) -> int | None:
    """The frame number of a frame file: the last run of digits in its stem (img46, 006_05562, image000123)."""
    match = _FRAME_NUMBER.search(Path(name).stem)
    return int(match.group(1)) if match else None


def list_frames(clip_dir: Path, root: Path | None = None) -> dict[int, str]:
    """Frame number -> file name for the image files of a clip folder (stray non-images ignored, and frame
    numbers beyond ``MAX_FRAME``). With ``root`` (resolved), a frame that is a symbolic link is listed only
    where its target lies under ``root``."""
    frames: dict[int, str] = {}
    try:
        entries = list(os.scandir(clip_dir))
    except (FileNotFoundError, NotADirectoryError):
        return frames
    for entry in entries:
        if os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES and entry.is_file():
            if root is not None and entry.is_symlink() and not _inside(Path(entry.path), root):
                continue
            number = frame_number(entry.name)
            if number is not None and number <= MAX_FRAME:
                frames[number] = entry.name
    return frames


def _inside(path: Path, root: Path) -> bool:
    """Whether ``path``, its links followed, lies under ``root`` (resolved)."""
    try:
        return path.resolve().is_relative_to(root)
    except (OSError, RuntimeError):  # a link loop
        return False


def walk_dirs(root: Path, max_depth: int = MAX_SEARCH_DEPTH) -> Iterator[Path]:
    """Every folder under root (root included), breadth first, skipping archiver junk."""
    level = [root]
    for _ in range(max_depth + 1):
        next_level = []
        for folder in level:
            yield folder
            try:
                children = sorted(p for p in folder.iterdir() if p.is_dir() and p.name not in JUNK_NAMES)
            except OSError:
                continue
            next_level.extend(children)
        level = next_level


def find_files(root: Path, suffixes: Iterable[str], max_depth: int = MAX_SEARCH_DEPTH) -> list[Path]:
    """Files under root (at most max_depth folders down) whose suffix is one of suffixes, Office lock files (~$) left out."""
    suffixes = {s.lower() for s in suffixes}
    found = []
    for folder in walk_dirs(root, max_depth):
        for entry in sorted(folder.iterdir()):
            if entry.is_file() and entry.suffix.lower() in suffixes and not entry.name.startswith("~$"):
                found.append(entry)
    return found


def sheet_names(path: Path) -> list[str]:
    """The tab names of a workbook; an empty list when it does not open."""
    try:
        return list(pd.ExcelFile(path).sheet_names)
    except Exception:  # an unreadable workbook is simply not this dataset's sheet
        return []


class CorruptSheetError(ValueError):
    """An annotation sheet that does not open: named as corrupt, not taken for "no known dataset"."""


def corrupt_sheets(root: Path) -> list[tuple[Path, str]]:
    """(path, reason) of every spreadsheet under root that does not open (detection skips them: see
    ``sheet_names``; the ingest names them when no dataset is found). A missing reader library
    (ImportError) is not corruption and is raised."""
    found = []
    for path in find_files(root, SHEET_SUFFIXES):
        try:
            with pd.ExcelFile(path):
                pass
        except ImportError:
            raise
        except Exception as error:  # noqa: BLE001 - zipfile, xlrd and openpyxl each raise their own
            found.append((path, f"{type(error).__name__}: {error}".strip().rstrip(":")))
    return found


def find_sheet(root: Path, accept) -> Path | None:
    """The first spreadsheet under root for which ``accept(path, sheet_names)`` is true."""
    for path in find_files(root, SHEET_SUFFIXES):
        names = sheet_names(path)
        if names and accept(path, names):
            return path
    return None


def read_excel(path: Path, sheet_name: str | int = 0) -> pd.DataFrame:
    """A sheet's cells as pandas reads them (``header=None``, ``dtype=object``: row i of the frame is sheet
    row i + 1), except that a formula whose value was never saved is an ``UncachedFormula`` (its text)
    where pandas reads a blank, so that the row is quarantined as such rather than passed over."""
    frame = pd.read_excel(path, sheet_name=sheet_name, header=None, dtype=object)
    if Path(path).suffix.lower() not in (".xlsx", ".xlsm"):
        return frame  # .xls: xlrd reads the value every formula cell holds
    from openpyxl import load_workbook

    # The formulas as written; the same row iteration as pandas's openpyxl reader (read-only sheet.rows),
    # so positions match the frame's. pandas trims trailing blank rows and columns: a formula there is added.
    book = load_workbook(path, read_only=True, data_only=False, keep_links=False)
    try:
        sheet = book[sheet_name] if isinstance(sheet_name, str) else book.worksheets[sheet_name]
        formulas = [(row_index, column, str(cell.value)) for row_index, row in enumerate(sheet.rows)
                    for column, cell in enumerate(row) if getattr(cell, "data_type", None) == "f"]
    finally:
        book.close()
    for row_index, column, formula in formulas:
        if row_index >= len(frame) or column >= frame.shape[1]:
            frame = frame.reindex(index=range(max(len(frame), row_index + 1)),
                                  columns=range(max(frame.shape[1], column + 1)))
        value = frame.iat[row_index, column]
        if value is None or (isinstance(value, float) and value != value):
            frame.iat[row_index, column] = UncachedFormula(formula)
    return frame


def header_frame(raw: pd.DataFrame, header: int = 0) -> pd.DataFrame:
    """The rows below row ``header`` of a ``read_excel`` frame, named by that row's stripped cells; the
    index stays the frame's (sheet row = index + 1)."""
    sheet = raw.iloc[header + 1:].copy()
    sheet.columns = [str(c).strip() for c in raw.iloc[header].tolist()]
    return sheet


class Cells:
    """One sheet row as an adapter reads it: a cell as text (``text``) or a frame number (``frame``); what
    can't be read is kept in ``problems`` (reason, detail naming the column), for ``Annotation.problems``.
    ``where`` names the row ("CASME2-coding.xlsx row 17")."""

    def __init__(self, row: pd.Series, where: str):
        self.row, self.where = row, where
        self.problems: list[tuple[str, str]] = []

    def get(self, column) -> object:
        """The raw cell (None where the sheet has no such column)."""
        return self.row.get(column)

    def blank(self) -> bool:
        """Whether every cell of the row is empty (a formula with no saved value is not empty)."""
        return all(clean_text(v) is None and not isinstance(v, UncachedFormula) for v in self.row.tolist())

    def text(self, column) -> str | None:
        """The cell as stripped text (``clean_text``); a formula with no saved value is a problem."""
        value = self.get(column)
        if isinstance(value, UncachedFormula):
            self.problems.append(("formula_cell", f"{column} holds the formula {str(value)!r} with no saved value: "
                                                  "open and save the sheet in a spreadsheet program"))
        return clean_text(value)

    def frame(self, column) -> int | None:
        """The cell as a frame number (``frame_cell``); None where not annotated, or where it can't be read
        (then a problem: ``bad_frame``, or ``formula_cell``)."""
        value = self.get(column)
        number, problem = frame_cell(value)
        if problem:
            reason = "formula_cell" if isinstance(value, UncachedFormula) else "bad_frame"
            self.problems.append((reason, f"{column} {problem}"))
        return number


def first_row(path: Path, sheet: str | int = 0, header_row: int = 0) -> list[str]:
    """The non-empty cells of row header_row of a sheet as stripped text; an empty list when it does not open."""
    try:
        frame = pd.read_excel(path, sheet_name=sheet, header=None, nrows=header_row + 1, dtype=object)
    except Exception:
        return []
    if len(frame) <= header_row:
        return []
    return [str(v).strip() for v in frame.iloc[header_row].tolist() if v == v and v is not None]


def numbered_id(value: object, prefix: str, width: int) -> str:
    """A subject id as its folder is named: numbered_id('1', 'sub', 2) == numbered_id('sub01', 'sub', 2) == 'sub01'."""
    text = clean_text(value) or ""
    digits = text.lower().removeprefix(prefix)
    return f"{prefix}{int(digits):0{width}d}" if digits.isdigit() else text


def attach_clip_dirs(annotations: list[Annotation], roots: list[Path]) -> None:
    """Point each annotation at <root>/<subject>/<clip> under the first root that has it; a subject or clip
    that is not one folder name is never made a path (``build_samples`` quarantines it)."""
    for ann in annotations:
        if folder_name_problem(ann.subject) or folder_name_problem(ann.clip):
            continue
        ann.clip_dir = next((r / ann.subject / ann.clip for r in roots
                             if (r / ann.subject / ann.clip).is_dir()), None)


def split_repeated_clips(annotations: list[Annotation]) -> list[Annotation]:
    """One sample per expression where a sheet gives several rows for one clip (CASME: 14 clips of the
    survey's list, e.g. sub1 EP01_12 at onsets 73 and 163).

    Every row of such a clip gets the id ``<clip>@<onset>`` (``EP01_12@73``, ``EP01_12@163``) and keeps
    the clip in ``clip_id``, so its frames are still found; a clip with one row keeps its plain id. The
    ids depend only on the sheet's content, not on row order. Two rows with the same clip and onset
    still share an id and the second is quarantined as ``duplicate_id``.
    """
    counts: dict[tuple[str, str, str], int] = {}
    for ann in annotations:
        key = (ann.dataset, ann.subject, ann.clip)
        counts[key] = counts.get(key, 0) + 1
    for ann in annotations:
        if counts[(ann.dataset, ann.subject, ann.clip)] > 1 and ann.onset is not None and ann.clip is not None:
            ann.clip_id = ann.clip
            ann.sample_id = f"{ann.clip_id}@{ann.onset}"
    return annotations


def roots_with_subjects(root: Path, subjects: set[str]) -> list[Path]:
    """Folders under root that hold at least one of the subject folders."""
    return [d for d in walk_dirs(root) if any((d / s).is_dir() for s in subjects)]


class SheetDataset:
    """A dataset annotated by a spreadsheet (CASME, CASME II, CAS(ME)^2, SAMM): one subclass per corpus.

    ``read`` is the same for all of them: find the sheet (``is_sheet``), read its rows (``read_sheet``,
    where the corpus's errata are fixed, each keyed by sample with its sheet row named), give each
    expression of a clip its own sample (``repeated_clips``), attach the clip folders (``attach_clips``)
    and check the frames (``build_samples``). The adapter module exposes the instance's ``detect`` and
    ``read`` as its interface.
    """

    kind: str
    sheet_description: str           # what is missing when no sheet is found: "CASME coding sheet (columns ...)"
    repeated_clips: bool = False     # rows sharing a clip become samples <clip>@<onset> (split_repeated_clips)

    def is_sheet(self, path: Path, names: list[str]) -> bool:
        """Whether the workbook at ``path``, with these sheet names, is this dataset's annotation."""
        raise NotImplementedError

    def read_sheet(self, path: Path) -> list[Annotation]:
        """The sheet's rows as annotations, clip folders not yet attached."""
        raise NotImplementedError

    def clip_roots(self, root: Path, annotations: list[Annotation]) -> list[Path]:
        """Folders holding <subject>/<clip> folders, best first: by default every folder with a subject's folder."""
        return roots_with_subjects(root, {a.subject for a in annotations})

    def attach_clips(self, root: Path, sheet: Path, annotations: list[Annotation]) -> None:
        """Point each annotation at its clip folder: <root>/<subject>/<clip> under the first clip root holding it."""
        attach_clip_dirs(annotations, self.clip_roots(root, annotations))

    def find_sheet(self, root: Path) -> Path | None:
        """The dataset's sheet under root, or None."""
        return find_sheet(root, self.is_sheet)

    def detect(self, root: Path) -> bool:
        """Whether root holds this dataset (its sheet)."""
        return self.find_sheet(root) is not None

    def read(self, root: Path) -> AdapterResult:
        """The catalog rows and quarantine rows of the dataset under root."""
        sheet = self.find_sheet(root)
        if sheet is None:
            raise FileNotFoundError(f"no {self.sheet_description} under {root}")
        annotations = self.read_sheet(sheet)
        if self.repeated_clips:
            annotations = split_repeated_clips(annotations)
        self.attach_clips(root, sheet, annotations)
        return build_samples(annotations, root=root)


def _readable(path: Path) -> bool:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return image is not None and image.size > 0


def _problem(ann: Annotation, reason: str, detail: str) -> dict:
    return {
        "sample_key": ann.sample_key, "dataset": ann.dataset, "subject": ann.subject,
        "sample_id": ann.sample_id, "reason": reason,
        "detail": f"{detail} ({ann.where})" if ann.where else detail,
    }


def build_samples(annotations: Iterable[Annotation], check_readable: bool = True,
                  root: Path | None = None) -> AdapterResult:
    """Check every annotation against its frames on disk; usable ones become catalog rows.

    Quarantine reasons: ``bad_id`` (a subject, sample or clip id that is not exactly one folder name:
    empty, ``..``, a path), ``bad_frame`` (onset, apex or offset outside 0..``MAX_FRAME``),
    ``outside_source`` (the clip folder resolves outside ``root``, the source's folder: a symbolic link),
    ``missing_clip``, ``missing_frames``, ``unreadable_frame``, ``bad_interval`` (no onset/offset, or onset
    after offset), ``unknown_label``, ``duplicate_id``, plus whatever an adapter found while reading
    (``Annotation.problems``: ``bad_frame`` and ``formula_cell`` from ``Cells``). Every adapter passes its
    ``root``; without one (a test's annotations) nothing is confined. Frames are counted, never listed
    beyond the clip's: an offset of 10**12 costs what the clip's folder holds.

    An apex outside onset..offset (SAMM 028_4_1, 032_3_1) is not a reason: the sample is kept with
    the sheet's apex in ``apex_annotated``, ``apex`` null (the features flow spots it) and
    ``apex_source`` ``outside_clip``; the catalog summary lists it as a warning.
    """
    samples: list[dict] = []
    problems: list[dict] = []
    seen: set[str] = set()
    frame_cache: dict[Path, dict[int, str]] = {}
    root = root.resolve() if root is not None else None
    for ann in annotations:
        if ann.problems:
            problems.extend(_problem(ann, reason, detail) for reason, detail in ann.problems)
            continue
        bad_ids = [f"{what} {value!r} {problem}" for what, value in (("subject", ann.subject), ("sample id", ann.sample_id),
                                                                    ("clip", ann.clip))
                   if (problem := folder_name_problem(value))]
        if bad_ids:
            problems.append(_problem(ann, "bad_id", "; ".join(dict.fromkeys(bad_ids)) + ": it must be one folder name"))
            continue
        bad_frames = [f"{what} {value}" for what, value in (("onset", ann.onset), ("apex", ann.apex),
                                                           ("offset", ann.offset))
                      if value is not None and not 0 <= value <= MAX_FRAME]
        if bad_frames:
            problems.append(_problem(ann, "bad_frame", f"{', '.join(bad_frames)}: not a frame number from 0 to {MAX_FRAME}"))
            continue
        if ann.sample_key in seen:
            problems.append(_problem(ann, "duplicate_id", f"{ann.sample_key} appears more than once"))
            continue
        seen.add(ann.sample_key)
        emotion = normalise_emotion(ann.emotion_raw)
        if emotion is None:
            problems.append(_problem(ann, "unknown_label", f"emotion {ann.emotion_raw!r} is not a known label"))
            continue
        if ann.onset is None or ann.offset is None or ann.onset > ann.offset:
            problems.append(_problem(ann, "bad_interval", f"onset {ann.onset}, offset {ann.offset}"))
            continue
        apex, apex_source = ann.apex, ann.apex_source if ann.apex is not None else "missing"
        if apex is not None and not ann.onset <= apex <= ann.offset:
            apex, apex_source = None, APEX_OUTSIDE_CLIP
        if ann.clip_dir is None or not ann.clip_dir.is_dir():
            problems.append(_problem(ann, "missing_clip", f"no frame folder for {ann.sample_key}"
                                     + (f" at {ann.clip_dir}" if ann.clip_dir else "")))
            continue
        if root is not None and not _inside(ann.clip_dir, root):
            problems.append(_problem(ann, "outside_source", f"the frame folder {ann.clip_dir} lies outside the "
                                     f"source's folder {root} (a link or a path in the sheet)"))
            continue
        if ann.clip_dir not in frame_cache:
            frame_cache[ann.clip_dir] = list_frames(ann.clip_dir, root)
        frames = frame_cache[ann.clip_dir]
        wanted = range(ann.onset, ann.offset + 1)
        present = sum(1 for n in frames if ann.onset <= n <= ann.offset)  # counted over the clip, not the interval
        if present < len(wanted):
            missing = list(islice((n for n in wanted if n not in frames), 9))  # at most the clip's frames + 9 looked at
            shown = ", ".join(map(str, missing[:8])) + (" ..." if len(wanted) - present > 8 else "")
            problems.append(_problem(ann, "missing_frames",
                                     f"{len(wanted) - present} of {len(wanted)} frames missing in {ann.clip_dir}: {shown}"))
            continue
        key_frames = {ann.onset, ann.offset} | ({apex} if apex is not None else set())
        if check_readable:
            broken = [n for n in sorted(key_frames) if not _readable(ann.clip_dir / frames[n])]
            if broken:
                problems.append(_problem(ann, "unreadable_frame",
                                         f"frames {broken} of {ann.clip_dir} cannot be decoded"))
                continue
        samples.append({
            "sample_key": ann.sample_key,
            "dataset": ann.dataset,
            "subject": ann.subject,
            "subject_key": f"{ann.subject_group or ann.dataset}/{ann.subject}",
            "sample_id": ann.sample_id,
            "clip_id": ann.clip,
            "is_macro": ann.is_macro,
            "origin": INGESTED,
            "origin_detail": None,
            "clip_dir": str(ann.clip_dir),
            "frame_files": [frames[n] for n in wanted],
            "n_frames": len(wanted),
            "fps": float(ann.fps),
            "onset": ann.onset,
            "apex": apex,
            "apex_annotated": ann.apex,
            "apex_source": apex_source,
            "offset": ann.offset,
            "action_units": ann.action_units,
            "emotion_raw": ann.emotion_raw,
            "emotion": emotion,
            "objective_class": ann.objective_class,
            **protocol_labels(ann.dataset, ann.subject, ann.sample_id, emotion, ann.is_macro),
        })
    return AdapterResult(samples, problems)
