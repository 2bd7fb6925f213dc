"""Offline TensorRT check: what TensorRT's ONNX parser rejects or mishandles in an ONNX graph, found
without TensorRT or a GPU.

Each rule is one function over the graph; the parser's operator list (names and tensor types) is
data, ``trt_parser_ops.json``, with the onnx-tensorrt release it was taken from. ``rmpe-export``
runs the check on every file it writes and prints the verdict; ``rmpe-export --check FILE.onnx``
runs it alone.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

OPS_FILE = Path(__file__).with_name("trt_parser_ops.json")
FAIL, WARN = "fail", "warn"
SHOWN_PER_RULE = 4  # findings printed per rule; the rest are counted
DEFAULT_MAX_SIDE = 4096  # largest image side of the default engine profile (tensorrt_build.DEFAULT_SIZE)

TYPE_NAMES = {
    TensorProto.FLOAT: "FP32", TensorProto.FLOAT16: "FP16", TensorProto.BFLOAT16: "BF16", TensorProto.DOUBLE: "DOUBLE",
    TensorProto.INT32: "INT32", TensorProto.INT64: "INT64", TensorProto.INT8: "INT8", TensorProto.UINT8: "UINT8",
    TensorProto.BOOL: "BOOL", TensorProto.INT4: "INT4", TensorProto.FLOAT8E4M3FN: "FP8", TensorProto.FLOAT4E2M1: "FP4",
    TensorProto.INT16: "INT16", TensorProto.UINT16: "UINT16", TensorProto.UINT32: "UINT32", TensorProto.UINT64: "UINT64",
    TensorProto.STRING: "STRING",
}
FLOATS = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE}
INTEGERS = {TensorProto.INT32, TensorProto.INT64, TensorProto.INT16, TensorProto.INT8}
QUANTISED = {TensorProto.INT8, TensorProto.INT4, TensorProto.FLOAT8E4M3FN, TensorProto.FLOAT4E2M1}

# inputs whose values are shapes: TensorRT computes them at shape-inference time, from input shapes only
SHAPE_INPUTS = {
    "Reshape": (1,), "Expand": (1,), "Tile": (1,), "ConstantOfShape": (0,), "Range": (0, 1, 2),
    "Slice": (1, 2, 3, 4), "Resize": (2, 3), "Upsample": (1,), "TopK": (1,), "Pad": (1,), "OneHot": (1,),
    "Squeeze": (1,), "Unsqueeze": (1,), "Split": (1,),
}
# inputs TensorRT needs as build-time constants (an initializer or a Constant node)
CONSTANT_INPUTS = {"CumSum": (1,), "TopK": (1,), "OneHot": (1,),
                   **{op: (1,) for op in ("ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax",
                                          "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum", "ReduceSumSquare")}}
DATA_DEPENDENT_OPS = {"NonZero", "NonMaxSuppression", "Unique", "Compress"}  # output shapes follow tensor values
DATA_INPUT = {"Where": 1}  # the input whose type the parser's type list is about (default 0)
UNTYPED_OPS = {"ConstantOfShape", "Cast", "CastLike", "QuantizeLinear", "DequantizeLinear", "Constant"}
GATHERS = {"Gather", "GatherElements", "GatherND"}
RESIZE_TRANSFORMS = {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"}
RESIZE_MODES = {"nearest", "linear"}
RESIZE_NEAREST = {"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"}
HINTS = {
    "AffineGrid": "build the sampling grid from a constant base grid and a MatMul",
}


@dataclass(frozen=True)
class Finding:
    """One problem: the rule that found it, fail or warn, the node (or tensor) and what is wrong."""

    rule: str
    level: str
    where: str
    message: str


@dataclass
class Verdict:
    """Every finding of the check on one graph, and the parser list it was checked against."""

    source: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def failures(self) -> list[Finding]:
        return [f for f in self.findings if f.level == FAIL]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == WARN]

    @property
    def failed(self) -> bool:
        return bool(self.failures)

    def title(self) -> str:
        """What was checked against what, ending in ': ' before the verdict."""
        ops = parser_ops()
        return (f"TensorRT check of {self.source} (parser operator list of TensorRT {ops['tensorrt']}, "
                f"opsets {ops['opset'][0]}-{ops['opset'][1]}): ")

    def lines(self) -> list[str]:
        """The verdict, then each rule's findings (a few per rule, the rest counted)."""
        head = self.title() + (f"FAILS, {len(self.failures)} problem(s)" if self.failed else "passes")
        head += f", {len(self.warnings)} warning(s)" if self.warnings else ""
        out = [head]
        for level in (FAIL, WARN):
            by_rule: dict[str, list[Finding]] = {}
            for finding in self.findings:
                if finding.level == level:
                    by_rule.setdefault(finding.rule, []).append(finding)
            for rule, found in by_rule.items():
                out += [f"  {level} [{rule}] {f.where}: {f.message}" for f in found[:SHOWN_PER_RULE]]
                if len(found) > SHOWN_PER_RULE:
                    out.append(f"  {level} [{rule}] ... and {len(found) - SHOWN_PER_RULE} more")
        return out


