"""CASME II adapter: the coding sheet (2014 or 2019 version) joined to sub*/EP* clip folders.

Layout: ``CASME2_RAW_selected/sub01/EP02_01f/img46.jpg`` (onset..offset), full clips under
``CASME2-RAW/``, cropped faces under ``Cropped/`` (``reg_img46.jpg``); 640x480 colour, 200 fps.
"""

from __future__ import annotations

import re
from pathlib import Path

from merflow.tasks.datasets.base import (
    Annotation,
    Cells,
    SheetDataset,
    first_row,
    header_frame,
    numbered_id,
    read_excel,
    walk_dirs,
)

KIND = "casme2"
FPS = 200.0
REQUIRED_COLUMNS = ("Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Estimated Emotion")
# Raw selected clips first: merflow detects faces itself, so the dataset's own crops come last.
VARIANT_PREFERENCE = ("casme2_raw_selected", "casme2-raw", "casme2_raw", "cropped")
_SUBJECT_DIR = re.compile(r"^sub\d+$", re.IGNORECASE)


def subject_id(value: object) -> str:
    """CASME II's subject folder name (sub01) for a sheet's Subject cell (1, '1', 'sub01')."""
    return numbered_id(value, "sub", 2)


def read_sheet(path: Path) -> list[Annotation]:
    """The coding sheet's rows as annotations (no clip folders yet).

    Columns are taken by name, so the 2019 sheet's blank columns C and G, and a re-saved copy
    without them, read the same.
    """
    sheet = header_frame(read_excel(path, sheet_name=0))
    has_objective = "Objective Classes" in sheet.columns
    annotations = []
    for index, row in sheet.iterrows():
        cells = Cells(row, f"{path.name} row {index + 1}")
        if cells.blank():
            continue  # trailing blank rows of the workbook
        subject, sample_id = subject_id(cells.text("Subject")), cells.text("Filename")
        apex = cells.frame("ApexFrame")
        # sub04/EP12_01f (sheet row 31): the original apex is '/'. A re-saved
        # 2014 copy that circulates shows 300 there, typed in by a user: treat it as not annotated.
        if (subject, sample_id) == ("sub04", "EP12_01f"):
            apex = None
        annotations.append(Annotation(
            dataset=KIND, subject=subject, sample_id=sample_id, clip_dir=None,
            onset=cells.frame("OnsetFrame"), apex=apex, offset=cells.frame("OffsetFrame"),
            fps=FPS, emotion_raw=cells.text("Estimated Emotion"),
            action_units=cells.text("Action Units"),
            objective_class=cells.text("Objective Classes") if has_objective else None,
            where=cells.where, problems=cells.problems,
        ))
    return annotations


def clip_roots(root: Path) -> list[Path]:
    """Folders holding sub*/EP* clip folders, best variant first."""
    found = [d for d in walk_dirs(root) if any(_SUBJECT_DIR.match(c.name) and c.is_dir() for c in d.iterdir())]

    def rank(folder: Path) -> tuple[int, str]:
        name = folder.name.lower()
        return (VARIANT_PREFERENCE.index(name) if name in VARIANT_PREFERENCE else len(VARIANT_PREFERENCE), str(folder))

    return sorted(found, key=rank)


class Casme2(SheetDataset):
    """CASME II: the coding sheet is the workbook whose first sheet has REQUIRED_COLUMNS; clips under the
    best variant folder (VARIANT_PREFERENCE)."""

    kind = KIND
    sheet_description = f"CASME II coding sheet (columns {', '.join(REQUIRED_COLUMNS)})"

    def is_sheet(self, path: Path, names: list[str]) -> bool:
        """True for a workbook whose first tab has CASME II's required columns (2014 or 2019 sheet)."""
        return set(REQUIRED_COLUMNS) <= set(first_row(path, names[0]))

    def read_sheet(self, path: Path) -> list[Annotation]:
        """The sheet's annotations (module-level ``read_sheet``)."""
        return read_sheet(path)

    def clip_roots(self, root: Path, annotations: list[Annotation]) -> list[Path]:
        """The folders holding sub*/EP* clip folders, CASME2_RAW_selected first and Cropped last."""
        return clip_roots(root)


ADAPTER = Casme2()
detect, read = ADAPTER.detect, ADAPTER.read
