"""The TensorRT part of ``rmpe-export``: the offline check of every export, ``--check FILE.onnx``,
``--engine`` (build ``NAME.plan`` after exporting), ``--build-engine FILE.onnx`` and
``--trt-api-check`` (rmpe's TensorRT code against the real bindings of TensorRT 10 and 11)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import onnx

from rmpe.export.tensorrt_build import (DEFAULT_OPT_LEVEL, HARDWARE_LEVELS, OPT_LEVELS, BuildError, BuildOptions,
                                        build_engine, tensorrt_available)
from rmpe.export.trt_check import check_file
from rmpe.runtime.engine_sidecar import sidecar_path
from rmpe.runtime.tensorrt_profiles import EngineProfile, ProfileError, default_profile, parse_profile

PROG = "rmpe-export"
DEFAULT_MAX_BOXES = 64  # rmpe-export --max-boxes default, for files without metadata


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """rmpe-export's TensorRT flags."""
    group = parser.add_argument_group("TensorRT (engines need rmpe[trt] and an NVIDIA GPU; the check needs neither)")
    group.add_argument("--engine", action=argparse.BooleanOptionalAction, default=None,
                       help="also build NAME.plan (+ NAME.plan.json) from the export with TensorRT; implies --cast-first "
                       "(default: with --fp16 or --int8 when TensorRT and a GPU are present)")
    group.add_argument("--build-engine", type=Path, metavar="FILE.onnx",
                       help="only build an engine from an exported FILE.onnx (e.g. on the machine that runs it)")
    group.add_argument("--engine-out", type=Path, metavar="PLAN", help="--build-engine's plan (default: FILE.plan)")
    group.add_argument("--check", type=Path, metavar="FILE.onnx",
                       help="only run the offline TensorRT check on FILE.onnx; exit status 1 when it fails")
    group.add_argument("--trt-api-check", action="store_true",
                       help="only check rmpe's TensorRT code against the real Python bindings of TensorRT 10.x and 11.x "
                       "(wheels from make install or pip download; needs a C compiler, no TensorRT, no GPU)")
    group.add_argument("--profile", action="append", metavar="SPEC",
                       help="an optimisation profile, boxes=MIN:OPT:MAX,images=MIN:OPT:MAX,size=HxW:HxW:HxW (parts left "
                       "out: boxes=1:16:MAX_BOXES, images=1:1:4, size=16x16:1080x1920:4096x4096); repeat for more "
                       "profiles, the runner picks the tightest that holds each call")
    group.add_argument("--workspace", type=int, metavar="MiB", help="TensorRT workspace limit (default: TensorRT's, the GPU's memory)")
    group.add_argument("--trt-opt-level", type=int, default=DEFAULT_OPT_LEVEL, metavar="N",
                       help="builder optimisation level, 0 (fastest build) to 5 (default: %(default)s)")
    group.add_argument("--timing-cache", type=Path, metavar="FILE",
                       help="tactic timing cache, read and updated (default: one per TensorRT version and GPU kind in "
                       "~/.cache/rmpe/tensorrt)")
    group.add_argument("--hardware-compat", choices=list(HARDWARE_LEVELS), default="none",
                       help="run the engine on other GPUs: ampere+ (any Ampere or newer), same-cc (same compute "
                       "capability); slower engines (default: %(default)s)")
    group.add_argument("--version-compat", action="store_true",
                       help="an engine later TensorRT versions of the same major version run (lean runtime inside)")


def argument_problem(args: argparse.Namespace) -> str | None:
    """The first TensorRT flag that cannot be used, as a one-line message."""
    try:
        profiles_from(args, DEFAULT_MAX_BOXES)
    except ProfileError as exc:
        return f"--profile {exc}"
    if args.trt_opt_level not in OPT_LEVELS:
        return f"--trt-opt-level {args.trt_opt_level}: choose {OPT_LEVELS.start} to {OPT_LEVELS.stop - 1}"
    if args.workspace is not None and args.workspace < 1:
        return f"--workspace {args.workspace}: must be at least 1 MiB"
    if args.engine_out is not None and args.build_engine is None:
        return "--engine-out goes with --build-engine FILE.onnx"
    return None