@lru_cache(maxsize=1)
def parser_ops() -> dict:
    """TensorRT's ONNX parser operator list (trt_parser_ops.json), with its source."""
    return json.loads(OPS_FILE.read_text())


class GraphFacts:
    """What the rules look up: every node (subgraphs included), tensor types and ranks, constants,
    producers, consumers, graph inputs and outputs."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        try:
            inferred = onnx.shape_inference.infer_shapes(model)
        except Exception:  # noqa: BLE001 - shape inference fails on some valid models; declared types remain
            inferred = model
        self.nodes = list(_all_nodes(inferred.graph))
        self.types: dict[str, int] = {}
        self.ranks: dict[str, int] = {}
        for info in _all_value_infos(inferred.graph):
            tensor = info.type.tensor_type
            if tensor.elem_type:
                self.types[info.name] = tensor.elem_type
            if tensor.HasField("shape"):
                self.ranks[info.name] = len(tensor.shape.dim)
        self.constants: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in _all_initializers(inferred.graph)}
        for node in self.nodes:
            if node.op_type == "Constant" and node.output:
                value = next((a for a in node.attribute if a.name == "value"), None)
                if value is not None:
                    self.constants[node.output[0]] = numpy_helper.to_array(value.t)
        for name, value in self.constants.items():
            self.types.setdefault(name, onnx.helper.np_dtype_to_tensor_dtype(value.dtype))
        self.producer = {out: node for node in self.nodes for out in node.output if out}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in self.nodes:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.inputs = {i.name for i in inferred.graph.input} - set(self.constants)
        self.outputs = {o.name for o in inferred.graph.output}


def _all_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    for node in graph.node:
        yield node
        for attr in node.attribute:
            for sub in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs):
                yield from _all_nodes(sub)


def _subgraphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            for sub in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs):
                yield from _subgraphs(sub)


def _all_value_infos(graph: onnx.GraphProto) -> Iterator[onnx.ValueInfoProto]:
    for sub in _subgraphs(graph):
        yield from sub.input
        yield from sub.output
        yield from sub.value_info


def _all_initializers(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    for sub in _subgraphs(graph):
        yield from sub.initializer


def _where(node: onnx.NodeProto) -> str:
    return f"{node.name or '(unnamed)'} ({node.op_type})"


def _attr(node: onnx.NodeProto, name: str, default):
    for attr in node.attribute:
        if attr.name == name:
            value = onnx.helper.get_attribute_value(attr)
            return value.decode() if isinstance(value, bytes) else value
    return default


def opset_findings(facts: GraphFacts) -> list[Finding]:
    """The default-domain opset must be in the parser's range."""
    low, high = parser_ops()["opset"]
    found = []
    for entry in facts.model.opset_import:
        if entry.domain in ("", "ai.onnx") and not low <= entry.version <= high:
            found.append(Finding("opset", FAIL, "model", f"opset {entry.version} is outside the parser's {low} to {high}"))
    return found


