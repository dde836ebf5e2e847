"""graphrec against a C++ peer at d = 1: NetworKit's ``GroupDegree``, exact greedy, RIS, FastCover.

Run: ``.venv/bin/python benchmarks/fastcover_peers.py [--graphs NAME ...]`` (writes
benchmarks/results/fastcover_peers.csv and, on a full run, the ``fastcover-peers`` block of
BENCHMARKS.md). NetworKit is not a dependency of graphrec: install it into the benchmark
environment with ``.venv/bin/pip install -e ".[bench]"`` (or ``pip install networkit``);
without it the script says so in one line and skips its column.

At d = 1 the k-dDSP is maximum group degree: a seed covers itself and its out-neighbours, which
is NetworKit's ``GroupDegree(G, k, countGroupNodes=True)`` on the directed graph (its greedy,
(1 - 1/e)-approximate; its neighbours are out-neighbours, u -> v meaning u covers v). Its group
is re-scored with graphrec's own evaluator (``combinatorial.coverage``) and checked against
NetworKit's score. For every directed graph of ``fastcover/directed`` (the six held-out test
graphs and the four training graphs) and k in {1, 8, 32, 128, 1024}: coverage as a ratio to
graphrec's exact greedy and the best of 3 times of each method, all single-threaded
(NetworKit 1 OpenMP thread, torch 1 thread). Times are the solver's own: the conversion of the
edge list into each library's graph (CSR for graphrec, ``networkit.Graph`` without self-loops,
which GroupDegree refuses and which change nothing at d = 1) is excluded for all.
graphrec's ``fastcover`` runs with its registered defaults (``SOLVERS.defaults("fastcover")``,
recorded in the table).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as bench  # noqa: E402

from combinatorial import adjacency, coverage  # noqa: E402
from combinatorial.api import solve  # noqa: E402
from graphrec.io import read_edgelist  # noqa: E402
from graphrec.registry import SOLVERS  # noqa: E402

TEST = ("soc-gplus", "soc-epinions", "soc-brightkite", "soc-loc-brightkite", "soc-slashdot",
        "soc-douban")  # fmt: skip
TRAIN = ("soc-wiki-elec", "soc-anybeat", "soc-advogato", "soc-sign-bitcoinotc")
KS = (1, 8, 32, 128, 1024)
METHODS = ("networkit", "greedy", "ris", "fastcover")
REPEAT = 3


def networkit() -> Any:
    """The ``networkit`` module (1 thread), or None with a one-line note if it is missing."""
    try:
        import networkit as nk
    except ImportError:
        print("networkit is not installed (pip install networkit): its column is skipped")
        return None
    nk.setNumberOfThreads(1)
    return nk


def zero_gain_picks(adj: Any, group: np.ndarray) -> int:
    """Picks of ``group`` (in its order) that cover no new node at d = 1 while some node is
    still uncovered (an exact greedy never makes one: an uncovered node gains at least itself)."""
    covered = np.zeros(adj.shape[0], dtype=bool)
    zero = 0
    for u in group:
        ball = np.r_[u, adj.indices[adj.indptr[u] : adj.indptr[u + 1]]]
        zero += int(not (~covered[ball]).any() and not covered.all())
        covered[ball] = True
    return zero


def group_degree(nk: Any, G: Any, adj: Any, k: int) -> tuple[float, np.ndarray]:
    """Best-of-``REPEAT`` time of ``GroupDegree(G, k, True).run()`` and its group; the group's
    coverage by our evaluator must equal NetworKit's own score."""
    best, group = float("inf"), None
    for _ in range(REPEAT):
        t0 = time.perf_counter()
        gd = nk.centrality.GroupDegree(G, k, True)
        gd.run()
        best = min(best, time.perf_counter() - t0)
        group = np.asarray(gd.groupMaxDegree(), dtype=np.int64)
    ours = coverage(adj, group, 1)
    if ours != round(gd.getScore()):
        raise SystemExit(f"GroupDegree scores {gd.getScore()}, our evaluator {ours}: semantics?")
    return best, group


def ours(g: Any, k: int, method: str) -> tuple[float, Any]:
    """Best-of-``REPEAT`` solver time (the edge list -> CSR conversion excluded) and solution."""
    best, sol = float("inf"), None
    for _ in range(REPEAT):
        sol = solve(g, k, 1, method=method, seed=0)
        spent = sum(t for phase, t in sol.timings.items() if phase not in ("load", "graph"))
        best = min(best, spent)
    return best, sol


def run_graph(nk: Any, name: str, path: Path) -> list[dict]:
    g = read_edgelist(path)
    adj = adjacency(g.data.edge_index, g.num_nodes)
    solve(g, 1, 1)  # warm-up: model loading and PyG code generation
    G, convert_s = None, None
    if nk is not None:
        t0 = time.perf_counter()
        coo = adj.tocoo()
        keep = coo.row != coo.col  # GroupDegree refuses self-loops; at d = 1 they change nothing
        G = nk.GraphFromCoo((coo.row[keep], coo.col[keep]), n=g.num_nodes, directed=True)
        convert_s = time.perf_counter() - t0
    rows = []
    for k in KS:
        row: dict[str, Any] = {"graph": name, "role": "test" if name in TEST else "train",
                               "n": g.num_nodes, "arcs": adj.nnz, "k": k}  # fmt: skip
        for method in METHODS[1:]:
            secs, sol = ours(g, k, method)
            row[f"{method}_covered"], row[f"{method}_s"] = sol.covered, secs
            if method == "fastcover":  # what the default did (method, pool, bound, ...)
                row["fastcover_method"] = sol.method
                row["fastcover_strategy"] = sol.info.get("strategy", "")
                row["fastcover_info"] = " ".join(f"{key}={value}" for key, value in
                                                 sol.info.items() if np.isscalar(value))
        if G is not None:
            secs, group = group_degree(nk, G, adj, k)
            row["networkit_covered"] = coverage(adj, group, 1)
            row["networkit_s"], row["networkit_convert_s"] = secs, convert_s
            row["networkit_zero_gain"] = zero_gain_picks(adj, group)
        for method in METHODS:
            if f"{method}_covered" in row:
                row[f"{method}_ratio"] = row[f"{method}_covered"] / row["greedy_covered"]
        rows.append(row)
        print(" ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values()),
              flush=True)  # fmt: skip
    return rows


