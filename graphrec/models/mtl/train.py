"""Joint multi-task training: Adam on the summed task losses (optionally with a distillation
module), early stopping on validation, seeded, with checkpoint/resume."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from graphrec.errors import ConfigError
from graphrec.metrics import auc, gauc, graded_ndcg, multi_auc
from graphrec.models.ctr.features import CTRFeatures
from graphrec.models.ctr.train import adam
from graphrec.models.mtl.base import MTLModel
from graphrec.models.mtl.crossdistil import CrossDistil, CrossDistilConfig
from graphrec.models.mtl.data import MTLTable
from graphrec.models.mtl.defaults import MTL_TRAIN_DEFAULTS
from graphrec.registry import MTL_MODELS
from graphrec.training import Trainer, fit_best, minibatches

__all__ = [
    "DISTILL_MODES",
    "MTLTrainResult",
    "SELECT_METRICS",
    "build_mtl",
    "evaluate_mtl",
    "predict_mtl",
    "train_mtl",
]

#: Validation metrics :func:`train_mtl` can select the best epoch by.
SELECT_METRICS = ("mean_auc", "multi_auc")
#: Distillation settings of :func:`build_mtl`: none, plain KD, CrossDistil.
DISTILL_MODES = ("none", "kd", "crossdistil")


def build_mtl(
    backbone: str,
    features: CTRFeatures,
    *,
    num_tasks: int = 2,
    distill: str = "none",
    distill_options: dict[str, Any] | None = None,
    seed: int = 0,
    **options: Any,
) -> tuple[MTLModel, CrossDistil | None]:
    """A backbone of :data:`graphrec.registry.MTL_MODELS` and its distillation module.

    The backbone gets its registered defaults updated by ``options``; ``distill`` is
    ``"none"`` (no module), ``"kd"`` or ``"crossdistil"`` (a
    :class:`~graphrec.models.mtl.crossdistil.CrossDistil` on the backbone's tower inputs with
    :class:`~graphrec.models.mtl.crossdistil.CrossDistilConfig` defaults updated by
    ``distill_options`` and that mode). Weights are initialised after
    ``torch.manual_seed(seed)``: backbone first, then the teachers, so the backbone starts
    from the same weights with and without distillation.

    Raises:
        ConfigError: an unknown backbone, option or distillation mode.
    """
    if distill not in DISTILL_MODES:
        raise ConfigError(f"distill must be one of {DISTILL_MODES}; got {distill!r}")
    if distill == "none" and distill_options:
        raise ConfigError("distill_options apply to distill 'kd' or 'crossdistil' only")
    config = None
    if distill != "none":
        config = CrossDistilConfig(**{**(distill_options or {}), "mode": distill})
    kwargs = MTL_MODELS.options(backbone, **options)
    torch.manual_seed(seed)
    model = MTL_MODELS.get(backbone)(features, num_tasks, **kwargs)
    return model, None if config is None else CrossDistil(model.tower_in_channels, config)


@dataclass
class MTLTrainResult:
    """What :func:`train_mtl` did.

    Attributes:
        best_epoch: 1-based epoch with the best validation ``select`` metric (its weights are
            loaded).
        best: validation metrics of that epoch (:func:`evaluate_mtl`).
        history: per epoch ``{"epoch", "loss", "train_s", **validation metrics}`` plus the mean
            loss parts of a distillation module.
        stopped_early: whether patience ran out before ``epochs``.
        steps: optimisation steps done.
    """

    best_epoch: int
    best: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False
    steps: int = 0


@torch.no_grad()
def predict_mtl(model: MTLModel, table: MTLTable, *, batch_size: int = 8192) -> Tensor:
    """Task logits ``[N, T]`` of every row of ``table`` (eval mode, no gradient)."""
    was_training = model.training
    model.eval()
    logits = [
        model(model.features.batch(table.table, np.arange(s, min(s + batch_size, table.num_rows))))
        for s in range(0, table.num_rows, batch_size)
    ]
    model.train(was_training)
    return torch.cat(logits)


def _safe(fn, *args, **kwargs) -> float:
    """``fn(...)``, NaN where the metric is undefined (one class, no usable group)."""
    try:
        return fn(*args, **kwargs)
    except ValueError:
        return float("nan")


def evaluate_mtl(
    model: MTLModel, table: MTLTable, *, user: str | None = "user", batch_size: int = 8192
) -> dict[str, float]:
    """Validation / test metrics of ``model`` on ``table``.

    Per task ``t`` (its name): ``auc_t``, ``gauc_t`` (grouped by the ``user`` column; NaN when
    there is none) and ``logloss_t``; ``mean_auc`` over the tasks; for the first two tasks A
    and B, ``multi_auc`` (:func:`graphrec.metrics.multi_auc` of task A's score over the grade
    ``2 y_A + y_B``), ``multi_auc_b`` (task B's score over ``2 y_B + y_A``) and ``ndcg``
    (:func:`graphrec.metrics.graded_ndcg` of task A's score with relevance ``2 y_A + y_B``,
    per user). A metric undefined on ``table`` (a single class) is NaN.
    """
    logits = predict_mtl(model, table, batch_size=batch_size)
    y = torch.as_tensor(table.labels)
    groups = None if user is None else table.table.categorical.get(user)
    out: dict[str, float] = {}
    for t, name in enumerate(table.tasks):
        out[f"auc_{name}"] = _safe(auc, y[:, t], logits[:, t])
        out[f"gauc_{name}"] = (
            float("nan") if groups is None else _safe(gauc, y[:, t], logits[:, t], groups)
        )
        out[f"logloss_{name}"] = F.binary_cross_entropy_with_logits(logits[:, t], y[:, t]).item()
    out["mean_auc"] = float(np.mean([out[f"auc_{name}"] for name in table.tasks]))
    grade_a, grade_b = 2 * y[:, 0] + y[:, 1], 2 * y[:, 1] + y[:, 0]
    out["multi_auc"] = _safe(multi_auc, grade_a, logits[:, 0])
    out["multi_auc_b"] = _safe(multi_auc, grade_b, logits[:, 1])
    out["ndcg"] = _safe(graded_ndcg, grade_a, logits[:, 0], groups)
    return out


def train_mtl(
    model: MTLModel,
    train: MTLTable,
    valid: MTLTable,
    *,
    distill: torch.nn.Module | None = None,
    epochs: int = MTL_TRAIN_DEFAULTS.epochs,
    batch_size: int = MTL_TRAIN_DEFAULTS.batch_size,
    lr: float = MTL_TRAIN_DEFAULTS.lr,
    weight_decay: float = MTL_TRAIN_DEFAULTS.weight_decay,
    patience: int = MTL_TRAIN_DEFAULTS.patience,
    select: str = MTL_TRAIN_DEFAULTS.select,
    seed: int = 0,
    user: str | None = "user",
    checkpoint: str | os.PathLike | None = None,
    progress: bool = False,
) -> MTLTrainResult:
    """Train ``model`` (and ``distill``) jointly with Adam; keep the best validation weights.

    Without ``distill`` the loss of a batch is the sum over tasks of the mean binary
    cross-entropy. With ``distill`` (e.g. :class:`graphrec.models.mtl.crossdistil.CrossDistil`)
    it is ``distill(tower_inputs, logits, labels, step=step)``, a ``(loss, parts)`` pair whose
    loss includes the task losses; its parameters are trained by the same optimizer and
    ``parts`` are averaged per epoch into the history.

    Each epoch shuffles the training rows (numpy generator seeded with ``seed``; torch is
    seeded too) and evaluates on ``valid`` (:func:`evaluate_mtl`). Training stops when the
    validation ``select`` metric (``"mean_auc"`` or ``"multi_auc"``) has not improved for
    ``patience`` epochs; the best epoch's weights (of ``model`` and ``distill``) are loaded
    back. With ``checkpoint``, the whole training state is written there after every epoch and
    a call that finds the file resumes from it (same result as an uninterrupted run); it loads
    with ``torch.load(..., weights_only=True)``.

    Args:
        user: the categorical column grouping rows by user (GAUC, NDCG); None for none.
        progress: show a tqdm bar over the epochs (on stderr).
    """
    if epochs < 1 or batch_size < 1 or patience < 1:
        raise ConfigError("epochs, batch_size and patience must be >= 1")
    if select not in SELECT_METRICS:
        raise ConfigError(f"select must be one of {SELECT_METRICS}; got {select!r}")
    if train.tasks != valid.tasks or len(train.tasks) != model.num_tasks:
        raise ConfigError(
            f"the model has {model.num_tasks} tasks; train and valid have {train.tasks} and "
            f"{valid.tasks}"
        )
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    modules = torch.nn.ModuleDict({"model": model})
    if distill is not None:
        modules["distill"] = distill
    opt = adam(modules.parameters(), lr=lr, weight_decay=weight_decay)
    result = MTLTrainResult(best_epoch=0, best={select: -np.inf})
    trainer = Trainer(opt)
    labels = torch.as_tensor(train.labels)

    def loss_fn(rows: np.ndarray, parts: dict[str, float]) -> Tensor:
        batch = model.features.batch(train.table, rows)
        y = labels[rows]
        if distill is None:
            logits = model(batch)
            return F.binary_cross_entropy_with_logits(logits, y, reduction="none").mean(0).sum()
        inputs, logits = model.forward_towers(batch)
        loss, detail = distill(inputs, logits, y, step=result.steps)
        for key, value in detail.items():
            parts[key] = parts.get(key, 0.0) + float(value) * len(rows)
        return loss

    def epoch_fn(epoch: int) -> tuple[float, dict[str, float]]:
        modules.train()
        batches = minibatches(train.num_rows, batch_size, rng.permutation)
        total, parts = 0.0, {}
        start_time = time.perf_counter()
        for rows, loss in trainer.steps(batches, lambda rows: loss_fn(rows, parts)):
            total += loss * len(rows)
            result.steps += 1
        train_s = time.perf_counter() - start_time
        metrics = evaluate_mtl(model, valid, user=user)
        result.history.append(
            {"epoch": epoch, "loss": total / train.num_rows, "train_s": train_s, **metrics,
             **{k: v / train.num_rows for k, v in parts.items()}}
        )  # fmt: skip
        return total / train.num_rows, metrics

    fit_best(epoch_fn, modules, opt, rng, result, select=select, epochs=epochs, patience=patience,
             checkpoint=checkpoint, key="modules", what="multi-task training checkpoint",
             progress=progress)  # fmt: skip
    return result