def op_findings(facts: GraphFacts) -> list[Finding]:
    """Every op must be in the parser's supported list; other domains need a plugin."""
    ops = parser_ops()
    found = []
    for node in facts.nodes:
        if node.domain not in ("", "ai.onnx"):
            found.append(Finding("op", FAIL, _where(node), f"op of domain {node.domain!r}: TensorRT needs a plugin for it"))
        elif node.op_type not in ops["supported"]:
            known = "not supported" if node.op_type in ops["unsupported"] else "not in the list"
            hint = f"; {HINTS[node.op_type]}" if node.op_type in HINTS else ""
            found.append(Finding("op", FAIL, _where(node), f"{node.op_type} is {known} of TensorRT's ONNX parser{hint}"))
    return found


def type_findings(facts: GraphFacts) -> list[Finding]:
    """An op's data input must have a type the parser lists for it (uint8 is its own rule; double is cast down)."""
    supported = parser_ops()["supported"]
    found = []
    for node in facts.nodes:
        slot = DATA_INPUT.get(node.op_type, 0)
        if node.op_type not in supported or node.op_type in UNTYPED_OPS or len(node.input) <= slot:
            continue
        kind = facts.types.get(node.input[slot])
        name = TYPE_NAMES.get(kind, str(kind))
        if kind is None or kind == TensorProto.UINT8 or name in supported[node.op_type]:
            continue
        if kind == TensorProto.DOUBLE:
            found.append(Finding("types", WARN, _where(node), "double input: TensorRT casts it down to float"))
        else:
            found.append(Finding("types", FAIL, _where(node),
                                 f"{name} input {node.input[slot]!r}; the parser takes {', '.join(supported[node.op_type])}"))
    return found


def uint8_findings(facts: GraphFacts) -> list[Finding]:
    """UINT8 only at graph inputs and outputs, and only through a Cast (no Shape, Reshape or Gather of uint8)."""
    found = []
    for node in facts.nodes:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue  # uint8 quantisation is the Q/DQ rule's
        is_cast = node.op_type in ("Cast", "CastLike")
        for name in node.input[:1] if is_cast else node.input:
            if facts.types.get(name) == TensorProto.UINT8 and not (is_cast and name in facts.inputs):
                hint = ("take the shape of the cast tensor instead" if node.op_type in ("Shape", "Size")
                        else "cast first: rmpe-export --cast-first")
                found.append(Finding("uint8", FAIL, _where(node), f"reads uint8 tensor {name!r}: TensorRT takes uint8 "
                                     f"only from a graph input straight into a Cast ({hint})"))
        for name in node.output:
            if facts.types.get(name) == TensorProto.UINT8 and not (is_cast and name in facts.outputs):
                found.append(Finding("uint8", FAIL, _where(node),
                                     f"writes uint8 tensor {name!r}: TensorRT has uint8 only at graph inputs and outputs"))
    return found


