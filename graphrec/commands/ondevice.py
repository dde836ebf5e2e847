"""``graphrec ondevice finetune``: per-user fine-tuning of a cloud CTR model, label correction."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator, MutableMapping, Sequence
from pathlib import Path

from graphrec.commands._args import add_data_root, nonnegative_int, positive_float, positive_int
from graphrec.errors import ConfigError
from graphrec.ondevice.correction import CORRECTIONS
from graphrec.ondevice.experiment import ONDEVICE_DATASETS
from graphrec.ondevice.protocol import FINETUNE_DEFAULTS, LAYERS, FineTuneConfig
from graphrec.ondevice.runtime import RUNTIMES
from graphrec.registry import CTR_MODELS

#: Files written under ``--out``: the cloud model (the checkpoint), one per finished method.
CLOUD, CONFIG, RESULTS = "cloud.pt", "config.json", "results.json"
METHOD_FILE = "method-{}.pt"
#: Every method a run can hold (cloud only, naive, the rules).
METHODS = ("cloud", "naive", *(c for c in CORRECTIONS if c != "none"))


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
    _add_dataset_model(p)
    p.add_argument("--correction", choices=CORRECTIONS, default="none",
                   help="label correction of the devices: none (naive), soft (A), flip (B, by "
                   "the cloud score), random (C), offset (D, logit offset) (default: "
                   "%(default)s)")  # fmt: skip
    p.add_argument("--layers", choices=LAYERS, default=None,
                   help="parameters tuned on the device: dense (outside the embeddings) or all "
                   f"(default: {FINETUNE_DEFAULTS.layers}; dense with --runtime mnn)")  # fmt: skip
    p.add_argument("--runtime", choices=RUNTIMES, default="torch",
                   help="where the devices fine-tune: torch (all users at once) or mnn (MNN's "
                   "training path, one user after the other, dense layers; needs the 'export' "
                   "extra) (default: %(default)s)")  # fmt: skip
    _add_device_sgd(p)
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
    p.add_argument("--out", type=Path,
                   help=f"folder for the cloud model ({CLOUD}), each finished method's "
                   f"scores, {CONFIG} and {RESULTS}; a rerun of the same command continues "
                   "from them")  # fmt: skip
    p.add_argument("--force", action="store_true", help="start over in an existing --out")
    p.set_defaults(func=finetune_command)
    _register_coda(group_sub)
    group.set_defaults(func=lambda _: (group.print_help(), 2)[1])


def _add_dataset_model(p: argparse.ArgumentParser) -> None:
    """``--dataset``, ``--data-root`` and ``--model`` of ``finetune`` and ``coda``."""
    p.add_argument("--dataset", required=True, choices=ONDEVICE_DATASETS)
    add_data_root(p, "amazon-users or ml-100k")
    p.add_argument("--model", required=True, choices=CTR_MODELS.names())


def _add_device_sgd(p: argparse.ArgumentParser) -> None:
    """``--epochs`` and ``--lr`` of the devices' fine-tuning (``finetune`` and ``coda``)."""
    p.add_argument("--epochs", type=nonnegative_int("--epochs"), default=FINETUNE_DEFAULTS.epochs,
                   help="fine-tuning epochs per user (default: %(default)s)")  # fmt: skip
    p.add_argument("--lr", type=positive_float("--lr"), default=FINETUNE_DEFAULTS.lr,
                   help="SGD step size (default: %(default)s)")  # fmt: skip


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
    _add_dataset_model(p)
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
    p.add_argument("--top-factor", type=bounded_float("--top-factor", minimum=0.0),
                   default=d.top_factor,
                   help="alpha: keep the top ceil(alpha |local|); 0: use --tau instead "
                   "(default: %(default)s)")  # fmt: skip
    p.add_argument("--weight", type=bounded_float("--weight", minimum=0.0), default=d.weight,
                   help="lambda: weight of a kept candidate (default: %(default)s)")  # fmt: skip
    p.add_argument("--weighting", choices=WEIGHTINGS, default=d.weighting,
                   help="constant (lambda) or score (lambda * classifier score) "
                   "(default: %(default)s)")  # fmt: skip
    p.add_argument("--layers", choices=LAYERS, default=None,
                   help="parameters tuned on the device "
                   f"(default: {FINETUNE_DEFAULTS.layers}; dense with --runtime mnn)")  # fmt: skip
    p.add_argument("--runtime", choices=RUNTIMES, default="torch",
                   help="where devices fine-tune: torch (all at once) or mnn (MNN's "
                   "training path, dense layers; needs the export extra) (default: "
                   "%(default)s)")  # fmt: skip
    _add_device_sgd(p)
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the cloud model, the data, the negatives and the order "
                   "(default: %(default)s)")  # fmt: skip
    p.add_argument("--threads", type=positive_int("--threads"), default=None,
                   help="torch CPU threads (default: torch's choice)")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the results as one JSON object")
    p.add_argument("--out", type=Path,
                   help=f"folder for the cloud model ({CLOUD}), {CONFIG} and {RESULTS}; a "
                   "rerun of the same command reuses the saved cloud model (the four methods "
                   "run again: no per-method files)")  # fmt: skip
    p.add_argument("--force", action="store_true", help="start over in an existing --out")
    p.set_defaults(func=coda_command)


