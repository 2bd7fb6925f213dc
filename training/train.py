"""The RMPE training recipe on CPU: SPPE first, then STN + SPPE with the frozen parallel SPPE.

Phase 1 trains the stacked hourglass (intermediate supervision on every stack) with θ held at the
identity. Phase 2 copies the SPPE into a frozen *parallel SPPE* and trains the STN too: the
parallel SPPE sees the STN's output and is compared with the centre-located pose (where the
keypoints would be in the ground-truth box's crop), which pushes the STN to centre the person
(DESIGN §1.2). Proposals come from PGPG (§1.4). Training is bounded by wall-clock minutes.
"""

from __future__ import annotations

import copy
import math
import queue
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from rmpe.export.checkpoint import save_checkpoint
from rmpe.export.config import ModelConfig
from rmpe.export.graph import PoseGraph, compose_affine, crop_transform, spatial_softmax
from rmpe.export.stn import apply_affine, invert_affine, stn_points
from rmpe.runtime.keypoints import flip_permutation
from rmpe.training.pgpg import PGPG
from rmpe.training.samples import Augment, Batch, PersonSet, make_batch


@dataclass
class TrainConfig:
    data: Path
    out: Path
    pgpg: Path | None = None
    model: ModelConfig = field(default_factory=ModelConfig)
    batch: int = 8
    minutes: float = 55.0
    max_steps: int = 0  # 0: until the time is up
    lr: float = 4e-3
    warmup_steps: int = 100
    stn_fraction: float = 0.1  # share of the time spent in phase 2
    stn_lr_scale: float = 0.1
    parallel_weight: float = 1.0
    parallel_samples: int = 8  # the parallel SPPE sees this many of each batch (it costs a second SPPE pass)
    sigma: float = 1.0  # target Gaussian, in heatmap cells
    softmax_mse_weight: float = 0.1  # softmax models: weight of the MSE term on the rescaled probabilities
    seed: int = 0
    device: str = "cpu"  # torch device for the networks ("cuda" where one is available)
    precision: str = "auto"  # SPPE compute: "bf16" autocast, "fp32", or "auto" (bf16 where the CPU has native bf16)
    save_minutes: float = 5.0
    reference_step_s: float = 0.0  # seconds per step of the run that made the bundled model, for the forecast (0: none)
    resume: bool = False
    progress: bool = True
    augment: Augment = field(default_factory=Augment)


