"""Greedy without the whole d-closure: FastCover's default (:func:`fastcover_greedy`).

Candidate-pruned greedy: a node score proposes candidates, exact greedy chooses among them. The
pool either has a fixed size or grows until walk-count upper bounds on the marginal gains of the
nodes outside it certify that no outside node could have changed any greedy pick
(:func:`pruned_greedy`). Residual greedy: after a first pick, exact greedy on the reverse balls of
the nodes it leaves uncovered (:func:`residual_greedy`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from combinatorial.baselines.greedy import greedy, max_cover
from combinatorial.baselines.heuristics import top_k_indices
from combinatorial.closure import _level_sizes, balls_of, sampled_reverse_balls
from combinatorial.coverage import covered_mask
from combinatorial.graph import as_csr, check_d, check_k, gather_rows, reach, with_self_loops
from combinatorial.solution import Solution
from graphrec.errors import ConfigError, MemoryBudgetError

__all__ = ["fastcover_greedy", "pruned_greedy", "residual_greedy", "upper_bound", "walk_bound"]

START = 4  # the automatic pool starts at the START * k best-scored nodes
MIN_POOL = 32  # ... and at least this many
ENTRIES_PER_ARC = 16  # default growth budget: ball entries <= ENTRIES_PER_ARC * (n + m)
GROW = 3  # each growth round adds at most GROW * (pool size) threats
MAX_ROUNDS = 5  # greedy runs at most
DEEP_ROUNDS = 2  # ... at d >= GNN_MIN_D in fastcover_greedy, where walk bounds rarely certify,
DEEP_SHARE = 16  # ... and the pool's balls hold at most 1 / DEEP_SHARE of the closure there
CLOSURE_WALKS = 8  # fastcover_greedy: closure greedy when the d-walks <= this * (n + m) ...
PRUNE_ENTRIES = 16  # ... or, for k > 1, its estimated entries <= this * (n + m) ...
POOL_SHARE = 8  # ... or when the starting pool's balls hold more than 1 / POOL_SHARE of it
GNN_MIN_D = 3  # below, the walk bound ranks the candidates (as good at d = 2, and free)
SAMPLES = 128  # random balls estimating the closure's size
BALL_SAMPLES = (128, 1024)  # the sampled first pick: reverse balls sampled for the ball sizes,
BALL_ENTRIES = 2  # ... as many as fit BALL_ENTRIES * (n + m) entries, within that range
Z = 3.0  # ... and the pool keeps the nodes whose size could reach the top's (z-scores),
FIRST_BATCH = 4  # ... their exact balls built this many at a time while one could still win
RESIDUAL_SHARE = 4  # residual greedy when its reverse closure is <= 1 / this of the closure


def walk_bound(adj: sp.sparray | sp.spmatrix, uncovered: np.ndarray, d: int) -> np.ndarray:
    """Upper bound ``ub[v] >= |B_d(v) minus covered|`` for every node, by counting walks.

    .. math::
        u_0(v) = [v \\text{ uncovered}], \\qquad
        u_l(v) = \\min\\Big(U,\\; u_0(v) + \\sum_{w \\in N^+(v)} u_{l-1}(w)\\Big)

    with U the number of uncovered nodes: B_l(v) = {v} united with B_(l-1)(w) over the out-
    neighbours w, so each level can only over-count. Exact for d = 1 (self-loops are ignored).
    Time O(d m).

    Args:
        adj: ``n x n`` adjacency (u covers v).
        uncovered: ``[n]`` bool, True where a node still counts.
        d: hop count (>= 0).

    Example:
        >>> import numpy as np, scipy.sparse as sp
        >>> A = sp.csr_array(([1, 1, 1], ([0, 1, 0], [1, 2, 2])), shape=(3, 3))
        >>> walk_bound(A, np.ones(3, bool), 2).tolist()  # true ball sizes: [3, 2, 1]
        [3, 2, 1]
    """
    A = as_csr(adj)
    W = _walk_matrix(A)
    return _walk_bound(W, np.asarray(uncovered, dtype=bool), check_d(d, 0))


def _walk_matrix(A: sp.csr_array) -> sp.csr_array:
    W = sp.csr_array((np.ones(A.nnz, dtype=np.int64), A.indices, A.indptr), shape=A.shape)
    if A.diagonal().any():
        W.setdiag(0)
        W.eliminate_zeros()
    return W


def _walk_bound(W: sp.csr_array, uncovered: np.ndarray, d: int) -> np.ndarray:
    cap = int(uncovered.sum())
    unc = uncovered.astype(np.int64)
    ub = unc
    for _ in range(d):
        ub = np.minimum(unc + W @ ub, cap)
    return ub


def upper_bound(adj: sp.sparray | sp.spmatrix, seeds: np.ndarray, d: int, k: int) -> int:
    """A bound >= OPT (best k seeds) from any seed set S: f(S) plus the k largest
    :func:`walk_bound` values w.r.t. the nodes S covers (Minoux 1978). Time O(d m).

    Example:
        >>> import numpy as np, scipy.sparse as sp
        >>> A = sp.csr_array(([1, 1, 1], ([0, 0, 3], [1, 2, 4])), shape=(5, 5))
        >>> upper_bound(A, np.array([3]), 2, 1)  # f({3}) = 2, node 0 could add 3 more
        5
    """
    A = as_csr(adj)
    n = A.shape[0]
    k = check_k(k, n)
    mask = covered_mask(A, np.asarray(seeds, dtype=np.int64), check_d(d, 0))
    ub = _walk_bound(_walk_matrix(A), ~mask, d)
    return min(n, int(mask.sum()) + int(np.partition(ub, n - k)[n - k :].sum()))


def pruned_greedy(
    adj: sp.sparray | sp.spmatrix,
    scores: np.ndarray | None,
    k: int,
    d: int,
    *,
    candidates: int | None = 8,
    max_entries: int | None = None,
    max_rounds: int = MAX_ROUNDS,
    progress: bool = False,
) -> Solution:
    """Exact greedy among candidates proposed by ``scores``, with a certificate or a bound.

    Problem: maximise f_d(S) = |union of B_d(v), v in S| over |S| <= k. The d-balls of the
    candidate pool C are computed by truncated sparse BFS (cost proportional to the balls, never
    the whole d-closure) and :func:`~combinatorial.baselines.greedy.max_cover` picks k of them
    with exact marginal gains g_1 >= ... >= g_k.

    Check: with S_j the first j picks, u_j(v) = :func:`walk_bound` of v w.r.t. the nodes S_j
    covers bounds v's marginal gain at every later step (gains only shrink). Checkpoints are
    j = 0, 1, 2, 4, ..., k; an outside node v threatens step i (after checkpoint j, up to the
    next one j') when u_j(v) > g_(j'). Without threats the picks are a valid run of exact greedy
    on the whole graph (``info["certified"]``; ties may resolve to another node of equal gain).

    Pool: ``candidates=c`` fixes C to the ``c * k`` best-scored nodes. ``candidates=None``
    starts from the ``max(START * k, MIN_POOL)`` best and adds the threats (best-scored first, at
    most ``GROW`` times the size of C, while the u_0 of the added nodes keep the balls within
    ``max_entries`` entries; default ``ENTRIES_PER_ARC * (n + m)``) and reruns greedy, until no
    threat remains, the budget cut the last growth or greedy ran ``max_rounds`` times.

    Bound: ``info["upper_bound"]`` >= OPT is the smallest over the last two checkpoints of
    f(S_j) + the sum of the k largest values of (exact gain w.r.t. S_j in C, u_j outside C)
    (Minoux 1978; Leskovec et al. 2007, eq. (1)).

    Args:
        adj: ``n x n`` adjacency, nonzero ``A[u, v]`` means u covers v.
        scores: ``[n]`` node scores (e.g. FastCover logits), higher is better; None ranks by
            :func:`walk_bound`.
        k: budget (>= 1, capped at n with a warning).
        d: hop count (>= 1).
        candidates: fixed pool size as a multiple of k (>= 1); None = automatic.
        max_entries: growth budget in stored ball entries (automatic pool only).
        max_rounds: greedy runs at most (automatic pool only; >= 1).
        progress: progress bar over the greedy picks (stderr).

    Returns:
        A :class:`Solution` with ``info`` keys ``certified``, ``upper_bound``, ``pool`` (final
        pool size), ``ball_entries`` and ``rounds`` (greedy runs).

    Example:
        >>> import numpy as np, scipy.sparse as sp
        >>> A = sp.csr_array(([1, 1, 1, 1], ([0, 0, 1, 3], [1, 2, 3, 4])), shape=(5, 5))
        >>> sol = pruned_greedy(A, np.array([3.0, 2.0, 0.0, 1.0, 0.0]), k=1, d=2, candidates=2)
        >>> sol.seeds.tolist(), sol.covered, sol.info["certified"], sol.info["upper_bound"]
        ([0], 4, True, 4)
    """
    A = as_csr(adj)
    n = A.shape[0]
    k = check_k(k, n)
    d = check_d(d)
    if candidates is not None and (not isinstance(candidates, int) or candidates < 1):
        raise ConfigError(f"candidates must be an integer >= 1 or None, got {candidates!r}")
    if max_entries is not None and (not isinstance(max_entries, int) or max_entries < 1):
        raise ConfigError(f"max_entries must be an integer >= 1 or None, got {max_entries!r}")
    if not isinstance(max_rounds, int) or max_rounds < 1:
        raise ConfigError(f"max_rounds must be an integer >= 1, got {max_rounds!r}")
    if scores is not None:
        scores = np.asarray(scores, dtype=np.float64).ravel()
        if scores.shape != (n,):
            raise ConfigError(f"scores must have shape ({n},), got {scores.shape}")
    if max_entries is None:
        max_entries = ENTRIES_PER_ARC * (n + A.nnz)
    t0 = time.perf_counter()
    A1, W = with_self_loops(A), _walk_matrix(A)
    rank = scores if scores is not None else _walk_bound(W, np.ones(n, dtype=bool), d)
    size = candidates * k if candidates is not None else max(START * k, MIN_POOL)
    pool = top_k_indices(rank, min(n, size))
    balls = balls_of(A1, pool, d).tocsr()
    in_pool = np.zeros(n, dtype=bool)
    in_pool[pool] = True
    steps = [0, *(1 << t for t in range(k.bit_length()) if 1 << t < k), k]
    timings = {"balls": time.perf_counter() - t0, "greedy": 0.0, "check": 0.0}
    rounds, full = 0, False
    while True:
        rounds += 1
        t0 = time.perf_counter()
        local, covered, _ = max_cover(
            balls.T.tocsr(),
            lambda u, b=balls: b.indices[b.indptr[u] : b.indptr[u + 1]],
            k,
            progress=progress,
        )
        t1 = time.perf_counter()
        gains, masks, ubs = _check_points(balls, local, W, d, steps)
        threat = np.zeros(n, dtype=bool)
        for j in range(len(steps) - 1):
            threat |= ubs[j] > gains[steps[j + 1] - 1]
        threat &= ~in_pool
        threats = np.flatnonzero(threat)
        timings["greedy"] += t1 - t0
        timings["check"] += time.perf_counter() - t1
        if candidates is not None or threats.size == 0 or full or rounds == max_rounds:
            break
        t0 = time.perf_counter()
        add = threats[top_k_indices(rank[threats], min(threats.size, GROW * pool.size))]
        fits = np.cumsum(ubs[0][add]) <= max_entries - balls.nnz  # u_0 >= the ball size
        full = not fits.all()  # the budget binds: this is the last growth round
        add = add[fits]
        if add.size == 0:
            break
        balls = sp.vstack([balls, balls_of(A1, add, d)], format="csr")
        pool = np.concatenate([pool, add])
        in_pool[add] = True
        timings["balls"] += time.perf_counter() - t0
    t0 = time.perf_counter()
    upper = n
    for mask, ub in zip(masks[-2:], ubs[-2:]):
        gain_in = np.add.reduceat((~mask[balls.indices]).astype(np.int64), balls.indptr[:-1])
        ub[pool] = gain_in
        upper = min(upper, int(mask.sum()) + int(np.partition(ub, n - k)[n - k :].sum()))
    timings["bound"] = time.perf_counter() - t0
    return Solution(
        seeds=pool[local],
        covered=int(covered),
        n=n,
        d=d,
        method="pruned_greedy",
        timings=timings,
        info={
            "certified": bool(threats.size == 0),
            "upper_bound": upper,
            "pool": int(pool.size),
            "ball_entries": int(balls.nnz),
            "rounds": rounds,
        },
    )


def _check_points(
    balls: sp.csr_array, local: np.ndarray, W: sp.csr_array, d: int, steps: list[int]
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Gains of the picks ``local`` (rows of ``balls``) in order, and at each step j in ``steps``
    the covered mask of the first j picks and :func:`walk_bound` w.r.t. it."""
    n = W.shape[0]
    mask = np.zeros(n, dtype=bool)
    gains = np.empty(local.size, dtype=np.int64)
    masks, ubs = [], []
    nxt = 0
    for i in range(local.size + 1):
        if i == steps[nxt]:
            masks.append(mask.copy())
            ubs.append(_walk_bound(W, ~mask, d))
            nxt += 1
        if i == local.size:
            break
        ball = balls.indices[balls.indptr[local[i]] : balls.indptr[local[i] + 1]]
        new = ball[~mask[ball]]
        gains[i] = new.size
        mask[new] = True
    return gains, masks, ubs


