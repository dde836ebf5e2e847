"""Levers for a better one-pass FastCover, each measured on the validation graphs (issue 20).

Every lever is the shipped recipe (``graphrec fastcover train --d D``, the defaults) plus one
change; it is trained with ``train_fastcover`` into ``OUT/<lever>/`` and scored as the shipped
weights are: mean over the validation graphs and k in {1, 8, 32, 128, 1024} of top-k coverage /
exact greedy coverage (``validation`` in weights.json). A lever whose model is already in
``OUT/<lever>/`` with the same command is not trained again. The benchmark test graphs are used
only with ``--test LEVER``, for a lever that won on validation (mean ratio to greedy on the six
test graphs, the shipped weights beside it).

    .venv/bin/python benchmarks/fastcover_levers.py --out /tmp/fcl
    .venv/bin/python benchmarks/fastcover_levers.py --out /tmp/fcl --levers sketch --d 2 3

The ``generated`` lever trains on the shipped graphs plus seeded generated ones (``GENERATED``),
written as edge lists under ``OUT/_data/fastcover/generated/`` beside links to the real folders.

``--rounds R`` also scores the levers of the run and the shipped model with R re-scoring rounds
(``fastcover_seeds(rounds=R, residual="mask")``) on the validation graphs, the same mean over
graphs and k; the ``residual`` levers are trained for that (``TrainConfig.residual``).

    .venv/bin/python benchmarks/fastcover_levers.py --out /tmp/fcl \
        --levers residual residual_input --rounds 4

Writes ``benchmarks/results/fastcover_levers.json`` (merged with earlier runs of other levers)
and the ``fastcover-levers`` block of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import _common as bench
import networkx as nx
import numpy as np
import torch

from combinatorial import adjacency
from combinatorial.gnn import load_pretrained
from combinatorial.gnn.inference import WEIGHTS_DIR, sha256_file
from combinatorial.gnn.train import (
    MANIFEST_FILE,
    TEST_GRAPHS,
    TRAIN_GRAPHS,
    VAL_GRAPHS,
    Graph,
    TrainConfig,
    greedy_reference,
    load_graph,
    train_fastcover,
    validate,
)
from graphrec.datasets.synthetic import powerlaw_digraph
from graphrec.io import read_edgelist

NAME = "fastcover_levers"
KS = (1, 8, 32, 128, 1024)
#: More training graphs: the shared undirected graphs that are neither validation nor test graphs
#: (petster-friendships-hamster is soc-hamsterster under another name, douban a test graph).
EXTRA_GRAPHS = tuple(
    f"fastcover/undirected/{name}"
    for name in (
        "fb-pages-food.txt",
        "fb-pages-politician.txt.gz",
        "fb-pages-government.txt.gz",
        "fb-pages-tvshow.txt",
        "dnc-corecipient.txt",
        "moreno_names_names.txt",
        "HepPh.txt.gz",
    )
)
#: Generated training graphs (directed, a few thousand nodes): name -> (family, parameters).
GENERATED: dict[str, tuple[str, dict]] = {
    "gen-powerlaw": ("powerlaw", {"n": 4000, "avg_degree": 6.0, "exponent": 2.4, "seed": 1}),
    "gen-sbm": ("sbm", {"blocks": 15, "size": 200, "p_in": 0.03, "p_out": 0.0005, "seed": 2}),
    "gen-grid": ("grid", {"side": 55, "keep": 0.9, "seed": 3}),
}
GENERATED_DIR = "fastcover/generated"
#: name -> (TrainConfig options on top of the shipped recipe, what it tests)
LEVERS: dict[str, tuple[dict, str]] = {
    "sketch": ({"features": "sketch"}, "input + log HyperLogLog out-ball estimates, l = 2, 3"),
    "seed43": ({"seed": 43}, "control: the shipped recipe with seed 43 (seed noise)"),
    "imit03": ({"imitation": 0.03}, "+ 0.03 x ListMLE of greedy's first 1024 seeds"),
    "more_graphs": ({"graphs": TRAIN_GRAPHS + EXTRA_GRAPHS}, "11 training graphs instead of 4"),
    "generated": (
        {"graphs": TRAIN_GRAPHS + tuple(f"{GENERATED_DIR}/{g}.txt" for g in GENERATED)},
        "+ 3 generated graphs: power-law (Chung-Lu), stochastic block, grid",
    ),
    "residual": (
        {"residual": 0.5},
        "half the steps on a residual: greedy-prefix-covered nodes get target weight 0, "
        "loss on the uncovered targets",
    ),
    "residual_input": (
        {"residual": 0.5, "residual_input": True},
        "residual + the covered flag as an input column",
    ),
    "val4": ({"val_rounds": 4}, "control: best epoch selected on validation with 4 rounds"),
    "residual_val4": (
        {"residual": 0.5, "val_rounds": 4},
        "residual, best epoch selected on validation with 4 rounds",
    ),
}


def shipped_validation() -> dict[int, dict]:
    """The shipped models' validation scores per d (weights.json)."""
    models = json.loads((WEIGHTS_DIR / MANIFEST_FILE).read_text())["models"]
    return {int(d): m["validation"] for d, m in models.items()}


