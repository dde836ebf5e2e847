"""``graphrec fastcover train``: train the FastCover model of one hop count d into a folder.

Registered as the subcommand ``"fastcover train"``; :func:`graphrec.cli.main` routes the words
``fastcover train`` to it (``graphrec fastcover`` itself takes an optional GRAPH argument).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from combinatorial.gnn.inference import WEIGHTS_DIR
from combinatorial.gnn.loss import PENALTIES
from combinatorial.gnn.model import FEATURES
from combinatorial.gnn.train import (
    CHECKPOINT_FILE,
    INITS,
    LOSSES,
    MANIFEST_FILE,
    OPTIMIZERS,
    TrainConfig,
    train_fastcover,
)
from graphrec.commands._args import add_data_root, bounded_float, positive_float, positive_int

#: The subcommand name; ``graphrec.cli`` maps ``fastcover train`` to it.
NAME = "fastcover train"
_DEFAULT = TrainConfig(d=1)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``fastcover train`` to the top-level parser."""
    p = sub.add_parser(
        NAME,
        help="train a FastCover model for one hop count d (weights + weights.json in a folder)",
        description="Train FastCover (GRAT3) for one hop count d with the unsupervised loss on "
        "the FastCover graphs under the data root and write DIR/fastcover_dD.pt and its entry "
        "in DIR/weights.json. The defaults are the recipe of the shipped weights: the same "
        "--seed and --threads reproduce their bytes (the SHA-256 in "
        "combinatorial/weights/weights.json). An interrupted run continues from "
        "DIR/fastcover_dD.ckpt when the same command is run again.",
    )
    p.add_argument("--d", type=positive_int("--d"), required=True, help="hop count")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    add_data_root(p, "the FastCover graphs (the folder holding fastcover/)")
    p.add_argument(
        "--seed", type=int, default=_DEFAULT.seed, help="random seed (default: %(default)s)"
    )
    p.add_argument(
        "--threads",
        type=positive_int("--threads"),
        default=_DEFAULT.threads,
        help="torch CPU threads; another count gives other weights (default: %(default)s)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace an existing model; start over from a checkpoint of other options",
    )
    p.add_argument(
        "--no-resume",
        dest="resume",
        action="store_false",
        help="start over even if DIR holds a checkpoint of the same options",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the model's manifest entry as JSON")
    opt = p.add_argument_group("training options (defaults: the shipped weights' recipe)")
    _option(opt, "--max-epochs", "epochs at most", type=positive_int("--max-epochs"))
    _option(
        opt,
        "--steps-per-graph",
        "steps per graph and epoch",
        type=positive_int("--steps-per-graph"),
    )
    _option(
        opt,
        "--patience",
        "epochs without validation gain before stopping",
        type=positive_int("--patience"),
    )
    _option(opt, "--graphs", "training graphs under the data root", nargs="+")
    _option(opt, "--val-graphs", "validation graphs under the data root", nargs="+")
    _option(opt, "--ks", "validation budgets", type=positive_int("--ks"), nargs="+")
    _option(opt, "--optimizer", "optimiser", choices=OPTIMIZERS)
    _option(opt, "--lr", "learning rate", type=positive_float("--lr"))
    _option(
        opt,
        "--weight-decay",
        "weight decay (decoupled for adamw)",
        type=bounded_float("--weight-decay", minimum=0.0),
    )
    _option(
        opt,
        "--clip",
        "gradient-norm clip, 0 = off",
        type=bounded_float("--clip", minimum=0.0),
    )
    _option(opt, "--features", "input features", choices=FEATURES)
    _option(opt, "--hidden", "hidden width", type=positive_int("--hidden"))
    _option(opt, "--init", "initialisation", choices=INITS)
    _option(opt, "--loss", "training loss", choices=LOSSES)
    _option(opt, "--penalty", "official loss: penalty", choices=PENALTIES)
    _option(
        opt,
        "--c",
        "official loss: penalty weight C",
        type=bounded_float("--c", minimum=0.0),
    )
    _option(opt, "--k-train", "official loss: hinge budget", type=positive_int("--k-train"))
    _option(
        opt, "--train-ks", "budget loss: budgets", type=positive_int("--train-ks"), nargs="+"
    )
    _option(opt, "--temperature", "budget loss: T", type=positive_float("--temperature"))
    _option(
        opt,
        "--imitation",
        "weight of the greedy-order imitation (ListMLE) term added to the loss, 0 = off",
        type=bounded_float("--imitation", minimum=0.0),
    )
    _option(
        opt,
        "--residual",
        "share of the steps trained on a residual (greedy-prefix-covered nodes masked), 0 = off",
        type=bounded_float("--residual", minimum=0.0),
    )
    opt.add_argument(
        "--residual-input",
        action="store_true",
        help="give the model the covered flag as an input column (needs --residual > 0)",
    )
    _option(
        opt,
        "--val-rounds",
        "select the best epoch on validation with this many re-scoring rounds (1 = one pass)",
        type=positive_int("--val-rounds"),
    )
    _option(
        opt,
        "--max-entries",
        "closure entries per step; larger graphs train on sampled targets",
        type=positive_int("--max-entries"),
    )
    p.set_defaults(func=run)


def _option(group: argparse._ArgumentGroup, flag: str, text: str, **kwargs: Any) -> None:
    """Add a :class:`TrainConfig` field as ``flag``, with the field's default."""
    default = getattr(_DEFAULT, flag[2:].replace("-", "_"))
    default = list(default) if isinstance(default, tuple) else default
    group.add_argument(flag, default=default, help=f"{text} (default: %(default)s)", **kwargs)


def run(args: argparse.Namespace) -> int:
    """Train, then print where the model went and how it compares with the shipped one."""
    options = {f.name: getattr(args, f.name) for f in fields(TrainConfig)}
    try:
        entry = train_fastcover(
            **options,
            out_dir=args.out,
            data_root=args.data_root,
            force=args.force,
            resume=args.resume,
            progress=not args.quiet,
        )
    except KeyboardInterrupt:
        ckpt = args.out / CHECKPOINT_FILE.format(d=args.d)
        if not ckpt.is_file():  # before the first epoch ended
            raise
        print(f"graphrec: interrupted; run the same command to resume from {ckpt}", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(entry))
        return 0
    shipped_manifest = WEIGHTS_DIR / MANIFEST_FILE
    shipped = None
    if shipped_manifest.is_file():
        shipped = json.loads(shipped_manifest.read_text())["models"].get(str(args.d))
    if shipped is None:
        same = "no shipped model for this d"
    elif shipped["sha256"] == entry["sha256"]:
        same = f"identical to the shipped {shipped['file']}"
    else:
        same = f"differs from the shipped {shipped['file']} ({shipped['sha256'][:12]}...)"
    print(f"model: {args.out / entry['file']}  sha256 {entry['sha256']}  ({same})")
    print(
        f"best epoch {entry['best_epoch']} of {entry['epochs_run']}: validation "
        f"{entry['validation']['mean']:.4f} (untrained {entry['validation_untrained']['mean']:.4f})"
    )
    print(f"manifest: {args.out / MANIFEST_FILE}")
    return 0
