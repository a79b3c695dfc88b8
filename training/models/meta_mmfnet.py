"""Meta-MMFNet behind the model registry's interface (training/models/__init__.py): a thin adapter
around training/fit.py (the stages of one fold) and training/run.py (a whole protocol), which stay
where they are and keep today's behaviour."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from merflow.training import run as protocol_run
from merflow.training.fit import TrainConfig, new_encoder, run_fold
from merflow.training.model import LinearClassifier, input_channels

NAME = "meta-mmfnet"
Config = TrainConfig


def default_config(**overrides) -> TrainConfig:
    return TrainConfig(**overrides)


def run_folds(data, folds, config: TrainConfig, checkpoints, *, store=None, on_fold=None) -> list[dict]:
    """Every fold through fit.run_fold (its stages checkpointed), as prediction rows."""
    macro = data.macro_model(config, checkpoints)
    outcomes = []
    for index, fold in enumerate(folds, start=1):
        result = run_fold(fold, data.source, data.samples, macro, config, checkpoints)
        outcomes.append({"fold": fold, "chosen": result["chosen"],
                         "predictions": protocol_run.fold_predictions(result, data.samples, config.alphas)})
        if on_fold:
            on_fold(index, len(folds), fold, result)
    return outcomes


def train_protocol(catalog_dir, store, protocol, dataset, config: TrainConfig, out, run=None, class_set=None,
                   on_fold=None, on_note=None, balance=None, **protocol_options) -> dict:
    if balance not in (None, "none"):
        raise ValueError(f"--balance {balance} is implemented for --model survey-cnn only; Meta-MMFNet trains on "
                         "every sample (its episodes draw the same number of samples of every class)")
    return protocol_run.train_protocol(catalog_dir, store, protocol, dataset, config, out, run=run,
                                       class_set=class_set, on_fold=on_fold, on_note=on_note, **protocol_options)


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
