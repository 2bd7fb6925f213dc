"""The pose networks the deploy graph can hold: one plain model definition per file, named here.

Every network takes a normalised crop (N, 3, H, W) and returns heatmaps (N, K, H/stride, W/stride)
(our stacked hourglass returns a list, one per stack; the graph uses the last). Each class has a
``stride`` (heatmap cells per input pixel, 4 for all of them) and an ``input_multiple`` (the crop
sides must be multiples of it). Its module names are those of the checkpoints it loads, so a
source's state dict needs at most a prefix changed (export/sources.py).
"""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

Builder = Callable[[int, dict[str, Any]], nn.Module]  # (num_keypoints, arch options) → network


def _hourglass(num_keypoints: int, options: dict[str, Any]) -> nn.Module:
    from rmpe.export.networks.hourglass import StackedHourglass

    return StackedHourglass(num_keypoints=num_keypoints, **options)


def _hrnet(num_keypoints: int, options: dict[str, Any]) -> nn.Module:
    from rmpe.export.networks.hrnet import HRNet

    return HRNet(num_keypoints=num_keypoints, **options)


def _fastpose(num_keypoints: int, options: dict[str, Any]) -> nn.Module:
    from rmpe.export.networks.fastpose import FastPose

    return FastPose(num_keypoints, **options)


def _fastpose_duc(num_keypoints: int, options: dict[str, Any]) -> nn.Module:
    from rmpe.export.networks.fastpose import FastPoseDUC

    return FastPoseDUC(num_keypoints, **options)


def _simplebaseline(num_keypoints: int, options: dict[str, Any]) -> nn.Module:
    from rmpe.export.networks.simplebaseline import SimpleBaseline

    return SimpleBaseline(num_keypoints, **options)


ARCHITECTURES: dict[str, Builder] = {
    "hourglass": _hourglass,
    "hrnet": _hrnet,
    "fastpose": _fastpose,
    "fastpose-duc": _fastpose_duc,
    "simplebaseline": _simplebaseline,
}


def build_network(arch: str, num_keypoints: int, options: dict[str, Any]) -> nn.Module:
    """The network ``arch`` for ``num_keypoints`` heatmaps; unknown names and options raise ``ValueError``."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose from {', '.join(ARCHITECTURES)}")
    try:
        return ARCHITECTURES[arch](num_keypoints, dict(options))
    except TypeError as exc:
        raise ValueError(f"architecture {arch}: {exc}") from None
