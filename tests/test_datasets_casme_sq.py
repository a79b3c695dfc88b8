from collections import Counter

from merflow.tasks.datasets import casme_sq, detect_datasets

from requires import requires_reference


@requires_reference
def test_real_code_sheet(reference):
    path = reference / "casme_sq" / "CAS(ME)^2code_final.xlsx"
    rows = casme_sq.read_sheet(path)
    assert len(rows) == 357
    assert sum(not r.is_macro for r in rows) == 57
    assert rows[0].subject == "s15" and rows[0].sample_id == "anger1_1"
    assert sum(r.problems == [("missing_offset", "offset is 0 in the sheet: not annotated")] for r in rows) == 44
    subjects, videos = casme_sq.naming_rules(path)
    assert subjects[22] == ("40", "s40") and videos["disgust1"] == "0101"


def test_synthetic_casme_sq(synth_folders):
    root = synth_folders["casme_sq"]
    assert detect_datasets(root) == ["casme_sq"]
    result = casme_sq.read(root)
    assert Counter(p["reason"] for p in result.problems) == {"missing_offset": 1}
    assert len(result.samples) == 11
    assert {s["is_macro"] for s in result.samples} == {True, False}
    assert all("_0" in s["clip_dir"].rsplit("/", 1)[1] for s in result.samples)  # 15_0101disgustingteeth
