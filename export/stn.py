"""Spatial transformer (STN) and its inverse (SDTN), DESIGN §1.2.

θ is a 2×3 affine in normalised crop coordinates ([-1, 1] on both axes): the STN output at
target point t shows the crop at source point s = θ·(t, 1). The SDTN maps a keypoint found at t in
the STN output back to the crop by applying θ; :func:`stn_points` is its inverse, using
γ = [θ1 θ2]⁻¹ and γ3 = −γ·θ3 (the 2×2 inverse is written out, as ONNX has no Inverse op).
"""

from __future__ import annotations

import torch
from torch import nn


class Localisation(nn.Module):
    """Small CNN that looks at a crop and predicts θ, initialised to the identity."""

    def __init__(self, channels: int = 32) -> None:
        super().__init__()
        c = channels
        self.body = nn.Sequential(
            nn.Conv2d(3, c, 5, 2, 2), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 3, 2, 1), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
            nn.Conv2d(c, 2 * c, 3, 2, 1), nn.BatchNorm2d(2 * c), nn.ReLU(inplace=True),
            nn.Conv2d(2 * c, 2 * c, 3, 2, 1), nn.BatchNorm2d(2 * c), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.theta = nn.Linear(2 * c, 6)
        nn.init.zeros_(self.theta.weight)
        with torch.no_grad():
            self.theta.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]))

    def forward(self, crop: torch.Tensor) -> torch.Tensor:
        """(N, 3, h, w) crop → (N, 2, 3) θ."""
        return self.theta(self.body(crop)).view(-1, 2, 3)


def apply_affine(theta: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Map (N, P, 2) points through (N, 2, 3) affines: θ·(x, y, 1)."""
    return points @ theta[:, :, :2].transpose(1, 2) + theta[:, :, 2].unsqueeze(1)


def invert_affine(theta: torch.Tensor) -> torch.Tensor:
    """γ for θ: [γ1 γ2] = [θ1 θ2]⁻¹, γ3 = −[γ1 γ2]·θ3, with the 2×2 inverse written out."""
    a, b, tx = theta[:, 0, 0], theta[:, 0, 1], theta[:, 0, 2]
    c, d, ty = theta[:, 1, 0], theta[:, 1, 1], theta[:, 1, 2]
    det = a * d - b * c
    ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det
    row0 = torch.stack([ia, ib, -(ia * tx + ib * ty)], dim=1)
    row1 = torch.stack([ic, id_, -(ic * tx + id_ * ty)], dim=1)
    return torch.stack([row0, row1], dim=1)


def sdtn_points(theta: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """SDTN: keypoints in the STN output (normalised) → the same points in the crop."""
    return apply_affine(theta, points)


def stn_points(theta: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Where crop points (normalised) appear in the STN output; SDTN(STN(p)) = p."""
    return apply_affine(invert_affine(theta), points)
