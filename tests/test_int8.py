"""int8 export (export/quantize.py): TensorRT's Q/DQ rules read off the exported graph, the ONNX Runtime CPU form, CLI refusals."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from rmpe.export.cli import main as export_main
from rmpe.export.quantize import NETWORK_SCOPE, CalibrationError, export_int8, tensorrt_problems
from rmpe.runtime.metadata import ModelMetadata

pytest.importorskip("onnxruntime.quantization")


@pytest.fixture(scope="module")
def int8(default_onnx, tmp_path_factory):
    """The default model quantised from 16 synthetic crops: (TensorRT form, ONNX Runtime CPU form)."""
    model = onnx.load(str(default_onnx))
    meta = ModelMetadata.from_props({p.key: p.value for p in model.metadata_props})
    out = tmp_path_factory.mktemp("int8") / "model.onnx"
    result = export_int8(default_onnx, out, meta, "synth", crops=16)
    return onnx.load(str(result.paths["tensorrt"])), onnx.load(str(result.paths["onnxruntime-cpu"]))


def constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


def test_tensorrt_form_follows_the_qdq_rules(int8):
    model, values = int8[0], constants(int8[0])
    assert tensorrt_problems(model) == []
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert len(qdq) > 100
    for node in qdq:  # symmetric int8 everywhere: zero points present, int8 and 0
        zero = values[node.input[2]]
        assert zero.dtype == np.int8 and not zero.any(), node.name
    for node in (n for n in qdq if n.op_type == "DequantizeLinear" and n.input[0] in values):
        assert values[node.input[0]].dtype == np.int8, f"{node.name} dequantises a {values[node.input[0]].dtype} constant"
    producer = {o: n for n in model.graph.node for o in n.output}
    convs = [n for n in model.graph.node if n.op_type == "Conv" and n.name.startswith(NETWORK_SCOPE)]
    for conv in convs:  # per-channel weights; the bias a float constant, not a dequantised int32
        dq = producer[conv.input[1]]
        assert dq.op_type == "DequantizeLinear" and values[dq.input[1]].shape == (values[dq.input[0]].shape[0],)
        if len(conv.input) > 2:
            assert conv.input[2] in values and values[conv.input[2]].dtype == np.float32


def test_crop_stn_and_decode_stay_float(int8):
    model = int8[0]
    quantised = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    outside = [n for n in model.graph.node if not n.name.startswith(NETWORK_SCOPE)
               and n.op_type not in ("QuantizeLinear", "DequantizeLinear")]
    assert outside and not [n.name for n in outside if quantised & set(n.input)]
    stn = [n for n in model.graph.node if n.name.startswith("/loc/")]
    assert stn and not [n.name for n in stn if quantised & set(n.input)]
    meta = json.loads({p.key: p.value for p in model.metadata_props}["extra"])["quantization"]
    assert meta["form"] == "tensorrt" and {"crop", "stn", "decode"} <= set(meta["float"])


def test_ort_cpu_form_has_uint8_activations(int8):
    values = constants(int8[1])
    zeros = [values[n.input[2]] for n in int8[1].graph.node if n.op_type == "QuantizeLinear"]
    assert zeros and all(z.dtype == np.uint8 for z in zeros)


def test_calibration_source_refused(default_onnx, tmp_path):
    model = onnx.load(str(default_onnx))
    meta = ModelMetadata.from_props({p.key: p.value for p in model.metadata_props})
    with pytest.raises(CalibrationError, match="not a folder"):
        export_int8(default_onnx, tmp_path / "m.onnx", meta, str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CalibrationError, match="detections.json"):
        export_int8(default_onnx, tmp_path / "m.onnx", meta, str(tmp_path / "empty"))


@pytest.mark.parametrize("argv, message", [
    (["--int8"], "--int8 needs --calib SOURCE"),
    (["--int8", "--fp16", "--calib", "synth"], "--int8 and --fp16 exclude each other"),
])
def test_cli_refusals(argv, message, tmp_path, capsys):
    assert export_main([*argv, "--out", str(tmp_path / "m")]) == 2
    assert message in capsys.readouterr().err


def test_each_form_gets_its_own_crop(default_onnx, int8, tmp_path):
    """From a cast-first export, TensorRT's form passes the offline check; the CPU form gets the crop
    that gathers uint8 (metadata says so) and the same keypoints as one quantised around it alone."""
    import onnxruntime as ort

    from rmpe.export.parity import realistic_inputs
    from rmpe.export.trt_check import check_file

    cast_first = tmp_path / "cast-first"
    assert export_main(["--cast-first", "--out", str(cast_first)]) == 0
    model = onnx.load(str(cast_first / "model.onnx"))
    meta = ModelMetadata.from_props({p.key: p.value for p in model.metadata_props})
    result = export_int8(cast_first / "model.onnx", tmp_path / "model.onnx", meta, "synth", crops=16,
                         cpu_crop=default_onnx)
    assert not check_file(result.paths["tensorrt"]).failed
    cpu = result.paths["onnxruntime-cpu"]
    crop_reads = [f for f in check_file(cpu).failures if f.rule == "uint8" and "'images'" in f.message]
    assert crop_reads and not [n for n in onnx.load(str(cpu)).graph.node if n.op_type == "Cast" and "images" in n.input]
    assert json.loads(cpu.with_suffix(".json").read_text())["crop"]["cast_first"] is False
    inputs = realistic_inputs(seed=4)
    ours, alone = (ort.InferenceSession(m, providers=["CPUExecutionProvider"]).run(None, inputs)[0]
                   for m in (str(cpu), int8[1].SerializeToString()))
    assert np.median(np.abs(ours - alone)) < 0.05
