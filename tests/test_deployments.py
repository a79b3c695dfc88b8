"""prefect.yaml: every deployment's entrypoint loads, its parameters validate against the flow's typed
signature, and the parameter schema Prefect shows as a form types every setting (no loose dicts)."""

from pathlib import Path

import pytest
import yaml
from prefect.flows import load_flow_from_entrypoint
from prefect.utilities.callables import parameter_schema

ROOT = Path(__file__).resolve().parents[1]
DEPLOYMENTS = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]


def _flow(deployment):
    return load_flow_from_entrypoint(str(ROOT / deployment["entrypoint"]))


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=[d["name"] for d in DEPLOYMENTS])
def test_deployment_entrypoint_and_parameters(deployment):
    flow = _flow(deployment)
    validated = flow.validate_parameters(deployment.get("parameters", {}))
    assert set(deployment.get("parameters", {})) <= set(validated)
    for schedule in deployment.get("schedules", []):
        assert schedule["active"] is False  # examples: a user turns them on for their own paths


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=[d["name"] for d in DEPLOYMENTS])
def test_every_parameter_is_typed_in_the_form(deployment):
    """Every parameter, and every field of a nested one, has a type or a reference to a typed model."""
    schema = parameter_schema(_flow(deployment)).model_dump()
    definitions = schema.get("definitions", {})

    def typed(prop):
        return any(k in prop for k in ("type", "$ref", "anyOf", "allOf", "enum"))

    for name, prop in schema["properties"].items():
        assert typed(prop), (name, prop)
    for model, definition in definitions.items():
        for name, prop in definition.get("properties", {}).items():
            assert typed(prop), (model, name, prop)
            assert prop.get("type") != "object" or "properties" in prop, f"{model}.{name} is a loose dict"


def test_the_chain_is_deployed():
    entrypoints = {d["entrypoint"] for d in DEPLOYMENTS}
    assert {"flows/pipeline.py:pipeline_flow", "flows/ingest.py:ingest_flow", "flows/features.py:features_flow",
            "flows/train.py:train_flow", "flows/tune.py:tune_flow"} <= entrypoints
    pipeline = next(d for d in DEPLOYMENTS if d["entrypoint"] == "flows/pipeline.py:pipeline_flow")
    assert pipeline["schedules"], "the pipeline deployment carries an example schedule"


def test_bad_choices_and_unknown_settings_are_refused_before_a_run():
    from prefect.exceptions import ParameterTypeError

    pipeline = _flow(next(d for d in DEPLOYMENTS if d["name"] == "pipeline-nightly"))
    base = {"sources": ["a.zip"], "catalog_dir": "c", "store": "s", "out": "r"}
    validated = pipeline.validate_parameters(base | {"features": {"size": 28}, "training": {"meta_epochs": 1}})
    assert validated["features"].size == 28 and validated["training"].meta_epochs == 1
    for wrong in ({"mode": "fit"}, {"evaluation": {"protocol": "loocv"}}, {"features": {"flow_algorithm": "lk"}},
                  {"features": {"sise": 28}}, {"search": {"scheduler": "pbt"}}, {"search": {"shots": []}}):
        with pytest.raises(ParameterTypeError):
            pipeline.validate_parameters(base | wrong)


def test_the_scheduler_choices_are_the_search_schedulers():
    from typing import get_args

    from merflow.configs.search import SCHEDULERS
    from merflow.flows.parameters import Scheduler

    assert get_args(Scheduler) == SCHEDULERS


def test_the_search_options_defaults_are_the_search_configs():
    """flows/parameters.py spells out SearchConfig's, SearchSpace's and TrainConfig's defaults (no Ray import there)."""
    from merflow.configs.search import SearchConfig, SearchSpace
    from merflow.configs.train import TrainConfig
    from merflow.flows.defaults import default, parameter
    from merflow.flows.parameters import SearchOptions
    from merflow.flows.tune import tune_flow

    options = SearchOptions()
    assert tuple(options.alphas) == tuple(parameter(tune_flow, "alphas"))  # the form's grid is the flow's
    assert tuple(options.shots) == default(SearchSpace, "shots") and tuple(options.alphas) == TrainConfig().alphas
    for name in ("scheduler", "select_by", "cpus_per_trial", "gpus_per_trial", "max_failures", "max_folds",
                 "ray_address"):
        assert getattr(options, name) == default(SearchConfig, name), name


def test_a_run_id_is_checked_by_the_flow_and_by_the_deployment_form():
    """The flows' ``run`` parameter is configs/names.py's RunId: the flow refuses a path, and the schema Prefect
    keeps for a deployment (its form; the server checks a run's parameters against it) carries the pattern."""
    import jsonschema
    from prefect.exceptions import ParameterTypeError

    checked = 0
    for deployment in DEPLOYMENTS:
        flow = _flow(deployment)
        schema = parameter_schema(flow).model_dump()
        if "run" not in schema["properties"]:
            continue
        checked += 1
        required = {name: "x" for name in schema.get("required", []) if name != "run"}
        for bad in ("../../../x", "a/b", "", "a b"):
            with pytest.raises(ParameterTypeError, match="is not allowed"):
                flow.validate_parameters({**deployment.get("parameters", {}), **required, "run": bad})
            with pytest.raises(jsonschema.ValidationError):
                jsonschema.validate(bad, schema["properties"]["run"])
        jsonschema.validate("nightly-1", schema["properties"]["run"])
    assert checked >= 3  # train, tune, pipeline
