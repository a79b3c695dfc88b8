"""Published sample lists: keep only the catalog samples a source's own list holds (``--sample-list``).

``survey``: the lists the survey baseline's MATLAB code reads (Gong, An, Elfiky 2022; repository
wenjgong/microExpressionSurvey @ 9da5c7c4: CASME.xls, casme2.xls, samm.xls, SMIC.xls, CAS(ME)2.xls).
They are the authors' subsets of the datasets, so that the pools match the survey's: the fused 4-class surprise
pool is 112 (CASME 20 + CASME II 24 + SAMM 15 + CAS(ME)^2 10 + SMIC-HS 43), the 9-class fear pool 16.
The lists are reference data and not shipped: the user passes their folder (``--sample-lists DIR``
or ``$MERFLOW_SAMPLE_LISTS``).

- ``CASME.xls``: Subject, Filename, OnsetF, ApexF1, Emotion (189 rows; 14 clips hold 2-6 expressions,
  told apart by OnsetF, as the catalog does: ``<clip>@<onset>``).
- ``casme2.xls``: Filename, OnsetFrame, ApexFrame, Estimated Emotion, Subject (240 rows).
- ``samm.xls``: Subject, Filename, Onset Frame, Apex Frame, Estimated Emotion (157 rows).
- ``CAS(ME)2.xls``: no header; subject number, clip, onset, apex, offset, emotion (54 rows). The
  subject numbers are the code sheet's (1 = folder s15, its sheet 'naming rule1').
- ``SMIC.xls``: one column of labels, no ids (188 rows). apex4.m (lines 58-92) reads the clips of its
  16 SMIC-HS subject folders in ``dir`` order and takes the labels in that order (``TXT2(B,1)``,
  B = 1, 2, ...): its first 164 rows are SMIC-HS's (negative 70, positive 51, surprise 43), the
  other 24 are never read. The labels agree row for row with SMIC-HS sorted by zero-padded
  subject and clip names (s01/s01_ne_01, s01/s01_po_01, ..., s20/...; the MEGC2019 list's spelling),
  and disagree in 109 of 164 rows in the order of the unpadded names on disk (s1, s11, s12, ...):
  merflow pairs them in the padded order, checks every pair and keeps the samples whose label agrees.

Matching is by dataset + subject + clip, and the onset where the catalog holds several samples of
one clip (CASME). Macro-expression rows (CK+, for the macro pretraining) are kept; every other
micro-expression row that no list holds (SMIC-VIS/NIR included: the survey used HS) is left out.
Pure functions: reading the lists and filtering a catalog DataFrame.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from merflow.tasks.datasets.base import clean_text, numbered_id, parse_frame
from merflow.tasks.labels import CLASS_SETS, normalise_emotion

SAMPLE_LISTS = ("survey",)
ENVIRONMENT = "MERFLOW_SAMPLE_LISTS"
SURVEY_FILES = {"casme": "CASME.xls", "casme2": "casme2.xls", "samm": "samm.xls", "casme_sq": "CAS(ME)2.xls",
                "smic_hs": "SMIC.xls"}
# apex4.m lines 58-92: labels are read for the SMIC-HS clips only, 164 of them (SMIC-HS's size).
SMIC_HS_ROWS = 164
# CAS(ME)^2code_final.xlsx, sheet 'naming rule1': the subject numbers of the code sheet (and of the
# survey's CAS(ME)2.xls) -> subject folders. tests/test_sample_lists.py checks it against the real sheet.
CASME_SQ_SUBJECTS = {1: "s15", 2: "s16", 3: "s19", 4: "s20", 5: "s21", 6: "s22", 7: "s23", 8: "s24", 9: "s25",
                     10: "s26", 11: "s27", 12: "s29", 13: "s30", 14: "s31", 15: "s32", 16: "s33", 17: "s34",
                     18: "s35", 19: "s36", 20: "s37", 21: "s38", 22: "s40"}


class SampleListError(ValueError):
    """A sample list that cannot be used: no folder, a missing or unreadable file."""


@dataclass(frozen=True)
class ListRow:
    """One row of a sample list, in catalog terms."""

    dataset: str
    row: int                # 1-based row in the list's sheet
    subject: str | None
    clip: str | None
    onset: int | None
    emotion: str | None     # as the list spells it


def lists_folder(sample_lists: str | os.PathLike | None, name: str = "survey", environ=None) -> Path:
    """The folder holding the lists: the argument, else $MERFLOW_SAMPLE_LISTS; every file checked."""
    environ = os.environ if environ is None else environ
    if name not in SAMPLE_LISTS:
        raise SampleListError(f"unknown sample list {name!r}; known: {', '.join(SAMPLE_LISTS)}")
    given = sample_lists or environ.get(ENVIRONMENT)
    if not given:
        raise SampleListError(f"--sample-list {name} needs the folder of the survey's lists "
                              f"({', '.join(SURVEY_FILES.values())}): pass --sample-lists DIR or set {ENVIRONMENT}")
    folder = Path(given)
    if not folder.is_dir():
        raise SampleListError(f"sample list folder {folder} does not exist")
    missing = [f for f in SURVEY_FILES.values() if not (folder / f).is_file()]
    if missing:
        raise SampleListError(f"sample list folder {folder} lacks {', '.join(missing)}")
    return folder


def _cells(path: Path) -> list[list[object]]:
    """The first sheet's cells, row by row (the format is read from the content: legacy .xls or xlsx)."""
    import warnings

    try:
        with warnings.catch_warnings():  # pandas 3 deprecates its xlrd engine, the one reader of legacy .xls
            warnings.simplefilter("ignore")
            frame = pd.read_excel(path, sheet_name=0, header=None, dtype=object)
    except Exception as error:  # a broken or non-spreadsheet file: one clear line
        raise SampleListError(f"cannot read sample list {path}: {error}") from None
    return [[None if v is None or v != v else v for v in line] for line in frame.itertuples(index=False)]


