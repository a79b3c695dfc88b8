from merflow.tasks.datasets import casme, detect_datasets


def test_synthetic_casme(synth_folders):
    root = synth_folders["casme"]
    assert detect_datasets(root) == ["casme"]
    result = casme.read(root)
    assert result.problems == []
    assert len(result.samples) == 12
    assert sum(s["apex_source"] == "missing" for s in result.samples) == 1  # ApexF1 '\'
    assert all(s["fps"] == 60.0 and s["subject"].startswith("sub") for s in result.samples)
    assert {s["label_casme4"] for s in result.samples} - {None} <= {"disgust", "repression", "surprise", "tense"}
    # One synthetic clip holds two expressions (as sub1 EP01_12 does at onsets 73 and 163): two samples,
    # ids <clip>@<onset>, one folder, no duplicate_id.
    shared = [s for s in result.samples if "@" in s["sample_id"]]
    assert len(shared) == 2 and len({s["clip_id"] for s in shared}) == 1 and len({s["clip_dir"] for s in shared}) == 1
    assert {s["sample_id"] for s in shared} == {f"{s['clip_id']}@{s['onset']}" for s in shared}
    assert len({s["sample_key"] for s in result.samples}) == 12
    assert all(s["clip_id"] == s["sample_id"] for s in result.samples if s not in shared)
