"""``graphrec fl``: federated learning runs (``run``: FedAvg / FedProx / FedSubAvg / involved
averaging; ``ode``: on-device data selection with limited storage)."""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

from graphrec.commands._args import (
    add_data_root,
    bounded_float,
    nonnegative_int,
    positive_float,
    positive_int,
)
from graphrec.commands._training import (
    RESUME_HINT,
    prepare_output,
    refuse_unused,
    resume_error,
)
from graphrec.errors import GraphrecError
from graphrec.federated.experiment import DATASETS, MODELS, ODE_PRESETS
from graphrec.federated.stream import SELECTORS, StreamTask
from graphrec.registry import FL_STRATEGIES

#: Strategy option -> the command-line option that sets it.
STRATEGY_OPTIONS = {"mu": "--prox-mu", "clip": "--coef-clip"}

#: ``graphrec fl ode`` defaults without a preset (``velocity``: arrivals per round).
ODE_DEFAULTS: dict[str, Any] = {
    "dataset": "synthetic",
    "devices": 200,
    "clients_per_round": None,
    "buffer": 10,
    "velocity": 8,
    "lr": 0.01,
    "epochs": 5,
    "rounds": 300,
    "eval_every": 10,
    **{name: values[0] for name, values in StreamTask.OPTIONS.items()},
}

