"""Mini-batch samplers over the training interactions of a user-item graph.

:class:`InteractionSampler` draws observed pairs uniformly from the training interactions,
i.e. users proportionally to ``deg(u)`` and items proportionally to ``deg(i)``. Used with
in-batch negatives this is HDCCF's frequency-aware sampling (the paper's in-batch sampler):
the items of the other pairs are negatives drawn ``∝ deg(j)`` at the cost of one ``[B, B]``
similarity matrix. Optionally it adds ``M - 1`` extra positives per anchor (set-wise
positives) and ``N`` explicit negatives per user drawn ``∝ deg(j)^alpha`` (``alpha = 0``:
uniform, as BPR; ``alpha = 1``: RecBole's ``popularity`` sampler), resampled to avoid known
positives. With ``by_user=True`` the anchors are instead drawn as LightGCN's official code does:
a user uniformly among those with training items, then one of its items uniformly (the epoch
still has ``nnz`` pairs), which trains light users as often as heavy ones.

Every epoch's batches are a pure function of ``(seed, epoch)``, so a training run resumed at
an epoch boundary sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from graphrec.errors import ConfigError
from graphrec.graphs.bipartite import to_binary_csr

__all__ = ["CFBatch", "InteractionSampler", "known_mask"]


@dataclass
class CFBatch:
    """One mini-batch of observed pairs ``(users[b], items[b])``.

    Attributes:
        users, items: ``[B]`` int64.
        pos_items: ``[B, M]`` positives of each user, ``pos_items[:, 0] == items``.
        pos_users: ``[B, M]`` positives of each item, ``pos_users[:, 0] == users``.
        known: ``[B, B]`` bool, ``known[b, c]`` = ``(users[b], items[c])`` is a training pair
            (diagonal True); None when the sampler was built with ``with_known=False``.
        neg_items: ``[B, N]`` explicit negatives, or None.
        neg_valid: ``[B, N]`` bool, False where a negative is still a known positive after
            resampling, or None.
    """

    users: Tensor
    items: Tensor
    pos_items: Tensor
    pos_users: Tensor
    known: Tensor | None
    neg_items: Tensor | None = None
    neg_valid: Tensor | None = None

    def __len__(self) -> int:
        return int(self.users.shape[0])


def known_mask(train: sp.csr_array, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """``[len(users), len(items)]`` bool: is ``(users[b], items[c])`` a nonzero of ``train``."""
    sub = sp.csr_array(train[users])[:, items]
    return sub.toarray() != 0


def _pair_keys(train: sp.csr_array) -> np.ndarray:
    """Sorted ``user * I + item`` keys of a csr matrix with sorted indices."""
    rows = np.repeat(np.arange(train.shape[0], dtype=np.int64), np.diff(train.indptr))
    return rows * train.shape[1] + train.indices


def _pair_in(keys: np.ndarray, n_items: int, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Elementwise: is ``(users[k], items[k])`` among the sorted pair ``keys``."""
    query = users.astype(np.int64) * n_items + items
    pos = np.searchsorted(keys, query)
    pos = np.minimum(pos, len(keys) - 1)
    return (keys[pos] == query) if len(keys) else np.zeros(query.shape, dtype=bool)


