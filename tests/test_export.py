"""rmpe-export writes one self-contained, checked ONNX file that ONNX Runtime runs like PyTorch."""

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from rmpe.export.checkpoint import load_graph, save_checkpoint
from rmpe.export.cli import main as export_main
from rmpe.export.config import ModelConfig
from rmpe.export.graph import CROP_TAPS, PoseGraph
from rmpe.export.onnx_export import fp16_copy
from rmpe.export.parity import FP32_TOLERANCE_PX, realistic_inputs
from rmpe.runtime.metadata import ModelMetadata


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fp32")
    assert export_main(["--out", str(out), "--max-boxes", "16"]) == 0
    return out


def test_writes_single_file_with_metadata_and_sidecar(exported: Path) -> None:
    assert sorted(p.name for p in exported.iterdir()) == ["model.json", "model.onnx"]
    model = onnx.load(str(exported / "model.onnx"))
    onnx.checker.check_model(model)
    props = {p.key: p.value for p in model.metadata_props}
    meta = ModelMetadata.from_props(props)
    assert meta == ModelMetadata.read_json(exported / "model.json")
    assert meta.num_keypoints == 17 and meta.precision == "fp32" and meta.max_boxes == 16
    assert meta.rmpe_version and meta.input_size == [128, 96]


def test_graph_gathers_crops_and_declares_its_output_shapes(exported: Path) -> None:
    model = onnx.load(str(exported / "model.onnx"))
    ops = {node.op_type for node in model.graph.node}
    assert "Gather" in ops and not ops & {"AffineGrid", "GridSample"}  # no whole-image sampler, no AffineGrid
    assert [i.name for i in model.graph.input] == ["images", "image_sizes", "boxes", "box_image_index"]
    shapes = {o.name: [d.dim_value or d.dim_param for d in o.type.tensor_type.shape.dim] for o in model.graph.output}
    assert shapes == {"keypoints": ["boxes", 17, 2], "scores": ["boxes", 17]}
    meta = ModelMetadata.read_json(exported / "model.json")
    assert meta.pose_nms["default"] == "rmpe" and meta.pose_nms["modes"]["alphapose"]["gamma"] == 22.48
    assert meta.crop == {"taps": CROP_TAPS, "cast_first": False}


def test_edges_in_onnx_runtime(exported: Path) -> None:
    """No boxes: empty outputs. Bad image index, a box outside its image or under 1 px once clipped,
    a NaN box: NaN keypoints and score 0 on that row only."""
    session = ort.InferenceSession(str(exported / "model.onnx"), providers=["CPUExecutionProvider"])
    image = np.random.default_rng(0).integers(0, 256, (1, 120, 160, 3), np.uint8)
    sizes = np.array([[120, 160]], np.int32)
    empty = session.run(None, {"images": image, "image_sizes": sizes, "boxes": np.zeros((0, 4), np.float32),
                               "box_image_index": np.zeros(0, np.int32)})
    assert empty[0].shape == (0, 17, 2) and empty[1].shape == (0, 17)
    boxes = np.array([[10, 10, 80, 110]] * 3 + [[170, 10, 200, 50], [10, 10, 10.5, 50], [np.nan, 0, 5, 5]], np.float32)
    index = np.array([0, 5, -1, 0, 0, 0], np.int32)
    keypoints, scores = session.run(None, {"images": image, "image_sizes": sizes, "boxes": boxes, "box_image_index": index})
    assert np.isfinite(keypoints[0]).all() and (scores[0] > 0).any()
    assert np.isnan(keypoints[1:]).all() and (scores[1:] == 0).all()


def test_cast_first_graph_gives_the_same_keypoints(tmp_path: Path, exported: Path) -> None:
    assert export_main(["--cast-first", "--out", str(tmp_path)]) == 0
    inputs = realistic_inputs(seed=4)
    runs = [ort.InferenceSession(str(p / "model.onnx"), providers=["CPUExecutionProvider"]).run(None, inputs)
            for p in (exported, tmp_path)]
    np.testing.assert_allclose(runs[0][0], runs[1][0], atol=1e-3)


def test_onnxruntime_matches_pytorch_on_other_shapes(exported: Path) -> None:
    """Other image count, sizes and box count than the export trace used."""
    graph, _ = load_graph(None)
    inputs = realistic_inputs(seed=5)
    session = ort.InferenceSession(str(exported / "model.onnx"), providers=["CPUExecutionProvider"])
    keypoints, scores = session.run(None, inputs)
    with torch.no_grad():
        ref_k, ref_s = graph(*(torch.from_numpy(v) for v in inputs.values()))
    assert keypoints.shape == (len(inputs["boxes"]), 17, 2) and keypoints.dtype == np.float32
    assert np.mean(np.linalg.norm(keypoints - ref_k.numpy(), axis=-1) > FP32_TOLERANCE_PX) <= 0.01
    assert np.abs(scores - ref_s.numpy()).max() < 1e-2  # a sample across a pixel edge (parity.py) moves scores too


