"""Shared fixtures: reference files (skipped when absent), small synthetic archives built once per
session, and an isolated Prefect backend for flow tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")

REFERENCE = Path(os.environ.get("MERFLOW_REFERENCE", Path(__file__).resolve().parents[1] / ".." / "shared" / "reference")).resolve()

requires_reference = pytest.mark.skipif(
    not REFERENCE.is_dir(), reason=f"real reference sheets not found at {REFERENCE} (set MERFLOW_REFERENCE)")

SCALE = 0.2  # small frames keep the suite fast; faces are still found at this size


@pytest.fixture(scope="session")
def reference() -> Path:
    if not REFERENCE.is_dir():
        pytest.skip(f"real reference files not found at {REFERENCE}")
    return REFERENCE


@pytest.fixture(scope="session")
def synth_folders(tmp_path_factory) -> dict[str, Path]:
    """One small synthetic dataset per kind, as a plain folder, quirks included."""
    from merflow.tasks.synthetic import DATASETS, SynthConfig, synthesize

    out = tmp_path_factory.mktemp("synth")
    return {name: synthesize(SynthConfig(dataset=name, subjects=3, samples_per_subject=4, archive="none",
                                         seed=7, scale=SCALE), out)
            for name in DATASETS}


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
    from merflow.flows.features import features_flow
    from merflow.flows.ingest import ingest_flow
    from merflow.tasks.synthetic import SynthConfig, synthesize

    out = tmp_path_factory.mktemp("training")
    sources = [synthesize(SynthConfig("casme2", subjects=26, samples=255, archive="none", seed=1, scale=0.35), out),
               synthesize(SynthConfig("ckplus", subjects=8, samples=40, archive="none", seed=1, scale=0.35), out)]
    ingest_flow(sources=[str(s) for s in sources], out=str(out / "catalog"))
    features_flow(catalog_dir=str(out / "catalog"), store=str(out / "features.zarr"), size=28, n_workers=2)
    return {"catalog": out / "catalog", "store": str(out / "features.zarr"), "root": out}


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray with this machine's 2 CPUs. It also declares one *logical* GPU, the one mock
    here: no GPU exists on CI, and the logical one lets a test check that trials asking for a fraction
    of a GPU are scheduled and given it (torch still finds no CUDA and trains on the CPU)."""
    from merflow.training.tune import ray  # Ray, imported after merflow's offline defaults are set

    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
