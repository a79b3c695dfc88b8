"""Writers of synthetic datasets in the real datasets' folder layouts and annotation sheets.

Each writer lays out one dataset under a folder, exactly as the real archive unpacks (names, frame
numbering, sheet tabs, header rows, column order, colour or grey, frame size at ``scale``), with
the known quirks of the real data when ``quirks`` is on:

- an apex given as '/' (CASME II, CASME), an apex outside onset..offset (CASME II, SAMM),
- a clip holding two expressions, one sheet row each (CASME),
- frames missing from a clip (CASME II, SAMM), an offset of 0 (CAS(ME)^2, CAS(ME)^3), CK+ sequences without a label,
- a clip letter in the wrong case and an emotion spelt with a capital (CAS(ME)^3),
- a stray non-image file in a clip folder, and the archive unpacking one folder deeper (all).

Layouts follow the datasets' documentation and the loaders in public code; each writer's docstring gives
its layout. The adapters in tasks/datasets/ read them back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from openpyxl import Workbook

from merflow.tasks.labels import normalise_emotion
from merflow.tasks.synthetic.expressions import EMOTION_AUS, render_clip
from merflow.tasks.synthetic.faces import subject_identity


@dataclass(frozen=True)
class DatasetSpec:
    """A real dataset's top folder, frame size, colour, frame rate and emotion counts, which the writer copies."""

    folder: str                     # the top folder the archive unpacks to (one level above the real layout)
    frame_size: tuple[int, int]     # (H, W) of the real frames
    colour: bool
    fps: float
    emotions: dict[str, int]        # the real dataset's emotion counts: synthetic samples follow these proportions
    identity_offset: int            # so that subject 1 of two datasets are different people


SPECS: dict[str, DatasetSpec] = {
    "casme2": DatasetSpec("CASME2", (480, 640), True, 200.0,
                          {"others": 99, "disgust": 63, "happiness": 32, "repression": 27, "surprise": 25,
                           "sadness": 7, "fear": 2}, 0),
    "samm": DatasetSpec("SAMM_v1", (650, 960), False, 200.0,
                        {"Anger": 57, "Other": 26, "Happiness": 26, "Surprise": 15, "Contempt": 12, "Disgust": 9,
                         "Fear": 8, "Sadness": 6}, 100),
    "smic": DatasetSpec("SMIC", (480, 640), True, 100.0, {"negative": 70, "positive": 51, "surprise": 43}, 200),
    "casme": DatasetSpec("CASME", (480, 640), True, 60.0,
                         {"tense": 69, "disgust": 44, "repression": 38, "surprise": 21, "happiness": 9,
                          "sadness": 6, "contempt": 3, "fear": 2}, 300),
    "casme_sq": DatasetSpec("CASME_sq", (480, 640), True, 30.0,
                            {"disgust": 16, "happiness": 15, "surprise": 10, "anger": 8, "fear": 4, "pain": 2,
                             "sadness": 2, "helpless": 1}, 400),
    "ckplus": DatasetSpec("CK+", (490, 640), False, 30.0,
                          {"anger": 45, "contempt": 18, "disgust": 59, "fear": 25, "happiness": 69, "sadness": 28,
                           "surprise": 83}, 500),
    # CAS(ME)^3 part A: 1280x720 colour at 30 fps; the real label sheet's counts ('Others' counted with 'others').
    "casme3": DatasetSpec("CASME3", (720, 1280), True, 30.0,
                          {"disgust": 250, "surprise": 187, "others": 161, "fear": 86, "anger": 64, "sad": 57,
                           "happy": 55}, 600),
}

Progress = Callable[[int], None] | None


@dataclass
class Plan:
    """One synthetic sample before rendering: who, what, and where its frames are numbered."""

    subject: int
    emotion: str
    n_frames: int
    first: int       # number of the clip's first frame file
    onset: int       # indices into the clip, 0-based
    apex: int
    offset: int
    face_image: str | None = None  # a face photo every subject is made from (faces.subject_identity)

    def number(self, index: int) -> int:
        """The frame file number of the clip's frame at 0-based index."""
        return self.first + index


