"""The features flow end to end: synthetic archives -> catalog -> real LocalCluster -> Zarr store."""

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from merflow.configs.synth import SynthConfig
from merflow.flows.cli import main
from merflow.flows.features import features_flow
from merflow.flows.ingest import ingest_flow
from merflow.storage import catalog
from merflow.storage.features import FeatureReader, FeatureStore, StoreDamaged, read_feature_arrays, verify_store
from merflow.tasks.synthetic import synthesize

from conftest import SCALE

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_backend")]  # flows on Dask


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
    # A row whose annotated apex lies outside onset..offset is a sample (catalog apex null): its apex is spotted.
    outside = samples.loc[samples["apex_source"] == "outside_clip", "sample_key"]
    assert set(outside.str.split("/").str[0]) == {"casme2", "samm"}
    for dataset in ("casme2", "samm"):
        table = readers[dataset].table().set_index("sample_key")
        assert set(table.loc[table.index.isin(outside), "apex_source"]) == {"spotted"}
    assert result["shards_computed"] == sum(-(-len(r.table()) // 4) for r in readers.values())


def test_the_sequences_and_landmarks_are_stored_per_sample_and_read_with_their_conventions(store):
    from merflow.configs.features import FeatureConfig
    from merflow.training.data import FeatureSource

    url, _ = store
    reader = _readers(url)["casme2"]
    assert reader.attributes["feature_schema"] == 3 and reader.config.sequence_length == 10
    assert reader.group["flow_seq"].metadata.dimension_names == ("sample", "time", "channel", "y", "x")
    source = FeatureSource(**read_feature_arrays(url, ["casme2"], FeatureConfig(shard_size=4),
                                                 ("frames", "flow_seq", "landmarks")))
    key = reader.sample_keys[0]
    assert source.require("frames", "test")[key].shape == (10, 80, 80)
    assert source.require("flow_seq", "test")[key].shape == (9, 2, 80, 80) and source.channel_index("flow_seq", "v") == 1
    landmarks = np.stack(list(source.require("landmarks", "test").values()))
    assert landmarks.shape[1:] == (7, 2) and np.isfinite(landmarks).all() and (0 <= landmarks).all() \
        and (landmarks < 80).all()
    assert source.conventions["landmarks"]["points"][5:] == ["brow_left", "brow_right"]
    assert source.conventions["frames"]["length"] == 10
    table = reader.table()
    ok = table[table["status"] == "ok"]
    assert all(s["length"] == 10 and s["frames"] >= 8 for s in ok["sequence"])  # synthetic clips: 8-17 frames
    assert {m["source"] for m in ok["landmarks"]} == {"detector"}


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


@pytest.fixture(scope="module")
def uninterrupted_tvl1(catalog_dir, tmp_path_factory) -> dict:
    """CASME II's TV-L1 features (one sample per shard) from a run that nothing interrupted."""
    url = str(tmp_path_factory.mktemp("uninterrupted") / "tvl1.zarr")
    # No sequence: its T - 1 TV-L1 flows a sample would make each shard ten times slower, and resuming is the point.
    features_flow(catalog_dir=str(catalog_dir), store=url, dataset="casme2", shard_size=1, n_workers=2,
                  flow_algorithm="tvl1", sequence_length=0)
    return _arrays_by_key(url, "casme2")


def test_a_run_killed_midway_resumes_to_the_same_content(catalog_dir, tmp_path, uninterrupted_tvl1):
    url = str(tmp_path / "killed.zarr")
    options = ["--dataset", "casme2", "--shard-size", "1", "--workers", "1", "--flow", "tvl1", "--sequence-length", "0"]
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
    uninterrupted = uninterrupted_tvl1
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


# ------------------------------------------------------------------------------------------ a real Dask cluster
def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


def _marks(url: str) -> dict[Path, tuple[int, int]]:
    """Every completion mark with its (inode, mtime): a shard computed again rewrites its mark."""
    found = {}
    for mark in Path(url).glob("*/_done/*.json"):
        try:
            stat = mark.stat()
        except FileNotFoundError:  # being replaced right now
            continue
        found[mark] = (stat.st_ino, stat.st_mtime_ns)
    return found


@pytest.mark.timeout(600)  # a scheduler and two workers of its own
@pytest.mark.slow
def test_a_worker_killed_on_a_real_cluster_loses_nothing_and_recomputes_no_finished_shard(
        catalog_dir, tmp_path, uninterrupted_tvl1):
    """`dask scheduler` and two `dask worker` processes (no nanny: a killed worker stays dead); the flow
    runs with --dask-address; one worker is SIGKILLed once shards are marked done and it has finished
    some. Every sample ends in the store as an uninterrupted run has it, and no shard marked done before
    the kill is computed again (its mark is never rewritten)."""
    from distributed import Client

    dask = Path(sys.executable).with_name("dask")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = tmp_path / "logs"
    logs.mkdir()
    processes = {}

    def start(name: str, *arguments: str) -> subprocess.Popen:
        with open(logs / f"{name}.log", "wb") as log:
            processes[name] = subprocess.Popen([str(dask), *arguments], stdout=log, stderr=subprocess.STDOUT,
                                               start_new_session=True, cwd=tmp_path)
        return processes[name]

    url = str(tmp_path / "cluster.zarr")
    outcome = {}
    try:
        start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard")
        for name in ("w1", "w2"):
            start(name, "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard", "--name", name,
                  "--host", "127.0.0.1", "--death-timeout", "60")
        with Client(address, timeout=60) as observer:
            observer.wait_for_workers(2, timeout=90)
            names = {info["name"]: worker for worker, info in observer.scheduler_info()["workers"].items()}

            def run_flow():
                try:
                    outcome["result"] = features_flow(catalog_dir=str(catalog_dir), store=url, dataset="casme2",
                                                      shard_size=1, flow_algorithm="tvl1", dask_address=address,
                                                      sequence_length=0)
                except BaseException as error:  # noqa: BLE001 - reported by the assertion below
                    outcome["error"] = error

            driver = threading.Thread(target=run_flow, daemon=True)
            driver.start()

            def executed() -> dict[str, int]:
                return observer.run(lambda dask_worker: dask_worker.state.executed_count, workers=list(names.values()))

            # Both workers have finished shards (the kill must hit results that once lived on it).
            _wait(lambda: all(n >= 2 for n in executed().values()), 240, "both workers to finish 2 shards")
            done_before = _marks(url)
            time.sleep(1.0)  # the driver reads (and releases) a finished shard's result within milliseconds
            finished_by_victim = executed()[names["w1"]]
            os.killpg(processes["w1"].pid, signal.SIGKILL)
            processes["w1"].wait(30)
            driver.join(300)
            assert not driver.is_alive(), "the flow did not finish after the worker was killed"
        assert "error" not in outcome, outcome.get("error")
    finally:
        for process in processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(30)

    total = int((catalog.read_samples(catalog_dir)["dataset"] == "casme2").sum())
    assert finished_by_victim >= 2 and 4 <= len(done_before) < total, (finished_by_victim, len(done_before))
    after = _marks(url)
    rewritten = [p.name for p, stamp in done_before.items() if after.get(p) != stamp]
    assert not rewritten, f"shards marked done before the kill were computed again: {rewritten}"
    assert outcome["result"]["shards_computed"] == total and len(after) == total
    resumed = _arrays_by_key(url, "casme2")
    assert resumed.keys() == uninterrupted_tvl1.keys() and len(resumed) == total
    for key in resumed:
        for name in resumed[key]:
            np.testing.assert_array_equal(resumed[key][name], uninterrupted_tvl1[key][name], err_msg=f"{key} {name}")


def test_first_frame_onset_plus_one_takes_the_published_codes_pair(catalog_dir):
    """`--first-frame onset+1`: frame onset + 1 and the annotated apex + 1, as the published code's
    img_lists[1] and img_lists[apex - onset + 1]; the spotted apex is searched after that frame."""
    from merflow.flows.features import catalog_records
    from merflow.storage.features import FeatureConfig
    from merflow.tasks.features import sample_features

    records = catalog_records(str(catalog_dir), None)
    annotated = next(r for r in records if r["apex"] is not None and r["apex"] < r["offset"])
    spotted = next(r for r in records if r["apex"] is None)
    onset, published = FeatureConfig(size=28), FeatureConfig(size=28, first_frame="onset+1")
    arrays, info = sample_features(annotated, onset)
    shifted, shifted_info = sample_features(annotated, published)
    assert (info["first_index"], shifted_info["first_index"]) == (0, 1)
    assert shifted_info["apex_frame"] == info["apex_frame"] + 1 == annotated["apex"] + 1
    assert not np.array_equal(arrays["onset"], shifted["onset"])
    _, spotted_info = sample_features(spotted, published)
    assert spotted_info["apex_source"] == "spotted" and spotted_info["apex_index"] >= 1


# ------------------------------------------------------------------------------ two runs, one store; damage
@pytest.mark.slow
def test_two_feature_runs_at_once_split_the_shards_and_keep_the_store_right(catalog_dir, tmp_path):
    """Two `merflow features` processes on one store at the same time (each with its own Dask cluster, one
    shared Prefect API): every shard is computed exactly once between them, the sample index has one row
    per sample, and the store verifies."""
    from prefect.settings import PREFECT_API_URL

    url = str(tmp_path / "shared.zarr")
    command = [sys.executable, "-m", "merflow.flows.cli", "features", "--catalog", str(catalog_dir), "--store", url,
               "--dataset", "casme2", "--size", "28", "--shard-size", "2", "--workers", "1"]
    environment = os.environ | {"PREFECT_API_URL": PREFECT_API_URL.value()}
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment)
            for _ in range(2)]
    outputs = [run.communicate(timeout=400)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    tallies = []
    for output in outputs:
        found = re.search(r"(\d+) shards computed, (\d+) already done(?:, (\d+) computed by another run)?", output)
        tallies.append([int(n or 0) for n in found.groups()])
    samples = catalog.read_samples(catalog_dir)
    samples = samples[samples["dataset"] == "casme2"]
    shards = -(-len(samples) // 2)
    assert tallies[0][0] + tallies[1][0] == shards, tallies  # computed: each shard once
    assert all(sum(tally) == shards for tally in tallies), tallies  # computed, already done, by the other
    for reader in _readers(url).values():
        rows = reader.attributes["sample_index"]
        expected = set(samples.loc[samples["dataset"] == reader.dataset, "sample_key"])
        assert set(rows) == expected and sorted(rows.values()) == list(range(len(expected)))
        assert set(reader.table()["sample_key"]) == expected
    report = verify_store(url)
    assert all(g["verified"] == g["shards"] and not g["damaged"] for g in report["groups"].values())


def test_a_damaged_store_is_named_refused_for_training_and_repaired_by_a_rerun(catalog_dir, store, tmp_path, capsys):
    """A copy of the store with a flow shard emptied, a diff shard cut in half and an apex shard deleted:
    `features --verify` names each file and its samples (exit 1), reading for training refuses with one line
    naming them, a rerun recomputes exactly those shards (saying so) while a killed run's claim on one of
    them is taken over, and the store then reads as before."""
    url, _ = store
    copy = str(tmp_path / "damaged.zarr")
    shutil.copytree(url, copy)
    group = next(g for g in Path(copy).iterdir() if g.name.startswith("casme2-"))
    emptied, cut, deleted = group / "flow/c/1/0/0/0", group / "diff/c/2/0/0/0", group / "apex/c/3/0/0/0"
    emptied.write_bytes(b"")
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    deleted.unlink()
    options = ["--catalog", str(catalog_dir), "--store", copy]

    assert main(["features", "--verify", *options]) == 1
    out = capsys.readouterr().out.replace("\n", "")
    assert "3 damaged" in out and "every shard matches" not in out
    for file, what in ((emptied, "is empty (reads as zeros)"), (cut, "cannot be read"), (deleted, "is missing")):
        assert f"{file} {what}" in out
    reader = FeatureReader(FeatureStore(copy), group.name)
    damaged_keys = sorted(reader.table().set_index("row").sort_index()["sample_key"].iloc[4:16])
    assert all(key in out for key in damaged_keys)

    config = reader.config
    with pytest.raises(StoreDamaged, match=f"{emptied} is empty .*; run `merflow features --catalog CATALOG"):
        read_feature_arrays(copy, ["casme2"], config)

    # A killed features run left its claim on shard 2: taken over (its process is gone).
    claimer = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom merflow.storage import locks\n"
                                "locks.acquire(sys.argv[1], 'shard 2')\nprint('held', flush=True)\ntime.sleep(60)",
                                FeatureStore(copy).claim_location(group.name, 2)], stdout=subprocess.PIPE, text=True)
    assert claimer.stdout.readline().strip() == "held"
    claimer.kill()
    claimer.wait()
    result = features_flow(catalog_dir=str(catalog_dir), store=copy, shard_size=4, n_workers=1)
    assert result["shards_computed"] == 3
    assert sorted((r["group"], r["shard"]) for r in result["repaired"]) == [(group.name, s) for s in (1, 2, 3)]
    assert sorted(k for r in result["repaired"] for k in r["samples"]) == damaged_keys
    assert main(["features", "--verify", *options]) == 0
    assert "every shard matches its checksums" in capsys.readouterr().out
    repaired = read_feature_arrays(copy, ["casme2"], config)
    original = read_feature_arrays(url, ["casme2"], config)
    for name in ("diff", "flow"):
        for key, values in original["arrays"][name].items():
            np.testing.assert_array_equal(repaired["arrays"][name][key], values, err_msg=f"{key} {name}")
