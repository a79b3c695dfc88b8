"""Synthetic long videos for spotting: a face talking, blinking and moving its head for as long as asked,
with micro- and macro-expressions planted at known intervals, written in SAMM Long Videos' or CAS(ME)^2's
layout (folders, frame names, sheets, frame rate, frame size, colour) with their sheets' quirks.

It stages the face and moves it as expressions.py does a clip (the same faces, action-unit fields,
blinks, sensor noise and flicker), frame by frame so that minutes of video never sit in memory, plus
what a recording of a person holds between expressions: speech (a jaw drop at syllable rate, the mouth
region moving without an expression), blinks every few seconds, slow head drift and quick nods (a small
rotation, which a translation-only correction does not remove). Planted intervals never overlap each
other or speech, so the ground truth is exactly the planted intervals.

``synthesize_long_videos(LongVideoSynthConfig(...), out)`` writes one set; tasks/datasets/samm_lv.py and
casme_sq_lv.py read it back.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from merflow.configs.synth import LONG_VIDEO_SYNTH_EMOTIONS, LongVideoSynthConfig
from merflow.tasks.labels import normalise_emotion
from merflow.tasks.synthetic.expressions import (
    _REF_FACE_PX,
    _blink_field,
    _grid,
    _recipe,
    _stage,
    _unit_noise,
    expression_field,
    peak_displacement,
)
from merflow.tasks.synthetic.faces import FaceIdentity, subject_identity
from merflow.tasks.synthetic.layouts import SAMM_NOTES, SAMM_OBJECTIVE, _workbook_sheet, action_units

MANIFEST = "merflow-synthetic.json"


@dataclass(frozen=True)
class LongVideoSpec:
    """A long-video set's top folder, frame size, colour, frame rate and subject identities (as layouts.py's)."""

    folder: str
    frame_size: tuple[int, int]     # (H, W) of the real frames
    colour: bool
    fps: float
    identity_offset: int            # samm_lv's people are samm's (100), casme_sq_lv's casme_sq's (400)


LONG_SPECS = {
    "samm_lv": LongVideoSpec("SAMM_LV", (650, 960), False, 200.0, 100),
    "casme_sq_lv": LongVideoSpec("CASME_sq", (480, 640), True, 30.0, 400),
}
# Durations (seconds) of planted intervals: micro-expressions last under half a second (the real sets'
# micro means are 12.6 frames at 30 fps and 73 at 200 fps: 0.42 and 0.37 s), macro-expressions longer.
MICRO_SECONDS = (0.25, 0.45)
MACRO_SECONDS = (0.9, 2.0)
GAP_SECONDS = 0.6                 # at least this much neutral face between planted events
TALK_HZ = 4.0                     # syllables a second
TALK_AMPLITUDE = 2.0              # the jaw drop's peak, in micro-expression peaks: speech moves the mouth more than a micro-expression


@dataclass(frozen=True)
class PlantedInterval:
    """One planted expression, in 0-based frame indices of its video."""

    type: str                       # micro | macro
    emotion: str                    # the dataset's spelling
    onset: int
    apex: int
    offset: int


@dataclass(frozen=True)
class Talk:
    """A stretch of speech: the jaw moves at syllable rate from ``start`` to ``stop`` (frame indices)."""

    start: int
    stop: int
    phase: float


def _place(length: int, taken: list[tuple[int, int]], n_frames: int, gap: int, rng: np.random.Generator,
           tries: int = 200) -> tuple[int, int] | None:
    """A free stretch of ``length`` frames at least ``gap`` frames from every taken one, or None."""
    for _ in range(tries):
        start = int(rng.integers(gap, max(gap + 1, n_frames - length - gap)))
        stop = start + length - 1
        if stop >= n_frames - 1:
            continue
        if all(stop + gap < a or start > b + gap for a, b in taken):
            return start, stop
    return None


def plan_video(n_frames: int, fps: float, micro: int, macro: int, emotions: tuple[str, ...], talking: bool,
               rng: np.random.Generator, first_emotion: int = 0) -> tuple[list[PlantedInterval], list[Talk]]:
    """Where a video's expressions and speech go: non-overlapping, ``GAP_SECONDS`` apart, in frame indices."""
    gap = max(int(round(GAP_SECONDS * fps)), 2)
    taken: list[tuple[int, int]] = []
    planted = []
    kinds = ["macro"] * macro + ["micro"] * micro  # the long ones first, while there is room
    for index, kind in enumerate(kinds):
        low, high = MACRO_SECONDS if kind == "macro" else MICRO_SECONDS
        length = max(int(round(float(rng.uniform(low, high)) * fps)), 5 if kind == "micro" else 9)
        place = _place(length, taken, n_frames, gap, rng)
        if place is None:
            continue
        taken.append(place)
        onset, offset = place
        apex = onset + int(round((offset - onset) * float(rng.uniform(0.35, 0.55))))
        planted.append(PlantedInterval(kind, emotions[(first_emotion + index) % len(emotions)], onset, apex, offset))
    talks = []
    if talking:
        for _ in range(max(1, int(n_frames / fps / 6))):
            length = int(round(float(rng.uniform(1.0, 2.5)) * fps))
            place = _place(length, taken, n_frames, gap, rng, tries=50)
            if place is not None:
                taken.append(place)
                talks.append(Talk(place[0], place[1], float(rng.uniform(0, 2 * np.pi))))
    planted.sort(key=lambda p: p.onset)
    return planted, talks


