"""SAMM Long Videos (spotting): sheet FACS_Movement_Only of SAMM_LongVideos_*_Release.xlsx joined to the
video folders ``SAMM_longvideos/<subject>_<inducement>/`` (grey, 200 fps), with the micro-expressions'
emotions from the SAMM micro-expression sheet (MICRO_ONLY of SAMM_Micro_FACS_Codes_v2.xlsx), when it lies
in the same source.

The sheet opens with 9 rows of notes; the header (Subject, Filename, Inducement Code, Onset, Apex, Offset,
Duration, Type, Action Units, Notes) is on row 10. Filename is ``<subject>_<inducement>_<n>``: the
video is ``<subject>_<inducement>`` (genbing99/SoftNet-SpotME@dd43d1e load_label.py: videoCode). Type is
``Macro`` or ``Micro - 1/2``. 147 videos of 30 people, 343 macro and 159 micro intervals (the real sheet).

Emotions, as MEAN reads them (genbing99/MEAN_Spot-then-recognize@9009b5c load_excel.py): the long-video
rows merged with the micro sheet's (Filename, Type) -> Estimated Emotion, so only micro rows get one
(all 159 match); load_label.py maps anger, contempt, disgust, fear and sadness to negative, happiness to
positive, surprise to surprise and other to others.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from merflow.tasks.datasets import samm
from merflow.tasks.datasets.base import clean_text, find_sheet
from merflow.tasks.datasets.long_videos import (
    LongVideoResult,
    SheetInterval,
    SheetVideo,
    build_long_videos,
    find_named_folders,
    mean_label,
    sheet_number,
)
from merflow.tasks.labels import normalise_emotion

KIND = "samm_lv"
FPS = 200.0
SHEET = "FACS_Movement_Only"
SUBJECT_GROUP = "samm"            # the same people as the SAMM micro set: 006 is 006
REQUIRED_COLUMNS = ("Subject", "Filename", "Onset", "Apex", "Offset", "Type")
VIDEO_FOLDER = "SAMM_longvideos"
HEADER_SEARCH_ROWS = 30
MICRO_TYPE = "Micro - 1/2"
# load_label.py's negative emotions for SAMMLV.
NEGATIVE = ("anger", "contempt", "disgust", "fear", "sadness")


def header_row(raw: pd.DataFrame) -> int:
    """The row holding the column names (row 10 of the release sheet), found by content."""
    for index in range(min(HEADER_SEARCH_ROWS, len(raw))):
        cells = {str(v).strip() for v in raw.iloc[index].tolist()}
        if {"Filename", "Onset", "Offset", "Type"} <= cells:
            return index
    raise ValueError(f"sheet {SHEET}: no header row with Filename, Onset, Offset and Type in the first "
                     f"{HEADER_SEARCH_ROWS} rows")


def expression_type(value: object) -> str | None:
    """micro for ``Micro - 1/2``, macro for ``Macro``; None for anything else."""
    text = (clean_text(value) or "").lower()
    return "micro" if text.startswith("micro") else "macro" if text.startswith("macro") else None


def micro_emotions(root: Path) -> dict[str, str]:
    """Filename -> Estimated Emotion of the SAMM micro sheet under ``root`` (every row of MICRO_ONLY is a
    ``Micro - 1/2`` row, so MEAN's merge on (Filename, Type) is a merge on Filename); empty without it."""
    sheet = find_sheet(root, lambda path, names: samm.SHEET in names)
    if sheet is None:
        return {}
    return {a.sample_id: a.emotion_raw for a in samm.read_sheet(sheet) if a.emotion_raw}


def read_sheet(path: Path, emotions: dict[str, str] | None = None) -> tuple[list[SheetVideo], list[SheetInterval]]:
    """The sheet's videos and intervals (video folders not yet attached)."""
    raw = pd.read_excel(path, sheet_name=SHEET, header=None, dtype=object)
    header = header_row(raw)
    sheet = raw.iloc[header + 1:].copy()
    sheet.columns = [str(c).strip() for c in raw.iloc[header].tolist()]
    missing = [c for c in REQUIRED_COLUMNS if c not in sheet.columns]
    if missing:
        raise ValueError(f"{path.name} sheet {SHEET}: missing columns {missing}")
    emotions = emotions or {}
    videos: dict[str, SheetVideo] = {}
    intervals = []
    seen: set[str] = set()
    for index, row in sheet.iterrows():
        name = clean_text(row["Filename"])
        if name is None or name.count("_") < 2:
            continue
        subject = samm.subject_id(row["Subject"]) if clean_text(row["Subject"]) else name.split("_")[0]
        video_id = name.rsplit("_", 1)[0]
        where = f"{path.name} row {index + 1}"
        videos.setdefault(video_id, SheetVideo(KIND, subject, video_id, None, FPS, SUBJECT_GROUP, where))
        kind = expression_type(row["Type"])
        emotion_raw = emotions.get(name) if kind == "micro" else None
        # Rows 506 and 507 are both 037_4_1, a Micro (1488..1577) and a Macro (1487..1605): both count (the MEGC
        # totals hold them), so a name met again is told apart by its type (037_4_1@macro); MEAN merges the
        # emotions on (Filename, Type) for the same reason.
        interval_id = name if name not in seen else f"{name}@{kind}"
        seen.add(name)
        interval = SheetInterval(
            dataset=KIND, subject=subject, video_id=video_id, interval_id=interval_id, type=kind or "unknown",
            # Rows 11 on (006_1_1: onset 566.4, apex 647.6, offset 743.2, and about a third of the macro rows)
            # give fractional frames: kept as written in onset_sheet..., truncated to frames as int() does in
            # SOFTNet's and MEAN's load_label.py (build_long_videos, whole_frame).
            onset=sheet_number(row["Onset"]), offset=sheet_number(row["Offset"]),
            # Apex -1 = "not annotated" (the sheet's note on row 7): rows 76 (010_1_3), 393 (026_2_5), 408
            # (028_4_1), 427 (032_3_1), 491 (036_6_2), 492 (036_6_3). sheet_number reads -1 as None; the
            # interval is kept (spotting needs onset and offset only), apex_source "missing".
            apex=sheet_number(row["Apex"]),
            emotion_raw=emotion_raw, label=mean_label(normalise_emotion(emotion_raw), NEGATIVE),
            action_units=clean_text(row.get("Action Units")), where=where)
        if kind is None:
            interval.problems.append(("unknown_type", f"Type {row['Type']!r} is neither Macro nor Micro"))
        # Rows 143, 153, 169, 281, 285, 288, 290, 296, 299 and 337 (all Macro, e.g. 011_6_10: onset 0,
        # Duration = offset + 1) start at frame 0: before the first frame where frames are numbered from 1,
        # so build_long_videos starts them at the video's first frame. SOFTNet leaves them out ("extremely
        # long", load_label.py `int(row['onset'])!=0`); they are kept here: the MEGC totals (343 macro) count them.
        intervals.append(interval)
    return list(videos.values()), intervals


def find_release_sheet(root: Path) -> Path | None:
    """The long videos' release sheet under root: a workbook with a FACS_Movement_Only tab."""
    return find_sheet(root, lambda path, names: SHEET in names)


def detect(root: Path) -> bool:
    """Whether root holds SAMM Long Videos (its release sheet)."""
    return find_release_sheet(root) is not None


def read(root: Path) -> LongVideoResult:
    """The videos, intervals and quarantine rows of the SAMM Long Videos under root."""
    sheet = find_release_sheet(root)
    if sheet is None:
        raise FileNotFoundError(f"no SAMM Long Videos sheet (tab {SHEET}) under {root}")
    videos, intervals = read_sheet(sheet, micro_emotions(root))
    # Video folders are named by the video id (SAMM_longvideos/006_1/): the first such folder under root.
    folders = find_named_folders(root, {video.video_id for video in videos})
    for video in videos:
        video.video_dir = folders.get(video.video_id)
    return build_long_videos(videos, intervals)
