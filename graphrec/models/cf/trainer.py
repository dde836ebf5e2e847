"""Training loop for CF models: epochs, early stopping on validation Recall@K, checkpoint/resume.

The Python API behind ``graphrec cf train`` (the CLI is a thin layer over it)::

    graph = build_bipartite(train, test, valid_fraction=0.1, seed=0)
    trainer = CFTrainer(graph, CFConfig(backbone="lightgcn", loss="hdccf"))
    trainer.fit(checkpoint="run.pt")          # resumes from run.pt if it exists
    print(trainer.evaluate("test"))           # {"recall@20": ..., "ndcg@20": ..., ...}
    items, scores = trainer.recommend([0, 5], k=10)

Checkpoints record the configuration and a fingerprint of the graph (plus ``data_info``, e.g.
the dataset and its folder); resuming one of another configuration or data raises
:class:`~graphrec.io.checkpoint.CheckpointError` listing the differences (``epochs``,
``patience`` and ``cpu_budget`` may change: they only say when to stop).

Determinism: the model is initialised from ``seed`` (inside ``torch.random.fork_rng``, so the
global generator is untouched) and epoch ``e`` draws its batches from ``(seed, e)``
(:class:`~graphrec.models.cf.sampler.InteractionSampler`), so a run resumed from an epoch
checkpoint reproduces the uninterrupted run exactly (same thread count, same machine).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from graphrec.errors import ConfigError
from graphrec.graphs.bipartite import BipartiteGraph
from graphrec.io.checkpoint import (
    CheckpointError,
    check_same_run,
    fingerprint,
    load_checkpoint,
    save_checkpoint,
)
from graphrec.metrics import metric_ks, ranking_metrics
from graphrec.models.cf.backbones import INITS, CFBackbone
from graphrec.models.cf.losses import CFLossInput, l2_regularization
from graphrec.models.cf.sampler import CFBatch, InteractionSampler
from graphrec.registry import CF_BACKBONES, CF_LOSSES
from graphrec.training import Trainer, run_epochs

__all__ = ["CFConfig", "CFTrainer", "PROTOCOLS", "SAMPLINGS", "build_backbone", "top_k"]

SAMPLINGS = ("interaction", "user")
#: Evaluation protocols: validation only, or also test at every evaluation (LightGCN paper).
PROTOCOLS = ("validation", "paper")
_CHECKPOINT_KEYS = ("model", "optimizer", "epoch", "history", "best_model")


@dataclass
class CFConfig:
    """Hyper-parameters of a CF run (defaults: LightGCN's Gowalla setting where it has one).

    Attributes:
        backbone: a name of :data:`graphrec.registry.CF_BACKBONES`: ``"mf"`` or
            ``"lightgcn"``.
        loss: a name of :data:`graphrec.registry.CF_LOSSES`: ``"bpr"`` (explicit negatives),
            ``"infonce"`` (in-batch, symmetric) or ``"hdccf"``
            (:class:`~graphrec.models.cf.losses.HDCCFLoss`).
        embedding_dim, num_layers: backbone size (``num_layers`` for LightGCN only).
        init: embedding initialisation, ``"normal"`` (std 0.1, LightGCN's code),
            ``"xavier"`` (PyG's ``LightGCN``) or, for ``mf``, ``"gf-cf"``: the factors of
            GF-CF's ideal low-pass filter of the training interactions
            (:meth:`~graphrec.models.cf.backbones.MF.from_low_pass`), so training starts from
            the filter's scores.
        epochs: maximum number of epochs.
        batch_size: training pairs per step.
        lr: Adam learning rate.
        reg: weight of :func:`~graphrec.models.cf.losses.l2_regularization` on the batch's
            layer-0 embeddings (LightGCN's ``decay``, 1e-4).
        temperature, tau_plus, beta, symmetric: contrastive-loss settings (``symmetric``:
            InfoNCE adds the item-side term; HDCCF always has both sides).
        logq: HDCCF popularity correction of the in-batch negatives (``HDCCFLoss(logq=)``;
            0 = off), with frequencies = training degrees.
        num_positives: ``M`` positives per anchor (HDCCF).
        num_negatives: explicit negatives per pair; None = the loss's default
            (:attr:`~graphrec.models.cf.losses.CFObjective.negatives`: 1 for BPR, 0 (in-batch
            only) for the contrastive losses).
        neg_alpha: explicit negatives ``∝ deg^alpha`` (0 = uniform).
        sampling: anchor pairs drawn uniformly over ``"interaction"`` (frequency-aware, the
            premise of in-batch negatives) or over ``"user"`` (a user, then one of its items:
            LightGCN's official BPR sampler).
        eval_every: evaluate on validation every this many epochs (and after the last one).
        protocol: ``"validation"``, or ``"paper"`` to also evaluate on test at every
            evaluation (``history`` records ``test``; :meth:`CFTrainer.best_test` reports the
            best one, the LightGCN paper's protocol, which selects on test). Training and
            early stopping are the same.
        patience: stop after this many evaluations without improvement (0 = never stop).
        metric, ks: the early-stopping metric and the cut-offs evaluated.
        eval_batch_size: users per evaluation batch.
        cpu_budget: stop once training used this many CPU seconds (None = no limit).
        seed: seed of the initialisation and the batches.
    """

    backbone: str = "lightgcn"
    loss: str = "bpr"
    embedding_dim: int = 64
    num_layers: int = 3
    init: str = "normal"
    epochs: int = 100
    batch_size: int = 2048
    lr: float = 1e-3
    reg: float = 1e-4
    temperature: float = 0.1
    tau_plus: float = 0.05
    beta: float = 0.0
    logq: float = 0.0
    symmetric: bool = True
    num_positives: int = 1
    num_negatives: int | None = None
    neg_alpha: float = 0.0
    sampling: str = "interaction"
    eval_every: int = 1
    protocol: str = "validation"
    patience: int = 10
    metric: str = "recall@20"
    ks: tuple[int, ...] = (20,)
    eval_batch_size: int = 1024
    cpu_budget: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        CF_BACKBONES.get(self.backbone)  # ConfigError listing the registered names
        least = CF_LOSSES.get(self.loss).min_negatives
        if self.negatives < least:
            raise ConfigError(
                f"loss {self.loss!r} needs num_negatives >= {least}; got {self.num_negatives}"
            )
        if self.init not in INITS:
            raise ConfigError(f"init must be one of {INITS}; got {self.init!r}")
        if self.init == "gf-cf" and self.backbone != "mf":
            raise ConfigError(f"init 'gf-cf' needs backbone 'mf'; got {self.backbone!r}")
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"protocol must be one of {PROTOCOLS}; got {self.protocol!r}")
        if self.sampling not in SAMPLINGS:
            raise ConfigError(f"sampling must be one of {SAMPLINGS}; got {self.sampling!r}")
        self.ks = metric_ks(self.metric, self.ks)
        if self.epochs < 0 or self.eval_every < 1 or self.patience < 0:
            raise ConfigError("epochs and patience must be >= 0, eval_every >= 1")

    @property
    def negatives(self) -> int:
        """Explicit negatives per pair: ``num_negatives`` or the loss's default."""
        if self.num_negatives is not None:
            return self.num_negatives
        return CF_LOSSES.get(self.loss).negatives

    @classmethod
    def from_dict(cls, values: dict) -> CFConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ConfigError(f"unknown CFConfig fields: {sorted(unknown)}")
        return cls(**values)


def build_backbone(graph: BipartiteGraph, config: CFConfig) -> CFBackbone:
    """The backbone ``config`` names, sized for ``graph`` (initialised from the global RNG)."""
    return CF_BACKBONES.get(config.backbone).from_config(graph, config)


def top_k(
    user_emb: Tensor,
    item_emb: Tensor,
    users: Sequence[int] | np.ndarray | Tensor,
    k: int,
    exclude: sp.spmatrix | sp.sparray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` items by dot product for ``users``, items in ``exclude``'s rows removed.

    Returns:
        ``(items [n, k] int64, scores [n, k] float32)``; slots beyond the number of
        non-excluded items hold item ``-1`` and score ``-inf``.
    """
    users = torch.as_tensor(np.asarray(users, dtype=np.int64))
    with torch.no_grad():
        scores = user_emb[users] @ item_emb.t()
        if exclude is not None:
            rows = sp.csr_array(exclude)[users.numpy()]
            r = np.repeat(np.arange(len(users)), np.diff(rows.indptr))
            scores[torch.as_tensor(r), torch.as_tensor(rows.indices.astype(np.int64))] = -math.inf
        k_eff = min(k, scores.shape[1])
        values, index = torch.topk(scores, k_eff, dim=1)
    items = index.numpy().astype(np.int64)
    values = values.float().numpy()
    items[np.isneginf(values)] = -1
    if k_eff < k:
        pad = k - k_eff
        items = np.pad(items, ((0, 0), (0, pad)), constant_values=-1)
        values = np.pad(values, ((0, 0), (0, pad)), constant_values=-np.inf)
    return items, values


class CFTrainer:
    """Train a CF backbone on a :class:`~graphrec.graphs.BipartiteGraph`.

    Args:
        graph: training edges plus validation / test sets.
        config: a :class:`CFConfig` (default settings if None).
        progress: called with each epoch's history record (a dict), e.g. ``print``.
        data_info: how ``graph`` was built (e.g. dataset name and folder; plain values),
            saved in checkpoints with a fingerprint of the graph and compared on resume.

    Attributes:
        model: the backbone (after :meth:`fit`, the best validation weights).
        objective: the loss (a :class:`~graphrec.models.cf.losses.CFObjective`).
        history: one dict per epoch: ``epoch``, ``loss``, ``train_seconds`` and
            ``cpu_seconds`` (cumulative, evaluation excluded) and, on evaluation epochs,
            ``valid`` metrics (and ``test`` metrics with ``protocol="paper"``).
        best_epoch, best_metric: of the early-stopping metric (None before any evaluation).
    """

    def __init__(
        self,
        graph: BipartiteGraph,
        config: CFConfig | None = None,
        *,
        progress: Callable[[dict], None] | None = None,
        data_info: Mapping[str, Any] | None = None,
    ) -> None:
        self.graph = graph
        self.config = config or CFConfig()
        self.progress = progress
        self.data_info = dict(data_info or {})
        self._data: dict[str, Any] | None = None
        cfg = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.model = build_backbone(graph, cfg)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.trainer = Trainer(self.optimizer)
        self.objective = CF_LOSSES.get(cfg.loss).from_config(graph, cfg)
        self.sampler = InteractionSampler(
            graph.train,
            cfg.batch_size,
            num_positives=cfg.num_positives,
            num_negatives=cfg.negatives,
            alpha=cfg.neg_alpha,
            with_known=self.objective.known,
            by_user=cfg.sampling == "user",
            seed=cfg.seed,
        )
        self.epoch = 0  # epochs completed
        self.history: list[dict] = []
        self.best_metric: float | None = None
        self.best_epoch: int | None = None
        self.bad_evals = 0
        self._best_state: dict | None = None
        self._known_eval = (graph.train + graph.valid).tocsr()

    # ------------------------------------------------------------------ training

    def _loss(self, batch: CFBatch) -> Tensor:
        cfg = self.config
        user_all, item_all = self.model()
        ego_u, ego_i = self.model.ego_embeddings()
        u, i = user_all[batch.users], item_all[batch.items]
        reg_terms = [ego_u[batch.users], ego_i[batch.items]]
        inputs = CFLossInput(batch, user_all, item_all, u, i, ego_u, ego_i)
        loss = self.objective(inputs)
        if cfg.reg:
            reg_terms += self.objective.regularized(inputs)
            loss = loss + cfg.reg * l2_regularization(*reg_terms, batch_size=len(batch))
        return loss

    @property
    def train_seconds(self) -> float:
        """Wall seconds spent in training steps (cumulative over resumed runs)."""
        return self.trainer.seconds

    @train_seconds.setter
    def train_seconds(self, value: float) -> None:
        self.trainer.seconds = value

    @property
    def cpu_seconds(self) -> float:
        """CPU seconds spent in training steps (cumulative over resumed runs)."""
        return self.trainer.cpu_seconds

    @cpu_seconds.setter
    def cpu_seconds(self, value: float) -> None:
        self.trainer.cpu_seconds = value

    def _over_budget(self) -> bool:
        budget = self.config.cpu_budget
        return budget is not None and self.cpu_seconds >= budget

    def train_epoch(self) -> float:
        """One pass over the training interactions; returns the mean batch loss."""
        self.model.train()
        total, steps = 0.0, 0
        for _, loss in self.trainer.steps(self.sampler.epoch(self.epoch), self._loss):
            total += loss
            steps += 1
            if self._over_budget():
                break
        self.epoch += 1
        return total / max(steps, 1)

    def fit(self, *, checkpoint: str | Path | None = None, resume: bool = True) -> CFTrainer:
        """Train until ``epochs``, early stopping, or the CPU budget; keep the best weights.

        Args:
            checkpoint: file written after every epoch (atomically); with ``resume`` and an
                existing file, training continues from it.
            resume: load ``checkpoint`` first when it exists.
        """
        cfg = self.config
        if checkpoint is not None and resume and Path(checkpoint).exists():
            self.load_checkpoint(checkpoint)
        has_valid = self.graph.valid.nnz > 0

        def stopped() -> bool:
            return bool(cfg.patience and self.bad_evals >= cfg.patience) or self._over_budget()

        def epoch_fn(index: int) -> tuple[bool, dict[str, Any]]:
            loss = self.train_epoch()
            record = {
                "epoch": self.epoch,
                "loss": loss,
                "train_seconds": self.train_seconds,
                "cpu_seconds": self.cpu_seconds,
            }
            last = self.epoch == cfg.epochs or self._over_budget()
            evaluating = self.epoch % cfg.eval_every == 0 or last
            if has_valid and evaluating:
                metrics = self.evaluate("valid")
                record["valid"] = metrics
                value = metrics[cfg.metric]
                if self.best_metric is None or value > self.best_metric:
                    self.best_metric, self.best_epoch, self.bad_evals = value, self.epoch, 0
                    self._best_state = copy.deepcopy(self.model.state_dict())
                else:
                    self.bad_evals += 1
            if cfg.protocol == "paper" and evaluating:
                record["test"] = self.evaluate("test")
            self.history.append(record)
            return stopped(), {"loss": f"{loss:.4f}"}

        def after_epoch(index: int, stop: bool) -> None:
            if checkpoint is not None:
                self.save_checkpoint(checkpoint)
            if self.progress is not None:
                self.progress(self.history[-1])

        run_epochs(
            epoch_fn, epochs=cfg.epochs, start=self.epoch, done=stopped(), checkpoint=after_epoch
        )
        if self._best_state is not None:
            self.model.load_state_dict(self._best_state)
        return self

    # ------------------------------------------------------------------ evaluation

    def embeddings(self) -> tuple[Tensor, Tensor]:
        """Final ``(user_emb, item_emb)`` of the current weights, without gradients."""
        self.model.eval()
        with torch.no_grad():
            u, i = self.model()
        return u.detach(), i.detach()

    def evaluate(self, split: str = "test") -> dict[str, float]:
        """Full-ranking metrics on ``"valid"`` (train masked) or ``"test"`` (train and
        validation masked) via :func:`graphrec.metrics.ranking_metrics`."""
        if split == "valid":
            target, known = self.graph.valid, self.graph.train
        elif split == "test":
            target, known = self.graph.test, self._known_eval
        else:
            raise ConfigError(f"split must be 'valid' or 'test'; got {split!r}")
        return ranking_metrics(
            self.embeddings(),
            target,
            known,
            ks=self.config.ks,
            batch_size=self.config.eval_batch_size,
        )

    def best_test(self) -> tuple[int, dict[str, float]] | None:
        """``(epoch, test metrics)`` of the evaluation with the best test ``metric`` (the
        LightGCN paper's protocol: selected on test, so optimistic); None without test
        evaluations (``protocol="validation"``)."""
        records = [r for r in self.history if "test" in r]
        if not records:
            return None
        best = max(records, key=lambda r: r["test"][self.config.metric])  # first of ties
        return best["epoch"], best["test"]

    def recommend(
        self, users: Sequence[int] | np.ndarray, k: int = 20, *, exclude_known: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` item indices and scores per user; known (train + validation) items are
        excluded unless ``exclude_known`` is False. See :func:`top_k`."""
        u, i = self.embeddings()
        return top_k(u, i, users, k, self._known_eval if exclude_known else None)

    # ------------------------------------------------------------------ checkpoints

    #: configuration fields a resumed run may change (they only decide when to stop)
    RESUMABLE_CHANGES = ("epochs", "patience", "cpu_budget")

    def data_record(self) -> dict[str, Any]:
        """``data_info`` plus the graph's size and fingerprint (recorded in checkpoints)."""
        if self._data is None:
            g = self.graph
            self._data = {
                **self.data_info,
                "users": g.num_users,
                "items": g.num_items,
                "graph": fingerprint(g.train, g.valid, g.test, g.user_ids, g.item_ids),
            }
        return self._data

    def _run_record(self, config: Mapping[str, Any], data: Mapping[str, Any]) -> dict:
        kept = {k: v for k, v in config.items() if k not in self.RESUMABLE_CHANGES}
        return {**kept, "data": dict(data)}

    def state_dict(self) -> dict:
        return {
            "config": {**asdict(self.config), "ks": list(self.config.ks)},
            "data": self.data_record(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "history": self.history,
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "bad_evals": self.bad_evals,
            "best_model": self._best_state,
            "train_seconds": self.train_seconds,
            "cpu_seconds": self.cpu_seconds,
        }

    def save_checkpoint(self, path: str | Path) -> None:
        """Write the full training state atomically (temporary file, fsync, rename)."""
        save_checkpoint(self.state_dict(), path)

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore a state written by :meth:`save_checkpoint` (``weights_only=True``).

        Raises:
            CheckpointError: the file is not a readable CF checkpoint, or was written with
                another configuration (except :attr:`RESUMABLE_CHANGES`) or other data; the
                message lists the differences.
        """
        state = load_checkpoint(
            path, keys=_CHECKPOINT_KEYS, records=("config", "data"), what="CF training checkpoint"
        )
        defaults = {f.name: f.default for f in fields(CFConfig)}  # fields added since
        saved = {**defaults, **state["config"]}
        current = {**asdict(self.config), "ks": list(self.config.ks)}
        check_same_run(
            path,
            self._run_record(saved, state["data"]),
            self._run_record(current, self.data_record()),
        )
        try:
            if state["best_model"] is not None:
                self.model.load_state_dict(state["best_model"])  # checks the best weights fit
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.epoch = int(state["epoch"])
            self.history = list(state["history"])
            self.best_metric = state["best_metric"]
            self.best_epoch = state["best_epoch"]
            self.bad_evals = int(state["bad_evals"])
            self._best_state = state["best_model"]
            self.train_seconds = float(state["train_seconds"])
            self.cpu_seconds = float(state["cpu_seconds"])
        except (AttributeError, KeyError, RuntimeError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"checkpoint {path}: its weights or training state do not fit this model"
            ) from exc
