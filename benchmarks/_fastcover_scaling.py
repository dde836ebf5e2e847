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
    if task in ("write", "scale"):
        return scale_child(spec)
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
                add_ratios(row, ("fastcover", "ris", "greedy"))
                rows.append(row)
            Path(path).unlink()
        bar.close()
    return write_part(
        args, f"fastcover{tag}_scaling", weights=args.weights, generate=gens, rows=rows
    )


def add_ratios(row: dict, methods: tuple[str, ...]) -> None:
    """Each method's ``ratio``: its coverage / the best of ``methods`` in ``row``."""
    best = max(row[m].get("covered", 0) for m in methods)
    for method in methods:
        if "covered" in row[method]:
            row[method]["ratio"] = row[method]["covered"] / best


def write_part(args: argparse.Namespace, name: str, **fields: Any) -> dict:
    """Write the results ``name`` (the machine, command and setting, then ``fields``)."""
    payload = {
        "machine": bench.machine(), "command": command(), "k": SCALING_K,
        "avg_degree": SCALING_DEGREE, "closure_budget_gib": args.scaling_budget_gib, **fields,
    }  # fmt: skip
    path = bench.write_results(name, payload)
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


# --------------------------------------------------------------------------- --scale

#: ``--scale``: edge counts of the power-law graphs (n = edges / mean out-degree), read from text.
SCALE_EDGES = (10**7, 10**8)
SCALE_METHODS = ("default", "one_pass", "ris", "greedy")
#: A size runs only when MemAvailable is at least this many GiB per 10^6 edges (the largest
#: process peak measured, closure greedy at 10^8 edges and d = 2, was 0.088 GiB per 10^6 edges).
SCALE_GIB_PER_MEDGE = 0.12


def write_edge_file(path: Path, n: int) -> int:
    """Write ``powerlaw_digraph(n, SCALING_DEGREE, seed=0)`` as ``source target`` lines."""
    datasets = importlib.import_module("graphrec.datasets")
    ei = datasets.powerlaw_digraph(n, SCALING_DEGREE, seed=0).edge_index.numpy()
    width = len(str(max(n - 1, 1)))
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    tmp = path.with_suffix(".part")
    with open(tmp, "wb") as f:
        for start in range(0, ei.shape[1], 1 << 20):  # digits as bytes, leading zeros cut
            pairs = ei[:, start : start + (1 << 20)].T
            buf = np.empty((*pairs.shape, width + 1), dtype=np.uint8)
            buf[..., :width] = pairs[..., None] // powers % 10 + ord("0")
            buf[:, 0, width], buf[:, 1, width] = ord(" "), ord("\n")
            digits = np.maximum(pairs, 1).astype(np.float64)
            digits = np.floor(np.log10(digits)).astype(np.int64) + 1
            keep = np.ones(buf.shape, dtype=bool)
            keep[..., :width] = np.arange(width) >= width - digits[..., None]
            f.write(buf[keep].tobytes())
    tmp.rename(path)
    return int(ei.shape[1])


def scale_child(spec: dict) -> dict:
    """One ``--scale`` measurement in this (fresh) process: write a graph, or read + solve."""
    path = Path(spec["path"])
    if spec["task"] == "write":
        t0 = time.perf_counter()
        m = write_edge_file(path, spec["n"])
        return {"time_s": time.perf_counter() - t0, "m": m, "peak_mib": bench.peak_mib()}
    torch = importlib.import_module("torch")
    torch.set_num_threads(base.THREADS)
    api = importlib.import_module("combinatorial.api")
    io = importlib.import_module("graphrec.io")
    k, d, method = spec["k"], spec["d"], spec["method"]
    t0, c0 = time.perf_counter(), time.process_time()
    graph = io.read_edgelist(path)
    read_s = time.perf_counter() - t0
    out: dict[str, Any] = {
        "read_s": read_s,
        "read_cpu_s": time.process_time() - c0,
        "read_peak_mib": bench.peak_mib(),
    }
    if method == "greedy":
        est = estimate_closure_bytes(adjacency(graph.data.edge_index, graph.num_nodes), d)
        out["estimate_gib"] = est / GIB
        if est > spec["budget"]:
            out["refused"] = True
            return out
    t0, c0 = time.perf_counter(), time.process_time()
    if method == "default":
        sol = api.solve(graph, k, d)  # the default method, whatever it is now
    elif method == "one_pass":
        sol = api.solve(graph, k, d, one_pass=True)  # top-k of one (chunked) GNN forward pass
    else:
        # greedy's estimate was checked against the budget above (solve drops max_bytes=None)
        sol = api.solve(graph, k, d, method=method, max_bytes=spec["budget"])
    solve_s = time.perf_counter() - t0
    out.update(
        solve_s=solve_s,
        solve_cpu_s=time.process_time() - c0,
        total_s=read_s + solve_s,
        solve_per_read=solve_s / read_s,
        peak_mib=bench.peak_mib(),
        covered=int(sol.covered),
        method=sol.method,
        info={key: v for key, v in sol.info.items() if isinstance(v, int | float | str)},
        timings=sol.timings,
    )
    return out


