"""Wide & Deep."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from graphrec.models.ctr.base import MLP, CTRModel
from graphrec.models.ctr.features import CTRFeatures, EmbeddedFeatures

__all__ = ["WideDeep"]


class WideDeep(CTRModel):
    r"""Wide & Deep from `"Wide & Deep Learning for Recommender Systems"
    <https://arxiv.org/abs/1606.07792>`_ (Cheng et al., DLRS 2016):

    .. math::
        \hat{y} = \sigma\Big( \underbrace{b + \sum_f w_f(x_f)}_{\text{wide}}
        + \underbrace{\mathrm{MLP}\big([\mathbf{e}_1 \Vert \cdots \Vert \mathbf{e}_F]\big)}
        _{\text{deep}} \Big)

    The wide part is first-order over the raw features (no hand-made cross features, as in
    FuxiCTR and DeepCTR); the deep part is an MLP over the concatenated field embeddings
    (sequences mean-pooled). Returns the logit.

    Args:
        features: the :class:`CTRFeatures`.
        embedding_dim: embedding size ``d``.
        hidden_channels: MLP hidden sizes.
        dropout: MLP dropout.
        extra_fields: ``[B, d]`` fields appended by an input module.
    """

    def __init__(
        self,
        features: CTRFeatures,
        embedding_dim: int = 16,
        hidden_channels: Sequence[int] = (64, 32),
        *,
        dropout: float = 0.0,
        extra_fields: int = 0,
    ) -> None:
        super().__init__(features, embedding_dim, linear=True, extra_fields=extra_fields)
        self.bias = torch.nn.Parameter(torch.zeros(1))
        self.mlp = MLP(self.num_fields * embedding_dim, hidden_channels, 1, dropout=dropout)

    def interact(self, emb: EmbeddedFeatures) -> Tensor:
        wide = emb.linear.sum(dim=1) + self.bias
        deep = self.mlp(emb.all_fields().flatten(1)).squeeze(-1)
        return wide + deep
