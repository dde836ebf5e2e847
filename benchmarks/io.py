"""Load-time benchmark of graphrec's validating readers against networkx and pandas.

Run: ``.venv/bin/python benchmarks/io.py`` (writes benchmarks/results/io.json and the
``io`` table of BENCHMARKS.md). Each time is the best of 3 runs in the same process.
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import networkx as nx
import numpy as np
import torch
from torch_geometric.data import Data

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_time, data_root, machine, update_benchmarks_md, write_results  # noqa: E402

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


def main() -> None:
    root = data_root()
    douban = root / "fastcover/directed/soc-douban.txt.gz"
    gowalla = root / "lightgcn/gowalla/test.txt.gz"
    rows = []

    t_ours, g = best_time(lambda: read_edgelist(douban))
    t_nx, g_nx = best_time(lambda: _networkx_to_data(douban))
    t_pd, g_pd = best_time(lambda: _pandas_to_data(douban))
    assert g.num_edges == g_pd.edge_index.shape[1] == 327_162 and g.num_nodes == 154_908
    rows.append(("soc-douban.txt.gz (327,162 edges)", "graphrec.io.read_edgelist", t_ours, 1.0))
    rows.append(("", "networkx.read_edgelist -> Data", t_nx, t_nx / t_ours))
    rows.append(("", "pandas.read_csv -> Data (no validation)", t_pd, t_pd / t_ours))

    t_ours_g, inter = best_time(lambda: read_interactions(gowalla, format="lightgcn"))
    t_py, (u, _) = best_time(lambda: _python_lightgcn(gowalla))
    assert len(inter.user) == len(u)
    rows.append((f"gowalla test.txt.gz ({len(u):,} pairs)", "graphrec.io.read_interactions",
                 t_ours_g, 1.0))
    rows.append(("", "Python line loop (LightGCN-style)", t_py, t_py / t_ours_g))

    lines = [
        f"Machine: {machine()}. Command: `.venv/bin/python benchmarks/io.py` "
        "(best of 3, same process).",
        "",
        "| file | reader | seconds | time / graphrec |",
        "|---|---|---|---|",
    ]
    lines += [f"| {f} | {r} | {t:.3f} | {ratio:.2f}x |" for f, r, t, ratio in rows]
    table = "\n".join(lines)
    print(table)
    write_results("io", {"machine": machine(), "rows": [list(r) for r in rows]})
    update_benchmarks_md("io", "## Loading files (`benchmarks/io.py`)\n\n" + table)


if __name__ == "__main__":
    main()
