"""One-shot rankings and simple constructive heuristics for the k-dDSP.

Rankings are computed once from the graph and evaluated at any d; ties go to the smallest node id
everywhere. Degree convention (checked against the paper's dataset table on soc-wiki-elec with
its 3,333 duplicate lines and soc-advogato with its 3,995 self-loops): out-degree counts distinct
out-neighbours other than the node itself, ``deg(u) = |N+(u) minus {u}|``, so ranking by degree
equals ranking by the closed ball size |B_1(u)| = deg(u) + 1. Counting duplicate lines or
self-loops does not reproduce the table.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from combinatorial.closure import ball_sizes
from combinatorial.graph import as_csr, check_d, check_k, reach, with_self_loops
from combinatorial.solution import Solution
from graphrec.registry import SOLVERS

__all__ = [
    "degree_discount",
    "heu",
    "out_degree",
    "soft_coverage_scores",
    "top_ball_size",
    "top_degree",
    "top_soft_coverage",
]


def out_degree(adj: sp.sparray | sp.spmatrix) -> np.ndarray:
    """Binarised out-degree without self-loops, ``|N+(u) minus {u}|``, as int64.

    Examples
    --------
    >>> import numpy as np
    >>> from combinatorial.graph import adjacency
    >>> out_degree(adjacency(np.array([[0, 0, 0, 1], [0, 1, 1, 2]]), 3)).tolist()
    [1, 1, 0]
    """
    A = as_csr(adj)
    return (np.diff(A.indptr) - A.diagonal()).astype(np.int64)


def soft_coverage_scores(adj: sp.sparray | sp.spmatrix) -> np.ndarray:
    """Soft coverage s_u = sum over v in N+[u] of 1 / |N-[v]|, over closed 1-hop neighbourhoods.

    Each node v spreads one unit of credit evenly over its potential coverers N-[v] (v included);
    s_u is the credit u collects. This is the closed form of an untrained GRAT layer 1 with
    constant inputs (FastCover paper). Binarised graph; O(n + m).

    Examples
    --------
    >>> import numpy as np
    >>> from combinatorial.graph import adjacency
    >>> soft_coverage_scores(adjacency(np.array([[0, 0], [1, 2]]), 3)).tolist()
    [2.0, 0.5, 0.5]
    """
    A1 = with_self_loops(as_csr(adj))
    indeg = np.bincount(A1.indices, minlength=A1.shape[0])
    return A1.astype(np.float64) @ (1.0 / indeg)


def top_k_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores, ties -> smallest index, in rank order."""
    return np.argsort(-scores, kind="stable")[:k].astype(np.int64)


def _ranked(
    adj: sp.sparray | sp.spmatrix,
    k: int,
    d: int,
    method: str,
    score: Callable[[sp.csr_array, int], np.ndarray],
) -> Solution:
    A = as_csr(adj)
    n = A.shape[0]
    k = check_k(k, n)
    d = check_d(d)
    t0 = time.perf_counter()
    seeds = top_k_indices(score(A, d), k)
    t1 = time.perf_counter()
    mark = np.zeros(n, dtype=bool)
    covered = reach(A, seeds, d, mark).size
    t2 = time.perf_counter()
    return Solution(seeds, covered, n, d, method, timings={"solve": t1 - t0, "evaluate": t2 - t1})


@SOLVERS.register("degree")
def top_degree(adj: sp.sparray | sp.spmatrix, k: int, d: int) -> Solution:
    """The k nodes of largest out-degree (see :func:`out_degree`), evaluated at hop count d.

    No approximation guarantee. O(m + n log n).

    Examples
    --------
    >>> import numpy as np
    >>> from combinatorial.graph import adjacency
    >>> A = adjacency(np.array([[0, 0, 3, 3, 3], [1, 2, 0, 4, 5]]), 6)
    >>> top_degree(A, 1, 1).seeds.tolist(), top_degree(A, 1, 2).covered
    ([3], 6)
    """
    return _ranked(adj, k, d, "top_degree", lambda A, d: out_degree(A))


@SOLVERS.register("soft")
def top_soft_coverage(adj: sp.sparray | sp.spmatrix, k: int, d: int) -> Solution:
    """The k nodes of largest soft coverage (:func:`soft_coverage_scores`), evaluated at d.

    The d-independent score discounts targets shared by many coverers. No guarantee. O(m + n log n).

    Examples
    --------
    >>> import numpy as np
    >>> from combinatorial.graph import adjacency
    >>> A = adjacency(np.array([[0, 0, 3, 3, 3], [1, 2, 0, 4, 5]]), 6)
    >>> top_soft_coverage(A, 2, 1).seeds.tolist()
    [3, 0]
    """
    return _ranked(adj, k, d, "top_soft_coverage", lambda A, d: soft_coverage_scores(A))


