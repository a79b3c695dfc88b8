"""The shallow CNNs' fast trainer on a CPU: ``shallow_cnn.c``, compiled on first use, one fold a call.

survey-cnn (the survey's net4.mat) and STSTNet are the same network shape: one 3x3 convolution of a 28x28x3
input, ReLU, batch normalisation, 3x3/3 max pooling, dropout, 2x2 average pooling and one fully connected
layer, trained with Adam on mini-batches that are the same every epoch. ``shallow_cnn.c`` says how it trains
such a network an order of magnitude faster than autograd does (benchmarks/README.md, "STSTNet"): the ReLU
masks barely change from one step to the next, so the batch-norm statistics and the dense part of the
weight gradient come from moments of the input patches kept up to date where a mask flipped, and max pooling
is done before batch norm's affine map. The numbers are those of the plain network (tests/test_ststnet.py
checks steps against PyTorch's autograd on the official network) up to float32 rounding.

The C file is compiled once per machine (``cc -O3 -march=native``) into ``$MERFLOW_KERNEL_CACHE`` (default
``~/.cache/merflow/kernels``), named by its source and the CPU, written whole or absent; where no compiler
works, ``available()`` says why and the models train with PyTorch instead (slower, recorded as the run's
``engine``). Folds run on ``threads`` threads (ctypes releases the GIL), each from its own initial weights
and seed: a fold's result does not depend on which folds share a call.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

SOURCE = Path(__file__).with_suffix(".c")
FLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-fPIC", "-shared", "-std=gnu11")
INPUT = 28          # the input side both networks take
POOLED = 10         # max-pooled side (3x3, stride 3, padding 1: 30 -> 10, 28 -> 10)
AVERAGED = 5        # average-pooled side
TAPS = 27
ABI = 1


class KernelUnavailable(RuntimeError):
    """No C compiler could build the kernel here (the message says why)."""


class _Spec(ctypes.Structure):
    _fields_ = [("n_images", ctypes.c_int), ("hp", ctypes.c_int), ("wp", ctypes.c_int), ("pad", ctypes.c_int),
                ("channels", ctypes.c_int), ("classes", ctypes.c_int), ("steps", ctypes.c_int),
                ("images", ctypes.POINTER(ctypes.c_float)),
                ("lr", ctypes.c_float), ("beta1", ctypes.c_float), ("beta2", ctypes.c_float),
                ("adam_eps", ctypes.c_float), ("weight_decay", ctypes.c_float), ("dropout", ctypes.c_float),
                ("bn_eps", ctypes.c_float), ("bn_momentum", ctypes.c_float)]


class _Job(ctypes.Structure):
    _fields_ = [("n_batches", ctypes.c_int), ("batch_start", ctypes.POINTER(ctypes.c_int)),
                ("batch_images", ctypes.POINTER(ctypes.c_int)), ("batch_labels", ctypes.POINTER(ctypes.c_int)),
                ("mean_image", ctypes.POINTER(ctypes.c_float)), ("seed", ctypes.c_uint64),
                ("params", ctypes.POINTER(ctypes.c_float)), ("running", ctypes.POINTER(ctypes.c_float)),
                ("losses", ctypes.POINTER(ctypes.c_float)), ("stats", ctypes.POINTER(ctypes.c_double))]


def _cache_dir() -> Path:
    return Path(os.environ.get("MERFLOW_KERNEL_CACHE") or Path.home() / ".cache" / "merflow" / "kernels")


def _cpu_signature() -> str:
    """What -march=native depends on: the machine and its CPU's feature flags."""
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = line
                break
    except OSError:
        pass
    return f"{platform.machine()}|{platform.processor()}|{flags}"


_build_lock = threading.Lock()


