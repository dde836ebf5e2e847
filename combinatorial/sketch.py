r"""HyperLogLog estimates of d-hop ball sizes (HyperANF-style): :func:`ball_size_sketch`.

Every node ``v`` draws one HyperLogLog observation: a register ``j(v)`` uniform in ``[0, r)`` and a
rank ``rho(v)`` with :math:`P(\rho = i) = 2^{-i}` (the position of the first 1-bit of a hash).
The sketch of a set is the per-register maximum of its members' ranks. With ``R_0[v]`` the sketch
of ``{v}``, the sketch of the out-ball :math:`B_l(v)` (nodes within ``l`` hops along out-edges,
``v`` included) is

.. math::
    R_l[v] = \max\big(R_{l-1}[v], \max_{v \to w} R_{l-1}[w]\big),

one pass over the edges per hop: :math:`O(l \cdot m \cdot r)` time, :math:`O(n \cdot r)` bytes.
The size estimate is the HyperLogLog estimator with linear counting for small sets; its relative
standard error is about :math:`1.04 / \sqrt{r}`. Deterministic given ``seed``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from combinatorial.graph import as_csr
from graphrec.errors import ConfigError

__all__ = ["ball_size_sketch", "hll_estimate"]

#: Largest rank stored (ranks are capped; 2**-40 is far below any register's resolution here).
_MAX_RANK = 40


def ball_size_sketch(
    adj: sp.sparray | sp.spmatrix, hops: int, registers: int = 64, seed: int = 0
) -> np.ndarray:
    """Estimated out-ball sizes :math:`|B_l(v)|` for ``l = 1..hops``, shape ``[n, hops]``.

    Args:
        adj: ``n x n`` adjacency, ``adj[u, v] != 0`` iff ``u`` covers ``v`` (see
            :mod:`combinatorial.graph`).
        hops: number of hops ``L`` (>= 1).
        registers: HyperLogLog registers per node, a power of two >= 16.
        seed: seed of the per-node observations.
    """
    if hops < 1:
        raise ConfigError(f"hops must be >= 1, got {hops}")
    if registers < 16 or registers & (registers - 1):
        raise ConfigError(f"registers must be a power of two >= 16, got {registers}")
    A = as_csr(adj)
    n = A.shape[0]
    rng = np.random.default_rng(seed)
    slot = rng.integers(0, registers, size=n)
    rank = np.minimum(rng.geometric(0.5, size=n), _MAX_RANK).astype(np.uint8)
    R = np.zeros((n, registers), dtype=np.uint8)
    R[np.arange(n), slot] = rank
    has_out = np.flatnonzero(np.diff(A.indptr))
    starts = A.indptr[has_out]
    out = np.empty((n, hops))
    for level in range(hops):
        reached = R.copy()
        if A.nnz:
            reached[has_out] = np.maximum(
                reached[has_out], np.maximum.reduceat(R[A.indices], starts, axis=0)
            )
        R = reached
        out[:, level] = hll_estimate(R)
    return out


def hll_estimate(sketches: np.ndarray) -> np.ndarray:
    """HyperLogLog cardinality of each row of ``sketches`` ``[n, r]`` (ranks, 0 = empty)."""
    r = sketches.shape[1]
    alpha = 0.7213 / (1.0 + 1.079 / r)
    raw = alpha * r * r / np.exp2(-sketches.astype(np.float64)).sum(axis=1)
    zeros = (sketches == 0).sum(axis=1)
    linear = r * np.log(r / np.maximum(zeros, 1))
    return np.where((raw <= 2.5 * r) & (zeros > 0), linear, raw)
