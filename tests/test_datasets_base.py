from pathlib import Path

import cv2
import numpy as np

from merflow.tasks.datasets.base import (
    Annotation,
    build_samples,
    frame_number,
    list_frames,
    parse_frame,
    split_repeated_clips,
)


def test_parse_frame_cells():
    assert parse_frame(46) == 46 and parse_frame("46") == 46 and parse_frame(566.4) == 566
    for missing in ("/", "\\", "", None, float("nan"), -1, "-1", "n/a"):
        assert parse_frame(missing) is None, missing


def test_frame_numbers_from_real_names():
    assert frame_number("img46.jpg") == 46
    assert frame_number("reg_img46.jpg") == 46
    assert frame_number("006_05562.jpg") == 5562
    assert frame_number("image022389.bmp") == 22389
    assert frame_number("S005_001_00000011.png") == 11
    assert frame_number("EP01_12-7.jpg") == 7


def _clip(folder: Path, numbers, broken=()) -> Path:
    folder.mkdir(parents=True)
    for n in numbers:
        path = folder / f"img{n}.jpg"
        if n in broken:
            path.write_bytes(b"\xff\xd8 not really a jpeg")
        else:
            cv2.imwrite(str(path), np.full((8, 8), n, np.uint8))
    (folder / "readme.txt").write_text("stray")
    return folder


def _annotation(clip, sample_id="EP01", **kw) -> Annotation:
    fields = dict(dataset="casme2", subject="sub01", sample_id=sample_id, clip_dir=clip, onset=1, apex=3, offset=5,
                  fps=200.0, emotion_raw="happiness")
    return Annotation(**(fields | kw))


def test_every_unusable_row_is_quarantined_with_its_reason(tmp_path):
    good = _clip(tmp_path / "good", range(1, 6))
    gappy = _clip(tmp_path / "gappy", [1, 2, 4, 5])
    broken = _clip(tmp_path / "broken", range(1, 6), broken={3})
    result = build_samples([
        _annotation(good),
        _annotation(good),                                    # duplicate id
        _annotation(good, "EP02", apex=9),                    # apex outside
        _annotation(good, "EP03", emotion_raw="bliss"),       # unknown label
        _annotation(gappy, "EP04"),                           # missing frame 3
        _annotation(broken, "EP05"),                          # apex frame cannot be decoded
        _annotation(tmp_path / "nowhere", "EP06"),            # no folder
        _annotation(good, "EP07", onset=5, offset=1, apex=None),
        _annotation(good, "EP08", apex=None),                 # fine: apex left to be spotted
    ])
    assert [s["sample_id"] for s in result.samples] == ["EP01", "EP02", "EP08"]
    outside, missing = result.samples[1], result.samples[2]
    # An apex outside onset..offset is kept: the sheet's apex in apex_annotated, apex left to be spotted.
    assert (outside["apex"], outside["apex_annotated"], outside["apex_source"]) == (None, 9, "outside_clip")
    assert (missing["apex"], missing["apex_annotated"], missing["apex_source"]) == (None, None, "missing")
    assert result.samples[0]["apex_annotated"] == result.samples[0]["apex"] == 3
    assert [(p["sample_id"], p["reason"]) for p in result.problems] == [
        ("EP01", "duplicate_id"), ("EP03", "unknown_label"),
        ("EP04", "missing_frames"), ("EP05", "unreadable_frame"), ("EP06", "missing_clip"), ("EP07", "bad_interval")]
    assert list_frames(good) == {n: f"img{n}.jpg" for n in range(1, 6)}


def test_a_clip_with_several_expressions_gives_one_sample_each(tmp_path):
    clip = _clip(tmp_path / "EP01_12", range(1, 21))
    rows = [_annotation(clip, "EP01_12", onset=11, apex=13, offset=18, emotion_raw="tense"),
            _annotation(clip, "EP01_12", onset=1, apex=3, offset=8, emotion_raw="repression"),
            _annotation(clip, "EP01_12", onset=1, apex=4, offset=8),    # same clip, same onset: a duplicate
            _annotation(clip, "EP02_01", onset=1, apex=3, offset=8)]    # a clip of its own keeps its id
    result = build_samples(split_repeated_clips(rows))
    assert [(s["sample_id"], s["clip_id"], s["onset"], s["emotion"]) for s in result.samples] == [
        ("EP01_12@11", "EP01_12", 11, "tense"), ("EP01_12@1", "EP01_12", 1, "repression"),
        ("EP02_01", "EP02_01", 1, "happiness")]
    assert result.samples[0]["frame_files"] == [f"img{n}.jpg" for n in range(11, 19)]
    assert [(p["sample_id"], p["reason"]) for p in result.problems] == [("EP01_12@1", "duplicate_id")]
    # The ids depend on the sheet's content, not its row order.
    again = build_samples(split_repeated_clips([_annotation(clip, "EP01_12", onset=1, apex=3, offset=8),
                                                _annotation(clip, "EP01_12", onset=11, apex=13, offset=18)]))
    assert [s["sample_id"] for s in again.samples] == ["EP01_12@1", "EP01_12@11"]