def _raised_cosine(t: int, onset: int, apex: int, offset: int) -> float:
    """0 outside onset..offset, rising to 1 at the apex and falling back to 0 at the offset."""
    if t <= onset or t >= offset:
        return 1.0 if t == apex else 0.0
    if t <= apex:
        return float(0.5 * (1 - np.cos(np.pi * (t - onset) / max(apex - onset, 1))))
    return float(0.5 * (1 + np.cos(np.pi * (t - apex) / max(offset - apex, 1))))


def render_long_video(identity: FaceIdentity, planted: list[PlantedInterval], talks: list[Talk], n_frames: int,
                      fps: float, frame_size: tuple[int, int], colour: bool,
                      rng: np.random.Generator) -> Iterator[np.ndarray]:
    """The video's frames one at a time: uint8 (H, W, 3) RGB when ``colour``, else (H, W)."""
    h, w = int(frame_size[0]), int(frame_size[1])
    stage = _stage(identity, (h, w), rng)
    landmarks, person = stage.landmarks, stage.person
    scale = stage.face_px / _REF_FACE_PX
    fields = []
    for event in planted:
        emotion = normalise_emotion(event.emotion) or "others"
        fx, fy = expression_field(landmarks, _recipe(emotion, rng), (h, w))
        peak = peak_displacement(stage.face_px, identity.expressiveness, float(rng.uniform(0.8, 1.1)),
                                 macro=event.type == "macro")
        fields.append((event, fx * np.float32(peak), fy * np.float32(peak)))
    tx, ty = expression_field(landmarks, [("26", 1.0)], (h, w))
    talk_peak = np.float32(TALK_AMPLITUDE * peak_displacement(stage.face_px, identity.expressiveness))
    tx, ty = tx * talk_peak, ty * talk_peak
    blink_field = _blink_field(landmarks, (h, w))
    gx, gy = _grid(h, w)
    # Head motion on the person only (the backdrop stays): a small rotation about the neck, and drift.
    cx, cy = np.mean([p[0] for p in landmarks.values()]), stage.face_px * 0.9 + np.mean([p[1] for p in landmarks.values()])
    rot_x, rot_y = -(gy - np.float32(cy)) * person, (gx - np.float32(cx)) * person

    blink_every = (2.0 * fps, 6.0 * fps)
    blink_length = max(2, int(round(0.12 * fps)))
    next_blink = int(rng.uniform(*blink_every))
    blink_start = -blink_length
    nod_every = (4.0 * fps, 10.0 * fps)
    next_nod, nod_start, nod_length, nod_angle = int(rng.uniform(*nod_every)), -1, max(3, int(0.4 * fps)), 0.0
    drift = np.zeros(2)
    velocity = np.zeros(2)
    drift_limit = 0.8 * scale
    noise_sigma = float(rng.uniform(1.0, 2.0))
    base = stage.base if colour else cv2.cvtColor(stage.base, cv2.COLOR_RGB2GRAY)
    base = (base + np.float32(0.5)).astype(np.uint8)
    shape = (h, w, 3) if colour else (h, w)
    out = np.empty(shape, np.uint8)
    for t in range(n_frames):
        mx, my = gx.copy(), gy.copy()
        for event, fx, fy in fields:
            if event.onset <= t <= event.offset:
                a = np.float32(_raised_cosine(t, event.onset, event.apex, event.offset))
                mx -= a * fx
                my -= a * fy
        for talk in talks:
            if talk.start <= t <= talk.stop:
                a = np.float32(0.5 * (1 - np.cos(2 * np.pi * TALK_HZ * (t - talk.start) / fps + talk.phase)))
                mx -= a * tx
                my -= a * ty
        if t == next_blink:
            blink_start, next_blink = t, t + int(rng.uniform(*blink_every))
        if blink_start <= t < blink_start + blink_length:
            my -= np.float32(np.sin(np.pi * (t - blink_start + 1) / (blink_length + 1))) * blink_field
        if t == next_nod:
            nod_start, next_nod = t, t + int(rng.uniform(*nod_every))
            nod_angle = float(rng.choice([-1, 1]) * rng.uniform(0.01, 0.025))  # radians: 0.6 to 1.4 degrees
        if nod_start <= t < nod_start + nod_length:
            theta = np.float32(nod_angle * np.sin(np.pi * (t - nod_start) / nod_length))
            mx -= theta * rot_x
            my -= theta * rot_y
        velocity = 0.9 * velocity + rng.normal(0, 0.02 * scale, 2)
        drift = np.clip(drift + velocity, -drift_limit, drift_limit)
        mx -= np.float32(drift[0]) * person
        my -= np.float32(drift[1]) * person
        frame = cv2.remap(base, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        gain = 1.0 + float(np.clip(rng.normal(0.0, 0.006), -0.02, 0.02))
        cv2.addWeighted(frame, gain, _unit_noise(rng, shape), noise_sigma, 0.0, dst=out, dtype=cv2.CV_8U)
        yield out.copy()


def _write(path: Path, frame: np.ndarray) -> None:
    image = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR) if frame.ndim == 3 else frame
    if not cv2.imwrite(str(path), image):
        raise OSError(f"could not write {path}")


