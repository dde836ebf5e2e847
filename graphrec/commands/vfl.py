"""``graphrec vfl train``: split learning across N parties in one process; AUC, bytes, epsilon."""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from graphrec.commands._args import (
    add_data_root,
    bounded_float,
    nonnegative_int,
    positive_float,
    positive_int,
)
from graphrec.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    import torch
    from torch import Tensor

    from graphrec.federated.vertical import MessageLog

#: Files written under ``--out``.
CHECKPOINT, CONFIG, RESULTS = "checkpoint.pt", "config.json", "results.json"
DATASETS = ("breast-cancer", "synthetic", "uci-heart", "ml-100k")  # = vertical.VFL_DATASETS
#: ``--dp-target`` choices and the ``GaussianDP`` targets of each.
DP_TARGETS = {
    "embedding": ("embedding",),
    "gradient": ("gradient",),
    "both": ("embedding", "gradient"),
}


def _parties(text: str) -> int:
    value = positive_int("--parties")(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"--parties must be >= 2, got {value}")
    return value


def _hidden(name: str) -> Callable[[str], tuple[int, ...]]:
    """An argparse ``type``: comma-separated hidden sizes (each >= 1); ``""`` or ``none`` is no
    hidden layer."""
    size = positive_int(name)

    def parse(text: str) -> tuple[int, ...]:
        if text.strip().lower() in ("", "none"):
            return ()
        return tuple(size(part.strip()) for part in text.split(","))

    return parse


