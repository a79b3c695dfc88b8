"""SAMM Long Videos (tasks/datasets/samm_lv.py): the real release sheet's counts and quirks, the micro sheet's
emotions joined as MEAN joins them, and a synthetic set in its layout read back to its planted intervals."""

import json
from collections import Counter

import pytest

from merflow.tasks.datasets import detect_long_videos, samm_lv

from requires import requires_reference


@requires_reference
def test_real_release_sheet(reference):
    videos, intervals = samm_lv.read_sheet(reference / "samm_lv" / "SAMM_LongVideos_Release.xlsx",
                                           samm_lv.micro_emotions(reference / "samm"))
    assert len(videos) == 147 and len({v.subject for v in videos}) == 30
    assert Counter(i.type for i in intervals) == {"macro": 343, "micro": 159}
    assert not any(i.problems for i in intervals)
    # Emotions from the micro sheet by filename: every micro row has one (MEAN's merge keeps all 159).
    micro = [i for i in intervals if i.type == "micro"]
    assert all(i.emotion_raw for i in micro) and not any(i.emotion_raw for i in intervals if i.type == "macro")
    assert Counter(i.label for i in micro) == {"negative": 92, "others": 26, "positive": 26, "surprise": 15}
    by_id = {i.interval_id: i for i in intervals}
    # Quirks, by row: fractional frames (row 11), apex -1 (rows 76, 408: 010_1_3, 028_4_1), onset 0 (row 143).
    assert (by_id["006_1_1"].onset, by_id["006_1_1"].apex, by_id["006_1_1"].offset) == pytest.approx((566.4, 647.6, 743.2))
    assert by_id["010_1_3"].apex is None and by_id["028_4_1"].apex is None
    assert by_id["011_6_10"].onset == 0.0 and by_id["011_6_10"].where.endswith("row 143")
    assert by_id["006_1_2"].video_key == "samm_lv/006/006_1"
    # Rows 506 and 507 share the name 037_4_1 (a micro and a macro): both kept, the second named by its type.
    assert (by_id["037_4_1"].type, by_id["037_4_1@macro"].type) == ("micro", "macro")
    assert len(by_id) == 502


@requires_reference
def test_real_sheet_without_frames_quarantines_every_video(reference):
    result = samm_lv.read(reference / "samm_lv")
    assert not result.videos and not result.intervals
    assert Counter(p["reason"] for p in result.problems) == {"missing_video": 147 + 502}


def test_synthetic_samm_lv_reads_back_its_planted_intervals(long_video_folders):
    root = long_video_folders["samm_lv"]
    assert detect_long_videos(root) == ["samm_lv"]
    result = samm_lv.read(root)
    assert not result.problems
    truth = json.loads((root / "merflow-synthetic.json").read_text())["truth"]
    assert sorted((i["interval_id"], i["type"], i["onset"], i["offset"]) for i in result.intervals) == \
        sorted((t["interval"], t["type"], t["onset"], t["offset"]) for t in truth)
    assert {v["fps"] for v in result.videos} == {200.0} and all(v["first_frame_number"] == 1 for v in result.videos)
    micro = [i for i in result.intervals if i["type"] == "micro"]
    assert micro and all(i["label"] in ("negative", "positive", "surprise", "others") for i in micro)
    assert {i["apex_source"] for i in result.intervals} >= {"annotated", "missing"}   # an apex -1 row
    assert any(i["onset_sheet"] % 1 for i in result.intervals)                          # a fractional row
