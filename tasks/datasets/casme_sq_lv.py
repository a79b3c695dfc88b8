"""CAS(ME)^2's long videos (spotting): the code sheet's intervals in the whole recordings
``rawpic/s15/15_0101disgustingteeth/img1.jpg`` (30 fps), as SOFTNet and MEAN spot them.

The same workbook as tasks/datasets/casme_sq.py (which cuts each interval into a short sample): sheet
``CASFEcode_final`` has no header (subject number, clip = video name + '_' + index, onset, apex, offset,
AUs, objective class, type, emotion word); ``naming rule1`` maps the subject number to its folder and
``naming rule2`` the video name to its code ('disgust1' -> '0101'), so a video is the folder
``<folder number>_<code>...`` of the subject's folder; its id here is ``<folder number>_<code>`` (15_0101).
300 macro and 57 micro intervals in 95 (subject, video) pairs of 22 people (the real sheet; the
dataset's rawpic/ holds 97 videos: the ones without an interval are videos too, read from disk).

The class: the sheet's objective-class column (negative, positive, surprise, others), which MEAN reads as
its ``emotion`` column (genbing99/MEAN_Spot-then-recognize@9009b5c load_excel.py colsName: 'emotion' is
the 7th) and keeps as written (load_label.py, CASME_sq).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from merflow.tasks.datasets import casme_sq
from merflow.tasks.datasets.base import clean_text, find_sheet, parse_frame, walk_dirs
from merflow.tasks.datasets.long_videos import (
    ANALYSIS_CLASSES,
    OTHERS,
    LongVideoResult,
    SheetInterval,
    SheetVideo,
    build_long_videos,
    sheet_number,
)

KIND = "casme_sq_lv"
FPS = casme_sq.FPS
SUBJECT_GROUP = "casme_sq"        # the same people as the short CAS(ME)^2 samples
# Spellings of the emotion word fixed in code: row 203 (subject 13, anger1_4) writes "happyiness".
EMOTION_TYPOS = {"happyiness": "happiness"}


def read_sheet(path: Path) -> tuple[list[SheetVideo], list[SheetInterval]]:
    """The code tab's intervals and the (subject, video) pairs they lie in, video folders not yet attached."""
    sheet = pd.read_excel(path, sheet_name=casme_sq.CODE_SHEET, header=None, dtype=object)
    sheet = sheet.iloc[:, :len(casme_sq.CODE_COLUMNS)]
    sheet.columns = list(casme_sq.CODE_COLUMNS)
    subject_rule, video_rule = casme_sq.naming_rules(path)
    videos: dict[tuple[str, str], SheetVideo] = {}
    intervals = []
    for index, row in sheet.iterrows():
        number, clip = parse_frame(row["subject_no"]), clean_text(row["clip"])
        if number is None or clip is None:
            continue
        folder_no, folder = subject_rule.get(number, (None, None))
        video_name = clip.rsplit("_", 1)[0]
        code = video_rule.get(video_name)
        where = f"{path.name} {casme_sq.CODE_SHEET} row {index + 1}"
        subject = folder or f"subject{number}"
        video_id = f"{folder_no}_{code}" if folder_no and code else f"{subject}_{video_name}"
        videos.setdefault((subject, video_id), SheetVideo(KIND, subject, video_id, None, FPS, SUBJECT_GROUP, where))
        kind = (clean_text(row["type"]) or "").lower()
        objective = (clean_text(row["objective_class"]) or "").lower()
        emotion_raw = clean_text(row["emotion"])
        interval = SheetInterval(
            dataset=KIND, subject=subject, video_id=video_id, interval_id=clip,
            type="micro" if kind.startswith("micro") else "macro" if kind.startswith("macro") else "unknown",
            onset=sheet_number(row["onset"]), offset=sheet_number(row["offset"]),
            # Apex 0 = not annotated, as an offset of 0 is (row 309, subject 17 anger1_1: onset 1763, apex 0).
            apex=sheet_number(row["apex"]) or None,
            emotion_raw=EMOTION_TYPOS.get((emotion_raw or "").lower(), emotion_raw),
            label=objective if objective in (*ANALYSIS_CLASSES, OTHERS) else None,
            action_units=clean_text(row["action_units"]), where=where)
        if interval.type == "unknown":
            interval.problems.append(("unknown_type", f"type {row['type']!r} is neither macro- nor micro-expression"))
        # Offset 0 = not annotated (44 macro rows, the first row 3: subject 1 anger2_1, onset 2155, apex 2163):
        # the interval ends at its apex, as SOFTNet and MEAN read it ("Take apex if offset is 0",
        # load_label.py); the short-sample adapter (casme_sq.py) quarantines these rows instead.
        if interval.offset == 0:
            interval.offset, interval.offset_source = interval.apex, "apex"
            if interval.apex is None:
                interval.problems.append(("missing_offset", "offset and apex are 0 in the sheet: no end"))
        if number not in subject_rule:
            interval.problems.append(("missing_video", f"subject number {number} is not in sheet "
                                                       f"{casme_sq.SUBJECT_RULE_SHEET!r}"))
        elif code is None:
            interval.problems.append(("missing_video", f"video {video_name!r} is not in sheet "
                                                       f"{casme_sq.VIDEO_RULE_SHEET!r}"))
        intervals.append(interval)
    return list(videos.values()), intervals


def find_code_sheet(root: Path) -> Path | None:
    """The CAS(ME)^2 code workbook under root (the one casme_sq.py reads)."""
    return find_sheet(root, lambda path, names: casme_sq.CODE_SHEET in names)


def detect(root: Path) -> bool:
    """Whether root holds CAS(ME)^2 (its code sheet): its long videos are spotted from the same files."""
    return find_code_sheet(root) is not None


def read(root: Path) -> LongVideoResult:
    """The long videos (every video folder of the sheet's subjects, with or without an interval), intervals
    and quarantine rows of CAS(ME)^2 under root."""
    sheet = find_code_sheet(root)
    if sheet is None:
        raise FileNotFoundError(f"no CAS(ME)^2 code sheet (tab {casme_sq.CODE_SHEET}) under {root}")
    videos, intervals = read_sheet(sheet)
    subject_rule, video_rule = casme_sq.naming_rules(sheet)
    codes = set(video_rule.values())
    folder_numbers = {folder: folder_no for folder_no, folder in subject_rule.values()}
    subject_dirs = {d.name: d for d in walk_dirs(root, max_depth=4) if d.name in folder_numbers}
    known = {(v.subject, v.video_id): v for v in videos}
    for subject, subject_dir in sorted(subject_dirs.items()):
        for folder in sorted(p for p in subject_dir.iterdir() if p.is_dir()):
            # '<folder number>_<4-digit code><description>', e.g. 15_0101disgustingteeth.
            number, _, rest = folder.name.partition("_")
            if number != folder_numbers[subject] or rest[:4] not in codes:
                continue
            video_id = f"{number}_{rest[:4]}"
            video = known.get((subject, video_id))
            if video is None:
                video = known[(subject, video_id)] = SheetVideo(KIND, subject, video_id, None, FPS, SUBJECT_GROUP,
                                                                f"{folder} (no interval in the sheet)")
                videos.append(video)
            video.video_dir = video.video_dir or folder
    return build_long_videos(videos, intervals)
