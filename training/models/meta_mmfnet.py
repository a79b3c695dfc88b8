"""Meta-MMFNet behind the model registry's interface (training/models/__init__.py): a thin adapter
around training/stages.py (the CK+ macro pretraining once a run, the stages of one fold) and training/run.py's
notes and prediction rows."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from merflow.configs.train import TrainConfig
from merflow.training import run as protocol_run
from merflow.training.loops import new_encoder
from merflow.training.model import LinearClassifier, input_channels
from merflow.training.models import FoldResult, RunPlan
from merflow.training.stages import FoldSkipped, run_fold

NAME = "meta-mmfnet"
Config = TrainConfig


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
    """The macro encoder pretrained on CK+ (fit.pretrain_macro, checkpointed): once a run, shared by every fold."""
    return data.macro_model(config, checkpoints)


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
            outcomes.append(FoldResult(fold, protocol_run.fold_predictions(result, data.samples, config.alphas),
                                       result["chosen"]))
        if on_fold:
            on_fold(index, len(folds), fold)
    return outcomes


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
