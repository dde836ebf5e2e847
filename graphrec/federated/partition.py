"""Partition a central dataset into per-device (client) index sets, and a LEAF-style generator.

Every partitioner returns ``list[np.ndarray]``: client ``c`` owns the sample indices
``parts[c]`` (int64, sorted unless stated). All randomness is seeded.

* :func:`natural_partition` - one client per group value (user, centre, subject);
  :func:`amazon_per_user`, :func:`movielens_per_user` apply it to the bundled loaders.
* :func:`dirichlet_label_skew` - per label, client shares drawn from ``Dir(alpha)``
  (Hsu et al., arXiv 1909.06335).
* :func:`label_shards` - sort by label, cut into equal shards, deal ``shards_per_client`` to each
  client (McMahan et al., AISTATS 2017).
* :func:`synthetic_leaf` - Synthetic(alpha, beta) of FedProx (Li et al., MLSys 2020): a
  different labelling model per device.
* :func:`synthetic_shared` - LEAF-style (Caldas et al., arXiv 1812.01097): one labelling model
  shared by all devices up to small per-device noise, lognormal device sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graphrec.datasets.amazon import AmazonElectronicsUsers
from graphrec.errors import ConfigError
from graphrec.io import Interactions

__all__ = [
    "natural_partition",
    "amazon_per_user",
    "movielens_per_user",
    "dirichlet_label_skew",
    "label_shards",
    "SyntheticFederated",
    "synthetic_leaf",
    "lognormal_sizes",
    "synthetic_shared",
]


def natural_partition(groups: np.ndarray) -> list[np.ndarray]:
    """One client per distinct value of ``groups`` (in sorted value order).

    Example:
        >>> [p.tolist() for p in natural_partition(np.array([5, 2, 5, 2, 9]))]
        [[1, 3], [0, 2], [4]]
    """
    groups = np.asarray(groups)
    if groups.ndim != 1:
        raise ConfigError("groups must be one-dimensional")
    _, inverse = np.unique(groups, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(np.bincount(inverse))[:-1]
    return [part.astype(np.int64) for part in np.split(order, bounds)] if groups.size else []


def amazon_per_user(
    data: AmazonElectronicsUsers, rows: np.ndarray | None = None
) -> list[np.ndarray]:
    """Amazon Electronics: one client per user index, keeping only ``rows`` (default: all).

    Client ``u`` is user index ``u``; a user without kept rows gets an empty array, so client
    ids stay equal to user indices.
    """
    keep = np.arange(data.num_rows) if rows is None else np.sort(np.asarray(rows, np.int64))
    bounds = np.searchsorted(data.user[keep], np.arange(data.num_users + 1))
    return [keep[bounds[u] : bounds[u + 1]] for u in range(data.num_users)]


def movielens_per_user(log: Interactions) -> list[np.ndarray]:
    """MovieLens (or any interaction log): one client per user index ``0..U-1``."""
    order = np.argsort(log.user, kind="stable").astype(np.int64)
    bounds = np.searchsorted(log.user[order], np.arange(log.num_users + 1))
    return [order[bounds[u] : bounds[u + 1]] for u in range(log.num_users)]


def _check_labels(labels: np.ndarray, num_clients: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ConfigError("labels must be one-dimensional")
    if num_clients < 1:
        raise ConfigError(f"num_clients must be positive, got {num_clients}")
    return labels


def dirichlet_label_skew(
    labels: np.ndarray,
    num_clients: int,
    alpha: float,
    *,
    min_size: int = 1,
    seed: int = 0,
    max_tries: int = 100,
) -> list[np.ndarray]:
    """Label-skewed split: for each label, client proportions ``p ~ Dir(alpha * 1)``.

    Small ``alpha`` (0.1) gives clients dominated by few labels; large ``alpha`` approaches IID.
    Draws are repeated (seeded) until every client has at least ``min_size`` samples.

    Raises:
        ValueError: ``min_size`` not reached within ``max_tries`` draws.
    """
    labels = _check_labels(labels, num_clients)
    if alpha <= 0:
        raise ConfigError(f"alpha must be positive, got {alpha}")
    if min_size * num_clients > labels.size:
        raise ConfigError(
            f"{labels.size} samples cannot give {num_clients} clients {min_size} each"
        )
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    for _ in range(max_tries):
        buckets: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
        for c in classes:
            idx = rng.permutation(np.flatnonzero(labels == c))
            share = rng.dirichlet(np.full(num_clients, alpha))
            cuts = (np.cumsum(share)[:-1] * idx.size).astype(np.int64)
            for client, piece in enumerate(np.split(idx, cuts)):
                buckets[client].append(piece)
        parts = [np.sort(np.concatenate(b)).astype(np.int64) for b in buckets]
        if min(p.size for p in parts) >= min_size:
            return parts
    raise ConfigError(
        f"no Dirichlet draw gave every client {min_size} samples in {max_tries} tries; "
        "raise alpha or lower min_size"
    )


def label_shards(
    labels: np.ndarray, num_clients: int, shards_per_client: int = 2, *, seed: int = 0
) -> list[np.ndarray]:
    """Pathological non-IID split: sort by label, cut ``num_clients * shards_per_client`` equal
    shards, give each client ``shards_per_client`` random shards (leftover samples, fewer than
    one per shard, are dropped)."""
    labels = _check_labels(labels, num_clients)
    num_shards = num_clients * shards_per_client
    size = labels.size // num_shards
    if size == 0:
        raise ConfigError(f"{labels.size} samples are too few for {num_shards} shards")
    rng = np.random.default_rng(seed)
    # sort by label, random order within a label
    order = np.lexsort((rng.random(labels.size), labels))[: size * num_shards]
    shards = order.reshape(num_shards, size)
    deal = rng.permutation(num_shards).reshape(num_clients, shards_per_client)
    return [np.sort(shards[row].ravel()).astype(np.int64) for row in deal]


@dataclass
class SyntheticFederated:
    """Output of :func:`synthetic_leaf`: features, labels and the natural per-device split."""

    x: np.ndarray  #: float32 [n, dim]
    y: np.ndarray  #: int64 [n]
    parts: list[np.ndarray]  #: sample indices per device
    alpha: float
    beta: float

    @property
    def num_devices(self) -> int:
        return len(self.parts)


def synthetic_leaf(
    alpha: float,
    beta: float,
    num_devices: int,
    *,
    dim: int = 60,
    num_classes: int = 10,
    samples_per_device: int | None = None,
    max_samples: int = 1000,
    iid: bool = False,
    seed: int = 0,
) -> SyntheticFederated:
    """Synthetic(alpha, beta) of FedProx / LEAF: per-device softmax-regression data.

    Device ``k`` draws ``u_k ~ N(0, alpha)``, ``B_k ~ N(0, beta)``, ``W_k ~ N(u_k, 1)`` of shape
    ``[dim, C]``, ``b_k ~ N(u_k, 1)``, ``v_k ~ N(B_k, 1)`` per coordinate; features
    ``x ~ N(v_k, diag(j^-1.2))``; label ``argmax(x W_k + b_k)``. ``alpha`` controls how much local
    models differ, ``beta`` how much local features differ. ``iid=True`` uses one global ``W, b``
    and ``v_k = 0``. Samples per device: ``samples_per_device``, or LEAF's
    ``int(lognormal(4, 2)) + 50`` capped at ``max_samples``.
    """
    if num_devices < 1:
        raise ConfigError(f"num_devices must be positive, got {num_devices}")
    rng = np.random.default_rng(seed)
    if samples_per_device is None:
        counts = lognormal_sizes(rng, num_devices, 4, 2, min_samples=50, max_samples=max_samples)
    else:
        counts = np.full(num_devices, int(samples_per_device), dtype=np.int64)
    mean_w = rng.normal(0, alpha, num_devices)
    feature_shift = rng.normal(0, beta, num_devices)
    std = np.power(np.arange(1, dim + 1, dtype=np.float64), -1.2) ** 0.5
    w_global = rng.normal(0, 1, (dim, num_classes))
    b_global = rng.normal(0, 1, num_classes)
    xs, ys, parts, start = [], [], [], 0
    for k in range(num_devices):
        if iid:
            mean_x, w, b = np.zeros(dim), w_global, b_global
        else:
            mean_x = rng.normal(feature_shift[k], 1, dim)
            w = rng.normal(mean_w[k], 1, (dim, num_classes))
            b = rng.normal(mean_w[k], 1, num_classes)
        x = mean_x + rng.standard_normal((counts[k], dim)) * std
        xs.append(x.astype(np.float32))
        ys.append(np.argmax(x @ w + b, axis=1).astype(np.int64))
        parts.append(np.arange(start, start + counts[k], dtype=np.int64))
        start += int(counts[k])
    return SyntheticFederated(np.concatenate(xs), np.concatenate(ys), parts, alpha, beta)


def lognormal_sizes(
    rng: np.random.Generator,
    num_devices: int,
    mu: float,
    sigma: float,
    *,
    min_samples: int,
    max_samples: int,
) -> np.ndarray:
    """LEAF's device sizes: ``min(int(lognormal(mu, sigma)) + min_samples, max_samples)``."""
    if min_samples < 1 or max_samples < min_samples:
        raise ConfigError(
            f"need 1 <= min_samples <= max_samples, got {min_samples} and {max_samples}"
        )
    if sigma < 0:
        raise ConfigError(f"sigma must be non-negative, got {sigma}")
    drawn = rng.lognormal(mu, sigma, num_devices).astype(np.int64) + min_samples
    return np.minimum(drawn, max_samples)


