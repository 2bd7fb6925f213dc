"""Inference backends behind one small interface: ONNX Runtime for ``.onnx``, TensorRT for engines.

Every backend takes and returns numpy arrays keyed by tensor name. Heavy or optional libraries
(``onnxruntime`` sessions, ``tensorrt``, ``cuda-python``) are imported only when a backend is opened.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .tensorrt_profiles import default_profile

ENGINE_SUFFIXES = (".plan", ".engine", ".trt")
BACKENDS = ("auto", "ort", "ort-trt", "trt")
DEVICES = ("cpu", "cuda")
ORT_TRT_MAX_BOXES = 64  # boxes per call of the TensorRT provider's profile (rmpe-export's default --max-boxes)

_ORT_DTYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8, "tensor(int8)": np.int8, "tensor(int32)": np.int32,
    "tensor(int64)": np.int64, "tensor(bool)": np.bool_,
}


class BackendError(RuntimeError):
    """A model file that cannot be opened or run; the message is one line meant for users."""


@dataclass(frozen=True)
class TensorInfo:
    """Name, numpy dtype and shape of a graph input or output; dynamic axes are ``None``."""

    name: str
    dtype: type
    shape: tuple[int | None, ...]


class Backend(Protocol):
    """What the pipeline needs from an inference engine."""

    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    metadata: dict[str, str]
    providers: list[str]
    max_boxes: int | None  # most boxes per call (an engine's profile), None for any

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


@dataclass
class BackendOptions:
    """How to open a model: backend kind, device, threads and extra session settings."""

    backend: str = "auto"
    device: str = "cpu"
    threads: int = 0  # 0: let the backend decide
    optimization: str = "all"  # ONNX Runtime graph optimisation: disable, basic, extended, all
    session_config: dict[str, str] | None = None  # ONNX Runtime session config entries
    device_id: int = 0  # CUDA device of the CUDA and TensorRT execution providers
    trt_cache: str | None = None  # ort-trt: folder of the TensorRT engine and timing caches (None: default_trt_cache())
    trt_fp16: bool = False  # ort-trt: let TensorRT run fp32 layers in fp16


def open_backend(path: str | Path, options: BackendOptions | None = None) -> Backend:
    """Open ``path`` with the backend its suffix (or ``options.backend``) asks for."""
    options = options or BackendOptions()
    path = Path(path)
    if options.backend not in BACKENDS:
        raise BackendError(f"unknown backend {options.backend!r}; choose one of {', '.join(BACKENDS)}")
    if options.device not in DEVICES:
        raise BackendError(f"unknown device {options.device!r}; choose one of {', '.join(DEVICES)}")
    if not path.is_file():
        raise BackendError(f"{path}: no such model file")
    is_engine = path.suffix.lower() in ENGINE_SUFFIXES
    if options.backend == "trt" or (options.backend == "auto" and is_engine):
        from .tensorrt_backend import TensorRTBackend

        return TensorRTBackend(path)
    if is_engine:
        raise BackendError(f"{path}: a TensorRT engine cannot be run by ONNX Runtime; use --backend trt")
    return OrtBackend(path, options)


def _ort_shape(shape: list[Any]) -> tuple[int | None, ...]:
    return tuple(d if isinstance(d, int) else None for d in shape)


class OrtBackend:
    """ONNX Runtime session; CPU by default, CUDA or TensorRT execution providers on request."""

    def __init__(self, path: Path, options: BackendOptions) -> None:
        import onnxruntime as ort

        requested = provider_options(options)
        wanted = [name for name, _ in requested]
        available = set(ort.get_available_providers())
        missing = [p for p in wanted if p not in available]
        if missing:
            warnings.warn(
                f"{', '.join(missing)} not available in this onnxruntime build "
                f"(has {', '.join(sorted(available))}); falling back to CPU. "
                "Install onnxruntime-gpu for --device cuda / --backend ort-trt.",
                RuntimeWarning, stacklevel=2)
        providers = [p for p in requested if p[0] in available] + ["CPUExecutionProvider"]
        if "TensorrtExecutionProvider" in available and options.backend == "ort-trt":
            Path(dict(providers[0][1])["trt_engine_cache_path"]).mkdir(parents=True, exist_ok=True)
        so = ort.SessionOptions()
        if options.threads:
            so.intra_op_num_threads = options.threads
            so.inter_op_num_threads = 1
        levels = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                  "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                  "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                  "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
        if options.optimization not in levels:
            raise BackendError(f"unknown optimisation level {options.optimization!r}; choose one of {', '.join(levels)}")
        so.graph_optimization_level = levels[options.optimization]
        for key, value in (options.session_config or {}).items():
            so.add_session_config_entry(key, value)
        try:
            self.session = ort.InferenceSession(str(path), sess_options=so, providers=providers)
        except Exception as exc:  # onnxruntime raises several unrelated exception types
            raise BackendError(f"{path}: cannot load with ONNX Runtime: {_first_line(exc)}") from None
        self.providers = list(self.session.get_providers())
        fell_back = [p for p in wanted if p in available and p not in self.providers]
        if fell_back:
            warnings.warn(
                f"requested {', '.join(fell_back)} but the session runs on {', '.join(self.providers)}; "
                "check the CUDA / TensorRT libraries", RuntimeWarning, stacklevel=2)
        self.path = path
        self.inputs = [TensorInfo(i.name, _ORT_DTYPES.get(i.type, np.float32), _ort_shape(i.shape))
                       for i in self.session.get_inputs()]
        self.outputs = [TensorInfo(o.name, _ORT_DTYPES.get(o.type, np.float32), _ort_shape(o.shape))
                        for o in self.session.get_outputs()]
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.max_boxes = ORT_TRT_MAX_BOXES if "TensorrtExecutionProvider" in self.providers else None

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph once and return all outputs by name."""
        names = [o.name for o in self.outputs]
        try:
            values = self.session.run(names, feeds)
        except Exception as exc:
            raise BackendError(f"{self.path.name}: inference failed: {_first_line(exc)}") from None
        return dict(zip(names, values))

    def close(self) -> None:
        """Release the session."""
        self.session = None


def default_trt_cache() -> str:
    """Where ONNX Runtime's TensorRT provider keeps engines between runs: $XDG_CACHE_HOME/rmpe/ort-tensorrt."""
    return str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rmpe" / "ort-tensorrt")


def provider_options(options: BackendOptions) -> list[tuple[str, dict[str, str]]]:
    """Execution providers in priority order with their options, without the CPU fallback.

    The TensorRT provider caches its engines (and tactic timings) in ``trt_cache``, so only the first
    session of a model builds them, and gets explicit profiles of the default engine profile
    (docs/onnx-contract.md inputs), so a new box count or image size does not rebuild its engine.
    """
    cuda = ("CUDAExecutionProvider", {"device_id": str(options.device_id)})
    if options.backend == "ort-trt":
        cache = options.trt_cache or default_trt_cache()
        shapes = default_profile(ORT_TRT_MAX_BOXES).shapes()
        profile = {f"trt_profile_{kind}_shapes": ",".join(f"{name}:{'x'.join(map(str, spans[i]))}" for name, spans in shapes.items())
                   for i, kind in enumerate(("min", "opt", "max"))}
        trt = {"device_id": str(options.device_id), "trt_fp16_enable": str(options.trt_fp16),
               "trt_engine_cache_enable": "True", "trt_engine_cache_path": cache,
               "trt_timing_cache_enable": "True", "trt_timing_cache_path": cache, **profile}
        return [("TensorrtExecutionProvider", trt), cuda]
    if options.device == "cuda":
        return [cuda]
    return []


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
