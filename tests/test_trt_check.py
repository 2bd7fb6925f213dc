"""The offline TensorRT check: one crafted graph per rule, and every export of ours passes it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from rmpe.export.trt_check import FAIL, WARN, check_file, check_model, fp16_step, parser_ops

F, U8, I8, I32, I64 = TensorProto.FLOAT, TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32, TensorProto.INT64


def model(nodes, inputs, outputs, initializers=(), opset=17):
    """A model from (name, type, shape) inputs and outputs."""
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(*i) for i in inputs],
                              [helper.make_tensor_value_info(*o) for o in outputs], list(initializers))
    made = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    made.ir_version = 8
    return made


def const(name, values, dtype=np.float32):
    return numpy_helper.from_array(np.asarray(values, dtype), name)


def rules(verdict, level=FAIL):
    return sorted({f.rule for f in verdict.findings if f.level == level})


def test_parser_list_is_data_with_its_source():
    ops = parser_ops()
    assert ops["tensorrt"] == "10.15" and "operators.md" in ops["source"] and ops["opset"] == [9, 24]
    assert "AffineGrid" in ops["unsupported"] and ops["supported"]["GridSample"] == ["FP32", "FP16"]
    assert "UINT8" in ops["supported"]["Cast"] and "UINT8" not in ops["supported"]["Shape"]


def test_a_plain_graph_passes():
    m = model([helper.make_node("Relu", ["x"], ["y"])], [("x", F, [1, 3])], [("y", F, [1, 3])])
    verdict = check_model(m)
    assert not verdict.findings and verdict.lines()[0].endswith("passes")


def test_affine_grid_is_refused_with_the_way_around():
    m = model([helper.make_node("AffineGrid", ["theta", "size"], ["grid"])], [("theta", F, [1, 2, 3])],
              [("grid", F, None)], [const("size", [1, 1, 8, 8], np.int64)], opset=20)
    verdict = check_model(m)
    assert rules(verdict) == ["op"] and "MatMul" in verdict.failures[0].message


def test_gridsample_must_be_4d():
    four = model([helper.make_node("GridSample", ["x", "grid"], ["y"])], [("x", F, [1, 3, 8, 8]), ("grid", F, [1, 4, 4, 2])],
                 [("y", F, [1, 3, 4, 4])], opset=20)
    five = model([helper.make_node("GridSample", ["x", "grid"], ["y"])],
                 [("x", F, [1, 3, 4, 8, 8]), ("grid", F, [1, 2, 4, 4, 3])], [("y", F, None)], opset=20)
    unknown = model([helper.make_node("GridSample", ["x", "grid"], ["y"])], [("x", F, None), ("grid", F, None)],
                    [("y", F, None)], opset=20)
    assert "gridsample" not in rules(check_model(four))
    assert rules(check_model(five)) == ["gridsample"] and "5-D" in check_model(five).failures[0].message
    assert rules(check_model(unknown), WARN) == ["fp16-grid", "gridsample"]


@pytest.mark.parametrize("zero, words", [(np.int8(3), "not 0"), (np.uint8(0), "UINT8 zero point")])
def test_quantisation_needs_int8_zero_points_of_zero(zero, words):
    m = model([helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]), helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])],
              [("x", F, [4])], [("y", F, [4])], [const("s", 0.1), numpy_helper.from_array(np.array(zero), "z")])
    verdict = check_model(m)
    assert rules(verdict) == ["qdq"] and len(verdict.failures) == 2 and words in verdict.failures[0].message


def test_int32_bias_dequantisation_and_missing_zero_point_are_refused():
    bias = model([helper.make_node("DequantizeLinear", ["b", "s"], ["y"])], [], [("y", F, [4])],
                 [const("b", [1, 2, 3, 4], np.int32), const("s", 0.1)])
    assert "int32" in check_model(bias).failures[0].message
    no_zero = model([helper.make_node("QuantizeLinear", ["x", "s"], ["q"])], [("x", F, [4])], [("q", U8, [4])], [const("s", 0.1)])
    assert "writes uint8" in check_model(no_zero).failures[0].message
    good = model([helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]), helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])],
                 [("x", F, [4])], [("y", F, [4])], [const("s", 0.1), const("z", 0, np.int8)])
    assert not check_model(good).failed


@pytest.mark.parametrize("attrs, words", [({"mode": "cubic"}, "mode 'cubic'"),
                                          ({"coordinate_transformation_mode": "tf_crop_and_resize"}, "tf_crop_and_resize"),
                                          ({"mode": "nearest", "antialias": 1}, "antialias"),
                                          ({"keep_aspect_ratio_policy": "not_larger"}, "keep_aspect_ratio_policy")])
def test_unsupported_resize_modes(attrs, words):
    m = model([helper.make_node("Resize", ["x", "", "scales"], ["y"], **attrs)], [("x", F, [1, 3, 4, 4])], [("y", F, None)],
              [const("scales", [1, 1, 2, 2])], opset=18)
    verdict = check_model(m)
    assert rules(verdict) == ["resize"] and words in verdict.failures[0].message


def test_nearest_asymmetric_resize_of_the_hourglass_passes():
    m = model([helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="nearest",
                                coordinate_transformation_mode="asymmetric", nearest_mode="floor")],
              [("x", F, [1, 3, 4, 4])], [("y", F, None)], [const("scales", [1, 1, 2, 2])])
    assert not check_model(m).findings


@pytest.mark.parametrize("opset", [8, 25])
def test_opsets_outside_the_parsers_range(opset):
    m = model([helper.make_node("Relu", ["x"], ["y"])], [("x", F, [2])], [("y", F, [2])], opset=opset)
    assert rules(check_model(m)) == ["opset"]


def test_uint8_only_from_an_input_into_a_cast():
    cast = model([helper.make_node("Cast", ["img"], ["f"], to=F)], [("img", U8, [1, 4, 4, 3])], [("f", F, [1, 4, 4, 3])])
    assert not check_model(cast).findings
    shaped = model([helper.make_node("Shape", ["img"], ["s"]), helper.make_node("Cast", ["img"], ["f"], to=F)],
                   [("img", U8, [1, 4, 4, 3])], [("s", I64, [4]), ("f", F, [1, 4, 4, 3])])
    verdict = check_model(shaped)
    assert rules(verdict) == ["uint8"] and "shape of the cast tensor" in verdict.failures[0].message
    reshaped = model([helper.make_node("Reshape", ["img", "to"], ["flat"]), helper.make_node("Cast", ["flat"], ["f"], to=F)],
                     [("img", U8, [1, 4, 4, 3])], [("f", F, [16, 3])], [const("to", [-1, 3], np.int64)])
    found = check_model(reshaped).failures
    assert {f.where for f in found} == {"(unnamed) (Reshape)", "(unnamed) (Cast)"} and "--cast-first" in found[0].message
    out = model([helper.make_node("Cast", ["f"], ["img"], to=U8)], [("f", F, [4])], [("img", U8, [4])])
    assert not check_model(out).findings
    inner = model([helper.make_node("Cast", ["f"], ["u"], to=U8), helper.make_node("Cast", ["u"], ["g"], to=F)],
                  [("f", F, [4])], [("g", F, [4])])
    assert rules(check_model(inner)) == ["uint8"]


def test_data_dependent_shapes():
    nonzero = model([helper.make_node("NonZero", ["x"], ["i"])], [("x", F, [4])], [("i", I64, None)])
    assert rules(check_model(nonzero)) == ["shape"]
    by_value = model([helper.make_node("Cast", ["n"], ["n64"], to=I64), helper.make_node("Reshape", ["x", "n64"], ["y"])],
                     [("x", F, [4]), ("n", I32, [2])], [("y", F, None)])
    verdict = check_model(by_value)
    assert rules(verdict) == ["shape"] and "'n64'" in verdict.failures[0].message
    by_shape = model([helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Reshape", ["x", "s"], ["y"])],
                     [("x", F, ["n"])], [("y", F, ["n"])])
    assert not check_model(by_shape).findings


def test_build_time_constants():
    axes_input = model([helper.make_node("ReduceMean", ["x", "axes"], ["y"])], [("x", F, [2, 3]), ("axes", I64, [1])],
                       [("y", F, None)], opset=18)
    assert rules(check_model(axes_input)) == ["constant", "shape"] or rules(check_model(axes_input)) == ["constant"]
    axes_constant = model([helper.make_node("ReduceMean", ["x", "axes"], ["y"])], [("x", F, [2, 3])], [("y", F, None)],
                          [const("axes", [1], np.int64)], opset=18)
    assert not check_model(axes_constant).findings


def test_unsupported_ops_types_and_domains():
    det = model([helper.make_node("Det", ["x"], ["y"])], [("x", F, [3, 3])], [("y", F, [])])
    assert "not supported" in check_model(det).failures[0].message
    custom = model([helper.make_node("Gelu", ["x"], ["y"], domain="com.microsoft")], [("x", F, [3])], [("y", F, [3])])
    custom.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    assert "plugin" in check_model(custom).failures[0].message
    int8_gather = model([helper.make_node("Gather", ["x", "i"], ["y"])], [("x", I8, [4]), ("i", I64, [2])], [("y", I8, [2])])
    verdict = check_model(int8_gather)
    assert rules(verdict) == ["types"] and "INT8" in verdict.failures[0].message
    double = model([helper.make_node("Relu", ["x"], ["y"])], [("x", TensorProto.DOUBLE, [2])], [("y", TensorProto.DOUBLE, [2])])
    assert rules(check_model(double), WARN) == ["types"] and not check_model(double).failed


def test_fp16_warning_names_the_step_at_the_profiles_largest_side():
    assert fp16_step(4096) == 4 and fp16_step(12_000) == 8 and fp16_step(1000) == 0.5
    m = model([helper.make_node("Floor", ["x"], ["fx"]), helper.make_node("Cast", ["fx"], ["i"], to=I64),
               helper.make_node("Gather", ["table", "i"], ["y"])],
              [("x", F, [5]), ("table", F, [100, 3])], [("y", F, [5, 3])])
    verdict = check_model(m, max_side=16384)
    assert not verdict.failed and rules(verdict, WARN) == ["fp16-grid"]
    assert "up to 16384 px are 16 px" in verdict.warnings[0].message and "strongly typed" in verdict.warnings[0].message
    by_index = model([helper.make_node("Gather", ["table", "i"], ["y"])], [("i", I64, [5]), ("table", F, [100, 3])],
                     [("y", F, [5, 3])])
    assert not check_model(by_index).findings


def test_many_findings_are_counted_not_listed():
    nodes = [helper.make_node("Det", [f"x{i}"], [f"y{i}"]) for i in range(7)]
    m = model(nodes, [(f"x{i}", F, [2, 2]) for i in range(7)], [(f"y{i}", F, []) for i in range(7)])
    lines = check_model(m).lines()
    assert "FAILS, 7 problem(s)" in lines[0] and lines[-1].endswith("and 3 more") and len(lines) == 6


def test_not_an_onnx_file(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="bad.onnx: not an ONNX model"):
        check_file(bad)
    with pytest.raises(ValueError, match="no such file"):
        check_file(tmp_path / "none.onnx")


HOURGLASS_VARIANTS = ["fp32", "fp16", "flip", pytest.param("int8", marks=pytest.mark.slow)]
FAST_ARCHITECTURES = {"simplebaseline": {"depth": 18}}  # the rest of the registry exports in seconds each: slow


def architectures() -> list:
    from rmpe.export.networks import ARCHITECTURES

    return [pytest.param(arch, marks=() if arch in FAST_ARCHITECTURES else pytest.mark.slow)
            for arch in ARCHITECTURES if arch != "hourglass"]


@pytest.fixture(scope="module", params=HOURGLASS_VARIANTS + architectures())
def trt_export(request, tmp_path_factory) -> Path:
    """One export variant, cast first (as --engine exports): the bundled hourglass in fp32, fp16,
    with flip test and int8, and every other architecture of export/networks (seeded weights)."""
    import torch

    from rmpe.export.checkpoint import load_graph
    from rmpe.export.config import ModelConfig
    from rmpe.export.graph import PoseGraph
    from rmpe.export.onnx_export import export_onnx, fp16_copy, metadata_for

    out = tmp_path_factory.mktemp(f"trt-{request.param}") / "model.onnx"
    if request.param in ("fp32", "fp16", "flip", "int8"):
        graph, sha = load_graph(None, flip_test=request.param == "flip")
    else:
        torch.manual_seed(0)
        config = ModelConfig(arch=request.param, arch_options=FAST_ARCHITECTURES.get(request.param, {}), stn=False,
                             input_size=(64, 64))
        graph, sha = PoseGraph(config).eval(), ""
    graph.cast_first = True
    precision = "fp16" if request.param == "fp16" else "fp32"
    meta = metadata_for(graph, precision, sha, 16, request.param)
    export_onnx(fp16_copy(graph) if precision == "fp16" else graph, out, meta)
    if request.param == "int8":
        from rmpe.export.quantize import export_int8

        export_int8(out, out, meta, "synth", crops=16)
    return out


def test_every_export_passes(trt_export: Path):
    """Each export variant (fp32, fp16, flip, int8, the imported architectures; all cast first, as
    --engine makes them) passes, warning only of the TensorRT 10 fp16 grids."""
    verdict = check_file(trt_export)
    assert not verdict.failed, "\n".join(verdict.lines())
    assert {f.rule for f in verdict.warnings} <= {"fp16-grid"}


def test_a_default_export_fails_only_on_its_uint8_crop(default_onnx: Path):
    verdict = check_file(default_onnx)
    assert verdict.failed and {f.rule for f in verdict.failures} == {"uint8"}
    assert any("--cast-first" in f.message for f in verdict.failures)


def test_export_prints_the_verdict_and_check_exits_1(default_onnx: Path, capsys):
    from rmpe.export.cli import main

    assert main(["--check", str(default_onnx)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("TensorRT check of model.onnx") and "FAILS" in out and "[uint8]" in out
    passing = default_onnx.parent / "relu.onnx"
    onnx.save(model([helper.make_node("Relu", ["x"], ["y"])], [("x", F, [2])], [("y", F, [2])]), str(passing))
    assert main(["--check", str(passing)]) == 0
    assert "passes" in capsys.readouterr().out
    assert main(["--check", str(default_onnx.parent / "missing.onnx")]) == 2
    assert "missing.onnx: no such file" in capsys.readouterr().err


def test_the_default_export_is_reported_as_onnx_runtimes_form(default_onnx: Path, capsys):
    """rmpe-export's own verdict on its uint8-gathering (CPU) form: one line with the way to TensorRT's form."""
    from rmpe.export.tensorrt_cli import print_check
    from rmpe.runtime.tensorrt_profiles import default_profile

    assert print_check(default_onnx, [default_profile(64)], cpu_form=True) is False
    out = capsys.readouterr().out.splitlines()
    assert "the ONNX Runtime form" in out[0] and "--cast-first or --engine" in out[0]
    assert all(line.lstrip().startswith("warn") for line in out[1:])
