"""``graphrec fl flower-app`` and ``graphrec fl deploy-local``: the shipped Flower app, copied
out or run by a SuperLink and SuperNodes on this machine (:mod:`graphrec.federated.deploy`)."""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from graphrec.commands._args import add_data_root, nonnegative_int, positive_float, positive_int
from graphrec.commands._training import prepare_output
from graphrec.errors import GraphrecError
from graphrec.registry import FL_STRATEGIES

#: ODE selectors that run in a deployment (ode-exact needs every device's data on the server)
SELECTORS = ["rs", "fifo", "hl", "gn", "fb", "sld", "fd", "ode"]

#: the files of the shipped app
APP_FILES = ("pyproject.toml", "graphrec_flower_app.py")


def register(fl_sub: argparse._SubParsersAction) -> None:
    """Add ``flower-app`` and ``deploy-local`` to ``graphrec fl``."""
    app_p = fl_sub.add_parser(
        "flower-app",
        help="copy graphrec's Flower app (for flwr run) into a folder",
        description="Copy the Flower app shipped with graphrec (pyproject.toml with "
        "[tool.flwr.app], graphrec_flower_app.py) into DIR, ready for `flwr run DIR "
        "CONNECTION --stream`. Its ServerApp and ClientApp come from the installed graphrec; "
        "its run configuration ([tool.flwr.app.config]) takes the options of `graphrec fl run`.",
    )
    app_p.add_argument("dir", type=Path, help="folder to create")
    app_p.add_argument("--force", action="store_true", help="overwrite the app files in DIR")
    app_p.set_defaults(func=flower_app)

    dep_p = fl_sub.add_parser(
        "deploy-local",
        help="run the Flower app with a SuperLink and N SuperNodes on 127.0.0.1",
        description="Start a SuperLink and --nodes SuperNodes as processes listening on "
        "127.0.0.1 only (SuperNode i: partition-id=i, num-partitions=N; it trains the devices "
        "d with d % N == i), run the shipped Flower app with `flwr run --stream` (progress "
        "printed), write the results JSON, and stop every process it started, also on Ctrl-C "
        "or failure. TLS (a CA and server certificate made for the run) and SuperNode "
        "authentication (one registered key pair per SuperNode) are on unless --insecure; "
        "keys, certificates and Flower's state live in a private temporary folder removed "
        "afterwards. Telemetry and update checks are off. With the same options and seed the "
        "final model equals `graphrec fl run` without dropout.",
    )
    dep_p.add_argument("--nodes", type=positive_int("--nodes"), default=3, help="SuperNodes")
    dep_p.add_argument(
        "--insecure", action="store_true", help="no TLS, no SuperNode authentication"
    )
    dep_p.add_argument(
        "--strategy",
        choices=[*FL_STRATEGIES.names(), "ode"],
        default="fedsubavg",
        help="ode: the stream task and ODE server of `graphrec fl ode` (--local-steps = "
        "full-batch epochs, constant --lr, no clipping)",
    )
    dep_p.add_argument(
        "--dataset",
        choices=["amazon-users", "ml-100k", "synthetic", "uci-heart"],
        default="synthetic",
        help="uci-heart: --strategy ode only",
    )
    dep_p.add_argument(
        "--model", choices=["din", "tiny", "softmax"], default=None, help="as `graphrec fl run`"
    )
    add_data_root(dep_p, "amazon-users or ml-100k")
    dep_p.add_argument("--devices", type=positive_int("--devices"), default=12)
    dep_p.add_argument("--rounds", type=positive_int("--rounds"), default=3)
    dep_p.add_argument("--clients-per-round", type=positive_int("--clients-per-round"), default=4)
    dep_p.add_argument("--lr", type=positive_float("--lr"), default=0.1)
    dep_p.add_argument("--lr-decay", type=positive_float("--lr-decay"), default=0.999)
    dep_p.add_argument("--local-steps", type=positive_int("--local-steps"), default=10)
    dep_p.add_argument("--batch-size", type=positive_int("--batch-size"), default=4)
    dep_p.add_argument("--clip-norm", type=positive_float("--clip-norm"), default=5.0)
    dep_p.add_argument("--prox-mu", type=positive_float("--prox-mu"), default=None)
    dep_p.add_argument("--coef-clip", type=positive_float("--coef-clip"), default=None)
    dep_p.add_argument("--max-update-norm", type=positive_float("--max-update-norm"))
    dep_p.add_argument("--selector", choices=SELECTORS, default="ode", help="--strategy ode")
    dep_p.add_argument("--buffer", type=positive_int("--buffer"), default=10)
    dep_p.add_argument("--velocity", type=positive_int("--velocity"), default=8)
    dep_p.add_argument("--layers", type=positive_int("--layers"), default=None)
    dep_p.add_argument("--estimator", choices=["replacement", "incremental"], default="replacement")
    dep_p.add_argument("--seed", type=nonnegative_int("--seed"), default=0)
    dep_p.add_argument(
        "--timeout", type=positive_float("--timeout"), default=3600.0, help="seconds"
    )
    dep_p.add_argument("--out", type=Path, help="results JSON file")
    dep_p.add_argument("--state-out", type=Path, help="final global state (torch.save) file")
    dep_p.add_argument("--force", action="store_true", help="overwrite --out / --state-out")
    dep_p.add_argument("--quiet", action="store_true", help="no progress lines")
    dep_p.set_defaults(func=deploy_local)


