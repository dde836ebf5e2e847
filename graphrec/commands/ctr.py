"""``graphrec ctr train``: train a CTR model (optionally with HIEN); AUC, GAUC, logloss."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from graphrec.commands._args import add_data_root, positive_float, positive_int
from graphrec.errors import GraphrecError
from graphrec.models.ctr.defaults import HIEN_DEFAULTS, TRAIN_DEFAULTS, TRAIN_RECIPES, train_recipe
from graphrec.registry import CTR_MODELS, HIEN_AGGREGATORS

#: Files written under ``--out``.
CHECKPOINT, MODEL, CONFIG, RESULTS = "checkpoint.pt", "model.pt", "config.json", "results.json"
#: Options whose default is the dataset's training recipe (``TrainRecipe`` fields).
RECIPE_OPTIONS = ("epochs", "batch_size", "lr", "weight_decay", "patience")


def _non_negative_float(text: str) -> float:
    """The argparse ``type`` of ``--weight-decay``: a float >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--weight-decay must be a number, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"--weight-decay must be >= 0, got {value}")
    return value


def _recipe_help(text: str, field: str) -> str:
    """``text`` and the default of recipe field ``field``, with the datasets that differ."""
    default = getattr(TRAIN_DEFAULTS, field)
    other = [f"{ds} {getattr(r, field):g}" for ds, r in TRAIN_RECIPES.items()
             if getattr(r, field) != default]  # fmt: skip
    return f"{text} (default: {'; '.join([f'{default:g}', *other])})"


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``ctr`` subcommand group to the top-level parser."""
    ctr = sub.add_parser("ctr", help="click-through-rate prediction (five base models, HIEN)")
    ctr_sub = ctr.add_subparsers(dest="ctr_command", metavar="ACTION")
    train = ctr_sub.add_parser(
        "train",
        help="train a CTR model and report validation/test AUC, GAUC and logloss",
        description="Train LR, Wide&Deep, DeepFM, DCN-V2 or DIN, optionally with HIEN as the "
        "input module, with Adam and early stopping on validation AUC. DATASET is ml-100k "
        "(MovieLens-100K as CTR, label = rating >= 4), amazon-users (Amazon Electronics "
        "per-user samples, base models only), synthetic (planted attribute hierarchy) or a "
        "folder with FuxiCTR Taobao train_sample.csv / test_sample.csv. The model and training "
        "settings default to the validated ones of graphrec.models.ctr.defaults (the dataset's "
        "training recipe, the model's hyper-parameters). With --out, the training state is "
        "saved after every epoch and an interrupted run resumes from it.",
    )
    train.add_argument("--dataset", required=True, metavar="DATASET",
                       help="ml-100k | amazon-users | synthetic | PATH")  # fmt: skip
    add_data_root(train, "ml-100k or amazon-users")
    train.add_argument("--model", required=True, choices=CTR_MODELS.names())
    train.add_argument("--hien", action="store_true", help="use HIEN as the input module")
    train.add_argument("--aggregator", choices=HIEN_AGGREGATORS.names(),
                       default=HIEN_DEFAULTS.aggregator,
                       help="HIEN tree aggregator (default: %(default)s)")  # fmt: skip
    dims = {name: CTR_MODELS.defaults(name)["embedding_dim"] for name in CTR_MODELS}
    sizes = sorted({dim for name, dim in dims.items() if name != "lr"})
    train.add_argument("--embedding-dim", type=positive_int("--embedding-dim"),
                       help=f"embedding size (default: the model's, {'/'.join(map(str, sizes))}; "
                       f"LR's is fixed at {dims['lr']})")  # fmt: skip
    train.add_argument("--epochs", type=positive_int("--epochs"),
                       help=_recipe_help("maximum number of epochs", "epochs"))  # fmt: skip
    train.add_argument("--batch-size", type=positive_int("--batch-size"),
                       help=_recipe_help("training batch size", "batch_size"))  # fmt: skip
    train.add_argument(
        "--lr", type=positive_float("--lr"), help=_recipe_help("Adam step size", "lr")
    )
    train.add_argument("--weight-decay", type=_non_negative_float,
                       help=_recipe_help("Adam weight decay", "weight_decay"))  # fmt: skip
    train.add_argument("--patience", type=positive_int("--patience"),
                       help=_recipe_help("epochs without validation-AUC gain before stopping",
                                         "patience"))  # fmt: skip
    train.add_argument("--seed", type=int, default=0,
                       help="seed of weights, order and data (default: %(default)s)")  # fmt: skip
    train.add_argument("--threads", type=positive_int("--threads"), default=None,
                       help="torch CPU threads (default: torch's choice)")  # fmt: skip
    train.add_argument(
        "--out", type=Path, help=f"folder for {CHECKPOINT} (resume), {MODEL}, {CONFIG}, {RESULTS}"
    )
    train.add_argument("--force", action="store_true", help="start over in an existing --out")
    train.add_argument("--json", action="store_true", help="print the results as one JSON object")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=train_command)
    ctr.set_defaults(func=lambda _: (ctr.print_help(), 2)[1])


def _config(args: argparse.Namespace) -> dict:
    """The run's settings, unset options resolved (``root``: the ``--data-root`` given)."""
    recipe = train_recipe(args.dataset)
    given = {name: getattr(args, name) for name in RECIPE_OPTIONS}
    dim = args.embedding_dim
    return {
        "dataset": args.dataset,
        "root": None if args.data_root is None else str(args.data_root),
        "model": args.model,
        "hien": args.hien,
        "aggregator": args.aggregator if args.hien else None,
        "embedding_dim": CTR_MODELS.defaults(args.model)["embedding_dim"] if dim is None else dim,
        **{k: getattr(recipe, k) if v is None else v for k, v in given.items()},
        "seed": args.seed,
    }


