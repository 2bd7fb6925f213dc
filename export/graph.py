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

from rmpe.export.config import CROP_TAPS, ModelConfig
from rmpe.export.networks import build_network
from rmpe.export.stn import Localisation, apply_affine, sdtn_points
from rmpe.runtime.keypoints import flip_permutation


@dataclass
class ImageBatch:
    """The images of one call as a pixel table: crops are gathered from it, so only the pixels a
    crop needs are read and converted (a whole-image cast, transpose or pad would cost as much as
    the network on a 4K frame)."""

    table: torch.Tensor  # (B*H*W, 3) pixels, uint8 (or float where a backend wants no uint8 ops)
    height: torch.Tensor  # H of the padded tensor, scalar (dynamic in the exported graph)
    width: torch.Tensor  # W
    sizes: torch.Tensor  # (B, 2) float (height, width) of each image's own pixels, at most (H, W)


def image_batch(images: torch.Tensor, sizes: torch.Tensor | None = None, cast_first: bool = False) -> ImageBatch:
    """(B, H, W, 3) uint8 images (+ their (B, 2) real sizes; default the full tensor) → :class:`ImageBatch`."""
    pixels = images.float() if cast_first else images  # cast first: TensorRT reshapes no uint8, nor takes its shape
    h, w = torch.as_tensor(pixels.shape[1]), torch.as_tensor(pixels.shape[2])
    limit = torch.stack([h, w]).to(torch.float32)
    if sizes is None:
        sizes = limit.expand(pixels.shape[0], 2)
    sizes = torch.minimum(torch.maximum(sizes.to(torch.float32), torch.zeros_like(limit)), limit)
    table = pixels.reshape(-1, 3)
    return ImageBatch(table, h, w, sizes)


def clip_boxes(boxes: torch.Tensor, box_image_index: torch.Tensor, images: ImageBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Clip boxes to their image; (clipped boxes, safe image index, valid).

    A row is invalid when its index is outside [0, B), a coordinate is NaN, or the clipped box is
    under 1 px on a side (for example a box wholly outside its image). Invalid rows get a harmless
    stand-in box so that no NaN or out-of-range index reaches the sampler; the caller blanks their outputs.
    """
    count = images.sizes.shape[0]
    index = box_image_index.to(torch.int64)
    in_range = (index >= 0) & (index < count)
    index = torch.where(in_range, index, torch.zeros_like(index))
    size = images.sizes.index_select(0, index)  # (N, 2) height, width
    limit = torch.stack([size[:, 1], size[:, 0], size[:, 1], size[:, 0]], 1)
    clipped = torch.minimum(torch.maximum(boxes, torch.zeros_like(limit)), limit)
    valid = in_range & ((clipped[:, 2] - clipped[:, 0]) >= 1) & ((clipped[:, 3] - clipped[:, 1]) >= 1)
    stand_in = torch.tensor([0.0, 0.0, 1.0, 1.0]).expand_as(clipped)
    return torch.where(valid.unsqueeze(1), clipped, stand_in), index, valid


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


def centre_on_integers(to_image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The crop affine of a source whose pixel i is centred on i (OpenCV's warpAffine: AlphaPose,
    HRNet): its crop pixel j samples its image point c + (j − side/2)·box/side, which in rmpe's
    coordinates (pixel i covers [i, i+1)) moves every sample by 0.5 − (box/2)/side pixels."""
    h, w = size
    half = torch.stack([to_image[:, 0, 0] / w, to_image[:, 1, 1] / h], 1)  # half a crop pixel, in image pixels
    return torch.cat([to_image[:, :, :2], (to_image[:, :, 2] + 0.5 - half).unsqueeze(2)], 2)


def compose_affine(outer: torch.Tensor, inner: torch.Tensor) -> torch.Tensor:
    """(N, 2, 3) affines: x ↦ outer(inner(x))."""
    linear = outer[:, :, :2] @ inner[:, :, :2]
    shift = (outer[:, :, :2] @ inner[:, :, 2:])[:, :, 0] + outer[:, :, 2]
    return torch.cat([linear, shift.unsqueeze(2)], 2)


def base_grid(height: int, width: int) -> torch.Tensor:
    """(height*width, 2) pixel centres of a height×width crop in normalised crop coordinates."""
    ys = (torch.arange(height, dtype=torch.float32) + 0.5) * (2.0 / height) - 1.0
    xs = (torch.arange(width, dtype=torch.float32) + 0.5) * (2.0 / width) - 1.0
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], -1).reshape(-1, 2)


