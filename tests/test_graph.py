"""The deploy graph's geometry: box to crop, decode, and the whole chain back to image pixels."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rmpe.export.config import ModelConfig
from rmpe.export.graph import (PoseGraph, base_grid, crop_transform, decode_heatmaps, image_batch, neighbourhood_mass,
                               sample_crops, spatial_softmax, tap_pattern)


class BrightSpot(nn.Module):
    """Stand-in SPPE whose every heatmap peaks on the brightest 4×4 cell of its input."""

    def __init__(self, num_keypoints: int) -> None:
        super().__init__()
        self.k = num_keypoints
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [F.avg_pool2d(x[:, :1], 4).repeat(1, self.k, 1, 1) + self.dummy]


def full(images: torch.Tensor) -> torch.Tensor:
    """``image_sizes`` for images that fill their tensor."""
    return torch.tensor([list(images.shape[1:3])] * images.shape[0], dtype=torch.int32)


def dot_images() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two padded images with one bright dot per box; returns images, boxes, index and the dots."""
    images = torch.zeros(2, 240, 320, 3, dtype=torch.uint8)
    dots = torch.tensor([[60.0, 100.0], [200.0, 150.0], [100.0, 60.0]])
    boxes = torch.tensor([[20.0, 40.0, 110.0, 200.0], [150.0, 60.0, 260.0, 230.0], [50.0, 10.0, 140.0, 120.0]])
    index = torch.tensor([0, 0, 1], dtype=torch.int32)
    for (x, y), i in zip(dots.long().tolist(), index.tolist()):
        images[i, y - 2:y + 2, x - 2:x + 2] = 255
    return images, boxes, index, dots


def test_crop_keeps_centre_grows_short_side_and_enlarges() -> None:
    affine = crop_transform(torch.tensor([[10.0, 20.0, 50.0, 220.0]]), aspect=0.75, enlarge=1.25)[0]
    assert affine[0, 2] == 30 and affine[1, 2] == 120  # centre
    assert torch.isclose(affine[1, 1] * 2, torch.tensor(250.0))  # height 200 × 1.25
    assert torch.isclose(affine[0, 0] * 2, torch.tensor(200 * 0.75 * 1.25))  # width grown to the aspect


def test_decode_finds_gaussian_peaks_to_a_hundredth_of_a_cell() -> None:
    h, w = 32, 24
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    centres = torch.tensor([[5.3, 7.8], [12.5, 20.1], [0.5, 0.5]])
    heatmaps = torch.stack([torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / 4) for cx, cy in centres])[None]
    xy, score = decode_heatmaps(heatmaps)
    interior = (xy[0, :2] - centres[:2]).abs().max()
    assert interior <= 0.01  # the log of a Gaussian is a parabola: the vertex is exact
    assert (xy[0, 2] - centres[2]).abs().max() <= 1e-6  # edge cell: its centre
    assert torch.allclose(score, torch.ones_like(score), atol=0.1)


