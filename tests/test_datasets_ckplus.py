from merflow.tasks.datasets import ckplus, detect_datasets


def test_synthetic_ckplus(synth_folders):
    root = synth_folders["ckplus"]
    assert detect_datasets(root) == ["ckplus"]
    result = ckplus.read(root)
    assert [p["reason"] for p in result.problems] == ["no_label"]
    assert len(result.samples) == 11
    for sample in result.samples:
        assert sample["is_macro"] and sample["apex"] == sample["offset"] == sample["onset"] + sample["n_frames"] - 1
        assert sample["label_ckplus7"] == sample["emotion"]
        assert sample["label_fused4"] is None
