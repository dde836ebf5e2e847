"""One entry point for every k-dDSP solver: :func:`fastcover` (and :func:`solve`).

The solvers are those of :data:`graphrec.registry.SOLVERS`: each registers itself where it is
defined, as a function ``solver(adj, k, d, **options)`` returning a :class:`Solution`, with a
config dataclass for its options. It may also take ``graph`` (the input as an
:class:`~graphrec.io.EdgeList`), ``seed``, ``progress`` and ``max_bytes``; :func:`solve` passes
those it names.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from combinatorial.solution import Solution
from graphrec.errors import ConfigError
from graphrec.registry import SOLVERS


@dataclass(frozen=True)
class FastCoverConfig:
    """Options of the ``fastcover`` solver: ``one_pass`` (top-k of the scores, with re-scoring
    ``rounds``), else exact greedy among a pool of ``candidates * k`` best-scored nodes (None =
    sized automatically, growing up to ``max_entries`` ball entries; see :func:`solve`)."""

    rounds: int = 1
    candidates: int | None = None
    one_pass: bool = False
    max_entries: int | None = None


def solve(
    graph: Any,
    k: int,
    d: int,
    *,
    method: str = "fastcover",
    undirected: bool = False,
    rounds: int = FastCoverConfig.rounds,
    candidates: int | None = FastCoverConfig.candidates,
    one_pass: bool = FastCoverConfig.one_pass,
    max_entries: int | None = FastCoverConfig.max_entries,
    seed: int = 0,
    max_bytes: int | None = None,
    progress: bool = False,
    ilp_force: bool | None = None,
    ilp_time_limit: float | None = None,
    options: Mapping[str, Any] | None = None,
) -> Solution:
    """Choose at most ``k`` seeds maximising the number of nodes within ``d`` hops of a seed.

    Args:
        graph: an edge-list path, a :class:`graphrec.io.EdgeList`, a PyG ``Data``, a networkx
            graph or a square scipy sparse matrix. An edge ``u -> v`` means *u covers v*.
        k: budget (>= 1; above n it is capped at n with a warning).
        d: hop count (>= 1). Pretrained FastCover weights exist for d = 1, 2, 3.
        method: ``fastcover`` (exact greedy, pruned by the GNN scores where the d-closure is
            large; see below), ``greedy`` (exact lazy greedy on the d-closure, the quality
            reference), ``ris`` (closure-free reverse-ball sampling greedy), ``degree``,
            ``soft`` (soft coverage), ``heu``, ``ilp`` (exact optimum) or any other name of
            :data:`graphrec.registry.SOLVERS`.
        undirected: symmetrise the input graph first.
        rounds: FastCover's top-k re-scoring rounds (1 = one forward pass); > 1 implies
            ``one_pass``.
        candidates: FastCover only: fix the pool to the ``candidates * k`` best-scored nodes.
            None = sized automatically (grown until no outside node can beat a greedy pick).
        one_pass: FastCover only: the top-k of one forward pass (``rounds`` passes), the
            original method, instead of exact greedy among candidates.
        max_entries: FastCover's automatic pool only: stop growing it once the candidates'
            d-balls hold this many entries (None = ``ENTRIES_PER_ARC * (n + m)`` of
            :mod:`combinatorial.pruned`).
        seed: random seed (``ris``).
        max_bytes: memory budget for the d-closure (``greedy``, ``ilp``); None = default.
        progress: show a progress bar (stderr) over the greedy picks (``greedy``, ``ris``,
            ``fastcover`` with ``candidates``).
        ilp_force, ilp_time_limit: ``ilp`` only: try graphs above ``ILP_MAX_NODES`` nodes;
            the solver's time limit in seconds (see :func:`combinatorial.baselines.ilp`); None =
            the registered default (:class:`combinatorial.baselines.ilp.ILPConfig`).
        options: further options of ``method`` (fields of its registered config).

    Returns:
        A :class:`Solution`; ``timings`` splits ``load`` (conversion of the input) from the
        solver's own phases, and ``seed_ids`` gives the seeds in the input's own ids.

    FastCover (:func:`combinatorial.pruned.fastcover_greedy`): where pruning would not pay
    (always at d = 1) exact greedy on the d-closure; otherwise exact greedy among the best
    candidates, ranked by the pretrained GNN (d >= 3) or a walk-count bound (d = 2), the pool
    growing until walk-count bounds certify that no outside node could change a pick, or up to
    ``max_entries``. ``info["strategy"]``
    names the path taken, ``info["certified"]`` says whether the seeds are those of exact greedy
    on the whole graph, ``info["upper_bound"]`` >= the optimum (also for ``one_pass``).
    """
    from combinatorial.graph import adjacency
    from graphrec.io import as_edgelist

    ilp = {"force": ilp_force, "time_limit": ilp_time_limit}
    named = {
        "rounds": rounds,
        "candidates": candidates,
        "one_pass": one_pass,
        "max_entries": max_entries,
        **{k: v for k, v in ilp.items() if v is not None},
    }
    defaults = SOLVERS.defaults(method)  # an unknown method fails here, listing the choices
    config = SOLVERS.options(
        method, **{k: v for k, v in named.items() if k in defaults}, **dict(options or {})
    )
    if not isinstance(rounds, int) or rounds < 1:
        raise ConfigError(f"rounds must be an integer >= 1, got {rounds!r}")
    if candidates is not None and (not isinstance(candidates, int) or candidates < 1):
        raise ConfigError(f"candidates must be an integer >= 1 or None, got {candidates!r}")
    if max_entries is not None and (not isinstance(max_entries, int) or max_entries < 1):
        raise ConfigError(f"max_entries must be an integer >= 1 or None, got {max_entries!r}")
    if not isinstance(one_pass, bool):
        raise ConfigError(f"one_pass must be True or False, got {one_pass!r}")
    pool = {"candidates": candidates, "max_entries": max_entries}
    if method != "fastcover" and (one_pass or rounds != 1 or pool != dict.fromkeys(pool)):
        raise ConfigError("rounds, candidates, one_pass and max_entries apply to fastcover only")
    if (one_pass or rounds > 1) and pool != dict.fromkeys(pool):
        raise ConfigError(
            "candidates and max_entries size the greedy pool: not with one_pass or rounds > 1"
        )
    if candidates is not None and max_entries is not None:
        raise ConfigError("max_entries bounds the automatic pool: not with a fixed candidates")
    t0 = time.perf_counter()
    g = as_edgelist(graph, undirected=undirected)
    load_s = time.perf_counter() - t0
    if g.num_nodes == 0:
        raise ConfigError("the graph is empty (0 nodes); nothing to cover")
    t0 = time.perf_counter()
    adj = adjacency(g.data.edge_index, g.num_nodes)
    build_s = time.perf_counter() - t0
    solver = SOLVERS.get(method)
    run = {"graph": g, "seed": seed, "progress": progress, "max_bytes": max_bytes}
    accepted = inspect.signature(solver).parameters
    run = {k: v for k, v in run.items() if k in accepted and v is not None}
    sol = solver(adj, k, d, **run, **config)
    sol.method = method
    sol.timings = {"load": load_s, "graph": build_s, **sol.timings}
    sol.node_ids = g.node_ids
    return sol


def fastcover(graph: Any, k: int, d: int, **kwargs: Any) -> Solution:
    """FastCover seeds for ``graph`` (see :func:`solve`; ``method`` defaults to ``fastcover``).

    Example:
        >>> import networkx as nx
        >>> sol = fastcover(nx.star_graph(5).to_directed(), k=1, d=1)
        >>> sol.seed_ids, sol.covered
        ([0], 6)
    """
    return solve(graph, k, d, **kwargs)


@SOLVERS.register("fastcover", config=FastCoverConfig)
def fastcover_solver(
    adj: Any,
    k: int,
    d: int,
    *,
    graph: Any,
    rounds: int = FastCoverConfig.rounds,
    candidates: int | None = FastCoverConfig.candidates,
    one_pass: bool = FastCoverConfig.one_pass,
    max_entries: int | None = FastCoverConfig.max_entries,
    progress: bool = False,
) -> Solution:
    """FastCover on ``graph`` (an :class:`~graphrec.io.EdgeList`; ``adj`` its adjacency): exact
    greedy, pruned where the closure is large (by the pretrained model's scores of hop count
    ``d`` from d = 3), or the top-``k`` scores (``one_pass``, ``rounds`` re-scoring rounds); see
    :func:`solve`."""
    from combinatorial.gnn import fastcover_solution, load_pretrained, scores
    from combinatorial.pruned import fastcover_greedy

    if one_pass or rounds > 1:
        return fastcover_solution(
            graph.data.edge_index, graph.num_nodes, k, d, rounds=rounds, adj=adj
        )

    def score() -> Any:
        model = load_pretrained(d)
        return scores(model, graph.data.edge_index, graph.num_nodes, progress=progress).numpy()

    return fastcover_greedy(
        adj, k, d, score, candidates=candidates, max_entries=max_entries, progress=progress
    )
