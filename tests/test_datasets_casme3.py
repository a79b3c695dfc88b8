"""The CAS(ME)^3 part A adapter on the real label sheet and on a synthetic archive in the distribution's layout;
its class sets on the real sheet; LOSO with the floor end to end on a synthetic set."""

from collections import Counter
from pathlib import Path

import pytest

from merflow.tasks.datasets import casme3, detect_datasets
from merflow.tasks.datasets.base import split_repeated_clips
from merflow.tasks.labels import CLASS_SETS, normalise_emotion

from requires import requires_reference

SHEET = Path("casme3") / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx"


@requires_reference
def test_the_real_sheet_reads_whole_with_meb_s_errata_and_the_papers_class_counts(reference):
    rows = casme3.read_sheet(reference / SHEET)
    assert len(rows) == 860 and not any(r.problems for r in rows)
    assert len({r.subject for r in rows}) == 94
    corrected = {r.where.split(" label row ")[1].split(" ")[0]: (r.onset, r.apex, r.offset)
                 for r in rows if "corrected" in r.where}
    assert corrected == {"130": (112, 123, 358), "710": (5, 5, 34), "751": (2647, 2668, 2694), "752": (1, 1, 25),
                         "798": (1812, 1824, 1845), "800": (2327, 2363, 2403)}
    assert all(r.onset <= r.apex <= r.offset for r in rows)  # no interval left broken after the errata
    emotions = [normalise_emotion(r.emotion_raw) for r in rows]
    counts = {name: Counter(CLASS_SETS[name].label("casme3", e) for e in emotions) for name in
              ("casme3_7", "casme3_4", "casme3_3")}
    assert counts["casme3_7"] == {"disgust": 250, "surprise": 187, "others": 161, "fear": 86, "anger": 64,
                                  "sadness": 57, "happiness": 55}
    assert counts["casme3_4"] == {"negative": 457, "surprise": 187, "others": 161, "positive": 55}
    assert counts["casme3_3"] == {"negative": 457, "surprise": 187, "positive": 55, None: 161}
    # A recording holding several micro-expressions: one sample each, by onset (spNO.1 e at 62 and 96).
    assert [(r.sample_id, r.onset) for r in split_repeated_clips(rows) if (r.subject, r.clip) == ("spNO.1", "e")] \
        == [("e@62", 62), ("e@96", 96)]


def test_a_synthetic_archive_reads_with_its_quirks(synth_folders):
    root = synth_folders["casme3"]
    assert detect_datasets(root) == ["casme3"]
    result = casme3.read(root)
    assert Counter(p["reason"] for p in result.problems) == {"bad_interval": 1}  # the offset of 0
    samples = {s["sample_key"]: s for s in result.samples}
    assert len(samples) == 11
    repeated = [k for k in samples if "@" in k]
    assert len(repeated) == 2 and len({samples[k]["clip_dir"] for k in repeated}) == 1  # one recording, two samples
    # The letter the sheet writes in capitals is found in its lower-case folder and named as the folder.
    assert all(s["clip_id"] == s["clip_id"].lower() for s in samples.values())
    assert all(s["clip_dir"].endswith("/color") and all(f.endswith(".jpg") for f in s["frame_files"])
               for s in samples.values())  # colour frames only: depth/ beside them is not read
    assert "Others" in {s["emotion_raw"] for s in samples.values()} and \
        {s["emotion"] for s in samples.values()} <= set(CLASS_SETS["casme3_7"].classes)
    assert {s["fps"] for s in samples.values()} == {30.0}


@pytest.mark.integration
@pytest.mark.usefixtures("prefect_backend")
def test_loso_on_each_class_set_runs_end_to_end(tmp_path, capsys):
    """synth -> ingest -> features -> `merflow train --model nearest-centroid --protocol loso --dataset casme3`."""
    from merflow.configs.synth import SynthConfig
    from merflow.flows.cli import main
    from merflow.flows.features import features_flow
    from merflow.flows.ingest import ingest_flow
    from merflow.storage import catalog, results
    from merflow.tasks.synthetic import synthesize

    source = synthesize(SynthConfig("casme3", subjects=4, samples=24, archive="none", seed=2, scale=0.15, quirks=False,
                                    emotions=("disgust", "happy", "surprise", "others")), tmp_path)
    ingest_flow(sources=[str(source)], out=str(tmp_path / "catalog"))
    samples = catalog.read_samples(tmp_path / "catalog")
    assert samples["label_casme3_7"].notna().all() and samples["label_casme3_3"].isna().sum() == 6  # others
    features_flow(catalog_dir=str(tmp_path / "catalog"), store=str(tmp_path / "f.zarr"), size=28, n_workers=1,
                  sequence_length=0)
    for class_set, classes in (("casme3_7", 4), ("casme3_4", 4), ("casme3_3", 3)):
        assert main(["train", "--model", "nearest-centroid", "--protocol", "loso", "--dataset", "casme3", "--class-set",
                     class_set, "--catalog", str(tmp_path / "catalog"), "--store", str(tmp_path / "f.zarr"),
                     "--out", str(tmp_path / "results"), "--run", class_set]) == 0
        predictions = results.read_table(tmp_path / "results", "predictions", run=class_set)
        test = predictions[predictions["split"] == "test"]
        assert test["fold"].nunique() == 4 and test["label"].nunique() == classes
