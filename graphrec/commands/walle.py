"""``graphrec walle``: the Walle device-cloud pipeline (event triggers, task packages, rollout)."""

from __future__ import annotations

import argparse
import json
import time

from graphrec.commands._args import bounded_float, positive_float, positive_int
from graphrec.commands.walle_package import register as register_package
from graphrec.ondevice.walle.rollout import (
    MODES,
    TIERS,
    Delivery,
    PopulationConfig,
    ReleasePolicy,
    sample_population,
    simulate_rollout,
)

DELIVERY, POPULATION = Delivery(), PopulationConfig()


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``walle`` subcommand group to the top-level parser."""
    group = sub.add_parser(
        "walle", help="Walle on the device: event triggers, task packages, rollout simulation"
    )
    group_sub = group.add_subparsers(dest="walle_command", metavar="ACTION")
    group.set_defaults(func=lambda _: (group.print_help(), 2)[1])
    _register_run_events(group_sub)
    _register_rollout_sim(group_sub)
    register_package(group_sub)
    _register_device(group_sub)


def _register_run_events(group_sub: argparse._SubParsersAction) -> None:
    p = group_sub.add_parser(
        "run-events",
        help="match task triggers on an app-event stream and extract CTR samples",
        description="Read an event stream (JSON lines, .gz allowed, or columnar .npz; see "
        "graphrec.ondevice.walle.events) or generate a synthetic one, drop malformed, unknown, "
        "oversized and out-of-order events (counted by reason), match every task's triggers "
        "in one pass of an Aho-Corasick automaton and run each task's extractor on the "
        "matched page visit. Prints matches per trigger, drops by reason and throughput; "
        "--out writes one CSV of CTR rows per task (graphrec.ondevice.walle.triggers).",
    )
    p.add_argument("events", nargs="?", metavar="EVENTS",
                   help="event file (.jsonl, .jsonl.gz or .npz)")  # fmt: skip
    p.add_argument("--synthetic", type=positive_int("--synthetic"), metavar="N", default=None,
                   help="generate N synthetic events instead of reading EVENTS")  # fmt: skip
    p.add_argument("--seed", type=int, default=0,
                   help="seed of --synthetic (default: %(default)s)")  # fmt: skip
    p.add_argument("--save-events", metavar="PATH", default=None,
                   help="also write the --synthetic stream here (.jsonl[.gz] or .npz)")  # fmt: skip
    p.add_argument("--triggers", metavar="FILE", default=None,
                   help="JSON task file (events, tasks with triggers and extract); default: "
                   "ctr_samples at page_exit, ctr_score at page_enter/scroll > exposure, "
                   "quick_click at exposure > click")  # fmt: skip
    p.add_argument("--user", default=None,
                   help="user of the rows (default: the file's, or 'synthetic')")  # fmt: skip
    p.add_argument("--strict", action="store_true",
                   help="stop at the first bad event instead of dropping it")  # fmt: skip
    p.add_argument("--max-payload-bytes", type=positive_int("--max-payload-bytes"),
                   default=4096, help="longest payload kept (default: %(default)s)")  # fmt: skip
    p.add_argument("--max-window", type=positive_int("--max-window"), default=1024,
                   help="most events handed to an extractor (default: %(default)s)")  # fmt: skip
    p.add_argument("--max-history", type=positive_int("--max-history"), default=50,
                   help="longest click history in a row (default: %(default)s)")  # fmt: skip
    p.add_argument("--chunk-events", type=positive_int("--chunk-events"), default=65536,
                   help="events read per batch (default: %(default)s)")  # fmt: skip
    p.add_argument("--out", metavar="DIR", default=None,
                   help="write TASK.csv (CTR rows, graphrec.io.read_ctr_table with "
                   "WALLE_CTR_SCHEMA) per extracting task into this folder")  # fmt: skip
    p.add_argument("--force", action="store_true", help="overwrite files in --out")
    p.add_argument("--json", action="store_true", help="print the results as one JSON object")
    p.set_defaults(func=run_events_command)


def run_events_command(args: argparse.Namespace) -> int:
    """Run ``graphrec walle run-events``."""
    from pathlib import Path

    from graphrec.errors import ConfigError
    from graphrec.io.atomic import check_output
    from graphrec.ondevice.walle.events import (
        EventCatalog,
        EventValidator,
        read_events,
        synthetic_events,
        write_events,
    )
    from graphrec.ondevice.walle.triggers import DEFAULT_TASKS, Pipeline, load_tasks, write_samples

    if (args.events is None) == (args.synthetic is None):
        raise ConfigError("give either EVENTS or --synthetic N")
    if args.save_events is not None and args.synthetic is None:
        raise ConfigError("--save-events needs --synthetic")
    catalog, tasks = (EventCatalog(), list(DEFAULT_TASKS))
    if args.triggers is not None:
        catalog, tasks = load_tasks(args.triggers)
    outputs = {}
    if args.out is not None:
        folder = Path(args.out)
        if not folder.is_dir():
            raise ConfigError(f"--out {folder} is not a folder; create it first")
        outputs = {t.name: check_output(folder / f"{t.name}.csv", force=args.force)
                   for t in tasks if t.extract != "none"}  # fmt: skip
    validator = EventValidator(
        catalog,
        max_payload_bytes=args.max_payload_bytes,
        strict=args.strict,
        source=args.events or "<synthetic>",
    )
    if args.synthetic is not None:
        stream = [synthetic_events(args.synthetic, seed=args.seed)]
        user = "synthetic" if args.user is None else args.user
        if args.save_events is not None:
            write_events(check_output(args.save_events, force=args.force, option="--save-events"),
                         stream[0], user=user)  # fmt: skip
    else:
        stream = read_events(args.events, validator, chunk_events=args.chunk_events)
        user = stream.user if args.user is None else args.user
    pipeline = Pipeline(tasks, validator, user=user, max_window=args.max_window,
                        max_history=args.max_history)  # fmt: skip
    start = time.perf_counter()
    pipeline.run(stream)
    seconds = time.perf_counter() - start
    report = pipeline.report()
    report |= {
        "source": args.events or f"synthetic ({args.synthetic} events, seed {args.seed})",
        "user": user,
        "seconds": seconds,
        "events_per_s": report["events"] / seconds if seconds else None,
        "match_seconds": pipeline.match_seconds,
        "match_events_per_s": (
            report["accepted"] / pipeline.match_seconds if pipeline.match_seconds else None
        ),
        "written": {},
    }
    for name, path in outputs.items():
        write_samples(path, pipeline.rows[name])
        report["written"][name] = str(path)
    if args.json:
        print(json.dumps(report))
        return 0
    rate = f"{report['events_per_s']:,.0f}" if report["events_per_s"] else "-"
    print(f"{report['source']}: {report['events']:,} events, {report['accepted']:,} accepted, "
          f"{report['dropped']:,} dropped; {seconds:.2f} s ({rate} events/s read, checked, "
          f"matched and extracted)")  # fmt: skip
    if report["match_events_per_s"]:
        print(f"trigger automaton: {pipeline.trie.num_states} states, "
              f"{report['match_events_per_s']:,.0f} events/s")  # fmt: skip
    drops = [f"{r} {n:,}" for r, n in report["drops"].items() if n]
    print("drops: " + (", ".join(drops) if drops else "none"))
    for reason, first in report["first_drop"].items():
        print(f"  first {reason}: line {first['line']}: {first['problem']}")
    print(f"{'task':<16} {'trigger':<28} {'matches':>9} {'rows':>9}")
    shown = set()
    for t in report["triggers"]:
        count = report["rows"].get(t["task"])
        rows = "" if t["task"] in shown else "-" if count is None else f"{count:,}"
        name = "" if t["task"] in shown else t["task"]
        shown.add(t["task"])
        print(f"{name:<16} {' > '.join(t['trigger']):<28} {t['matches']:>9,} {rows:>9}".rstrip())
    for name, path in report["written"].items():
        print(f"wrote {path} ({report['rows'][name]:,} rows)")
    if args.save_events is not None:
        print(f"wrote {args.save_events} ({args.synthetic:,} events)")
    return 0


def _register_device(group_sub: argparse._SubParsersAction) -> None:
    p = group_sub.add_parser(
        "device",
        help="one simulated device end to end: events -> triggers -> samples -> MNN "
        "inference and fine-tuning -> the updated model serves",
        description="Run a task package on a simulated device (graphrec.ondevice.walle.device): "
        "app events arrive --arrival at a time, the package's triggers fire, its 'features' "
        "tasks' rows are served by the package's model in MNN, its 'samples' tasks' labelled "
        "rows are queued, and every --finetune-every of them a fine-tuning round updates the "
        "dense layers in MNN; the tuned .mnn is saved, re-loaded and serves the next requests. "
        "Prints the latency of each stage and the log loss / AUC, on the samples that arrived "
        "after the first update, of the model in service against the package's. The package "
        "must read WALLE_CTR_SCHEMA rows: build it with 'graphrec walle package build "
        "--dataset walle-synthetic --triggers tasks.json'.",
    )
    p.add_argument("--package", required=True, metavar="PKG", help="task package (.tar/folder)")
    p.add_argument("--events", metavar="FILE", default=None,
                   help="event file (.jsonl, .jsonl.gz or .npz)")  # fmt: skip
    p.add_argument("--synthetic", type=positive_int("--synthetic"), metavar="N", default=None,
                   help="N synthetic events instead of --events (default: 20000)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0,
                   help="seed of --synthetic, i.e. the user (default: %(default)s)")  # fmt: skip
    p.add_argument("--click-rate", type=bounded_float("--click-rate", minimum=0.0), default=0.05,
                   help="--synthetic: click rate of the items the user does not like "
                   "(default: %(default)s, as the walle-synthetic cloud data)")  # fmt: skip
    p.add_argument("--liked-click-rate", type=bounded_float("--liked-click-rate", minimum=0.0),
                   default=0.35, help="--synthetic: click rate of the liked items "
                   "(default: %(default)s)")  # fmt: skip
    p.add_argument("--finetune-every", type=positive_int("--finetune-every"), default=64,
                   metavar="N", help="labelled samples per fine-tuning round (default: "
                   "%(default)s)")  # fmt: skip
    p.add_argument("--no-finetune", action="store_true", help="serve the package's model only")
    p.add_argument("--lr", type=positive_float("--lr"), default=0.05,
                   help="SGD learning rate (default: %(default)s)")  # fmt: skip
    p.add_argument("--epochs", type=positive_int("--epochs"), default=1,
                   help="passes over a round's samples (default: %(default)s)")  # fmt: skip
    p.add_argument("--arrival", type=positive_int("--arrival"), default=1,
                   help="events arriving at once (default: %(default)s)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the results as one JSON object")
    p.set_defaults(func=device_command)


def device_command(args: argparse.Namespace) -> int:
    """Run ``graphrec walle device``."""
    from graphrec.errors import ConfigError
    from graphrec.ondevice.walle.device import Device
    from graphrec.ondevice.walle.events import read_events, synthetic_events

    if args.events is not None and args.synthetic is not None:
        raise ConfigError("give either --events FILE or --synthetic N")
    start = time.perf_counter()
    with Device(args.package, finetune_every=None if args.no_finetune else args.finetune_every,
                lr=args.lr, epochs=args.epochs) as device:  # fmt: skip
        if args.events is not None:
            stream = read_events(args.events, device.validator)
            device.pipeline.user = stream.user or "device"
        else:
            stream = [synthetic_events(args.synthetic or 20_000, seed=args.seed,
                                       click_rate=args.click_rate,
                                       liked_click_rate=args.liked_click_rate)]
        device.run(stream, arrival=args.arrival)
        report = device.report() | {"seconds": time.perf_counter() - start}
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{args.package}: {report['package']} ({report['model']}); {report['events']:,} events"
          f" ({report['dropped']:,} dropped), {report['samples']:,} labelled samples, "
          f"{report['requests']:,} requests, {report['rounds']} fine-tuning rounds "
          f"({report['steps']} MNN steps); {report['seconds']:.1f} s")  # fmt: skip
    print(f"{'stage':<14} {'calls':>7} {'mean ms':>9} {'p50 ms':>9} {'p99 ms':>9} {'total s':>8}")
    for stage, s in report["stages"].items():
        if s["calls"]:
            print(f"{stage:<14} {s['calls']:>7,} {s['mean_ms']:>9.3f} {s['p50_ms']:>9.3f} "
                  f"{s['p99_ms']:>9.3f} {s['total_s']:>8.2f}")  # fmt: skip
    ev = report["evaluation"]
    if "finetuned" in ev:
        print(f"after the first update ({ev['samples']:,} samples, scored on arrival):")
        for key in ("original", "finetuned"):
            auc = ev[key]["auc"]
            print(f"  {key:<10} log loss {ev[key]['log_loss']:.4f}  AUC "
                  + ("-" if auc is None else f"{auc:.4f}"))  # fmt: skip
    return 0


def _stage(text: str) -> tuple[float, float]:
    """``--stage START:PERCENT`` as ``(start_s, percent)``."""
    try:
        start, percent = (float(x) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--stage must be START_SECONDS:PERCENT, e.g. 600:10, got {text!r}"
        ) from None
    return start, percent


def _percent(text: str) -> float:
    """``--percent P`` in (0, 100]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--percent must be a number, got {text!r}") from None
    if not 0 < value <= 100:
        raise argparse.ArgumentTypeError(f"--percent must be in (0, 100], got {text}")
    return value


