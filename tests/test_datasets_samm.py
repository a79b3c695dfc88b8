from collections import Counter

from merflow.tasks.datasets import detect_datasets, samm
from merflow.tasks.datasets.base import build_samples

from requires import requires_reference


@requires_reference
def test_real_sheet_counts(reference):
    rows = samm.read_sheet(reference / "samm" / "SAMM_Micro_FACS_Codes_v2.xlsx")
    assert len(rows) == 159
    assert len({r.subject for r in rows}) == 29
    assert rows[0].subject == "006" and rows[0].sample_id == "006_1_2" and rows[0].where.endswith("row 15")
    assert Counter(r.emotion_raw for r in rows)["Anger"] == 57


@requires_reference
def test_real_apex_outside_rows_are_read_as_written(reference):
    rows = {r.sample_id: r for r in samm.read_sheet(reference / "samm" / "SAMM_Micro_FACS_Codes_v2.xlsx")}
    assert rows["028_4_1"].apex == 1143 and rows["028_4_1"].offset == 1134
    assert rows["032_3_1"].apex == 1930 and rows["032_3_1"].onset == 4896
    result = build_samples(rows.values())  # no clip folders: only missing_clip, apex outside is no reason
    assert Counter(p["reason"] for p in result.problems) == {"missing_clip": 159}


def test_synthetic_samm(synth_folders):
    root = synth_folders["samm"]
    assert detect_datasets(root) == ["samm"]
    result = samm.read(root)
    assert Counter(p["reason"] for p in result.problems) == {"missing_frames": 1}
    assert len(result.samples) == 11
    # The row whose apex lies outside onset..offset is kept, its apex to be spotted.
    outside = [s for s in result.samples if s["apex_source"] == "outside_clip"]
    assert len(outside) == 1 and outside[0]["apex"] is None
    assert not outside[0]["onset"] <= outside[0]["apex_annotated"] <= outside[0]["offset"]
    assert all(s["subject"] >= "006" for s in result.samples)
