"""`rmpe-export`: checkpoint → self-contained ONNX (+ JSON sidecar), verified against PyTorch."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from rmpe.export import sources, tensorrt_cli
from rmpe.export.checkpoint import CheckpointError, config_path_for, load_graph, load_weights, read_state_dict
from rmpe.export.config import MAX_INPUT, MIN_INPUT, ModelConfig
from rmpe.export.graph import CROP_TAPS, PoseGraph
from rmpe.export.onnx_export import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET, export_onnx, fp16_copy, fp16_metadata, metadata_for
from rmpe.export.parity import FP32_MAX_FRACTION, FP32_TOLERANCE_PX, compare
from rmpe.export.quantize import CALIB_METHODS, DEFAULT_CALIB_METHOD, CalibrationError, Int8Export, export_int8, summary
from rmpe.runtime.engine_sidecar import sha256_of
from rmpe.runtime.keypoints import LAYOUTS
from rmpe.runtime.metadata import ModelMetadata

EPILOG = """examples:
  rmpe-export                                  # the bundled default model → rmpe-model/model.onnx
  rmpe-export --out m --flip                   # with flip test inside the graph
  rmpe-export --fp16 --out m16                 # fp16 weights and convolutions
  rmpe-export --int8 --calib synth --out m8    # int8 network: m8/model.onnx (TensorRT Q/DQ) + model-ort-cpu.onnx
  rmpe-export --checkpoint runs/x/best.safetensors --out m --max-boxes 32
  rmpe-export --checkpoint hg.pth --config hg.json --input-size 256x192

other projects' checkpoints (architecture, options and keypoint layout read from the state dict):
  rmpe-export --checkpoint fast_res50_256x192.pth --out fastpose            # AlphaPose FastPose, COCO 17
  rmpe-export --checkpoint halpe26_fast_res50_256x192.pth --out halpe       # Halpe 26 (26 heatmaps)
  rmpe-export --checkpoint fast_dcn_res50_256x192.pth \
              --config configs/coco/resnet/256x192_res50_lr1e-3_1x.yaml    # an AlphaPose YAML names the model
  rmpe-export --checkpoint pose_hrnet_w32_256x192.pth --out hrnet           # leoxiaobin HRNet (ImageNet mean/std)
  rmpe-export --checkpoint hrnet_w32_256x192.pth --conventions alphapose    # AlphaPose's HRNet: same keys, its input
  rmpe-export --checkpoint pose_resnet_50_256x192.pth.tar --out sb          # microsoft SimpleBaseline (BGR input)
  rmpe-export --checkpoint checkpoint.pth.tar --out hg8                     # princeton-vl or bearpaw hourglass, MPII 16
  rmpe-export --checkpoint fast_res50_256x192.pth --heatmaps --flip         # + raw heatmaps output, flip test

