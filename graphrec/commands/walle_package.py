"""``graphrec walle package build | verify | run``: Walle task packages from the command line."""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path
from typing import Any

from graphrec.commands._args import add_data_root, positive_float, positive_int

#: The parity tolerance of ``build`` (``graphrec.export.parity.PARITY_ATOL``; repeated here so
#: that ``--help`` does not import torch).
ATOL = 1e-5


def register(group_sub: argparse._SubParsersAction) -> None:
    """Add ``package`` and its actions to the ``walle`` group."""
    from graphrec.registry import CTR_MODELS

    pkg = group_sub.add_parser(
        "package",
        help="build, verify and run Walle task packages (model + configuration, checksummed)",
        description="A task package is a folder, or a .tar archive, holding a CTR model as "
        "model.onnx and model.mnn, its pre-processing (features.json, vocab.json), its "
        "post-processing and trigger definitions (task.json) and manifest.json (name, "
        "version, graphrec version, parity record, sha256 and size of every file).",
    )
    actions = pkg.add_subparsers(dest="package_command", metavar="ACTION")
    pkg.set_defaults(func=lambda _: (pkg.print_help(), 2)[1])

    build = actions.add_parser(
        "build",
        help="export a CTR model into a task package, behind the parity gate",
        description="Take a 'graphrec ctr train --out' folder (--checkpoint) or train a CTR "
        "model (--model, --dataset: the dataset's training recipe, --epochs to shorten it), "
        "export it to ONNX and MNN, and write the package only if the parity gate passes: "
        f"max |diff| <= --atol (default {ATOL:g}) between torch and onnxruntime and between "
        "torch and MNN (run in MNN itself) on 3, 17 and 80 rows. The package's "
        "pre-processing pads sequences to their width in the training table.",
    )
    build.add_argument("--out", type=Path, required=True, metavar="PKG",
                       help="package folder, or a .tar archive")  # fmt: skip
    build.add_argument("--checkpoint", type=Path, metavar="DIR",
                       help="a 'graphrec ctr train --out' folder")  # fmt: skip
    build.add_argument("--model", choices=CTR_MODELS.names(), help="train this CTR model")
    build.add_argument("--dataset", metavar="DATASET",
                       help="ml-100k | amazon-users | synthetic | walle-synthetic (samples of "
                       "synthetic app-event streams, for 'graphrec walle device') | PATH (with "
                       "--model)")  # fmt: skip
    add_data_root(build, "the dataset (ml-100k, amazon-users) or of the checkpoint's data")
    build.add_argument("--epochs", type=positive_int("--epochs"),
                       help="--model: most training epochs (default: the recipe's)")  # fmt: skip
    build.add_argument("--seed", type=int, default=0,
                       help="--model: seed of data and weights (default: %(default)s)")  # fmt: skip
    build.add_argument("--name", help="package name (default: the model's name)")
    build.add_argument("--version", default="1.0.0",
                       help="package version MAJOR.MINOR.PATCH (default: %(default)s)")  # fmt: skip
    build.add_argument("--identity", action="store_true",
                       help="post-processing keeps the logit (default: sigmoid)")  # fmt: skip
    build.add_argument("--threshold", type=float,
                       help="post-processing: label = score >= THRESHOLD")  # fmt: skip
    build.add_argument("--top-k", type=positive_int("--top-k"),
                       help="post-processing: the K highest-scored rows of a request")  # fmt: skip
    build.add_argument("--triggers", type=Path, metavar="FILE",
                       help="JSON task file, as for 'graphrec walle run-events --triggers': "
                       '{"events": {name: id}, "tasks": [{"name", "triggers", "extract", '
                       '"window"}]}')  # fmt: skip
    build.add_argument("--atol", type=positive_float("--atol"), default=ATOL,
                       help="parity tolerance on max |diff| (default: %(default)g)")  # fmt: skip
    build.add_argument("--force", action="store_true", help="replace an existing --out")
    build.add_argument("--json", action="store_true", help="print one JSON object")
    build.set_defaults(func=build_command)

    verify = actions.add_parser(
        "verify",
        help="check a package: manifest, every file's size and sha256, configuration",
        description="Load a package as a device would and report it; a tampered, incomplete "
        "or malformed package is refused with the file named (exit status 2).",
    )
    verify.add_argument("package", type=Path, metavar="PKG")
    verify.add_argument("--json", action="store_true", help="print one JSON object")
    verify.set_defaults(func=verify_command)

    run = actions.add_parser(
        "run",
        help="run packages' tasks concurrently on raw feature rows; per-stage latency",
        description="Load the packages, then run every task on the rows of --input, each in "
        "its own thread with its own model session: pre-processing (raw values -> model "
        "inputs), the model (MNN; onnxruntime where MNN is not installed, or with --runtime) "
        "and post-processing. --input is a CSV file with a header (e.g. a FuxiCTR Taobao "
        "sample) or JSON lines, one {column: value} object per row. A failing task is "
        "reported and the others go on (exit status 1 if any failed).",
    )
    run.add_argument("packages", type=Path, nargs="+", metavar="PKG")
    run.add_argument("--input", type=Path, required=True, metavar="FILE",
                     help="raw rows: .csv with a header, or .jsonl")  # fmt: skip
    run.add_argument("--rows", type=positive_int("--rows"),
                     help="use the first ROWS rows (default: all)")  # fmt: skip
    run.add_argument("--runtime", choices=["auto", "mnn", "onnxruntime"], default="auto",
                     help="model runtime (default: %(default)s: MNN if installed)")  # fmt: skip
    run.add_argument("--repeat", type=positive_int("--repeat"), default=1,
                     help="run the requests N times; median latencies (default: 1)")  # fmt: skip
    run.add_argument("--json", action="store_true", help="print one JSON object")
    run.set_defaults(func=run_command)


