"""Meta-MMFNet's stages for one fold, and the macro pretraining shared by all folds.

Stages (METHOD.md): the macro encoder pretrained as a classifier on CK+ (once per run); per fold
the micro encoder pretrained as a classifier on the fold's training subjects; both encoders
meta-trained as prototype classifiers on N-way K-shot episodes; at test time K support shots per
class from the training subjects, and the scores fused as d = d_micro + α·d_macro for a whole α
grid at once (no retraining). Every choice (the epoch of each stage, α) is made on the fold's
inner validation subjects; the held-out subject's labels are only ever used to score.

Each stage is checkpointed under ``checkpoint_dir``; a rerun loads what is there instead of
training it again.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import pickle
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from filelock import FileLock
from torch import nn

from merflow.training.data import FeatureSource, FlowScale
from merflow.training.encoders import build_encoder
from merflow.training.episodes import EpisodeSampler, draw_support
from merflow.training.folds import Fold
from merflow.training.model import LinearClassifier, PrototypeClassifier, input_channels


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run's numbers; recorded with every result row."""

    encoder: str = "small"
    layout: str = "stack_height"
    shots: int = 5
    queries: int = 1
    macro_epochs: int = 100          # published: 100 epochs on CK+
    pretrain_epochs: int = 50        # published: 50 epochs per fold
    meta_epochs: int = 7
    batches_per_epoch: int = 30      # published: 30 batches of 4 episodes
    episodes_per_batch: int = 4
    batch_size: int = 32
    pretrain_lr: float = 0.01
    meta_lr: float = 0.05
    meta_lr_step: int = 3            # x0.1 every 3 epochs
    momentum: float = 0.9
    weight_decay: float = 5e-4
    alphas: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(0, 11))
    seed: int = 0
    device: str = "auto"             # auto | cpu | cuda

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def hash(self) -> str:
        return _hash(self.to_dict())

    def stage_hash(self, stage: str) -> str:
        """A hash of the settings a stage's weights depend on, so that configurations of a search that
        differ only in later settings (shots, α) share the earlier stages' checkpoints."""
        settings = self.to_dict()
        del settings["device"]  # where it ran does not name what was trained
        if stage in ("macro_pretrain", "micro_pretrain"):
            keep = PRETRAIN_SETTINGS + (("macro_epochs",) if stage == "macro_pretrain" else ("pretrain_epochs",))
            settings = {k: settings[k] for k in keep}
        elif stage != "evaluation":  # meta-training: everything but the α grid, which no weight depends on
            del settings["alphas"]
        return _hash({"stage": stage} | settings)


# The settings classifier pretraining depends on (not shots, queries, meta-training or α).
PRETRAIN_SETTINGS = ("encoder", "layout", "batch_size", "pretrain_lr", "momentum", "weight_decay", "seed")


def _hash(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


@dataclass
class Split:
    """Inputs and class indices of one set of samples."""

    keys: list[str]
    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.keys)


@dataclass
class StageResult:
    best_epoch: int
    validation_accuracy: float | None
    history: list[float] = field(default_factory=list)


def _autocast(device: torch.device):
    # Mixed precision where it pays (CUDA); full precision on the CPU keeps runs repeatable.
    return torch.autocast(device_type=device.type, dtype=torch.float16, enabled=device.type == "cuda")


def _tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).to(device)


def new_encoder(config: TrainConfig, seed: int) -> nn.Module:
    """A freshly initialised encoder; seeded first, so that its initial weights (and so the whole
    run) do not depend on what ran before in the process."""
    seed_everything(seed)
    return build_encoder(config.encoder, input_channels(config.layout))


def _accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    return float((scores.argmax(1) == labels).mean()) if len(labels) else float("nan")


