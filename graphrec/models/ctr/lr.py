"""Logistic regression over all features."""

from __future__ import annotations

import torch
from torch import Tensor

from graphrec.models.ctr.base import CTRModel
from graphrec.models.ctr.defaults import LR_DEFAULTS, LRConfig
from graphrec.models.ctr.features import CTRFeatures, EmbeddedFeatures
from graphrec.registry import CTR_MODELS

__all__ = ["LR"]


@CTR_MODELS.register("lr", config=LRConfig)
class LR(CTRModel):
    r"""Logistic regression, the classic CTR baseline (e.g. McMahan et al., "Ad Click Prediction:
    a View from the Trenches", KDD 2013):

    .. math::
        \hat{y} = \sigma\Big(b + \sum_{f} w_f(x_f)\Big)

    with one learned weight per id (a 1-dimensional embedding, code 0 = OOV bucket), a weight
    times the standardised value for dense features, and the masked mean of the element weights
    for a sequence (multi-valued feature). Returns the logit.

    Args:
        features: the :class:`CTRFeatures`.
        embedding_dim: size of the per-id weights (1, the classic model, by default; the
            logit sums over it).
        extra_fields: fields appended by an input module (summed like the others, of size
            ``embedding_dim``).
    """

    def __init__(
        self,
        features: CTRFeatures,
        embedding_dim: int = LR_DEFAULTS.embedding_dim,
        *,
        extra_fields: int = 0,
    ) -> None:
        super().__init__(features, embedding_dim, extra_fields=extra_fields)
        self.bias = torch.nn.Parameter(torch.zeros(1))

    def interact(self, emb: EmbeddedFeatures) -> Tensor:
        return emb.all_fields().sum(dim=(1, 2)) + self.bias
