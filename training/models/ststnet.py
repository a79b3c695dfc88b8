"""STSTNet (Liong et al., "Shallow Triple Stream Three-dimensional CNN (STSTNet) for Micro-expression
Recognition", FG 2019), trained as its official PyTorch code trains it (christy1206/STSTNet @ 1afb56e,
``main.py``; read 2026-12-02; ../shared/ZOO.md section 1.1):

==============  ===========================================================================================
input           one 28x28 image a sample, read with ``cv2.imread``: BGR uint8 cast to float, no resize, no
                scaling, so the channels are (optical strain, v, u), each min-max scaled to 0..255 per image
                when STSTNet's preprocessing wrote the PNG (``X_train.append(cv2.imread(...))``,
                ``torch.Tensor(X_train).permute(0,3,1,2)``)
streams         three ``Conv2d(3 -> 3 / 5 / 8, kernel_size=3, padding=2)`` -> ReLU -> ``BatchNorm2d`` ->
                ``MaxPool2d(kernel_size=3, stride=3, padding=1)`` -> ``Dropout(p=0.5)``: 28 -> 30 -> 10
head            ``torch.cat`` to 16 x 10 x 10 -> ``AvgPool2d(2, 2)`` -> 16 x 5 x 5 -> ``Linear(400 -> 3)``
parameters      1,683 (tests/test_ststnet.py counts them)
training        ``CrossEntropyLoss``, ``Adam(lr=0.00005)`` (PyTorch's other defaults), ``batch_size = 256``,
                ``epochs = 800``, ``DataLoader(dataset_train, batch_size=batch_size)``: no shuffle, so the
                batches come in the order the images were listed, class folder by class folder
                (``u_train/<label>/``), the last one partial; weights new for every fold
                (``model.apply(reset_weights)``: PyTorch's default initialisation; no seed is set)
evaluation      the last epoch's model in ``model.eval()`` (batch norm's running statistics, momentum 0.1;
                no dropout) on the held-out subject; predictions pooled over the 68 folds, UF1 and UAR
==============  ===========================================================================================

Its input convention matters: with the released weights, reading the same PNGs in RGB order gives UF1
0.396 instead of 0.7209, dividing by 255 gives 0.132 (ZOO.md). merflow records the convention with every
run (``runs.config``: ``input_order``, ``input_range`` and ``data.input``, what the stored arrays were and
how they became the network's input).

What merflow does where the official code is silent or unreproducible (docs/recipes.md, "STSTNet"):
- the images of a class folder come in ``os.listdir`` order, which depends on the file system; its log
  shows sorted listings (a Windows file system), so merflow lists them by the file name STSTNet's tree gives
  them, ``<subject>_<clip>``, case-insensitively (class by class, label indices 0 1 2);
- no seed is set; merflow draws each fold's initial weights (PyTorch's own layers' initialisation, under a
  seed of ``--seed`` and the fold's name) and dropout masks from the fold's own seed, so a fold's result
  does not depend on the folds beside it;
- merflow's own computed flow (u, v, magnitude, strain in pixels) is turned into STSTNet's input as its
  preprocessing did: (strain, v, u), each channel resized to 28x28 (area averaging) and min-max scaled to
  0..255 per image, rounded to integers as the PNG stored them (``ststnet_input``).
Training runs on the C kernel of training/shallow_cnn.py (the same network and arithmetic, an order of
magnitude faster than autograd, checked against it), or with PyTorch (``engine torch``; a GPU, or where no
C compiler is found), recorded as the run's ``engine``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Annotated, ClassVar

import cv2
import numpy as np
import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F

from merflow.configs import config_hash
from merflow.configs.base import Config as ConfigBase
from merflow.configs.base import choice
from merflow.configs.features import FLOW_CHANNELS
from merflow.training import shallow_cnn
from merflow.training.folds import Fold, leak_reasons
from merflow.training.loops import pick_device
from merflow.training.models import FoldResult, ModelInfo, PublishedSettings, RunPlan, register_model
from merflow.training.predictions import prediction_frame

NAME = "ststnet"
INPUT_SIZE = 28
STREAMS = (3, 5, 8)       # main.py: Conv2d(in_channels, out_channels=3 / 5 / 8, kernel_size=3, padding=2)
FILTERS = sum(STREAMS)    # 16: the three streams' convolutions of the same input are one of 16 filters
PADDING = 2
PARAMETERS = 1683         # with 3 classes (shallow_cnn.parameter_count(16, 3))
INPUT_ORDERS = ("strain-v-u", "u-v-strain")   # the first is cv2.imread's BGR of STSTNet's PNGs
INPUT_RANGES = ("0..255", "0..1")             # the first is STSTNet's (no scaling after reading)
ENGINES = ("auto", "kernel", "torch")
FOLDS_PER_CHECKPOINT = 8  # folds whose scores are checkpointed together (a killed run loses at most these)

InputOrder = choice(INPUT_ORDERS)
InputRange = choice(INPUT_RANGES)
Engine = choice(ENGINES)
AtLeastOne = Annotated[int, Field(ge=1)]


class StstnetConfig(PublishedSettings, ConfigBase):
    """Everything that decides an STSTNet run's numbers; recorded with every result row."""

    # The settings christy1206/STSTNet @ 1afb56e main.py fixed (its recipe: "published" only with all of them).
    PUBLISHED: ClassVar[dict] = {"epochs": 800, "batch_size": 256, "learning_rate": 5e-5, "beta1": 0.9, "beta2": 0.999,
                 "adam_epsilon": 1e-8, "dropout": 0.5, "bn_momentum": 0.1, "bn_epsilon": 1e-5,
                 "input_order": "strain-v-u", "input_range": "0..255"}

    epochs: AtLeastOne = Field(800, description="training epochs")            # main.py epochs = 800
    batch_size: AtLeastOne = 256                       # main.py batch_size = 256
    learning_rate: float = 5e-5                        # main.py learning_rate = 0.00005
    beta1: float = 0.9                                 # torch.optim.Adam's defaults
    beta2: float = 0.999
    adam_epsilon: float = 1e-8
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.5  # nn.Dropout(p=0.5)
    bn_momentum: Annotated[float, Field(gt=0, le=1)] = 0.1  # nn.BatchNorm2d's defaults
    bn_epsilon: Annotated[float, Field(gt=0)] = 1e-5
    input_order: InputOrder = Field("strain-v-u", description="ststnet input channels: strain-v-u as OpenCV reads "
                                                              "STSTNet PNGs (published), or u-v-strain")
    input_range: InputRange = Field("0..255", description="ststnet's input values: 0..255 as read (published), or "
                                                           "divided by 255")
    seed: int = 0
    engine: Engine = Field("auto", description="ststnet/survey-cnn trainer: the C kernel (auto where it builds), or "
                                               "PyTorch (slow on a CPU; a GPU)")
    threads: AtLeastOne | None = None                  # folds trained at once by the kernel (None: every CPU)
    device: str = "auto"                               # the torch engine's device

    @property
    def validation_fraction(self) -> float:
        """No inner validation: a fixed schedule and the last epoch, nothing is chosen."""
        return 0.0

    def weights_dict(self) -> dict:
        """The settings a fold's weights depend on (not where, how many at a time, or the engine's request)."""
        settings = self.to_dict()
        for name in ("engine", "threads", "device"):
            settings.pop(name)
        return settings