def flower_app(args: argparse.Namespace) -> int:
    """Run ``graphrec fl flower-app``."""
    from graphrec.federated.deploy import APP_DIR

    args.dir.mkdir(parents=True, exist_ok=True)
    for name in APP_FILES:
        target = args.dir / name
        if target.exists() and not args.force:
            raise GraphrecError(f"{target} exists; --force overwrites it")
        shutil.copyfile(APP_DIR / name, target)
    print(f"wrote     {args.dir} (run it with: flwr run {args.dir} CONNECTION --stream)")
    return 0


def _run_config(args: argparse.Namespace, state_file: Path | None) -> dict[str, Any]:
    config: dict[str, Any] = {
        "strategy": args.strategy,
        "dataset": args.dataset,
        "model": args.model or "",
        "data-root": "" if args.data_root is None else str(Path(args.data_root).resolve()),
        "devices": args.devices,
        "rounds": args.rounds,
        "clients-per-round": args.clients_per_round,
        "lr": args.lr,
        "lr-decay": args.lr_decay,
        "local-steps": args.local_steps,
        "batch-size": args.batch_size,
        "clip-norm": args.clip_norm,
        "prox-mu": args.prox_mu or 0.0,
        "coef-clip": args.coef_clip or 0.0,
        "max-update-norm": args.max_update_norm or 0.0,
        "selector": args.selector,
        "buffer": args.buffer,
        "velocity": args.velocity,
        "layers": args.layers or 0,
        "estimator": args.estimator,
        "seed": args.seed,
    }
    if state_file is not None:
        config["state-file"] = str(state_file.resolve())
    return config


def deploy_local(args: argparse.Namespace) -> int:
    """Run ``graphrec fl deploy-local``."""
    from graphrec.federated.deploy import LocalDeployment
    from graphrec.io.atomic import atomic_write_text

    for path, option in ((args.out, "--out"), (args.state_out, "--state-out")):
        if path is not None:
            prepare_output(path, force=args.force, option=option)
    # SIGTERM ends the run as Ctrl-C does: every process is stopped on the way out
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    log = (lambda line: None) if args.quiet else (lambda line: print(line, flush=True))
    t0 = time.perf_counter()
    try:
        with LocalDeployment(args.nodes, secure=not args.insecure, log=log) as deployment:
            mode = "insecure" if args.insecure else "TLS + SuperNode authentication"
            print(
                f"started   SuperLink 127.0.0.1:{deployment.port} and {args.nodes} SuperNodes "
                f"({mode}); folder {deployment.folder}",
                flush=True,
            )
            results = deployment.run(_run_config(args, args.state_out), timeout_s=args.timeout)
            payload = json.loads(results.read_text())
    finally:
        signal.signal(signal.SIGTERM, previous)
    payload["command"] = "fl deploy-local"
    payload["nodes"] = args.nodes
    payload["secure"] = not args.insecure
    payload["seconds"] = time.perf_counter() - t0
    if args.out is not None:
        atomic_write_text(args.out, json.dumps(payload, indent=1))
    last = payload["evaluations"][-1] if payload["evaluations"] else {}
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in last.items() if k != "round")
    print(f"final     round {last.get('round', 0)}: {metrics}")
    print(f"stopped   all processes; {payload['seconds']:.0f} s in all")
    if args.out is not None:
        print(f"wrote     {args.out}")
    return 0