def emotion_list(spec: DatasetSpec, n: int, rng: np.random.Generator) -> list[str]:
    """n emotions in the real proportions (largest remainder), shuffled."""
    counts = spec.emotions
    total = sum(counts.values())
    exact = {e: n * c / total for e, c in counts.items()}
    quota = {e: int(v) for e, v in exact.items()}
    for e in sorted(exact, key=lambda e: exact[e] - quota[e], reverse=True)[: n - sum(quota.values())]:
        quota[e] += 1
    emotions = [e for e, q in quota.items() for _ in range(q)]
    rng.shuffle(emotions)
    return emotions


def plan_samples(spec: DatasetSpec, subjects: int, total: int, rng: np.random.Generator,
                 macro: bool = False) -> list[Plan]:
    """Samples spread round-robin over subjects, with short clips (the real ones are longer;
    merflow only ever uses onset, apex and the frames between)."""
    plans = []
    for index, emotion in enumerate(emotion_list(spec, total, rng)):
        n_frames = int(rng.integers(12, 19))
        if macro:  # CK+: neutral first frame, peak at the last
            onset, apex, offset = 0, n_frames - 1, n_frames - 1
        else:
            onset = int(rng.integers(1, 3))
            offset = n_frames - int(rng.integers(1, 3))
            apex = int(rng.integers(onset + 3, offset - 2))
        plans.append(Plan(subject=index % subjects + 1, emotion=emotion, n_frames=n_frames,
                          first=int(rng.integers(1, 400)), onset=onset, apex=apex, offset=offset))
    return plans


def render(spec: DatasetSpec, plan: Plan, scale: float, seed: int, rng: np.random.Generator,
           macro: bool = False) -> np.ndarray:
    """The plan's clip as uint8 frames at the dataset's frame size times scale, colour or grey as the dataset."""
    identity = subject_identity(spec.identity_offset + plan.subject, seed, plan.face_image)
    size = tuple(max(32, int(round(s * scale / 2)) * 2) for s in spec.frame_size)
    return render_clip(identity, normalise_emotion(plan.emotion), plan.n_frames, plan.onset, plan.apex, plan.offset,
                       size, spec.colour, rng, macro=macro)


def action_units(emotion: str) -> str:
    """The AU code a sheet gives for an emotion ('4' where the emotion has none of its own)."""
    return EMOTION_AUS[normalise_emotion(emotion)] or "4"


