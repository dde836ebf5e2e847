"""``graphrec export``: a trained model to ONNX or MNN, with an optional parity check."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from graphrec.commands._args import add_data_root, positive_int
from graphrec.errors import GraphrecError

#: The parity criteria of ``--check``: ``ATOL`` and ``FASTCOVER_RTOL`` are the defaults of
#: ``graphrec.export.check_parity`` and ``plan_fastcover`` (repeated here so that ``--help``
#: does not import torch; a test keeps them equal).
ATOL, FASTCOVER_RTOL, TOP_K, MIN_OVERLAP = 1e-5, 5e-6, 10, 0.9


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--min-overlap must be a number, got {text!r}") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"--min-overlap must be in (0, 1], got {value}")
    return value


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
        "to them (e.g. combinatorial/weights/fastcover_d2.pt; their SHA-256 must match "
        "weights.json). With --check, torch, onnxruntime and MNN are compared on inputs of 3, "
        "17 and 80 rows (FastCover: graphs of 12, 57 and 300 nodes), and every input set must "
        f"meet, in every runtime: (1) max |diff| <= {ATOL:g} for CTR, HIEN and CF models "
        f"(absolute); <= {ATOL:g} + {FASTCOVER_RTOL:g} x max |torch score| for FastCover "
        "(relative: its logits reach ~500, where float32 numbers are 3e-5 apart, so 1.4e-3 "
        "passes there); (2) every model graphrec exports is a scorer, so the runtime must "
        f"rank like torch: for every query, at least --min-overlap (default {MIN_OVERLAP:g}) "
        f"of its top --top-k (default {TOP_K}) is in torch's top k (a score tied with "
        "torch's k-th counts; k is capped at the number of candidates). A query is the batch "
        "of a CTR or HIEN model (its rows are the candidates), one user's item scores (CF), "
        "or one graph's node scores (FastCover). The report prints max |diff|, the allowed "
        "difference and the lowest top-k overlap; the exit status is 1 if a check fails.",
    )
    ex.add_argument("checkpoint", type=Path, metavar="CHECKPOINT")
    ex.add_argument("--to", required=True, choices=["onnx", "mnn"], help="target format")
    ex.add_argument("--check", action="store_true", help="run the parity check")
    ex.add_argument(
        "--top-k",
        type=positive_int("--top-k"),
        default=TOP_K,
        metavar="K",
        help=f"--check: how many top-ranked candidates per query to compare (default {TOP_K})",
    )
    ex.add_argument(
        "--min-overlap",
        type=_fraction,
        default=MIN_OVERLAP,
        metavar="F",
        help="--check: the least share of a query's top K that must be in torch's top K "
        f"(default {MIN_OVERLAP:g}: one of the top 10 may differ)",
    )
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
    add_data_root(ex, "the dataset a CTR or CF checkpoint was trained on, if not the recorded one")
    ex.add_argument(
        "--threads",
        type=positive_int("--threads"),
        default=1,
        help="CPU threads of torch, onnxruntime and MNN (default 1)",
    )
    ex.add_argument("--json", action="store_true", help="print one JSON object")
    ex.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``graphrec export``."""
    from graphrec.export.onnx import require_extra

    needed = ["onnx", "onnxscript"]
    if args.check:
        needed.append("onnxruntime")
    if args.to == "mnn":
        needed.append("MNN")
    require_extra("'graphrec export'", needed)

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
            plan.reference,
            exported,
            plan.parity_inputs,
            atol=ATOL,
            rtol=plan.rtol,
            top_k=args.top_k,
            min_overlap=args.min_overlap,
            threads=args.threads,
        )
        ok = report.ok
        result["parity"] = {
            "ok": ok,
            "criteria": report.criteria(),
            "atol": report.atol,
            "rtol": report.rtol,
            "top_k": report.top_k,
            "min_overlap": report.min_overlap,
            "max_abs_diff": {r: report.max_abs_diff(r) for r in report.runtimes},
            "min_top_k_overlap": {r: report.min_top_k_overlap(r) for r in report.runtimes},
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
