"""The JSON sidecar of a TensorRT engine (``model.plan.json``): what built it, for which GPU, from which ONNX.

An engine runs only under the TensorRT version and on the GPU kind it was built for, and carries no
model metadata, so ``rmpe-export`` writes this file beside every plan and the runner compares it
with the TensorRT and GPU it finds before deserialising, saying what differs and how to rebuild.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .tensorrt_profiles import EngineProfile

HARDWARE_COMPAT = ("none", "ampere+", "same-cc")


def sidecar_path(plan: Path) -> Path:
    """``model.plan`` → ``model.plan.json``."""
    return plan.with_name(plan.name + ".json")


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB pieces (engines, their ONNX sources, checkpoints in the metadata)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class GpuInfo:
    """A GPU as TensorRT engines care about it: its name and compute capability."""

    name: str
    compute_capability: tuple[int, int]

    def text(self) -> str:
        return f"{self.name} (compute capability {self.compute_capability[0]}.{self.compute_capability[1]})"


@dataclass
class EngineSidecar:
    """Everything an engine was built with and from; ``metadata`` is the ONNX file's metadata_props."""

    tensorrt: str
    gpu: GpuInfo
    precision: str
    typing: str  # "strong" (precision from the ONNX) or "weak" (TensorRT 10 builder flags)
    profiles: list[EngineProfile]
    onnx_file: str
    onnx_sha256: str
    plan_sha256: str
    workspace_mib: int | None = None
    opt_level: int = 3
    hardware_compat: str = "none"
    version_compatible: bool = False
    tf32: bool = True
    rmpe_version: str = ""
    metadata: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["gpu"] = {"name": self.gpu.name, "compute_capability": f"{self.gpu.compute_capability[0]}.{self.gpu.compute_capability[1]}"}
        data["profiles"] = [p.to_json() for p in self.profiles]
        return data

    def write(self, plan: Path) -> Path:
        path = sidecar_path(plan)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return path

    @classmethod
    def read(cls, plan: Path) -> "EngineSidecar | None":
        """The sidecar of ``plan``, None when there is none; ``ValueError`` (one line) when it is unreadable."""
        path = sidecar_path(plan)
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            major, minor = (int(v) for v in str(data["gpu"]["compute_capability"]).split("."))
            data["gpu"] = GpuInfo(str(data["gpu"]["name"]), (major, minor))
            data["profiles"] = [EngineProfile(*(tuple(p[k]) for k in ("boxes", "images", "height", "width")))
                                for p in data["profiles"]]
            return cls(**data)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: not an rmpe engine sidecar ({type(exc).__name__}: {exc})") from None

    def rebuild_command(self, plan: Path, profiles: list[EngineProfile] | None = None) -> str:
        """The command that builds this engine again (with ``profiles`` instead of its own, if given),
        from its ONNX, on the machine that runs it."""
        words = ["rmpe-export", "--build-engine", str(plan.with_name(self.onnx_file))]
        if plan.name != Path(self.onnx_file).with_suffix(".plan").name:
            words += ["--engine-out", str(plan)]
        for profile in self.profiles if profiles is None else profiles:
            words += ["--profile", profile.text()]
        if self.workspace_mib:
            words += ["--workspace", str(self.workspace_mib)]
        if self.opt_level != 3:
            words += ["--trt-opt-level", str(self.opt_level)]
        if self.hardware_compat != "none":
            words += ["--hardware-compat", self.hardware_compat]
        if self.version_compatible:
            words.append("--version-compat")
        return shlex.join(words)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(".")[:3] if v.isdigit())


def mismatches(sidecar: EngineSidecar, tensorrt: str, gpu: GpuInfo, plan_sha256: str) -> tuple[list[str], list[str]]:
    """(problems, warnings) of running the engine ``sidecar`` describes under ``tensorrt`` on ``gpu``."""
    problems, warnings = [], []
    if plan_sha256 != sidecar.plan_sha256:
        problems.append("the plan is not the one its sidecar describes (sha256 differs)")
    built, running = _version(sidecar.tensorrt), _version(tensorrt)
    if sidecar.version_compatible:
        if built[:1] != running[:1] or running < built:
            problems.append(f"built version-compatible by TensorRT {sidecar.tensorrt}, which later {built[0]}.x "
                            f"versions run, not TensorRT {tensorrt}")
    elif built != running:
        problems.append(f"built by TensorRT {sidecar.tensorrt}, this is TensorRT {tensorrt}")
    ours, theirs = gpu.compute_capability, sidecar.gpu.compute_capability
    if sidecar.hardware_compat == "ampere+":
        if ours < (8, 0):
            problems.append(f"built for Ampere or newer GPUs, this is {gpu.text()}")
    elif ours != theirs:
        problems.append(f"built on {sidecar.gpu.text()}, this is {gpu.text()}")
    elif sidecar.hardware_compat == "none" and gpu.name != sidecar.gpu.name:
        warnings.append(f"built on {sidecar.gpu.name}, this is {gpu.name} (same compute capability: it runs, "
                        "tuned for the other GPU)")
    return problems, warnings