def _columns(cells: list[list[object]], path: Path, wanted: tuple[str, ...]) -> dict[str, int]:
    header = [str(c).strip() for c in cells[0]] if cells else []
    missing = [w for w in wanted if w not in header]
    if missing:
        raise SampleListError(f"sample list {path.name}: no column(s) {', '.join(missing)} in its header {header}")
    return {w: header.index(w) for w in wanted}


def read_survey_lists(folder: Path) -> tuple[list[ListRow], list[str]]:
    """(the rows of the CASME, CASME II, SAMM and CAS(ME)^2 lists, SMIC.xls's labels in order)."""
    folder = Path(folder)
    rows: list[ListRow] = []
    headed = {  # dataset -> (subject, clip, onset, emotion) columns, subject as its folder is named
        "casme": (("Subject", "Filename", "OnsetF", "Emotion"), lambda v: numbered_id(v, "sub", 2)),
        "casme2": (("Subject", "Filename", "OnsetFrame", "Estimated Emotion"), lambda v: numbered_id(v, "sub", 2)),
        "samm": (("Subject", "Filename", "Onset Frame", "Estimated Emotion"), lambda v: numbered_id(v, "", 3)),
    }
    for dataset, (names, subject_id) in headed.items():
        path = folder / SURVEY_FILES[dataset]
        cells = _cells(path)
        at = _columns(cells, path, names)
        for index, line in enumerate(cells[1:], start=2):
            clip = clean_text(line[at[names[1]]])
            if clip is None:
                continue
            rows.append(ListRow(dataset, index, subject_id(line[at[names[0]]]), clip,
                                parse_frame(line[at[names[2]]]), clean_text(line[at[names[3]]])))
    path = folder / SURVEY_FILES["casme_sq"]
    for index, line in enumerate(_cells(path), start=1):  # no header row
        number, clip = parse_frame(line[0]) if line else None, clean_text(line[1]) if len(line) > 1 else None
        if number is None or clip is None:
            continue
        rows.append(ListRow("casme_sq", index, CASME_SQ_SUBJECTS.get(number, f"subject{number}"), clip,
                            parse_frame(line[2]), clean_text(line[5]) if len(line) > 5 else None))
    labels = [clean_text(line[0]) for line in _cells(folder / SURVEY_FILES["smic_hs"]) if line and clean_text(line[0])]
    return rows, labels


