"""``graphrec walle``: the Walle device-cloud pipeline (event triggers, task packages, rollout)."""

from __future__ import annotations

import argparse
import json
import time

from graphrec.commands._args import bounded_float, positive_float, positive_int
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
    _register_rollout_sim(group_sub)
    del group_sub  # the actions register here


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
