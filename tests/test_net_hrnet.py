"""HRNet holds pose_hrnet checkpoints key for key and exports to ONNX that runs like PyTorch."""

import io

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from rmpe.export.networks import build_network
from rmpe.export.networks.hrnet import HRNet
from source_models import randomised
from source_models import source_keys as listed_keys

TENSORRT_SAFE_OPS = {"Conv", "Relu", "Add", "Resize", "Constant"}


def source_keys() -> dict[str, tuple[tuple[int, ...], str]]:
    """The W32 / 17-keypoint pose_hrnet state dict: key → (shape, dtype), as the source model built it."""
    return listed_keys("hrnet_w32_coco17.txt")


def our_keys(width: int, num_keypoints: int = 17) -> dict[str, tuple[tuple[int, ...], str]]:
    with torch.device("meta"):
        state = HRNet(num_keypoints, width=width).state_dict()
    return {k: (tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in state.items()}


def test_w32_state_dict_equals_the_source_checkpoint_key_by_key() -> None:
    expected, ours = source_keys(), our_keys(32)
    assert len(expected) == 1754
    assert sorted(ours.keys() - expected.keys()) == []  # nothing the checkpoint lacks
    assert sorted(expected.keys() - ours.keys()) == []  # nothing of the checkpoint left unused
    assert list(ours) == list(expected)
    assert {k: v for k, v in ours.items() if v != expected[k]} == {}


def test_w48_has_the_same_keys_at_one_and_a_half_times_the_branch_widths() -> None:
    w32, w48 = source_keys(), our_keys(48)
    assert list(w48) == list(w32)
    assert w48["final_layer.weight"][0] == (17, 48, 1, 1)
    assert w48["stage4.2.fuse_layers.0.3.0.weight"][0] == (48, 384, 1, 1)
    assert w48["transition3.3.0.0.weight"][0] == (384, 192, 3, 3)
    assert w48["layer1.0.conv3.weight"] == w32["layer1.0.conv3.weight"]  # the stem does not scale
    with torch.device("meta"):
        assert sum(p.numel() for p in HRNet(17, width=48).parameters()) == 63_595_745  # the source's W48 count


def test_heatmaps_have_a_quarter_of_the_input_size() -> None:
    model = build_network("hrnet", 5, {"width": 32}).eval()
    assert model.stride == 4 and model.input_multiple == 32
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 96)).shape == (2, 5, 16, 24)


def test_unsupported_width_is_refused() -> None:
    with pytest.raises(ValueError, match="width must be one of 32, 48, not 40"):
        HRNet(17, width=40)


def test_exports_to_tensorrt_safe_onnx_that_matches_pytorch() -> None:
    model = randomised(HRNet(17, width=32))  # 96×64: the smallest crop near 4:3 whose sides divide by 32
    crops = torch.randn(2, 3, 96, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(crops).numpy()
    buffer = io.BytesIO()
    torch.onnx.export(model, (crops,), buffer, dynamo=False, opset_version=17, input_names=["crops"],
                      output_names=["heatmaps"], dynamic_axes={"crops": {0: "n"}, "heatmaps": {0: "n"}})
    graph = onnx.load_from_string(buffer.getvalue())
    assert {node.op_type for node in graph.graph.node} <= TENSORRT_SAFE_OPS
    resize_modes = {a.s for n in graph.graph.node if n.op_type == "Resize" for a in n.attribute if a.name == "mode"}
    assert resize_modes == {b"nearest"}
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    (heatmaps,) = session.run(None, {"crops": crops.numpy()})
    assert heatmaps.shape == (2, 17, 24, 16)
    assert np.abs(heatmaps - expected).max() <= 1e-4 * np.abs(expected).max()
