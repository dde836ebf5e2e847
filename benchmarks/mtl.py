"""Multi-task backbones with and without cross-task distillation (issue 18).

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/mtl.py --part tune|compare|cost
[--datasets ml-100k,synthetic] [--backbones mmoe,ple] [--seeds 5] [--max-cells N]``

A cell is one (dataset, backbone, distill, settings, seed) run: :func:`build_mtl` (seed =
weights, batch order), :func:`train_mtl` with the dataset's recipe
(:func:`graphrec.models.mtl.defaults.mtl_recipe`, the defaults of ``graphrec mtl train``),
then :func:`evaluate_mtl` on the validation (best epoch) and test splits: per-task AUC,
Multi-AUC over ``2 y_A + y_B``, graded NDCG, and the mean training seconds per epoch. Each
finished cell is written to ``benchmarks/results/mtl_cells/`` and skipped when the script runs
again, so the parts can be run in pieces (``--max-cells``).

* ``--part tune`` (seed 0, MMoE, validation only): the recipe grid (Adam step size x batch
  size, no distillation, selected by validation mean AUC) and the distillation grid (the
  weight ``alpha``, the ground-truth override of wrong soft labels, the teachers detached
  from the backbone; the same grid for ``kd`` and ``crossdistil``, selected by validation
  Multi-AUC), on the dataset's recipe; CrossDistil also tries all six group pairs in the
  quadruplet loss (two more points).
* ``--part compare``: ``--seeds`` seeds x backbones x {none, kd, crossdistil} with the
  defaults; mean +- std of the test metrics, the differences crossdistil - none and
  crossdistil - kd, and the training time per epoch relative to ``none`` (measured in the
  cells, so inflated by whatever else runs on the machine).
* ``--part cost``: the training seconds of one epoch of each distillation mode per
  (dataset, backbone), the modes alternating, best of ``--repeat``; relative to ``none``.

Data: MovieLens-100K from ``$GRAPHREC_TEST_DATA`` or ``../shared/data``; the synthetic set is
:func:`graphrec.models.mtl.synthetic_mtl` with seed 0 for every model seed. Writes
``benchmarks/results/mtl_tune.json`` or ``mtl.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as bench  # noqa: E402

from graphrec.models.mtl import (  # noqa: E402
    build_mtl,
    distill_recipe,
    evaluate_mtl,
    load_mtl_dataset,
    mtl_recipe,
    train_mtl,
)

CELLS = bench.RESULTS / "mtl_cells"
METRICS = ("auc_a", "auc_b", "multi_auc", "multi_auc_b", "ndcg")
#: Tuning grids (seed 0, MMoE); ml-100k (5x the rows) gets the smaller ones.
RECIPE_GRID = {
    "synthetic": {"lr": (2e-3, 5e-3, 1e-2), "batch_size": (512, 1024)},
    "ml-100k": {"lr": (2e-3, 5e-3), "batch_size": (1024,)},
}
DISTILL_GRID = {
    "synthetic": [
        {"alpha": 0.1},
        {"alpha": 0.5},
        {"alpha": 1.0},
        {"alpha": 0.5, "correction": "override"},
        {"alpha": 0.5, "detach_backbone": True},
    ],
    "ml-100k": [{"alpha": 0.1}, {"alpha": 0.5}, {"alpha": 0.5, "detach_backbone": True}],
}
#: Extra CrossDistil points: the quadruplet loss over all six group pairs (with a rare or empty
#: middle group, the adjacent pairs lose most cross-group comparisons).
PAIRS_GRID = {
    "synthetic": [{"alpha": 0.1, "pairs": "all"}, {"alpha": 0.5, "pairs": "all"}],
    "ml-100k": [
        {"alpha": 0.5, "pairs": "all"},
        {"alpha": 0.5, "detach_backbone": True, "pairs": "all"},
    ],
}


def _renamed(metrics: dict, tasks: tuple[str, ...]) -> dict:
    """Task-named keys (``auc_like``) as ``auc_a`` / ``auc_b``."""
    out = dict(metrics)
    for key, name in zip(("a", "b"), tasks):
        for m in ("auc", "gauc", "logloss"):
            out[f"{m}_{key}"] = metrics[f"{m}_{name}"]
    return out


class OutOfCells(Exception):
    """``--max-cells`` new cells were computed."""


#: New cells computed by this process, and the most allowed (None = no limit).
BUDGET = {"new": 0, "max": None}


def run_cell(data, dataset: str, backbone: str, distill: str, seed: int, recipe: dict,
             distill_options: dict) -> dict:  # fmt: skip
    settings = {**asdict(mtl_recipe(dataset)), **recipe}
    options = sorted({**settings, **distill_options}.items())
    name = "_".join([dataset, backbone, distill, f"s{seed}"] + [f"{k}{v}" for k, v in options])
    path = CELLS / f"{name}.json"
    if path.exists():
        return json.loads(path.read_text())
    if BUDGET["max"] is not None and BUDGET["new"] >= BUDGET["max"]:
        raise OutOfCells
    BUDGET["new"] += 1
    model, module = build_mtl(backbone, data.features, distill=distill, seed=seed,
                              distill_options=distill_options or None)  # fmt: skip
    result = train_mtl(model, data.split.train, data.split.valid, distill=module, seed=seed,
                       user=data.user, **settings)  # fmt: skip
    cell = {
        "dataset": dataset, "backbone": backbone, "distill": distill, "seed": seed,
        "settings": settings, "distill_options": distill_options,
        "best_epoch": result.best_epoch, "epochs_run": len(result.history),
        "train_s_per_epoch": statistics.mean(h["train_s"] for h in result.history),
        "valid": _renamed(result.best, data.tasks),
        "test": _renamed(evaluate_mtl(model, data.split.test, user=data.user), data.tasks),
    }  # fmt: skip
    bench.write_json(path, cell)
    return cell


def _mean_std(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}"


def tune(datasets) -> None:
    rows = []
    for dataset in datasets:
        data = load_mtl_dataset(dataset, bench.data_root(), seed=0)
        for lr, bs in itertools.product(*RECIPE_GRID[dataset].values()):
            c = run_cell(data, dataset, "mmoe", "none", 0, {"lr": lr, "batch_size": bs}, {})
            rows.append(c)
            print(dataset, "none", lr, bs, round(c["valid"]["mean_auc"], 4), flush=True)
        for distill in ("kd", "crossdistil"):
            extra = PAIRS_GRID[dataset] if distill == "crossdistil" else []
            for options in DISTILL_GRID[dataset] + extra:
                c = run_cell(data, dataset, "mmoe", distill, 0, {}, options)
                rows.append(c)
                print(dataset, distill, options, round(c["valid"]["multi_auc"], 4),
                      round(c["valid"]["auc_b"], 4), flush=True)  # fmt: skip
    bench.write_results("mtl_tune", rows)


def compare(datasets, backbones, seeds) -> None:
    cells = []
    for dataset in datasets:
        data = load_mtl_dataset(dataset, bench.data_root(), seed=0)
        for backbone, seed, distill in itertools.product(
            backbones, range(seeds), ("none", "kd", "crossdistil")
        ):
            options = {} if distill == "none" else distill_recipe(dataset, distill)
            cells.append(run_cell(data, dataset, backbone, distill, seed, {}, options))
    lines = ["| dataset | backbone | distill | " + " | ".join(METRICS) + " | s/epoch (x none) |",
             "|---" * (len(METRICS) + 4) + "|"]  # fmt: skip
    summary = {}
    for dataset, backbone in itertools.product(datasets, backbones):
        group = {d: [c for c in cells if (c["dataset"], c["backbone"], c["distill"])
                     == (dataset, backbone, d)] for d in ("none", "kd", "crossdistil")}  # fmt: skip
        base_s = statistics.mean(c["train_s_per_epoch"] for c in group["none"])
        for distill, cs in group.items():
            s = statistics.mean(c["train_s_per_epoch"] for c in cs)
            values = {m: [c["test"][m] for c in cs] for m in METRICS}
            summary[f"{dataset}/{backbone}/{distill}"] = {
                m: (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0)
                for m, v in values.items()
            } | {"s_per_epoch": s, "relative_cost": s / base_s, "seeds": len(cs)}
            lines.append(f"| {dataset} | {backbone} | {distill} | "
                         + " | ".join(_mean_std(values[m]) for m in METRICS)
                         + f" | {s:.2f} ({s / base_s:.2f}x) |")  # fmt: skip
        for ref in ("none", "kd"):
            pairs = list(zip(group["crossdistil"], group[ref]))
            diffs = {m: [a["test"][m] - b["test"][m] for a, b in pairs] for m in METRICS}
            lines.append(f"| {dataset} | {backbone} | crossdistil - {ref} | "
                         + " | ".join(_mean_std(diffs[m]) for m in METRICS) + " | |")  # fmt: skip
    bench.write_results("mtl", {"cells": cells, "summary": summary, "table": lines})
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=bench.REPO).stdout.strip()  # fmt: skip
    text = [
        "## Multi-task recommendation and CrossDistil (`benchmarks/mtl.py`)",
        "",
        f"Command: `{bench.command_line('OMP_NUM_THREADS=1 .venv/bin/python benchmarks/mtl.py')}`;"
        f" {bench.machine()}; commit {commit} (cells cached in "
        "`benchmarks/results/mtl_cells/`, computed at earlier commits with the same code). "
        f"Test split, mean ± std over {seeds} seeds; every row has the same epochs budget and "
        "the defaults chosen on validation (`--part tune`, docs/mtl.md). The `crossdistil - X`"
        " rows are paired differences per seed. s/epoch was measured inside the cells on shared"
        " cores; the `--part cost` table below is the cleaner cost figure.",
        "",
        *lines,
    ]
    cost_file = bench.RESULTS / "mtl_cost.json"
    if cost_file.exists():
        rows = json.loads(cost_file.read_text())
        text += ["", "Training seconds of one epoch, best of 2, modes alternating "
                 "(`--part cost`), and the ratio to the backbone without distillation:", "",
                 bench.md_table(["dataset/backbone", "none", "kd", "crossdistil"],
                                [[k] + [f"{v[d][0]:.2f} s ({v[d][1]:.2f}x)"
                                        for d in ("none", "kd", "crossdistil")]
                                 for k, v in rows.items()])]  # fmt: skip
    bench.publish("mtl", "\n".join(text))


def cost(datasets, backbones, repeat: int) -> None:
    rows = {}
    for dataset in datasets:
        data = load_mtl_dataset(dataset, bench.data_root(), seed=0)
        settings = {**asdict(mtl_recipe(dataset)), "epochs": 1}
        for backbone in backbones:
            best = {}
            for _, distill in itertools.product(range(repeat), ("none", "kd", "crossdistil")):
                options = {} if distill == "none" else distill_recipe(dataset, distill)
                model, module = build_mtl(backbone, data.features, distill=distill,
                                          distill_options=options or None)  # fmt: skip
                result = train_mtl(model, data.split.train, data.split.valid, distill=module,
                                   user=data.user, **settings)  # fmt: skip
                seconds = result.history[0]["train_s"]
                best[distill] = min(seconds, best.get(distill, seconds))
            row = {d: (s, s / best["none"]) for d, s in best.items()}
            rows[f"{dataset}/{backbone}"] = row
            print(dataset, backbone, {d: f"{s:.2f} s ({r:.2f}x)" for d, (s, r) in row.items()})
    bench.write_results("mtl_cost", rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("tune", "compare", "cost"), required=True)
    parser.add_argument("--repeat", type=int, default=2, help="epochs timed per mode (cost)")
    parser.add_argument("--datasets", default="ml-100k,synthetic")
    parser.add_argument("--backbones", default="mmoe,ple")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--max-cells", type=int, default=None,
                        help="stop after this many new cells (run again to continue)")  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(1)
    BUDGET["max"] = args.max_cells
    datasets = args.datasets.split(",")
    try:
        if args.part == "tune":
            tune(datasets)
        elif args.part == "cost":
            cost(datasets, args.backbones.split(","), args.repeat)
        else:
            compare(datasets, args.backbones.split(","), args.seeds)
    except OutOfCells:
        print(f"stopped after {BUDGET['new']} new cells; run again to continue")


if __name__ == "__main__":
    main()
