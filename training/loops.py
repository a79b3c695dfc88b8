"""Meta-MMFNet's two training loops and what they score with.

``train_classifier`` pretrains an encoder as a plain classifier (the CK+ macro encoder, each fold's micro
encoder); ``meta_train`` meta-trains it as a prototype classifier on N-way K-shot episodes (Meta-Baseline,
docs/method.md). Each stage keeps its last epoch, or (``epoch_choice`` "validation" / "loss") the epoch of
the best validation accuracy / lowest validation cross-entropy from ``first_eligible_epoch`` on;
``choose_alpha`` picks the fusion weight α on the validation subjects. Pure computation: arrays in,
weights and scores out; no store, no checkpoint (training/stages.py checkpoints the stages).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from merflow.configs.train import TrainConfig
from merflow.training.encoders import build_encoder
from merflow.training.episodes import EpisodeSampler, draw_support
from merflow.training.model import LinearClassifier, PrototypeClassifier, input_channels


def pick_device(name: str = "auto") -> torch.device:
    """The torch device of ``TrainConfig.device``: "auto" is CUDA where there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed torch's and numpy's global generators."""
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
    """The epoch a stage kept, its validation accuracy and loss there, and every epoch's validation accuracy."""

    best_epoch: int
    validation_accuracy: float | None
    history: list[float] = field(default_factory=list)
    validation_loss: float | None = None


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


def accuracy_of(scores: np.ndarray, labels: np.ndarray) -> float:
    """The fraction of rows whose highest score is at their label (nan for no samples)."""
    return float((scores.argmax(1) == labels).mean()) if len(labels) else float("nan")


def cross_entropy_of(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy of softmax(scores) against the labels (nan for no samples)."""
    if not len(labels):
        return float("nan")
    scores = scores.astype(np.float64)
    shifted = scores - scores.max(1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    return float(-log_p[np.arange(len(labels)), labels].mean())


def first_eligible_epoch(epochs: int, config: TrainConfig) -> int:
    """The first epoch a stage of ``epochs`` epochs may keep (``min_epoch_fraction``)."""
    return min(epochs, max(1, int(np.ceil(config.min_epoch_fraction * epochs))))


def _better(config: TrainConfig, epoch: int, epochs: int, accuracy: float, loss: float, best: StageResult) -> bool:
    """Whether this epoch replaces the stage's best one: the higher validation accuracy (ties: the
    earlier epoch) or the lower validation loss, among the eligible epochs."""
    if epoch < first_eligible_epoch(epochs, config):
        return False
    if best.validation_accuracy is None:
        return True
    if config.epoch_choice == "loss":
        return loss < best.validation_loss
    return accuracy > best.validation_accuracy


def train_classifier(encoder: nn.Module, train: Split, validation: Split | None, n_classes: int, epochs: int,
                     config: TrainConfig, device: torch.device, seed: int) -> tuple[nn.Module, StageResult]:
    """Pretrain an encoder as a plain classifier; keep the epoch that scores best on validation
    (``epoch_choice`` "validation": accuracy; "loss": cross-entropy; from ``first_eligible_epoch`` on)
    or the last one ("last")."""
    seed_everything(seed)
    model = LinearClassifier(encoder, n_classes).to(device)
    optimiser = torch.optim.SGD(model.parameters(), lr=config.pretrain_lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    schedule = (torch.optim.lr_scheduler.StepLR(optimiser, step_size=config.pretrain_lr_step, gamma=0.1)
                if config.pretrain_lr_step else None)
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
        if schedule is not None:
            schedule.step()
        if validation is not None and len(validation) and config.epoch_choice != "last":
            scores = _classifier_scores(model, validation.x, device)
            accuracy, loss = accuracy_of(scores, validation.y), cross_entropy_of(scores, validation.y)
            best.history.append(accuracy)
            if _better(config, epoch, epochs, accuracy, loss, best):
                best = StageResult(epoch, accuracy, best.history, loss)
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
               device: torch.device, seed: int, on_epoch=None, class_names=None,
               context: str = "") -> tuple[PrototypeClassifier, StageResult]:
    """Meta-Baseline: episodes of all classes, K shots and Q queries each; keep the best validation epoch
    (validation queries against prototypes drawn from the training subjects), or the last one
    (``epoch_choice`` "last"). ``on_epoch(epoch, validation_accuracy)`` hears each epoch's score (a
    Tune trial reports it for early stopping). ``class_names`` and ``context`` name the classes and the
    fold in the episode sampler's messages."""
    seed_everything(seed)
    model = PrototypeClassifier(encoder).to(device)
    optimiser = torch.optim.SGD(model.parameters(), lr=config.meta_lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.StepLR(optimiser, step_size=config.meta_lr_step, gamma=0.1)
    scaler = torch.amp.GradScaler(enabled=device.type == "cuda")
    sampler = EpisodeSampler(train.y, n_classes, k_shot=config.shots, q_query=config.queries, seed=seed,
                             class_names=class_names, context=context)
    support = support_of(train, n_classes, config.shots, seed)
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
            scores = prototype_scores(model, support, validation.x, n_classes, device)
            accuracy, loss = accuracy_of(scores, validation.y), cross_entropy_of(scores, validation.y)
            best.history.append(accuracy)
            if config.epoch_choice == "last":  # a fixed schedule: the last epoch, whatever validation says
                best, best_state = StageResult(epoch, accuracy, best.history, loss), None
            elif _better(config, epoch, config.meta_epochs, accuracy, loss, best):
                best = StageResult(epoch, accuracy, best.history, loss)
                best_state = copy.deepcopy(model.state_dict())
            if on_epoch:
                on_epoch(epoch, accuracy)
        else:
            best_state = None  # no validation: the last epoch
    if best_state is None:
        best_state = copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    return model, best


def _index(indices: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.asarray(indices, dtype=np.int64)).to(device)


def support_of(train: Split, n_classes: int, shots: int, seed: int) -> Split:
    """The support set: ``shots`` samples per class of ``train`` (episodes.draw_support, seeded)."""
    chosen = draw_support(train.y, n_classes, shots, seed)
    return Split([train.keys[i] for i in chosen], train.x[chosen], train.y[chosen])


def choose_alpha(micro: np.ndarray, macro: np.ndarray, labels: np.ndarray, alphas: tuple[float, ...],
                 by: str = "accuracy") -> float:
    """The α with the best validation accuracy (ties: the smaller α, i.e. the less fusion), or
    (``by`` "loss") the lowest validation cross-entropy of the fused scores, scaled by 1 / (1 + α)
    so that a larger α is not a sharper softmax."""
    if not len(labels):
        return 1.0  # no validation subjects: the plain sum, as published, flagged by the caller
    if by == "loss":
        losses = [cross_entropy_of((micro + alpha * macro) / (1 + alpha), labels) for alpha in alphas]
        return alphas[int(np.argmin(losses))]
    accuracies = [accuracy_of(micro + alpha * macro, labels) for alpha in alphas]
    return alphas[int(np.argmax(accuracies))]
