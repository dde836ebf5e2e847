"""``graphrec cf train`` / ``graphrec cf recommend``: collaborative filtering."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from graphrec.commands._args import (
    add_data_root,
    bounded_float,
    nonnegative_int,
    positive_float,
    positive_int,
)
from graphrec.commands._training import (
    prepare_output,
    refuse_unused,
    resume_error,
)
from graphrec.errors import GraphrecError
from graphrec.models.cf import FILTER_METHODS, CFConfig, GraphFilterConfig
from graphrec.models.cf.backbones import INITS
from graphrec.models.cf.graph_filter import METHOD_DEFAULTS
from graphrec.models.cf.trainer import PROTOCOLS, SAMPLINGS
from graphrec.nn.bspm import MERGES, SOLVERS
from graphrec.registry import CF_BACKBONES, CF_LOSSES, Registry

#: Keys of the ``data`` record stored in a model file (how to rebuild the graph).
DATA_KEYS = ("dataset", "root", "test", "min_rating", "valid_fraction", "fold", "split_seed")

#: Options of trained models (no --method) whose defaults are filled in by ``train_command``
#: (None in the parser, so that a training-free --method can refuse them when given).
TRAINING_DEFAULTS = {
    "backbone": CFConfig.backbone,
    "loss": CFConfig.loss,
    "init": CFConfig.init,
    "dim": CFConfig.embedding_dim,
    "epochs": CFConfig.epochs,
    "batch_size": CFConfig.batch_size,
    "lr": CFConfig.lr,
    "reg": CFConfig.reg,
    "neg_alpha": CFConfig.neg_alpha,
    "sampling": CFConfig.sampling,
    "eval_every": CFConfig.eval_every,
    "protocol": CFConfig.protocol,
    "patience": CFConfig.patience,
}
#: Training options without a default (None = the backbone's / loss's own).
TRAINING_ONLY = (
    "layers", "temperature", "tau_plus", "beta", "logq", "positives", "negatives", "cpu_budget",
)  # fmt: skip


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``cf`` subcommand group to the top-level parser."""
    cf = sub.add_parser(
        "cf",
        help="collaborative filtering: MF / LightGCN with BPR, InfoNCE or HDCCF; GF-CF, BSPM",
        description="Train a CF model with early stopping on a validation set carved from the "
        "training interactions, or recommend with a trained one.",
    )
    cf_sub = cf.add_subparsers(dest="cf_command", metavar="ACTION")

    train = cf_sub.add_parser(
        "train",
        help="train and write a model file",
        description="Train on a dataset and write OUT (the best validation weights, the "
        "configuration and test metrics). Training state is checkpointed to OUT.ckpt after "
        "every epoch; rerunning the same command resumes from it (--epochs, --patience and "
        "--cpu-budget may change; other options or data are refused, listing the differences). "
        "OUT's folder is created; OUT and OUT.ckpt are replaced in one step (never half-written). "
        "Options of another backbone, loss or dataset are refused. With --method gf-cf or "
        "bspm the model is a training-free graph filter (no epochs): one truncated SVD, then "
        "scoring; the training options are refused.",
    )
    train.add_argument(
        "--dataset",
        required=True,
        help="'gowalla' (LightGCN split), 'ml-100k' (fold --fold, ratings >= 4), a LightGCN-format "
        "folder (train.txt and test.txt, 'user item item ...' lines, or s_adj_mat.npz and "
        "test.txt) or the path of an "
        "interaction log (user item [rating [timestamp]] lines, LightGCN lists or CSV)",
    )
    add_data_root(train)
    train.add_argument("--test", type=Path, help="test log for a path dataset (default: carve)")
    train.add_argument(
        "--min-rating",
        type=bounded_float("--min-rating"),
        help="keep ratings >= this (ml-100k: 4; not gowalla)",
    )
    train.add_argument(
        "--valid-fraction",
        type=bounded_float("--valid-fraction", minimum=0.0, below=1.0),
        default=0.1,
        help="per-user validation, in [0, 1)",
    )
    train.add_argument("--fold", type=int, choices=range(1, 6), help="ml-100k fold (default 1)")
    train.add_argument(
        "--method",
        choices=FILTER_METHODS,
        help="a training-free graph filter instead of a trained backbone: GF-CF (linear + "
        "ideal low-pass) or BSPM (GF-CF then sharpening); fitted on train + validation",
    )
    train.add_argument(
        "--k",
        type=positive_int("--k"),
        help="--method: singular vectors of the low-pass part (default "
        + ", ".join(f"{d['k']} for {m}" for m, d in METHOD_DEFAULTS.items())
        + ")",
    )
    train.add_argument(
        "--alpha",
        type=bounded_float("--alpha", minimum=0.0),
        help="--method: weight of the low-pass part (default "
        + ", ".join(f"{d['alpha']:g} for {m}" for m, d in METHOD_DEFAULTS.items())
        + ")",
    )
    train.add_argument(
        "--sharpen-time",
        type=bounded_float("--sharpen-time", minimum=0.0),
        help=f"BSPM sharpening time (default {METHOD_DEFAULTS['bspm']['sharpen_time']:g})",
    )
    train.add_argument(
        "--sharpen-steps",
        type=positive_int("--sharpen-steps"),
        help=f"BSPM sharpening solver steps (default {GraphFilterConfig.sharpen_steps})",
    )
    train.add_argument(
        "--solver",
        choices=SOLVERS,
        help=f"BSPM sharpening ODE solver (default {METHOD_DEFAULTS['bspm']['solver']})",
    )
    train.add_argument(
        "--merge",
        choices=MERGES,
        help="BSPM: add the low-pass part before the sharpening (early) or after it (late; "
        f"default {METHOD_DEFAULTS['bspm']['merge']})",
    )
    train.add_argument(
        "--tune",
        action="store_true",
        help="--method: choose --k, --alpha (and BSPM's --sharpen-time and --merge, one step of "
        "--solver) on the validation set first (grid of graphrec.models.cf.graph_filter.GRID; "
        "up to 5000 validation users)",
    )
    train.add_argument(
        "--backbone",
        choices=CF_BACKBONES.names(),
        help=f"trained model backbone (default {CFConfig.backbone})",
    )
    train.add_argument(
        "--loss", choices=CF_LOSSES.names(), help=f"training loss (default {CFConfig.loss})"
    )
    train.add_argument(
        "--init",
        choices=INITS,
        help="embedding initialisation: random (normal, xavier) or, with --backbone mf, gf-cf: "
        "the factors of GF-CF's ideal low-pass filter (top --dim singular vectors of the "
        f"normalised training interactions), so training starts from its scores (default "
        f"{CFConfig.init})",
    )
    train.add_argument(
        "--dim",
        type=positive_int("--dim"),
        help=f"embedding size (default {CFConfig.embedding_dim})",
    )
    train.add_argument(
        "--layers",
        type=positive_int("--layers"),
        help=f"LightGCN propagation layers (default {CFConfig.num_layers})",
    )
    train.add_argument(
        "--epochs", type=positive_int("--epochs"), help=f"(default {CFConfig.epochs})"
    )
    train.add_argument(
        "--batch-size",
        type=positive_int("--batch-size"),
        help=f"training pairs per step (default {CFConfig.batch_size})",
    )
    train.add_argument("--lr", type=positive_float("--lr"), help=f"(default {CFConfig.lr:g})")
    train.add_argument(
        "--reg",
        type=bounded_float("--reg", minimum=0.0),
        help=f"L2 weight on batch embeddings (>= 0; default {CFConfig.reg:g})",
    )
    train.add_argument(
        "--temperature",
        type=positive_float("--temperature"),
        help=f"InfoNCE / HDCCF temperature (default {CFConfig.temperature})",
    )
    train.add_argument(
        "--tau-plus",
        type=bounded_float("--tau-plus", minimum=0.0, below=1.0),
        help=f"HDCCF class prior, in [0, 1) (default {CFConfig.tau_plus})",
    )
    train.add_argument(
        "--beta",
        type=bounded_float("--beta", minimum=0.0),
        help=f"HDCCF hardness exponent (default {CFConfig.beta:g})",
    )
    train.add_argument(
        "--logq",
        type=bounded_float("--logq", minimum=0.0),
        help=f"HDCCF popularity correction (1 = full logQ; default {CFConfig.logq:g})",
    )
    train.add_argument(
        "--positives",
        type=positive_int("--positives"),
        help=f"HDCCF positives M (default {CFConfig.num_positives})",
    )
    train.add_argument(
        "--negatives",
        type=nonnegative_int("--negatives"),
        help="explicit negatives per pair (BPR: 1, at least 1; others: 0 = in-batch only)",
    )
    train.add_argument(
        "--neg-alpha",
        type=bounded_float("--neg-alpha", minimum=0.0),
        help=f"explicit negatives ~ deg^alpha (>= 0; default {CFConfig.neg_alpha:g})",
    )
    train.add_argument(
        "--sampling",
        choices=SAMPLINGS,
        help="anchor pairs uniform over interactions, or over users (LightGCN's BPR sampler; "
        f"default {CFConfig.sampling})",
    )
    train.add_argument(
        "--eval-every",
        type=positive_int("--eval-every"),
        help=f"(default {CFConfig.eval_every})",
    )
    train.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        help="'paper' also evaluates on test at every evaluation and reports the best test "
        "evaluation (the LightGCN paper's protocol, selected on test: optimistic) next to the "
        f"validation protocol's test metrics (default {CFConfig.protocol})",
    )
    train.add_argument(
        "--patience",
        type=nonnegative_int("--patience"),
        help=f"0 = no early stopping (default {CFConfig.patience})",
    )
    train.add_argument(
        "--cpu-budget", type=positive_float("--cpu-budget"), help="stop after this many CPU s"
    )
    train.add_argument(
        "--seed",
        type=nonnegative_int("--seed"),
        default=CFConfig.seed,
        help="seed of the split and the training (or the SVD)",
    )
    train.add_argument("--threads", type=positive_int("--threads"), default=1)
    train.add_argument("--out", type=Path, required=True, help="model file to write (.pt)")
    train.add_argument(
        "--force", action="store_true", help="overwrite OUT, start over (ignore OUT.ckpt)"
    )
    train.add_argument("--quiet", action="store_true", help="no progress output")
    train.add_argument("--json", action="store_true", help="print the result as JSON")
    train.set_defaults(func=train_command)

    rec = cf_sub.add_parser(
        "recommend",
        help="top-k items for given users from a model file",
        description="Print the top-k items per user (original ids), excluding the user's "
        "training and validation items.",
    )
    rec.add_argument("model", type=Path, help="a model file written by 'graphrec cf train'")
    rec.add_argument(
        "--users", required=True, help="comma-separated user ids (the dataset's own ids)"
    )
    rec.add_argument("-k", type=positive_int("-k"), default=20)
    rec.add_argument("--include-known", action="store_true", help="do not exclude known items")
    rec.add_argument("--json", action="store_true", help="print one JSON object")
    rec.set_defaults(func=recommend_command)


