"""On-device personalization benchmarks (issue 17): per-user fine-tuning with label correction,
and CoDA.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ondevice.py --part finetune`` (5 seeds;
``--quick``: seed 0 on the synthetic set, a smoke run that writes ``ondevice_*_quick.json`` and
leaves BENCHMARKS.md alone).

``--part finetune``: per data set, model and seed one cloud model
(:func:`graphrec.ondevice.train_cloud`; the seed also sets the data of the synthetic set and the
fine-tuning order), then on that same model the cloud-only baseline, naive fine-tuning and every
correction rule (:func:`graphrec.ondevice.run_finetune` with the default fine-tuning settings).
Reports mean ± std over seeds of GAUC, mean user AUC, pooled AUC and logloss; the GAUC gain of
each rule over naive fine-tuning per bucket of |local share - global share| (paired per seed,
with a two-sided paired t-test over seeds); the wall time of fine-tuning all users.

``--part coda``: :func:`graphrec.ondevice.coda.run_coda` on a cloud model per data set, model and
seed (cloud, local only, unfiltered and filtered augmentation; per-device overhead).

Finished runs are kept in the result file as they complete; ``--resume`` reuses those of the
same settings. Writes ``benchmarks/results/ondevice_<part>.json`` and the ``ondevice-<part>``
section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as bench  # noqa: E402

COMMAND = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ondevice.py"
DATASETS = ("synthetic", "amazon-users", "ml-100k")
RULES = ("soft", "flip", "random", "offset")
METRICS = ("gauc", "mean_user_auc", "auc", "logloss")
EDGES = (0.0, 0.1, 0.2, 0.3, 1.0)
#: Settings that change a run's results (``--resume`` reuses runs only when they are equal).
RUN_SETTINGS = ("threads", "finetune")


# --------------------------------------------------------------------------- statistics


def summary(values: Sequence[float]) -> dict[str, Any]:
    """Mean, sample std (0 for one value) and the values."""
    values = [float(v) for v in values]
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "std": std, "values": values}


def paired(values: Sequence[float]) -> dict[str, Any]:
    """:func:`summary` of per-seed differences, the seeds above 0 and a two-sided one-sample
    t-test of mean 0 (p-value; None for fewer than 2 seeds or no spread)."""
    from scipy import stats

    out = summary(values)
    out["positive"] = sum(v > 0 for v in out["values"])
    p = None
    if len(values) > 1 and out["std"] > 0:
        p = float(stats.ttest_1samp(out["values"], 0.0).pvalue)
    out["p"] = p
    return out


def pm(stat: dict[str, Any], spec: str = ".4f") -> str:
    """``mean ± std`` cell."""
    return f"{stat['mean']:{spec}} ± {stat['std']:{spec}}"


def signed(stat: dict[str, Any]) -> str:
    """``+mean ± std (k/n)`` cell of a paired difference."""
    return f"{stat['mean']:+.4f} ± {stat['std']:.4f} ({stat['positive']}/{len(stat['values'])})"


def verdict(stat: dict[str, Any]) -> str:
    """Better / worse / no significant difference at 5% (paired t-test over seeds)."""
    if stat["p"] is None or stat["p"] >= 0.05:
        return f"no significant difference (p = {_p(stat['p'])})"
    return f"{'better' if stat['mean'] > 0 else 'worse'} (p = {_p(stat['p'])})"


def _num(key: str, value: float) -> str:
    """An overhead cell: seconds with 4 decimals, anything else (bytes) as an integer."""
    return f"{value:.4f}" if key.endswith("_s") else f"{value:,.0f}"


def _seeds(agg: dict[str, Any]) -> str:
    return ", ".join(map(str, agg["seeds"]))


def _p(p: float | None) -> str:
    return "-" if p is None else f"{p:.3f}"


# --------------------------------------------------------------------------- runs


class Store:
    """Finished runs by key (``dataset/model/seed``), saved to the result file after each one.

    With ``resume``, the runs of a result file whose run settings (:data:`RUN_SETTINGS`) are
    the same are kept, whichever data sets, models and seeds it covered.
    """

    def __init__(self, path: Path, settings: dict[str, Any], resume: bool) -> None:
        self.path, self.settings = path, settings
        self.runs: dict[str, Any] = {}
        if resume and path.exists():
            saved = json.loads(path.read_text())
            same = all(saved["settings"].get(k) == settings[k] for k in RUN_SETTINGS)
            if same:
                self.runs = saved.get("runs", {})
                print(f"resuming: {len(self.runs)} runs from {path}", flush=True)
            else:
                print(f"not resuming: {path} has other run settings", flush=True)

    def save(self, extra: dict[str, Any] | None = None) -> None:
        bench.write_json(self.path, {"settings": self.settings, "runs": self.runs} | (extra or {}))


def cloud_model(dataset: str, model: str, seed: int, root: Path):
    """The data set's tables and its cloud model, with the training time in seconds."""
    from graphrec.ondevice import load_ondevice_data, train_cloud

    t0 = time.perf_counter()
    data = load_ondevice_data(dataset, None if dataset == "synthetic" else root, seed=seed)
    cloud = train_cloud(model, data, seed=seed)
    return data, cloud, time.perf_counter() - t0


