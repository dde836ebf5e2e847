"""The benchmark harness shared by the scripts in this folder.

Machine and load notes, best-of-N timing with warm-up, ratio columns, Markdown tables, result
files under ``benchmarks/results/`` (written atomically) and the sections of BENCHMARKS.md.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import re
import resource
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from graphrec.io.atomic import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
K = TypeVar("K")


# --------------------------------------------------------------------------- machine and load


def data_root() -> Path:
    """``$GRAPHREC_DATA`` or ``../shared/data``; exits with a clear message if missing."""
    root = Path(os.environ.get("GRAPHREC_DATA", REPO.parent / "shared" / "data"))
    if not root.is_dir():
        raise SystemExit(f"benchmark data not found at {root} (set GRAPHREC_DATA)")
    return root


def machine() -> str:
    """CPU architecture, core count and Python version, e.g. ``x86_64, 2 cores, Python 3.11.7``."""
    cpus = os.cpu_count()
    return f"{platform.machine()}, {cpus} cores, Python {platform.python_version()}"


def load_average() -> float:
    """The machine's 1-min load average (other jobs on shared cores make timings noisy)."""
    return os.getloadavg()[0]


class LoadLog:
    """1-min load averages sampled during a run: one at the start, then one per :meth:`sample`."""

    def __init__(self) -> None:
        self.start = load_average()
        self.samples: list[float] = []

    def sample(self) -> float:
        """Record the load average now and return it."""
        self.samples.append(load_average())
        return self.samples[-1]

    def note(self, threads: int) -> str:
        """Mean and max of the samples (``threads`` busy threads of ours), then forget them."""
        if not self.samples:
            return ""
        note = (
            f"1-min load average during the run: mean {sum(self.samples) / len(self.samples):.1f}"
            f", max {max(self.samples):.1f} ({len(self.samples)} samples; > {threads} means "
            "shared cores)."
        )
        self.samples.clear()
        return note


def peak_mib() -> float:
    """Peak resident memory of this process so far, in MiB.

    ``VmHWM`` of /proc/self/status (the high-water mark of this program's own address space);
    ``ru_maxrss`` is the fallback, but Linux carries it over from the parent across fork + exec,
    so a child of a large parent would report the parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def mem_available() -> int:
    """``MemAvailable`` of /proc/meminfo in bytes (0 if unknown)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def command_line(prefix: str) -> str:
    """``prefix`` and this process's arguments, shell-quoted: the command that reproduces it."""
    return f"{prefix} {shlex.join(sys.argv[1:])}".rstrip()


# --------------------------------------------------------------------------- timing


def timings(
    fn: Callable[[], Any],
    repeat: int,
    *,
    warmup: int = 0,
    measure: Callable[[Any, float], float] | None = None,
) -> Iterator[tuple[float, Any]]:
    """``(time, result)`` of ``repeat`` calls of ``fn`` after ``warmup`` untimed calls.

    A call's time is its wall time, or ``measure(result, wall)`` (e.g. a time the result
    reports itself).
    """
    for _ in range(warmup):
        fn()
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        wall = time.perf_counter() - t0
        yield (wall if measure is None else measure(out, wall)), out


def best_time(
    fn: Callable[[], Any],
    repeat: int = 3,
    *,
    warmup: int = 0,
    measure: Callable[[Any, float], float] | None = None,
    repeat_below: float = math.inf,
) -> tuple[float, Any]:
    """Best (minimum) time of ``repeat`` calls (see :func:`timings`) and the first result.

    Calls after the first are made only when the first took less than ``repeat_below``.
    """
    runs = timings(fn, repeat, warmup=warmup, measure=measure)
    best, out = next(runs)
    if best < repeat_below:
        best = min([best] + [t for t, _ in runs])
    return best, out


def median_time(fn: Callable[[], Any], repeat: int, *, warmup: int = 2) -> float:
    """Median wall time of ``repeat`` calls after ``warmup`` untimed calls."""
    return statistics.median(t for t, _ in timings(fn, repeat, warmup=warmup))


def alternating_best(
    measures: Mapping[K, Callable[[], float]], repeat: int, *, warmup: int = 0
) -> dict[K, float]:
    """Best of ``repeat`` rounds per variant, the variants taking turns within each round.

    Each measure runs and returns its own time (one epoch, ms per call, ...), so all variants
    see the same background load. ``warmup`` untimed rounds run first.
    """
    for _ in range(warmup):
        for fn in measures.values():
            fn()
    best = {key: math.inf for key in measures}
    for _ in range(repeat):
        for key, fn in measures.items():
            best[key] = min(best[key], fn())
    return best


# --------------------------------------------------------------------------- formatting


def fmt_time(s: float | None) -> str:
    """Seconds with 3 decimals below 10 s and 1 above; ``-`` for none."""
    if s is None or (isinstance(s, float) and math.isnan(s)):
        return "-"
    return f"{s:.3f}" if s < 10 else f"{s:.1f}"


def ratio(value: float, baseline: float, spec: str = ".2f", unit: str = "x") -> str:
    """A ratio-to-baseline cell: ``value / baseline`` formatted with ``spec``, then ``unit``."""
    return f"{value / baseline:{spec}}{unit}"


def md_table(header: list[str], rows: Iterable[Iterable[Any]]) -> str:
    """A Markdown table as in BENCHMARKS.md: ``| a | b |``, ``|---|---|``, one line a row."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------- result files


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (:func:`graphrec.io.atomic.atomic_write_text`: a
    temporary file in the folder, then a rename; permissions follow the umask)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)
    return path


def write_json(path: Path, payload: Any) -> Path:
    """``payload`` as indented JSON at ``path``, atomically."""
    return write_text(path, json.dumps(payload, indent=1))


def write_results(name: str, payload: Any) -> Path:
    """``benchmarks/results/NAME.json``, atomically; returns its path."""
    return write_json(RESULTS / f"{name}.json", payload)


def write_csv(
    path: Path,
    rows: Iterable[Mapping[str, Any]],
    fields: Iterable[str],
    float_format: str | None = None,
) -> Path:
    """``rows`` as CSV with the columns ``fields`` (missing or None: empty), atomically.

    ``float_format`` (e.g. ``".6g"``) formats float cells; by default they are written as
    :class:`csv.writer` writes them.
    """
    fields = list(fields)
    lines: list[str] = []

    class _Lines:
        def write(self, line: str) -> None:
            lines.append(line)

    writer = csv.DictWriter(_Lines(), fieldnames=fields, restval="")
    writer.writeheader()
    for row in rows:
        if float_format is not None:
            row = {k: format(v, float_format) if isinstance(v, float) else v
                   for k, v in row.items()}  # fmt: skip
        writer.writerow(row)
    return write_text(path, "".join(lines))


def publish(section: str, text: str, update_md: bool = True) -> None:
    """Print ``text`` and, if ``update_md``, make it the ``section`` block of BENCHMARKS.md."""
    print(text)
    if update_md:
        update_benchmarks_md(section, text)


def update_benchmarks_md(section: str, text: str) -> None:
    """Replace the block between ``<!-- section:begin -->`` and ``<!-- section:end -->``."""
    md = REPO / "BENCHMARKS.md"
    content = md.read_text() if md.exists() else "# Benchmarks\n"
    begin, end = f"<!-- {section}:begin -->", f"<!-- {section}:end -->"
    block = f"{begin}\n{text.rstrip()}\n{end}"
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    content = (
        pattern.sub(lambda _: block, content)
        if pattern.search(content)
        else (content.rstrip() + "\n\n" + block + "\n")
    )
    write_text(md, content)