def _compression(text: str) -> str:
    """The argparse ``type`` of ``--compress``: a valid compressor name, kept as text."""
    from graphrec.federated.vertical import compressor

    try:
        compressor(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``vfl`` subcommand group to the top-level parser."""
    vfl = sub.add_parser("vfl", help="vertical federated learning (split learning)")
    vfl_sub = vfl.add_subparsers(dest="vfl_command", metavar="ACTION")
    train = vfl_sub.add_parser(
        "train",
        help="train a split model across N parties and report test AUC, bytes and epsilon",
        description="Split the dataset's feature columns into N contiguous blocks, one per "
        "party (party p0 also holds the labels and the top model), and train a split model "
        "(an MLP bottom per party, concatenated embeddings, an MLP top) with Adam; every "
        "message between parties is logged. DATASET is breast-cancer (scikit-learn's bundled "
        "copy, 569 rows, 30 features) or synthetic (2,000 rows, 4 features per party, the label "
        "depends on products of features held by different parties) or uci-heart (UCI Heart "
        "Disease from --data-root, Cleveland + Switzerland + VA, 626 rows, 13 features, label "
        "1 for any disease) or ml-100k (MovieLens-100K from --data-root as CTR, 100,000 ratings, "
        "label rating >= 4: party 'user' holds user id, gender, occupation and age, party "
        "'item' holds item id, release year and 19 genres, the label owner 'platform' only "
        "the labels; ids through the CTR feature embedding; needs --parties 2). Rows are "
        "split 80/20 into train/test with the seed; each party fills its missing values with "
        "its train-row column means and standardizes its own (dense) columns on the train rows.",
    )
    train.add_argument("--dataset", required=True, choices=DATASETS)
    add_data_root(train, "uci-heart or ml-100k")
    train.add_argument("--parties", type=_parties, default=2, help="number of parties (>= 2)")
    train.add_argument(
        "--epochs",
        type=positive_int("--epochs"),
        default=20,
        help="passes over the train rows (default: %(default)s)",
    )
    train.add_argument(
        "--batch-size",
        type=positive_int("--batch-size"),
        default=32,
        help="rows per step (default: %(default)s)",
    )
    train.add_argument(
        "--lr",
        type=positive_float("--lr"),
        default=0.01,
        help="Adam step size (default: %(default)s)",
    )
    train.add_argument(
        "--dp-sigma",
        type=bounded_float("--dp-sigma", minimum=0.0),
        help="Gaussian noise multiplier on the tensors of --dp-target (rows clipped to "
        "--dp-clip); epsilon at delta 1e-5 is reported",
    )
    train.add_argument(
        "--dp-clip",
        type=positive_float("--dp-clip"),
        default=1.0,
        help="row norm bound of the noised rows; gradient rows are of the batch-mean loss, "
        "about 1/--batch-size in scale (default: %(default)s)",
    )
    train.add_argument(
        "--dp-target",
        choices=list(DP_TARGETS),
        default="embedding",
        help="with --dp-sigma, noise the parties' embeddings (protects their features), the "
        "gradients the label owner returns (protects the labels) or both "
        "(default: %(default)s)",
    )
    train.add_argument(
        "--bottom-hidden",
        type=_hidden("--bottom-hidden"),
        default=(16,),
        metavar="H1,H2,...",
        help="hidden sizes of every party's bottom MLP ('' for none; default: 16)",
    )
    train.add_argument(
        "--top-hidden",
        type=_hidden("--top-hidden"),
        default=(16,),
        metavar="H1,H2,...",
        help="hidden sizes of the label owner's top MLP ('' for none; default: 16)",
    )
    train.add_argument(
        "--attack",
        action="store_true",
        help="after training, the norm and direction label-inference attacks of every remote "
        "party on the gradients it received; their AUC against the true labels is reported "
        "(not with --compress)",
    )
    train.add_argument(
        "--centralized",
        action="store_true",
        help="also train the same model from the same initialisation on the joined features "
        "(same batches, one Adam) and report its AUC",
    )
    from graphrec.registry import COMPRESSORS

    train.add_argument(
        "--compress",
        type=_compression,
        metavar="NAME[:OPTIONS]",
        help="compress embeddings and gradients (with error feedback) with a registered "
        f"compressor: {', '.join(COMPRESSORS.names())}; OPTIONS are field=value pairs of its "
        "config, or first its first field's value (topk:0.05 keeps 5%% of the entries, "
        "q8:entropy_coding=false sends the codes without deflate)",
    )
    train.add_argument(
        "--staleness",
        type=nonnegative_int("--staleness"),
        metavar="K",
        help="each step every party but the label owner is late with probability --late; "
        "the label owner then uses that party's cached embeddings of the batch rows if at most "
        "K steps old (a row recurs once per epoch, so K below the steps per epoch rarely "
        "hits), otherwise waits for it",
    )
    train.add_argument(
        "--late",
        type=bounded_float("--late", minimum=0.0, below=1.0),
        default=0.5,
        help="probability in [0, 1) that a party is late at a step, with --staleness "
        "(default: %(default)s)",
    )
    train.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of split, weights, order, noise (default: %(default)s)",
    )
    train.add_argument(
        "--out",
        type=Path,
        help=f"folder for {CONFIG}, {CHECKPOINT} (the training state after every epoch: "
        f"rerunning the same command resumes from it) and {RESULTS}",
    )
    train.add_argument("--force", action="store_true", help="overwrite results in --out")
    train.add_argument("--json", action="store_true", help="print the results as one JSON object")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument(
        "--flower",
        action="store_true",
        help="run the parties as Flower ClientApps and the label owner as the ServerApp on "
        "Flower's simulation engine (extra fl; same results; not with --centralized)",
    )
    train.set_defaults(func=train_command)
    vfl.set_defaults(func=lambda _: (vfl.print_help(), 2)[1])


def train_command(args: argparse.Namespace, parties: Mapping[str, Any] | None = None) -> int:
    """Run ``graphrec vfl train``; ``parties``: the remote parties' nodes (``--flower``)."""
    if getattr(args, "flower", False) and parties is None:
        return _train_on_flower(args)
    import numpy as np
    import torch

    from graphrec.commands._training import prepare_run_folder, resume_error
    from graphrec.federated.vertical import (
        Compression,
        GaussianDP,
        MessageLog,
        SplitLearner,
        Stragglers,
        compressor,
    )
    from graphrec.federated.vertical.data import build_split_model, epoch_batches, load_vertical
    from graphrec.io.atomic import atomic_write_text
    from graphrec.io.checkpoint import (
        CheckpointError,
        fingerprint,
        load_checkpoint,
        save_checkpoint,
    )
    from graphrec.metrics import auc
    from graphrec.training import run_epochs

    config = {
        "dataset": args.dataset,
        "data_root": None if args.data_root is None else str(args.data_root),
        "parties": args.parties,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "dp_sigma": args.dp_sigma,
        "dp_clip": args.dp_clip if args.dp_sigma is not None else None,
        "dp_target": args.dp_target if args.dp_sigma is not None else None,
        "bottom_hidden": list(args.bottom_hidden),
        "top_hidden": list(args.top_hidden),
        "attack": args.attack,
        "compress": args.compress,
        "centralized": args.centralized,
        "staleness": args.staleness,
        "late": args.late if args.staleness is not None else None,
        "seed": args.seed,
    }
    if args.attack and args.compress is not None:
        raise ConfigError("--attack reads uncompressed gradients; drop --compress")
    data = load_vertical(args.dataset, args.parties, args.seed, args.data_root)
    config["data_fingerprint"] = fingerprint(*data.features.values(), data.labels)
    resume = False
    if args.out is not None:
        resume = prepare_run_folder(
            args.out, config, force=args.force, checkpoint=CHECKPOINT, files=(CONFIG, RESULTS)
        )
        atomic_write_text(args.out / CONFIG, json.dumps(config, indent=1))
    features, y, owner = data.features, data.labels, data.label_owner
    train_rows, test_rows = data.train_rows, data.test_rows
    names = list(features)
    model = build_split_model(
        data, args.seed, bottom_hidden=args.bottom_hidden, top_hidden=args.top_hidden
    )
    dp = None
    if args.dp_sigma is not None:
        dp = GaussianDP(args.dp_sigma, args.dp_clip, DP_TARGETS[args.dp_target])
    comp = None if args.compress is None else compressor(args.compress)
    compression = None if comp is None else Compression(comp, comp)
    log = MessageLog(keep_payloads=args.attack)
    steps = math.ceil(len(train_rows) / args.batch_size)
    stragglers = late = None
    if args.staleness is not None:
        remote = [p for p in names if p != owner]
        rng = np.random.default_rng([args.seed, 1])
        late = rng.random((args.epochs * steps, len(remote))) < args.late
        column = {p: j for j, p in enumerate(remote)}
        stragglers = Stragglers(args.staleness, lambda step, party: not late[step, column[party]])
    learner = SplitLearner(
        model,
        features if parties is None else {p: x for p, x in features.items() if p not in parties},
        y,
        log=log,
        dp=dp,
        seed=args.seed,
        compression=compression,
        stragglers=stragglers,
        optimizer=lambda params: torch.optim.Adam(params, lr=args.lr),
        parties=parties,
    )
    # the centralized baseline: a copy of the initial model on the joined features
    central = copy.deepcopy(model) if args.centralized else None
    central_opt = None if central is None else torch.optim.Adam(central.parameters(), lr=args.lr)
    # the learner addresses rows by aligned position; train on the train positions only
    history: list[float] = []
    central_history: list[float] = []
    split_s = [0.0]  # seconds in split-learning steps (the centralized baseline not counted)

    def central_step(rows: Tensor) -> float:
        central_opt.zero_grad()
        logits = central({p: features[p][rows] for p in names}).reshape(-1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y[rows])
        loss.backward()
        central_opt.step()
        return loss.item()

    def epoch(e: int) -> tuple[bool, dict]:
        batches = epoch_batches(train_rows, args.batch_size, args.seed, e)
        t0 = time.perf_counter()
        learner.announce(args.seed, e)  # the parties derive the epoch's batches themselves
        losses = [learner.step(rows, send_batch=False) for rows in batches]
        split_s[0] += time.perf_counter() - t0
        history.append(sum(losses) / len(losses))
        if central is not None:
            central_losses = [central_step(rows) for rows in batches]
            central_history.append(sum(central_losses) / len(central_losses))
        return False, {"loss": f"{history[-1]:.4f}"}

    def save(e: int, _: bool) -> None:
        state = {
            "epoch": e,
            "learner": learner.state_dict(),
            "history": history,
            "split_s": split_s[0],
            "central": None,
        }
        if central is not None:
            state["central"] = {
                "model": central.state_dict(),
                "optimizer": central_opt.state_dict(),
                "history": central_history,
            }
        save_checkpoint(state, args.out / CHECKPOINT)

    start = 0
    if resume:
        try:
            state = load_checkpoint(
                args.out / CHECKPOINT,
                keys=("epoch", "learner", "history", "split_s", "central"),
                what="vfl training checkpoint",
                records=("learner",),
            )
            learner.load_state_dict(state["learner"])
            if central is not None:
                central.load_state_dict(state["central"]["model"])
                central_opt.load_state_dict(state["central"]["optimizer"])
                central_history[:] = state["central"]["history"]
        except (CheckpointError, KeyError, TypeError, RuntimeError) as exc:
            raise resume_error(CheckpointError(f"{args.out / CHECKPOINT}: {exc}")) from None
        history[:], split_s[0], start = state["history"], state["split_s"], state["epoch"] + 1
        if not args.json:
            print(f"resuming from {args.out / CHECKPOINT} after epoch {start}")
    run_epochs(
        epoch,
        epochs=args.epochs,
        start=start,
        checkpoint=None if args.out is None else save,
        progress=not (args.quiet or args.json),
        desc="vfl",
    )
    train_s = split_s[0]
    train_bytes = log.bytes_by("kind")
    test_logits = learner.predict(test_rows).reshape(-1)
    out = {
        "config": config,
        "data": {
            "train": len(train_rows),
            "test": len(test_rows),
            "features": {n: features[n].shape[1] for n in names},
        },
        "test_auc": auc(y[test_rows].numpy(), test_logits.numpy()),
        "train_auc": auc(y[train_rows].numpy(), learner.predict(train_rows).reshape(-1).numpy()),
        "train_bytes": sum(train_bytes.values()),
        "train_bytes_by_kind": train_bytes,
        "epsilon": None if dp is None else learner.epsilon(),
        "delta": None if dp is None else dp.delta,
        "train_s": train_s,
        "loss_history": history,
        "centralized": None,
        "stragglers": None,
        "parameters": {
            "bottoms": {n: _count(model.bottoms[n]) for n in names},
            "top": _count(model.top),
        },
        "attack": None,
    }
    if hasattr(parties, "stats"):  # Flower's round trips and serialized bytes
        out["flower"] = dict(parties.stats)
    if args.attack:
        out["attack"] = {p: label_attack(log, p, y) for p in names if p != owner}
    if late is not None:
        out["stragglers"] = {
            "late": int(late.sum()),
            "cached": int(late.sum()) - learner.cache.waits,
            "waits": learner.cache.waits,
        }
    if central is not None:
        with torch.no_grad():
            scores = {
                part: central({p: features[p][rows] for p in names}).reshape(-1).numpy()
                for part, rows in (("test", test_rows), ("train", train_rows))
            }
        out["centralized"] = {
            "test_auc": auc(y[test_rows].numpy(), scores["test"]),
            "train_auc": auc(y[train_rows].numpy(), scores["train"]),
            "loss_history": central_history,
        }
    if args.out is not None:
        atomic_write_text(args.out / RESULTS, json.dumps(out, indent=1))
    if args.json:
        print(json.dumps(out))
        return 0
    print(
        f"dataset   {args.dataset}: {len(train_rows)} train / {len(test_rows)} test rows, "
        f"{args.parties} parties"
    )
    print(f"test AUC  {out['test_auc']:.4f} (train {out['train_auc']:.4f}), seed {args.seed}")
    print(f"sent      {out['train_bytes']:,} bytes in training ({train_s:.1f} s)")
    if central is not None:
        c = out["centralized"]
        print(f"central   test AUC {c['test_auc']:.4f} (train {c['train_auc']:.4f}), same init")
    if late is not None:
        st = out["stragglers"]
        print(
            f"stale     {st['late']} late party-steps: {st['cached']} served from the cache "
            f"(<= {args.staleness} steps old), {st['waits']} waited for"
        )
    if dp is not None:
        print(f"privacy   epsilon {out['epsilon']:.3f} at delta {dp.delta:g}")
    for party, a in (out["attack"] or {}).items():
        print(
            f"attack    {party}: label inference AUC {a['norm_auc']:.4f} (norm), "
            f"{a['direction_auc']:.4f} (direction)"
        )
    if args.out is not None:
        print(f"wrote     {args.out / RESULTS}")
    return 0


def _train_on_flower(args: argparse.Namespace) -> int:
    """``train_command`` as the ServerApp of a Flower simulation, one ClientApp per party."""
    from graphrec.federated.vertical.flower import VFLConfig, simulate

    if args.centralized:
        raise ConfigError("--centralized needs every party's features in one place; drop --flower")
    config = VFLConfig(
        args.dataset,
        args.parties,
        args.seed,
        data_root="" if args.data_root is None else str(args.data_root),
        batch_size=args.batch_size,
        lr=args.lr,
        bottom_hidden=tuple(args.bottom_hidden),
        top_hidden=tuple(args.top_hidden),
        dp_sigma=args.dp_sigma,
        dp_clip=args.dp_clip,
        dp_targets=DP_TARGETS[args.dp_target],
        compress=args.compress or "",
    )
    return simulate(config, lambda parties: train_command(args, parties))


def flower_server_app() -> Any:
    """The label owner's ``ServerApp`` of the shipped vertical FL Flower app
    (``graphrec/federated/vfl_flower_app``, for ``flwr run``): ``graphrec vfl train --json``
    with the options of the run configuration (the keys of ``VFLConfig.run_config``, and
    ``epochs``, ``staleness`` (-1: none), ``late``, ``attack``, ``out``), the parties on the
    SuperNodes (``partition-id`` K: the K-th party after the label owner). The results JSON
    goes to the ServerApp's log and, when set, to ``results-file`` (on the SuperLink's
    machine)."""
    from graphrec.cli import _build_parser
    from graphrec.federated.flower import _flwr
    from graphrec.federated.vertical.flower import VFLConfig, connect_parties

    app = _flwr().serverapp.ServerApp()
    target = {targets: name for name, targets in DP_TARGETS.items()}

    @app.main()
    def main(grid: Any, context: Any) -> None:
        import contextlib
        import io

        from graphrec.io.atomic import atomic_write_text

        run = dict(context.run_config)
        config = VFLConfig.from_run_config(run)
        argv = ["vfl", "train", "--dataset", config.dataset, "--parties", str(config.parties)]
        argv += ["--seed", str(config.seed), "--epochs", str(run.get("epochs", 20))]
        argv += ["--batch-size", str(config.batch_size), "--lr", repr(config.lr)]
        argv += ["--bottom-hidden", ",".join(map(str, config.bottom_hidden))]
        argv += ["--top-hidden", ",".join(map(str, config.top_hidden))]
        if config.data_root:
            argv += ["--data-root", config.data_root]
        if config.dp_sigma is not None:
            argv += ["--dp-sigma", repr(config.dp_sigma), "--dp-clip", repr(config.dp_clip)]
            argv += ["--dp-target", target[config.dp_targets]]
        if config.compress:
            argv += ["--compress", config.compress]
        if int(run.get("staleness", -1)) >= 0:
            argv += ["--staleness", str(run["staleness"]), "--late", repr(float(run["late"]))]
        if run.get("attack"):
            argv.append("--attack")
        if run.get("out"):
            argv += ["--out", str(run["out"])]
        args = _build_parser().parse_args([*argv, "--json"])
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            train_command(args, connect_parties(grid, config))
        print(printed.getvalue(), end="")  # the results JSON, into the ServerApp's log
        if run.get("results-file"):
            results = printed.getvalue().strip().splitlines()[-1]
            atomic_write_text(Path(str(run["results-file"])), results)

    return app


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def label_attack(log: MessageLog, party: str, labels: Tensor) -> dict[str, float]:
    """AUC of the norm and direction label-inference attacks of ``party`` on the gradients it
    received (a log with payloads; ``labels`` in the aligned order). The direction attack knows
    one positive row per batch (batches without one are skipped) and scores the others."""
    import torch

    from graphrec.federated.vertical import direction_scores, norm_scores, received_gradients
    from graphrec.metrics import auc

    received = received_gradients(log, party)
    positions = torch.cat([p for p, _ in received])
    norm = auc(labels[positions].numpy(), norm_scores(torch.cat([g for _, g in received])).numpy())
    scores, truth = [], []
    for batch, grads in received:
        if labels[batch].any():
            known = int(labels[batch].nonzero()[0, 0])
            others = torch.arange(len(batch)) != known
            scores.append(direction_scores(grads, known)[others])
            truth.append(labels[batch][others])
    direction = auc(torch.cat(truth).numpy(), torch.cat(scores).numpy())
    return {"norm_auc": norm, "direction_auc": direction}