def tap_pattern(taps: int) -> torch.Tensor:
    """(taps², 2) sample points in a unit square centred on 0: one per cell of a taps×taps grid and,
    within that, one per row and per column of the taps²×taps² grid (a multi-jittered pattern, its
    fine offsets in cell (a, b) a shift of a + b and a + 2b rather than the diagonal a, b).

    Each axis is then resolved to 1/taps² instead of the 1/taps of a plain grid, for the same
    number of samples: finer sub-pixel positions where a crop pixel covers one image pixel, and
    edges at any angle filtered more evenly where it covers many. On three photos upscaled ×4 the
    keypoints moved half as far as with a plain 3×3 grid (BENCHMARKS.md, "Large people").
    """
    i = torch.arange(taps * taps)
    a, b = i // taps, i % taps
    column, row = a * taps + (a + b) % taps, b * taps + (a + 2 * b) % taps
    return (torch.stack([column, row], 1).to(torch.float32) + 0.5) / (taps * taps) - 0.5


def footprint_taps(to_image: torch.Tensor, size: tuple[int, int], taps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x and y offsets (N, taps²) in image pixels of each crop pixel's samples, spread over the
    pixel's footprint, at least one image pixel wide (:func:`tap_pattern`).

    Averaging point samples over a footprint one image pixel wide approximates bilinear
    interpolation, so a person no larger than the crop is sampled about as by a bilinear crop; a
    larger person is box-filtered over each crop pixel's footprint instead of aliasing (keypoints
    of a 4× upscaled photo moved by up to 136 px with a plain bilinear crop).
    """
    h, w = size
    step = to_image[:, :, :2] * torch.tensor([2.0 / w, 2.0 / h])  # (N, 2, 2): columns are px per crop pixel
    length = step.norm(dim=1, keepdim=True)  # (N, 1, 2)
    widen = torch.maximum(length, torch.ones_like(length)) / torch.maximum(length, torch.full_like(length, 1e-6))
    offsets = (tap_pattern(taps).unsqueeze(0) * widen) @ step.transpose(1, 2)  # (N, taps², 2)
    return offsets[:, :, 0], offsets[:, :, 1]


def pixel_indices(images: ImageBatch, image_index: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of the pixel table for whole-pixel columns x and rows y (N, ..., P) of each box's image,
    clamped to that image's own pixels (never the padding), and whether each was inside it."""
    size = images.sizes.index_select(0, image_index).view(-1, 1, 1, 2)
    last = torch.maximum(size - 1, torch.zeros_like(size))
    col = torch.minimum(torch.maximum(x, torch.zeros_like(x)), last[..., 1])
    row = torch.minimum(torch.maximum(y, torch.zeros_like(y)), last[..., 0])
    inside = (col == x) & (row == y)  # clamping left it where it was
    first = (image_index.view(-1, 1, 1) * images.height).to(torch.int32)  # the image's first row among all rows
    pixel = (first + row.to(torch.int32)) * images.width.to(torch.int32) + col.to(torch.int32)  # int32: < 2³¹ pixels
    return pixel, inside


