"""Meta-MMFNet's stages for one fold, and the macro pretraining shared by all folds.

Stages (METHOD.md): the macro encoder pretrained as a classifier on CK+ (once per run); per fold
the micro encoder pretrained as a classifier on the fold's training subjects; both encoders
meta-trained as prototype classifiers on N-way K-shot episodes; at test time K support shots per
class from the training subjects, and the scores fused as d = d_micro + α·d_macro for a whole α
grid at once (no retraining). Every choice (the epoch of each stage, α) is made on the fold's
inner validation subjects; the held-out subject's labels are only ever used to score. The
``published`` recipe (``RECIPES``, docs/recipes.md) has no validation subjects: a fixed schedule (the
last epoch of each stage) and α = 1.0 as its headline, every α of its grid in the rows.

Each stage is checkpointed under ``checkpoint_dir``, keyed by its settings and by the data it is
trained on (``data_key``); a rerun loads what is there instead of training it again.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import io
import json
import os
import pickle
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from filelock import FileLock
from torch import nn

from merflow.storage import locations
from merflow.training.data import FeatureSource, FlowScale
from merflow.training.encoders import build_encoder
from merflow.training.episodes import EpisodeSampler, draw_support, episode_problem
from merflow.training.errors import DataError
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
    # Where the recipe differs from the published code, see RECIPES and docs/recipes.md.
    recipe: str = "merflow"          # the named set of defaults these settings started from: merflow | published
    pretrain_lr_step: int = 0        # StepLR(step, x0.1) in both pretrainings; 0: a constant learning rate
    epoch_choice: str = "validation"  # validation: each stage keeps its best validation epoch; last: a fixed schedule
    validation_fraction: float = 0.2  # training subjects held out as the fold's inner validation split
    duplicate_fit: bool = False      # every fit sample twice, as the published code's `kuochong` list

    def __post_init__(self):
        if self.recipe not in RECIPES:
            raise ValueError(f"unknown recipe {self.recipe!r}; expected one of {sorted(RECIPES)}")
        if self.epoch_choice not in EPOCH_CHOICES:
            raise ValueError(f"epoch_choice must be one of {EPOCH_CHOICES}, not {self.epoch_choice!r}")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in [0, 1), not {self.validation_fraction}")
        if self.pretrain_lr_step < 0:
            raise ValueError(f"pretrain_lr_step must be 0 (constant) or positive, not {self.pretrain_lr_step}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_recipe(cls, recipe: str = "merflow", **overrides) -> TrainConfig:
        """A recipe's settings (RECIPES), with ``overrides`` on top; ``recipe`` records where they started."""
        if recipe not in RECIPES:
            raise ValueError(f"unknown recipe {recipe!r}; expected one of {sorted(RECIPES)}")
        return cls(**(RECIPES[recipe] | {"recipe": recipe} | overrides))

    @property
    def hash(self) -> str:
        return _hash(self.to_dict())

    def stage_hash(self, stage: str) -> str:
        """A hash of the settings a stage's weights depend on, so that configurations of a search that
        differ only in later settings (shots, α) share the earlier stages' checkpoints."""
        settings = self.to_dict()
        # Not what was trained: where it ran, the recipe's name (its settings are all here) and the
        # validation fraction (the fold's fit and validation samples key the checkpoint themselves).
        for name in ("device", "recipe", "validation_fraction"):
            del settings[name]
        if stage in ("macro_pretrain", "micro_pretrain"):
            keep = PRETRAIN_SETTINGS + (("macro_epochs",) if stage == "macro_pretrain" else ("pretrain_epochs",))
            settings = {k: settings[k] for k in keep}
        elif stage != "evaluation":  # meta-training: everything but the α grid, which no weight depends on
            del settings["alphas"]
        return _hash({"stage": stage} | settings)


# The settings classifier pretraining depends on (not shots, queries, meta-training or α).
PRETRAIN_SETTINGS = ("encoder", "layout", "batch_size", "pretrain_lr", "momentum", "weight_decay", "seed",
                     "pretrain_lr_step", "epoch_choice", "duplicate_fit")
EPOCH_CHOICES = ("validation", "last")

