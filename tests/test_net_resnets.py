"""FastPose, FastPose-DUC and SimpleBaseline hold AlphaPose's checkpoints key for key, and AlphaPose configs read."""

import io
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from rmpe.export.alphapose_config import AlphaPoseConfig, read_alphapose_config
from rmpe.export.networks import build_network
from rmpe.export.networks.fastpose import FastPose, FastPoseDUC
from rmpe.export.networks.resnet import ResNet, uses_deformable_conv
from rmpe.export.networks.simplebaseline import SimpleBaseline
from source_models import randomised, source_keys

# Each AlphaPose config's key list (the source model built from the config) and our network for it.
SOURCES = {
    "alphapose_coco_256x192_res50_lr1e-3_1x.txt": ("fastpose", {}, 348),
    "alphapose_coco_256x192_res50_lr1e-3_1x-duc.txt": ("fastpose-duc", {}, 378),
    "alphapose_coco_256x192_res152_lr1e-3_1x-duc.txt": ("fastpose-duc", {"depth": 152, "backbone": "se-resnet"}, 990),
    "alphapose_coco_256x192_res50_lr1e-3_1x-simple.txt": ("simplebaseline", {}, 338),
}
TORCHVISION_PARAMS = {18: 11_176_512, 34: 21_284_672, 50: 23_508_032, 101: 42_500_160, 152: 58_143_808}  # no fc
TENSORRT_SAFE_OPS = {"Conv", "Relu", "Add", "Mul", "MaxPool", "ReduceMean", "Gemm", "Sigmoid", "Unsqueeze", "Squeeze",
                     "DepthToSpace", "Reshape", "Transpose", "ConvTranspose", "BatchNormalization", "Constant"}


