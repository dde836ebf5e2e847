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
"""

from __future__ import annotations

import argparse
import csv
import importlib
import json
import math
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import scipy.sparse as sp
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, data_root, machine, update_benchmarks_md, write_results  # noqa: E402

from combinatorial import (  # noqa: E402
    Solution,
    adjacency,
    coverage,
    d_closure,
    degree_discount,
    estimate_closure_bytes,
    greedy,
    heu,
    ris_greedy,
    top_ball_size,
    top_degree,
    top_soft_coverage,
)
from graphrec.errors import MemoryBudgetError  # noqa: E402

#: The FastCover subpackage - the one line to change if it is renamed. Imported lazily (it pulls
#: in torch, ~300 MiB of RSS that must not count in the baselines' peak memory in part (b)).
GNN = "combinatorial.gnn"

THREADS = 2  # torch threads (--threads)
KS = (1, 8, 32, 128, 1024)
DS = (1, 2, 3)
GIB, MIB = 2**30, 2**20
LOADS: list[float] = []  # 1-min load average after each grid cell / scaling run
#: The six held-out directed test graphs of the spec (section 7).
TEST_GRAPHS = (
    "soc-gplus",
    "soc-epinions",
    "soc-brightkite",
    "soc-loc-brightkite",
    "soc-slashdot",
    "soc-douban",
)
#: Official training graphs, used when weights.json does not list them.
DEFAULT_TRAIN = ("soc-wiki-elec", "soc-anybeat", "soc-advogato", "soc-sign-bitcoinotc")
QUICK_GRAPHS = (
    "directed/soc-advogato",
    "directed/soc-gplus",
    "directed/soc-epinions",
    "undirected/fb-pages-food",
    "undirected/dnc-corecipient",
    "undirected/Nethept",
)
METHODS = (
    "greedy",
    "fastcover",
    "fastcover_r8",
    "ris",
    "top_degree",
    "top_soft_coverage",
    "top_ball_size",
    "degree_discount",
    "heu",
)
#: One-shot rankings: the score does not depend on k, so they run once per (graph, d).
RANKINGS = ("top_degree", "top_soft_coverage", "top_ball_size")
LABELS = {"fastcover": "fastcover (1 pass)", "fastcover_r8": "fastcover (rounds=8)"}
SCALING_NS = (10_000, 100_000, 1_000_000, 2_000_000)
OPTIONAL_ABOVE = 1_000_000  # larger scaling sizes run only if memory allows
QUICK_NS = (10_000, 100_000)
SCALING_K = 128
SCALING_DEGREE = 10
GRID_FIELDS = (
    "graph", "kind", "role", "n", "arcs", "d", "k", "method", "covered", "ratio", "anchor",
    "time_s", "closure_s", "eval_s", "note",
)  # fmt: skip


# --------------------------------------------------------------------------- shared helpers


def gnn(module: str = "inference") -> ModuleType:
    """A module of the FastCover subpackage (imports torch on first use; ``THREADS`` threads)."""
    torch = importlib.import_module("torch")
    if torch.get_num_threads() != THREADS:
        torch.set_num_threads(THREADS)
    return importlib.import_module(f"{GNN}.{module}")


def load_model(d: int, weights_dir: str | None) -> Any:
    """The pretrained model for ``d`` from ``weights_dir``; None: a fresh one (seed 0)."""
    if weights_dir is None:
        torch = importlib.import_module("torch")
        torch.manual_seed(0)
        return gnn("model").FastCover().eval()
    return gnn().load_pretrained(d, weights_dir=weights_dir)


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


def md_table(header: list[str], rows: Iterable[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt_time(s: float | None) -> str:
    if s is None or (isinstance(s, float) and math.isnan(s)):
        return "-"
    return f"{s:.3f}" if s < 10 else f"{s:.1f}"


def load_note() -> str:
    """The machine's load during the run (other jobs share the cores), then reset."""
    if not LOADS:
        return ""
    note = (
        f"1-min load average during the run: mean {np.mean(LOADS):.1f}, max "
        f"{max(LOADS):.1f} ({len(LOADS)} samples; > {THREADS} means shared cores)."
    )
    LOADS.clear()
    return note