def _root(dataset: str, data_root: Path | None) -> str | None:
    """The dataset folder to record in the model file (absolute, so recommend works anywhere)."""
    from graphrec.datasets import dataset_folder
    from graphrec.models.cf.data import DATASETS

    if dataset in DATASETS:
        return str(dataset_folder(dataset, data_root).resolve())
    return None if data_root is None else str(data_root)


def _graph(data: dict):
    from graphrec.models.cf.data import load_cf_graph

    return load_cf_graph(
        data["dataset"],
        root=data["root"],
        test=data["test"],
        min_rating=data["min_rating"],
        valid_fraction=data["valid_fraction"],
        fold=data["fold"],
        seed=data["split_seed"],
    )


def _applies(registry: Registry, option: str, chosen: str, field: str) -> tuple[str, bool]:
    """Where the ``CFConfig`` field ``field`` applies (the entries whose ``config_fields``
    name it) and whether it applies to ``chosen``."""
    names = [name for name in registry if field in registry.get(name).config_fields]
    return f"{option} {' or '.join(names)}", chosen in names


def _option(field: str) -> str:
    return "--" + field.replace("_", "-")


def _check_options(args: argparse.Namespace) -> None:
    """Refuse options of another method, backbone, loss or dataset (before any work); fill in
    the training defaults of a trained model."""
    from graphrec.models.cf.data import DATASETS

    named = args.dataset in DATASETS
    log = not named and not Path(args.dataset).is_dir()  # a folder is a LightGCN-format split
    data_options = {
        "--fold": ("--dataset ml-100k", args.dataset == "ml-100k"),
        "--min-rating": ("ml-100k and interaction logs", args.dataset == "ml-100k" or log),
        "--test": ("an interaction-log --dataset", log),
    }
    if args.method is not None:
        bspm = ("--method bspm", args.method == "bspm")
        refuse_unused(
            args,
            {
                **{
                    _option(name): ("trained models (without --method)", False)
                    for name in (*TRAINING_DEFAULTS, *TRAINING_ONLY)
                },
                "--sharpen-time": bspm,
                "--sharpen-steps": bspm,
                "--solver": bspm,
                "--merge": bspm,
                **data_options,
            },
        )
        if args.tune and args.sharpen_steps not in (None, 1):
            raise GraphrecError("--tune uses one sharpening step; drop --sharpen-steps")
        return
    filters = f"--method {' or '.join(FILTER_METHODS)}"
    refuse_unused(
        args,
        {
            _option(name): (filters, False)
            for name in ("k", "alpha", "sharpen_time", "sharpen_steps", "solver", "merge")
        },
    )
    if args.tune:
        raise GraphrecError(f"--tune applies to {filters} only")
    for name, value in TRAINING_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    refuse_unused(
        args,
        {
            "--layers": _applies(CF_BACKBONES, "--backbone", args.backbone, "num_layers"),
            "--temperature": _applies(CF_LOSSES, "--loss", args.loss, "temperature"),
            "--tau-plus": _applies(CF_LOSSES, "--loss", args.loss, "tau_plus"),
            "--beta": _applies(CF_LOSSES, "--loss", args.loss, "beta"),
            "--logq": _applies(CF_LOSSES, "--loss", args.loss, "logq"),
            "--positives": _applies(CF_LOSSES, "--loss", args.loss, "num_positives"),
            **data_options,
        },
    )
    if args.init == "gf-cf" and args.backbone != "mf":
        raise GraphrecError("--init gf-cf needs --backbone mf")
    least = CF_LOSSES.get(args.loss).min_negatives
    if args.negatives is not None and args.negatives < least:
        raise GraphrecError(f"--negatives must be >= {least} with --loss {args.loss}")


