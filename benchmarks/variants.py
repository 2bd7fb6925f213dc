"""The models a latency or parity benchmark compares: the PyTorch graph of a checkpoint and its exports.

``rmpe-bench latency`` and ``rmpe-bench parity`` take a checkpoint (``--checkpoint``/``--config``,
default the bundled model, any registered architecture) and export its fp32, fp16 and int8
variants into a folder with ``rmpe-export``'s own functions; a folder that already holds a
variant's file is reused, so a second run measures the same files. Exported models given by path
join them as further variants.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rmpe.export.graph import PoseGraph

VARIANTS = ("fp32", "fp16", "int8")
CPU_INT8_SUFFIX = "-ort-cpu"  # export/quantize.py: the uint8-activation form ONNX Runtime's CPU kernels run fastest


class VariantError(ValueError):
    """A checkpoint or model that cannot be used; one line."""


@dataclass(frozen=True)
class Variant:
    """One exported model: a label for tables and its file (.onnx, or a TensorRT engine)."""

    label: str
    path: Path

    @property
    def engine(self) -> bool:
        """A TensorRT engine, by the runtime's own suffix rule."""
        from rmpe.runtime.backends import ENGINE_SUFFIXES

        return self.path.suffix.lower() in ENGINE_SUFFIXES


def parse_variants(text: str) -> list[str]:
    """'fp32,int8' → ['fp32', 'int8']; '' or 'none' → [] (only the models given by path)."""
    names = [] if text in ("", "none") else [v.strip() for v in text.split(",")]
    bad = [n for n in names if n not in VARIANTS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown variant {bad[0]!r}; choose from {', '.join(VARIANTS)} (or none)")
    return names


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The checkpoint, variants and export folder options both benchmarks share."""
    parser.add_argument("models", nargs="*", type=Path, metavar="MODEL",
                        help="more models to compare: exported .onnx files (ONNX Runtime) or TensorRT engines "
                        "(.plan, rmpe-export --engine); the same keypoint layout as the checkpoint")
    parser.add_argument("--checkpoint", type=Path, help="the PyTorch reference: rmpe's own checkpoint (its config JSON "
                        "beside it or --config) or an AlphaPose, HRNet, SimpleBaseline or hourglass state dict, "
                        "recognised as rmpe-export recognises it (default: the bundled model)")
    parser.add_argument("--config", type=Path, help="model config JSON (default: the one beside the checkpoint)")
    parser.add_argument("--flip", action="store_true", help="flip test inside the graph, in PyTorch and every export")
    parser.add_argument("--variants", type=parse_variants, default=list(VARIANTS), metavar="V,...",
                        help="exports of the checkpoint to compare: fp32, fp16, int8 (default: all; 'none': only MODEL)")
    parser.add_argument("--export-dir", type=Path, metavar="DIR",
                        help="where the variants are exported (reused when it holds them already; default: a temporary folder)")
    parser.add_argument("--calib", default="synth", metavar="SOURCE",
                        help="int8 calibration source, as rmpe-export --calib (default: %(default)s)")


def load_reference(checkpoint: Path | None, config: Path | None, flip: bool) -> tuple[PoseGraph, str]:
    """The checkpoint's PyTorch deploy graph (eval mode) and its sha256: rmpe's own model or another
    project's checkpoint (AlphaPose, HRNet, SimpleBaseline, hourglasses), as rmpe-export loads it."""
    from rmpe.export.checkpoint import CheckpointError
    from rmpe.export.cli import load_model

    try:
        graph, sha, _ = load_model(checkpoint, config, flip)
        return graph, sha
    except (CheckpointError, ValueError, OSError) as exc:
        raise VariantError(str(exc)) from None


def export_variants(graph: PoseGraph, sha: str, names: list[str], folder: Path, calib: str) -> list[Variant]:
    """``names``' exports of ``graph`` under ``folder`` (NAME/model.onnx), made as rmpe-export makes
    them unless the file is there already; int8 runs as its ONNX Runtime CPU form."""
    from rmpe.export.onnx_export import export_onnx, fp16_copy, fp16_metadata, metadata_for
    from rmpe.export.quantize import CalibrationError, export_int8

    variants = []
    for name in names:
        path = folder / name / "model.onnx"
        run_path = path.with_name(f"model{CPU_INT8_SUFFIX}.onnx") if name == "int8" else path
        if not run_path.is_file():
            meta = metadata_for(graph, "fp16" if name == "fp16" else "fp32", sha, 64, graph.config.name)
            exported = fp16_copy(graph) if name == "fp16" else graph
            export_onnx(exported, path, fp16_metadata(meta) if name == "fp16" else meta)
            if name == "int8":
                try:
                    export_int8(path, path, meta, calib)
                except CalibrationError as exc:
                    raise VariantError(str(exc)) from None
        variants.append(Variant(f"onnxruntime {name}", run_path))
    return variants


def given_models(paths: list[Path]) -> list[Variant]:
    """Models named on the command line, checked to exist."""
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise VariantError(f"no such model: {', '.join(missing)}")
    variants = [Variant(f"onnxruntime {p}", p) for p in paths]
    return [Variant(f"tensorrt {v.path}", v.path) if v.engine else v for v in variants]
