"""The training loop shared by every trainer in graphrec.

Pieces composed by the CTR and multi-task trainers (:func:`graphrec.models.ctr.train_ctr`,
:func:`graphrec.models.mtl.train_mtl`), the CF trainer (:class:`graphrec.models.cf.CFTrainer`),
FastCover training (:func:`combinatorial.gnn.train.train_fastcover`) and the federated tasks'
local training (:func:`graphrec.federated.tasks.local_sgd`):

- :class:`Trainer`: one optimizer step on a loss, with an optional FedProx proximal term
  :math:`\\frac{\\mu}{2} \\lVert w - w_0 \\rVert^2` and global-norm gradient clipping;
- :func:`minibatches`: shuffled mini-batches of row positions, for one epoch or a number of
  steps (cycling over fresh permutations);
- :func:`run_epochs`: the epoch loop, with early stopping, a checkpoint hook after every epoch
  and a tqdm progress bar;
- :func:`fit_best`: :func:`run_epochs` keeping the weights of the best validation metric, with
  patience and a resumable checkpoint (the CTR and multi-task trainers).

Each piece does its work in a fixed order (loss, proximal term, ``zero_grad``, ``backward``,
clipping, ``step``; one permutation drawn per pass over the rows), so a trainer built from them
draws the same random numbers and computes the same floats as a hand-written loop.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor
from tqdm import tqdm

from graphrec.errors import ConfigError
from graphrec.io.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

__all__ = [
    "Trainer",
    "fit_best",
    "load_training_state",
    "minibatches",
    "run_epochs",
    "save_training_state",
]

B = TypeVar("B")


class Trainer:
    r"""Optimizer steps on a loss, with a proximal term and gradient clipping.

    One :meth:`step` minimises

    .. math::
        \ell(w) + \frac{\mu}{2} \sum_p \lVert w_p - w_{0,p} \rVert^2

    over the optimizer's parameters :math:`w` (FedProx, Li et al., MLSys 2020; off when
    :math:`\mu = 0`), clipping the gradient to global norm ``clip_norm`` before the update.

    Args:
        optimizer: updates the parameters (all of its parameter groups are clipped).
        clip_norm: maximum global gradient norm; None = no clipping.
        prox_mu: proximal coefficient :math:`\mu \ge 0`.
        anchor: :math:`w_0`, one tensor per optimizer parameter, in the optimizer's order
            (required when ``prox_mu > 0``).

    Attributes:
        seconds, cpu_seconds: wall and CPU seconds spent in :meth:`step` (cumulative; a caller
            resuming a run may set them).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        clip_norm: float | None = None,
        prox_mu: float = 0.0,
        anchor: Sequence[Tensor] | None = None,
    ) -> None:
        self.optimizer = optimizer
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        if clip_norm is not None and not clip_norm > 0:
            raise ConfigError(f"clip_norm must be > 0 or None; got {clip_norm}")
        if not prox_mu >= 0:
            raise ConfigError(f"prox_mu must be >= 0; got {prox_mu}")
        if prox_mu > 0 and (anchor is None or len(anchor) != len(self.params)):
            raise ConfigError(
                f"anchor must hold one tensor per optimizer parameter ({len(self.params)}) "
                "when prox_mu > 0"
            )
        self.clip_norm = clip_norm
        self.prox_mu = prox_mu
        self.anchor = None if anchor is None else list(anchor)
        self.seconds = 0.0
        self.cpu_seconds = 0.0

    def proximal_term(self) -> Tensor:
        r""":math:`\frac{\mu}{2} \sum_p \lVert w_p - w_{0,p} \rVert^2` (a scalar tensor)."""
        pairs = zip(self.params, self.anchor, strict=True)
        return 0.5 * self.prox_mu * sum(((p - a) ** 2).sum() for p, a in pairs)

    def step(self, loss_fn: Callable[[], Tensor]) -> float:
        """One update on ``loss_fn()``; returns that loss (without the proximal term)."""
        wall, cpu = time.perf_counter(), time.process_time()
        loss = loss_fn()
        total = loss + self.proximal_term() if self.prox_mu > 0 else loss
        self.optimizer.zero_grad()
        total.backward()
        if self.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.params, self.clip_norm)
        self.optimizer.step()
        value = loss.item()
        self.seconds += time.perf_counter() - wall
        self.cpu_seconds += time.process_time() - cpu
        return value

    def steps(
        self, batches: Iterable[B], loss_fn: Callable[[B], Tensor]
    ) -> Iterator[tuple[B, float]]:
        """One :meth:`step` per batch, lazily: yields ``(batch, loss)`` after each update (stop
        iterating to stop training)."""
        for batch in batches:
            yield batch, self.step(partial(loss_fn, batch))


