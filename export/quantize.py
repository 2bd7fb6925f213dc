"""int8 export: the pose network quantised by ONNX Runtime's quantiser, crop, STN and decode left in float.

The network (every node torch.onnx names under ``/sppe/``: PoseGraph.sppe, whatever its
architecture) is cut out of the fp32 deploy graph, calibrated on the crops the real crop path makes
from a calibration source, quantised, and put back. Two files come out of one calibration:

- the **TensorRT form** (``NAME.onnx``): QuantizeLinear/DequantizeLinear with int8 symmetric
  activations, per-channel symmetric int8 weights, every zero point 0 and float biases (no int32
  bias dequantisation), which is what TensorRT 11's strongly typed networks take precision from;
- the **ONNX Runtime CPU form** (``NAME-ort-cpu.onnx``): the same network with uint8 asymmetric
  activations. ONNX Runtime's x86 int8 kernels multiply uint8 by int8: it turns int8 activations
  into uint8 ones itself, but a ReLU between two quantised tensors then stays a float
  DequantizeLinear → Relu → QuantizeLinear with layout transposes around it, and its signed int8
  kernels run 20× slower than the uint8 ones (BENCHMARKS.md, "int8"). With uint8 activations the
  quantiser folds every ReLU into the range of the tensor before it.

In both, a batch norm that follows no convolution (the pre-activation blocks' first one) becomes a
1×1 depthwise convolution, quantised like any other: as a float op between quantised tensors it
cost a DequantizeLinear, QuantizeLinear and two layout transposes each. The network's outputs stay
float (the convolution that makes the heatmaps takes int8 inputs and writes float), so the decode's
sub-cell peak fit reads unrounded heatmaps.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from rmpe.runtime.metadata import INPUT_BOX_IMAGE_INDEX, INPUT_BOXES, INPUT_IMAGE_SIZES, INPUT_IMAGES, ModelMetadata

NETWORK_SCOPE = "/sppe/"  # torch.onnx names nodes by module path; PoseGraph.sppe holds the pose network
CALIB_METHODS = ("minmax", "entropy", "percentile")
DEFAULT_CALIB_METHOD = "entropy"  # the best measured AP of the three on two synthetic sets (BENCHMARKS.md, "int8")
CALIB_CROPS = 256  # crops the calibration collects (people, not images)
CALIB_BATCH = 8  # crops per calibration run: histogram calibrators keep every activation of a run in memory
SYNTH_SOURCE = "synth"  # --calib synth: images rendered in memory by rmpe.training.synth
SYNTH_SEED = 7101  # a seed no validation set of BENCHMARKS.md uses
BOX_THRESHOLD = 0.05  # detections kept for calibration, as rmpe-run's --box-thr
MAX_BOXES_PER_CALL = 32


class CalibrationError(ValueError):
    """A calibration source that cannot be used; the message is one line."""


@dataclass(frozen=True)
class Int8Form:
    """One quantised file: where it goes, what its activations are, whether it must obey TensorRT's rules."""

    name: str  # metadata quantization.form
    suffix: str  # appended to the file stem
    activations: str  # "int8" (symmetric, zero point 0) or "uint8" (asymmetric)
    tensorrt: bool


TENSORRT = Int8Form("tensorrt", "", "int8", True)
ORT_CPU = Int8Form("onnxruntime-cpu", "-ort-cpu", "uint8", False)
FORMS = (TENSORRT, ORT_CPU)


@dataclass(frozen=True)
class Int8Export:
    """What :func:`export_int8` wrote: one path per form, the calibration and the layers left in float."""

    paths: dict[str, Path]
    crops: int
    method: str
    float_layers: list[str]


def network_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The pose network's nodes (those torch.onnx named under :data:`NETWORK_SCOPE`)."""
    return [n for n in model.graph.node if n.name.startswith(NETWORK_SCOPE)]