@lru_cache(maxsize=1)
def _library() -> ctypes.CDLL:
    """The compiled kernel, built on first use (whole or absent, so concurrent builders are harmless)."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not compiler:
        raise KernelUnavailable("no C compiler (cc, gcc or clang) on PATH to build training/shallow_cnn.c")
    source = SOURCE.read_bytes()
    key = hashlib.sha256(source + " ".join(FLAGS).encode() + _cpu_signature().encode()).hexdigest()[:16]
    target = _cache_dir() / f"shallow_cnn-{key}.so"
    with _build_lock:
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=target.parent) as work:
                built = Path(work) / target.name
                done = subprocess.run([compiler, *FLAGS, "-o", str(built), str(SOURCE), "-lm"], capture_output=True,
                                      text=True)
                if done.returncode != 0:
                    errors = [line for line in done.stderr.splitlines() if "error" in line] or ["no message"]
                    raise KernelUnavailable(f"{compiler} could not build {SOURCE.name}: {errors[0].strip()}")
                os.replace(built, target)
    library = ctypes.CDLL(str(target))
    if library.abi_version() != ABI:
        raise KernelUnavailable(f"{target} is not version {ABI} of the kernel")
    library.train_fold.argtypes = [ctypes.POINTER(_Spec), ctypes.POINTER(_Job)]
    library.train_fold.restype = ctypes.c_int
    library.dropout_keep.argtypes = [ctypes.c_uint64, ctypes.c_uint64, ctypes.c_int, ctypes.c_float,
                                     ctypes.POINTER(ctypes.c_uint8)]
    return library


def choose_engine(requested: str, device: str = "auto", unsupported: str | None = None,
                  reasons: list | None = None) -> str:
    """The engine a run trains with: "kernel" where ``requested`` is kernel, or auto and the kernel builds on a
    CPU run that it supports; else "torch". ``unsupported``: why the kernel cannot run these settings (None: it
    can). ``requested`` kernel where it cannot is a ValueError; ``reasons`` gets why auto fell back to torch."""
    if requested == "torch":
        return "torch"
    from merflow.training.loops import pick_device

    problem = unsupported or ("the run is on a GPU" if pick_device(device).type != "cpu" else available())
    if problem and requested == "kernel":
        raise ValueError(f"engine kernel: {problem}")
    if problem and reasons is not None:
        reasons.append(problem)
    return "torch" if problem else "kernel"


def thread_count(threads: int | None) -> int:
    """Folds trained at once: ``threads``, or every CPU this process may use."""
    if threads:
        return threads
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def available() -> str | None:
    """None where the kernel builds and loads here, else why not (one line)."""
    try:
        _library()
    except (KernelUnavailable, OSError) as error:
        return str(error)
    return None


@dataclass(frozen=True)
class Network:
    """The network's shape: convolution padding (2: STSTNet's 30x30 maps; 1: the survey's 'same'), filters, classes."""

    pad: int
    channels: int
    classes: int

    @property
    def side(self) -> int:
        """The convolution's output side (30 for padding 2, 28 for padding 1)."""
        return INPUT + 2 * self.pad - 2

    @property
    def parameters(self) -> int:
        """conv W, conv b, BN scale, BN offset, fc W, fc b."""
        return parameter_count(self.channels, self.classes)


def parameter_count(channels: int, classes: int) -> int:
    """How many numbers the network learns (STSTNet, 16 filters and 3 classes: 1,683)."""
    return channels * TAPS + 3 * channels + classes * channels * AVERAGED ** 2 + classes


def split_parameters(flat: np.ndarray, channels: int, classes: int) -> dict[str, np.ndarray]:
    """The flat parameter vector's parts: conv_weight (C, 3, 3, 3), conv_bias, bn_scale, bn_offset (C),
    fc_weight (K, C * 25), fc_bias (K)."""
    c, k, f = channels, classes, channels * AVERAGED ** 2
    return {"conv_weight": flat[:c * TAPS].reshape(c, 3, 3, 3), "conv_bias": flat[c * TAPS:c * 28],
            "bn_scale": flat[c * 28:c * 29], "bn_offset": flat[c * 29:c * 30],
            "fc_weight": flat[c * 30:c * 30 + k * f].reshape(k, f), "fc_bias": flat[c * 30 + k * f:]}


def join_parameters(parts: dict[str, np.ndarray]) -> np.ndarray:
    """``split_parameters``' inverse, float32."""
    order = ("conv_weight", "conv_bias", "bn_scale", "bn_offset", "fc_weight", "fc_bias")
    return np.concatenate([np.asarray(parts[name], np.float32).ravel() for name in order]).astype(np.float32)


@dataclass(frozen=True)
class Schedule:
    """How a fold trains: Adam (PyTorch's formula, coupled weight decay on the weights, BN scale and offset),
    dropout, batch norm's epsilon and running-statistics momentum, the number of steps."""

    steps: int
    lr: float
    beta1: float = 0.9
    beta2: float = 0.999
    adam_eps: float = 1e-8
    weight_decay: float = 0.0
    dropout: float = 0.5
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1


@dataclass
class Job:
    """One fold: its mini-batches (indices into the image pool, the same every epoch, used in turn), their
    class indices, its initial parameters (``join_parameters``' layout), its dropout seed and, for
    zero-centred inputs, the image subtracted from every input."""

    name: str
    batches: list[np.ndarray]
    labels: list[np.ndarray]
    params: np.ndarray
    seed: int
    mean_image: np.ndarray | None = None   # (3, 28, 28) float32


@dataclass
class Trained:
    """A trained fold: its parameters, batch norm's running mean and (unbiased) variance, each step's loss, and
    the share of ReLU-mask pixels that flipped a step (what the kernel's speed rests on)."""

    params: np.ndarray
    running_mean: np.ndarray
    running_var: np.ndarray
    losses: np.ndarray
    flip_rate: float = field(default=0.0)


