"""``graphrec mtl train``: train a multi-task backbone, optionally with CrossDistil or plain
knowledge distillation; per-task AUC / GAUC, Multi-AUC and graded NDCG."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from graphrec.commands._args import (
    add_data_root,
    bounded_float,
    nonnegative_int,
    positive_float,
    positive_int,
)
from graphrec.models.mtl.defaults import (
    MTL_RECIPES,
    MTL_TRAIN_DEFAULTS,
    distill_recipe,
    mtl_recipe,
)
from graphrec.registry import MTL_MODELS

#: Files written under ``--out`` (``teacher.pt`` only with distillation).
CHECKPOINT, MODEL, TEACHER = "checkpoint.pt", "model.pt", "teacher.pt"
CONFIG, RESULTS = "config.json", "results.json"
#: Options whose default is the dataset's training recipe (``MTLRecipe`` fields).
RECIPE_OPTIONS = ("epochs", "batch_size", "lr", "patience", "select")
#: Distillation options (``CrossDistilConfig`` fields), None = the config's default.
DISTILL_OPTIONS = ("alpha", "warmup_steps", "correction")


def _recipe_help(text: str, field: str) -> str:
    default = getattr(MTL_TRAIN_DEFAULTS, field)
    other = [f"{ds} {getattr(r, field)}" for ds, r in MTL_RECIPES.items()
             if getattr(r, field) != default]  # fmt: skip
    return f"{text} (default: {'; '.join([str(default), *other])})"


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``mtl`` subcommand group to the top-level parser."""
    from graphrec.models.mtl.crossdistil import CORRECTIONS, CrossDistilConfig
    from graphrec.models.mtl.train import DISTILL_MODES, SELECT_METRICS

    mtl = sub.add_parser("mtl", help="multi-task recommendation (MMoE, PLE, CrossDistil)")
    mtl_sub = mtl.add_subparsers(dest="mtl_command", metavar="ACTION")
    train = mtl_sub.add_parser(
        "train",
        help="train a multi-task backbone and report per-task AUC, Multi-AUC and NDCG",
        description="Train Shared-Bottom, MMoE or PLE on two binary tasks with Adam on the "
        "summed task losses and early stopping on validation, optionally distilling teacher "
        "towers into the task towers: crossdistil (teachers ranked by the quadruplet loss "
        "over the four (y_A, y_B) groups, Platt-calibrated) or kd (the same teachers trained "
        "with BCE). DATASET is ml-100k (tasks rating >= 4 and rating = 5), synthetic "
        "(correlated tasks, rare task-B positives), taobao (the UserBehavior sample of the "
        "data root: cart or fav, buy) or the path of a UserBehavior CSV file or folder. With "
        "--out, the training state is saved after every epoch and an interrupted run resumes "
        "from it.",
    )
    train.add_argument("--dataset", required=True, metavar="DATASET",
                       help="ml-100k | synthetic | taobao | PATH")  # fmt: skip
    add_data_root(train, "ml-100k or taobao")
    train.add_argument("--backbone", required=True, choices=MTL_MODELS.names())
    train.add_argument("--distill", choices=DISTILL_MODES, default="none",
                       help="teacher distillation (default: %(default)s)")  # fmt: skip
    d = CrossDistilConfig()
    train.add_argument("--alpha", type=bounded_float("--alpha", minimum=0.0),
                       help=f"distillation weight (default: {d.alpha:g}, or the dataset's "
                       "validated value)")  # fmt: skip
    train.add_argument("--warmup-steps", type=nonnegative_int("--warmup-steps"),
                       help="steps over which the distillation weight ramps up from 0 "
                       f"(default: {d.warmup_steps})")  # fmt: skip
    train.add_argument("--correction", choices=CORRECTIONS,
                       help="ground-truth correction of the teacher's soft labels "
                       f"(default: {d.correction})")  # fmt: skip
    dims = sorted({MTL_MODELS.defaults(name)["embedding_dim"] for name in MTL_MODELS})
    train.add_argument("--embedding-dim", type=positive_int("--embedding-dim"),
                       help=f"embedding size (default: {'/'.join(map(str, dims))})")  # fmt: skip
    train.add_argument("--epochs", type=positive_int("--epochs"),
                       help=_recipe_help("maximum number of epochs", "epochs"))  # fmt: skip
    train.add_argument("--batch-size", type=positive_int("--batch-size"),
                       help=_recipe_help("training batch size", "batch_size"))  # fmt: skip
    train.add_argument("--lr", type=positive_float("--lr"),
                       help=_recipe_help("Adam step size", "lr"))  # fmt: skip
    train.add_argument("--patience", type=positive_int("--patience"),
                       help=_recipe_help("epochs without validation gain before stopping",
                                         "patience"))  # fmt: skip
    train.add_argument("--select", choices=SELECT_METRICS,
                       help=_recipe_help("early-stopping metric", "select"))  # fmt: skip
    train.add_argument("--seed", type=int, default=0,
                       help="seed of weights, order and data (default: %(default)s)")  # fmt: skip
    train.add_argument("--threads", type=positive_int("--threads"), default=None,
                       help="torch CPU threads (default: torch's choice)")  # fmt: skip
    train.add_argument("--out", type=Path,
                       help=f"folder for {CHECKPOINT} (resume), {MODEL}, {TEACHER}, {CONFIG}, "
                       f"{RESULTS}")  # fmt: skip
    train.add_argument("--force", action="store_true", help="start over in an existing --out")
    train.add_argument("--json", action="store_true", help="print the results as one JSON object")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=train_command)
    mtl.set_defaults(func=lambda _: (mtl.print_help(), 2)[1])