@dataclass
class _Video:
    subject: int
    index: int
    planted: list[PlantedInterval]
    talks: list[Talk]
    n_frames: int


def _videos(config: LongVideoSynthConfig, spec: LongVideoSpec, rng: np.random.Generator) -> list[_Video]:
    emotions = config.emotions or LONG_VIDEO_SYNTH_EMOTIONS[config.dataset]
    n_frames = max(int(round(config.seconds * spec.fps)), 16)
    videos, count = [], 0
    for subject in range(1, config.subjects + 1):
        for index in range(config.videos_per_subject):
            planted, talks = plan_video(n_frames, spec.fps, config.micro_per_video, config.macro_per_video,
                                        emotions, config.talking, rng, first_emotion=count)
            count += len(planted)
            videos.append(_Video(subject, index, planted, talks, n_frames))
    return videos


def _render(config: LongVideoSynthConfig, spec: LongVideoSpec, video: _Video, folder: Path, names: list[str],
            rng: np.random.Generator, progress) -> None:
    identity = subject_identity(spec.identity_offset + video.subject, config.seed, config.face_image)
    size = tuple(max(48, int(round(s * config.scale / 2)) * 2) for s in spec.frame_size)
    folder.mkdir(parents=True, exist_ok=True)
    frames = render_long_video(identity, video.planted, video.talks, video.n_frames, spec.fps, size, spec.colour, rng)
    for frame, name in zip(frames, names):
        _write(folder / name, frame)
    progress and progress(1)


