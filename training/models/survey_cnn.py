"""The survey's baseline CNN (Gong, An, Elfiky 2022; docs/method.md "System 2"), trained as
its MATLAB code trained it, many folds at once.

The network, as the survey's ``net4.mat`` names it (wenjgong/microExpressionSurvey @ 9da5c7c4) (the LayerGraph read from the file's
zlib-compressed MCOS stream; ``net9.mat`` differs only in fc_2's OutputSize 9):

==============  ==========================================================================
imageinput      InputSize [28 28 3], Normalization 'zerocenter' (AverageImage empty in the file:
                trainNetwork fills it with the mean image of the training data)
conv_2_1        FilterSize [3 3], NumFilters 5, Stride [1 1], DilationFactor [1 1], PaddingMode 'same';
                Weights L2Factor 1, Bias L2Factor 0
relu_2_1        ReLU
batchnorm_2_1   Epsilon 1e-05; Offset and Scale L2Factor 1
maxpool_7       PoolSize [3 3], Stride [3 3], PaddingMode 'same' (28 -> 10: one pad on each side)
dropout_2_1     Probability 0.5
avgpool         PoolSize [2 2], Stride [2 2], PaddingMode 'manual', PaddingSize [0 0 0 0] (10 -> 5)
fc_2            OutputSize [1 1 4] (net9.mat: 9); Weights L2Factor 1, Bias L2Factor 0
softmax, classoutput (LossFunction 'crossentropyex')
==============  ==========================================================================

Training (``reference/survey/main4.m``): ``trainingOptions('adam', 'InitialLearnRate', 0.00005,
'MaxEpochs', 150, 'MiniBatchSize', 256)``; every other option is MATLAB's default (trainingOptions
documentation; the defaults as MATLAB prints them, e.g. MATLAB Answers 2102116): Shuffle 'once' (the
training data is shuffled once, before training), L2Regularization 1e-4 (times each parameter's
L2Factor, added to the gradient: torch's coupled ``weight_decay``), GradientDecayFactor 0.9,
SquaredGradientDecayFactor 0.999, Epsilon 1e-8, no learning-rate schedule, no gradient threshold, no
validation. trainNetwork discards the training data that does not fit into the last complete
mini-batch of each epoch (the trainingOptions documentation under Shuffle; MATLAB Answers 1730315):
with Shuffle 'once' the same samples are left out of every epoch (447 training samples, batch 256: one
iteration per epoch on the same 256 samples). A training set smaller than the mini-batch is taken as
one mini-batch (an assumption: MATLAB's documentation does not say). After training, batch normalisation
uses the population statistics of the training data (trainNetwork's default 'population': one more pass
over the training data).

Initialisation (``init``): the survey's MATLAB drew the weights of conv_2_1 and fc_2 from N(0, 0.01^2) and
set the biases to 0 (BN scales 1, offsets 0). The evidence: the layer structs of ``net4.mat`` and
``net9.mat`` (conv_2_1: Bias, DilationFactor, FilterSize, Name, NumChannels, NumFilters, PaddingMode,
PaddingSize, Stride, Version 4, Weights; fc_2: Bias, InputSize, Name, OutputSize, Version 2, Weights) carry
no ``WeightsInitializer`` or ``BiasInitializer`` (tests/test_survey_cnn.py reads them). MATLAB added those
properties, with 'glorot' as the default, in R2019a, so the file was saved by an older release, whose
trainNetwork drew weights from N(0, 0.01^2) and set biases to zero (../shared/METHOD.md, "Survey baseline";
today's MATLAB documentation lists only the new default). It matters: 150 steps of
Adam at 5e-5 barely move Glorot-sized weights, and on the survey's own C9 inputs a faithful port scores
17/144 (chance) with Glorot and 38/144, the survey's count, with N(0, 0.01^2). ``init glorot`` (uniform,
+-sqrt(6 / (fan_in + fan_out)), MATLAB's default since R2019a) stays as an option, and makes the recipe
custom.

Grey images (``grey_channels``): apex4.m filled only channel 1 of a grey dataset's 28x28x3 input (SAMM:
``all_C(:,:,1,e)=Image2``; CASME: ``all_C(:,:,1,e)=Image8``) and left the other two zero, as C4.mat holds
them (155 of 448 images); ``replicate`` (three equal channels) is merflow's option.

The recipe (``recipe``): "published" only when every setting the survey fixed (``SurveyConfig.PUBLISHED``:
the initialisation, grey channels, balancing, the unannotated apex, epochs, mini-batch, learning rate, L2,
Adam's factors, the shuffle, dropout, single precision) is the survey's; otherwise "custom", and the runs row
and the run's messages list each difference.

Balancing (``balance``): the survey subsampled every class to the smallest before its LOVO split
(``undersample``). Before any split, the held-out subject's samples are removed by their labels, so its
classes become the training minority: the number depends on test labels (leaky), under LOVO and under a
subject-disjoint protocol alike, and is labelled so. ``undersample-training`` balances each fold's training
samples only, after the split (the honest variant); ``none`` trains on every sample.

Many folds at once, exactly: F folds' networks are stacked as groups of one network (a grouped
convolution over F x 3 input channels, batch normalisation over F x 5 channels, which are per-fold
statistics, pooling per channel, the fully connected layer as a per-fold einsum), each fold fed its
own mini-batch. The loss is the sum of the folds' mean losses, so each fold's gradient is its own;
Adam and L2 act elementwise, so one optimiser over the stacked parameters is F independent Adams.
Each fold draws its initial weights, its shuffle and its dropout masks from its own seeded generator,
so a fold's result does not depend on which folds share its batch (tests/test_survey_cnn.py checks
that stacked training equals training the folds one by one).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Annotated, ClassVar

import cv2
import numpy as np
import pandas as pd
import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F

from merflow.configs import config_hash
from merflow.configs.base import Config as ConfigBase
from merflow.configs.base import choice
from merflow.training import shallow_cnn
from merflow.training.folds import LEAKY_PROTOCOLS, Fold, folds, leak_reasons, undersample, undersample_training
from merflow.training.loops import pick_device  # the one device rule (auto: CUDA where there is one)
from merflow.training.models import (
    BALANCES,
    LEAKY_BALANCES,
    FoldResult,
    ModelInfo,
    PublishedSettings,
    RunPlan,
    register_model,
)
from merflow.training.predictions import prediction_frame

NAME = "survey-cnn"
INPUT_SIZE = 28           # net4.mat imageinput InputSize [28 28 3]
INPUT_CHANNELS = 3
FILTERS = 5               # net4.mat conv_2_1 NumFilters
KERNEL = 3                # conv_2_1 FilterSize [3 3], PaddingMode 'same'
POOL = 3                  # maxpool_7 PoolSize [3 3], Stride [3 3], PaddingMode 'same'
AVG_POOL = 2              # avgpool PoolSize [2 2], Stride [2 2], no padding
BN_EPSILON = 1e-5         # batchnorm_2_1 Epsilon
UNANNOTATED_APEX = ("middle", "spotted")
GREY_CHANNELS = ("replicate", "first")
SHUFFLES = ("once", "every-epoch")
INITS = ("matlab-normal", "glorot")   # N(0, 0.01^2) (MATLAB before R2019a: the survey's), Glorot uniform (since R2019a)
ENGINES = ("auto", "kernel", "torch")
MATLAB_NORMAL_STD = 0.01


def _pooled_size(size: int) -> int:
    same = math.ceil(size / POOL)                 # 'same' padding, stride 3: ceil(28 / 3) = 10
    return (same - AVG_POOL) // AVG_POOL + 1      # 2x2 stride 2, no padding: 10 -> 5


FEATURES_PER_FILTER = _pooled_size(INPUT_SIZE) ** 2   # 25: fc_2 sees 5 x 5 x 5 = 125 values


Shuffle = choice(SHUFFLES)
Balance = choice(BALANCES)
UnannotatedApex = choice(UNANNOTATED_APEX)
GreyChannels = choice(GREY_CHANNELS)
DType = choice(("float32", "float64"))
Init = choice(INITS)
Engine = choice(ENGINES)
AtLeastOne = Annotated[int, Field(ge=1)]


class SurveyConfig(PublishedSettings, ConfigBase):
    """Everything that decides a survey-cnn run's numbers; recorded with every result row."""

    # The settings the survey fixed (main4.m, apex4.m, net4.mat, MATLAB's defaults of its release): its recipe
    # is "published" only with every one of them.
    PUBLISHED: ClassVar[dict] = {"init": "matlab-normal", "grey_channels": "first", "balance": "undersample",
                                 "unannotated_apex": "middle", "epochs": 150, "batch_size": 256,
                                 "learning_rate": 5e-5, "l2": 1e-4, "beta1": 0.9, "beta2": 0.999,
                                 "adam_epsilon": 1e-8, "shuffle": "once", "dropout": 0.5, "dtype": "float32"}

    epochs: AtLeastOne = Field(150, description="training epochs")  # main4.m MaxEpochs
    batch_size: AtLeastOne = 256      # main4.m MiniBatchSize
    learning_rate: float = 5e-5       # main4.m InitialLearnRate
    l2: float = 1e-4                  # trainingOptions' default L2Regularization
    beta1: float = 0.9                # default GradientDecayFactor
    beta2: float = 0.999              # default SquaredGradientDecayFactor
    adam_epsilon: float = 1e-8        # default Epsilon
    shuffle: Shuffle = "once"         # default Shuffle
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.5  # net4.mat dropout_2_1 Probability
    # the survey: every class subsampled to the smallest before the split (4 x 112, 9 x 16): leaky
    balance: Balance = "undersample"
    # SMIC (no apex): apex4.m takes frame floor((N+1)/2) of the clip
    unannotated_apex: UnannotatedApex = Field(
        "middle", description="survey-cnn, datasets without an apex (SMIC): the clip's middle frame as the survey, "
                              "or merflow's spotted apex")
    grey_channels: GreyChannels = Field(
        "first", description="survey-cnn, grey datasets (SAMM, CASME): the grey image in channel 1 and zeros, as "
                             "the survey's apex4.m filled them (first), or three equal channels (replicate)")
    seed: int = 0
    device: str = "auto"
    dtype: DType = "float32"          # MATLAB trains in single precision
    # Folds trained together by the torch engine (results do not depend on it). None: 4 on a CPU, where small
    # stacks stay in cache (benchmarks/README.md: 13.5 ms a fold-iteration at 4, 23 ms at 1, 27 ms at 128 on
    # 2 cores), 128 on a GPU, where a big stack fills the device (~3 GB).
    folds_per_batch: AtLeastOne | None = None
    init: Init = Field("matlab-normal", description="survey-cnn's initial weights: N(0, 0.01^2) and zero biases, as "
                                                    "the survey's MATLAB (before R2019a) drew them, or glorot")
    engine: Engine = Field("auto", description="ststnet/survey-cnn trainer: the C kernel (auto where it builds), or "
                                               "PyTorch (slow on a CPU; a GPU)")
    threads: AtLeastOne | None = None  # folds the kernel trains at once (None: every CPU)

    @property
    def validation_fraction(self) -> float:
        """No inner validation: main4.m's fixed schedule chooses nothing, every training subject trains."""
        return 0.0

    def chunk_size(self, device: torch.device) -> int:
        """How many folds to train together on ``device`` (``folds_per_batch``, or its default there)."""
        return self.folds_per_batch or (128 if device.type == "cuda" else 4)

    def weights_dict(self) -> dict:
        """The settings a fold's weights and scores depend on (not where or how many at a time it ran, nor the
        engine asked for: the engine that ran is keyed separately)."""
        settings = self.to_dict()
        for name in ("device", "folds_per_batch", "engine", "threads"):
            settings.pop(name)
        if settings["init"] == "glorot":  # the only initialisation before ``init`` existed: checkpoint keys as then
            settings.pop("init")
        return settings