The file written needs only ONNX Runtime (or TensorRT) to run: see docs/onnx-contract.md.
After writing, the file is run in ONNX Runtime and compared with PyTorch; the command exits with
status 1 if more than 1% of fp32 keypoints differ by more than 0.25 px.
"""


def parse_size(text: str) -> tuple[int, int]:
    """'256x192' → (256, 192), height first."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW such as 256x192, got {text!r}") from None
    if not (MIN_INPUT <= h <= MAX_INPUT and MIN_INPUT <= w <= MAX_INPUT):
        raise argparse.ArgumentTypeError(f"each side must be {MIN_INPUT} to {MAX_INPUT} pixels, got {text!r}")
    return h, w


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rmpe-export", description="Export an RMPE pose model (STN + stacked hourglass + decode + SDTN) to one ONNX file.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="rmpe .safetensors (config read from the .json beside it) or a torch .pth state dict; default: the bundled model")
    parser.add_argument("--config", type=Path,
                        help="rmpe model config JSON (overrides the one beside the checkpoint), or an AlphaPose YAML "
                        "(configs/*.yaml: architecture, options, crop size and keypoint count from its MODEL and DATA_PRESET)")
    parser.add_argument("--arch", choices=("auto",) + sources.ARCHS, default="auto",
                        help="the checkpoint's architecture (default auto: rmpe's own when a config JSON sits beside it, "
                        "else read from the state dict's keys)")
    parser.add_argument("--layout", choices=tuple(LAYOUTS),
                        help="keypoint layout: names, skeleton, flip pairs, OKS sigmas (default: from the head's channel "
                        "count: 17 coco17, 26 halpe26, 16 mpii16)")
    parser.add_argument("--conventions", choices=tuple(sources.CONVENTIONS),
                        help="pre-processing of the project that trained an AlphaPose/HRNet/SimpleBaseline checkpoint "
                        "(default: alphapose for AlphaPose configs and preact. keys, else hrnet or simplebaseline; "
                        "docs/onnx-contract.md, 'Conventions')")
    parser.add_argument("--heatmaps", action="store_true",
                        help="add the network's raw heatmaps (boxes, K, h, w) as a third output, to compare with the "
                        "source framework tensor by tensor")
    parser.add_argument("--out", type=Path, default=Path("rmpe-model"), help="output folder for model.onnx and model.json (default: %(default)s)")
    parser.add_argument("--name", default="model", help="file name stem inside --out (default: %(default)s)")
    parser.add_argument("--fp16", action="store_true", help="fp16 weights and convolutions; inputs, outputs, grids and decode stay fp32")
    parser.add_argument("--int8", action="store_true",
                        help="int8 pose network (crop, STN and decode stay float), calibrated on --calib: NAME.onnx follows "
                        "TensorRT's Q/DQ rules (int8 symmetric, zero points 0, float biases), NAME-ort-cpu.onnx has uint8 "
                        "activations for ONNX Runtime's CPU kernels (the faster one there)")
    parser.add_argument("--calib", metavar="SOURCE",
                        help="--int8 calibration crops: a folder with images and detections.json (COCO results or an "
                        "AlphaPose detfile), or 'synth' for synthetic images")
    parser.add_argument("--calib-method", choices=CALIB_METHODS, default=DEFAULT_CALIB_METHOD,
                        help="--int8 activation ranges (default: %(default)s, the best measured AP: BENCHMARKS.md)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (default: %(default)s; 16 to 20)")
    parser.add_argument("--input-size", type=parse_size, metavar="HxW", help="SPPE crop size, multiples of the model's stride (default: from the config)")
    parser.add_argument("--max-boxes", type=int, default=64, help="largest box count per call, recorded for TensorRT profiles (default: %(default)s)")
    parser.add_argument("--flip", action="store_true", help="flip test inside the graph (twice the SPPE work)")
    parser.add_argument("--crop-taps", type=int, default=CROP_TAPS, metavar="T",
                        help="T×T point samples per crop pixel, spread over its footprint, so that people larger than the "
                        "crop are box-filtered, not aliased (default: %(default)s; 8 keeps keypoints on a 4x upscaled "
                        "photo within 0.5 px (median) of the original's at about 2.5x the time: BENCHMARKS.md; 0: one exact "
                        "bilinear sample per crop pixel, like the training crops, no anti-aliasing)")
    parser.add_argument("--cast-first", action="store_true",
                        help="cast the whole image to float before the crops are gathered (TensorRT takes uint8 only at "
                        "the graph's inputs; ONNX Runtime is faster without it on large images)")
    tensorrt_cli.add_arguments(parser)
    return parser


def is_yaml(path: Path | None) -> bool:
    return path is not None and path.suffix.lower() in (".yaml", ".yml")


def load_model(checkpoint: Path | None, config: Path | None = None, flip: bool = False,
               input_size: tuple[int, int] | None = None, arch: str = "auto", layout: str | None = None,
               conventions: str | None = None) -> tuple[PoseGraph, str, str | None]:
    """The graph to export, its checkpoint's sha256, and a line saying what was imported (None: rmpe's own model).

    rmpe's own checkpoints come with a config JSON (beside it or ``--config``); any other state dict
    is another project's, recognised by its keys (export/sources.py) unless ``--arch`` names it.
    """
    yaml_config = config if is_yaml(config) else None
    source_flags = arch != "auto" or layout or conventions or yaml_config
    own = checkpoint is None or (config and not yaml_config) or (
        not source_flags and config_path_for(checkpoint).is_file())
    if own:
        if source_flags:
            raise ValueError("--arch, --layout, --conventions and an AlphaPose YAML apply to other projects' "
                             "checkpoints, not to rmpe's own model and its config JSON")
        model_config = ModelConfig.load(config) if config else None
        graph, sha = load_graph(checkpoint, model_config, flip_test=flip, input_size=input_size)
        return graph, sha, None
    where = str(checkpoint)
    state = read_state_dict(checkpoint)
    if not source_flags and sources.detect_arch(state) is None:
        try:
            graph, sha = load_graph(checkpoint, None, flip_test=flip, input_size=input_size)
        except CheckpointError as exc:
            raise CheckpointError(f"{exc} (not an AlphaPose, HRNet, SimpleBaseline or hourglass checkpoint either: "
                                  f"name its architecture with --arch)") from None
        return graph, sha, None
    imported = sources.import_state(state, where, arch, layout, conventions, yaml_config, input_size)
    graph = PoseGraph(imported.config, flip_test=flip)
    load_weights(graph, imported.state, where)
    return graph.eval(), sha256_of(checkpoint), imported.summary()


