"""Load-time and peak-memory benchmark of graphrec's validating readers.

Run: ``.venv/bin/python benchmarks/io.py [--baseline SRC]`` (writes benchmarks/results/io.json
and the ``io`` section of BENCHMARKS.md). Each time in the first table is the best of 3 runs
in the same process. The second table reads a generated edge list of 10^7 edges in a fresh
subprocess per run and reports its wall time and peak RSS above the RSS after the imports;
``--baseline SRC`` also measures the ``graphrec`` package found in the folder SRC (for
example an older version: ``git archive <commit> graphrec | tar -x -C SRC``).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import networkx as nx
import numpy as np
import torch
from torch_geometric.data import Data

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as bench  # noqa: E402

from graphrec.io import read_edgelist, read_interactions  # noqa: E402


def _networkx_to_data(path: Path) -> Data:
    g = nx.read_edgelist(path, create_using=nx.DiGraph, nodetype=int)
    edges = np.array(g.edges(), dtype=np.int64).T
    return Data(edge_index=torch.from_numpy(edges), num_nodes=g.number_of_nodes())


def _pandas_to_data(path: Path) -> Data:
    import pandas as pd

    df = pd.read_csv(path, sep=" ", header=None, comment="#", dtype=np.int64)
    edges = torch.from_numpy(df.to_numpy().T.copy())
    return Data(edge_index=edges, num_nodes=int(edges.max()) + 1)


def _python_lightgcn(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The loop LightGCN-style loaders use: split each line, first id is the user."""
    users, items = [], []
    with gzip.open(path, "rt") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) > 1:
                u = int(parts[0])
                users.extend([u] * (len(parts) - 1))
                items.extend(int(x) for x in parts[1:])
    return np.array(users), np.array(items)


_MEASURE = """
import json, resource, sys, time
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
from graphrec.io import read_edgelist
import graphrec.io
before = rss()
t0 = time.perf_counter()
g = read_edgelist(sys.argv[1])
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
final = g.data.edge_index.numpy().nbytes + g.node_ids.nbytes
print(json.dumps({"seconds": seconds, "peak_bytes": peak - before, "final_bytes": final,
                  "edges": g.num_edges, "nodes": g.num_nodes, "module": graphrec.io.__file__}))
"""


def write_large_edgelist(path: Path, num_edges: int = 10**7, num_ids: int = 10**6) -> None:
    """``num_edges`` lines ``u v`` with ids drawn uniformly from ``0..num_ids-1``."""
    rng = np.random.default_rng(0)
    with open(path, "w") as fh:
        for start in range(0, num_edges, 10**6):
            ids = rng.integers(0, num_ids, size=(min(10**6, num_edges - start), 2))
            fh.write("".join(f"{u} {v}\n" for u, v in ids.tolist()))