# Named starting points of a TrainConfig (`merflow train/tune --recipe`). "merflow" is the dataclass's
# defaults. "published" is Meta-MMFNet's code, wenjgong/meta-fusion-based-method at d3eb35de
# (read 2026-12-01); every line names where the value is read. What it cannot restore (ImageNet
# initialisation, the pre-cropped faces, ...) is listed in docs/recipes.md.
RECIPES: dict[str, dict] = {
    "merflow": {},
    "published": {
        "encoder": "resnet18",           # configs/train_meta_mini.yaml model_args.encoder
        "layout": "stack_height",        # DebinMeng_train.TripleImageDataset: torch.cat((img_cha, gl), 1)
        "shots": 5, "queries": 1,        # train_meta_mini.yaml n_shot 5, n_query 1 (n_way: every class)
        "macro_epochs": 100,             # configs/train_classifier_mini.yaml max_epoch 100
        "pretrain_epochs": 50,           # train_meta_mini.yaml max_epoch1 50
        "meta_epochs": 7,                # train_meta_mini.yaml max_epoch 7
        "batches_per_epoch": 30, "episodes_per_batch": 4,  # train_batches 30, ep_per_batch 4
        "batch_size": 128,               # train_classifier_mini.yaml batch_size; train_meta_mini.yaml batch_size1
        "pretrain_lr": 0.01,             # optimizer_args lr 0.01 (CK+), optimizer_args1 lr 0.01 (micro)
        "meta_lr": 0.05,                 # train_meta_mini.yaml optimizer_args lr 0.05
        "meta_lr_step": 3,               # utils.make_optimizer: StepLR(step_size=3, gamma=0.1)
        # utils.make_optimizer1 / make_optimizer: StepLR(3, 0.1) whenever `milestones` is set, and both
        # configs set milestones [90], so both pretrainings step too (the [90] itself is never used).
        "pretrain_lr_step": 3,
        "momentum": 0.9,                 # utils.make_optimizer*: SGD(..., momentum=0.9, ...)
        "weight_decay": 0.0,             # utils.make_optimizer*: SGD(..., weight_decay=False), whatever the config says
        "epoch_choice": "last",          # train_meta.py loads each stage's 'epoch-last.pth' and scores the last epoch
        "validation_fraction": 0.0,      # no inner validation: the fold trains on every training subject
        "duplicate_fit": True,           # load_imgs_tsn(kuochong=True): every training sample listed twice
        "alphas": tuple(round(0.1 * j, 1) for j in range(1, 11)),  # train_meta.py: `for j in range(1, 11)`: j/10
    },
}


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
    """Pretrain an encoder as a plain classifier; keep the epoch that scores best on validation
    (``epoch_choice`` "validation") or the last one ("last")."""
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
        if validation is not None and len(validation) and config.epoch_choice == "validation":
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
            if config.epoch_choice == "last":  # a fixed schedule: the last epoch, whatever validation says
                best, best_state = StageResult(epoch, accuracy, best.history), None
            elif best.validation_accuracy is None or accuracy > best.validation_accuracy:
                best = StageResult(epoch, accuracy, best.history)
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
def data_key(source: FeatureSource, label_column: str, classes: tuple[str, ...], labels,
             keys_by_role: dict[str, list[str] | tuple[str, ...]]) -> str:
    """A digest of the data a stage's weights are made from: the label column and class set, each
    role's sample keys with their labels and features' input fingerprints (storage/features.py), and
    the feature configuration. Another class set, protocol, catalog (a changed label, a sample more
    or less) or feature store gives another key, so another checkpoint: weights are never loaded for
    data they were not trained on."""
    rows = {role: [[key, str(labels[key]), source.fingerprints.get(key, "")] for key in keys]
            for role, keys in sorted(keys_by_role.items())}
    return _hash({"label_column": label_column, "classes": list(classes), "features": source.config.hash,
                  "rows": rows})


