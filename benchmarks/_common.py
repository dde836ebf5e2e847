"""Helpers shared by the benchmark scripts: data root, timing, result files, BENCHMARKS.md."""

from __future__ import annotations

import json
import os
import platform
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def data_root() -> Path:
    """``$GRAPHREC_DATA`` or ``../shared/data``; exits with a clear message if missing."""
    root = Path(os.environ.get("GRAPHREC_DATA", REPO.parent / "shared" / "data"))
    if not root.is_dir():
        raise SystemExit(f"benchmark data not found at {root} (set GRAPHREC_DATA)")
    return root


def best_time(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    """Minimum wall time of ``repeat`` calls and the last result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def machine() -> str:
    cpus = os.cpu_count()
    return f"{platform.machine()}, {cpus} cores, Python {platform.python_version()}"


def write_results(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=1))
    return path


def update_benchmarks_md(section: str, text: str) -> None:
    """Replace the block between ``<!-- section:begin -->`` and ``<!-- section:end -->``."""
    md = REPO / "BENCHMARKS.md"
    content = md.read_text() if md.exists() else "# Benchmarks\n"
    begin, end = f"<!-- {section}:begin -->", f"<!-- {section}:end -->"
    block = f"{begin}\n{text.rstrip()}\n{end}"
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    content = pattern.sub(lambda _: block, content) if pattern.search(content) else (
        content.rstrip() + "\n\n" + block + "\n"
    )
    md.write_text(content)