def train_command(args: argparse.Namespace) -> int:
    """Run ``graphrec cf train``."""
    import torch

    from graphrec.io.atomic import atomic_open
    from graphrec.io.checkpoint import CheckpointError
    from graphrec.models.cf import CFConfig, CFTrainer

    _check_options(args)
    torch.set_num_threads(args.threads)
    data = {
        "dataset": args.dataset,
        "root": _root(args.dataset, args.data_root),
        "test": None if args.test is None else str(args.test),
        "min_rating": args.min_rating,
        "valid_fraction": args.valid_fraction,
        "fold": args.fold or 1,
        "split_seed": args.seed,
    }
    if args.method is not None:
        return _train_filter(args, data)
    ckpt = args.out.with_name(args.out.name + ".ckpt")
    prepare_output(args.out, force=args.force, option="--out")
    prepare_output(ckpt, force=args.force, option="--out", resumable=True)
    graph = _graph(data)
    only_some = {  # options of some backbones / losses: CFConfig's default when not given
        "num_layers": args.layers,
        "temperature": args.temperature,
        "tau_plus": args.tau_plus,
        "beta": args.beta,
        "logq": args.logq,
        "num_positives": args.positives,
    }
    config = CFConfig(
        backbone=args.backbone,
        loss=args.loss,
        init=args.init,
        embedding_dim=args.dim,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        reg=args.reg,
        num_negatives=args.negatives,
        neg_alpha=args.neg_alpha,
        sampling=args.sampling,
        eval_every=args.eval_every,
        protocol=args.protocol,
        patience=args.patience,
        cpu_budget=args.cpu_budget,
        seed=args.seed,
        **{k: v for k, v in only_some.items() if v is not None},
    )

    def progress(record: dict) -> None:
        valid = record.get("valid")
        shown = "" if valid is None else f"  valid {config.metric} {valid[config.metric]:.4f}"
        print(
            f"epoch {record['epoch']:4d}  loss {record['loss']:.4f}  "
            f"train {record['train_seconds']:.1f}s{shown}",
            file=sys.stderr,
            flush=True,
        )

    if not args.quiet:
        print(graph.summary(), file=sys.stderr)
    trainer = CFTrainer(graph, config, progress=None if args.quiet else progress, data_info=data)
    if ckpt.exists() and not args.force:
        try:
            trainer.load_checkpoint(ckpt)
        except CheckpointError as exc:
            raise resume_error(exc) from exc
    trainer.fit(checkpoint=ckpt, resume=False)
    test = trainer.evaluate("test")
    paper = trainer.best_test()
    paper_record = None if paper is None else {"best_test_epoch": paper[0], "test": paper[1]}
    with atomic_open(args.out, "wb") as f:
        torch.save(
            {
                "config": trainer.state_dict()["config"],
                "data": data,
                "model": trainer.model.state_dict(),
                "best_epoch": trainer.best_epoch,
                "valid": trainer.best_metric,
                "test": test,
                "paper_protocol": paper_record,
            },
            f,
        )
    result = {
        "out": str(args.out),
        "epochs": trainer.epoch,
        "best_epoch": trainer.best_epoch,
        f"valid_{config.metric}": trainer.best_metric,
        "train_seconds": round(trainer.train_seconds, 2),
        "test": test,
    }
    if paper_record is not None:
        result["paper_protocol"] = paper_record
    if args.json:
        print(json.dumps(result))
    else:
        metrics = "  ".join(f"{k} {v:.4f}" for k, v in test.items() if not k.startswith("prec"))
        print(
            f"{args.backbone}-{args.loss}: {trainer.epoch} epochs (best {trainer.best_epoch}), "
            f"{trainer.train_seconds:.1f}s training; test {metrics}; wrote {args.out}"
        )
        if paper is not None:
            shown = "  ".join(f"{k} {v:.4f}" for k, v in paper[1].items() if k[:4] != "prec")
            print(
                f"paper protocol (LightGCN paper: best test evaluation, epoch {paper[0]}; "
                f"selected on test, optimistic): test {shown}"
            )
    return 0