def _version_range(text: str) -> tuple[int, int]:
    """``--app-versions LOW:HIGH`` as an inclusive ``(low, high)``."""
    try:
        low, high = (int(x) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--app-versions must be LOW:HIGH integers, e.g. 9:10, got {text!r}"
        ) from None
    return low, high


def _register_rollout_sim(group_sub: argparse._SubParsersAction) -> None:
    p = group_sub.add_parser(
        "rollout-sim",
        help="simulate releasing a task package to many devices (push-then-pull or polling)",
        description="Release a task package to a simulated device population with online/"
        "offline churn, by push-then-pull (a notice over the persistent connection, then a "
        "CDN pull) or by pull-only polling, under a release policy (app versions, tiers, "
        "groups, percentage stages, rollback). Reports the time to 99%% of the online targeted "
        "devices, coverage over time and the server load (requests, notices, bytes per "
        "second: peak and total).",
    )
    p.add_argument("--devices", type=positive_int("--devices"), default=100_000,
                   help="simulated devices (default: %(default)s)")  # fmt: skip
    p.add_argument("--mode", choices=MODES, default="push",
                   help="push (push-then-pull) or poll (pull-only polling)")  # fmt: skip
    p.add_argument("--poll-seconds", type=positive_float("--poll-seconds"),
                   default=DELIVERY.poll_s,
                   help="poll period while online (default: %(default)s)")  # fmt: skip
    p.add_argument("--percent", type=_percent, default=None,
                   help="percentage rollout by a stable hash of the device id, one stage at "
                   "time 0 (default: 100)")  # fmt: skip
    p.add_argument("--stage", type=_stage, action="append", default=None, metavar="START:PCT",
                   help="a stage of a gray -> full release, repeatable (e.g. --stage 0:1 "
                   "--stage 600:10 --stage 1800:100); replaces --percent")  # fmt: skip
    p.add_argument("--tier", choices=TIERS, action="append", default=None,
                   help="target this device tier, repeatable (default: all)")  # fmt: skip
    p.add_argument("--group", type=int, action="append", default=None,
                   help="target this user group, repeatable (default: all)")  # fmt: skip
    p.add_argument("--app-versions", type=_version_range, default=None, metavar="LOW:HIGH",
                   help="target app versions LOW..HIGH, inclusive (population: "
                   f"{', '.join(map(str, POPULATION.app_versions))})")  # fmt: skip
    p.add_argument("--rollback-at", type=bounded_float("--rollback-at", minimum=0.0),
                   default=None, help="roll the release back at this time (seconds)")  # fmt: skip
    p.add_argument("--horizon", type=positive_float("--horizon"), default=POPULATION.horizon_s,
                   help="simulated seconds (default: %(default)s)")  # fmt: skip
    p.add_argument("--mean-online", type=positive_float("--mean-online"),
                   default=POPULATION.mean_online_s,
                   help="mean online session, seconds (default: %(default)s)")  # fmt: skip
    p.add_argument("--mean-offline", type=positive_float("--mean-offline"),
                   default=POPULATION.mean_offline_s,
                   help="mean offline period, seconds (default: %(default)s)")  # fmt: skip
    p.add_argument("--push-rate", type=positive_float("--push-rate"), default=DELIVERY.push_rate,
                   help="notices sent per second (default: %(default)s)")  # fmt: skip
    p.add_argument("--cdn-slots", type=positive_int("--cdn-slots"), default=DELIVERY.cdn_slots,
                   help="concurrent CDN downloads (default: %(default)s)")  # fmt: skip
    p.add_argument("--download-rate", type=positive_float("--download-rate"),
                   default=DELIVERY.download_rate,
                   help="bytes/s of one download (default: %(default)s)")  # fmt: skip
    p.add_argument("--package-bytes", type=positive_int("--package-bytes"),
                   default=DELIVERY.package_bytes,
                   help="task package size (default: %(default)s)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the population and its churn (default: %(default)s)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the results as one JSON object")
    p.set_defaults(func=rollout_sim_command)