Config = StstnetConfig


def network() -> nn.Module:
    """The network at its published shape (3 classes), whose parameters the registry's test counts (``PARAMETERS``)."""
    return STSTNet()


def default_config(**overrides) -> StstnetConfig:
    """main.py's settings, with ``overrides``."""
    return StstnetConfig(**overrides)


TINY_SETTINGS = {"epochs": 2, "device": "cpu"}  # the registry's test: a fold in seconds on a CPU
MODEL = register_model(ModelInfo(
    NAME, __name__,
    "STSTNet (Liong et al., FG 2019): three shallow streams on the 28x28 flow image (strain, v, u), its official "
    "code's 800-epoch schedule", StstnetConfig, inputs=("flow",),
    options=("epochs", "engine", "input_order", "input_range", "seed", "device"),
    title="fixed schedule ({epochs} epochs, the last)", folds_per_task=None))


# ------------------------------------------------------------------------------------------ the network
class STSTNet(nn.Module):
    """main.py's network, as written there (three streams), for ``classes`` classes."""

    def __init__(self, classes: int = 3, dropout: float = 0.5):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(3, k, kernel_size=3, padding=PADDING) for k in STREAMS)
        self.norms = nn.ModuleList(nn.BatchNorm2d(k) for k in STREAMS)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=3, padding=1)
        self.avgpool = nn.AvgPool2d(kernel_size=2, stride=2, padding=0)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(5 * 5 * FILTERS, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        streams = [self.dropout(self.maxpool(norm(F.relu(conv(x))))) for conv, norm in zip(self.convs, self.norms)]
        return self.fc(self.avgpool(torch.cat(streams, 1)).flatten(1))

    def flat(self) -> np.ndarray:
        """The parameters in shallow_cnn's layout (the streams' filters in order 3, 5, 8)."""
        cat = lambda tensors: torch.cat([t.detach().float().cpu().reshape(len(t), -1) for t in tensors]).numpy()  # noqa: E731
        return shallow_cnn.join_parameters({
            "conv_weight": cat([c.weight for c in self.convs]), "conv_bias": cat([c.bias for c in self.convs]).ravel(),
            "bn_scale": cat([n.weight for n in self.norms]).ravel(), "bn_offset": cat([n.bias for n in self.norms]).ravel(),
            "fc_weight": self.fc.weight.detach().float().cpu().numpy(), "fc_bias": self.fc.bias.detach().float().cpu().numpy()})

    @torch.no_grad()
    def load_flat(self, flat: np.ndarray, running_mean: np.ndarray | None = None,
                  running_var: np.ndarray | None = None) -> STSTNet:
        """The parameters (and batch norm's running statistics) from shallow_cnn's layout."""
        parts = shallow_cnn.split_parameters(np.asarray(flat, np.float32), FILTERS, self.fc.out_features)
        edges = np.cumsum((0,) + STREAMS)
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            rows = slice(edges[i], edges[i + 1])
            conv.weight.copy_(torch.from_numpy(parts["conv_weight"][rows].copy()))
            conv.bias.copy_(torch.from_numpy(parts["conv_bias"][rows].copy()))
            norm.weight.copy_(torch.from_numpy(parts["bn_scale"][rows].copy()))
            norm.bias.copy_(torch.from_numpy(parts["bn_offset"][rows].copy()))
            if running_mean is not None:
                norm.running_mean.copy_(torch.from_numpy(np.asarray(running_mean, np.float32)[rows].copy()))
                norm.running_var.copy_(torch.from_numpy(np.asarray(running_var, np.float32)[rows].copy()))
        self.fc.weight.copy_(torch.from_numpy(parts["fc_weight"].copy()))
        self.fc.bias.copy_(torch.from_numpy(parts["fc_bias"].copy()))
        return self


def fold_seed(seed: int, fold_name: str) -> int:
    """A fold's own seed: the same in any batch of folds, in any process."""
    return int.from_bytes(hashlib.sha256(f"ststnet/{seed}/{fold_name}".encode()).digest()[:8], "little") >> 1


def initial_network(seed: int, classes: int, dropout: float = 0.5) -> STSTNet:
    """A new network with PyTorch's default initialisation (as main.py's ``reset_weights`` gives it), drawn
    from ``seed`` without touching the caller's random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return STSTNet(classes, dropout)


# ------------------------------------------------------------------------------------------ inputs
# How the source stores the flow (training/data.py FeatureSource.conventions: array name -> {"origin",
# "channels", "scaling", ...}) and its one-line check of a missing array (FeatureSource.require).
COMPUTED_FLOW = {"origin": "computed", "channels": list(FLOW_CHANNELS), "scaling": "pixels (flow), strain unitless"}


def source_conventions(source, name: str) -> dict:
    """How ``source`` stores array ``name`` (``FeatureSource.conventions[name]``); without a record (an
    in-memory source built by hand), merflow's computed flow (u, v, magnitude, strain, floats)."""
    conventions = getattr(source, "conventions", None) or {}
    return dict(conventions.get(name) or COMPUTED_FLOW)


def require_array(source, name: str, model: str) -> None:
    """``FeatureSource.require(name, model)``: the one line naming a missing array."""
    source.require(name, model)


def is_byte_range(array: np.ndarray, scaling: str) -> bool:
    """Whether a stored flow image is already STSTNet's 0..255 (integers, or a scaling that says 0..255)."""
    return np.issubdtype(np.asarray(array).dtype, np.integer) or "255" in str(scaling)


def ststnet_input(array: np.ndarray, channels, scaling: str, order: str = "strain-v-u",
                  value_range: str = "0..255") -> np.ndarray:
    """One sample's network input, (3, 28, 28) float32, from a stored flow array (C, H, W) whose channels are
    named ``channels`` and scaled as ``scaling`` says (a pure function of the three).

    Already 0..255 (STSTNet's PNGs, imported): the channels picked by name, as they are (resized to 28x28 with
    area averaging if they are not). Flow in pixels (merflow's own): strain, v, u each resized to 28x28 (area)
    and min-max scaled to 0..255 per image, rounded to integers: STSTNet's preprocessing, which stored PNGs.
    Then ``order`` (strain-v-u: OpenCV's BGR of those PNGs) and ``value_range`` (0..1: divided by 255)."""
    names = [str(c) for c in channels]
    missing = [name for name in ("strain", "v", "u") if name not in names]
    if missing:
        raise ValueError(f"STSTNet reads optical strain, v and u; the stored array's channels are {names} "
                         f"(no {', '.join(missing)})")
    array = np.asarray(array)
    wanted = [names.index(name) for name in order.split("-")]
    picked = array[wanted].astype(np.float32)
    if picked.shape[1:] != (INPUT_SIZE, INPUT_SIZE):
        picked = np.stack([cv2.resize(c, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA) for c in picked])
    if not is_byte_range(array, scaling):
        low = picked.min(axis=(1, 2), keepdims=True)
        span = picked.max(axis=(1, 2), keepdims=True) - low
        picked = np.rint(np.where(span > 0, (picked - low) / np.where(span > 0, span, 1) * 255.0, 0.0))
    picked = picked.astype(np.float32)
    return picked / 255.0 if value_range == "0..1" else picked


def input_record(conventions: dict, array: np.ndarray, config: StstnetConfig) -> str:
    """What the network was fed, in words (recorded with the run)."""
    stored = f"{conventions.get('origin', 'computed')} flow, channels {', '.join(map(str, conventions.get('channels', [])))}"
    if is_byte_range(array, conventions.get("scaling", "")):
        how = "0..255 as stored (STSTNet's PNGs as OpenCV reads them)"
    else:
        how = ("strain, v, u resized to 28x28 (area) and min-max scaled to 0..255 per image and channel, rounded "
               "(STSTNet's preprocessing)")
    return (f"{stored} ({conventions.get('scaling', 'unrecorded scaling')}): {how}; network input channels "
            f"{config.input_order}, range {config.input_range}")


def load_inputs(source, keys: list[str], config: StstnetConfig) -> tuple[np.ndarray, str]:
    """(N, 3, 28, 28) float32 inputs of ``keys`` from the source's ``flow`` array, and how they were made."""
    require_array(source, "flow", NAME)
    conventions = source_conventions(source, "flow")
    arrays = source.arrays["flow"]
    images = np.stack([ststnet_input(arrays[k], conventions["channels"], conventions.get("scaling", ""),
                                     config.input_order, config.input_range) for k in keys]) if keys else \
        np.zeros((0, 3, INPUT_SIZE, INPUT_SIZE), np.float32)
    record = input_record(conventions, arrays[keys[0]], config) if keys else ""
    return images, record


# ------------------------------------------------------------------------------------------ training
def engine_of(config, reasons: list | None = None) -> str:
    """The engine a run uses (training/shallow_cnn.py ``choose_engine``); ``reasons`` gets why auto fell back."""
    return shallow_cnn.choose_engine(config.engine, config.device, None, reasons)


def training_order(labels: np.ndarray, names: list[str]) -> np.ndarray:
    """main.py's order: class folder by class folder (label 0, 1, 2, ...), each folder's images by file name,
    as its listing gave them: its log (STSTNet_python_logfile.txt) shows sorted listings (subjects 006 .. sub26,
    each test subject's labels ascending), a Windows (NTFS) listing, which compares names case-insensitively."""
    return np.array(sorted(range(len(names)), key=lambda i: (int(labels[i]), names[i].upper(), names[i])),
                    dtype=np.int64)


def image_name(subject: str, sample_id: str) -> str:
    """The name of a sample's image in STSTNet's tree, ``<subject>_<clip>`` (the reference PNGs' names)."""
    return f"{subject}_{sample_id}"


def batches_of(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """DataLoader(batch_size=...) without shuffle: consecutive batches, the last one partial."""
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def _train_torch(images: np.ndarray, labels: np.ndarray, order: np.ndarray, seed: int, classes: int,
                 config: StstnetConfig) -> STSTNet:
    """One fold with PyTorch's autograd, as main.py trains it (the engine without the C kernel)."""
    device = pick_device(config.device)
    model = initial_network(seed, classes, config.dropout).to(device)
    for norm in model.norms:
        norm.momentum, norm.eps = config.bn_momentum, config.bn_epsilon
    optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate, betas=(config.beta1, config.beta2),
                                 eps=config.adam_epsilon)
    x = torch.from_numpy(images[order]).to(device)
    y = torch.from_numpy(labels[order]).to(device)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # the dropout masks: the fold's own stream
    try:
        model.train()
        for _ in range(config.epochs):
            for start in range(0, len(order), config.batch_size):
                loss = F.cross_entropy(model(x[start:start + config.batch_size]), y[start:start + config.batch_size])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
    finally:
        torch.random.set_rng_state(generator_state)
    return model.cpu()


def train_folds(images: np.ndarray, labels: np.ndarray, folds: list[tuple[str, np.ndarray, np.ndarray]],
                classes: int, config: StstnetConfig, engine: str | None = None,
                names: list[str] | None = None) -> dict[str, np.ndarray]:
    """Train one network per fold (name, training indices, test indices into ``images`` (N, 3, 28, 28) and
    ``labels``) and return fold name -> softmax scores of its test images (n_test, classes), from the last
    epoch's model in eval mode. ``names``: each image's file name in STSTNet's tree, which orders a class's
    images in a batch (``training_order``; default: the images' order). ``engine``: kernel or torch (default:
    ``engine_of(config)``)."""
    engine = engine or engine_of(config)
    names = names or [f"{i:08d}" for i in range(len(images))]
    scores = {}
    if engine == "kernel":
        jobs, models = [], {}
        for name, train, _ in folds:
            seed = fold_seed(config.seed, name)
            order = train[training_order(labels[train], [names[i] for i in train])]
            batches = batches_of(order, config.batch_size)
            jobs.append(shallow_cnn.Job(name, batches, [labels[b] for b in batches],
                                        initial_network(seed, classes, config.dropout).flat(), seed))
        schedule = shallow_cnn.Schedule(steps=config.epochs * len(jobs[0].batches) if jobs else 0,
                                        lr=config.learning_rate, beta1=config.beta1, beta2=config.beta2,
                                        adam_eps=config.adam_epsilon, dropout=config.dropout,
                                        bn_eps=config.bn_epsilon, bn_momentum=config.bn_momentum)
        by_steps: dict[int, list] = {}
        for job in jobs:  # folds of another size train another number of steps a run
            by_steps.setdefault(len(job.batches), []).append(job)
        network = shallow_cnn.Network(PADDING, FILTERS, classes)
        for n_batches, group in by_steps.items():
            trained = shallow_cnn.train(images, network, dataclasses.replace(schedule, steps=config.epochs * n_batches),
                                        group, threads=shallow_cnn.thread_count(config.threads))
            for name, result in trained.items():
                models[name] = STSTNet(classes, config.dropout).load_flat(result.params, result.running_mean,
                                                                          result.running_var)
                for norm in models[name].norms:
                    norm.eps = config.bn_epsilon
    else:
        models = {}
        for name, train, _ in folds:
            seed = fold_seed(config.seed, name)
            order = train[training_order(labels[train], [names[i] for i in train])]
            models[name] = _train_torch(images, labels, order, seed, classes, config)
    with torch.no_grad():
        for name, _, test in folds:
            model = models[name].eval()
            scores[name] = torch.softmax(model(torch.from_numpy(images[test])), dim=1).double().numpy()
    return scores


# ------------------------------------------------------------------------------------------ a protocol

def plan(data, config: StstnetConfig, protocol: str, dataset: str | None, class_set: str | None = None) -> RunPlan:
    """STSTNet's run: the protocol's folds as they are (no balancing: main.py trains on every sample), one
    network per fold, main.py's fixed schedule, the last epoch (nothing chosen)."""
    fold_list = data.folds
    reasons: list[str] = []
    engine = engine_of(config, reasons)
    keys = sorted({k for fold in fold_list for k in fold.fit_keys + fold.test_keys})
    _, record = load_inputs(data.source, keys[:1], config)
    messages = [f"ststnet input: {record}"]
    if reasons:
        messages.append(f"ststnet trains with PyTorch (slow on a CPU): {reasons[0]}")
    if config.recipe != "published":
        messages.append("ststnet recipe custom: " + "; ".join(config.recipe_differences))
    leaks = leak_reasons(protocol)
    leaky = bool(leaks)
    for leak in leaks:
        messages.append(f"leaky: {leak}; the honest number: --protocol loso or megc2019")
    notes = {"excluded_samples": dict(sorted(data.excluded.items())), "sample_list": data.sample_list,
             "schedule": f"fixed: {config.epochs} epochs, the last epoch's model; nothing chosen",
             "input": record, "engine": engine, "leaky": leaky, "leaks": leaks,
             "recipe_differences": config.recipe_differences}
    identity = data.identity() | {"model": NAME}
    return RunPlan(fold_list, notes, identity, messages, {"model": NAME, **config.to_dict()}, leaky)


def prepare(data, config: StstnetConfig, checkpoints) -> None:
    """Nothing is shared between folds (each trains from its own new weights)."""
    return None


def _chunk_key(config: StstnetConfig, engine: str, chunk: list[Fold], labels: dict, fingerprints: dict,
               feature_hash: str, record: str) -> str:
    keys = sorted({k for fold in chunk for k in fold.fit_keys + fold.test_keys})
    return config_hash({"model": NAME, "config": config.weights_dict(), "engine": engine, "features": feature_hash,
                        "input": record, "classes": list(chunk[0].classes),
                        "folds": [[f.name, list(f.fit_keys), list(f.test_keys)] for f in chunk],
                        "samples": [[k, labels[k], fingerprints.get(k, "")] for k in keys]})


def run_folds(data, fold_list: list[Fold], config: StstnetConfig, checkpoints, *, prepared=None,
              on_fold=None) -> list[FoldResult]:
    """Train and score ``fold_list`` (each fold trains on its fit keys, tests its test keys), the kernel's
    threads over folds; scores checkpointed every few folds under ``checkpoints/ststnet/``, named by
    everything they depend on, so a rerun trains only what is missing."""
    if not fold_list:
        return []
    classes = fold_list[0].classes
    column = fold_list[0].label_column
    keys = sorted({k for fold in fold_list for k in fold.fit_keys + fold.validation_keys + fold.test_keys})
    rows = data.samples.loc[keys]
    images, record = load_inputs(data.source, keys, config)
    index = {k: i for i, k in enumerate(keys)}
    labels = np.array([classes.index(rows.at[k, column]) for k in keys], dtype=np.int64)
    label_of = dict(zip(keys, rows[column]))
    names = ([image_name(str(rows.at[k, "subject"]), str(rows.at[k, "sample_id"])) for k in keys]
             if {"subject", "sample_id"} <= set(rows.columns) else list(keys))
    engine = engine_of(config)
    folder = checkpoints.folder(NAME)
    per_checkpoint = max(FOLDS_PER_CHECKPOINT, 2 * shallow_cnn.thread_count(config.threads))
    scores: dict[str, np.ndarray] = {}
    done = 0
    for start in range(0, len(fold_list), per_checkpoint):
        chunk = fold_list[start:start + per_checkpoint]
        key = _chunk_key(config, engine, chunk, label_of, data.source.fingerprints, data.feature_config.hash,
                         f"{record}; training order: {', '.join(names[:3])} ...")

        def train_chunk(chunk=chunk):
            # Indices ordered by sample key, so training_order's tie-break is the sample key.
            folds = [(f.name, np.array(sorted(index[k] for k in f.fit_keys), dtype=np.int64),
                      np.array([index[k] for k in f.test_keys], dtype=np.int64)) for f in chunk]
            trained = train_folds(images, labels, folds, len(classes), config, engine, names)
            return {"model": NAME, "folds": [f.name for f in chunk], "scores": {k: v.tolist() for k, v in trained.items()}}

        saved = folder.load_or_make("folds", key, train_chunk, codec="json")  # folds-<key>.json
        scores.update({name: np.asarray(v, dtype=np.float64) for name, v in saved["scores"].items()})
        for fold in chunk:
            done += 1
            if on_fold:
                on_fold(done, len(fold_list), fold)
    outcomes = []
    for fold in fold_list:
        predictions = prediction_frame(fold, rows, "test", fold.test_keys, scores[fold.name], model=NAME)
        outcomes.append(FoldResult(fold, predictions, {}))
    return outcomes


def smoke_step(seed: int = 0) -> dict:
    """A forward pass and one Adam step of the network on random 0..255 inputs, 4 classes (the registry's test)."""
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.uniform(0, 255, (6, 3, INPUT_SIZE, INPUT_SIZE)).astype(np.float32))
    y = torch.from_numpy(np.arange(6) % 4)
    model = initial_network(seed, 4)
    before = [p.detach().clone() for p in model.parameters()]
    optimiser = torch.optim.Adam(model.parameters(), lr=5e-5)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    change = float(sum((p.detach() - b).norm() for p, b in zip(model.parameters(), before)))
    return {"loss": float(loss.detach()), "change": change, "logits": tuple(logits.shape)}