def synthetic_shared(
    num_devices: int,
    *,
    dim: int = 60,
    num_classes: int = 10,
    model_noise: float = 0.1,
    feature_shift: float = 1.0,
    logit_noise: float = 0.1,
    size_mu: float = 3.0,
    size_sigma: float = 2.0,
    min_samples: int = 5,
    max_samples: int = 1000,
    seed: int = 0,
) -> SyntheticFederated:
    """LEAF-style synthetic data: one labelling model shared by all devices.

    A global softmax model ``W ~ N(0, 1)`` (``[dim, C]``), ``b ~ N(0, 1)`` (``[C]``); device ``k``
    labels with ``W_k = W + model_noise * N(0, 1)``, ``b_k = b + model_noise * N(0, 1)``, draws
    features ``x ~ N(m_k, diag(j^-1.2))`` around its own mean ``m_k ~ N(B_k, 1)`` per
    coordinate with ``B_k ~ N(0, feature_shift^2)`` (as LEAF), and labels
    ``y = argmax(x W_k + b_k + logit_noise * N(0, 1))`` (LEAF's noise 0.1 on the logits). With
    small ``model_noise`` one global linear model labels almost every device's data right
    (unlike :func:`synthetic_leaf`, whose devices disagree). Device sizes:
    :func:`lognormal_sizes` with ``size_mu``, ``size_sigma``, ``min_samples``, ``max_samples``
    (LEAF's defaults: 3, 2, 5, 1000).
    ``alpha`` and ``beta`` of the result hold ``model_noise`` and ``feature_shift``.
    """
    if num_devices < 1:
        raise ConfigError(f"num_devices must be positive, got {num_devices}")
    if min(model_noise, feature_shift, logit_noise) < 0:
        raise ConfigError(
            "model_noise, feature_shift and logit_noise must be non-negative, got "
            f"{model_noise}, {feature_shift}, {logit_noise}"
        )
    rng = np.random.default_rng(seed)
    counts = lognormal_sizes(
        rng, num_devices, size_mu, size_sigma, min_samples=min_samples, max_samples=max_samples
    )
    std = np.power(np.arange(1, dim + 1, dtype=np.float64), -1.2) ** 0.5
    w_global = rng.normal(0, 1, (dim, num_classes))
    b_global = rng.normal(0, 1, num_classes)
    xs, ys, parts, start = [], [], [], 0
    for k in range(num_devices):
        w = w_global + model_noise * rng.standard_normal((dim, num_classes))
        b = b_global + model_noise * rng.standard_normal(num_classes)
        mean_x = rng.normal(feature_shift * rng.standard_normal(), 1, dim)
        x = mean_x + rng.standard_normal((counts[k], dim)) * std
        logits = x @ w + b + logit_noise * rng.standard_normal((counts[k], num_classes))
        xs.append(x.astype(np.float32))
        ys.append(np.argmax(logits, axis=1).astype(np.int64))
        parts.append(np.arange(start, start + counts[k], dtype=np.int64))
        start += int(counts[k])
    return SyntheticFederated(
        np.concatenate(xs), np.concatenate(ys), parts, model_noise, feature_shift
    )
