"""FastCover scoring and RIS sampling across processes or machines (``torch.distributed``, gloo).

**Scoring.** The nodes are split into ``P`` contiguous id ranges, one per rank. A GRAT layer's
output at a coverer ``u`` reads its successors ``v`` and, through the reversed softmax over the
coverers of each ``v``, the predecessors ``w`` of those successors. So the logits of a range
after ``L`` layers depend only on its **halo**: ``L`` steps of ``S | N+(S) | N-(N+(S))`` from
the range (one more step ``S | N+(S) | N-(S)`` for degree input features, so the degrees inside
the halo are complete). Each rank runs the model on the halo's edges (in the graph's order,
duplicates included; all ``n`` node rows kept), keeps its own range's logits and sends them to
rank 0. Every per-node sum runs over the same edges in the same order as in one process and
every node keeps its row, so the gathered scores are bit-identical to one process's and so are
the seeds (top-k, ties to the smallest id, or greedy over a candidate pool). On small-world
graphs the halo of any range is nearly the whole graph: the scoring is then replicated, not
split. ``split="edges"`` splits the edge work on any graph instead (each rank runs every layer
on its range's in-edges and the layer outputs are summed over the ranks), at the price of
float rounding: the logits are not bit-identical, and seeds can differ where scores nearly tie.

**RIS.** Every rank draws the same ``samples`` uniform targets from ``seed``; each distinct
target's reverse d-ball is computed once and weighted by its multiplicity. Each rank computes
the balls of its contiguous block of the distinct targets and sends them to rank 0, which runs
greedy max coverage on the blocks in order: the sampled sets, hence the seeds, do not depend
on ``P``.

Each rank reads the whole graph (halos and reverse balls need it); only owned scores and
sampled balls travel. Local workers (:func:`distributed_scores`, :func:`distributed_ris`) are
forked processes (spawned where fork is unavailable) meeting over a file rendezvous; across
machines run ``python -m combinatorial.distributed`` on each with ``MASTER_ADDR``,
``MASTER_PORT``, ``WORLD_SIZE`` and ``RANK`` set (``env://``, as ``torchrun`` does).
"""

from __future__ import annotations

import argparse
import datetime
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.utils import subgraph

from combinatorial.baselines.greedy import max_cover
from combinatorial.closure import balls_of
from combinatorial.gnn.inference import load_pretrained, one_pass_solution, scores, top_k
from combinatorial.gnn.model import FastCover, node_features
from combinatorial.graph import (
    adjacency,
    as_csr,
    check_d,
    check_k,
    reach,
    unique_sorted,
    with_self_loops,
)
from combinatorial.pruned import fastcover_greedy
from combinatorial.solution import Solution
from graphrec.errors import ConfigError, GraphrecError

__all__ = [
    "distributed_fastcover",
    "distributed_ris",
    "distributed_scores",
    "edge_split_scores",
    "halo_mask",
    "part_bounds",
    "partitioned_ris",
    "partitioned_scores",
    "rank_reverse_balls",
    "rank_scores",
    "ris_targets",
    "select_seeds",
]

#: How :func:`partitioned_scores` splits the scoring over the ranks.
SPLITS = ("halo", "edges")
#: Extra halo steps needed by each kind of input feature (see the module docstring).
FEATURE_HOPS = {"ones": 0, "degree": 1}
_BALL_BATCH = 1024  # targets per sparse BFS batch in rank_reverse_balls
TIMEOUT = datetime.timedelta(minutes=30)


def _check_workers(workers: Any) -> int:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be an integer >= 1, got {workers!r}")
    return workers


def _check_features(model: FastCover) -> str:
    if model.features not in FEATURE_HOPS:
        raise ConfigError(
            f"distributed scoring supports model features {sorted(FEATURE_HOPS)}, "
            f"got {model.features!r}"
        )
    return model.features


def _check_samples(samples: Any) -> int:
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ConfigError(f"samples must be an integer >= 1, got {samples!r}")
    return samples


