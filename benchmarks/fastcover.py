"""FastCover against the k-dDSP baselines: quality/time grid, scaling, plot.

Run: ``.venv/bin/python benchmarks/fastcover.py [--parts a,b,c] [--quick] [--graphs NAME ...]``

(a) Grid: every graph of ``fastcover/directed`` (read as directed, as listed) and
    ``fastcover/undirected`` (symmetrised), d in {1, 2, 3}, k in {1, 8, 32, 128, 1024} (capped
    at n). Anchor: exact greedy on the d-closure, built once per (graph, d); its time is closure
    + greedy to that k. Where the closure exceeds its memory budget, RIS greedy is the anchor.
(b) Scaling on power-law digraphs (``powerlaw_digraph``, mean out-degree 10, seed 0): FastCover
    (one pass), RIS greedy and closure greedy at k = 128, d = 2, 3; each run in its own
    subprocess (this script with ``--child``), which reports its time and peak RSS.
(c) Plot of (a) and (b).

Writes ``benchmarks/results/fastcover_grid.csv``, ``fastcover_scaling.json``, ``fastcover.png``
and the ``fastcover-grid`` / ``fastcover-scaling`` sections of BENCHMARKS.md. ``--quick`` (a small
subset) and ``--graphs`` runs write ``fastcover_quick_*`` / ``fastcover_subset_*`` files and leave
BENCHMARKS.md alone. torch runs with ``--threads`` threads (default 2, ``torch.set_num_threads``);
on a machine shared with other jobs use ``--threads 1``: with more busy threads than free cores
torch's OpenMP barriers made a FastCover forward pass up to 30x slower (0.02 s -> 0.8 s on
soc-gplus), while the NumPy/SciPy baselines run on one core anyway.

Code: part (a) is ``_fastcover_grid.py``, part (b) ``_fastcover_scaling.py``, their settings and
model loading ``_fastcover_base.py``; tables, timing, load notes and result files come from the
benchmark harness ``_common.py``. This file holds the command line and the plot (c).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _fastcover_base as base  # noqa: E402
from _common import RESULTS  # noqa: E402
from _fastcover_base import DS, LABELS, METHODS, gnn  # noqa: E402
from _fastcover_grid import held_out, mean_table, read_grid, report_grid, run_grid  # noqa: E402
from _fastcover_scaling import (  # noqa: E402
    SCALE_EDGES,
    child,
    report_scale,
    report_scaling,
    run_scale,
    run_scaling,
)

# --------------------------------------------------------------------------- (c) plot


def plot(rows: list[dict], scaling: dict | None, tag: str) -> None:
    """Left: mean ratio to greedy vs d (held-out graphs); right: scaling time vs n."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    means, _ = mean_table(held_out(rows))
    color = {m: f"C{i}" for i, m in enumerate(METHODS)}
    for method in METHODS:
        ds = [d for d in DS if (d, method) in means]
        if ds:
            left.plot(
                ds,
                [means[d, method][0] for d in ds],
                marker="o",
                color=color[method],
                label=LABELS.get(method, method),
            )
    left.set(
        xlabel="d (hops)",
        ylabel="mean coverage / greedy",
        xticks=list(DS),
        title="Held-out graphs, mean over graphs x k",
    )
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    if scaling and scaling["rows"]:
        for method, marker in (("fastcover", "o"), ("ris", "s"), ("greedy", "^")):
            for d, line in ((2, "-"), (3, "--")):
                pts = [
                    (r["n"], r[method]["time_s"])
                    for r in scaling["rows"]
                    if r["d"] == d and "time_s" in r[method]
                ]
                if pts:
                    xs, ys = zip(*pts)
                    right.loglog(
                        xs,
                        ys,
                        marker=marker,
                        linestyle=line,
                        color=color[method],
                        label=f"{LABELS.get(method, method)} d={d}",
                    )
        right.set(
            xlabel="n (nodes; edges = 10 n)",
            ylabel="seconds",
            title=f"Power-law digraphs, k = {scaling['k']}",
        )
        right.grid(alpha=0.3, which="both")
        right.legend(fontsize=8)
    fig.tight_layout()
    path = RESULTS / f"fastcover{tag}.png"
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", default="a,b,c", help="comma-separated subset of a,b,c")
    p.add_argument("--quick", action="store_true", help="small subset (development)")
    p.add_argument("--graphs", nargs="+", help="grid graphs: names or kind/name")
    p.add_argument(
        "--closure-budget-gib",
        type=float,
        default=2.0,
        help="grid: memory budget of the d-closure (default 2, the library's)",
    )
    p.add_argument(
        "--scaling-budget-gib",
        type=float,
        default=8.0,
        help="scaling: refuse closure greedy above this estimate",
    )
    p.add_argument("--child-timeout", type=float, default=900.0, help="seconds per scaling run")
    p.add_argument("--weights-dir", help="folder with weights.json (default: the package's)")
    p.add_argument(
        "--untrained",
        action="store_true",
        help="random-init model instead of the shipped weights (testing only)",
    )
    p.add_argument("--threads", type=int, default=base.THREADS, help="torch threads (default 2)")
    p.add_argument(
        "--scale",
        action="store_true",
        help="instead of the parts: read + solve text edge lists of power-law graphs with "
        "--scale-edges edges (default method, RIS, closure greedy), section fastcover-scale",
    )
    p.add_argument("--scale-edges", type=int, nargs="+", default=list(SCALE_EDGES))
    p.add_argument("--scale-d", type=int, nargs="+", default=[2], help="hop counts of --scale")
    p.add_argument(
        "--scale-dir", default="/tmp/fastcover_scale", help="where --scale keeps its edge files"
    )
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.parts = {s.strip() for s in args.parts.split(",") if s.strip()}
    if not args.parts <= {"a", "b", "c"}:
        p.error(f"--parts must be a subset of a,b,c, got {sorted(args.parts)}")
    return args