def _read_rows(path: Path, limit: int | None) -> list[dict[str, Any]]:
    """Raw rows of a CSV file with a header, or of JSON lines."""
    from graphrec.errors import InputFormatError

    rows: list[dict[str, Any]] = []
    with open(path, newline="", encoding="utf-8") as f:
        if path.suffix == ".csv":
            rows = list(csv.DictReader(f))
        else:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputFormatError(f"is not valid JSON ({exc.msg})", path=path,
                                           line=line_no, content=line) from None  # fmt: skip
                if not isinstance(row, dict):
                    raise InputFormatError("is not a JSON object", path=path, line=line_no,
                                           content=line, expected="{column: value}")  # fmt: skip
                rows.append(row)
    rows = rows[:limit] if limit is not None else rows
    if not rows:
        raise InputFormatError("has no rows", path=path, expected="at least one row")
    return rows


def _summary(package: Any) -> dict[str, Any]:
    m = package.manifest
    return {
        "package": package.source,
        "name": m["name"],
        "version": m["version"],
        "created_by": m["created_by"],
        "model": m["model"]["class"],
        "inputs": len(m["model"]["inputs"]),
        "postprocess": package.task["postprocess"],
        "triggers": package.triggers,
        "parity": m["parity"],
        "files": m["files"],
    }


def _print_summary(info: dict[str, Any]) -> None:
    diffs = ", ".join(f"{r} {d:.3g}" for r, d in info["parity"]["max_abs_diff"].items())
    print(f"{info['package']}: {info['name']} {info['version']} ({info['model']}, "
          f"{info['inputs']} inputs), built by {info['created_by']}")  # fmt: skip
    print(f"parity max |diff| vs torch: {diffs} (atol {info['parity']['atol']:g}, "
          f"batches {info['parity']['batches']})")  # fmt: skip
    post = {k: v for k, v in info["postprocess"].items() if v is not None}
    tasks = [t["name"] for t in info["triggers"]["tasks"]]
    print(f"post-processing {post}; trigger tasks: {', '.join(tasks) or 'none'}")
    for name, entry in info["files"].items():
        print(f"  {name:<14} {entry['size']:>9,} bytes  sha256 {entry['sha256'][:16]}...")


