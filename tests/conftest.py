"""Shared fixtures, and hypothesis profiles: derandomised by default so `make test` and CI see the same examples.

Set HYPOTHESIS_PROFILE=explore to draw fresh random examples locally. Loaded here, before any test
module is imported, so a module's own ``settings(max_examples=...)`` inherits the loaded profile.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def default_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled default model exported once per test session with rmpe-export's defaults."""
    pytest.importorskip("torch")
    from rmpe.export.cli import main as export_main

    out = tmp_path_factory.mktemp("default-export")
    assert export_main(["--out", str(out)]) == 0
    return out / "model.onnx"