class InteractionSampler:
    """Batches of training pairs, uniform over interactions (frequency-aware in-batch negatives).

    Args:
        train: binary ``U x I`` training matrix (scipy sparse).
        batch_size: ``B``.
        num_positives: ``M`` positives per anchor user and per anchor item (the pair itself
            plus ``M - 1`` drawn uniformly, with replacement, from the anchor's training
            neighbours).
        num_negatives: ``N`` explicit item negatives per pair (0 = none, in-batch only).
        alpha: explicit negatives are drawn ``∝ deg(j)^alpha`` (0 = uniform).
        resample_rounds: redraws of explicit negatives that hit a known positive; survivors
            are flagged in ``CFBatch.neg_valid``.
        drop_last: drop a last incomplete batch.
        with_known: build the ``[B, B]`` known-pair mask (needed by in-batch negatives only;
            it costs ``O(B^2)`` per batch).
        by_user: draw anchor pairs uniformly over users (with replacement), not over
            interactions.
        seed: base seed; epoch ``e`` uses ``numpy.random.default_rng([seed, e])``.
    """

    def __init__(
        self,
        train: sp.spmatrix | sp.sparray,
        batch_size: int = 2048,
        *,
        num_positives: int = 1,
        num_negatives: int = 0,
        alpha: float = 0.0,
        resample_rounds: int = 10,
        drop_last: bool = False,
        with_known: bool = True,
        by_user: bool = False,
        seed: int = 0,
    ) -> None:
        if batch_size < 1 or num_positives < 1 or num_negatives < 0:
            raise ConfigError("batch_size and num_positives must be >= 1, num_negatives >= 0")
        self.train = to_binary_csr(train)
        if self.train.nnz == 0:
            raise ConfigError("the training matrix has no interactions")
        self.batch_size, self.num_positives, self.num_negatives = (
            batch_size,
            num_positives,
            num_negatives,
        )
        self.alpha, self.resample_rounds = alpha, resample_rounds
        self.drop_last, self.with_known, self.seed = drop_last, with_known, seed
        self.by_user = by_user
        csr = self.train
        self._users = np.repeat(np.arange(csr.shape[0], dtype=np.int64), np.diff(csr.indptr))
        self._items = csr.indices.astype(np.int64)
        self._keys = _pair_keys(csr)
        self._active_users = np.flatnonzero(np.diff(csr.indptr)).astype(np.int64)
        csc = sp.csc_array(csr)
        csc.sort_indices()
        self._csc_indptr, self._csc_users = csc.indptr, csc.indices.astype(np.int64)
        deg = np.bincount(self._items, minlength=csr.shape[1]).astype(np.float64)
        weight = np.where(deg > 0, deg, 0.0) ** alpha if alpha != 0 else np.ones_like(deg)
        self._neg_cdf = np.cumsum(weight) / weight.sum()

    def __len__(self) -> int:
        n = len(self._users)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def epoch(self, epoch: int) -> Iterator[CFBatch]:
        """The batches of epoch ``epoch`` (deterministic in ``(seed, epoch)``)."""
        rng = np.random.default_rng([self.seed, epoch])
        if self.by_user:
            users = self._active_users[rng.integers(0, len(self._active_users), len(self._users))]
            items = self._neighbours(self.train.indptr, self._items, users, 1, rng)[:, 0]
        else:
            order = rng.permutation(len(self._users))
            users, items = self._users[order], self._items[order]
        for k in range(len(self)):
            part = slice(k * self.batch_size, (k + 1) * self.batch_size)
            yield self._batch(users[part], items[part], rng)

    def _neighbours(
        self,
        indptr: np.ndarray,
        targets: np.ndarray,
        nodes: np.ndarray,
        m: int,
        rng: np.random.Generator,
    ) -> np.ndarray:
        start = indptr[nodes]
        deg = indptr[nodes + 1] - start
        offs = np.floor(rng.random((len(nodes), m)) * deg[:, None]).astype(np.int64)
        return targets[start[:, None] + offs]

    def _sample_negatives(
        self, users: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        shape = (len(users), self.num_negatives)
        n_items = self.train.shape[1]
        neg = np.searchsorted(self._neg_cdf, rng.random(shape), side="right")
        neg = np.minimum(neg, len(self._neg_cdf) - 1)
        rows = np.broadcast_to(users[:, None], shape)
        hit = _pair_in(self._keys, n_items, rows.ravel(), neg.ravel()).reshape(shape)
        for _ in range(self.resample_rounds):
            if not hit.any():
                break
            redraw = np.searchsorted(self._neg_cdf, rng.random(int(hit.sum())), side="right")
            neg[hit] = np.minimum(redraw, len(self._neg_cdf) - 1)
            hit_new = _pair_in(self._keys, n_items, rows[hit], neg[hit])
            hit[hit] = hit_new
        return neg, ~hit

    def _batch(self, users: np.ndarray, items: np.ndarray, rng: np.random.Generator) -> CFBatch:
        m = self.num_positives
        pos_items = items[:, None]
        pos_users = users[:, None]
        if m > 1:
            csr = self.train
            extra_i = self._neighbours(csr.indptr, self._items, users, m - 1, rng)
            extra_u = self._neighbours(self._csc_indptr, self._csc_users, items, m - 1, rng)
            pos_items = np.concatenate([pos_items, extra_i], axis=1)
            pos_users = np.concatenate([pos_users, extra_u], axis=1)
        known = torch.from_numpy(known_mask(self.train, users, items)) if self.with_known else None
        neg_items = neg_valid = None
        if self.num_negatives:
            neg, ok = self._sample_negatives(users, rng)
            neg_items, neg_valid = torch.from_numpy(neg.astype(np.int64)), torch.from_numpy(ok)
        return CFBatch(
            users=torch.from_numpy(users),
            items=torch.from_numpy(items),
            pos_items=torch.from_numpy(np.ascontiguousarray(pos_items)),
            pos_users=torch.from_numpy(np.ascontiguousarray(pos_users)),
            known=known,
            neg_items=neg_items,
            neg_valid=neg_valid,
        )
