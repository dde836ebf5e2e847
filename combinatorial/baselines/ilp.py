"""Exact k-dDSP optimum by integer programming (SciPy's HiGHS MILP), for small graphs."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.optimize import Bounds, LinearConstraint, milp

from combinatorial.closure import DEFAULT_MAX_BYTES, d_closure
from combinatorial.graph import as_csr, check_d, check_k, reach
from combinatorial.solution import Solution
from graphrec.errors import ConfigError
from graphrec.registry import SOLVERS

__all__ = ["ILP_MAX_NODES", "ILPConfig", "ilp"]

ILP_MAX_NODES = 5000
"""Largest n :func:`ilp` accepts without ``force=True``."""


@dataclass(frozen=True)
class ILPConfig:
    """Options of the ``ilp`` solver: the solver's time limit in seconds, and ``force`` to try
    graphs above :data:`ILP_MAX_NODES` nodes."""

    time_limit: float = 60.0
    force: bool = False


@SOLVERS.register("ilp", config=ILPConfig)
def ilp(
    adj: sp.sparray | sp.spmatrix,
    k: int,
    d: int,
    *,
    time_limit: float = ILPConfig.time_limit,
    force: bool = ILPConfig.force,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
) -> Solution:
    """Optimal seed set of the k-dDSP by mixed-integer programming.

    Formulation (x_u: u is a seed, y_v: v is covered)::

        max  sum_v y_v
        s.t. y_v <= sum_{u : v in B_d(u)} x_u    for every node v
             sum_u x_u <= k,   x binary,   0 <= y <= 1

    y may stay continuous: for binary x an optimal y is integral. Solved by HiGHS through
    :func:`scipy.optimize.milp` with relative gap 0; the closure is built first.

    Parameters
    ----------
    adj : scipy sparse ``n x n``
        Nonzero ``A[u, v]`` = edge u -> v (u covers v).
    k : int, ``>= 1`` (capped at n with a warning)
    d : int, ``>= 1``
    time_limit : float
        Seconds for HiGHS. On timeout the best solution found is returned with
        ``info["optimal"] = False``.
    force : bool
        Allow n > ``ILP_MAX_NODES`` (5000); the model has 2n variables and n + 1 rows with
        nnz(closure) + 2n nonzeros, and the solve time can grow exponentially.
    max_bytes : int or None
        Budget for building the closure (see :func:`~combinatorial.closure.d_closure`).

    Returns
    -------
    Solution
        ``seeds`` sorted by id (an optimum has no pick order), padded with the smallest unused
        ids if the solver returns fewer than k; exact ``covered``. ``info``: ``optimal``,
        ``status`` and ``message`` (HiGHS), ``objective``, ``dual_bound`` (>= OPT) and ``gap``.
        ``timings``: ``"closure"``, ``"solve"``.

    Raises
    ------
    ValueError
        n > ILP_MAX_NODES without ``force=True``.
    RuntimeError
        HiGHS returned no feasible solution (e.g. the time limit hit before the first one).

    Examples
    --------
    >>> import numpy as np
    >>> from combinatorial.graph import adjacency
    >>> A = adjacency(np.array([[0, 0, 3, 4], [1, 2, 4, 5]]), 6)
    >>> sol = ilp(A, 2, 2)
    >>> sol.seeds.tolist(), sol.covered, sol.info["optimal"]
    ([0, 3], 6, True)
    """
    A = as_csr(adj)
    n = A.shape[0]
    k = check_k(k, n)
    d = check_d(d)
    if n > ILP_MAX_NODES and not force:
        raise ConfigError(
            f"ilp: n={n} exceeds ILP_MAX_NODES={ILP_MAX_NODES}; the exact MILP may not finish. "
            "Pass force=True (graphrec fastcover: --ilp-any-size) to try anyway, or use greedy "
            "(a (1 - 1/e) approximation)."
        )
    t0 = time.perf_counter()
    M = d_closure(A, d, max_bytes=max_bytes)
    t1 = time.perf_counter()
    # columns [x_0..x_(n-1), y_0..y_(n-1)]; row v: y_v - sum_u M[u, v] x_u <= 0; row n: sum x <= k
    cover = sp.hstack([-M.T.astype(np.float64), sp.eye_array(n)])
    budget = sp.csr_array(np.concatenate([np.ones(n), np.zeros(n)])[None, :])
    constraints = LinearConstraint(
        sp.vstack([cover, budget], format="csr"),
        -np.inf,
        np.concatenate([np.zeros(n), [k]]),
    )
    res = milp(
        c=np.concatenate([np.zeros(n), -np.ones(n)]),
        integrality=np.concatenate([np.ones(n), np.zeros(n)]),
        bounds=Bounds(0, 1),
        constraints=constraints,
        options={"time_limit": float(time_limit), "mip_rel_gap": 0.0, "disp": False},
    )
    t2 = time.perf_counter()
    if res.x is None:
        raise RuntimeError(f"ilp: HiGHS found no feasible solution: {res.message}")
    seeds = np.flatnonzero(res.x[:n] > 0.5)
    if seeds.size < k:
        unused = np.setdiff1d(np.arange(n), seeds)
        seeds = np.sort(np.concatenate([seeds, unused[: k - seeds.size]]))
    covered = int(reach(A, seeds, d, np.zeros(n, dtype=bool)).size)
    return Solution(
        seeds=seeds.astype(np.int64),
        covered=covered,
        n=n,
        d=d,
        method="ilp",
        timings={"closure": t1 - t0, "solve": t2 - t1},
        info={
            "optimal": res.status == 0,
            "status": int(res.status),
            "message": res.message,
            "objective": float(-res.fun),
            "dual_bound": float(-res.mip_dual_bound),
            "gap": float(res.mip_gap),
        },
    )
