"""Helpers shared by the tests of imported architectures: the sources' key lists and random weights."""

from __future__ import annotations

from pathlib import Path

import torch

KEYS = Path(__file__).parent / "data" / "checkpoint_keys"


def source_keys(name: str) -> dict[str, tuple[tuple[int, ...], str]]:
    """A source state dict as listed in tests/data/checkpoint_keys/NAME (made by the source's own model
    code): key → (shape, dtype); comment lines, the source's printed lines and the ``out`` line skipped."""
    entries = {}
    for line in (KEYS / name).read_text().splitlines():
        parts = line.split(" ", 1)
        if line.startswith(("#", "out ")) or len(parts) != 2 or not parts[1].startswith("("):
            continue
        shape, dtype = parts[1].rsplit(" ", 1)
        entries[parts[0]] = (tuple(int(d) for d in shape.strip("()").split(",") if d.strip()), dtype)
    return entries


def randomised(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights and batch-norm statistics, so every layer, fuse path and BN folding is exercised."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, value in model.state_dict().items():
            if not value.dtype.is_floating_point:
                continue
            if name.endswith("running_var"):
                value.copy_(torch.rand(value.shape, generator=gen) + 0.5)
            elif value.dim() == 1:
                value.copy_(torch.randn(value.shape, generator=gen) * 0.1 + (1.0 if name.endswith("weight") else 0.0))
            else:
                value.copy_(torch.randn(value.shape, generator=gen) / value[0].numel() ** 0.5)
    return model.eval()


def random_state(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with exactly the keys, shapes and dtypes of tests/data/checkpoint_keys/NAME and
    random weights scaled so activations stay finite (positive variances, integer counters zero)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, (shape, dtype) in source_keys(name).items():
        if not dtype.startswith("float"):
            state[key] = torch.zeros(shape, dtype=torch.long)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=generator) + 0.5
        elif len(shape) < 2:  # as randomised(): batch-norm scales about 1, biases about 0
            state[key] = torch.randn(shape, generator=generator) * 0.1 + (1.0 if key.endswith("weight") else 0.0)
        else:
            state[key] = torch.randn(shape, generator=generator) / torch.Size(shape[1:]).numel() ** 0.5
    return state
