from collections import Counter

from merflow.tasks.datasets import casme2, detect_datasets

from requires import requires_reference

REAL_2014_EMOTIONS = {"others": 99, "disgust": 63, "happiness": 32, "repression": 27, "surprise": 25,
                      "sadness": 7, "fear": 2}


@requires_reference
def test_2014_sheet_counts(reference):
    rows = casme2.read_sheet(reference / "casme2" / "CASME2-coding-20140508.edited.xlsx")
    assert len(rows) == 255
    assert len({r.subject for r in rows}) == 26
    assert Counter(r.emotion_raw for r in rows) == REAL_2014_EMOTIONS
    assert all(r.subject.startswith("sub") and len(r.subject) == 5 for r in rows)


@requires_reference
def test_2019_sheet_with_blank_columns_reads_the_same_rows(reference):
    old = casme2.read_sheet(reference / "casme2" / "CASME2-coding-20140508.edited.xlsx")
    new = casme2.read_sheet(reference / "casme2" / "CASME2-coding-20190701.xlsx")
    assert [(r.subject, r.sample_id, r.onset, r.offset) for r in old] == \
           [(r.subject, r.sample_id, r.onset, r.offset) for r in new]
    assert {r.objective_class for r in new} >= {"1", "7"}
    # Three sub24 rows were relabelled sadness -> surprise in 2019.
    assert Counter(r.emotion_raw for r in new)["surprise"] == 28


@requires_reference
def test_sub04_ep12_apex_is_not_annotated_in_either_sheet(reference):
    for name in ("CASME2-coding-20140508.edited.xlsx", "CASME2-coding-20190701.xlsx"):
        row = next(r for r in casme2.read_sheet(reference / "casme2" / name)
                   if (r.subject, r.sample_id) == ("sub04", "EP12_01f"))
        assert row.apex is None, name


def test_synthetic_casme2_reads_with_its_quirks(synth_folders):
    root = synth_folders["casme2"]
    assert detect_datasets(root) == ["casme2"]
    result = casme2.read(root)
    reasons = Counter(p["reason"] for p in result.problems)
    assert reasons == {"missing_frames": 1}
    assert len(result.samples) + len(result.problems) == 12
    assert sum(s["apex_source"] == "missing" for s in result.samples) == 1  # the '/' apex
    assert sum(s["apex_source"] == "outside_clip" and s["apex"] is None for s in result.samples) == 1
    for sample in result.samples:
        assert sample["n_frames"] == sample["offset"] - sample["onset"] + 1 == len(sample["frame_files"])
        assert all(f.endswith(".jpg") for f in sample["frame_files"])  # the stray Thumbs.db is not a frame
        assert sample["fps"] == 200.0