def smic_folder_order(samples: pd.DataFrame) -> pd.DataFrame:
    """SMIC-HS rows in the order apex4.m reads them: by zero-padded subject, then zero-padded clip name."""
    def padded(text: str) -> str:
        return re.sub(r"^s(\d+)", lambda m: f"s{int(m.group(1)):02d}", str(text))

    order = samples.assign(_subject=samples["subject"].map(padded), _clip=samples["sample_id"].map(padded))
    return order.sort_values(["_subject", "_clip"], kind="stable").drop(columns=["_subject", "_clip"])


def _match(catalog: pd.DataFrame, row: ListRow) -> pd.DataFrame:
    clip_column = "clip_id" if "clip_id" in catalog.columns else "sample_id"
    found = catalog[(catalog["dataset"] == row.dataset) & (catalog["subject"] == row.subject)
                    & (catalog[clip_column] == row.clip) & ~catalog["is_macro"].astype(bool)]
    if len(found) > 1:  # a clip holding several expressions: the onset tells them apart
        found = found[found["onset"] == row.onset]
    return found


def select(catalog: pd.DataFrame, name: str, folder: Path) -> tuple[pd.DataFrame, dict]:
    """(the catalog rows the named lists keep, in catalog order; the report). See ``select_rows``."""
    if name not in SAMPLE_LISTS:
        raise SampleListError(f"unknown sample list {name!r}; known: {', '.join(SAMPLE_LISTS)}")
    rows, smic_labels = read_survey_lists(folder)
    return select_rows(catalog, rows, smic_labels, name, str(Path(folder).resolve()))


def select_rows(catalog: pd.DataFrame, rows: list[ListRow], smic_labels: list[str], name: str = "survey",
                folder: str | None = None) -> tuple[pd.DataFrame, dict]:
    """(the catalog rows the list rows keep, in catalog order; the report: kept, unmatched, mismatches).

    Macro-expression rows always stay (CK+ pretrains the macro encoder); a micro-expression row stays
    when a list row matches it, with the list's emotion where the two differ (``_relabel``). SMIC-HS
    rows are paired with ``smic_labels`` in apex4.m's folder order. The report is plain JSON-able
    data for the run's recorded config.
    """
    keep: set[str] = set()
    relabel: dict[str, str] = {}
    unmatched, emotion_mismatches = [], []
    for row in rows:
        found = _match(catalog, row)
        if len(found) != 1:
            unmatched.append(asdict(row) | {"why": "no catalog sample" if found.empty else f"{len(found)} samples"})
            continue
        sample = found.iloc[0]
        keep.add(sample["sample_key"])
        listed = normalise_emotion(row.emotion)
        if listed != sample["emotion"]:
            emotion_mismatches.append(asdict(row) | {"sample_key": sample["sample_key"], "catalog": sample["emotion"],
                                                     "used": listed or sample["emotion"]})
            if listed is not None:
                relabel[sample["sample_key"]] = listed
    # SMIC: labels without ids, paired with SMIC-HS in apex4.m's folder order.
    hs = smic_folder_order(catalog[(catalog["dataset"] == "smic_hs") & ~catalog["is_macro"].astype(bool)])
    read_labels = smic_labels[:SMIC_HS_ROWS]
    smic_mismatches = []
    for position, (sample, label) in enumerate(zip(hs.itertuples(), read_labels), start=1):
        if normalise_emotion(label) == sample.emotion:
            keep.add(sample.sample_key)
        else:
            smic_mismatches.append({"row": position, "label": label, "sample_key": sample.sample_key,
                                    "catalog": sample.emotion})
    kept = catalog[catalog["sample_key"].isin(keep) | catalog["is_macro"].astype(bool)].copy()
    _relabel(kept, relabel)
    micro = kept[~kept["is_macro"].astype(bool)]
    report = {
        "name": name, "folder": folder,
        "kept": {d: int(n) for d, n in micro["dataset"].value_counts().sort_index().items()},
        "left_out": int((~catalog["is_macro"].astype(bool)).sum() - len(micro)),
        "unmatched": unmatched, "emotion_mismatches": emotion_mismatches,
        "smic": {"catalog_hs": int(len(hs)), "labels": len(smic_labels), "paired": min(len(hs), len(read_labels)),
                 "not_read_by_apex4": max(0, len(smic_labels) - SMIC_HS_ROWS), "mismatches": smic_mismatches},
    }
    return kept, report


