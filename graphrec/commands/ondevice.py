"""``graphrec ondevice finetune``: per-user fine-tuning of a cloud CTR model, label correction."""

from __future__ import annotations

import argparse
import json
import time

from graphrec.commands._args import add_data_root, nonnegative_int, positive_float, positive_int
from graphrec.ondevice.correction import CORRECTIONS
from graphrec.ondevice.experiment import ONDEVICE_DATASETS
from graphrec.ondevice.protocol import FINETUNE_DEFAULTS, LAYERS, FineTuneConfig
from graphrec.registry import CTR_MODELS


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``ondevice`` subcommand group to the top-level parser."""
    group = sub.add_parser("ondevice", help="on-device personalization (per-user fine-tuning)")
    group_sub = group.add_subparsers(dest="ondevice_command", metavar="ACTION")
    p = group_sub.add_parser(
        "finetune",
        help="fine-tune a cloud CTR model per user, with or without label correction",
        description="Train a cloud CTR model on all users' earlier samples, fine-tune one copy "
        "per user on the user's local samples (SGD, all users at once) and test it on the "
        "user's later samples. Reports GAUC, mean per-user AUC, pooled AUC and logloss of the "
        "cloud model, of naive fine-tuning and of the --correction rule, and the GAUC gain "
        "per bucket of |local share - global share|. DATASET: amazon-users (Amazon "
        "Electronics, one device per user), ml-100k (MovieLens-100K, rating >= 4) or synthetic "
        "(CTR drift that harms naive fine-tuning by design, graphrec.ondevice.synthetic).",
    )
    p.add_argument("--dataset", required=True, choices=ONDEVICE_DATASETS)
    add_data_root(p, "amazon-users or ml-100k")
    p.add_argument("--model", required=True, choices=CTR_MODELS.names())
    p.add_argument("--correction", choices=CORRECTIONS, default="none",
                   help="label correction of the devices: none (naive), soft (A), flip (B, by "
                   "the cloud score), random (C), offset (D, logit offset) (default: "
                   "%(default)s)")  # fmt: skip
    p.add_argument("--layers", choices=LAYERS, default=FINETUNE_DEFAULTS.layers,
                   help="parameters tuned on the device: dense (outside the embeddings) or all "
                   "(default: %(default)s)")  # fmt: skip
    p.add_argument("--epochs", type=nonnegative_int("--epochs"), default=FINETUNE_DEFAULTS.epochs,
                   help="fine-tuning epochs per user (default: %(default)s)")  # fmt: skip
    p.add_argument("--lr", type=positive_float("--lr"), default=FINETUNE_DEFAULTS.lr,
                   help="SGD step size (default: %(default)s)")  # fmt: skip
    p.add_argument("--batch-size", type=positive_int("--batch-size"),
                   default=FINETUNE_DEFAULTS.batch_size,
                   help="local samples per step (default: all of the user's)")  # fmt: skip
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the cloud model, the data and the order (default: %(default)s)",
    )
    p.add_argument("--threads", type=positive_int("--threads"), default=None,
                   help="torch CPU threads (default: torch's choice)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the results as one JSON object")
    p.set_defaults(func=finetune_command)
    _register_coda(group_sub)
    group.set_defaults(func=lambda _: (group.print_help(), 2)[1])


def _register_coda(group_sub: argparse._SubParsersAction) -> None:
    """Add ``graphrec ondevice coda``."""
    from graphrec.commands._args import bounded_float
    from graphrec.ondevice.coda import CLASSIFIERS, CODA_DEFAULTS, KEYS, WEIGHTINGS

    d = CODA_DEFAULTS
    p = group_sub.add_parser(
        "coda",
        help="CoDA: fine-tune per user on local samples plus similar cloud samples",
        description="Train a cloud CTR model, then per user: send a key (centroid of the local "
        "samples' embeddings) to the cloud, receive the K = ceil(c |local|) most similar "
        "samples of other users under a byte budget, keep those an on-device classifier "
        "(local vs. random pool samples) scores >= tau, and fine-tune on local plus kept "
        "samples (weight lambda). Reports GAUC, mean per-user AUC, pooled AUC and logloss of "
        "the cloud model, local-only fine-tuning, unfiltered augmentation and CoDA, and the "
        "per-device overheads (classifier and fine-tuning seconds, peak bytes, bytes down "
        "and up).",
    )
    p.add_argument("--dataset", required=True, choices=ONDEVICE_DATASETS)
    add_data_root(p, "amazon-users or ml-100k")
    p.add_argument("--model", required=True, choices=CTR_MODELS.names())
    p.add_argument("--key", choices=KEYS, default=d.key,
                   help="embedding of key and classifier (default: %(default)s)")  # fmt: skip
    p.add_argument("--k-factor", type=positive_float("--k-factor"), default=d.k_factor,
                   help="c: K = ceil(c |local|) candidates (default: %(default)s)")  # fmt: skip
    p.add_argument("--budget-bytes", type=nonnegative_int("--budget-bytes"),
                   default=d.budget_bytes,
                   help="candidate bytes per device at most (default: %(default)s)")  # fmt: skip
    p.add_argument("--classifier", choices=CLASSIFIERS, default=d.classifier,
                   help="on-device sample classifier (default: %(default)s)")  # fmt: skip
    p.add_argument("--tau", type=bounded_float("--tau", minimum=0.0, below=1.0), default=d.tau,
                   help="keep candidates the classifier scores >= tau; 0 keeps all "
                   "(default: %(default)s)")  # fmt: skip
    p.add_argument("--top-factor", type=positive_float("--top-factor"), default=d.top_factor,
                   help="alpha: keep the top ceil(alpha |local|), not --tau")  # fmt: skip
    p.add_argument("--weight", type=bounded_float("--weight", minimum=0.0), default=d.weight,
                   help="lambda: weight of a kept candidate (default: %(default)s)")  # fmt: skip
    p.add_argument("--weighting", choices=WEIGHTINGS, default=d.weighting,
                   help="constant (lambda) or score (lambda * classifier score) "
                   "(default: %(default)s)")  # fmt: skip
    p.add_argument("--layers", choices=LAYERS, default=FINETUNE_DEFAULTS.layers,
                   help="parameters tuned on the device (default: %(default)s)")  # fmt: skip
    p.add_argument("--epochs", type=nonnegative_int("--epochs"), default=FINETUNE_DEFAULTS.epochs,
                   help="fine-tuning epochs per user (default: %(default)s)")  # fmt: skip
    p.add_argument("--lr", type=positive_float("--lr"), default=FINETUNE_DEFAULTS.lr,
                   help="SGD step size (default: %(default)s)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the cloud model, the data, the negatives and the order "
                   "(default: %(default)s)")  # fmt: skip
    p.add_argument("--threads", type=positive_int("--threads"), default=None,
                   help="torch CPU threads (default: torch's choice)")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the results as one JSON object")
    p.set_defaults(func=coda_command)


def coda_command(args: argparse.Namespace) -> int:
    """Run ``graphrec ondevice coda``."""
    from dataclasses import replace

    import torch

    from graphrec.ondevice.coda import CODA_DEFAULTS, run_coda
    from graphrec.ondevice.experiment import load_ondevice_data, train_cloud

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    options = ("key", "k_factor", "budget_bytes", "classifier", "tau", "top_factor", "weight",
               "weighting")  # fmt: skip
    config = replace(CODA_DEFAULTS, **{k: getattr(args, k) for k in options})
    finetune = FineTuneConfig(args.layers, args.epochs, args.lr, FINETUNE_DEFAULTS.batch_size)
    start = time.perf_counter()
    data = load_ondevice_data(args.dataset, args.data_root, seed=args.seed)
    cloud = train_cloud(args.model, data, seed=args.seed)
    cloud_s = time.perf_counter() - start
    report = run_coda(cloud, data, config=config, finetune=finetune, seed=args.seed,
                      progress=not (args.quiet or args.json))  # fmt: skip
    report = {"model": args.model, "seed": args.seed, "cloud_train_s": cloud_s} | report
    if args.json:
        print(json.dumps(report))
        return 0
    c = report["candidates"]
    print(f"{args.dataset}, {args.model}: {report['users']} users, cloud model trained in "
          f"{cloud_s:.1f} s; candidates per device {c['matched']:.1f}, kept {c['kept']:.1f} "
          f"({c['kept_share']:.0%})")  # fmt: skip
    print(f"{'method':<10} {'GAUC':>7} {'userAUC':>7} {'AUC':>7} {'logloss':>7} {'seconds':>8}")
    for name, m in report["methods"].items():
        print(f"{name:<10} {m['gauc']:7.4f} {m['mean_user_auc']:7.4f} {m['auc']:7.4f} "
              f"{m['logloss']:7.4f} {m['seconds']:8.1f}")  # fmt: skip
    print("per device (mean / max):")
    for name, v in report["overhead"].items():
        print(f"  {name:<20} {v['mean']:12.4g} / {v['max']:.4g}")
    return 0


def finetune_command(args: argparse.Namespace) -> int:
    """Run ``graphrec ondevice finetune``."""
    import torch

    from graphrec.ondevice.experiment import load_ondevice_data, run_finetune, train_cloud

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    data = load_ondevice_data(args.dataset, args.data_root, seed=args.seed)
    cloud = train_cloud(args.model, data, seed=args.seed)
    cloud_s = time.perf_counter() - start
    config = FineTuneConfig(args.layers, args.epochs, args.lr, args.batch_size)
    report = run_finetune(cloud, data, correction=args.correction, config=config, seed=args.seed)
    report = {"model": args.model, "seed": args.seed, "cloud_train_s": cloud_s} | report
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{args.dataset}, {args.model}: {report['users']} users, global share "
          f"{report['global_share']:.3f}, cloud model trained in {cloud_s:.1f} s")  # fmt: skip
    c = report["config"]
    print(f"fine-tuning: layers {c['layers']}, {c['epochs']} epochs, SGD lr {c['lr']:g}, "
          f"batch {c['batch_size'] or 'all'}")  # fmt: skip
    print(f"{'method':<8} {'GAUC':>7} {'userAUC':>7} {'AUC':>7} {'logloss':>7} {'seconds':>8}")
    for name, m in report["methods"].items():
        print(f"{name:<8} {m['gauc']:7.4f} {m['mean_user_auc']:7.4f} {m['auc']:7.4f} "
              f"{m['logloss']:7.4f} {m['seconds']:8.1f}")  # fmt: skip
    print("GAUC gain over the cloud model by |local share - global share|:")
    for name, rows in report["buckets"].items():
        cells = [f"[{r['low']:.1f},{r['high']:.1f}) {r['users']} users "
                 f"{r.get('gain', float('nan')):+.4f}" for r in rows]  # fmt: skip
        print(f"  {name:<7} " + "; ".join(cells))
    return 0