def test_the_sheet_datasets_share_one_read():
    from merflow.tasks.datasets import ADAPTERS, casme, casme2, casme_sq, samm
    from merflow.tasks.datasets.base import SheetDataset

    for module in (casme, casme2, casme_sq, samm):
        assert isinstance(module.ADAPTER, SheetDataset) and module.ADAPTER.kind == module.KIND
        assert module.read == module.ADAPTER.read and module.detect == module.ADAPTER.detect
        assert ADAPTERS[module.KIND] is module
    assert casme.ADAPTER.repeated_clips and casme_sq.ADAPTER.repeated_clips and not casme2.ADAPTER.repeated_clips


# ------------------------------------------------------------------------------ hostile and broken sheets
# A synthetic CASME II folder (tasks/synthetic, no quirks) whose coding sheet each test edits with openpyxl: the
# cases of issue 21. Columns of the sheet: A Subject, B Filename, D OnsetFrame, E ApexFrame, F OffsetFrame.
import shutil  # noqa: E402
import zipfile  # noqa: E402

import pytest  # noqa: E402
from openpyxl import load_workbook  # noqa: E402

SHEET = "CASME2-coding-20140508.xlsx"


@pytest.fixture(scope="module")
def casme2_folder(tmp_path_factory) -> Path:
    from merflow.configs.synth import SynthConfig
    from merflow.tasks.synthetic import synthesize

    return synthesize(SynthConfig("casme2", subjects=3, samples_per_subject=2, archive="none", quirks=False, seed=5,
                                  scale=0.1), tmp_path_factory.mktemp("hostile"))


@pytest.fixture
def source(casme2_folder, tmp_path) -> Path:
    """A fresh copy of the folder: the tests edit its sheet and folders."""
    return Path(shutil.copytree(casme2_folder, tmp_path / "source"))


def _edit(source: Path, cells: dict[str, object]) -> list[list]:
    """Set sheet cells ({"B3": value}); returns the sheet's rows (header first) as they are now."""
    book = load_workbook(source / SHEET)
    for where, value in cells.items():
        book.active[where] = value
    book.save(source / SHEET)
    return [list(row) for row in book.active.iter_rows(values_only=True)]


def _read(source: Path):
    from merflow.tasks.datasets import casme2

    return casme2.read(source)


def _problems(result) -> dict[str, tuple[str, str]]:
    return {p["detail"].rsplit("row ", 1)[-1].rstrip(")"): (p["reason"], p["detail"]) for p in result.problems}


def test_a_sheet_path_never_leaves_the_source_and_a_clip_keeps_its_sheet_subject(source, tmp_path):
    rows = _edit(source, {})
    subjects = [row[0] for row in rows[1:]]
    elsewhere = tmp_path / "elsewhere" / "EP09_09"  # frames outside the source, named like a clip
    shutil.copytree(next((source / "CASME2_RAW_selected").glob("sub*/*")), elsewhere)
    other = next(i for i, s in enumerate(subjects, start=2) if s != subjects[0])  # a row of another subject
    _edit(source, {"B2": str(elsewhere),                                          # an absolute path
                   f"B{other}": f"../sub{subjects[0]}/{rows[1][1]}"})              # another subject's clip
    result = _read(source)
    problems = _problems(result)
    assert problems["2"][0] == "bad_id" and "path separator" in problems["2"][1], problems
    assert problems[str(other)][0] == "bad_id", problems
    assert len(result.samples) == len(rows) - 3  # every other row is a sample
    for sample in result.samples:
        assert Path(sample["clip_dir"]).resolve().is_relative_to(source.resolve())
        assert Path(sample["clip_dir"]).parent.name == sample["subject"]  # the sheet's subject, its folder