def test_softmax_heatmaps_decode_exactly_and_score_their_mass_near_the_peak() -> None:
    h, w = 32, 24
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    centre = torch.tensor([9.3, 14.7])
    sharp = -((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / 2  # log of a σ = 1 Gaussian
    logits = torch.stack([sharp, sharp / 16])[None]  # the second keypoint is spread out, less certain
    probabilities = spatial_softmax(logits)
    assert torch.allclose(probabilities.sum(dim=(2, 3)), torch.ones(1, 2))
    xy, score = decode_heatmaps(probabilities, neighbourhood_mass(probabilities))
    assert (xy[0] - centre).abs().max() <= 0.01
    assert 0.5 < score[0, 0] <= 1.0 and 0.0 < score[0, 1] < score[0, 0] / 4


def test_unknown_heatmap_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="heatmap kind 'sigmoid'"):
        PoseGraph(ModelConfig(channels=16, heatmap="sigmoid"))


def test_decode_survives_flat_and_negative_heatmaps() -> None:
    heatmaps = torch.zeros(1, 3, 8, 6)
    heatmaps[0, 1] = -1.0
    heatmaps[0, 2, 4, 3], heatmaps[0, 2, 4, 4] = 0.5, -0.2  # negative neighbour: log floor, half-cell limit
    xy, _ = decode_heatmaps(heatmaps)
    assert torch.isfinite(xy).all()
    assert (xy[0, 2] - torch.tensor([3.5, 4.5])).abs().max() <= 0.5


def test_chain_maps_dots_back_to_image_pixels_through_a_random_stn() -> None:
    images, boxes, index, dots = dot_images()
    graph = PoseGraph(ModelConfig(channels=16)).eval()
    graph.sppe = BrightSpot(graph.config.num_keypoints)
    with torch.no_grad():
        graph.loc.theta.bias.copy_(torch.tensor([0.9, 0.1, 0.05, -0.05, 0.85, -0.1]))
        keypoints, scores = graph(images, full(images), boxes, index)
    assert keypoints.shape == (3, 17, 2) and scores.shape == (3, 17)
    cell_in_image = 4 * (boxes[:, 3] - boxes[:, 1]) * 1.25 / graph.config.input_size[0]
    error = (keypoints[:, 0] - dots).norm(dim=1)
    assert (error < cell_in_image).all(), (error, cell_in_image)


def test_flip_test_maps_dots_back_too() -> None:
    images, boxes, index, dots = dot_images()
    graph = PoseGraph(ModelConfig(channels=16), flip_test=True).eval()
    graph.sppe = BrightSpot(graph.config.num_keypoints)
    with torch.no_grad():
        keypoints, _ = graph(images, full(images), boxes, index)
    cell_in_image = 4 * (boxes[:, 3] - boxes[:, 1]) * 1.25 / graph.config.input_size[0]
    assert ((keypoints[:, 0] - dots).norm(dim=1) < cell_in_image).all()


def test_boxes_batched_over_padded_images_match_one_image_at_a_time() -> None:
    torch.manual_seed(0)
    graph = PoseGraph(ModelConfig(channels=16)).eval()
    small = torch.randint(0, 256, (1, 100, 150, 3), dtype=torch.uint8)
    large = torch.randint(0, 256, (1, 180, 120, 3), dtype=torch.uint8)
    batch = torch.randint(0, 256, (2, 180, 150, 3), dtype=torch.uint8)  # the padding's content is ignored
    batch[0, :100, :150] = small[0]
    batch[1, :180, :120] = large[0]
    sizes = torch.tensor([[100, 150], [180, 120]], dtype=torch.int32)
    boxes = torch.tensor([[5.0, 5.0, 60.0, 95.0], [20.0, 30.0, 110.0, 175.0]])
    with torch.no_grad():
        together, s_together = graph(batch, sizes, boxes, torch.tensor([0, 1], dtype=torch.int32))
        alone0, s0 = graph(small, full(small), boxes[:1], torch.zeros(1, dtype=torch.int32))
        alone1, s1 = graph(large, full(large), boxes[1:], torch.zeros(1, dtype=torch.int32))
    assert torch.allclose(together, torch.cat([alone0, alone1]), atol=1e-3)
    assert torch.allclose(s_together, torch.cat([s0, s1]), atol=1e-4)  # batched convolutions round differently


def test_blurred_decode_keeps_gaussian_peaks_and_scores_the_raw_peak() -> None:
    graph = PoseGraph(ModelConfig(channels=16))
    h, w = 32, 24
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    centres = torch.tensor([[5.3 + i * 0.7, 7.8 + i] for i in range(17)])
    heatmaps = torch.stack([0.8 * torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / 2) for cx, cy in centres])[None]
    noisy = heatmaps + 0.05 * torch.randn(heatmaps.shape, generator=torch.Generator().manual_seed(0))
    xy, score = graph.decode(heatmaps)
    assert (xy[0] - centres).abs().max() <= 0.02  # a blurred Gaussian is a Gaussian with the same centre
    assert torch.equal(score, heatmaps.flatten(2).amax(dim=2))  # the raw peak, not the blurred one
    on_negative = heatmaps * 3 - 2.0  # a negative background must not pull the blurred peak to the border
    assert (graph.decode(on_negative)[0][0] - centres).abs().max() <= 0.5  # the right cell
    plain, _ = decode_heatmaps(noisy)
    blurred, _ = graph.decode(noisy)
    assert (blurred[0] - centres).norm(dim=1).mean() < (plain[0] - centres).norm(dim=1).mean()


def test_configs_without_decode_blur_keep_the_plain_decode() -> None:
    old = {k: v for k, v in ModelConfig(channels=16).to_dict().items() if k != "decode_blur"}
    assert ModelConfig.from_dict(old).decode_blur == 0.0
    assert PoseGraph(ModelConfig.from_dict(old)).blur is None
    assert PoseGraph(ModelConfig(channels=16, heatmap="softmax")).blur is None


