"""SimpleBaseline (Xiao et al. 2018, "Simple Baselines for Human Pose Estimation and Tracking").

A ResNet backbone under ``preact.`` (AlphaPose's SimplePose names it so; microsoft's PoseResNet
keeps the same modules at the top level), three stride-2 4×4 transposed convolutions with BN and
ReLU (``deconv_layers.0/1``, ``.3/4``, ``.6/7``, 256 channels, no bias), and a 1×1 ``final_layer``.
"""

from __future__ import annotations

import torch
from torch import nn

from rmpe.export.networks.resnet import VARIANTS, ResNet, check_keypoints, check_option

DECONV_CHANNELS = 256
STYLES = {"pytorch": "resnet", "caffe": "resnet-caffe"}  # microsoft's MODEL.STYLE → backbone variant


def deconv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    """A bias-free 4×4 stride-2 transposed convolution (size × 2), batch norm and ReLU."""
    return [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SimpleBaseline(nn.Module):
    """PoseResNet-``depth``: crop (N, 3, H, W) → heatmaps (N, K, H/4, W/4)."""

    stride = 4
    input_multiple = 32  # the backbone's 1/32 must upsample back to exactly a quarter

    def __init__(self, num_keypoints: int, *, depth: int = 50, style: str = "pytorch") -> None:
        super().__init__()
        check_keypoints("SimpleBaseline", num_keypoints)
        check_option("SimpleBaseline", "style", style, STYLES)
        check_option("SimpleBaseline", "depth", depth, VARIANTS[STYLES[style]].depths)
        self.preact = ResNet(depth, STYLES[style])
        self.deconv_layers = nn.Sequential(*deconv_bn_relu(self.preact.out_channels, DECONV_CHANNELS),
                                           *deconv_bn_relu(DECONV_CHANNELS, DECONV_CHANNELS),
                                           *deconv_bn_relu(DECONV_CHANNELS, DECONV_CHANNELS))
        self.final_layer = nn.Conv2d(DECONV_CHANNELS, num_keypoints, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_layer(self.deconv_layers(self.preact(x)))
