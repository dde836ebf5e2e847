"""Federated learning benchmarks (issue 6): FedSubAvg, ODE, simulator throughput.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fl.py --part PART``, PART one of
``fedsubavg``, ``ode``, ``ode-paper``, ``ode-real``, ``throughput``
(each part separately; all torch work on one thread).

(a) ``fedsubavg``: FedSubAvg (code form, the official training loop's estimator) vs FedAvg vs
    involved-participant averaging on Amazon Electronics per user (1,859 devices, one per user;
    DIN, embedding 18, MLP 200-80, the official local setting: SGD x 0.999 per round, batch 4,
    10 local steps, clip 5) and on MovieLens-100K per user (943 devices, :class:`TinyCTR`).
    FedAvg's learning rate is tuned on a small grid; every strategy's test AUC is recorded
    every ``--eval-every`` rounds; reported: rounds each strategy needs to reach FedAvg's best
    AUC and the ratio to FedAvg's own rounds. Writes ``fl_fedsubavg.json`` and
    ``fl_fedsubavg.png``.
(b) ``ode``: ODE (estimated and exact global gradient) vs RS, FIFO, HighLoss, GradNorm,
    FedBalancer-style, SLD-style and full data, on Synthetic(1, 1) (200 devices, softmax
    regression) and on a real task; speedup = rounds RS needs to reach its final accuracy /
    rounds the method needs (paper Table 2). Writes ``fl_ode.json``.
(b') ``ode-paper``: ODE-Est vs RS in the ODE authors' own synthetic setting (``graphrec fl ode
    --preset paper-synthetic``: LEAF-style data, lr 1e-4, official-behaviour options) over
    ``--seeds``, ``--jobs`` runs at a time; final accuracy and time-to-RS's-final-accuracy
    speedup, mean +- std. Writes ``fl_ode_paper.json``.
(b'') ``ode-real``: RS vs ODE-Est vs ODE-Exact on UCI Heart Disease (3 centres) over ``--seeds``
    (code in ``_fl_ode_real.py``). Writes ``fl_ode_real.json`` and ``fl_ode_real.png``.
(c) ``throughput``: client updates per second of the in-process simulator vs Flower's
    simulation (Ray backend, 1 CPU per ClientApp) on the same workload: 10,000 devices, 100
    per round, a small softmax-regression model. Writes ``fl_throughput.json``.

Each part rewrites its own block of the ``fl`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as bench  # noqa: E402
from _fl_ode_real import part_ode_real, simulate  # noqa: E402

from graphrec.datasets import load_amazon_electronics_users, load_movielens100k  # noqa: E402
from graphrec.federated import (  # noqa: E402
    SELECTORS,
    CTRModelTask,
    EmbeddingCTRTask,
    FedAvg,
    FedSubAvg,
    InvolvedAveraging,
    LocalConfig,
    Simulator,
    SoftmaxRegressionTask,
    StreamTask,
    final_value,
    natural_partition,
    rounds_to_reach,
    speedup,
    stream_simulator,
    synthetic_leaf,
)
from graphrec.federated.data import load_uci_heart_per_centre  # noqa: E402
from graphrec.federated.experiment import (  # noqa: E402
    ODE_PRESETS,
    holdout,
    paper_velocity,
    stream_data,
)
from graphrec.models.ctr import DIN, CTRFeatures, amazon_ctr  # noqa: E402

COMMAND = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fl.py --part {part}"


# --------------------------------------------------------------------------- (a) FedSubAvg


def amazon_din_task() -> CTRModelTask:
    amazon = load_amazon_electronics_users(bench.data_root() / "amazon_electronics_users")
    split = amazon_ctr(amazon, valid_fraction=0.0, test_fraction=0.2)
    features = CTRFeatures.from_table(split.train)
    parts = natural_partition(split.train.categorical["user"])

    def din(f):  # the configuration of the recorded FL runs (not the CTR defaults)
        return DIN(f, 18, (200, 80), attention_hidden=(64, 32), softmax=False)

    return CTRModelTask(din, features, split.train, parts, split.test)


def movielens_task() -> EmbeddingCTRTask:
    ml = load_movielens100k(bench.data_root() / "movielens" / "ml-100k")
    return EmbeddingCTRTask.from_movielens(ml, dim=8, hidden=16)


def run_strategy(task, strategy, *, lr, rounds, per_round, eval_every, seed) -> dict[str, Any]:
    local = LocalConfig(lr=lr, lr_decay=0.999, local_steps=10, batch_size=4, clip_norm=5.0)
    sim = Simulator(
        task, strategy, clients_per_round=per_round, local=local, seed=seed, eval_every=eval_every
    )
    t0 = time.perf_counter()
    history = sim.run(rounds)
    curve = [(r["round"], r["auc"]) for r in history if "auc" in r]
    return {
        "strategy": strategy.name,
        "lr": lr,
        "seconds": time.perf_counter() - t0,
        "rounds": [c[0] for c in curve],
        "auc": [c[1] for c in curve],
        "best_auc": max(c[1] for c in curve),
        "bytes_up_per_round": float(np.mean([r["bytes_up"] for r in history[1:]])),
    }


def part_fedsubavg(args: argparse.Namespace) -> None:
    settings = {
        "amazon_din": (amazon_din_task, args.rounds, args.per_round),
        "movielens_tinyctr": (movielens_task, args.rounds, args.per_round),
    }
    out: dict[str, Any] = {"machine": bench.machine(), "seed": args.seed, "datasets": {}}
    for name, (make, rounds, per_round) in settings.items():
        task = make()
        runs = []
        configs = [(FedAvg(), lr) for lr in args.fedavg_lrs]
        configs += [(FedSubAvg(task.graph, form="code"), args.lr), (InvolvedAveraging(), args.lr)]
        for strategy, lr in configs:
            print(f"[{name}] {strategy.name} lr={lr}", flush=True)
            runs.append(
                run_strategy(
                    task,
                    strategy,
                    lr=lr,
                    rounds=rounds,
                    per_round=per_round,
                    eval_every=args.eval_every,
                    seed=args.seed,
                )
            )
            print(f"  best AUC {runs[-1]['best_auc']:.4f} ({runs[-1]['seconds']:.0f} s)")
            out["datasets"][name] = {"devices": task.graph.num_devices, "runs": runs}
            bench.write_results("fl_fedsubavg", out)
        fedavg = max((r for r in runs if r["strategy"] == "fedavg"), key=lambda r: r["best_auc"])
        target = fedavg["best_auc"]
        base = rounds_to_reach(_history(fedavg), target, "auc")
        for r in runs:
            r["rounds_to_fedavg_best"] = rounds_to_reach(_history(r), target, "auc")
            reached = r["rounds_to_fedavg_best"]
            r["round_ratio_vs_fedavg"] = None if reached is None else reached / base
        out["datasets"][name].update(
            {"fedavg_best_lr": fedavg["lr"], "fedavg_best_auc": target, "rounds": rounds}
        )
        bench.write_results("fl_fedsubavg", out)
    out["settings"] = {
        "rounds": args.rounds,
        "clients_per_round": args.per_round,
        "eval_every": args.eval_every,
        "local": "SGD lr x 0.999/round, batch 4, 10 steps, clip 5",
    }
    bench.write_results("fl_fedsubavg", out)
    _plot_fedsubavg(out)
    _write_md("fedsubavg", _md_fedsubavg(out))


def _history(run: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"round": r, "auc": a} for r, a in zip(run["rounds"], run["auc"], strict=True)]


def _plot_fedsubavg(out: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(out["datasets"])
    fig, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 4))
    for ax, name in zip(np.atleast_1d(axes), names, strict=True):
        for r in out["datasets"][name]["runs"]:
            ax.plot(r["rounds"], r["auc"], label=f"{r['strategy']} lr={r['lr']}")
        ax.set(title=name, xlabel="round", ylabel="test AUC")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(bench.RESULTS / "fl_fedsubavg.png", dpi=100)


def _md_fedsubavg(out: dict[str, Any]) -> str:
    s = out["settings"]
    lines = [
        f"**(a) FedSubAvg vs FedAvg** ({s['rounds']} rounds, {s['clients_per_round']} clients "
        f"per round, {s['local']}; test AUC every {s['eval_every']} rounds; seed {out['seed']}).",
        f"Command: `{COMMAND.format(part='fedsubavg')}`; {out['machine']}.",
    ]
    rows = []
    for name, d in out["datasets"].items():
        for r in d["runs"]:
            reached = r.get("rounds_to_fedavg_best")
            rel = r.get("round_ratio_vs_fedavg")
            rows.append([
                f"{name} ({d['devices']} devices)", r["strategy"], r["lr"], f"{r['best_auc']:.4f}",
                "never" if reached is None else reached, "-" if rel is None else f"{rel:.2f}",
            ])  # fmt: skip
    header = ["task", "strategy", "lr", "best AUC", "rounds to FedAvg's best", "ratio to FedAvg"]
    return "\n".join(
        lines
        + ["", bench.md_table(header, rows), "", "Plot: `benchmarks/results/fl_fedsubavg.png`."]
    )


# --------------------------------------------------------------------------- (b) ODE


def ode_tasks(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The ODE settings: Synthetic(1, 1) (the paper's ST task shape) and UCI Heart Disease."""
    syn = synthetic_leaf(1.0, 1.0, args.ode_devices, samples_per_device=1000, seed=args.seed)
    syn_train, syn_test = holdout(syn.parts, 0.2, args.seed)
    heart = load_uci_heart_per_centre(bench.data_root() / "fl" / "uci_heart_disease")
    x = heart.x.copy()
    mean, std = np.nanmean(x, 0), np.nanstd(x, 0) + 1e-8
    x = np.nan_to_num((x - mean) / std)  # standardised; missing -> the mean
    heart_train, heart_test = holdout(heart.parts, 0.2, args.seed)
    return {
        "synthetic": {
            "x": syn.x,
            "y": syn.y,
            "parts": syn_train,
            "test": syn_test,
            "model": lambda: torch.nn.Linear(60, 10),
            "clients_per_round": max(1, args.ode_devices // 20),
            "buffer": 10,
            "velocity": 8,
            "rounds": args.ode_rounds,
            "lr": args.ode_lr,
            "about": f"Synthetic(1, 1), {args.ode_devices} devices x 1,000 samples (800 stream, "
            "200 test), dim 60, 10 labels, softmax regression",
        },
        "uci_heart": {
            "x": x,
            "y": (heart.y > 0).astype(np.int64),
            "parts": heart_train,
            "test": heart_test,
            "model": lambda: torch.nn.Linear(13, 2),
            "clients_per_round": 2,
            "buffer": 10,
            "velocity": 2,
            "rounds": args.ode_rounds,
            "lr": args.ode_lr,
            "about": "UCI Heart Disease, 3 centres (one device each; 80% stream, 20% test), "
            "disease yes/no, logistic regression",
        },
    }


def part_ode(args: argparse.Namespace) -> None:
    if args.selectors[0] != "rs":
        raise SystemExit("--selectors must start with rs (the speedup reference)")
    out: dict[str, Any] = {"machine": bench.machine(), "seed": args.seed, "tasks": {}}
    out["settings"] = {"local_epochs": 5, "batch": "whole store", "tail": args.tail}
    for name, t in ode_tasks(args).items():
        local = LocalConfig(
            lr=t["lr"], lr_decay=1.0, local_steps=5, batch_size=10**9, clip_norm=None
        )
        runs: dict[str, Any] = {}
        for selector in args.selectors:
            task = StreamTask(
                t["model"](),
                t["x"],
                t["y"],
                t["parts"],
                t["test"],
                selector=selector,
                buffer_size=t["buffer"],
                velocity=t["velocity"],
                seed=args.seed,
            )
            sim = stream_simulator(
                task,
                clients_per_round=t["clients_per_round"],
                local=local,
                seed=args.seed,
                eval_every=args.ode_eval_every,
            )
            t0 = time.perf_counter()
            history = sim.run(t["rounds"])
            devices = [cs["device"] for cs in sim.client_state.values()]
            runs[selector] = {
                "seconds": time.perf_counter() - t0,
                "rounds": [r["round"] for r in history if "accuracy" in r],
                "accuracy": [r["accuracy"] for r in history if "accuracy" in r],
                **task.selection_cost(devices),
            }
            print(
                f"[{name}] {selector}: final {final_value(history, tail=args.tail):.4f} "
                f"({runs[selector]['seconds']:.0f} s)",
                flush=True,
            )
            hist = {s: _acc_history(r) for s, r in runs.items()}
            for s, r in runs.items():
                r["final_accuracy"] = final_value(hist[s], tail=args.tail)
                r["speedup_vs_rs"] = speedup(hist["rs"], hist[s], tail=args.tail)
            out["tasks"][name] = {
                "about": t["about"],
                "settings": {
                    k: t[k] for k in ("clients_per_round", "buffer", "velocity", "rounds", "lr")
                },
                "runs": runs,
            }
            bench.write_results("fl_ode", out)
            _write_md("ode", _md_ode(out))


def _acc_history(run: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"round": r, "accuracy": a} for r, a in zip(run["rounds"], run["accuracy"], strict=True)
    ]


