"""Shared fixtures: reference files (skipped when absent), small synthetic archives built once per
session, and an isolated Prefect backend for flow tests. The `requires_*` markers live in
tests/requires.py; the hook below gives a test the markers its fixtures imply."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from requires import REFERENCE, requires_ray, requires_reference, requires_s3

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
# A `merflow` flow command that a test runs without a Prefect API (a CLI subprocess) starts the shared local
# server of PREFECT_HOME (flows/local_server.py): it stops 30 s after the suite's last such command, not 10 min.
os.environ.setdefault("MERFLOW_PREFECT_SERVER_IDLE", "30")

__all__ = ["REFERENCE", "SCALE", "requires_reference"]  # `from conftest import ...` of these keeps working

SCALE = 0.2  # small frames keep the suite fast; faces are still found at this size

# A fixture's requirement travels with it, and so does its tier: a test using one of these fixtures is
# skipped (with the marker's reason) when the part is absent, and it is an `integration` test (a real
# Prefect API, Ray or S3 server; the data sets go through the real flows), kept out of `make test-fast`.
FIXTURE_MARKERS = {
    "reference": [requires_reference],
    "s3_server": [requires_s3, pytest.mark.integration],
    "ray_local": [requires_ray, pytest.mark.integration],
    "prefect_backend": [pytest.mark.integration],
    "training_set": [pytest.mark.integration],
    "fused_set": [pytest.mark.integration],
    "spotting_set": [pytest.mark.integration],
    "recognition_set": [pytest.mark.integration],
    "recognition_bundle": [pytest.mark.integration],
}


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(items) -> None:
    """Add the markers of ``FIXTURE_MARKERS`` to every test that uses (directly or not) such a fixture."""
    for item in items:
        for name in FIXTURE_MARKERS.keys() & set(getattr(item, "fixturenames", ())):
            for marker in FIXTURE_MARKERS[name]:
                item.add_marker(marker)


@pytest.fixture(scope="session")
def reference() -> Path:
    """The real reference folder (tests using it carry `requires_reference`, so it exists here)."""
    return REFERENCE


@pytest.fixture(scope="session")
def synth_folders(tmp_path_factory) -> dict[str, Path]:
    """One small synthetic dataset per kind, as a plain folder, quirks included."""
    from merflow.configs.synth import SynthConfig
    from merflow.tasks.synthetic import DATASETS, synthesize

    out = tmp_path_factory.mktemp("synth")
    return {name: synthesize(SynthConfig(dataset=name, subjects=3, samples_per_subject=4, archive="none",
                                         seed=7, scale=SCALE), out)
            for name in DATASETS}


def tiny_archive(dataset: str, samples: int, out: Path, seed: int = 0) -> Path:
    """A zip in ``dataset``'s real layout (tasks/synthetic's writer and sheet) whose samples are 3 frames of
    16x16 noise each, without quirks: 1,000 samples in about a second, for tests of many samples that never
    look at the pixels (concurrent ingests)."""
    import tempfile
    from unittest import mock

    import numpy as np

    from merflow.tasks.synthetic import layouts, pack

    spec = layouts.SPECS[dataset]
    rng = np.random.default_rng(seed)
    plans = [layouts.Plan(subject=index % 26 + 1, emotion=emotion, n_frames=3, first=index + 1, onset=0, apex=1,
                          offset=2) for index, emotion in enumerate(layouts.emotion_list(spec, samples, rng))]

    def noise(spec, plan, scale, seed, rng, macro=False):
        return rng.integers(0, 255, (plan.n_frames, 16, 16, 3) if spec.colour else (plan.n_frames, 16, 16), np.uint8)

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work, mock.patch.object(layouts, "render", noise):
        root = Path(work) / spec.folder
        root.mkdir()
        layouts.WRITERS[dataset](root, plans, 0.05, seed, rng, False, None)
        pack(root, out, "zip")
    return out


@pytest.fixture(scope="session")
def long_video_folders(tmp_path_factory) -> dict[str, Path]:
    """One tiny synthetic long-video set per layout (SAMM Long Videos at 200 fps, CAS(ME)^2 at 30 fps), as
    folders, quirks included; each holds its planted intervals in merflow-synthetic.json ("truth")."""
    from merflow.configs.synth import LongVideoSynthConfig
    from merflow.tasks.synthetic.long_videos import synthesize_long_videos

    out = tmp_path_factory.mktemp("long_videos")
    return {"samm_lv": synthesize_long_videos(LongVideoSynthConfig(
                "samm_lv", subjects=2, videos_per_subject=1, seconds=6.0, micro_per_video=2, macro_per_video=1,
                archive="none", seed=3, scale=0.12), out),
            "casme_sq_lv": synthesize_long_videos(LongVideoSynthConfig(
                "casme_sq_lv", subjects=2, videos_per_subject=2, seconds=8.0, micro_per_video=2, macro_per_video=2,
                archive="none", seed=3, scale=0.2), out)}


@pytest.fixture(scope="session")
def prefect_backend():
    """A private Prefect database for the flow tests (a real ephemeral API, not a mock)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture(scope="session")
