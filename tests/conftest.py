"""Shared fixtures. Real datasets are located through ``shared_data`` only."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _data_root() -> Path:
    env = os.environ.get("GRAPHREC_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def _on_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the real test datasets (``../shared/data`` or ``$GRAPHREC_DATA``).

    Missing data skips a test locally but fails it under ``CI=true``.
    """
    root = _data_root()
    if not root.is_dir():
        msg = f"test data not found at {root} (set GRAPHREC_DATA)"
        if _on_ci():
            pytest.fail(msg)
        pytest.skip(msg)
    return root


@pytest.fixture(scope="session")
def export_extra() -> None:
    """Skip unless the ``export`` extra (onnx, onnxruntime, onnxscript, MNN) is installed; CI
    installs it, so a missing package fails there. A module needing it throughout sets
    ``pytestmark = pytest.mark.usefixtures("export_extra")``."""
    for module in ("onnx", "onnxruntime", "onnxscript", "MNN"):
        try:
            importlib.import_module(module)
        except ImportError:
            if _on_ci():
                raise
            pytest.skip(f"{module} is not installed (pip install -e '.[export]')")