# ------------------------------------------------------------------------------------------ SAMM-LV
SAMM_LV_NOTES = [["SAMM Long Videos Dataset - FACS Codes"], [], ["Symbol Key:"], ['"/" = or'], [], ["AU Help:"],
                 ['"L2 or R2" = Unilateral AU 2 on left side of face / right side of face', None, None, None, None,
                  "NOTE: Subjects with Apex Frame not annotated were labelled as -1."],
                 ['"A2" = Asymmetric AU 2. Occurs on both sides of face but stronger on one side'], []]


def write_samm_lv(root: Path, config: LongVideoSynthConfig, rng: np.random.Generator, progress) -> list[dict]:
    """SAMM_longvideos/006_1/006_1_00001.jpg (grey, 200 fps), SAMM_LongVideos_V2_Release.xlsx (tab
    FACS_Movement_Only, header on row 10) and the micro sheet SAMM_Micro_FACS_Codes_v2.xlsx (MICRO_ONLY)
    with the micro-expressions' emotions. Quirks: an apex -1, fractional macro frames, a macro onset 0."""
    spec = LONG_SPECS["samm_lv"]
    book, sheet = _workbook_sheet("FACS_Movement_Only")
    for row in SAMM_LV_NOTES:   # 9 rows of notes: the header lands on row 10
        sheet.append(row)
    sheet.append(["Subject", "Filename", "Inducement Code", "Onset", "Apex", "Offset", "Duration", "Type",
                  "Action Units", "Notes"])
    micro_book, micro_sheet = _workbook_sheet("MICRO_ONLY")
    for row in SAMM_NOTES:
        micro_sheet.append(row)
    micro_sheet.append(["Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame", "Offset Frame",
                        "Duration", "Micro", "Action Units", "Estimated Emotion", "Objective Classes", "Notes"])
    truth, rows, macro_rows = [], 0, 0
    for video in _videos(config, spec, rng):
        subject = f"{video.subject + 5:03d}"      # real SAMM subjects start at 006
        video_id = f"{subject}_{video.index + 1}"
        names = [f"{video_id}_{n:05d}.jpg" for n in range(1, video.n_frames + 1)]  # frames numbered from 1
        _render(config, spec, video, root / "SAMM_longvideos" / video_id, names, rng, progress)
        for number, event in enumerate(video.planted, start=1):
            name = f"{video_id}_{number}"
            onset, apex, offset = event.onset + 1, event.apex + 1, event.offset + 1  # frame numbers
            written = [onset, apex, offset]
            if event.type == "macro":
                macro_rows += 1
                if config.quirks and macro_rows % 2 == 1:
                    written = [onset + 0.4, apex + 0.6, offset + 0.2]   # fractional frames, as rows 11 on
            if config.quirks and rows % 7 == 1:
                written[1] = -1                                     # apex not annotated
            kind = "Micro - 1/2" if event.type == "micro" else "Macro"
            sheet.append([subject, name, video.index + 1, *written, round(written[2] - written[0] + 1, 1), kind,
                          action_units(event.emotion), None])
            if event.type == "micro":
                micro_sheet.append([subject, name, video.index + 1, onset + 2000, apex + 2000, offset + 2000,
                                    offset - onset + 1, kind, action_units(event.emotion), event.emotion,
                                    SAMM_OBJECTIVE[event.emotion], None])
            truth.append({"video": video_id, "subject": subject, "interval": name, **event.__dict__})
            rows += 1
    book.save(root / "SAMM_LongVideos_V2_Release.xlsx")
    micro_book.save(root / "SAMM_Micro_FACS_Codes_v2.xlsx")
    return truth


# --------------------------------------------------------------------------------------- CAS(ME)^2
CASME_SQ_VIDEOS = [("0101", "disgust1", "disgustingteeth"), ("0401", "anger1", "angryshouting"),
                   ("0502", "happy1", "funnybabies"), ("0102", "disgust2", "eatingworms"),
                   ("0503", "happy2", "funnydogs"), ("0402", "anger2", "unfairtreatment")]
CASME_SQ_OBJECTIVE = {"happiness": "positive", "surprise": "surprise", "disgust": "negative", "anger": "negative",
                      "fear": "negative", "sadness": "negative"}
FOLDER_NUMBERS = [15, 16, 19, 20, 21, 22, 23, 24, 25, 26, 27, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 40]