def padded(images: np.ndarray, pad: int) -> np.ndarray:
    """(N, 3, 28 + 2 pad, 48) float32: the images zero-padded for the kernel's 32-wide rows."""
    images = np.asarray(images, np.float32)
    if images.shape[1:] != (3, INPUT, INPUT):
        raise ValueError(f"the kernel takes (N, 3, {INPUT}, {INPUT}) images, got {images.shape}")
    out = np.zeros((len(images), 3, INPUT + 2 * pad, 48), np.float32)
    out[:, :, pad:pad + INPUT, pad:pad + INPUT] = images
    return out


def _pointer(array: np.ndarray, kind):
    return array.ctypes.data_as(ctypes.POINTER(kind))


def dropout_keep(seed: int, step: int, entries: int, channels: int, dropout: float) -> np.ndarray:
    """The kernel's dropout draws for one step of a batch of ``entries`` images: (entries, channels, 10, 10),
    1 where a max-pooled element survives (the kernel keeps them quadrant-major; this is the grid)."""
    count = entries * channels * POOLED ** 2
    keep = np.zeros(count + 4, np.uint8)
    _library().dropout_keep(seed & (2 ** 64 - 1), step, count, dropout, _pointer(keep, ctypes.c_uint8))
    half = POOLED // 2
    quadrants = keep[:count].reshape(entries, channels, 2, 2, half, half)   # (row % 2, column % 2, row / 2, column / 2)
    return quadrants.transpose(0, 1, 4, 2, 5, 3).reshape(entries, channels, POOLED, POOLED)


def train(images: np.ndarray, network: Network, schedule: Schedule, jobs: list[Job], threads: int = 1,
          on_done=None) -> dict[str, Trained]:
    """Train every job's fold on ``images`` (N, 3, 28, 28) and return fold name -> ``Trained``. ``threads``
    folds run at once; ``on_done(name)`` hears each finished fold."""
    library = _library()
    pool = padded(images, network.pad)
    spec = _Spec(len(pool), pool.shape[2], pool.shape[3], network.pad, network.channels, network.classes,
                 schedule.steps, _pointer(pool, ctypes.c_float), schedule.lr, schedule.beta1, schedule.beta2,
                 schedule.adam_eps, schedule.weight_decay, schedule.dropout, schedule.bn_eps, schedule.bn_momentum)
    if network.channels > 16 or network.classes > 16:
        raise ValueError("the kernel takes at most 16 filters and 16 classes")

    def one(job: Job) -> tuple[str, Trained]:
        if len(job.batches) != len(job.labels) or not job.batches:
            raise ValueError(f"fold {job.name}: {len(job.batches)} batches and {len(job.labels)} label lists")
        starts = np.concatenate([[0], np.cumsum([len(b) for b in job.batches])]).astype(np.int32)
        entries = np.concatenate(job.batches).astype(np.int32)
        labels = np.concatenate(job.labels).astype(np.int32)
        if entries.min() < 0 or entries.max() >= len(pool):
            raise ValueError(f"fold {job.name}: image index out of the pool of {len(pool)}")
        if labels.min() < 0 or labels.max() >= network.classes:
            raise ValueError(f"fold {job.name}: a class index outside 0..{network.classes - 1}")
        params = np.array(job.params, np.float32, copy=True)
        if params.shape != (network.parameters,):
            raise ValueError(f"fold {job.name}: {params.shape} initial parameters, the network has {network.parameters}")
        mean = None if job.mean_image is None else padded(np.asarray(job.mean_image)[None], network.pad)[0]
        running = np.zeros(2 * network.channels, np.float32)
        losses = np.zeros(schedule.steps, np.float32)
        stats = np.zeros(2, np.float64)
        c_job = _Job(len(job.batches), _pointer(starts, ctypes.c_int), _pointer(entries, ctypes.c_int),
                     _pointer(labels, ctypes.c_int), None if mean is None else _pointer(mean, ctypes.c_float),
                     job.seed & (2 ** 64 - 1), _pointer(params, ctypes.c_float), _pointer(running, ctypes.c_float),
                     _pointer(losses, ctypes.c_float), _pointer(stats, ctypes.c_double))
        if library.train_fold(ctypes.byref(spec), ctypes.byref(c_job)) != 0:
            raise MemoryError(f"fold {job.name}: the kernel ran out of memory")
        if on_done:
            on_done(job.name)
        return job.name, Trained(params, running[:network.channels].copy(), running[network.channels:].copy(),
                                 losses, float(stats[0] / stats[1]) if stats[1] else 0.0)

    if threads <= 1 or len(jobs) <= 1:
        return dict(one(job) for job in jobs)
    with ThreadPoolExecutor(max_workers=threads) as executor:
        return dict(executor.map(one, jobs))