def summary(rows: list[dict], methods: list[str], key: str, keys: list[Any]) -> str:
    """Per value of ``key``: mean ratio to greedy (min) and mean seconds of each method."""
    header = [key]
    for m in methods:
        header += [f"{m} ratio (min)", f"{m} s"]
    table = []
    for value in keys:
        sub = [r for r in rows if r[key] == value]
        cells: list[Any] = [value]
        for m in methods:
            ratios = [r[f"{m}_ratio"] for r in sub]
            cells += [f"{statistics.mean(ratios):.4f} ({min(ratios):.4f})",
                      bench.fmt_time(statistics.mean(r[f"{m}_s"] for r in sub))]  # fmt: skip
        table.append(cells)
    return bench.md_table(header, table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graphs", nargs="+", help="only these graphs (BENCHMARKS.md untouched)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    nk = networkit()
    root = bench.data_root() / "fastcover/directed"
    names = [*TEST, *TRAIN] if args.graphs is None else args.graphs
    load = bench.LoadLog()
    t_start = time.perf_counter()
    rows = []
    for name in names:
        rows += run_graph(nk, name, root / f"{name}.txt.gz")
        load.sample()
    wall = time.perf_counter() - t_start
    tag = "" if args.graphs is None else "_subset"
    fields = list(dict.fromkeys(key for r in rows for key in r))
    bench.write_csv(bench.RESULTS / f"fastcover_peers{tag}.csv", rows, fields)
    methods = [m for m in METHODS if f"{m}_ratio" in rows[0]]
    fc = SOLVERS.defaults("fastcover")
    options = ", ".join(f"{key}={value}" for key, value in fc.items())
    version = "not installed" if nk is None else nk.__version__
    convert = [r["networkit_convert_s"] for r in rows if "networkit_convert_s" in r]
    notes = [
        f"Machine: {bench.machine()}; NetworKit {version} (1 thread), torch 1 thread. "
        f"Command: `{bench.command_line('.venv/bin/python benchmarks/fastcover_peers.py')}` "
        f"({wall:.0f} s). 1-min load average: {load.start:.1f} at the start, mean "
        f"{statistics.mean(load.samples):.1f} and max {max(load.samples):.1f} over the run "
        "(2 cores shared with other jobs: times are upper bounds).",
        "",
        "d = 1 (maximum group degree), k in {1, 8, 32, 128, 1024}, directed graphs. Ratio: "
        "coverage / graphrec exact greedy's (NetworKit's group re-scored by graphrec's "
        "evaluator, equal to its own score on every cell); s: the solver's own time, best of "
        "3, graph conversion excluded (NetworKit's `GraphFromCoo`: mean "
        f"{bench.fmt_time(statistics.mean(convert)) if convert else '-'} s). `fastcover`: "
        f"`solve(method='fastcover')` with its defaults ({options}). Columns: networkit = "
        "`GroupDegree(G, k, countGroupNodes=True)` (C++ greedy), greedy = graphrec exact lazy "
        "greedy on A + I, ris = reverse-ball sampling greedy (seed 0).",
    ]
    strategies = sorted({r["fastcover_strategy"] for r in rows if r["fastcover_strategy"]})
    if strategies:
        notes.append(f"\n`fastcover` chose: {', '.join(strategies)} (its `strategy`, per cell "
                     "in the CSV).")  # fmt: skip
    zero = [r for r in rows if r.get("networkit_zero_gain")]
    if zero:
        worst = max(zero, key=lambda r: r["networkit_zero_gain"])
        notes.append(
            f"\nNetworKit's group contains picks that cover no new node while nodes remain "
            f"uncovered in {len(zero)} of {len(rows)} cells (most: {worst['graph']}, "
            f"k = {worst['k']}: {worst['networkit_zero_gain']} of {worst['k']} picks), which an "
            "exact greedy never makes (its lowest ratios come from them)."
        )
    test_rows = [r for r in rows if r["role"] == "test"]
    parts = ["\n".join(notes)]
    if test_rows:
        parts.append("Held-out test graphs, mean over them per k:\n\n"
                     + summary(test_rows, methods, "k", list(KS)))  # fmt: skip
    parts.append("Per graph, mean over k:\n\n"
                 + summary(rows, methods, "graph", list(names)))  # fmt: skip
    text = "\n\n".join(parts)
    heading = "## Peers at d = 1: NetworKit GroupDegree (`benchmarks/fastcover_peers.py`)"
    bench.publish("fastcover-peers", heading + "\n\n" + text, update_md=not tag)


if __name__ == "__main__":
    main()
