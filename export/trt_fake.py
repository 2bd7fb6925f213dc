"""Stand-ins for ``tensorrt`` and cuda-python's ``cudart`` that behave like them for rmpe's engine code,
on a machine with neither TensorRT nor a GPU.

The fake builder parses nothing: its "plan" is a small header (profiles, typing) followed by the
ONNX bytes, and the fake engine runs that ONNX in ONNX Runtime on the host, reading its inputs from
and writing its outputs to the addresses the caller set, as TensorRT does on the device. "Device"
and "pinned" memory are host memory from ctypes, so copies are real memmoves. Its API is only as
wide as rmpe uses; rmpe.export.trt_api wraps it so that every use is checked against the real bindings.
A graph with a node named ``reject`` fails to parse, one named ``unbuildable`` fails to build.
"""

from __future__ import annotations

import ctypes
import enum
import json
import struct
import sys
import types
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MAGIC = b"RMPEFAKEPLAN"


class Severity(enum.IntEnum):
    INTERNAL_ERROR = 0
    ERROR = 1
    WARNING = 2
    INFO = 3
    VERBOSE = 4


class DataType(enum.IntEnum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5
    INT64 = 8


NUMPY = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8, DataType.INT32: np.int32,
         DataType.BOOL: np.bool_, DataType.UINT8: np.uint8, DataType.INT64: np.int64}
ONNX_TYPES = {"tensor(float)": DataType.FLOAT, "tensor(float16)": DataType.HALF, "tensor(int8)": DataType.INT8,
              "tensor(int32)": DataType.INT32, "tensor(bool)": DataType.BOOL, "tensor(uint8)": DataType.UINT8,
              "tensor(int64)": DataType.INT64}