def _train_filter(args: argparse.Namespace, data: dict) -> int:
    """``graphrec cf train --method gf-cf|bspm``: (tune on validation,) fit on train +
    validation, evaluate on test, write the model file (configuration and data record)."""
    import time

    import torch

    from graphrec.io.atomic import atomic_open
    from graphrec.models.cf import GraphFilterCF, tune_graph_filter

    prepare_output(args.out, force=args.force, option="--out")
    graph = _graph(data)
    progress = not args.quiet
    if progress:
        print(graph.summary(), file=sys.stderr)
    given = {
        "k": args.k,
        "alpha": args.alpha,
        "sharpen_time": args.sharpen_time,
        "sharpen_steps": args.sharpen_steps,
        "solver": args.solver,
        "merge": args.merge,
    }
    config = GraphFilterConfig(
        method=args.method, seed=args.seed, **{k: v for k, v in given.items() if v is not None}
    )
    start = time.perf_counter()
    valid = None
    if args.tune:  # a given option fixes its value in the grid (the solver is not tuned)
        grid = {
            key: (value,) for key, value in given.items() if value is not None and key != "solver"
        }
        config, table = tune_graph_filter(
            graph, args.method, grid=grid, config=config, progress=progress
        )
        valid = max(table, key=lambda row: row[config.metric])[config.metric]
    model = GraphFilterCF(config, progress=progress).fit(graph, include_valid=True)
    test = model.evaluate("test")
    seconds = time.perf_counter() - start
    with atomic_open(args.out, "wb") as f:
        torch.save(
            {"config": config.to_dict(), "data": data, "model": {}, "valid": valid, "test": test},
            f,
        )
    settings = {"k": model.k, "alpha": config.alpha}
    if config.method == "bspm":
        settings.update(
            sharpen_time=config.sharpen_time,
            sharpen_steps=config.sharpen_steps,
            solver=config.solver,
            merge=config.merge,
        )
    result = {
        "out": str(args.out),
        "method": config.method,
        **settings,
        **({} if valid is None else {f"valid_{config.metric}": valid}),
        "seconds": round(seconds, 2),
        "test": test,
    }
    if args.json:
        print(json.dumps(result))
    else:
        shown = ", ".join(
            f"{k} {v}" if isinstance(v, str) else f"{k} {v:g}" for k, v in settings.items()
        )
        metrics = "  ".join(f"{k} {v:.4f}" for k, v in test.items() if not k.startswith("prec"))
        print(f"{config.method} ({shown}): {seconds:.1f}s; test {metrics}; wrote {args.out}")
    return 0


