"""Loading and saving checkpoints: rmpe's safetensors + JSON config, and plain torch state dicts.

A ``.pth``/``.pt`` file is read with ``torch.load(weights_only=True)``; a ``{"state_dict": ...}``
wrapper and ``module.``/``model.`` prefixes are accepted, and a state dict of the hourglass alone
loads into the SPPE (the STN then stays at its identity initialisation).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from rmpe.export.config import ModelConfig
from rmpe.export.graph import PoseGraph
from rmpe.runtime.engine_sidecar import sha256_of

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "rmpe" / "models"
BUNDLED_NAME = "default"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model; the message is one line."""


def config_path_for(checkpoint: Path) -> Path:
    """The JSON config that sits beside a checkpoint: ``name.safetensors`` → ``name.json``."""
    return checkpoint.with_suffix(".json")


def save_checkpoint(graph: PoseGraph, path: Path) -> None:
    """Write ``path`` (safetensors) and its JSON config."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in graph.state_dict().items()}
    save_file(tensors, str(path), metadata={"format": "rmpe"})
    graph.config.save(config_path_for(path))


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` or ``.pth``/``.pt`` file, unwrapped and with prefixes removed."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch and safetensors raise many types for a bad file
        detail = (str(exc).strip().splitlines() or ["empty or truncated file"])[0][:200]
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(exc).__name__}: {detail})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: not a state dict of tensors")
    return {strip_prefixes(k): v for k, v in state.items()}


def strip_prefixes(key: str) -> str:
    """``key`` without the ``module.``/``model.`` prefixes of training wrappers, in any order
    (princeton-vl's hourglass saves ``model.module.``: its Trainer around DataParallel)."""
    while key.startswith(("module.", "model.")):
        key = key.split(".", 1)[1]
    return key


def load_weights(graph: PoseGraph, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``graph`` strictly, or raise one line naming the first mismatches."""
    expected = graph.state_dict()
    if not any(k in expected for k in state) and any("sppe." + k in expected for k in state):
        state = {"sppe." + k: v for k, v in state.items()}
        expected = {k: v for k, v in expected.items() if k.startswith("sppe.")}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        parts = [f"{name} ({len(keys)}): {', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''}"
                 for name, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys]
        raise CheckpointError(f"{source}: checkpoint does not fit the model; " + "; ".join(parts))
    bad = [k for k, v in state.items() if k in expected and expected[k].is_floating_point()
           and (not v.is_floating_point() or not torch.isfinite(v).all())]
    if bad:
        kind = "are not floating point" if not state[bad[0]].is_floating_point() else "hold NaN or infinite values"
        raise CheckpointError(f"{source}: {len(bad)} weight tensor(s) {kind}, the first {bad[0]}; refusing to export them")
    graph.load_state_dict(state, strict=False)


def load_graph(checkpoint: Path | None, config: ModelConfig | None = None, flip_test: bool = False,
               input_size: tuple[int, int] | None = None) -> tuple[PoseGraph, str]:
    """Build the deploy graph from a checkpoint (or the bundled default) and return it with the file's sha256.

    The config comes from ``config``, else the JSON beside the checkpoint, else the defaults;
    ``input_size`` overrides its crop size (the networks are fully convolutional).
    With no checkpoint and no bundled model, a seeded untrained model is returned (sha256 "").
    """
    if checkpoint is None:
        bundled = BUNDLED_DIR / f"{BUNDLED_NAME}.safetensors"
        if not bundled.is_file():
            torch.manual_seed(0)
            cfg = replace(config or ModelConfig(), trained=False, notes="seeded random weights, untrained")
            if input_size:
                cfg = replace(cfg, input_size=input_size)
            return PoseGraph(cfg, flip_test=flip_test).eval(), ""
        checkpoint = bundled
    checkpoint = Path(checkpoint)
    if config is None:
        side = config_path_for(checkpoint)
        try:
            config = ModelConfig.load(side) if side.is_file() else ModelConfig()
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"{side}: bad model config ({exc})") from None
    if input_size:
        config = replace(config, input_size=input_size)
    graph = PoseGraph(config, flip_test=flip_test)
    load_weights(graph, read_state_dict(checkpoint), str(checkpoint))
    return graph.eval(), sha256_of(checkpoint)
