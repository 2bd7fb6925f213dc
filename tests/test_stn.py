"""STN and SDTN (DESIGN §1.2): identity changes nothing, SDTN inverts STN, points follow the warp."""

import numpy as np
import torch

from rmpe.export.config import ModelConfig
from rmpe.export.graph import PoseGraph, base_grid, compose_affine, crop_transform, image_batch, sample_crops
from rmpe.export.stn import Localisation, invert_affine, sdtn_points, stn_points


def random_invertible_theta(n: int, gen: torch.Generator) -> torch.Tensor:
    theta = torch.eye(2, 3).repeat(n, 1, 1) + 0.3 * torch.randn(n, 2, 3, generator=gen)
    det = theta[:, 0, 0] * theta[:, 1, 1] - theta[:, 0, 1] * theta[:, 1, 0]
    assert (det.abs() > 0.1).all()
    return theta


def test_localisation_starts_at_identity() -> None:
    theta = Localisation(8).eval()(torch.randn(4, 3, 64, 48))
    assert torch.equal(theta, torch.eye(2, 3).expand(4, 2, 3))


def test_identity_theta_changes_nothing() -> None:
    torch.manual_seed(0)
    with_stn = PoseGraph(ModelConfig(stn=True, channels=32)).eval()
    without = PoseGraph(ModelConfig(stn=False, channels=32)).eval()
    without.sppe.load_state_dict(with_stn.sppe.state_dict())
    images = torch.randint(0, 256, (2, 90, 120, 3), dtype=torch.uint8)
    boxes = torch.tensor([[10.0, 5.0, 70.0, 85.0], [30.0, 20.0, 110.0, 60.0]])
    index = torch.tensor([0, 1], dtype=torch.int32)
    sizes = torch.tensor([[90, 120], [90, 120]], dtype=torch.int32)
    with torch.no_grad():
        a, sa = with_stn(images, sizes, boxes, index)
        b, sb = without(images, sizes, boxes, index)
    assert torch.equal(a, b) and torch.equal(sa, sb)


def test_sdtn_inverts_stn_for_random_invertible_theta() -> None:
    gen = torch.Generator().manual_seed(1)
    theta = random_invertible_theta(64, gen)
    points = torch.rand(64, 17, 2, generator=gen) * 2 - 1
    assert torch.allclose(sdtn_points(theta, stn_points(theta, points)), points, atol=1e-5)
    assert torch.allclose(stn_points(theta, sdtn_points(theta, points)), points, atol=1e-5)
    gamma = invert_affine(theta)
    assert torch.allclose(compose_affine(theta, gamma), torch.eye(2, 3).expand(64, 2, 3), atol=1e-5)


def test_a_dot_in_the_crop_moves_where_stn_points_says() -> None:
    """Warp an image holding one bright dot with θ: the dot shows up at stn_points(θ, dot)."""
    h, w = 96, 96
    image = torch.zeros(1, 200, 200, 3, dtype=torch.uint8)
    dot = (90.0, 110.0)  # image pixels
    image[0, 109:111, 89:91] = 255
    box = torch.tensor([[50.0, 50.0, 150.0, 150.0]])
    index = torch.zeros(1, dtype=torch.int32)
    to_crop = crop_transform(box, 1.0, 1.0)
    theta = torch.tensor([[[0.8, 0.1, 0.05], [-0.1, 0.9, -0.1]]])
    crop = sample_crops(image_batch(image), index, compose_affine(to_crop, theta), base_grid(h, w), (h, w), 4)[0, 0]
    weights = crop / crop.sum()
    ys, xs = torch.meshgrid((torch.arange(h) + 0.5) / h * 2 - 1, (torch.arange(w) + 0.5) / w * 2 - 1, indexing="ij")
    found = torch.tensor([(weights * xs).sum(), (weights * ys).sum()])
    dot_in_crop = torch.tensor([[[(dot[0] - 100) / 50, (dot[1] - 100) / 50]]])
    expected = stn_points(theta, dot_in_crop)[0, 0]
    assert np.allclose(found.numpy(), expected.numpy(), atol=2 / w)
