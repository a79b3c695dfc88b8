"""Image encoders: networks that map a motion image ``(B, C, H, W)`` to an embedding ``(B, out_dim)``.

One concern: the backbones, by name, behind one interface (``build_encoder``). Every encoder has an
``out_dim`` attribute and ends in global average pooling, so it accepts any input size its strides
allow (28x28 up to 256x128 and beyond) and any channel count (the input layouts of ``model.py``).

- ``small``: four conv3x3-BN-ReLU-maxpool blocks (32, 64, 96, 128 channels) -> 128-d; 185,824
  parameters for 3 input channels; trains in minutes on a CPU (tests, smoke runs, 28x28 inputs).
- ``resnet18``: torchvision's ResNet-18 (BasicBlock [2, 2, 2, 2], widths 64-128-256-512, 7x7
  stride-2 stem with max pooling) written in plain torch, without the fc layer -> 512-d; the
  Meta-MMFNet encoder. 11,176,512 parameters for 3 input channels. Initialised as torchvision does
  (Kaiming normal, fan-out, for convolutions; BN weight 1, bias 0); nothing is downloaded, so
  ImageNet weights are replaced by training from scratch or merflow's own pretraining.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from merflow.configs.train import ENCODER_NAMES

__all__ = ["ENCODERS", "ResNet18Encoder", "SmallEncoder", "build_encoder"]


def _kaiming_init(module: nn.Module) -> None:
    """torchvision's ResNet initialisation, applied to every layer of ``module``."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)


class SmallEncoder(nn.Module):
    """Four conv3x3-BN-ReLU-maxpool blocks and global average pooling: a CPU-friendly backbone.

    Four 2x poolings still leave at least one pixel of a 28x28 input (28 -> 14 -> 7 -> 3 -> 1).
    """

    WIDTHS = (32, 64, 96, 128)

    def __init__(self, in_channels: int = 3):
        super().__init__()
        blocks, channels = [], in_channels
        for width in self.WIDTHS:
            # No conv bias: the following BatchNorm's shift makes it redundant.
            blocks += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            channels = width
        self.features = nn.Sequential(*blocks)
        self.out_dim = channels
        _kaiming_init(self)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, H, W)`` -> ``(B, 128)``: the four blocks, then global average pooling."""
        return self.features(x).mean(dim=(2, 3))


class BasicBlock(nn.Module):
    """ResNet's two-conv residual block; a 1x1 strided projection when the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(out_channels))

    def forward(self, x: Tensor) -> Tensor:
        """Two conv3x3-BN layers plus the (downsampled) input, then ReLU."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18Encoder(nn.Module):
    """torchvision's ResNet-18 up to the global average pool (no fc), with any number of input channels.

    Attribute names follow torchvision (``conv1``, ``bn1``, ``layer1`` .. ``layer4``), so a state dict
    of torchvision's model, fc removed, loads into it where one is at hand.
    """

    WIDTHS = (64, 128, 256, 512)
    BLOCKS_PER_STAGE = 2

    def __init__(self, in_channels: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        channels = 64
        for stage, width in enumerate(self.WIDTHS, start=1):
            stride = 1 if stage == 1 else 2
            blocks = [BasicBlock(channels, width, stride)]
            blocks += [BasicBlock(width, width) for _ in range(self.BLOCKS_PER_STAGE - 1)]
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
            channels = width
        self.out_dim = channels
        _kaiming_init(self)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, H, W)`` -> ``(B, 512)``: the stem, four stages, then global average pooling."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x.mean(dim=(2, 3))


ENCODERS: dict[str, Callable[[int], nn.Module]] = {
    "small": SmallEncoder,
    "resnet18": ResNet18Encoder,
}
# TrainConfig validates its encoder against configs/train.py's names (configs imports nothing of the project).
if tuple(ENCODERS) != ENCODER_NAMES:
    raise ImportError(f"configs/train.py ENCODER_NAMES {ENCODER_NAMES} differ from ENCODERS {tuple(ENCODERS)}")


def build_encoder(name: str, in_channels: int = 3) -> nn.Module:
    """A freshly initialised encoder from the registry; its ``out_dim`` is the embedding size."""
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; choose one of {', '.join(map(repr, ENCODERS))}")
    if in_channels < 1:
        raise ValueError(f"in_channels must be at least 1, not {in_channels}")
    return ENCODERS[name](in_channels)