def _runtime_layers(args: argparse.Namespace, action: str) -> str:
    """The tuned layers of ``--layers``/``--runtime``; MNN needs its extra and dense layers."""
    if args.runtime == "mnn":
        from graphrec.export.onnx import require_extra

        require_extra(f"'graphrec ondevice {action} --runtime mnn'")
        if args.layers == "all":
            raise ConfigError("--runtime mnn tunes the dense layers: --layers must be dense")
    return args.layers or ("dense" if args.runtime == "mnn" else FINETUNE_DEFAULTS.layers)


def coda_command(args: argparse.Namespace) -> int:
    """Run ``graphrec ondevice coda``."""
    from dataclasses import asdict, replace

    import torch

    from graphrec.ondevice.coda import CODA_DEFAULTS, run_coda
    from graphrec.ondevice.experiment import load_ondevice_data

    layers = _runtime_layers(args, "coda")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    options = ("key", "k_factor", "budget_bytes", "classifier", "tau", "top_factor", "weight",
               "weighting")  # fmt: skip
    chosen = {k: getattr(args, k) for k in options}
    chosen["top_factor"] = chosen["top_factor"] or None  # 0: select by --tau
    config = replace(CODA_DEFAULTS, **chosen)
    finetune = FineTuneConfig(layers, args.epochs, args.lr, FINETUNE_DEFAULTS.batch_size)
    start = time.perf_counter()
    data = load_ondevice_data(args.dataset, args.data_root, seed=args.seed)
    cloud, cloud_s = None, None
    if args.out is not None:
        options = {"runtime": args.runtime, "coda": asdict(config), "finetune": asdict(finetune)}
        cloud, cloud_s = _resume_cloud(args, data, options, files=())
    if cloud is None:
        cloud, cloud_s = _train_cloud(args, data, start)
    elif not args.json:
        print(f"resuming from {args.out} (cloud model saved)")
    report = run_coda(cloud, data, config=config, finetune=finetune, seed=args.seed,
                      progress=not (args.quiet or args.json), runtime=args.runtime)  # fmt: skip
    report = {"model": args.model, "seed": args.seed, "cloud_train_s": cloud_s} | report
    _write_results(args, report)
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
    from dataclasses import asdict

    import torch

    from graphrec.ondevice.experiment import load_ondevice_data, run_finetune

    layers = _runtime_layers(args, "finetune")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    data = load_ondevice_data(args.dataset, args.data_root, seed=args.seed)
    config = FineTuneConfig(layers, args.epochs, args.lr, args.batch_size)
    cloud, cloud_s, cache = None, None, None
    if args.out is not None:
        options = {"correction": args.correction, "runtime": args.runtime, **asdict(config)}
        files = [METHOD_FILE.format(m) for m in METHODS]
        cloud, cloud_s = _resume_cloud(args, data, options, files)
        cache = _MethodFiles(args.out)
    if cloud is None:
        cloud, cloud_s = _train_cloud(args, data, start)
    elif not args.json:
        print(f"resuming from {args.out} (cloud model saved; finished methods: "
              f"{', '.join(m for m in METHODS if m in cache) or 'none'})")  # fmt: skip
    report = run_finetune(cloud, data, correction=args.correction, config=config, seed=args.seed,
                          cache=cache, runtime=args.runtime, progress=not args.json)  # fmt: skip
    report = {"model": args.model, "seed": args.seed, "cloud_train_s": cloud_s} | report
    _write_results(args, report)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{args.dataset}, {args.model}: {report['users']} users, global share "
          f"{report['global_share']:.3f}, cloud model trained in {cloud_s:.1f} s")  # fmt: skip
    c = report["config"]
    print(f"fine-tuning in {report['runtime']}: layers {c['layers']}, {c['epochs']} epochs, "
          f"SGD lr {c['lr']:g}, batch {c['batch_size'] or 'all'}")  # fmt: skip
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


