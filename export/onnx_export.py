"""Trace the deploy graph to one self-contained ONNX file with its metadata.

torch's TorchScript-based exporter is used (``dynamo=False``): it writes a single file with the
weights inside, keeps our explicit grid construction (no AffineGrid), and handles the dynamic
image count, image size and box count.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, replace
from pathlib import Path

import onnx
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

import rmpe
from rmpe.export.graph import PoseGraph
from rmpe.runtime.metadata import (
    INPUT_BOX_IMAGE_INDEX,
    INPUT_BOXES,
    INPUT_IMAGE_SIZES,
    INPUT_IMAGES,
    OUTPUT_HEATMAPS,
    OUTPUT_KEYPOINTS,
    OUTPUT_SCORES,
    ModelMetadata,
)
from rmpe.runtime.estimator import DEFAULT_NMS
from rmpe.runtime.pose_nms import AlphaPoseParams, RMPEParams

DEFAULT_OPSET = 17
MIN_OPSET, MAX_OPSET = 16, 20  # opset 16 for Gather-based crops' ops; 20 is the TorchScript exporter's newest
FORBIDDEN_OPS = {"AffineGrid"}  # TensorRT's ONNX parser has none


def example_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two images of different sizes and several boxes, to trace every branch of the graph."""
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (2, 96, 128, 3), dtype=torch.uint8, generator=gen)
    sizes = torch.tensor([[96, 128], [80, 100]], dtype=torch.int32)
    boxes = torch.tensor([[8.0, 6.0, 60.0, 90.0], [40.0, 10.0, 120.0, 80.0], [0.0, 0.0, 128.0, 96.0]])
    return images, sizes, boxes, torch.tensor([0, 1, 1], dtype=torch.int32)


DECODES = {"gaussian": "argmax+log_parabola", "softmax": "softmax+argmax+log_parabola"}  # metadata `decode` per heatmap kind


def decode_name(graph: PoseGraph) -> str:
    """The metadata's ``decode``: the heatmap kind's, with the blur's σ first where the graph blurs, or the source's quarter-offset rule."""
    cfg = graph.config
    if cfg.decode != "log_parabola":  # a source's quarter-offset rule (config.DECODES)
        return "argmax+quarter_offset" + ("" if cfg.decode == "quarter_offset" else f"({cfg.decode})")
    if graph.blur is not None:
        return f"blur{cfg.decode_blur:g}+{DECODES[cfg.heatmap]}"
    return DECODES[cfg.heatmap]


def metadata_for(graph: PoseGraph, precision: str, sha256: str, max_boxes: int, name: str) -> ModelMetadata:
    """The metadata an exported file carries (docs/onnx-contract.md)."""
    cfg = graph.config
    return ModelMetadata(
        keypoint_names=list(cfg.keypoint_names),
        skeleton=[list(p) for p in cfg.skeleton],
        flip_pairs=[list(p) for p in cfg.flip_pairs],
        input_size=list(cfg.input_size),
        normalisation={"scale": cfg.pixel_scale, "mean": list(cfg.mean), "std": list(cfg.std)},
        decode=decode_name(graph),
        precision=precision,
        box_enlarge=cfg.box_enlarge,
        flip_test=graph.flip_test,
        max_boxes=max_boxes,
        trained=cfg.trained,
        rmpe_version=rmpe.__version__,
        checkpoint_sha256=sha256,
        model_name=name,
        crop={"taps": graph.crop_taps, "cast_first": graph.cast_first},
        pose_nms={"default": DEFAULT_NMS, "modes": {"rmpe": asdict(RMPEParams()), "alphapose": asdict(AlphaPoseParams())}},
        extra={"architecture": {"arch": cfg.arch, **cfg.network_options, "stn": cfg.stn},
               "conventions": {"channel_order": cfg.channel_order, "pixel_centres": cfg.pixel_centres,
                               "quarter_margin": list(cfg.quarter_margin), "flip_shift": cfg.flip_shift},
               "outputs": [OUTPUT_KEYPOINTS, OUTPUT_SCORES] + ([OUTPUT_HEATMAPS] if graph.heatmaps_output else []),
               "notes": cfg.notes},
    )


def fold_batch_norms(module: nn.Module) -> None:
    """Fold each batch norm that directly follows a convolution in a Sequential into that convolution.

    Done in fp32 before the cast to fp16: the hourglass heads' 1×1 convolutions output values near
    10⁴ that their batch norm brings back to ~1, and in fp16 that subtraction cost heatmap errors
    up to 0.5 (of a unit peak) and 0.008 AP; folded, the largest error is 0.004.
    """
    for seq in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            if isinstance(seq[i], nn.Conv2d) and isinstance(seq[i + 1], nn.BatchNorm2d):
                seq[i] = fuse_conv_bn_eval(seq[i], seq[i + 1])
                seq[i + 1] = nn.Identity()