def _config(args: argparse.Namespace) -> dict:
    """The run's settings, unset options resolved."""
    from graphrec.commands._training import refuse_unused

    refuse_unused(args, {f"--{o.replace('_', '-')}": ("--distill kd or crossdistil",
                                                      args.distill != "none")
                         for o in DISTILL_OPTIONS})  # fmt: skip
    recipe = mtl_recipe(args.dataset)
    dim = args.embedding_dim or MTL_MODELS.defaults(args.backbone)["embedding_dim"]
    distill = {} if args.distill == "none" else distill_recipe(args.dataset, args.distill)
    distill.update({o: getattr(args, o) for o in DISTILL_OPTIONS if getattr(args, o) is not None})
    given = {k: getattr(args, k) for k in RECIPE_OPTIONS}
    return {
        "dataset": args.dataset,
        "root": None if args.data_root is None else str(args.data_root),
        "backbone": args.backbone,
        "distill": args.distill,
        "distill_options": distill,
        "embedding_dim": dim,
        **{k: getattr(recipe, k) if v is None else v for k, v in given.items()},
        "seed": args.seed,
    }


def train_command(args: argparse.Namespace) -> int:
    """Run ``graphrec mtl train``."""
    import torch

    from graphrec.commands._training import prepare_run_folder, resume_error
    from graphrec.io.atomic import atomic_open, atomic_write_text
    from graphrec.io.checkpoint import CheckpointError, fingerprint
    from graphrec.models.mtl import build_mtl, evaluate_mtl, load_mtl_dataset, train_mtl

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    config = _config(args)
    t0 = time.perf_counter()
    data = load_mtl_dataset(args.dataset, args.data_root, seed=args.seed)
    split = data.split
    config["data_fingerprint"] = fingerprint(split.train, split.valid, split.test)
    resume = False
    if args.out is not None:
        resume = prepare_run_folder(args.out, config, force=args.force, checkpoint=CHECKPOINT,
                                    files=(MODEL, TEACHER, CONFIG, RESULTS))  # fmt: skip
        atomic_write_text(args.out / CONFIG, json.dumps(config, indent=1))
    model, distill = build_mtl(args.backbone, data.features, distill=args.distill,
                               distill_options=config["distill_options"] or None,
                               seed=args.seed, embedding_dim=config["embedding_dim"])  # fmt: skip
    load_s = time.perf_counter() - t0
    if resume and not args.json:
        print(f"resuming from {args.out / CHECKPOINT}")
    t0 = time.perf_counter()
    try:
        result = train_mtl(
            model, split.train, split.valid, distill=distill,
            **{name: config[name] for name in RECIPE_OPTIONS}, seed=args.seed, user=data.user,
            checkpoint=None if args.out is None else args.out / CHECKPOINT,
            progress=not (args.quiet or args.json),
        )  # fmt: skip
    except CheckpointError as exc:
        raise resume_error(exc) from None
    train_s = time.perf_counter() - t0
    test = evaluate_mtl(model, split.test, user=data.user)
    epoch_s = [h["train_s"] for h in result.history]
    parts = {name: getattr(split, name) for name in ("train", "valid", "test")}
    out = {
        "config": config,
        "tasks": list(data.tasks),
        "data": {k: {"rows": t.num_rows, "groups": t.group_counts()} for k, t in parts.items()},
        "parameters": sum(p.numel() for p in model.parameters()),
        "teacher_parameters": sum(p.numel() for p in distill.parameters()) if distill else 0,
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "stopped_early": result.stopped_early,
        "valid": result.best,
        "test": test,
        "train_s_per_epoch": sum(epoch_s) / len(epoch_s) if epoch_s else None,
        "load_s": load_s,
        "train_s": train_s,
        "history": result.history,
    }
    if args.out is not None:
        with atomic_open(args.out / MODEL, "wb") as f:
            torch.save(model.state_dict(), f)
        if distill is not None:
            with atomic_open(args.out / TEACHER, "wb") as f:
                torch.save(distill.state_dict(), f)
        atomic_write_text(args.out / RESULTS, json.dumps(out, indent=1))
    if args.json:
        print(json.dumps(out))
        return 0
    rows = [t.num_rows for t in parts.values()]
    print(f"dataset   {data.name}: {rows[0]:,} train / {rows[1]:,} valid / {rows[2]:,} test rows, "
          f"tasks {', '.join(data.tasks)}")  # fmt: skip
    teacher = f" + {out['teacher_parameters']:,} teacher" if distill is not None else ""
    print(f"model     {args.backbone}, distill {args.distill}, {out['parameters']:,} parameters"
          f"{teacher}, seed {args.seed}")  # fmt: skip
    print(f"training  {len(result.history)} epochs (best {result.best_epoch} by "
          f"{config['select']}), {out['train_s_per_epoch']:.2f} s/epoch, "
          f"{train_s:.1f} s")  # fmt: skip
    for name, m in (("valid", result.best), ("test", test)):
        tasks = "  ".join(f"{t} AUC {m[f'auc_{t}']:.4f} GAUC {m[f'gauc_{t}']:.4f}"
                          for t in data.tasks)  # fmt: skip
        print(f"{name:9s} {tasks}  Multi-AUC {m['multi_auc']:.4f}  NDCG {m['ndcg']:.4f}")
    if args.out is not None:
        print(f"wrote     {args.out / MODEL}, {args.out / RESULTS}")
    return 0
