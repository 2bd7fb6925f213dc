"""TensorRT engines from rmpe's ONNX files: ``rmpe-export --engine`` and ``--build-engine FILE.onnx``.

Precision comes from the ONNX file. TensorRT 11 builds strongly typed networks only (its
``BuilderFlag.FP16``/``INT8`` and INT8 calibrators are gone), so an fp16 export (fp16 casts) or an
int8 export (Q/DQ, zero points 0) is what makes an fp16 or int8 engine. TensorRT 10 builds those
strongly typed too, which keeps the graph's fp32 parts (sampling grids, decode) in fp32, and an fp32
file as a plain network with TF32 off, so that "fp32" means fp32. Each plan gets a sidecar JSON
(``model.plan.json``, rmpe.runtime.engine_sidecar) that the runner checks before it deserialises.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import onnx

import rmpe
from rmpe.runtime.backends import BackendError
from rmpe.runtime.engine_sidecar import HARDWARE_COMPAT, EngineSidecar, sha256_of
from rmpe.runtime.tensorrt_backend import cuda_call, gpu_info, import_tensorrt
from rmpe.runtime.tensorrt_profiles import EngineProfile

PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_OPT_LEVEL = 3  # TensorRT's own default builder optimisation level (0 fastest build .. 5 most tactics)
OPT_LEVELS = range(0, 6)
HARDWARE_LEVELS = dict(zip(HARDWARE_COMPAT, ("NONE", "AMPERE_PLUS", "SAME_COMPUTE_CAPABILITY")))  # enum members


class BuildError(RuntimeError):
    """An engine that cannot be built; the message is one line."""


@dataclass
class BuildOptions:
    """How to build: optimisation profiles, workspace limit (MiB, None: TensorRT's default, the GPU's
    memory), builder optimisation level, timing cache file (None: one per TensorRT version and GPU in
    the user's cache folder), hardware and version compatibility."""

    profiles: list[EngineProfile]
    workspace_mib: int | None = None
    opt_level: int = DEFAULT_OPT_LEVEL
    timing_cache: Path | None = None
    hardware_compat: str = "none"
    version_compatible: bool = False
    log: Callable[[str], None] = field(default=print, repr=False)


def onnx_precision(model: onnx.ModelProto) -> str:
    """fp32, fp16 or int8: the metadata's ``precision``, else what the graph holds (Q/DQ nodes, fp16 weights)."""
    props = {p.key: p.value for p in model.metadata_props}
    if props.get("precision") in PRECISIONS:
        return props["precision"]
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node):
        return "int8"
    if any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer):
        return "fp16"
    return "fp32"


def tensorrt_major(trt: Any) -> int:
    """The installed TensorRT's major version."""
    return int(str(trt.__version__).split(".")[0])


def strongly_typed(major: int, precision: str) -> bool:
    """TensorRT 11 always; TensorRT 10 where the ONNX carries its precision (fp16, int8)."""
    return major >= 11 or precision != "fp32"