def train_classifier(encoder: nn.Module, train: Split, validation: Split | None, n_classes: int, epochs: int,
                     config: TrainConfig, device: torch.device, seed: int) -> tuple[nn.Module, StageResult]:
    """Pretrain an encoder as a plain classifier; keep the epoch that scores best on validation."""
    seed_everything(seed)
    model = LinearClassifier(encoder, n_classes).to(device)
    optimiser = torch.optim.SGD(model.parameters(), lr=config.pretrain_lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    scaler = torch.amp.GradScaler(enabled=device.type == "cuda")
    generator = np.random.default_rng(seed)
    x, y = _tensor(train.x, device), _tensor(train.y.astype(np.int64), device)
    best = StageResult(best_epoch=epochs, validation_accuracy=None)
    best_state = None
    for epoch in range(1, epochs + 1):
        model.train()
        order = generator.permutation(len(train))
        for start in range(0, len(order), config.batch_size):
            batch = torch.from_numpy(order[start:start + config.batch_size]).to(device)
            if len(batch) < 2:  # BatchNorm cannot train on a single sample
                continue
            with _autocast(device):
                loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            optimiser.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimiser)
            scaler.update()
        if validation is not None and len(validation):
            accuracy = _accuracy(_classifier_scores(model, validation.x, device), validation.y)
            best.history.append(accuracy)
            if best.validation_accuracy is None or accuracy > best.validation_accuracy:
                best = StageResult(epoch, accuracy, best.history)
                best_state = copy.deepcopy(model.encoder.state_dict())
    if best_state is not None:
        model.encoder.load_state_dict(best_state)
    return model.encoder, best


@torch.no_grad()
def _classifier_scores(model: LinearClassifier, x: np.ndarray, device: torch.device) -> np.ndarray:
    model.eval()
    return model(_tensor(x, device)).float().cpu().numpy()


@torch.no_grad()
def prototype_scores(model: PrototypeClassifier, support: Split, queries: np.ndarray, n_classes: int,
                     device: torch.device) -> np.ndarray:
    """τ·cos(f(x), w_c) of every query against the prototypes of the support set."""
    model.eval()
    if not len(queries):
        return np.zeros((0, n_classes), np.float32)
    prototypes = model.prototypes(model.embed(_tensor(support.x, device)),
                                  _tensor(support.y.astype(np.int64), device), n_classes)
    return model.logits(model.embed(_tensor(queries, device)), prototypes).float().cpu().numpy()


def meta_train(encoder: nn.Module, train: Split, validation: Split | None, n_classes: int, config: TrainConfig,
               device: torch.device, seed: int, on_epoch=None) -> tuple[PrototypeClassifier, StageResult]:
    """Meta-Baseline: episodes of all classes, K shots and Q queries each; keep the best validation epoch
    (validation queries against prototypes drawn from the training subjects). ``on_epoch(epoch,
    validation_accuracy)`` hears each epoch's score (a Tune trial reports it for early stopping)."""
    seed_everything(seed)
    model = PrototypeClassifier(encoder).to(device)
    optimiser = torch.optim.SGD(model.parameters(), lr=config.meta_lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.StepLR(optimiser, step_size=config.meta_lr_step, gamma=0.1)
    scaler = torch.amp.GradScaler(enabled=device.type == "cuda")
    sampler = EpisodeSampler(train.y, n_classes, k_shot=config.shots, q_query=config.queries, seed=seed)
    support = _support(train, n_classes, config.shots, seed)
    x = _tensor(train.x, device)
    best = StageResult(best_epoch=config.meta_epochs, validation_accuracy=None)
    best_state = copy.deepcopy(model.state_dict())
    for epoch in range(1, config.meta_epochs + 1):
        model.train()
        for batch in sampler.batches(config.batches_per_epoch, config.episodes_per_batch):
            with _autocast(device):
                loss = sum(nn.functional.cross_entropy(
                    model(x[_index(e.support, device)], _tensor(e.support_labels.astype(np.int64), device),
                          x[_index(e.query, device)], n_classes),
                    _tensor(e.query_labels.astype(np.int64), device)) for e in batch) / len(batch)
            optimiser.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimiser)
            scaler.update()
        schedule.step()
        if validation is not None and len(validation):
            accuracy = _accuracy(prototype_scores(model, support, validation.x, n_classes, device), validation.y)
            best.history.append(accuracy)
            if best.validation_accuracy is None or accuracy > best.validation_accuracy:
                best = StageResult(epoch, accuracy, best.history)
                best_state = copy.deepcopy(model.state_dict())
            if on_epoch:
                on_epoch(epoch, accuracy)
        else:
            best_state = copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    return model, best


