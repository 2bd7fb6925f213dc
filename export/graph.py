"""The deploy graph: uint8 images + person boxes in, keypoints in image pixels + scores out.

Everything a deployment needs is in here so that the exported ONNX file is self-contained
(docs/onnx-contract.md): box enlargement, crop by affine sampling, STN, SPPE, heatmap decode,
SDTN and the inverse crop transform. Coordinates are continuous pixels with the origin at the
top-left corner of the image; normalised crop coordinates run from -1 to 1 across the crop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rmpe.export.config import ModelConfig
from rmpe.export.hourglass import StackedHourglass
from rmpe.export.stn import Localisation, apply_affine, sdtn_points
from rmpe.runtime.keypoints import flip_permutation


@dataclass
class StackedImages:
    """All images of a call as one tall image, each followed by one black row.

    Sampling every box from this single tensor needs no per-box copy of its image, and the black
    row between images makes reads past an image's bottom edge come out black, as for a lone image.
    """

    pixels: torch.Tensor  # (1, 3, B*(H+1), W) float
    height: torch.Tensor  # H, scalar tensor (dynamic in the exported graph)
    width: torch.Tensor  # W


def stack_images(images: torch.Tensor) -> StackedImages:
    """(B, H, W, 3) uint8 → :class:`StackedImages`."""
    b, h, w = images.shape[0], images.shape[1], images.shape[2]
    padded = F.pad(images.float(), (0, 0, 0, 0, 0, 1))  # one black row under each image
    tall = padded.reshape(1, b * (h + 1), w, 3).permute(0, 3, 1, 2)
    return StackedImages(tall, torch.as_tensor(h), torch.as_tensor(w))


def crop_transform(boxes: torch.Tensor, aspect: float, enlarge: float) -> torch.Tensor:
    """(N, 4) xyxy boxes → (N, 2, 3) affines from normalised crop coordinates to image pixels.

    The box centre is kept, the shorter side grown to ``aspect`` = width / height, then both × enlarge.
    """
    cx = (boxes[:, 0] + boxes[:, 2]) * 0.5
    cy = (boxes[:, 1] + boxes[:, 3]) * 0.5
    w = (boxes[:, 2] - boxes[:, 0]).clamp(min=1.0)
    h = (boxes[:, 3] - boxes[:, 1]).clamp(min=1.0)
    w, h = torch.maximum(w, h * aspect), torch.maximum(h, w / aspect)
    half_w, half_h = w * (enlarge / 2), h * (enlarge / 2)
    zero = torch.zeros_like(cx)
    return torch.stack([torch.stack([half_w, zero, cx], 1), torch.stack([zero, half_h, cy], 1)], 1)


def compose_affine(outer: torch.Tensor, inner: torch.Tensor) -> torch.Tensor:
    """(N, 2, 3) affines: x ↦ outer(inner(x))."""
    linear = outer[:, :, :2] @ inner[:, :, :2]
    shift = (outer[:, :, :2] @ inner[:, :, 2:])[:, :, 0] + outer[:, :, 2]
    return torch.cat([linear, shift.unsqueeze(2)], 2)


def base_grid(height: int, width: int, mirror: bool = False) -> torch.Tensor:
    """(height*width, 2) pixel centres of a height×width crop in normalised crop coordinates."""
    ys = (torch.arange(height, dtype=torch.float32) + 0.5) * (2.0 / height) - 1.0
    xs = (torch.arange(width, dtype=torch.float32) + 0.5) * (2.0 / width) - 1.0
    if mirror:
        xs = xs.flip(0)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], -1).reshape(-1, 2)


def sample_crops(
    images: StackedImages, box_image_index: torch.Tensor, to_image: torch.Tensor, grid: torch.Tensor, size: tuple[int, int]
) -> torch.Tensor:
    """Bilinearly sample (N, 3, h, w) crops: crop point g ↦ image pixel ``to_image``·(g, 1).

    One GridSample over the stacked images; the grid is a constant base grid times the per-box
    affine (a MatMul), not an AffineGrid op.
    """
    n = to_image.shape[0]
    pixels = grid.unsqueeze(0) @ to_image[:, :, :2].transpose(1, 2) + to_image[:, :, 2].unsqueeze(1)
    h_img = images.height.to(pixels.dtype)
    w_img = images.width.to(pixels.dtype)
    x = pixels[..., 0]
    y = torch.minimum(torch.maximum(pixels[..., 1], torch.full_like(h_img, -0.5)), h_img + 0.5)
    y = y + box_image_index.to(pixels.dtype).unsqueeze(1) * (h_img + 1)
    total_h = images.pixels.shape[2]
    norm = torch.stack([x * (2.0 / w_img) - 1.0, y * (2.0 / total_h) - 1.0], -1)
    norm = norm.reshape(1, n * size[0], size[1], 2)
    out = F.grid_sample(images.pixels, norm, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.reshape(3, n, size[0], size[1]).transpose(0, 1)


HEATMAP_KINDS = ("gaussian", "softmax")  # unit-peak Gaussians regressed by MSE, or logits under a spatial softmax
LOG_FLOOR = 1e-3  # heatmap values below this share of the peak count as this share (keeps the log finite)


def decode_heatmaps(heatmaps: torch.Tensor, score_map: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K, h, w) → keypoints (N, K, 2) in heatmap cells (centres at i + 0.5) and peak scores.

    Argmax, then on each axis the vertex of the parabola through the log heatmap at the peak and its
    two neighbours (exact for a Gaussian peak; a second-order step like DARK's, without the
    cross term), limited to half a cell; edge cells and flat or upward-curved peaks keep the cell centre.
    The score is the peak value, or ``score_map``'s value at the peak when one is given.
    """
    n, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, k, h * w)
    score, index = flat.max(dim=2, keepdim=True)
    position = index.to(heatmaps.dtype)
    y = torch.floor(position / w)  # float arithmetic: exact at heatmap sizes, no integer-division ops
    x = position - y * w
    floor = score.abs() * LOG_FLOOR + 1e-12

    def log_at(dx: int, dy: int) -> torch.Tensor:
        xx = (x + dx).clamp(0, w - 1)
        yy = (y + dy).clamp(0, h - 1)
        return torch.log(torch.maximum(flat.gather(2, (yy * w + xx).long()), floor))

    def vertex(before: torch.Tensor, peak: torch.Tensor, after: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
        curvature = 2 * peak - before - after
        usable = inside & (curvature > 1e-6)
        step = 0.5 * (after - before) / torch.where(usable, curvature, torch.ones_like(curvature))
        return torch.where(usable, step.clamp(-0.5, 0.5), torch.zeros_like(step))

    centre = log_at(0, 0)
    shift_x = vertex(log_at(-1, 0), centre, log_at(1, 0), (x > 0) & (x < w - 1))
    shift_y = vertex(log_at(0, -1), centre, log_at(0, 1), (y > 0) & (y < h - 1))
    xy = torch.cat([x + 0.5 + shift_x, y + 0.5 + shift_y], 2)
    if score_map is not None:
        score = score_map.reshape(n, k, h * w).gather(2, index)
    return xy, score[:, :, 0]


def blur_kernel(sigma: float, channels: int) -> torch.Tensor:
    """(channels, 1, k, k) normalised Gaussian kernel of ``sigma`` cells, k = 2·ceil(2σ) + 1, for a depthwise conv."""
    radius = max(1, math.ceil(2 * sigma))
    taps = torch.exp(-torch.arange(-radius, radius + 1, dtype=torch.float32) ** 2 / (2 * sigma**2))
    kernel = taps[:, None] * taps[None, :]
    return (kernel / kernel.sum()).expand(channels, 1, -1, -1).contiguous()


def blur_heatmaps(heatmaps: torch.Tensor, kernel: torch.Tensor, coverage: torch.Tensor) -> torch.Tensor:
    """Each heatmap convolved with ``kernel``, divided by the kernel mass inside the map (``coverage``).

    Smooths a regressed peak toward a Gaussian. The division makes the zero padding neutral: a
    constant map stays constant, so a negative background cannot pull the peak to the border.
    """
    blurred = F.conv2d(heatmaps, kernel.to(heatmaps.dtype), padding=kernel.shape[-1] // 2, groups=heatmaps.shape[1])
    return blurred / coverage.to(heatmaps.dtype)


def blur_coverage(kernel: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(1, 1, h, w): the share of ``kernel``'s mass that falls inside an h×w map at each cell."""
    ones = torch.ones(1, 1, *size)
    return F.conv2d(ones, kernel[:1], padding=kernel.shape[-1] // 2)


def spatial_softmax(logits: torch.Tensor) -> torch.Tensor:
    """(N, K, h, w) logits → per-keypoint probability maps over the h·w cells."""
    n, k, h, w = logits.shape
    return torch.softmax(logits.reshape(n, k, h * w), dim=2).reshape(n, k, h, w)


def neighbourhood_mass(probabilities: torch.Tensor) -> torch.Tensor:
    """Each cell's probability summed with its 8 neighbours: a softmax model's 0…1 keypoint confidence."""
    return F.avg_pool2d(probabilities, 3, stride=1, padding=1, count_include_pad=True) * 9


class PoseGraph(nn.Module):
    """STN + stacked hourglass wrapped with crop, decode and SDTN (see the module docstring)."""

    def __init__(self, config: ModelConfig, flip_test: bool = False) -> None:
        super().__init__()
        self.config = config
        self.flip_test = flip_test
        h, w = config.input_size
        if config.heatmap not in HEATMAP_KINDS:
            raise ValueError(f"unknown heatmap kind {config.heatmap!r}; choose from {', '.join(HEATMAP_KINDS)}")
        self.sppe = StackedHourglass(config.stacks, config.channels, config.num_keypoints, config.depth, config.stem)
        multiple = self.sppe.input_multiple()
        if h % multiple or w % multiple:
            raise ValueError(f"input size {h}x{w} must be a multiple of {multiple} for depth {config.depth}")
        self.loc = Localisation(config.stn_channels) if config.stn else None
        self.loc_size = (max(1, round(h * config.stn_input_scale)), max(1, round(w * config.stn_input_scale)))
        self.register_buffer("grid", base_grid(h, w), persistent=False)
        self.register_buffer("grid_mirror", base_grid(h, w, mirror=True), persistent=False)
        self.register_buffer("loc_grid", base_grid(*self.loc_size), persistent=False)
        self.register_buffer("mean", torch.tensor(config.mean).view(1, 3, 1, 1) / config.pixel_scale, persistent=False)
        self.register_buffer("inv_std", config.pixel_scale / torch.tensor(config.std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("flip_perm", torch.tensor(flip_permutation(config.num_keypoints, config.flip_pairs)), persistent=False)
        blurs = not self.softmax and config.decode_blur > 0
        kernel = blur_kernel(config.decode_blur, config.num_keypoints) if blurs else None
        coverage = blur_coverage(kernel, (h // self.sppe.stride, w // self.sppe.stride)) if blurs else None
        self.register_buffer("blur", kernel, persistent=False)
        self.register_buffer("blur_coverage", coverage, persistent=False)
        self.register_buffer("reverse_w", torch.arange(w // self.sppe.stride - 1, -1, -1), persistent=False)

    def normalise(self, crops: torch.Tensor) -> torch.Tensor:
        """Raw 0..255 pixels → network input, per the config's scale, mean and std."""
        return (crops - self.mean) * self.inv_std

    def predict_theta(self, images: StackedImages, box_image_index: torch.Tensor, to_image: torch.Tensor) -> torch.Tensor:
        """The STN's θ per box (identity when the model has no STN)."""
        if self.loc is None:
            eye = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], device=to_image.device)
            return eye.expand(to_image.shape[0], 2, 3)
        crops = self.normalise(sample_crops(images, box_image_index, to_image, self.loc_grid, self.loc_size))
        return self.run_sub(self.loc, crops)

    def run_sub(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Run a sub-network in its own precision; results come back in fp32."""
        dtype = next(module.parameters()).dtype
        out = module(x.to(dtype))
        return [o.float() for o in out] if isinstance(out, list) else out.float()

    def sppe_inputs(self, images: StackedImages, box_image_index: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Crop transform, θ and the STN-warped SPPE input for each box."""
        h, w = self.config.input_size
        to_crop = crop_transform(boxes, w / h, self.config.box_enlarge)
        theta = self.predict_theta(images, box_image_index, to_crop)
        warped = compose_affine(to_crop, theta)
        crops = self.normalise(sample_crops(images, box_image_index, warped, self.grid, (h, w)))
        return to_crop, theta, crops

    @property
    def softmax(self) -> bool:
        """Whether the hourglass outputs logits for a spatial softmax (else unit-peak Gaussian heatmaps)."""
        return self.config.heatmap == "softmax"

    def last_heatmaps(self, crops: torch.Tensor) -> torch.Tensor:
        """The last stack's heatmaps; a softmax model's logits become probability maps."""
        heatmaps = self.run_sub(self.sppe, crops)[-1]
        return spatial_softmax(heatmaps) if self.softmax else heatmaps

    def heatmaps_with_flip(self, images: StackedImages, box_image_index: torch.Tensor, warped: torch.Tensor, crops: torch.Tensor) -> torch.Tensor:
        """Last-stack heatmaps, averaged with the mirrored crop's when flip test is on."""
        heatmaps = self.last_heatmaps(crops)
        if not self.flip_test:
            return heatmaps
        mirrored = self.normalise(sample_crops(images, box_image_index, warped, self.grid_mirror, self.config.input_size))
        flipped = self.last_heatmaps(mirrored)
        flipped = flipped.index_select(3, self.reverse_w).index_select(1, self.flip_perm)
        return (heatmaps + flipped) * 0.5

    def decode(self, heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keypoints in heatmap cells and their scores (see :func:`decode_heatmaps`).

        A softmax model scores by the mass near the peak. A Gaussian model with ``decode_blur`` finds
        the peak on the blurred heatmaps (DARK's modulation: a regressed peak is rarely an exact
        Gaussian, its blur is closer to one; +0.006 AP on the default model) and scores it by the raw
        peak value, which ranks people better than the blurred one.
        """
        if self.softmax:
            return decode_heatmaps(heatmaps, neighbourhood_mass(heatmaps))
        if self.blur is None:
            return decode_heatmaps(heatmaps)
        cells, _ = decode_heatmaps(blur_heatmaps(heatmaps, self.blur, self.blur_coverage))
        return cells, heatmaps.flatten(2).amax(dim=2)

    def forward(self, images: torch.Tensor, boxes: torch.Tensor, box_image_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B,H,W,3) uint8, boxes (N,4) xyxy, box_image_index (N,) → keypoints (N,K,2), scores (N,K)."""
        stacked = stack_images(images)
        h, w = self.config.input_size
        to_crop, theta, crops = self.sppe_inputs(stacked, box_image_index, boxes)
        heatmaps = self.heatmaps_with_flip(stacked, box_image_index, compose_affine(to_crop, theta), crops)
        cells, scores = self.decode(heatmaps)
        hm_h, hm_w = heatmaps.shape[2], heatmaps.shape[3]
        scale = torch.tensor([2.0 / hm_w, 2.0 / hm_h], device=cells.device)
        in_stn_output = cells * scale - 1.0
        keypoints = apply_affine(to_crop, sdtn_points(theta, in_stn_output))
        return keypoints, scores
