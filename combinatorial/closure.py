"""The d-closure M = A_d + I (M[u, v] = 1 iff dist(u, v) <= d), its size and the ball sizes."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from combinatorial.graph import as_csr, check_d, with_self_loops
from graphrec.errors import ConfigError, MemoryBudgetError

__all__ = [
    "ball_sizes",
    "d_closure",
    "estimate_closure_bytes",
    "reverse_balls",
    "sampled_reverse_balls",
]

DEFAULT_MAX_BYTES = 2 * 2**30
_BATCH_ENTRIES = 2**24  # target stored entries per batch of sources in ball_sizes
_REVERSE_BATCH_ENTRIES = 2**23  # target stored entries per batch in reverse_balls


def power_closure(A1: sp.csr_array, d: int) -> sp.csr_array:
    """``M_d`` from ``A1 = A + I`` by ``M_l = A1 @ M_(l-1)``, boolean products (no budget check).

    Left multiplication merges whole rows of ``M_(l-1)``; on soc-slashdot (d = 3) it is 2.5x
    faster than ``M_(l-1) @ A1``. Column indices come out unsorted. Stops early at the fixed
    point (``M_l`` has no more entries than ``M_(l-1)``), so a huge ``d`` costs no more than the
    graph's diameter.
    """
    if d == 0:
        return sp.eye_array(A1.shape[0], dtype=bool, format="csr")
    M = A1
    for _ in range(d - 1):
        nxt = A1 @ M
        if nxt.nnz == M.nnz:  # M_l contains M_(l-1) (A1 has the diagonal): nothing new
            break
        M = nxt
    return M


def balls_of(A1: sp.csr_array, sources: np.ndarray, d: int) -> sp.csr_array:
    """Row i = B_d(sources[i]) as a ``len(sources) x n`` boolean CSR (``A1 = A + I``).

    Right multiplication ``R_l = R_(l-1) @ A1`` costs O(sum of the balls' out-degrees).
    Pass ``A1`` of the transposed graph for reverse balls. Stops early once the balls stop
    growing.
    """
    sources = np.asarray(sources, dtype=np.int64)
    if d == 0:
        eye = sp.eye_array(A1.shape[0], dtype=bool, format="csr")
        return eye[sources]
    R = A1[sources]
    for _ in range(d - 1):
        nxt = R @ A1
        if nxt.nnz == R.nnz:
            break
        R = nxt
    return R


def reverse_balls(A1T: sp.csr_array, targets: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Reverse d-balls of ``targets`` as (row lengths, concatenated node ids), in batches of
    about ``2**23`` stored entries (``A1T``: ``A^T + I``)."""
    indices, lengths = [], []
    batch, start = 1024, 0
    while start < targets.size:
        R = balls_of(A1T, targets[start : start + batch], d)
        indices.append(R.indices)
        lengths.append(np.diff(R.indptr))
        start += batch
        batch = int(np.clip(_REVERSE_BATCH_ENTRIES * R.shape[0] / max(R.nnz, 1), 64, 1 << 16))
    if not indices:
        return np.zeros(0, np.int64), np.zeros(0, A1T.indices.dtype)
    return np.concatenate(lengths), np.concatenate(indices)


def sampled_reverse_balls(
    adj: sp.sparray | sp.spmatrix, d: int, samples: int, seed: int
) -> tuple[sp.csr_array, np.ndarray]:
    r"""The reverse d-balls R_d(t) = {u : dist(u, t) <= d} of ``samples`` uniform random targets.

    Returns ``(H, draws)``: ``H`` is a boolean CSR with one row per distinct target (its reverse
    ball), ``draws[i]`` how often row i's target was drawn. Since u is in R_d(t) iff t is in
    B_d(u), ``n / samples`` times the draws of the rows holding u is an unbiased estimate of the
    ball size:

    .. math::
        \hat b(u) = \frac{n}{\theta} \sum_{i=1}^{\theta} [u \in R_d(t_i)], \qquad
        t_i \sim \mathrm{Uniform}(V)

    (each term a Bernoulli(|B_d(u)| / n) draw, so the largest balls are estimated best). Time:
    the reverse truncated BFS of the distinct targets.

    Example:
        >>> import numpy as np, scipy.sparse as sp
        >>> A = sp.csr_array(([1, 1], ([0, 1], [1, 2])), shape=(3, 3))  # 0 -> 1 -> 2
        >>> H, draws = sampled_reverse_balls(A, 2, 3000, 0)
        >>> b = np.bincount(H.indices, np.repeat(draws, np.diff(H.indptr)), 3) * 3 / 3000
        >>> b.round().tolist()  # true ball sizes: [3, 2, 1]
        [3.0, 2.0, 1.0]
    """
    A = as_csr(adj)
    n = A.shape[0]
    draw = np.random.default_rng(seed).integers(0, n, size=samples)
    targets, draws = np.unique(draw, return_counts=True)
    lengths, members = reverse_balls(with_self_loops(as_csr(A.T)), targets, check_d(d, 0))
    indptr = np.zeros(targets.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    H = sp.csr_array((np.ones(members.size, dtype=bool), members, indptr), shape=(targets.size, n))
    return H, draws


def _level_sizes(A1: sp.csr_array, d: int, samples: int, seed: int) -> tuple[float, float]:
    """Estimated sum over all nodes of |B_d(v)| and |B_(d-1)(v)| from sampled sources.

    Sources go 64 at a time, so memory stays at 64 balls whatever the graph.
    """
    n = A1.shape[0]
    if samples >= n:
        src = np.arange(n)
    else:
        src = np.random.default_rng(seed).choice(n, size=samples, replace=False)
    cur = prev = 0.0
    for chunk in np.array_split(src, -(-src.size // 64)):
        sizes = [float(chunk.size)]  # |B_0| = 1
        R = A1[chunk]
        sizes.append(float(R.nnz))
        for _ in range(d - 1):
            R = R @ A1
            sizes.append(float(R.nnz))
            if sizes[-1] == sizes[-2]:  # fixed point: every later level has the same size
                break
        cur += sizes[min(d, len(sizes) - 1)]
        prev += sizes[min(max(d - 1, 0), len(sizes) - 1)]
    scale = n / src.size
    return cur * scale, prev * scale


def estimate_closure_bytes(
    adj: sp.sparray | sp.spmatrix, d: int, *, samples: int = 1024, seed: int = 0
) -> int:
    """Estimated peak bytes of :func:`d_closure` (result plus product intermediates).

    nnz(M_l) = sum_v |B_l(v)| is estimated as n times the mean ball size of ``samples`` random
    sources (exact when ``samples >= n``), computed by truncated BFS from those sources only.
    Peak memory = the result M_d and the previous power M_(d-1) (``bool`` data plus int32 or int64
    indices, ``indptr`` of both) plus the product's O(n) workspace and the ``A + I`` copy. On
    soc-slashdot and soc-sign-bitcoinotc (d = 2, 3) it is within 10% of the traced peak.
    Sources are expanded 64 at a time, so the estimate itself needs little memory.

    Parameters
    ----------
    adj : scipy sparse ``n x n``
    d : int, ``>= 0``
    samples : int
        Number of sampled sources; the relative error shrinks like 1/sqrt(samples) times the
        coefficient of variation of the ball sizes.
    seed : int
        Seed of the source sample (the estimate is deterministic for a given seed).

    Examples
    --------
    >>> import numpy as np
    >>> from combinatorial.graph import adjacency
    >>> A = adjacency(np.array([[0, 1, 2], [1, 2, 3]]), 4)
    >>> estimate_closure_bytes(A, 2) > 0
    True
    """
    A = as_csr(adj)
    d = check_d(d, 0)
    samples = int(samples)
    if samples < 1:
        raise ConfigError(f"samples must be >= 1, got {samples}")
    n, m = A.shape[0], A.nnz
    if n == 0:
        return 0
    nnz_d, nnz_prev = _level_sizes(with_self_loops(A), d, samples, seed)
    idx = 4 if max(nnz_d, n) <= np.iinfo(np.int32).max else 8
    per_entry = idx + 1
    est = per_entry * (nnz_d + nnz_prev + m + n) + 2 * idx * (n + 1) + (idx + 1) * n
    return int(np.ceil(est))


def d_closure(
    adj: sp.sparray | sp.spmatrix, d: int, *, max_bytes: int | None = DEFAULT_MAX_BYTES
) -> sp.csr_array:
    """The binarised d-closure with diagonal: ``M[u, v] = True`` iff dist(u, v) <= d.

    M = A_d + I, i.e. row u is the closed d-ball B_d(u) (u included); the k-dDSP on G is max
    coverage over the rows of M (the d-closure reduction of the FastCover paper).

    Parameters
    ----------
    adj : scipy sparse ``n x n``
        Nonzero ``A[u, v]`` = edge u -> v.
    d : int, ``>= 0`` (d = 0 gives I)
    max_bytes : int or None
        Memory budget. The peak is estimated first (:func:`estimate_closure_bytes`); above the
        budget a :class:`~graphrec.errors.MemoryBudgetError` is raised before anything large is
        allocated. None disables the check.

    Returns
    -------
    scipy.sparse.csr_array
        ``n x n`` with ``bool`` data, no duplicates; column indices within a row are *not*
        sorted for d >= 2 (call ``.sort_indices()`` if needed). Index dtype int32 when it fits.

    Notes
    -----
    Built by d - 1 boolean sparse products ``M_l = (A + I) @ M_(l-1)`` (SciPy's SMMP kernel,
    where ``+`` is logical or). Time O(sum_v indeg(v) |B_(d-1)(v)|), memory O(nnz(M_d) +
    nnz(M_(d-1))). We measured this left product faster than the right product
    ``M_(l-1) @ (A + I)`` and than a BFS from every node.

    Examples
    --------
    >>> import numpy as np
    >>> from combinatorial.graph import adjacency
    >>> A = adjacency(np.array([[0, 1, 2], [1, 2, 3]]), 4)
    >>> M = d_closure(A, 2)
    >>> M.nnz, sorted(M[[0]].indices.tolist())
    (9, [0, 1, 2])
    """
    A = as_csr(adj)
    d = check_d(d, 0)
    check_budget(A, d, max_bytes, "d_closure")
    return power_closure(with_self_loops(A), d)


def check_budget(A: sp.csr_array, d: int, max_bytes: int | None, what: str) -> None:
    """Raise MemoryBudgetError when the estimated closure peak of ``A`` exceeds ``max_bytes``."""
    if max_bytes is None:
        return
    est = estimate_closure_bytes(A, d)
    if est > max_bytes:
        gib = 2**30
        raise MemoryBudgetError(
            f"{what}: the d-closure (n={A.shape[0]}, d={d}) needs an estimated {est} bytes "
            f"({est / gib:.2f} GiB), above the budget of {max_bytes} bytes "
            f"({max_bytes / gib:.2f} GiB). Raise it with max_bytes= (None = no limit) or "
            f"--max-memory on the command line, or use a closure-free method (ris_greedy)."
        )


def ball_sizes(adj: sp.sparray | sp.spmatrix, d: int) -> np.ndarray:
    """|B_d(v)| for every node v: the number of nodes within d hops, v included.

    Computed in batches of sources (truncated BFS as boolean sparse products), so memory stays
    bounded (about 2^24 stored entries per batch) whatever the closure size; time
    O(sum_v sum_{w in B_(d-1)(v)} outdeg(w)).

    Examples
    --------
    >>> import numpy as np
    >>> from combinatorial.graph import adjacency
    >>> A = adjacency(np.array([[0, 1, 2], [1, 2, 3]]), 4)
    >>> ball_sizes(A, 2).tolist()
    [3, 3, 2, 1]
    """
    A = as_csr(adj)
    d = check_d(d, 0)
    n = A.shape[0]
    sizes = np.ones(n, dtype=np.int64)
    if n == 0 or d == 0:
        return sizes
    A1 = with_self_loops(A)
    if d == 1:
        return np.diff(A1.indptr).astype(np.int64)
    mean_ball = max(1.0, _level_sizes(A1, d, 256, 0)[0] / n)
    batch = max(1, int(_BATCH_ENTRIES / mean_ball))
    for start in range(0, n, batch):
        rows = np.arange(start, min(n, start + batch))
        sizes[rows] = np.diff(balls_of(A1, rows, d).indptr)
    return sizes
