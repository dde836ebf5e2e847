"""Walle benchmarks (issue 19), one ``--part`` at a time.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/walle.py --part PART`` (``--quick``: a
small smoke run that writes ``walle_PART_quick.json`` and leaves BENCHMARKS.md alone).

triggers: :mod:`graphrec.ondevice.walle.triggers` on a seeded synthetic app-event stream
    (10^6 events; ``graphrec walle run-events --synthetic``) with 10, 100 and 1,000 triggers
    (substrings of the stream of 2-12 events, so all of them match): events/s of the
    Aho-Corasick automaton on one core against a naive per-task scan (every task compares
    its trigger with the last events at every event; run on a prefix, matches asserted
    equal), events/s of the whole pipeline (validation, matching, page-visit extraction of
    the default CTR tasks), and the per-event latency (p50 / p99) when events arrive one at
    a time, of the automaton and of the whole pipeline. Writes
    ``benchmarks/results/walle_triggers.json`` and the ``walle-triggers`` section of
    BENCHMARKS.md.

rollout: :mod:`graphrec.ondevice.walle.rollout` over 10^6 devices (the defaults of
    ``graphrec walle rollout-sim``: 2 h, online sessions of mean 20 min, offline periods of
    mean 40 min, a 1 MB package, 10,000 CDN slots at 2 MB/s, notices paced at 10,000/s):
    push-then-pull against pull-only polling every 60, 300 and 900 s, plus a staged push
    (1% -> 10% at 600 s -> 100% at 1800 s, rolled back at 5400 s). Time to 99% of the
    online targeted devices, coverage at fixed times, peak and total requests, notices and
    bytes, and the wall time of each simulation (target: under one minute for 10^6 devices).
    Writes ``benchmarks/results/walle_rollout.json``, ``walle_rollout.png`` and the
    ``walle-rollout`` section of BENCHMARKS.md.

device: :mod:`graphrec.ondevice.walle.device` end to end. A cloud DIN trained (3 epochs, the
    default recipe otherwise) on the samples of 16 synthetic devices
    (``walle_ctr_dataset``, seed 0) is packaged behind the parity gate with a ``page_exit``
    samples task and ``page_enter``/``scroll`` > ``exposure`` request tasks; two devices then
    run 20,000 events each, one at a time, fine-tuning every 64 labelled samples in MNN (lr
    0.05, one step per round): a user of the cloud's population (click rates 0.05 / 0.35 for
    liked items) and a drifted one (0.15 / 0.6). Per-stage latency (p50 / p99 / mean per
    call), log loss and AUC of the model in service vs the package's on the samples after the
    first update (scored on arrival), and the max |diff| of MNN's tuned parameters and served
    logits against a torch SGD replay. Writes ``benchmarks/results/walle_device.json`` and the
    ``walle-device`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as bench  # noqa: E402

from graphrec.ondevice.walle.events import synthetic_events  # noqa: E402
from graphrec.ondevice.walle.rollout import (  # noqa: E402
    Delivery,
    PopulationConfig,
    ReleasePolicy,
    RolloutResult,
    sample_population,
    simulate_rollout,
)

COMMAND = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/walle.py"
#: Rollout runs: label -> (delivery, policy).
ROLLOUTS: dict[str, tuple[Delivery, ReleasePolicy]] = {
    "push": (Delivery(mode="push"), ReleasePolicy()),
    "push paced 1,000/s": (Delivery(mode="push", push_rate=1000.0), ReleasePolicy()),
    "poll 60 s": (Delivery(mode="poll", poll_s=60.0), ReleasePolicy()),
    "poll 300 s": (Delivery(mode="poll", poll_s=300.0), ReleasePolicy()),
    "poll 900 s": (Delivery(mode="poll", poll_s=900.0), ReleasePolicy()),
    "push staged + rollback": (
        Delivery(mode="push"),
        ReleasePolicy(stages=((0.0, 1.0), (600.0, 10.0), (1800.0, 100.0)), rollback_at=5400.0),
    ),
}
COVERAGE_TIMES = (10, 30, 60, 120, 300, 600, 900)
CURVE_STEP = 10  # seconds between the stored curve points


def commit() -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=bench.REPO,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()


def _curves(r: RolloutResult) -> dict[str, list[float]]:
    """Every CURVE_STEP-th point of the coverage curves; load averaged over CURVE_STEP bins."""
    step = CURVE_STEP

    def mean(a: np.ndarray) -> list[float]:
        a = a[: len(a) // step * step]
        return a.reshape(-1, step).mean(axis=1).round(3).tolist()

    return {
        "t": r.times[::step].tolist(),
        "coverage_online": r.coverage_online[::step].round(5).tolist(),
        "coverage_all": r.coverage_all[::step].round(5).tolist(),
        "requests_per_s": mean(r.requests_per_s),
        "notices_per_s": mean(r.notices_per_s),
        "bytes_per_s": mean(r.bytes_per_s),
    }


TRIGGER_COUNTS = (10, 100, 1000)
TRIGGER_COLUMNS = "triggers|states|matches|automaton events/s|naive events/s|naive events|speed-up"
NAIVE_CHECKS = 3_000_000  # events x triggers of the naive scan (its prefix is sized by this)


def _triggers(ids: np.ndarray, count: int, seed: int) -> list[tuple[int, ...]]:
    """``count`` distinct substrings of ``ids`` of 2-12 events."""
    rng = np.random.default_rng(seed)
    found: dict[tuple[int, ...], None] = {}
    while len(found) < count:
        n = int(rng.integers(2, 13))
        start = int(rng.integers(0, len(ids) - n))
        found[tuple(ids[start : start + n].tolist())] = None
    return list(found)


def naive_scan(ids: np.ndarray, triggers: list[tuple[int, ...]]) -> list[tuple[int, int]]:
    """Every task checks its own trigger against the last events, at every event."""
    longest = max(len(t) for t in triggers)
    recent: list[int] = []
    matches = []
    for i, e in enumerate(ids.tolist()):
        recent.append(e)
        if len(recent) > 2 * longest:
            del recent[:-longest]
        for k, t in enumerate(triggers):
            if t[-1] == e and tuple(recent[-len(t) :]) == t:
                matches.append((i, k))
    return matches


def _percentiles_us(ns: list[int]) -> dict[str, float]:
    a = np.asarray(ns, dtype=np.float64) / 1000.0
    return {f"p{q}_us": float(np.percentile(a, q)) for q in (50, 90, 99)}


def part_triggers(quick: bool) -> dict[str, Any]:
    from graphrec.ondevice.walle.triggers import DEFAULT_TASKS, Pipeline, TriggerTrie

    n = 50_000 if quick else 1_000_000
    load = bench.LoadLog()
    start = time.perf_counter()
    stream = synthetic_events(n, seed=0)
    generate_s = time.perf_counter() - start
    ids = stream.ids
    sweep = []
    for count in TRIGGER_COUNTS:
        triggers = _triggers(ids, count, seed=count)
        start = time.perf_counter()
        trie = TriggerTrie(triggers)
        build_s = time.perf_counter() - start
        trie_s, (ends, which, _) = bench.best_time(lambda trie=trie: trie.match(ids), 3)
        prefix = min(n, NAIVE_CHECKS // count)
        naive_s, naive = bench.best_time(lambda t=triggers, p=prefix: naive_scan(ids[:p], t), 1)
        head = ends < prefix
        assert naive == list(zip(ends[head].tolist(), which[head].tolist()))
        load.sample()
        sweep.append({
            "triggers": count, "states": trie.num_states, "build_s": build_s,
            "matches": len(ends), "trie_events_per_s": n / trie_s,
            "naive_events": prefix, "naive_events_per_s": prefix / naive_s,
        })  # fmt: skip
    pipe_s, pipe = bench.best_time(lambda: Pipeline(DEFAULT_TASKS, user="u").run([stream]), 1)
    rows = {name: len(r) for name, r in pipe.rows.items()}
    # events arriving one at a time
    k = 2_000 if quick else 20_000
    trie = TriggerTrie(_triggers(ids, 100, seed=100))
    one_ids = [ids[i : i + 1] for i in range(k)]
    trie_ns, state = [], 0
    for one in one_ids:
        t0 = time.perf_counter_ns()
        _, _, state = trie.match(one, state)
        trie_ns.append(time.perf_counter_ns() - t0)
    single = Pipeline(DEFAULT_TASKS, user="u")
    pipe_ns = []
    for i in range(k):
        one = stream.slice(i, i + 1)
        t0 = time.perf_counter_ns()
        single.push(one)
        pipe_ns.append(time.perf_counter_ns() - t0)
    assert {name: len(r) for name, r in single.rows.items()} == {
        name: len(r) for name, r in Pipeline(DEFAULT_TASKS, user="u").run(
            [stream.slice(0, k)]).rows.items()
    }  # fmt: skip
    load.sample()
    return {
        "events": n,
        "generate_s": generate_s,
        "sweep": sweep,
        "pipeline": {
            "events_per_s": n / pipe_s,
            "seconds": pipe_s,
            "rows": rows,
            "match_s": pipe.match_seconds,
        },
        "latency_events": k,
        "latency_trie_100": _percentiles_us(trie_ns),
        "latency_pipeline": _percentiles_us(pipe_ns),
        "load": load.note(1),
    }


def report_triggers(out: dict[str, Any]) -> str:
    rows = [
        [f"{r['triggers']:,}", f"{r['states']:,}", f"{r['matches']:,}",
         f"{r['trie_events_per_s']:,.0f}", f"{r['naive_events_per_s']:,.0f}",
         f"{r['naive_events']:,}", f"{r['trie_events_per_s'] / r['naive_events_per_s']:.1f}x"]
        for r in out["sweep"]
    ]  # fmt: skip
    worst = min(r["trie_events_per_s"] for r in out["sweep"])
    p = out["pipeline"]
    lt, lp = out["latency_trie_100"], out["latency_pipeline"]
    lines = [
        "## Walle triggers: one automaton vs a scan per task (`benchmarks/walle.py --part "
        "triggers`)",
        "",
        f"Command: `{COMMAND} --part triggers`; {out['machine']}; commit {out['commit']}; one "
        f"core (OMP_NUM_THREADS=1, pure Python loop over a NumPy-built transition table). "
        f"Stream: `synthetic_events({out['events']:,}, seed=0)` (page visits with exposures, "
        "clicks and scrolls; 5 event ids). Triggers: distinct substrings of the stream of 2-12 "
        "events (seeded), so every trigger matches; matches counts every (event, trigger) "
        "pair. The naive scan runs on a prefix of the stream (events column) and its matches "
        "equal the automaton's there.",
        "",
        f"- Target >= 100,000 events/s through the trigger trie on one core: lowest "
        f"{worst:,.0f} events/s ({'met' if worst >= 1e5 else 'not met'}).",
        f"- Whole pipeline (validation, matching, extraction of the default tasks: "
        f"{p['rows']['ctr_samples']:,} labelled samples and {p['rows']['ctr_score']:,} "
        f"inference rows): {p['events_per_s']:,.0f} events/s.",
        f"- Per-event latency, events arriving one at a time ({out['latency_events']:,} "
        f"events): automaton with 100 triggers p50 {lt['p50_us']:.1f} / p90 "
        f"{lt['p90_us']:.1f} / p99 {lt['p99_us']:.1f} us; whole pipeline (one-event batches) "
        f"p50 {lp['p50_us']:.1f} / p90 {lp['p90_us']:.1f} / p99 {lp['p99_us']:.1f} us. On "
        "shared cores a p99 of milliseconds is the scheduler (every event kind shows it).",
        "",
        bench.md_table(TRIGGER_COLUMNS.split("|"), rows),
    ]
    if out["load"]:
        lines += ["", out["load"]]
    return "\n".join(lines)


def part_rollout(quick: bool) -> dict[str, Any]:
    config = PopulationConfig(devices=20_000 if quick else 1_000_000)
    load = bench.LoadLog()
    start = time.perf_counter()
    pop = sample_population(config, seed=0)
    population_s = time.perf_counter() - start
    runs = {}
    for label, (delivery, policy) in ROLLOUTS.items():
        start = time.perf_counter()
        r = simulate_rollout(pop, policy, delivery)
        wall = time.perf_counter() - start
        load.sample()
        runs[label] = r.summary | {
            "wall_s": wall,
            "coverage_online_at": {str(t): r.coverage_at(t) for t in COVERAGE_TIMES},
            "mean_requests_per_s": r.summary["requests"] / config.horizon_s,
            "curves": _curves(r),
        }
    return {
        "devices": config.devices,
        "sessions": len(pop.start),
        "horizon_s": config.horizon_s,
        "population_s": population_s,
        "delivery": {k: getattr(Delivery(), k) for k in Delivery.__dataclass_fields__},
        "population": {k: getattr(config, k) for k in ("mean_online_s", "mean_offline_s")},
        "runs": runs,
        "load": load.note(1),
    }


def report_rollout(out: dict[str, Any]) -> str:
    d = out["delivery"]
    runs = out["runs"]
    push = runs["push"]
    polls = {k: v for k, v in runs.items() if k.startswith("poll")}
    slowest = max(r["wall_s"] + out["population_s"] for r in runs.values())
    faster = all(
        p["t99_online_s"] is None or push["t99_online_s"] < p["t99_online_s"]
        for p in polls.values()
    )
    paced = runs["push paced 1,000/s"]
    fewer = all(push["requests"] < p["requests"] for p in polls.values())
    rows = []
    for label, r in runs.items():
        t99 = "-" if r["t99_online_s"] is None else f"{r['t99_online_s']:.0f}"
        cov = " / ".join(f"{r['coverage_online_at'][str(t)]:.3f}" for t in COVERAGE_TIMES)
        rows.append([
            label, t99, cov, f"{r['coverage_all_end']:.3f}", f"{r['requests']:,}",
            f"{r['peak_requests_per_s']:,.0f}", f"{r['mean_requests_per_s']:,.0f}",
            f"{r['notices']:,}", f"{r['peak_notices_per_s']:,.0f}", f"{r['bytes'] / 1e9:,.0f}",
            f"{r['peak_bytes_per_s'] / 1e9:.2f}", f"{r['max_cdn_wait_s']:.1f}",
            f"{r['wall_s']:.1f}",
        ])  # fmt: skip
    ratio_total = polls["poll 60 s"]["requests"] / push["requests"]
    lines = [
        "## Walle deployment: push-then-pull vs polling (`benchmarks/walle.py --part rollout`)",
        "",
        f"Command: `{COMMAND} --part rollout`; {out['machine']}; commit {out['commit']}. "
        f"{out['devices']:,} devices ({out['sessions']:,} online sessions) over "
        f"{out['horizon_s']:.0f} s, seed 0: online sessions of mean "
        f"{out['population']['mean_online_s']:.0f} s and offline periods of mean "
        f"{out['population']['mean_offline_s']:.0f} s (exponential, about 1/3 online), the "
        f"release at t = 0 to every device. Package {d['package_bytes'] / 1e6:g} MB, "
        f"{d['cdn_slots']:,} CDN slots at {d['download_rate'] / 1e6:g} MB/s (at most "
        f"{d['cdn_slots'] * d['download_rate'] / 1e9:g} GB/s), notices paced at "
        f"{d['push_rate']:,.0f}/s with {d['notice_latency_s']} s latency, poll round trip "
        f"{d['poll_rtt_s']} s, install {d['install_s']} s; devices poll on reconnect and every "
        "T s while online. Requests = polls + pulls (HTTP); notices are messages on the "
        "connection the app keeps open. Staged: 1% at 0 s, 10% at 600 s, 100% at 1800 s "
        "(its t99: the first time after 1800 s), rolled back at 5400 s. Times in seconds "
        "after the release's start.",
        "",
        "Issue 19's targets, as measured below:",
        "",
        f"- {out['devices']:,}-device simulation under one minute: slowest run {slowest:.1f} s "
        "including "
        f"the population ({out['population_s']:.1f} s) ({'met' if slowest < 60 else 'not met'}).",
        f"- push-then-pull reaches 99% of the online devices faster than polling every 60, 300 "
        f"and 900 s: {push['t99_online_s']:.0f} s ({'met' if faster else 'not met'}).",
        f"- lower server load: {ratio_total:.0f}x fewer requests in all than polling every 60 s "
        f"({'met' if fewer else 'not met'} against every period). Peaks are set by the pacing: "
        f"{push['peak_requests_per_s']:,.0f} pulls/s + {push['peak_notices_per_s']:,.0f} "
        f"notices/s and {push['peak_bytes_per_s'] / 1e9:.1f} GB/s during the first "
        f"{push['t99_online_s']:.0f} s, against {polls['poll 60 s']['peak_requests_per_s']:,.0f}"
        f" requests/s and {polls['poll 60 s']['peak_bytes_per_s'] / 1e9:.1f} GB/s for polling "
        "every 60 s: the same bytes reach the online devices in less time, so the download "
        "peak is higher. Pacing the notices trades time to coverage for peak bandwidth: at "
        f"1,000/s push peaks at {paced['peak_bytes_per_s'] / 1e9:.2f} GB/s and reaches 99% in "
        f"{paced['t99_online_s']:.0f} s (polling every 300 s: "
        f"{polls['poll 300 s']['peak_bytes_per_s'] / 1e9:.2f} GB/s, "
        f"{polls['poll 300 s']['t99_online_s']:.0f} s), still with "
        f"{polls['poll 300 s']['requests'] / paced['requests']:.0f}x fewer requests.",
        "",
        bench.md_table(
            [
                "run",
                "t99 online (s)",
                "coverage of online targeted at "
                + " / ".join(f"{t}" for t in COVERAGE_TIMES)
                + " s",
                "all targeted at 2 h",
                "requests",
                "peak req/s",
                "mean req/s",
                "notices",
                "peak notices/s",
                "GB",
                "peak GB/s",
                "max CDN wait (s)",
                "wall (s)",
            ],
            rows,
        ),  # fmt: skip
        "",
        "Curves (coverage of online and of all targeted devices, requests/s and bytes/s over "
        "time): `benchmarks/results/walle_rollout.png`; data in "
        "`benchmarks/results/walle_rollout.json`.",
    ]
    if out["load"]:
        lines += ["", out["load"]]
    return "\n".join(lines)


def plot_rollout(out: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(20, 4))
    for label, r in out["runs"].items():
        c = r["curves"]
        t = np.asarray(c["t"])
        axes[0].plot(t[t <= 1200], np.asarray(c["coverage_online"])[t <= 1200], label=label)
        axes[1].plot(t / 60, c["coverage_all"], label=label)
        axes[2].plot(t[: len(c["requests_per_s"])] / 60, c["requests_per_s"], label=label)
        axes[3].plot(t[: len(c["bytes_per_s"])] / 60, np.asarray(c["bytes_per_s"]) / 1e9,
                     label=label)  # fmt: skip
    axes[0].set(title="online targeted devices on the new version", xlabel="s",
                ylabel="share")  # fmt: skip
    axes[1].set(title="all targeted devices on the new version", xlabel="min")
    axes[2].set(title=f"requests/s (polls + pulls, {CURVE_STEP} s means)", xlabel="min",
                yscale="log")  # fmt: skip
    axes[3].set(title=f"GB/s ({CURVE_STEP} s means)", xlabel="min", yscale="log")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.suptitle(f"Walle rollout, {out['devices']:,} devices")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


#: Devices of the device part: label -> synthetic_events keyword arguments.
DEVICES = {
    "cloud's population": {"click_rate": 0.05, "liked_click_rate": 0.35},
    "drifted (clicks 0.15 / 0.6)": {"click_rate": 0.15, "liked_click_rate": 0.6},
}
DEVICE_TASKS = {
    "tasks": [
        {"name": "ctr_samples", "triggers": [["page_exit"]], "extract": "samples"},
        {"name": "ctr_score", "triggers": [["page_enter", "exposure"], ["scroll", "exposure"]],
         "extract": "features"},
    ]
}  # fmt: skip


def part_device(quick: bool) -> dict[str, Any]:
    import tempfile
    from dataclasses import asdict

    import torch

    from graphrec.models.ctr import train_ctr
    from graphrec.models.ctr.defaults import TRAIN_DEFAULTS
    from graphrec.models.ctr.experiment import build_ctr_model
    from graphrec.ondevice.walle.device import Device, torch_replay, walle_ctr_dataset
    from graphrec.ondevice.walle.package import build_package

    torch.set_num_threads(1)
    load = bench.LoadLog()
    users, per_user, n = (4, 5_000, 3_000) if quick else (16, 20_000, 20_000)
    start = time.perf_counter()
    data = walle_ctr_dataset(users, per_user, seed=0)
    model = build_ctr_model("din", data, seed=0)
    recipe = asdict(TRAIN_DEFAULTS) | {"epochs": 3}
    train_ctr(model, data.split.train, data.split.valid, seed=0, progress=False, **recipe)
    model.eval()
    cloud_s = time.perf_counter() - start
    out: dict[str, Any] = {"users": users, "events_per_user": per_user, "events": n,
                           "train_rows": data.split.train.num_rows, "cloud_s": cloud_s,
                           "devices": {}}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        package = build_package(model, data.split.train, Path(tmp) / "din.tar", name="din",
                                version="1.0.0", triggers=DEVICE_TASKS)  # fmt: skip
        out["parity_gate"] = package.manifest["parity"]["max_abs_diff"]
        for label, rates in DEVICES.items():
            start = time.perf_counter()
            with Device(package, finetune_every=64, lr=0.05) as device:
                device.run([synthetic_events(n, seed=0, **rates)])
                seconds = time.perf_counter() - start
                report = device.report()
                twin, names = torch_replay(model, device)
                params = dict(twin.named_parameters())
                param_diff = max(
                    float(np.abs(got.reshape(-1) - params[m].detach().numpy().reshape(-1)).max())
                    for got, m in zip(device.tuner.parameters, names)
                )
                inputs = device.rounds[-1][0]
                with torch.no_grad():
                    ref = twin({k: torch.as_tensor(v) for k, v in inputs.items()}).reshape(-1)
                logit_diff = float(np.abs(device.task.infer(inputs) - ref.numpy()).max())
            load.sample()
            report.pop("triggers")
            out["devices"][label] = report | {
                "rates": rates, "seconds": seconds, "param_max_abs_diff": param_diff,
                "served_logit_max_abs_diff": logit_diff, "tuned_parameters": names,
            }  # fmt: skip
    out["load"] = load.note(1)
    return out


STAGE_LABELS = {
    "ingest": "event ingest (validation)",
    "match": "trigger match",
    "extract": "extraction",
    "preprocess": "pre-process (request)",
    "inference": "inference (MNN + post)",
    "finetune_step": "fine-tune step (MNN SGD)",
    "swap": "model swap (save + load .mnn)",
}


def report_device(out: dict[str, Any]) -> str:
    devices = out["devices"]
    first = next(iter(devices.values()))
    stage_rows = []
    for stage, label in STAGE_LABELS.items():
        row = [label]
        for d in devices.values():
            s = d["stages"][stage]
            row += [f"{s['calls']:,}", f"{s['p50_ms']:.3f}", f"{s['p99_ms']:.3f}",
                    f"{s['mean_ms']:.3f}"]  # fmt: skip
        stage_rows.append(row)
    header = ["stage"]
    for k in range(len(devices)):
        header += [f"calls ({k + 1})", "p50 ms", "p99 ms", "mean ms"]
    eval_rows = []
    for k, (label, d) in enumerate(devices.items()):
        ev = d["evaluation"]
        eval_rows.append([
            f"({k + 1}) {label}", f"{d['samples']:,}", f"{d['requests']:,}", str(d["rounds"]),
            f"{ev['samples']:,}", f"{ev['original']['log_loss']:.4f}",
            f"{ev['finetuned']['log_loss']:.4f}", f"{ev['original']['auc']:.4f}",
            f"{ev['finetuned']['auc']:.4f}", f"{d['param_max_abs_diff']:.1e}",
            f"{d['served_logit_max_abs_diff']:.1e}", f"{d['seconds']:.1f}",
        ])  # fmt: skip
    gate = out["parity_gate"]
    lines = [
        "## Walle end to end on a device (`benchmarks/walle.py --part device`)",
        "",
        f"Command: `{COMMAND} --part device`; {out['machine']}; commit {out['commit']}; one "
        f"core. Cloud: DIN trained 3 epochs on {out['train_rows']:,} samples of "
        f"{out['users']} synthetic devices (`walle_ctr_dataset`, {out['events_per_user']:,} "
        f"events each; {out['cloud_s']:.0f} s), packaged behind the parity gate (max |diff| "
        f"onnxruntime {gate['onnxruntime']:.1e}, MNN {gate['mnn']:.1e}). Each device: "
        f"`synthetic_events({out['events']:,}, seed=0)` at its click rates, events arriving "
        "one at a time; requests = `page_enter`/`scroll` > `exposure` matches, samples = the "
        "exposures of each visit at `page_exit`; every 64 samples one MNN SGD step (lr 0.05) "
        "on the dense layers (" + ", ".join(first["tuned_parameters"]) + "), the tuned .mnn "
        "saved, re-loaded and served. Log loss / AUC: samples after the first update, each "
        "scored on arrival (before training on it) by the model in service (tuned) and by the "
        "package's (original). Parity: MNN's tuned parameters and the served logits against "
        "a torch SGD replay of the same rounds.",
        "",
        bench.md_table(["device", "samples", "requests", "rounds", "scored", "log loss orig",
                        "log loss tuned", "AUC orig", "AUC tuned", "param diff",
                        "logit diff", "wall s"], eval_rows),  # fmt: skip
        "",
        "Latency per call (one event per call for the first three stages):",
        "",
        bench.md_table(header, stage_rows),
        "",
        "Fine-tuning only the dense layers recalibrates the drifted device (its click rate is "
        "3x the cloud's) but cannot learn which items a new user likes: the item embeddings "
        "stay frozen and the cloud's attention over the click history already uses that "
        "signal; on a device of the cloud's population it does not help. On shared cores a "
        "p99 of milliseconds is the scheduler.",
    ]
    if out["load"]:
        lines += ["", out["load"]]
    return "\n".join(lines)


#: part -> (run, report, plot or None)
PARTS: dict[str, tuple[Callable[[bool], dict[str, Any]], Callable[[dict[str, Any]], str],
                       Callable[[dict[str, Any], Path], None] | None]] = {
    "triggers": (part_triggers, report_triggers, None),
    "rollout": (part_rollout, report_rollout, plot_rollout),
    "device": (part_device, report_device, None),
}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", required=True, choices=sorted(PARTS))
    parser.add_argument("--quick", action="store_true", help="small sizes; BENCHMARKS.md untouched")
    args = parser.parse_args()
    run, report, plot = PARTS[args.part]
    out = {"machine": bench.machine(), "commit": commit(), **run(args.quick)}
    name = f"walle_{args.part}" + ("_quick" if args.quick else "")
    bench.write_results(name, out)
    if plot is not None:
        plot(out, bench.RESULTS / f"{name}.png")
    bench.publish(f"walle-{args.part}", report(out), update_md=not args.quick)


if __name__ == "__main__":
    main()