def _relabel(kept: pd.DataFrame, relabel: dict[str, str]) -> None:
    """The list's emotion where it differs from the sheet's: the survey labels its samples from its own
    lists (apex4.m line 129, apex9.m line 121: casme2.xls's sub24 EP07_01, EP07_04f, EP10_03 are surprise,
    as in the 2019 CASME II sheet, where the 2014 sheet has sadness). Every class-set label follows;
    label_megc2019 does not (MEGC2019 membership is the official list's)."""
    for index in kept.index[kept["sample_key"].isin(relabel)]:
        emotion = relabel[kept.at[index, "sample_key"]]
        kept.at[index, "emotion"] = emotion
        for name, class_set in CLASS_SETS.items():
            if name != "ckplus7":
                kept.at[index, f"label_{name}"] = class_set.label(kept.at[index, "dataset"], emotion)


def apply(catalog: pd.DataFrame, name: str | None, sample_lists: str | os.PathLike | None = None,
          environ=None) -> tuple[pd.DataFrame, dict | None]:
    """``select`` when a list is named (folder from the argument or the environment); else the catalog as it is."""
    if not name:
        return catalog, None
    return select(catalog, name, lists_folder(sample_lists, name, environ))


def report_lines(report: dict) -> list[str]:
    """A short human summary of a selection report (for logs)."""
    lines = [f"sample list {report['name']}: kept " + ", ".join(f"{d} {n}" for d, n in report["kept"].items())
             + f"; {report['left_out']} catalog micro-expression samples left out"]
    if report["unmatched"]:
        lines.append(f"{len(report['unmatched'])} list rows match no catalog sample: " + ", ".join(
            f"{r['dataset']} row {r['row']} {r['subject']}/{r['clip']}" for r in report["unmatched"][:10])
            + (" ..." if len(report["unmatched"]) > 10 else ""))
    if report["emotion_mismatches"]:
        lines.append(f"{len(report['emotion_mismatches'])} list rows give another emotion than the catalog; the "
                     "list's is used (as the survey did): " + ", ".join(
                         f"{r['sample_key']} {r['catalog']} -> {r['used']}" for r in report["emotion_mismatches"][:10]))
    smic = report["smic"]
    if smic["catalog_hs"] != SMIC_HS_ROWS and smic["catalog_hs"]:
        lines.append(f"SMIC.xls: the catalog holds {smic['catalog_hs']} SMIC-HS samples, apex4.m pairs "
                     f"{SMIC_HS_ROWS} labels with its folder: pairs after a missing clip are shifted")
    if smic["mismatches"]:
        lines.append(f"SMIC.xls: {len(smic['mismatches'])} labels disagree with the SMIC-HS sample at their row; "
                     "those samples are left out")
    return lines