def export_int8_forms(graph: PoseGraph, onnx_path: Path, meta: ModelMetadata, args: argparse.Namespace) -> Int8Export:
    """Quantise the cast-first fp32 export at ``onnx_path`` into TensorRT's int8 form there and the
    CPU form beside it, the CPU form around the crop that gathers uint8 (unless --cast-first)."""
    with tempfile.TemporaryDirectory(prefix="rmpe-int8-") as tmp:
        cpu_crop = None
        if not args.cast_first:
            cpu_crop = Path(tmp) / "uint8-crop.onnx"
            graph.cast_first = False
            try:
                export_onnx(graph, cpu_crop, meta, args.opset)
            finally:
                graph.cast_first = True
        return export_int8(onnx_path, onnx_path, meta, args.calib, args.calib_method, cpu_crop=cpu_crop)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if problem := tensorrt_cli.argument_problem(args):
        print(f"rmpe-export: {problem}", file=sys.stderr)
        return 2
    if tensorrt_cli.runs_alone(args):
        return tensorrt_cli.run_alone(args)
    if not MIN_OPSET <= args.opset <= MAX_OPSET:
        print(f"rmpe-export: --opset {args.opset}: choose {MIN_OPSET} to {MAX_OPSET} (the graph's ops need {MIN_OPSET}; "
              f"{MAX_OPSET} is the newest torch's TorchScript exporter writes)", file=sys.stderr)
        return 2
    if args.max_boxes < 1:
        print(f"rmpe-export: --max-boxes {args.max_boxes}: must be at least 1", file=sys.stderr)
        return 2
    if args.out.exists() and not args.out.is_dir():
        print(f"rmpe-export: --out {args.out}: is a file; --out names the folder for {args.name}.onnx and {args.name}.json",
              file=sys.stderr)
        return 2
    if not 0 <= args.crop_taps <= 8:
        print(f"rmpe-export: --crop-taps {args.crop_taps}: choose 0 to 8", file=sys.stderr)
        return 2
    if args.int8 and (args.fp16 or not args.calib):
        print("rmpe-export: --int8 " + ("and --fp16 exclude each other" if args.fp16 else
              "needs --calib SOURCE (a folder with images and detections.json, or 'synth')"), file=sys.stderr)
        return 2
    tensorrt_cli.resolve_engine(args)
    try:
        graph, sha, imported = load_model(args.checkpoint, args.config, args.flip, args.input_size, args.arch,
                                          args.layout, args.conventions)
        graph.crop_taps, graph.heatmaps_output = args.crop_taps, args.heatmaps
        graph.cast_first = args.cast_first or args.int8  # int8's NAME.onnx is TensorRT's form
    except (CheckpointError, ValueError, OSError) as exc:
        print(f"rmpe-export: {exc}", file=sys.stderr)
        return 2
    if imported:
        print(imported)
    if not graph.config.trained:
        print("rmpe-export: warning: this model is untrained (seeded random weights); its keypoints mean nothing", file=sys.stderr)
    precision = "fp16" if args.fp16 else "fp32"
    exported = fp16_copy(graph) if args.fp16 else graph
    meta = metadata_for(graph, precision, sha, args.max_boxes, graph.config.name)
    meta = fp16_metadata(meta) if args.fp16 else meta
    onnx_path = args.out / f"{args.name}.onnx"
    export_onnx(exported, onnx_path, meta, args.opset)
    meta.write_json(args.out / f"{args.name}.json")
    size_mb = onnx_path.stat().st_size / 1e6
    print(f"wrote {onnx_path} ({size_mb:.1f} MB, {precision}, opset {args.opset}) and {onnx_path.with_suffix('.json')}")
    if args.int8:
        try:
            result = export_int8_forms(graph, onnx_path, meta, args)
        except CalibrationError as exc:
            print(f"rmpe-export: {exc}", file=sys.stderr)
            return 2
        print(summary(result))
        for path in result.paths.values():
            print(f"wrote {path} (int8) and {path.with_suffix('.json')}")
            print(compare(path, graph).line(f"ONNX Runtime int8 ({path.name}) vs PyTorch fp32"))
        return tensorrt_cli.after_export(onnx_path, args, cpu_form=not graph.cast_first)
    report = compare(onnx_path, graph)
    print(report.line(f"ONNX Runtime {precision} vs PyTorch fp32"))
    if not args.fp16 and report.fraction_over_tol > FP32_MAX_FRACTION:
        print(f"rmpe-export: parity check failed: more than {100 * FP32_MAX_FRACTION:.0f}% of keypoints differ by more than {FP32_TOLERANCE_PX} px", file=sys.stderr)
        return 1
    return tensorrt_cli.after_export(onnx_path, args, cpu_form=not graph.cast_first)


if __name__ == "__main__":
    sys.exit(main())
