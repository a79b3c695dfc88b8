"""flows/trial.py: a trial runs with the driver's storage settings (an S3 endpoint set after Ray's workers
started, or a cluster on other machines, would otherwise send it to the default endpoint)."""

import os

from merflow.flows.trial import in_environment, trial_environment


def test_a_trial_gets_the_drivers_storage_settings(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("MERFLOW_S3_TIMEOUT", "3")
    monkeypatch.setenv("UNRELATED_SETTING", "x")
    environment = trial_environment()
    assert environment["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9" and environment["MERFLOW_S3_TIMEOUT"] == "3"
    assert "UNRELATED_SETTING" not in environment
    seen = {}

    def trainable(params, search, run):
        seen.update(endpoint=os.environ.get("AWS_ENDPOINT_URL"), params=params, run=run)

    monkeypatch.delenv("AWS_ENDPOINT_URL")  # a worker started before the endpoint was set
    in_environment(trainable, environment)({"trial": 1}, None, "r")
    assert seen == {"endpoint": "http://127.0.0.1:9", "params": {"trial": 1}, "run": "r"}


def test_the_storage_settings_are_one_list_for_trials_and_dask_workers(monkeypatch):
    from merflow.flows.features import storage_plugin
    from merflow.storage.locations import storage_environment

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    assert trial_environment() == storage_environment() and storage_environment()["AWS_SECRET_ACCESS_KEY"] == "s"
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    storage_plugin({"AWS_SECRET_ACCESS_KEY": "s"}).setup(worker=None)  # as a worker of an existing scheduler
    assert os.environ.pop("AWS_SECRET_ACCESS_KEY") == "s"
