"""The Meta-MMFNet network around an encoder: how the motion features become one input image, the
linear classifier used for pretraining, and the prototype classifier used for meta-training and test.

One concern: the forward computations. Where the samples come from (``episodes.py``) and the
optimisation loops belong to the trainer.

Input layouts
-------------
- ``stack_height`` (as published): one 3-channel image of twice the height, ``3 x 2H x W``; the frame
  difference on top, three flow channels below (u, v, magnitude by default).
- ``channels``: the difference and the chosen flow channels stacked as channels, ``(3 + k) x H x W``.

Prototype classifier (Meta-Baseline, Chen et al. 2020)
------------------------------------------------------
``w_c`` is the mean embedding of class ``c``'s support samples; a query's logit for ``c`` is
``tau * cos(f(x), w_c)`` with ``tau`` learned (initially 10). A class without support samples gets a
zero prototype, whose cosine with anything is 0 (``F.normalize`` leaves a zero vector at zero): its
logit is 0, neither favoured nor excluded, and the episode still has ``n_classes`` columns.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from merflow.configs.train import LAYOUT_NAMES

__all__ = ["INPUT_LAYOUTS", "LinearClassifier", "PrototypeClassifier", "compose_input", "input_channels"]

INPUT_LAYOUTS = ("stack_height", "channels")
# TrainConfig validates its layout against configs/train.py's names (configs imports nothing of the project).
if INPUT_LAYOUTS != LAYOUT_NAMES:
    raise ImportError(f"configs/train.py LAYOUT_NAMES {LAYOUT_NAMES} differ from INPUT_LAYOUTS {INPUT_LAYOUTS}")
DIFF_CHANNELS = 3
FLOW_CHANNEL_COUNT = 4  # u, v, magnitude, strain (storage/features.py FLOW_CHANNELS)


def _check_layout(layout: str, flow_channels: tuple[int, ...]) -> None:
    if layout not in INPUT_LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(map(repr, INPUT_LAYOUTS))}; got {layout!r}")
    if not flow_channels or any(not 0 <= c < FLOW_CHANNEL_COUNT for c in flow_channels):
        raise ValueError(f"flow_channels must be indices in 0..{FLOW_CHANNEL_COUNT - 1}; got {flow_channels!r}")
    if layout == "stack_height" and len(flow_channels) != DIFF_CHANNELS:
        # The flow image is stacked under the 3-channel difference, so it must have 3 channels too.
        raise ValueError(f"layout 'stack_height' needs exactly {DIFF_CHANNELS} flow channels; got {flow_channels!r}")


def input_channels(layout: str, flow_channels: tuple[int, ...] = (0, 1, 2)) -> int:
    """The channel count of ``compose_input``'s output: the encoder's ``in_channels``."""
    _check_layout(layout, tuple(flow_channels))
    return DIFF_CHANNELS if layout == "stack_height" else DIFF_CHANNELS + len(flow_channels)


def compose_input(diff: Tensor | np.ndarray, flow: Tensor | np.ndarray, layout: str = "stack_height",
                  flow_channels: tuple[int, ...] = (0, 1, 2)) -> Tensor:
    """The encoder's input from a batch of differences ``(B, 3, H, W)`` and flows ``(B, 4, H, W)``.

    numpy arrays are converted (float32); tensors keep their device. See the module docstring for
    the layouts.
    """
    flow_channels = tuple(flow_channels)
    _check_layout(layout, flow_channels)
    diff = torch.as_tensor(diff, dtype=torch.float32)
    flow = torch.as_tensor(flow, dtype=torch.float32, device=diff.device)
    if diff.ndim != 4 or diff.shape[1] != DIFF_CHANNELS:
        raise ValueError(f"diff must be (B, {DIFF_CHANNELS}, H, W); got {tuple(diff.shape)}")
    if flow.ndim != 4 or flow.shape[1] != FLOW_CHANNEL_COUNT:
        raise ValueError(f"flow must be (B, {FLOW_CHANNEL_COUNT}, H, W); got {tuple(flow.shape)}")
    if diff.shape[0] != flow.shape[0] or diff.shape[2:] != flow.shape[2:]:
        raise ValueError(f"diff {tuple(diff.shape)} and flow {tuple(flow.shape)} differ in batch or image size")
    chosen_flow = flow[:, list(flow_channels)]
    axis = 2 if layout == "stack_height" else 1
    return torch.cat([diff, chosen_flow], dim=axis)


class LinearClassifier(nn.Module):
    """Encoder plus one linear layer: the classifier pretrained on CK+ (macro) or a fold's subjects (micro)."""

    def __init__(self, encoder: nn.Module, n_classes: int):
        super().__init__()
        self.encoder = encoder
        self.fc = nn.Linear(encoder.out_dim, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits ``(B, n_classes)`` of a linear layer on the encoder's embedding."""
        return self.fc(self.encoder(x))


class PrototypeClassifier(nn.Module):
    """Meta-Baseline: cosine similarity to class prototypes, scaled by a learned temperature ``tau``."""

    def __init__(self, encoder: nn.Module, tau: float = 10.0):
        super().__init__()
        self.encoder = encoder
        self.tau = nn.Parameter(torch.tensor(float(tau)))

    def embed(self, x: Tensor) -> Tensor:
        """The encoder's embedding ``(B, D)`` of ``x``."""
        return self.encoder(x)

    @staticmethod
    def prototypes(embeddings: Tensor, labels: Tensor, n_classes: int) -> Tensor:
        """``(n_classes, D)``: the mean support embedding per class; zeros for a class without support."""
        labels = torch.as_tensor(labels, device=embeddings.device).long()
        one_hot = F.one_hot(labels, n_classes).to(embeddings.dtype)  # (S, n_classes)
        counts = one_hot.sum(dim=0).clamp(min=1)  # clamp: an empty class divides a zero sum by 1
        return (one_hot.T @ embeddings) / counts[:, None]

    def logits(self, query_embeddings: Tensor, prototypes: Tensor) -> Tensor:
        """``(Q, n_classes)``: ``tau * cos(f(x), w_c)``."""
        return self.tau * F.normalize(query_embeddings, dim=-1) @ F.normalize(prototypes, dim=-1).T

    def forward(self, support_x: Tensor, support_y: Tensor, query_x: Tensor, n_classes: int) -> Tensor:
        """Logits of the queries against prototypes built from this support set."""
        # One encoder pass over support and query together, as Meta-Baseline's code does: in training
        # mode BatchNorm then normalises both with the same batch statistics.
        embeddings = self.embed(torch.cat([support_x, query_x], dim=0))
        support, query = embeddings[: len(support_x)], embeddings[len(support_x):]
        return self.logits(query, self.prototypes(support, support_y, n_classes))
