"""flows/cli/fields.py: command-line options made from a configuration model's fields."""

from __future__ import annotations

import argparse
from typing import Annotated

import pytest
from pydantic import Field

from merflow.configs.base import Config, choice
from merflow.flows.cli.fields import add_config_options, default_text, option_arguments


class Toy(Config):
    """A configuration of every kind of field the generator reads."""

    name: str = Field(description="a name")
    epochs: Annotated[int, Field(ge=1)] = Field(3, description="training epochs")
    rate: float = Field(5e-5, description="a rate of 100%")
    mode: choice(("fast", "slow")) = Field("fast", description="how")
    size: choice((28, 80)) = 80
    limit: Annotated[int, Field(ge=1)] | None = Field(None, description="at most this many")
    grid: tuple[float, ...] = Field((0.1, 0.2), description="a grid")
    tidy: bool = Field(True, description="the tidying")
    loud: bool = Field(False, description="print more")
    plain: str = "x"


def _parser(**options) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toy")
    add_config_options(parser, Toy, list(Toy.model_fields), **options)
    return parser


def test_types_choices_and_defaults_come_from_the_model():
    args = _parser(required=["name"]).parse_args(["--name", "a"])
    assert vars(args) == {"name": "a", "epochs": 3, "rate": 5e-5, "mode": "fast", "size": 80, "limit": None,
                          "grid": None, "no_tidy": False, "loud": False, "plain": "x"}
    args = _parser(required=["name"]).parse_args(
        ["--name", "b", "--epochs", "4", "--rate", "0.5", "--mode", "slow", "--size", "28", "--limit", "2",
         "--grid", "0.1:0.3:0.1", "--no-tidy", "--loud", "--plain", "y"])
    assert (args.epochs, args.rate, args.mode, args.size, args.limit, args.grid) == (4, 0.5, "slow", 28, 2,
                                                                                     "0.1:0.3:0.1")
    assert type(args.epochs) is int and type(args.rate) is float and type(args.size) is int
    assert args.no_tidy and args.loud and args.plain == "y"
    with pytest.raises(SystemExit):
        _parser().parse_args(["--mode", "medium"])  # not a choice
    with pytest.raises(SystemExit):
        _parser().parse_args(["--size", "64"])
    with pytest.raises(SystemExit):
        _parser(required=["name"]).parse_args([])  # required


def test_help_is_the_description_and_the_default():
    names, kwargs = option_arguments(Toy, "epochs")
    assert names == ["--epochs"] and kwargs == {"type": int, "default": 3, "help": "training epochs (default 3)"}
    assert option_arguments(Toy, "rate")[1]["help"] == "a rate of 100%% (default 5e-05)"  # argparse's % escaped
    assert option_arguments(Toy, "mode")[1] == {"choices": ["fast", "slow"], "default": "fast",
                                                "help": "how (default fast)"}
    assert option_arguments(Toy, "limit")[1]["help"] == "at most this many"  # None: no default to show
    assert option_arguments(Toy, "tidy") == (["--no-tidy"], {"action": "store_true", "help": "without the tidying"})
    assert option_arguments(Toy, "loud") == (["--loud"], {"action": "store_true", "help": "print more"})
    # A field without a description still makes an option; its help is the default alone.
    assert option_arguments(Toy, "size")[1] == {"choices": [28, 80], "type": int, "default": 80,
                                                "help": "default 80"}
    assert option_arguments(Toy, "plain")[1] == {"default": "x", "help": "default x"}
    text = _parser().format_help()
    assert "a rate of 100% (default 5e-05)" in text and "{fast,slow}" in text


def test_renames_unset_defaults_and_overrides():
    parser = _parser(rename={"epochs": "rounds"}, unset={"epochs": "default: the recipe's"},
                     overrides={"plain": {"metavar": "TEXT", "choices": ["x", "y", "all"]}})
    args = parser.parse_args([])
    assert not hasattr(args, "epochs") and args.rounds is None  # unset: another source decides
    assert parser.parse_args(["--rounds", "7", "--plain", "all"]).rounds == 7
    assert "training epochs (default: the recipe's)" in parser.format_help()
    assert option_arguments(Toy, "grid", unset="default 0.1,0.2")[1] == {"default": None,
                                                                         "help": "a grid (default 0.1,0.2)"}
    with pytest.raises(LookupError, match="misspelt"):
        add_config_options(argparse.ArgumentParser(), Toy, ["misspelt"])


def test_defaults_are_shown_as_the_option_reads_them():
    assert [default_text(v) for v in (0.5, 1.0, 1e-4, 3, (1, 3, 5), (0.1, 1.0), "asha")] == [
        "0.5", "1", "0.0001", "3", "1,3,5", "0.1,1", "asha"]


def test_the_cli_options_are_the_configurations_defaults_and_choices():
    """`merflow train/tune/features/synth` offer the models' defaults and choices (parsed, not written twice)."""
    from merflow.configs.features import DETECTORS, FIRST_FRAMES, FLOW_ALGORITHMS, SIZES, FeatureConfig
    from merflow.configs.search import SCHEDULERS, SELECTION_METRICS, SearchConfig
    from merflow.configs.synth import SynthConfig
    from merflow.configs.train import EPOCH_CHOICES, RECIPE_NAMES
    from merflow.flows.cli.parser import build_parser
    from merflow.training.models.survey_cnn import SurveyConfig

    parser = build_parser()
    synth = parser.parse_args(["synth", "--dataset", "ckplus", "--out", "x"])
    made = SynthConfig("ckplus")
    assert (synth.subjects, synth.samples_per_subject, synth.archive, synth.seed, synth.scale, synth.no_quirks) == (
        made.subjects, made.samples_per_subject, made.archive, made.seed, made.scale, not made.quirks)
    features = parser.parse_args(["features", "--catalog", "c", "--store", "s"])
    assert (features.flow, features.size, features.shard_size, features.first_frame) == (
        "farneback", FeatureConfig().size, FeatureConfig().shard_size, "onset")
    tune = parser.parse_args(["tune", "--catalog", "c", "--store", "s"])
    search = SearchConfig(catalog_dir="c", store="s")
    assert (tune.scheduler, tune.select_by, tune.cpus_per_trial, tune.gpus_per_trial, tune.max_failures) == (
        search.scheduler, search.select_by, search.cpus_per_trial, search.gpus_per_trial, search.max_failures)
    assert tune.encoder is None and tune.epoch_choice is None and tune.recipe == "merflow"  # unset: the recipe's
    assert tune.epochs is None and tune.grey_channels == SurveyConfig().grey_channels
    actions = {a.dest: a for sub in (parser._subparsers._group_actions[0].choices[c] for c in ("tune", "features"))
               for a in sub._actions}
    assert tuple(actions["scheduler"].choices) == SCHEDULERS
    assert tuple(actions["select_by"].choices) == SELECTION_METRICS
    assert tuple(actions["epoch_choice"].choices) == EPOCH_CHOICES and tuple(actions["recipe"].choices) == RECIPE_NAMES
    assert tuple(actions["flow"].choices) == FLOW_ALGORITHMS and tuple(actions["size"].choices) == SIZES
    assert tuple(actions["detector"].choices) == DETECTORS and tuple(actions["first_frame"].choices) == FIRST_FRAMES