def generated_graph(family: str, params: dict) -> np.ndarray:
    """Edges ``[m, 2]`` of one ``GENERATED`` graph (deterministic in its seed)."""
    p = dict(params)
    rng = np.random.default_rng(p.pop("seed"))
    if family == "powerlaw":
        return powerlaw_digraph(**p, seed=int(rng.integers(2**31))).edge_index.T.numpy()
    if family == "sbm":  # directed communities: p_in inside a block, p_out across
        sizes = [p["size"]] * p["blocks"]
        probs = np.full((p["blocks"], p["blocks"]), p["p_out"])
        np.fill_diagonal(probs, p["p_in"])
        g = nx.stochastic_block_model(sizes, probs.tolist(), seed=int(rng.integers(2**31)),
                                      directed=True, sparse=True)  # fmt: skip
        return np.array(g.edges(), dtype=np.int64).reshape(-1, 2)
    if family == "grid":  # road-like: a side x side lattice, each street kept with prob. keep,
        side = p["side"]  # both directions
        g = nx.convert_node_labels_to_integers(nx.grid_2d_graph(side, side), ordering="sorted")
        edges = np.array(g.edges(), dtype=np.int64)
        edges = edges[rng.random(len(edges)) < p["keep"]]
        return np.concatenate([edges, edges[:, ::-1]])
    raise ValueError(f"unknown family {family!r}")


def generated_root(out: Path, data_root: Path) -> Path:
    """A data root ``out`` linking the real ``fastcover/`` folders and holding ``GENERATED``."""
    folder = out / GENERATED_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for real in (data_root / "fastcover").iterdir():
        link = out / "fastcover" / real.name
        if real.is_dir() and not link.exists():
            link.symlink_to(real.resolve())
    for name, (family, params) in GENERATED.items():
        edges = generated_graph(family, params)
        lines = [f"# {name}: {family} {json.dumps(params)}"] + [f"{u} {v}" for u, v in edges]
        tmp = folder / f".{name}.txt.tmp{os.getpid()}"
        tmp.write_text("\n".join(lines) + "\n")
        tmp.replace(folder / f"{name}.txt")  # atomic: a parallel run may be reading it
    return out


def run_lever(name: str, d: int, out: Path, data_root: Path) -> dict:
    """Train (or reuse) lever ``name`` at hop count ``d``; its manifest entry."""
    options = LEVERS[name][0]
    if name == "generated":
        data_root = generated_root(out / "_data", data_root)
    folder = out / name
    command = TrainConfig(d=d, **options).command(folder)
    manifest = folder / MANIFEST_FILE
    if manifest.is_file():
        entry = json.loads(manifest.read_text())["models"].get(str(d))
        if entry and entry["command"] == command and (folder / entry["file"]).is_file():
            if sha256_file(folder / entry["file"]) == entry["sha256"]:
                return entry
    return train_fastcover(d, folder, data_root=data_root, force=True, progress=False, **options)


