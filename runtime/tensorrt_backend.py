"""A serialized TensorRT 10/11 engine run with the tensor-address API (``execute_async_v3``) on a CUDA
stream from cuda-python: no torch, no pycuda.

Before deserialising, the engine's sidecar (``model.plan.json``) is compared with the running
TensorRT and GPU. Limits come from the engine's own optimisation profiles: a call with more boxes
or images than a profile holds is cut into calls that fit, an image larger than every profile is
refused with the flag that raises the limit. Inputs and outputs go through pinned host buffers and
device buffers kept per tensor and grown when a call needs more.
"""

from __future__ import annotations

import ctypes
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .backends import BackendError, TensorInfo
from .engine_sidecar import EngineSidecar, GpuInfo, mismatches, sha256_of, sidecar_path
from .metadata import INPUT_BOXES, INPUT_IMAGES
from .tensorrt_profiles import EngineProfile, ImageTooLarge, profile_from_shapes, run_within

INSTALL = 'pip install "rmpe[trt]" (tensorrt and cuda-python; an NVIDIA GPU and driver)'


def import_tensorrt(path: Path) -> tuple[Any, Any]:
    """The ``tensorrt`` and cuda-python runtime modules, or a one-line BackendError saying what to install."""
    try:
        import tensorrt as trt
    except ImportError:
        raise BackendError(f"{path.name}: running a TensorRT engine needs the tensorrt package: {INSTALL}; "
                           "or run the .onnx file with ONNX Runtime") from None
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # cuda-python < 12.6
        except ImportError:
            raise BackendError(f"{path.name}: the TensorRT backend needs cuda-python: {INSTALL}") from None
    return trt, cudart


def cuda_call(result: Any, what: str) -> Any:
    """Unpack a cuda-python ``(error, value...)`` tuple, raising a BackendError naming ``what`` on error."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise BackendError(f"{what}: CUDA error {int(err)} ({err})")
    return values[0] if len(values) == 1 else (values or None)


def gpu_info(cudart: Any) -> GpuInfo:
    """Name and compute capability of the current CUDA device."""
    device = cuda_call(cudart.cudaGetDevice(), "cudaGetDevice")
    props = cuda_call(cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    name = props.name.split(b"\0", 1)[0].decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
    return GpuInfo(name, (int(props.major), int(props.minor)))


def engine_metadata(engine_path: Path, sidecar: EngineSidecar | None) -> dict[str, str]:
    """Model metadata for an engine: its sidecar's, else ``<stem>.json`` or ``model.json`` beside it (as props)."""
    if sidecar is not None and sidecar.metadata:
        return dict(sidecar.metadata)
    for candidate in (engine_path.with_suffix(".json"), engine_path.parent / "model.json"):
        if candidate.is_file():
            data = json.loads(candidate.read_text())
            return {k: v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}
    return {}


class HostDeviceBuffers:
    """Per tensor name, one pinned host buffer and one device buffer, grown when a call needs more."""

    def __init__(self, cudart: Any, label: str) -> None:
        self._cudart, self._label = cudart, label
        self._device: dict[str, tuple[int, int]] = {}
        self._host: dict[str, tuple[int, int]] = {}

    def device(self, name: str, nbytes: int) -> int:
        ptr, size = self._device.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                cuda_call(self._cudart.cudaFree(ptr), f"{self._label}: cudaFree")
            size = max(nbytes, 1)
            ptr = int(cuda_call(self._cudart.cudaMalloc(size), f"{self._label}: cudaMalloc {size} bytes"))
            self._device[name] = (ptr, size)
        return ptr

    def host(self, name: str, nbytes: int) -> tuple[int, np.ndarray]:
        """The pinned buffer of ``name`` (address, uint8 view of ``nbytes``)."""
        ptr, size = self._host.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                cuda_call(self._cudart.cudaFreeHost(ptr), f"{self._label}: cudaFreeHost")
            size = max(nbytes, 1)
            ptr = int(cuda_call(self._cudart.cudaMallocHost(size), f"{self._label}: cudaMallocHost {size} bytes"))
            self._host[name] = (ptr, size)
        return ptr, np.ctypeslib.as_array((ctypes.c_ubyte * size).from_address(ptr))[:nbytes]

    def free(self) -> None:
        for ptr, _ in self._device.values():
            self._cudart.cudaFree(ptr)
        for ptr, _ in self._host.values():
            self._cudart.cudaFreeHost(ptr)
        self._device.clear()
        self._host.clear()