def finetune_run(dataset: str, model: str, seed: int, root: Path) -> dict[str, Any]:
    """One cloud model, then cloud / naive / every rule on it; buckets against naive too."""
    from graphrec.ondevice import drift_buckets, run_finetune

    data, cloud, cloud_s = cloud_model(dataset, model, seed, root)
    cache: dict[str, Any] = {}
    out = run_finetune(cloud, data, correction=RULES, seed=seed, edges=EDGES, cache=cache)
    naive = cache["naive"][0]
    out["buckets_vs_naive"] = {
        rule: drift_buckets(naive, cache[rule][0], out["global_share"], EDGES) for rule in RULES
    }
    return {"model": model, "seed": seed, "cloud_train_s": cloud_s} | out


def coda_run(dataset: str, model: str, seed: int, root: Path) -> dict[str, Any]:
    """:func:`graphrec.ondevice.coda.run_coda` on one cloud model."""
    from graphrec.ondevice.coda import run_coda

    data, cloud, cloud_s = cloud_model(dataset, model, seed, root)
    out = run_coda(cloud, data, seed=seed)
    return {"model": model, "seed": seed, "cloud_train_s": cloud_s} | out


# --------------------------------------------------------------------------- aggregation


def aggregate_finetune(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Over the seeds of one (data set, model)."""
    names = list(runs[0]["methods"])
    methods = {
        n: {m: summary([r["methods"][n][m] for r in runs]) for m in (*METRICS, "seconds")}
        for n in names
    }
    gauc = {n: [r["methods"][n]["gauc"] for r in runs] for n in names}
    over_naive = {
        rule: paired([a - b for a, b in zip(gauc[rule], gauc["naive"])]) for rule in RULES
    }
    naive_over_cloud = paired([a - b for a, b in zip(gauc["naive"], gauc["cloud"])])
    buckets = []
    for i, (lo, hi) in enumerate(zip(EDGES[:-1], EDGES[1:])):
        rows = [r["buckets"]["naive"][i] for r in runs]
        row: dict[str, Any] = {"low": lo, "high": hi, "users": summary([b["users"] for b in rows])}
        if all("gain" in b for b in rows):
            row["naive_over_cloud"] = paired([b["gain"] for b in rows])
            for rule in RULES:
                row[rule] = paired([r["buckets_vs_naive"][rule][i]["gain"] for r in runs])
        buckets.append(row)
    return {
        "seeds": [r["seed"] for r in runs],
        "users": runs[0]["users"],
        "users_with_both": summary([r["methods"]["cloud"]["users_with_both"] for r in runs]),
        "global_share": summary([r["global_share"] for r in runs]),
        "cloud_train_s": summary([r["cloud_train_s"] for r in runs]),
        "methods": methods,
        "naive_over_cloud": naive_over_cloud,
        "over_naive": over_naive,
        "buckets": buckets,
    }


def aggregate_coda(runs: list[dict[str, Any]]) -> dict[str, Any]:
    names = list(runs[0]["methods"])
    gauc = {n: [r["methods"][n]["gauc"] for r in runs] for n in names}
    return {
        "seeds": [r["seed"] for r in runs],
        "users": runs[0].get("users"),
        "methods": {
            n: {m: summary([r["methods"][n][m] for r in runs]) for m in (*METRICS, "seconds")}
            for n in names
        },
        "coda_over": {
            n: paired([a - b for a, b in zip(gauc["coda"], gauc[n])]) for n in names if n != "coda"
        },
        "overhead": [r["overhead"] for r in runs],
    }


# --------------------------------------------------------------------------- report


def header(out: dict[str, Any], title: str) -> list[str]:
    s = out["settings"]
    jobs = "" if out["jobs"] is None else f"{out['jobs']} at a time, "
    return [
        f"## {title} (`benchmarks/ondevice.py --part {out['part']}`)",
        "",
        f"Command: `{out['command']}`; {out['machine']}; torch threads {s['threads']}; commit "
        f"{out['commit']}; seeds {s['seeds']}, mean ± std over seeds (sample std). "
        f"{len(out['runs'])} runs, {jobs}{out['seconds'] / 60:.1f} min of run time in all (sum "
        "over runs).",
        "",
    ]


def report_finetune(out: dict[str, Any]) -> str:
    f = out["settings"]["finetune"]
    lines = header(out, "On-device fine-tuning with label correction")
    lines += [
        "Per data set, model and seed: one cloud model, and on it the cloud-only baseline, naive "
        "fine-tuning and every correction rule (soft = A, flip = B, random = C, offset = D; "
        f"`graphrec.ondevice.correction`). Fine-tuning: layers {f['layers']}, {f['epochs']} "
        f"epochs of SGD lr {f['lr']:g}, batch {f['batch_size'] or 'all local samples'}. GAUC "
        "weights each user's test AUC by the user's test impressions (users with both labels). "
        "Paired differences: per seed, then mean ± std (seeds above 0 of all); p: two-sided "
        "paired t-test over seeds.",
        "",
    ]
    verdicts, tables = [], []
    for key, agg in out["results"].items():
        dataset, model = key.split("/")
        last = agg["buckets"][-1]
        best = max(RULES, key=lambda r: agg["over_naive"][r]["mean"])
        users = (
            f"{agg['users']:,} users ({agg['users_with_both']['mean']:,.0f} with both test labels)"
        )
        naive_s = agg["methods"]["naive"]["seconds"]
        all_s = [agg["methods"][n]["seconds"]["mean"] for n in ("naive", *RULES)]
        tables += [
            f"**{dataset}, {model}** (seeds {_seeds(agg)}): {users}, global share "
            f"{agg['global_share']['mean']:.3f}; "
            f"cloud model trained in {pm(agg['cloud_train_s'], '.0f')} s.",
            "",
            bench.md_table(
                [
                    "method",
                    "GAUC",
                    "mean user AUC",
                    "AUC",
                    "logloss",
                    "GAUC gain (naive: over cloud; rules: over naive)",
                    "fine-tuning s",
                ],
                [
                    [
                        n,
                        pm(m["gauc"]),
                        pm(m["mean_user_auc"]),
                        pm(m["auc"]),
                        pm(m["logloss"]),
                        "-"
                        if n == "cloud"
                        else signed(
                            agg["naive_over_cloud"] if n == "naive" else agg["over_naive"][n]
                        ),
                        "-" if n == "cloud" else pm(m["seconds"], ".1f"),
                    ]
                    for n, m in agg["methods"].items()
                ],
            ),
            "",
            "GAUC gain per bucket of |local share - global share| (users of the bucket with both "
            "test labels; naive: over the cloud model; rules: over naive fine-tuning):",
            "",
            bench.md_table(
                ["drift", "users", "naive - cloud", *(f"{r} - naive" for r in RULES)],
                [
                    [
                        f"[{b['low']:.1f}, {b['high']:.1f}{']' if b['high'] == EDGES[-1] else ')'}",
                        f"{b['users']['mean']:,.0f}",
                        *(signed(b[k]) if k in b else "-" for k in ("naive_over_cloud", *RULES)),
                    ]
                    for b in agg["buckets"]
                ],
            ),
            "",
        ]
        best_last = max(RULES, key=lambda r: last[r]["mean"]) if RULES[0] in last else None
        line = (
            f"- {dataset}, {model} (seeds {_seeds(agg)}): naive fine-tuning vs cloud "
            f"{signed(agg['naive_over_cloud'])} "
            f"GAUC, {verdict(agg['naive_over_cloud'])}; best rule overall {best} "
            f"{signed(agg['over_naive'][best])} over naive, {verdict(agg['over_naive'][best])}"
        )
        if best_last is not None:
            line += (
                f"; most drifted users (|r - g| >= {last['low']:.1f}, "
                f"{last['users']['mean']:,.0f} users): naive vs cloud "
                f"{signed(last['naive_over_cloud'])}, {verdict(last['naive_over_cloud'])}; "
                f"best rule {best_last} "
                f"{signed(last[best_last])} over naive, {verdict(last[best_last])}; "
                "rules over naive there: " + ", ".join(f"{r} {last[r]['mean']:+.4f}" for r in RULES)
            )
        line += (
            f". Fine-tuning all users (layers {f['layers']}): naive {pm(naive_s, '.1f')} s, "
            f"slowest method mean {max(all_s):.1f} s."
        )
        verdicts.append(line)
    lines += ["Summary (computed from the tables below):", "", *verdicts, "", *tables]
    return "\n".join(lines).rstrip()


def report_coda(out: dict[str, Any]) -> str:
    lines = header(out, "CoDA: cloud-coordinated data augmentation")
    lines += [
        "Per data set, model and seed: one cloud model, then `graphrec.ondevice.coda.run_coda` "
        "with its defaults (cloud only, local-only fine-tuning, unfiltered augmentation, CoDA). "
        "Paired differences per seed (seeds above 0 of all); p: two-sided paired t-test.",
        "",
    ]
    for key, agg in out["results"].items():
        dataset, model = key.split("/")
        lines += [
            f"**{dataset}, {model}** (seeds {_seeds(agg)})",
            "",
            bench.md_table(
                ["method", "GAUC", "mean user AUC", "AUC", "logloss", "CoDA GAUC - this", "s"],
                [
                    [
                        n,
                        pm(m["gauc"]),
                        pm(m["mean_user_auc"]),
                        pm(m["auc"]),
                        pm(m["logloss"]),
                        "-"
                        if n == "coda"
                        else f"{signed(agg['coda_over'][n])}, {verdict(agg['coda_over'][n])}",
                        pm(m["seconds"], ".1f"),
                    ]
                    for n, m in agg["methods"].items()
                ],
            ),
            "",
            "Overhead per device (`run_coda`'s `overhead`: per seed the mean and the max over "
            "devices; here the mean of those means and the max of those maxima over seeds):",
            "",
            bench.md_table(
                ["overhead", "mean per device", "max"],
                [
                    [
                        k,
                        _num(k, statistics.fmean(o[k]["mean"] for o in agg["overhead"])),
                        _num(k, max(o[k]["max"] for o in agg["overhead"])),
                    ]
                    for k, v in agg["overhead"][0].items()
                    if isinstance(v, dict) and {"mean", "max"} <= set(v)
                ],
            ),
            "",
        ]
    return "\n".join(lines).rstrip()


# --------------------------------------------------------------------------- main


def _job(job: tuple) -> tuple[str, dict[str, Any]]:
    """One run in a worker process: its key and its results with the wall time."""
    import torch

    part, dataset, model, seed, root, threads = job
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    out = PARTS[part][0](dataset, model, seed, root)
    return f"{dataset}/{model}/{seed}", out | {"wall_s": time.perf_counter() - t0}


PARTS = {
    "finetune": (finetune_run, aggregate_finetune, report_finetune),
    "coda": (coda_run, aggregate_coda, report_coda),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=PARTS, required=True)
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default: 5)")
    parser.add_argument("--seed-list", type=int, nargs="+",
                        help="these seeds instead of 0..N-1")  # fmt: skip
    parser.add_argument("--report-only", action="store_true",
                        help="no new runs: report the finished runs of the result file (with "
                        "--resume); a data set lists the seeds it has")  # fmt: skip
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--models", nargs="+", default=["din"], help="CTR models (default: din)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    parser.add_argument(
        "--jobs", type=int, default=1, help="runs at a time, one process each (default: 1)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="seed 0 on synthetic only; BENCHMARKS.md untouched"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="reuse the finished runs of the result file (same settings)",
    )
    args = parser.parse_args()
    import torch

    from graphrec.ondevice import FINETUNE_DEFAULTS
    from graphrec.registry import CTR_MODELS

    for model in args.models:
        if model not in CTR_MODELS.names():
            parser.error(f"--models: {model!r} is not one of {', '.join(CTR_MODELS.names())}")
    torch.set_num_threads(args.threads)
    seeds = [0] if args.quick else args.seed_list or list(range(args.seeds))
    datasets = ["synthetic"] if args.quick else args.datasets
    settings = {
        "seeds": seeds,
        "datasets": datasets,
        "models": args.models,
        "threads": args.threads,
        "finetune": asdict(FINETUNE_DEFAULTS),
    }
    name = f"ondevice_{args.part}" + ("_quick" if args.quick else "")
    store = Store(bench.RESULTS / f"{name}.json", settings, args.resume)
    run, aggregate, report = PARTS[args.part]
    root = bench.data_root()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=bench.REPO,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    load = bench.LoadLog()
    todo = [
        (args.part, dataset, model, seed, root, args.threads)
        for dataset in datasets
        for model in args.models
        for seed in seeds
        if f"{dataset}/{model}/{seed}" not in store.runs and not args.report_only
    ]
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        for key, result in pool.imap_unordered(_job, todo):
            store.runs[key] = result | {"commit": commit}
            load.sample()
            print(
                f"{key}: {result['wall_s']:.0f} s; GAUC "
                + ", ".join(f"{n} {v['gauc']:.4f}" for n, v in result["methods"].items()),
                flush=True,
            )
            store.save()
    runs = store.runs
    reproduce = bench.command_line(COMMAND)
    if args.report_only:  # the command that computes these runs
        reproduce = reproduce.replace(" --resume", "").replace(" --report-only", "")
    out: dict[str, Any] = {
        "part": args.part,
        "command": reproduce,
        "machine": bench.machine(),
        "commit": ", ".join(sorted({r["commit"] for r in runs.values()})),
        "settings": settings,
        "jobs": None if args.report_only else args.jobs,
        "seconds": sum(r["wall_s"] for r in runs.values()),
        "load": load.note(args.threads),
        "results": {
            f"{d}/{m}": aggregate([runs[k] for s in seeds if (k := f"{d}/{m}/{s}") in runs])
            for d in datasets
            for m in args.models
            if any(f"{d}/{m}/{s}" in runs for s in seeds)
        },
        "runs": runs,
    }
    bench.write_json(store.path, out)
    text = report(out) + (f"\n\n{out['load']}" if out["load"] else "")
    bench.publish(f"ondevice-{args.part}", text, update_md=not args.quick)


if __name__ == "__main__":
    main()
