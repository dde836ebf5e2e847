r"""Label inference from the gradients a party receives in split learning.

In binary split learning the label owner returns :math:`\mathbf{g}_i = \partial L / \partial
\mathbf{h}_i = (p_i - y_i)\, \partial \ell_i / \partial \mathbf{h}_i` for every row :math:`i` of
the batch (:math:`\ell` the logit). A passive party can guess the labels from them (Li et al.,
"Label Leakage and Protection in Two-party Split Learning", ICLR 2022):

- **norm attack**: score :math:`\lVert \mathbf{g}_i \rVert_2`. On an imbalanced task the model
  soon predicts small :math:`p` for every row, so the rare positives
  (:math:`|p_i - 1| \approx 1`) get much larger gradients than the negatives
  (:math:`|p_i| \approx 0`).
- **direction attack**: score :math:`\cos(\mathbf{g}_i, \mathbf{g}_r)` against the gradient of a
  row :math:`r` of the same batch whose label (positive) the party knows: :math:`p_i - y_i` is
  negative for positives and positive for negatives, so same-label rows point the same way.

The attack's success is the AUC of its scores against the true labels
(:func:`graphrec.metrics.auc`, equal to :func:`sklearn.metrics.roc_auc_score`; 0.5 is
chance). The gradients come from a :class:`~graphrec.federated.vertical.log.MessageLog` with
``keep_payloads=True``: every ``gradient`` message to the party with the aligned positions of
its rows (which the party knows: it derived or received the batch).
Clipping and Gaussian noise on the returned gradients
(:class:`~graphrec.federated.vertical.dp.GaussianDP` with target ``"gradient"``) is the
protection whose effect the AUC measures.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from graphrec.errors import ConfigError
from graphrec.federated.vertical.log import MessageLog

__all__ = ["direction_scores", "norm_scores", "received_gradients"]


def received_gradients(log: MessageLog, party: str) -> list[tuple[Tensor, Tensor]]:
    """Per step, the aligned positions ``[B]`` and the gradient rows ``[B, d]`` that ``party``
    received, from a log that kept its payloads."""
    out = []
    for m in log:
        if m.receiver != party or m.kind != "gradient":
            continue
        if m.payload is None or m.rows is None:
            raise ConfigError("log must keep its payloads (MessageLog(keep_payloads=True))")
        if not isinstance(m.payload, Tensor):
            raise ConfigError(f"log must hold uncompressed gradient tensors sent to {party!r}")
        out.append((m.rows, m.payload))
    if not out:
        raise ConfigError(f"log holds no gradient sent to party {party!r}")
    return out


def norm_scores(gradients: Tensor) -> Tensor:
    """Norm attack: the :math:`L_2` norm of every gradient row, ``[B, d] -> [B]``."""
    return torch.linalg.vector_norm(gradients, dim=-1)


def direction_scores(gradients: Tensor, known: int) -> Tensor:
    """Direction attack: cosine of every gradient row with row ``known`` of the same batch (a
    row known to be positive), ``[B, d] -> [B]``."""
    if not 0 <= known < gradients.shape[0]:
        raise ConfigError(f"known must be a row in 0..{gradients.shape[0] - 1}; got {known}")
    return F.cosine_similarity(gradients, gradients[known].expand_as(gradients), dim=-1)