def _resume_cloud(args: argparse.Namespace, data, options: dict, files: Sequence[str]):
    """Prepare ``--out`` for a run of ``args.dataset``, ``args.model``, ``args.seed`` and the
    command's ``options`` (config.json); the saved cloud model and its training seconds when
    the same configuration is resumed, else None, None (``files``, results of an earlier,
    unfinished run without its cloud model, removed)."""
    from graphrec.commands._training import prepare_run_folder, resume_error
    from graphrec.io.atomic import atomic_write_text
    from graphrec.io.checkpoint import CheckpointError, fingerprint, load_checkpoint
    from graphrec.models.ctr.experiment import build_ctr_model

    split = data.ctr.split
    run = {
        "dataset": args.dataset,
        "root": None if args.data_root is None else str(args.data_root),
        "model": args.model,
        **options,
        "seed": args.seed,
        "data_fingerprint": fingerprint(split.train, split.valid, split.test, data.local),
    }
    resume = prepare_run_folder(args.out, run, force=args.force, checkpoint=CLOUD,
                                files=(*files, CONFIG, RESULTS))  # fmt: skip
    atomic_write_text(args.out / CONFIG, json.dumps(run, indent=1))
    if not resume:
        for name in files:
            (args.out / name).unlink(missing_ok=True)
        return None, None
    try:
        state = load_checkpoint(args.out / CLOUD, keys=("cloud_train_s",), records=("model",),
                                what="graphrec ondevice cloud model")  # fmt: skip
    except CheckpointError as exc:
        raise resume_error(exc) from None
    cloud = build_ctr_model(args.model, data.ctr, seed=args.seed)
    cloud.load_state_dict(state["model"])
    return cloud, state["cloud_train_s"]


def _train_cloud(args: argparse.Namespace, data, start: float):
    """The cloud model, trained, and the seconds since ``start``; saved (atomically) to
    ``--out``'s cloud.pt when given."""
    from graphrec.ondevice.experiment import train_cloud

    cloud = train_cloud(args.model, data, seed=args.seed)
    cloud_s = time.perf_counter() - start
    if args.out is not None:
        from graphrec.io.checkpoint import save_checkpoint

        save_checkpoint({"model": cloud.state_dict(), "cloud_train_s": cloud_s},
                        args.out / CLOUD)  # fmt: skip
    return cloud, cloud_s


def _write_results(args: argparse.Namespace, report: dict) -> None:
    """Write ``--out``'s results.json (atomically) when given: the run is finished."""
    if args.out is not None:
        from graphrec.io.atomic import atomic_write_text

        atomic_write_text(args.out / RESULTS, json.dumps(report, indent=1))


class _MethodFiles(MutableMapping):
    """A run folder's finished methods (name -> scores and seconds), one checkpoint file each,
    written atomically when set."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, name: str) -> Path:
        return self.folder / METHOD_FILE.format(name)

    def __contains__(self, name: object) -> bool:
        return name in METHODS and self._path(str(name)).exists()

    def __getitem__(self, name: str):
        from graphrec.commands._training import resume_error
        from graphrec.io.checkpoint import CheckpointError, load_checkpoint
        from graphrec.ondevice.protocol import UserScores

        if name not in self:
            raise KeyError(name)
        what = "graphrec ondevice method result"
        try:
            state = load_checkpoint(self._path(name), keys=("seconds",), records=("scores",),
                                    what=what)  # fmt: skip
            scores = UserScores(**{k: v.numpy() for k, v in state["scores"].items()})
        except CheckpointError as exc:
            raise resume_error(exc) from None
        except (TypeError, AttributeError):  # other fields, or no tensors
            raise resume_error(CheckpointError(f"{self._path(name)} is not a {what}")) from None
        return scores, state["seconds"]

    def __setitem__(self, name: str, value) -> None:
        from dataclasses import fields

        import torch

        from graphrec.io.checkpoint import save_checkpoint

        scores, seconds = value
        arrays = {f.name: getattr(scores, f.name) for f in fields(scores)}
        state = {k: torch.from_numpy(v) for k, v in arrays.items() if v is not None}
        save_checkpoint({"scores": state, "seconds": seconds}, self._path(name))

    def __delitem__(self, name: str) -> None:
        if name not in self:
            raise KeyError(name)
        self._path(name).unlink()

    def __iter__(self) -> Iterator[str]:
        return (m for m in METHODS if m in self)

    def __len__(self) -> int:
        return sum(1 for _ in self)