def default_timing_cache(version: str, capability: tuple[int, int]) -> Path:
    """$XDG_CACHE_HOME/rmpe/tensorrt/timing-VERSION-smXY.cache: timings hold for one TensorRT and GPU kind."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "rmpe" / "tensorrt" / f"timing-{version}-sm{capability[0]}{capability[1]}.cache"


def tensorrt_available() -> bool:
    """Whether this machine can build engines: tensorrt and cuda-python import and a CUDA device is present."""
    try:
        _, cudart = import_tensorrt(Path("engine"))
        return int(cuda_call(cudart.cudaGetDeviceCount(), "cudaGetDeviceCount")) > 0
    except BackendError:
        return False


def configure(trt: Any, builder: Any, config: Any, options: BuildOptions, precision: str) -> None:
    """Workspace, optimisation level, TF32 (off for fp32), compatibility and the profiles on ``config``."""
    if options.workspace_mib:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
    config.builder_optimization_level = options.opt_level
    if precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)
    if options.hardware_compat != "none":
        config.hardware_compatibility_level = getattr(trt.HardwareCompatibilityLevel, HARDWARE_LEVELS[options.hardware_compat])
    if options.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    for profile in options.profiles:
        shapes = builder.create_optimization_profile()
        for name, (low, opt, high) in profile.shapes().items():
            shapes.set_shape(name, low, opt, high)
        if config.add_optimization_profile(shapes) < 0:
            raise BuildError(f"TensorRT refused the profile {profile.text()}")


def attach_timing_cache(config: Any, path: Path, log: Callable[[str], None]) -> Any:
    """The timing cache of ``path`` (empty when absent or unusable) set on ``config``."""
    data = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(data)
    if not config.set_timing_cache(cache, False):
        log(f"rmpe-export: warning: {path} is a timing cache of another TensorRT or GPU; starting a new one")
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, False)
    return cache


def parse_network(trt: Any, builder: Any, logger: Any, onnx_path: Path, data: bytes, strong: bool) -> Any:
    """The network TensorRT's ONNX parser makes of ``data``; BuildError with the parser's first errors."""
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strong else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(data, str(onnx_path)):
        errors = [str(parser.get_error(i)).strip().replace("\n", " ") for i in range(parser.num_errors)]
        raise BuildError(f"{onnx_path}: TensorRT's ONNX parser refused it: {'; '.join(errors[:3]) or 'no reason given'}"
                         f" (rmpe-export --check {onnx_path} lists what it may object to)")
    return network, parser


def build_engine(onnx_path: Path, plan_path: Path, options: BuildOptions) -> EngineSidecar:
    """Build ``onnx_path`` into ``plan_path`` and write its sidecar; returns the sidecar."""
    try:
        trt, cudart = import_tensorrt(plan_path)
        gpu = gpu_info(cudart)
    except BackendError as exc:
        raise BuildError(str(exc)) from None
    if options.hardware_compat not in HARDWARE_LEVELS:
        raise BuildError(f"--hardware-compat {options.hardware_compat}: choose one of {', '.join(HARDWARE_LEVELS)}")
    data = Path(onnx_path).read_bytes()
    model = onnx.load_from_string(data)
    precision = onnx_precision(model)
    major = tensorrt_major(trt)
    strong = strongly_typed(major, precision)
    options.log(f"building a TensorRT {trt.__version__} engine of {onnx_path} on {gpu.text()}: {precision}, "
                f"{'strongly' if strong else 'weakly'} typed, {len(options.profiles)} profile(s) (this takes minutes)")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network, parser = parse_network(trt, builder, logger, Path(onnx_path), data, strong)  # parser: owns the weights
    config = builder.create_builder_config()
    configure(trt, builder, config, options, precision)
    cache_path = options.timing_cache or default_timing_cache(str(trt.__version__), gpu.compute_capability)
    attach_timing_cache(config, cache_path, options.log)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BuildError(f"{onnx_path}: TensorRT could not build the engine (its log above says why)")
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    partial = plan_path.with_name(plan_path.name + ".partial")
    partial.write_bytes(bytes(serialized))
    partial.replace(plan_path)
    sidecar = EngineSidecar(
        tensorrt=str(trt.__version__), gpu=gpu, precision=precision, typing="strong" if strong else "weak",
        profiles=list(options.profiles), onnx_file=Path(onnx_path).name, onnx_sha256=sha256_of(Path(onnx_path)),
        plan_sha256=sha256_of(plan_path), workspace_mib=options.workspace_mib, opt_level=options.opt_level,
        hardware_compat=options.hardware_compat, version_compatible=options.version_compatible,
        tf32=precision != "fp32", rmpe_version=rmpe.__version__,
        metadata={p.key: p.value for p in model.metadata_props})
    sidecar.write(plan_path)
    return sidecar