def train_command(args: argparse.Namespace) -> int:
    """Run ``graphrec ctr train``."""
    import torch

    from graphrec.commands._training import prepare_run_folder, resume_error
    from graphrec.io.atomic import atomic_open, atomic_write_text
    from graphrec.io.checkpoint import CheckpointError, fingerprint
    from graphrec.models.ctr import evaluate_ctr, train_ctr
    from graphrec.models.ctr.experiment import build_ctr_model, load_ctr_dataset

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.hien and args.dataset == "amazon-users":
        raise GraphrecError("amazon-users has no item attributes: HIEN needs attribute trees")
    config = _config(args)
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise GraphrecError(f"--out {args.out} exists and is not a folder")
    t0 = time.perf_counter()
    data = load_ctr_dataset(args.dataset, args.data_root, seed=args.seed)
    split = data.split
    config["data_fingerprint"] = fingerprint(split.train, split.valid, split.test)
    resume = False
    if args.out is not None:
        resume = prepare_run_folder(
            args.out,
            config,
            force=args.force,
            checkpoint=CHECKPOINT,
            files=(MODEL, CONFIG, RESULTS),
        )
        atomic_write_text(args.out / CONFIG, json.dumps(config, indent=1))
    model = build_ctr_model(args.model, data, hien=args.hien,
                            embedding_dim=config["embedding_dim"], aggregator=args.aggregator,
                            seed=args.seed)  # fmt: skip
    load_s = time.perf_counter() - t0
    if resume and not args.json:
        print(f"resuming from {args.out / CHECKPOINT}")
    t0 = time.perf_counter()
    try:
        result = train_ctr(
            model, data.split.train, data.split.valid,
            **{name: config[name] for name in RECIPE_OPTIONS},
            seed=args.seed, checkpoint=None if args.out is None else args.out / CHECKPOINT,
            progress=not (args.quiet or args.json),
        )  # fmt: skip
    except CheckpointError as exc:
        raise resume_error(exc) from None
    train_s = time.perf_counter() - t0
    test = evaluate_ctr(model, data.split.test)
    train_times = [h["train_s"] for h in result.history]
    rows = data.split.train.num_rows
    out = {
        "config": config,
        "data": {
            "train": rows,
            "valid": data.split.valid.num_rows,
            "test": data.split.test.num_rows,
        },  # fmt: skip
        "parameters": sum(p.numel() for p in model.parameters()),
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "stopped_early": result.stopped_early,
        "valid": result.best,
        "test": test,
        "samples_per_s": rows * len(train_times) / sum(train_times) if train_times else None,
        "load_s": load_s,
        "train_s": train_s,
        "history": result.history,
    }
    if args.hien:
        model.eval()
        batch = data.features.batch(data.split.test)
        beta = model.attention_weights(batch)["beta"].mean(dim=0)
        out["hien_types"] = dict(zip(model.types, beta.tolist()))
    if args.out is not None:
        with atomic_open(args.out / MODEL, "wb") as f:
            torch.save(model.state_dict(), f)
        atomic_write_text(args.out / RESULTS, json.dumps(out, indent=1))
    if args.json:
        print(json.dumps(out))
        return 0
    name = f"HIEN({args.model})" if args.hien else args.model
    print(f"dataset   {data.name}: {rows:,} train / {data.split.valid.num_rows:,} valid / "
          f"{data.split.test.num_rows:,} test rows")  # fmt: skip
    print(f"model     {name}, {out['parameters']:,} parameters, seed {args.seed}")
    print(f"training  {len(result.history)} epochs (best {result.best_epoch}), "
          f"{out['samples_per_s']:,.0f} samples/s, {train_s:.1f} s")  # fmt: skip
    for split, m in (("valid", result.best), ("test", test)):
        print(f"{split:9s} AUC {m['auc']:.4f}  GAUC {m['gauc']:.4f}  logloss {m['logloss']:.4f}")
    if args.hien:
        shown = ", ".join(f"{k} {v:.3f}" for k, v in out["hien_types"].items())
        print(f"HIEN beta mean over test rows: {shown}")
    if args.out is not None:
        print(f"wrote     {args.out / MODEL}, {args.out / RESULTS}")
    return 0