def part_bounds(num_nodes: int, parts: int) -> np.ndarray:
    """``parts + 1`` bounds of contiguous, near-equal node id ranges: part r owns
    ``[bounds[r], bounds[r + 1])``."""
    return np.linspace(0, num_nodes, _check_workers(parts) + 1).round().astype(np.int64)


def halo_mask(
    adj: sp.csr_array, owned: np.ndarray, layers: int, feature_hops: int = 0
) -> np.ndarray:
    """Nodes whose inputs the ``layers``-layer GRAT logits of ``owned`` depend on (boolean ``[n]``).

    ``layers`` steps of ``S | N+(S) | N-(N+(S))`` (successors, then their coverers), then
    ``feature_hops`` steps of ``S | N+(S) | N-(S)``. Cost O(nnz) per step (sparse mat-vec).

    Args:
        adj: binary ``n x n`` adjacency, ``A[u, v]`` = edge u -> v (u covers v).
        owned: boolean ``[n]`` mask of the nodes whose logits are wanted.
        layers: number of GRAT layers.
        feature_hops: extra steps for the input features (0 for constant, 1 for degrees).
    """
    s = np.asarray(owned, dtype=bool).copy()
    AT = adj.T
    for _ in range(layers):
        succ = AT @ s
        s |= succ | (adj @ succ)
    for _ in range(feature_hops):
        s |= (AT @ s) | (adj @ s)
    return s


def rank_scores(
    model: FastCover,
    edge_index: Tensor,
    num_nodes: int,
    rank: int,
    world_size: int,
    *,
    adj: sp.csr_array | None = None,
) -> tuple[Tensor, dict[str, int]]:
    """Logits of rank ``rank``'s nodes (``part_bounds(num_nodes, world_size)``) from the edges
    of their halo only; bit-identical to the same slice of
    :func:`combinatorial.gnn.scores` on the whole graph.

    The forward keeps all ``n`` node rows (those outside the halo get no edges), so each node
    sits at the same row as in one process: dense matrix kernels round a row differently
    depending on its position, so a compacted subgraph would agree only to float rounding.

    Returns:
        ``(logits, stats)``: ``logits`` of the owned range in id order; ``stats`` has the owned,
        halo node and halo edge counts.
    """
    kind = _check_features(model)
    lo, hi = part_bounds(num_nodes, world_size)[rank : rank + 2]
    if adj is None:
        adj = adjacency(edge_index, num_nodes)
    owned = np.zeros(num_nodes, dtype=bool)
    owned[lo:hi] = True
    mask = torch.from_numpy(halo_mask(adj, owned, model.num_layers, FEATURE_HOPS[kind]))
    sub, _ = subgraph(mask, edge_index, num_nodes=num_nodes)
    stats = {"owned": int(hi - lo), "halo_nodes": int(mask.sum()), "halo_edges": sub.size(1)}
    return scores(model, sub, num_nodes)[lo:hi], stats


