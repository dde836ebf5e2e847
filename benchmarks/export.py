"""Mobile export: latency of one inference in torch eager, onnxruntime and MNN, and file sizes.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/export.py`` (writes
benchmarks/results/export.json and the ``export`` table of BENCHMARKS.md).

Models: FastCover (the shipped d=2 GRAT weights; dense aggregation on a 300-node graph, CSR
aggregation on a 20,000-node graph, which the pre-flight refuses for MNN), MF and LightGCN
scoring of all MovieLens-100K items (precomputed tables, 64-d; LightGCN with 3 layers), and
the five CTR models plus HIEN+DIN with the recipes of ``graphrec.models.ctr.experiment`` on
the synthetic CTR data (16-d embeddings). Weights are untrained (latency and file size do
not depend on training) except FastCover's. Every exported model first passes the parity
gate (max |diff| is recorded). One CPU thread for every runtime; the median of ``--repeat``
runs after two warm-up runs; the MNN time includes turning the numpy inputs into MNN
variables.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as bench  # noqa: E402

from graphrec.export import (  # noqa: E402
    ExportError,
    MNNModel,
    check_parity,
    export_mnn,
    export_onnx,
)
from graphrec.export.checkpoint import ExportPlan, plan_cf, plan_ctr, plan_fastcover  # noqa: E402
from graphrec.export.onnx import FlatInputs, flatten_inputs  # noqa: E402
from graphrec.export.parity import _ort_session, run_onnxruntime  # noqa: E402

CTR_MODELS = ("lr", "widedeep", "deepfm", "dcn", "din")
CTR_BATCH = 256  # a typical ranking request
CF_BATCH = 64  # users scored against every item


def _median_ms(fn, repeat: int) -> float:
    """Median milliseconds of ``repeat`` calls after two warm-up calls."""
    return 1e3 * bench.median_time(fn, repeat, warmup=2)


def _plans(args: argparse.Namespace) -> list[tuple[ExportPlan, list[tuple[str, object]]]]:
    """Plans with their timed input sets ``(label, inputs)``."""
    from combinatorial.gnn import load_pretrained
    from graphrec.models.cf import CFConfig, build_backbone
    from graphrec.models.cf.data import load_cf_graph
    from graphrec.models.ctr.experiment import build_ctr_model, load_ctr_dataset

    out = []
    fastcover = load_pretrained(2)
    dense = plan_fastcover(fastcover, aggregation="dense", name="fastcover_d2_dense")
    out.append((dense, [("300 nodes / 1,200 edges", dense.make_inputs(300, 11, 1200))]))
    csr = plan_fastcover(fastcover, aggregation="csr", max_segment=1024, name="fastcover_d2_csr")
    out.append((csr, [("20,000 nodes / 80,000 edges", csr.make_inputs(20_000, 12, 80_000))]))

    graph = load_cf_graph("ml-100k", root=bench.data_root() / "movielens" / "ml-100k")
    for backbone in ("mf", "lightgcn"):
        torch.manual_seed(0)
        model = build_backbone(graph, CFConfig(backbone=backbone, embedding_dim=64, num_layers=3))
        plan = plan_cf(model.eval(), f"{backbone}_scoring")
        out.append((plan, [(f"{b} user(s) x {graph.num_items} items", plan.make_inputs(b, 7))
                           for b in (1, CF_BATCH)]))  # fmt: skip

    data = load_ctr_dataset("synthetic", seed=0)
    for name in CTR_MODELS:
        for hien in (False, True) if name == "din" else (False,):
            model = build_ctr_model(name, data, hien=hien, embedding_dim=16, seed=0)
            plan = plan_ctr(model, data.split.test, f"hien_{name}" if hien else name)
            out.append((plan, [(f"batch {b}", plan.make_inputs(b, 7)) for b in (1, CTR_BATCH)]))
    return out


def _runners(plan: ExportPlan, folder: Path) -> tuple[dict, dict, float]:
    onnx_path = export_onnx(plan.module, plan.example, folder / f"{plan.name}.onnx",
                            **plan.export_kwargs)  # fmt: skip
    exported = {"onnx": onnx_path}
    try:
        exported["mnn"] = export_mnn(onnx_path, folder / f"{plan.name}.mnn")
    except ExportError as exc:  # the pre-flight refuses CSR graphs for MNN
        print(f"{plan.name}: no MNN model ({str(exc).splitlines()[0][:100]}...)")
    sizes = {k: v.stat().st_size for k, v in exported.items()}
    report = check_parity(plan.reference, exported, plan.parity_inputs, rtol=plan.rtol)
    report.raise_for_failures()
    runners = {"session": _ort_session(onnx_path, 1)}
    if "mnn" in exported:
        runners["mnn"] = MNNModel(exported["mnn"], onnx_path=onnx_path)
    return runners, sizes, report.max_abs_diff()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50, help="timed runs per measurement")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for plan, timed in _plans(args):
            runtimes, sizes, diff = _runners(plan, Path(tmp))
            module = plan.module.eval()
            for label, inputs in timed:
                names, tensors, takes_dict = flatten_inputs(
                    inputs,
                    None if isinstance(inputs, dict) else plan.export_kwargs.get("input_names"),
                )
                flat = FlatInputs(module, names, takes_dict)
                feeds = dict(zip(names, tensors))
                # the largest graph: fewer runs
                repeat = max(5, args.repeat // 10) if tensors[0].shape[0] > 10_000 else args.repeat

                def eager(flat=flat, tensors=tensors):
                    with torch.no_grad():
                        return flat(*tensors)

                row = {
                    "model": plan.name,
                    "input": label,
                    "torch_ms": _median_ms(eager, repeat),
                    "onnxruntime_ms": _median_ms(
                        lambda s=runtimes["session"], f=feeds: run_onnxruntime(s, f), repeat
                    ),
                    "mnn_ms": _median_ms(lambda m=runtimes["mnn"], f=feeds: m(f), repeat)
                    if "mnn" in runtimes
                    else None,
                    "onnx_bytes": sizes["onnx"],
                    "mnn_bytes": sizes.get("mnn"),
                    "max_abs_diff": diff,
                    "repeat": repeat,
                }
                rows.append(row)
                print(f"{plan.name:22s} {label:28s} " + "  ".join(
                    f"{k} {row[f'{k}_ms']:8.3f} ms" for k in ("torch", "onnxruntime", "mnn")
                    if row[f"{k}_ms"] is not None), flush=True)  # fmt: skip
    command = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/export.py" + (
        f" --repeat {args.repeat}" if args.repeat != 50 else ""
    )
    bench.write_results("export", {"machine": bench.machine(), "command": command, "rows": rows})
    lines = [
        "## Mobile export: torch eager vs onnxruntime vs MNN",
        "",
        f"Command: `{command}`; machine: {bench.machine()} (1-min load average at the end: "
        f"{bench.load_average():.1f}); one thread per "
        "runtime; median of the timed runs after two warm-ups, milliseconds per inference. "
        "`x torch` = torch eager time / runtime time (the baseline is torch eager in the same "
        "run). Every model passed the parity gate first (max |diff| vs torch on 3 other "
        "sizes; FastCover relative to its logits of up to ~500). FastCover's torch time is the "
        "training path (PyG scatter); the exported graphs use the dense incidence matmul "
        "(O(nodes x edges)) or the CSR form, so they are slower than torch on CPU: they exist "
        "to be correct on the device. MF/LightGCN/CTR inputs are the same tensors in all "
        "three runtimes.",
        "",
    ]
    table = []
    for r in rows:
        t = r["torch_ms"]
        mnn = (
            "refused (csr)"
            if r["mnn_ms"] is None
            else f"{r['mnn_ms']:.3f} ({bench.ratio(t, r['mnn_ms'], '.2g')})"
        )
        mnn_kb = "-" if r["mnn_bytes"] is None else f"{r['mnn_bytes'] / 1024:.0f}"
        table.append([
            r["model"], r["input"], f"{t:.3f}",
            f"{r['onnxruntime_ms']:.3f} ({bench.ratio(t, r['onnxruntime_ms'], '.2g')})", mnn,
            f"{r['onnx_bytes'] / 1024:.0f}", mnn_kb, f"{r['max_abs_diff']:.1e}",
        ])  # fmt: skip
    header = ["model", "input", "torch eager", "onnxruntime (x torch)", "MNN (x torch)",
              ".onnx KB", ".mnn KB", "parity max abs diff"]  # fmt: skip
    bench.update_benchmarks_md("export", "\n".join(lines) + "\n" + bench.md_table(header, table))


if __name__ == "__main__":
    main()