def to_fp16(graph: PoseGraph) -> PoseGraph:
    """Weights and convolutions of the networks in fp16, batch norms folded into the convolutions
    before the cast; grids, θ and decode stay fp32 (see PoseGraph.run_sub)."""
    fold_batch_norms(graph.eval())
    graph.sppe.half()
    if graph.loc is not None:
        graph.loc.half()
    return graph


def export_onnx(graph: PoseGraph, path: Path, metadata: ModelMetadata, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """Write ``graph`` to ``path`` as one ONNX file (no external data), check it, and stamp metadata."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dynamic = {
        INPUT_IMAGES: {0: "batch", 1: "height", 2: "width"},
        INPUT_IMAGE_SIZES: {0: "batch"},
        INPUT_BOXES: {0: "boxes"},
        INPUT_BOX_IMAGE_INDEX: {0: "boxes"},
        OUTPUT_KEYPOINTS: {0: "boxes"},
        OUTPUT_SCORES: {0: "boxes"},
        OUTPUT_HEATMAPS: {0: "boxes"},
    }
    outputs = [OUTPUT_KEYPOINTS, OUTPUT_SCORES] + ([OUTPUT_HEATMAPS] if graph.heatmaps_output else [])
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph.eval(), example_inputs(), str(path), dynamo=False, opset_version=opset,
            input_names=[INPUT_IMAGES, INPUT_IMAGE_SIZES, INPUT_BOXES, INPUT_BOX_IMAGE_INDEX],
            output_names=outputs, dynamic_axes={k: v for k, v in dynamic.items() if k != OUTPUT_HEATMAPS or k in outputs},
        )
    model = onnx.load(str(path))
    fix_output_shapes(model, metadata.num_keypoints, graph.heatmap_size)
    model.graph.name = metadata.model_name
    model.producer_name, model.producer_version = "rmpe", rmpe.__version__
    for key, value in metadata.to_props().items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    bad = FORBIDDEN_OPS & {node.op_type for node in model.graph.node}
    if bad:
        raise RuntimeError(f"exported graph contains unsupported ops: {sorted(bad)}")
    onnx.save(model, str(path))
    return model


def fix_output_shapes(model: onnx.ModelProto, num_keypoints: int, heatmap_size: tuple[int, int]) -> None:
    """Declare the outputs as [boxes, K, 2], [boxes, K] (and [boxes, K, h, w] heatmaps): the tracer leaves K a symbolic name."""
    fixed = {OUTPUT_KEYPOINTS: ["boxes", num_keypoints, 2], OUTPUT_SCORES: ["boxes", num_keypoints],
             OUTPUT_HEATMAPS: ["boxes", num_keypoints, *heatmap_size]}
    for output in model.graph.output:
        dims = output.type.tensor_type.shape.dim
        del dims[:]
        for value in fixed[output.name]:
            dim = dims.add()
            if isinstance(value, int):
                dim.dim_value = value
            else:
                dim.dim_param = value


FP16_KEPT_FP32 = {
    "inputs and outputs": "the contract's dtypes (docs/onnx-contract.md)",
    "crop": "sampling positions reach 4096 px, where fp16 steps are 4 px",
    "stn theta and grid": "θ composes with the crop transform at image coordinates",
    "decode": "sub-cell peak fit on differences of neighbouring heatmap values",
    "batch norms": "folded into their convolutions in fp32 before the cast: unfolded they cost 0.008 AP "
                   "(BENCHMARKS.md, 'The bundled default model')",
}


def fp16_metadata(meta: ModelMetadata) -> ModelMetadata:
    """``meta`` with ``extra.fp16``: what an fp16 export keeps in fp32 and the measurement behind each."""
    return replace(meta, extra={**meta.extra, "fp16": {"kept_fp32": dict(FP16_KEPT_FP32)}})


def fp16_copy(graph: PoseGraph) -> PoseGraph:
    """A separate fp16 graph, leaving ``graph`` in fp32 as the parity reference."""
    twin = PoseGraph(replace(graph.config), flip_test=graph.flip_test, crop_taps=graph.crop_taps, cast_first=graph.cast_first,
                     heatmaps_output=graph.heatmaps_output)
    twin.load_state_dict(graph.state_dict())
    return to_fp16(twin.eval())