def key_shapes(model: torch.nn.Module) -> dict[str, tuple[tuple[int, ...], str]]:
    return {k: (tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in model.state_dict().items()}


def meta_network(arch: str, num_keypoints: int = 17, **options: object) -> torch.nn.Module:
    """A full-size network without memory or initialisation time: its keys and shapes only."""
    with torch.device("meta"):
        return build_network(arch, num_keypoints, options)


@pytest.mark.parametrize("name", SOURCES)
def test_state_dict_equals_the_alphapose_checkpoint_key_by_key(name: str) -> None:
    arch, options, count = SOURCES[name]
    expected, ours = source_keys(name), key_shapes(meta_network(arch, **options))
    assert len(expected) == count
    assert sorted(ours.keys() - expected.keys()) == []  # nothing the checkpoint lacks
    assert sorted(expected.keys() - ours.keys()) == []  # nothing of the checkpoint left unused
    assert list(ours) == list(expected)  # in the source's order
    assert {k: (v, expected[k]) for k, v in ours.items() if v != expected[k]} == {}


def test_halpe26_heads_have_26_channels_and_the_same_other_keys() -> None:
    for arch, head in (("fastpose", "conv_out"), ("fastpose-duc", "conv_out"), ("simplebaseline", "final_layer")):
        coco, halpe = key_shapes(meta_network(arch, 17)), key_shapes(meta_network(arch, 26))
        assert list(coco) == list(halpe)
        assert halpe[f"{head}.weight"][0][0] == 26 and halpe[f"{head}.bias"][0] == (26,)
        assert {k for k in coco if coco[k] != halpe[k]} == {f"{head}.weight", f"{head}.bias"}


def test_fastpose_conv_dim_256_widens_the_last_duc() -> None:
    keys = key_shapes(meta_network("fastpose", 17, conv_dim=256))
    assert keys["duc2.conv.weight"][0] == (1024, 256, 3, 3) and keys["conv_out.weight"][0] == (17, 256, 3, 3)


def test_backbones_have_torchvision_sizes_and_alphapose_se_and_shuffle_layers() -> None:
    for depth, params in TORCHVISION_PARAMS.items():
        with torch.device("meta"):
            assert sum(p.numel() for p in ResNet(depth).parameters()) == params
    with torch.device("meta"):
        se, shuffle, caffe = ResNet(101, "se-resnet"), ResNet(101, "shuffle"), ResNet(101, "resnet-caffe")
    se_keys = [k for k in se.state_dict() if ".se." in k]
    assert {k.split(".se.")[0] for k in se_keys} == {f"layer{s}.0" for s in (1, 2, 3, 4)}  # first blocks only
    assert shuffle.state_dict()["layer3.0.conv2.1.weight"].shape == (256, 1024, 3, 3)  # unshuffled 4x channels
    assert list(caffe.state_dict()) == list(ResNet(101).state_dict())
    assert caffe.layer2[0].conv1.stride == (2, 2) and caffe.layer2[0].conv2.stride == (1, 1)


def test_heatmaps_have_a_quarter_of_the_input_size() -> None:
    torch.manual_seed(0)
    crops = torch.randn(2, 3, 32, 64)
    for arch, options in (("fastpose", {}), ("fastpose-duc", {}), ("simplebaseline", {"depth": 18})):
        model = build_network(arch, 5, options).eval()
        assert model.stride == 4 and model.input_multiple == 32
        with torch.no_grad():
            assert model(crops).shape == (2, 5, 8, 16), (arch, options)


@pytest.mark.parametrize(("arch", "options", "cls"), [
    ("fastpose", {"depth": 101, "conv_dim": 256}, FastPose),
    ("fastpose-duc", {"depth": 152, "backbone": "se-resnet", "duc_convs": [4, 2, 1]}, FastPoseDUC),
    ("simplebaseline", {"depth": 34, "style": "pytorch"}, SimpleBaseline),
])
def test_registered_builders_round_trip(arch: str, options: dict, cls: type) -> None:
    built = meta_network(arch, 26, **options)
    assert type(built) is cls
    with torch.device("meta"):
        direct = cls(26, **options)
    assert key_shapes(built) == key_shapes(direct)


@pytest.mark.parametrize(("arch", "options", "message"), [
    ("fastpose", {"depth": 18}, "FastPose option depth must be one of 50, 101, 152, not 18"),
    ("fastpose", {"conv_dim": 64}, "FastPose option conv_dim must be one of 128, 256, not 64"),
    ("fastpose", {"width": 32}, "unexpected keyword argument 'width'"),
    ("fastpose-duc", {"backbone": "dcn"}, "FastPose-DUC option backbone must be one of shuffle, se-resnet, resnet"),
    ("fastpose-duc", {"duc_convs": [4, 2]}, r"option duc_convs must be three convolution counts >= 1 .*\[4, 2\]"),
    ("fastpose-duc", {"duc_convs": [4, 0, 1]}, "option duc_convs must be three"),
    ("simplebaseline", {"depth": "50"}, "SimpleBaseline option depth must be one of 18, 34, 50, 101, 152, not '50'"),
    ("simplebaseline", {"style": "caffe", "depth": 18}, "option depth must be one of 50, 101, 152, not 18"),
    ("simplebaseline", {"style": "tf"}, "SimpleBaseline option style must be one of pytorch, caffe, not 'tf'"),
])
def test_bad_options_are_refused_by_name(arch: str, options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        meta_network(arch, 17, **options)


def test_bad_keypoint_counts_are_refused() -> None:
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="positive integer number of keypoints"):
            FastPose(bad)  # type: ignore[arg-type]


def test_dcn_checkpoints_are_recognised_by_their_offset_layers() -> None:
    plain = list(meta_network("fastpose").state_dict())
    assert not uses_deformable_conv(plain)
    assert not uses_deformable_conv(meta_network("fastpose-duc").state_dict())
    se_dcn = plain + ["preact.layer2.0.conv2_offset.weight", "preact.layer2.0.conv2_offset.bias"]
    assert uses_deformable_conv(se_dcn)  # AlphaPose's SE-ResNet / ResNet DCN blocks
    assert uses_deformable_conv(["preact.layer3.0.conv2.1.conv_offset.weight"])  # shuffle, stride-2 block
    assert uses_deformable_conv(["module.preact.layer3.1.conv2.conv_offset.bias"])  # shuffle, stride-1 block


def _export_matches_onnx_runtime(model: torch.nn.Module, height: int, width: int) -> set[str]:
    """Opset-17 TorchScript export of the bare network; ONNX Runtime must match PyTorch within 1e-4."""
    crops = torch.randn(2, 3, height, width, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(crops).numpy()
    buffer = io.BytesIO()
    torch.onnx.export(model, (crops,), buffer, dynamo=False, opset_version=17, input_names=["crops"],
                      output_names=["heatmaps"], dynamic_axes={"crops": {0: "n"}, "heatmaps": {0: "n"}})
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    (heatmaps,) = session.run(None, {"crops": crops.numpy()})
    assert heatmaps.shape == (2, expected.shape[1], height // 4, width // 4)
    assert np.abs(heatmaps - expected).max() <= 1e-4 * np.abs(expected).max()
    return {node.op_type for node in onnx.load_from_string(buffer.getvalue()).graph.node}


@pytest.mark.parametrize(("arch", "options"), [
    ("fastpose", {}), ("fastpose-duc", {}), ("simplebaseline", {"depth": 18}),
])
def test_exports_to_onnx_that_matches_pytorch(arch: str, options: dict) -> None:
    ops = _export_matches_onnx_runtime(randomised(build_network(arch, 17, options)), 64, 32)  # sides: multiples of 32
    assert ops <= TENSORRT_SAFE_OPS, ops - TENSORRT_SAFE_OPS


# The fields of AlphaPose's configs/coco/resnet/*.yaml that name the network.
FASTPOSE_YAML = """\
DATA_PRESET:
  TYPE: 'simple'
  SIGMA: 2
  NUM_JOINTS: {joints}
  IMAGE_SIZE: [256, 192]
  HEATMAP_SIZE: [64, 48]
MODEL:
  TYPE: '{model}'
  PRETRAINED: ''
  TRY_LOAD: ''
  NUM_DECONV_FILTERS: [256, 256, 256]
  NUM_LAYERS: {layers}
{extra}LOSS:
  TYPE: 'MSELoss'
"""
DUC_EXTRA = """\
  BACKBONE: '{backbone}'
  FINAL_CONV_KERNEL: 1
  STAGE1:
    NUM_CONV: 4
  STAGE2:
    NUM_CONV: 2
  STAGE3:
    NUM_CONV: 1
"""
DCN_EXTRA = """\
  DCN:
    MODULATED: false
    DEFORM_GROUP: 1
    FALLBACK_ON_STRIDE: false
  STAGE_WITH_DCN: [false, true, true, true]
"""
HRNET_EXTRA = "  FINAL_CONV_KERNEL: 1\n" + "".join(
    f"  STAGE{s}:\n    NUM_MODULES: {m}\n    NUM_BRANCHES: {b}\n    NUM_BLOCKS: {[4] * b}\n"
    f"    NUM_CHANNELS: {[32 * 2**i for i in range(b)]}\n    BLOCK: 'BASIC'\n    FUSE_METHOD: 'SUM'\n"
    for s, m, b in ((2, 1, 2), (3, 4, 3), (4, 3, 4)))


def write_config(tmp_path: Path, model: str = "FastPose", joints: int = 17, layers: int = 50, extra: str = "") -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(FASTPOSE_YAML.format(model=model, joints=joints, layers=layers, extra=extra))
    return path


@pytest.mark.parametrize(("model", "joints", "layers", "extra", "arch", "options"), [
    ("FastPose", 17, 50, "", "fastpose", {"depth": 50, "conv_dim": 128}),
    ("FastPose", 26, 50, "", "fastpose", {"depth": 50, "conv_dim": 128}),
    ("FastPose_DUC", 17, 50, DUC_EXTRA.format(backbone="shuffle"), "fastpose-duc",
     {"depth": 50, "backbone": "shuffle", "duc_convs": [4, 2, 1]}),
    ("FastPose_DUC", 17, 152, DUC_EXTRA.format(backbone="se-resnet"), "fastpose-duc",
     {"depth": 152, "backbone": "se-resnet", "duc_convs": [4, 2, 1]}),
    ("SimplePose", 17, 50, "", "simplebaseline", {"depth": 50}),
    ("PoseHighResolutionNet", 17, 50, HRNET_EXTRA, "hrnet", {"width": 32}),
    ("SimplePose", 17, 101, DCN_EXTRA, "simplebaseline", {"depth": 101}),  # SimplePose never reads MODEL.DCN
])
def test_alphapose_configs_name_our_architecture(tmp_path: Path, model: str, joints: int, layers: int, extra: str,
                                                 arch: str, options: dict) -> None:
    config = read_alphapose_config(write_config(tmp_path, model, joints, layers, extra))
    assert config == AlphaPoseConfig(arch, options, joints, (256, 192), (64, 48))
    assert config.options == options
    built = meta_network(config.arch, config.num_keypoints, **config.options)
    assert built.input_multiple == 32


@pytest.mark.parametrize(("edit", "message"), [
    (lambda t: write_config(t, extra=DCN_EXTRA), "DCN \\(deformable convolution\\) models are not supported yet"),
    (lambda t: write_config(t, "FastPose_DUC", extra=DUC_EXTRA.format(backbone="se-resnet") + DCN_EXTRA),
     "DCN .* custom CUDA op"),
    (lambda t: write_config(t, joints=136), "136 keypoints are not supported yet .*COCO 17 and Halpe 26"),
    (lambda t: write_config(t, "HarDNetPose"), "MODEL.TYPE 'HarDNetPose' is not supported yet"),
    (lambda t: write_config(t, "PoseHighResolutionNet", extra=HRNET_EXTRA.replace("NUM_MODULES: 4", "NUM_MODULES: 2")),
     "MODEL.STAGE3 is not the standard HRNet-W32/W48 structure"),
    (lambda t: write_config(t, "FastPose_DUC"), "has no MODEL.STAGE1.NUM_CONV"),
])
def test_unsupported_configs_are_refused_in_one_line(tmp_path: Path, edit, message: str) -> None:
    path = edit(tmp_path)
    with pytest.raises(ValueError, match=message) as caught:
        read_alphapose_config(path)
    assert str(caught.value).startswith(f"{path}: ") and "\n" not in str(caught.value)


@pytest.mark.parametrize(("old", "new", "message"), [
    ("  TYPE: 'MSELoss'", "  TYPE: 'L1JointRegression'", "loss L1JointRegression: regression \\(integral\\) heads"),
    ("  TYPE: 'MSELoss'", "  TYPE: 'Combined'", "loss Combined: regression"),
    ("  SIGMA: 2", "  LOSS_TYPE: 'L1JointRegression'", "loss L1JointRegression: regression"),
    ("HEATMAP_SIZE: [64, 48]", "HEATMAP_SIZE: [32, 24]", "HEATMAP_SIZE \\[32, 24\\] is not a quarter of IMAGE_SIZE"),
    ("IMAGE_SIZE: [256, 192]", "IMAGE_SIZE: 256", "IMAGE_SIZE must be two positive integers"),
    ("  TYPE: 'simple'", "  TYPE: 'simple_smpl'", "DATA_PRESET.TYPE 'simple_smpl' is not supported yet"),
    ("NUM_DECONV_FILTERS: [256, 256, 256]", "NUM_DECONV_FILTERS: [128, 128, 128]", "NUM_DECONV_FILTERS"),
    ("MODEL:", "MODEL: []\nOTHER:", "not an AlphaPose config \\(no MODEL section\\)"),
    ("  TYPE: 'simple'", "  TYPE: [", "not a YAML file"),
])
def test_malformed_configs_are_refused_in_one_line(tmp_path: Path, old: str, new: str, message: str) -> None:
    path = write_config(tmp_path, "SimplePose")
    path.write_text(path.read_text().replace(old, new, 1))
    with pytest.raises(ValueError, match=message) as caught:
        read_alphapose_config(path)
    assert str(caught.value).startswith(f"{path}: ") and "\n" not in str(caught.value)


def test_a_missing_config_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="missing.yaml: cannot read the config"):
        read_alphapose_config(tmp_path / "missing.yaml")
