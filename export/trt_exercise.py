"""rmpe's TensorRT code paths, run against a fake ``tensorrt`` seen through one version's real API
(rmpe.export.trt_api), with the lines of the engine builder and runner that ran.

Every branch of export/tensorrt_build.py and runtime/tensorrt_backend.py that touches TensorRT is
taken here: the three precisions, each build option, timing caches new, reused and mismatched, a
parse and a build failure; engines with one and two profiles, calls split by boxes and by images,
a profile switch, an image too large, no boxes, sidecars matching, mismatching and missing, a
version-compatible engine, a plan TensorRT refuses, and missing packages.
"""

from __future__ import annotations

import json
import sys
import tempfile
import types
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from rmpe.export import trt_fake as fake_tensorrt
from rmpe.export.trt_api import checked_module, patched_modules

KEYPOINTS = 17


def contract_onnx(path: Path, precision: str = "fp32", node_name: str = "", tagged: bool = True) -> Path:
    """A small graph with the pose graph's inputs and outputs (docs/onnx-contract.md) whose outputs
    show which image and box each row came from: keypoint k of a box is its top-left corner plus its
    image's (height, width) plus (k, 2k); every score is the brightest pixel of its image (padding,
    being black, changes nothing). ``precision`` int8 puts a Q/DQ pair on the offsets (exact: they are
    small integers), fp16 stores them in fp16; ``tagged`` writes the precision into the metadata."""
    offsets = np.stack([np.arange(KEYPOINTS), 2 * np.arange(KEYPOINTS)], 1).astype(np.float16 if precision == "fp16" else np.float32)
    nodes = [
        helper.make_node("Cast", ["box_image_index"], ["index"], to=TensorProto.INT64),
        helper.make_node("Cast", ["image_sizes"], ["sizes"], to=TensorProto.FLOAT),
        helper.make_node("Gather", ["sizes", "index"], ["box_sizes"], axis=0),
        helper.make_node("Cast", ["images"], ["pixels"], to=TensorProto.FLOAT, name=node_name),
        helper.make_node("ReduceMax", ["pixels"], ["peaks"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Gather", ["peaks", "index"], ["box_peaks"], axis=0),
        helper.make_node("Slice", ["boxes", "zero", "two", "one"], ["corners"]),
        helper.make_node("Add", ["corners", "box_sizes"], ["anchor"]),
        helper.make_node("Unsqueeze", ["anchor", "one"], ["anchor3"]),
        helper.make_node("Cast", ["offsets"], ["offsets_cast"], to=TensorProto.FLOAT),
        *([helper.make_node("QuantizeLinear", ["offsets_cast", "scale", "zero_point"], ["offsets_q"]),
           helper.make_node("DequantizeLinear", ["offsets_q", "scale", "zero_point"], ["offsets32"])]
          if precision == "int8" else [helper.make_node("Identity", ["offsets_cast"], ["offsets32"])]),
        helper.make_node("Add", ["anchor3", "offsets32"], ["keypoints"]),
        helper.make_node("Unsqueeze", ["box_peaks", "one"], ["peak2"]),
        helper.make_node("Expand", ["peak2", "score_shape"], ["expanded"]),
        helper.make_node("Identity", ["expanded"], ["scores"]),
    ]
    constants = [numpy_helper.from_array(np.array([0], np.int64), "zero"), numpy_helper.from_array(np.array([2], np.int64), "two"),
                 numpy_helper.from_array(np.array([1], np.int64), "one"), numpy_helper.from_array(offsets, "offsets"),
                 numpy_helper.from_array(np.array([1, KEYPOINTS], np.int64), "score_shape")]
    if precision == "int8":
        constants += [numpy_helper.from_array(np.array(1.0, np.float32), "scale"),
                      numpy_helper.from_array(np.array(0, np.int8), "zero_point")]
    graph = helper.make_graph(nodes, "contract", [
        helper.make_tensor_value_info("images", TensorProto.UINT8, ["batch", "height", "width", 3]),
        helper.make_tensor_value_info("image_sizes", TensorProto.INT32, ["batch", 2]),
        helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["boxes", 4]),
        helper.make_tensor_value_info("box_image_index", TensorProto.INT32, ["boxes"]),
    ], [helper.make_tensor_value_info("keypoints", TensorProto.FLOAT, ["boxes", KEYPOINTS, 2]),
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["boxes", KEYPOINTS])], constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in {**({"precision": precision} if tagged else {}), "max_boxes": "8", "model_name": "contract"}.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


def expected(feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """What :func:`contract_onnx`'s graph returns for ``feeds``, computed in numpy."""
    index = feeds["box_image_index"].astype(np.int64)
    anchor = feeds["boxes"][:, :2] + feeds["image_sizes"][index].astype(np.float32)
    offsets = np.stack([np.arange(KEYPOINTS), 2 * np.arange(KEYPOINTS)], 1).astype(np.float32)
    peaks = feeds["images"].reshape(len(feeds["images"]), -1).max(axis=1).astype(np.float32)
    return anchor[:, None, :] + offsets[None], np.repeat(peaks[index][:, None], KEYPOINTS, 1)


def random_feeds(rng: np.random.Generator, heights: list[int], widths: list[int], boxes: int) -> dict[str, np.ndarray]:
    """A graph call: images padded to the largest, each with its own size, and boxes spread over them."""
    count = len(heights)
    images = np.zeros((count, max(heights), max(widths), 3), np.uint8)
    for i, (h, w) in enumerate(zip(heights, widths)):
        images[i, :h, :w] = rng.integers(1, 255, (h, w, 3))
    index = rng.integers(0, count, boxes).astype(np.int32)
    return {"images": images, "image_sizes": np.array([heights, widths], np.int32).T.copy(),
            "boxes": rng.uniform(0, 50, (boxes, 4)).astype(np.float32), "box_image_index": index}


def traced_files() -> tuple[Path, ...]:
    """The files every line of which the exercise runs: the engine builder and the runner."""
    from rmpe.export import tensorrt_build
    from rmpe.runtime import tensorrt_backend

    return Path(tensorrt_build.__file__), Path(tensorrt_backend.__file__)


class LineTrace:
    """The lines of ``files`` that ran while it was active (sys.settrace)."""

    def __init__(self, files: tuple[Path, ...]) -> None:
        self.files = {str(f) for f in files}
        self.lines: set[tuple[str, int]] = set()

    def _trace(self, frame: Any, event: str, arg: Any) -> Any:
        if frame.f_code.co_filename not in self.files:
            return None
        if event == "line":
            self.lines.add((frame.f_code.co_filename, frame.f_lineno))
        return self._trace

    def __enter__(self) -> "LineTrace":
        self._previous = sys.gettrace()
        sys.settrace(self._trace)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.settrace(self._previous)


def executable_lines(path: Path) -> set[int]:
    """Lines of the functions (not the module or class bodies) of ``path`` that hold code."""
    lines: set[int] = set()

    def visit(code: types.CodeType, in_function: bool) -> None:
        if in_function:
            lines.update(line for _, _, line in code.co_lines() if line is not None and line != code.co_firstlineno)
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                visit(const, bool(const.co_flags & 0x02))  # CO_NEWLOCALS: a function, not a class body
    visit(compile(path.read_text(), str(path), "exec"), False)
    return lines


def missed_lines(trace: LineTrace) -> dict[str, list[int]]:
    """Per traced file, the executable lines that did not run."""
    missed = {}
    for name in sorted(trace.files):
        ran = {line for f, line in trace.lines if f == name}
        missed[Path(name).name] = sorted(executable_lines(Path(name)) - ran)
    return missed


def expect_error(kind: type, words: str, run: Callable[[], Any]) -> str:
    """Run ``run``, which must raise ``kind`` with ``words`` in its message; the message."""
    try:
        run()
    except kind as exc:
        if words not in str(exc):
            raise AssertionError(f"expected {words!r} in: {exc}") from None
        return str(exc)
    raise AssertionError(f"expected {kind.__name__} ({words})")


def exercise(description: dict, trace: LineTrace | None = None) -> tuple[set[str], list[str]]:
    """Run every TensorRT path of rmpe against ``description``'s API; (names used, mismatches)."""
    from rmpe.export.tensorrt_build import PRECISIONS, BuildError, BuildOptions, build_engine, tensorrt_available
    from rmpe.runtime.backends import BackendError
    from rmpe.runtime.engine_sidecar import EngineSidecar, sidecar_path
    from rmpe.runtime.tensorrt_backend import TensorRTBackend
    from rmpe.runtime.tensorrt_profiles import EngineProfile

    calls = fake_tensorrt.Calls()
    fake = fake_tensorrt.make_tensorrt(description["version"], calls)
    trt, recorder = checked_module(description, fake)
    cudart = fake_tensorrt.make_cudart(calls)
    cuda = types.ModuleType("cuda")
    bindings = types.ModuleType("cuda.bindings")
    cuda.bindings, bindings.runtime = bindings, cudart
    modules = {"tensorrt": trt, "cuda": cuda, "cuda.bindings": bindings, "cuda.bindings.runtime": cudart}
    rng = np.random.default_rng(0)
    small = EngineProfile((1, 4, 8), (1, 1, 2), (16, 64, 96), (16, 64, 128))
    large = EngineProfile((2, 8, 16), (1, 2, 3), (16, 128, 256), (16, 128, 256))
    logged: list[str] = []
    with tempfile.TemporaryDirectory(prefix="rmpe-trt-exercise-") as tmp, patched_modules(modules), \
            (trace or LineTrace(())), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        work = Path(tmp)
        assert tensorrt_available()
        cache = work / "timing.cache"
        plans = {}
        for precision, options in {
            "fp32": BuildOptions([small], log=logged.append, timing_cache=cache),
            "fp16": BuildOptions([small, large], workspace_mib=256, opt_level=5, hardware_compat="ampere+",
                                 timing_cache=cache, log=logged.append),
            "int8": BuildOptions([large], hardware_compat="same-cc", version_compatible=True,
                                 timing_cache=work / "other.cache", log=logged.append),
        }.items():
            if precision == "int8":
                (work / "other.cache").write_bytes(b"other-gpu timings")
            source = contract_onnx(work / f"{precision}.onnx", precision)
            plans[precision] = work / f"{precision}.plan"
            sidecar = build_engine(source, plans[precision], options)
            assert sidecar.precision == precision and sidecar_path(plans[precision]).is_file()
        assert [b["strongly_typed"] for b in calls.builds] == [int(description["version"].split(".")[0]) >= 11, True, True]
        expect_error(BuildError, "refused it", lambda: build_engine(contract_onnx(work / "r.onnx", node_name="reject"),
                                                                     work / "r.plan", BuildOptions([small], log=logged.append)))
        expect_error(BuildError, "could not build", lambda: build_engine(
            contract_onnx(work / "u.onnx", node_name="unbuildable"), work / "u.plan", BuildOptions([small], log=logged.append)))
        expect_error(BuildError, "--hardware-compat", lambda: build_engine(
            work / "fp32.onnx", work / "h.plan", BuildOptions([small], hardware_compat="turing", log=logged.append)))

        two = TensorRTBackend(plans["fp16"])
        assert two.max_boxes == 16 and len(two.profiles) == 2
        for heights, widths, count in (([50], [60], 3), ([50, 40, 30], [60, 20, 90], 40), ([200, 20], [100, 30], 5)):
            feeds = random_feeds(rng, heights, widths, count)
            got = two.run(feeds)
            want = expected(feeds)
            np.testing.assert_allclose(got["keypoints"], want[0])
            np.testing.assert_allclose(got["scores"], want[1])
        assert 1 in calls.profile_switches
        empty = two.run({**random_feeds(rng, [20], [20], 0)})
        assert empty["keypoints"].shape == (0, KEYPOINTS, 2)
        expect_error(BackendError, "--profile", lambda: two.run(random_feeds(rng, [300], [40], 2)))
        expect_error(BackendError, "missing inputs", lambda: two.run({"images": np.zeros((1, 20, 20, 3), np.uint8)}))
        two.close()
        two.close()

        TensorRTBackend(plans["int8"]).close()
        assert calls.host_code_allowed[-1] is True

        plan = plans["fp32"]
        side = EngineSidecar.read(plan)
        replace(side, tensorrt="9.0.0").write(plan)
        expect_error(BackendError, "this is TensorRT", lambda: TensorRTBackend(plan))
        replace(side, gpu=replace(side.gpu, name="Other GPU")).write(plan)
        TensorRTBackend(plan).close()
        plan.with_name("fp32.onnx").write_bytes(b"changed")
        TensorRTBackend(plan).close()
        sidecar_path(plan).write_text("{not json")
        expect_error(BackendError, "not an rmpe engine sidecar", lambda: TensorRTBackend(plan))
        sidecar_path(plan).unlink()
        (work / "fp32.json").write_text(json.dumps({"keypoint_names": ["nose"]}))
        bare = TensorRTBackend(plan)
        assert bare.metadata == {"keypoint_names": '["nose"]'}
        expect_error(BackendError, "MODEL.onnx", lambda: bare.run(random_feeds(rng, [300], [300], 1)))
        bare.close()
        garbage = work / "garbage.plan"
        garbage.write_bytes(b"not a plan")
        expect_error(BackendError, "could not deserialize", lambda: TensorRTBackend(garbage))
        other = onnx.load(str(work / "fp16.onnx"))
        other.graph.input[2].name = "rois"
        for node in other.graph.node:
            node.input[:] = ["rois" if i == "boxes" else i for i in node.input]
        fake_tensorrt.write_plan(work / "other.plan", [{"rois": [(1, 4)] * 3}], other.SerializeToString())
        expect_error(BackendError, "not an rmpe pose engine", lambda: TensorRTBackend(work / "other.plan"))
        for untagged in PRECISIONS:
            build_engine(contract_onnx(work / f"bare-{untagged}.onnx", untagged, tagged=False), work / "bare.plan",
                         BuildOptions([small], log=logged.append))
            assert EngineSidecar.read(work / "bare.plan").precision == untagged
        calls.failing.add("add_optimization_profile")
        expect_error(BuildError, "refused the profile", lambda: build_engine(
            work / "fp16.onnx", work / "p.plan", BuildOptions([small], log=logged.append)))
        calls.failing.add("cudaMalloc")
        expect_error(BackendError, "CUDA error", lambda: TensorRTBackend(plans["fp16"]).run(random_feeds(rng, [20], [20], 1)))
        for failing, words in (("set_optimization_profile_async", "could not select"), ("set_input_shape", "outside"),
                               ("execute_async_v3", "execution failed")):
            backend = TensorRTBackend(plans["fp16"])
            calls.failing.add(failing)
            expect_error(BackendError, words, lambda: backend.run(random_feeds(rng, [200], [20], 20)))
            backend.close()
        with patched_modules({"tensorrt": None}):
            expect_error(BackendError, "pip install", lambda: TensorRTBackend(plans["fp16"]))
            assert not tensorrt_available()
            expect_error(BuildError, "pip install", lambda: build_engine(work / "fp16.onnx", work / "x.plan",
                                                                         BuildOptions([small], log=logged.append)))
        legacy = types.ModuleType("cuda")
        legacy.cudart = cudart
        with patched_modules({"cuda": legacy, "cuda.bindings": None, "cuda.bindings.runtime": None}):
            TensorRTBackend(plans["fp16"]).close()
        with patched_modules({"cuda": types.ModuleType("cuda"), "cuda.bindings": None, "cuda.bindings.runtime": None}):
            expect_error(BackendError, "cuda-python", lambda: TensorRTBackend(plans["fp16"]))
    assert any("other TensorRT or GPU" in line for line in logged), logged
    assert any("no sidecar" in str(w.message) for w in caught) and any("changed since" in str(w.message) for w in caught)
    return recorder.used, recorder.violations