def minibatches(
    num_rows: int,
    batch_size: int,
    permutation: Callable[[int], Any],
    *,
    steps: int | None = None,
) -> Iterator[Any]:
    """Shuffled mini-batches of the positions ``0..num_rows-1``.

    ``permutation(n)`` draws a random order of ``range(n)`` (e.g. ``rng.permutation`` or
    ``lambda n: torch.randperm(n, generator=g)``); batches are consecutive slices of it, the last
    one of a pass possibly shorter. The first permutation is drawn at once; with ``steps``, a
    fresh one is drawn whenever a pass is used up, until ``steps`` batches were given; without,
    one pass (one epoch).

    Raises:
        ConfigError: ``batch_size < 1`` or ``steps < 0``.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1; got {batch_size}")
    if steps is not None and steps < 0:
        raise ConfigError(f"steps must be >= 0; got {steps}")
    order = permutation(num_rows)
    if steps is None:
        steps = -(-num_rows // batch_size)
    return _slices(order, num_rows, batch_size, permutation, steps)


def _slices(
    order: Any, num_rows: int, batch_size: int, permutation: Callable[[int], Any], steps: int
) -> Iterator[Any]:
    pos = 0
    for _ in range(steps):
        if pos >= num_rows:
            order, pos = permutation(num_rows), 0
        yield order[pos : pos + batch_size]
        pos += batch_size


def run_epochs(
    epoch_fn: Callable[[int], tuple[bool, Mapping[str, Any]]],
    *,
    epochs: int,
    start: int = 0,
    done: bool = False,
    checkpoint: Callable[[int, bool], None] | None = None,
    progress: bool = False,
    desc: str = "epochs",
) -> int:
    """Run epochs ``start, start + 1, ...`` (0-based) until ``epochs`` or an early stop.

    ``epoch_fn(epoch)`` trains (and evaluates) one epoch and returns ``(stop, postfix)``:
    whether training should stop after it, and what the progress bar shows beside it.
    ``checkpoint(epoch, stop)`` runs after every epoch (e.g. to write the training state so that
    a resumed run continues from the next one).

    Args:
        epochs: total number of epochs (those before ``start`` included).
        start: first epoch to run (the number already done, when resuming).
        done: the run had already stopped early: run nothing.
        progress: show a tqdm bar over the epochs (on stderr).
        desc: the bar's label.

    Returns:
        The number of epochs done.
    """
    epoch = start
    with tqdm(total=epochs, initial=start, disable=not progress, desc=desc, unit="epoch") as bar:
        while epoch < epochs and not done:
            done, postfix = epoch_fn(epoch)
            if checkpoint is not None:
                checkpoint(epoch, done)
            bar.set_postfix(postfix)
            bar.update()
            epoch += 1
    return epoch


def save_training_state(
    path: Any,
    key: str,
    module: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    best_state: dict[str, Tensor],
    rng: Any,
    result: dict[str, Any],
    done: bool,
) -> None:
    """Write an early-stopping trainer's state atomically: ``module``'s weights under ``key``,
    the optimizer, the best weights so far, both random states, the ``result`` record and
    whether the run stopped."""
    state = {
        key: module.state_dict(),
        "optimizer": optimizer.state_dict(),
        "best_state": best_state,
        "numpy_rng": rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "result": result,
        "done": done,
    }
    save_checkpoint(state, path)


def load_training_state(
    path: Any,
    key: str,
    module: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    rng: Any,
    *,
    what: str,
) -> tuple[dict[str, Tensor], dict[str, Any], bool]:
    """Restore what :func:`save_training_state` wrote into ``module``, ``optimizer``, ``rng``
    and torch's random state; returns ``(best_state, result record, done)``.

    Raises:
        CheckpointError: an unreadable file, missing entries, or another model's weights.
    """
    state = load_checkpoint(
        path,
        keys=(key, "optimizer", "best_state", "numpy_rng", "torch_rng", "done"),
        records=("result",),
        what=what,
    )
    try:
        module.load_state_dict(state[key])
    except RuntimeError as exc:
        raise CheckpointError(f"{path} holds another model's weights") from exc
    optimizer.load_state_dict(state["optimizer"])
    rng.bit_generator.state = state["numpy_rng"]
    torch.set_rng_state(state["torch_rng"])
    return state["best_state"], state["result"], state["done"]


def fit_best(
    epoch_fn: Callable[[int], tuple[float, Mapping[str, float]]],
    module: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    rng: Any,
    result: Any,
    *,
    select: str,
    epochs: int,
    patience: int,
    checkpoint: str | os.PathLike | None,
    key: str,
    what: str,
    progress: bool = False,
) -> None:
    """:func:`run_epochs` keeping the weights of the best validation ``select`` metric.

    ``epoch_fn(epoch)`` (1-based) trains one epoch, appends it to ``result.history`` and returns
    ``(training loss, validation metrics)``. ``result`` (a dataclass with ``best_epoch``,
    ``best``, ``history`` and ``stopped_early``) is updated in place: a better ``select`` metric
    makes the epoch the best one; ``patience`` epochs without one stop the run. At the end the
    best weights are loaded back into ``module``. With ``checkpoint``, the training state
    (:func:`save_training_state` with ``key``) is written there after every epoch, and a file
    found there is resumed from (:func:`load_training_state`; ``what`` names it in errors).
    """
    best_state = copy.deepcopy(module.state_dict())
    done = False
    if checkpoint is not None and Path(checkpoint).exists():
        best_state, record, done = load_training_state(
            checkpoint, key, module, optimizer, rng, what=what
        )
        for name, value in record.items():
            setattr(result, name, value)

    def one_epoch(index: int) -> tuple[bool, dict[str, str]]:
        nonlocal best_state
        epoch = index + 1
        loss, metrics = epoch_fn(epoch)
        stop = False
        if metrics[select] > result.best[select]:
            result.best_epoch, result.best = epoch, metrics
            best_state = copy.deepcopy(module.state_dict())
        elif epoch - result.best_epoch >= patience:
            result.stopped_early = epoch < epochs
            stop = True
        return stop, {"loss": f"{loss:.4f}", f"val_{select}": f"{metrics[select]:.4f}"}

    def save(index: int, stop: bool) -> None:
        save_training_state(checkpoint, key, module, optimizer, best_state, rng, asdict(result),
                            stop)  # fmt: skip

    run_epochs(
        one_epoch,
        epochs=epochs,
        start=len(result.history),
        done=done,
        checkpoint=None if checkpoint is None else save,
        progress=progress,
    )
    module.load_state_dict(best_state)