def test_a_link_out_of_the_source_is_quarantined_and_a_linked_frame_is_not_read(source, tmp_path):
    rows = _edit(source, {})
    clips = source / "CASME2_RAW_selected"
    outside = Path(shutil.copytree(clips / f"sub{rows[1][0]}" / rows[1][1], tmp_path / "outside"))
    shutil.rmtree(clips / f"sub{rows[1][0]}" / rows[1][1])
    (clips / f"sub{rows[1][0]}" / rows[1][1]).symlink_to(outside, target_is_directory=True)  # row 2: a linked clip
    third = clips / f"sub{rows[2][0]}" / rows[2][1]
    frame = sorted(third.glob("*.jpg"))[1]
    frame.unlink()
    frame.symlink_to(next(outside.glob("*.jpg")))                                  # row 3: one linked frame
    inside = clips / f"sub{rows[3][0]}" / rows[3][1]
    linked = inside.with_name("linked-inside")
    inside.rename(linked)
    inside.symlink_to(linked, target_is_directory=True)                             # row 4: a link that stays inside
    problems = _problems(_read(source))
    assert problems["2"][0] == "outside_source" and str(outside) not in problems.get("4", ("", ""))[1]
    assert problems["3"][0] == "missing_frames" and frame.name.removeprefix("img").removesuffix(".jpg") in problems["3"][1]
    assert "4" not in problems, problems


def test_broken_frame_cells_are_quarantined_by_row_and_never_sink_the_archive(source, tmp_path):
    from merflow.storage import catalog
    from merflow.tasks import ingest

    rows = _edit(source, {"E2": 1e12,       # apex beyond what the catalog stores: was a pyarrow int32 error
                          "F3": 1e12,       # offset: was a list of every missing frame number until memory ran out
                          "E4": -5,         # was "not annotated"
                          "D5": "twelve",   # was "not annotated"
                          "F6": 2_000_000_000})  # an offset within int32, far past the clip: counted, not listed
    problems = _problems(_read(source))
    assert problems["2"][0] == problems["3"][0] == problems["4"][0] == problems["5"][0] == "bad_frame", problems
    assert "ApexFrame" in problems["2"][1] and "OffsetFrame" in problems["3"][1] and "-5" in problems["4"][1]
    assert problems["6"][0] == "missing_frames" and f"of {2_000_000_000 - rows[5][3] + 1} frames" in problems["6"][1]
    # The whole ingest path (adapters, then the catalog's Parquet) takes the archive, its good row included.
    catalog_dir = tmp_path / "catalog"
    prepared = ingest.prepared_source(str(source), "0" * 64, "folder", source)  # a folder is read in place
    datasets, samples, quarantined = ingest.read(prepared, ingest.IngestConfig())
    catalog.merge_source(catalog_dir, ingest.source_row(prepared, datasets, ingest.IngestConfig()), samples, quarantined)
    assert len(catalog.read_samples(catalog_dir)) == len(rows) - 1 - 5
    assert sorted(catalog.read_quarantine(catalog_dir)["reason"]) == ["bad_frame"] * 4 + ["missing_frames"]


def test_a_formula_is_read_as_its_saved_value_or_quarantined_and_a_row_without_id_is_not_dropped(source):
    rows = _edit(source, {})
    _edit(source, {"B2": '=CONCAT("EP","99")', "B3": f'=CONCAT("{rows[2][1]}","")', "E4": "=D4+1", "B5": None})
    # B3 as Excel saves it: the formula with its value (openpyxl writes none: put it into the sheet's XML).
    _save_formula_value(source / SHEET, "B3", rows[2][1])
    result = _read(source)
    problems = _problems(result)
    assert problems["2"][0] == "formula_cell" and "CONCAT" in problems["2"][1], problems
    assert problems["4"][0] == "formula_cell" and "ApexFrame" in problems["4"][1]
    assert problems["5"][0] == "bad_id" and "sample id None is empty" in problems["5"][1]
    assert "3" not in problems and rows[2][1] in {s["sample_id"] for s in result.samples}, "the saved value is read"
    assert len(result.samples) + len(result.problems) == len(rows) - 1  # every row is a sample or quarantined


def _save_formula_value(path: Path, cell: str, value: str) -> None:
    """Give a formula cell the value Excel would have saved with it (openpyxl saves formulas without one)."""
    import re

    with zipfile.ZipFile(path) as book:
        parts = {name: book.read(name) for name in book.namelist()}
    sheet = "xl/worksheets/sheet1.xml"
    xml, count = re.subn(rf'<c r="{cell}"><f>(.*?)</f><v ?/>(</v>)?</c>'.encode(),
                         rf'<c r="{cell}" t="str"><f>\1</f><v>{value}</v></c>'.encode(), parts[sheet])
    assert count == 1, parts[sheet][:2000]
    parts[sheet] = xml
    with zipfile.ZipFile(path, "w") as book:
        for name, data in parts.items():
            book.writestr(name, data)
