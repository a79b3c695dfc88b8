"""CK+ adapter (macro-expressions, for the macro encoder's pretraining).

Layout: ``cohn-kanade-images/S005/001/S005_001_00000001.png``; labels in
``Emotion/S005/001/S005_001_00000011_emotion.txt``, one float 0-7. A sequence runs from neutral to
the peak, so onset is the first frame and apex and offset are the last.
"""

from __future__ import annotations

import re
from pathlib import Path

from merflow.tasks.datasets.base import AdapterResult, Annotation, build_samples, list_frames, walk_dirs

KIND = "ckplus"
FPS = 30.0  # CK+ was filmed at about 30 fps; the sequences carry no rate.
IMAGES_DIR = "cohn-kanade-images"
EMOTION_DIR = "Emotion"
EMOTION_CODES = {0: "neutral", 1: "anger", 2: "contempt", 3: "disgust", 4: "fear", 5: "happiness",
                 6: "sadness", 7: "surprise"}
_SUBJECT_DIR = re.compile(r"^S\d+$")


def find_roots(root: Path) -> tuple[Path, Path | None] | None:
    """(images folder, Emotion folder or None) of the first CK+ tree under root; None when there is none."""
    for folder in walk_dirs(root):
        if (folder / IMAGES_DIR).is_dir():
            emotions = folder / EMOTION_DIR
            return folder / IMAGES_DIR, emotions if emotions.is_dir() else None
    return None


def detect(root: Path) -> bool:
    """True when root holds a CK+ cohn-kanade-images/ folder."""
    return find_roots(root) is not None


def read_emotion(label_dir: Path | None) -> tuple[str | None, str | None]:
    """(emotion, problem) from the sequence's *_emotion.txt; label_dir None: the tree has no Emotion/ folder."""
    files = sorted(label_dir.glob("*_emotion.txt")) if label_dir is not None and label_dir.is_dir() else []
    if not files:
        # Only 327 of CK+'s 593 sequences carry an emotion label; the rest are quarantined as no_label.
        return None, "no_label"
    try:
        code = int(float(files[0].read_text().split()[0]))
    except (ValueError, IndexError):
        return None, "unknown_label"
    return EMOTION_CODES.get(code, str(code)), None


def read(root: Path) -> AdapterResult:
    """One macro-expression sample per CK+ sequence (onset the first frame, apex and offset the last); unlabelled ones quarantined."""
    roots = find_roots(root)
    if roots is None:
        raise FileNotFoundError(f"no {IMAGES_DIR}/ folder under {root}")
    images, emotions = roots
    annotations = []
    for subject_dir in sorted(p for p in images.iterdir() if p.is_dir() and _SUBJECT_DIR.match(p.name)):
        for sequence in sorted(p for p in subject_dir.iterdir() if p.is_dir()):
            frames = sorted(list_frames(sequence))
            label_dir = None if emotions is None else emotions / subject_dir.name / sequence.name
            emotion, problem = read_emotion(label_dir)
            ann = Annotation(
                dataset=KIND, subject=subject_dir.name, sample_id=f"{subject_dir.name}_{sequence.name}",
                clip_dir=sequence, onset=frames[0] if frames else None,
                apex=frames[-1] if frames else None, offset=frames[-1] if frames else None,
                fps=FPS, emotion_raw=emotion, is_macro=True,
                where=f"{IMAGES_DIR}/{subject_dir.name}/{sequence.name}",
            )
            if problem:
                ann.problems.append((problem, f"no usable {EMOTION_DIR}/{subject_dir.name}/{sequence.name}/*_emotion.txt"))
            elif not frames:
                ann.problems.append(("missing_frames", f"no frames in {sequence}"))
            annotations.append(ann)
    return build_samples(annotations, root=root)