def measure_subprocess(path: Path, src: Path | None = None, repeat: int = 2) -> dict:
    """Wall time and peak RSS (above the RSS after imports) of one read_edgelist, best run."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = f"{src}{os.pathsep}{env.get('PYTHONPATH', '')}"
    runs = []
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, "-c", _MEASURE, str(path)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
            cwd=tempfile.gettempdir(),
        )
        runs.append(json.loads(out.stdout))
    best = min(runs, key=lambda r: r["seconds"])
    best["peak_bytes"] = min(r["peak_bytes"] for r in runs)
    return best


def large_rows(baseline: Path | None, folder: Path) -> list[dict]:
    """Time and peak RSS of read_edgelist on 10^7 edges, plain and gzip, in subprocesses."""
    plain = folder / "edges-1e7.txt"
    write_large_edgelist(plain)
    packed = folder / "edges-1e7.txt.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes(), compresslevel=6))
    rows = []
    for path in (plain, packed):
        for label, src in (("graphrec (this commit)", None), ("graphrec (baseline)", baseline)):
            if label.endswith("(baseline)") and src is None:
                continue
            r = measure_subprocess(path, src)
            r.update(file=path.name, size=path.stat().st_size, reader=label)
            rows.append(r)
            print(json.dumps(r))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--baseline", type=Path, help="folder holding another graphrec package to compare"
    )
    parser.add_argument(
        "--baseline-label", default="", help="what the baseline is, e.g. its commit"
    )
    args = parser.parse_args()
    load_start = bench.load_average()
    root = bench.data_root()
    douban = root / "fastcover/directed/soc-douban.txt.gz"
    gowalla = root / "lightgcn/gowalla/test.txt.gz"
    rows = []

    t_ours, g = bench.best_time(lambda: read_edgelist(douban))
    t_nx, g_nx = bench.best_time(lambda: _networkx_to_data(douban))
    t_pd, g_pd = bench.best_time(lambda: _pandas_to_data(douban))
    assert g.num_edges == g_pd.edge_index.shape[1] == 327_162 and g.num_nodes == 154_908
    rows.append(("soc-douban.txt.gz (327,162 edges)", "graphrec.io.read_edgelist", t_ours, 1.0))
    rows.append(("", "networkx.read_edgelist -> Data", t_nx, t_nx / t_ours))
    rows.append(("", "pandas.read_csv -> Data (no validation)", t_pd, t_pd / t_ours))

    t_ours_g, inter = bench.best_time(lambda: read_interactions(gowalla, format="lightgcn"))
    t_py, (u, _) = bench.best_time(lambda: _python_lightgcn(gowalla))
    assert len(inter.user) == len(u)
    rows.append(
        (f"gowalla test.txt.gz ({len(u):,} pairs)", "graphrec.io.read_interactions", t_ours_g, 1.0)
    )
    rows.append(("", "Python line loop (LightGCN-style)", t_py, t_py / t_ours_g))

    lines = [
        f"Machine: {bench.machine()}, load average {load_start:.1f} at the start "
        "(other work ran alongside). Command: `.venv/bin/python benchmarks/io.py"
        + (" --baseline SRC" if args.baseline else "")
        + "` (best of 3, same process).",
        "",
        bench.md_table(
            ["file", "reader", "seconds", "time / graphrec"],
            [[f, r, f"{t:.3f}", f"{rel:.2f}x"] for f, r, t, rel in rows],
        ),
    ]
    with tempfile.TemporaryDirectory() as folder:
        large = large_rows(args.baseline, Path(folder))
    baseline = f" ({args.baseline_label})" if args.baseline_label else ""
    lines += [
        "",
        "10^7 edges `u v` (ids uniform in 0..10^6-1, 138 MB of text; .gz: gzip -6), "
        "`read_edgelist(path)` in a fresh subprocess, best of 2. Peak RSS is measured above "
        "the RSS after the imports (`ru_maxrss`); output = `edge_index` + `node_ids` "
        f"(168 MB). Baseline{baseline}: the reader before streaming, reading the whole file "
        "and splitting it into Python bytes objects.",
        "",
        bench.md_table(
            ["file", "reader", "seconds", "peak RSS above imports", "peak / output"],
            [
                [
                    r["file"],
                    r["reader"],
                    f"{r['seconds']:.2f}",
                    f"{r['peak_bytes'] / 2**20:,.0f} MiB",
                    bench.ratio(r["peak_bytes"], r["final_bytes"]),
                ]
                for r in large
            ],
        ),
    ]
    table = "\n".join(lines)
    print(table)
    bench.write_results(
        "io",
        {
            "machine": bench.machine(),
            "load_average_start": load_start,
            "load_average_end": bench.load_average(),
            "rows": [list(r) for r in rows],
            "large": large,
            "baseline": args.baseline_label or None,
        },
    )
    bench.update_benchmarks_md("io", "## Loading files (`benchmarks/io.py`)\n\n" + table)


if __name__ == "__main__":
    main()