def snapshot_weights(weights_dir: str | None, dest: Path) -> tuple[str, str]:
    """Copy the weights to ``dest`` (they cannot change mid-run); returns it and a summary."""
    src = Path(weights_dir or gnn().WEIGHTS_DIR)
    manifest = src / "weights.json"
    if not manifest.is_file():
        raise SystemExit(f"{manifest} not found: train the weights first (or --untrained)")
    shutil.copytree(src, dest, dirs_exist_ok=True)
    models = json.loads((dest / "weights.json").read_text())["models"]
    missing = [d for d in DS if str(d) not in models]
    if missing:
        raise SystemExit(f"{manifest} has no model for d={missing}")
    summary = ", ".join(
        f"d={d} `{models[str(d)]['file']}` sha256 {models[str(d)]['sha256'][:12]}" for d in DS
    )
    return str(dest), summary


def run(args: argparse.Namespace, tag: str) -> None:
    """Parts a, b, c as selected."""
    rows = read_grid(tag)
    scaling = None
    if "a" in args.parts:
        t0 = time.perf_counter()
        rows = run_grid(args, tag)
        report_grid(rows, args, time.perf_counter() - t0, tag)
    if "b" in args.parts:
        t0 = time.perf_counter()
        scaling = run_scaling(args, tag)
        report_scaling(scaling, time.perf_counter() - t0, tag)
    if "c" in args.parts:
        if scaling is None and (RESULTS / f"fastcover{tag}_scaling.json").is_file():
            scaling = json.loads((RESULTS / f"fastcover{tag}_scaling.json").read_text())
        plot(rows, scaling, tag)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    base.THREADS = args.threads
    if args.child is not None:
        print("RESULT " + json.dumps(child(json.loads(args.child))), flush=True)
        return
    tag = "_quick" if args.quick else ("_subset" if args.graphs else "")
    if args.scale:
        t0 = time.perf_counter()
        if args.quick:  # a smoke test on 10^6 edges
            args.scale_edges = [10**6]
        report_scale(run_scale(args, tag), time.perf_counter() - t0, tag)
        return
    with tempfile.TemporaryDirectory(prefix="fastcover_weights_") as snapshot:
        if args.untrained:
            args.weights_dir, args.weights = None, "UNTRAINED (--untrained, seed 0)"
        elif {"a", "b"} & args.parts:
            args.weights_dir, args.weights = snapshot_weights(args.weights_dir, Path(snapshot))
        run(args, tag)


if __name__ == "__main__":
    main()
