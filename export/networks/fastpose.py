"""AlphaPose's FastPose networks: a ResNet backbone under ``preact.`` and a pixel-shuffle upsampling head.

- ``FastPose``: SE-ResNet, then PixelShuffle(2) and two DUC units (3×3 conv, BN, ReLU, PixelShuffle(2):
  ``duc1.conv/bn``, ``duc2.conv/bn``), then a 3×3 ``conv_out`` with bias (MODEL_ZOO: FastPose
  SE-ResNet-50, COCO 17 and Halpe 26).
- ``FastPoseDUC`` (AlphaPose's FastPose_DUC): a shuffle, SE- or plain ResNet, then three stages
  ``duc1..3``, each PixelShuffle(2) at index 0 followed by conv-BN-ReLU triples (``ducN.1/2``,
  ``ducN.4/5``, …), then ``conv_out`` (MODEL_ZOO: the res50 "shuffle" and SE-ResNet-152 models).

Both give heatmaps at a quarter of the input size: the backbone's 1/32 upsampled three times ×2.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from rmpe.export.networks.resnet import BOTTLENECK_DEPTHS, ResNet, check_keypoints, check_option

CONV_DIMS = (128, 256)  # FastPose's CONV_DIM: channels into conv_out
DUC_BACKBONES = ("shuffle", "se-resnet", "resnet")  # FastPose_DUC's BACKBONE
DUC_WIDTHS = ((2048, 1024), (1024, 512), (512, 256))  # FastPose_DUC's stages: (channels in, out)


def conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    """A bias-free 3×3 convolution, batch norm and ReLU: the head's unit."""
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class DUC(nn.Module):
    """Dense upsampling convolution: 3×3 conv, BN, ReLU, then PixelShuffle(2) (channels / 4, size × 2)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv, self.bn, self.relu = conv_bn_relu(cin, cout)
        self.pixel_shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pixel_shuffle(self.relu(self.bn(self.conv(x))))


def duc_stage(cin: int, cout: int, convs: int) -> nn.Sequential:
    """PixelShuffle(2), then ``convs - 1`` width-keeping conv-BN-ReLU triples and one to ``cout``."""
    width = cin // 4
    layers: list[nn.Module] = [nn.PixelShuffle(2)]
    for _ in range(convs - 1):
        layers += conv_bn_relu(width, width)
    return nn.Sequential(*layers, *conv_bn_relu(width, cout))


class FastPose(nn.Module):
    """FastPose: SE-ResNet-``depth`` + PixelShuffle/DUC head; crop (N, 3, H, W) → heatmaps (N, K, H/4, W/4)."""

    stride = 4
    input_multiple = 32  # the backbone's 1/32 must upsample back to exactly a quarter

    def __init__(self, num_keypoints: int, *, depth: int = 50, conv_dim: int = 128) -> None:
        super().__init__()
        check_keypoints("FastPose", num_keypoints)
        check_option("FastPose", "depth", depth, BOTTLENECK_DEPTHS)
        check_option("FastPose", "conv_dim", conv_dim, CONV_DIMS)
        self.preact = ResNet(depth, "se-resnet")
        self.shuffle = nn.PixelShuffle(2)
        self.duc1 = DUC(512, 1024)
        self.duc2 = DUC(256, 4 * conv_dim)
        self.conv_out = nn.Conv2d(conv_dim, num_keypoints, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.duc2(self.duc1(self.shuffle(self.preact(x)))))


class FastPoseDUC(nn.Module):
    """FastPose_DUC: a ``backbone`` ResNet-``depth`` + three DUC stages; crop → heatmaps (N, K, H/4, W/4)."""

    stride = 4
    input_multiple = 32

    def __init__(self, num_keypoints: int, *, depth: int = 50, backbone: str = "shuffle",
                 duc_convs: Sequence[int] = (4, 2, 1)) -> None:
        super().__init__()
        check_keypoints("FastPose-DUC", num_keypoints)
        check_option("FastPose-DUC", "depth", depth, BOTTLENECK_DEPTHS)
        check_option("FastPose-DUC", "backbone", backbone, DUC_BACKBONES)
        if (not isinstance(duc_convs, Sequence) or len(duc_convs) != len(DUC_WIDTHS)
                or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in duc_convs)):
            raise ValueError("FastPose-DUC option duc_convs must be three convolution counts >= 1 "
                             f"(STAGE1..3.NUM_CONV), not {duc_convs!r}")
        self.preact = ResNet(depth, backbone)
        self.duc1, self.duc2, self.duc3 = (duc_stage(cin, cout, n) for (cin, cout), n in zip(DUC_WIDTHS, duc_convs))
        self.conv_out = nn.Conv2d(DUC_WIDTHS[-1][1], num_keypoints, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.duc3(self.duc2(self.duc1(self.preact(x)))))
