"""The typed configurations a command's options make: `train`'s and `tune`'s TrainConfig, `train --model
survey-cnn`'s SurveyConfig, `train --model ststnet`'s StstnetConfig, `tune`'s grids. Options left unset keep the configuration's own defaults."""

from __future__ import annotations

import argparse

# The options `train` and `tune` share that set a TrainConfig field of the same name, made from those fields by
# the parser (flows/cli/fields.py) with no default: None, the recipe's.
TRAIN_FIELDS = ("encoder", "layout", "macro_epochs", "pretrain_epochs", "meta_epochs", "batches_per_epoch",
                "batch_size", "epoch_choice")


# Options whose value becomes a folder or file name, per command (configs/names.py): checked before anything
# starts, so that a bad one is one line (`results --run` only filters rows: runs written before names were
# checked stay readable).
NAMED_OPTIONS = {"train": {"run": "run id"}, "tune": {"run": "run id"}}


def check_names(args: argparse.Namespace) -> None:
    """An ``InvalidName`` (one line naming the allowed form) for a named option that is not a name."""
    from merflow.configs.names import check_name

    for option, what in NAMED_OPTIONS.get(args.command, {}).items():
        value = getattr(args, option, None)
        if value is not None:
            check_name(value, what)


def train_config(args: argparse.Namespace, **fixed):
    """The TrainConfig of the options `train` and `tune` share: the --recipe's settings (configs/train.py
    RECIPES), with the options given on top; unset options keep the recipe's."""
    from merflow.configs.train import TrainConfig

    given = {name: getattr(args, name) for name in TRAIN_FIELDS if getattr(args, name, None) is not None}
    return TrainConfig.from_recipe(args.recipe, seed=args.seed, device=args.device, **given, **fixed)


def tune_train_config(args: argparse.Namespace):
    """`tune`'s base TrainConfig. A search chooses on validation subjects, so under --recipe published
    (which has none) merflow's validation fraction holds out training subjects; the rest is published."""
    from merflow.configs.train import RECIPES, TrainConfig
    from merflow.flows.defaults import default

    unvalidated = RECIPES[args.recipe].get("validation_fraction", default(TrainConfig, "validation_fraction")) == 0
    return train_config(args, **({"validation_fraction": default(TrainConfig, "validation_fraction")}
                                 if unvalidated else {}))


def survey_config(args: argparse.Namespace):
    """The SurveyConfig of `train --model survey-cnn`: main4.m's schedule unless --epochs says otherwise."""
    from merflow.training.models.survey_cnn import SurveyConfig

    given = {name: getattr(args, name) for name in ("balance", "epochs", "engine") if getattr(args, name, None)}
    return SurveyConfig(seed=args.seed, device=args.device, unannotated_apex=args.unannotated_apex,
                        grey_channels=args.grey_channels, init=args.init, **given)


def ststnet_config(args: argparse.Namespace):
    """The StstnetConfig of `train --model ststnet`: main.py's schedule unless --epochs says otherwise."""
    from merflow.training.models.ststnet import StstnetConfig

    given = {name: getattr(args, name) for name in ("epochs", "engine") if getattr(args, name, None)}
    return StstnetConfig(seed=args.seed, device=args.device, input_order=args.input_order,
                         input_range=args.input_range, **given)


def centroid_config(args: argparse.Namespace):
    """The CentroidConfig of `train --model nearest-centroid`: its features (--centroid-features), the folds' seed."""
    from merflow.training.models.nearest_centroid import CentroidConfig

    return CentroidConfig(features=args.centroid_features, seed=args.seed)


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
