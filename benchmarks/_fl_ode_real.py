"""``benchmarks/fl.py --part ode-real``: ODE on real data, several seeds.

UCI Heart Disease (``graphrec fl ode --dataset uci-heart``): 3 centres, one device each
(Cleveland, Switzerland, VA Long Beach; 80% of each centre streamed, 20% held out per seed),
disease yes/no, logistic regression. RS vs ODE-Est vs ODE-Exact with the official-behaviour
options of the ODE code; per seed the final accuracy (mean of the last ``--tail``
evaluations) and the paper's time-to-accuracy speedup (target = RS's final accuracy).
Writes ``fl_ode_real.json`` and ``fl_ode_real.png``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import _common as bench
import numpy as np
import torch

from graphrec.federated import LocalConfig, StreamTask, final_value, speedup, stream_simulator
from graphrec.federated.experiment import StreamData, stream_data, stream_task

#: the setting (``graphrec fl ode`` options); the official behaviour of every StreamTask option
SETTING: dict[str, Any] = {
    "dataset": "uci-heart",
    "clients_per_round": 2,
    "buffer": 10,
    "velocity": 2,
    "lr": 0.01,
    "epochs": 5,
    "rounds": 300,
    "eval_every": 5,
    "loss_norm": "gamma",
    "estimate_timing": "after",
    "exact_revalue": "every-round",
    "rs_counter": "restart",
    "initial_store": "last",
}
SELECTORS = ("rs", "ode", "ode-exact")
NAMES = {"rs": "RS", "ode": "ODE-Est", "ode-exact": "ODE-Exact"}


def command(seeds: list[int]) -> str:
    """The equivalent ``graphrec fl ode`` command of one seed."""
    s = SETTING
    opts = " ".join(
        f"--{k.replace('_', '-')} {s[k]}"
        for k in ("clients_per_round", "buffer", "velocity", "lr", "epochs", "rounds",
                  "eval_every", *StreamTask.OPTIONS)
    )  # fmt: skip
    return (
        f"graphrec fl ode --dataset uci-heart --data-root ../shared/data --selector "
        f"{' '.join(SELECTORS)} {opts} --seed {seeds[0]}"
    )


def simulate(
    data: StreamData,
    selector: str,
    setting: dict[str, Any],
    *,
    velocity: int | np.ndarray,
    rounds: int,
    seed: int,
) -> dict[str, Any]:
    """``rounds`` rounds of one selector's stream simulation with ``setting`` (the
    ``graphrec fl ode`` options, as :data:`SETTING`): seconds, evaluated rounds and accuracy."""
    task = stream_task(
        data,
        selector,
        buffer_size=setting["buffer"],
        velocity=velocity,
        seed=seed,
        **{name: setting[name] for name in StreamTask.OPTIONS},
    )
    local = LocalConfig(
        lr=setting["lr"],
        lr_decay=1.0,
        local_steps=setting["epochs"],
        batch_size=10**9,
        clip_norm=None,
    )
    sim = stream_simulator(
        task,
        clients_per_round=setting["clients_per_round"],
        local=local,
        seed=seed,
        eval_every=setting["eval_every"],
    )
    t0 = time.perf_counter()
    history = [r for r in sim.run(rounds) if "accuracy" in r]
    return {
        "seconds": time.perf_counter() - t0,
        "rounds": [r["round"] for r in history],
        "accuracy": [r["accuracy"] for r in history],
        "about": data.about,
    }


def run(seed: int, selector: str) -> dict[str, Any]:
    """One seed x selector (the numbers of :func:`command` with ``--seed seed``)."""
    s = SETTING
    data = stream_data(s["dataset"], root=bench.data_root(), seed=seed)
    res = simulate(data, selector, s, velocity=s["velocity"], rounds=s["rounds"], seed=seed)
    return {**res, "test_rows": int(data.test.size)}


def part_ode_real(args: argparse.Namespace, write_md) -> None:
    """Run every seed x selector, write the results, the curves and the BENCHMARKS block."""
    torch.set_num_threads(1)
    seeds: dict[str, dict[str, Any]] = {}
    for seed in args.seeds:
        runs = {sel: run(seed, sel) for sel in SELECTORS}
        hist = {
            sel: [{"round": t, "accuracy": a} for t, a in zip(r["rounds"], r["accuracy"])]
            for sel, r in runs.items()
        }
        for sel, r in runs.items():
            r["final_accuracy"] = final_value(hist[sel], tail=args.tail)
            r["speedup_vs_rs"] = speedup(hist["rs"], hist[sel], tail=args.tail)
        seeds[str(seed)] = runs
        print(
            f"[ode-real] seed {seed}: "
            + ", ".join(f"{NAMES[s]} {100 * r['final_accuracy']:.2f}%" for s, r in runs.items()),
            flush=True,
        )
    first = next(iter(seeds.values()))["rs"]
    out = {
        "machine": bench.machine(),
        "setting": SETTING,
        "tail": args.tail,
        "about": first["about"],
        "command": command(args.seeds),
        "seeds": seeds,
    }
    bench.write_results("fl_ode_real", out)
    _plot(out)
    write_md("ode-real", markdown(out, args.seeds))


def _plot(out: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    rounds = next(iter(out["seeds"].values()))["rs"]["rounds"]
    for sel in SELECTORS:
        acc = 100 * np.array([d[sel]["accuracy"] for d in out["seeds"].values()])
        mean, std = acc.mean(0), acc.std(0)
        ax.plot(rounds, mean, label=NAMES[sel])
        ax.fill_between(rounds, mean - std, mean + std, alpha=0.15)
    ax.set(
        title=f"UCI Heart Disease, {len(out['seeds'])} seeds (mean ± std)",
        xlabel="round",
        ylabel="test accuracy (%)",
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(bench.RESULTS / "fl_ode_real.png", dpi=100)


def markdown(out: dict[str, Any], seeds: list[int]) -> str:
    s, runs = out["setting"], out["seeds"]

    def stat(values: list[float], fmt: str = "{:.2f}") -> str:
        return f"{fmt.format(np.mean(values))} ± {np.std(values):.2f}"

    def final(sel: str) -> list[float]:
        return [100 * d[sel]["final_accuracy"] for d in runs.values()]

    def speed(sp: float | None) -> str:
        return "-" if sp is None else f"{sp:.2f}x"

    rows = [
        [f"seed {k}"]
        + [f"{100 * d[sel]['final_accuracy']:.2f}" for sel in SELECTORS]
        + [speed(d[sel]["speedup_vs_rs"]) for sel in SELECTORS[1:]]
        for k, d in runs.items()
    ]
    summary = ["mean ± std"] + [stat(final(sel)) for sel in SELECTORS]
    for sel in SELECTORS[1:]:
        sp = [d[sel]["speedup_vs_rs"] for d in runs.values()]
        reached = [x for x in sp if x is not None]
        summary.append(
            (stat(reached) + "x" if reached else "-")
            + ("" if len(reached) == len(sp) else f" ({len(reached)} of {len(sp)} reached)")
        )
    rows.append(summary)
    diff = {sel: np.subtract(final(sel), final("rs")).tolist() for sel in SELECTORS[1:]}
    rows.append(
        ["difference to RS", ""] + [stat(diff[sel], "{:+.2f}") for sel in SELECTORS[1:]] + ["", ""]
    )
    header = (
        [""]
        + [f"{NAMES[sel]} final (%)" for sel in SELECTORS]
        + [f"{NAMES[sel]} speedup" for sel in SELECTORS[1:]]
    )
    seconds = {sel: np.mean([d[sel]["seconds"] for d in runs.values()]) for sel in SELECTORS}
    first = next(iter(runs.values()))["rs"]
    marks = [i for i, t in enumerate(first["rounds"]) if t in (0, 10, 25, 50, 100, 200, 300)]
    curve = [
        [str(first["rounds"][i])]
        + [stat([100 * d[sel]["accuracy"][i] for d in runs.values()]) for sel in SELECTORS]
        for i in marks
    ]
    return "\n".join(
        [
            f"**(b'') ODE on real data** ({out['about']}; {s['clients_per_round']} of 3 devices "
            f"per round, |B| = {s['buffer']}, {s['velocity']} arrivals per round, SGD lr "
            f"{s['lr']}, {s['epochs']} local epochs of one full-store step, {s['rounds']} "
            f"rounds, evaluation every {s['eval_every']} on the {first['test_rows']} held-out "
            "rows (one row = "
            f"{100 / first['test_rows']:.2f} points); the official behaviour of every option; "
            f"seeds {' '.join(str(k) for k in seeds)}: the held-out split, stream order, "
            "initial model and device sampling). Target = RS's final accuracy (mean of its "
            f"last {out['tail']} evaluations), speedup = rounds RS needs to reach it / rounds "
            "the method needs ('-' = never). Curves: `benchmarks/results/fl_ode_real.png`.",
            "Command: `OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fl.py --part ode-real "
            f"--seeds {' '.join(str(k) for k in seeds)}`; one seed: `{out['command']}`; "
            f"{out['machine']}; mean seconds per run: "
            + ", ".join(f"{NAMES[sel]} {seconds[sel]:.1f}" for sel in SELECTORS)
            + ".",
            "",
            bench.md_table(header, rows),
            "",
            "Test accuracy (%) along the run, mean ± std over the seeds:",
            "",
            bench.md_table(["round"] + [NAMES[sel] for sel in SELECTORS], curve),
        ]
    )