def command() -> str:
    return ".venv/bin/python benchmarks/fastcover.py " + shlex.join(sys.argv[1:])


# --------------------------------------------------------------------------- (a) grid


@dataclass
class Graph:
    """A benchmark graph: edges as a torch tensor (FastCover) and as CSR (everything else)."""

    name: str
    kind: str  # "directed" or "undirected"
    edge_index: Any  # torch.Tensor [2, m]
    adj: sp.csr_array

    @property
    def n(self) -> int:
        return self.adj.shape[0]


def graph_files(root: Path, quick: bool, only: list[str] | None) -> list[tuple[str, Path]]:
    """(kind, path) of the grid's graphs: directed first, each folder sorted by name."""
    out = []
    for kind in ("directed", "undirected"):
        for path in sorted((root / "fastcover" / kind).iterdir(), key=lambda p: p.name.lower()):
            stem = path.name.split(".")[0]
            key = f"{kind}/{stem}"
            if quick and key not in QUICK_GRAPHS:
                continue
            if only and stem not in only and key not in only:
                continue
            out.append((kind, path))
    if not out:
        raise SystemExit(f"no graph matches {only}")
    return out


def read_graph(kind: str, path: Path) -> Graph:
    from graphrec.io import read_edgelist

    g = read_edgelist(path, undirected=kind == "undirected")
    ei = g.data.edge_index
    return Graph(path.name.split(".")[0], kind, ei, adjacency(ei, g.data.num_nodes))


def roles(weights_dir: str | None) -> tuple[dict[int, dict[str, str]], str]:
    """Per d, graph name -> "train" / "val" (from weights.json), and a note on the source."""
    out: dict[int, dict[str, str]] = {d: {} for d in DS}
    manifest = Path(weights_dir or gnn().WEIGHTS_DIR) / "weights.json"
    models = json.loads(manifest.read_text())["models"] if manifest.is_file() else {}
    for d in DS:
        entry = models.get(str(d))
        if entry is None:
            train = gnn("train")
            names = {
                "train": DEFAULT_TRAIN,
                "val": [Path(p).name.split(".")[0] for p in train.VAL_GRAPHS],
            }
        else:
            names = {"train": list(entry["train_graphs"]), "val": list(entry["val_graphs"])}
        for role, graphs in names.items():
            out[d].update({g: role for g in graphs})
    src = "weights.json" if models else "defaults of the training script (no weights.json)"
    if weights_dir is None:
        src += "; UNTRAINED model (--untrained): FastCover numbers are not the shipped model's"
    return out, src


def timed(
    fn: Callable[[], Solution],
    select: Callable[[Solution, float], float],
    repeat_below: float = 0.2,
    repeat: int = 3,
) -> tuple[Solution, float]:
    """Run ``fn``; its time is ``select(solution, wall)``, best of ``repeat`` when fast."""
    t0 = time.perf_counter()
    sol = fn()
    best = select(sol, time.perf_counter() - t0)
    if best < repeat_below:
        for _ in range(repeat - 1):
            t0 = time.perf_counter()
            again = fn()
            best = min(best, select(again, time.perf_counter() - t0))
    return sol, best


def _wall(sol: Solution, wall: float) -> float:
    return wall


def _no_eval(sol: Solution, wall: float) -> float:
    """Selection time of a one-shot method: the call minus its final coverage evaluation."""
    return wall - sol.timings.get("evaluate", 0.0)


def _score(sol: Solution, wall: float) -> float:
    return sol.timings["score"]


