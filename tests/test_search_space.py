"""training/search/space.py and configs/search.py: the grid, configuration ids and what a search records,
pinned to the values the code gave before the split of training/tune.py (stored runs and resumed runs
compare them)."""

from __future__ import annotations

import json

import pytest

from merflow.configs.search import SCHEDULERS, SearchConfig, SearchSpace
from merflow.configs.train import TrainConfig
from merflow.training.search.space import config_id, trial_specs, trial_train_config

SEARCH = SearchConfig(catalog_dir="/c", store="/s", out="/o", run="r", base=TrainConfig(meta_epochs=2),
                      space=SearchSpace(shots=(1, 3), alphas=(0.5, 1.0), meta_lr=(0.05, 0.01)))


def test_configuration_ids_are_as_before():
    # training/tune.py's trial_specs and config_id gave these (configuration-major order).
    assert [(s["id"], s["fold"]) for s in trial_specs(SEARCH, ["f1", "f2"])] == [
        ("cfceb5968", "f1"), ("cfceb5968", "f2"), ("c4772577c", "f1"), ("c4772577c", "f2"),
        ("c2a097185", "f1"), ("c2a097185", "f2"), ("cec9d2292", "f1"), ("cec9d2292", "f2")]
    assert [config_id(c) for c in SearchSpace().configurations()] == ["c7b2e28d1", "c238f705b", "c2f182308",
                                                                      "cded094ca"]


def test_the_recorded_search_is_as_before():
    """runs.config's "search" and checkpoints/<run>/search.json: every setting but where it ran."""
    recorded = SEARCH.recorded()
    base = recorded.pop("base")
    assert recorded == {
        "catalog_dir": "/c", "class_set": None, "dataset": "casme2", "feature_config": None, "max_folds": None,
        "protocol": "loso", "sample_list": None, "sample_lists": None, "scheduler": "asha", "select_by": "accuracy",
        "space": {"alphas": [0.5, 1.0], "meta_lr": [0.05, 0.01], "pretrain_lr": [], "shots": [1, 3]}, "store": "/s"}
    # The base TrainConfig as JSON, without the device (TrainConfig's own fields: configs/train.py owns them).
    expected = json.loads(json.dumps(TrainConfig(meta_epochs=2).to_dict()))
    expected.pop("device")
    assert base == expected
    assert SearchConfig(catalog_dir="/c", store="/s").recorded()["space"] == {
        "alphas": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0], "meta_lr": [], "pretrain_lr": [],
        "shots": [1, 3, 5, 10]}


def test_a_trials_configuration_is_the_base_with_its_searched_settings():
    config = trial_train_config(SEARCH, {"shots": 3, "meta_lr": 0.01})
    assert config == TrainConfig(meta_epochs=2, shots=3, meta_lr=0.01, alphas=(0.5, 1.0))
    assert isinstance(config.alphas, tuple) and all(isinstance(a, float) for a in config.alphas)


def test_the_grid_is_validated_frozen_and_hashable():
    with pytest.raises(ValueError, match="shots must be at least 1"):
        SearchSpace(shots=(0, 1))
    with pytest.raises(ValueError, match="misspelt"):
        SearchSpace(misspelt=(1,))
    with pytest.raises(ValueError):
        SEARCH.space.shots = (5,)
    assert hash(SEARCH) == hash(SEARCH.replace(run="r")) and SEARCH.replace(run="other").run == "other"
    assert SCHEDULERS == ("asha", "fifo")


def test_the_engine_makes_local_locations_absolute_and_leaves_urls(monkeypatch, tmp_path):
    """SearchConfig keeps its locations as given; flows/search.py's ``absolute`` (run_search's first step) makes
    the local ones absolute, since Tune runs each trial in a folder of its own."""
    from merflow.flows.search import absolute

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MERFLOW_SAMPLE_LISTS", "lists")
    search = SearchConfig(catalog_dir="catalog", store="s3://bucket/features.zarr", out="results",
                          sample_list="survey")
    assert search.catalog_dir == "catalog" and search.sample_lists is None
    moved = absolute(search)
    assert moved.catalog_dir == str(tmp_path / "catalog") and moved.out == str(tmp_path / "results")
    assert moved.store == "s3://bucket/features.zarr" and moved.sample_lists == str(tmp_path / "lists")
    assert moved.recorded() | {"catalog_dir": "catalog", "sample_lists": None} == search.recorded()
    assert absolute(search.replace(sample_list=None)).sample_lists is None


def test_a_search_configuration_is_validated_on_construction():
    for settings, message in (({"scheduler": "pbt"}, "'asha', 'fifo'"), ({"select_by": "f1"}, "'accuracy', 'uf1'"),
                              ({"cpus_per_trial": 0}, "cpus_per_trial"), ({"gpus_per_trial": -1}, "gpus_per_trial"),
                              ({"max_failures": -1}, "max_failures"), ({"misspelt": 1}, "misspelt"),
                              ({"base": TrainConfig(validation_fraction=0.0)}, "validation_fraction must be above 0")):
        with pytest.raises(ValueError, match=message):
            SearchConfig(catalog_dir="/c", store="/s", **settings)
    stored = SearchConfig.model_validate(json.loads(json.dumps(SEARCH.to_dict())))  # as a Prefect parameter
    assert stored == SEARCH and stored.recorded() == SEARCH.recorded()