def heatmap_targets(points: torch.Tensor, visible: torch.Tensor, size: tuple[int, int], sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussians at (N, K, 2) normalised points on an (h, w) heatmap, and per-keypoint weights.

    Cell (i, j) has its centre at ((j + 0.5)·2/w − 1, (i + 0.5)·2/h − 1) as in the graph's decode;
    keypoints that are unlabelled or outside the crop get weight 0.
    """
    h, w = size
    cx = (points[..., 0] + 1) * (w / 2)
    cy = (points[..., 1] + 1) * (h / 2)
    xs = torch.arange(w, dtype=torch.float32, device=points.device) + 0.5
    ys = torch.arange(h, dtype=torch.float32, device=points.device) + 0.5
    gx = torch.exp(-((xs - cx.unsqueeze(-1)) ** 2) / (2 * sigma**2))
    gy = torch.exp(-((ys - cy.unsqueeze(-1)) ** 2) / (2 * sigma**2))
    targets = gy.unsqueeze(-1) * gx.unsqueeze(-2)
    inside = (cx >= 0) & (cx < w) & (cy >= 0) & (cy < h)
    return targets, (visible & inside).float()


FOREGROUND_WEIGHT = 10.0


def weighted_mse(heatmaps: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mean squared heatmap error over labelled keypoints, pixels near the keypoint weighted up.

    Plain MSE is small for an all-zero heatmap, which a freshly started network sits on for a long
    time; weighting the Gaussian's pixels (1 + 10·target) gets it off that plateau within minutes.
    """
    per_keypoint = ((heatmaps - targets).square() * (1 + FOREGROUND_WEIGHT * targets)).mean(dim=(2, 3))
    return 1000 * (per_keypoint * weights).sum() / weights.sum().clamp(min=1)


def softmax_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """KL divergence from the normalised target Gaussian to the spatial softmax of the logits.

    Unlike MSE, its gradient (softmax − target) is as large for a fresh network as for a trained
    one, so there is no all-zero plateau to leave; it is 0 when the logits match the target.
    """
    n, k = logits.shape[:2]
    log_p = torch.log_softmax(logits.reshape(n, k, -1), dim=2)
    t = targets.reshape(n, k, -1)
    t = t / t.sum(dim=2, keepdim=True).clamp(min=1e-12)
    per_keypoint = (t * (torch.log(t.clamp(min=1e-12)) - log_p)).sum(dim=2)
    return (per_keypoint * weights).sum() / weights.sum().clamp(min=1)


PRECISIONS = ("auto", "bf16", "fp32")


def use_bf16(precision: str, device: torch.device) -> bool:
    """Whether to run the SPPE under bf16 autocast: asked for, or "auto" on a GPU or a CPU with native bf16.

    With native bf16 dot products (AVX512-BF16, AMX) a training step is about 30 % faster; the
    weights, optimiser state and losses stay fp32.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if precision == "auto":
        if device.type == "cuda":
            return torch.cuda.is_bf16_supported()
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return precision == "bf16"


def training_device(name: str) -> torch.device:
    """``name`` as a torch device; ValueError when it is malformed or not available here."""
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"bad device {name!r}: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r}: no CUDA GPU is visible to this torch ({torch.__version__})")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device {name!r}: training runs on cpu or cuda")
    return device


FORECAST_AFTER_S = 60.0  # seconds of a run after which its step rate is reported


def forecast_line(seconds_per_step: float, precision: str, minutes: float, steps: int, reference_step_s: float) -> str:
    """One line on what the budget buys on this machine, with a warning when steps are much slower than the reference's."""
    line = (f"rmpe-train: {seconds_per_step:.2f} s per step here ({precision}); "
            f"the {minutes:g}-minute budget makes about {steps:,} steps")
    if reference_step_s and seconds_per_step > 1.25 * reference_step_s:
        line += (f"; the bundled model trained at {reference_step_s:.2f} s per step, so this machine makes "
                 f"{seconds_per_step / reference_step_s:.1f}x fewer steps in the same time and the result scores "
                 "lower AP (docs/training.md, 'Why this architecture')")
    return line


def padded_float(images: torch.Tensor) -> torch.Tensor:
    """A batch's (N, H, W, 3) uint8 images, one per person, as (N, 3, H, W) float for :func:`bilinear_crops`."""
    return images.permute(0, 3, 1, 2).float()


def bilinear_crops(images: torch.Tensor, to_image: torch.Tensor, grid: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, 3, h, w) bilinear crops of each person's own image (zeros outside), crop point g ↦ ``to_image``·(g, 1).

    Training needs θ's gradient through the sampling, which the deploy graph's footprint taps
    (export/graph.py) do not have. This is the crop of an export with ``--crop-taps 0``
    (tests/test_graph.py checks the two agree) on GridSample, which trains a batch's crops in 6 ms
    where the graph's gathers take 14 ms (forward and backward, 8 people, 2 threads).
    """
    pixels = grid.unsqueeze(0) @ to_image[:, :, :2].transpose(1, 2) + to_image[:, :, 2].unsqueeze(1)
    norm = pixels * pixels.new_tensor([2.0 / images.shape[3], 2.0 / images.shape[2]]) - 1.0
    return F.grid_sample(images, norm.view(-1, size[0], size[1], 2), mode="bilinear", padding_mode="zeros",
                         align_corners=False)


def to_normalised(points: torch.Tensor, to_image: torch.Tensor) -> torch.Tensor:
    """Image pixels → normalised crop coordinates of the crop ``to_image`` describes."""
    return apply_affine(invert_affine(to_image), points)


class Trainer:
    """Holds the graph, optimiser, data and phase; ``run`` trains until the time or step budget ends."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.device = training_device(cfg.device)
        # a Gaussian model's decode blurs with the σ of its training targets
        model = replace(cfg.model, decode_blur=cfg.sigma) if cfg.model.heatmap == "gaussian" else cfg.model
        # channels-last convolutions run ~15 % faster on CPU at these small batches
        self.graph = PoseGraph(model).to(self.device, memory_format=torch.channels_last)
        self.data = PersonSet(cfg.data, progress=cfg.progress)
        self.pgpg = PGPG.load(str(cfg.pgpg)) if cfg.pgpg else None
        h, w = cfg.model.input_size
        self.aspect = w / h
        self.heatmap_size = (h // self.graph.sppe.stride, w // self.graph.sppe.stride)
        self.flip_perm = np.array(flip_permutation(cfg.model.num_keypoints, cfg.model.flip_pairs))
        self.optimiser = torch.optim.Adam(self.graph.sppe.parameters(), lr=cfg.lr, fused=True)
        self.parallel: torch.nn.Module | None = None
        self.bf16 = use_bf16(cfg.precision, self.device)
        self.step, self.elapsed = 0, 0.0
        cfg.out.mkdir(parents=True, exist_ok=True)
        if cfg.resume and (cfg.out / "last.pt").is_file():
            self.load_state(cfg.out / "last.pt")

    @property
    def budget_s(self) -> float:
        return self.cfg.minutes * 60

    def progress(self) -> float:
        """Share of the budget used: time, or steps when a step limit is set and comes first."""
        by_time = self.elapsed / self.budget_s
        return min(1.0, max(by_time, self.step / self.cfg.max_steps) if self.cfg.max_steps else by_time)

    def in_phase_two(self) -> bool:
        return self.graph.loc is not None and self.progress() >= 1 - self.cfg.stn_fraction

    def start_phase_two(self) -> None:
        """Freeze a copy of the SPPE as the parallel SPPE and let the STN learn."""
        self.parallel = copy.deepcopy(self.graph.sppe).eval()
        for p in self.parallel.parameters():
            p.requires_grad_(False)
        self.optimiser.add_param_group({"params": self.graph.loc.parameters(), "lr": self.cfg.lr * self.cfg.stn_lr_scale,
                                        "base_lr": self.cfg.lr * self.cfg.stn_lr_scale})

    def learning_rate_factor(self) -> float:
        """Linear warm-up, then cosine decay over the time budget."""
        warm = min(1.0, (self.step + 1) / self.cfg.warmup_steps)
        return warm * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * self.progress())))

    def heatmap_loss(self, output: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Gaussian models: weighted MSE. Softmax models: cross-entropy, plus weighted MSE between the
        probabilities × 2πσ² (a unit-peak Gaussian when they match the target) and the targets."""
        if not self.graph.softmax:
            return weighted_mse(output, targets, weights)
        loss = softmax_cross_entropy(output, targets, weights)
        if self.cfg.softmax_mse_weight:
            unit_peak = spatial_softmax(output) * (2 * math.pi * self.cfg.sigma**2)
            loss = loss + self.cfg.softmax_mse_weight * weighted_mse(unit_peak, targets, weights)
        return loss

    def run_sppe(self, sppe: torch.nn.Module, crops: torch.Tensor) -> list[torch.Tensor]:
        """Every stack's heatmaps in fp32, computed under bf16 autocast when enabled."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return [h.float() for h in sppe(crops)]

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """Main heatmap loss on every stack, plus the parallel SPPE loss in phase 2."""
        g = self.graph
        n = batch.boxes.shape[0]
        images = padded_float(batch.images)
        aspect, enlarge = self.aspect, g.config.box_enlarge
        to_crop = compose_affine(crop_transform(batch.boxes, aspect, enlarge), batch.augment)
        theta = g.run_sub(g.loc, g.normalise(bilinear_crops(images, to_crop, g.loc_grid, g.loc_size))) if self.parallel is not None else torch.eye(2, 3, device=self.device).expand(n, 2, 3)
        crops = g.normalise(bilinear_crops(images, compose_affine(to_crop, theta), g.grid, g.config.input_size))
        crops = crops.contiguous(memory_format=torch.channels_last)
        visible = batch.keypoints[..., 2] > 0
        in_output = stn_points(theta.detach(), to_normalised(batch.keypoints[..., :2], to_crop))
        targets, weights = heatmap_targets(in_output, visible, self.heatmap_size, self.cfg.sigma)
        stacks = self.run_sppe(g.sppe, crops)
        main = sum(self.heatmap_loss(h, targets, weights) for h in stacks) / len(stacks)
        parts = {"loss": main.item()}
        total = main
        if self.parallel is not None:
            m = self.cfg.parallel_samples
            to_gt = compose_affine(crop_transform(batch.gt_boxes[:m], aspect, enlarge), batch.augment[:m])
            centred, c_weights = heatmap_targets(to_normalised(batch.keypoints[:m, :, :2], to_gt), visible[:m], self.heatmap_size, self.cfg.sigma)
            parallel = self.heatmap_loss(self.run_sppe(self.parallel, crops[:m])[-1], centred, c_weights)
            total = total + self.cfg.parallel_weight * parallel
            parts["parallel"] = parallel.item()
        return total, parts

    def batches(self, stop: threading.Event) -> tuple["queue.Queue[Batch]", threading.Thread]:
        """Batches made on a background thread so image padding overlaps the network; set ``stop`` and join it."""
        out: queue.Queue[Batch] = queue.Queue(maxsize=3)
        rng = np.random.default_rng(self.rng.integers(1 << 62))

        def fill() -> None:
            while not stop.is_set():
                batch = make_batch(self.data, rng, self.cfg.batch, self.pgpg, self.cfg.augment, self.aspect, self.flip_perm)
                while not stop.is_set():
                    try:
                        out.put(batch, timeout=0.5)
                        break
                    except queue.Full:
                        continue

        thread = threading.Thread(target=fill, daemon=True)
        thread.start()
        return out, thread

    def run(self) -> list[float]:
        """Train until the budget is spent; returns the main loss of every step."""
        self.graph.train()
        stop = threading.Event()
        source, producer = self.batches(stop)
        losses: list[float] = []
        last_save = time.monotonic()
        start = time.monotonic() - self.elapsed
        bar = tqdm(total=int(self.budget_s), unit="s", desc="training", disable=not self.cfg.progress, initial=int(self.elapsed))
        run_start, run_first_step, forecast_due = time.monotonic(), self.step, True
        try:
            while self.progress() < 1.0:
                if self.parallel is None and self.in_phase_two():
                    self.start_phase_two()
                for group in self.optimiser.param_groups:
                    group["lr"] = group.get("base_lr", self.cfg.lr) * self.learning_rate_factor()
                total, parts = self.loss(source.get().to(self.device))
                self.optimiser.zero_grad(set_to_none=True)
                total.backward()
                self.optimiser.step()
                self.step += 1
                losses.append(parts["loss"])
                now = time.monotonic()
                bar.update(int(now - start) - bar.n)
                self.elapsed = now - start
                bar.set_postfix(step=self.step, **{k: f"{v:.3f}" for k, v in parts.items()})
                if forecast_due and now - run_start >= FORECAST_AFTER_S and self.cfg.max_steps == 0:
                    forecast_due = False
                    tqdm.write(self.forecast(now - run_start, self.step - run_first_step), file=sys.stderr)
                if now - last_save > self.cfg.save_minutes * 60:
                    self.save_state(self.cfg.out / "last.pt")
                    last_save = now
        finally:
            stop.set()
            producer.join()
            bar.close()
        self.save_state(self.cfg.out / "last.pt")
        return losses

    def forecast(self, seconds: float, steps: int) -> str:
        """The step rate of ``steps`` in ``seconds`` of this run, and the steps the whole budget will make at it."""
        per_step = seconds / max(1, steps)
        total = self.step + int((self.budget_s - self.elapsed) / per_step)
        return forecast_line(per_step, "bf16" if self.bf16 else "fp32", self.cfg.minutes, total, self.cfg.reference_step_s)

    def save_state(self, path: Path) -> None:
        """Everything needed to resume: weights, optimiser, step, time used, the parallel SPPE."""
        state = {"graph": self.graph.state_dict(), "optimiser": self.optimiser.state_dict(), "step": self.step,
                 "elapsed": self.elapsed, "parallel": None if self.parallel is None else self.parallel.state_dict()}
        torch.save(state, path.with_suffix(".tmp"))
        path.with_suffix(".tmp").replace(path)

    def load_state(self, path: Path) -> None:
        state = torch.load(path, map_location=self.device, weights_only=True)
        self.graph.load_state_dict(state["graph"])
        self.step, self.elapsed = state["step"], state["elapsed"]
        if state["parallel"] is not None:
            self.start_phase_two()
            self.parallel.load_state_dict(state["parallel"])
        self.optimiser.load_state_dict(state["optimiser"])

    def save_model(self, name: str = "model") -> Path:
        """The trained graph as rmpe's checkpoint format, marked trained."""
        self.graph.config = replace(self.graph.config, trained=True, train_steps=self.step, train_minutes=round(self.elapsed / 60, 1),
                                    notes=f"trained by rmpe-train for {self.step} steps ({self.elapsed / 60:.1f} min) on {self.cfg.data}")
        path = self.cfg.out / f"{name}.safetensors"
        save_checkpoint(copy.deepcopy(self.graph).cpu().eval(), path)
        return path
