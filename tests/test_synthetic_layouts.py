import zipfile

import cv2
import openpyxl
import pytest

from merflow.configs.synth import SynthConfig
from merflow.tasks.synthetic import synthesize

from conftest import SCALE
from requires import requires_reference


def _header(path, sheet=None, row=1):
    book = openpyxl.load_workbook(path, read_only=True)
    ws = book[sheet] if sheet else book.worksheets[0]
    return list(next(ws.iter_rows(min_row=row, max_row=row, values_only=True)))


@requires_reference
def test_casme2_sheet_has_the_original_2014_layout(synth_folders, reference):
    real_2019 = _header(reference / "casme2" / "CASME2-coding-20190701.xlsx")
    ours = _header(synth_folders["casme2"] / "CASME2-coding-20140508.xlsx")
    assert ours == real_2019[:9]  # blank columns C and G kept; 2019 only adds 'Objective Classes'
    assert openpyxl.load_workbook(synth_folders["casme2"] / "CASME2-coding-20140508.xlsx").sheetnames == \
           ["Sheet1", "Sheet2", "Sheet3"]


@requires_reference
def test_samm_sheet_matches_the_real_one(synth_folders, reference):
    real = reference / "samm" / "SAMM_Micro_FACS_Codes_v2.xlsx"
    ours = synth_folders["samm"] / "SAMM_Micro_FACS_Codes_v2.xlsx"
    assert openpyxl.load_workbook(ours).sheetnames == ["MICRO_ONLY"]
    assert _header(ours, "MICRO_ONLY", 14) == _header(real, "MICRO_ONLY", 14)
    first = _header(ours, "MICRO_ONLY", 15)
    assert isinstance(first[0], str) and len(first[0]) == 3 and first[1].startswith(first[0] + "_")


@requires_reference
def test_casme_sq_workbook_matches_the_real_one(synth_folders, reference):
    real = openpyxl.load_workbook(reference / "casme_sq" / "CAS(ME)^2code_final.xlsx", read_only=True)
    ours = openpyxl.load_workbook(synth_folders["casme_sq"] / "CAS(ME)^2code_final.xlsx", read_only=True)
    assert ours.sheetnames == real.sheetnames
    for name in real.sheetnames:
        real_row = next(real[name].iter_rows(values_only=True))
        our_row = next(ours[name].iter_rows(values_only=True))
        assert [type(v) for v in our_row] == [type(v) for v in real_row], name


@requires_reference
def test_casme3_workbook_matches_the_real_one(synth_folders, reference):
    real = openpyxl.load_workbook(reference / "casme3" / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx", read_only=True)
    ours = openpyxl.load_workbook(synth_folders["casme3"] / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx", read_only=True)
    assert ours.sheetnames == real.sheetnames == ["label", "Sheet1", "Sheet3"]
    rows = [list(r) for r in ours["label"].iter_rows(max_row=2, values_only=True)]
    real_rows = [list(r) for r in real["label"].iter_rows(max_row=2, values_only=True)]
    assert rows[0] == real_rows[0]
    assert [type(v) for v in rows[1]] == [type(v) for v in real_rows[1]]  # frame numbers as text, as the real sheet


@pytest.mark.parametrize("dataset, pattern, channels, size", [
    ("casme2", "CASME2_RAW_selected/sub*/EP*/img*.jpg", 3, (480, 640)),
    ("samm", "SAMM/0*/0*_*_*/0*_?????.jpg", 1, (650, 960)),
    ("smic", "SMIC_all_raw/HS/s*/micro/*/s*_*_*/image??????.bmp", 3, (480, 640)),
    ("casme", "CASME_raw_selected/sub*/EP*/EP*-*.jpg", 3, None),
    ("casme_sq", "rawpic/s*/*_0*/img*.jpg", 3, (480, 640)),
    ("ckplus", "cohn-kanade-images/S*/0*/S*_0*_????????.png", 1, (490, 640)),
    ("casme3", "part_A/data/part_A/spNO.*/[a-m]/color/*.jpg", 3, (720, 1280)),
])
def test_frames_are_named_and_sized_like_the_real_ones(synth_folders, dataset, pattern, channels, size):
    frames = sorted(synth_folders[dataset].glob(pattern))
    assert frames, pattern
    image = cv2.imread(str(frames[0]), cv2.IMREAD_UNCHANGED)
    assert (image.ndim == 3) == (channels == 3)
    if size:
        assert abs(image.shape[0] - size[0] * SCALE) <= 2 and abs(image.shape[1] - size[1] * SCALE) <= 2


def test_same_seed_same_content_and_one_folder_deeper(tmp_path):
    paths = [synthesize(SynthConfig("casme2", subjects=2, samples_per_subject=2, seed=3, scale=SCALE), tmp_path / n)
             for n in ("a", "b")]
    other = synthesize(SynthConfig("casme2", subjects=2, samples_per_subject=2, seed=4, scale=SCALE), tmp_path / "c")
    contents = []
    for path in paths + [other]:
        with zipfile.ZipFile(path) as bundle:
            assert all(name.startswith("CASME2/") for name in bundle.namelist())
            contents.append({n: bundle.read(n) for n in bundle.namelist() if n.endswith(".jpg")})
    assert contents[0] == contents[1]
    assert contents[0] != contents[2]


def test_bad_options_are_refused_clearly(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset"):
        SynthConfig("casme4")  # casme3 (CAS(ME)^3) is known since issue 19
    with pytest.raises(ValueError, match="archive"):
        SynthConfig("casme2", archive="rar")
    synthesize(SynthConfig("ckplus", subjects=1, samples_per_subject=1, scale=SCALE), tmp_path)
    with pytest.raises(FileExistsError):
        synthesize(SynthConfig("ckplus", subjects=1, samples_per_subject=1, scale=SCALE), tmp_path)
