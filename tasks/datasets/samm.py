"""SAMM adapter: sheet MICRO_ONLY of SAMM_Micro_FACS_Codes_v2.xlsx joined to SAMM/<subject>/<clip> folders.

Layout: ``SAMM/006/006_1_2/006_05562.jpg``; 960x650 greyscale, 200 fps. The sheet opens with 13
rows of notes; the header is on row 14.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from merflow.tasks.datasets.base import (
    Annotation,
    Cells,
    SheetDataset,
    header_frame,
    numbered_id,
    read_excel,
)

KIND = "samm"
FPS = 200.0
SHEET = "MICRO_ONLY"
REQUIRED_COLUMNS = ("Subject", "Filename", "Onset Frame", "Apex Frame", "Offset Frame", "Estimated Emotion")
HEADER_SEARCH_ROWS = 40


def subject_id(value: object) -> str:
    """SAMM's subject folder name (006) for a sheet's Subject cell (6, '6', '006')."""
    return numbered_id(value, "", 3)


def header_row(raw: pd.DataFrame) -> int:
    """The row holding the column names: row 14 in v2 of the sheet, found by content so that a
    re-saved copy with the notes removed reads too."""
    for index in range(min(HEADER_SEARCH_ROWS, len(raw))):
        cells = {str(v).strip() for v in raw.iloc[index].tolist()}
        if {"Subject", "Filename"} <= cells:
            return index
    raise ValueError(f"sheet {SHEET}: no header row with 'Subject' and 'Filename' in the first {HEADER_SEARCH_ROWS} rows")


def read_sheet(path: Path) -> list[Annotation]:
    """The MICRO_ONLY tab's rows as annotations, the header found by content; a ValueError naming missing columns."""
    raw = read_excel(path, sheet_name=SHEET)
    sheet = header_frame(raw, header_row(raw))
    missing = [c for c in REQUIRED_COLUMNS if c not in sheet.columns]
    if missing:
        raise ValueError(f"{path.name} sheet {SHEET}: missing columns {missing}")
    annotations = []
    for index, row in sheet.iterrows():
        cells = Cells(row, f"{path.name} row {index + 1}")
        if cells.blank():
            continue
        # Rows 140 (028_4_1: apex 1143 after offset 1134) and 147 (032_3_1: apex 1930 before onset
        # 4896) of v2 are read as the sheet states them. Both are in the official MEGC2019 list, so
        # build_samples keeps them: the sheet's apex goes to apex_annotated and the apex is spotted
        # (apex_source outside_clip) rather than guessing which number is the typo.
        annotations.append(Annotation(
            dataset=KIND, subject=subject_id(cells.text("Subject")), sample_id=cells.text("Filename"), clip_dir=None,
            onset=cells.frame("Onset Frame"), apex=cells.frame("Apex Frame"),
            offset=cells.frame("Offset Frame"), fps=FPS,
            emotion_raw=cells.text("Estimated Emotion"),
            action_units=cells.text("Action Units"),
            objective_class=cells.text("Objective Classes"),
            where=cells.where, problems=cells.problems,
        ))
    return annotations


class Samm(SheetDataset):
    """SAMM: the workbook with a MICRO_ONLY tab; clips under any folder holding the subjects' folders."""

    kind = KIND
    sheet_description = f"SAMM sheet with a {SHEET} tab"

    def is_sheet(self, path: Path, names: list[str]) -> bool:
        """True for a workbook with SAMM's MICRO_ONLY tab."""
        return SHEET in names

    def read_sheet(self, path: Path) -> list[Annotation]:
        """The sheet's annotations (module-level ``read_sheet``)."""
        return read_sheet(path)


ADAPTER = Samm()
detect, read = ADAPTER.detect, ADAPTER.read
