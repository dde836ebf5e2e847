"""``graphrec fastcover``: k seeds covering the most nodes within d hops."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from graphrec.commands._args import positive_float, positive_int
from graphrec.commands.data import add_read_options, max_input_bytes
from graphrec.errors import GraphrecError
from graphrec.registry import SOLVERS


def k_list(text: str) -> list[int]:
    """``-k``: one budget or a comma list of distinct budgets, each an integer >= 1."""
    parse = positive_int("-k")
    ks = [parse(part.strip()) for part in text.split(",")]
    seen = [k for i, k in enumerate(ks) if k in ks[:i]]
    if seen:
        raise argparse.ArgumentTypeError(f"-k lists {seen[0]} twice; expected distinct budgets")
    return ks


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
    fc.add_argument(
        "-k",
        type=k_list,
        default=[10],
        metavar="K[,K...]",
        help="number of seeds; a comma list (e.g. 1,8,32) solves each budget on one read of the "
        "graph (default 10)",
    )
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
        help="fastcover --one-pass: re-scoring rounds",
    )
    fc.add_argument(
        "--candidates",
        type=positive_int("--candidates"),
        default=fastcover["candidates"],
        metavar="C",
        help="fastcover: fix the greedy pool to the C*k best-scored nodes (default: sized "
        "automatically)",
    )
    fc.add_argument(
        "--one-pass",
        action="store_true",
        default=fastcover["one_pass"],
        help="fastcover: the top-k GNN scores of one forward pass (--rounds passes) instead of "
        "exact greedy among the best-scored nodes",
    )
    fc.add_argument(
        "--max-entries",
        type=positive_int("--max-entries"),
        default=fastcover["max_entries"],
        metavar="N",
        help="fastcover: stop growing the automatic pool once its d-balls hold N entries "
        "(default 16 * (nodes + edges))",
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
    fc.add_argument(
        "--out",
        type=Path,
        help="write one seed per line (the file's own node ids); with several k, one file per k "
        "named with .kK before the suffix (seeds.txt -> seeds.k8.txt)",
    )
    fc.add_argument(
        "--plot",
        type=Path,
        metavar="FILE.png",
        help="draw coverage against k (and greedy's with --compare) as a PNG",
    )
    fc.add_argument("--force", action="store_true", help="overwrite --out and --plot files")
    fc.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object (with several k, their results in its 'runs' list)",
    )
    fc.add_argument("--quiet", action="store_true", help="no progress bars")
    fc.set_defaults(func=run)


def out_paths(out: Path, ks: list[int]) -> dict[int, Path]:
    """Where ``--out`` writes the seeds of each k: ``out`` itself for one k, else ``out`` with
    ``.kK`` before its suffix."""
    if len(ks) == 1:
        return {ks[0]: out}
    return {k: out.with_name(f"{out.stem}.k{k}{out.suffix}") for k in ks}


def run(args: argparse.Namespace) -> int:
    """Run ``graphrec fastcover``."""
    from tqdm import tqdm

    from combinatorial.api import solve
    from combinatorial.coverage import coverage
    from combinatorial.graph import adjacency
    from graphrec.io.atomic import atomic_write_text, check_output

    ks = args.k
    outs = {} if args.out is None else out_paths(args.out, ks)
    for path in outs.values():
        check_output(path, force=args.force)
    if args.plot is not None:
        if args.plot.suffix.lower() != ".png":
            raise GraphrecError(f"--plot {args.plot}: expected a file name ending in .png")
        check_output(args.plot, force=args.force, option="--plot")
    if args.powerlaw is not None and args.graph is not None:
        raise GraphrecError("give either GRAPH or --powerlaw N, not both")
    defaults = SOLVERS.defaults("fastcover")
    if args.method != "fastcover" and [getattr(args, o) for o in defaults] != [*defaults.values()]:
        raise GraphrecError(f"--rounds, --candidates, --one-pass and --max-entries apply to "
                            f"--method fastcover only, not {args.method}")  # fmt: skip
    progress = not (args.quiet or args.json)
    graph, name, load_s = _load(args, progress)
    max_bytes = None if args.max_memory is None else int(args.max_memory * 2**30)
    sols = []
    quiet_ks = not progress or len(ks) < 2
    for k in tqdm(ks, desc="budgets", unit="budget", leave=False, disable=quiet_ks):
        sol = solve(
            graph,
            k,
            args.d,
            method=args.method,
            rounds=args.rounds,
            candidates=args.candidates,
            one_pass=args.one_pass,
            max_entries=args.max_entries,
            seed=args.seed,
            max_bytes=max_bytes,
            progress=progress,
            ilp_force=args.ilp_any_size,
            ilp_time_limit=args.ilp_time_limit,
        )
        sols.append(sol)
    ref, ref_covered = None, []
    if args.compare:
        # one greedy run to the largest k: its picks do not depend on k, so its first k seeds
        # are greedy's solution for every smaller k
        ref = solve(graph, max(ks), args.d, method="greedy", max_bytes=max_bytes, progress=progress)
        adj = adjacency(graph.data.edge_index, graph.num_nodes)
        ref_covered = [
            ref.covered if k >= ref.seeds.size else coverage(adj, ref.seeds[:k], args.d)
            for k in ks
        ]
    for k, sol in zip(ks, sols):
        if k in outs:
            atomic_write_text(outs[k], "".join(f"{s}\n" for s in sol.seed_ids))
    if args.plot is not None:
        _plot(args.plot, ks, sols, ref_covered, name, args.d)
    if args.json:
        print(json.dumps(_json(args, graph, name, load_s, sols, ref, ref_covered)))
        return 0
    kind = "directed edges" if graph.directed else "directed edges (symmetrised)"
    print(f"graph     {name}: {sols[0].n:,} nodes, {graph.num_edges:,} {kind}")
    extra = ""
    if args.method == "fastcover":
        ways: dict[str, list[str]] = {}
        for k, sol in zip(ks, sols):
            ways.setdefault(sol.info["strategy"], []).append(str(k))
        if len(ways) == 1:
            extra = f", {sols[0].info['strategy']}"
        else:  # the path taken depends on k
            extra = "".join(f"; k={','.join(k)}: {way}" for way, k in ways.items())
        if args.one_pass:
            extra += f", rounds={args.rounds}"
        if args.candidates:
            extra += f" among the top {args.candidates}k"
    if len(ks) == 1:
        _print_one(args, sols[0], load_s, ref, extra)
    else:
        _print_sweep(args, sols, load_s, ref, ref_covered, extra)
    for k, sol in zip(ks, sols):
        if k in outs:
            print(f"wrote     {len(sol.seed_ids)} seeds to {outs[k]}")
    if args.plot is not None:
        print(f"wrote     coverage-vs-k plot to {args.plot}")
    return 0


def _load(args: argparse.Namespace, progress: bool) -> tuple[Any, str, float]:
    """The input graph as an :class:`~graphrec.io.EdgeList`, its name and the seconds taken."""
    from graphrec.datasets import ego_facebook, powerlaw_digraph
    from graphrec.io import EdgeList, read_edgelist

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
            progress=progress,
        )
        name = str(args.graph)
    return graph, name, time.perf_counter() - t0


def _solve_s(sol: Any) -> float:
    return sum(t for phase, t in sol.timings.items() if phase != "load")


def _json(
    args: argparse.Namespace,
    graph: Any,
    name: str,
    load_s: float,
    sols: list[Any],
    ref: Any,
    ref_covered: list[int],
) -> dict[str, Any]:
    """One object; with several k, the per-k results are its ``runs`` and greedy's single run
    (to the largest k) is ``greedy``."""
    head = {"graph": name, "nodes": sols[0].n, "edges": graph.num_edges}
    runs = []
    for i, sol in enumerate(sols):
        run = {
            "k": args.k[i],
            "d": args.d,
            "method": sol.method,
            "rounds": args.rounds,
            "seeds": sol.seed_ids,
            "covered": sol.covered,
            "coverage": sol.coverage,
            "load_s": load_s,
            "solve_s": _solve_s(sol),
            "timings": sol.timings,
            **{
                key: sol.info[key]
                for key in ("strategy", "certified", "upper_bound")
                if key in sol.info
            },
            "greedy": None,
        }
        if ref is not None:
            run["greedy"] = {"covered": ref_covered[i], "ratio": sol.covered / ref_covered[i]}
            if len(sols) == 1:
                run["greedy"]["solve_s"] = _solve_s(ref)
        runs.append(run)
    if len(sols) == 1:
        return {**head, **runs[0]}
    for run in runs:
        del run["load_s"], run["d"], run["rounds"]
    greedy = None if ref is None else {"k": max(args.k), "solve_s": _solve_s(ref),
                                       "timings": ref.timings}  # fmt: skip
    return {
        **head,
        "d": args.d,
        "method": sols[0].method,
        "rounds": args.rounds,
        "load_s": load_s,
        "runs": runs,
        "greedy": greedy,
    }


def _print_one(args: argparse.Namespace, sol: Any, load_s: float, ref: Any, extra: str) -> None:
    seed_list = sol.seed_ids
    solve_s = _solve_s(sol)
    shown = ", ".join(str(s) for s in seed_list[:20])
    more = f", ... ({len(seed_list) - 20} more)" if len(seed_list) > 20 else ""
    print(f"method    {sol.method} (k={args.k[0]}, d={args.d}{extra})")
    print(f"seeds     {shown}{more}")
    print(f"coverage  {sol.covered:,} of {sol.n:,} nodes ({100 * sol.coverage:.2f}%)")
    if "upper_bound" in sol.info:
        cert = ", certified: exact greedy's seeds" if sol.info.get("certified") else ""
        bound = sol.info["upper_bound"]
        print(f"bound     optimum <= {bound:,} ({sol.covered / max(bound, 1):.4f} of it{cert})")
    print(f"time      load {load_s:.3f} s, solve {solve_s:.3f} s")
    if ref is not None:
        ref_s = _solve_s(ref)
        print(f"\n  {'method':<10} {'covered':>12} {'share':>8} {'solve s':>9}")
        for what, s, secs in ((sol.method, sol, solve_s), ("greedy", ref, ref_s)):
            print(f"  {what:<10} {s.covered:>12,} {100 * s.coverage:>7.2f}% {secs:>9.3f}")
        speed = ref_s / solve_s if solve_s > 0 else float("inf")
        verdict = f"{speed:.1f}x faster" if speed >= 1 else f"{1 / speed:.1f}x slower"
        print(
            f"  {sol.method} / greedy: {sol.covered / ref.covered:.4f} of greedy's coverage, "
            f"{verdict} (exact lazy greedy on the d-closure, (1-1/e)-approximate)"
        )


def _print_sweep(
    args: argparse.Namespace,
    sols: list[Any],
    load_s: float,
    ref: Any,
    ref_covered: list[int],
    extra: str,
) -> None:
    print(f"method    {sols[0].method} (d={args.d}{extra})")
    print(f"time      load {load_s:.3f} s (once)")
    head = f"\n  {'method':<10} {'k':>6} {'covered':>12} {'share':>8} {'solve s':>9}"
    print(head + ("" if ref is None else f" {'greedy':>12} {'ratio':>7}"))
    for i, sol in enumerate(sols):
        row = f"  {sol.method:<10} {args.k[i]:>6} {sol.covered:>12,} {100 * sol.coverage:>7.2f}%"
        row += f" {_solve_s(sol):>9.3f}"
        if ref is not None:
            row += f" {ref_covered[i]:>12,} {sol.covered / ref_covered[i]:>7.4f}"
        print(row)
    if ref is not None:
        build = ref.timings.get("closure", 0.0)
        print(
            f"  greedy: exact lazy greedy on the d-closure, one run to k={max(args.k)} in "
            f"{_solve_s(ref):.3f} s (closure {build:.3f} s, which any k pays; picks "
            f"{_solve_s(ref) - build:.3f} s)\n  its first k picks are its solution for each "
            "smaller k"
        )


def _plot(
    path: Path, ks: list[int], sols: list[Any], ref_covered: list[int], name: str, d: int
) -> None:
    """Coverage share against k, written atomically as a PNG."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from graphrec.io.atomic import atomic_open

    order = sorted(range(len(ks)), key=ks.__getitem__)
    x = [ks[i] for i in order]
    n = sols[0].n
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(x, [100 * sols[i].coverage for i in order], "o-", label=sols[0].method)
    if ref_covered:
        ax.plot(x, [100 * ref_covered[i] / n for i in order], "s--", label="greedy")
    if x[-1] >= 10 * x[0]:
        ax.set_xscale("log")
    ax.set_xticks(x, [str(k) for k in x])
    ax.minorticks_off()
    ax.set_xlabel("k (seeds)")
    ax.set_ylabel(f"covered within {d} hops (% of {n:,} nodes)")
    ax.set_title(f"{name}, d = {d}", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    with atomic_open(path, "wb") as f:
        f.write(buf.getvalue())
