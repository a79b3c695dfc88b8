"""The pipeline flow's run id: named by what the results are made from, so that a rerun on the same
inputs resumes its run and new data or other settings start another. (The whole flow runs against a
real server in tests/test_deployments_server.py.)"""

import shutil

import pytest

from merflow.flows.pipeline import derived_run_id

pytestmark = pytest.mark.integration  # the ingest flow builds the catalog


@pytest.fixture(scope="module")
def catalog(tmp_path_factory, prefect_backend):
    from merflow.configs.synth import SynthConfig
    from merflow.flows.ingest import ingest_flow
    from merflow.tasks.synthetic import synthesize

    root = tmp_path_factory.mktemp("pipeline")
    source = synthesize(SynthConfig("casme2", subjects=2, samples_per_subject=3, archive="none", seed=2, scale=0.2),
                        root / "archives")
    ingest_flow(sources=[str(source)], out=str(root / "catalog"))
    return root, source


def test_the_same_inputs_name_the_same_run_and_other_inputs_another(catalog):
    root, source = catalog
    settings = {"mode": "tune", "training": {"meta_epochs": 1}}
    first = derived_run_id("tune", str(root / "catalog"), "abc", settings)
    assert first.startswith("tune-") and first == derived_run_id("tune", str(root / "catalog"), "abc", settings)
    assert derived_run_id("tune", str(root / "catalog"), "abd", settings) != first           # other features
    assert derived_run_id("tune", str(root / "catalog"), "abc", settings | {"x": 1}) != first  # other settings

    from merflow.flows.ingest import ingest_flow

    # Another source in the catalog (here a copy with one frame rewritten) is new data: a new run.
    changed = root / "changed"
    shutil.copytree(source, changed)
    frame = sorted(changed.rglob("*.jpg"))[0]
    frame.write_bytes(frame.read_bytes() + b"\0")
    ingest_flow(sources=[str(changed)], out=str(root / "catalog"))
    assert derived_run_id("tune", str(root / "catalog"), "abc", settings) != first
