"""SOFTNet (Liong et al., "Shallow optical flow three-stream CNN for macro- and micro-expression spotting from
long videos", ICIP 2021) in plain torch, read in genbing99/SoftNet-SpotME@dd43d1e training.py (Keras).

Network (``SOFTNet()``): three streams, one per input channel (u, v, strain, each 1 x 42 x 42):
Conv2D(3 / 5 / 8 filters, 5 x 5, 'same', ReLU) -> MaxPool 3 x 3 stride 3 (14 x 14); the 16 maps
concatenated -> MaxPool 2 x 2 (7 x 7) -> Flatten (784) -> Dense 400 ReLU -> Dense 1, linear. Keras's
default initialisers: Glorot uniform kernels, zero biases. Loss MSE, SGD lr 0.0005 (no momentum), 10
epochs, batch 12; each sample's channels min-max scaled to [0, 1] (``normalize``).

Training data (``train``): every frame of the training videos with its pseudo-label (intervals.py);
``rem_count = int(max_count * 1/2)`` random negatives removed (``negative_keep``: the share of the majority
count kept); for micro-expressions three copies of each positive (mirrored, 7 x 7 Gaussian blur, Gaussian
noise of variance 0.01: skimage ``random_noise``'s default, which also clips to [0, 1] or [-1, 1] — not
here, docs/spotting.md); shuffled once, then the same order every epoch (the Keras generator).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import nn

from merflow.configs.spotting import SpotConfig

NOISE_STD = 0.1   # skimage.util.random_noise's default: Gaussian, variance 0.01


class SoftNet(nn.Module):
    """SOFTNet's three streams and head (module docstring); input (N, 3, 42, 42), output (N,)."""

    def __init__(self, roi: int = 42):
        super().__init__()
        self.streams = nn.ModuleList([nn.Conv2d(1, filters, 5, padding=2) for filters in (3, 5, 8)])
        side = roi // 3 // 2
        self.dense = nn.Linear(16 * side * side, 400)
        self.out = nn.Linear(400, 1)
        for layer in [*self.streams, self.dense, self.out]:
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scores of a batch of (u, v, strain) images."""
        maps = [nn.functional.max_pool2d(torch.relu(conv(x[:, i:i + 1])), 3, 3) for i, conv in enumerate(self.streams)]
        merged = nn.functional.max_pool2d(torch.cat(maps, dim=1), 2, 2)
        return self.out(torch.relu(self.dense(merged.flatten(1)))).squeeze(1)


def normalize(batch: np.ndarray) -> np.ndarray:
    """Each sample's channels min-max scaled to [0, 1] (SOFTNet's ``normalize``: cv2 NORM_MINMAX per channel);
    a constant channel becomes 0. float32 (N, 3, H, W)."""
    batch = np.asarray(batch, dtype=np.float32)
    low = batch.min(axis=(2, 3), keepdims=True)
    span = batch.max(axis=(2, 3), keepdims=True) - low
    return np.where(span > 0, (batch - low) / np.where(span > 0, span, 1.0), 0.0).astype(np.float32)


def augmented(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """SOFTNet's three copies of each image (C, H, W): mirrored left-right, blurred 7 x 7, with noise."""
    copies = []
    for image in np.asarray(images, dtype=np.float32):
        hwc = image.transpose(1, 2, 0)
        copies.append(hwc[:, ::-1].transpose(2, 0, 1))
        copies.append(cv2.GaussianBlur(np.ascontiguousarray(hwc), (7, 7), 0).transpose(2, 0, 1))
        copies.append((hwc + rng.normal(0.0, NOISE_STD, hwc.shape).astype(np.float32)).transpose(2, 0, 1))
    return np.stack(copies) if copies else np.zeros((0, *images.shape[1:]), np.float32)


def device_for(name: str) -> torch.device:
    """``cpu``, ``cuda`` or ``auto`` (cuda where there is one)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def training_set(x: np.ndarray, y: np.ndarray, config: SpotConfig, micro: bool, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The frames SOFTNet trains on: negatives thinned, micro positives augmented, shuffled once."""
    y = np.asarray(y, dtype=np.float32)
    negatives, positives = np.flatnonzero(y == 0), np.flatnonzero(y > 0)
    removed = min(int(max(len(negatives), len(positives)) * (1 - config.negative_keep)), len(negatives))
    dropped = rng.choice(negatives, size=removed, replace=False) if removed else np.array([], np.int64)
    kept = np.setdiff1d(np.arange(len(y)), dropped)
    # Kept at the store's precision (float16): a SAMM-LV fold is hundreds of thousands of frames; each batch is
    # made float32 when it is scaled (normalize).
    images, labels = x[kept], y[kept]
    if micro and config.augment_micro and len(positives):
        extra = augmented(np.asarray(x[positives], dtype=np.float32), rng).astype(images.dtype)
        images = np.concatenate([images, extra])
        labels = np.concatenate([labels, np.ones(len(extra), np.float32)])
    order = rng.permutation(len(labels))
    return images[order], labels[order]


def train(x: np.ndarray, y: np.ndarray, config: SpotConfig, micro: bool, seed: int) -> SoftNet:
    """A SOFTNet trained on frames ``x`` (N, 3, R, R) with pseudo-labels ``y`` (N,); weights drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    device = device_for(config.device)
    images, labels = training_set(x, y, config, micro, rng)
    model = SoftNet(images.shape[-1] if len(images) else 42).to(device)
    optimiser = torch.optim.SGD(model.parameters(), lr=config.lr)
    loss = nn.MSELoss()
    model.train()
    for _ in range(config.epochs):
        for start in range(0, len(labels), config.batch_size):
            batch = torch.from_numpy(normalize(images[start:start + config.batch_size])).to(device)
            target = torch.from_numpy(labels[start:start + config.batch_size]).to(device)
            optimiser.zero_grad()
            loss(model(batch), target).backward()
            optimiser.step()
    return model.eval()


@torch.no_grad()
def scores(model: SoftNet, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """The model's score of each frame of ``x`` (N, 3, R, R): float32 (N,)."""
    device = next(model.parameters()).device
    out = [model(torch.from_numpy(normalize(x[start:start + batch_size])).to(device)).cpu().numpy()
           for start in range(0, len(x), batch_size)]
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


def state_arrays(model: SoftNet) -> dict[str, np.ndarray]:
    """The network's weights as float32 arrays by their state_dict names (a bundle stores them: no pickled module)."""
    return {name: tensor.detach().cpu().numpy().astype(np.float32) for name, tensor in model.state_dict().items()}


def from_state_arrays(arrays: dict[str, np.ndarray], roi: int) -> SoftNet:
    """A SOFTNet for ``roi`` x ``roi`` images with the weights ``state_arrays`` gave, in eval mode on the CPU; a
    KeyError or a RuntimeError naming the weights that do not fit."""
    model = SoftNet(roi)
    model.load_state_dict({name: torch.from_numpy(np.asarray(value, dtype=np.float32)) for name, value in arrays.items()})
    return model.eval()
