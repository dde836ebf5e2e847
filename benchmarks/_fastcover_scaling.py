"""Part (b) of ``benchmarks/fastcover.py``: scaling on power-law digraphs, one process per run."""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as bench
import _fastcover_base as base
import numpy as np
from _fastcover_base import GIB, LOADS, MIB, command, gnn, load_model, load_note, publish
from tqdm import tqdm

from combinatorial import adjacency, coverage, estimate_closure_bytes, greedy, ris_greedy

#: The script whose ``--child`` option runs one measurement (:func:`child`).
SCRIPT = Path(__file__).resolve().with_name("fastcover.py")
SCALING_NS = (10_000, 100_000, 1_000_000, 2_000_000)
OPTIONAL_ABOVE = 1_000_000  # larger scaling sizes run only if memory allows
QUICK_NS = (10_000, 100_000)
SCALING_K = 128
SCALING_DEGREE = 10


def child(spec: dict) -> dict:
    """One measurement of part (b) in this (fresh) process; returns its JSON result."""
    task = spec["task"]
    if task == "generate":
        datasets = importlib.import_module("graphrec.datasets")
        t0 = time.perf_counter()
        data = datasets.powerlaw_digraph(spec["n"], SCALING_DEGREE, seed=0)
        t = time.perf_counter() - t0
        ei = data.edge_index.numpy()
        np.save(spec["path"], ei)
        return {"time_s": t, "m": int(ei.shape[1]), "peak_mib": bench.peak_mib()}
    t0 = time.perf_counter()
    ei = np.load(spec["path"])
    n, d, k = spec["n"], spec["d"], spec["k"]
    out: dict[str, Any] = {}
    if task == "fastcover":
        torch = importlib.import_module("torch")
        edge_index = torch.from_numpy(ei)
        out["load_s"] = time.perf_counter() - t0
        out["input_mib"] = bench.peak_mib()
        fc = gnn()
        model = load_model(d, spec["weights_dir"])
        chain = torch.stack([torch.arange(99), torch.arange(1, 100)])
        fc.scores(model, chain, 100)  # torch's one-time setup, untimed
        t0 = time.perf_counter()
        seeds = fc.fastcover_seeds(edge_index, n, k, d, model=model)
        out["time_s"] = time.perf_counter() - t0
        out["peak_mib"] = bench.peak_mib()
        out["covered"] = coverage(adjacency(ei, n), seeds, d)
        return out
    A = adjacency(ei, n)
    del ei
    out["load_s"] = time.perf_counter() - t0
    out["input_mib"] = bench.peak_mib()
    if task == "ris":
        t0 = time.perf_counter()
        sol = ris_greedy(A, k, d)
        out.update(time_s=time.perf_counter() - t0, samples=sol.info["samples"])
    else:  # closure greedy
        est = estimate_closure_bytes(A, d)
        out["estimate_gib"] = est / GIB
        if est > spec["budget"]:
            out["refused"] = True
            return out
        t0 = time.perf_counter()
        sol = greedy(A, k, d, max_bytes=None)
        out.update(time_s=time.perf_counter() - t0, closure_s=sol.timings["closure"])
    out["peak_mib"] = bench.peak_mib()
    out["covered"] = sol.covered
    return out


