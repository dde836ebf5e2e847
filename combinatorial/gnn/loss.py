r"""FastCover's unsupervised loss in sparse log-space form, and the index it runs on.

With :math:`M = A_d + I` (:math:`M_{uv} = 1` iff :math:`v` lies within :math:`d` hops of
:math:`u`) and independent selection probabilities :math:`p = \sigma(s)`, the expected number of
uncovered nodes plus a penalty on the expected seed count is

.. math::
    L(p) = \sum_v \prod_{u : M_{uv} = 1} (1 - p_u) + C \cdot \mathrm{pen}(p)
         = \sum_v \exp\big((M^{\top} \log(1 - p))_v\big) + C \cdot \mathrm{pen}(p),

with :math:`\mathrm{pen}(p) = \sum_u p_u` (``linear``, the official default) or
:math:`\mathrm{ReLU}(\sum_u p_u - k)` (``hinge_k``). :math:`M^{\top} \log(1 - p)` is a
scatter-add over the nonzeros of :math:`M`: :math:`O(\mathrm{nnz}(M))` time and memory instead of
the official dense :math:`O(n^2)`.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import Tensor

from graphrec.errors import ConfigError

PENALTIES = ("linear", "hinge_k")


def fastcover_loss(
    logits: Tensor,
    cover_index: Tensor,
    num_targets: int | None = None,
    *,
    target_scale: float = 1.0,
    penalty: str = "linear",
    c: float = 1.0,
    k: int | None = None,
    eps: float = 1e-6,
) -> Tensor:
    """Expected number of uncovered targets plus ``c`` times a seed-count penalty.

    Args:
        logits: node logits ``s`` ``[n]``; ``p = sigmoid(s)`` clamped to ``<= 1 - eps``.
        cover_index: ``[2, nnz]``, one column ``(u, t)`` per coverer ``u`` of target slot ``t``:
            the COO entries of ``M = A_d + I`` (targets = all nodes) or the reverse d-balls of
            sampled targets (see :func:`cover_index`).
        num_targets: number of target slots (default ``n``).
        target_scale: factor on the uncovered term; ``n / num_targets`` makes a sample of targets
            an unbiased estimate of the full term.
        penalty: ``"linear"`` (``sum p``) or ``"hinge_k"`` (``relu(sum p - k)``, needs ``k``).
        c: penalty weight ``C``.
        k: budget, only used by ``hinge_k``.
        eps: clamp of ``p`` away from 1 (keeps ``log(1 - p)`` finite).
    """
    if penalty not in PENALTIES:
        raise ConfigError(f"penalty must be one of {PENALTIES}, got {penalty!r}")
    if penalty == "hinge_k" and k is None:
        raise ConfigError("penalty='hinge_k' needs the budget k")
    num_targets = logits.numel() if num_targets is None else num_targets
    # log(1 - sigmoid(s)) = logsigmoid(-s); the clamp is p <= 1 - eps in log space.
    log_q = F.logsigmoid(-logits).clamp(min=math.log(eps))
    log_uncovered = logits.new_zeros(num_targets).index_add_(
        0, cover_index[1], log_q[cover_index[0]]
    )
    uncovered = target_scale * log_uncovered.exp().sum()
    p = 1.0 - log_q.exp()
    seeds = p.sum()
    pen = seeds if penalty == "linear" else F.relu(seeds - k)
    return uncovered + c * pen


def budget_loss(
    logits: Tensor,
    cover_index: Tensor,
    ks: list[int],
    num_targets: int | None = None,
    *,
    target_scale: float = 1.0,
    temperature: float = 1.0,
    eps: float = 1e-6,
) -> Tensor:
    r"""Mean over budgets ``ks`` of the expected uncovered fraction under a soft top-k selection.

        A graphrec design choice, not in the official code: the official loss trains one selection
        size (set by ``C``) and leaves the order of the other nodes free, while seeds are then taken
        as the top-k for every k. Here, for each budget k, the logits are scaled by the local spread
        of the ranking, :math:`T_k = T \cdot (s_{(\lceil k/2
    ceil)} - s_{(2k+1)})` (sorted
        descending, treated as a constant), and shifted by :math:`	au_k` with
        :math:`\sum_u \sigma((s_u - 	au_k) / T_k) = k` (bisection; the implicit gradient of
        :math:`	au_k` keeps the expected count at k to first order). The first term of
        :func:`fastcover_loss` is evaluated at :math:`p = \sigma((s - 	au_k) / T_k)`. With the
        expected count fixed, spreading probability never pays (``log(1 - p)`` is concave), so each
        term is minimised by a good hard k-set, and only nodes ranked around k get a gradient.

        Args:
            logits: node logits ``[n]``.
            cover_index: ``[2, nnz]`` coverer/target pairs, as for :func:`fastcover_loss`.
            ks: budgets; those ``>= n / 2`` are skipped.
            num_targets: number of target slots (default ``n``).
            target_scale: factor on the uncovered term (``n / num_targets`` for sampled targets).
            temperature: ``T``, the width of the soft threshold relative to the local spread.
            eps: clamp of ``p`` away from 1.

        Returns:
            The mean over the used budgets of (expected uncovered targets) / n.
    """
    n = logits.numel()
    ranked = torch.sort(logits.detach(), descending=True).values
    # Ties around rank k would make the spread 0; floor it at a small share of the full range.
    floor = ((ranked[0] - ranked[-1]) * 1e-3).clamp(min=1e-12)
    terms = []
    for k in (k for k in ks if 2 * k < n):
        spread = torch.maximum(ranked[(k + 1) // 2 - 1] - ranked[2 * k], floor)
        z = logits / (temperature * spread)
        tau = _soft_threshold(z.detach(), k)
        with torch.no_grad():
            slope = torch.sigmoid(z - tau) * torch.sigmoid(tau - z)
            slope = slope / slope.sum()
        tau = tau + (slope * (z - z.detach())).sum()  # d tau / d z_u of sum sigmoid(z - tau) = k
        uncovered = fastcover_loss(
            z - tau, cover_index, num_targets, target_scale=target_scale, c=0.0, eps=eps
        )
        terms.append(uncovered / n)
    if not terms:
        raise ConfigError(f"every budget in {ks} is >= n / 2 = {n / 2}")
    return torch.stack(terms).mean()


def imitation_loss(logits: Tensor, order: Tensor) -> Tensor:
    r"""Plackett-Luce (ListMLE) negative log-likelihood of a reference pick order, per pick.

    With ``order`` :math:`o_1, \dots, o_K` (e.g. greedy's first ``K`` seeds) and the standardised
    logits :math:`z = (s - \bar{s}) / \sigma(s)` (so that, like :func:`budget_loss`, the loss
    does not depend on the scale of the logits), each pick is a softmax draw among the nodes not
    picked before:

    .. math::
        \frac{1}{K} \sum_{i=1}^{K} \Big(\log \sum_{u \notin \{o_1..o_{i-1}\}} e^{z_u}
        - z_{o_i}\Big).

    Args:
        logits: node logits ``[n]`` (not all equal).
        order: ``[K]`` distinct node ids in pick order (``K < n``).
    """
    z = (logits - logits.mean()) / logits.std()
    picked = z[order]
    rest = torch.ones_like(z, dtype=torch.bool)
    rest[order] = False
    tail = torch.logcumsumexp(picked.flip(0), 0).flip(0)  # log sum over o_i..o_K
    denominator = torch.logaddexp(tail, torch.logsumexp(z[rest], 0))
    return (denominator - picked).mean()


def _soft_threshold(z: Tensor, k: int, iters: int = 60) -> Tensor:
    """``tau`` with ``sum sigmoid(z - tau) = k`` (bisection, 0 < k < n)."""
    lo, hi = z.min() - 40.0, z.max() + 40.0
    for _ in range(iters):
        mid = (lo + hi) / 2
        if torch.sigmoid(z - mid).sum() > k:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def cover_index(
    adj: sp.sparray | sp.spmatrix,
    d: int,
    targets: np.ndarray | None = None,
) -> Tensor:
    """``[2, nnz]`` index of ``(coverer, target slot)`` pairs for :func:`fastcover_loss`.

    Column ``(u, t)`` is present iff ``dist(u, targets[t]) <= d`` (distance 0 included), found by
    a ``d``-level backward BFS from the targets; no closure of the whole graph is built unless
    ``targets`` is None (all nodes, giving the COO entries of ``M = A_d + I``).

    Args:
        adj: binary ``n x n`` adjacency, ``adj[u, v] = 1`` iff ``u`` covers ``v``.
        d: hop count (>= 1).
        targets: target node ids ``[t]``, or None for all nodes.
    """
    n = adj.shape[0]
    targets = np.arange(n) if targets is None else np.asarray(targets, dtype=np.int64)
    adj_t = sp.csr_array(adj.T, dtype=bool)
    frontier = sp.csr_array(
        (np.ones(len(targets), dtype=bool), (np.arange(len(targets)), targets)),
        shape=(len(targets), n),
    )
    ball = frontier
    for _ in range(d):
        frontier = (frontier @ adj_t) > ball  # predecessors not reached before
        if frontier.nnz == 0:
            break
        ball = ball + frontier
    coo = ball.tocoo()
    return torch.from_numpy(np.stack([coo.col, coo.row]).astype(np.int64))
