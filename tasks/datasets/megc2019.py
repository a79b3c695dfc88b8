"""The MEGC2019 composite list (CASME II + SAMM + SMIC-HS, 3 classes): reading the official list and
deriving the same rows from the datasets' own annotation.

The official ``combined_3class_gt.csv`` has no header: database, subject, filename, label
(0 negative, 1 positive, 2 surprise). Its ids differ from the folders on disk: SMIC subjects are
zero-padded there (s01, s01_ne_01) but not on disk (s1, s1_ne_01), and SAMM subjects are unpadded
(6 for folder 006). HTNet ships the same rows with a header (dataset, sub, filename_o, label, ...).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from merflow.tasks.datasets.base import Annotation
from merflow.tasks.labels import megc2019_label, normalise_emotion

LABELS = {0: "negative", 1: "positive", 2: "surprise"}
DATASETS = {"casme2": "casme2", "samm": "samm", "smic": "smic_hs"}
COLUMNS = ["dataset", "subject", "sample_id", "label"]


def _unpad_smic(text: str) -> str:
    # s01 -> s1 and s01_ne_01 -> s1_ne_01: only the subject number loses its padding.
    return re.sub(r"^s0*(\d+)", r"s\1", text)


def read_official_list(path: Path) -> pd.DataFrame:
    """The official list (either format) with catalog-style ids and label names."""
    first = Path(path).read_text().splitlines()[0].lower()
    if first.startswith("dataset,"):
        raw = pd.read_csv(path, dtype=str)[["dataset", "sub", "filename_o", "label"]]
    else:
        raw = pd.read_csv(path, header=None, dtype=str).iloc[:, :4]
    raw.columns = ["database", "subject", "filename", "label"]
    rows = []
    for database, subject, filename, label in raw.itertuples(index=False):
        dataset = DATASETS[database.strip().lower()]
        subject, filename = subject.strip(), filename.strip()
        if dataset == "samm":
            subject = f"{int(subject):03d}"
        elif dataset == "smic_hs":
            subject, filename = _unpad_smic(subject), _unpad_smic(filename)
        rows.append((dataset, subject, filename, LABELS[int(label)]))
    return pd.DataFrame(rows, columns=COLUMNS)


def composite_from_annotations(annotations: Iterable[Annotation]) -> pd.DataFrame:
    """The composite rows that merflow's MEGC2019 mapping gives for these annotations."""
    rows = []
    for ann in annotations:
        label = megc2019_label(ann.dataset, ann.subject, ann.sample_id, normalise_emotion(ann.emotion_raw))
        if label is not None and not ann.is_macro:
            rows.append((ann.dataset, ann.subject, ann.sample_id, label))
    return pd.DataFrame(rows, columns=COLUMNS)
