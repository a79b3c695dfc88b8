"""The typed configurations a command's options make: `train`'s and `tune`'s model configuration (the
registered model's, training/models/), `tune`'s grids, `spot`'s. Options left unset keep the configuration's
own defaults."""

from __future__ import annotations

import argparse

# Options whose value becomes a folder or file name, per command (configs/names.py): checked before anything
# starts, so that a bad one is one line (`results --run` only filters rows: runs written before names were
# checked stay readable).
NAMED_OPTIONS = {"train": {"run": "run id", "spotter_run": "--spotter-run"}, "tune": {"run": "run id"},
                 "export": {"run": "run id", "spotter_run": "--spotter-run", "recogniser_run": "--recogniser-run"}}


def check_names(args: argparse.Namespace) -> None:
    """An ``InvalidName`` (one line naming the allowed form) for a named option that is not a name."""
    from merflow.configs.names import check_name

    for option, what in NAMED_OPTIONS.get(args.command, {}).items():
        value = getattr(args, option, None)
        if value is not None:
            check_name(value, what)


def model_config(args: argparse.Namespace):
    """The configuration of `train --model M` (and `tune`'s base): the registered model's
    (training/models/ ``ModelInfo.config_from_options``) from its options typed on the command line, the
    rest its defaults (Meta-MMFNet's: the --recipe's)."""
    from merflow.flows.cli.parser import given_options
    from merflow.training import models

    info = models.get(args.model)
    return info.config_from_options(given_options(args, info))


def tune_model_config(args: argparse.Namespace):
    """`tune`'s base configuration. A search chooses on validation subjects, so a configuration that keeps
    none (Meta-MMFNet's --recipe published) holds out the configuration model's default share of the training
    subjects; the rest is as given."""
    from merflow.configs.search import SEARCHED
    from merflow.flows.cli.parser import given_options
    from merflow.training import models

    info = models.get(args.model)
    # A searched setting's option is the search's grid (`--shots 1,2`: ``search_grids``), not the base's value.
    given = {name: value for name, value in given_options(args, info).items() if name not in (*SEARCHED, "alphas")}
    config = info.config_from_options(given)
    if getattr(config, "validation_fraction", None) == 0 and "validation_fraction" in type(config).model_fields:
        return config.replace(validation_fraction=type(config).model_fields["validation_fraction"].default)
    return config


def search_grids(args: argparse.Namespace) -> dict:
    """`tune`'s grids (shots, α, learning rates) as the tune flow takes them; an option not given: its default."""
    from merflow.training.search.space import parse_grid

    grids = {"shots": parse_grid(args.shots, int) if args.shots else None,
             "alphas": parse_grid(args.alpha) if args.alpha else None,
             "meta_lr": parse_grid(args.meta_lr) if args.meta_lr else None,
             "pretrain_lr": parse_grid(args.pretrain_lr) if args.pretrain_lr else None}
    return {name: grid for name, grid in grids.items() if grid is not None}


# The options of `spot` that set a SpotConfig field of the same name (flows/cli/parser.py spot_options).
SPOT_FIELDS = ("spotter", "recipe", "epochs", "batch_size", "lr", "validation_fraction", "seed", "device", "classifier")


def spot_configs(args: argparse.Namespace):
    """`spot`'s SpotConfig and SpotFeatureConfig from its options (a comma list for --types and --p-grid)."""
    from merflow.configs.features import MotionConfig
    from merflow.configs.spotting import SpotConfig, SpotFeatureConfig

    settings = {name: getattr(args, name) for name in SPOT_FIELDS}
    settings |= {name: getattr(args, name) for name in ("types", "p_grid") if getattr(args, name)}
    features = SpotFeatureConfig(crop=args.crop, redetect_seconds=args.redetect_seconds, drift_iou=args.drift_iou,
                                 chunk_frames=args.chunk_frames, motion=MotionConfig(algorithm=args.flow))
    return SpotConfig(**settings), features