#: StreamTask official-behaviour option -> help text of its ``graphrec fl ode`` option.
ODE_OPTION_HELP = {
    "loss_norm": "ODE's gamma-weighted loss: mean(gamma l) or sum(gamma l) / sum(gamma)",
    "estimate_timing": "ODE-Est gets g_hat with the model (before) or after aggregation",
    "exact_revalue": "ODE-Exact re-values its store on participation or every round",
    "rs_counter": "reservoir sampling's seen-count: cumulative or restarted per participation",
    "initial_store": "stores start empty or full with the last samples of the stream",
}


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``fl`` subcommand (``run``, ``ode``) to the top-level parser."""
    fl = sub.add_parser("fl", help="federated learning: FedSubAvg and baselines, ODE")
    fl_sub = fl.add_subparsers(dest="fl_command", metavar="ACTION")

    run_p = fl_sub.add_parser(
        "run",
        help="simulate FL rounds with an aggregation strategy",
        description="Simulate synchronous FL rounds in process on the device-cloud graph: "
        "sample devices, train locally on their submodels (only touched embedding rows travel), "
        "aggregate with the strategy, evaluate centrally. DATASET: amazon-users (one device per "
        "user; users.tsv.gz under --data-root; models din, tiny), ml-100k (one device per user; "
        "model tiny), synthetic (Synthetic(1, 1); model softmax). "
        "Local training defaults follow the official FedSubAvg code (SGD lr 0.1 x 0.999 per "
        "round, batch 4, 10 steps, clip 5). With --checkpoint an interrupted run resumes: the "
        "same command (--rounds may grow) continues it; other options or data are refused, "
        "listing the differences. Folders of --out and --checkpoint are created up front; both "
        "files are replaced in one step (never half-written).",
    )
    run_p.add_argument(
        "--strategy",
        choices=FL_STRATEGIES.names(),
        default="fedsubavg",
        help="fedsubavg = sample-weighted (code) form; fedsubavg-paper = device heat form",
    )
    run_p.add_argument("--dataset", required=True, choices=list(DATASETS))
    run_p.add_argument(
        "--model",
        choices=MODELS,
        default=None,
        help="default: din (amazon-users), tiny (ml-100k), softmax (synthetic)",
    )
    add_data_root(run_p, "amazon-users or ml-100k")
    run_p.add_argument(
        "--devices",
        type=positive_int("--devices"),
        default=None,
        help="keep the first N users / number of synthetic devices",
    )
    run_p.add_argument("--rounds", type=positive_int("--rounds"), default=50)
    run_p.add_argument("--clients-per-round", type=positive_int("--clients-per-round"), default=100)
    run_p.add_argument("--lr", type=positive_float("--lr"), default=0.1)
    run_p.add_argument("--lr-decay", type=positive_float("--lr-decay"), default=0.999)
    run_p.add_argument("--local-steps", type=positive_int("--local-steps"), default=10)
    run_p.add_argument("--batch-size", type=positive_int("--batch-size"), default=4)
    run_p.add_argument("--clip-norm", type=positive_float("--clip-norm"), default=5.0)
    run_p.add_argument(
        "--prox-mu",
        type=positive_float("--prox-mu"),
        default=None,
        help="FedProx proximal coefficient (--strategy fedprox only; "
        f"default {FL_STRATEGIES.defaults('fedprox')['mu']})",
    )
    run_p.add_argument(
        "--coef-clip",
        type=positive_float("--coef-clip"),
        default=None,
        help="upper bound on the row coefficients (--strategy fedsubavg[-paper] only)",
    )
    run_p.add_argument(
        "--max-update-norm",
        type=positive_float("--max-update-norm"),
        default=None,
        help="reject client updates with a larger L2 norm",
    )
    run_p.add_argument(
        "--dropout", type=bounded_float("--dropout", minimum=0.0, below=1.0), default=0.0
    )
    run_p.add_argument(
        "--straggler", type=bounded_float("--straggler", minimum=0.0, below=1.0), default=0.0
    )
    run_p.add_argument("--eval-every", type=positive_int("--eval-every"), default=5)
    run_p.add_argument("--seed", type=nonnegative_int("--seed"), default=0)
    run_p.add_argument(
        "--checkpoint", type=Path, help="checkpoint file, written every round (resumes if present)"
    )
    run_p.add_argument("--out", type=Path, help="results JSON file")
    run_p.add_argument(
        "--force", action="store_true", help="overwrite --out and ignore an existing --checkpoint"
    )
    run_p.add_argument("--json", action="store_true", help="print the results as one JSON object")
    run_p.add_argument("--quiet", action="store_true", help="no progress bar")
    run_p.set_defaults(func=run)

    ode_p = fl_sub.add_parser(
        "ode",
        help="on-device data selection with limited storage (ODE and baselines)",
        description="Each device receives VELOCITY samples per round from a stream and keeps at "
        "most BUFFER of them; selected devices train on their store. Selectors: rs (reservoir), "
        "fifo, hl (highest loss), gn (gradient norm), fb (FedBalancer-style), sld (SLD-style), "
        "fd (unlimited storage), ode (ODE-Est), ode-exact (ODE with the exact global gradient, "
        "in-process only). Several selectors run one after the other; with rs among them, the "
        "time-to-accuracy speedup vs rs is reported (paper Table 2). DATASET: synthetic "
        "(Synthetic(1, 1), 1,000 samples per device), leaf-synthetic (LEAF-style: one shared "
        "labelling model, lognormal device sizes) or uci-heart (the UCI Heart Disease "
        "processed.*.data files under --data-root). --preset paper-synthetic sets the ODE "
        "authors' synthetic setting (leaf-synthetic, 200 devices, 10 per round, |B| 10, "
        "stream size / 400 arrivals per round, lr 1e-4, 5 epochs, 1000 rounds, evaluation "
        "every 20, the official behaviour options); options given on the command line "
        "override the preset.",
    )
    ode_p.add_argument("--preset", choices=sorted(ODE_PRESETS), default=None)
    ode_p.add_argument("--selector", nargs="+", choices=list(SELECTORS), default=["rs", "ode"])
    ode_p.add_argument(
        "--dataset",
        choices=["synthetic", "leaf-synthetic", "uci-heart"],
        default=None,
        help="default: synthetic",
    )
    add_data_root(ode_p, "uci-heart")
    ode_p.add_argument(
        "--devices", type=positive_int("--devices"), default=None, help="synthetic devices (200)"
    )
    ode_p.add_argument("--rounds", type=positive_int("--rounds"), default=None, help="300")
    ode_p.add_argument(
        "--clients-per-round",
        type=positive_int("--clients-per-round"),
        default=None,
        help="default: 5%% of the devices (at least 1)",
    )
    ode_p.add_argument("--buffer", type=positive_int("--buffer"), default=None, help="10")
    ode_p.add_argument(
        "--velocity",
        type=positive_int("--velocity"),
        default=None,
        help="arrivals per round (8; preset: each device's stream size / 400)",
    )
    ode_p.add_argument("--lr", type=positive_float("--lr"), default=None, help="0.01")
    ode_p.add_argument(
        "--epochs",
        type=positive_int("--epochs"),
        default=None,
        help="local SGD steps per round (local_steps), each on the whole store: one epoch each (5)",
    )
    ode_p.add_argument(
        "--layers",
        type=positive_int("--layers"),
        default=None,
        help="Simplified ODE: value with the last N layers only",
    )
    ode_p.add_argument("--estimator", choices=["replacement", "incremental"], default="replacement")
    for name, helptext in ODE_OPTION_HELP.items():
        ode_p.add_argument(
            "--" + name.replace("_", "-"),
            choices=StreamTask.OPTIONS[name],
            default=None,
            help=f"{helptext} (default {StreamTask.OPTIONS[name][0]}; the preset: official)",
        )
    ode_p.add_argument("--eval-every", type=positive_int("--eval-every"), default=None, help="10")
    ode_p.add_argument(
        "--tail",
        type=positive_int("--tail"),
        default=3,
        help="evaluations averaged as the final accuracy",
    )
    ode_p.add_argument("--seed", type=nonnegative_int("--seed"), default=0)
    ode_p.add_argument("--out", type=Path, help="results JSON file")
    ode_p.add_argument("--force", action="store_true", help="overwrite --out")
    ode_p.add_argument("--json", action="store_true", help="print the results as one JSON object")
    ode_p.add_argument("--quiet", action="store_true", help="no progress bar")
    ode_p.set_defaults(func=ode)
    from graphrec.commands import fl_deploy

    fl_deploy.register(fl_sub)
    fl.set_defaults(func=lambda args: _no_action(fl))


def _no_action(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _check_out(path: Path | None, force: bool) -> None:
    if path is not None:
        prepare_output(path, force=force, option="--out")


def _write(path: Path | None, payload: dict[str, Any]) -> None:
    from graphrec.io.atomic import atomic_write_text

    if path is not None:
        atomic_write_text(path, json.dumps(payload, indent=1))


def _finite(x: Any) -> Any:
    return None if isinstance(x, float) and not math.isfinite(x) else x


def strategy_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options of ``--strategy`` (:data:`graphrec.registry.FL_STRATEGIES`): its registered
    defaults, updated by the :data:`STRATEGY_OPTIONS` given. An option given to a strategy
    without it is refused; the defaults are written back to ``args`` for the results JSON."""
    options = FL_STRATEGIES.defaults(args.strategy)
    refuse_unused(
        args,
        {
            flag: (
                "--strategy "
                + " or ".join(n for n in FL_STRATEGIES if name in FL_STRATEGIES.defaults(n)),
                name in options,
            )
            for name, flag in STRATEGY_OPTIONS.items()
        },
    )
    for name, flag in STRATEGY_OPTIONS.items():
        if name in options:
            dest = flag.lstrip("-").replace("-", "_")
            if getattr(args, dest) is None:
                setattr(args, dest, options[name])
            options[name] = getattr(args, dest)
    return options