def write_frames(folder: Path, frames: np.ndarray, names: list[str], skip: set[int] = frozenset()) -> None:
    """Write each frame under folder with its name (an image file), leaving out the indices in skip; OSError if one fails."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, (frame, name) in enumerate(zip(frames, names)):
        if index in skip:
            continue
        image = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR) if frame.ndim == 3 else frame
        if not cv2.imwrite(str(folder / name), image):
            raise OSError(f"could not write {folder / name}")


def _workbook_sheet(title: str) -> tuple[Workbook, object]:
    book = Workbook()
    sheet = book.active
    sheet.title = title
    return book, sheet


def _pick_quirk_rows(n: int, count: int, rng: np.random.Generator) -> list[int]:
    return [int(i) for i in rng.choice(n, size=min(count, n), replace=False)] if n else []


# ---------------------------------------------------------------------------------------- CASME II
def write_casme2(root: Path, plans: list[Plan], scale: float, seed: int, rng, quirks: bool, progress: Progress):
    """CASME II: CASME2_RAW_selected/sub01/EP02_01f/img46.jpg (onset..offset) and CASME2-coding-20140508.xlsx."""
    spec = SPECS["casme2"]
    slash_apex, outside_apex, gappy, stray = _pick_quirk_rows(len(plans), 4, rng) + [None] * max(0, 4 - len(plans))
    book, sheet = _workbook_sheet("Sheet1")
    # The 2014 original keeps two blank columns (C and G).
    sheet.append(["Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None,
                  "Action Units", "Estimated Emotion"])
    episode = {}
    for index, plan in enumerate(plans):
        subject = f"{plan.subject:02d}"
        episode[plan.subject] = episode.get(plan.subject, 0) + 1
        sample_id = f"EP{episode[plan.subject]:02d}_{index % 9 + 1:02d}" + ("f" if index % 3 == 0 else "")
        numbers = [plan.number(i) for i in range(plan.n_frames)]
        frames = render(spec, plan, scale, seed, rng)
        clip = root / "CASME2_RAW_selected" / f"sub{subject}" / sample_id
        # RAW_selected holds onset..offset only.
        keep = range(plan.onset, plan.offset + 1)
        skip = {plan.onset + 2} if quirks and index == gappy else set()
        write_frames(clip, frames[keep.start:keep.stop], [f"img{numbers[i]}.jpg" for i in keep],
                     {i - keep.start for i in skip})
        if quirks and index == stray:
            (clip / "Thumbs.db").write_bytes(b"\x00stray file left by a file browser")
        apex = numbers[plan.apex]
        if quirks and index == slash_apex:
            apex = "/"
        elif quirks and index == outside_apex:
            apex = numbers[plan.offset] + 5
        sheet.append([subject, sample_id, None, numbers[plan.onset], apex, numbers[plan.offset], None,
                      action_units(plan.emotion), plan.emotion])
        progress and progress(1)
    book.create_sheet("Sheet2")
    book.create_sheet("Sheet3")
    book.save(root / "CASME2-coding-20140508.xlsx")


# -------------------------------------------------------------------------------------------- SAMM
SAMM_NOTES = [
    ["SAMM Dataset - Master FACS Codes", None, None, None, "(Note to the users: If you're using SAMM, please cite: "
     "Davison, A. K., Lansley, C., Costen, N., Tan, K., & Yap, M. H. (2016).)"],
    [],
    ["9/9/17 - New updates with Emotional and Objective Classes. For details please refer to: "],
    [None, None, None, None, "(Note to the users: if you're using the emotional or objective classes, please cite ...)"],
    [],
    ["Symbol Key:"],
    ['"/" = or'],
    ['"?" = some AU\'s continue for a while and have unclear offset'],
    [],
    ["AU Help:"],
    ['"L2 or R2" = Unilateral AU 2 on left side of face / right side of face'],
    ['"A2" = Asymmetric AU 2. Occurs on both sides of face but stronger on one side'],
    [],
]
SAMM_OBJECTIVE = {"Happiness": 1, "Surprise": 2, "Anger": 3, "Disgust": 4, "Contempt": 4, "Fear": 5,
                  "Sadness": 6, "Other": 7}


def write_samm(root: Path, plans: list[Plan], scale: float, seed: int, rng, quirks: bool, progress: Progress):
    """SAMM: SAMM/006/006_1_2/006_05562.jpg (grey) and SAMM_Micro_FACS_Codes_v2.xlsx (MICRO_ONLY, header on row 14)."""
    spec = SPECS["samm"]
    outside_apex, gappy, stray = _pick_quirk_rows(len(plans), 3, rng) + [None] * max(0, 3 - len(plans))
    book, sheet = _workbook_sheet("MICRO_ONLY")
    for row in SAMM_NOTES:  # 13 rows of notes: the header lands on row 14
        sheet.append(row)
    sheet.append(["Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame", "Offset Frame", "Duration",
                  "Micro", "Action Units", "Estimated Emotion", "Objective Classes", "Notes"])
    clips = {}
    for index, plan in enumerate(plans):
        subject = f"{plan.subject + 5:03d}"  # real SAMM subjects start at 006
        inducement = index % 7 + 1
        clips[(subject, inducement)] = clips.get((subject, inducement), 0) + 1
        sample_id = f"{subject}_{inducement}_{clips[(subject, inducement)]}"
        plan.first *= 10  # SAMM numbers frames through the whole recording: 006_05562.jpg
        numbers = [plan.number(i) for i in range(plan.n_frames)]
        frames = render(spec, plan, scale, seed, rng)
        skip = {plan.apex - 1} if quirks and index == gappy else set()
        clip = root / "SAMM" / subject / sample_id
        write_frames(clip, frames, [f"{subject}_{n:05d}.jpg" for n in numbers], skip)
        if quirks and index == stray:
            (clip / "notes.txt").write_text("stray file\n")
        apex = numbers[plan.apex] if not (quirks and index == outside_apex) else numbers[plan.onset] - 3
        onset, offset = numbers[plan.onset], numbers[plan.offset]
        sheet.append([subject, sample_id, inducement, onset, apex, offset, offset - onset + 1, "Micro - 1/2",
                      action_units(plan.emotion), plan.emotion, SAMM_OBJECTIVE[plan.emotion], None])
        progress and progress(1)
    book.save(root / "SAMM_Micro_FACS_Codes_v2.xlsx")


# -------------------------------------------------------------------------------------------- SMIC
SMIC_PREFIX = {"negative": "ne", "positive": "po", "surprise": "sur"}


def write_smic(root: Path, plans: list[Plan], scale: float, seed: int, rng, quirks: bool, progress: Progress):
    """SMIC-HS: SMIC_all_raw/HS/s2/micro/surprise/s2_sur_02/image<6 digits>.bmp, labels in folder names only."""
    spec = SPECS["smic"]
    stray = _pick_quirk_rows(len(plans), 1, rng)
    counts = {}
    hs = root / "SMIC_all_raw" / "HS"
    for index, plan in enumerate(plans):
        subject = f"s{plan.subject}"  # unpadded, as on disk
        key = (subject, plan.emotion)
        counts[key] = counts.get(key, 0) + 1
        sample_id = f"{subject}_{SMIC_PREFIX[plan.emotion]}_{counts[key]:02d}"
        plan.first *= 100
        frames = render(spec, plan, scale, seed, rng)
        # SMIC clips are cut at onset and offset: keep only those frames.
        keep = range(plan.onset, plan.offset + 1)
        clip = hs / subject / "micro" / plan.emotion / sample_id
        write_frames(clip, frames[keep.start:keep.stop], [f"image{plan.number(i):06d}.bmp" for i in keep])
        if quirks and index in stray:
            (clip / "desktop.ini").write_text("[.ShellClassInfo]\n")
        progress and progress(1)
    if quirks and plans:
        # non_micro/ holds clips without a micro-expression in the real archive: not samples.
        write_frames(hs / "s1" / "non_micro" / "s1_non_01", render(spec, plans[0], scale, seed, rng)[:3],
                     [f"image{n:06d}.bmp" for n in (1, 2, 3)])


# ------------------------------------------------------------------------------------------- CASME
def write_casme(root: Path, plans: list[Plan], scale: float, seed: int, rng, quirks: bool, progress: Progress):
    """CASME: CASME_raw_selected/sub01/EP01_12/EP01_12-<n>.jpg and CASME-coding-20130201.xlsx."""
    spec = SPECS["casme"]
    slash_apex, stray = _pick_quirk_rows(len(plans), 2, rng) + [None] * max(0, 2 - len(plans))
    book, sheet = _workbook_sheet("Sheet1")
    sheet.append(["Subject", "Filename", "OnsetF", "ApexF1", "ApexF2", "OffsetF", "Onset", "Total", "AU", "Emotion"])
    # A clip holding two expressions (the real sheet has such clips: sub1 EP01_12 at onsets 73 and 163):
    # the last sample of a subject seen before is a second expression in that subject's previous clip,
    # its frames numbered after the first's in the same folder.
    repeated = next((i for i in range(len(plans) - 1, 0, -1)
                     if any(p.subject == plans[i].subject for p in plans[:i])), None) if quirks else None
    episode, last_clip = {}, {}
    for index, plan in enumerate(plans):
        episode[plan.subject] = episode.get(plan.subject, 0) + 1
        sample_id = f"EP{episode[plan.subject]:02d}_{index % 12 + 1}"
        if index == repeated:
            sample_id, previous = last_clip[plan.subject]
            plan.first = previous.first + previous.n_frames + 5
        last_clip[plan.subject] = (sample_id, plan)
        numbers = [plan.number(i) for i in range(plan.n_frames)]
        # Section A (sub01-07) was filmed at 1280x720, section B at 640x480.
        section_spec = spec if plan.subject > 7 else DatasetSpec(**{**spec.__dict__, "frame_size": (720, 1280)})
        frames = render(section_spec, plan, scale, seed, rng)
        clip = root / "CASME_raw_selected" / f"sub{plan.subject:02d}" / sample_id
        write_frames(clip, frames, [f"{sample_id}-{n}.jpg" for n in numbers])
        if quirks and index == stray:
            (clip / "Thumbs.db").write_bytes(b"\x00")
        onset, offset = numbers[plan.onset], numbers[plan.offset]
        apex = "\\" if quirks and index == slash_apex else numbers[plan.apex]
        onset_ms = round((numbers[plan.apex] - onset) / spec.fps * 1000)
        total_ms = round((offset - onset + 1) / spec.fps * 1000)
        sheet.append([plan.subject, sample_id, onset, apex, "\\", offset, onset_ms, total_ms,
                      action_units(plan.emotion), plan.emotion])
        progress and progress(1)
    book.save(root / "CASME-coding-20130201.xlsx")


# --------------------------------------------------------------------------------------- CAS(ME)^2
CASME_SQ_VIDEOS = [("0101", "disgust1", "disgustingteeth"), ("0102", "disgust2", "eatingworms"),
                   ("0401", "anger1", "angryshouting"), ("0402", "anger2", "unfairtreatment"),
                   ("0502", "happy1", "funnybabies"), ("0503", "happy2", "funnydogs"),
                   ("0505", "happy3", "comedyclip"), ("0507", "happy4", "laughingcrowd"),
                   ("0508", "happy5", "funnyfails")]
CASME_SQ_CLASS = {"happiness": "positive", "surprise": "surprise", "disgust": "negative", "anger": "negative",
                  "fear": "negative", "sadness": "negative", "pain": "negative", "helpless": "others"}


def write_casme_sq(root: Path, plans: list[Plan], scale: float, seed: int, rng, quirks: bool, progress: Progress):
    """Each plan is one expression in a long video; a video folder holds its expressions one after another."""
    spec = SPECS["casme_sq"]
    zero_offset, stray = _pick_quirk_rows(len(plans), 2, rng) + [None] * max(0, 2 - len(plans))
    book, codes = _workbook_sheet("CASFEcode_final")
    subject_rule, video_rule = book.create_sheet("naming rule1"), book.create_sheet("naming rule2")
    for code, name, _ in CASME_SQ_VIDEOS:
        video_rule.append([code, name])
    real_numbers = [15, 16, 19, 20, 21, 22, 23, 24, 25, 26, 27, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 40]
    next_frame: dict[tuple[int, str], int] = {}
    per_video: dict[tuple[int, str], int] = {}
    for index, plan in enumerate(plans):
        folder_no = real_numbers[(plan.subject - 1) % len(real_numbers)] + 100 * ((plan.subject - 1) // len(real_numbers))
        code, video, description = CASME_SQ_VIDEOS[index % len(CASME_SQ_VIDEOS)]
        key = (plan.subject, video)
        plan.first = next_frame.get(key, 1)
        next_frame[key] = plan.first + plan.n_frames
        per_video[key] = per_video.get(key, 0) + 1
        micro = index % 3 != 2   # two in three micro, the rest macro, so both types appear
        frames = render(spec, plan, scale, seed, rng)
        clip = root / "rawpic" / f"s{folder_no}" / f"{folder_no}_{code}{description}"
        write_frames(clip, frames, [f"img{plan.number(i)}.jpg" for i in range(plan.n_frames)])
        if quirks and index == stray:
            (clip / "Thumbs.db").write_bytes(b"\x00")
        offset = 0 if quirks and index == zero_offset else plan.number(plan.offset)
        codes.append([plan.subject, f"{video}_{per_video[key]}", plan.number(plan.onset), plan.number(plan.apex),
                      offset, action_units(plan.emotion), CASME_SQ_CLASS[plan.emotion],
                      "micro-expression" if micro else "macro-expression", plan.emotion])
        subject_rule.append([folder_no, f"s{folder_no}", plan.subject])
        progress and progress(1)
    book.save(root / "CAS(ME)^2code_final.xlsx")


# --------------------------------------------------------------------------------------------- CK+
CKPLUS_CODES = {"anger": 1, "contempt": 2, "disgust": 3, "fear": 4, "happiness": 5, "sadness": 6, "surprise": 7}


def write_ckplus(root: Path, plans: list[Plan], scale: float, seed: int, rng, quirks: bool, progress: Progress):
    """CK+: cohn-kanade-images/S005/001/S005_001_00000001.png, labels in Emotion/S005/001/*_emotion.txt."""
    spec = SPECS["ckplus"]
    unlabelled = set(_pick_quirk_rows(len(plans), max(1, len(plans) // 8), rng)) if quirks else set()
    sequences = {}
    for index, plan in enumerate(plans):
        subject = f"S{plan.subject * 5:03d}"
        sequences[subject] = sequences.get(subject, 0) + 1
        sequence = f"{sequences[subject]:03d}"
        plan.first = 1
        frames = render(spec, plan, scale, seed, rng, macro=True)
        names = [f"{subject}_{sequence}_{plan.number(i):08d}.png" for i in range(plan.n_frames)]
        write_frames(root / "cohn-kanade-images" / subject / sequence, frames, names)
        if index not in unlabelled:
            label_dir = root / "Emotion" / subject / sequence
            label_dir.mkdir(parents=True, exist_ok=True)
            last = plan.number(plan.n_frames - 1)
            (label_dir / f"{subject}_{sequence}_{last:08d}_emotion.txt").write_text(
                f"   {CKPLUS_CODES[plan.emotion]:.7e}\n")
        progress and progress(1)


# ---------------------------------------------------------------------------------------- CAS(ME)^3
CASME3_OBJECTIVE = {"happy": "VII", "surprise": "II", "disgust": "III", "anger": "IV", "fear": "V", "sad": "VI",
                    "others": "VII"}
CASME3_LETTERS = "abcdefghijklm"


def write_casme3(root: Path, plans: list[Plan], scale: float, seed: int, rng, quirks: bool, progress: Progress):
    """CAS(ME)^3 part A: part_A/data/part_A/spNO.1/b/color/175.jpg (colour frames by index, depth frames in
    depth/ beside color/) and cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx, tab 'label' (frame numbers as text, as
    the real sheet writes them); empty tabs Sheet1 and Sheet3.

    Quirks: a recording holding two micro-expressions (the real sheet's spNO.1 e at onsets 62 and 96), an
    'Others' spelt with a capital, a clip letter written in capitals whose folder is lower case (the real sheet's
    spNO.14 'J'), an offset of 0 (spNO.40 e, rows 798 and 800 of the real sheet: corrected there by meb's errata,
    quarantined here, where no erratum names it), a stray file in a frame folder."""
    spec = SPECS["casme3"]
    zero_offset, stray = _pick_quirk_rows(len(plans), 2, rng) + [None] * max(0, 2 - len(plans))
    others_cap = next((i for i, p in enumerate(plans) if p.emotion == "others" and i != zero_offset), None)
    book, sheet = _workbook_sheet("label")
    sheet.append(["Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class", "emotion"])
    # The second expression of a recording: the last sample of a subject seen before joins its previous recording.
    repeated = next((i for i in range(len(plans) - 1, 0, -1)
                     if any(p.subject == plans[i].subject for p in plans[:i])), None) if quirks else None
    recordings: dict[int, int] = {}
    letters: list[str] = []
    for index, plan in enumerate(plans):
        if index == repeated:
            previous = max(i for i in range(index) if plans[i].subject == plan.subject)
            letters.append(letters[previous])
            plan.first = plans[previous].first + plans[previous].n_frames + 5
        else:
            recordings[plan.subject] = recordings.get(plan.subject, 0) + 1
            letters.append(CASME3_LETTERS[(recordings[plan.subject] - 1) % len(CASME3_LETTERS)])
    # The capital letter goes to a recording of one expression (two rows of one recording share its letter).
    shared = {(plans[i].subject, letters[i]) for i in range(len(plans))
              if sum((p.subject, letter) == (plans[i].subject, letters[i]) for p, letter in zip(plans, letters)) > 1}
    capital = next((i for i in range(len(plans)) if (plans[i].subject, letters[i]) not in shared
                    and i not in (zero_offset, others_cap)), None) if quirks else None
    base = root / "part_A" / "data" / "part_A"
    for index, (plan, letter) in enumerate(zip(plans, letters)):
        subject = f"spNO.{plan.subject}"
        numbers = [plan.number(i) for i in range(plan.n_frames)]
        frames = render(spec, plan, scale, seed, rng)
        recording = base / subject / letter
        write_frames(recording / "color", frames, [f"{n}.jpg" for n in numbers])
        # Depth beside colour (16-bit PNGs in the release): never read, present so that it is passed over.
        write_frames(recording / "depth", np.zeros((1, 8, 8), np.uint16), [f"{numbers[0]}.png"])
        if quirks and index == stray:
            (recording / "color" / "Thumbs.db").write_bytes(b"\x00")
        onset, apex, offset = numbers[plan.onset], numbers[plan.apex], numbers[plan.offset]
        written_letter = letter.upper() if index == capital else letter
        emotion = "Others" if quirks and index == others_cap else plan.emotion
        sheet.append([subject, written_letter, str(onset), str(apex), str(0 if quirks and index == zero_offset
                                                                          else offset),
                      action_units(plan.emotion), CASME3_OBJECTIVE[plan.emotion], emotion])
        progress and progress(1)
    book.create_sheet("Sheet1")
    book.create_sheet("Sheet3")
    book.save(root / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx")


WRITERS = {"casme2": write_casme2, "samm": write_samm, "smic": write_smic, "casme": write_casme,
           "casme_sq": write_casme_sq, "ckplus": write_ckplus, "casme3": write_casme3}
