"""Tests for the encoders (training/encoders.py): output shapes on every input layout and size,
ResNet-18's parameter count against torchvision's, its initialisation, the registry, and that both
encoders can be trained."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from merflow.training.encoders import ENCODERS, build_encoder

# torchvision's resnet18 has 11,689,512 parameters, of which the fc layer holds 512 * 1000 + 1000.
RESNET18_WITHOUT_FC = 11_689_512 - (512 * 1000 + 1000)
STEM_WEIGHTS_PER_CHANNEL = 64 * 7 * 7  # the 7x7 stem's weights that one more input channel adds
OUT_DIMS = {"small": 128, "resnet18": 512}


@pytest.mark.parametrize("name", sorted(ENCODERS))
@pytest.mark.parametrize("shape", [(2, 3, 160, 80), (2, 6, 80, 80), (2, 3, 56, 28)],
                         ids=["stack_height_80", "channels_80", "stack_height_28"])
def test_embedding_shape(name, shape):
    torch.manual_seed(0)
    encoder = build_encoder(name, in_channels=shape[1])
    embeddings = encoder(torch.randn(shape))
    assert encoder.out_dim == OUT_DIMS[name]
    assert embeddings.shape == (shape[0], encoder.out_dim)
    assert torch.isfinite(embeddings).all()


def test_small_encoder_takes_the_largest_input():
    encoder = build_encoder("small")
    assert encoder(torch.randn(1, 3, 256, 128)).shape == (1, 128)


def _parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_resnet18_matches_torchvision_without_fc():
    encoder = build_encoder("resnet18", in_channels=3)
    assert _parameter_count(encoder) == RESNET18_WITHOUT_FC
    assert not any(isinstance(m, nn.Linear) for m in encoder.modules())
    six_channels = build_encoder("resnet18", in_channels=6)
    assert _parameter_count(six_channels) == RESNET18_WITHOUT_FC + 3 * STEM_WEIGHTS_PER_CHANNEL


def test_resnet18_kaiming_initialisation():
    torch.manual_seed(0)
    encoder = build_encoder("resnet18")
    conv = encoder.layer4[1].conv2  # 512 x 512 x 3 x 3: enough weights for a tight estimate of the spread
    fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / fan_out), rel=0.02)
    assert torch.equal(encoder.bn1.weight, torch.ones(64)) and torch.equal(encoder.bn1.bias, torch.zeros(64))


def test_unknown_encoder_lists_the_registry():
    with pytest.raises(ValueError, match="'small', 'resnet18'"):
        build_encoder("vgg16")


def _fit(name: str, steps: int, lr: float) -> tuple[float, float, float]:
    """Initial loss, final loss and final training accuracy of encoder + linear head on 8 fixed random samples."""
    torch.manual_seed(0)
    images, labels = torch.randn(8, 3, 56, 28), torch.arange(8) % 4
    encoder = build_encoder(name)
    model = nn.Sequential(encoder, nn.Linear(encoder.out_dim, 4))
    optimiser = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    losses = []
    for _ in range(steps):
        loss = F.cross_entropy(model(images), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        accuracy = (model(images).argmax(1) == labels).float().mean().item()
    return losses[0], losses[-1], accuracy


def test_small_encoder_fits_a_tiny_batch():
    first, last, accuracy = _fit("small", steps=40, lr=0.05)
    assert last < 0.2 * first
    assert accuracy == 1.0


def test_resnet18_learns_on_a_tiny_batch():
    first, last, _ = _fit("resnet18", steps=8, lr=0.01)
    assert last < 0.5 * first
