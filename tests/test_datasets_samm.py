from collections import Counter

from merflow.tasks.datasets import detect_datasets, samm
from merflow.tasks.datasets.base import build_samples

from conftest import requires_reference


@requires_reference
def test_real_sheet_counts(reference):
    rows = samm.read_sheet(reference / "samm" / "SAMM_Micro_FACS_Codes_v2.xlsx")
    assert len(rows) == 159
    assert len({r.subject for r in rows}) == 29
    assert rows[0].subject == "006" and rows[0].sample_id == "006_1_2" and rows[0].where.endswith("row 15")
    assert Counter(r.emotion_raw for r in rows)["Anger"] == 57


@requires_reference
def test_real_apex_outside_rows_are_quarantined(reference):
    rows = samm.read_sheet(reference / "samm" / "SAMM_Micro_FACS_Codes_v2.xlsx")
    result = build_samples(rows)  # no clip folders: everything is quarantined, each with its reason
    reasons = {p["sample_id"]: p["reason"] for p in result.problems}
    assert reasons["028_4_1"] == reasons["032_3_1"] == "apex_outside_clip"
    assert Counter(reasons.values()) == {"missing_clip": 157, "apex_outside_clip": 2}


def test_synthetic_samm(synth_folders):
    root = synth_folders["samm"]
    assert detect_datasets(root) == ["samm"]
    result = samm.read(root)
    assert Counter(p["reason"] for p in result.problems) == {"apex_outside_clip": 1, "missing_frames": 1}
    assert len(result.samples) == 10
    assert all(s["subject"] >= "006" for s in result.samples)