COVERAGE_TIMES = (10, 30, 60, 120, 300, 600, 1800, 3600)


def rollout_sim_command(args: argparse.Namespace) -> int:
    """Run ``graphrec walle rollout-sim``."""
    percent = 100.0 if args.percent is None else args.percent
    stages = tuple(args.stage) if args.stage else ((0.0, percent),)
    policy = ReleasePolicy(
        app_versions=args.app_versions,
        tiers=None if args.tier is None else tuple(args.tier),
        groups=None if args.group is None else tuple(args.group),
        stages=stages,
        rollback_at=args.rollback_at,
    )
    delivery = Delivery(
        mode=args.mode,
        poll_s=args.poll_seconds,
        push_rate=args.push_rate,
        cdn_slots=args.cdn_slots,
        download_rate=args.download_rate,
        package_bytes=args.package_bytes,
    )
    config = PopulationConfig(
        devices=args.devices,
        horizon_s=args.horizon,
        mean_online_s=args.mean_online,
        mean_offline_s=args.mean_offline,
    )
    start = time.perf_counter()
    pop = sample_population(config, seed=args.seed)
    population_s = time.perf_counter() - start
    result = simulate_rollout(pop, policy, delivery, progress=None if not args.json else False)
    simulate_s = time.perf_counter() - start - population_s
    times = [t for t in COVERAGE_TIMES if t < config.horizon_s]
    report = result.summary | {
        "seed": args.seed,
        "stages": [list(s) for s in stages],
        "rollback_at": args.rollback_at,
        "coverage_online_at": {str(t): result.coverage_at(t) for t in times},
        "coverage_all_at": {str(t): result.coverage_at(t, online=False) for t in times},
        "population_s": population_s,
        "simulate_s": simulate_s,
    }
    if args.json:
        print(json.dumps(report))
        return 0
    mode = "push-then-pull" if args.mode == "push" else f"polling every {args.poll_seconds:g} s"
    print(f"{report['devices']} devices, {report['targeted']} targeted, {mode}; "
          f"population {population_s:.1f} s, simulation {simulate_s:.1f} s")  # fmt: skip
    t99 = report["t99_online_s"]
    print("time to 99% of online targeted devices: "
          + ("not reached" if t99 is None else f"{t99:g} s"))  # fmt: skip
    print(f"installed by {config.horizon_s:g} s: {report['installed']}, rolled back: "
          f"{report['rolled_back']}, max CDN wait {report['max_cdn_wait_s']:.1f} s")  # fmt: skip
    print(f"requests (polls + pulls): {report['requests']} in all, peak "
          f"{report['peak_requests_per_s']:.0f}/s; notices: {report['notices']}, peak "
          f"{report['peak_notices_per_s']:.0f}/s; bytes: {report['bytes'] / 1e9:.2f} GB, peak "
          f"{report['peak_bytes_per_s'] / 1e9:.2f} GB/s")  # fmt: skip
    print("coverage at t (s): " + "  ".join(
        f"{t}: {report['coverage_online_at'][str(t)]:.3f}/{report['coverage_all_at'][str(t)]:.3f}"
        for t in times) + "  (online targeted / all targeted)")  # fmt: skip
    return 0
