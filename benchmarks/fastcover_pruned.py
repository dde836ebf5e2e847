"""FastCover's default (exact greedy without the whole closure where it is large) on the
acceptance grid.

Run: ``.venv/bin/python benchmarks/fastcover_pruned.py --threads 1`` (writes
benchmarks/results/fastcover_pruned.csv and the ``fastcover-pruned`` block of BENCHMARKS.md;
``--graphs`` runs a subset and writes nothing).

For each of the six directed test graphs (never used in training or validation), d in {1, 2, 3}
and k in {1, 8, 32, 128, 1024}, in the same run: the default ``fastcover`` method
(:func:`combinatorial.pruned.fastcover_greedy` with the pretrained model's scores), the one-pass
top-k, RIS and closure greedy (``greedy``: d-closure + lazy greedy, the closure built in every
call, as ``solve(method='greedy')`` does).
Ratio = coverage / closure greedy's coverage. Times exclude model loading and graph reading
(the forward pass after one warm-up); greedy, RIS and the default are timed in turns, a call
under 1 s best of 5.
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as bench  # noqa: E402

from combinatorial import adjacency, coverage, greedy, ris_greedy  # noqa: E402
from combinatorial.closure import ball_sizes  # noqa: E402
from combinatorial.gnn import load_pretrained, scores  # noqa: E402
from combinatorial.graph import reach  # noqa: E402
from combinatorial.pruned import fastcover_greedy  # noqa: E402
from graphrec.io import read_edgelist  # noqa: E402

GRAPHS = ("soc-gplus", "soc-epinions", "soc-brightkite", "soc-loc-brightkite", "soc-slashdot",
          "soc-douban")  # fmt: skip
KS = (1, 8, 32, 128, 1024)
#: ``--others``: symmetrised graphs never used to choose the default's thresholds, d = 3 only
OTHERS = ("ca-AstroPh.txt.gz", "HepPh.txt.gz", "Enron.txt.gz", "fb-pages-public-figure.txt.gz",
          "soc-gemsec-HU.txt.gz")  # fmt: skip


def timed(fn, *args, **kwargs):
    """Best of 5 wall times of ``fn(*args, **kwargs)`` (one call when it takes >= 0.2 s)."""
    return bench.best_time(partial(fn, *args, **kwargs), 5, repeat_below=0.2)


def in_turns(*calls) -> list[tuple[float, object]]:
    """(time, result) of each call: one timed call each, then those under 1 s four more times,
    taking turns (the same background load for all), best time kept."""
    results = [None] * len(calls)

    def timer(i: int):
        def run() -> float:
            t0 = time.perf_counter()
            results[i] = calls[i]()
            return time.perf_counter() - t0

        return run

    first = [timer(i)() for i in range(len(calls))]
    again = {i: timer(i) for i, t in enumerate(first) if t < 1.0}
    best = bench.alternating_best(again, 4) if again else {}
    return [(min(t, best.get(i, t)), results[i]) for i, t in enumerate(first)]


def forward(model, ei, n) -> np.ndarray:
    return scores(model, ei, n).numpy()


def run_graph(name: str, loads: bench.LoadLog, other: bool = False) -> list[dict]:
    path = f"fastcover/undirected/{name}" if other else f"fastcover/directed/{name}.txt.gz"
    g = read_edgelist(bench.data_root() / path, undirected=other)
    ei, n = g.data.edge_index, g.num_nodes
    adj = adjacency(ei, n)
    rows = []
    for d in (3,) if other else (1, 2, 3):
        model = load_pretrained(d)
        forward(model, ei, n)  # warm-up (PyG code generation)
        score_s, logits = timed(forward, model, ei, n)
        order = np.argsort(-logits, kind="stable")
        score = partial(forward, model, ei, n)
        share = residual_share(adj, d) if d == 3 else float("nan")
        for k in KS:
            (greedy_s, ref), (ris_s, ris), (fc_s, fc) = in_turns(
                partial(greedy, adj, k, d, max_bytes=None),
                partial(ris_greedy, adj, k, d, seed=0),
                partial(fastcover_greedy, adj, k, d, score),
            )
            row = {
                "graph": name, "d": d, "k": k, "greedy": ref.covered,
                "greedy_s": greedy_s, "ris": ris.covered / ref.covered, "ris_s": ris_s,
                "one_pass": coverage(adj, order[:k], d) / ref.covered, "one_pass_s": score_s,
                "default": fc.covered / ref.covered, "default_s": fc_s,
                "strategy": fc.info["strategy"], "certified": fc.info["certified"],
                "bound": fc.info["upper_bound"] / ref.covered, "pool": fc.info.get("pool", n),
                "residual_share": share, "load": loads.sample(),
            }  # fmt: skip
            rows.append(row)
            print(" ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()),
                  flush=True)  # fmt: skip
    return rows


def residual_share(adj, d: int) -> float:
    """Share of the reverse closure's entries held by the reverse d-balls of the nodes that
    greedy's first pick leaves uncovered (what residual greedy builds)."""
    reverse = ball_sizes(sp.csr_array(adj.T), d)
    first = greedy(adj, 1, d, max_bytes=None).seeds
    left = np.ones(adj.shape[0], dtype=bool)
    left[reach(adj, first, d, np.zeros(adj.shape[0], dtype=bool))] = False
    return float(reverse[left].sum() / reverse.sum())


