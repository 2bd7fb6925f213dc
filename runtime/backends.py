"""Inference backends behind one small interface: ONNX Runtime for ``.onnx``, TensorRT for engines.

Every backend takes and returns numpy arrays keyed by tensor name. Heavy or optional libraries
(``onnxruntime`` sessions, ``tensorrt``, ``cuda-python``) are imported only when a backend is opened.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

ENGINE_SUFFIXES = (".plan", ".engine", ".trt")
BACKENDS = ("auto", "ort", "ort-trt", "trt")
DEVICES = ("cpu", "cuda")

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

        wanted = _requested_providers(options)
        available = set(ort.get_available_providers())
        missing = [p for p in wanted if p not in available]
        if missing:
            warnings.warn(
                f"{', '.join(missing)} not available in this onnxruntime build "
                f"(has {', '.join(sorted(available))}); falling back to CPU. "
                "Install onnxruntime-gpu for --device cuda / --backend ort-trt.",
                RuntimeWarning, stacklevel=2)
        providers = [p for p in wanted if p in available] + ["CPUExecutionProvider"]
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


def _requested_providers(options: BackendOptions) -> list[str]:
    """Execution providers in priority order, without the CPU fallback."""
    if options.backend == "ort-trt":
        return ["TensorrtExecutionProvider", "CUDAExecutionProvider"]
    if options.device == "cuda":
        return ["CUDAExecutionProvider"]
    return []


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def engine_metadata(engine_path: Path) -> dict[str, str]:
    """Model metadata for an engine, from ``<engine>.json`` or ``model.json`` beside it (as props)."""
    for candidate in (engine_path.with_suffix(".json"), engine_path.parent / "model.json"):
        if candidate.is_file():
            data = json.loads(candidate.read_text())
            return {k: v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}
    return {}


class TensorRTBackend:
    """A serialized TensorRT 10/11 engine run with the tensor-address API (``execute_async_v3``).

    Needs ``tensorrt`` and ``cuda-python`` (``pip install rmpe[trt]``) and an NVIDIA GPU. Metadata comes
    from the ``model.json`` sidecar because engines carry none.
    """

    def __init__(self, path: Path) -> None:
        try:
            import tensorrt as trt
        except ImportError:
            raise BackendError(
                f"{path.name}: running a TensorRT engine needs the tensorrt package and an NVIDIA GPU "
                "(pip install rmpe[trt]); or run the .onnx file with ONNX Runtime") from None
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            try:
                from cuda import cudart  # cuda-python < 12.6
            except ImportError:
                raise BackendError(f"{path.name}: the TensorRT backend needs cuda-python (pip install cuda-python)") from None
        self._trt, self._cudart = trt, cudart
        self.path = path
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self._engine is None:
            raise BackendError(f"{path.name}: TensorRT could not deserialize the engine (built by another TensorRT version or GPU?)")
        self._context = self._engine.create_execution_context()
        self._stream = self._check(cudart.cudaStreamCreate())
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)
        self.inputs, self.outputs = [], []
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            info = TensorInfo(name, np.dtype(trt.nptype(self._engine.get_tensor_dtype(name))).type,
                              tuple(d if d >= 0 else None for d in self._engine.get_tensor_shape(name)))
            is_input = self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (self.inputs if is_input else self.outputs).append(info)
        self.metadata = engine_metadata(path)
        self.providers = ["TensorRT"]

    def _check(self, result: Any) -> Any:
        """Unpack a cuda-python ``(error, value...)`` tuple, raising on error."""
        err, *values = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise BackendError(f"{self.path.name}: CUDA error {err}")
        return values[0] if len(values) == 1 else (values or None)

    def _device_buffer(self, name: str, nbytes: int) -> int:
        """A device allocation for ``name`` of at least ``nbytes``, grown when needed."""
        ptr, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                self._check(self._cudart.cudaFree(ptr))
            ptr, size = self._check(self._cudart.cudaMalloc(max(nbytes, 1))), max(nbytes, 1)
            self._buffers[name] = (ptr, size)
        return ptr

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Copy inputs to the GPU, execute the engine, copy outputs back."""
        cudart = self._cudart
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for info in self.inputs:
            array = np.ascontiguousarray(feeds[info.name], dtype=info.dtype)
            if not self._context.set_input_shape(info.name, array.shape):
                raise BackendError(f"{self.path.name}: input {info.name} shape {array.shape} is outside the engine's profile")
            ptr = self._device_buffer(info.name, array.nbytes)
            self._check(cudart.cudaMemcpyAsync(ptr, array.ctypes.data, array.nbytes, h2d, self._stream))
            self._context.set_tensor_address(info.name, ptr)
        results = {}
        for info in self.outputs:
            shape = tuple(self._context.get_tensor_shape(info.name))
            results[info.name] = np.empty(shape, dtype=info.dtype)
            self._context.set_tensor_address(info.name, self._device_buffer(info.name, results[info.name].nbytes))
        if not self._context.execute_async_v3(self._stream):
            raise BackendError(f"{self.path.name}: TensorRT execution failed")
        for name, array in results.items():
            self._check(cudart.cudaMemcpyAsync(array.ctypes.data, self._buffers[name][0], array.nbytes, d2h, self._stream))
        self._check(cudart.cudaStreamSynchronize(self._stream))
        return results

    def close(self) -> None:
        """Free device buffers and the stream."""
        for ptr, _ in self._buffers.values():
            self._cudart.cudaFree(ptr)
        self._buffers.clear()
        if self._stream is not None:
            self._cudart.cudaStreamDestroy(self._stream)
            self._stream = None