def build_command(args: argparse.Namespace) -> int:
    """Run ``graphrec walle package build``."""
    from graphrec.errors import ConfigError, GraphrecError
    from graphrec.export.onnx import require_extra

    if (args.checkpoint is None) == (args.model is None):
        raise ConfigError("give either --checkpoint DIR or --model with --dataset")
    if args.model is not None and args.dataset is None:
        raise ConfigError("--model needs --dataset")
    if args.checkpoint is not None and (args.dataset is not None or args.epochs is not None):
        raise ConfigError("--dataset and --epochs go with --model, not with --checkpoint")
    if (args.out.exists() or args.out.is_symlink()) and not args.force:
        raise GraphrecError(f"--out {args.out} exists; pass --force to replace it")
    post = {"activation": "identity" if args.identity else "sigmoid",
            "threshold": args.threshold, "top_k": args.top_k}  # fmt: skip
    triggers = None
    if args.triggers is not None:
        try:
            triggers = json.loads(args.triggers.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--triggers {args.triggers} is not valid JSON ({exc})") from None
    require_extra("'graphrec walle package build'")

    from dataclasses import asdict

    from graphrec.ondevice.walle.package import build_package

    if args.checkpoint is not None:
        from graphrec.export.checkpoint import load_ctr_checkpoint

        model, data, config = load_ctr_checkpoint(args.checkpoint, args.data_root)
        name = config["model"]
    else:
        from graphrec.models.ctr import train_ctr
        from graphrec.models.ctr.defaults import train_recipe
        from graphrec.models.ctr.experiment import build_ctr_model, load_ctr_dataset

        if args.dataset == "walle-synthetic":  # app-event samples of synthetic devices
            from graphrec.ondevice.walle.device import walle_ctr_dataset

            data = walle_ctr_dataset(seed=args.seed)
        else:
            data = load_ctr_dataset(args.dataset, args.data_root, seed=args.seed)
        model = build_ctr_model(args.model, data, seed=args.seed)
        recipe = asdict(train_recipe(args.dataset))
        if args.epochs is not None:
            recipe["epochs"] = args.epochs
        train_ctr(model, data.split.train, data.split.valid, seed=args.seed,
                  progress=not args.json, **recipe)  # fmt: skip
        name = args.model
    package = build_package(model, data.split.train, args.out, name=args.name or name,
                            version=args.version, postprocess=post, triggers=triggers,
                            atol=args.atol, overwrite=args.force)  # fmt: skip
    info = _summary(package)
    if args.json:
        print(json.dumps(info))
    else:
        print(f"wrote {args.out}")
        _print_summary(info)
    return 0


def verify_command(args: argparse.Namespace) -> int:
    """Run ``graphrec walle package verify``."""
    from graphrec.ondevice.walle.package import load_package

    info = _summary(load_package(args.package)) | {"ok": True}
    if args.json:
        print(json.dumps(info))
    else:
        _print_summary(info)
        print("ok: manifest, sizes, sha256 and configuration verified")
    return 0


def run_command(args: argparse.Namespace) -> int:
    """Run ``graphrec walle package run``."""
    from graphrec.export.onnx import require_extra
    from graphrec.ondevice.walle.package import TaskRunner

    rows = _read_rows(args.input, args.rows)
    require_extra("'graphrec walle package run'", ["onnxruntime"])
    with TaskRunner(args.packages, runtime=args.runtime) as runner:
        requests = {name: rows for name in runner.tasks}
        runs = [runner.run(requests) for _ in range(args.repeat)]
    report: dict[str, Any] = {"input": str(args.input), "rows": len(rows), "repeat": args.repeat,
                              "tasks": {}}  # fmt: skip
    for name in requests:
        outcomes = [r[name] for r in runs]
        first, failed = outcomes[0], [o for o in outcomes if not o.ok]
        stages = {s: [o.latency_ms[s] for o in outcomes if s in o.latency_ms]
                  for s in ("pre", "model", "post")}  # fmt: skip
        report["tasks"][name] = {
            "runtime": first.runtime,
            "ok": not failed,
            "error": failed[0].error if failed else "",
            "latency_ms_median": {s: statistics.median(v) for s, v in stages.items() if v},
            "latency_ms_first": first.latency_ms,
            "output": None if first.output is None
            else {k: v.tolist() for k, v in first.output.items()},
        }  # fmt: skip
    ok = all(t["ok"] for t in report["tasks"].values())
    if args.json:
        print(json.dumps(report))
        return 0 if ok else 1
    print(f"{args.input}: {len(rows):,} rows, {len(requests)} task(s) at once (a thread "
          f"each), {args.repeat} time(s)")  # fmt: skip
    for name, t in report["tasks"].items():
        if not t["ok"]:
            print(f"{name}: FAILED ({t['runtime']}): {t['error']}")
            continue
        lat = "  ".join(f"{s} {v:.3f}" for s, v in t["latency_ms_median"].items())
        print(f"{name} ({t['runtime']}): median ms per request: {lat}")
        out = t["output"]
        scores = out["score"]
        line = f"  scores: mean {statistics.fmean(scores):.4f}, first {scores[0]:.4f}"
        if "label" in out:
            line += f"; labels: {sum(out['label'])} of {len(scores)} positive"
        if "top_k" in out:
            line += f"; top {len(out['top_k'])} rows: {out['top_k']}"
        print(line)
    return 0 if ok else 1
