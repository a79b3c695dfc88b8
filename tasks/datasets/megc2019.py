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


def read_list_rows(path: Path) -> pd.DataFrame:
    """The official list (either format) row by row: catalog-style ids and label names (``COLUMNS``), and the
    ids as the list writes them (``listed_subject``, ``listed_id``) with the row's line in the file (``line``,
    1-based), for matching files named by the list (tasks/imports.py)."""
    first = Path(path).read_text().splitlines()[0].lower()
    if first.startswith("dataset,"):
        raw, header = pd.read_csv(path, dtype=str)[["dataset", "sub", "filename_o", "label"]], 1
    else:
        raw, header = pd.read_csv(path, header=None, dtype=str).iloc[:, :4], 0
    raw.columns = ["database", "subject", "filename", "label"]
    rows = []
    for line, (database, subject, filename, label) in enumerate(raw.itertuples(index=False), start=1 + header):
        if any(not isinstance(v, str) or not v.strip() for v in (database, subject, filename, label)):
            raise ValueError(f"{path} line {line}: a row lacks its dataset, subject, clip or label")
        if database.strip().lower() not in DATASETS or label.strip() not in {str(k) for k in LABELS}:
            raise ValueError(f"{path} line {line}: dataset {database!r} or label {label!r} is not one of the "
                             f"list's ({', '.join(DATASETS)}; labels {', '.join(map(str, LABELS))})")
        dataset = DATASETS[database.strip().lower()]
        listed_subject, listed_id = subject.strip(), filename.strip()
        subject, filename = listed_subject, listed_id
        if dataset == "samm":
            subject = f"{int(subject):03d}"
        elif dataset == "smic_hs":
            subject, filename = _unpad_smic(subject), _unpad_smic(filename)
        rows.append((dataset, subject, filename, LABELS[int(label)], listed_subject, listed_id, line))
    return pd.DataFrame(rows, columns=[*COLUMNS, "listed_subject", "listed_id", "line"])


def read_official_list(path: Path) -> pd.DataFrame:
    """The official list (either format) with catalog-style ids and label names."""
    return read_list_rows(path)[COLUMNS]


def composite_from_annotations(annotations: Iterable[Annotation]) -> pd.DataFrame:
    """The composite rows that merflow's MEGC2019 mapping gives for these annotations."""
    rows = []
    for ann in annotations:
        label = megc2019_label(ann.dataset, ann.subject, ann.sample_id, normalise_emotion(ann.emotion_raw))
        if label is not None and not ann.is_macro:
            rows.append((ann.dataset, ann.subject, ann.sample_id, label))
    return pd.DataFrame(rows, columns=COLUMNS)


OFFICIAL_FILE = "combined_3class_gt.csv"


def official_list_path(explicit: str | Path | None = None, environ: dict | None = None) -> Path:
    """The official list to check against: ``explicit``, else $MERFLOW_REFERENCE/megc2019/combined_3class_gt.csv.

    The list is reference data and not shipped with merflow: without either, a clear error.
    """
    import os

    environ = os.environ if environ is None else environ
    if explicit:
        path = Path(explicit)
    elif environ.get("MERFLOW_REFERENCE"):
        path = Path(environ["MERFLOW_REFERENCE"]) / "megc2019" / OFFICIAL_FILE
    else:
        raise FileNotFoundError(f"no official MEGC2019 list: pass --official PATH/{OFFICIAL_FILE} "
                                "(or set MERFLOW_REFERENCE to a folder holding megc2019/" + OFFICIAL_FILE + ")")
    if not path.is_file():
        raise FileNotFoundError(f"official MEGC2019 list {path} not found: pass --official PATH/{OFFICIAL_FILE}")
    return path


def check_catalog(samples: pd.DataFrame, official: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Every difference between a catalog's ``label_megc2019`` rows and the official list.

    Returns (differences, absent): one row per difference (dataset, subject, sample_id, official,
    catalog, problem: ``missing`` (in the list, not a MEGC2019 row of the catalog), ``extra`` (a
    catalog row the list does not hold) or ``label``), and the datasets the catalog holds no sample
    of at all (their official rows are not listed one by one).
    """
    rows = samples[samples["label_megc2019"].notna()]
    ours = {(r.dataset, r.subject, r.sample_id): r.label_megc2019 for r in rows.itertuples()}
    theirs = {(r.dataset, r.subject, r.sample_id): r.label for r in official.itertuples()}
    present = set(samples["dataset"])
    absent = sorted(set(official["dataset"]) - present)
    differences = []
    for key in sorted(set(ours) | set(theirs)):
        if key[0] in absent:
            continue
        mine, official_label = ours.get(key), theirs.get(key)
        if mine == official_label:
            continue
        problem = "missing" if mine is None else "extra" if official_label is None else "label"
        differences.append((*key, official_label, mine, problem))
    columns = ["dataset", "subject", "sample_id", "official", "catalog", "problem"]
    return pd.DataFrame(differences, columns=columns, dtype=object), absent
