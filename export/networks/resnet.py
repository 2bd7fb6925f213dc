"""ResNet backbones of the top-down pose models: torchvision's ResNet and AlphaPose's variants of it.

Module names are torchvision's (``conv1``, ``bn1``, ``layer1..4``; in a block ``conv1/bn1/conv2/bn2``
[``/conv3/bn3``] and ``downsample.0/1``), so the pose checkpoints built on ImageNet ResNets load
without renaming below their backbone prefix. The variants (``VARIANTS``):

- ``resnet``: torchvision's ResNet, the stride on the 3×3 conv (SimpleBaseline; AlphaPose's ResNet);
- ``resnet-caffe``: the stride on the first 1×1 conv (microsoft's SimpleBaseline ``STYLE: caffe``);
- ``se-resnet``: AlphaPose's SE-ResNet: a squeeze-excitation unit ``se.fc.0``/``se.fc.2`` (two C×C
  linear layers) in the first block of each stage only (the block with the projection skip),
  applied to the residual branch before the sum;
- ``shuffle``: AlphaPose's "shuffle" SE-ResNet: each stride-2 3×3 conv becomes a 2×2 pixel
  unshuffle (space to depth, 4× channels) then a stride-1 3×3 conv, ``conv2.1``.

AlphaPose builds its SE and shuffle variants only with bottleneck blocks (depth 50, 101, 152).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

STAGE_PLANES = (64, 128, 256, 512)
DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
BOTTLENECK_DEPTHS = (50, 101, 152)
# AlphaPose's deformable convolutions: SE-/ResNet blocks add ``conv2_offset``, the shuffle backbone's
# DCN wrapper ``conv2[.1].conv_offset`` (with the kernel in ``conv2[.1].conv``).
DCN_KEY = re.compile(r"(?:^|\.)conv2(?:_offset|\.(?:\d+\.)?conv_offset)\.(?:weight|bias)$")


@dataclass(frozen=True)
class Variant:
    """How one ResNet variant differs from torchvision's."""

    se: bool  # squeeze-excitation in the first block of each stage
    stride_at: str  # where a bottleneck's stride 2 happens: "conv2", "conv1" or "unshuffle"
    depths: tuple[int, ...]


VARIANTS = {
    "resnet": Variant(se=False, stride_at="conv2", depths=tuple(DEPTHS)),
    "resnet-caffe": Variant(se=False, stride_at="conv1", depths=BOTTLENECK_DEPTHS),
    "se-resnet": Variant(se=True, stride_at="conv2", depths=BOTTLENECK_DEPTHS),
    "shuffle": Variant(se=True, stride_at="unshuffle", depths=BOTTLENECK_DEPTHS),
}


def check_option(owner: str, name: str, value: object, choices: Iterable[object]) -> None:
    """Refuses an option value outside ``choices`` with a one-line ``ValueError`` naming the option."""
    allowed = tuple(choices)
    if isinstance(value, bool) or not isinstance(value, (int, str)) or value not in allowed:
        raise ValueError(f"{owner} option {name} must be one of {', '.join(map(str, allowed))}, not {value!r}")


def check_keypoints(owner: str, num_keypoints: object) -> None:
    """Refuses a heatmap count that is not a positive integer."""
    if isinstance(num_keypoints, bool) or not isinstance(num_keypoints, int) or num_keypoints < 1:
        raise ValueError(f"{owner} needs a positive integer number of keypoints, not {num_keypoints!r}")


def uses_deformable_conv(keys: Iterable[str]) -> bool:
    """Whether a state dict (its keys) holds AlphaPose's deformable convolutions (DCN configs)."""
    return any(DCN_KEY.search(key) for key in keys)


def projection(cin: int, cout: int, stride: int) -> nn.Sequential:
    """The 1×1 conv + BN skip (``downsample.0/1``) of a block that changes width or resolution."""
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class SqueezeExcite(nn.Module):
    """Channel gates from the global mean: Linear(C, C), ReLU, Linear(C, C), sigmoid (``fc.0``, ``fc.2``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(channels, channels), nn.ReLU(inplace=True),
                                nn.Linear(channels, channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x.mean((2, 3)))[:, :, None, None]


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN layers (the first strided) and a skip, ReLU after the sum (ResNet-18/34)."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = projection(cin, planes, stride) if stride != 1 or cin != planes else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3, 1×1 expand (×4), each with BN, optional SE, then the skip and ReLU."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, stride_at: str = "conv2", se: bool = False) -> None:
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 1, stride if stride_at == "conv1" else 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        if stride > 1 and stride_at == "unshuffle":
            self.conv2: nn.Module = nn.Sequential(nn.PixelUnshuffle(stride),
                                                  nn.Conv2d(planes * stride**2, planes, 3, 1, 1, bias=False))
        else:
            self.conv2 = nn.Conv2d(planes, planes, 3, stride if stride_at == "conv2" else 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.se = SqueezeExcite(cout) if se else None
        self.relu = nn.ReLU(inplace=True)
        self.downsample = projection(cin, cout, stride) if stride != 1 or cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.se is not None:
            out = self.se(out)
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


def make_stage(cin: int, planes: int, blocks: int, stride: int, depth: int, kind: Variant) -> nn.Sequential:
    """One stage: a first block that may stride, project and squeeze-excite, then ``blocks - 1`` plain ones."""
    if depth not in BOTTLENECK_DEPTHS:
        return nn.Sequential(BasicBlock(cin, planes, stride), *(BasicBlock(planes, planes) for _ in range(blocks - 1)))
    cout = planes * Bottleneck.expansion
    return nn.Sequential(Bottleneck(cin, planes, stride, kind.stride_at, se=kind.se),
                         *(Bottleneck(cout, planes, stride_at=kind.stride_at) for _ in range(blocks - 1)))


class ResNet(nn.Module):
    """The ResNet-``depth`` feature extractor: crop (N, 3, H, W) → features (N, out_channels, H/32, W/32)."""

    def __init__(self, depth: int = 50, variant: str = "resnet") -> None:
        super().__init__()
        check_option("ResNet", "variant", variant, VARIANTS)
        kind = VARIANTS[variant]
        check_option(f"{variant} backbone", "depth", depth, kind.depths)
        expansion = Bottleneck.expansion if depth in BOTTLENECK_DEPTHS else BasicBlock.expansion
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        for stage, (planes, blocks) in enumerate(zip(STAGE_PLANES, DEPTHS[depth]), start=1):
            setattr(self, f"layer{stage}", make_stage(cin, planes, blocks, 1 if stage == 1 else 2, depth, kind))
            cin = planes * expansion
        self.out_channels = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))
