"""Exact greedy on the d-closure, and the max-coverage engine shared with RIS."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
from tqdm import tqdm

from combinatorial.closure import DEFAULT_MAX_BYTES, check_budget, power_closure
from combinatorial.graph import as_csr, check_d, check_k, gather_rows, reach, with_self_loops
from combinatorial.solution import Solution
from graphrec.errors import ConfigError
from graphrec.registry import SOLVERS

__all__ = ["greedy"]


def _accumulate(
    out: np.ndarray, coverers: sp.csr_array, rows: np.ndarray, weights: np.ndarray | None, sign: int
) -> None:
    """``out[u] += sign * weight[e]`` for every pair (element e in ``rows``, set u covering e)."""
    n = out.size
    lens = (coverers.indptr[rows + 1] - coverers.indptr[rows]).astype(np.int64)
    total = int(lens.sum())
    if total < n:  # small: scatter in place, O(total)
        w = sign if weights is None else sign * np.repeat(weights[rows], lens)
        np.add.at(out, gather_rows(coverers, rows), w)
        return
    # bincount per chunk of about max(n, 2^18) pairs: cache-sized temporaries
    step = max(n, 1 << 18)
    cuts = np.searchsorted(np.cumsum(lens), np.arange(step, total, step))
    for chunk, chunk_lens in zip(np.split(rows, cuts), np.split(lens, cuts)):
        ids = gather_rows(coverers, chunk)
        if weights is None:
            counts = np.bincount(ids, minlength=n)
        else:
            w = np.repeat(weights[chunk], chunk_lens).astype(np.float64)
            counts = np.bincount(ids, weights=w, minlength=n).astype(np.int64)
        out += sign * counts


def _topk_sum(gains: np.ndarray, k: int) -> int:
    top = np.partition(gains, gains.size - k)[gains.size - k :]
    return int(np.maximum(top, 0).sum())


def max_cover(
    coverers: sp.csr_array,
    members: Callable[[int], np.ndarray],
    k: int,
    weights: np.ndarray | None = None,
    progress: bool = False,
    exclude: np.ndarray | None = None,
) -> tuple[np.ndarray, int, int]:
    """Greedy maximum (weighted) coverage with exact marginal gains; ties -> smallest set id.

    Sets are the n candidate nodes (``coverers.shape[1]``), elements are whatever is to be
    covered (nodes for the closure, sampled targets for RIS). Row e of ``coverers`` lists the
    sets containing element e, ``members(u)`` returns the elements of set u, ``weights`` (int,
    default 1) the element weights. Gains start as each set's covered weight; each round takes
    ``argmax(gains)``, marks its uncovered elements covered and subtracts their weights from the
    gain of every set containing them, so gains stay exact (no lazy re-evaluation needed);
    picked sets get gain -1. Once every element is covered, the remaining picks are the
    smallest unused ids (zero gain). ``progress`` shows a tqdm bar over the k picks. Sets in
    ``exclude`` are never picked (gain -1 from the start).

    Returns ``(seeds, covered, upper)``: seeds in pick order, covered weight, and ``upper`` >=
    the best k-set's covered weight, min over greedy prefixes S_i (i = 0, 1, 2, 4, ..., k) of
    cov(S_i) + (sum of the k largest gains w.r.t. S_i) (Leskovec et al. 2007, eq. (1)).
    Time O(k n + nnz(coverers)).
    """
    n_elem, n = coverers.shape
    gains = np.zeros(n, dtype=np.int64)
    _accumulate(gains, coverers, np.arange(n_elem), weights, 1)
    if exclude is not None:
        gains[exclude] = -1
    covered_el = np.zeros(n_elem, dtype=bool)
    seeds = np.empty(k, dtype=np.int64)
    covered, left = 0, n_elem
    upper = _topk_sum(gains, k)
    check = 1
    for i in tqdm(range(k), desc="greedy picks", unit="seed", leave=False, disable=not progress):
        if left == 0:  # nothing left to gain: pad with the smallest unused ids
            seeds[i:] = np.flatnonzero(gains >= 0)[: k - i]
            upper = covered
            break
        u = int(np.argmax(gains))
        seeds[i] = u
        elems = members(u)
        new = elems[~covered_el[elems]]
        covered_el[new] = True
        left -= new.size
        covered += new.size if weights is None else int(weights[new].sum())
        _accumulate(gains, coverers, new, weights, -1)
        gains[u] = -1
        if i + 1 == check or i + 1 == k:
            upper = min(upper, covered + _topk_sum(gains, k))
            check *= 2
    total = n_elem if weights is None else int(weights.sum())  # no set covers more
    return seeds, covered, min(upper, total)


@SOLVERS.register("greedy")
def greedy(
    adj: sp.sparray | sp.spmatrix,
    k: int,
    d: int,
    *,
    closure: sp.sparray | sp.spmatrix | None = None,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
    progress: bool = False,
) -> Solution:
    """Exact greedy for the budgeted d-hop dominating set (k-dDSP) on the d-closure.

    Problem: maximise f_d(S) = |union_{s in S} B_d(s)| subject to |S| <= k, where B_d(s) is the
    closed d-hop out-ball of s (s included). Each round adds the node of largest exact marginal
    gain |B_d(u) minus covered|; gains start at |B_d(u)| and, whenever a node v becomes covered,
    the gain of each of its coverers {u : v in B_d(u)} drops by 1 (the official "greedy"/CELF;
    lazy evaluation returns the same set, Minoux 1978). Ties go to the smallest node id, so the
    result is deterministic.

    Parameters
    ----------
    adj : scipy sparse ``n x n``
        Nonzero ``A[u, v]`` = edge u -> v (u covers v); treated as binary.
    k : int
        Budget, ``>= 1``; capped at n with a warning.
    d : int
        Hop count, ``>= 1``.
    closure : scipy sparse ``n x n``, optional
        ``d_closure(adj, d)`` if already built: reused as is (duplicate-free entries assumed;
        checked against ``adj`` for shape and diagonal only). Otherwise the reverse closure is
        built here.
    max_bytes : int or None
        Budget for building the closure (see :func:`~combinatorial.closure.d_closure`).
    progress : bool
        Show a progress bar over the picks (stderr).

    Returns
    -------
    Solution
        ``seeds`` in pick order, always ``min(k, n)`` of them: once every node is covered the
        remaining picks are the smallest unused ids (zero gain), so ``covered == n``.
        ``timings`` has ``"closure"`` and ``"solve"`` seconds; ``info["upper_bound"]`` >= OPT
        (data-dependent bound from the greedy prefixes), so ``covered / upper_bound`` certifies
        the approximation ratio of this instance.

    Notes
    -----
    Guarantee: f_d(S) >= (1 - 1/e) OPT (Nemhauser, Wolsey, Fisher 1978), tight unless P = NP.
    Time: the closure (see ``d_closure``) plus O(k n + nnz(closure)); memory O(nnz(closure)).
    Implementation: exact gains in one NumPy array (``argmax`` per pick, then a scatter or
    chunked ``bincount`` over the coverers of the newly covered nodes); the coverers are the
    rows of the reverse closure (A^T)_d + I, built directly, and B_d(u) of each pick comes
    from a truncated BFS. We measured it faster than a heap-based CELF in Python on the
    benchmark graphs, on par on the densest closures.

    Examples
    --------
    >>> import numpy as np
    >>> from combinatorial.graph import adjacency
    >>> A = adjacency(np.array([[0, 0, 3, 4], [1, 2, 4, 5]]), 6)  # 0 -> {1, 2}, 3 -> 4 -> 5
    >>> sol = greedy(A, 2, 1)
    >>> sol.seeds.tolist(), sol.covered
    ([0, 3], 5)
    >>> greedy(A, 2, 2).covered
    6
    """
    A = as_csr(adj)
    n = A.shape[0]
    k = check_k(k, n)
    d = check_d(d)
    t0 = time.perf_counter()
    if closure is None:
        check_budget(A, d, max_bytes, "greedy")
        T = power_closure(with_self_loops(as_csr(A.T)), d)  # row v = coverers of v
        mark = np.zeros(n, dtype=bool)

        def members(u: int) -> np.ndarray:
            ball = reach(A, np.array([u]), d, mark)
            mark[ball] = False
            return ball

    else:
        M = sp.csr_array(closure)  # as d_closure returns it: duplicate-free, maybe unsorted
        if M.shape != A.shape:
            raise ConfigError(f"closure has shape {M.shape}, expected {A.shape}")
        if not M.data.all():
            M = M.copy()
            M.eliminate_zeros()
        if not M.diagonal().all():
            raise ConfigError("closure must contain the diagonal: pass d_closure(adj, d) = A_d + I")
        T = M.T.tocsr()

        def members(u: int) -> np.ndarray:
            return M.indices[M.indptr[u] : M.indptr[u + 1]]

    t1 = time.perf_counter()
    seeds, covered, upper = max_cover(T, members, k, progress=progress)
    t2 = time.perf_counter()
    return Solution(
        seeds=seeds,
        covered=covered,
        n=n,
        d=d,
        method="greedy",
        timings={"closure": t1 - t0, "solve": t2 - t1},
        info={"upper_bound": upper},
    )
