"""DIN: Deep Interest Network (target attention over behaviour histories)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from graphrec.errors import ConfigError
from graphrec.models.ctr.base import MLP, CTRModel
from graphrec.models.ctr.defaults import DIN_DEFAULTS, DINConfig
from graphrec.models.ctr.features import CTRFeatures, EmbeddedFeatures
from graphrec.nn.target_attention import TargetAttention
from graphrec.registry import CTR_MODELS

__all__ = ["DIN"]


@CTR_MODELS.register("din", config=DINConfig)
class DIN(CTRModel):
    r"""DIN from `"Deep Interest Network for Click-Through Rate Prediction"
    <https://arxiv.org/abs/1706.06978>`_ (Zhou et al., KDD 2018).

    For every behaviour pair (history sequence :math:`H`, target feature :math:`v`) sharing one
    embedding table, the history is pooled by target attention
    (:class:`graphrec.nn.target_attention.TargetAttention`, padding masked):

    .. math::
        \mathbf{h}_H = \sum_{j=1}^{L} a(\mathbf{e}_{H_j}, \mathbf{e}_v)\, \mathbf{e}_{H_j},
        \qquad
        \hat{y} = \sigma\big( \mathrm{MLP}([\mathbf{e}_1 \Vert \cdots \Vert \mathbf{e}_{F_0}
        \Vert \mathbf{h}_{H_1} \Vert \cdots]) \big)

    Other sequences (without a target) are mean-pooled. Returns the logit;
    :meth:`attention_weights` gives the per-position weights for inspection.

    Defaults: :data:`graphrec.models.ctr.defaults.DIN_DEFAULTS`.

    Args:
        features: the :class:`CTRFeatures`.
        embedding_dim: embedding size ``d``.
        hidden_channels: hidden sizes of the output MLP (PReLU).
        behaviours: ``(sequence, target)`` feature-name pairs; default: every sequence paired
            with the sparse feature that owns its table (e.g. ``click_sequence`` with
            ``adgroup_id``). Each pair must share a table.
        attention_hidden: hidden sizes of the attention MLP.
        softmax: normalise the attention weights (the paper does not; the default does).
        dropout: MLP dropout.
        extra_fields: ``[B, d]`` fields appended by an input module.
    """

    def __init__(
        self,
        features: CTRFeatures,
        embedding_dim: int = DIN_DEFAULTS.embedding_dim,
        hidden_channels: Sequence[int] = DIN_DEFAULTS.hidden_channels,
        *,
        behaviours: Sequence[tuple[str, str]] | None = None,
        attention_hidden: Sequence[int] = DIN_DEFAULTS.attention_hidden,
        softmax: bool = DIN_DEFAULTS.softmax,
        dropout: float = DIN_DEFAULTS.dropout,
        extra_fields: int = 0,
    ) -> None:
        super().__init__(features, embedding_dim, extra_fields=extra_fields)
        self.behaviours = (
            self._default_behaviours(features) if behaviours is None else list(behaviours)
        )
        if not self.behaviours:
            raise ConfigError("DIN needs at least one (sequence, target) behaviour pair")
        for seq, target in self.behaviours:
            s, t = features[seq], features[target]
            if s.kind != "sequence" or t.kind != "sparse" or s.table != t.table:
                raise ConfigError(
                    f"behaviour ({seq!r}, {target!r}) must pair a sequence with a sparse feature "
                    f"of the same table; got {s.kind} {s.table!r} and {t.kind} {t.table!r}"
                )
        if len({seq for seq, _ in self.behaviours}) != len(self.behaviours):
            raise ConfigError(f"each sequence may appear in one behaviour pair: {self.behaviours}")
        self.attention = torch.nn.ModuleList(
            [TargetAttention(embedding_dim, attention_hidden, softmax) for _ in self.behaviours]
        )
        self._target_index = [
            [s.name for s in features.sparse].index(t) for _, t in self.behaviours
        ]
        self.mlp = MLP(
            self.num_fields * embedding_dim, hidden_channels, 1, dropout=dropout, activation="prelu"
        )

    @staticmethod
    def _default_behaviours(features: CTRFeatures) -> list[tuple[str, str]]:
        sparse = {s.name: s for s in features.sparse}
        pairs = []
        for s in features.sequence:
            if s.table in sparse and sparse[s.table].table == s.table:
                pairs.append((s.name, s.table))
            else:
                same = [t.name for t in features.sparse if t.table == s.table]
                if same:
                    pairs.append((s.name, same[0]))
        return pairs

    def _attend(self, emb: EmbeddedFeatures) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        pooled, weights = {}, {}
        for (seq, _), index, att in zip(self.behaviours, self._target_index, self.attention):
            query = emb.fields[:, index]
            pooled[seq], weights[seq] = att(query, emb.sequences[seq], emb.masks[seq])
        return pooled, weights

    def interact(self, emb: EmbeddedFeatures) -> Tensor:
        pooled, _ = self._attend(emb)
        return self.mlp(emb.all_fields(replace=pooled).flatten(1)).squeeze(-1)

    @torch.no_grad()
    def attention_weights(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Sequence name -> attention weights ``[B, L]`` (exactly 0 at padded positions)."""
        return self._attend(self.embed(batch))[1]