def top_ball_size(adj: sp.sparray | sp.spmatrix, k: int, d: int) -> Solution:
    """The k nodes of largest d-ball |B_d(u)| (:func:`~combinatorial.closure.ball_sizes`).

    Greedy's first pick, repeated without discounting overlaps. No guarantee. Time of
    ``ball_sizes`` (O(sum of ball out-degrees)) plus O(n log n); memory bounded.

    Examples
    --------
    >>> import numpy as np
    >>> from combinatorial.graph import adjacency
    >>> A = adjacency(np.array([[0, 1, 2, 3, 3], [1, 2, 5, 4, 5]]), 6)
    >>> top_ball_size(A, 1, 1).seeds.tolist(), top_ball_size(A, 1, 3).seeds.tolist()
    ([3], [0])
    """
    return _ranked(adj, k, d, "top_ball_size", ball_sizes)


def degree_discount(adj: sp.sparray | sp.spmatrix, k: int, d: int) -> Solution:
    """SingleDiscount (Chen, Wang, Yang, KDD 2009), the deterministic-coverage variant.

    Repeatedly take the node of largest discounted degree (ties -> smallest id); then every
    other in-neighbour v of the pick (v -> u) loses 1, because its edge to u now points at a
    seed. Degrees are :func:`out_degree`. The IC-specific DegreeDiscountIC formula needs an
    edge probability and is not used: here every edge is live. Evaluated at hop count d. No
    guarantee. O(k n + m).

    Examples
    --------
    >>> import numpy as np
    >>> from combinatorial.graph import adjacency
    >>> A = adjacency(np.array([[0, 0, 0, 1, 1, 1, 7, 7, 7], [1, 3, 4, 0, 5, 6, 8, 9, 10]]), 11)
    >>> top_degree(A, 2, 1).seeds.tolist(), degree_discount(A, 2, 1).seeds.tolist()
    ([0, 1], [0, 7])
    """
    A = as_csr(adj)
    n = A.shape[0]
    k = check_k(k, n)
    d = check_d(d)
    t0 = time.perf_counter()
    AT = as_csr(A.T)
    dd = out_degree(A)
    seeds = np.empty(k, dtype=np.int64)
    for i in range(k):
        u = int(np.argmax(dd))
        seeds[i] = u
        preds = AT.indices[AT.indptr[u] : AT.indptr[u + 1]]
        dd[preds[preds != u]] -= 1
        dd[u] = -1
    t1 = time.perf_counter()
    covered = reach(A, seeds, d, np.zeros(n, dtype=bool)).size
    t2 = time.perf_counter()
    return Solution(
        seeds, covered, n, d, "degree_discount", timings={"solve": t1 - t0, "evaluate": t2 - t1}
    )


@SOLVERS.register("heu")
def heu(adj: sp.sparray | sp.spmatrix, k: int, d: int) -> Solution:
    """HEU (the official ``heu1``): scan by decreasing out-degree, take uncovered nodes.

    Nodes are scanned by decreasing :func:`out_degree` (ties -> smallest id); a node is taken
    only if it is not yet covered, and then its whole closed d-ball B_d(u), u included, is
    marked covered. Stops at k seeds. Unlike the official code at d = 1 (spec pitfall 8), the
    seed always covers itself. If the scan ends with fewer than k seeds (everything covered),
    the smallest unused ids fill up the budget, so ``len(seeds) == min(k, n)``. Attributed to
    Basuchowdhuri & Majumder 2014 (unverified). No guarantee. O(n log n + sum of the k
    BFS costs).

    Examples
    --------
    >>> import numpy as np
    >>> from combinatorial.graph import adjacency
    >>> A = adjacency(np.array([[0, 0, 0, 1, 1, 1], [1, 2, 3, 4, 5, 6]]), 7)
    >>> sol = heu(A, 2, 1)  # 1 is covered by 0, so the scan skips it
    >>> sol.seeds.tolist(), sol.covered
    ([0, 4], 5)
    """
    A = as_csr(adj)
    n = A.shape[0]
    k = check_k(k, n)
    d = check_d(d)
    t0 = time.perf_counter()
    order = top_k_indices(out_degree(A), n)
    covered = np.zeros(n, dtype=bool)
    mark = np.zeros(n, dtype=bool)
    seeds: list[int] = []
    step = 4096
    for start in range(0, n, step):
        chunk = order[start : start + step]
        for u in chunk[~covered[chunk]].tolist():
            if covered[u]:
                continue
            seeds.append(u)
            ball = reach(A, np.array([u]), d, mark)
            covered[ball] = True
            mark[ball] = False
            if len(seeds) == k:
                break
        if len(seeds) == k:
            break
    if len(seeds) < k:
        unused = np.ones(n, dtype=bool)
        unused[seeds] = False
        seeds.extend(np.flatnonzero(unused)[: k - len(seeds)].tolist())
    t1 = time.perf_counter()
    return Solution(
        np.asarray(seeds, dtype=np.int64),
        int(np.count_nonzero(covered)),
        n,
        d,
        "heu",
        timings={"solve": t1 - t0},
    )