def profiles_from(args: argparse.Namespace, max_boxes: int) -> list[EngineProfile]:
    """The ``--profile`` flags, or the default profile for a model of ``max_boxes``."""
    return [parse_profile(text, max_boxes) for text in args.profile] if args.profile else [default_profile(max_boxes)]


def resolve_engine(args: argparse.Namespace) -> None:
    """Decide ``args.engine`` (auto: with --fp16/--int8 when TensorRT and a GPU are here); an engine's
    export casts the images first, since TensorRT takes uint8 only into a Cast."""
    if args.engine is None:
        args.engine = bool(args.fp16 or args.int8) and tensorrt_available()
    if args.engine and not args.cast_first:
        args.cast_first = True
        print(f"{PROG}: --engine: exporting with --cast-first (TensorRT takes uint8 only from an input into a Cast)")


def print_check(onnx_path: Path, profiles: list[EngineProfile], cpu_form: bool = False) -> bool:
    """Run the offline TensorRT check on ``onnx_path`` and print its verdict; True when it passes.
    ``cpu_form``: the file is an export that gathers uint8 pixels on purpose (ONNX Runtime's form);
    failures of the uint8 rule alone are then reported in one line with the way to TensorRT's form."""
    verdict = check_file(onnx_path, max(max(p.height[2], p.width[2]) for p in profiles))
    lines = verdict.lines()
    if cpu_form and verdict.failed and all(f.rule == "uint8" for f in verdict.failures):
        warnings = [line for line in lines[1:] if line.lstrip().startswith("warn")]
        lines = [verdict.title() + f"the ONNX Runtime form: {len(verdict.failures)} node(s) read the uint8 images, which "
                 "TensorRT takes only into a Cast (gathering uint8 keeps a 4K image's cost on a CPU at that of a 640x480 "
                 "one); nothing else fails; for TensorRT export with --cast-first or --engine"] + warnings
    print("\n".join(lines))
    return not verdict.failed


def build(onnx_path: Path, plan: Path, args: argparse.Namespace, max_boxes: int) -> int:
    """Build ``plan`` from ``onnx_path`` with the flags of ``args``; the exit status."""
    options = BuildOptions(profiles_from(args, max_boxes), args.workspace, args.trt_opt_level, args.timing_cache,
                           args.hardware_compat, args.version_compat)
    try:
        sidecar = build_engine(onnx_path, plan, options)
    except (BuildError, OSError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {plan} ({plan.stat().st_size / 1e6:.1f} MB, TensorRT {sidecar.tensorrt}, {sidecar.precision}, "
          f"{sidecar.gpu.text()}) and {sidecar_path(plan)}")
    return 0


def after_export(onnx_path: Path, args: argparse.Namespace, cpu_form: bool) -> int:
    """Check the file just exported and, with --engine, build its engine; the exit status.
    ``cpu_form``: the file's crop gathers uint8 pixels (exported without --cast-first)."""
    profiles = profiles_from(args, args.max_boxes)
    print_check(onnx_path, profiles, cpu_form)
    return build(onnx_path, onnx_path.with_suffix(".plan"), args, args.max_boxes) if args.engine else 0


def model_max_boxes(path: Path) -> int:
    """The ``max_boxes`` in an ONNX file's metadata (64 without one, or for a file check_file will refuse)."""
    try:
        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        return int(props.get("max_boxes", DEFAULT_MAX_BOXES))
    except Exception:  # noqa: BLE001 - protobuf's parse errors vary; check_file names the file's problem
        return DEFAULT_MAX_BOXES


def runs_alone(args: argparse.Namespace) -> bool:
    """Whether a TensorRT flag asks for work without an export."""
    return bool(args.check or args.build_engine or args.trt_api_check)


def run_alone(args: argparse.Namespace) -> int:
    """``--check FILE.onnx``, ``--build-engine FILE.onnx`` or ``--trt-api-check`` without an export; the exit status."""
    if args.trt_api_check:
        from rmpe.export.trt_api import main as api_check

        return api_check([])
    path = args.check or args.build_engine
    max_boxes = model_max_boxes(path)
    try:
        passed = print_check(path, profiles_from(args, max_boxes))
    except ValueError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    if args.check:
        return 0 if passed else 1
    return build(path, args.engine_out or path.with_suffix(".plan"), args, max_boxes)