def _index(indices: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.asarray(indices, dtype=np.int64)).to(device)


def _support(train: Split, n_classes: int, shots: int, seed: int) -> Split:
    chosen = draw_support(train.y, n_classes, shots, seed)
    return Split([train.keys[i] for i in chosen], train.x[chosen], train.y[chosen])


def choose_alpha(micro: np.ndarray, macro: np.ndarray, labels: np.ndarray, alphas: tuple[float, ...]) -> float:
    """The α with the best validation accuracy (ties: the smaller α, i.e. the less fusion)."""
    if not len(labels):
        return 1.0  # no validation subjects: the plain sum, as published, flagged by the caller
    accuracies = [_accuracy(micro + alpha * macro, labels) for alpha in alphas]
    return alphas[int(np.argmax(accuracies))]


# ------------------------------------------------------------------------------------------ stages
def _checkpoint(path: Path, stage: str, config: TrainConfig, make):
    """Load a stage's checkpoint if one exists for the settings it depends on, else run ``make`` and save it.

    Checkpoints are named ``<stage>-<stage hash>.pt``, so the configurations of a search share what
    they have in common (a fold's pretrained encoder serves every number of shots). Concurrent trials
    take a file lock: one trains, the others wait and load; a checkpoint that can't be read (a
    writer killed mid-way leaves only a hidden temporary file, but a disk can still fail) is retrained.
    """
    key = config.stage_hash(stage)
    path.mkdir(parents=True, exist_ok=True)
    file = path / f"{stage}-{key}.pt"
    with FileLock(str(path / f".{stage}-{key}.lock")):
        if file.exists():
            try:
                saved = torch.load(file, map_location="cpu", weights_only=False)
                if saved.get("stage_hash") == key:
                    return saved["payload"]
            except (RuntimeError, EOFError, pickle.UnpicklingError, KeyError, AttributeError):
                pass  # unreadable: train the stage again and replace the file
        payload = make()
        handle, temp = tempfile.mkstemp(prefix=f".{stage}-", suffix=".tmp", dir=path)
        os.close(handle)
        try:
            torch.save({"stage_hash": key, "payload": payload}, temp)
            os.replace(temp, file)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
    return payload


def pretrain_macro(source: FeatureSource, keys: list[str], labels: list[str], classes: tuple[str, ...],
                   config: TrainConfig, checkpoint_dir: Path) -> dict:
    """The macro encoder, pretrained as a classifier on CK+ macro-expressions (once per run)."""
    if not keys:
        raise ValueError("macro pretraining needs CK+ samples with features: ingest CK+ and run `merflow features`")

    def make():
        device = pick_device(config.device)
        scale = FlowScale.fit(source.flows(keys))
        y = np.array([classes.index(label) for label in labels])
        split = Split(list(keys), source.inputs(keys, scale, config.layout), y)
        encoder = new_encoder(config, config.seed)
        initial = {k: v.clone() for k, v in encoder.state_dict().items()}
        encoder, stage = train_classifier(encoder, split, None, len(classes), config.macro_epochs, config, device,
                                          config.seed)
        state = {k: v.detach().cpu() for k, v in encoder.state_dict().items()}
        change = float(sum((state[k].float() - initial[k].float()).norm() for k in state if state[k].is_floating_point()))
        return {"state": state, "classes": classes, "samples": len(keys), "weight_change": change,
                "epochs": stage.best_epoch}

    return _checkpoint(Path(checkpoint_dir) / "macro", "macro_pretrain", config, make)


