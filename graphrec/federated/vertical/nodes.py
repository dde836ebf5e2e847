r"""A party of split learning: its features, bottom model and optimizer, and what it sends.

A :class:`PartyNode` is everything one feature-holding party (not the label owner) keeps and
does: it turns a batch of aligned positions into the payload it sends up (its bottom output,
clipped and noised under DP, then compressed with error feedback), and turns the gradient
payload it receives into an update of its bottom model. It never sees labels, other parties'
features or any id outside the intersection.
:class:`~graphrec.federated.vertical.split.SplitLearner` drives one node per remote party in one
process; a node can equally run in its own process
(one Flower ClientApp per party), restored from :meth:`PartyNode.state_dict` between calls,
with the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from graphrec.errors import ConfigError, InputFormatError
from graphrec.federated.vertical.compress import Compressor, ErrorFeedback
from graphrec.federated.vertical.dp import GaussianDP, clip_rows

__all__ = ["PartyNode", "check_finite", "node_generator"]

Optimizer = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]


def node_generator(seed: int, index: int) -> torch.Generator:
    """The noise generator of the node at ``index`` in the party graph (each node draws its own
    noise, so parties in different processes draw what they draw in one)."""
    state = np.random.SeedSequence([seed, index]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def check_finite(name: str, x: Tensor) -> None:
    """Raise :class:`InputFormatError` naming the first NaN or infinite entry of ``x``."""
    if x.is_floating_point() and not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).nonzero()[0].tolist()
        where = f"row {bad[0]}" + (f", column {bad[1]}" if len(bad) > 1 else "")
        raise InputFormatError(
            f"{name}, {where}: {x[tuple(bad)].item()}", expected="finite values (no NaN or inf)"
        )


class PartyNode:
    """One feature-holding party of split learning.

    Args:
        name: the party's name in the party graph.
        bottom: its bottom model (``[B, F] -> [B, d]``).
        features: its table, float ``[N_local, F]``, rows in its own order.
        rows: ``[num_rows]``, the local row of every aligned position.
        optimizer: builds the optimizer of the bottom model.
        dp: clips and noises the embeddings it sends when ``"embedding"`` is a target.
        generator: its noise generator (:func:`node_generator`).
        compressor: compresses the embeddings it sends (None: sent as float32).
        error_feedback: keep a residual per aligned row for the compressor.
        gradient_compressor: how the label owner compresses the gradients it returns (decoded
            here; None: they come as float32).

    Attributes:
        feedback: the :class:`~graphrec.federated.vertical.compress.ErrorFeedback` of its
            embeddings (None without compression or error feedback).
        gradient: the last gradient received (``[B, d]``), reused by FedBCD local updates.

    Raises:
        ConfigError: a non-float or non-2-D table, or ``rows`` outside it.
        InputFormatError: a NaN or infinite feature (naming the party, row and column).
    """

    def __init__(
        self,
        name: str,
        bottom: torch.nn.Module,
        features: Tensor,
        rows: np.ndarray,
        optimizer: Optimizer,
        *,
        dp: GaussianDP | None = None,
        generator: torch.Generator | None = None,
        compressor: Compressor | None = None,
        error_feedback: bool = True,
        gradient_compressor: Compressor | None = None,
    ) -> None:
        if features.ndim != 2 or not features.is_floating_point():
            raise ConfigError(
                f"features[{name!r}] must be a float [N, F] tensor; got {features.dtype} "
                f"{list(features.shape)}"
            )
        check_finite(f"features[{name!r}]", features)
        self.rows = torch.as_tensor(np.asarray(rows, dtype=np.int64))
        if len(self.rows) and (self.rows.min() < 0 or self.rows.max() >= len(features)):
            raise ConfigError(f"rows of party {name!r} must index its {len(features)} rows")
        self.name, self.bottom, self.features = name, bottom, features
        self.optimizer = optimizer(bottom.parameters())
        self.dp = dp if dp is not None and "embedding" in dp.targets else None
        self.generator = generator if generator is not None else torch.Generator()
        self.compressor, self.gradient_compressor = compressor, gradient_compressor
        self.feedback = (
            ErrorFeedback(compressor, len(self.rows))
            if compressor is not None and error_feedback
            else None
        )
        self.gradient: Tensor | None = None
        self._output: Tensor | None = None
        self._batch: Tensor | None = None

    def _forward(self, batch: Tensor) -> Tensor:
        """The bottom output on the batch's rows, clipped under DP (differentiable)."""
        out = self.bottom(self.features[self.rows[batch]])
        return out if self.dp is None else clip_rows(out, self.dp.clip_norm)

    def embed(self, batch: Tensor, *, train: bool = True) -> Any:
        """The payload sent up for aligned positions ``batch``: the bottom output, noised under
        DP, compressed if configured (with error feedback when ``train``)."""
        with torch.set_grad_enabled(train):
            out = self._forward(batch)
        self._output, self._batch = (out, batch) if train else (None, None)
        release = out.detach()
        if self.dp is not None:
            release = self.dp.add_noise(release, self.generator)
        if self.compressor is None:
            return release
        if train and self.feedback is not None:
            return self.feedback.encode(release, batch)
        return self.compressor.encode(release)

    def backward(self, payload: Any, batch: Tensor) -> None:
        """Back-propagate the received gradient of the embeddings of ``batch`` into the bottom
        model (its gradients are set, nothing updated)."""
        if self._output is None or self._batch is None or not torch.equal(self._batch, batch):
            self._output = self._forward(batch)  # a node restored from its state
        grad = payload
        if self.gradient_compressor is not None:
            grad = self.gradient_compressor.decode(payload, self._output.shape)
        self.gradient = grad.to(self._output.dtype)
        self.optimizer.zero_grad()
        self._output.backward(self.gradient)
        self._output = None

    def update(self) -> None:
        """Apply the gradients set by :meth:`backward`."""
        self.optimizer.step()

    def local_update(self, batch: Tensor) -> None:
        """One FedBCD local update: the last received gradient through a fresh bottom output."""
        self.optimizer.zero_grad()
        self._forward(batch).backward(self.gradient)
        self.optimizer.step()

    def state_dict(self) -> dict[str, Any]:
        """Everything the node keeps between messages (tensors and plain values only)."""
        return {
            "bottom": self.bottom.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "residual": None if self.feedback is None else self.feedback.residual,
            "gradient": self.gradient,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.bottom.load_state_dict(state["bottom"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        if self.feedback is not None:
            self.feedback.residual = state["residual"]
        self.gradient = state["gradient"]
        self._output = self._batch = None
