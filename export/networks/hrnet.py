"""HRNet for top-down pose (Sun et al. 2019, "Deep High-Resolution Representation Learning").

A stride-4 stem and a stage of bottlenecks, then three stages that keep 2, 3 and 4 parallel
branches (widths w, 2w, 4w, 8w at 1/4 … 1/32 resolution), each stage a chain of high-resolution
modules whose fuse layers exchange information between every pair of branches; a 1×1 convolution
turns the highest-resolution branch into heatmaps. The structure is that of the public COCO
configs (W32 and W48); module names follow the pose_hrnet checkpoints of
leoxiaobin/deep-high-resolution-net.pytorch, which AlphaPose's PoseHighResolutionNet shares, so
both load without renaming.
"""

from __future__ import annotations

import torch
from torch import nn

WIDTHS = (32, 48)
BLOCKS_PER_BRANCH = 4
MODULES_PER_STAGE = (1, 4, 3)  # stages 2, 3 and 4, with 2, 3 and 4 branches


def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, relu: bool = True) -> nn.Sequential:
    """Bias-free convolution and batch norm, optionally ReLU: transition and fuse layers' unit."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN layers and an identity skip, ReLU after the sum (every branch's block)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + x)


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3, 1×1 expand (×4), each with BN; a 1×1 projection skip when widths differ."""

    expansion = 4

    def __init__(self, cin: int, planes: int) -> None:
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = conv_bn(cin, cout, 1, relu=False) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


def fuse_unit(widths: list[int], source: int, target: int) -> nn.Module:
    """Brings branch ``source`` to branch ``target``'s width and resolution."""
    if source == target:
        return nn.Identity()
    if source > target:  # coarser: 1×1 conv to the target width, then nearest upsampling
        up = conv_bn(widths[source], widths[target], 1, relu=False)
        up.append(nn.Upsample(scale_factor=2 ** (source - target), mode="nearest"))
        return up
    steps = target - source  # finer: stride-2 3×3 convs, the last one to the target width, no ReLU
    return nn.Sequential(*(
        conv_bn(widths[source], widths[target] if k == steps - 1 else widths[source], 3, 2, relu=k < steps - 1)
        for k in range(steps)
    ))


class HighResolutionModule(nn.Module):
    """Basic blocks on every branch, then each output branch sums every branch brought to it."""

    def __init__(self, widths: list[int], multi_scale_output: bool = True) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(*(BasicBlock(w) for _ in range(BLOCKS_PER_BRANCH))) for w in widths
        )
        outputs = range(len(widths)) if multi_scale_output else range(1)
        self.fuse_layers = nn.ModuleList(
            nn.ModuleList(fuse_unit(widths, j, i) for j in range(len(widths))) for i in outputs
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        fused = []
        for row in self.fuse_layers:
            y = row[0](xs[0])
            for unit, x in zip(row[1:], xs[1:]):
                y = y + unit(x)
            fused.append(self.relu(y))
        return fused


def make_transition(cin: list[int], cout: list[int]) -> nn.ModuleList:
    """Adapts a stage's branches to the next: width changes by 3×3 conv, a new branch from the coarsest."""
    units: list[nn.Module] = []
    for i, width in enumerate(cout):
        if i < len(cin):
            units.append(nn.Identity() if cin[i] == width else conv_bn(cin[i], width, 3))
        else:
            units.append(nn.Sequential(conv_bn(cin[-1], width, 3, 2)))
    return nn.ModuleList(units)


class HRNet(nn.Module):
    """HRNet-W``width`` (32 or 48): normalised crop (N, 3, H, W) → raw heatmaps (N, K, H/4, W/4)."""

    stride = 4
    input_multiple = 32  # the coarsest branch is at 1/32 and must upsample back exactly

    def __init__(self, num_keypoints: int, width: int = 32) -> None:
        super().__init__()
        if width not in WIDTHS:
            raise ValueError(f"HRNet width must be one of {', '.join(map(str, WIDTHS))}, not {width}")
        self.conv1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 64, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(Bottleneck(64, 64), *(Bottleneck(256, 64) for _ in range(3)))
        widths = [256]
        for stage, modules in enumerate(MODULES_PER_STAGE, start=2):
            branches = [width * 2**b for b in range(stage)]
            last = stage == len(MODULES_PER_STAGE) + 1
            setattr(self, f"transition{stage - 1}", make_transition(widths, branches))
            setattr(self, f"stage{stage}", nn.Sequential(*(  # the network's last module keeps one branch
                HighResolutionModule(branches, multi_scale_output=not (last and m == modules - 1))
                for m in range(modules)
            )))
            widths = branches
        self.final_layer = nn.Conv2d(width, num_keypoints, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        xs = [self.layer1(self.relu(self.bn2(self.conv2(x))))]
        for transition, stage in ((self.transition1, self.stage2), (self.transition2, self.stage3),
                                  (self.transition3, self.stage4)):
            inputs = xs + xs[-1:] * (len(transition) - len(xs))  # a new branch grows from the coarsest
            xs = stage([unit(branch) for unit, branch in zip(transition, inputs)])
        return self.final_layer(xs[0])