class TensorIOMode(enum.IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class NetworkDefinitionCreationFlag(enum.IntEnum):
    EXPLICIT_BATCH = 0
    STRONGLY_TYPED = 1


class BuilderFlag(enum.IntEnum):
    FP16 = 0
    INT8 = 2
    TF32 = 7
    VERSION_COMPATIBLE = 15


class MemoryPoolType(enum.IntEnum):
    WORKSPACE = 0


class HardwareCompatibilityLevel(enum.IntEnum):
    NONE = 0
    AMPERE_PLUS = 1
    SAME_COMPUTE_CAPABILITY = 2


@dataclass
class Calls:
    """What the fakes were asked to do, for tests: builds, profile switches, allocations."""

    builds: list[dict] = field(default_factory=list)
    profile_switches: list[int] = field(default_factory=list)
    executions: list[dict[str, tuple[int, ...]]] = field(default_factory=list)
    device_allocations: int = 0
    host_allocations: int = 0
    host_code_allowed: list[bool] = field(default_factory=list)
    failing: set[str] = field(default_factory=set)  # calls that fail once, the next time they are made

    def fails(self, name: str) -> bool:
        """Whether the call ``name`` fails now (and no longer after)."""
        if name in self.failing:
            self.failing.discard(name)
            return True
        return False


def write_plan(path: Any, profiles: list[dict[str, list[tuple[int, ...]]]], model: bytes) -> None:
    """A plan in the fake's format, for an engine no builder of rmpe's would make."""
    blob = json.dumps({"profiles": profiles, "strongly_typed": True}).encode()
    path.write_bytes(MAGIC + struct.pack("<I", len(blob)) + blob + model)


def make_tensorrt(version: str, calls: Calls) -> types.ModuleType:
    """A fake ``tensorrt`` module of ``version``."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version

    class Logger:
        Severity = Severity
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = Severity

        def __init__(self, min_severity: Severity = Severity.WARNING) -> None:
            self.min_severity = min_severity

    class HostMemory:
        def __init__(self, data: bytes) -> None:
            self._data = data

        def __bytes__(self) -> bytes:
            return self._data

    class TimingCache:
        def __init__(self, data: bytes) -> None:
            self.data = data or b"timings"

        def serialize(self) -> HostMemory:
            return HostMemory(self.data)

    class Profile:
        def __init__(self) -> None:
            self.shapes: dict[str, list[tuple[int, ...]]] = {}

        def set_shape(self, name: str, low: Any, opt: Any, high: Any) -> None:
            self.shapes[name] = [tuple(low), tuple(opt), tuple(high)]

    class Config:
        def __init__(self) -> None:
            self.flags = {BuilderFlag.TF32}
            self.profiles: list[Profile] = []
            self.builder_optimization_level = 3
            self.hardware_compatibility_level = HardwareCompatibilityLevel.NONE
            self.pools: dict[MemoryPoolType, int] = {}
            self.cache: TimingCache | None = None

        def set_memory_pool_limit(self, pool: MemoryPoolType, size: int) -> None:
            self.pools[pool] = size

        def set_flag(self, flag: BuilderFlag) -> None:
            self.flags.add(flag)

        def clear_flag(self, flag: BuilderFlag) -> None:
            self.flags.discard(flag)

        def add_optimization_profile(self, profile: Profile) -> int:
            if calls.fails("add_optimization_profile"):
                return -1
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def create_timing_cache(self, data: bytes) -> TimingCache:
            return TimingCache(bytes(data))

        def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
            if cache.data.startswith(b"other-gpu"):
                return False
            self.cache = cache
            return True

        def get_timing_cache(self) -> TimingCache:
            return self.cache

    class Network:
        def __init__(self, flags: int) -> None:
            self.flags = flags
            self.onnx = b""

    class OnnxParser:
        def __init__(self, network: Network, logger: Logger) -> None:
            self.network, self.errors = network, []

        def parse(self, model: bytes, path: str | None = None) -> bool:
            import onnx

            names = {node.name for node in onnx.load_from_string(bytes(model)).graph.node}
            if "reject" in names:
                self.errors = ["In node 0 (reject): UNSUPPORTED_NODE: a node the fake parser refuses"]
                return False
            self.network.onnx = bytes(model)
            return True

        @property
        def num_errors(self) -> int:
            return len(self.errors)

        def get_error(self, index: int) -> str:
            return self.errors[index]

    class Builder:
        def __init__(self, logger: Logger) -> None:
            self.logger = logger

        def create_network(self, flags: int = 0) -> Network:
            return Network(flags)

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: Config) -> HostMemory | None:
            import onnx

            if "unbuildable" in {node.name for node in onnx.load_from_string(network.onnx).graph.node}:
                return None
            strong = bool(network.flags & (1 << NetworkDefinitionCreationFlag.STRONGLY_TYPED))
            header = {"profiles": [p.shapes for p in config.profiles], "strongly_typed": strong,
                      "flags": sorted(int(f) for f in config.flags), "opt_level": config.builder_optimization_level,
                      "hardware": int(config.hardware_compatibility_level),
                      "workspace": config.pools.get(MemoryPoolType.WORKSPACE)}
            calls.builds.append(header)
            blob = json.dumps(header).encode()
            return HostMemory(MAGIC + struct.pack("<I", len(blob)) + blob + network.onnx)

    class Runtime:
        def __init__(self, logger: Logger) -> None:
            self.engine_host_code_allowed = False

        def deserialize_cuda_engine(self, data: bytes) -> "Engine | None":
            data = bytes(data)
            if not data.startswith(MAGIC):
                return None
            calls.host_code_allowed.append(self.engine_host_code_allowed)
            size = struct.unpack("<I", data[len(MAGIC):len(MAGIC) + 4])[0]
            start = len(MAGIC) + 4
            return Engine(json.loads(data[start:start + size]), data[start + size:])

    class Engine:
        def __init__(self, header: dict, model: bytes) -> None:
            import onnxruntime as ort

            self.header = header
            options = ort.SessionOptions()
            options.log_severity_level = 3
            self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
            self.io = [(t.name, TensorIOMode.INPUT, t) for t in self.session.get_inputs()]
            self.io += [(t.name, TensorIOMode.OUTPUT, t) for t in self.session.get_outputs()]

        @property
        def num_io_tensors(self) -> int:
            return len(self.io)

        @property
        def num_optimization_profiles(self) -> int:
            return len(self.header["profiles"])

        def get_tensor_name(self, index: int) -> str:
            return self.io[index][0]

        def _tensor(self, name: str):
            return next(t for n, _, t in self.io if n == name)

        def get_tensor_mode(self, name: str) -> TensorIOMode:
            return next(m for n, m, _ in self.io if n == name)

        def get_tensor_dtype(self, name: str) -> DataType:
            return ONNX_TYPES[self._tensor(name).type]

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return tuple(d if isinstance(d, int) else -1 for d in self._tensor(name).shape)

        def get_tensor_profile_shape(self, name: str, profile: int) -> list[tuple[int, ...]]:
            return [tuple(s) for s in self.header["profiles"][profile][name]]

        def create_execution_context(self) -> "Context":
            return Context(self)

    class Context:
        def __init__(self, engine: Engine) -> None:
            self.engine, self.profile = engine, 0
            self.shapes: dict[str, tuple[int, ...]] = {}
            self.addresses: dict[str, int] = {}
            self.outputs: dict[str, np.ndarray] = {}

        def set_optimization_profile_async(self, profile: int, stream: int) -> bool:
            if calls.fails("set_optimization_profile_async"):
                return False
            calls.profile_switches.append(profile)
            self.profile = profile
            return 0 <= profile < self.engine.num_optimization_profiles

        def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
            if calls.fails("set_input_shape"):
                return False
            low, _, high = self.engine.get_tensor_profile_shape(name, self.profile)
            if len(shape) != len(low) or any(not lo <= s <= hi for s, lo, hi in zip(shape, low, high)):
                return False
            self.shapes[name] = tuple(shape)
            self.outputs = {}
            return True

        def set_tensor_address(self, name: str, address: int) -> bool:
            self.addresses[name] = address
            return True

        def _run(self) -> dict[str, np.ndarray]:
            if not self.outputs:
                feeds = {}
                for name, mode, tensor in self.engine.io:
                    if mode == TensorIOMode.INPUT:
                        dtype = np.dtype(NUMPY[ONNX_TYPES[tensor.type]])
                        count = int(np.prod(self.shapes[name]))
                        buffer = (ctypes.c_ubyte * (count * dtype.itemsize)).from_address(self.addresses[name])
                        feeds[name] = np.frombuffer(buffer, dtype, count).reshape(self.shapes[name]).copy()
                names = [t.name for t in self.engine.session.get_outputs()]
                self.outputs = dict(zip(names, self.engine.session.run(names, feeds)))
            return self.outputs

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return tuple(self._run()[name].shape) if name in self._run() else self.shapes[name]

        def execute_async_v3(self, stream_handle: int) -> bool:
            if calls.fails("execute_async_v3"):
                return False
            outputs = self._run()
            calls.executions.append(dict(self.shapes))
            for name, values in outputs.items():
                values = np.ascontiguousarray(values)
                ctypes.memmove(self.addresses[name], values.ctypes.data, values.nbytes)
            self.outputs = {}
            return True

    def nptype(trt_type: DataType) -> type:
        return NUMPY[trt_type]

    for item in (Logger, Builder, OnnxParser, Runtime, DataType, TensorIOMode, NetworkDefinitionCreationFlag,
                 BuilderFlag, MemoryPoolType, HardwareCompatibilityLevel):
        setattr(trt, item.__name__, item)
    trt.nptype = nptype
    return trt


class CudaProps:
    """cudaDeviceProp as far as rmpe reads it."""

    def __init__(self, name: str, major: int, minor: int) -> None:
        self.name = name.encode().ljust(256, b"\0")
        self.major, self.minor = major, minor


class Stream(int):
    """A cudaStream_t: an opaque handle that ``int()`` turns into its address."""


def make_cudart(calls: Calls, gpu: str = "NVIDIA Fake GPU", capability: tuple[int, int] = (8, 9),
                devices: int = 1) -> types.ModuleType:
    """A fake cuda-python ``cudart``; memory is host memory, copies are memmoves."""
    cudart = types.ModuleType("cuda.bindings.runtime")
    blocks: dict[int, ctypes.Array] = {}

    class cudaError_t(enum.IntEnum):  # noqa: N801 - cuda-python's name
        cudaSuccess = 0
        cudaErrorInvalidValue = 1
        cudaErrorMemoryAllocation = 2

    class cudaMemcpyKind(enum.IntEnum):  # noqa: N801
        cudaMemcpyHostToDevice = 1
        cudaMemcpyDeviceToHost = 2

    def allocate(size: int) -> int:
        block = (ctypes.c_ubyte * size)()
        blocks[ctypes.addressof(block)] = block
        return ctypes.addressof(block)

    def cudaMalloc(size: int):  # noqa: N802
        if calls.fails("cudaMalloc"):
            return cudaError_t.cudaErrorMemoryAllocation, 0
        calls.device_allocations += 1
        return cudaError_t.cudaSuccess, allocate(size)

    def cudaMallocHost(size: int):  # noqa: N802
        calls.host_allocations += 1
        return cudaError_t.cudaSuccess, allocate(size)

    def free(ptr: int):
        return (cudaError_t.cudaSuccess if blocks.pop(int(ptr), None) is not None else cudaError_t.cudaErrorInvalidValue,)

    def cudaMemcpyAsync(dst: int, src: int, count: int, kind: cudaMemcpyKind, stream: Stream):  # noqa: N802
        ctypes.memmove(int(dst), int(src), count)
        return (cudaError_t.cudaSuccess,)

    def ok(*_: Any):
        return (cudaError_t.cudaSuccess,)

    namespace = {
        "cudaError_t": cudaError_t, "cudaMemcpyKind": cudaMemcpyKind, "cudaMalloc": cudaMalloc,
        "cudaMallocHost": cudaMallocHost, "cudaFree": free, "cudaFreeHost": free, "cudaMemcpyAsync": cudaMemcpyAsync,
        "cudaStreamCreate": lambda: (cudaError_t.cudaSuccess, Stream(allocate(8))),
        "cudaStreamSynchronize": ok, "cudaStreamDestroy": ok,
        "cudaGetDevice": lambda: (cudaError_t.cudaSuccess, 0),
        "cudaGetDeviceCount": lambda: (cudaError_t.cudaSuccess, devices),
        "cudaGetDeviceProperties": lambda device: (cudaError_t.cudaSuccess, CudaProps(gpu, *capability)),
    }
    for name, value in namespace.items():
        setattr(cudart, name, value)
    cudart.live_blocks = blocks
    return cudart


def install(monkeypatch: Any, trt: Any, cudart: types.ModuleType) -> None:
    """Put ``trt`` and ``cudart`` where ``import tensorrt`` and ``from cuda.bindings import runtime`` find them."""
    cuda = types.ModuleType("cuda")
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = cudart
    cuda.bindings = bindings
    for name, module in (("tensorrt", trt), ("cuda", cuda), ("cuda.bindings", bindings), ("cuda.bindings.runtime", cudart)):
        monkeypatch.setitem(sys.modules, name, module)
