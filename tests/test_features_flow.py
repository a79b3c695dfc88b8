"""The features flow end to end: synthetic archives -> catalog -> real LocalCluster -> Zarr store."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from merflow.flows.cli import main
from merflow.flows.features import features_flow
from merflow.flows.ingest import ingest_flow
from merflow.storage import catalog
from merflow.storage.features import FeatureReader, FeatureStore
from merflow.tasks.synthetic import SynthConfig, synthesize

from conftest import SCALE

pytestmark = pytest.mark.usefixtures("prefect_backend")


@pytest.fixture(scope="module")
def catalog_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("features")
    sources = [synthesize(SynthConfig("casme2", subjects=4, samples=24, seed=5, scale=SCALE, archive="none"), out),
               synthesize(SynthConfig("smic", subjects=2, samples=6, seed=5, scale=SCALE, archive="none"), out),
               synthesize(SynthConfig("samm", subjects=2, samples=6, seed=5, scale=SCALE, archive="none"), out)]
    ingest_flow(sources=[str(s) for s in sources], out=str(out / "catalog"))
    return out / "catalog"


@pytest.fixture(scope="module")
def store(catalog_dir) -> tuple[str, dict]:
    url = str(catalog_dir.parent / "features.zarr")
    result = features_flow(catalog_dir=str(catalog_dir), store=url, shard_size=4, n_workers=2)
    return url, result


def _readers(url: str) -> dict[str, FeatureReader]:
    feature_store = FeatureStore(url)
    return {g["dataset"]: FeatureReader(feature_store, g["name"]) for g in feature_store.groups()}


def test_every_catalog_sample_has_features_of_the_right_shape(catalog_dir, store):
    url, result = store
    samples = catalog.read_samples(catalog_dir)
    readers = _readers(url)
    assert set(readers) == set(samples["dataset"])
    for dataset, reader in readers.items():
        expected = set(samples.loc[samples["dataset"] == dataset, "sample_key"])
        assert set(reader.table()["sample_key"]) == expected
        keys = reader.sample_keys
        batch = reader.load(keys, ("onset", "apex", "diff", "flow"))
        assert batch["onset"].shape == (len(keys), 3, 80, 80) and batch["onset"].dtype == np.uint8
        assert batch["diff"].dtype == np.float32 and np.abs(batch["diff"]).max() <= 2.0
        assert batch["flow"].shape == (len(keys), 4, 80, 80)
        assert np.all(batch["flow"][:, 3] >= 0)  # strain is a magnitude
        np.testing.assert_allclose(batch["flow"][:, 2], np.hypot(batch["flow"][:, 0], batch["flow"][:, 1]), atol=1e-4)
        assert reader.attributes["config"]["motion"]["algorithm"] == "farneback"
    assert set(readers["smic_hs"].table()["apex_source"]) == {"spotted"}
    assert set(readers["casme2"].table()["apex_source"]) == {"annotated", "spotted"}  # the '/' apex is spotted
    assert result["shards_computed"] == sum(-(-len(r.table()) // 4) for r in readers.values())


def test_faces_are_found_and_every_frame_shares_the_box(store):
    url, _ = store
    for reader in _readers(url).values():
        table = reader.table()
        assert {face["detector"] for face in table["face"]} == {"yunet"}


def test_brows_moving_up_show_as_upward_flow(catalog_dir, store):
    url, _ = store
    samples = catalog.read_samples(catalog_dir)
    surprise = samples.loc[(samples["dataset"] == "casme2") & (samples["emotion"] == "surprise"), "sample_key"].tolist()
    assert surprise
    flow = _readers(url)["casme2"].load(surprise, ("flow",))["flow"]
    v = flow[:, 1]
    brows, mouth = v[:, 14:34, 20:60].mean(), v[:, 52:72, 20:60].mean()
    assert brows < -0.05, brows            # v < 0 is upward: image rows grow downward
    assert brows < mouth - 0.05


def test_rerun_computes_nothing_and_changes_nothing(catalog_dir, store):
    url, _ = store
    files = {p: p.stat().st_mtime_ns for p in Path(url).rglob("*") if p.is_file()}
    result = features_flow(catalog_dir=str(catalog_dir), store=url, shard_size=4, n_workers=2)
    assert result["shards_computed"] == 0 and result["shards_skipped"] > 0
    assert {p: p.stat().st_mtime_ns for p in Path(url).rglob("*") if p.is_file()} == files


def test_bad_frames_are_quarantined_and_the_rest_goes_on(catalog_dir, tmp_path):
    broken_catalog = tmp_path / "catalog"
    shutil.copytree(catalog_dir, broken_catalog)
    samples = catalog.read_samples(broken_catalog)
    casme2 = samples[(samples["dataset"] == "casme2") & samples["apex"].notna()].reset_index(drop=True)
    moved = {}
    for i, row in casme2.head(4).iterrows():
        clip = tmp_path / "clips" / str(i)
        shutil.copytree(row["clip_dir"], clip)
        moved[row["sample_key"]] = clip
    samples["clip_dir"] = [str(moved.get(k, d)) for k, d in zip(samples["sample_key"], samples["clip_dir"])]
    catalog.write_table(broken_catalog, catalog.SAMPLES_FILE, samples)
    rows = {key: samples.set_index("sample_key").loc[key] for key in moved}

    def frame(key, index_from_onset):
        row = rows[key]
        return moved[key] / row["frame_files"][index_from_onset]

    keys = list(moved)
    apex_of = {k: int(rows[k]["apex"] - rows[k]["onset"]) for k in keys}
    frame(keys[0], apex_of[keys[0]]).write_bytes(frame(keys[0], apex_of[keys[0]]).read_bytes()[:200])  # truncated
    cv2.imwrite(str(frame(keys[1], 0)), np.zeros((96, 128, 3), np.uint8))                              # all black
    cv2.imwrite(str(frame(keys[2], apex_of[keys[2]])), np.full((50, 60, 3), 128, np.uint8) + np.arange(60, dtype=np.uint8)[None, :, None])  # other size
    frame(keys[3], apex_of[keys[3]]).unlink()                                                          # missing
    url = str(tmp_path / "f.zarr")
    features_flow(catalog_dir=str(broken_catalog), store=url, dataset="casme2", shard_size=4, n_workers=2)
    table = _readers(url)["casme2"].table().set_index("sample_key")
    assert [table.loc[k, "reason"] for k in keys] == ["unreadable_frame", "blank_frame", "frame_size_mismatch",
                                                      "missing_frame"]
    assert (table["status"] == "ok").sum() == len(table) - 4


def _arrays_by_key(url: str, dataset: str) -> dict:
    reader = _readers(url)[dataset]
    keys = reader.sample_keys
    batch = reader.load(keys, ("onset", "apex", "diff", "flow"))
    return {k: {name: batch[name][i] for name in batch} for i, k in enumerate(keys)}


def test_a_run_killed_midway_resumes_to_the_same_content(catalog_dir, tmp_path):
    url = str(tmp_path / "killed.zarr")
    options = ["--dataset", "casme2", "--shard-size", "1", "--workers", "1", "--flow", "tvl1"]
    command = [sys.executable, "-m", "merflow.flows.cli", "features", "--catalog", str(catalog_dir), "--store", url,
               *options]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 180
    marks = []
    while time.monotonic() < deadline and process.poll() is None:
        marks = list(Path(url).glob("*/_done/*.json"))
        if len(marks) >= 2:
            break
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # the driver, its cluster and workers, mid-run
    process.wait()
    total = int((catalog.read_samples(catalog_dir)["dataset"] == "casme2").sum())
    done_at_kill = len(list(Path(url).glob("*/_done/*.json")))
    assert 2 <= done_at_kill < total, "the kill must land mid-run for this test to mean anything"

    assert main(["features", "--catalog", str(catalog_dir), "--store", url, *options]) == 0
    resumed = _arrays_by_key(url, "casme2")
    reference_url = str(tmp_path / "uninterrupted.zarr")
    features_flow(catalog_dir=str(catalog_dir), store=reference_url, dataset="casme2", shard_size=1, n_workers=1,
                  flow_algorithm="tvl1")
    uninterrupted = _arrays_by_key(reference_url, "casme2")
    assert resumed.keys() == uninterrupted.keys() and len(resumed) == total
    for key in resumed:
        for name in resumed[key]:
            np.testing.assert_array_equal(resumed[key][name], uninterrupted[key][name], err_msg=f"{key} {name}")


def test_show_draws_a_sample(store, tmp_path):
    url, _ = store
    key = _readers(url)["smic_hs"].sample_keys[0]
    assert main(["show", key, "--store", url, "--out", str(tmp_path / "s.png")]) == 0
    image = cv2.imread(str(tmp_path / "s.png"))
    assert image.shape[1] == 5 * 160 and image.shape[0] > 160
    assert main(["show", "casme2/sub99/EP01", "--store", url, "--out", str(tmp_path / "x.png")]) == 2
