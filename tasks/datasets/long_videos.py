"""The long-video datasets' adapters (spotting): one interface beside base.py's, for sets whose unit is a
whole recording holding several annotated intervals rather than a clip cut around one expression.

A long-video adapter module defines ``KIND``, ``detect(root) -> bool`` and ``read(root) -> LongVideoResult``.
``read`` turns the sheet into :class:`SheetInterval` rows (quirks fixed in code with the sheet row named)
and :class:`SheetVideo` rows, then :func:`build_long_videos` finds each video's frames on disk, maps the
sheet's frame numbers onto positions in the video (0-based frame indices, inclusive intervals: what the
spotters and the MEGC metric count in) and quarantines what cannot be used, with a reason.

Frame numbers: a sheet's frame number is the number in a frame file's name (``img46.jpg`` is 46;
tasks/datasets/base.py ``frame_number``); SOFTNet and MEAN read the frames in natural order and take the
sheet's number minus one as the index (genbing99/SoftNet-SpotME@dd43d1e load_label.py ``int(row['onset']-1)``),
which is the same for frames numbered from 1 without gaps. A fractional number is truncated as ``int()``
does there. The rows go to storage/long_videos.py's ``videos`` and ``intervals`` tables.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from pathlib import Path

from merflow.tasks.datasets.base import JUNK_NAMES, MAX_SEARCH_DEPTH, list_frames
from merflow.tasks.labels import normalise_emotion

# MEAN's three classes of the long videos (genbing99/MEAN_Spot-then-recognize@9009b5c load_label.py,
# prepare_training.py recognition_label: emotion_list = negative, positive, surprise); "others" is kept in
# the ground truth (it counts for spotting) and left out of the analysis.
ANALYSIS_CLASSES = ("negative", "positive", "surprise")
OTHERS = "others"


@dataclass
class SheetVideo:
    """One long video as the sheet (and the folders on disk) name it."""

    dataset: str
    subject: str
    video_id: str
    video_dir: Path | None
    fps: float
    subject_group: str              # the person across datasets (samm_lv's 006 is samm's 006): subject_key's prefix
    where: str | None = None

    @property
    def video_key(self) -> str:
        """``dataset/subject/video_id``."""
        return f"{self.dataset}/{self.subject}/{self.video_id}"


@dataclass
class SheetInterval:
    """One annotated interval as the sheet states it (frame numbers as written, floats allowed)."""

    dataset: str
    subject: str
    video_id: str
    interval_id: str
    type: str                       # micro | macro
    onset: float | None
    apex: float | None
    offset: float | None
    emotion_raw: str | None = None
    label: str | None = None        # MEAN's class: negative | positive | surprise | others; None without an emotion
    action_units: str | None = None
    where: str | None = None
    apex_source: str = "annotated"  # annotated | missing | outside_interval
    offset_source: str = "annotated"  # annotated | apex (the sheet's offset is 0: the apex ends it, as SOFTNet reads it)
    problems: list[tuple[str, str]] = field(default_factory=list)

    @property
    def video_key(self) -> str:
        """The video this interval lies in."""
        return f"{self.dataset}/{self.subject}/{self.video_id}"

    @property
    def interval_key(self) -> str:
        """``dataset/subject/interval_id``."""
        return f"{self.dataset}/{self.subject}/{self.interval_id}"


@dataclass
class LongVideoResult:
    """What a long-video adapter's ``read`` returns: video rows, interval rows and quarantine rows."""

    videos: list[dict]
    intervals: list[dict]
    problems: list[dict]


def sheet_number(value: object) -> float | None:
    """A frame number from a sheet cell as written (566.4 stays 566.4); None for blanks, text and negatives
    (SAMM-LV writes -1 for "not annotated")."""
    if value is None:
        return None
    try:
        number = float(str(value).strip()) if not isinstance(value, (int, float)) else float(value)
    except ValueError:
        return None
    if number != number or number < 0:
        return None
    return number


def whole_frame(number: float) -> int:
    """A fractional sheet frame number as SOFTNet and MEAN use it: truncated (``int(566.4 - 1)`` is index 565,
    frame 566)."""
    return int(math.floor(number))


def mean_label(emotion: str | None, negative: tuple[str, ...]) -> str | None:
    """MEAN's three classes for a normalised emotion (``negative``: the emotions it counts as negative for
    the dataset); others for anything else it knows; None without an emotion."""
    if emotion is None:
        return None
    if emotion in negative or emotion == "negative":
        return "negative"
    if emotion in ("happiness", "positive"):
        return "positive"
    if emotion == "surprise":
        return "surprise"
    return OTHERS


def find_named_folders(root: Path, names: set[str], max_depth: int = MAX_SEARCH_DEPTH) -> dict[str, Path]:
    """name -> the first folder under root (breadth first) with that name; a found folder is not looked
    into (a video folder holds thousands of frames, and no other video)."""
    found: dict[str, Path] = {}
    level = [root]
    for _ in range(max_depth + 1):
        next_level = []
        for folder in level:
            try:
                children = sorted(p for p in folder.iterdir() if p.name not in JUNK_NAMES and p.is_dir())
            except OSError:
                continue
            for child in children:
                if child.name in names:
                    found.setdefault(child.name, child)
                else:
                    next_level.append(child)
        level = next_level
    return found


