"""Random directed graphs for tests and benchmarks (pure numpy, deterministic per seed)."""

from __future__ import annotations

import numpy as np
import torch
from torch_geometric.data import Data

from graphrec.errors import ConfigError

__all__ = ["powerlaw_digraph", "erdos_renyi_digraph"]


def _to_data(keys: np.ndarray, n: int) -> Data:
    """Sorted unique ``src * n + dst`` keys -> ``Data(edge_index, num_nodes)``."""
    edge_index = np.stack([keys // n, keys % n])
    return Data(edge_index=torch.from_numpy(edge_index), num_nodes=n)


def _check_n(n: int) -> None:
    if n < 2:
        raise ConfigError(f"n must be at least 2, got {n}")


def powerlaw_digraph(
    n: int, avg_degree: float, *, exponent: float = 2.5, seed: int | None = None
) -> Data:
    """Directed Chung-Lu graph whose in- and out-degrees follow a power law.

    Node ``v`` gets weight ``(r_v + 1) ** (-1 / (exponent - 1))`` for a rank ``r_v``; out- and
    in-ranks are two independent random permutations, so hubs of the two directions differ.
    Edges are drawn as independent ``(source ~ out-weights, target ~ in-weights)`` pairs;
    self-loops and repeated pairs are discarded and more pairs drawn until at least
    ``m = round(n * avg_degree)`` distinct edges exist, then a uniform random surplus is
    dropped, leaving exactly ``m``. The degree distributions have power-law tails
    ``P(k) ~ k ** -exponent``, flattened at the very top where the largest weights ask for more
    distinct neighbours than exist (rank-degree slope ``-1 / (exponent - 1)``).

    Cost is O(m log m) time and O(m) memory: 1e6 nodes / 1e7 edges take a few seconds.

    Args:
        n: number of nodes (at least 2).
        avg_degree: mean out-degree (= mean in-degree); at most ``(n - 1) / 2``.
        exponent: power-law exponent ``gamma > 2`` of the degree distribution.
        seed: seed of :func:`numpy.random.default_rng`; the same seed gives the same graph.

    Returns:
        ``Data(edge_index [2, m] int64, num_nodes=n)``, edges sorted by (source, target).
    """
    _check_n(n)
    if exponent <= 2:
        raise ConfigError(f"exponent must be > 2, got {exponent}")
    m = int(round(n * avg_degree))
    if not 0 <= m <= n * (n - 1) // 2:
        raise ConfigError(f"avg_degree must be in [0, {(n - 1) / 2}] for n={n}, got {avg_degree}")
    rng = np.random.default_rng(seed)
    weight = np.arange(1, n + 1, dtype=np.float64) ** (-1.0 / (exponent - 1.0))
    weight /= weight.sum()
    out_node, in_node = rng.permutation(n), rng.permutation(n)  # node of each weight rank

    def draw(count: int) -> np.ndarray:
        # ``count`` i.i.d. (source, target) pairs: multinomial stub counts, randomly matched.
        src = np.repeat(out_node, rng.multinomial(count, weight))
        dst = np.repeat(in_node, rng.multinomial(count, weight))
        rng.shuffle(dst)
        return (src * n + dst)[src != dst]

    keys = np.empty(0, dtype=np.int64)
    while keys.size < m:
        keys = np.sort(np.concatenate([keys, draw(int((m - keys.size) * 1.1) + 64)]))
        keys = keys[np.append(True, keys[1:] != keys[:-1])]
    keys = np.delete(keys, rng.choice(keys.size, keys.size - m, replace=False))
    return _to_data(keys, n)


def erdos_renyi_digraph(
    n: int,
    p: float | None = None,
    *,
    avg_degree: float | None = None,
    seed: int | None = None,
) -> Data:
    """Directed Erdős-Rényi graph ``G(n, p)`` without self-loops.

    Each of the ``n (n - 1)`` ordered pairs is an edge independently with probability ``p``
    (or ``p = avg_degree / (n - 1)``). Sampled exactly as a binomial edge count followed by a
    uniform subset of that size of the pairs (Floyd's algorithm via :meth:`numpy.random.
    Generator.choice`), so the cost is O(m log m), independent of ``n ** 2``.

    Args:
        n: number of nodes (at least 2).
        p: edge probability; give exactly one of ``p`` and ``avg_degree``.
        avg_degree: expected out-degree.
        seed: seed of :func:`numpy.random.default_rng`; the same seed gives the same graph.

    Returns:
        ``Data(edge_index [2, m] int64, num_nodes=n)``, edges sorted by (source, target).
    """
    _check_n(n)
    if (p is None) == (avg_degree is None):
        raise ConfigError("give exactly one of p and avg_degree")
    if p is None:
        p = avg_degree / (n - 1)
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"p must be in [0, 1], got {p}")
    rng = np.random.default_rng(seed)
    pairs = n * (n - 1)
    m = int(rng.binomial(pairs, p))
    slot = np.sort(rng.choice(pairs, size=m, replace=False, shuffle=False))
    src, rest = np.divmod(slot, n - 1)
    dst = rest + (rest >= src)  # skip the diagonal
    return _to_data(src * n + dst, n)