def run_cell(g: Graph, d: int, models: dict[int, Any], budget: int, role: str) -> list[dict]:
    """Every method at every k on one (graph, d); returns CSV rows."""
    fc = gnn()
    A, n, ei = g.adj, g.n, g.edge_index
    ks = sorted({min(k, n) for k in KS})
    res: dict[str, dict[int, tuple[int, float, float | None]]] = defaultdict(dict)
    note = ""
    closure_s = None
    try:
        t0 = time.perf_counter()
        M = d_closure(A, d, max_bytes=budget)
        closure_s = time.perf_counter() - t0
    except MemoryBudgetError:
        M = None
        est = estimate_closure_bytes(A, d) / GIB
        note = f"closure refused (estimate {est:.2f} GiB > {budget / GIB:.0f} GiB); RIS anchor"
    if M is not None:
        for k in ks:
            sol, t = timed(partial(greedy, A, k, d, closure=M), _wall)
            res["greedy"][k] = (sol.covered, closure_s + t, None)
        del M
    model = models[d]
    for method, fn, select in (
        ("fastcover", lambda k: fc.fastcover_solution(ei, n, k, d, model=model, adj=A), _score),
        (
            "fastcover_r8",
            lambda k: fc.fastcover_solution(ei, n, k, d, model=model, adj=A, rounds=8),
            _score,
        ),
        ("ris", lambda k: ris_greedy(A, k, d), _wall),
        ("top_degree", lambda k: top_degree(A, k, d), _no_eval),
        ("top_soft_coverage", lambda k: top_soft_coverage(A, k, d), _no_eval),
        ("top_ball_size", lambda k: top_ball_size(A, k, d), _no_eval),
        ("degree_discount", lambda k: degree_discount(A, k, d), _no_eval),
        ("heu", lambda k: heu(A, k, d), _wall),
    ):
        if method in RANKINGS:  # k-independent score: rank once, evaluate the prefixes
            sol, t = timed(partial(fn, ks[-1]), select)
            for k in ks:
                t0 = time.perf_counter()
                cov = coverage(A, sol.seeds[:k], d)
                res[method][k] = (cov, t, time.perf_counter() - t0)
            continue
        for k in ks:  # one-pass FastCover: always best of 3 (its official timing is one pass)
            sol, t = timed(partial(fn, k), select, math.inf if method == "fastcover" else 0.2)
            res[method][k] = (sol.covered, t, sol.timings.get("evaluate"))
    anchor = "greedy" if "greedy" in res else "ris"
    rows = []
    if anchor == "ris":  # greedy n/a: an empty row per k keeps the grid complete
        rows = [
            {
                "graph": g.name,
                "kind": g.kind,
                "role": role,
                "n": n,
                "arcs": A.nnz,
                "d": d,
                "k": k,
                "method": "greedy",
                "anchor": anchor,
                "note": note,
            }
            for k in ks
        ]
    for method in METHODS:
        for k, (cov, t, ev) in sorted(res.get(method, {}).items()):
            ref = res[anchor][k][0]
            rows.append({
                "graph": g.name, "kind": g.kind, "role": role, "n": n, "arcs": A.nnz, "d": d,
                "k": k, "method": method, "covered": cov, "ratio": cov / ref, "anchor": anchor,
                "time_s": t, "closure_s": closure_s if method == "greedy" else None,
                "eval_s": ev, "note": note,
            })  # fmt: skip
    return rows


def run_grid(args: argparse.Namespace, tag: str) -> list[dict]:
    """Part (a): run the grid, write the CSV; returns its rows."""
    root = data_root()
    files = graph_files(root, args.quick, args.graphs)
    role_of, _ = roles(args.weights_dir)
    models = {d: load_model(d, args.weights_dir) for d in DS}
    # one untimed pass per model, so no timed call pays torch's one-time setup
    warm = gnn().scores
    torch = importlib.import_module("torch")
    chain = torch.stack([torch.arange(99), torch.arange(1, 100)])
    for model in models.values():
        warm(model, chain, 100)
    budget = int(args.closure_budget_gib * GIB)
    rows: list[dict] = []
    bar = tqdm(total=len(files) * len(DS), desc="grid", unit="cell")
    for kind, path in files:
        g = read_graph(kind, path)
        for d in DS:
            bar.set_postfix_str(f"{g.name} d={d}")
            default = "test" if kind == "directed" and g.name in TEST_GRAPHS else "held-out"
            rows += run_cell(g, d, models, budget, role_of[d].get(g.name, default))
            LOADS.append(os.getloadavg()[0])
            bar.update()
        del g
    bar.close()
    path = RESULTS / f"fastcover{tag}_grid.csv"
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=GRID_FIELDS, restval="")
        writer.writeheader()
        for r in rows:
            writer.writerow(
                {
                    key: (f"{v:.6g}" if isinstance(v, float) else ("" if v is None else v))
                    for key, v in r.items()
                }
            )
    print(f"wrote {path}")
    return rows


