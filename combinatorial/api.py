"""One entry point for every k-dDSP solver: :func:`fastcover` (and :func:`solve`)."""

from __future__ import annotations

import time
from typing import Any

from combinatorial.solution import Solution
from graphrec.errors import ConfigError

METHODS = ("fastcover", "greedy", "ris", "degree", "soft", "heu", "ilp")


def solve(
    graph: Any,
    k: int,
    d: int,
    *,
    method: str = "fastcover",
    undirected: bool = False,
    rounds: int = 1,
    candidates: int | None = None,
    seed: int = 0,
    max_bytes: int | None = None,
    progress: bool = False,
    ilp_force: bool = False,
    ilp_time_limit: float = 60.0,
) -> Solution:
    """Choose at most ``k`` seeds maximising the number of nodes within ``d`` hops of a seed.

    Args:
        graph: an edge-list path, a :class:`graphrec.io.EdgeList`, a PyG ``Data``, a networkx
            graph or a square scipy sparse matrix. An edge ``u -> v`` means *u covers v*.
        k: budget (>= 1; above n it is capped at n with a warning).
        d: hop count (>= 1). Pretrained FastCover weights exist for d = 1, 2, 3.
        method: ``fastcover`` (GNN forward pass + top-k), ``greedy`` (exact lazy greedy on the
            d-closure, the quality reference), ``ris`` (closure-free reverse-ball sampling
            greedy), ``degree``, ``soft`` (soft coverage), ``heu`` or ``ilp`` (exact optimum).
        undirected: symmetrise the input graph first.
        rounds: FastCover re-scoring rounds (1 = one pass).
        candidates: FastCover only: run exact greedy over the ``candidates * k`` best-scored
            nodes (:func:`combinatorial.pruned.pruned_greedy`; their d-balls by truncated BFS,
            never the closure). None = plain top-k.
        seed: random seed (``ris``).
        max_bytes: memory budget for the d-closure (``greedy``, ``ilp``); None = default.
        progress: show a progress bar (stderr) over the greedy picks (``greedy``, ``ris``,
            ``fastcover`` with ``candidates``).
        ilp_force, ilp_time_limit: ``ilp`` only: try graphs above ``ILP_MAX_NODES`` nodes;
            the solver's time limit in seconds (see :func:`combinatorial.baselines.ilp`).

    Returns:
        A :class:`Solution`; ``timings`` splits ``load`` (conversion of the input) from the
        solver's own phases, and ``seed_ids`` gives the seeds in the input's own ids.
    """
    from graphrec.io import as_edgelist

    if method not in METHODS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if not isinstance(rounds, int) or rounds < 1:
        raise ConfigError(f"rounds must be an integer >= 1, got {rounds!r}")
    if candidates is not None and (not isinstance(candidates, int) or candidates < 1):
        raise ConfigError(f"candidates must be an integer >= 1 or None, got {candidates!r}")
    if candidates is not None and (method != "fastcover" or rounds != 1):
        raise ConfigError("candidates applies to method='fastcover' with rounds=1 only")
    t0 = time.perf_counter()
    g = as_edgelist(graph, undirected=undirected)
    load_s = time.perf_counter() - t0
    if g.num_nodes == 0:
        raise ConfigError("the graph is empty (0 nodes); nothing to cover")
    sol = _dispatch(
        g,
        k,
        d,
        method=method,
        rounds=rounds,
        candidates=candidates,
        seed=seed,
        max_bytes=max_bytes,
        progress=progress,
        ilp={"force": ilp_force, "time_limit": ilp_time_limit},
    )
    sol.method = method
    sol.timings = {"load": load_s, **sol.timings}
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


def _dispatch(
    g, k: int, d: int, *, method: str, rounds: int, candidates, seed: int, max_bytes, progress, ilp
):
    from combinatorial import baselines
    from combinatorial.graph import adjacency

    t0 = time.perf_counter()
    adj = adjacency(g.data.edge_index, g.num_nodes)
    build_s = time.perf_counter() - t0
    budget = {} if max_bytes is None else {"max_bytes": max_bytes}
    if method == "fastcover" and candidates is not None:
        from combinatorial.gnn import load_pretrained, scores
        from combinatorial.pruned import pruned_greedy

        model = load_pretrained(d)
        t0 = time.perf_counter()
        logits = scores(model, g.data.edge_index, g.num_nodes).numpy()
        score_s = time.perf_counter() - t0
        sol = pruned_greedy(adj, logits, k, d, candidates=candidates, progress=progress)
        sol.timings = {"score": score_s, **sol.timings}
    elif method == "fastcover":
        from combinatorial.gnn import fastcover_solution

        sol = fastcover_solution(g.data.edge_index, g.num_nodes, k, d, rounds=rounds, adj=adj)
    elif method == "greedy":
        sol = baselines.greedy(adj, k, d, progress=progress, **budget)
    elif method == "ilp":
        sol = baselines.ilp(adj, k, d, **ilp, **budget)
    elif method == "ris":
        sol = baselines.ris_greedy(adj, k, d, seed=seed, progress=progress)
    elif method == "degree":
        sol = baselines.top_degree(adj, k, d)
    elif method == "soft":
        sol = baselines.top_soft_coverage(adj, k, d)
    else:
        sol = baselines.heu(adj, k, d)
    sol.timings = {"graph": build_s, **sol.timings}
    return sol