def run_fold(fold: Fold, source: FeatureSource, samples: pd.DataFrame, macro: dict, config: TrainConfig,
             checkpoint_dir: Path, on_epoch=None) -> dict:
    """Train and evaluate one fold; returns its predictions and chosen settings (checkpointed).

    ``samples`` is the protocol's catalog rows (sample_key index) with the fold's label column.
    ``on_epoch(epoch, validation_accuracy)`` hears each epoch of the micro model's meta-training.
    """
    folder = Path(checkpoint_dir) / fold.name.replace("/", "_")
    device = pick_device(config.device)
    n_classes = len(fold.classes)
    labels = samples[fold.label_column]
    missing = [k for k in fold.fit_keys + fold.validation_keys + fold.test_keys if k not in source]
    if missing:
        raise LookupError(f"fold {fold.name}: {len(missing)} samples have no valid features, e.g. {missing[:3]}")
    fit_flow_scale = FlowScale.fit(source.flows(list(fold.fit_keys)))

    def split(keys) -> Split:
        keys = list(keys)
        return Split(keys, source.inputs(keys, fit_flow_scale, config.layout),
                     np.array([fold.classes.index(labels[k]) for k in keys], dtype=np.int64))

    fit, validation = split(fold.fit_keys), split(fold.validation_keys)
    seed = config.seed + _stable_int(fold.name)

    def micro_pretrain_stage():
        encoder = new_encoder(config, seed)
        encoder, pretrain = train_classifier(encoder, fit, validation, n_classes, config.pretrain_epochs, config,
                                             device, seed)
        return {"state": {k: v.cpu() for k, v in encoder.state_dict().items()}, "epoch": pretrain.best_epoch}

    def micro_stage():
        encoder = new_encoder(config, seed)
        encoder.load_state_dict(pretrained["state"])
        model, meta = meta_train(encoder, fit, validation, n_classes, config, device, seed + 1, on_epoch=on_epoch)
        return {"state": {k: v.cpu() for k, v in model.state_dict().items()},
                "pretrain_epoch": pretrained["epoch"], "meta_epoch": meta.best_epoch,
                "validation_accuracy": meta.validation_accuracy}

    def macro_stage():
        encoder = new_encoder(config, seed)
        encoder.load_state_dict(macro["state"])
        model, meta = meta_train(encoder, fit, validation, n_classes, config, device, seed + 2)
        return {"state": {k: v.cpu() for k, v in model.state_dict().items()}, "meta_epoch": meta.best_epoch,
                "validation_accuracy": meta.validation_accuracy}

    def evaluation():
        test = Split(list(fold.test_keys), source.inputs(list(fold.test_keys), fit_flow_scale, config.layout),
                     np.zeros(len(fold.test_keys), np.int64))  # test labels are not looked at here
        support = _support(fit, n_classes, config.shots, seed + 3)
        scores = {}
        for name, stage in (("micro", micro_trained), ("macro", macro_trained)):
            model = PrototypeClassifier(build_encoder(config.encoder, input_channels(config.layout))).to(device)
            model.load_state_dict(stage["state"])
            scores[name] = {"validation": prototype_scores(model, support, validation.x, n_classes, device),
                            "test": prototype_scores(model, support, test.x, n_classes, device)}
        alpha = choose_alpha(scores["micro"]["validation"], scores["macro"]["validation"], validation.y, config.alphas)
        fused = scores["micro"]["validation"] + alpha * scores["macro"]["validation"]
        return {"scores": scores, "alpha": alpha, "alpha_chosen_on_validation": bool(len(validation)),
                "validation_accuracy": _accuracy(fused, validation.y)}

    pretrained = _checkpoint(folder, "micro_pretrain", config, micro_pretrain_stage)
    micro_trained = _checkpoint(folder, "micro", config, micro_stage)
    macro_trained = _checkpoint(folder, "macro", config, macro_stage)
    evaluated = _checkpoint(folder, "evaluation", config, evaluation)
    chosen = {"alpha": evaluated["alpha"], "alpha_chosen_on_validation": evaluated["alpha_chosen_on_validation"],
              "micro_pretrain_epoch": micro_trained["pretrain_epoch"], "micro_meta_epoch": micro_trained["meta_epoch"],
              "macro_meta_epoch": macro_trained["meta_epoch"],
              "validation_accuracy": evaluated.get("validation_accuracy")}
    return {"fold": fold, "chosen": chosen, "scores": evaluated["scores"],
            "keys": {"validation": list(fold.validation_keys), "test": list(fold.test_keys)}}


def _stable_int(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