def network_boundary(model: onnx.ModelProto) -> tuple[list[str], list[str]]:
    """Tensors the network reads from the rest of the graph (its crops) and those the rest reads from it."""
    inside = network_nodes(model)
    if not inside:
        raise ValueError(f"the graph has no nodes under {NETWORK_SCOPE}: not an rmpe deploy graph")
    produced = {o for n in inside for o in n.output}
    constants = {i.name for i in model.graph.initializer}
    inputs: list[str] = []
    for node in inside:
        inputs += [i for i in node.input if i and i not in produced and i not in constants and i not in inputs]
    ids = {id(n) for n in inside}
    read_outside = {i for n in model.graph.node if id(n) not in ids for i in n.input} | {o.name for o in model.graph.output}
    outputs = [o for n in inside for o in n.output if o in read_outside]
    return inputs, outputs


def extract_network(model: onnx.ModelProto) -> onnx.ModelProto:
    """The network alone as a model: the crops in, the tensors the decode reads out."""
    inputs, outputs = network_boundary(model)
    inferred = onnx.shape_inference.infer_shapes(model)
    return onnx.utils.Extractor(inferred).extract_model(inputs, outputs)


def batch_norms_as_convolutions(model: onnx.ModelProto) -> int:
    """Replace each batch norm whose input no convolution makes by the 1×1 depthwise convolution it
    equals (scale γ/√(σ²+ε), bias β − μ·scale); returns how many. A lone channel weight quantised
    per channel is exact, so this costs no accuracy."""
    graph = model.graph
    constants = {i.name: i for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    nodes, count = [], 0
    for node in graph.node:
        source = producer.get(node.input[0]) if node.op_type == "BatchNormalization" else None
        if node.op_type != "BatchNormalization" or (source is not None and source.op_type == "Conv") \
                or not all(t in constants for t in node.input[1:5]):
            nodes.append(node)
            continue
        gamma, beta, mean, var = (numpy_helper.to_array(constants[t]).astype(np.float64) for t in node.input[1:5])
        eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
        scale = gamma / np.sqrt(var + eps)
        weight, bias = f"{node.name}/depthwise.weight", f"{node.name}/depthwise.bias"
        graph.initializer.extend([numpy_helper.from_array(scale.reshape(-1, 1, 1, 1).astype(np.float32), weight),
                                  numpy_helper.from_array((beta - mean * scale).astype(np.float32), bias)])
        nodes.append(helper.make_node("Conv", [node.input[0], weight, bias], [node.output[0]], name=f"{node.name}/depthwise",
                                      group=len(scale), kernel_shape=[1, 1]))
        count += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return count


def calibration_scenes(source: str, limit: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(RGB image, xyxy person boxes) pairs from ``source``: a folder with images and a
    ``detections.json`` (COCO results or an AlphaPose detfile), or ``synth`` for synthetic images
    rendered in memory; at most ``limit`` images, each with its boxes scoring at least 0.05."""
    if source == SYNTH_SOURCE:
        yield from synthetic_scenes(limit)
        return
    from rmpe.runtime.boxes import BoxFileError, DetectionFile, clean_boxes, image_ids
    from rmpe.runtime.images import ImageError, find_inputs, load_image

    folder = Path(source)
    if not folder.is_dir():
        raise CalibrationError(f"--calib {source}: not a folder (give a folder with images and detections.json, or 'synth')")
    try:
        detections = DetectionFile(folder / "detections.json")
    except BoxFileError as exc:
        raise CalibrationError(f"--calib {source}: {exc}") from None
    items = find_inputs([str(folder)], recursive=True).items
    if not items:
        raise CalibrationError(f"--calib {source}: no images in the folder")
    for item, image_id in list(zip(items, image_ids([i.name for i in items])))[:limit]:
        boxes = clean_boxes(detections.lookup(item.name, image_id), thr=BOX_THRESHOLD)
        if len(boxes) == 0:
            continue
        try:
            yield load_image(item.path), boxes.xyxy
        except ImageError:
            continue


def synthetic_scenes(limit: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Synthetic images (rmpe.training.synth) with their simulated detections."""
    try:
        from rmpe.training.synth import render_sample
    except ImportError as exc:
        raise CalibrationError(f"--calib synth renders images with rmpe.training (pip install 'rmpe[train]'): {exc}") from None
    for index in range(limit):
        sample = render_sample(SYNTH_SEED, index)
        boxes = [d["bbox"] for d in sample.detections if d["score"] >= BOX_THRESHOLD]
        if boxes:
            xywh = np.asarray(boxes, np.float32)
            yield sample.image, np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)


def record_network_inputs(model: onnx.ModelProto, source: str, crops: int = CALIB_CROPS) -> dict[str, np.ndarray]:
    """The network's input tensors (the crops, and the mirrored crops of a flip-test graph) that the
    fp32 ``model`` makes from ``source``'s images and boxes: at least ``crops`` people, if there are so many."""
    import onnxruntime as ort

    names, _ = network_boundary(model)
    recorder = onnx.ModelProto()
    recorder.CopyFrom(model)
    recorder.graph.output.extend(helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names)
    session = ort.InferenceSession(recorder.SerializeToString(), providers=["CPUExecutionProvider"])
    parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
    count = 0
    for image, boxes in calibration_scenes(source, limit=4 * crops):
        for lo in range(0, len(boxes), MAX_BOXES_PER_CALL):
            chunk = boxes[lo:lo + MAX_BOXES_PER_CALL].astype(np.float32)
            feeds = {INPUT_IMAGES: image[None], INPUT_IMAGE_SIZES: np.array([image.shape[:2]], np.int32),
                     INPUT_BOXES: chunk, INPUT_BOX_IMAGE_INDEX: np.zeros(len(chunk), np.int32)}
            for name, value in zip(names, session.run(names, feeds)):
                parts[name].append(value)
            count += len(chunk)
        if count >= crops:
            break
    if count == 0:
        raise CalibrationError(f"--calib {source}: no person boxes to calibrate on")
    return {n: np.concatenate(v) for n, v in parts.items()}


class CropReader:
    """ONNX Runtime's CalibrationDataReader over recorded network inputs, ``batch`` crops at a time."""

    def __init__(self, inputs: dict[str, np.ndarray], batch: int = CALIB_BATCH) -> None:
        total = len(next(iter(inputs.values())))
        self._batches = iter([{n: v[lo:lo + batch] for n, v in inputs.items()} for lo in range(0, total, batch)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def calibrate(network: Path, inputs: dict[str, np.ndarray], method: str, cache: Path) -> None:
    """Collect ``method``'s ranges of every network tensor over ``inputs`` one batch at a time and
    write them to ``cache`` (ONNX Runtime's calibration cache, which quantize_static reads)."""
    from onnxruntime.quantization import CalibrationMethod, create_calibrator
    from onnxruntime.quantization.calibrate import save_tensors_data

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    calibrator = create_calibrator(network, augmented_model_path=str(cache.with_suffix(".augmented.onnx")),
                                   calibrate_method=methods[method], providers=["CPUExecutionProvider"])
    if method == "minmax":  # keeps only each run's per-tensor minima and maxima
        calibrator.collect_data(CropReader(inputs))
    else:  # histograms grow across calls; each call holds one batch's activations
        for lo in range(0, len(next(iter(inputs.values()))), CALIB_BATCH):
            calibrator.collect_data(CropReader({n: v[lo:lo + CALIB_BATCH] for n, v in inputs.items()}))
    save_tensors_data(calibrator.compute_data(), cache)


def quantize_network(network: Path, cache: Path, form: Int8Form, method: str, float_layers: Sequence[str]) -> onnx.ModelProto:
    """``network`` quantised in ``form`` from the calibration ``cache``: per-channel symmetric int8
    weights, float biases, Q/DQ format; ``float_layers`` (node names) left in float."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    out = network.with_name(f"{network.stem}.{form.name}.onnx")
    with quiet_quantiser():
        quantize_static(str(network), str(out), None, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8 if form.activations == "int8" else QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=methods[method], calibration_cache_path=str(cache),
                        nodes_to_exclude=list(float_layers),
                        extra_options={"ActivationSymmetric": form.activations == "int8", "WeightSymmetric": True,
                                       "QuantizeBias": False})
    model = onnx.load(str(out))
    float_outputs(model)
    if form.tensorrt:
        relu_reads_float(model)
    return model


@contextlib.contextmanager
def quiet_quantiser() -> Iterator[None]:
    """Silence the quantiser's advice to pre-process (the deploy graph's convolutions and batch norms
    are folded by the exporter already) and ONNX Runtime's warnings about the initializers the
    calibration's augmented graph no longer reads, for the duration of a call."""
    import onnxruntime as ort

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    ort.set_default_logger_severity(3)
    try:
        yield
    finally:
        root.setLevel(level)
        ort.set_default_logger_severity(2)  # ONNX Runtime's default: warnings


def _consumers(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    return readers


def _drop_pairs(model: onnx.ModelProto, pairs: list[tuple[onnx.NodeProto, onnx.NodeProto]], rename: dict[str, str]) -> None:
    """Remove Q→DQ ``pairs`` and read ``rename``'s tensors by their new names."""
    dropped = {id(n) for pair in pairs for n in pair}
    kept = [n for n in model.graph.node if id(n) not in dropped]
    for node in kept:
        node.input[:] = [rename.get(i, i) for i in node.input]
    for output in model.graph.output:
        output.name = rename.get(output.name, output.name)
    del model.graph.node[:]
    model.graph.node.extend(kept)


def _is_only_pair(q: onnx.NodeProto, dq: onnx.NodeProto, readers: dict[str, list[onnx.NodeProto]]) -> bool:
    """Whether ``q`` is the only reader of its input and ``dq`` the only reader of ``q``."""
    first, second = readers.get(q.input[0], []), readers.get(q.output[0], [])
    return len(first) == 1 and first[0] is q and len(second) == 1 and second[0] is dq


def float_outputs(model: onnx.ModelProto) -> int:
    """Leave the network's outputs unquantised: a Q→DQ pair in front of a graph output is dropped and
    the float tensor before it takes the output's name. Returns how many."""
    readers = _consumers(model)
    producer = {o: n for n in model.graph.node for o in n.output}
    pairs, rename = [], {}
    for output in model.graph.output:
        dq = producer.get(output.name)
        q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        if q is not None and q.op_type == "QuantizeLinear" and q.input[0] in producer \
                and _is_only_pair(q, dq, readers):
            pairs.append((q, dq))
            rename[q.input[0]] = output.name
    _drop_pairs(model, pairs, rename)
    for node in model.graph.node:
        node.output[:] = [rename.get(o, o) for o in node.output]
    return len(pairs)


def relu_reads_float(model: onnx.ModelProto) -> int:
    """Drop the Q→DQ pair between a convolution and the ReLU that is its only reader (Conv → Relu →
    Q, TensorRT's own fusion pattern); the quantiser's symmetric mode quantises the tensor before
    the ReLU with a range half of which the ReLU then throws away. Returns how many."""
    readers = _consumers(model)
    producer = {o: n for n in model.graph.node for o in n.output}
    pairs, rename = [], {}
    for node in model.graph.node:
        if node.op_type != "Relu":
            continue
        dq = producer.get(node.input[0])
        q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        source = producer.get(q.input[0]) if q is not None and q.op_type == "QuantizeLinear" else None
        if source is not None and source.op_type == "Conv" and _is_only_pair(q, dq, readers):
            pairs.append((q, dq))
            rename[dq.output[0]] = q.input[0]
    _drop_pairs(model, pairs, rename)
    return len(pairs)


def splice_network(full: onnx.ModelProto, network: onnx.ModelProto, replaced: onnx.ModelProto) -> onnx.ModelProto:
    """``full`` with the nodes of ``replaced`` (the extracted float network) swapped for ``network``'s."""
    old = {n.output[0] for n in replaced.graph.node}
    nodes = [n for n in full.graph.node if n.output[0] not in old] + list(network.graph.node)
    merged = onnx.ModelProto()
    merged.CopyFrom(full)
    graph = merged.graph
    del graph.node[:], graph.value_info[:]
    graph.node.extend(topological(nodes))
    used = {i for n in graph.node for i in n.input}
    initializers = {i.name: i for i in full.graph.initializer if i.name in used}
    initializers.update({i.name: i for i in network.graph.initializer if i.name in used})
    del graph.initializer[:]
    graph.initializer.extend(initializers.values())
    return merged


def boundary_renamed(network: onnx.ModelProto, source: onnx.ModelProto, host: onnx.ModelProto) -> onnx.ModelProto:
    """``network`` (cut from ``source``) with its boundary tensors renamed to those of the same
    network in ``host``, an export of the same model with a different crop."""
    names = dict(zip(*(sum(network_boundary(m), []) for m in (source, host)), strict=True))
    renamed = onnx.ModelProto()
    renamed.CopyFrom(network)
    for node in renamed.graph.node:
        node.input[:] = [names.get(i, i) for i in node.input]
        node.output[:] = [names.get(o, o) for o in node.output]
    for value in [*renamed.graph.input, *renamed.graph.output]:
        value.name = names.get(value.name, value.name)
    return renamed


def topological(nodes: list[onnx.NodeProto]) -> list[onnx.NodeProto]:
    """``nodes`` in an order where each comes after the producers of its inputs (stable otherwise)."""
    producer = {o: i for i, n in enumerate(nodes) for o in n.output}
    order, state = [], [0] * len(nodes)  # 0 new, 1 on the stack, 2 placed

    def place(i: int) -> None:
        stack = [(i, iter(nodes[i].input))]
        state[i] = 1
        while stack:
            j, pending = stack[-1]
            for name in pending:
                k = producer.get(name)
                if k is not None and state[k] == 0:
                    state[k] = 1
                    stack.append((k, iter(nodes[k].input)))
                    break
            else:
                stack.pop()
                state[j] = 2
                order.append(nodes[j])

    for i in range(len(nodes)):
        if state[i] == 0:
            place(i)
    return order


def tensorrt_problems(model: onnx.ModelProto) -> list[str]:
    """Where ``model`` breaks the Q/DQ rules TensorRT 11 builds strongly typed int8 networks from:
    int8 quantised types with zero points 0, per-channel weights, no int32 (bias) dequantisation,
    and dequantised tensors read only by the network (crop, STN and decode in float)."""
    constants = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    readers = _consumers(model)
    problems = []
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if len(node.input) < 3 or node.input[2] not in constants:
            problems.append(f"{node.name}: no zero point (QuantizeLinear then writes uint8)")
            continue
        zero = constants[node.input[2]]
        if zero.dtype != np.int8 or zero.any():
            problems.append(f"{node.name}: zero point {zero.dtype} {zero.ravel()[:3].tolist()} (needs int8 0)")
        if node.op_type == "DequantizeLinear" and node.input[0] in constants and constants[node.input[0]].dtype != np.int8:
            problems.append(f"{node.name}: dequantises a {constants[node.input[0]].dtype} constant (a bias?)")
        if node.op_type == "DequantizeLinear":
            outside = [r.name for r in readers.get(node.output[0], []) if not r.name.startswith(NETWORK_SCOPE)]
            if outside:
                problems.append(f"{node.name}: read outside the network by {outside[0]}")
    producer = {o: n for n in model.graph.node for o in n.output}
    for node in model.graph.node:
        weight_dq = producer.get(node.input[1]) if node.op_type == "Conv" else None
        if weight_dq is None or weight_dq.op_type != "DequantizeLinear":  # a float layer
            continue
        scale, weight = constants.get(weight_dq.input[1]), constants.get(weight_dq.input[0])
        if scale is None or weight is None or scale.ndim != 1 or len(scale) != weight.shape[0]:
            problems.append(f"{node.name}: weights not quantised per output channel")
    return problems


def quantised_layers(model: onnx.ModelProto) -> int:
    """How many convolutions read a quantised weight."""
    producer = {o: n for n in model.graph.node for o in n.output}
    return sum(1 for n in model.graph.node if n.op_type == "Conv" and n.input[1] in producer
               and producer[n.input[1]].op_type == "DequantizeLinear")


def export_int8(fp32: Path, out: Path, meta: ModelMetadata, source: str, method: str = DEFAULT_CALIB_METHOD,
                crops: int = CALIB_CROPS, float_layers: Sequence[str] = (), cpu_crop: Path | None = None) -> Int8Export:
    """Quantise the exported fp32 deploy graph ``fp32`` into ``out`` (the TensorRT form) and its
    ``-ort-cpu`` sibling, calibrated with ``method`` on ``crops`` crops from ``source``; each file
    gets ``meta`` with precision int8 and the quantisation recorded, and a JSON sidecar.
    ``cpu_crop``: the same export with the crop that gathers uint8 pixels (ONNX Runtime's faster
    one, which TensorRT rejects), put around the CPU form's network; without it both take ``fp32``'s."""
    if method not in CALIB_METHODS:
        raise CalibrationError(f"unknown calibration method {method!r}; choose one of {', '.join(CALIB_METHODS)}")
    full = onnx.load(str(fp32))
    hosts = {TENSORRT.name: full, ORT_CPU.name: onnx.load(str(cpu_crop)) if cpu_crop else full}
    network = extract_network(full)
    replaced = onnx.ModelProto()
    replaced.CopyFrom(network)
    batch_norms_as_convolutions(network)
    inputs = record_network_inputs(full, source, crops)
    paths = {}
    with tempfile.TemporaryDirectory(prefix="rmpe-int8-") as tmp:
        network_path = Path(tmp) / "network.onnx"
        onnx.save(network, str(network_path))
        cache = Path(tmp) / "calibration.json"
        with quiet_quantiser():
            calibrate(network_path, inputs, method, cache)
        for form in FORMS:
            host = hosts[form.name]
            network_q = quantize_network(network_path, cache, form, method, float_layers)
            if host is not full:
                network_q = boundary_renamed(network_q, full, host)
            quantised = splice_network(host, network_q, replaced)
            if form.tensorrt and (problems := tensorrt_problems(quantised)):
                raise RuntimeError(f"int8 graph breaks TensorRT's Q/DQ rules: {problems[0]} ({len(problems)} problems)")
            path = out.with_name(out.stem + form.suffix + out.suffix)
            form_meta = int8_metadata(meta, form, source, method, len(next(iter(inputs.values()))), float_layers)
            if cpu_crop and not form.tensorrt:
                form_meta = replace(form_meta, crop={**meta.crop, "cast_first": False})
            del quantised.metadata_props[:]
            for key, value in form_meta.to_props().items():
                quantised.metadata_props.add(key=key, value=value)
            onnx.checker.check_model(quantised)
            onnx.save(quantised, str(path))
            form_meta.write_json(path.with_suffix(".json"))
            paths[form.name] = path
    return Int8Export(paths, len(next(iter(inputs.values()))), method, list(float_layers))


def int8_metadata(meta: ModelMetadata, form: Int8Form, source: str, method: str, crops: int,
                  float_layers: Sequence[str]) -> ModelMetadata:
    """``meta`` for an int8 file of ``form``: precision int8 and ``extra.quantization``."""
    quantization = {
        "form": form.name, "activations": f"{form.activations} {'symmetric, zero point 0' if form.activations == 'int8' else 'asymmetric'}",
        "weights": "int8 symmetric per output channel, zero point 0", "bias": "float",
        "calibration": {"method": method, "source": source if source == SYNTH_SOURCE else Path(source).name, "crops": crops},
        "float": ["crop", "stn", "decode", "network outputs"] + list(float_layers),
        "tool": "onnxruntime.quantization (QDQ)",
    }
    return replace(meta, precision="int8", extra={**meta.extra, "quantization": quantization})


def summary(result: Int8Export) -> str:
    """One line about the calibration, for rmpe-export."""
    layers = f"; kept in float: {', '.join(result.float_layers)}" if result.float_layers else ""
    return f"int8: {result.method} calibration on {result.crops} crops{layers}"
