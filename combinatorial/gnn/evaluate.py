"""Coverage of FastCover and one-shot baselines relative to exact greedy on the test graphs.

For every graph, d and k: greedy coverage (prefixes of one greedy run to max k), and coverage /
greedy for FastCover one pass, FastCover with ``--rounds`` re-scoring, two untrained models (the
official architecture with PyTorch's default init, seed 42; the shipped architecture with
:func:`~combinatorial.gnn.train.monotone_init_`, where training starts), soft coverage and
top out-degree; plus the time of one FastCover forward pass + top-k (median of 5). Writes JSON
and prints the mean ratios::

    python -m combinatorial.gnn.evaluate --out fastcover_eval.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from combinatorial.baselines import greedy, out_degree, soft_coverage_scores
from combinatorial.coverage import coverage
from combinatorial.gnn.inference import fastcover_seeds, load_pretrained, scores, top_k
from combinatorial.gnn.model import FastCover
from combinatorial.gnn.train import TEST_GRAPHS, monotone_init_
from combinatorial.graph import adjacency
from graphrec.io import read_edgelist

METHODS = ("fastcover", "fastcover_rounds", "untrained", "untrained_monotone", "soft", "degree")


def _forward_seconds(model: FastCover, edge_index: torch.Tensor, n: int) -> float:
    """Median wall time of forward pass + top-1024 over 5 runs, after one warm-up run."""
    top_k(scores(model, edge_index, n), 1024)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        top_k(scores(model, edge_index, n), 1024)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def evaluate_graph(
    path: Path,
    ds: list[int],
    ks: list[int],
    rounds: int,
    *,
    residual: str = "mask",
    weights_dir: Path | None = None,
) -> dict:
    """Coverage of every method for one graph, keyed by d, then method, then k."""
    g = read_edgelist(path)
    n, edge_index = g.num_nodes, g.data.edge_index
    adj = adjacency(edge_index, n)
    ks = [k for k in ks if k <= n]
    fixed = {"soft": soft_coverage_scores(adj), "degree": out_degree(adj).astype(np.float64)}
    torch.manual_seed(42)
    untrained = FastCover().eval()
    out = {"n": n, "m": int(edge_index.size(1)), "d": {}}
    for d in ds:
        t0 = time.perf_counter()
        ref = greedy(adj, max(ks), d, max_bytes=None)
        res = {
            "greedy_s": time.perf_counter() - t0,
            "greedy": {k: coverage(adj, ref.seeds[:k], d) for k in ks},
        }
        model = load_pretrained(d, weights_dir=weights_dir)
        monotone = FastCover(**model.config())
        monotone_init_(monotone, d)
        res["forward_s"] = _forward_seconds(model, edge_index, n)
        order = {
            "fastcover": top_k(scores(model, edge_index, n), max(ks)).numpy(),
            "untrained": top_k(scores(untrained, edge_index, n), max(ks)).numpy(),
            "untrained_monotone": top_k(scores(monotone, edge_index, n), max(ks)).numpy(),
        }
        order |= {name: np.argsort(-s, kind="stable")[: max(ks)] for name, s in fixed.items()}
        for name, ranked in order.items():
            res[name] = {k: coverage(adj, ranked[:k], d) for k in ks}
        res["fastcover_rounds"] = {
            k: coverage(
                adj,
                fastcover_seeds(
                    edge_index, n, k, d, model=model, rounds=rounds, residual=residual, adj=adj
                ),
                d,
            )
            for k in ks
        }
        out["d"][d] = res
    return out


def summary(results: dict, ds: list[int]) -> dict:
    """Mean over graphs and k of coverage / greedy, per d and method."""
    table = {}
    for d in ds:
        row = {}
        for method in METHODS:
            ratios = [
                r["d"][d][method][k] / r["d"][d]["greedy"][k]
                for r in results.values()
                for k in r["d"][d]["greedy"]
            ]
            row[method] = float(np.mean(ratios))
        row["forward_s"] = float(np.mean([r["d"][d]["forward_s"] for r in results.values()]))
        table[d] = row
    return table


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m combinatorial.gnn.evaluate")
    p.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    p.add_argument(
        "--graphs", nargs="+", default=[f"fastcover/directed/{g}.txt.gz" for g in TEST_GRAPHS]
    )
    p.add_argument("--ds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--ks", type=int, nargs="+", default=[1, 8, 32, 128, 1024])
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--residual", choices=("mask", "drop"), default="mask")
    p.add_argument("--weights-dir", type=Path, help="default: the package's weights")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = {}
    for rel in args.graphs:
        name = Path(rel).name.split(".")[0]
        results[name] = evaluate_graph(
            args.data_root / rel,
            args.ds,
            args.ks,
            args.rounds,
            residual=args.residual,
            weights_dir=args.weights_dir,
        )
        print(
            name,
            {
                d: {
                    m: round(float(np.mean([v[m][k] / v["greedy"][k] for k in v["greedy"]])), 4)
                    for m in METHODS
                }
                for d, v in results[name]["d"].items()
            },
            flush=True,
        )
    table = summary(results, args.ds)
    args.out.write_text(
        json.dumps(
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "summary": table,
                "graphs": results,
            },
            indent=1,
        )
    )
    print("| d | " + " | ".join(METHODS) + " | forward s |")
    print("|---" * (len(METHODS) + 2) + "|")
    for d, row in table.items():
        cells = " | ".join(f"{row[m]:.4f}" for m in METHODS)
        print(f"| {d} | {cells} | {row['forward_s']:.3f} |")


if __name__ == "__main__":
    main()