def _closure_entries(A: sp.csr_array, A1: sp.csr_array, d: int, w: np.ndarray) -> float | None:
    """The closure's estimated entries (balls of ``SAMPLES`` random nodes, ``A1 = A + I``) when
    it is large: the walks of length <= d (``w``, :func:`walk_bound` of every node) exceed
    ``CLOSURE_WALKS * (n + m)``; else None."""
    if int(w.sum()) <= CLOSURE_WALKS * (A.shape[0] + A.nnz):
        return None
    return _level_sizes(A1, d, SAMPLES, 0)[0]


def _pool_pays(A1: sp.csr_array, k: int, d: int, closure: float, w: np.ndarray) -> bool:
    """Whether the starting pool's balls (its size times the mean ball of the ``SAMPLES / 16``
    nodes of largest ``w``, the heaviest; ``A1 = A + I``) hold at most 1 / ``POOL_SHARE`` of the
    closure."""
    n = A1.shape[0]
    top = top_k_indices(w, min(n, SAMPLES // 16))
    pool = min(n, max(START * k, MIN_POOL)) * balls_of(A1, top, d).nnz / top.size
    return pool * POOL_SHARE <= closure


def _sampled_first(
    A: sp.csr_array, A1: sp.csr_array, W: sp.csr_array, d: int, closure: float, w: np.ndarray
) -> tuple[Solution, float]:
    """Greedy's first pick (a largest d-ball, ties to the smallest id) among the balls that
    sampled sizes cannot tell from the largest, and the estimated entries of the residual
    reverse closure after it.

    :func:`~combinatorial.closure.sampled_reverse_balls` (seed 0; as many samples as fit
    ``BALL_ENTRIES * (n + m)`` entries, the mean ball holding ``closure / n``, within
    ``BALL_SAMPLES``) estimates every ball size b, with the binomial standard deviation
    s = n sqrt(p (1 - p) / samples) at p = b / n. Candidates: the nodes with
    b + Z s >= max b - Z s, at most ``MIN_POOL``, by decreasing b; their exact balls are built
    ``FIRST_BATCH`` at a time until the largest so far is at least every remaining candidate's
    b + Z s. Certified when no other node's :func:`walk_bound` ``w`` beats it; the bound is the
    smaller of (its size or the largest ``w`` of the nodes not evaluated) and (its size plus
    the largest walk bound w.r.t. the nodes it leaves uncovered). Residual: the sampled reverse
    balls whose target the pick leaves uncovered (those without the pick), scaled to n targets.
    """
    n = A.shape[0]
    t0 = time.perf_counter()
    lo, hi = BALL_SAMPLES
    samples = int(np.clip(BALL_ENTRIES * (n + A.nnz) * n / max(closure, 1.0), lo, hi))
    H, draws = sampled_reverse_balls(A, d, samples, 0)
    lengths = np.diff(H.indptr)
    b = np.bincount(H.indices, np.repeat(draws, lengths), n) * (n / samples)
    p = np.clip(b / n, 0.0, 1.0)
    ucb = b + Z * n * np.sqrt(p * (1.0 - p) / samples)
    top = int(np.argmax(b))
    near = np.flatnonzero(ucb >= 2 * b[top] - ucb[top])
    order = near[np.argsort(-b[near], kind="stable")][:MIN_POOL]
    t1 = time.perf_counter()
    best, size, done = n, -1, 0
    while done < order.size and size < ucb[order[done:]].max():
        chunk = order[done : done + FIRST_BATCH]
        sizes = np.diff(balls_of(A1, chunk, d).indptr)
        cand = int(chunk[sizes == sizes.max()].min())
        if sizes.max() > size or (sizes.max() == size and cand < best):
            best, size = cand, int(sizes.max())
        done += chunk.size
    rest = np.ones(n, dtype=bool)
    rest[order[:done]] = False
    beaten = (w > size) | ((w == size) & (np.arange(n) < best))
    left = _walk_bound(W, ~covered_mask(A, np.array([best]), d), d)
    upper = min(n, max(size, int(w[rest].max(initial=0))), size + int(left.max()))
    holds = np.flatnonzero(H.indices == best)
    covered = np.zeros(H.shape[0], dtype=bool)
    covered[np.searchsorted(H.indptr, holds, side="right") - 1] = True
    sol = Solution(
        seeds=np.array([best], dtype=np.int64),
        covered=size,
        n=n,
        d=d,
        method="sampled_first",
        timings={"sample": t1 - t0, "balls": time.perf_counter() - t1},
        info={
            "certified": not bool((beaten & rest).any()),
            "upper_bound": int(upper),
            "pool": int(done),
        },
    )
    return sol, float((draws * lengths)[~covered].sum()) * n / samples


def residual_greedy(
    adj: sp.sparray | sp.spmatrix, k: int, d: int, first: int, *, progress: bool = False
) -> Solution:
    """Exact greedy after a given first pick, on the residual reverse closure.

    After the first pick s only the nodes U outside B_d(s) can still be covered, and greedy's
    later picks depend only on the gains |B_d(v) minus B_d(s)|, counted over U. The coverers of
    u in U are its reverse ball R_d(u) = {v : dist(v, u) <= d}; they are built for U alone
    (truncated BFS on A^T) and :func:`~combinatorial.baselines.greedy.max_cover` picks the
    other k - 1 seeds with exact gains. When s is greedy's first pick (a largest ball), the
    seeds are those of :func:`~combinatorial.baselines.greedy.greedy` (ties may resolve to
    another node of equal gain) at the cost of the residual's entries instead of the whole
    closure's; on social graphs the largest ball holds most of the nodes with large reverse
    balls, so the residual is a small part of the closure.

    Bound: ``info["upper_bound"]`` = |B_d(s)| + the smallest over residual prefixes S_j of
    (residual coverage of S_j + the k largest gains w.r.t. {s} and S_j) >= OPT (Minoux 1978).

    Args:
        adj: ``n x n`` adjacency (u covers v).
        k: budget (>= 1, capped at n with a warning).
        d: hop count (>= 1).
        first: the first pick (a node id).
        progress: progress bar over the picks (stderr).

    Returns:
        A :class:`Solution` with ``info`` keys ``first_covered`` (|B_d(s)|), ``residual_entries``
        (entries of the residual reverse closure) and ``upper_bound``.

    Example:
        >>> import numpy as np, scipy.sparse as sp
        >>> A = sp.csr_array(([1, 1, 1, 1], ([0, 0, 1, 3], [1, 2, 3, 4])), shape=(5, 5))
        >>> sol = residual_greedy(A, 2, 1, first=0)  # B_1(0) = {0, 1, 2}; 3 adds {3, 4}
        >>> sol.seeds.tolist(), sol.covered, sol.info["upper_bound"]
        ([0, 3], 5, 5)
    """
    A = as_csr(adj)
    n = A.shape[0]
    k, d = check_k(k, n), check_d(d)
    if not 0 <= int(first) < n:
        raise ConfigError(f"first must be a node id in [0, {n}), got {first!r}")
    t0 = time.perf_counter()
    mark = np.zeros(n, dtype=bool)
    first_ball = reach(A, np.array([first], dtype=np.int64), d, mark)
    left = np.flatnonzero(~mark)
    T = balls_of(with_self_loops(as_csr(A.T)), left, d)  # row e: the coverers of left[e]
    members = T.T.tocsr()  # row v: the elements (rows of T) that v covers
    t1 = time.perf_counter()
    picks = min(k, n - 1)  # k picks for the bound (k sets), the first k - 1 kept
    rest, _, upper = max_cover(
        T,
        lambda v: members.indices[members.indptr[v] : members.indptr[v + 1]],
        picks,
        progress=progress,
        exclude=np.array([first], dtype=np.int64),
    )
    rest = rest[: k - 1]
    gained = np.unique(gather_rows(members, rest)).size if rest.size else 0
    return Solution(
        seeds=np.concatenate([np.array([first], dtype=np.int64), rest]),
        covered=int(first_ball.size + gained),
        n=n,
        d=d,
        method="residual_greedy",
        timings={"residual": t1 - t0, "solve": time.perf_counter() - t1},
        info={
            "first_covered": int(first_ball.size),
            "residual_entries": int(T.nnz),
            "upper_bound": min(n, int(first_ball.size + upper)),
        },
    )


def fastcover_greedy(
    adj: sp.sparray | sp.spmatrix,
    k: int,
    d: int,
    score: Callable[[], np.ndarray],
    *,
    candidates: int | None = None,
    max_entries: int | None = None,
    progress: bool = False,
) -> Solution:
    """FastCover's default: exact greedy on the d-closure when it is small, else greedy whose
    first pick and candidates come from cheap estimates, with exact gains.

    With w(v) = :func:`walk_bound` (walks of length <= d from v, capped at n; their sum bounds
    the closure's entries and its building cost), the closure counts as large when sum
    w > ``CLOSURE_WALKS * (n + m)`` (never at d = 1); its entries are then estimated from the
    balls of ``SAMPLES`` random nodes. A small closure, or for k > 1 one of at most
    ``PRUNE_ENTRIES * (n + m)`` estimated entries: :func:`~combinatorial.baselines.greedy.greedy`
    on it, without the scores (a forward pass, or the rounds of walk-bound checks, would cost
    about as much).

    A large closure and k = 1: the largest ball among those that sampled reverse balls cannot
    tell from the largest (:func:`_sampled_first`). At d >= ``GNN_MIN_D`` and k > 1 that is the
    first pick, and when the residual reverse closure after it is estimated at most
    1 / ``RESIDUAL_SHARE`` of the closure, :func:`residual_greedy` picks the rest with exact
    gains.

    Otherwise (d = 2 and k > 1, or a large residual) pruning pays when the starting pool's
    balls are a small part of the closure (:func:`_pool_pays`); else closure greedy runs. When
    pruning pays, :func:`pruned_greedy` picks among candidates ranked by ``score()`` (e.g. a
    FastCover forward pass, called once) for d >= ``GNN_MIN_D``, by the walk bound below (as
    good a ranking at d = 2, and free). At d >= ``GNN_MIN_D`` the walk bounds overcount so much that
    growing the pool rarely certifies it: the pool grows at most ``DEEP_ROUNDS - 1`` times,
    while its balls hold at most 1 / ``DEEP_SHARE`` of the closure's estimated entries.
    ``candidates=c`` always takes the pruned path with a fixed pool of the ``c * k``
    best-scored nodes. When the automatic pool ends uncertified although its balls hold
    1 / ``POOL_SHARE`` of the closure's estimated entries, closure greedy runs after all (within
    the default closure budget); otherwise the pruned result stands, uncertified, with its bound.

    ``info["strategy"]`` names the path (``"closure greedy"``, ``"sampled first pick"``,
    ``"residual greedy after a sampled first pick"``, ``"pruned greedy, GNN ranking"``,
    ``"pruned greedy, walk-bound ranking"`` or ``"closure greedy (pruned pool not certified)"``),
    ``info["certified"]`` whether the seeds are those of a run of exact greedy on the whole graph
    (after a sampled first pick: when walk bounds show that no other ball is larger),
    ``info["upper_bound"]`` >= OPT.
    ``timings["score"]`` is the call to ``score``.
    """
    A = as_csr(adj)
    n = A.shape[0]
    k, d = check_k(k, n), check_d(d)
    w, closure = None, None
    if candidates is None and d > 1:
        A1, W = with_self_loops(A), _walk_matrix(A)
        w = _walk_bound(W, np.ones(n, dtype=bool), d)
        closure = _closure_entries(A, A1, d, w)
    if k > 1 and closure is not None and closure <= PRUNE_ENTRIES * (n + A.nnz):
        closure = None  # the checks and rounds of pruning would cost about as much as greedy
    deep = closure is not None and d >= GNN_MIN_D
    if closure is not None and (deep or k == 1):
        t0 = time.perf_counter()
        first, residual = _sampled_first(A, A1, W, d, closure, w)
        if k == 1:
            first.info = {"strategy": "sampled first pick", **first.info}
            return first
        if residual * RESIDUAL_SHARE <= closure:
            sol = residual_greedy(A, k, d, int(first.seeds[0]), progress=progress)
            first_s = time.perf_counter() - t0 - sum(sol.timings.values())
            sol.timings = {"first": first_s, **sol.timings}
            strategy = "residual greedy after a sampled first pick"
            pool = first.info["pool"]
            cert = first.info["certified"]
            sol.info = {"strategy": strategy, "certified": cert, "first_pool": pool, **sol.info}
            return sol
    if candidates is None and (closure is None or not _pool_pays(A1, k, d, closure, w)):
        sol = greedy(A, k, d, max_bytes=None, progress=progress)
        sol.info.update(strategy="closure greedy", certified=True)
        return sol
    gnn = d >= GNN_MIN_D or candidates is not None
    t0 = time.perf_counter()
    scores = score() if gnn else None
    score_s = time.perf_counter() - t0
    if deep and max_entries is None:
        max_entries = int(min(ENTRIES_PER_ARC * (n + A.nnz), closure / DEEP_SHARE))
    sol = pruned_greedy(
        A,
        scores,
        k,
        d,
        candidates=candidates,
        max_entries=max_entries,
        max_rounds=DEEP_ROUNDS if deep else MAX_ROUNDS,
        progress=progress,
    )
    sol.timings = {"score": score_s, **sol.timings}
    strategy = "pruned greedy, GNN ranking" if gnn else "pruned greedy, walk-bound ranking"
    sol.info = {"strategy": strategy, **sol.info}
    uncertified = closure is not None and not sol.info["certified"]
    if uncertified and sol.info["ball_entries"] * POOL_SHARE >= closure:
        try:  # the pool's balls are a large part of the closure already: exact greedy on it
            exact = greedy(A, k, d, progress=progress)
        except MemoryBudgetError:
            return sol
        exact.info.update(strategy="closure greedy (pruned pool not certified)", certified=True)
        exact.timings = {**{f"pruned_{p}": t for p, t in sol.timings.items()}, **exact.timings}
        return exact
    return sol