def training_set(tmp_path_factory, prefect_backend) -> dict:
    """A CASME II-size synthetic set (26 subjects, 255 samples) and CK+, through the real ingest and
    features flows (YuNet, Farnebäck), at 28x28 so that 26 LOSO folds train in minutes on a CPU."""
    from merflow.configs.synth import SynthConfig
    from merflow.flows.features import features_flow
    from merflow.flows.ingest import ingest_flow
    from merflow.tasks.synthetic import synthesize

    out = tmp_path_factory.mktemp("training")
    sources = [synthesize(SynthConfig("casme2", subjects=26, samples=255, archive="none", seed=1, scale=0.35), out),
               synthesize(SynthConfig("ckplus", subjects=8, samples=40, archive="none", seed=1, scale=0.35), out)]
    ingest_flow(sources=[str(s) for s in sources], out=str(out / "catalog"))
    # No sequence arrays (sequence_length 0): the pair models these sets train read none, and CI's time is short
    # (tests/test_features_flow.py and tests/test_sequences.py compute the default sequences).
    features_flow(catalog_dir=str(out / "catalog"), store=str(out / "features.zarr"), size=28, n_workers=2,
                  sequence_length=0)
    return {"catalog": out / "catalog", "store": str(out / "features.zarr"), "root": out}


@pytest.fixture(scope="session")
def fused_set(synth_folders, tmp_path_factory, prefect_backend) -> dict:
    """The survey's five datasets (CASME, CASME II, CAS(ME)^2, SAMM, SMIC-HS) of ``synth_folders``, through
    the real ingest and features flows at 28x28 (the survey baseline's input size): LOVO and LOSO over
    the fused class sets (tests/test_survey_cnn.py)."""
    from merflow.flows.features import features_flow
    from merflow.flows.ingest import ingest_flow

    out = tmp_path_factory.mktemp("fused")
    sources = [synth_folders[name] for name in ("casme", "casme2", "casme_sq", "samm", "smic")]
    ingest_flow(sources=[str(s) for s in sources], out=str(out / "catalog"))
    # No sequence arrays (sequence_length 0): the pair models these sets train read none, and CI's time is short
    # (tests/test_features_flow.py and tests/test_sequences.py compute the default sequences).
    features_flow(catalog_dir=str(out / "catalog"), store=str(out / "features.zarr"), size=28, n_workers=2,
                  sequence_length=0)
    return {"catalog": out / "catalog", "store": str(out / "features.zarr"), "root": out}


@pytest.fixture(scope="session")
def spotting_set(tmp_path_factory, prefect_backend) -> dict:
    """Five people's synthetic long videos in CAS(ME)^2's layout (16 s each, talking, blinking, nodding, with
    planted micro- and macro-expressions) and one faceless video, through the real ingest flow and the spot
    flow with the baseline on the micro-expressions (per-frame features on 2 Dask workers, at test size:
    64-pixel crops, 24-pixel regions)."""
    import cv2
    import numpy as np

    from merflow.configs.spotting import SpotConfig, SpotFeatureConfig
    from merflow.configs.synth import LongVideoSynthConfig
    from merflow.flows.ingest import ingest_flow
    from merflow.flows.spotting import spot_flow
    from merflow.tasks.synthetic.long_videos import synthesize_long_videos

    out = tmp_path_factory.mktemp("spotting")
    source = synthesize_long_videos(LongVideoSynthConfig("casme_sq_lv", subjects=5, videos_per_subject=1, seconds=16,
                                                         micro_per_video=4, macro_per_video=1, archive="none", seed=2,
                                                         scale=0.25), out)
    # One more video of the first person, without an interval and without a face (a camera left on an empty
    # chair): the spot flow leaves it out and says so.
    empty = source / "rawpic" / "s15" / "15_0102eatingworms"
    empty.mkdir()
    for index in range(1, 41):
        cv2.imwrite(str(empty / f"img{index}.jpg"), np.full((120, 160, 3), 90 + index % 3, np.uint8))
    ingest_flow(sources=[str(source)], out=str(out / "catalog"))
    features = SpotFeatureConfig(crop=64, roi=24, chunk_frames=128)
    # Micro-expressions only: one window k for every fold (the macro windows differ by fold, each a pass over
    # every frame); tests/test_spotting_loso.py spots both types on signals.
    summary = spot_flow(catalog_dir=str(out / "catalog"), store=str(out / "spot.zarr"), dataset="casme_sq_lv",
                        out=str(out / "results"), config=SpotConfig(spotter="baseline", types=("micro",)),
                        features=features, n_workers=2)
    return {"catalog": str(out / "catalog"), "store": str(out / "spot.zarr"), "results": str(out / "results"),
            "features": features, "summary": summary, "root": out}


