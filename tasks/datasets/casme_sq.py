"""CAS(ME)^2 adapter: the headerless code sheet, with its two naming-rule sheets that give the folder names.

Layout: ``rawpic/s15/15_0101disgustingteeth/img1.jpg``: long videos at 30 fps, each holding several
expressions; a sample is the onset..offset stretch of one. Sheet ``CASFEcode_final`` has no header
row: subject number, clip (video name + '_' + index), onset, apex, offset, AUs, class, type
(macro- or micro-expression), emotion. ``naming rule1`` maps the subject number to its folder
(15, 's15', 1); ``naming rule2`` maps the video code to its name ('0101', 'disgust1').
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from merflow.configs.names import folder_name_problem
from merflow.tasks.datasets.base import (
    Annotation,
    Cells,
    SheetDataset,
    clean_text,
    parse_frame,
    read_excel,
    walk_dirs,
)

KIND = "casme_sq"
FPS = 30.0
CODE_SHEET = "CASFEcode_final"
SUBJECT_RULE_SHEET = "naming rule1"
VIDEO_RULE_SHEET = "naming rule2"
CODE_COLUMNS = ("subject_no", "clip", "onset", "apex", "offset", "action_units", "objective_class", "type", "emotion")


def naming_rules(path: Path) -> tuple[dict[int, tuple[str, str]], dict[str, str]]:
    """subject number -> (folder number, folder name), and video name -> video code."""
    subjects = pd.read_excel(path, sheet_name=SUBJECT_RULE_SHEET, header=None, dtype=object)
    videos = pd.read_excel(path, sheet_name=VIDEO_RULE_SHEET, header=None, dtype=object)
    subject_rule = {}
    for folder_no, folder, number in subjects.iloc[:, :3].itertuples(index=False):
        if parse_frame(number) is not None:
            subject_rule[parse_frame(number)] = (str(parse_frame(folder_no)), clean_text(folder))
    # Codes are text ('0101'); a re-saved sheet may hold them as numbers (101): pad back to 4. A code that is
    # no number names no folder: its rows' clips are then missing_clip.
    video_rule = {clean_text(name): f"{parse_frame(code):04d}" for code, name in videos.iloc[:, :2].itertuples(index=False)
                  if clean_text(name) and clean_text(code) and parse_frame(code) is not None}
    return subject_rule, video_rule


def read_sheet(path: Path) -> list[Annotation]:
    """Every row of the code sheet (macro- and micro-expressions), clip folders not yet attached."""
    sheet = read_excel(path, sheet_name=CODE_SHEET)
    sheet = sheet.reindex(columns=range(len(CODE_COLUMNS)))  # a sheet with fewer columns reads them as blank
    sheet.columns = list(CODE_COLUMNS)
    subject_rule, _ = naming_rules(path)
    annotations = []
    for index, row in sheet.iterrows():
        cells = Cells(row, f"{path.name} {CODE_SHEET} row {index + 1}")
        if cells.blank():
            continue
        number, clip = parse_frame(cells.get("subject_no")), cells.text("clip")
        if number is None:
            cells.problems.append(("bad_id", f"subject_no {cells.get('subject_no')!r} is not a subject number"))
        folder = subject_rule.get(number, (None, f"subject{number}"))[1]
        kind = (cells.text("type") or "").lower()
        offset = cells.frame("offset")
        ann = Annotation(
            dataset=KIND, subject=folder, sample_id=clip, clip_dir=None,
            # An apex of 0 is not annotated either, as an offset of 0 (row 309, s34 anger1_1: apex 0,
            # onset 1763): left to be spotted, not kept as a frame outside the clip.
            onset=cells.frame("onset"), apex=cells.frame("apex") or None, offset=offset,
            fps=FPS, emotion_raw=cells.text("emotion"), action_units=cells.text("action_units"),
            objective_class=cells.text("objective_class"), is_macro=kind.startswith("macro"),
            where=cells.where, problems=cells.problems,
        )
        # An offset of 0 means the offset was not annotated (44 rows of the final sheet, e.g. row 3,
        # 1 anger2_1): with no end there is no sample to cut, so the row is quarantined, not guessed.
        if offset == 0:
            ann.problems.append(("missing_offset", "offset is 0 in the sheet: not annotated"))
        if number is not None and number not in subject_rule:
            ann.problems.append(("missing_clip", f"subject number {number} is not in sheet {SUBJECT_RULE_SHEET!r}"))
        annotations.append(ann)
    return annotations


class CasmeSq(SheetDataset):
    """CAS(ME)^2: the workbook with a CASFEcode_final tab; clip folders named through its naming rules."""

    kind = KIND
    sheet_description = f"CAS(ME)^2 code sheet (tab {CODE_SHEET})"
    # The real sheet numbers each expression of a video (disgust2_3), so no two rows share a clip
    # id; a sheet that repeats one gets one sample per onset, as CASME's does.
    repeated_clips = True

    def is_sheet(self, path: Path, names: list[str]) -> bool:
        """True for a workbook with CAS(ME)^2's code tab."""
        return CODE_SHEET in names

    def read_sheet(self, path: Path) -> list[Annotation]:
        """The code tab's annotations (module-level ``read_sheet``)."""
        return read_sheet(path)

    def attach_clips(self, root: Path, sheet: Path, annotations: list[Annotation]) -> None:
        """Clip folders through the naming rules: rawpic/<subject folder>/<folder number>_<video code>...."""
        subject_rule, video_rule = naming_rules(sheet)
        folder_numbers = {folder: folder_no for folder_no, folder in subject_rule.values()}
        subject_dirs = {d.name: d for d in walk_dirs(root) if d.name in folder_numbers}
        for ann in annotations:
            if ann.problems or folder_name_problem(ann.subject) or folder_name_problem(ann.clip):
                continue  # quarantined by build_samples: never made a path
            video = ann.clip.rsplit("_", 1)[0]
            subject_dir, code = subject_dirs.get(ann.subject), video_rule.get(video)
            if subject_dir is None or code is None:
                continue
            # Video folders are '<folder number>_<code><description>', e.g. 15_0101disgustingteeth.
            prefix = f"{folder_numbers[ann.subject]}_{code}"
            ann.clip_dir = next((d for d in sorted(subject_dir.iterdir()) if d.is_dir() and d.name.startswith(prefix)),
                                None)


ADAPTER = CasmeSq()
detect, read = ADAPTER.detect, ADAPTER.read
