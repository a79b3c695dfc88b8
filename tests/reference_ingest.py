"""The real annotation sheets through merflow's whole ingest path: a folder per dataset holding the real
sheet and, for every row, a clip folder with a tiny readable frame file for each frame onset..offset
(hard links to one JPEG), read by detection + adapter + build_samples + labels and merged into a
catalog on disk. Used by the tests that compare ingested catalogs with the official and survey lists."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np

from merflow.flows.ingest import prepare
from merflow.storage import catalog
from merflow.tasks import ingest
from merflow.tasks.datasets import casme2, casme_sq, samm

SHEETS = {
    "casme2_2014": ("casme2", "CASME2-coding-20140508.edited.xlsx"),
    "casme2_2019": ("casme2", "CASME2-coding-20190701.xlsx"),
    "samm": ("samm", "SAMM_Micro_FACS_Codes_v2.xlsx"),
    "casme_sq": ("casme_sq", "CAS(ME)^2code_final.xlsx"),
}


def _frames(template: Path, clip: Path, names) -> None:
    clip.mkdir(parents=True, exist_ok=True)
    for name in names:
        target = clip / name
        if not target.exists():
            os.link(template, target)


def _template(folder: Path) -> Path:
    path = folder / "frame.jpg"
    if not path.exists():
        cv2.imwrite(str(path), (np.arange(64, dtype=np.uint8).reshape(8, 8) * 4))
    return path


def dataset_folder(reference: Path, name: str, out: Path) -> Path:
    """A folder laid out as the dataset unpacks, with the real sheet and frame files for its rows."""
    subfolder, sheet_name = SHEETS[name]
    sheet = reference / subfolder / sheet_name
    root = out / name
    if root.is_dir():
        return root
    root.mkdir(parents=True)
    shutil.copy(sheet, root / sheet_name)
    template = _template(out)
    if name.startswith("casme2"):
        for row in casme2.read_sheet(sheet):
            _frames(template, root / "CASME2_RAW_selected" / row.subject / row.sample_id,
                    (f"img{n}.jpg" for n in range(row.onset, row.offset + 1)))
    elif name == "samm":
        for row in samm.read_sheet(sheet):
            _frames(template, root / "SAMM" / row.subject / row.sample_id,
                    (f"{row.subject}_{n:05d}.jpg" for n in range(row.onset, row.offset + 1)))
    else:  # CAS(ME)^2: one folder per video, rawpic/s15/15_0101<description>/img<n>.jpg
        subjects, videos = casme_sq.naming_rules(sheet)
        folders = {folder: number for number, folder in subjects.values()}
        for row in casme_sq.read_sheet(sheet):
            video = videos.get(row.sample_id.rsplit("_", 1)[0])
            if row.subject not in folders or video is None or not row.offset or row.onset is None:
                continue  # quarantined by the adapter anyway (no folder rule, offset 0)
            _frames(template, root / "rawpic" / row.subject / f"{folders[row.subject]}_{video}video",
                    (f"img{n}.jpg" for n in range(row.onset, row.offset + 1)))
    return root


def casme_stand_in(reference: Path, out: Path) -> Path:
    """CASME's coding sheet is not among the reference files: a sheet in its layout holding the rows of
    the survey's CASME.xls (Subject, Filename, OnsetF, ApexF1, Emotion; OffsetF = ApexF1 + 4, which
    the list lacks), with clip folders, so that its clips with several expressions go the ingest path."""
    import xlrd
    from openpyxl import Workbook

    root = out / "casme"
    if root.is_dir():
        return root
    root.mkdir(parents=True)
    template = _template(out)
    book = Workbook()
    sheet = book.active
    sheet.append(["Subject", "Filename", "OnsetF", "ApexF1", "ApexF2", "OffsetF", "Onset", "Total", "AU", "Emotion"])
    rows = xlrd.open_workbook(str(reference / "survey" / "CASME.xls")).sheet_by_index(0)
    for i in range(1, rows.nrows):
        subject, clip, onset, apex, emotion = rows.row_values(i)[:5]
        subject, onset, apex = int(subject), int(onset), int(apex)
        sheet.append([subject, clip, onset, apex, "\\", apex + 4, 0, 0, "4", emotion])
        _frames(template, root / "CASME_raw_selected" / f"sub{subject:02d}" / clip,
                (f"{clip}-{n}.jpg" for n in range(onset, apex + 5)))
    book.save(root / "CASME-coding.xlsx")
    return root


def smic_hs_folders(reference: Path, out: Path) -> Path:
    """SMIC-HS has no sheet: its 164 clips as the official MEGC2019 list names them (all of SMIC-HS),
    laid out as SMIC_all_raw/HS/s1/micro/negative/s1_ne_01/image000001.bmp (three frames each)."""
    from merflow.tasks.datasets import megc2019

    root = out / "smic"
    if root.is_dir():
        return root
    official = megc2019.read_official_list(reference / "megc2019" / "combined_3class_gt.csv")
    template = _template(out)
    for row in official[official["dataset"] == "smic_hs"].itertuples():
        _frames(template, root / "SMIC_all_raw" / "HS" / row.subject / "micro" / row.label / row.sample_id,
                (f"image{n:06d}.bmp" for n in (1, 2, 3)))
    return root


def ingest_catalog(reference: Path, names: list[str], out: Path) -> Path:
    """A catalog made by ingesting the folders of ``names`` one source at a time, as the flow does."""
    catalog_dir = out / ("catalog-" + "-".join(names))
    config = ingest.IngestConfig()
    for name in names:
        folder = (casme_stand_in(reference, out / "sources") if name == "casme" else
                  smic_hs_folders(reference, out / "sources") if name == "smic" else
                  dataset_folder(reference, name, out / "sources"))
        prepared = prepare(str(folder), catalog_dir)
        datasets, samples, problems = ingest.read(prepared, config)
        catalog.merge_source(catalog_dir, ingest.source_row(prepared, datasets, config), samples, problems)
    return catalog_dir
