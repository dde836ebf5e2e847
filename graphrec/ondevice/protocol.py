"""Per-user on-device fine-tuning of a cloud CTR model, vectorised across users.

Protocol: a cloud model (any model of :data:`graphrec.registry.CTR_MODELS`) is trained on all
users' earlier data; every user gets a copy, fine-tunes it with SGD on the user's local samples
(labels optionally corrected, :mod:`graphrec.ondevice.correction`) and scores the user's later
test samples, optionally with extra weighted rows per device (the augmented samples of
:mod:`graphrec.ondevice.coda`). Metrics (:func:`user_metrics`): GAUC (impression-weighted
per-user AUC over users with both labels), the mean per-user AUC, the pooled AUC and the
logloss. The cloud-only baseline is fine-tuning for 0 epochs; naive fine-tuning is correction
``"none"``.

Users are fine-tuned in chunks of similar sample counts, one batched update per step for the
whole chunk (``torch.func.vmap`` of ``grad`` over a ``functional_call``; rows padded and
masked). The embedding tables are not copied per user: each user gets the rows its samples
look up (its own codes remapped to ``0..K-1``, code 0 kept as row 0), which gives the same
updates as fine-tuning the whole table, since SGD leaves the other rows unchanged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call, grad, vmap
from tqdm import tqdm

from graphrec.errors import ConfigError
from graphrec.io import CTRTable
from graphrec.metrics import auc, gauc
from graphrec.models.ctr.base import CTRModel
from graphrec.models.ctr.features import _key
from graphrec.ondevice.correction import CORRECTIONS, correct_labels

__all__ = [
    "LAYERS",
    "UserScores",
    "drift_buckets",
    "finetune_users",
    "per_user_auc",
    "user_metrics",
]

#: Which parameters a device tunes: the dense part only (what MNN trains) or everything.
LAYERS = ("dense", "all")


@dataclass(frozen=True)
class FineTuneConfig:
    """Per-user fine-tuning settings of :func:`finetune_users`.

    The defaults were checked with DIN on amazon-users, ml-100k and the synthetic drift set:
    stable there, while ``lr=1.0`` blows the logloss up on amazon-users.
    """

    layers: str = "all"
    epochs: int = 5
    lr: float = 0.1
    batch_size: int | None = None


#: Default fine-tuning settings.
FINETUNE_DEFAULTS = FineTuneConfig()


@dataclass(repr=False)
class UserScores:
    """Test scores of every evaluated user (rows grouped by user, in user order).

    Attributes:
        users: ``int64 [U]`` user codes (users with local and test samples).
        local_size: ``int64 [U]`` local samples per user.
        local_share: ``float64 [U]`` share of positives among them.
        user: ``int64 [R]`` user code per test row.
        labels: ``float32 [R]`` test labels.
        scores: ``float32 [R]`` logits of the user's (fine-tuned) model.
        seconds: ``float64 [U]`` fine-tuning and scoring wall time per user, amortised: the
            time of the user's chunk divided by the chunk's users.
    """

    users: np.ndarray
    local_size: np.ndarray
    local_share: np.ndarray
    user: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    seconds: np.ndarray | None = None

    def __repr__(self) -> str:
        return f"UserScores(users={len(self.users)}, rows={len(self.labels)})"


def finetune_users(
    model: CTRModel,
    local: CTRTable,
    test: CTRTable,
    *,
    global_share: float,
    correction: str = "none",
    layers: str = FINETUNE_DEFAULTS.layers,
    epochs: int = FINETUNE_DEFAULTS.epochs,
    lr: float = FINETUNE_DEFAULTS.lr,
    batch_size: int | None = FINETUNE_DEFAULTS.batch_size,
    user: str = "user",
    seed: int = 0,
    chunk_rows: int = 4096,
    extra: CTRTable | None = None,
    extra_weights: np.ndarray | None = None,
    progress: bool = False,
) -> UserScores:
    r"""Fine-tune one copy of ``model`` per user on ``local`` and score ``test``.

    Each user's copy runs ``epochs`` epochs of plain SGD (learning rate ``lr``) on the mean log
    loss of its local samples, in shuffled minibatches of ``batch_size`` (None: all of them,
    one step per epoch); dropout is off. ``model`` is not modified. ``epochs=0`` scores the
    cloud model itself.

    With ``extra``, a user also trains on the rows of ``extra`` whose ``user`` column is the
    user's code, each with its weight in the loss :math:`\sum_i w_i \ell_i / \sum_i w_i`
    (local rows weigh 1; label corrections change the local labels only). Rows of weight 0
    are dropped; without ``extra`` the updates are exactly those of local-only fine-tuning.

    Args:
        model: the cloud model (plain CTR model; evaluated in ``eval()`` mode).
        local, test: tables with a ``user`` column, encoded with the model's vocabulary;
            users with rows in both are evaluated.
        global_share: share of positives of the cloud training data (shipped with the model).
        correction: label correction rule, one of :data:`CORRECTIONS`.
        layers: ``"dense"`` (parameters outside ``model.embedding``) or ``"all"``.
        seed: seed of the minibatch order and of the ``random`` rule.
        chunk_rows: padded local rows updated together (users of similar sizes; a user
            larger than this is a chunk of its own).
        extra: extra training rows, one vocabulary with ``local``; the ``user`` column names
            the device that holds the row.
        extra_weights: ``[extra.num_rows]`` weights >= 0 of the extra rows (default: 1).
        progress: show a tqdm bar over the users (on stderr).

    Raises:
        ConfigError: an invalid argument.
    """
    if layers not in LAYERS:
        raise ConfigError(f"layers must be one of {', '.join(LAYERS)}; got {layers!r}")
    check_finetune_args(local, test, global_share=global_share, correction=correction,
                        epochs=epochs, lr=lr, batch_size=batch_size, user=user,
                        chunk_rows=chunk_rows)  # fmt: skip
    local_rows, test_rows = _rows_by_user(local, user), _rows_by_user(test, user)
    users = np.array(sorted(set(local_rows) & set(test_rows)), dtype=np.int64)
    if len(users) == 0:
        raise ConfigError(f"no {user!r} has both local and test rows")
    extra_rows, weights = _extra_rows(extra, extra_weights, user)
    sizes = np.array([len(local_rows[u]) + len(extra_rows.get(u, ())) for u in users])
    by_size = np.argsort(sizes, kind="stable")
    users, sizes = users[by_size], sizes[by_size]  # chunks of similar sizes
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    parts, seconds = [], []
    bar = tqdm(total=len(users), desc="fine-tuning", unit="user", disable=not progress)
    try:
        for chunk in _chunks(users, sizes.tolist(), chunk_rows):
            start = time.perf_counter()
            parts.append(
                _finetune_chunk(
                    model,
                    local,
                    test,
                    [local_rows[u] for u in chunk],
                    [test_rows[u] for u in chunk],
                    global_share=global_share,
                    correction=correction,
                    layers=layers,
                    epochs=epochs,
                    lr=lr,
                    batch_size=batch_size,
                    generator=generator,
                    extra=extra,
                    extra_rows=[extra_rows.get(u, np.zeros(0, np.int64)) for u in chunk],
                    extra_weights=weights,
                )  # fmt: skip
            )
            seconds += [(time.perf_counter() - start) / len(chunk)] * len(chunk)
            bar.update(len(chunk))
    finally:
        bar.close()
        model.train(was_training)
    order = np.argsort(users, kind="stable")
    n_local = np.array([len(local_rows[u]) for u in users])
    shares = np.array([float(local.labels[local_rows[u]].mean()) for u in users])
    test_users = [np.full(len(test_rows[u]), u) for u in users[order]]
    scores = [s for chunk in parts for s in chunk]
    return UserScores(
        users=users[order],
        local_size=n_local[order],
        local_share=shares[order],
        user=np.concatenate(test_users),
        labels=np.concatenate([test.labels[test_rows[u]] for u in users[order]]),
        scores=np.concatenate([scores[i] for i in order]).astype(np.float32),
        seconds=np.array(seconds)[order],
    )


def _extra_rows(
    extra: CTRTable | None, weights: np.ndarray | None, user: str
) -> tuple[dict[int, np.ndarray], np.ndarray | None]:
    """Rows of ``extra`` of non-zero weight by user, and the checked float32 weights."""
    if extra is None:
        if weights is not None:
            raise ConfigError("extra_weights needs extra rows (extra=None)")
        return {}, None
    if user not in extra.categorical:
        raise ConfigError(f"extra table has no categorical column {user!r}")
    w = np.ones(extra.num_rows, np.float32) if weights is None else np.asarray(weights, np.float32)
    if w.shape != (extra.num_rows,) or not (np.isfinite(w) & (w >= 0)).all():
        raise ConfigError(
            f"extra_weights must be {extra.num_rows} finite weights >= 0; got shape {w.shape}"
        )
    rows = {u: r[w[r] > 0] for u, r in _rows_by_user(extra, user).items()}
    return {u: r for u, r in rows.items() if len(r)}, w


def check_finetune_args(
    local: CTRTable,
    test: CTRTable,
    *,
    global_share: float,
    correction: str,
    epochs: int,
    lr: float,
    batch_size: int | None,
    user: str,
    chunk_rows: int,
) -> None:
    """Raise :class:`ConfigError` for a fine-tuning argument out of range (any runtime)."""
    if correction not in CORRECTIONS:
        raise ConfigError(f"correction must be one of {', '.join(CORRECTIONS)}; got {correction!r}")
    if epochs < 0:
        raise ConfigError(f"epochs must be >= 0; got {epochs}")
    if not lr > 0:
        raise ConfigError(f"lr must be > 0; got {lr}")
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1 or None; got {batch_size}")
    if chunk_rows < 1:
        raise ConfigError(f"chunk_rows must be >= 1; got {chunk_rows}")
    if not 0.0 < global_share < 1.0:
        raise ConfigError(f"global_share must be in (0, 1); got {global_share}")
    for name, table in (("local", local), ("test", test)):
        if user not in table.categorical:
            raise ConfigError(f"{name} table has no categorical column {user!r}")


def _chunks(users: np.ndarray, sizes: list[int], max_rows: int) -> list[np.ndarray]:
    """Consecutive runs of ``users`` (sorted by ``sizes``) with ``len(run) * max(size)`` at
    most ``max_rows`` (at least one user per run)."""
    out, start = [], 0
    for end in range(1, len(users) + 1):
        if end == len(users) or (end + 1 - start) * sizes[end] > max_rows:
            out.append(users[start:end])
            start = end
    return out


def _rows_by_user(table: CTRTable, user: str) -> dict[int, np.ndarray]:
    codes = table.categorical[user]
    order = np.argsort(codes, kind="stable")  # keeps each user's rows in time order
    keys, starts = np.unique(codes[order], return_index=True)
    return dict(zip(keys.tolist(), np.split(order, starts[1:])))


def _padded(model: CTRModel, table: CTRTable, rows: list[np.ndarray]):
    """Batch ``[U, N, ...]`` of each user's rows (padding repeats a row, row 0 for a user
    without rows), mask ``[U, N]``, labels ``[U, N]``."""
    n = max(len(r) for r in rows)
    index = np.stack([np.r_[r, np.full(n - len(r), r[0] if len(r) else 0)] for r in rows])
    mask = torch.as_tensor(np.arange(n)[None, :] < np.array([len(r) for r in rows])[:, None])
    flat = model.features.batch(table, index.ravel())
    batch = {k: v.view(len(rows), n, *v.shape[1:]) for k, v in flat.items()}
    labels = torch.as_tensor(table.labels[index], dtype=torch.float32)
    return batch, mask, labels


def _local_tables(model: CTRModel, batches: list[dict[str, Tensor]]):
    """Per-user embedding rows: ``{parameter name: [U, K, d]}`` and the batches with codes
    remapped to rows of those (code 0 -> row 0)."""
    emb = model.embedding
    params = dict(model.named_parameters())
    out_params: dict[str, Tensor] = {}
    out = [dict(b) for b in batches]
    for table in model.features.tables:
        columns = [s.name for s in model.features.specs if s.kind != "dense" and s.table == table]
        per_user = [
            np.unique(
                np.concatenate([[0]] + [b[c][u].numpy().ravel() for b in batches for c in columns])
            )  # fmt: skip
            for u in range(len(next(iter(batches[0].values()))))
        ]
        width = max(len(c) for c in per_user)
        codes = torch.as_tensor(np.stack([np.r_[c, np.zeros(width - len(c), np.int64)]
                                          for c in per_user]))  # fmt: skip
        for b, o in zip(batches, out):
            for c in columns:
                o[c] = torch.stack([
                    torch.as_tensor(np.searchsorted(per_user[u], b[c][u].numpy()))
                    for u in range(len(per_user))
                ])  # fmt: skip
        names = [f"embedding.tables.{_key(table)}.weight"]
        if emb.has_linear:
            names.append(f"embedding.linear_tables.{_key(table)}.weight")
        for name in names:
            out_params[name] = params[name].detach()[codes]
    return out_params, out


def _finetune_chunk(
    model: CTRModel,
    local: CTRTable,
    test: CTRTable,
    local_rows: list[np.ndarray],
    test_rows: list[np.ndarray],
    *,
    global_share: float,
    correction: str,
    layers: str,
    epochs: int,
    lr: float,
    batch_size: int | None,
    generator: torch.Generator,
    extra: CTRTable | None,
    extra_rows: list[np.ndarray],
    extra_weights: np.ndarray | None,
) -> list[np.ndarray]:
    n_users = len(local_rows)
    local_batch, mask, labels = _padded(model, local, local_rows)
    row_weights = mask.to(torch.float32)
    if extra is not None and any(len(r) for r in extra_rows):
        extra_batch, extra_mask, extra_labels = _padded(model, extra, extra_rows)
        local_batch = _cat_rows(local_batch, extra_batch)
        width = extra_mask.shape[1]
        w = np.stack([np.r_[extra_weights[r], np.zeros(width - len(r), np.float32)]
                      for r in extra_rows])  # fmt: skip
        mask = torch.cat([mask, extra_mask], dim=1)
        labels = torch.cat([labels, extra_labels], dim=1)
        row_weights = torch.cat([row_weights, torch.as_tensor(w)], dim=1)
    test_batch, test_mask, _ = _padded(model, test, test_rows)
    tables, (local_batch, test_batch) = _local_tables(model, [local_batch, test_batch])
    params = {
        name: tables[name] if name in tables else p.detach().expand(n_users, *p.shape)
        for name, p in model.named_parameters()
    }
    tuned = [n for n in params if layers == "all" or not n.startswith("embedding.")]

    def forward(p: dict[str, Tensor], batch: dict[str, Tensor]) -> Tensor:
        return functional_call(model, p, (batch,))

    def loss(t: dict[str, Tensor], fixed: dict[str, Tensor], batch: dict[str, Tensor],
             y: Tensor, w: Tensor, offset: Tensor) -> Tensor:  # fmt: skip
        z = forward({**fixed, **t}, batch) + offset
        return (F.binary_cross_entropy_with_logits(z, y, reduction="none") * w).sum() / (
            w.sum().clamp(min=1.0)
        )

    with torch.no_grad():
        initial = vmap(forward)(params, local_batch) if correction == "flip" else None
    targets, weights, offsets = labels.clone(), row_weights, torch.zeros(n_users)
    if correction != "none":
        for u, rows in enumerate(local_rows):
            n = len(rows)
            c = correct_labels(labels[u, :n], global_share, correction,
                               scores=None if initial is None else initial[u, :n],
                               generator=generator)  # fmt: skip
            targets[u, :n] = c.labels.to(torch.float32)
            if np.isfinite(c.offset):
                offsets[u] = c.offset
            else:  # r in {0, 1} under the offset rule: the gradient's limit is 0
                weights[u] = 0.0
    step = vmap(grad(loss))
    width = mask.shape[1]
    size = width if batch_size is None else min(batch_size, width)
    for _ in range(epochs):
        if size < width:
            keys = torch.rand(n_users, width, generator=generator).masked_fill(~mask, 2.0)
            order = keys.argsort(dim=1)
        else:
            order = None
        for start in range(0, width, size):
            if order is None:
                idx = None
            else:
                idx = order[:, start : start + size]
            batch, y, w = (local_batch, targets, weights) if idx is None else (
                {k: _take(v, idx) for k, v in local_batch.items()},
                targets.gather(1, idx), weights.gather(1, idx),
            )  # fmt: skip
            t = {n: params[n] for n in tuned}
            fixed = {n: v for n, v in params.items() if n not in t}
            grads = step(t, fixed, batch, y, w, offsets)
            for n in tuned:
                params[n] = params[n] - lr * grads[n]
    with torch.no_grad():
        scores = vmap(forward)(params, test_batch)
    if not bool(torch.isfinite(scores).all()):
        raise ConfigError(f"fine-tuning diverged (non-finite scores) at lr={lr}: lower lr")
    return [scores[u, : len(r)].numpy() for u, r in enumerate(test_rows)]


def _cat_rows(a: dict[str, Tensor], b: dict[str, Tensor]) -> dict[str, Tensor]:
    """Batches ``[U, N_a, ...]`` and ``[U, N_b, ...]`` joined along the rows (sequences
    0-padded on the right to the wider)."""
    out = {}
    for k, x in a.items():
        y = b[k]
        if x.dim() == 3 and x.shape[2] != y.shape[2]:
            width = max(x.shape[2], y.shape[2])
            x, y = (F.pad(t, (0, width - t.shape[2])) for t in (x, y))
        out[k] = torch.cat([x, y], dim=1)
    return out


def _take(values: Tensor, idx: Tensor) -> Tensor:
    """``values[u, idx[u]]`` for ``values [U, N, ...]`` and ``idx [U, B]``."""
    shape = idx.shape + (1,) * (values.dim() - 2)
    return torch.take_along_dim(values, idx.view(shape), dim=1)


def user_metrics(scores: UserScores) -> dict[str, float]:
    """GAUC, mean per-user AUC, pooled AUC and logloss of ``scores``.

    GAUC weights each user's AUC by the user's test impressions; both per-user figures use
    the users whose test rows have both labels (``users_with_both``).
    """
    labels, logits = scores.labels, scores.scores
    per_user = per_user_auc(scores)
    ok = ~np.isnan(per_user)
    loss = F.binary_cross_entropy_with_logits(
        torch.as_tensor(logits, dtype=torch.float64), torch.as_tensor(labels, dtype=torch.float64)
    ).item()
    return {
        "gauc": gauc(labels, logits, scores.user),
        "mean_user_auc": float(per_user[ok].mean()),
        "auc": auc(labels, logits),
        "logloss": loss,
        "users_with_both": int(ok.sum()),
    }


def per_user_auc(scores: UserScores) -> np.ndarray:
    """``float64 [U]`` test AUC per user of ``scores.users`` (NaN: single-class test rows)."""
    out = np.full(len(scores.users), np.nan)
    bounds = np.searchsorted(scores.user, scores.users, side="left")
    ends = np.searchsorted(scores.user, scores.users, side="right")
    for i, (a, b) in enumerate(zip(bounds, ends)):
        y = scores.labels[a:b]
        if 0 < y.sum() < len(y):
            out[i] = auc(y, scores.scores[a:b])
    return out


def drift_buckets(
    base: UserScores,
    tuned: UserScores,
    global_share: float,
    edges: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 1.0),
) -> list[dict[str, float]]:
    """Per bucket of ``|local share - global share|``: users, GAUC of ``base`` and ``tuned``
    over those users (with both test labels) and the gain.

    ``base`` and ``tuned`` must score the same users and rows (e.g. cloud and fine-tuned).
    """
    if not np.array_equal(base.users, tuned.users) or not np.array_equal(base.user, tuned.user):
        raise ConfigError("base and tuned must score the same users and rows")
    drift = np.abs(base.local_share - global_share)
    auc_b, auc_t = per_user_auc(base), per_user_auc(tuned)
    counts = np.bincount(np.searchsorted(base.users, base.user), minlength=len(base.users))
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (drift >= lo) & ((drift < hi) | (hi == edges[-1])) & ~np.isnan(auc_b)
        w = counts[sel]
        row = {"low": lo, "high": hi, "users": int(sel.sum())}
        if sel.any():
            row["base_gauc"] = float(np.dot(w, auc_b[sel]) / w.sum())
            row["tuned_gauc"] = float(np.dot(w, auc_t[sel]) / w.sum())
            row["gain"] = row["tuned_gauc"] - row["base_gauc"]
        out.append(row)
    return out
