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
