"""CAS(ME)^3 part A adapter: the label sheet joined to the frames, as the dataset is distributed.

Layout (HTNet's paths, wangzhifengharrison/HTNet @ 91cf4bd HTNet_for_three_datasets_confusion_matrix.py
``get_whole_u_v_os``: ``<root>/part_A/data/part_A/spNO.1/b/color/175.jpg``): one folder per subject
(``spNO.<n>``), one per recording (a letter ``a``..``m``), the colour frames in ``color/`` named by their
index (``<frame>.jpg``, the sheet's "JpgIndex"); the depth frames sit in the sibling ``depth/`` and are not
read. 30 fps colour (Li et al., IEEE TPAMI 2023). The sheet is ``cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx``
(jingtingEmmaLi/CAS-ME-3 annotation/partA), tab ``label``: Subject, Filename (the letter), Onset, Apex,
Offset, AU, Objective class, emotion; 860 rows, frame numbers written as text.

A recording holds several micro-expressions, one row each (spNO.1 e at onsets 62 and 96): each is a sample
``<letter>@<onset>`` (base.py ``split_repeated_clips``, as CASME's). The sheet's errors are fixed as meb fixes
them (``ERRATA``, each with its sheet row), and only where the row still holds the erroneous values, so a
corrected sheet is left alone. A clip letter whose folder differs only in case (spNO.14 'J', sheet row 61,
the one capital letter of the sheet) is found in the folder of the other case, and named as that folder.
"""

from __future__ import annotations

from pathlib import Path

from merflow.configs.names import folder_name_problem
from merflow.tasks.datasets.base import (
    Annotation,
    Cells,
    SheetDataset,
    first_row,
    header_frame,
    read_excel,
)

KIND = "casme3"
FPS = 30.0
SHEET = "label"
REQUIRED_COLUMNS = ("Subject", "Filename", "Onset", "Apex", "Offset", "emotion")
COLOUR_DIR = "color"    # the colour frames of a recording; "depth" beside it is not read

# The sheet's known errors, as meb corrects them (tvaranka/meb @ f731b0a meb/datasets/datasets.py
# Casme3A.data_frame, lines 472-475, whose rows are 0-based data rows: sheet row = meb's index + 2):
# (subject, clip, onset, apex, offset as the sheet writes them) -> (sheet row, fixed onset, apex, offset, why).
ERRATA: dict[tuple[str, str, int, int, int], tuple[int, int, int, int, str]] = {
    ("spNO.149", "d", 112, 83, 358): (130, 112, 123, 358, "apex 83 lies before onset 112; meb: apex 123"),
    ("spNO.214", "c", 5, 5, 3460): (710, 5, 5, 34, "offset 3460 (a 3456-frame micro-expression); meb: offset 34"),
    ("spNO.216", "d", 3647, 2668, 2694): (751, 2647, 2668, 2694, "onset 3647 lies after apex and offset; meb: "
                                                                  "onset 2647"),
    ("spNO.216", "e", 0, 0, 25): (752, 1, 1, 25, "onset and apex 0 (frames are numbered from 1); meb: 1"),
    ("spNO.40", "e", 1812, 1824, 0): (798, 1812, 1824, 1845, "offset 0; meb: offset 1845"),
    ("spNO.40", "e", 2327, 2363, 0): (800, 2327, 2363, 2403, "offset 0; meb: offset 2403"),
}


def read_sheet(path: Path) -> list[Annotation]:
    """The label tab's rows as annotations (clip folders not yet attached), meb's errata applied."""
    sheet = header_frame(read_excel(path, sheet_name=SHEET))
    annotations = []
    for index, row in sheet.iterrows():
        cells = Cells(row, f"{path.name} {SHEET} row {index + 1}")
        if cells.blank():
            continue
        subject, clip = cells.text("Subject"), cells.text("Filename")
        onset, apex, offset = cells.frame("Onset"), cells.frame("Apex"), cells.frame("Offset")
        fix = ERRATA.get((subject, clip, onset, apex, offset))
        where = cells.where
        if fix is not None:
            _, onset, apex, offset, why = fix
            where = f"{where} (corrected: {why})"
        annotations.append(Annotation(
            dataset=KIND, subject=subject, sample_id=clip, clip_dir=None, onset=onset, apex=apex, offset=offset,
            fps=FPS, emotion_raw=cells.text("emotion"), action_units=cells.text("AU"),
            objective_class=cells.text("Objective class"), where=where, problems=cells.problems,
        ))
    return annotations


def _clip_folder(subject_dir: Path, clip: str) -> Path | None:
    """The recording's folder: ``clip`` itself, else the one folder whose name differs from it only in case."""
    if (subject_dir / clip).is_dir():
        return subject_dir / clip
    matches = [d for d in subject_dir.iterdir() if d.is_dir() and d.name.lower() == clip.lower()] \
        if subject_dir.is_dir() else []
    return matches[0] if len(matches) == 1 else None


class Casme3(SheetDataset):
    """CAS(ME)^3 part A: the workbook with a ``label`` tab of REQUIRED_COLUMNS; colour frames under
    ``spNO.<n>/<letter>/color/``."""

    kind = KIND
    sheet_description = f"CAS(ME)^3 part A label sheet (tab {SHEET!r}, columns {', '.join(REQUIRED_COLUMNS)})"
    repeated_clips = True   # a recording holds several micro-expressions: samples <letter>@<onset>

    def is_sheet(self, path: Path, names: list[str]) -> bool:
        """True for a workbook whose ``label`` tab has CAS(ME)^3's columns."""
        return SHEET in names and set(REQUIRED_COLUMNS) <= set(first_row(path, SHEET))

    def read_sheet(self, path: Path) -> list[Annotation]:
        """The label tab's annotations (module-level ``read_sheet``)."""
        return read_sheet(path)

    def attach_clips(self, root: Path, sheet: Path, annotations: list[Annotation]) -> None:
        """Each annotation's colour frames: ``<subject>/<letter>/color`` under the first folder holding the
        subjects (part_A/data/part_A in the distribution)."""
        roots = self.clip_roots(root, annotations)
        for ann in annotations:
            if ann.problems or folder_name_problem(ann.subject) or folder_name_problem(ann.clip):
                continue  # quarantined by build_samples: never made a path
            folder = next((found for r in roots if (found := _clip_folder(r / ann.subject, ann.clip))), None)
            if folder is None:
                continue
            if folder.name != ann.clip:  # found in another case: named as the folder on disk
                if ann.clip_id is not None:
                    ann.clip_id, ann.sample_id = folder.name, f"{folder.name}@{ann.onset}"
                else:
                    ann.sample_id = folder.name
            ann.clip_dir = folder / COLOUR_DIR


ADAPTER = Casme3()
detect, read = ADAPTER.detect, ADAPTER.read
