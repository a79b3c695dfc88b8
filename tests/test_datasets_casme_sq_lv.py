"""CAS(ME)^2's long videos (tasks/datasets/casme_sq_lv.py): the real code sheet's counts and quirks, and
synthetic sets in its layout read back to their planted intervals."""

import json
from collections import Counter

from merflow.tasks.datasets import casme_sq_lv, detect_long_videos

from requires import requires_reference


@requires_reference
def test_real_code_sheet(reference):
    videos, intervals = casme_sq_lv.read_sheet(reference / "casme_sq" / "CAS(ME)^2code_final.xlsx")
    assert Counter(i.type for i in intervals) == {"macro": 300, "micro": 57}
    # 95 (subject, video) pairs hold an interval (the dataset's 97 videos: the others have none), 22 people.
    assert len(videos) == 95 and len({v.subject for v in videos}) == 22
    assert not any(i.problems for i in intervals)
    # Offset 0 (44 rows, the first on row 3): the apex ends the interval, as SOFTNet and MEAN read it.
    ended_at_apex = [i for i in intervals if i.offset_source == "apex"]
    assert len(ended_at_apex) == 44 and all(i.offset == i.apex for i in ended_at_apex)
    by_row = {i.where.rsplit(" ", 1)[1]: i for i in intervals}
    assert by_row["3"].interval_id == "anger2_1" and by_row["3"].offset == 2163
    assert by_row["309"].apex is None                          # apex 0: not annotated
    assert by_row["203"].emotion_raw == "happiness"            # "happyiness" in the sheet
    assert by_row["1"].video_key == "casme_sq_lv/s15/15_0401" and by_row["1"].label == "negative"
    assert Counter(i.label for i in intervals if i.type == "micro") == \
        Counter(i.label for i in intervals if i.type == "micro" and i.label in ("negative", "positive", "surprise",
                                                                                 "others"))


def test_synthetic_casme_sq_lv_reads_back_its_planted_intervals(long_video_folders):
    root = long_video_folders["casme_sq_lv"]
    assert detect_long_videos(root) == ["casme_sq_lv"]
    result = casme_sq_lv.read(root)
    assert not result.problems
    truth = json.loads((root / "merflow-synthetic.json").read_text())["truth"]
    assert sorted((i["video_id"], i["interval_id"], i["type"], i["onset"], i["offset"]) for i in result.intervals) == \
        sorted((t["video"], t["interval"], t["type"], t["onset"], t["offset"]) for t in truth)
    assert len(result.videos) == 4 and {v["subject_key"] for v in result.videos} == {"casme_sq/s15", "casme_sq/s16"}
    assert Counter(i["offset_source"] for i in result.intervals)["apex"] >= 1   # an offset-0 row


def test_the_clip_layouts_long_videos_are_read_too(synth_folders):
    """The short CAS(ME)^2 layout holds whole videos as well: every interval of its sheet is one."""
    result = casme_sq_lv.read(synth_folders["casme_sq"])
    assert len(result.intervals) == 12 and not result.problems