def test_boxes_are_clipped_to_their_image_inside_the_graph() -> None:
    """A box running past the edge gives what the clipped box gives; one under 1 px once clipped,
    wholly outside, NaN, or with an index outside [0, B) gives NaN keypoints and score 0."""
    torch.manual_seed(0)
    graph = PoseGraph(ModelConfig(channels=16)).eval()
    image = torch.randint(0, 256, (1, 100, 80, 3), dtype=torch.uint8)
    boxes = torch.tensor([[-30.0, 20.0, 60.0, 140.0], [0.0, 20.0, 60.0, 100.0], [90.0, 0.0, 120.0, 50.0],
                          [10.0, 10.0, 10.5, 60.0], [float("nan"), 0.0, 5.0, 5.0], [0.0, 20.0, 60.0, 100.0]])
    index = torch.tensor([0, 0, 0, 0, 0, 1], dtype=torch.int32)
    with torch.no_grad():
        keypoints, scores = graph(image, full(image), boxes, index)
        none, no_scores = graph(image, full(image), torch.zeros(0, 4), torch.zeros(0, dtype=torch.int32))
    assert torch.allclose(keypoints[0], keypoints[1], atol=1e-4) and torch.allclose(scores[0], scores[1])
    assert torch.isnan(keypoints[2:]).all() and (scores[2:] == 0).all()
    assert none.shape == (0, 17, 2) and no_scores.shape == (0, 17)


def stripes(period: float, size: int = 512) -> torch.Tensor:
    """(1, size, size, 3) uint8 vertical black and white stripes of ``period`` px."""
    x = torch.arange(size, dtype=torch.float32) + 0.5
    row = ((x / period) % 1.0 < 0.5).to(torch.uint8) * 255
    return row.view(1, 1, size, 1).expand(1, size, size, 3).contiguous()


def test_tap_pattern_has_one_sample_per_cell_row_and_column() -> None:
    for taps in (1, 2, 3, 4):
        fine = ((tap_pattern(taps) + 0.5) * taps * taps - 0.5).round().long()  # indices on the taps² grid
        assert sorted(fine[:, 0].tolist()) == sorted(fine[:, 1].tolist()) == list(range(taps * taps))
        assert len({(x // taps, y // taps) for x, y in fine.tolist()}) == taps * taps


def test_large_people_are_box_filtered_small_ones_sampled_bilinearly() -> None:
    """Pixel noise seen 8× smaller: one point sample per crop pixel keeps all of the noise (aliasing),
    the 16 footprint taps average it down by about 4. At 1 crop pixel per image pixel or less the
    taps approximate a bilinear crop."""
    h = w = 32
    grid, index = base_grid(h, w), torch.zeros(1, dtype=torch.int32)
    big = crop_transform(torch.tensor([[100.0, 100.0, 100.0 + 8 * w, 100.0 + 8 * h]]), 1.0, 1.0)
    noise = image_batch(torch.randint(0, 256, (1, 512, 512, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)))
    aliased = sample_crops(noise, index, big, grid, (h, w), taps=1)
    filtered = sample_crops(noise, index, big, grid, (h, w), taps=4)
    assert aliased.std() > 60 and filtered.std() < aliased.std() / 3
    small = crop_transform(torch.tensor([[100.0, 100.0, 100.0 + w * 0.7, 100.0 + h * 0.7]]), 1.0, 1.0)
    smooth = stripes(16.0)
    crop = sample_crops(image_batch(smooth), index, small, grid, (h, w), taps=4)
    pixels = grid @ small[0, :, :2].T + small[0, :, 2]
    norm = (pixels / torch.tensor([512.0, 512.0]) * 2 - 1).view(1, h, w, 2)
    bilinear = F.grid_sample(smooth.permute(0, 3, 1, 2).float(), norm, align_corners=False)
    assert (crop - bilinear).abs().mean() < 255 / 8


def test_zero_taps_is_an_exact_bilinear_crop_black_outside() -> None:
    """--crop-taps 0 samples like GridSample (bilinear, zeros outside the image), for any affine."""
    h, w = 24, 18
    gen = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (1, 50, 70, 3), dtype=torch.uint8, generator=gen)
    padded = torch.randint(0, 256, (1, 60, 90, 3), dtype=torch.uint8, generator=gen)  # garbage padding, never read
    padded[:, :50, :70] = image
    to_image = torch.tensor([[[30.0, 8.0, 40.0], [-6.0, 35.0, 20.0]]])  # rotated, reaching past the edges
    grid, index = base_grid(h, w), torch.zeros(1, dtype=torch.int32)
    sizes = torch.tensor([[50, 70]], dtype=torch.int32)
    crop = sample_crops(image_batch(padded, sizes), index, to_image, grid, (h, w), taps=0)
    pixels = grid @ to_image[0, :, :2].T + to_image[0, :, 2]
    norm = (pixels / torch.tensor([70.0, 50.0]) * 2 - 1).view(1, h, w, 2)
    reference = F.grid_sample(image.permute(0, 3, 1, 2).float(), norm, padding_mode="zeros", align_corners=False)
    assert (crop - reference).abs().max() < 1e-3
