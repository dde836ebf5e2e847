"""Shared fixtures. Real datasets are located through ``shared_data`` only."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _data_root() -> Path:
    env = os.environ.get("GRAPHREC_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the real test datasets (``../shared/data`` or ``$GRAPHREC_DATA``).

    Missing data skips a test locally but fails it under ``CI=true``.
    """
    root = _data_root()
    if not root.is_dir():
        msg = f"test data not found at {root} (set GRAPHREC_DATA)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg)
        pytest.skip(msg)
    return root
