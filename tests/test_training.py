"""Training smoke tests: targets land on keypoints, the loss goes down, phase 2 trains the STN, resume works,
the step forecast warns on a slow machine."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from rmpe.export.checkpoint import load_graph
from rmpe.export.config import ModelConfig
from rmpe.training.synth import write_dataset
from rmpe.training.train import (TrainConfig, Trainer, forecast_line, heatmap_targets, softmax_cross_entropy,
                                 training_device, use_bf16)
from rmpe.training.train_cli import comparable_bundled

TINY = ModelConfig(name="tiny", stacks=2, channels=32, stn_channels=8, input_size=(64, 64))


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    write_dataset(str(root), 6, seed=5, progress=False)
    return root


def config(data: Path, out: Path, **kw: object) -> TrainConfig:
    base = TrainConfig(data=data, out=out, model=TINY, batch=8, minutes=10_000, max_steps=12, warmup_steps=1, progress=False)
    return replace(base, **kw)


def test_targets_peak_at_the_keypoint_cell() -> None:
    points = torch.tensor([[[-1 + 2 * 5.5 / 24, -1 + 2 * 10.5 / 32], [2.0, 0.0]]])  # cell (5, 10); one outside
    targets, weights = heatmap_targets(points, torch.tensor([[True, True]]), (32, 24), sigma=1.0)
    assert targets.shape == (1, 2, 32, 24)
    assert divmod(int(targets[0, 0].argmax()), 24) == (10, 5) and targets[0, 0].max() == pytest.approx(1.0)
    assert weights.tolist() == [[1.0, 0.0]]


def test_cross_entropy_is_zero_at_the_target_and_ignores_unweighted_keypoints() -> None:
    points = torch.tensor([[[0.1, -0.2], [0.5, 0.5]]])
    targets, weights = heatmap_targets(points, torch.tensor([[True, False]]), (32, 24), sigma=1.0)
    at_target = torch.log(targets.clamp(min=1e-30))
    assert softmax_cross_entropy(at_target, targets, weights) == pytest.approx(0.0, abs=1e-4)
    assert softmax_cross_entropy(torch.zeros_like(targets), targets, weights) > 1.0
    shifted = at_target.clone()
    shifted[0, 1] = 0.0  # the unlabelled keypoint's map does not count
    assert softmax_cross_entropy(shifted, targets, weights) == pytest.approx(0.0, abs=1e-4)


def test_softmax_loss_with_its_mse_term_is_near_zero_at_the_target(tiny_data: Path, tmp_path: Path) -> None:
    trainer = Trainer(config(tiny_data, tmp_path, model=replace(TINY, heatmap="softmax"), softmax_mse_weight=0.1))
    points = torch.tensor([[[0.1, -0.2], [-0.4, 0.3]]])
    targets, weights = heatmap_targets(points, torch.tensor([[True, True]]), (32, 24), sigma=1.0)
    at_target = torch.log(targets.clamp(min=1e-30))
    assert trainer.heatmap_loss(at_target, targets, weights) < 0.05  # probabilities × 2πσ² ≈ the unit-peak target
    assert trainer.heatmap_loss(torch.zeros_like(targets), targets, weights) > 1.0


@pytest.mark.parametrize("heatmap, precision", [("gaussian", "fp32"), ("gaussian", "bf16"), ("softmax", "auto")])
def test_loss_goes_down(tiny_data: Path, tmp_path: Path, heatmap: str, precision: str) -> None:
    torch.set_num_threads(2)
    # cross-entropy falls more slowly than the MSE's first drop off the all-zero plateau, so give it longer
    steps, lr, ratio = (20, 2e-3, 0.5) if heatmap == "gaussian" else (30, 5e-3, 0.9)
    trainer = Trainer(config(tiny_data, tmp_path, stn_fraction=0.0, max_steps=steps, lr=lr, precision=precision,
                             model=replace(TINY, heatmap=heatmap)))
    losses = trainer.run()
    assert len(losses) == steps
    assert np.mean(losses[-4:]) < ratio * np.mean(losses[:4])
    assert all(p.dtype == torch.float32 for p in trainer.graph.parameters())  # autocast leaves the weights fp32


def test_precision_and_device_choices() -> None:
    cpu = torch.device("cpu")
    assert use_bf16("bf16", cpu) and not use_bf16("fp32", cpu)
    assert use_bf16("auto", cpu) == torch.ops.mkldnn._is_mkldnn_bf16_supported()
    with pytest.raises(ValueError, match="fp16"):
        use_bf16("fp16", cpu)
    assert training_device("cpu") == cpu
    with pytest.raises(ValueError, match="bad device"):
        training_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            training_device("cuda")


def test_phase_two_trains_the_stn_against_the_parallel_sppe(tiny_data: Path, tmp_path: Path) -> None:
    trainer = Trainer(config(tiny_data, tmp_path, stn_fraction=0.5, max_steps=6))
    before = trainer.graph.loc.theta.bias.detach().clone()
    trainer.run()
    assert trainer.parallel is not None
    assert not all(p.requires_grad for p in trainer.parallel.parameters())
    assert not torch.equal(before, trainer.graph.loc.theta.bias.detach())


def test_resume_continues_and_model_exports(tiny_data: Path, tmp_path: Path) -> None:
    Trainer(config(tiny_data, tmp_path, max_steps=3, stn_fraction=0.5)).run()
    resumed = Trainer(config(tiny_data, tmp_path, max_steps=5, stn_fraction=0.5, resume=True))
    assert resumed.step == 3
    resumed.run()
    assert resumed.step == 5
    path = resumed.save_model()
    graph, sha = load_graph(path)
    assert graph.config.trained and graph.config.input_size == (64, 64) and len(sha) == 64
    assert graph.config.train_steps == 5 and graph.config.train_minutes >= 0


def test_forecast_extrapolates_the_rate_and_warns_when_slower_than_the_bundled_run(tiny_data: Path, tmp_path: Path) -> None:
    trainer = Trainer(config(tiny_data, tmp_path, minutes=10, reference_step_s=0.15))
    trainer.step, trainer.elapsed = 100, 60.0  # 100 steps in the first minute
    line = trainer.forecast(60.0, 100)
    assert "0.60 s per step" in line and "about 1,000 steps" in line and "4.0x fewer steps" in line
    assert "fewer" not in forecast_line(0.16, "bf16", 55, 20_600, 0.15)
    assert "fewer" not in forecast_line(0.5, "fp32", 55, 6_600, 0.0)


def test_bundled_reference_only_for_the_same_architecture_and_batch() -> None:
    default = ModelConfig()
    bundled = ModelConfig.load(Path(__file__).parents[1] / "rmpe/models/default.json")
    assert comparable_bundled(default, 8).train_step_seconds == pytest.approx(bundled.train_minutes * 60 / bundled.train_steps)
    assert 0.1 < comparable_bundled(default, 8).train_step_seconds < 0.2
    assert comparable_bundled(replace(default, channels=96), 8) is None
    assert comparable_bundled(default, 4) is None