def _checkpoint(path: str | os.PathLike, stage: str, config: TrainConfig, make, data: str = ""):
    """Load a stage's checkpoint if one exists for the settings it depends on, else run ``make`` and save it.

    Checkpoints are named ``<stage>-<key>.pt``, the key a hash of the stage's settings
    (``TrainConfig.stage_hash``) and of the data it is trained on (``data``, see ``data_key``), so the
    configurations of a search share what they have in common (a fold's pretrained encoder serves
    every number of shots) and nothing else. Concurrent trials
    take a file lock: one trains, the others wait and load; a checkpoint that can't be read (a
    writer killed mid-way leaves only a hidden temporary file, but a disk can still fail) is retrained.
    ``path`` is a location (storage/locations.py): on an object store the checkpoint is written with one
    PUT (whole or absent) and the lock is a local file keyed by its URL, so the trials of one host
    train a stage once; trials on two hosts may both train it (same settings and seed: either result
    is the stage's; the last PUT wins).
    """
    key = _hash({"settings": config.stage_hash(stage), "data": data}) if data else config.stage_hash(stage)
    file = locations.join(path, f"{stage}-{key}.pt")
    with FileLock(locations.lock_file(file)):
        if locations.exists(file):
            try:
                saved = torch.load(io.BytesIO(locations.read_bytes(file)), map_location="cpu", weights_only=False)
                if saved.get("stage_hash") == key:
                    return saved["payload"]
            except (RuntimeError, EOFError, pickle.UnpicklingError, KeyError, AttributeError):
                pass  # unreadable: train the stage again and replace the file
        payload = make()
        buffer = io.BytesIO()
        torch.save({"stage_hash": key, "payload": payload}, buffer)
        locations.write_bytes(file, buffer.getvalue())  # local: hidden temporary file, then rename
    return payload


def pretrain_macro(source: FeatureSource, keys: list[str], labels: list[str], classes: tuple[str, ...],
                   config: TrainConfig, checkpoint_dir: str | os.PathLike) -> dict:
    """The macro encoder, pretrained as a classifier on CK+ macro-expressions (once per run)."""
    if not keys:
        raise ValueError("macro pretraining needs CK+ samples with features: ingest CK+ and run `merflow features`")
    data = data_key(source, "label_ckplus7", tuple(classes), dict(zip(keys, labels)), {"fit": list(keys)})

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
                "epochs": stage.best_epoch, "data_key": data}

    return _checkpoint(locations.join(checkpoint_dir, "macro"), "macro_pretrain", config, make, data)


