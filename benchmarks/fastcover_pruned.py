"""FastCover + candidate-pruned greedy against exact lazy greedy on the held-out directed graphs.

Run: ``.venv/bin/python benchmarks/fastcover_pruned.py`` (writes
benchmarks/results/fastcover_pruned.csv and the ``fastcover-pruned`` table of BENCHMARKS.md).

For each of the six directed test graphs (never used in training or validation), d in {1, 2, 3}
and k in {1, 8, 32, 128, 1024}: the ratio to exact greedy of FastCover's one pass, of exact
greedy among the 4k and 8k best-scored nodes (``combinatorial.fastcover(..., candidates=C)``),
and their wall time (forward pass + balls + greedy) against closure + greedy.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as bench  # noqa: E402

from combinatorial import adjacency, coverage, d_closure, greedy  # noqa: E402
from combinatorial.gnn import load_pretrained, scores  # noqa: E402
from combinatorial.pruned import pruned_greedy  # noqa: E402
from graphrec.io import read_edgelist  # noqa: E402

GRAPHS = ("soc-gplus", "soc-epinions", "soc-brightkite", "soc-loc-brightkite", "soc-slashdot",
          "soc-douban")  # fmt: skip
KS = (1, 8, 32, 128, 1024)
POOLS = (4, 8)


def main() -> None:
    torch.set_num_threads(1)
    root = bench.data_root() / "fastcover/directed"
    rows = []
    for name in GRAPHS:
        g = read_edgelist(root / f"{name}.txt.gz")
        adj = adjacency(g.data.edge_index, g.num_nodes)
        for d in (1, 2, 3):
            model = load_pretrained(d)
            scores(model, g.data.edge_index, g.num_nodes)  # warm-up (PyG code generation)
            t0 = time.perf_counter()
            logits = scores(model, g.data.edge_index, g.num_nodes).numpy()
            score_s = time.perf_counter() - t0
            order = np.argsort(-logits, kind="stable")
            t0 = time.perf_counter()
            closure = d_closure(adj, d, max_bytes=None)
            closure_s = time.perf_counter() - t0
            for k in KS:
                t0 = time.perf_counter()
                ref = greedy(adj, k, d, closure=closure)
                greedy_s = closure_s + time.perf_counter() - t0
                one_cov = coverage(adj, order[:k], d)
                row = {"graph": name, "d": d, "k": k, "greedy": ref.covered,
                       "greedy_s": greedy_s, "one_pass": one_cov / ref.covered,
                       "one_pass_s": score_s}  # fmt: skip
                for c in POOLS:
                    t0 = time.perf_counter()
                    sol = pruned_greedy(adj, logits, k, d, candidates=c)
                    row[f"pool{c}"] = sol.covered / ref.covered
                    row[f"pool{c}_s"] = score_s + time.perf_counter() - t0
                rows.append(row)
                print(" ".join(f"{v:.3f}" if isinstance(v, float) else str(v)
                               for v in row.values()), flush=True)  # fmt: skip
            del closure
    bench.write_csv(bench.RESULTS / "fastcover_pruned.csv", rows, rows[0])
    lines = [
        f"Machine: {bench.machine()}, torch 1 thread. Command: "
        "`.venv/bin/python benchmarks/fastcover_pruned.py`. Six held-out directed graphs x "
        "k in {1, 8, 32, 128, 1024}; mean ratio to exact greedy and mean wall time (FastCover: "
        "forward pass, after one warm-up; pools: + d-balls of the pool + greedy; greedy: "
        "d-closure + lazy greedy).",
        "",
    ]
    means = []
    for d in (1, 2, 3):
        sub = [r for r in rows if r["d"] == d]
        m = {
            key: float(np.mean([r[key] for r in sub]))
            for key in sub[0]
            if key.endswith(("pass", "_s", "pool4", "pool8"))
        }
        worst = min(r["pool8"] for r in sub)
        means.append([d] + [f"{v:.3f}" for v in (
            m["one_pass"], m["one_pass_s"], m["pool4"], m["pool4_s"], m["pool8"], m["pool8_s"],
            worst, m["greedy_s"])])  # fmt: skip
    header = ["d", "one pass", "one pass s", "pool 4k", "pool 4k s", "pool 8k", "pool 8k s",
              "min pool 8k", "greedy s"]  # fmt: skip
    table = "\n".join(lines) + "\n" + bench.md_table(header, means)
    print(table)
    bench.update_benchmarks_md(
        "fastcover-pruned",
        "## FastCover + candidate-pruned greedy (`benchmarks/fastcover_pruned.py`)\n\n" + table,
    )


if __name__ == "__main__":
    main()