def run(args: argparse.Namespace) -> int:
    """Run ``graphrec fl run``."""
    import torch

    from graphrec.datasets import dataset_folder
    from graphrec.federated import LocalConfig, Simulator
    from graphrec.federated.experiment import build_strategy, federated_task
    from graphrec.io.checkpoint import CheckpointError, fingerprint

    options = strategy_options(args)
    _check_out(args.out, args.force)
    if args.checkpoint is not None:
        if args.out is not None and args.checkpoint.resolve() == args.out.resolve():
            raise GraphrecError("--checkpoint and --out name the same file")
        prepare_output(args.checkpoint, force=args.force, option="--checkpoint", resumable=True)
    model = args.model or DATASETS[args.dataset][0]
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    task = federated_task(
        args.dataset, model, root=args.data_root, devices=args.devices, seed=args.seed
    )
    folder = None if args.dataset == "synthetic" else dataset_folder(args.dataset, args.data_root)
    data_info = {
        "dataset": args.dataset,
        "model": model,
        "folder": None if folder is None else str(folder.resolve()),
        "task": fingerprint(task),
    }
    strategy = build_strategy(args.strategy, task.graph, **options)
    local = LocalConfig(
        lr=args.lr,
        lr_decay=args.lr_decay,
        local_steps=args.local_steps,
        batch_size=args.batch_size,
        clip_norm=args.clip_norm,
    )
    per_round = min(args.clients_per_round, int((task.graph.num_samples > 0).sum()))
    sim = Simulator(
        task,
        strategy,
        clients_per_round=per_round,
        local=local,
        seed=args.seed,
        eval_every=args.eval_every,
        max_update_norm=args.max_update_norm,
        dropout=args.dropout,
        straggler=args.straggler,
        data_info=data_info,
    )
    resumed = 0
    if args.checkpoint is not None and args.checkpoint.exists() and not args.force:
        try:
            sim.load(args.checkpoint)
        except CheckpointError as exc:
            raise resume_error(exc) from exc
        resumed = sim.round
        if resumed > args.rounds:
            raise GraphrecError(
                f"checkpoint {args.checkpoint} is at round {resumed}, past --rounds "
                f"{args.rounds}; {RESUME_HINT}"
            )
    load_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    history = sim.run(args.rounds, checkpoint=args.checkpoint, progress=not args.quiet)
    train_s = time.perf_counter() - t1
    evaluated = [r for r in history if any(k in r for k in ("auc", "accuracy"))]
    metric = "auc" if "auc" in evaluated[-1] else "accuracy"
    payload = {
        "command": "fl run",
        "args": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "func"
        },
        "devices": task.graph.num_devices,
        "clients_per_round": per_round,
        "resumed_from_round": resumed,
        "metric": metric,
        "final": {k: _finite(v) for k, v in evaluated[-1].items() if isinstance(v, float)},
        "best": max(r[metric] for r in evaluated),
        "curve": [[r["round"], r[metric]] for r in evaluated],
        "rejected": sim.rejected,
        "bytes_up": sum(r.get("bytes_up", 0) for r in history),
        "bytes_down": sum(r.get("bytes_down", 0) for r in history),
        "load_s": load_s,
        "train_s": train_s,
    }
    _write(args.out, payload)
    if args.json:
        print(json.dumps(payload))
        return 0
    print(
        f"task      {args.dataset} / {model}: {task.graph.num_devices:,} devices, "
        f"{per_round} per round"
    )
    print(f"strategy  {strategy.name} ({args.strategy}), {args.rounds} rounds, seed {args.seed}")
    for r in evaluated:
        print(f"round {r['round']:>4}  {metric} {r[metric]:.4f}")
    print(f"best      {metric} {payload['best']:.4f}")
    print(
        f"traffic   up {payload['bytes_up'] / 2**20:.1f} MiB, down "
        f"{payload['bytes_down'] / 2**20:.1f} MiB; {len(sim.rejected)} updates rejected"
    )
    print(f"time      load {load_s:.1f} s, rounds {train_s:.1f} s")
    if args.out is not None:
        print(f"wrote     {args.out}")
    return 0