def spawn(spec: dict, timeout: float) -> dict:
    """Run :func:`child` in a subprocess; a failure or timeout becomes ``{"error": ...}``."""
    cmd = [
        sys.executable,
        str(SCRIPT),
        "--threads",
        str(base.THREADS),
        "--child",
        json.dumps(spec),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": f"exit {proc.returncode}: {tail[:200]}"}
    return json.loads(lines[-1][len("RESULT ") :])


def run_scaling(args: argparse.Namespace, tag: str) -> dict:
    """Part (b): generate each graph once, measure every method in its own process."""
    ns = QUICK_NS if args.quick else SCALING_NS
    budget = int(args.scaling_budget_gib * GIB)
    rows, gens = [], []
    peak = 0.0  # largest peak RSS (MiB) of any run at the previous n
    with tempfile.TemporaryDirectory(prefix="fastcover_scaling_") as tmp:
        bar = tqdm(total=len(ns) * 7, desc="scaling", unit="run")
        for n in ns:
            # sizes above 10^6 are optional: run them only if the largest peak so far, scaled
            # linearly in n with 20% slack, fits in the memory available now
            need = 1.2 * peak * n / gens[-1]["n"] if gens and n > OPTIONAL_ABOVE else 0.0
            if need * MIB > bench.mem_available():
                gens.append(
                    {
                        "n": n,
                        "skipped": f"needs ~{need / 1024:.1f} GiB, "
                        f"{bench.mem_available() / GIB:.1f} GiB available",
                    }
                )
                bar.update(7)
                continue
            path = str(Path(tmp) / f"powerlaw_{n}.npy")
            bar.set_postfix_str(f"n={n:.0e} generate")
            gen = spawn({"task": "generate", "n": n, "path": path}, args.child_timeout)
            gens.append({"n": n, **gen})
            bar.update()
            if "error" in gen:
                bar.update(6)
                continue
            peak = 0.0
            for d in (2, 3):
                row = {"n": n, "m": gen["m"], "d": d, "k": SCALING_K}
                for method in ("fastcover", "ris", "greedy"):
                    bar.set_postfix_str(f"n={n:.0e} d={d} {method}")
                    spec = {
                        "task": method,
                        "n": n,
                        "d": d,
                        "k": SCALING_K,
                        "path": path,
                        "budget": budget,
                        "weights_dir": args.weights_dir,
                    }
                    res = spawn(spec, args.child_timeout)
                    row[method] = res
                    LOADS.sample()
                    peak = max(peak, res.get("peak_mib", 0.0))
                    bar.update()
                best = max(
                    r.get("covered", 0) for r in (row[m] for m in ("fastcover", "ris", "greedy"))
                )
                for method in ("fastcover", "ris", "greedy"):
                    if "covered" in row[method]:
                        row[method]["ratio"] = row[method]["covered"] / best
                rows.append(row)
            Path(path).unlink()
        bar.close()
    payload = {
        "machine": bench.machine(), "command": command(), "k": SCALING_K,
        "avg_degree": SCALING_DEGREE, "closure_budget_gib": args.scaling_budget_gib,
        "weights": args.weights, "generate": gens, "rows": rows,
    }  # fmt: skip
    path = bench.write_results(f"fastcover{tag}_scaling", payload)
    print(f"wrote {path}")
    return payload


def _cell(res: dict) -> list[str]:
    if "error" in res:
        return [res["error"], "-", "-"]
    if res.get("refused"):
        return [f"refused (estimate {res['estimate_gib']:.1f} GiB)", "-", "-"]
    return [bench.fmt_time(res["time_s"]), f"{res['peak_mib']:.0f}", f"{res['ratio']:.3f}"]


def report_scaling(payload: dict, wall: float, tag: str) -> None:
    """Print the part (b) tables and update BENCHMARKS.md for a full run."""
    gen_rows = [
        [f"{g['n']:,}", g.get("skipped") or g.get("error") or f"{g['m']:,}",
         bench.fmt_time(g.get("time_s")), f"{g['peak_mib']:.0f}" if "peak_mib" in g else "-"]
        for g in payload["generate"]
    ]  # fmt: skip
    gen_table = bench.md_table(["n", "edges", "generate s", "peak MiB"], gen_rows)
    header = ["n", "d"] + [
        f"{m} {h}" for m in ("FastCover", "RIS", "greedy") for h in ("s", "peak MiB", "ratio")
    ]
    rows = [
        [f"{r['n']:,}", r["d"]] + _cell(r["fastcover"]) + _cell(r["ris"]) + _cell(r["greedy"])
        for r in payload["rows"]
    ]
    table = bench.md_table(header, rows)
    verdicts = []
    for r in payload["rows"]:
        fc = r["fastcover"]
        if r["n"] == 1_000_000 and "time_s" in fc:
            verdict = "yes" if fc["time_s"] < 60 else "no"
            verdicts.append(f"d={r['d']}: {fc['time_s']:.1f} s (< 60 s: {verdict})")
    text = "\n".join(
        [
            f"Machine: {bench.machine()}; torch {base.THREADS} threads. "
            f"Command: `{payload['command']}`. Wall time {wall / 60:.1f} min. {load_note()}",
            "",
            f"`powerlaw_digraph(n, {payload['avg_degree']}, seed=0)`, k = {payload['k']}. Each "
            "method runs in its own process (this script with `--child`), which loads the "
            "saved edge list, builds its input (CSR for the baselines, a tensor for FastCover) "
            "and reports its own peak RSS (`VmHWM`, MiB; input and interpreter included; torch "
            "is imported only in the FastCover process). FastCover time = forward + top-k "
            "(model loading excluded); greedy time = reverse closure + greedy; closure greedy "
            "is refused when `estimate_closure_bytes` exceeds "
            f"{payload['closure_budget_gib']:g} GiB. Ratio = coverage / best coverage in the row.",
            "FastCover on the 10^6-node graph: " + ("; ".join(verdicts) or "not run") + ".",
            "Weights: " + payload["weights"] + ".",
        ]
    )
    tables = "### Graph generation\n\n" + gen_table + "\n\n### Time, peak memory, ratio\n\n" + table
    heading = "## FastCover scaling on power-law digraphs (`benchmarks/fastcover.py --parts b`)"
    publish("fastcover-scaling", heading, text, tables, tag)