def _load_model(path: Path) -> dict:
    from graphrec.io.checkpoint import load_checkpoint

    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist")
    return load_checkpoint(
        path,
        keys=("model",),
        records=("config", "data"),
        what="model file written by 'graphrec cf train'",
    )


def _user_indices(text: str, ids, num_users: int) -> list[int]:
    """Indices of the comma-separated user ids in ``text`` (``ids`` None: ids are indices)."""
    tokens = [t.strip() for t in text.split(",") if t.strip()]
    if not tokens:
        raise GraphrecError("--users is empty; expected comma-separated user ids")
    if ids is None:
        lookup = {str(k): k for k in range(num_users)}
    else:
        lookup = {str(v): k for k, v in enumerate(ids.tolist())}
    unknown = [t for t in tokens if t not in lookup]
    if unknown:
        raise GraphrecError(f"--users: unknown user id(s) {', '.join(unknown[:5])}")
    return [lookup[t] for t in tokens]


def recommend_command(args: argparse.Namespace) -> int:
    """Run ``graphrec cf recommend``."""

    from graphrec.models.cf import CFConfig, GraphFilterCF, build_backbone, top_k

    state = _load_model(args.model)
    try:
        data = {k: state["data"][k] for k in DATA_KEYS}
        saved = dict(state["config"])
        if "method" in saved:  # a training-free filter: refitted (deterministic SVD)
            config = GraphFilterConfig.from_dict(saved)
        else:
            config = CFConfig.from_dict({**saved, "ks": tuple(saved["ks"])})
    except (KeyError, TypeError, ValueError) as exc:
        raise GraphrecError(
            f"{args.model}: not a model file written by 'graphrec cf train' (its configuration "
            "or data record is incomplete or invalid)"
        ) from exc
    graph = _graph(data)
    if isinstance(config, GraphFilterConfig):
        users = _user_indices(args.users, graph.user_ids, graph.num_users)
        graph_filter = GraphFilterCF(config).fit(graph, include_valid=True)
        items, scores = graph_filter.recommend(users, args.k, exclude_known=not args.include_known)
        return _print_recommendations(args, graph, users, items, scores)
    model = build_backbone(graph, replace(config, init="normal"))  # weights loaded: no SVD
    try:
        model.load_state_dict(state["model"])
    except (AttributeError, RuntimeError, TypeError) as exc:
        raise GraphrecError(
            f"{args.model}: its weights do not fit the model of its configuration and data"
        ) from exc
    model.eval()
    users = _user_indices(args.users, graph.user_ids, graph.num_users)
    exclude = None if args.include_known else (graph.train + graph.valid).tocsr()
    user_emb, item_emb = model()
    items, scores = top_k(user_emb.detach(), item_emb.detach(), users, args.k, exclude)
    return _print_recommendations(args, graph, users, items, scores)


def _print_recommendations(args: argparse.Namespace, graph, users, items, scores) -> int:
    """Print ``recommend``'s result (original ids; JSON with ``--json``)."""
    import numpy as np

    item_ids = np.arange(graph.num_items) if graph.item_ids is None else graph.item_ids
    user_ids = np.arange(graph.num_users) if graph.user_ids is None else graph.user_ids
    result = {}
    for row, user in enumerate(users):
        keep = items[row] >= 0
        result[str(user_ids[user])] = {
            "items": item_ids[items[row][keep]].tolist(),
            "scores": [round(float(s), 6) for s in scores[row][keep]],
        }
    if args.json:
        print(json.dumps(result))
    else:
        for user, rec in result.items():
            print(f"{user}\t" + " ".join(str(i) for i in rec["items"]))
    return 0
