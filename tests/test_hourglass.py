"""The stacked hourglass matches DESIGN §1.1: published size, per-stack heatmaps, any input shape."""

import pytest
import torch

from rmpe.export.networks.hourglass import StackedHourglass


def live_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_eight_stack_parameter_count_matches_published() -> None:
    model = StackedHourglass(stacks=8, channels=256, num_keypoints=16, depth=4)
    assert live_parameters(model) == pytest.approx(25.4e6, rel=0.01)


def test_every_stack_predicts_heatmaps_in_training_mode() -> None:
    model = StackedHourglass(stacks=3, channels=32, num_keypoints=17, depth=4).train()
    heatmaps = model(torch.randn(2, 3, 256, 192))
    assert len(heatmaps) == 3
    assert all(h.shape == (2, 17, 64, 48) for h in heatmaps)
    heatmaps[0].sum().backward()  # intermediate supervision reaches the stem
    assert model.stem[0][0].weight.grad is not None


def test_eval_mode_returns_only_the_last_stack() -> None:
    model = StackedHourglass(stacks=2, channels=32, num_keypoints=16, depth=3).eval()
    with torch.no_grad():
        heatmaps = model(torch.randn(1, 3, 128, 96))
    assert len(heatmaps) == 1 and heatmaps[0].shape == (1, 16, 32, 24)


def test_same_width_residuals_have_identity_skip() -> None:
    model = StackedHourglass(stacks=1, channels=64, depth=2)
    assert model.hourglasses[0].skip.skip is None
    assert model.stem[1].skip is not None  # 64 → 128 needs a 1×1 projection


def test_conv_stem_reaches_quarter_resolution_with_fewer_operations() -> None:
    paper = StackedHourglass(stacks=2, channels=96, depth=3, stem="residual").eval()
    light = StackedHourglass(stacks=2, channels=96, depth=3, stem="conv").eval()
    with torch.no_grad():
        assert light(torch.randn(1, 3, 128, 96))[0].shape == (1, 17, 32, 24)
    assert live_parameters(light.stem) < live_parameters(paper.stem) / 2


def test_unknown_stem_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown stem"):
        StackedHourglass(stem="vit")