class TensorRTBackend:
    """A TensorRT engine as a :class:`~rmpe.runtime.backends.Backend` (``pip install rmpe[trt]``, NVIDIA GPU)."""

    providers = ["TensorRT"]

    def __init__(self, path: Path) -> None:
        trt, cudart = import_tensorrt(path)
        self._trt, self._cudart, self.path = trt, cudart, path
        try:
            sidecar = EngineSidecar.read(path)
        except ValueError as exc:
            raise BackendError(str(exc)) from None
        self._sidecar = sidecar
        self._check_sidecar(sidecar, trt.__version__, gpu_info(cudart))
        self.metadata = engine_metadata(path, sidecar)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        if sidecar is not None and sidecar.version_compatible:
            self._runtime.engine_host_code_allowed = True  # a version-compatible plan embeds its lean runtime
        self._engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self._engine is None:
            raise BackendError(f"{path.name}: TensorRT {trt.__version__} could not deserialize the engine; "
                               f"rebuild it here: {self._rebuild_command()}")
        self._context = self._engine.create_execution_context()
        self._stream = cuda_call(cudart.cudaStreamCreate(), f"{path.name}: cudaStreamCreate")
        self._buffers = HostDeviceBuffers(cudart, path.name)
        self._active_profile = 0
        self.inputs: list[TensorInfo] = []
        self.outputs: list[TensorInfo] = []
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            info = TensorInfo(name, np.dtype(trt.nptype(self._engine.get_tensor_dtype(name))).type,
                              tuple(d if d >= 0 else None for d in self._engine.get_tensor_shape(name)))
            is_input = self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (self.inputs if is_input else self.outputs).append(info)
        names = sorted(t.name for t in self.inputs)
        if not {INPUT_IMAGES, INPUT_BOXES} <= set(names):
            raise BackendError(f"{path.name}: not an rmpe pose engine (inputs {names}; docs/onnx-contract.md)")
        self.profiles: list[EngineProfile] = [
            profile_from_shapes(tuple(tuple(d) for d in self._engine.get_tensor_profile_shape(INPUT_IMAGES, i)),
                                tuple(tuple(d) for d in self._engine.get_tensor_profile_shape(INPUT_BOXES, i)))
            for i in range(self._engine.num_optimization_profiles)]
        self.max_boxes = max(p.boxes[2] for p in self.profiles)

    def _check_sidecar(self, sidecar: EngineSidecar | None, version: str, gpu: GpuInfo) -> None:
        """Refuse an engine built for another TensorRT or GPU, naming each difference and the rebuild command."""
        name = self.path.name
        if sidecar is None:
            warnings.warn(f"{name}: no sidecar {sidecar_path(self.path).name}, so nothing checks that it was built for "
                          f"TensorRT {version} on {gpu.name}", RuntimeWarning, stacklevel=3)
            return
        problems, notes = mismatches(sidecar, version, gpu, sha256_of(self.path))
        source = self.path.with_name(sidecar.onnx_file)
        if source.is_file() and sha256_of(source) != sidecar.onnx_sha256:
            notes.append(f"{source.name} changed since the engine was built from it")
        for note in notes:
            warnings.warn(f"{name}: {note}; to rebuild: {self._rebuild_command()}", RuntimeWarning, stacklevel=3)
        if problems:
            raise BackendError(f"{name}: {'; '.join(problems)}; rebuild it from its ONNX on this machine: "
                               f"{self._rebuild_command()}")

    def _rebuild_command(self, profiles: list[EngineProfile] | None = None) -> str:
        """How to build this engine again from its ONNX (the sidecar's settings, or a template without one)."""
        if self._sidecar is not None:
            return self._sidecar.rebuild_command(self.path, profiles)
        flags = "".join(f" --profile {p.text()}" for p in profiles or [])
        return f"rmpe-export --build-engine MODEL.onnx --engine-out {self.path}{flags}"

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one graph call, cut into engine calls that fit the chosen profile."""
        missing = [t.name for t in self.inputs if t.name not in feeds]
        if missing:
            raise BackendError(f"{self.path.name}: missing inputs {missing}")
        tails = {t.name: (tuple(0 if d is None else d for d in t.shape[1:]), t.dtype) for t in self.outputs}
        try:
            return run_within(self.profiles, feeds, self._execute, tails)
        except ImageTooLarge as exc:
            raise BackendError(f"{self.path.name}: {exc}; rebuild it for larger images: "
                               f"{self._rebuild_command(exc.raised(self.profiles))}") from None

    def _execute(self, feeds: dict[str, np.ndarray], profile: int) -> dict[str, np.ndarray]:
        """One engine call: inputs through pinned buffers to the GPU, execute, outputs back; one synchronise."""
        cudart, context, stream, label = self._cudart, self._context, self._stream, self.path.name
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        if profile != self._active_profile:
            if not context.set_optimization_profile_async(profile, int(stream)):
                raise BackendError(f"{label}: TensorRT could not select optimisation profile {profile}")
            self._active_profile = profile
        for info in self.inputs:
            array = np.ascontiguousarray(feeds[info.name], dtype=info.dtype)
            if not context.set_input_shape(info.name, array.shape):
                raise BackendError(f"{label}: input {info.name} of shape {list(array.shape)} is outside the engine's "
                                   f"profile {profile}")
            host, view = self._buffers.host(info.name, array.nbytes)
            view[:] = array.reshape(-1).view(np.uint8)
            device = self._buffers.device(info.name, array.nbytes)
            cuda_call(cudart.cudaMemcpyAsync(device, host, array.nbytes, h2d, stream), f"{label}: copy {info.name} in")
            context.set_tensor_address(info.name, device)
        shapes = {}
        for info in self.outputs:
            shapes[info.name] = tuple(context.get_tensor_shape(info.name))
            nbytes = int(np.prod(shapes[info.name])) * np.dtype(info.dtype).itemsize
            context.set_tensor_address(info.name, self._buffers.device(info.name, nbytes))
        if not context.execute_async_v3(int(stream)):
            raise BackendError(f"{label}: TensorRT execution failed")
        views = {}
        for info in self.outputs:
            nbytes = int(np.prod(shapes[info.name])) * np.dtype(info.dtype).itemsize
            host, views[info.name] = self._buffers.host(info.name, nbytes)
            cuda_call(cudart.cudaMemcpyAsync(host, self._buffers.device(info.name, nbytes), nbytes, d2h, stream),
                      f"{label}: copy {info.name} out")
        cuda_call(cudart.cudaStreamSynchronize(stream), f"{label}: cudaStreamSynchronize")
        return {info.name: views[info.name].view(info.dtype).reshape(shapes[info.name]).copy() for info in self.outputs}

    def close(self) -> None:
        """Free the buffers and the stream, then the context and engine."""
        if getattr(self, "_stream", None) is None:
            return
        self._buffers.free()
        self._cudart.cudaStreamDestroy(self._stream)
        self._stream = None
        self._context = self._engine = None

