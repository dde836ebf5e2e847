"""``graphrec export``: a trained model to ONNX or MNN, with an optional parity check."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from graphrec.commands._args import positive_int
from graphrec.errors import GraphrecError


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``export`` subcommand to the top-level parser."""
    ex = sub.add_parser(
        "export",
        help="export a trained model to ONNX or MNN (mobile), with a parity check",
        description="Export a checkpoint to ONNX (dynamo exporter) or MNN (ONNX, then MNN's "
        "converter in a subprocess, after a pre-flight that refuses operators MNN runs "
        "wrongly). CHECKPOINT is a 'graphrec ctr train --out' folder (HIEN ships its "
        "tree-aggregated tables precomputed), a 'graphrec cf train' model file (exported as "
        "precomputed user/item tables + scoring) or FastCover weights with weights.json next "
        "to them (e.g. combinatorial/weights/fastcover_d2.pt). With --check, torch, "
        "onnxruntime and MNN are compared on inputs of 3, 17 and 80 rows (FastCover: graphs of "
        "12, 57 and 300 nodes) and the command fails unless max |diff| <= 1e-5.",
    )
    ex.add_argument("checkpoint", type=Path, metavar="CHECKPOINT")
    ex.add_argument("--to", required=True, choices=["onnx", "mnn"], help="target format")
    ex.add_argument("--check", action="store_true", help="run the parity check")
    ex.add_argument("--out", type=Path, help="output file (default: ./NAME.onnx or ./NAME.mnn)")
    ex.add_argument("--force", action="store_true", help="overwrite existing output files")
    ex.add_argument(
        "--aggregation",
        choices=["dense", "csr"],
        default="dense",
        help="FastCover: dense incidence (small graphs; onnxruntime and MNN) or host-sorted "
        "CSR (large graphs; onnxruntime only: MNN 3.6.1 converts it non-deterministically)",
    )
    ex.add_argument(
        "--max-segment",
        type=positive_int("--max-segment"),
        default=None,
        help="FastCover csr: the largest in-degree the exported softmax scan covers exactly",
    )
    ex.add_argument("--data-root", type=Path, help="dataset folder, if not the one of training")
    ex.add_argument("--threads", type=positive_int("--threads"), default=1)
    ex.add_argument("--json", action="store_true", help="print one JSON object")
    ex.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``graphrec export``."""
    import torch

    from graphrec.export import check_parity, export_mnn, export_onnx
    from graphrec.export.checkpoint import load_checkpoint

    torch.set_num_threads(args.threads)
    plan = load_checkpoint(
        args.checkpoint,
        data_root=args.data_root,
        aggregation=args.aggregation,
        max_segment=args.max_segment,
    )
    out = args.out if args.out is not None else Path(f"{plan.name}.{args.to}")
    if out.suffix != f".{args.to}":
        raise GraphrecError(f"--out {out}: expected a .{args.to} file for --to {args.to}")
    onnx_path = out.with_suffix(".onnx")
    targets = [onnx_path] + ([out] if args.to == "mnn" else [])
    existing = [str(p) for p in targets if p.exists()]
    if existing and not args.force:
        raise GraphrecError(f"{', '.join(existing)} exists; pass --force to overwrite")
    export_onnx(plan.module, plan.example, onnx_path, overwrite=True, **plan.export_kwargs)
    exported = {"onnx": onnx_path}
    if args.to == "mnn":
        exported["mnn"] = export_mnn(onnx_path, out, overwrite=True)
    result = {
        "checkpoint": str(args.checkpoint),
        "kind": plan.kind,
        "files": {k: str(v) for k, v in exported.items()},
        "bytes": {k: v.stat().st_size for k, v in exported.items()},
    }
    ok = True
    report = None
    if args.check:
        report = check_parity(
            plan.reference, exported, plan.parity_inputs, rtol=plan.rtol, threads=args.threads
        )
        ok = report.ok
        result["parity"] = {
            "ok": ok,
            "max_abs_diff": {r: report.max_abs_diff(r) for r in report.runtimes},
        }
    if args.json:
        print(json.dumps(result))
    else:
        for kind, path in exported.items():
            print(f"wrote {path} ({result['bytes'][kind]:,} bytes)")
        if report is not None:
            print(report)
            print("parity: " + ("ok" if ok else "FAILED"))
    return 0 if ok else 1
