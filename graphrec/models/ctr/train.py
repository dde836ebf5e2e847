"""A minimal CTR trainer: Adam on BCE, early stopping on validation AUC, seeded."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from graphrec.errors import ConfigError
from graphrec.io import CTRTable
from graphrec.metrics import auc, gauc
from graphrec.models.ctr.base import CTRModel
from graphrec.models.ctr.defaults import TRAIN_DEFAULTS
from graphrec.training import Trainer, fit_best, minibatches

__all__ = ["TrainResult", "evaluate_ctr", "train_ctr"]


@dataclass
class TrainResult:
    """What :func:`train_ctr` did.

    Attributes:
        best_epoch: 1-based epoch with the best validation AUC (its weights are loaded).
        best: validation metrics of that epoch.
        history: per epoch ``{"epoch", "loss", "train_s", "auc", "gauc", "logloss"}`` (train
            loss, seconds spent in the training steps, validation metrics).
        stopped_early: whether patience ran out before ``epochs``.
    """

    best_epoch: int
    best: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False


@torch.no_grad()
def evaluate_ctr(
    model: CTRModel,
    table: CTRTable,
    *,
    group: str | None = "auto",
    batch_size: int = 8192,
    max_len: int | None = None,
) -> dict[str, float]:
    """AUC, GAUC and logloss of ``model`` on ``table``.

    Args:
        group: categorical column grouping rows for GAUC; ``"auto"`` takes ``user`` or
            ``userid`` if the table has one; None skips GAUC (NaN).
        batch_size: rows scored at once.
        max_len: passed to :meth:`CTRFeatures.batch`.
    """
    was_training = model.training
    model.eval()
    logits = []
    for start in range(0, table.num_rows, batch_size):
        rows = np.arange(start, min(start + batch_size, table.num_rows))
        logits.append(model(model.features.batch(table, rows, max_len=max_len)))
    model.train(was_training)
    logit = torch.cat(logits)
    labels = torch.as_tensor(table.labels, dtype=torch.float32)
    out = {
        "auc": auc(labels, logit),
        "logloss": F.binary_cross_entropy_with_logits(logit, labels).item(),
        "gauc": float("nan"),
    }
    if group == "auto":
        group = next((c for c in ("user", "userid") if c in table.categorical), None)
    if group is not None:
        try:
            out["gauc"] = gauc(labels, logit, table.categorical[group])
        except ValueError:  # no group has both classes
            pass
    return out


def train_ctr(
    model: CTRModel,
    train: CTRTable,
    valid: CTRTable,
    *,
    epochs: int = TRAIN_DEFAULTS.epochs,
    batch_size: int = TRAIN_DEFAULTS.batch_size,
    lr: float = TRAIN_DEFAULTS.lr,
    weight_decay: float = TRAIN_DEFAULTS.weight_decay,
    patience: int = TRAIN_DEFAULTS.patience,
    seed: int = 0,
    max_len: int | None = None,
    checkpoint: str | os.PathLike | None = None,
    progress: bool = False,
) -> TrainResult:
    """Train ``model`` with Adam on binary cross-entropy; keep the best validation-AUC weights.

    Each epoch shuffles the training rows (numpy generator seeded with ``seed``; torch is
    seeded too, for dropout) and evaluates on ``valid``. Training stops when the validation AUC
    has not improved for ``patience`` epochs; the weights of the best epoch are loaded back
    into ``model`` before returning. The initial weights are the caller's: call
    ``torch.manual_seed(seed)`` before building the model for a fully reproducible run.

    With ``checkpoint``, the whole training state (weights, optimizer, best weights, random
    generators, history) is written there after every epoch, and a call that finds the file
    resumes from it: an interrupted run, resumed, gives the same result as an uninterrupted
    one. The file loads with ``torch.load(..., weights_only=True)``.

    The defaults are :data:`graphrec.models.ctr.defaults.TRAIN_DEFAULTS`; a named dataset's
    validated recipe is ``train_ctr(..., **asdict(train_recipe(name)))``
    (:func:`graphrec.models.ctr.defaults.train_recipe`).

    Args:
        model: a :class:`CTRModel`, built on the features of ``train``.
        train, valid: tables encoded with one vocabulary.
        epochs: maximum number of epochs.
        batch_size: training batch size.
        lr, weight_decay: Adam settings.
        patience: epochs without improvement before stopping.
        seed: seed of the shuffling and of torch's generator.
        max_len: cut/pad sequences (see :meth:`CTRFeatures.batch`).
        checkpoint: file to write the training state to and to resume from.
        progress: show a progress bar over the epochs (tqdm, on stderr).
    """
    if epochs < 1 or batch_size < 1 or patience < 1:
        raise ConfigError("epochs, batch_size and patience must be >= 1")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    opt = adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    result = TrainResult(best_epoch=0, best={"auc": -np.inf})
    trainer = Trainer(opt)

    def epoch_fn(epoch: int) -> tuple[float, dict[str, float]]:
        model.train()
        batches = minibatches(train.num_rows, batch_size, rng.permutation)
        total = 0.0
        start_time = time.perf_counter()
        for rows, loss in trainer.steps(batches, lambda rows: _loss(model, train, rows, max_len)):
            total += loss * len(rows)
        train_s = time.perf_counter() - start_time
        metrics = evaluate_ctr(model, valid, max_len=max_len)
        result.history.append(
            {"epoch": epoch, "loss": total / train.num_rows, "train_s": train_s, **metrics}
        )
        return total / train.num_rows, metrics

    fit_best(epoch_fn, model, opt, rng, result, select="auc", epochs=epochs, patience=patience,
             checkpoint=checkpoint, key="model", what="CTR training checkpoint",
             progress=progress)  # fmt: skip
    return result


def _loss(model: CTRModel, table: CTRTable, rows: np.ndarray, max_len: int | None) -> Tensor:
    """Mean binary cross-entropy of ``model`` on ``rows`` of ``table``."""
    features = model.features
    batch = features.batch(table, rows, max_len=max_len)
    return F.binary_cross_entropy_with_logits(model(batch), features.labels(table, rows))


def adam(params, lr: float, weight_decay: float = 0.0) -> torch.optim.Adam:
    """The trainer's optimizer: torch's fused Adam (one C++ loop over all tensors per step:
    faster on CPU than the for-each kernels, BENCHMARKS.md "CTR building blocks"; the same
    numbers within float rounding)."""
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)
