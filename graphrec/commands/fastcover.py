"""``graphrec fastcover``: k seeds covering the most nodes within d hops."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from graphrec.commands._args import positive_float, positive_int
from graphrec.commands.data import add_read_options, max_input_bytes
from graphrec.errors import GraphrecError
from graphrec.registry import SOLVERS


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``fastcover`` subcommand to the top-level parser (``--method``: a name of
    :data:`graphrec.registry.SOLVERS`; solver options default to its registered config)."""
    fastcover, ilp = SOLVERS.defaults("fastcover"), SOLVERS.defaults("ilp")
    fc = sub.add_parser(
        "fastcover",
        help="influence maximization: k seeds covering the most nodes within d hops",
        description="Choose at most k seeds maximising the number of nodes within d hops of a "
        "seed (a seed covers itself; an edge u v means u covers v). Without GRAPH, runs on the "
        "embedded SNAP ego-Facebook network (4,039 people, 88,234 friendships). To train "
        "FastCover models: graphrec fastcover train --help.",
    )
    fc.add_argument("graph", nargs="?", type=Path, help="edge list file (.txt, .csv, .gz)")
    fc.add_argument(
        "--powerlaw",
        type=positive_int("--powerlaw"),
        metavar="N",
        help="instead of GRAPH, generate a directed power-law (Chung-Lu) graph with N nodes "
        "and mean degree --avg-degree (seeded by --seed)",
    )
    fc.add_argument(
        "--avg-degree",
        type=positive_float("--avg-degree"),
        default=10.0,
        help="mean out-degree of --powerlaw (default 10)",
    )
    fc.add_argument("-k", type=positive_int("-k"), default=10, help="number of seeds")
    fc.add_argument("-d", type=positive_int("-d"), default=2, help="hop count")
    fc.add_argument("--undirected", action="store_true", help="treat each edge as both directions")
    add_read_options(fc)
    fc.add_argument(
        "--method",
        choices=SOLVERS.names(),
        default="fastcover",
    )
    fc.add_argument(
        "--rounds",
        type=positive_int("--rounds"),
        default=fastcover["rounds"],
        help="fastcover re-scoring rounds",
    )
    fc.add_argument(
        "--candidates",
        type=positive_int("--candidates"),
        default=fastcover["candidates"],
        metavar="C",
        help="fastcover: exact greedy among the C*k best-scored nodes (no closure)",
    )
    fc.add_argument("--seed", type=int, default=0, help="random seed (ris, --powerlaw)")
    fc.add_argument(
        "--max-memory",
        type=positive_float("--max-memory"),
        default=None,
        metavar="GIB",
        help="memory budget for the d-closure (greedy, ilp); default 4 GiB",
    )
    fc.add_argument(
        "--ilp-any-size",
        action="store_true",
        help="ilp: try the exact MILP above 5,000 nodes (it may not finish in --ilp-time-limit)",
    )
    fc.add_argument(
        "--ilp-time-limit",
        type=positive_float("--ilp-time-limit"),
        default=ilp["time_limit"],
        metavar="SECONDS",
        help="ilp: solver time limit (default %(default)g)",
    )
    fc.add_argument(
        "--compare",
        action="store_true",
        help="also run exact lazy greedy and print the coverage ratio to it",
    )
    fc.add_argument("--out", type=Path, help="write one seed per line (the file's own node ids)")
    fc.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    fc.add_argument("--json", action="store_true", help="print one JSON object")
    fc.add_argument("--quiet", action="store_true", help="no progress bars")
    fc.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``graphrec fastcover``."""
    from combinatorial.api import solve
    from graphrec.datasets import ego_facebook, powerlaw_digraph
    from graphrec.io import EdgeList, read_edgelist
    from graphrec.io.atomic import atomic_write_text, check_output

    if args.out is not None:
        check_output(args.out, force=args.force)
    if args.powerlaw is not None and args.graph is not None:
        raise GraphrecError("give either GRAPH or --powerlaw N, not both")
    defaults = SOLVERS.defaults("fastcover")
    if args.method != "fastcover" and [args.rounds, args.candidates] != [*defaults.values()]:
        raise GraphrecError(f"--rounds and --candidates apply to --method fastcover only, "
                            f"not {args.method}")  # fmt: skip
    progress = not (args.quiet or args.json)
    t0 = time.perf_counter()
    if args.powerlaw is not None:
        data = powerlaw_digraph(args.powerlaw, args.avg_degree, seed=args.seed)
        src, dst = data.edge_index.numpy()
        graph = EdgeList.from_edges(src, dst, node_ids=range(args.powerlaw))
        name = f"generated power-law graph (seed {args.seed})"
    elif args.graph is None:
        graph = ego_facebook()
        name = "SNAP ego-Facebook (embedded)"
    else:
        graph = read_edgelist(
            args.graph,
            undirected=args.undirected,
            header=args.header,
            delimiter=args.delimiter,
            max_input_bytes=max_input_bytes(args),
        )
        name = str(args.graph)
    load_s = time.perf_counter() - t0
    max_bytes = None if args.max_memory is None else int(args.max_memory * 2**30)
    sol = solve(
        graph,
        args.k,
        args.d,
        method=args.method,
        rounds=args.rounds,
        candidates=args.candidates,
        seed=args.seed,
        max_bytes=max_bytes,
        progress=progress,
        ilp_force=args.ilp_any_size,
        ilp_time_limit=args.ilp_time_limit,
    )
    seed_list = sol.seed_ids
    solve_s = sum(t for phase, t in sol.timings.items() if phase != "load")
    ref = None
    if args.compare:
        ref = solve(graph, args.k, args.d, method="greedy", max_bytes=max_bytes, progress=progress)
        ref_s = sum(t for phase, t in ref.timings.items() if phase != "load")
    if args.out is not None:
        atomic_write_text(args.out, "".join(f"{s}\n" for s in seed_list))
    if args.json:
        print(
            json.dumps(
                {
                    "graph": name,
                    "nodes": sol.n,
                    "edges": graph.num_edges,
                    "k": args.k,
                    "d": args.d,
                    "method": sol.method,
                    "rounds": args.rounds,
                    "seeds": seed_list,
                    "covered": sol.covered,
                    "coverage": sol.coverage,
                    "load_s": load_s,
                    "solve_s": solve_s,
                    "timings": sol.timings,
                    "greedy": None
                    if ref is None
                    else {
                        "covered": ref.covered,
                        "ratio": sol.covered / ref.covered,
                        "solve_s": ref_s,
                    },
                }
            )
        )
        return 0
    shown = ", ".join(str(s) for s in seed_list[:20])
    more = f", ... ({len(seed_list) - 20} more)" if len(seed_list) > 20 else ""
    kind = "directed edges" if graph.directed else "directed edges (symmetrised)"
    print(f"graph     {name}: {sol.n:,} nodes, {graph.num_edges:,} {kind}")
    extra = ""
    if args.method == "fastcover":
        extra = f", rounds={args.rounds}"
        if args.candidates:
            extra += f", exact greedy among the top {args.candidates}k"
    print(f"method    {sol.method} (k={args.k}, d={args.d}{extra})")
    print(f"seeds     {shown}{more}")
    print(f"coverage  {sol.covered:,} of {sol.n:,} nodes ({100 * sol.coverage:.2f}%)")
    print(f"time      load {load_s:.3f} s, solve {solve_s:.3f} s")
    if ref is not None:
        print(f"\n  {'method':<10} {'covered':>12} {'share':>8} {'solve s':>9}")
        for what, s, secs in ((sol.method, sol, solve_s), ("greedy", ref, ref_s)):
            print(f"  {what:<10} {s.covered:>12,} {100 * s.coverage:>7.2f}% {secs:>9.3f}")
        speed = ref_s / solve_s if solve_s > 0 else float("inf")
        verdict = f"{speed:.1f}x faster" if speed >= 1 else f"{1 / speed:.1f}x slower"
        print(
            f"  {sol.method} / greedy: {sol.covered / ref.covered:.4f} of greedy's coverage, "
            f"{verdict} (exact lazy greedy on the d-closure, (1-1/e)-approximate)"
        )
    if args.out is not None:
        print(f"wrote     {len(seed_list)} seeds to {args.out}")
    return 0