def fold_seed(seed: int, fold_name: str) -> int:
    """A fold's own seed: the same in any batch of folds, in any process."""
    return int.from_bytes(hashlib.sha256(f"survey-cnn/{seed}/{fold_name}".encode()).digest()[:8], "little") >> 1


class StackedSurveyCNN(nn.Module):
    """``folds`` independent copies of the survey's network, computed together.

    The convolution is computed on a fixed pool of images: their 3x3 patches (``patches``, the im2col
    of the zero-padded images, 27 x N*H*W) times every fold's filters in one matrix product, minus the
    fold's filters applied to its mean image ('zerocenter' is linear: conv(x - m) = conv(x) - conv(m),
    zero padding included); each fold then takes its own mini-batch's rows. Logits are (B, F, classes).
    """

    def __init__(self, folds: int, n_classes: int, dropout: float = 0.5, size: int = INPUT_SIZE):
        super().__init__()
        self.folds, self.n_classes, self.dropout, self.size = folds, n_classes, dropout, size
        taps = INPUT_CHANNELS * KERNEL * KERNEL
        self.conv_weight = nn.Parameter(torch.zeros(folds * FILTERS, taps))    # rows: fold-major filters
        self.conv_bias = nn.Parameter(torch.zeros(folds * FILTERS))
        self.bn_scale = nn.Parameter(torch.ones(folds * FILTERS))
        self.bn_offset = nn.Parameter(torch.zeros(folds * FILTERS))
        self.features = FILTERS * _pooled_size(size) ** 2
        self.fc_weight = nn.Parameter(torch.zeros(folds, n_classes, self.features))
        self.fc_bias = nn.Parameter(torch.zeros(folds, n_classes))
        # Population statistics (set by ``finalise``) for inference.
        self.register_buffer("bn_mean", torch.zeros(folds * FILTERS))
        self.register_buffer("bn_var", torch.ones(folds * FILTERS))

    @torch.no_grad()
    def initialise(self, generators: list[torch.Generator], init: str = "matlab-normal") -> None:
        """Each fold's weights from its own generator: N(0, 0.01^2) (``matlab-normal``, the survey's MATLAB) or
        MATLAB's 'glorot' (uniform, +-sqrt(6 / (fan_in + fan_out))); zero biases, BN scales 1 and offsets 0."""
        conv_bound = math.sqrt(6 / (KERNEL * KERNEL * INPUT_CHANNELS + KERNEL * KERNEL * FILTERS))
        fc_bound = math.sqrt(6 / (self.features + self.n_classes))
        dtype = self.conv_weight.dtype
        for f, generator in enumerate(generators):
            shapes = (FILTERS, self.conv_weight.shape[1]), (self.n_classes, self.features)
            if init == "glorot":
                conv = (2 * torch.rand(shapes[0], generator=generator, dtype=torch.float64) - 1) * conv_bound
                fc = (2 * torch.rand(shapes[1], generator=generator, dtype=torch.float64) - 1) * fc_bound
            elif init == "matlab-normal":
                conv = torch.randn(shapes[0], generator=generator, dtype=torch.float64) * MATLAB_NORMAL_STD
                fc = torch.randn(shapes[1], generator=generator, dtype=torch.float64) * MATLAB_NORMAL_STD
            else:
                raise ValueError(f"unknown init {init!r}; expected one of {', '.join(INITS)}")
            self.conv_weight[f * FILTERS:(f + 1) * FILTERS] = conv.to(dtype)
            self.fc_weight[f] = fc.to(dtype)
        self.conv_bias.zero_()
        self.fc_bias.zero_()
        self.bn_scale.fill_(1.0)
        self.bn_offset.zero_()

    def flat(self, fold: int) -> np.ndarray:
        """Fold ``fold``'s parameters in training/shallow_cnn.py's layout."""
        rows = slice(fold * FILTERS, (fold + 1) * FILTERS)
        return shallow_cnn.join_parameters({
            "conv_weight": self.conv_weight[rows].detach().float().cpu().numpy(),
            "conv_bias": self.conv_bias[rows].detach().float().cpu().numpy(),
            "bn_scale": self.bn_scale[rows].detach().float().cpu().numpy(),
            "bn_offset": self.bn_offset[rows].detach().float().cpu().numpy(),
            "fc_weight": self.fc_weight[fold].detach().float().cpu().numpy(),
            "fc_bias": self.fc_bias[fold].detach().float().cpu().numpy()})

    @torch.no_grad()
    def load_flat(self, fold: int, flat: np.ndarray) -> None:
        """Fold ``fold``'s parameters from training/shallow_cnn.py's layout."""
        parts = shallow_cnn.split_parameters(np.asarray(flat, np.float32), FILTERS, self.n_classes)
        rows = slice(fold * FILTERS, (fold + 1) * FILTERS)
        dtype = self.conv_weight.dtype
        as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(device=self.conv_weight.device, dtype=dtype)  # noqa: E731
        self.conv_weight[rows] = as_tensor(parts["conv_weight"].reshape(FILTERS, -1))
        self.conv_bias[rows] = as_tensor(parts["conv_bias"])
        self.bn_scale[rows] = as_tensor(parts["bn_scale"])
        self.bn_offset[rows] = as_tensor(parts["bn_offset"])
        self.fc_weight[fold] = as_tensor(parts["fc_weight"])
        self.fc_bias[fold] = as_tensor(parts["fc_bias"])

    def conv_relu(self, patches: torch.Tensor, mean_patches: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """ReLU(conv) of each fold's images ``index`` (F, B) as (B, F*5, H, W). ``patches`` (27, N*H*W),
        ``mean_patches`` (F, 27, H*W): the patches of each fold's mean image."""
        folds, pixels = self.folds, self.size * self.size
        out = (self.conv_weight @ patches).view(folds, FILTERS, -1, pixels)                # (F, 5, N, P)
        offset = self.conv_bias.view(folds, FILTERS, 1) - torch.bmm(
            self.conv_weight.view(folds, FILTERS, -1), mean_patches)                      # (F, 5, P)
        h = out[torch.arange(folds, device=index.device)[None, :], :, index.T]            # (B, F, 5, P)
        return F.relu(h + offset).reshape(index.shape[1], folds * FILTERS, self.size, self.size)

    def forward(self, patches: torch.Tensor, mean_patches: torch.Tensor, index: torch.Tensor,
                dropout_masks: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, F, classes) of each fold's images ``index`` (F, B). Training mode: batch statistics
        and ``dropout_masks`` (B, F*5, 10, 10) of kept (1) / dropped (0) units; eval mode: population
        statistics, no dropout."""
        folds, batch = index.shape
        h = self.conv_relu(patches, mean_patches, index)                                   # (B, F*5, H, W)
        if self.training:
            h = F.batch_norm(h, None, None, self.bn_scale, self.bn_offset, training=True, eps=BN_EPSILON)
        else:
            h = F.batch_norm(h, self.bn_mean, self.bn_var, self.bn_scale, self.bn_offset, training=False,
                             eps=BN_EPSILON)
        h = F.max_pool2d(h, POOL, stride=POOL, padding=1)   # 'same': one -inf pad each side, 28 -> 10
        if self.training and dropout_masks is not None:
            h = h * dropout_masks / (1 - self.dropout)       # inverted dropout, as MATLAB's dropoutLayer
        h = F.avg_pool2d(h, AVG_POOL, stride=AVG_POOL)
        h = h.reshape(batch, folds, self.features)
        return torch.einsum("bfi,fci->bfc", h, self.fc_weight) + self.fc_bias

    @torch.no_grad()
    def finalise(self, patches: torch.Tensor, mean_patches: torch.Tensor, train_index: torch.Tensor,
                 train_mask: torch.Tensor) -> None:
        """Population mean and (biased) variance of the BN inputs over each fold's whole training set:
        ``train_index`` (F, N_max) padded, ``train_mask`` (F, N_max) 1 for a fold's real samples."""
        h = self.conv_relu(patches, mean_patches, train_index)                             # (N_max, F*5, H, W)
        h = h.view(h.shape[0], self.folds, FILTERS, -1)
        weights = (train_mask / (train_mask.sum(1, keepdim=True) * h.shape[-1])).T          # (N_max, F)
        mean = torch.einsum("nfcp,nf->fc", h, weights)
        var = torch.einsum("nfcp,nf->fc", (h - mean[None, :, :, None]) ** 2, weights)
        self.bn_mean.copy_(mean.reshape(-1))
        self.bn_var.copy_(var.reshape(-1))

    def parameter_groups(self, l2: float) -> list[dict]:
        """L2 on the weights, BN scale and offset (L2Factor 1 in net4.mat), not on the biases (L2Factor 0)."""
        return [{"params": [self.conv_weight, self.fc_weight, self.bn_scale, self.bn_offset], "weight_decay": l2},
                {"params": [self.conv_bias, self.fc_bias], "weight_decay": 0.0}]


def unfold3(images: torch.Tensor) -> torch.Tensor:
    """(N, 27, H*W): the 3x3 patches of zero-padded images (N, 3, H, W), channel-major like conv weights
    (as ``F.unfold(images, 3, padding=1)``, which is 50x slower on a CPU)."""
    n, c, h, w = images.shape
    padded = F.pad(images, (1, 1, 1, 1))
    shifted = torch.stack([padded[:, :, dy:dy + h, dx:dx + w] for dy in range(KERNEL) for dx in range(KERNEL)], dim=2)
    return shifted.reshape(n, c * KERNEL * KERNEL, h * w)


def image_patches(images: torch.Tensor) -> torch.Tensor:
    """(27, N*H*W): the 3x3 patches of zero-padded images (N, 3, H, W), channel-major like conv weights."""
    n, _, h, w = images.shape
    columns = unfold3(images)                                                              # (N, 27, H*W)
    return columns.transpose(0, 1).reshape(columns.shape[1], n * h * w).contiguous()


@dataclass
class FoldTask:
    """One fold as the trainer sees it: indices into the pool of images, training and test."""

    name: str
    train: np.ndarray       # int64 indices of the training samples
    test: np.ndarray        # int64 indices of the held-out samples


def batch_plan(n_train: int, config: SurveyConfig) -> tuple[int, int]:
    """(mini-batch size, iterations per epoch) of a training set of ``n_train`` samples, as trainNetwork:
    whole mini-batches only; a set smaller than one mini-batch is one mini-batch."""
    size = min(config.batch_size, n_train)
    return size, n_train // size


def _batches(rng: np.random.Generator, n_train: int, config: SurveyConfig) -> list[np.ndarray]:
    """The positions (into the fold's training list) of every iteration's mini-batch, all epochs."""
    size, per_epoch = batch_plan(n_train, config)
    order = rng.permutation(n_train)
    batches = []
    for _ in range(config.epochs):
        if config.shuffle == "every-epoch":
            order = rng.permutation(n_train)
        batches.extend(order[i * size:(i + 1) * size] for i in range(per_epoch))
    return batches


def engine_of(config: SurveyConfig, reasons: list | None = None) -> str:
    """The engine a run trains with (training/shallow_cnn.py ``choose_engine``): the kernel needs the same
    mini-batches every epoch (Shuffle 'once') and single precision."""
    unsupported = ("--shuffle every-epoch changes the mini-batches every epoch" if config.shuffle != "once"
                   else "float64 training" if config.dtype != "float32" else None)
    return shallow_cnn.choose_engine(config.engine, config.device, unsupported, reasons)


def plan_size(plans: list[list[np.ndarray]]) -> int:
    """The mini-batch size of a chunk's plans (every fold of a chunk has the same)."""
    return len(plans[0][0])


def train_folds(images: np.ndarray, labels: np.ndarray, tasks: list[FoldTask], n_classes: int,
                config: SurveyConfig, on_batch=None) -> dict[str, np.ndarray]:
    """Train one network per fold and score its held-out samples; returns fold name -> softmax scores
    (len(test), n_classes). ``images`` (N, 3, 28, 28) in 0..255, ``labels`` (N,) class indices.

    Folds are trained ``config.chunk_size(device)`` at a time; folds whose training sets give the same
    mini-batch plan share a batch. Each fold's numbers depend only on its own data and seed.
    """
    engine = engine_of(config)
    device = pick_device(config.device) if engine == "torch" else torch.device("cpu")
    dtype = torch.float64 if config.dtype == "float64" else torch.float32
    pool = torch.from_numpy(np.ascontiguousarray(images)).to(device=device, dtype=dtype)
    targets = torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(device)
    by_plan: dict[tuple[int, int], list[FoldTask]] = {}
    for task in tasks:
        if len(task.train) < 2:
            raise ValueError(f"fold {task.name}: {len(task.train)} training sample(s); batch normalisation "
                             "needs at least 2")
        by_plan.setdefault(batch_plan(len(task.train), config), []).append(task)
    scores: dict[str, np.ndarray] = {}
    done = 0
    # The kernel trains its threads' folds side by side, each alone: a chunk only bounds memory.
    per_chunk = 16 if engine == "kernel" else config.chunk_size(device)
    for group in by_plan.values():
        for start in range(0, len(group), per_chunk):
            chunk = group[start:start + per_chunk]
            scores.update(_train_chunk(pool, targets, chunk, n_classes, config, device, dtype, engine))
            done += len(chunk)
            if on_batch:
                on_batch(done, len(tasks), [t.name for t in chunk])
    return scores


def _train_chunk(pool: torch.Tensor, targets: torch.Tensor, chunk: list[FoldTask], n_classes: int,
                 config: SurveyConfig, device: torch.device, dtype: torch.dtype,
                 engine: str = "torch") -> dict[str, np.ndarray]:
    model, patches, mean_patches, local = _fit_chunk(pool, targets, chunk, n_classes, config, device, dtype, engine)
    folds = len(chunk)
    scores = {}
    with torch.no_grad():
        tests = np.unique(np.concatenate([t.test for t in chunk]))
        row = {int(k): i for i, k in enumerate(tests)}
        index = torch.tensor([local[int(k)] for k in tests], device=device)
        probabilities = torch.softmax(model(patches, mean_patches, index.expand(folds, -1)), dim=-1)
        probabilities = probabilities.double().cpu().numpy()                                  # (U, F, C)
        for f, task in enumerate(chunk):
            scores[task.name] = probabilities[[row[int(k)] for k in task.test], f]
    return scores


def _fit_chunk(pool: torch.Tensor, targets: torch.Tensor, chunk: list[FoldTask], n_classes: int,
               config: SurveyConfig, device: torch.device, dtype: torch.dtype, engine: str = "torch"):
    """The chunk's stacked networks trained (eval mode, population statistics set), with the patches of the
    images they use, each fold's mean image's patches, and where each pool index sits among those images."""
    folds, size = len(chunk), pool.shape[-1]
    seeds = [fold_seed(config.seed, task.name) for task in chunk]
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    rngs = [np.random.default_rng(s) for s in seeds]
    model = StackedSurveyCNN(folds, n_classes, config.dropout, size).to(device=device, dtype=dtype)
    model.initialise(generators, config.init)
    # Only the images some fold of the chunk uses (all of them, in LOVO).
    used = np.unique(np.concatenate([np.concatenate([t.train, t.test]) for t in chunk]))
    local = {int(k): i for i, k in enumerate(used)}
    images = pool[torch.from_numpy(used).to(device)]
    patches = image_patches(images)
    # Each fold's training images, padded to the longest (folds of one batch plan can differ in size).
    longest = max(len(t.train) for t in chunk)
    train_index = torch.tensor([[local[int(k)] for k in t.train] + [local[int(t.train[0])]] * (longest - len(t.train))
                                for t in chunk], device=device)                                          # (F, N_max)
    train_mask = torch.tensor([[1.0] * len(t.train) + [0.0] * (longest - len(t.train)) for t in chunk],
                              device=device, dtype=dtype)
    # 'zerocenter': each fold's mean image over its whole training set, as patches.
    weights = torch.zeros((folds, len(used)), device=device, dtype=dtype)
    weights.scatter_(1, train_index, 1.0)
    weights /= weights.sum(1, keepdim=True)
    means = (weights @ images.reshape(len(used), -1)).view(folds, *images.shape[1:])       # (F, 3, H, W)
    mean_patches = unfold3(means)                                                            # (F, 27, H*W)
    local_targets = targets[torch.from_numpy(used).to(device)]
    plans = [_batches(rng, len(task.train), config) for rng, task in zip(rngs, chunk)]
    if engine == "kernel":
        _train_with_kernel(model, images, local_targets, train_index, means, plans, seeds, config)
    else:
        _train_with_torch(model, patches, mean_patches, train_index, local_targets, plans, generators, config,
                          device, dtype)
    model.eval()
    model.finalise(patches, mean_patches, train_index, train_mask)
    return model, patches, mean_patches, local


def _train_with_torch(model: StackedSurveyCNN, patches, mean_patches, train_index, local_targets, plans, generators,
                      config: SurveyConfig, device, dtype) -> None:
    """The chunk's folds stacked in one network, autograd and one Adam (each fold's own masks and batches)."""
    folds, n_classes = model.folds, model.n_classes
    size = model.size
    optimiser = torch.optim.Adam(model.parameter_groups(config.l2), lr=config.learning_rate,
                                 betas=(config.beta1, config.beta2), eps=config.adam_epsilon)
    pooled = math.ceil(size / POOL)   # maxpool_7's output side, where dropout acts
    draws = torch.empty((folds, plan_size(plans), FILTERS, pooled, pooled))                  # dropout's uniforms
    model.train()
    for step in range(len(plans[0])):
        positions = torch.from_numpy(np.stack([plan[step] for plan in plans])).to(device)     # (F, B)
        index = torch.gather(train_index, 1, positions)                                       # (F, B)
        masks = None
        if config.dropout > 0:  # each fold's mask from its own generator, so no fold depends on its batch-mates
            for f, generator in enumerate(generators):
                torch.rand(draws.shape[1:], generator=generator, out=draws[f])
            masks = (draws >= config.dropout).transpose(0, 1).reshape(index.shape[1], folds * FILTERS, pooled, pooled)
            masks = masks.to(device=device, dtype=dtype)
        logits = model(patches, mean_patches, index, masks)                                  # (B, F, C)
        loss = F.cross_entropy(logits.reshape(-1, n_classes), local_targets[index].T.reshape(-1),
                               reduction="sum") / index.shape[1]   # the sum over folds of each fold's mean loss
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()


def _train_with_kernel(model: StackedSurveyCNN, images, local_targets, train_index, means, plans, seeds,
                       config: SurveyConfig) -> None:
    """The chunk's folds with training/shallow_cnn.py's kernel (threads over folds), from the stacked network's
    initial weights; the trained weights are written back into it. The kernel draws each fold's dropout from
    its own seed; Shuffle 'once' gives each fold the same mini-batches every epoch."""
    per_epoch = len(plans[0]) // config.epochs
    pool = images.detach().float().cpu().numpy()
    targets = local_targets.cpu().numpy()
    index = train_index.cpu().numpy()
    jobs = []
    for f, (plan, seed) in enumerate(zip(plans, seeds)):
        batches = [index[f][plan[i]] for i in range(per_epoch)]
        jobs.append(shallow_cnn.Job(str(f), batches, [targets[b] for b in batches], model.flat(f), seed,
                                    means[f].detach().float().cpu().numpy()))
    schedule = shallow_cnn.Schedule(steps=config.epochs * per_epoch, lr=config.learning_rate, beta1=config.beta1,
                                    beta2=config.beta2, adam_eps=config.adam_epsilon, weight_decay=config.l2,
                                    dropout=config.dropout, bn_eps=BN_EPSILON)
    network = shallow_cnn.Network(1, FILTERS, model.n_classes)   # 'same' padding: one pixel
    trained = shallow_cnn.train(pool, network, schedule, jobs, threads=shallow_cnn.thread_count(config.threads))
    for f in range(len(jobs)):
        model.load_flat(f, trained[str(f)].params)


def fit_all(images: np.ndarray, labels: np.ndarray, n_classes: int, config: SurveyConfig,
            name: str = "all-subjects") -> dict[str, np.ndarray]:
    """One network trained on every image (a deployed model: training/deploy.py), main4.m's schedule, seeded as a
    fold named ``name``: its weights by state_dict name (population statistics included) and ``mean_image``,
    the 'zerocenter' mean of its training images. float32 arrays."""
    device = pick_device(config.device)
    dtype = torch.float64 if config.dtype == "float64" else torch.float32
    if len(images) < 2:
        raise ValueError(f"{len(images)} training image(s); batch normalisation needs at least 2")
    pool = torch.from_numpy(np.ascontiguousarray(images)).to(device=device, dtype=dtype)
    targets = torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(device)
    task = FoldTask(name, np.arange(len(images), dtype=np.int64), np.zeros(0, np.int64))
    model, _, _, _ = _fit_chunk(pool, targets, [task], n_classes, config, device, dtype, engine_of(config))
    arrays = {key: value.detach().cpu().numpy().astype(np.float32) for key, value in model.state_dict().items()}
    arrays["mean_image"] = pool.mean(0).cpu().numpy().astype(np.float32)
    return arrays


@torch.no_grad()
def probabilities_of(arrays: dict[str, np.ndarray], images: np.ndarray, n_classes: int, dropout: float = 0.5
                     ) -> np.ndarray:
    """Softmax scores (len(images), n_classes) of (N, 3, 28, 28) images in 0..255 by a ``fit_all`` network (eval
    mode: population statistics, no dropout), on the CPU in float32."""
    model = StackedSurveyCNN(1, n_classes, dropout, images.shape[-1])
    model.load_state_dict({k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in arrays.items() if k != "mean_image"})
    model.eval()
    pool = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    mean_patches = unfold3(torch.from_numpy(np.asarray(arrays["mean_image"], np.float32))[None])    # (1, 27, H*W)
    index = torch.arange(len(images))[None, :]
    return torch.softmax(model(image_patches(pool), mean_patches, index), dim=-1)[:, 0].double().numpy()


def survey_image(image: np.ndarray, grey_first: bool = False) -> np.ndarray:
    """A stored (3, H, W) crop as the survey's input: 28 x 28 (apex4.m imresize; INTER_AREA), float32 in
    0..255; ``grey_first``: only channel 1 kept (``grey_channels`` 'first' for a grey dataset)."""
    if image.shape[-1] != INPUT_SIZE:
        image = cv2.resize(np.ascontiguousarray(np.asarray(image).transpose(1, 2, 0)), (INPUT_SIZE, INPUT_SIZE),
                           interpolation=cv2.INTER_AREA).transpose(2, 0, 1)
    image = np.asarray(image, dtype=np.float32).copy()
    if grey_first:
        image[1:] = 0.0
    return image


def smoke_step(seed: int = 0) -> dict:
    """A forward pass and one Adam step of two stacked folds on random images (the registry's tiny test)."""
    rng = np.random.default_rng(seed)
    images = torch.from_numpy(rng.uniform(0, 255, (6, INPUT_CHANNELS, INPUT_SIZE, INPUT_SIZE)).astype(np.float32))
    labels = torch.from_numpy(np.arange(6) % 4)
    model = StackedSurveyCNN(2, 4)
    model.initialise([torch.Generator().manual_seed(seed + f) for f in range(2)])
    patches = image_patches(images)
    mean_patches = unfold3(images.mean(0, keepdim=True).expand(2, -1, -1, -1))
    index = torch.tensor([[0, 1, 2, 3], [2, 3, 4, 5]])
    before = [p.detach().clone() for p in model.parameters()]
    optimiser = torch.optim.Adam(model.parameter_groups(1e-4), lr=5e-5)
    model.train()
    logits = model(patches, mean_patches, index)
    loss = F.cross_entropy(logits.reshape(-1, 4), labels[index].T.reshape(-1), reduction="sum") / index.shape[1]
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    change = float(sum((p.detach() - b).norm() for p, b in zip(model.parameters(), before)))
    return {"loss": float(loss.detach()), "change": change, "logits": (logits.shape[0] * logits.shape[1], logits.shape[2])}


# ------------------------------------------------------------------------------------------ a protocol
Config = SurveyConfig
# Datasets whose frames the survey read as grey: apex4.m fills only channel 1 of their 28x28x3 input
# (SAMM: all_C(:,:,1,e)=Image2; CASME: all_C(:,:,1,e)=Image8), the colour sets all three.
SURVEY_GREY_DATASETS = frozenset({"samm", "casme"})


def default_config(**overrides) -> SurveyConfig:
    """main4.m's settings (and MATLAB's defaults), with ``overrides``."""
    return SurveyConfig(**overrides)


TINY_SETTINGS = {"epochs": 2, "device": "cpu"}  # the registry's test: a fold in seconds on a CPU
MODEL = register_model(ModelInfo(
    NAME, __name__,
    "the survey baseline (Gong, An, Elfiky 2022): one small CNN on the 28x28 apex frame, MATLAB main4.m's schedule",
    SurveyConfig, inputs=("apex",), optional_inputs=("middle",),  # the middle frame for SMIC (no apex); imported groups have none
    options=("epochs", "engine", "unannotated_apex", "grey_channels", "init", "seed", "device"),
    title="fixed schedule ({epochs} epochs, the last)", default_balance="undersample",
    folds_per_task=None))


def plan(data, config: SurveyConfig, protocol: str, dataset: str | None, class_set: str | None = None) -> RunPlan:
    """The survey's run: one network per fold trained on its training samples with main4.m's fixed schedule (no
    inner validation: nothing is chosen), scored on the held-out samples. ``balance undersample`` (the
    survey's) balances the protocol's samples before the split and rebuilds the folds on them: leaky, since
    the held-out subject's samples are removed by their labels; ``undersample-training`` balances each fold's
    training samples after the split (honest); ``none`` keeps every sample."""
    column = data.folds[0].label_column
    rows = data.samples.reset_index(drop=True)
    balance_record = None
    messages = []
    if config.balance == "undersample":
        rows, balance_record = undersample(rows, column, config.seed)
        messages.append(f"balanced before the split by undersampling (seed {config.seed}), the survey's: "
                        f"{balance_record['per_class']} per class, {len(rows)} of {len(data.samples)} samples "
                        "(before: " + ", ".join(f"{k} {v}" for k, v in balance_record["before"].items()) + "); this "
                        "reads the held-out samples' labels (leaky): --balance undersample-training balances each "
                        "fold's training samples only")
    fold_list = folds(rows, protocol, dataset, class_set=class_set, validation_fraction=0.0, seed=config.seed)
    if config.balance == "undersample-training":
        balanced = [undersample_training(fold, rows, config.seed) for fold in fold_list]
        fold_list = [fold for fold, _ in balanced]
        sizes = sorted({info["per_class"] for _, info in balanced})
        balance_record = {"method": "undersample-training", "seed": config.seed,
                          "per_class": {"min": sizes[0], "max": sizes[-1]}, "folds": len(fold_list)}
        messages.append(f"balanced inside each fold (seed {config.seed}): each fold's training samples undersampled "
                        f"to its smallest class ({sizes[0]} to {sizes[-1]} per class); test samples as they are")
    identity = data.identity() | {
        "model": NAME, "balanced": config_hash({"kept": balance_record["kept"] if balance_record and "kept" in
                                                balance_record else None, "balance": config.balance})}
    leaks = leak_reasons(protocol, config.balance)
    if leaks:
        honest = " ".join(part for part in (
            "a subject-disjoint protocol (--protocol fused4, fused9 or loso)" if protocol in LEAKY_PROTOCOLS else "",
            "with" if protocol in LEAKY_PROTOCOLS and config.balance in LEAKY_BALANCES else "",
            "--balance undersample-training" if config.balance in LEAKY_BALANCES else "") if part)
        messages.append("leaky, the number uses test labels: " + "; ".join(leaks) + f". The honest number: {honest}")
    if config.recipe != "published":
        messages.append("survey-cnn recipe custom: " + "; ".join(config.recipe_differences))
    reasons: list[str] = []
    engine = engine_of(config, reasons)
    if reasons:
        messages.append(f"survey-cnn trains with PyTorch: {reasons[0]}")
    notes = {"excluded_samples": dict(sorted(data.excluded.items())),
             "sample_list": data.sample_list, "balance": balance_record,
             "schedule": ("fixed: main4.m's published schedule" if config.recipe == "published"
                          else f"fixed: {config.epochs} epochs (custom)") + ", no inner validation, nothing chosen",
             "leaky": bool(leaks), "leaks": leaks, "engine": engine, "recipe_differences": config.recipe_differences}
    return RunPlan(fold_list, notes, identity, messages, {"model": NAME, **config.to_dict()}, bool(leaks))


def prepare(data, config: SurveyConfig, checkpoints) -> None:
    """Nothing is shared between folds (each trains from its own seeded initial weights)."""
    return None


def load_images(source, samples: pd.DataFrame, config: SurveyConfig) -> tuple[np.ndarray, list[str]]:
    """(N, 3, 28, 28) float32 images in 0..255 for ``samples`` (in their order), and which frame each is:
    the annotated apex; where the dataset has none (SMIC), the clip's middle frame or the spotted apex
    (``config.unannotated_apex``); an imported image (no apex source recorded: the survey's own arrays) as
    it is. ``source``: a training.data.FeatureSource holding the ``apex`` (and, where a sample needs it, the
    ``middle``) crops (``ModelInfo.inputs``).

    Grey images: ``first`` leaves channels 2 and 3 at zero for the survey's grey datasets (apex4.m), as the
    survey's arrays already store them; ``replicate`` copies channel 1 into them (for a grey dataset's crop
    and for an imported image whose channels 2 and 3 are exact zeros)."""
    # An imported image's features row says "imported" (flows/imports.py); an in-memory source may say nothing.
    sources = [None if source.apex_source.get(key) in (None, "", "imported") else source.apex_source.get(key)
               for key in samples["sample_key"]]
    needed = {"apex"} | ({"middle"} if config.unannotated_apex == "middle" and any(
        kind not in (None, "annotated") for kind in sources) else set())
    absent = sorted(name for name in needed if name not in source.arrays)
    if absent:
        raise LookupError(f"survey-cnn reads the {' and '.join(absent)} crops of these samples (no annotated "
                          f"apex: the middle frame, as apex4.m), which the loaded features lack (a store written "
                          f"before crops were stored, or imported inputs): recompute the features with `merflow "
                          f"features`, or train with --unannotated-apex spotted")
    images = np.zeros((len(samples), INPUT_CHANNELS, INPUT_SIZE, INPUT_SIZE), np.float32)
    frames = [""] * len(samples)
    for i, (key, dataset, kind) in enumerate(zip(samples["sample_key"], samples["dataset"], sources)):
        name = "apex" if kind in (None, "annotated") or config.unannotated_apex == "spotted" else "middle"
        # The survey resized frames to 28x28 (apex4.m imresize); its grey datasets fill channel 1 only.
        image = survey_image(source.arrays[name][key],
                             config.grey_channels == "first" and dataset in SURVEY_GREY_DATASETS)
        if config.grey_channels == "replicate" and kind is None and not image[1:].any():
            image[1:] = image[0]
        images[i] = image
        frames[i] = ("imported image" if kind is None else "annotated apex" if kind == "annotated"
                     else "middle frame" if name == "middle" else "spotted apex")
    return images, frames


def _chunk_key(config: SurveyConfig, chunk: list[Fold], labels: dict, frames: dict, fingerprints: dict,
               feature_hash: str, engine: str = "torch") -> str:
    keys = sorted({k for fold in chunk for k in fold.fit_keys + fold.test_keys})
    settings = {"model": NAME, "config": config.weights_dict(), "features": feature_hash,
                "folds": [[f.name, list(f.fit_keys), list(f.test_keys)] for f in chunk],
                "classes": list(chunk[0].classes),
                "samples": [[k, labels[k], frames[k], fingerprints.get(k, "")] for k in keys]}
    # The kernel draws other dropout masks than torch's: its scores are its own (torch's keys are as before).
    return config_hash(settings | ({"engine": engine} if engine != "torch" else {}))


def run_folds(data, fold_list: list[Fold], config: SurveyConfig, checkpoints, *, prepared=None,
              on_fold=None) -> list[FoldResult]:
    """Train and score ``fold_list`` (each trains on its fit keys, tests its test keys; no validation),
    stacked, 32 folds (or one GPU stack) at a time; each batch's scores are checkpointed under
    ``checkpoints/survey-cnn/``, named by everything they depend on, so a rerun trains only what is missing."""
    if not fold_list:
        return []
    classes = fold_list[0].classes
    column = fold_list[0].label_column
    keys = sorted({k for fold in fold_list for k in fold.fit_keys + fold.validation_keys + fold.test_keys})
    rows = data.samples.loc[keys]
    images, frame_names = load_images(data.source, rows.reset_index(drop=True), config)
    index = {k: i for i, k in enumerate(keys)}
    labels = np.array([classes.index(rows.at[k, column]) for k in keys], dtype=np.int64)
    label_of, frame_of = dict(zip(keys, rows[column])), dict(zip(keys, frame_names))
    fingerprints = data.source.fingerprints
    engine = engine_of(config)
    folder = checkpoints.folder(NAME)
    by_plan: dict[tuple[int, int], list[Fold]] = {}
    for fold in fold_list:
        by_plan.setdefault(batch_plan(len(fold.fit_keys), config), []).append(fold)
    scores: dict[str, np.ndarray] = {}
    done = 0
    order = {fold.name: i for i, fold in enumerate(fold_list)}
    # Scores are checkpointed every 32 folds (or one GPU stack): a killed run loses at most that much.
    per_checkpoint = max(32, config.chunk_size(pick_device(config.device)))
    for group in by_plan.values():
        for start in range(0, len(group), per_checkpoint):
            chunk = group[start:start + per_checkpoint]
            key = _chunk_key(config, chunk, label_of, frame_of, fingerprints, data.feature_config.hash, engine)

            def train_chunk(chunk=chunk):
                tasks = [FoldTask(f.name, np.array([index[k] for k in f.fit_keys], dtype=np.int64),
                                  np.array([index[k] for k in f.test_keys], dtype=np.int64)) for f in chunk]
                trained = train_folds(images, labels, tasks, len(classes), config)
                return {"model": NAME, "folds": [f.name for f in chunk],
                        "scores": {k: v.tolist() for k, v in trained.items()}}

            saved = folder.load_or_make("folds", key, train_chunk, codec="json")  # folds-<key>.json
            chunk_scores = {name: np.asarray(v, dtype=np.float64) for name, v in saved["scores"].items()}
            scores.update(chunk_scores)
            for fold in chunk:
                done += 1
                if on_fold:
                    on_fold(done, len(fold_list), fold)
    outcomes = []
    for fold in sorted(fold_list, key=lambda f: order[f.name]):
        fold_scores = scores[fold.name]
        predictions = prediction_frame(fold, rows, "test", fold.test_keys, fold_scores, model=NAME)
        outcomes.append(FoldResult(fold, predictions, {}))
    return outcomes