def _md_ode(out: dict[str, Any]) -> str:
    names = {
        "rs": "RS",
        "fifo": "FIFO",
        "hl": "HL",
        "gn": "GN",
        "fb": "FB",
        "sld": "SLD",
        "ode-exact": "ODE-Exact",
        "ode": "ODE-Est",
        "fd": "FD",
    }
    lines = [
        "**(b) ODE vs data-selection baselines** (paper Table 2 form: speedup = rounds RS needs "
        "to reach its final accuracy / rounds the method needs, '-' = never; final accuracy = "
        f"mean of the last {out['settings']['tail']} evaluations, central test set = union of "
        f"the devices' held-out data; {out['settings']['local_epochs']} local epochs, one "
        f"full-batch step per epoch; seed {out['seed']}).",
        f"Command: `{COMMAND.format(part='ode')}`; {out['machine']}.",
        "",
    ]
    for name, d in out["tasks"].items():
        s = d["settings"]
        sel = [k for k in names if k in d["runs"]]
        runs = [d["runs"][k] for k in sel]
        rows = [
            ["speedup"]
            + ["-" if r["speedup_vs_rs"] is None else f"{r['speedup_vs_rs']:.2f}x" for r in runs],
            ["final acc. (%)"] + [f"{100 * r['final_accuracy']:.2f}" for r in runs],
            ["valuation ms / sample"] + [f"{r['ms_per_sample']:.3f}" for r in runs],
            ["bytes / sample"] + [f"{r['bytes_per_sample']:.0f}" for r in runs],
        ]
        lines += [
            f"{name}: {d['about']}; {s['clients_per_round']} devices per round, |B| = "
            f"{s['buffer']}, {s['velocity']} arrivals per round, {s['rounds']} rounds, "
            f"lr {s['lr']}.",
            "",
            bench.md_table([""] + [names[k] for k in sel], rows),
            "",
        ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- (b') ODE, paper preset


def _ode_paper_run(job: tuple[int, str, int]) -> dict[str, Any]:
    """One seed x selector of ``graphrec fl ode --preset paper-synthetic`` (same numbers)."""
    seed, selector, rounds = job
    torch.set_num_threads(1)
    p = ODE_PRESETS["paper-synthetic"]
    data = stream_data(p["dataset"], devices=p["devices"], seed=seed)
    res = simulate(data, selector, p, velocity=paper_velocity(data.parts), rounds=rounds, seed=seed)
    print(f"[ode-paper] seed {seed} {selector}: {res['accuracy'][-1]:.4f}", flush=True)
    return {"seed": seed, "selector": selector, **res}


def part_ode_paper(args: argparse.Namespace) -> None:
    import multiprocessing

    rounds = args.ode_paper_rounds or ODE_PRESETS["paper-synthetic"]["rounds"]
    jobs = [(seed, sel, rounds) for seed in args.seeds for sel in ("rs", "ode")]
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        done = pool.map(_ode_paper_run, jobs, chunksize=1)
    seeds: dict[int, dict[str, Any]] = {}
    for run in done:
        seeds.setdefault(run["seed"], {})[run.pop("selector")] = run
    for runs in seeds.values():
        hist = {s: _acc_history(r) for s, r in runs.items()}
        for s, r in runs.items():
            r["final_accuracy"] = final_value(hist[s], tail=args.tail)
            r["speedup_vs_rs"] = speedup(hist["rs"], hist[s], tail=args.tail)
    out = {
        "machine": bench.machine(),
        "preset": {**ODE_PRESETS["paper-synthetic"], "rounds": rounds},
        "tail": args.tail,
        "jobs": args.jobs,
        "about": done[0]["about"],
        "seeds": {str(k): v for k, v in seeds.items()},
    }
    bench.write_results("fl_ode_paper", out)
    _write_md("ode-paper", _md_ode_paper(out, args))


def _md_ode_paper(out: dict[str, Any], args: argparse.Namespace) -> str:
    seeds = out["seeds"]
    p = out["preset"]

    def stat(values: list[float], fmt: str = "{:.2f}") -> str:
        return f"{fmt.format(np.mean(values))} ± {np.std(values):.2f}"

    rs = [100 * d["rs"]["final_accuracy"] for d in seeds.values()]
    ode = [100 * d["ode"]["final_accuracy"] for d in seeds.values()]
    sp = [d["ode"]["speedup_vs_rs"] for d in seeds.values()]
    reached = [x for x in sp if x is not None]
    rows = [
        [f"seed {k}", f"{100 * d['rs']['final_accuracy']:.2f}",
         f"{100 * d['ode']['final_accuracy']:.2f}",
         f"{100 * (d['ode']['final_accuracy'] - d['rs']['final_accuracy']):+.2f}",
         "-" if d["ode"]["speedup_vs_rs"] is None else f"{d['ode']['speedup_vs_rs']:.2f}x",
         f"{d['rs']['seconds']:.0f} / {d['ode']['seconds']:.0f}"]
        for k, d in seeds.items()
    ]  # fmt: skip
    rows.append(
        ["mean ± std", stat(rs), stat(ode), stat(list(np.subtract(ode, rs)), "{:+.2f}"),
         (stat(reached, "{:.2f}") + "x" if reached else "-")
         + ("" if len(reached) == len(sp) else f" ({len(reached)} of {len(sp)} reached)"),
         ""]
    )  # fmt: skip
    first = next(iter(seeds.values()))["rs"]["rounds"]
    marks = [i for i, r in enumerate(first) if r % 100 == 0 or r == first[-1]]
    curve = [
        [str(first[i])]
        + [stat([100 * d[s]["accuracy"][i] for d in seeds.values()]) for s in ("rs", "ode")]
        for i in marks
    ]
    seed_text = " ".join(str(s) for s in args.seeds)
    header = ["", "RS final (%)", "ODE-Est final (%)", "difference", "speedup"]
    header.append(f"seconds RS / ODE-Est ({out['jobs']} runs at a time)")
    return "\n".join(
        [
            "**(b') ODE in its own setting** (`graphrec fl ode --preset paper-synthetic`: "
            f"{out['about']}; {p['clients_per_round']} of {p['devices']} devices per round, "
            f"|B| = {p['buffer']}, each device's stream size / 400 arrivals per round, SGD lr "
            f"{p['lr']}, {p['epochs']} local epochs of one full-store step, {p['rounds']} rounds, "
            f"evaluation every {p['eval_every']}; official behaviour: gamma loss / sum(gamma), "
            "g_hat sent after aggregation, RS counter restarted per participation, stores "
            "start with the stream's last samples). Target = "
            f"RS's final accuracy (mean of its last {out['tail']} evaluations), speedup = rounds "
            "RS needs to reach it / rounds ODE-Est needs ('-' = never). Paper (ST): 5.88x, "
            "82.80% vs RS 79.56%.",
            f"Command: `OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fl.py --part ode-paper "
            f"--seeds {seed_text} --jobs {out['jobs']}"
            + ("" if args.ode_paper_rounds is None else f" --ode-paper-rounds {p['rounds']}")
            + f"`; {out['machine']}.",
            "",
            bench.md_table(header, rows),
            "",
            "Test accuracy (%) along the run, mean ± std over the seeds:",
            "",
            bench.md_table(["round", "RS", "ODE-Est"], curve),
        ]
    )


# --------------------------------------------------------------------------- (c) throughput


def throughput_task(devices: int, seed: int) -> SoftmaxRegressionTask:
    """Synthetic(1, 1) with 20 samples per device, softmax regression (610 parameters)."""
    syn = synthetic_leaf(1.0, 1.0, devices, samples_per_device=20, seed=seed)
    return SoftmaxRegressionTask(syn.x, syn.y, syn.parts, np.arange(min(2000, syn.y.size)))


def part_throughput(args: argparse.Namespace) -> None:
    from graphrec.federated.flower import run_simulation

    devices, per_round = args.tp_devices, args.tp_per_round
    make = functools.partial(throughput_task, devices, args.seed)
    local = LocalConfig(lr=0.05, lr_decay=1.0, local_steps=5, batch_size=10, clip_norm=None)
    task = make()
    sim = Simulator(
        task, FedAvg(), clients_per_round=per_round, local=local, seed=args.seed, eval_every=10**9
    )
    sim.evaluate = lambda: {}  # throughput only: no central evaluation
    t0 = time.perf_counter()
    sim.run(args.tp_rounds)
    in_process_s = time.perf_counter() - t0
    in_process = args.tp_rounds * per_round / in_process_s
    print(f"in-process: {in_process:.0f} client updates/s ({in_process_s:.1f} s)", flush=True)
    os.environ.setdefault("FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION", "1")
    home = tempfile.mkdtemp(prefix="flwr_home_")
    os.environ["FLWR_HOME"] = home
    t0 = time.perf_counter()
    flower = run_simulation(
        make,
        FedAvg(),
        rounds=args.tp_flower_rounds,
        clients_per_round=per_round,
        num_supernodes=devices,
        local=local,
        seed=args.seed,
        num_cpus=1,
        evaluate=False,
    )
    flower_wall = time.perf_counter() - t0
    shutil.rmtree(home, ignore_errors=True)
    round_s = [h["seconds"] for h in flower.history]
    # steady state: round 1 includes starting the Ray actor and importing torch in it
    accepted = sum(h["accepted"] for h in flower.history[1:])
    flower_rate = accepted / sum(round_s[1:])
    print(
        f"Flower: {flower_rate:.1f} client updates/s (rounds {sum(round_s):.1f} s, "
        f"wall {flower_wall:.1f} s)",
        flush=True,
    )
    out = {
        "machine": bench.machine(),
        "seed": args.seed,
        "devices": devices,
        "clients_per_round": per_round,
        "model": "softmax regression 60 -> 10 (610 parameters), 5 local SGD steps of batch 10",
        "in_process": {
            "rounds": args.tp_rounds,
            "seconds": in_process_s,
            "updates_per_s": in_process,
        },
        "flower": {
            "version": importlib.metadata.version("flwr"),
            "rounds": args.tp_flower_rounds,
            "round_seconds": round_s,
            "wall_seconds_incl_startup": flower_wall,
            "updates": accepted,
            "updates_per_s": flower_rate,
            "backend": "Ray, 1 CPU in all, 1 CPU per ClientApp",
        },
        "ratio": in_process / flower_rate,
    }
    bench.write_results("fl_throughput", out)
    _write_md(
        "throughput",
        "\n".join(
            [
                f"**(c) Simulator throughput** ({devices:,} devices, {per_round} per round, "
                f"{out['model']}; Flower {out['flower']['version']} simulation, "
                f"{out['flower']['backend']}; Flower's rate over rounds 2.., from "
                "configure_train to the end of aggregate_train; round 1, with the actor "
                f"start-up, took {round_s[0]:.0f} s).",
                f"Command: `{COMMAND.format(part='throughput')}`; {out['machine']}.",
                "",
                bench.md_table(
                    ["engine", "rounds", "client updates / s"],
                    [
                        ["graphrec in-process", args.tp_rounds, f"{in_process:.0f}"],
                        [
                            "Flower simulation",
                            args.tp_flower_rounds,
                            f"{flower_rate:.1f} (wall incl. start-up {flower_wall:.0f} s)",
                        ],
                        ["ratio", "", f"**{bench.ratio(in_process, flower_rate, '.0f')}**"],
                    ],
                ),
            ]
        ),
    )


# --------------------------------------------------------------------------- BENCHMARKS.md


def _write_md(part: str, text: str) -> None:
    """Keep one block per part in ``fl_md.json`` and rewrite the whole ``fl`` section."""
    store = bench.RESULTS / "fl_md.json"
    blocks = json.loads(store.read_text()) if store.exists() else {}
    blocks[part] = (
        f"{text}\n\nLoad average (1 min) when this part finished: {bench.load_average():.1f}."
    )
    bench.write_json(store, blocks)
    order = [p for p in ("fedsubavg", "ode", "ode-paper", "ode-real", "throughput") if p in blocks]
    bench.update_benchmarks_md(
        "fl", "## Federated learning\n\n" + "\n\n".join(blocks[p] for p in order)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--part",
        choices=["fedsubavg", "ode", "ode-paper", "ode-real", "throughput"],
        required=True,
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--per-round", type=int, default=50)
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--lr", type=float, default=0.1, help="FedSubAvg / involved lr")
    parser.add_argument("--fedavg-lrs", type=float, nargs="+", default=[0.1, 0.3, 1.0])
    parser.add_argument("--ode-devices", type=int, default=200)
    parser.add_argument("--ode-rounds", type=int, default=300)
    parser.add_argument("--ode-eval-every", type=int, default=10)
    parser.add_argument("--ode-lr", type=float, default=0.01)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--jobs", type=int, default=2, help="ode-paper runs at a time")
    parser.add_argument(
        "--ode-paper-rounds", type=int, default=None, help="default: the preset's 1000"
    )
    parser.add_argument("--tp-devices", type=int, default=10_000)
    parser.add_argument("--tp-per-round", type=int, default=100)
    parser.add_argument("--tp-rounds", type=int, default=20)
    parser.add_argument("--tp-flower-rounds", type=int, default=4)
    parser.add_argument("--tail", type=int, default=3, help="evaluations averaged as 'final'")
    parser.add_argument(
        "--selectors",
        nargs="+",
        default=["rs", "fifo", "hl", "gn", "fb", "sld", "fd", "ode", "ode-exact"],
        choices=sorted(SELECTORS),
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    parts = {
        "fedsubavg": part_fedsubavg,
        "ode": part_ode,
        "ode-paper": part_ode_paper,
        "ode-real": lambda a: part_ode_real(a, _write_md),
        "throughput": part_throughput,
    }
    parts[args.part](args)


if __name__ == "__main__":
    main()