def slowdown(row: dict) -> float:
    """Default time / the faster of RIS and closure greedy."""
    return row["default_s"] / min(row["ris_s"], row["greedy_s"])


def summary(rows: list[dict]) -> str:
    def mean(sub: list[dict], key: str) -> float:
        return float(np.mean([r[key] for r in sub]))

    per_d = []
    for d in dict.fromkeys(r["d"] for r in rows):
        sub = [r for r in rows if r["d"] == d]
        worst = min(sub, key=lambda r: r["default"])
        slow = max(sub, key=slowdown)
        per_d.append([
            d, f"{mean(sub, 'default'):.4f}",
            f"{worst['default']:.4f} ({worst['graph']}, k={worst['k']})",
            f"{mean(sub, 'one_pass'):.3f}", f"{min(r['one_pass'] for r in sub):.3f}",
            f"{mean(sub, 'ris'):.3f}", f"{sum(r['certified'] for r in sub)}/{len(sub)}",
            f"{mean(sub, 'bound'):.3f}", f"{mean(sub, 'default_s'):.3f}",
            f"{mean(sub, 'one_pass_s'):.3f}", f"{mean(sub, 'ris_s'):.3f}",
            f"{mean(sub, 'greedy_s'):.3f}",
            f"{slowdown(slow):.2f} ({slow['graph']}, k={slow['k']})",
        ])  # fmt: skip
    head = ["d", "default ratio", "worst cell", "one pass", "worst one pass", "RIS", "certified",
            "bound / greedy", "default s", "one pass s", "RIS s", "greedy s",
            "max default s / min(RIS, greedy) s"]  # fmt: skip
    speed = []
    for name in dict.fromkeys(r["graph"] for r in rows):
        sub = [r for r in rows if r["graph"] == name and r["d"] == 3]
        ups = [r["greedy_s"] / r["default_s"] for r in sub]
        ways = dict.fromkeys(r["strategy"] for r in sub)
        ways = "; ".join(f"{w} ({sum(r['strategy'] == w for r in sub)})" for w in ways)
        speed.append([name, ways, f"{sub[0]['residual_share']:.3f}", f"{min(ups):.1f}",
                      f"{np.mean(ups):.1f}",
                      f"{mean(sub, 'greedy_s'):.3f}", f"{mean(sub, 'default_s'):.3f}"])  # fmt: skip
    over = [f"{r['graph']} d={r['d']} k={r['k']} {slowdown(r):.1f}x" for r in rows
            if slowdown(r) > 2]  # fmt: skip
    speed_head = ["graph", "strategy (cells)", "residual share", "min speed-up", "mean speed-up",
                  "greedy s", "default s"]  # fmt: skip
    return (
        bench.md_table(head, per_d)
        + "\n\nd = 3, closure greedy time / default time per graph (min and mean over k); "
        + "residual share = entries of the reverse balls of the nodes greedy's first pick leaves "
        + "uncovered / entries of the whole reverse closure:\n\n"
        + bench.md_table(speed_head, speed)
        + f"\n\nCells where the default took more than 2x min(RIS, greedy) ({len(over)} of "
        + f"{len(rows)}): {'; '.join(over) if over else 'none'}."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--graphs", nargs="+", choices=GRAPHS, default=list(GRAPHS))
    parser.add_argument(
        "--others",
        action="store_true",
        help="d = 3 on five symmetrised graphs outside the test set instead (section "
        "fastcover-pruned-others)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loads = bench.LoadLog()
    t0 = time.perf_counter()
    names = OTHERS if args.others else args.graphs
    rows = [row for name in names for row in run_graph(name, loads, args.others)]
    wall = time.perf_counter() - t0
    text = summary(rows)
    if args.others:
        others(rows, text, wall, loads, args.threads)
        return
    if args.graphs != list(GRAPHS):
        print(text)
        return
    bench.write_csv(bench.RESULTS / "fastcover_pruned.csv", rows, rows[0], float_format=".6g")
    intro = (
        f"Machine: {bench.machine()}, torch {args.threads} thread(s). Command: "
        f"`{bench.command_line('.venv/bin/python benchmarks/fastcover_pruned.py')}`. "
        f"Wall time {wall / 60:.1f} min. {loads.note(args.threads)}\n\n"
        "Six held-out directed graphs x d in {1, 2, 3} x k in {1, 8, 32, 128, 1024}, all methods "
        "in the same run. Ratio = coverage / closure greedy's. default = `solve(method="
        "'fastcover')` (`strategy` column of the CSV): closure greedy where the closure is small "
        "(every d = 1 cell, d-walk count <= 8 (n + m)). Else, at d = 3, the first pick is the "
        "largest ball among those that 128-1,024 sampled reverse balls cannot tell from the "
        "largest (the answer at k = 1), then exact greedy on the reverse balls of the nodes it "
        "leaves uncovered when they are estimated at <= 1/4 of the closure's entries, else exact "
        "greedy among candidates ranked by the GNN (one growth round); at d = 2 exact greedy "
        "among candidates ranked by the walk bound, the pool grown until certified or 16 (n + m) "
        "ball entries, or closure greedy where the starting pool's balls exceed 1/8 of the "
        "closure. k = 1 at d = 2 with a large closure: the sampled first pick. one pass = "
        "top-k of the forward pass (`--one-pass`). Times "
        "exclude model loading; greedy = d-closure + lazy greedy, per "
        "call; greedy, RIS and the default timed in turns, calls under 1 s best of 5 (the "
        "forward pass: under 0.2 s). "
        "Timings are upper bounds on a shared machine.\n"
    )
    bench.update_benchmarks_md(
        "fastcover-pruned",
        "## FastCover default: exact greedy without the whole closure "
        "(`benchmarks/fastcover_pruned.py`)\n\n" + intro + "\n" + text,
    )
    print(text)


def others(rows: list[dict], text: str, wall: float, loads: bench.LoadLog, threads: int) -> None:
    """The ``--others`` run: its CSV and the ``fastcover-pruned-others`` section."""
    bench.write_csv(bench.RESULTS / "fastcover_pruned_others.csv", rows, rows[0],
                    float_format=".6g")  # fmt: skip
    intro = (
        f"Machine: {bench.machine()}, torch {threads} thread(s). Command: "
        f"`{bench.command_line('.venv/bin/python benchmarks/fastcover_pruned.py')}`. "
        f"Wall time {wall / 60:.1f} min. {loads.note(threads)}\n\n"
        "The default's thresholds were chosen on the six test graphs; these symmetrised graphs "
        "(`fastcover/undirected`) played no part. d = 3, k in {1, 8, 32, 128, 1024}, the same "
        "methods and timing as the section above.\n"
    )
    bench.update_benchmarks_md(
        "fastcover-pruned-others",
        "## FastCover default at d = 3 on graphs outside the test set\n\n" + intro + "\n" + text,
    )
    print(text)


if __name__ == "__main__":
    main()
