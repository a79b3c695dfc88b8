"""CASME (I) adapter: the coding sheet joined to CASME_raw_selected/sub*/EP* clip folders.

Layout: ``CASME_raw_selected/sub01/EP01_12/EP01_12-<n>.jpg``, 60 fps. Sheet columns: Subject,
Filename, OnsetF, ApexF1, ApexF2, OffsetF, Onset, Total, AU, Emotion; '\\' marks a missing value.
A clip can hold several expressions, one sheet row each: they become samples ``<clip>@<onset>``.
"""

from __future__ import annotations

from pathlib import Path

from merflow.tasks.datasets.base import (
    Annotation,
    Cells,
    SheetDataset,
    first_row,
    header_frame,
    numbered_id,
    read_excel,
)

KIND = "casme"
FPS = 60.0
REQUIRED_COLUMNS = ("Subject", "Filename", "OnsetF", "ApexF1", "OffsetF", "Emotion")


def subject_id(value: object) -> str:
    """CASME's subject folder name (sub01) for a sheet's Subject cell (1, '1', 'sub01')."""
    return numbered_id(value, "sub", 2)


def read_sheet(path: Path) -> list[Annotation]:
    """The coding sheet's rows as annotations (no clip folders yet); a backslash cell is a missing value."""
    sheet = header_frame(read_excel(path, sheet_name=0))
    annotations = []
    for index, row in sheet.iterrows():
        cells = Cells(row, f"{path.name} row {index + 1}")
        if cells.blank():
            continue
        # ApexF1 is the apex; where it is '\' CASME gives no apex at all (ApexF2, the end of a
        # held apex, is then '\' too), so the apex is left to be spotted.
        annotations.append(Annotation(
            dataset=KIND, subject=subject_id(cells.text("Subject")), sample_id=cells.text("Filename"), clip_dir=None,
            onset=cells.frame("OnsetF"), apex=cells.frame("ApexF1"),
            offset=cells.frame("OffsetF"), fps=FPS, emotion_raw=cells.text("Emotion"),
            action_units=cells.text("AU"), where=cells.where, problems=cells.problems,
        ))
    return annotations


class Casme(SheetDataset):
    """CASME: the workbook whose first sheet has REQUIRED_COLUMNS; clips under any folder holding the subjects."""

    kind = KIND
    sheet_description = f"CASME coding sheet (columns {', '.join(REQUIRED_COLUMNS)})"
    # A clip holding several expressions has one row per expression (sub01 EP01_12 at onsets 73 and
    # 163 in the survey's list): each is a sample, told apart by its onset.
    repeated_clips = True

    def is_sheet(self, path: Path, names: list[str]) -> bool:
        """True for a workbook whose first tab has CASME's required columns."""
        return set(REQUIRED_COLUMNS) <= set(first_row(path, names[0]))

    def read_sheet(self, path: Path) -> list[Annotation]:
        """The sheet's annotations (module-level ``read_sheet``)."""
        return read_sheet(path)


ADAPTER = Casme()
detect, read = ADAPTER.detect, ADAPTER.read
