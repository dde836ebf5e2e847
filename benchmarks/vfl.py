"""Vertical federated learning benchmarks (issue 16): split learning vs centralized, compression,
label-inference attack and protection, curves (parties, cut depth, staleness, epsilon).

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/vfl.py`` (5 seeds; ``--quick``: 1 seed, a
smoke run that writes ``vfl_quick.json`` and leaves BENCHMARKS.md alone).

Every figure comes from ``graphrec vfl train ... --json`` called in process
(:func:`graphrec.cli.main`), one run per seed; the seed sets the train/test split, the
initialisation, the batch order and the noise. Tables report mean ± std (sample std) over seeds.

(a) split vs centralized: ``--centralized`` trains a copy of the initial split model on the
    joined features with the same batches; without DP or compression the two should agree.
(b) compression: ``--compress q8|q4|topk:0.1`` (error feedback on); bytes are the whole
    training traffic in the message log, the ratio is the uncompressed run's bytes over the
    compressed run's, the AUC delta is per seed against the uncompressed run.
(c) attack: the norm and direction label-inference attacks of the passive party on the
    gradients it received (``--attack``), without protection and with clipping + Gaussian noise
    on the returned gradients (``--dp-target gradient``), with the test AUC cost and epsilon.
(d) curves: parties 2/4/8, cut depth (hidden layers in the bottoms vs the top, 3 in all),
    staleness bound K (``--staleness K --late 0.5``) and epsilon (``--dp-sigma`` on the
    embeddings), each against the centralized model.
(e) throughput: training rows per second of the in-process split learner, and on one workload
    against ``--flower`` (the parties as ClientApps on Flower's simulation engine).

Writes ``benchmarks/results/vfl.json``, ``vfl_curves.png`` and the ``vfl`` section of
BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as bench  # noqa: E402

from graphrec.cli import main as graphrec_main  # noqa: E402

COMMAND = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/vfl.py"
#: Per dataset, the options of every run (ml-100k: 80,000 train rows, larger batches).
DATASETS = {
    "breast-cancer": [],
    "uci-heart": ["--data-root", "{root}"],
    "synthetic": [],
    "ml-100k": ["--data-root", "{root}", "--epochs", "3", "--batch-size", "1024"],
}
COMPRESSORS = ("q8", "q4", "topk:0.1")
#: (c): the attacked dataset, the clip of the returned gradient rows and the noise sweep.
ATTACK_DATASET, ATTACK_CLIP, ATTACK_SIGMAS = "breast-cancer", 0.01, (0.0, 0.1, 0.3, 1.0, 3.0)
PARTIES = (2, 4, 8)
PARTY_DATASETS = ("synthetic", "breast-cancer")
#: (bottom hidden, top hidden): 3 hidden layers of 16 in all, the cut moving up.
CUTS = (("", "16,16,16"), ("16", "16,16"), ("16,16", "16"), ("16,16,16", ""))
CUT_DATASETS = ("synthetic", "breast-cancer")
STALENESS = (0, 5, 15, 30, 100)
STALE_DATASET = "breast-cancer"
EMBEDDING_SIGMAS = (0.5, 1.0, 2.0, 4.0, 8.0)
EPSILON_DATASETS = ("breast-cancer", "uci-heart")
#: (e): the workload run in process and on Flower's simulation engine.
FLOWER_DATASET, FLOWER_OPTIONS = "breast-cancer", ("--epochs", "2")


def cli_json(argv: list[str]) -> dict[str, Any]:
    """The results of ``graphrec ARGV --json`` run in process (its last line of output)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = graphrec_main([*argv, "--json"])
    if code != 0:
        raise SystemExit(f"graphrec {' '.join(argv)} failed with exit code {code}")
    return json.loads(buf.getvalue().strip().splitlines()[-1])