def write_casme_sq_lv(root: Path, config: LongVideoSynthConfig, rng: np.random.Generator, progress) -> list[dict]:
    """rawpic/s15/15_0101disgustingteeth/img1.jpg (colour, 30 fps) and CAS(ME)^2code_final.xlsx (the headerless
    CASFEcode_final tab, naming rule1, naming rule2). Quirk: a macro row with offset 0 (the apex ends it)."""
    spec = LONG_SPECS["casme_sq_lv"]
    book, codes = _workbook_sheet("CASFEcode_final")
    subject_rule, video_rule = book.create_sheet("naming rule1"), book.create_sheet("naming rule2")
    for code, name, _ in CASME_SQ_VIDEOS:
        video_rule.append([code, name])
    truth, macro_rows = [], 0
    for video in _videos(config, spec, rng):
        folder_no = FOLDER_NUMBERS[(video.subject - 1) % len(FOLDER_NUMBERS)] + 100 * ((video.subject - 1) // len(FOLDER_NUMBERS))
        code, name, description = CASME_SQ_VIDEOS[video.index % len(CASME_SQ_VIDEOS)]
        folder = root / "rawpic" / f"s{folder_no}" / f"{folder_no}_{code}{description}"
        _render(config, spec, video, folder, [f"img{n}.jpg" for n in range(1, video.n_frames + 1)], rng, progress)
        for number, event in enumerate(video.planted, start=1):
            onset, apex, offset = event.onset + 1, event.apex + 1, event.offset + 1
            written_offset = offset
            if config.quirks and event.type == "macro":
                macro_rows += 1
                if macro_rows % 5 == 2:
                    written_offset = 0   # offset not annotated: the adapter ends it at the apex
            emotion = normalise_emotion(event.emotion)
            codes.append([video.subject, f"{name}_{number}", onset, apex, written_offset, action_units(event.emotion),
                          CASME_SQ_OBJECTIVE.get(emotion, "others"), f"{event.type}-expression", event.emotion])
            subject_rule.append([folder_no, f"s{folder_no}", video.subject])
            truth.append({"video": f"{folder_no}_{code}", "subject": f"s{folder_no}", "interval": f"{name}_{number}",
                          **event.__dict__, "offset": event.apex if written_offset == 0 else event.offset})
    book.save(root / "CAS(ME)^2code_final.xlsx")
    return truth


LONG_WRITERS = {"samm_lv": write_samm_lv, "casme_sq_lv": write_casme_sq_lv}


def long_video_output(config: LongVideoSynthConfig, out: Path) -> Path:
    """Where ``synthesize_long_videos`` writes: out/<folder> or out/<folder>.<archive>."""
    name = LONG_SPECS[config.dataset].folder + "_long"
    return Path(out) / (name if config.archive == "none" else f"{name}.{config.archive}")


def synthesize_long_videos(config: LongVideoSynthConfig, out: Path, progress=None) -> Path:
    """Write the set into out/ as an archive (or a folder) and return its path; ``progress(1)`` after each video.

    The planted intervals are also written as ``merflow-synthetic.json`` ("truth", 0-based frame indices),
    which the tests compare with what the adapters read. Built in a temporary folder first: an interrupted
    run leaves nothing that looks finished.
    """
    from merflow.tasks.synthetic import pack

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    target = long_video_output(config, out)
    if target.exists():
        raise FileExistsError(f"{target} exists; remove it or choose another --out")
    rng = np.random.default_rng([config.seed, 20, list(LONG_SPECS).index(config.dataset)])
    with tempfile.TemporaryDirectory(dir=out, prefix=".synth-") as work:
        root = Path(work) / target.name.split(".")[0]
        root.mkdir()
        truth = LONG_WRITERS[config.dataset](root, config, rng, progress)
        manifest = {k: v for k, v in config.to_dict().items() if v or k not in ("face_image", "emotions")}
        (root / MANIFEST).write_text(json.dumps(manifest | {"truth": truth}, indent=1, sort_keys=True, default=str))
        if config.archive == "none":
            shutil.move(str(root), target)
        else:
            partial = target.with_name(f".{target.name}.partial")
            pack(root, partial, config.archive)
            partial.replace(target)
    return target