def gather_average(images: ImageBatch, image_index: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean over axis 1 of the pixels under image points x, y (N, T, P) (nearest) → (N, 3, P) float.

    Pixels outside an image's own size count as black (0), as past the edge of a lone image: the
    mean of the taps (read clamped to the image's edge) is scaled by the share of taps inside, which is exact
    except in the band of crop pixels that straddle the edge. Masking each tap and channel instead
    costs a third of the whole crop in ONNX Runtime (a broadcast over 3 channels innermost).
    """
    t, p = x.shape[1], x.shape[2]
    pixel, inside = pixel_indices(images, image_index, torch.floor(x), torch.floor(y))
    values = images.table.index_select(0, pixel.reshape(-1)).reshape(-1, t, p, 3).to(x.dtype)
    return (values.mean(1) * inside.to(x.dtype).mean(1).unsqueeze(2)).transpose(1, 2)


def gather_bilinear(images: ImageBatch, image_index: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Bilinear samples at image points x, y (N, P) → (N, 3, P) float, black outside each image.

    The four neighbours are gathered as one (N, 4, P) set and moved channels-first before they are
    weighted, so the weights broadcast over whole rows rather than over 3 channels innermost.
    """
    p = x.shape[1]
    u, v = x - 0.5, y - 0.5  # pixel centres sit at i + 0.5
    x0, y0 = torch.floor(u), torch.floor(v)
    fx, fy = (u - x0).unsqueeze(1), (v - y0).unsqueeze(1)
    cols = torch.stack([x0, x0 + 1, x0, x0 + 1], 1)  # (N, 4, P)
    rows = torch.stack([y0, y0, y0 + 1, y0 + 1], 1)
    weights = torch.cat([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], 1)
    pixel, inside = pixel_indices(images, image_index, cols, rows)
    values = images.table.index_select(0, pixel.reshape(-1)).reshape(-1, 4, p, 3).permute(0, 3, 1, 2).to(x.dtype)
    return (values * (weights * inside.to(x.dtype)).unsqueeze(1)).sum(2)


def sample_crops(images: ImageBatch, image_index: torch.Tensor, to_image: torch.Tensor, grid: torch.Tensor,
                 size: tuple[int, int], taps: int) -> torch.Tensor:
    """(N, 3, h, w) crops: crop point g ↦ image pixel ``to_image``·(g, 1), anti-aliased by
    :func:`footprint_taps`, or one exact bilinear sample per crop pixel when ``taps`` is 0.

    The grid is a constant base grid times the per-box affine (a MatMul), not an AffineGrid op, and
    the pixels are gathered from the images' pixel table, not read by a GridSample over whole images.
    """
    centres = grid.unsqueeze(0) @ to_image[:, :, :2].transpose(1, 2) + to_image[:, :, 2].unsqueeze(1)  # (N, P, 2)
    if taps == 0:
        return gather_bilinear(images, image_index, centres[:, :, 0], centres[:, :, 1]).reshape(-1, 3, size[0], size[1])
    dx, dy = footprint_taps(to_image, size, taps)
    x = centres[:, :, 0].unsqueeze(1) + dx.unsqueeze(2)  # (N, T, P)
    y = centres[:, :, 1].unsqueeze(1) + dy.unsqueeze(2)
    return gather_average(images, image_index, x, y).reshape(-1, 3, size[0], size[1])


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
    flat = heatmaps.reshape(-1, k, h * w)  # -1 for N: an ONNX Reshape cannot infer any other dimension of an empty tensor
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
        score = score_map.reshape(-1, k, h * w).gather(2, index)
    return xy, score[:, :, 0]


def decode_quarter_offset(heatmaps: torch.Tensor, margin: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K, h, w) → keypoints (N, K, 2) in heatmap cells and raw peak scores, as AlphaPose and
    HRNet decode: the argmax cell (cell i centred on i), moved 0.25 cell toward the larger
    neighbour on each axis where the peak keeps ``margin`` = (top/left, bottom/right) cells from
    the edges, and (0, 0) where the peak is not positive."""
    n, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(-1, k, h * w)
    score, index = flat.max(dim=2, keepdim=True)
    position = index.to(heatmaps.dtype)
    y = torch.floor(position / w)
    x = position - y * w

    def at(dx: int, dy: int) -> torch.Tensor:
        xx = (x + dx).clamp(0, w - 1)
        yy = (y + dy).clamp(0, h - 1)
        return flat.gather(2, (yy * w + xx).long())

    low, high = margin
    movable = ((x >= low) & (x <= w - 1 - high) & (y >= low) & (y <= h - 1 - high)).to(heatmaps.dtype)
    step_x = 0.25 * torch.sign(at(1, 0) - at(-1, 0)) * movable  # both steps read the neighbours of the argmax cell
    step_y = 0.25 * torch.sign(at(0, 1) - at(0, -1)) * movable
    x, y = x + step_x, y + step_y
    positive = (score > 0).to(heatmaps.dtype)
    return torch.cat([x, y], 2) * positive, score[:, :, 0]


def decode_bearpaw(heatmaps: torch.Tensor, margin: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K, h, w) → keypoints (N, K, 2) in heatmap cells (centres at i + 0.5) and peak scores, as
    bearpaw/pytorch-pose's final_preds: :func:`decode_quarter_offset`'s step (margin (1, 1) there),
    then the half cell of its ``coords += 0.5``; a peak that is not positive leaves cell -0.5 (its 1-based 0 + 0.5)."""
    cells, score = decode_quarter_offset(heatmaps, margin)
    offset = torch.where(score > 0, torch.full_like(score, 0.5), torch.full_like(score, -0.5))
    return cells + offset.unsqueeze(2), score


def decode_princeton(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K, h, w) → keypoints (N, K, 2) in heatmap cells (centres at i + 0.5) and scores, as
    princeton-vl/pytorch_stacked_hourglass's test.py and HeatmapParser: heatmaps capped at 1, cells
    that are not the maximum of their 3×3 neighbourhood set to 0, the argmax, then a quarter cell
    toward the neighbour only if it is strictly larger and otherwise away from it (neighbours past
    the edge read the edge cell) and the half cell; a peak that is not positive (a map below 0
    peaks at its first non-maximum, 0) stays at its cell's corner. The score is that peak."""
    n, k, h, w = heatmaps.shape
    capped = torch.minimum(heatmaps, torch.ones_like(heatmaps))
    local_max = F.max_pool2d(capped, 3, stride=1, padding=1) == capped
    score, index = torch.where(local_max, capped, torch.zeros_like(capped)).reshape(-1, k, h * w).max(dim=2, keepdim=True)
    flat = capped.reshape(-1, k, h * w)  # the neighbours are read before the 3×3 suppression
    position = index.to(heatmaps.dtype)
    y = torch.floor(position / w)
    x = position - y * w

    def at(dx: int, dy: int) -> torch.Tensor:
        xx = (x + dx).clamp(0, w - 1)
        yy = (y + dy).clamp(0, h - 1)
        return flat.gather(2, (yy * w + xx).long())

    positive = (score > 0).to(heatmaps.dtype)
    step_x = torch.where(at(1, 0) > at(-1, 0), torch.full_like(x, 0.75), torch.full_like(x, 0.25))
    step_y = torch.where(at(0, 1) > at(0, -1), torch.full_like(y, 0.75), torch.full_like(y, 0.25))
    return torch.cat([x + step_x * positive, y + step_y * positive], 2), score[:, :, 0]


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
    return torch.softmax(logits.reshape(-1, k, h * w), dim=2).reshape(-1, k, h, w)


def neighbourhood_mass(probabilities: torch.Tensor) -> torch.Tensor:
    """Each cell's probability summed with its 8 neighbours: a softmax model's 0…1 keypoint confidence."""
    return F.avg_pool2d(probabilities, 3, stride=1, padding=1, count_include_pad=True) * 9


class PoseGraph(nn.Module):
    """Crop, [STN], pose network, decode, [SDTN] and the inverse crop (see the module docstring).

    The pose network is any of export/networks (``config.arch``); the source's conventions
    (channel order, pixel centres, decode, flip shift) come from the config, so the same graph
    reproduces rmpe's own models and imported AlphaPose, HRNet or hourglass checkpoints.
    """

    def __init__(self, config: ModelConfig, flip_test: bool = False, crop_taps: int | None = None,
                 cast_first: bool = False, heatmaps_output: bool = False) -> None:
        super().__init__()
        self.config = config
        self.flip_test = flip_test
        self.crop_taps = config.crop_taps if crop_taps is None else crop_taps  # samples per crop pixel per axis (footprint_taps)
        self.cast_first = cast_first  # cast the whole image to float before gathering (for TensorRT, which has no uint8 Gather)
        self.heatmaps_output = heatmaps_output  # also return the network's raw heatmaps (to compare with the source framework)
        h, w = config.input_size
        if config.heatmap not in HEATMAP_KINDS:
            raise ValueError(f"unknown heatmap kind {config.heatmap!r}; choose from {', '.join(HEATMAP_KINDS)}")
        self.sppe = build_network(config.arch, config.num_keypoints, config.network_options)
        multiple = self.sppe.input_multiple
        if h % multiple or w % multiple:
            raise ValueError(f"input size {h}x{w} must be a multiple of {multiple} for this {config.arch}")
        self.loc = Localisation(config.stn_channels) if config.stn else None
        self.loc_size = (max(1, round(h * config.stn_input_scale)), max(1, round(w * config.stn_input_scale)))
        self.register_buffer("grid", base_grid(h, w), persistent=False)
        self.register_buffer("loc_grid", base_grid(*self.loc_size), persistent=False)
        self.register_buffer("mean", torch.tensor(config.mean).view(1, 3, 1, 1) / config.pixel_scale, persistent=False)
        self.register_buffer("inv_std", config.pixel_scale / torch.tensor(config.std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("channels", torch.tensor([2, 1, 0] if config.channel_order == "bgr" else [0, 1, 2]), persistent=False)
        self.register_buffer("flip_perm", torch.tensor(flip_permutation(config.num_keypoints, config.flip_pairs)), persistent=False)
        hm_size = (h // self.sppe.stride, w // self.sppe.stride)
        self.heatmap_size = hm_size  # (h, w) of the network's heatmaps
        blurs = config.decode == "log_parabola" and not self.softmax and config.decode_blur > 0
        kernel = blur_kernel(config.decode_blur, config.num_keypoints) if blurs else None
        coverage = blur_coverage(kernel, hm_size) if blurs else None
        self.register_buffer("blur", kernel, persistent=False)
        self.register_buffer("blur_coverage", coverage, persistent=False)
        self.register_buffer("unflip_w", flip_columns(hm_size[1], config.flip_shift), persistent=False)
        self.register_buffer("reverse_crop_w", torch.arange(w - 1, -1, -1), persistent=False)

    def normalise(self, crops: torch.Tensor) -> torch.Tensor:
        """Raw 0..255 RGB pixels → network input, per the config's channel order, scale, mean and std."""
        if self.config.channel_order != "rgb":
            crops = crops.index_select(1, self.channels)
        return (crops - self.mean) * self.inv_std

    def predict_theta(self, images: ImageBatch, box_image_index: torch.Tensor, to_image: torch.Tensor) -> torch.Tensor:
        """The STN's θ per box (identity when the model has no STN)."""
        if self.loc is None:
            eye = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], device=to_image.device)
            return eye.expand(to_image.shape[0], 2, 3)
        crops = self.normalise(sample_crops(images, box_image_index, to_image, self.loc_grid, self.loc_size, self.crop_taps))
        return self.run_sub(self.loc, crops)

    def run_sub(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Run a sub-network in its own precision; results come back in fp32."""
        dtype = next(module.parameters()).dtype
        out = module(x.to(dtype))
        return [o.float() for o in out] if isinstance(out, list) else out.float()

    def sppe_inputs(self, images: ImageBatch, box_image_index: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Crop transform, θ and the STN-warped SPPE input for each box."""
        h, w = self.config.input_size
        to_crop = crop_transform(boxes, w / h, self.config.box_enlarge)
        if self.config.pixel_centres == "integer":
            to_crop = centre_on_integers(to_crop, (h, w))
        theta = self.predict_theta(images, box_image_index, to_crop)
        warped = compose_affine(to_crop, theta)
        crops = self.normalise(sample_crops(images, box_image_index, warped, self.grid, (h, w), self.crop_taps))
        return to_crop, theta, crops

    @property
    def softmax(self) -> bool:
        """Whether the network outputs logits for a spatial softmax (else heatmaps with a peak per keypoint)."""
        return self.config.heatmap == "softmax"

    def network_heatmaps(self, crops: torch.Tensor) -> torch.Tensor:
        """The network's raw heatmaps in fp32 (a stacked hourglass's last stack)."""
        out = self.run_sub(self.sppe, crops)
        return out[-1] if isinstance(out, list) else out

    def heatmaps_with_flip(self, raw: torch.Tensor, crops: torch.Tensor) -> torch.Tensor:
        """The heatmaps to decode: ``raw`` (a softmax model's as probabilities), averaged with the
        mirrored crop's, mirrored back, pairs swapped and shifted by ``flip_shift``, when flip test is on."""
        heatmaps = spatial_softmax(raw) if self.softmax else raw
        if not self.flip_test:
            return heatmaps
        flipped = self.network_heatmaps(crops.index_select(3, self.reverse_crop_w))
        flipped = spatial_softmax(flipped) if self.softmax else flipped
        flipped = flipped.index_select(3, self.unflip_w).index_select(1, self.flip_perm)
        return (heatmaps + flipped) * 0.5

    def decode(self, heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keypoints in heatmap cells and their scores (see :func:`decode_heatmaps`).

        ``quarter_offset`` decodes as AlphaPose and HRNet do (:func:`decode_quarter_offset`). A
        softmax model scores by the mass near the peak. A Gaussian model with ``decode_blur`` finds
        the peak on the blurred heatmaps (DARK's modulation: a regressed peak is rarely an exact
        Gaussian, its blur is closer to one; +0.006 AP on the default model) and scores it by the raw
        peak value, which ranks people better than the blurred one.
        """
        if self.config.decode == "quarter_offset":
            return decode_quarter_offset(heatmaps, self.config.quarter_margin)
        if self.config.decode == "bearpaw":
            return decode_bearpaw(heatmaps, self.config.quarter_margin)
        if self.config.decode == "princeton":
            return decode_princeton(heatmaps)
        if self.softmax:
            return decode_heatmaps(heatmaps, neighbourhood_mass(heatmaps))
        if self.blur is None:
            return decode_heatmaps(heatmaps)
        cells, _ = decode_heatmaps(blur_heatmaps(heatmaps, self.blur, self.blur_coverage))
        return cells, heatmaps.amax(dim=(2, 3))

    def cells_to_crop(self, cells: torch.Tensor, heatmap_size: tuple[int, int]) -> torch.Tensor:
        """Decoded heatmap coordinates → normalised crop coordinates, in the config's pixel convention."""
        hm_h, hm_w = heatmap_size
        scale = torch.tensor([2.0 / hm_w, 2.0 / hm_h], device=cells.device)
        normalised = cells * scale - 1.0
        if self.config.pixel_centres == "integer":  # cell u sits on crop pixel u·stride, centred on it
            h, w = self.config.input_size
            normalised = normalised + torch.tensor([1.0 / w, 1.0 / h], device=cells.device)
        return normalised

    def forward(self, images: torch.Tensor, image_sizes: torch.Tensor, boxes: torch.Tensor,
                box_image_index: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """images (B,H,W,3) uint8, image_sizes (B,2) (height, width), boxes (N,4) xyxy, box_image_index (N,)
        → keypoints (N,K,2) image pixels, scores (N,K) [, the network's raw heatmaps (N,K,h,w)]; rows
        of invalid boxes (see :func:`clip_boxes`) come out as NaN keypoints with score 0."""
        batch = image_batch(images, image_sizes, self.cast_first)
        boxes, index, valid = clip_boxes(boxes, box_image_index, batch)
        to_crop, theta, crops = self.sppe_inputs(batch, index, boxes)
        raw = self.network_heatmaps(crops)
        heatmaps = self.heatmaps_with_flip(raw, crops)
        cells, scores = self.decode(heatmaps)
        in_stn_output = self.cells_to_crop(cells, (heatmaps.shape[2], heatmaps.shape[3]))
        keypoints = apply_affine(to_crop, sdtn_points(theta, in_stn_output))
        if self.config.pixel_centres == "integer":  # the source's own numbers, as its training labels were read
            keypoints = keypoints - 0.5
        keep = valid.view(-1, 1, 1)
        keypoints = torch.where(keep, keypoints, torch.full_like(keypoints, float("nan")))
        scores = torch.where(keep[:, :, 0], scores, torch.zeros_like(scores))
        return (keypoints, scores, raw) if self.heatmaps_output else (keypoints, scores)


def flip_columns(width: int, shift: int) -> torch.Tensor:
    """Column indices that mirror a heatmap back and move it ``shift`` columns right, the first
    columns repeating (AlphaPose and HRNet shift by one: their crops' mirror axis sits half a pixel
    off the heatmap's)."""
    mirrored = torch.arange(width - 1, -1, -1)
    source = (torch.arange(width) - shift).clamp(min=0)
    return mirrored.index_select(0, source)