def qdq_findings(facts: GraphFacts) -> list[Finding]:
    """Q/DQ as TensorRT's explicit quantisation takes it: int8 (or fp8/int4) with zero points 0, no int32 dequantisation."""
    found = []
    for node in facts.nodes:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if node.op_type == "DequantizeLinear" and facts.types.get(node.input[0]) == TensorProto.INT32:
            found.append(Finding("qdq", FAIL, _where(node), f"dequantises int32 {node.input[0]!r} (a quantised bias?); "
                                 "TensorRT has no int32 dequantisation: keep biases in float"))
        zero_name = node.input[2] if len(node.input) > 2 and node.input[2] else None
        if zero_name is None:
            if node.op_type == "QuantizeLinear" and _attr(node, "output_dtype", 0) in (0, TensorProto.UINT8):
                found.append(Finding("qdq", FAIL, _where(node), "no zero point, so it writes uint8; TensorRT quantises "
                                     "to int8: give it an int8 zero point of 0"))
            continue
        zero = facts.constants.get(zero_name)
        if zero is None:
            found.append(Finding("qdq", FAIL, _where(node), f"zero point {zero_name!r} is not a constant"))
            continue
        kind = onnx.helper.np_dtype_to_tensor_dtype(zero.dtype)
        if kind not in QUANTISED:
            found.append(Finding("qdq", FAIL, _where(node), f"{TYPE_NAMES.get(kind, kind)} zero point: TensorRT "
                                 "quantises to int8 (or fp8, int4) only"))
        elif np.any(zero.astype(np.float32) != 0):
            found.append(Finding("qdq", FAIL, _where(node), f"zero point {zero.ravel()[:4].tolist()} is not 0: "
                                 "TensorRT's quantisation is symmetric"))
    return found


def resize_findings(facts: GraphFacts) -> list[Finding]:
    """Resize modes, coordinate transforms and nearest modes the parser implements; no antialiasing."""
    found = []
    for node in (n for n in facts.nodes if n.op_type == "Resize"):
        mode = _attr(node, "mode", "nearest")
        transform = _attr(node, "coordinate_transformation_mode", "half_pixel")
        nearest = _attr(node, "nearest_mode", "round_prefer_floor")
        problems = []
        if mode not in RESIZE_MODES:
            problems.append(f"mode {mode!r} (TensorRT: {', '.join(sorted(RESIZE_MODES))})")
        if transform not in RESIZE_TRANSFORMS:
            problems.append(f"coordinate_transformation_mode {transform!r}")
        if mode == "nearest" and nearest not in RESIZE_NEAREST:
            problems.append(f"nearest_mode {nearest!r}")
        if _attr(node, "antialias", 0):
            problems.append("antialias")
        if _attr(node, "keep_aspect_ratio_policy", "stretch") != "stretch":
            problems.append(f"keep_aspect_ratio_policy {_attr(node, 'keep_aspect_ratio_policy', '')!r}")
        axes = _attr(node, "axes", None)
        rank = facts.ranks.get(node.input[0])
        if axes is not None and rank is not None and list(axes) != list(range(rank)):
            problems.append(f"axes {list(axes)} (TensorRT resizes all {rank} axes)")
        found += [Finding("resize", FAIL, _where(node), f"unsupported {p}") for p in problems]
    return found


def gridsample_findings(facts: GraphFacts) -> list[Finding]:
    """GridSample only on 4-D inputs (NCHW)."""
    found = []
    for node in (n for n in facts.nodes if n.op_type == "GridSample"):
        rank = facts.ranks.get(node.input[0])
        if rank is None:
            found.append(Finding("gridsample", WARN, _where(node), "input rank unknown: TensorRT takes only 4-D GridSample"))
        elif rank != 4:
            found.append(Finding("gridsample", FAIL, _where(node), f"{rank}-D input: TensorRT takes only 4-D GridSample"))
    return found


def shape_computable(facts: GraphFacts) -> set[str]:
    """Tensors TensorRT can compute from input shapes alone: constants, Shape/Size outputs and what
    is computed from those only."""
    known = set(facts.constants)
    for node in facts.nodes:  # torch.onnx writes nodes in topological order
        if node.op_type in ("Shape", "Size") or (node.input and all(not n or n in known for n in node.input)
                                                  and node.op_type not in DATA_DEPENDENT_OPS):
            known.update(o for o in node.output if o)
    return known