def read_grid(tag: str) -> list[dict]:
    """Rows of a grid CSV written by :func:`run_grid` (numbers parsed back)."""
    path = RESULTS / f"fastcover{tag}_grid.csv"
    if not path.is_file():
        return []
    rows = []
    with open(path) as f:
        for r in csv.DictReader(f):
            for key in ("n", "arcs", "d", "k", "covered"):
                r[key] = int(r[key]) if r[key] else None
            for key in ("ratio", "time_s", "closure_s", "eval_s"):
                r[key] = float(r[key]) if r[key] else None
            rows.append(r)
    return rows


def held_out(rows: list[dict], test_only: bool = False) -> list[dict]:
    """Greedy-anchored rows of graphs not used in training or validation."""
    keep = ("test",) if test_only else ("test", "held-out")
    return [r for r in rows if r["role"] in keep and r["anchor"] == "greedy"]


def mean_table(rows: list[dict]) -> tuple[dict[tuple[int, str], tuple[float, float, int]], str]:
    """Mean ratio / mean time / cell count per (d, method), and the markdown table."""
    acc: dict[tuple[int, str], list[tuple[float, float]]] = defaultdict(list)
    for r in rows:
        acc[r["d"], r["method"]].append((r["ratio"], r["time_s"]))
    means = {
        key: (float(np.mean([a for a, _ in v])), float(np.mean([b for _, b in v])), len(v))
        for key, v in acc.items()
    }
    ds = sorted({d for d, _ in means}) or list(DS)
    header = ["method"] + [h for d in ds for h in (f"d={d} ratio", f"d={d} time s")]
    table = []
    for method in METHODS:
        cells = []
        for d in ds:
            ratio, t, cnt = means.get((d, method), (math.nan, math.nan, 0))
            cells += [f"{ratio:.3f}" if cnt else "-", fmt_time(t) if cnt else "-"]
        table.append([LABELS.get(method, method)] + cells)
    return means, md_table(header, table)


def speedup_table(rows: list[dict]) -> str:
    """FastCover vs closure greedy at d = 2, 3 on the directed test graphs, largest first."""
    idx = {(r["graph"], r["kind"], r["d"], r["k"], r["method"]): r for r in rows}
    sizes = {r["graph"]: r["n"] for r in rows if r["kind"] == "directed"}
    out = []
    for name in sorted(TEST_GRAPHS, key=lambda g: -sizes.get(g, 0)):
        for d in (2, 3):
            for k in (32, 1024):
                gr = idx.get((name, "directed", d, k, "greedy"))
                f1 = idx.get((name, "directed", d, k, "fastcover"))
                f8 = idx.get((name, "directed", d, k, "fastcover_r8"))
                if gr is None or f1 is None:
                    continue
                out.append([
                    name, d, k, fmt_time(gr["closure_s"]), fmt_time(gr["time_s"] - gr["closure_s"]),
                    fmt_time(f1["time_s"]), f"{gr['time_s'] / f1['time_s']:.1f}x",
                    f"{f1['ratio']:.3f}", fmt_time(f8["time_s"]),
                    f"{gr['time_s'] / f8['time_s']:.1f}x", f"{f8['ratio']:.3f}",
                ])  # fmt: skip
    header = [
        "graph",
        "d",
        "k",
        "closure s",
        "greedy s",
        "FC-1 s",
        "speed-up",
        "FC-1 ratio",
        "FC-8 s",
        "speed-up",
        "FC-8 ratio",
    ]
    return md_table(header, out)