def ris_targets(num_nodes: int, samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``samples`` uniform targets drawn from ``numpy.random.default_rng(seed)``, as
    ``(distinct sorted targets, multiplicity of each)``."""
    draw = np.random.default_rng(seed).integers(0, num_nodes, size=samples)
    targets = unique_sorted(draw)
    return targets, np.bincount(draw, minlength=num_nodes)[targets]


def rank_reverse_balls(
    adj: sp.csr_array, targets: np.ndarray, d: int, rank: int, world_size: int
) -> sp.csr_array:
    """Reverse d-balls (``{u : dist(u, t) <= d}``) of rank ``rank``'s contiguous block of
    ``targets``, as boolean CSR rows in target order."""
    lo, hi = part_bounds(targets.size, world_size)[rank : rank + 2]
    A1T = with_self_loops(adj.T.tocsr())
    block = targets[lo:hi]
    rows = [balls_of(A1T, block[i : i + _BALL_BATCH], d) for i in range(0, block.size, _BALL_BATCH)]
    if not rows:
        return sp.csr_array((0, adj.shape[0]), dtype=bool)
    return sp.vstack(rows, format="csr")


def _rank() -> tuple[int, int]:
    """(rank, world size) of the default process group; (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _gather(obj: Any) -> list[Any] | None:
    """Every rank's ``obj`` on rank 0 (None elsewhere); ``[obj]`` without a process group."""
    rank, world = _rank()
    if world == 1:
        return [obj]
    out = [None] * world if rank == 0 else None
    dist.gather_object(obj, out, dst=0)
    return out


def edge_split_scores(
    model: FastCover, edge_index: Tensor, num_nodes: int
) -> tuple[Tensor, dict[str, int]]:
    """Logits of this rank's node range, every rank of the default process group running each
    GRAT layer on the in-edges of its own range only and summing the layer outputs
    (all-reduce of ``[n, F]`` features per layer); without a process group, one forward pass.

    Each covered node's softmax group is whole on its owner; a coverer's sum is split over the
    ranks and its parts are added after the layer's linear map (the bias counted once), so the
    logits equal one process's up to float rounding, not bit for bit (where large partial sums
    cancel, the relative difference can reach about 1e-4).
    Mirrors :meth:`FastCover.forward` for one pass without target weights; any input features.

    Returns:
        ``(logits of the owned range, stats)``; ``stats`` has the owned node and local edge
        counts.
    """
    rank, world = _rank()
    lo, hi = part_bounds(num_nodes, world)[rank : rank + 2]
    local = edge_index[:, (edge_index[1] >= lo) & (edge_index[1] < hi)]
    with torch.inference_mode():
        x = node_features(edge_index, num_nodes, model.features, model.in_channels)
        for i, conv in enumerate(model.eval().convs):
            if i > 0:
                x = F.relu(x)
            x = conv(x, local)
            if world > 1:
                if rank > 0 and conv.lin.bias is not None:
                    x -= conv.lin.bias
                dist.all_reduce(x)
    stats = {"owned": int(hi - lo), "edges": local.size(1)}
    return x.view(-1)[lo:hi], stats


def partitioned_scores(
    model: FastCover, edge_index: Tensor, num_nodes: int, *, split: str = "halo"
) -> tuple[Tensor, list[dict[str, int]]] | None:
    """FastCover logits over the ranks of the default process group (one rank without one).

    Args:
        split: ``"halo"``: each rank scores its node range on its halo (:func:`rank_scores`,
            bit-identical to one process, but the halo can be the whole graph); ``"edges"``:
            each rank runs the layers on its range's in-edges (:func:`edge_split_scores`,
            the work split, equal to one process up to float rounding).

    Returns ``(logits [n], per-rank stats)`` on rank 0, None on the other ranks.
    """
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
    rank, world = _rank()
    if split == "halo":
        part = rank_scores(model.eval(), edge_index, num_nodes, rank, world)
    else:
        part = edge_split_scores(model, edge_index, num_nodes)
    parts = _gather(part)
    if parts is None:
        return None
    return torch.cat([p[0] for p in parts]), [p[1] for p in parts]


def partitioned_ris(
    adj: sp.sparray | sp.spmatrix,
    k: int,
    d: int,
    *,
    samples: int,
    seed: int = 0,
    progress: bool = False,
) -> Solution | None:
    """Greedy max coverage on the reverse d-balls of ``samples`` uniform targets, each rank of
    the default process group computing the balls of its block of targets
    (:func:`rank_reverse_balls`); without a process group one rank computes all of them.

    The targets come from ``numpy.random.default_rng(seed)`` on every rank; each distinct
    target's ball is computed once and weighted by its multiplicity; greedy (ties to the
    smallest id) runs on rank 0 over the blocks in order, so the seeds do not depend on the
    number of ranks. Unlike :func:`combinatorial.baselines.ris_greedy` the sample count is
    fixed: no adaptive rounds and no approximation certificate.

    Returns:
        On rank 0 a :class:`Solution` (exact ``covered``; ``info``: ``samples``, ``estimate``,
        ``workers``, distinct ``targets``, ``rank_ball_entries`` = the ball entries each rank
        computed), None on the other ranks.
    """
    A = as_csr(adj)
    n = A.shape[0]
    k = check_k(k, n)
    d = check_d(d)
    _check_samples(samples)
    rank, world = _rank()
    t0 = time.perf_counter()
    targets, mult = ris_targets(n, samples, seed)
    balls = _gather(rank_reverse_balls(A, targets, d, rank, world))
    if balls is None:
        return None
    H = sp.vstack(balls, format="csr")
    t1 = time.perf_counter()
    elem = np.full(n, -1, dtype=np.int64)
    elem[targets] = np.arange(targets.size)
    mark = np.zeros(n, dtype=bool)

    def members(u: int) -> np.ndarray:  # sampled targets that u covers
        ball = reach(A, np.array([u]), d, mark)
        mark[ball] = False
        e = elem[ball]
        return e[e >= 0]

    seeds, hits, _ = max_cover(H, members, k, mult, progress=progress)
    t2 = time.perf_counter()
    covered = reach(A, seeds, d, mark).size
    return Solution(
        seeds=seeds,
        covered=int(covered),
        n=n,
        d=d,
        method="ris",
        timings={"sample": t1 - t0, "solve": t2 - t1, "evaluate": time.perf_counter() - t2},
        info={
            "samples": samples,
            "estimate": n * hits / samples,
            "workers": world,
            "targets": int(targets.size),
            "rank_ball_entries": [int(b.nnz) for b in balls],
        },
    )


def _local_worker(rank: int, world: int, store: str, threads: int, job: tuple, out: dict) -> None:
    torch.set_num_threads(threads)
    dist.init_process_group(
        "gloo", init_method=f"file://{store}", rank=rank, world_size=world, timeout=TIMEOUT
    )
    try:
        fn, args, kwargs = job
        result = fn(*args, **kwargs)
        if rank == 0:
            out["result"] = result
    finally:
        dist.destroy_process_group()


def _check_gloo() -> None:
    if not (dist.is_available() and dist.is_gloo_available()):
        raise GraphrecError("this torch build has no torch.distributed gloo backend")


def _run_local(job: tuple, workers: int, threads: int | None) -> Any:
    """Run ``job`` on ``workers`` local processes (gloo, forked where the platform allows, so
    they start without re-importing); rank 0's result."""
    _check_gloo()
    if dist.is_initialized():
        raise ConfigError(
            "a torch.distributed process group is already initialised: call partitioned_scores "
            "/ partitioned_ris on its ranks instead of starting local workers"
        )
    threads = max(1, torch.get_num_threads() // workers) if threads is None else threads
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    with tempfile.TemporaryDirectory(prefix="graphrec-dist-") as tmp, mp.Manager() as manager:
        out = manager.dict()
        mp.start_processes(
            _local_worker,
            args=(workers, str(Path(tmp) / "store"), threads, job, out),
            nprocs=workers,
            start_method=method,
        )
        return out["result"]


def distributed_scores(
    edge_index: Tensor,
    num_nodes: int,
    d: int,
    *,
    workers: int = 2,
    split: str = "halo",
    model: FastCover | None = None,
    threads: int | None = None,
) -> tuple[Tensor, list[dict[str, int]]]:
    """FastCover logits of every node from ``workers`` local processes
    (:func:`partitioned_scores`): with ``split="halo"`` bit-identical to
    :func:`combinatorial.gnn.scores`, with ``split="edges"`` equal up to float rounding.

    Args:
        edge_index: ``[2, m]`` int64, row 0 covers row 1.
        num_nodes: number of nodes ``n``.
        d: hop count; selects the pretrained model when ``model`` is None.
        workers: number of processes (>= 1).
        split: ``"halo"`` or ``"edges"`` (see :func:`partitioned_scores`).
        model: scoring model (``"ones"`` or ``"degree"`` features for ``split="halo"``).
        threads: torch threads per process (default: this process's threads / workers).

    Returns:
        ``(logits [n], stats)``, ``stats[r]`` = rank r's counts (owned nodes; halo nodes and
        edges, or local edges).
    """
    d = check_d(d)
    _check_workers(workers)
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
    model = load_pretrained(d) if model is None else model
    if split == "halo":
        _check_features(model)  # refused here, not in every worker
    job = (partitioned_scores, (model, edge_index, num_nodes), {"split": split})
    return _run_local(job, workers, threads)


def select_seeds(
    score: Callable[[], Tensor],
    adj: sp.csr_array,
    k: int,
    d: int,
    *,
    one_pass: bool = False,
    candidates: int | None = None,
    max_entries: int | None = None,
) -> Solution:
    """Seeds as ``combinatorial.solve(method="fastcover")`` picks them, from the node scores
    that ``score()`` returns: the top ``k`` (``one_pass``; ties to the smallest id), else exact
    greedy, on the d-closure or among candidates proposed by the scores
    (:func:`combinatorial.pruned.fastcover_greedy`, which calls ``score`` only when it prunes).
    """
    if not one_pass:
        return fastcover_greedy(
            adj, k, d, lambda: score().numpy(), candidates=candidates, max_entries=max_entries
        )
    k = check_k(k, adj.shape[0])
    return one_pass_solution(lambda: top_k(score(), k).numpy().astype(np.int64), adj, k, d)


def distributed_fastcover(
    edge_index: Tensor,
    num_nodes: int,
    k: int,
    d: int,
    *,
    workers: int = 2,
    split: str = "halo",
    one_pass: bool = False,
    candidates: int | None = None,
    max_entries: int | None = None,
    model: FastCover | None = None,
    threads: int | None = None,
) -> Solution:
    """FastCover seeds (:func:`select_seeds`) with the scores from :func:`distributed_scores`
    (computed only if the method needs them): with ``split="halo"`` the seeds of
    ``combinatorial.solve(method="fastcover", one_pass=..., candidates=..., max_entries=...)``;
    with ``split="edges"`` the same unless scores tie to float rounding. ``info`` adds
    ``workers``, ``split`` and the per-rank counts (``ranks``, empty if nothing was scored)."""
    stats: list[dict[str, int]] = []

    def score() -> Tensor:
        logits, ranks = distributed_scores(
            edge_index, num_nodes, d, workers=workers, split=split, model=model, threads=threads
        )
        stats.extend(ranks)
        return logits

    adj = adjacency(edge_index, num_nodes)
    sol = select_seeds(
        score, adj, k, d, one_pass=one_pass, candidates=candidates, max_entries=max_entries
    )
    sol.info = {**sol.info, "workers": workers, "split": split, "ranks": stats}
    return sol


def distributed_ris(
    adj: sp.sparray | sp.spmatrix,
    k: int,
    d: int,
    *,
    samples: int,
    workers: int = 2,
    seed: int = 0,
) -> Solution:
    """:func:`partitioned_ris` on ``workers`` local processes (one torch thread each); the
    same seeds as one process."""
    A = as_csr(adj)
    k = check_k(k, A.shape[0])
    d = check_d(d)
    _check_samples(samples)
    _check_workers(workers)
    return _run_local((partitioned_ris, (A, k, d), {"samples": samples, "seed": seed}), workers, 1)


def _rank_fastcover(args: argparse.Namespace, edge_index: Tensor, adj: sp.csr_array) -> Any:
    """Rank 0 picks the seeds as one process would; when the method asks for scores it calls
    the other ranks (which wait for that call or for "done") to score with it."""
    model, n = load_pretrained(args.d), adj.shape[0]
    if dist.get_rank() > 0:
        while _broadcast(None) == "score":
            partitioned_scores(model, edge_index, n, split=args.split)
        return None
    ranks: list[dict[str, int]] = []

    def score() -> Tensor:
        _broadcast("score")
        logits, stats = partitioned_scores(model, edge_index, n, split=args.split)
        ranks.extend(stats)
        return logits

    try:
        sol = select_seeds(
            score,
            adj,
            args.k,
            args.d,
            one_pass=args.one_pass,
            candidates=args.candidates,
            max_entries=args.max_entries,
        )
    finally:
        _broadcast("done")
    sol.info = {**sol.info, "ranks": ranks}
    return sol


def _broadcast(message: str | None) -> str:
    """Rank 0's ``message`` on every rank."""
    box = [message]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def main(argv: list[str] | None = None) -> int:
    """One rank of a multi-machine run (``env://`` rendezvous); rank 0 prints the seeds."""
    from graphrec.io import read_edgelist

    p = argparse.ArgumentParser(
        prog="python -m combinatorial.distributed",
        description="FastCover or RIS seeds with one process per machine. Set MASTER_ADDR, "
        "MASTER_PORT, WORLD_SIZE and RANK (as torchrun does) on every machine.",
    )
    p.add_argument("graph", type=Path, help="edge list file, readable on every machine")
    p.add_argument("-k", type=int, default=10, help="number of seeds")
    p.add_argument("-d", type=int, default=2, help="hop count")
    p.add_argument("--method", choices=("fastcover", "ris"), default="fastcover")
    p.add_argument(
        "--one-pass", action="store_true", help="fastcover: top-k of the scores (one pass)"
    )
    p.add_argument("--candidates", type=int, help="fastcover: exact greedy among the C*k best")
    p.add_argument("--max-entries", type=int, help="fastcover: ball-entry budget of the pool")
    p.add_argument(
        "--split",
        choices=SPLITS,
        default="halo",
        help="fastcover: each rank scores its node range on its halo (bit-identical) or runs "
        "the layers on its range's in-edges (work split; equal up to float rounding)",
    )
    p.add_argument("--samples", type=int, default=100_000, help="ris: number of sampled targets")
    p.add_argument("--seed", type=int, default=0, help="ris: sampling seed")
    args = p.parse_args(argv)
    _check_gloo()
    dist.init_process_group("gloo", init_method="env://", timeout=TIMEOUT)
    try:
        t0 = time.perf_counter()
        g = read_edgelist(args.graph)
        n, edge_index = g.num_nodes, g.data.edge_index
        adj = adjacency(edge_index, n)
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        if args.method == "ris":
            sol = partitioned_ris(adj, args.k, args.d, samples=args.samples, seed=args.seed)
        else:
            sol = _rank_fastcover(args, edge_index, adj)
        if sol is not None:
            sol.node_ids = g.node_ids
            how = f", {sol.info['strategy']}" if "strategy" in sol.info else ""
            if sol.info.get("certified"):
                how += ", certified"
            print(f"workers   {dist.get_world_size()} (gloo), method {args.method}{how}")
            m = edge_index.size(1)
            for r, h in enumerate(sol.info.get("ranks", [])):
                work = (
                    f"halo {h['halo_nodes']:,} nodes, {h['halo_edges']:,} of {m:,} edges"
                    if "halo_nodes" in h
                    else f"in-edges {h['edges']:,} of {m:,}"
                )
                print(f"rank {r}    owns {h['owned']:,} nodes; {work}")
            if args.method == "ris":
                entries = ", ".join(f"{e:,}" for e in sol.info["rank_ball_entries"])
                print(
                    f"sampled   {sol.info['targets']:,} distinct targets; reverse-ball entries "
                    f"per rank: {entries}"
                )
            print(f"seeds     {', '.join(str(s) for s in sol.seed_ids[:20])}")
            print(f"coverage  {sol.covered:,} of {n:,} nodes ({100 * sol.coverage:.2f}%)")
            phases = ", ".join(f"{k} {v:.3f}" for k, v in sol.timings.items())
            solve_s = time.perf_counter() - t0
            print(f"time      load {load_s:.3f} s, solve {solve_s:.3f} s ({phases})")
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