def run_scale(args: argparse.Namespace, tag: str) -> dict:
    """``--scale``: read + solve end to end on power-law edge files, one process per run."""
    root = Path(args.scale_dir)
    root.mkdir(parents=True, exist_ok=True)
    budget = int(args.scaling_budget_gib * GIB)
    rows, files = [], []
    for m in args.scale_edges:
        path = root / f"powerlaw_{m}.txt"
        need = SCALE_GIB_PER_MEDGE * m / 1e6 * GIB
        if bench.mem_available() < need:
            files.append({"edges": m, "skipped": f"needs {need / GIB:.1f} GiB available, "
                          f"{bench.mem_available() / GIB:.1f} GiB were"})  # fmt: skip
            continue
        entry: dict[str, Any] = {"edges": m, "path": str(path)}
        if not path.is_file():
            print(f"writing {path}", flush=True)
            entry.update(spawn({"task": "write", "n": m // SCALING_DEGREE, "path": str(path)},
                               args.child_timeout))  # fmt: skip
            if "error" in entry:
                files.append(entry)
                continue
        entry["bytes"] = path.stat().st_size
        files.append(entry)
        for d in args.scale_d:
            row: dict[str, Any] = {"edges": m, "n": m // SCALING_DEGREE, "d": d, "k": SCALING_K}
            for method in SCALE_METHODS:
                print(f"edges={m:.0e} d={d} {method}", flush=True)
                fits = min(budget, int(0.7 * bench.mem_available()))
                spec = {"task": "scale", "path": str(path), "method": method, "k": SCALING_K,
                        "d": d, "budget": fits}  # fmt: skip
                row[method] = spawn(spec, args.child_timeout)
                LOADS.sample()
                print(f"  {json.dumps(row[method])}", flush=True)
            add_ratios(row, SCALE_METHODS)
            rows.append(row)
    return write_part(args, f"fastcover{tag}_scale", threads=base.THREADS, files=files, rows=rows)


def _scale_row(row: dict, method: str) -> list[str]:
    res = row[method]
    name = method
    if method == "default" and "method" in res:
        strategy = res["info"].get("strategy")
        name = f"default: {res['method']}" + (f" ({strategy})" if strategy else "")
    head = [f"{row['edges']:.0e}", f"{row['n']:,}", str(row["d"]), name]
    if "error" in res:
        return head + [res["error"]] + ["-"] * 5
    if res.get("refused"):
        refused = f"refused (closure estimate {res['estimate_gib']:.1f} GiB > budget)"
        return head + [f"{res['read_s']:.1f}", refused] + ["-"] * 4
    return head + [
        f"{res['read_s']:.1f} ({res['read_cpu_s']:.1f})",
        f"{res['solve_s']:.1f} ({res['solve_cpu_s']:.1f})",
        f"{res['total_s']:.1f}",
        f"{res['solve_per_read']:.2f}",
        f"{res['peak_mib'] / 1024:.2f}",
        f"{res['ratio']:.3f}",
    ]


def report_scale(payload: dict, wall: float, tag: str) -> None:
    """Print the ``--scale`` table and update its BENCHMARKS.md block for a full run."""
    header = ["edges", "n", "d", "method", "read s (CPU s)", "solve s (CPU s)", "total s",
              "solve/read", "peak GiB", "coverage ratio"]  # fmt: skip
    rows = [_scale_row(r, m) for r in payload["rows"] for m in SCALE_METHODS]
    skipped = [
        f"{f['edges']:.0e} edges: {f['skipped']}" for f in payload["files"] if "skipped" in f
    ]
    text = "\n".join(
        [
            f"Machine: {bench.machine()}; torch {payload['threads']} threads. "
            f"Command: `{payload['command']}`. Wall time {wall / 60:.1f} min. {load_note()}",
            "",
            f"`powerlaw_digraph(edges / {payload['avg_degree']}, {payload['avg_degree']}, "
            "seed=0)` written once as a text edge list (`source target` lines) and reused; "
            f"k = {payload['k']}. Each run is a fresh process (this script with `--child`) "
            "that reads the file with `read_edgelist` and calls `combinatorial.solve`: "
            "`default` is `solve(graph, k, d)` with the default method (the method and "
            "strategy its Solution reports are listed), `one_pass` is `solve(graph, k, d, "
            "one_pass=True)` (the top-k of one GNN forward pass), `ris` and `greedy` are "
            "`method=`; "
            "closure greedy is refused when `estimate_closure_bytes` exceeds "
            f"{payload['closure_budget_gib']:g} GiB or 70% of the memory available. Times "
            "are wall seconds with the process's CPU seconds (all its threads) in brackets: "
            "on shared cores the wall time is an upper bound; solve includes the CSR build "
            "and the exact coverage; solve/read is the ratio to the reading floor; peak = "
            "`VmHWM` of the process (interpreter and torch included); coverage ratio = "
            "covered / best in the row.",
            *(["Not run: " + "; ".join(skipped) + "."] if skipped else []),
        ]
    )
    table = bench.md_table(header, rows)
    heading = "## FastCover end to end at scale (`benchmarks/fastcover.py --scale`)"
    publish("fastcover-scale", heading, text, table, tag)
