"""The stacked hourglass SPPE (Newell et al. 2016) as DESIGN §1.1 describes it.

Pre-activation bottleneck residuals, a recursive encoder-decoder with nearest-neighbour upsampling
and element-wise addition, and intermediate supervision: every stack predicts heatmaps.
"""

from __future__ import annotations

import torch
from torch import nn


class ConvBNReLU(nn.Sequential):
    """Convolution, then batch norm and ReLU (the stem and the per-stack head)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class Residual(nn.Module):
    """Pre-activation bottleneck: BN-ReLU-1x1(C/2), BN-ReLU-3x3(C/2), BN-ReLU-1x1(C), plus skip."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        mid = cout // 2
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, mid, 1)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, padding=1)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, cout, 1)
        self.relu = nn.ReLU(inplace=True)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.relu(self.bn1(x)))
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        return out + (x if self.skip is None else self.skip(x))


class Hourglass(nn.Module):
    """One encoder-decoder level; ``depth`` levels nest through ``inner``."""

    def __init__(self, depth: int, channels: int) -> None:
        super().__init__()
        self.skip = Residual(channels, channels)
        self.pool = nn.MaxPool2d(2, 2)
        self.down = Residual(channels, channels)
        self.inner = Hourglass(depth - 1, channels) if depth > 1 else Residual(channels, channels)
        self.up = Residual(channels, channels)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = self.up(self.inner(self.down(self.pool(x))))
        return self.skip(x) + self.upsample(low)


STEMS = ("residual", "conv", "bearpaw")


def make_stem(kind: str, channels: int) -> nn.Sequential:
    """The layers from the RGB crop to ``channels`` features at 1/4 resolution."""
    if kind == "residual":
        return nn.Sequential(ConvBNReLU(3, 64, 7, stride=2), Residual(64, 128), nn.MaxPool2d(2, 2),
                             Residual(128, 128), Residual(128, channels))
    if kind == "bearpaw":  # bearpaw/pytorch-pose: the second residual already widens to ``channels``
        return nn.Sequential(ConvBNReLU(3, 64, 7, stride=2), Residual(64, 128), nn.MaxPool2d(2, 2),
                             Residual(128, channels), Residual(channels, channels))
    if kind == "conv":
        return nn.Sequential(ConvBNReLU(3, 32, 3, stride=2), ConvBNReLU(32, channels, 3, stride=2), Residual(channels, channels))
    raise ValueError(f"unknown stem {kind!r}; choose from {', '.join(STEMS)}")


class StackedHourglass(nn.Module):
    """Stem to 1/4 resolution, ``stacks`` hourglasses, heatmaps from each stack.

    ``stem="residual"`` is the paper's (7×7 conv, residual at 1/2 resolution, pool, two residuals);
    ``stem="bearpaw"`` is bearpaw/pytorch-pose's, which widens to ``channels`` one residual earlier;
    ``stem="conv"`` is two stride-2 3×3 convs and one residual, about a third of the paper stem's cost
    at small crops, which is what lets the default model train in an hour on a CPU.

    ``forward`` returns a list with every stack's heatmaps (N, K, H/4, W/4) in training mode and
    only the last stack's in eval mode, which is what deployment needs.
    """

    stride = 4

    def __init__(self, stacks: int = 2, channels: int = 256, num_keypoints: int = 17, depth: int = 4,
                 stem: str = "residual") -> None:
        super().__init__()
        self.stacks, self.depth = stacks, depth
        self.stem = make_stem(stem, channels)
        self.hourglasses = nn.ModuleList(Hourglass(depth, channels) for _ in range(stacks))
        self.features = nn.ModuleList(
            nn.Sequential(Residual(channels, channels), ConvBNReLU(channels, channels, 1)) for _ in range(stacks)
        )
        self.heads = nn.ModuleList(nn.Conv2d(channels, num_keypoints, 1) for _ in range(stacks))
        self.remap_features = nn.ModuleList(nn.Conv2d(channels, channels, 1) for _ in range(stacks - 1))
        self.remap_heatmaps = nn.ModuleList(nn.Conv2d(num_keypoints, channels, 1) for _ in range(stacks - 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        heatmaps = []
        for s in range(self.stacks):
            features = self.features[s](self.hourglasses[s](x))
            heatmaps.append(self.heads[s](features))
            if s < self.stacks - 1:
                x = x + self.remap_features[s](features) + self.remap_heatmaps[s](heatmaps[-1])
        return heatmaps if self.training else heatmaps[-1:]

    @property
    def input_multiple(self) -> int:
        """Input sides must be multiples of this (stride 4, then ``depth`` halvings)."""
        return self.stride * 2**self.depth