def ode(args: argparse.Namespace) -> int:
    """Run ``graphrec fl ode``."""
    import torch

    from graphrec.federated import LocalConfig, final_value, speedup, stream_simulator
    from graphrec.federated.experiment import paper_velocity, stream_data, stream_task

    _check_out(args.out, args.force)
    preset = ODE_PRESETS[args.preset] if args.preset else {}
    for name, default in ODE_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, preset.get(name, default))
    torch.set_num_threads(1)
    data = stream_data(args.dataset, root=args.data_root, devices=args.devices, seed=args.seed)
    velocity = paper_velocity(data.parts) if args.velocity is None else args.velocity
    n = len(data.parts)
    per_round = args.clients_per_round or max(1, n // 20)
    if per_round > n:
        raise GraphrecError(f"--clients-per-round {per_round} exceeds the {n} devices")
    local = LocalConfig(
        lr=args.lr, lr_decay=1.0, local_steps=args.epochs, batch_size=10**9, clip_norm=None
    )
    results: dict[str, Any] = {}
    histories = {}
    for selector in args.selector:
        task = stream_task(
            data,
            selector,
            buffer_size=args.buffer,
            velocity=velocity,
            seed=args.seed,
            layers=args.layers,
            **{name: getattr(args, name) for name in StreamTask.OPTIONS},
        )
        sim = stream_simulator(
            task,
            clients_per_round=per_round,
            local=local,
            seed=args.seed,
            eval_every=args.eval_every,
            estimator=args.estimator,
        )
        t0 = time.perf_counter()
        if not args.quiet:
            print(f"selector {selector}")
        history = sim.run(args.rounds, progress=not args.quiet)
        devices = [cs["device"] for cs in sim.client_state.values()]
        histories[selector] = history
        results[selector] = {
            "final_accuracy": final_value(history, tail=args.tail),
            "curve": [[r["round"], r["accuracy"]] for r in history if "accuracy" in r],
            "seconds": time.perf_counter() - t0,
            **task.selection_cost(devices),
        }
    if "rs" in histories:
        for selector, res in results.items():
            res["speedup_vs_rs"] = speedup(histories["rs"], histories[selector], tail=args.tail)
    payload = {
        "command": "fl ode",
        "data": data.about,
        "args": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "func"
        },
        "clients_per_round": per_round,
        "results": results,
    }
    _write(args.out, payload)
    if args.json:
        print(json.dumps(payload))
        return 0
    print(f"data      {data.about}; {per_round} devices per round")
    speed = "stream / 400" if args.velocity is None else args.velocity
    print(f"setting   |B| = {args.buffer}, {speed} arrivals/round, {args.rounds} rounds")
    print(f"{'selector':<10} {'final acc':>9} {'speedup':>8} {'ms/sample':>10} {'B/sample':>9}")
    for selector, res in results.items():
        sp = res.get("speedup_vs_rs")
        sp_text = "-" if sp is None else f"{sp:.2f}x"
        print(
            f"{selector:<10} {100 * res['final_accuracy']:>8.2f}% {sp_text:>8} "
            f"{res['ms_per_sample']:>10.3f} {res['bytes_per_sample']:>9.0f}"
        )
    if args.out is not None:
        print(f"wrote     {args.out}")
    return 0