def test_fp16_variant_keeps_fp32_io_and_halves_weights(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert export_main(["--fp16", "--out", str(tmp_path)]) == 0
    assert "fp16 vs PyTorch fp32" in capsys.readouterr().out
    model = onnx.load(str(tmp_path / "model.onnx"))
    io_types = {v.type.tensor_type.elem_type for v in [model.graph.input[2], *model.graph.output]}
    assert io_types == {onnx.TensorProto.FLOAT}
    conv_weights = {n.input[1] for n in model.graph.node if n.op_type == "Conv"}
    dtypes = {i.data_type for i in model.graph.initializer if i.name in conv_weights}
    assert dtypes == {onnx.TensorProto.FLOAT16}
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in [*inferred.graph.value_info, *inferred.graph.input]}
    fp32_only = [n.input[0] for n in model.graph.node if n.op_type in ("Floor", "ArgMax")]  # sampling grid, decode
    assert fp32_only and {types[name] for name in fp32_only} == {onnx.TensorProto.FLOAT}
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    keypoints, _ = session.run(None, realistic_inputs(seed=2))
    assert np.isfinite(keypoints).all()
    assert ModelMetadata.read_json(tmp_path / "model.json").precision == "fp16"


def test_fp16_copy_folds_batch_norms_into_convolutions() -> None:
    """The bundled model's heads output ~10⁴ before their batch norm; unfolded, fp16 heatmaps were
    off by 0.018 on these crops (0.5 on real ones), folded they stay within 0.005."""
    graph = load_graph(None)[0].eval()
    half = fp16_copy(graph)
    pairs = [(seq[i], seq[i + 1]) for seq in half.modules() if isinstance(seq, torch.nn.Sequential) for i in range(len(seq) - 1)]
    assert not any(isinstance(a, torch.nn.Conv2d) and isinstance(b, torch.nn.BatchNorm2d) for a, b in pairs)
    assert next(half.sppe.parameters()).dtype == torch.float16
    crops = torch.randn(8, 3, *graph.config.input_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        error = (half.network_heatmaps(crops) - graph.network_heatmaps(crops)).abs().max().item()
    assert error < 0.005


def test_flip_graph_exports_and_runs(tmp_path: Path) -> None:
    assert export_main(["--flip", "--out", str(tmp_path), "--input-size", "64x64"]) == 0
    meta = ModelMetadata.read_json(tmp_path / "model.json")
    assert meta.flip_test and meta.input_size == [64, 64]


def test_bad_arguments_give_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert export_main(["--checkpoint", str(tmp_path / "missing.safetensors"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "missing.safetensors" in err
    assert export_main(["--opset", "13", "--out", str(tmp_path)]) == 2
    assert export_main(["--input-size", "100x90", "--out", str(tmp_path)]) == 2
    assert "multiple of" in capsys.readouterr().err
    assert export_main(["--crop-taps", "9", "--out", str(tmp_path)]) == 2
    assert "--crop-taps" in capsys.readouterr().err


def test_softmax_model_exports_with_its_decode_and_matches_pytorch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    graph = PoseGraph(ModelConfig(channels=16, stn_channels=8, heatmap="softmax")).eval()
    save_checkpoint(graph, tmp_path / "soft.safetensors")
    assert export_main(["--checkpoint", str(tmp_path / "soft.safetensors"), "--out", str(tmp_path / "out")]) == 0
    assert ModelMetadata.read_json(tmp_path / "out" / "model.json").decode == "softmax+argmax+log_parabola"
    inputs = realistic_inputs(seed=3)
    session = ort.InferenceSession(str(tmp_path / "out" / "model.onnx"), providers=["CPUExecutionProvider"])
    keypoints, scores = session.run(None, inputs)
    with torch.no_grad():
        ref_k, ref_s = graph(*(torch.from_numpy(v) for v in inputs.values()))
    assert np.mean(np.linalg.norm(keypoints - ref_k.numpy(), axis=-1) > FP32_TOLERANCE_PX) <= 0.01
    assert np.abs(scores - ref_s.numpy()).max() < 1e-2 and (scores > 0).all() and (scores <= 1).all()


def test_any_boxes_indices_and_sizes_give_defined_rows(exported: Path) -> None:
    """Random image counts and sizes (0-px images included), boxes with NaN, ±inf and 1e30, indices
    outside [0, B): ONNX Runtime never fails, and every row is either all finite or all NaN with score 0."""
    session = ort.InferenceSession(str(exported / "model.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(7)
    for _ in range(60):
        b, h, w, n = int(rng.integers(1, 4)), int(rng.integers(1, 160)), int(rng.integers(1, 160)), int(rng.integers(0, 6))
        sizes = np.stack([rng.integers(0, h + 1, b), rng.integers(0, w + 1, b)], 1).astype(np.int32)
        boxes = rng.normal(0, 120, (n, 4)).astype(np.float32)
        boxes.flat[rng.random(boxes.size) < 0.15] = rng.choice([np.nan, np.inf, -np.inf, 1e30])
        index = rng.integers(-2, b + 2, n).astype(np.int32)
        keypoints, scores = session.run(None, {"images": rng.integers(0, 256, (b, h, w, 3), np.uint8),
                                               "image_sizes": sizes, "boxes": boxes, "box_image_index": index})
        assert keypoints.shape == (n, 17, 2) and scores.shape == (n, 17)
        invalid = np.isnan(keypoints).all(axis=(1, 2))
        assert (invalid | np.isfinite(keypoints).all(axis=(1, 2))).all() and (scores[invalid] == 0).all()
        assert invalid[(index < 0) | (index >= b)].all()
