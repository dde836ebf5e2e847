"""Common base of the CTR models: embedding part -> dense part -> one logit per sample."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from graphrec.errors import ConfigError
from graphrec.models.ctr.defaults import WIDEDEEP_DEFAULTS
from graphrec.models.ctr.features import CTRFeatures, EmbeddedFeatures, FeatureEmbedding
from graphrec.nn.mlp import MLP

__all__ = ["CTRModel", "MLP"]


class CTRModel(torch.nn.Module):
    """Base class: ``forward(batch) = interact(embed(batch))``, a logit ``[B]`` per sample.

    Subclasses implement :meth:`interact` (the dense part). :attr:`embedding` is the whole
    embedding part, so an input module (such as HIEN) or an on-device fine-tuner can replace or
    freeze it without touching the dense part, and vice versa.

    Args:
        features: the :class:`CTRFeatures` the model reads.
        embedding_dim: embedding size ``d``.
        linear: whether the embedding part also holds first-order weights.
        extra_fields: number of ``[B, d]`` fields an input module appends
            (:attr:`EmbeddedFeatures.extra`); 0 for a plain model.
    """

    def __init__(
        self,
        features: CTRFeatures,
        embedding_dim: int,
        *,
        linear: bool = False,
        extra_fields: int = 0,
    ) -> None:
        super().__init__()
        if extra_fields < 0:
            raise ConfigError(f"extra_fields must be >= 0; got {extra_fields}")
        self.features = features
        self.embedding_dim = embedding_dim
        self.extra_fields = extra_fields
        self.embedding = FeatureEmbedding(features, embedding_dim, linear=linear)
        #: fields seen by the dense part: every feature (sequences pooled) plus the extras.
        self.num_fields = features.num_fields + extra_fields

    def embed(
        self, batch: dict[str, Tensor], tables: dict[str, Tensor] | None = None
    ) -> EmbeddedFeatures:
        """The embedding part (``tables``: replacement table weights, see
        :meth:`FeatureEmbedding.forward`)."""
        return self.embedding(batch, tables)

    def interact(self, emb: EmbeddedFeatures) -> Tensor:
        """The dense part: logits ``[B]`` from the embedded features."""
        raise NotImplementedError

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        """Click logits ``[B]`` (apply a sigmoid for probabilities)."""
        return self.interact(self.embed(batch))

    @torch.no_grad()
    def predict_proba(self, batch: dict[str, Tensor]) -> Tensor:
        """Click probabilities ``[B]`` (no gradient; switch to ``eval()`` first for dropout)."""
        return torch.sigmoid(self(batch))


class _WideAndDeepModel(CTRModel):
    """Shared part of Wide & Deep and DeepFM: a first-order (wide) term ``b + sum_f w_f(x_f)``
    and an MLP over the concatenated field embeddings (deep term). Arguments as documented on
    :class:`~graphrec.models.ctr.WideDeep`.
    """

    def __init__(
        self,
        features: CTRFeatures,
        embedding_dim: int = WIDEDEEP_DEFAULTS.embedding_dim,
        hidden_channels: Sequence[int] = WIDEDEEP_DEFAULTS.hidden_channels,
        *,
        dropout: float = WIDEDEEP_DEFAULTS.dropout,
        extra_fields: int = 0,
    ) -> None:
        super().__init__(features, embedding_dim, linear=True, extra_fields=extra_fields)
        self.bias = torch.nn.Parameter(torch.zeros(1))
        self.mlp = MLP(self.num_fields * embedding_dim, hidden_channels, 1, dropout=dropout)

    def wide(self, emb: EmbeddedFeatures) -> Tensor:
        """First-order logits ``b + sum_f w_f(x_f)``, ``[B]``."""
        return emb.linear.sum(dim=1) + self.bias

    def deep(self, fields: Tensor) -> Tensor:
        """MLP logits ``[B]`` from the stacked fields ``[B, F, d]``."""
        return self.mlp(fields.flatten(1)).squeeze(-1)