def ris_anchor_table(rows: list[dict]) -> str:
    """Cells whose closure was over budget: mean ratio to RIS over k, per method."""
    acc: dict[tuple[str, str, int], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["anchor"] == "ris" and r.get("ratio") is not None:
            acc[r["graph"], r["kind"], r["d"]][r["method"]].append(r["ratio"])
    methods = [m for m in METHODS if m != "greedy"]
    body = [
        [f"{g} ({kind})", d] + [f"{np.mean(v[m]):.3f}" if v[m] else "-" for m in methods]
        for (g, kind, d), v in sorted(acc.items())
    ]
    return md_table(["graph", "d"] + [LABELS.get(m, m) for m in methods], body)


def report_grid(rows: list[dict], args: argparse.Namespace, wall: float, tag: str) -> None:
    """Print the summary tables of part (a) and update BENCHMARKS.md for a full run."""
    _, role_src = roles(args.weights_dir)
    held = held_out(rows)
    _, t_all = mean_table(held)
    _, t_test = mean_table(held_out(rows, test_only=True))
    excluded = sorted({(r["graph"], r["role"]) for r in rows if r["role"] in ("train", "val")})
    ris_anchor = sorted(
        {f"{r['graph']} ({r['kind'][0]}) d={r['d']}" for r in rows if r["anchor"] == "ris"}
    )
    n_graphs = len({(r["graph"], r["kind"]) for r in held})
    heading = "## FastCover vs. k-dDSP baselines: quality and time (`benchmarks/fastcover.py`)"
    notes = [
        f"Machine: {machine()}; torch {THREADS} threads. Command: `{command()}`. "
        f"Grid wall time {wall / 60:.1f} min. {load_note()}",
        f"Weights: {args.weights}.",
        "",
        "Ratio = coverage / coverage of exact greedy on the d-closure at the same (graph, d, k). "
        "Greedy time = closure (built once per (graph, d), shared by all k) + greedy to that k; "
        "FastCover time = forward pass(es) + top-k (`timings['score']`; model loading and "
        "coverage evaluation excluded); one-shot rankings and DegreeDiscount exclude their "
        "final coverage evaluation; RIS and HEU are timed whole. One-pass FastCover and every "
        "call under 0.2 s: best of 3. "
        f"The rankings ({', '.join(RANKINGS)}) do not depend on k: each is computed once per "
        "(graph, d) at the largest k, and every k reports that time and the coverage of the "
        "top-k prefix.",
        f"Graph roles from {role_src}. Excluded from the means (train / val per d): "
        + ", ".join(sorted({f"{g} ({r})" for g, r in excluded}))
        + ".",
        f"Held-out graphs: {n_graphs}; k capped at n. "
        + (
            f"Closure over budget, RIS anchor, excluded from the means: {', '.join(ris_anchor)}."
            if ris_anchor
            else "Every cell has a greedy anchor."
        ),
    ]
    text = "\n".join(notes)
    tables = (
        "### Mean ratio to greedy and mean time, held-out graphs x k\n\n"
        + t_all
        + "\n\n### The same, the 6 held-out directed test graphs only\n\n"
        + t_test
        + "\n\n### Speed-up of FastCover over closure + greedy (directed test graphs)\n\n"
        + speedup_table(rows)
    )
    if ris_anchor:
        tables += (
            "\n\n### Cells without greedy (closure over budget): mean ratio to RIS over k"
            "\n\n" + ris_anchor_table(rows)
        )
    print("\n" + text + "\n\n" + tables + "\n")
    if tag:
        print(f"({tag[1:]} run: BENCHMARKS.md not updated)")
    else:
        update_benchmarks_md("fastcover-grid", heading + "\n\n" + text + "\n\n" + tables)


# --------------------------------------------------------------------------- (b) scaling


def child(spec: dict) -> dict:
    """One measurement of part (b) in this (fresh) process; returns its JSON result."""
    task = spec["task"]
    if task == "generate":
        datasets = importlib.import_module("graphrec.datasets")
        t0 = time.perf_counter()
        data = datasets.powerlaw_digraph(spec["n"], SCALING_DEGREE, seed=0)
        t = time.perf_counter() - t0
        ei = data.edge_index.numpy()
        np.save(spec["path"], ei)
        return {"time_s": t, "m": int(ei.shape[1]), "peak_mib": peak_mib()}
    t0 = time.perf_counter()
    ei = np.load(spec["path"])
    n, d, k = spec["n"], spec["d"], spec["k"]
    out: dict[str, Any] = {}
    if task == "fastcover":
        torch = importlib.import_module("torch")
        edge_index = torch.from_numpy(ei)
        out["load_s"] = time.perf_counter() - t0
        out["input_mib"] = peak_mib()
        fc = gnn()
        model = load_model(d, spec["weights_dir"])
        chain = torch.stack([torch.arange(99), torch.arange(1, 100)])
        fc.scores(model, chain, 100)  # torch's one-time setup, untimed
        t0 = time.perf_counter()
        seeds = fc.fastcover_seeds(edge_index, n, k, d, model=model)
        out["time_s"] = time.perf_counter() - t0
        out["peak_mib"] = peak_mib()
        out["covered"] = coverage(adjacency(ei, n), seeds, d)
        return out
    A = adjacency(ei, n)
    del ei
    out["load_s"] = time.perf_counter() - t0
    out["input_mib"] = peak_mib()
    if task == "ris":
        t0 = time.perf_counter()
        sol = ris_greedy(A, k, d)
        out.update(time_s=time.perf_counter() - t0, samples=sol.info["samples"])
    else:  # closure greedy
        est = estimate_closure_bytes(A, d)
        out["estimate_gib"] = est / GIB
        if est > spec["budget"]:
            out["refused"] = True
            return out
        t0 = time.perf_counter()
        sol = greedy(A, k, d, max_bytes=None)
        out.update(time_s=time.perf_counter() - t0, closure_s=sol.timings["closure"])
    out["peak_mib"] = peak_mib()
    out["covered"] = sol.covered
    return out


def spawn(spec: dict, timeout: float) -> dict:
    """Run :func:`child` in a subprocess; a failure or timeout becomes ``{"error": ...}``."""
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--threads",
        str(THREADS),
        "--child",
        json.dumps(spec),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": f"exit {proc.returncode}: {tail[:200]}"}
    return json.loads(lines[-1][len("RESULT ") :])


def run_scaling(args: argparse.Namespace, tag: str) -> dict:
    """Part (b): generate each graph once, measure every method in its own process."""
    ns = QUICK_NS if args.quick else SCALING_NS
    budget = int(args.scaling_budget_gib * GIB)
    rows, gens = [], []
    peak = 0.0  # largest peak RSS (MiB) of any run at the previous n
    with tempfile.TemporaryDirectory(prefix="fastcover_scaling_") as tmp:
        bar = tqdm(total=len(ns) * 7, desc="scaling", unit="run")
        for n in ns:
            # sizes above 10^6 are optional: run them only if the largest peak so far, scaled
            # linearly in n with 20% slack, fits in the memory available now
            need = 1.2 * peak * n / gens[-1]["n"] if gens and n > OPTIONAL_ABOVE else 0.0
            if need * MIB > mem_available():
                gens.append(
                    {
                        "n": n,
                        "skipped": f"needs ~{need / 1024:.1f} GiB, "
                        f"{mem_available() / GIB:.1f} GiB available",
                    }
                )
                bar.update(7)
                continue
            path = str(Path(tmp) / f"powerlaw_{n}.npy")
            bar.set_postfix_str(f"n={n:.0e} generate")
            gen = spawn({"task": "generate", "n": n, "path": path}, args.child_timeout)
            gens.append({"n": n, **gen})
            bar.update()
            if "error" in gen:
                bar.update(6)
                continue
            peak = 0.0
            for d in (2, 3):
                row = {"n": n, "m": gen["m"], "d": d, "k": SCALING_K}
                for method in ("fastcover", "ris", "greedy"):
                    bar.set_postfix_str(f"n={n:.0e} d={d} {method}")
                    spec = {
                        "task": method,
                        "n": n,
                        "d": d,
                        "k": SCALING_K,
                        "path": path,
                        "budget": budget,
                        "weights_dir": args.weights_dir,
                    }
                    res = spawn(spec, args.child_timeout)
                    row[method] = res
                    LOADS.append(os.getloadavg()[0])
                    peak = max(peak, res.get("peak_mib", 0.0))
                    bar.update()
                best = max(
                    r.get("covered", 0) for r in (row[m] for m in ("fastcover", "ris", "greedy"))
                )
                for method in ("fastcover", "ris", "greedy"):
                    if "covered" in row[method]:
                        row[method]["ratio"] = row[method]["covered"] / best
                rows.append(row)
            Path(path).unlink()
        bar.close()
    payload = {
        "machine": machine(), "command": command(), "k": SCALING_K,
        "avg_degree": SCALING_DEGREE, "closure_budget_gib": args.scaling_budget_gib,
        "weights": args.weights, "generate": gens, "rows": rows,
    }  # fmt: skip
    path = write_results(f"fastcover{tag}_scaling", payload)
    print(f"wrote {path}")
    return payload


def _cell(res: dict) -> list[str]:
    if "error" in res:
        return [res["error"], "-", "-"]
    if res.get("refused"):
        return [f"refused (estimate {res['estimate_gib']:.1f} GiB)", "-", "-"]
    return [fmt_time(res["time_s"]), f"{res['peak_mib']:.0f}", f"{res['ratio']:.3f}"]


def report_scaling(payload: dict, wall: float, tag: str) -> None:
    """Print the part (b) tables and update BENCHMARKS.md for a full run."""
    gen_rows = [
        [f"{g['n']:,}", g.get("skipped") or g.get("error") or f"{g['m']:,}",
         fmt_time(g.get("time_s")), f"{g['peak_mib']:.0f}" if "peak_mib" in g else "-"]
        for g in payload["generate"]
    ]  # fmt: skip
    gen_table = md_table(["n", "edges", "generate s", "peak MiB"], gen_rows)
    header = ["n", "d"] + [
        f"{m} {h}" for m in ("FastCover", "RIS", "greedy") for h in ("s", "peak MiB", "ratio")
    ]
    rows = [
        [f"{r['n']:,}", r["d"]] + _cell(r["fastcover"]) + _cell(r["ris"]) + _cell(r["greedy"])
        for r in payload["rows"]
    ]
    table = md_table(header, rows)
    verdicts = []
    for r in payload["rows"]:
        fc = r["fastcover"]
        if r["n"] == 1_000_000 and "time_s" in fc:
            verdict = "yes" if fc["time_s"] < 60 else "no"
            verdicts.append(f"d={r['d']}: {fc['time_s']:.1f} s (< 60 s: {verdict})")
    text = "\n".join(
        [
            f"Machine: {machine()}; torch {THREADS} threads. Command: `{payload['command']}`. "
            f"Wall time {wall / 60:.1f} min. {load_note()}",
            "",
            f"`powerlaw_digraph(n, {payload['avg_degree']}, seed=0)`, k = {payload['k']}. Each "
            "method runs in its own process (this script with `--child`), which loads the "
            "saved edge list, builds its input (CSR for the baselines, a tensor for FastCover) "
            "and reports its own peak RSS (`VmHWM`, MiB; input and interpreter included; torch "
            "is imported only in the FastCover process). FastCover time = forward + top-k "
            "(model loading excluded); greedy time = reverse closure + greedy; closure greedy "
            "is refused when `estimate_closure_bytes` exceeds "
            f"{payload['closure_budget_gib']:g} GiB. Ratio = coverage / best coverage in the row.",
            "FastCover on the 10^6-node graph: " + ("; ".join(verdicts) or "not run") + ".",
            "Weights: " + payload["weights"] + ".",
        ]
    )
    tables = "### Graph generation\n\n" + gen_table + "\n\n### Time, peak memory, ratio\n\n" + table
    heading = "## FastCover scaling on power-law digraphs (`benchmarks/fastcover.py --parts b`)"
    print("\n" + text + "\n\n" + tables + "\n")
    if tag:
        print(f"({tag[1:]} run: BENCHMARKS.md not updated)")
    else:
        update_benchmarks_md("fastcover-scaling", heading + "\n\n" + text + "\n\n" + tables)


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
    p.add_argument("--threads", type=int, default=THREADS, help="torch threads (default 2)")
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
    global THREADS
    args = parse_args(argv)
    THREADS = args.threads
    if args.child is not None:
        print("RESULT " + json.dumps(child(json.loads(args.child))), flush=True)
        return
    tag = "_quick" if args.quick else ("_subset" if args.graphs else "")
    with tempfile.TemporaryDirectory(prefix="fastcover_weights_") as snapshot:
        if args.untrained:
            args.weights_dir, args.weights = None, "UNTRAINED (--untrained, seed 0)"
        elif {"a", "b"} & args.parts:
            args.weights_dir, args.weights = snapshot_weights(args.weights_dir, Path(snapshot))
        run(args, tag)


if __name__ == "__main__":
    main()