@pytest.fixture(scope="session")
def recognition_set(tmp_path_factory, prefect_backend) -> dict:
    """A spot run to export and apply (tests/test_recognise.py, test_export.py, test_recognise_folder.py), made as
    users make one, small: three people's synthetic long videos in CAS(ME)^2's layout (10 s each at 160x120, 4
    micro-expressions, blinking and nodding, not talking), ingested, and SOFTNet on their micro-expressions under
    LOSO (test-size training: 10 epochs, batch 32, lr 0.01; 64-pixel crops, 24-pixel regions), on one Dask
    cluster of 2 workers that the tests use too (``dask_address``)."""
    from distributed import LocalCluster

    from merflow.configs.spotting import SpotConfig, SpotFeatureConfig
    from merflow.configs.synth import LongVideoSynthConfig
    from merflow.flows.ingest import ingest_flow
    from merflow.flows.spotting import spot_flow
    from merflow.tasks.synthetic.long_videos import synthesize_long_videos

    out = tmp_path_factory.mktemp("recognition")
    # Seed 5: the bundle's spotter (fitted on all three) finds each planted interval of the first video at IoU
    # >= 0.5. Not every seed does: over seeds 4-7, 41 of the 48 planted intervals of the three videos are found
    # (SOFTNet's intervals are 2k + 1 = 11 frames, the planted ones 8-14: a peak 2 frames off falls under 0.5;
    # benchmarks/README.md, "A model you can apply").
    long_videos = synthesize_long_videos(LongVideoSynthConfig(
        "casme_sq_lv", subjects=3, videos_per_subject=1, seconds=10, micro_per_video=4, macro_per_video=0,
        talking=False, archive="none", seed=5, scale=0.25), out)
    catalog, results = str(out / "catalog"), str(out / "results")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        ingest_flow(sources=[str(long_videos)], out=catalog)
        spot = spot_flow(catalog_dir=catalog, store=str(out / "spot.zarr"), dataset="casme_sq_lv", out=results,
                         config=SpotConfig(spotter="softnet", types=("micro",), epochs=10, batch_size=32, lr=0.01),
                         features=SpotFeatureConfig(crop=64, roi=24, chunk_frames=128), dask_address=address)
        yield {"catalog": catalog, "spot_store": str(out / "spot.zarr"), "results": results, "spot_run": spot["run"],
               "dask_address": address, "long_videos": long_videos, "root": out, "spot": spot}


@pytest.fixture(scope="session")
def recognition_bundle(recognition_set, tmp_path_factory) -> Path:
    """``recognition_set``'s spot run exported through the CLI (its row says where its catalog and store are)."""
    from merflow.flows.cli import main

    out = tmp_path_factory.mktemp("bundle") / "model"
    assert main(["export", "--results", recognition_set["results"], "--run", recognition_set["spot_run"], "--out",
                 str(out), "--dask-address", recognition_set["dask_address"]]) == 0
    return out


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray with this machine's 2 CPUs. It also declares one *logical* GPU, the one mock
    here: no GPU exists on CI, and the logical one lets a test check that trials asking for a fraction
    of a GPU are scheduled and given it (torch still finds no CUDA and trains on the CPU)."""
    from merflow.flows.search import ray  # Ray, with merflow's offline defaults set (training/search/__init__.py)

    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 server on 127.0.0.1 (moto's, in a thread of this process, on a free port) with dummy
    credentials, and the bucket ``merflow``. The endpoint goes to every client through AWS_ENDPOINT_URL,
    which child processes (Dask and Ray workers) inherit. Yields the endpoint URL."""
    import logging

    import s3fs  # present: tests using this fixture carry `requires_s3`
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    settings = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_SESSION_TOKEN": "testing"}
    before = {name: os.environ.get(name) for name in [*settings, "AWS_PROFILE", "AWS_CONFIG_FILE",
                                                      "AWS_SHARED_CREDENTIALS_FILE"]}
    os.environ.update(settings)
    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        os.environ.pop(name, None)
    s3fs.S3FileSystem.clear_instance_cache()
    s3fs.S3FileSystem().mkdir("merflow")
    yield endpoint
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    for fs in list(s3fs.S3FileSystem._cache.values()):  # close their HTTP sessions now, not noisily at exit
        if getattr(fs, "_s3", None) is None:
            continue
        if fs.asynchronous:  # zarr's: its session lives on zarr's event loop
            from zarr.core.sync import sync

            sync(fs._s3.__aexit__(None, None, None))
        else:
            s3fs.S3FileSystem.close_session(fs.loop, fs._s3)
    s3fs.S3FileSystem.clear_instance_cache()
    server.stop()