def load_val_graphs(data_root: Path, d: int) -> list[Graph]:
    """The validation graphs with greedy's coverage at every k (as in training)."""
    graphs = [load_graph(data_root / name, d) for name in VAL_GRAPHS]
    for g in graphs:
        g.greedy_cover = greedy_reference(g, d, list(KS))
    return graphs


def load_test_graphs(data_root: Path, d: int) -> list[Graph]:
    """The six test graphs (directed) with greedy's coverage at every k."""
    graphs = []
    for name in TEST_GRAPHS:
        g = read_edgelist(data_root / "fastcover" / "directed" / f"{name}.txt.gz")
        adj = adjacency(g.data.edge_index, g.num_nodes)
        graph = Graph(name, g.data.edge_index, g.num_nodes, adj, 0.0)
        graph.greedy_cover = greedy_reference(graph, d, list(KS))
        graphs.append(graph)
    return graphs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("/tmp/fastcover-levers"), help="model folder")
    p.add_argument("--levers", nargs="+", choices=sorted(LEVERS), default=sorted(LEVERS))
    p.add_argument("--d", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--test", choices=sorted(LEVERS), help="also score this lever on test graphs")
    p.add_argument("--rounds", type=int, help="also score with this many re-scoring rounds")
    p.add_argument("--no-md", action="store_true", help="do not update BENCHMARKS.md")
    args = p.parse_args()
    torch.set_num_threads(1)
    root = bench.data_root()
    path = bench.RESULTS / f"{NAME}.json"
    results = json.loads(path.read_text()) if path.is_file() else {"levers": {}, "test": {}}
    shipped = shipped_validation()
    if "generated" in args.levers:
        results["generated"] = {k: {"family": f, **p} for k, (f, p) in GENERATED.items()}
    loads = bench.LoadLog()
    t0 = time.perf_counter()
    val_graphs: dict[int, list[Graph]] = {}  # loaded once per d, when needed
    for name in args.levers:
        for d in args.d:
            entry = run_lever(name, d, args.out, root)
            loads.sample()
            one_pass = entry["validation"]
            if entry.get("validation_rounds", 1) > 1:  # selected with rounds: score one pass
                if d not in val_graphs:
                    val_graphs[d] = load_val_graphs(root, d)
                model = load_pretrained(d, weights_dir=args.out / name)
                one_pass = validate(model, val_graphs[d], d)
            results["levers"].setdefault(name, {})[str(d)] = {
                "command": entry["command"],
                "sha256": entry["sha256"],
                "validation": one_pass,
                "selected_on": entry["validation"],
                "shipped_validation": shipped[d],
                "delta": one_pass["mean"] - shipped[d]["mean"],
                "best_epoch": entry["best_epoch"],
                "epochs_run": entry["epochs_run"],
                "train_s": entry["train_s"],
            }
            print(f"{name} d={d}: validation {one_pass['mean']:.4f} "
                  f"(shipped {shipped[d]['mean']:.4f})", flush=True)  # fmt: skip
    if args.rounds:
        for d in args.d:
            graphs = val_graphs[d] if d in val_graphs else load_val_graphs(root, d)
            models = {"shipped": load_pretrained(d)}
            models |= {n: load_pretrained(d, weights_dir=args.out / n) for n in args.levers}
            for name, model in models.items():
                val = validate(model, graphs, d, args.rounds)
                loads.sample()
                results.setdefault("rounds", {}).setdefault(str(args.rounds), {}) \
                    .setdefault(name, {})[str(d)] = val  # fmt: skip
                print(f"{name} d={d} rounds={args.rounds}: validation {val['mean']:.4f}",
                      flush=True)  # fmt: skip
    if args.test:
        for d in args.d:
            graphs = load_test_graphs(root, d)
            lever_dir = args.out / args.test
            rows = {
                "shipped": validate(load_pretrained(d), graphs, d),
                args.test: validate(load_pretrained(d, weights_dir=lever_dir), graphs, d),
            }
            results["test"].setdefault(args.test, {})[str(d)] = rows
    cmd = bench.command_line(".venv/bin/python benchmarks/fastcover_levers.py")
    results["commands"] = [c for c in results.get("commands", []) if c != cmd] + [cmd]
    results["machine"] = bench.machine()
    results["load"] = loads.note(1)
    results["wall_s_last_run"] = round(time.perf_counter() - t0, 1)
    bench.write_results(NAME, results)
    bench.publish("fastcover-levers", report(results), update_md=not args.no_md)


def report(results: dict) -> str:
    """The BENCHMARKS.md block: validation per lever and d beside the shipped weights."""
    rows = []
    for name, per_d in sorted(results["levers"].items()):
        cells = []
        for d in ("1", "2", "3"):
            r = per_d.get(d)
            cells.append("-" if r is None else
                         f"{r['validation']['mean']:.4f} ({r['delta']:+.4f})")  # fmt: skip
        rows.append([name, LEVERS[name][1] if name in LEVERS else "", *cells])
    shipped = shipped_validation()
    rows.insert(0, ["shipped", "the recipe of combinatorial/weights",
                    *(f"{shipped[d]['mean']:.4f}" for d in (1, 2, 3))])  # fmt: skip
    text = (
        "## FastCover one-pass levers on the validation graphs (`benchmarks/fastcover_levers.py`)"
        "\n\n"
        f"Machine: {results['machine']}; torch 1 thread. Commands (results merged): "
        + "; ".join(f"`{c}`" for c in results["commands"])
        + f". {results['load']}\n\n"
        "Validation = mean over soc-hamsterster, fb-pages-company, Nethept, as-caida20071105, "
        "soc-gemsec-RO and k in {1, 8, 32, 128, 1024} of top-k coverage / exact greedy coverage "
        "(one pass), as `validation` in combinatorial/weights/weights.json; in brackets the "
        "difference to the shipped model of the same d. Each lever = the shipped recipe "
        "(seed 42, 1 thread) plus the change listed; the exact command of each model is in "
        "benchmarks/results/fastcover_levers.json. A lever is kept only if it beats the shipped "
        "model on validation at every d; the test graphs are scored only for such a lever.\n\n"
        + bench.md_table(["lever", "change", "d=1", "d=2", "d=3"], rows)
    )
    winners = [name for name, per_d in sorted(results["levers"].items())
               if len(per_d) == 3 and all(r["delta"] > 0 for r in per_d.values())]  # fmt: skip
    text += "\n\nLevers above the shipped model at every d: " + (
        ", ".join(winners) if winners else "none (no test-graph scores, no new weights)"
    ) + "."
    for rounds, per_model in sorted(results.get("rounds", {}).items()):
        one_pass = {name: {d: r["validation"]["mean"] for d, r in per_d.items()}
                    for name, per_d in results["levers"].items()}  # fmt: skip
        one_pass["shipped"] = {str(d): v["mean"] for d, v in shipped.items()}
        rows = []
        for name, per_d in sorted(per_model.items(), key=lambda x: (x[0] != "shipped", x[0])):
            cells = ["-" if d not in per_d else f"{per_d[d]['mean']:.4f} "
                     f"({per_d[d]['mean'] - one_pass[name][d]:+.4f})"
                     for d in ("1", "2", "3")]  # fmt: skip
            rows.append([name, *cells])
        text += (
            f"\n\nWith R = {rounds} re-scoring rounds (`fastcover_seeds(rounds={rounds}, "
            'residual="mask")`: ceil(k/R) seeds per pass; the nodes they cover weigh 0 as '
            "targets in the next pass), the same validation graphs and k; in brackets the "
            "difference to the same model's one pass:\n\n"
            + bench.md_table(["model", "d=1", "d=2", "d=3"], rows)
        )
    for name, per_d in results.get("test", {}).items():
        test_rows = [[d, f"{r['shipped']['mean']:.4f}", f"{r[name]['mean']:.4f}"]
                     for d, r in sorted(per_d.items())]  # fmt: skip
        text += f"\n\nTest graphs (6 directed), {name}:\n\n" + bench.md_table(
            ["d", "shipped", name], test_rows
        )
    return text


if __name__ == "__main__":
    main()