def dynamic_shape_findings(facts: GraphFacts) -> list[Finding]:
    """Shapes must follow input shapes, not tensor values (data-dependent shapes need an output
    allocator the runner does not have), and some inputs must be build-time constants."""
    static = shape_computable(facts)
    found = []
    for node in facts.nodes:
        if node.op_type in DATA_DEPENDENT_OPS:
            found.append(Finding("shape", FAIL, _where(node), "output shape depends on tensor values"))
        for slot in SHAPE_INPUTS.get(node.op_type, ()):
            if slot < len(node.input) and node.input[slot] and node.input[slot] not in static:
                found.append(Finding("shape", FAIL, _where(node), f"shape input {node.input[slot]!r} depends on tensor "
                                     "values, not only on input shapes"))
        for slot in CONSTANT_INPUTS.get(node.op_type, ()):
            if slot < len(node.input) and node.input[slot] and node.input[slot] not in facts.constants:
                found.append(Finding("constant", FAIL, _where(node), f"input {node.input[slot]!r} must be a build-time "
                                     "constant (an initializer or a Constant node)"))
    return found


def fp16_step(magnitude: float) -> float:
    """The spacing of fp16 numbers at ``magnitude``."""
    return 2.0 ** (math.floor(math.log2(max(magnitude, 2.0 ** -14))) - 10)


def float_positions(facts: GraphFacts) -> list[onnx.NodeProto]:
    """Where fp32 positions become gather indices (a Cast from fp32 to an integer, found on the way up
    from each gather's indices through integer tensors), and GridSamples with fp32 grids."""
    found: list[onnx.NodeProto] = [n for n in facts.nodes if n.op_type == "GridSample"
                                   and facts.types.get(n.input[1]) == TensorProto.FLOAT]
    seen: set[str] = set()
    for gather in (n for n in facts.nodes if n.op_type in GATHERS):
        stack = [gather.input[1]]
        while stack:
            name = stack.pop()
            node = facts.producer.get(name)
            if node is None or name in seen or node.op_type in ("Shape", "Size"):
                continue
            seen.add(name)
            if node.op_type == "Cast" and facts.types.get(node.input[0]) == TensorProto.FLOAT:
                found.append(node)
            else:
                stack.extend(i for i in node.input if i and facts.types.get(i) in INTEGERS)
    return found


def fp16_grid_findings(facts: GraphFacts, max_side: int = DEFAULT_MAX_SIDE) -> list[Finding]:
    """Warn where a weakly typed TensorRT 10 fp16 build (BuilderFlag.FP16, trtexec --fp16) may move the
    fp32 arithmetic of sampling positions to fp16, whose steps at image coordinates are whole pixels."""
    nodes = float_positions(facts)
    if not nodes:
        return []
    return [Finding("fp16-grid", WARN, _where(nodes[0]),
                    f"this and {len(nodes) - 1} more nodes turn fp32 positions into gather indices; a TensorRT 10 "
                    "build with BuilderFlag.FP16 (trtexec --fp16) may compute those positions in fp16, whose steps at "
                    f"image coordinates up to {max_side} px are {fp16_step(max_side):g} px: build fp16 engines strongly "
                    "typed from an fp16 export (rmpe-export --fp16 --engine), which keeps them fp32")]


RULES = (opset_findings, op_findings, type_findings, uint8_findings, qdq_findings, resize_findings,
         gridsample_findings, dynamic_shape_findings)


def check_model(model: onnx.ModelProto, source: str = "model", max_side: int = DEFAULT_MAX_SIDE) -> Verdict:
    """Run every rule over ``model``; ``max_side`` is the largest image side the engine will take."""
    facts = GraphFacts(model)
    findings = [f for rule in RULES for f in rule(facts)]
    return Verdict(source, findings + fp16_grid_findings(facts, max_side))


def check_file(path: Path, max_side: int = DEFAULT_MAX_SIDE) -> Verdict:
    """:func:`check_model` of the ONNX file at ``path``; ``ValueError`` (one line) when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types for a file that is not ONNX
        raise ValueError(f"{path}: not an ONNX model ({str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__})") from None
    return check_model(model, path.name, max_side)