def _problem(key: str, dataset: str, subject: str, reason: str, detail: str, where: str | None) -> dict:
    return {"key": key, "dataset": dataset, "subject": subject, "reason": reason,
            "detail": f"{detail} ({where})" if where else detail}


def _position_at_or_after(numbers: list[int], number: int) -> int | None:
    index = bisect.bisect_left(numbers, number)
    return index if index < len(numbers) else None


def _position_at_or_before(numbers: list[int], number: int) -> int | None:
    index = bisect.bisect_right(numbers, number) - 1
    return index if index >= 0 else None


def build_long_videos(videos: list[SheetVideo], intervals: list[SheetInterval]) -> LongVideoResult:
    """Videos with their frames on disk and intervals as 0-based frame indices into them; the rest quarantined.

    Quarantine reasons: ``missing_video`` (no frame folder, or no frames in it; its intervals too),
    ``bad_interval`` (no onset or offset, or onset after offset), ``interval_outside_video`` (past the last
    frame), ``duplicate_id``, and what the adapter found while reading (``SheetInterval.problems``). An
    onset before the first frame on disk (SAMM-LV's onset 0 with frames numbered from 1) starts at the
    first frame; frame numbers missing on disk (gaps) snap inwards to the nearest frame inside the interval.
    """
    video_rows, interval_rows, problems = [], [], []
    frames_of: dict[str, tuple[list[int], list[str]]] = {}
    seen_videos: set[str] = set()
    for video in videos:
        if video.video_key in seen_videos:
            continue
        seen_videos.add(video.video_key)
        listing = list_frames(video.video_dir) if video.video_dir is not None else {}
        if not listing:
            where = f"at {video.video_dir}" if video.video_dir else "(no folder found)"
            problems.append(_problem(video.video_key, video.dataset, video.subject, "missing_video",
                                     f"no frames for video {video.video_key} {where}", video.where))
            continue
        numbers = sorted(listing)
        frames_of[video.video_key] = (numbers, [listing[n] for n in numbers])
        video_rows.append({
            "video_key": video.video_key, "dataset": video.dataset, "subject": video.subject,
            "subject_key": f"{video.subject_group}/{video.subject}", "video_id": video.video_id,
            "video_dir": str(video.video_dir), "frame_files": [listing[n] for n in numbers],
            "n_frames": len(numbers), "first_frame_number": numbers[0], "fps": float(video.fps)})
    subject_groups = {v.video_key: v.subject_group for v in videos}
    seen: set[str] = set()
    for interval in intervals:
        key, where = interval.interval_key, interval.where
        if interval.problems:
            problems.extend(_problem(key, interval.dataset, interval.subject, reason, detail, where)
                            for reason, detail in interval.problems)
            continue
        if key in seen:
            problems.append(_problem(key, interval.dataset, interval.subject, "duplicate_id",
                                     f"{key} appears more than once", where))
            continue
        seen.add(key)
        if interval.video_key not in frames_of:
            problems.append(_problem(key, interval.dataset, interval.subject, "missing_video",
                                     f"video {interval.video_key} has no frames", where))
            continue
        if interval.onset is None or interval.offset is None or interval.onset > interval.offset:
            problems.append(_problem(key, interval.dataset, interval.subject, "bad_interval",
                                     f"onset {interval.onset}, offset {interval.offset}", where))
            continue
        numbers, _ = frames_of[interval.video_key]
        onset = _position_at_or_after(numbers, whole_frame(interval.onset))
        offset = _position_at_or_before(numbers, whole_frame(interval.offset))
        if onset is None or offset is None or onset > offset:
            problems.append(_problem(key, interval.dataset, interval.subject, "interval_outside_video",
                                     f"frames {interval.onset}..{interval.offset} outside the video's "
                                     f"{numbers[0]}..{numbers[-1]}", where))
            continue
        apex, apex_source = None, interval.apex_source
        if interval.apex is not None and apex_source == "annotated":
            apex = _position_at_or_before(numbers, whole_frame(interval.apex))
            if apex is None or not onset <= apex <= offset:
                apex, apex_source = None, "outside_interval"
        elif apex_source == "annotated":
            apex_source = "missing"
        interval_rows.append({
            "interval_key": key, "video_key": interval.video_key, "dataset": interval.dataset,
            "subject": interval.subject, "subject_key": f"{subject_groups[interval.video_key]}/{interval.subject}",
            "video_id": interval.video_id, "interval_id": interval.interval_id, "type": interval.type,
            "onset": onset, "apex": apex, "offset": offset,
            "onset_sheet": interval.onset, "apex_sheet": interval.apex, "offset_sheet": interval.offset,
            "apex_source": apex_source, "offset_source": interval.offset_source,
            "emotion_raw": interval.emotion_raw, "emotion": normalise_emotion(interval.emotion_raw),
            "label": interval.label, "action_units": interval.action_units, "where": where})
    return LongVideoResult(video_rows, interval_rows, problems)
