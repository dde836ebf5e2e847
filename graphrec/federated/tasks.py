"""Ready-made federated tasks (model + per-device data + device-cloud graph).

* :class:`EmbeddingCTRTask` - a small embedding CTR model (user, target item and mean-pooled
  click history) on per-user click samples, e.g. Amazon Electronics per user
  (:meth:`EmbeddingCTRTask.from_amazon`) or MovieLens per user
  (:meth:`EmbeddingCTRTask.from_movielens`). Embedding tables ``user`` and ``item`` are sparse
  (row-wise) parameters; the MLP is dense.
* :class:`CTRModelTask` - any :mod:`graphrec.models.ctr` model (e.g. DIN, the FedSubAvg
  paper's Amazon model) on CTR tables split by device.
* :class:`SoftmaxRegressionTask` - multinomial logistic regression on dense features, e.g.
  Synthetic(alpha, beta) (:func:`graphrec.federated.partition.synthetic_leaf`); no tables.

All implement :class:`graphrec.federated.simulator.FederatedTask`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from graphrec.datasets.amazon import AmazonElectronicsUsers
from graphrec.datasets.movielens import MovieLens100K
from graphrec.federated.partition import amazon_per_user
from graphrec.graphs.device_cloud import DeviceCloudGraph
from graphrec.metrics import auc
from graphrec.nn.mlp import MLP
from graphrec.training import Trainer, minibatches

__all__ = ["TinyCTR", "EmbeddingCTRTask", "CTRModelTask", "SoftmaxRegressionTask", "local_sgd"]


class TinyCTR(nn.Module):
    """``sigmoid(MLP([u, i, h, u*i, i*h]))`` with ``u = U[user]``, ``i = I[item]`` and ``h`` the
    mean of ``I`` over the click history. ``forward`` takes an explicit history ``mask`` so that
    the tables can be swapped for a device's submodel with remapped indices."""

    def __init__(self, num_users: int, num_items: int, dim: int = 8, hidden: int = 16) -> None:
        super().__init__()
        self.user = nn.Embedding(num_users, dim)
        self.item = nn.Embedding(num_items, dim)  # row 0 = padding, masked out in forward
        self.mlp = MLP(5 * dim, [hidden], 1)

    def reset_parameters(self, generator: torch.Generator) -> None:
        with torch.no_grad():
            for emb in (self.user, self.item):
                emb.weight.normal_(0.0, 0.1, generator=generator)
            self.item.weight[0].zero_()
            for layer in self.mlp.linears():
                bound = 1.0 / layer.in_features**0.5
                layer.weight.uniform_(-bound, bound, generator=generator)
                layer.bias.zero_()

    def forward(self, user: Tensor, item: Tensor, history: Tensor, mask: Tensor) -> Tensor:
        u, i = self.user(user), self.item(item)
        mask = mask.unsqueeze(-1).to(u.dtype)
        h = (self.item(history) * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return self.mlp(torch.cat([u, i, h, u * i, i * h], dim=-1)).squeeze(-1)


def local_sgd(
    state: Mapping[str, Tensor],
    num_rows: int,
    config: Mapping[str, Any],
    generator: torch.Generator,
    loss_fn: Callable[[dict[str, Tensor], Tensor], Tensor],
) -> tuple[dict[str, Tensor], dict[str, float]]:
    """A device's local training: ``config["local_steps"]`` SGD steps (lr ``config["lr"]``)
    from ``state`` on shuffled mini-batches of ``config["batch_size"]`` positions
    ``0..num_rows-1``, a fresh permutation (from ``generator``) whenever one is used up;
    ``loss_fn(params, positions)`` is the batch loss. Adds FedProx's proximal term towards
    ``state`` (``config["prox_mu"]``, default 0) and clips the gradient to global norm
    ``config["clip_norm"]`` (None: no clipping); see :class:`graphrec.training.Trainer`.

    Returns:
        The trained parameters and ``{"loss": mean batch loss}``.
    """
    params = {k: v.detach().clone().requires_grad_(True) for k, v in state.items()}
    clip = config.get("clip_norm")
    trainer = Trainer(
        torch.optim.SGD(params.values(), lr=float(config["lr"])),
        clip_norm=None if clip is None else float(clip),
        prox_mu=float(config.get("prox_mu", 0.0)),
        anchor=list(state.values()),
    )
    batches = minibatches(
        num_rows,
        int(config["batch_size"]),
        lambda n: torch.randperm(n, generator=generator),
        steps=int(config["local_steps"]),
    )
    losses = [loss for _, loss in trainer.steps(batches, partial(loss_fn, params))]
    return {k: v.detach() for k, v in params.items()}, {"loss": float(np.mean(losses))}


def _ctr_metrics(y: Tensor, p: Tensor) -> dict[str, float]:
    """AUC and log loss of click probabilities ``p`` against labels ``y``."""
    loss = F.binary_cross_entropy(p.clamp(1e-7, 1 - 1e-7), y)
    return {"auc": auc(y, p), "loss": float(loss)}


class EmbeddingCTRTask:
    """Per-user click samples with :class:`TinyCTR`.

    Args:
        user, item: int64 ``[n]`` per sample (item 0 is padding and must not be a target).
        history: int64 ``[n, L]`` zero-padded click histories.
        labels: float ``[n]`` in {0, 1}.
        parts: training sample indices per device.
        test_rows: sample indices of the central test set.
        num_users, num_items: table sizes.
    """

    def __init__(
        self,
        user: np.ndarray,
        item: np.ndarray,
        history: np.ndarray,
        labels: np.ndarray,
        parts: Sequence[np.ndarray],
        test_rows: np.ndarray,
        *,
        num_users: int,
        num_items: int,
        dim: int = 8,
        hidden: int = 16,
    ) -> None:
        self.user = torch.as_tensor(np.asarray(user, np.int64))
        self.item = torch.as_tensor(np.asarray(item, np.int64))
        self.history = torch.as_tensor(np.asarray(history, np.int64))
        self.labels = torch.as_tensor(np.asarray(labels, np.float32))
        self.parts = [np.asarray(p, np.int64) for p in parts]
        self.test_rows = np.asarray(test_rows, np.int64)
        self.model = TinyCTR(num_users, num_items, dim, hidden)
        self.tables = {"user.weight": "user", "item.weight": "item"}
        self._local: dict[int, tuple[Tensor, ...]] = {}
        hist = self.history.numpy()
        self.graph = DeviceCloudGraph.from_partition(
            self.parts,
            {
                "user": (self.user.numpy(), num_users),
                "item": (
                    np.concatenate([self.item.numpy()[:, None], hist - (hist == 0)], 1),
                    num_items,
                ),
            },
        )

    @classmethod
    def from_amazon(
        cls,
        data: AmazonElectronicsUsers,
        *,
        num_users: int | None = None,
        test_fraction: float = 0.2,
        max_history: int = 50,
        dim: int = 8,
        hidden: int = 16,
    ) -> EmbeddingCTRTask:
        """One device per Amazon user (the first ``num_users`` users, default all); each user's
        last ``ceil(test_fraction * n)`` samples form the central test set."""
        users = data.num_users if num_users is None else min(num_users, data.num_users)
        end = int(data.user_offsets[users])
        train, test = data.holdout(test_fraction=test_fraction)
        train, test = train[train < end], test[test < end]
        history, _ = data.padded_history(np.arange(end), max_len=max_history)
        parts = amazon_per_user(data, train)[:users]
        return cls(
            data.user[:end],
            data.item[:end],
            history.numpy(),
            data.labels[:end],
            parts,
            test,
            num_users=users,
            num_items=data.vocab_size,
            dim=dim,
            hidden=hidden,
        )

    @classmethod
    def from_movielens(
        cls,
        ml: MovieLens100K,
        *,
        num_users: int | None = None,
        test_fraction: float = 0.2,
        like_threshold: float = 4.0,
        max_history: int = 20,
        dim: int = 8,
        hidden: int = 16,
    ) -> EmbeddingCTRTask:
        """One device per MovieLens user (the first ``num_users``): each rating is a sample with
        label ``rating >= like_threshold`` and history = the user's earlier liked movies (most
        recent ``max_history``); each user's last ``ceil(test_fraction * n)`` ratings by time
        (at least one kept for training) form the test set. Items are shifted by one (0 = pad)."""
        log = ml.ratings
        users = log.num_users if num_users is None else min(num_users, log.num_users)
        keep = np.flatnonzero(log.user < users)
        order = keep[np.lexsort((log.timestamp[keep], log.user[keep]))]
        user, item = log.user[order], log.item[order] + 1
        labels = (log.rating[order] >= like_threshold).astype(np.float32)
        history = np.zeros((order.size, max_history), dtype=np.int64)
        bounds = np.searchsorted(user, np.arange(users + 1))
        parts, test = [], []
        for u in range(users):
            liked: list[int] = []
            for r in range(bounds[u], bounds[u + 1]):
                recent = liked[-max_history:]
                history[r, : len(recent)] = recent
                if labels[r]:
                    liked.append(int(item[r]))
            n = bounds[u + 1] - bounds[u]
            n_test = min(int(np.ceil(test_fraction * n)), n - 1)
            parts.append(np.arange(bounds[u], bounds[u + 1] - n_test))
            test.append(np.arange(bounds[u + 1] - n_test, bounds[u + 1]))
        return cls(
            user,
            item,
            history,
            labels,
            parts,
            np.concatenate(test),
            num_users=users,
            num_items=log.num_items + 1,
            dim=dim,
            hidden=hidden,
        )

    def init_state(self, seed: int) -> dict[str, Tensor]:
        self.model.reset_parameters(torch.Generator().manual_seed(seed))
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def local_data(self, client: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """The client's training samples with table indices remapped to its submodel rows:
        ``(user, item, history, mask, labels)`` (cached)."""
        if client not in self._local:
            idx = torch.from_numpy(self.parts[client])
            users = torch.from_numpy(self.graph.rows(client, "user"))
            items = torch.from_numpy(self.graph.rows(client, "item"))
            hist = self.history[idx]
            mask = hist > 0
            local_hist = torch.where(mask, torch.searchsorted(items, hist), 0)
            self._local[client] = (
                torch.searchsorted(users, self.user[idx]),
                torch.searchsorted(items, self.item[idx]),
                local_hist,
                mask,
                self.labels[idx],
            )
        return self._local[client]

    def local_train(
        self,
        client: int,
        state: Mapping[str, Tensor],
        config: dict[str, Any],
        client_state: dict[str, Any],
        generator: torch.Generator,
    ) -> tuple[dict[str, Tensor], dict[str, float]]:
        user, item, hist, mask, labels = self.local_data(client)

        def loss_fn(params: dict[str, Tensor], b: Tensor) -> Tensor:
            logits = functional_call(self.model, params, (user[b], item[b], hist[b], mask[b]))
            return F.binary_cross_entropy_with_logits(logits, labels[b])

        local, metrics = local_sgd(state, user.numel(), config, generator, loss_fn)
        client_state["rounds_trained"] = client_state.get("rounds_trained", 0) + 1
        return local, metrics

    @torch.no_grad()
    def predict(self, state: Mapping[str, Tensor], rows: np.ndarray) -> Tensor:
        idx = torch.from_numpy(np.asarray(rows, np.int64))
        hist = self.history[idx]
        args = (self.user[idx], self.item[idx], hist, hist > 0)
        return torch.sigmoid(functional_call(self.model, dict(state), args))

    def evaluate(self, state: Mapping[str, Tensor]) -> dict[str, float]:
        p = self.predict(state, self.test_rows)
        return _ctr_metrics(self.labels[torch.from_numpy(self.test_rows)], p)


class SoftmaxRegressionTask:
    """Multinomial logistic regression ``softmax(x W + b)`` on dense features (no tables).

    Args:
        x: float ``[n, d]``; y: int64 ``[n]`` in ``0..C-1``.
        parts: training sample indices per device; test_rows: the central test set.
    """

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        parts: Sequence[np.ndarray],
        test_rows: np.ndarray,
        num_classes: int | None = None,
    ) -> None:
        self.x = torch.as_tensor(np.asarray(x, np.float32))
        self.y = torch.as_tensor(np.asarray(y, np.int64))
        self.parts = [np.asarray(p, np.int64) for p in parts]
        self.test_rows = np.asarray(test_rows, np.int64)
        classes = int(self.y.max()) + 1 if num_classes is None else num_classes
        self.model = nn.Linear(self.x.shape[1], classes)
        self.tables: dict[str, str] = {}
        self.graph = DeviceCloudGraph([p.size for p in self.parts])

    def init_state(self, seed: int) -> dict[str, Tensor]:
        with torch.no_grad():
            self.model.weight.zero_()
            self.model.bias.zero_()
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def local_train(
        self,
        client: int,
        state: Mapping[str, Tensor],
        config: dict[str, Any],
        client_state: dict[str, Any],
        generator: torch.Generator,
    ) -> tuple[dict[str, Tensor], dict[str, float]]:
        idx = torch.from_numpy(self.parts[client])
        x, y = self.x[idx], self.y[idx]

        def loss_fn(params: dict[str, Tensor], b: Tensor) -> Tensor:
            return F.cross_entropy(functional_call(self.model, params, (x[b],)), y[b])

        return local_sgd(state, idx.numel(), config, generator, loss_fn)

    @torch.no_grad()
    def evaluate(self, state: Mapping[str, Tensor]) -> dict[str, float]:
        idx = torch.from_numpy(self.test_rows)
        logits = functional_call(self.model, dict(state), (self.x[idx],))
        return {
            "accuracy": float((logits.argmax(1) == self.y[idx]).float().mean()),
            "loss": float(F.cross_entropy(logits, self.y[idx])),
        }


def _table_key(name: str) -> str:
    return name.replace(".", "_")  # as graphrec.models.ctr.features names its ModuleDict keys


class CTRModelTask:
    """Any :mod:`graphrec.models.ctr` model (DIN, DeepFM, Wide&Deep, DCN-v2, LR) on CTR tables
    split by device.

    Every embedding table of the model (``embedding.tables.<t>.weight`` and, for models with a
    wide part, ``embedding.linear_tables.<t>.weight``) is a row-wise parameter of graph table
    ``t``; all other parameters are dense. A device's rows of table ``t`` are the codes its
    training rows use in any feature of that table, **plus row 0** (the padding /
    out-of-vocabulary code), so that local code 0 keeps meaning "padding" after remapping; row
    0 is therefore touched by every device (heat ``N``). Padded positions get no gradient.

    Args:
        model_fn: builds the model from the features (called under a fixed seed by
            :meth:`init_state`).
        features: :class:`graphrec.models.ctr.CTRFeatures` of the training table.
        train: the training :class:`~graphrec.io.CTRTable`; parts index its rows per device.
        parts: training row indices per device.
        test: the test table (same vocabulary); ``test_rows`` optionally restricts it.
        eval_batch: rows per forward pass at evaluation.
    """

    def __init__(
        self,
        model_fn: Callable[[Any], nn.Module],
        features: Any,
        train: Any,
        parts: Sequence[np.ndarray],
        test: Any,
        *,
        test_rows: np.ndarray | None = None,
        eval_batch: int = 4096,
    ) -> None:
        self.model_fn = model_fn
        self.features = features
        self.parts = [np.asarray(p, np.int64) for p in parts]
        self.batch = features.batch(train)
        self.labels = features.labels(train)
        rows = None if test_rows is None else np.asarray(test_rows, np.int64)
        self.test_batch = features.batch(test, rows)
        self.test_labels = features.labels(test, rows)
        self.eval_batch = eval_batch
        self.model = model_fn(features)
        params = dict(self.model.named_parameters())
        self.tables: dict[str, str] = {}
        self._columns: dict[str, list[str]] = {}
        for t in features.tables:
            for prefix in ("embedding.tables", "embedding.linear_tables"):
                name = f"{prefix}.{_table_key(t)}.weight"
                if name in params:
                    self.tables[name] = t
            self._columns[t] = [
                s.name for s in features.specs if s.kind != "dense" and s.table == t
            ]
        n = int(self.labels.numel())
        sample_rows = {}
        for t, cols in self._columns.items():
            blocks = [np.zeros((n, 1), dtype=np.int64)]  # row 0 for every sample
            for c in cols:
                v = self.batch[c].numpy()
                blocks.append(v[:, None] if v.ndim == 1 else np.where(v > 0, v, -1))
            sample_rows[t] = (np.concatenate(blocks, axis=1), features.tables[t])
        self.graph = DeviceCloudGraph.from_partition(self.parts, sample_rows)
        self._local: dict[int, dict[str, Tensor]] = {}

    def init_state(self, seed: int) -> dict[str, Tensor]:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.model = self.model_fn(self.features)
        return {k: v.detach().clone() for k, v in self.model.named_parameters()}

    def local_data(self, client: int) -> dict[str, Tensor]:
        """The client's training batch with codes remapped to its submodel rows (cached)."""
        if client not in self._local:
            idx = torch.from_numpy(self.parts[client])
            out = {k: v[idx] for k, v in self.batch.items()}
            for t, cols in self._columns.items():
                rows = torch.from_numpy(self.graph.rows(client, t))
                for c in cols:
                    out[c] = torch.searchsorted(rows, out[c].contiguous())
            self._local[client] = out
        return self._local[client]

    def local_train(
        self,
        client: int,
        state: Mapping[str, Tensor],
        config: dict[str, Any],
        client_state: dict[str, Any],
        generator: torch.Generator,
    ) -> tuple[dict[str, Tensor], dict[str, float]]:
        batch = self.local_data(client)
        labels = self.labels[torch.from_numpy(self.parts[client])]
        self.model.train()

        def loss_fn(params: dict[str, Tensor], b: Tensor) -> Tensor:
            logits = functional_call(self.model, params, ({k: v[b] for k, v in batch.items()},))
            return F.binary_cross_entropy_with_logits(logits, labels[b])

        return local_sgd(state, labels.numel(), config, generator, loss_fn)

    @torch.no_grad()
    def evaluate(self, state: Mapping[str, Tensor]) -> dict[str, float]:
        self.model.eval()
        n = int(self.test_labels.numel())
        probs = []
        for start in range(0, n, self.eval_batch):
            b = {k: v[start : start + self.eval_batch] for k, v in self.test_batch.items()}
            probs.append(torch.sigmoid(functional_call(self.model, dict(state), (b,))))
        p = torch.cat(probs) if probs else torch.zeros(0)
        return _ctr_metrics(self.test_labels, p)