class Runner:
    """``graphrec vfl train`` in process, one run per seed, each distinct run once."""

    def __init__(self, seeds: Sequence[int], root: Path) -> None:
        self.seeds, self.root = list(seeds), root
        self.memo: dict[tuple[str, ...], dict[str, Any]] = {}
        self.seconds = 0.0

    def argv(self, dataset: str, options: Sequence[str], seed: int) -> list[str]:
        base = [o.format(root=self.root) for o in DATASETS[dataset]]
        return ["vfl", "train", "--dataset", dataset, *base, *options, "--seed", str(seed)]

    def __call__(self, dataset: str, *options: str) -> list[dict[str, Any]]:
        out = []
        for seed in self.seeds:
            argv = self.argv(dataset, options, seed)
            key = tuple(argv)
            if key not in self.memo:
                t0 = time.perf_counter()
                result = cli_json(argv)
                self.seconds += time.perf_counter() - t0
                result.pop("loss_history")  # keep the result file small
                if result["centralized"]:
                    result["centralized"].pop("loss_history", None)
                self.memo[key] = result
            out.append(self.memo[key])
        return out


# --------------------------------------------------------------------------- statistics


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample std (0 for one value)."""
    values = list(values)
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summary(values: Sequence[float]) -> dict[str, float]:
    m, s = mean_std(values)
    return {"mean": m, "std": s, "values": list(values)}


def pm(stat: dict[str, float], spec: str = ".4f") -> str:
    """``mean ± std`` cell."""
    return f"{stat['mean']:{spec}} ± {stat['std']:{spec}}"


def auc_of(runs: list[dict[str, Any]]) -> dict[str, float]:
    return summary([r["test_auc"] for r in runs])


def central_of(runs: list[dict[str, Any]]) -> dict[str, float]:
    return summary([r["centralized"]["test_auc"] for r in runs])


def attack_of(runs: list[dict[str, Any]], kind: str) -> dict[str, float]:
    """Attack AUC ``kind`` (norm_auc, direction_auc), averaged over the remote parties of a
    run, then summarized over seeds."""
    return summary([statistics.fmean(a[kind] for a in r["attack"].values()) for r in runs])


# --------------------------------------------------------------------------- parts


def part_central(run: Runner) -> dict[str, Any]:
    """(a) split vs centralized (and the unprotected attack on every dataset)."""
    out = {}
    for name in DATASETS:
        runs = run(name, "--centralized", "--attack")
        diff = [abs(r["test_auc"] - r["centralized"]["test_auc"]) for r in runs]
        out[name] = {
            "rows": runs[0]["data"],
            "split": auc_of(runs),
            "centralized": central_of(runs),
            "max_abs_diff": max(diff),
            "train_bytes": summary([r["train_bytes"] for r in runs]),
            "attack_norm": attack_of(runs, "norm_auc"),
            "attack_direction": attack_of(runs, "direction_auc"),
            "train_s": summary([r["train_s"] for r in runs]),
        }
        print(f"(a) {name}: split {pm(out[name]['split'])}, max |diff| {max(diff):.2e}", flush=True)
    return out


def part_compress(run: Runner) -> dict[str, Any]:
    """(b) bytes ratio and AUC delta of each compressor against the uncompressed run."""
    out: dict[str, Any] = {}
    for name in DATASETS:
        plain = run(name)
        out[name] = {"none": {"bytes": summary([r["train_bytes"] for r in plain])}}
        out[name]["none"]["auc"] = auc_of(plain)
        for comp in COMPRESSORS:
            runs = run(name, "--compress", comp)
            out[name][comp] = {
                "auc": auc_of(runs),
                "bytes": summary([r["train_bytes"] for r in runs]),
                "bytes_by_kind": runs[0]["train_bytes_by_kind"],
                "ratio": summary(
                    [p["train_bytes"] / r["train_bytes"] for p, r in zip(plain, runs, strict=True)]
                ),
                "auc_delta": summary(
                    [r["test_auc"] - p["test_auc"] for p, r in zip(plain, runs, strict=True)]
                ),
            }
            c = out[name][comp]
            print(f"(b) {name} {comp}: {c['ratio']['mean']:.2f}x, dAUC {pm(c['auc_delta'])}")
        out[name]["none"]["bytes_by_kind"] = plain[0]["train_bytes_by_kind"]
    return out


def part_attack(run: Runner) -> dict[str, Any]:
    """(c) attack AUC without protection and with gradient DP, test AUC cost and epsilon."""
    plain = run(ATTACK_DATASET, "--attack")
    rows = [{"sigma": None, "clip": None, **_attack_row(plain, plain)}]
    for sigma in ATTACK_SIGMAS:
        options = ["--attack", "--dp-target", "gradient", "--dp-sigma", str(sigma)]
        runs = run(ATTACK_DATASET, *options, "--dp-clip", str(ATTACK_CLIP))
        rows.append({"sigma": sigma, "clip": ATTACK_CLIP, **_attack_row(runs, plain)})
        r = rows[-1]
        print(f"(c) sigma {sigma}: attack {pm(r['direction'])}, AUC cost {pm(r['auc_cost'])}")
    return {"dataset": ATTACK_DATASET, "rows": rows}


def _attack_row(runs: list[dict[str, Any]], plain: list[dict[str, Any]]) -> dict[str, Any]:
    eps = [r["epsilon"] for r in runs]
    return {
        "norm": attack_of(runs, "norm_auc"),
        "direction": attack_of(runs, "direction_auc"),
        "auc": auc_of(runs),
        "auc_cost": summary(
            [p["test_auc"] - r["test_auc"] for p, r in zip(plain, runs, strict=True)]
        ),
        "epsilon": None if eps[0] is None else eps[0],  # the same for every seed
    }


def part_curves(run: Runner) -> dict[str, Any]:
    """(d) AUC against parties, cut depth, staleness and epsilon, with the centralized model."""
    parties = {
        name: [
            {"parties": n, "split": auc_of(rs), "centralized": central_of(rs)}
            for n in PARTIES
            for rs in [run(name, "--parties", str(n), "--centralized")]
        ]
        for name in PARTY_DATASETS
    }
    cuts = {}
    for name in CUT_DATASETS:
        cuts[name] = []
        for bottom, top in CUTS:
            rs = run(name, "--bottom-hidden", bottom, "--top-hidden", top, "--centralized")
            p = rs[0]["parameters"]
            cuts[name].append(
                {
                    "bottom": bottom or "-",
                    "top": top or "-",
                    "bottom_layers": len([h for h in bottom.split(",") if h]),
                    "parameters": sum(p["bottoms"].values()) + p["top"],
                    "split": auc_of(rs),
                    "centralized": central_of(rs),
                }
            )
    stale = []
    for k in STALENESS:
        rs = run(STALE_DATASET, "--staleness", str(k), "--late", "0.5", "--centralized")
        stale.append(
            {
                "K": k,
                "split": auc_of(rs),
                "centralized": central_of(rs),
                "late": summary([r["stragglers"]["late"] for r in rs]),
                "cached": summary([r["stragglers"]["cached"] for r in rs]),
                "bytes": summary([r["train_bytes"] for r in rs]),
            }
        )
    eps = {}
    for name in EPSILON_DATASETS:
        eps[name] = []
        for sigma in EMBEDDING_SIGMAS:
            rs = run(name, "--dp-sigma", str(sigma), "--centralized")
            eps[name].append(
                {
                    "sigma": sigma,
                    "epsilon": rs[0]["epsilon"],
                    "split": auc_of(rs),
                    "centralized": central_of(rs),
                }
            )
    print("(d) curves done", flush=True)
    return {"parties": parties, "cut_depth": cuts, "staleness": stale, "epsilon": eps}


def part_throughput(run: Runner) -> dict[str, Any]:
    """(e) training rows per second of the in-process learner (from the runs of (a))."""
    out = {}
    for name in DATASETS:
        rs = run(name, "--centralized", "--attack")
        rates = [r["data"]["train"] * r["config"]["epochs"] / r["train_s"] for r in rs]
        out[name] = {"rows_per_s": summary(rates)}
    out["flower"] = flower_throughput(run)
    return out


def flower_throughput(run: Runner) -> dict[str, Any]:
    """The Flower row of (e): the same run in process (best of 3) and with ``--flower`` (the
    parties as ClientApps on Flower's simulation engine, Ray on 127.0.0.1, 1 CPU per app);
    training rows per second over the split steps only (``train_s``: Ray's start-up and the
    data loading not counted). Seed 0; the two runs must give the same test AUC."""
    argv = run.argv(FLOWER_DATASET, FLOWER_OPTIONS, 0)
    local = [cli_json(argv) for _ in range(3)]
    home = tempfile.mkdtemp(prefix="flwr_home_")
    env = {
        "FLWR_HOME": home,
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        t0 = time.perf_counter()
        flower = cli_json([*argv, "--flower"])
        wall = time.perf_counter() - t0
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(home, ignore_errors=True)
    if flower["test_auc"] != local[0]["test_auc"]:
        raise SystemExit("the Flower run's test AUC differs from the in-process run's")
    rows = local[0]["data"]["train"] * local[0]["config"]["epochs"]
    in_process_s = min(r["train_s"] for r in local)
    out = {
        "workload": f"{FLOWER_DATASET} {' '.join(FLOWER_OPTIONS)}, batch 32, seed 0",
        "in_process_rows_per_s": rows / in_process_s,
        "flower_rows_per_s": rows / flower["train_s"],
        "flower_wall_s": wall,
        "flower_stats": flower["flower"],
    }
    out["ratio"] = out["in_process_rows_per_s"] / out["flower_rows_per_s"]
    print(
        f"(e) in process {out['in_process_rows_per_s']:,.0f} rows/s, Flower "
        f"{out['flower_rows_per_s']:,.0f} rows/s: {out['ratio']:.0f}x",
        flush=True,
    )
    return out


# --------------------------------------------------------------------------- report


def report(out: dict[str, Any]) -> str:
    s = out["settings"]
    lines = [
        "## Vertical federated learning (`benchmarks/vfl.py`)",
        "",
        f"Command: `{COMMAND}`; {out['machine']}; commit {out['commit']}; seeds "
        f"{s['seeds']}, mean ± std over seeds. Defaults of `graphrec vfl train` unless stated: "
        "2 parties (columns split into contiguous blocks, p0 holds the labels), bottom MLP 16 "
        "-> embedding 8, top MLP 16, Adam lr 0.01, 20 epochs of batch 32; ml-100k 3 epochs of "
        "batch 1024 (user and item parties, labels at the platform). Total "
        f"{out['seconds'] / 60:.1f} min for {out['runs']} runs.",
        "",
        "Issue 16's targets, as measured below:",
        "",
        *targets(out),
        "",
    ]
    a = out["central"]
    lines += [
        "**(a) Split learning vs centralized** (`--centralized`: a copy of the initial split "
        "model trained on the joined features with the same batches and one Adam). Target: "
        "AUC within 0.005 of centralized on each dataset.",
        "",
        bench.md_table(
            [
                "dataset",
                "train / test rows",
                "split test AUC",
                "centralized test AUC",
                "max per-seed abs. diff.",
                "bytes in training",
            ],
            [
                [
                    name,
                    f"{d['rows']['train']:,} / {d['rows']['test']:,}",
                    pm(d["split"]),
                    pm(d["centralized"]),
                    f"{d['max_abs_diff']:.1e}",
                    f"{d['train_bytes']['mean']:,.0f}",
                ]
                for name, d in a.items()
            ],
        ),
        "",
    ]
    b = out["compress"]
    rows = []
    for name, d in b.items():
        rows.append(
            [name, "none", f"{d['none']['bytes']['mean']:,.0f}", "1.00x", pm(d["none"]["auc"]), "-"]
        )
        for comp in COMPRESSORS:
            c = d[comp]
            rows.append(
                [
                    name,
                    comp,
                    f"{c['bytes']['mean']:,.0f}",
                    f"{c['ratio']['mean']:.2f}x",
                    pm(c["auc"]),
                    pm(c["auc_delta"]),
                ]
            )
    lines += [
        "**(b) Compression with error feedback** (`--compress`, embeddings up and gradients "
        "down). Bytes: the whole training traffic in the message log (every message kind); "
        "ratio: uncompressed bytes / compressed bytes; ΔAUC: compressed minus uncompressed, per "
        "seed. Target: q8 moves >= 4x fewer bytes for <= 0.005 AUC loss.",
        "",
        bench.md_table(
            ["dataset", "compression", "bytes in training", "ratio", "test AUC", "ΔAUC"], rows
        ),
        "",
    ]
    c = out["attack"]
    lines += [
        f"**(c) Label-inference attack** by the passive party (p1) on {c['dataset']} from the "
        "gradients it received in training (`--attack`; Li et al., ICLR 2022: norm attack = "
        "gradient row norm; direction attack = cosine with the gradient of one row per batch "
        "known to be positive). Attack AUC against the true labels; 0.5 is chance, and below "
        "0.5 the score ranks the classes the wrong way round. Unprotected on every dataset "
        "(from the runs of (a), mean over remote parties):",
        "",
        bench.md_table(
            ["dataset", "norm attack AUC", "direction attack AUC"],
            [[n, pm(d["attack_norm"]), pm(d["attack_direction"])] for n, d in a.items()],
        ),
        "",
        f"{c['dataset']} is attacked below: its labels leak unprotected (direction attack AUC "
        f"{pm(a[c['dataset']]['attack_direction'])}), both attacks score above chance there, "
        "and it is the dataset of the documented defaults (uci-heart and ml-100k leak as much "
        "to the direction attack; synthetic's balanced labels, a sum of cross-party products, "
        "leak little). Protection: per-row clipping of the returned gradients to "
        f"{ATTACK_CLIP} (gradient rows are of the batch-mean loss, ~1/32 of a sample's) plus "
        "Gaussian noise `--dp-target gradient --dp-sigma S`; epsilon at delta 1e-5 by "
        "Opacus's RDP accountant (gradient releases only: the labels' protection). AUC cost: "
        "unprotected minus protected test AUC, per seed. Target: attack AUC <= 0.60.",
        "",
        bench.md_table(
            [
                "protection",
                "norm attack AUC",
                "direction attack AUC",
                "test AUC",
                "AUC cost",
                "epsilon",
            ],
            [
                [
                    ("none" if r["sigma"] is None else f"clip {r['clip']}, sigma {r['sigma']}"),
                    pm(r["norm"]),
                    pm(r["direction"]),
                    pm(r["auc"]),
                    pm(r["auc_cost"]),
                    _eps(r["epsilon"]),
                ]
                for r in c["rows"]
            ],
        ),
        "",
    ]
    d = out["curves"]
    lines += [
        "**(d) Curves** (plot: `benchmarks/results/vfl_curves.png`). Without DP, compression "
        "or stragglers the split model equals its centralized copy, so the parties and cut-depth "
        "rows measure the architecture (columns split into more blocks, layers moved below the "
        "cut), and the centralized column is the same architecture trained jointly.",
        "",
        bench.md_table(
            ["dataset", "parties", "split test AUC", "centralized test AUC"],
            [
                [n, r["parties"], pm(r["split"]), pm(r["centralized"])]
                for n, rs in d["parties"].items()
                for r in rs
            ],
        ),
        "",
        bench.md_table(
            [
                "dataset",
                "bottom hidden",
                "top hidden",
                "parameters",
                "split test AUC",
                "centralized test AUC",
            ],
            [
                [n, r["bottom"], r["top"], r["parameters"], pm(r["split"]), pm(r["centralized"])]
                for n, rs in d["cut_depth"].items()
                for r in rs
            ],
        ),
        "",
        f"Staleness on {STALE_DATASET} (`--staleness K --late 0.5`; 15 steps per epoch, so a row "
        "is cached at most 15 steps before it recurs):",
        "",
        bench.md_table(
            [
                "K",
                "late party-steps",
                "served from cache",
                "bytes in training",
                "split test AUC",
                "centralized test AUC",
            ],
            [
                [
                    r["K"],
                    f"{r['late']['mean']:.0f}",
                    f"{r['cached']['mean']:.0f}",
                    f"{r['bytes']['mean']:,.0f}",
                    pm(r["split"]),
                    pm(r["centralized"]),
                ]
                for r in d["staleness"]
            ],
        ),
        "",
        "Epsilon (noise on the parties' embeddings, `--dp-sigma S`, clip 1; delta 1e-5):",
        "",
        bench.md_table(
            ["dataset", "sigma", "epsilon", "split test AUC", "centralized (no noise)"],
            [
                [n, r["sigma"], _eps(r["epsilon"]), pm(r["split"]), pm(r["centralized"])]
                for n, rs in d["epsilon"].items()
                for r in rs
            ],
        ),
        "",
    ]
    e = out["throughput"]
    f = e["flower"]
    lines += [
        "**(e) Throughput**: training rows per second, split steps only (data loading and "
        "Ray's start-up not counted; the machine is shared, so these are rough). In process, "
        "from the runs of (a):",
        "",
        bench.md_table(
            ["dataset", "in-process rows / s"],
            [[n, f"{v['rows_per_s']['mean']:,.0f}"] for n, v in e.items() if n != "flower"],
        ),
        "",
        f"Same workload ({f['workload']}) in process (best of 3) and with `--flower` (the "
        "parties as ClientApps on Flower's simulation engine, local Ray, 1 CPU per app; one "
        "round trip per training step and per prediction; same test AUC):",
        "",
        bench.md_table(
            ["engine", "rows / s", "round trips", "Flower bytes down / up"],
            [
                ["graphrec in-process", f"{f['in_process_rows_per_s']:,.0f}", "-", "-"],
                [
                    "Flower simulation",
                    f"{f['flower_rows_per_s']:,.0f} (wall {f['flower_wall_s']:.0f} s in all)",
                    f["flower_stats"]["round_trips"],
                    f"{f['flower_stats']['bytes_down']:,} / {f['flower_stats']['bytes_up']:,}",
                ],
                ["ratio", f"**{f['ratio']:.0f}x**", "", ""],
            ],
        ),
    ]
    return "\n".join(lines)


def targets(out: dict[str, Any]) -> list[str]:
    """One bullet per target of issue 16, read off the results."""
    a, b, c = out["central"], out["compress"], out["attack"]
    worst = max(d["max_abs_diff"] for d in a.values())
    lines = [
        f"- split vs centralized without DP or compression: largest per-seed test-AUC "
        f"difference {worst:.1e} over {', '.join(a)} (target <= 0.005: "
        f"{'met' if worst <= 0.005 else 'not met'})."
    ]
    q8 = [
        f"{n} {d['q8']['ratio']['mean']:.2f}x, ΔAUC {d['q8']['auc_delta']['mean']:+.4f}"
        for n, d in b.items()
    ]
    met = all(
        d["q8"]["ratio"]["mean"] >= 4 and d["q8"]["auc_delta"]["mean"] >= -0.005 for d in b.values()
    )
    lines.append(
        f"- q8 with error feedback, whole training traffic: {'; '.join(q8)} (target >= 4x for "
        f"<= 0.005 AUC loss: {'met on every dataset' if met else 'not met everywhere'})."
    )
    safe = [r for r in c["rows"][1:] if max(r["norm"]["mean"], r["direction"]["mean"]) <= 0.60]
    if safe:
        r = safe[0]
        lines.append(
            f"- label inference on {c['dataset']}: direction attack AUC "
            f"{pm(c['rows'][0]['direction'])} unprotected, {pm(r['direction'])} (norm "
            f"{pm(r['norm'])}) with gradient clip {r['clip']} and sigma {r['sigma']} (the "
            f"smallest sigma of the sweep that meets the target <= 0.60), epsilon "
            f"{_eps(r['epsilon'])} at delta 1e-5, test AUC cost {pm(r['auc_cost'])}."
        )
        private = [r for r in safe if r["epsilon"] <= 10]
        if private and private[0] is not r:
            r = private[0]
            lines.append(
                f"  With epsilon <= 10: sigma {r['sigma']}, epsilon {_eps(r['epsilon'])}, "
                f"direction attack AUC {pm(r['direction'])}, norm {pm(r['norm'])}, test AUC "
                f"cost {pm(r['auc_cost'])}."
            )
    else:
        lines.append(f"- label inference on {c['dataset']}: no sigma of the sweep reaches 0.60.")
    lines.append(
        "- curves for parties, cut depth, staleness and epsilon: (d) and "
        "`benchmarks/results/vfl_curves.png`."
    )
    f = out["throughput"]["flower"]
    lines.append(
        f"- in-process vs Flower simulation on the same workload ({f['workload']}): "
        f"{f['ratio']:.0f}x the training rows per second (target >= 20x: "
        f"{'met' if f['ratio'] >= 20 else 'not met'})."
    )
    return lines


def _eps(value: float | None) -> str:
    if value is None:
        return "-"
    return "inf" if math.isinf(value) else f"{value:.2f}"


def plot(out: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = out["curves"]
    fig, axes = plt.subplots(1, 4, figsize=(20, 4))

    def line(ax, xs, rows, label, key="split", **kw):
        ys = [r[key]["mean"] for r in rows]
        err = [r[key]["std"] for r in rows]
        return ax.errorbar(xs, ys, yerr=err, label=label, capsize=3, **kw)

    for name, rows in d["parties"].items():
        line(axes[0], PARTIES, rows, f"{name} split")
        line(axes[0], PARTIES, rows, f"{name} centralized", key="centralized", ls="--")
    axes[0].set(title="parties", xlabel="parties", ylabel="test AUC", xticks=list(PARTIES))
    for name, rows in d["cut_depth"].items():
        xs = [r["bottom_layers"] for r in rows]
        line(axes[1], xs, rows, f"{name} split")
        line(axes[1], xs, rows, f"{name} centralized", key="centralized", ls="--")
    axes[1].set(
        title="cut depth (3 hidden layers in all)",
        xlabel="hidden layers in the bottoms",
        xticks=[0, 1, 2, 3],
    )
    xs = [r["K"] for r in d["staleness"]]
    line(axes[2], xs, d["staleness"], f"{STALE_DATASET} split")
    line(axes[2], xs, d["staleness"], "centralized", key="centralized", ls="--")
    axes[2].set(title="staleness (late 0.5)", xlabel="staleness bound K (steps)")
    for name, rows in d["epsilon"].items():
        xs = [r["epsilon"] for r in rows]
        color = line(axes[3], xs, rows, f"{name} split")[0].get_color()
        axes[3].axhline(rows[0]["centralized"]["mean"], ls="--", color=color)
    axes[3].set(
        title="embedding DP (dashed: no noise)", xlabel="epsilon (delta 1e-5)", xscale="log"
    )
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


PARTS: dict[str, Callable[[Runner], dict[str, Any]]] = {
    "central": part_central,
    "compress": part_compress,
    "attack": part_attack,
    "curves": part_curves,
    "throughput": part_throughput,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed; BENCHMARKS.md untouched")
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default: 5)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    seeds = range(1 if args.quick else args.seeds)
    run = Runner(seeds, bench.data_root())
    load = bench.LoadLog()
    out: dict[str, Any] = {
        "machine": bench.machine(),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=bench.REPO,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip(),
        "settings": {"seeds": list(seeds), "datasets": DATASETS},
    }
    t0 = time.perf_counter()
    for name, part in PARTS.items():
        out[name] = part(run)
        load.sample()
    out["seconds"], out["runs"] = time.perf_counter() - t0, len(run.memo)
    out["load"] = load.note(1)
    name = "vfl_quick" if args.quick else "vfl"
    bench.write_results(name, out)
    plot(out, bench.RESULTS / f"{name}_curves.png")
    text = report(out) + (f"\n\n{out['load']}" if out["load"] else "")
    bench.publish("vfl", text, update_md=not args.quick)


if __name__ == "__main__":
    main()
