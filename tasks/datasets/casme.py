"""CASME (I) adapter: the coding sheet joined to CASME_raw_selected/sub*/EP* clip folders.

Layout: ``CASME_raw_selected/sub01/EP01_12/EP01_12-<n>.jpg``, 60 fps. Sheet columns: Subject,
Filename, OnsetF, ApexF1, ApexF2, OffsetF, Onset, Total, AU, Emotion; '\\' marks a missing value.
A clip can hold several expressions, one sheet row each: they become samples ``<clip>@<onset>``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from merflow.tasks.datasets.base import (
    AdapterResult,
    Annotation,
    attach_clip_dirs,
    build_samples,
    clean_text,
    find_sheet,
    first_row,
    numbered_id,
    parse_frame,
    roots_with_subjects,
    split_repeated_clips,
)

KIND = "casme"
FPS = 60.0
REQUIRED_COLUMNS = ("Subject", "Filename", "OnsetF", "ApexF1", "OffsetF", "Emotion")


def find_coding_sheet(root: Path) -> Path | None:
    return find_sheet(root, lambda path, names: set(REQUIRED_COLUMNS) <= set(first_row(path, names[0])))


def detect(root: Path) -> bool:
    return find_coding_sheet(root) is not None


def subject_id(value: object) -> str:
    return numbered_id(value, "sub", 2)


def read_sheet(path: Path) -> list[Annotation]:
    sheet = pd.read_excel(path, sheet_name=0, dtype=object)
    sheet.columns = [str(c).strip() for c in sheet.columns]
    annotations = []
    for index, row in sheet.iterrows():
        sample_id = clean_text(row["Filename"])
        if sample_id is None:
            continue
        # ApexF1 is the apex; where it is '\' CASME gives no apex at all (ApexF2, the end of a
        # held apex, is then '\' too), so the apex is left to be spotted.
        annotations.append(Annotation(
            dataset=KIND, subject=subject_id(row["Subject"]), sample_id=sample_id, clip_dir=None,
            onset=parse_frame(row["OnsetF"]), apex=parse_frame(row["ApexF1"]),
            offset=parse_frame(row["OffsetF"]), fps=FPS, emotion_raw=clean_text(row["Emotion"]),
            action_units=clean_text(row.get("AU")), where=f"{path.name} row {index + 2}",
        ))
    return annotations


def read(root: Path) -> AdapterResult:
    sheet = find_coding_sheet(root)
    if sheet is None:
        raise FileNotFoundError(f"no CASME coding sheet (columns {', '.join(REQUIRED_COLUMNS)}) under {root}")
    # A clip holding several expressions has one row per expression (sub01 EP01_12 at onsets 73 and
    # 163 in the survey's list): each is a sample, told apart by its onset.
    annotations = split_repeated_clips(read_sheet(sheet))
    roots = roots_with_subjects(root, {a.subject for a in annotations})
    attach_clip_dirs(annotations, roots)
    return build_samples(annotations)
