"""Meta-MMFNet behind the model registry's interface (training/models/__init__.py): a thin adapter
around training/stages.py (the CK+ macro pretraining once a run, the stages of one fold) and training/run.py's
notes and prediction rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from merflow.configs.search import SearchSpace
from merflow.configs.train import RECIPES, TrainConfig
from merflow.training import run as protocol_run
from merflow.training.loops import new_encoder
from merflow.training.model import LinearClassifier, input_channels
from merflow.training.models import FoldResult, ModelInfo, RunPlan, register_model
from merflow.training.predictions import PREDICTION_COLUMNS, prediction_rows
from merflow.training.stages import FoldSkipped, pretrain_macro, run_fold

NAME = "meta-mmfnet"
Config = TrainConfig
# The options `train` and `tune` take that set a TrainConfig field of the same name; left unset: the --recipe's.
RECIPE_FIELDS = ("encoder", "layout", "macro_epochs", "pretrain_epochs", "meta_epochs", "batches_per_epoch",
                 "batch_size", "epoch_choice")


def from_options(given: dict) -> TrainConfig:
    """The TrainConfig of the command line's options: the --recipe's settings (configs/train.py RECIPES), the
    options given on top."""
    given = dict(given)
    return TrainConfig.from_recipe(given.pop("recipe", "merflow"), **given)


def _recipes_default(name: str) -> str:
    """The help's default of an option left to the --recipe: its value, or each recipe's where they differ."""
    values = {recipe: settings.get(name, TrainConfig.model_fields[name].default) for recipe, settings in RECIPES.items()}
    texts = {recipe: (f"{v:g}" if isinstance(v, float) else str(v)) for recipe, v in values.items()}
    if len(set(texts.values())) == 1:
        return f"default {next(iter(texts.values()))}"
    return "default: the recipe's (" + ", ".join(f"{r} {t}" for r, t in texts.items()) + ")"


# Small enough for the registry's test to train a fold in seconds on a CPU: one epoch of everything, one shot.
TINY_SETTINGS = {"macro_epochs": 1, "pretrain_epochs": 1, "meta_epochs": 1, "batches_per_epoch": 1, "shots": 1,
                 "device": "cpu"}
MODEL = register_model(ModelInfo(
    NAME, __name__,
    "Meta-MMFNet (Gong et al., ACM TOMM 2023): micro and macro encoders meta-trained as prototype classifiers, "
    "fused as d_micro + α·d_macro; α (and with --epoch-choice each stage's epoch) chosen on validation subjects",
    TrainConfig, inputs=("diff", "flow"),
    options=("recipe", *RECIPE_FIELDS, "shots", "seed", "device"), from_options=from_options,
    unset_help={name: _recipes_default(name) for name in RECIPE_FIELDS},
    chooses="validation subjects", search_space=SearchSpace, macro_pretraining=True))


def default_config(**overrides) -> TrainConfig:
    """The default configuration (merflow's own recipe), with ``overrides``."""
    return TrainConfig(**overrides)


def plan(data, config: TrainConfig, protocol: str, dataset: str | None, class_set: str | None = None) -> RunPlan:
    """Every fold of the protocol; the notes are run.py's (samples left out, skipped folds, shortfalls,
    the recipe's feature mismatch)."""
    notes = protocol_run.run_notes(data, config)
    return RunPlan(data.folds, notes, data.identity(), protocol_run.notes_messages(notes), config.to_dict(),
                   shots=config.shots)


def prepare(data, config: TrainConfig, checkpoints) -> dict:
    """The macro encoder pretrained on the protocol's CK+ samples (stages.pretrain_macro, checkpointed under
    ``checkpoints``): once a run, shared by every fold."""
    return pretrain_macro(data.source, data.macro_keys, data.macro_labels, data.macro_classes, config, checkpoints)


def fold_predictions(result: dict, samples, alphas: tuple[float, ...]) -> pd.DataFrame:
    """A fold's rows (training/predictions.py, the one builder): per split, the micro and macro models and
    the fused d_micro + α·d_macro at every α of the grid, the fused rows at the α the fold chose on its
    validation subjects marked ``chosen``."""
    fold = result["fold"]
    rows = []
    for split in ("validation", "test"):
        keys = result["keys"][split]
        micro, macro = result["scores"]["micro"][split], result["scores"]["macro"][split]
        variants = [("micro", None, micro), ("macro", None, macro)]
        variants += [("fused", alpha, micro + alpha * macro) for alpha in alphas]
        for model, alpha, scores in variants:
            rows += prediction_rows(fold, samples, split, keys, scores, model=model, alpha=alpha,
                                    chosen=model == "fused" and alpha == result["chosen"]["alpha"])
    return pd.DataFrame(rows, columns=list(PREDICTION_COLUMNS))


def run_folds(data, folds, config: TrainConfig, checkpoints, *, prepared: dict | None = None,
              on_fold=None) -> list[FoldResult]:
    """Every fold through stages.run_fold (its stages checkpointed), as prediction rows; a fold run_fold
    skips (``FoldSkipped``: nothing to train on) comes back with its reason."""
    macro = prepared if prepared is not None else prepare(data, config, checkpoints)
    outcomes = []
    for index, fold in enumerate(folds, start=1):
        try:
            result = run_fold(fold, data.source, data.samples, macro, config, checkpoints)
        except FoldSkipped as skipped:
            outcomes.append(FoldResult(fold, None, {}, skipped.reason))
        else:
            outcomes.append(FoldResult(fold, fold_predictions(result, data.samples, config.alphas),
                                       result["chosen"]))
        if on_fold:
            on_fold(index, len(folds), fold)
    return outcomes


def search_fold(data, fold, config: TrainConfig, checkpoints, *, on_epoch=None) -> FoldResult:
    """One fold of a search's trial (flows/trial.py): the fold as ``run_folds`` trains it (the CK+ encoder
    from ``prepare``, checkpointed and so shared by the search's trials), ``on_epoch(epoch, accuracy)``
    hearing the micro model's validation accuracy after each meta-training epoch (early stopping). A fold
    nothing can be trained on raises ``FoldSkipped`` (a ``DataError``: the trial ends at once)."""
    macro = prepare(data, config, checkpoints)
    result = run_fold(fold, data.source, data.samples, macro, config, checkpoints, on_epoch=on_epoch)
    return FoldResult(fold, fold_predictions(result, data.samples, config.alphas), result["chosen"])


def smoke_step(seed: int = 0) -> dict:
    """The small encoder as a classifier: one forward pass and one SGD step on random inputs."""
    config = TrainConfig(seed=seed)
    encoder = new_encoder(config, seed)
    model = LinearClassifier(encoder, 4)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn((6, input_channels(config.layout), 56, 28), generator=generator)
    y = torch.from_numpy(np.arange(6) % 4)
    before = [p.detach().clone() for p in model.parameters()]
    optimiser = torch.optim.SGD(model.parameters(), lr=config.pretrain_lr, momentum=config.momentum)
    model.train()
    logits = model(x)
    loss = nn.functional.cross_entropy(logits, y)
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    change = float(sum((p.detach() - b).norm() for p, b in zip(model.parameters(), before)))
    return {"loss": float(loss.detach()), "change": change, "logits": tuple(logits.shape)}
