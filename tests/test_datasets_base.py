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
