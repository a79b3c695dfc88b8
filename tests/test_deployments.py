"""prefect.yaml: every deployment's entrypoint loads, and its parameters validate against the flow."""

from pathlib import Path

import pytest
import yaml
from prefect.flows import load_flow_from_entrypoint

ROOT = Path(__file__).resolve().parents[1]
DEPLOYMENTS = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=[d["name"] for d in DEPLOYMENTS])
def test_deployment_entrypoint_and_parameters(deployment):
    flow = load_flow_from_entrypoint(str(ROOT / deployment["entrypoint"]))
    validated = flow.validate_parameters(deployment.get("parameters", {}))
    assert set(deployment.get("parameters", {})) <= set(validated)
    for schedule in deployment.get("schedules", []):
        assert schedule["active"] is False  # examples: a user turns them on for their own paths


def test_there_is_a_search_deployment():
    assert any(d["entrypoint"] == "flows/tune.py:tune_flow" for d in DEPLOYMENTS)
