"""SMIC adapter (HS, VIS, NIR): labels live only in folder names; there is no apex.

Layout: ``SMIC_all_raw/HS/s2/micro/surprise/s2_sur_02/image022389.bmp``; subject and clip folders
are unpadded. HS is filmed at 100 fps, VIS and NIR at 25 fps. The clip folders hold onset..offset,
so onset is the first frame, offset the last, and the apex is left for the feature stage to spot.
"""

from __future__ import annotations

import re
from pathlib import Path

from merflow.tasks.datasets.base import AdapterResult, Annotation, build_samples, list_frames, walk_dirs

KIND = ("smic_hs", "smic_vis", "smic_nir")
FPS = {"HS": 100.0, "VIS": 25.0, "NIR": 25.0}
LABEL_FOLDERS = ("negative", "positive", "surprise")
# The clip prefix repeats the label: s2_sur_02, s3_po_05, s1_ne_01.
_PREFIX_LABEL = {"ne": "negative", "po": "positive", "sur": "surprise"}
_SUBJECT_DIR = re.compile(r"^s\d+$", re.IGNORECASE)
_CLIP = re.compile(r"^s\d+_([a-z]+)_\d+$", re.IGNORECASE)


def modality_roots(root: Path) -> list[tuple[str, Path]]:
    """(modality, folder) for every HS/VIS/NIR folder whose subjects hold a micro/ folder."""
    found = []
    for folder in walk_dirs(root):
        modality = folder.name.upper()
        if modality in FPS and any(_SUBJECT_DIR.match(s.name) and (s / "micro").is_dir()
                                   for s in folder.iterdir() if s.is_dir()):
            found.append((modality, folder))
    return found


def detect(root: Path) -> bool:
    """True when root holds an HS, VIS or NIR folder with s*/micro/ clips."""
    return bool(modality_roots(root))


def read(root: Path) -> AdapterResult:
    """One sample per SMIC clip folder, labelled by its micro/<label>/ folder; no apex (SMIC annotates none)."""
    roots = modality_roots(root)
    if not roots:
        raise FileNotFoundError(f"no SMIC HS/VIS/NIR folder with s*/micro/<label>/ clips under {root}")
    annotations = []
    for modality, folder in roots:
        for subject_dir in sorted(p for p in folder.iterdir() if p.is_dir() and _SUBJECT_DIR.match(p.name)):
            # non_micro/ holds clips without a micro-expression: they are not samples.
            micro = subject_dir / "micro"
            for label_dir in sorted(p for p in micro.iterdir() if p.is_dir()) if micro.is_dir() else []:
                for clip in sorted(p for p in label_dir.iterdir() if p.is_dir()):
                    annotations.append(_annotation(modality, subject_dir.name, label_dir.name, clip))
    return build_samples(annotations, root=root)


def _annotation(modality: str, subject: str, label_folder: str, clip: Path) -> Annotation:
    frames = sorted(list_frames(clip))
    ann = Annotation(
        dataset=f"smic_{modality.lower()}", subject=subject.lower(), sample_id=clip.name, clip_dir=clip,
        onset=frames[0] if frames else None, apex=None, offset=frames[-1] if frames else None,
        fps=FPS[modality], emotion_raw=label_folder.lower(), subject_group="smic",
        where=f"{modality}/{subject}/micro/{label_folder}/{clip.name}",
    )
    prefix = _CLIP.match(clip.name)
    folder_label = label_folder.lower()
    if folder_label not in LABEL_FOLDERS:
        ann.problems.append(("unknown_label", f"label folder {label_folder!r} is not one of {LABEL_FOLDERS}"))
    elif prefix and _PREFIX_LABEL.get(prefix.group(1).lower(), folder_label) != folder_label:
        ann.problems.append(("label_conflict", f"clip {clip.name} sits in folder {label_folder}"))
    if not frames:
        ann.problems.append(("missing_frames", f"no frames in {clip}"))
    return ann