def run_fold(fold: Fold, source: FeatureSource, samples: pd.DataFrame, macro: dict, config: TrainConfig,
             checkpoint_dir: str | os.PathLike, on_epoch=None) -> dict:
    """Train and evaluate one fold; returns its predictions and chosen settings (checkpointed).

    ``samples`` is the protocol's catalog rows (sample_key index) with the fold's label column.
    ``on_epoch(epoch, validation_accuracy)`` hears each epoch of the micro model's meta-training.

    A fit split short of a class trains with what it has (episodes.py: fewer queries or shots for that
    class); the shortfalls are in the result's ``chosen["shortfalls"]``, by class name. Where nothing
    can be trained (``fold_problem``), ``FoldSkipped`` names the fold and the classes.
    """
    folder = locations.join(checkpoint_dir, fold.name.replace("/", "_"))
    device = pick_device(config.device)
    n_classes = len(fold.classes)
    labels = samples[fold.label_column]
    missing = [k for k in fold.fit_keys + fold.validation_keys + fold.test_keys if k not in source]
    if missing:
        raise DataError(f"fold {fold.name}: {len(missing)} samples have no valid features, e.g. {missing[:3]}: "
                        "run `merflow features` for them, or ingest again")
    problem = fold_problem(fold, labels)
    if problem:
        raise FoldSkipped(fold.name, problem)
    fit_flow_scale = FlowScale.fit(source.flows(list(fold.fit_keys)))

    def split(keys) -> Split:
        keys = list(keys)
        return Split(keys, source.inputs(keys, fit_flow_scale, config.layout),
                     np.array([fold.classes.index(labels[k]) for k in keys], dtype=np.int64))

    # The published code lists every training sample twice (load_imgs_tsn, kuochong=True; the copy
    # was meant to be flipped, but `flag` in TripleImageDataset.__getitem__ is pylab's colormap
    # function, never 1, so it is the same image): an epoch sees each sample twice.
    fit_keys = list(fold.fit_keys) * (2 if config.duplicate_fit else 1)
    fit, validation = split(fit_keys), split(fold.validation_keys)
    seed = config.seed + _stable_int(fold.name)
    context = f"fold {fold.name}"
    shortfalls = EpisodeSampler(fit.y, n_classes, config.shots, config.queries, class_names=fold.classes,
                                context=context).shortfalls
    weights_data = data_key(source, fold.label_column, fold.classes, labels,
                            {"fit": fold.fit_keys, "validation": fold.validation_keys})
    evaluation_data = data_key(source, fold.label_column, fold.classes, labels,
                               {"fit": fold.fit_keys, "validation": fold.validation_keys, "test": fold.test_keys})

    def micro_pretrain_stage():
        encoder = new_encoder(config, seed)
        encoder, pretrain = train_classifier(encoder, fit, validation, n_classes, config.pretrain_epochs, config,
                                             device, seed)
        return {"state": {k: v.cpu() for k, v in encoder.state_dict().items()}, "epoch": pretrain.best_epoch}

    def micro_stage():
        encoder = new_encoder(config, seed)
        encoder.load_state_dict(pretrained["state"])
        model, meta = meta_train(encoder, fit, validation, n_classes, config, device, seed + 1, on_epoch=on_epoch,
                                 class_names=fold.classes, context=context)
        return {"state": {k: v.cpu() for k, v in model.state_dict().items()},
                "pretrain_epoch": pretrained["epoch"], "meta_epoch": meta.best_epoch,
                "validation_accuracy": meta.validation_accuracy}

    def macro_stage():
        encoder = new_encoder(config, seed)
        encoder.load_state_dict(macro["state"])
        model, meta = meta_train(encoder, fit, validation, n_classes, config, device, seed + 2,
                                 class_names=fold.classes, context=context)
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

    # The macro encoder's own key (its CK+ data and settings) is part of the meta stages' data.
    macro_data = _hash({"fold": weights_data, "macro": macro.get("data_key", "")})
    pretrained = _checkpoint(folder, "micro_pretrain", config, micro_pretrain_stage, weights_data)
    micro_trained = _checkpoint(folder, "micro", config, micro_stage, weights_data)
    macro_trained = _checkpoint(folder, "macro", config, macro_stage, macro_data)
    evaluated = _checkpoint(folder, "evaluation", config, evaluation, _hash({"data": evaluation_data,
                                                                             "macro": macro_data}))
    chosen = {"alpha": evaluated["alpha"], "alpha_chosen_on_validation": evaluated["alpha_chosen_on_validation"],
              "micro_pretrain_epoch": micro_trained["pretrain_epoch"], "micro_meta_epoch": micro_trained["meta_epoch"],
              "macro_meta_epoch": macro_trained["meta_epoch"],
              "validation_accuracy": evaluated.get("validation_accuracy"), "shortfalls": shortfalls}
    return {"fold": fold, "chosen": chosen, "scores": evaluated["scores"],
            "keys": {"validation": list(fold.validation_keys), "test": list(fold.test_keys)}}


class FoldSkipped(DataError):
    """A fold that nothing sensible can be trained on; the protocol goes on without it."""

    def __init__(self, fold: str, reason: str):
        super().__init__(f"fold {fold} skipped: {reason}")
        self.fold, self.reason = fold, reason


def fold_problem(fold: Fold, labels) -> str | None:
    """Why ``fold`` cannot be trained (its fit split gives no episode, see episodes.episode_problem),
    or None. Reads the fit samples' labels only."""
    counts = pd.Series([labels[k] for k in fold.fit_keys], dtype=object).value_counts()
    problem = episode_problem([int(counts.get(c, 0)) for c in fold.classes], fold.classes)
    if problem is None and len(fold.fit_keys) < 2:
        problem = f"{len(fold.fit_keys)} fit sample(s): classifier pretraining needs 2"
    return f"its fit split: {problem}" if problem else None


def recipe_feature_mismatch(config: TrainConfig, feature_config) -> list[str]:
    """How the features differ from what the config's recipe was published with (empty: they match)."""
    if config.recipe != "published":
        return []
    wanted = {"size": 80, "first_frame": "onset+1"}  # DebinMeng_train: Resize((80, 80)); img_lists[1]
    return [f"{name} {getattr(feature_config, name)} (published: {value})" for name, value in wanted.items()
            if getattr(feature_config, name) != value]


def _stable_int(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
