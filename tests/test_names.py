"""configs/names.py: every name that becomes a path is one folder of its own, checked where it enters
(the CLI, a flow's parameters, a deployment's form) and where it becomes a path (storage)."""

import pytest

from merflow.configs.names import (
    NAME_FORM,
    InvalidName,
    check_folder_name,
    check_name,
    encoded_name,
    folder_name_problem,
    is_name,
)

HOSTILE = ["../../../x", "../escape", "a/b", "", "a b", ".", "..", ".hidden", "run=1", "/abs", "a\\b", "x" * 129,
           "tab\there", "é"]


def test_names_of_the_form_pass_and_hostile_ones_are_refused_in_one_line_naming_the_form():
    for good in ("20261201T120000-abc123", "train-0123456789ab", "casme2-loso-1", "a_b", "A.b-c", "x" * 128):
        assert check_name(good, "run id") == good
    for bad in HOSTILE:
        assert not is_name(bad)
        with pytest.raises(InvalidName) as refused:
            check_name(bad, "run id")
        assert NAME_FORM in str(refused.value) and "\n" not in str(refused.value)
    assert "an empty run id" in str(pytest.raises(InvalidName, check_name, "", "run id").value)


def test_any_text_gets_an_injective_name_and_a_name_stays_itself():
    assert encoded_name("loso-casme2-sub01") == "loso-casme2-sub01"
    names = {text: encoded_name(text) for text in ["a b", "a_b", "a/b", "a\\b", "../x", "", "é", "x" * 300, "a  b"]}
    assert all(is_name(name) for name in names.values()), names
    assert len(set(names.values())) == len(names), names  # "a b" and "a_b" do not meet


def test_a_folder_name_from_data_is_one_folder():
    for good in ("EP01_12@73", "disgust1_1", "006_1_2", "sub 01"):
        assert check_folder_name(good) == good
    for bad, why in (("", "empty"), ("..", "reference"), ("../sub01/EP01_01f", "separator"), ("/etc", "separator"),
                     ("a\\b", "separator"), ("a\x00b", "control"), ("é" * 200, "longer")):
        assert why in folder_name_problem(bad), bad
    with pytest.raises(InvalidName):
        check_folder_name("../x", "clip")


def test_storage_refuses_a_run_id_that_is_a_path_before_writing(tmp_path):
    import pandas as pd

    from merflow.storage import checkpoints, results

    for bad in ("../../../x", "a/b", "", "a b"):
        with pytest.raises(InvalidName):
            results.write_part(tmp_path / "out", "runs", bad, "loso", "all", pd.DataFrame())
        with pytest.raises(InvalidName):
            checkpoints.check_run_identity(tmp_path / "out", bad, {"protocol": "loso"})
        with pytest.raises(InvalidName):
            checkpoints.run_checkpoints(tmp_path / "out", bad)
    with pytest.raises(InvalidName):
        results.part_location(tmp_path, "metrics", "ok", "../loso", "all")
    with pytest.raises(InvalidName):
        checkpoints.Checkpoints(tmp_path).folder("..")
    assert not any(tmp_path.parent.glob("x")) and list(tmp_path.iterdir()) == []


def test_the_cli_refuses_a_run_id_in_one_line_before_any_work(tmp_path, capsys):
    import argparse

    from merflow.flows.cli import main
    from merflow.flows.cli.options import check_names

    out = tmp_path / "a" / "b" / "results"
    for bad in ("../../../x", "a/b", "", "a b"):
        assert main(["train", "--catalog", str(tmp_path / "c"), "--store", str(tmp_path / "s"), "--out", str(out),
                     "--run", bad]) == 2
        printed = capsys.readouterr().out
        assert printed.count("\n") == 1 and "is not allowed" in printed and NAME_FORM in printed, printed
        with pytest.raises(InvalidName):  # tune's --run, the search's name, the same way (no Ray imported here)
            check_names(argparse.Namespace(command="tune", run=bad))
    assert list(tmp_path.iterdir()) == []  # nothing written, no server started for it
    check_names(argparse.Namespace(command="tune", run="a_b"))


def test_the_search_and_its_experiment_folder_take_names_only():
    from pydantic import ValidationError

    from merflow.configs.search import SearchConfig

    assert SearchConfig(catalog_dir="c", store="s", run="a_b").run == "a_b"
    with pytest.raises(ValidationError, match="is not allowed"):
        SearchConfig(catalog_dir="c", store="s", run="a b")
    pytest.importorskip("ray")
    from merflow.flows.search import experiment_path

    search = SearchConfig(catalog_dir="c", store="s", out="/r")
    assert experiment_path(search, "a_b") == "/r/tune/a_b"
    with pytest.raises(InvalidName):
        experiment_path(search, "a b")


def test_an_empty_run_id_is_refused_not_replaced_and_a_new_one_is_a_name():
    from merflow.training.run import run_id

    assert is_name(run_id(None)) and run_id("mine") == "mine"
    with pytest.raises(InvalidName, match="an empty run id"):
        run_id("")


def test_a_feature_group_is_named_after_a_dataset_name_only():
    from merflow.configs.features import FeatureConfig
    from merflow.storage.features import group_name

    assert group_name("casme2", FeatureConfig()).startswith("casme2-")
    with pytest.raises(InvalidName, match="dataset name"):
        group_name("../casme2", FeatureConfig())
