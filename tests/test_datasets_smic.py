from collections import Counter

from merflow.tasks.datasets import detect_datasets, smic


def test_synthetic_smic(synth_folders):
    root = synth_folders["smic"]
    assert detect_datasets(root) == ["smic"]
    result = smic.read(root)
    assert result.problems == []
    assert len(result.samples) == 12  # non_micro/ clips are not samples
    assert {s["dataset"] for s in result.samples} == {"smic_hs"}
    assert all(s["apex"] is None and s["apex_source"] == "missing" for s in result.samples)
    assert all(s["subject_key"].startswith("smic/s") for s in result.samples)
    assert set(Counter(s["emotion"] for s in result.samples)) <= {"negative", "positive", "surprise"}
    assert all(s["label_megc2019"] == s["emotion"] for s in result.samples)


def test_label_folder_and_clip_prefix_must_agree(synth_folders, tmp_path):
    import shutil

    root = tmp_path / "SMIC"
    shutil.copytree(synth_folders["smic"], root)
    clip = next((root / "SMIC_all_raw" / "HS").glob("s*/micro/negative/*"))
    target = clip.parent.parent / "positive"
    target.mkdir(exist_ok=True)
    shutil.move(str(clip), target / clip.name)
    result = smic.read(root)
    assert [p["reason"] for p in result.problems] == ["label_conflict"]
