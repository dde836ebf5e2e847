"""Fixtures shared by the command-line tests."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def log_file(tmp_path):
    """A rating log with string-like ids: 40 users 'u0'.. x 30 items 'i0'.., two taste groups."""
    rng = np.random.default_rng(0)
    lines = ["user,item,rating"]
    for u in range(40):
        group = u % 2
        items = rng.choice(np.arange(group * 15, group * 15 + 15), size=8, replace=False)
        lines += [f"u{u},i{i},5" for i in items]
    path = tmp_path / "log.csv"
    path.write_text("\n".join(lines) + "\n")
    return path
