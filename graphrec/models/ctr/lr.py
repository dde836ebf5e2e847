"""Logistic regression over all features."""

from __future__ import annotations

import torch
from torch import Tensor

from graphrec.models.ctr.base import CTRModel
from graphrec.models.ctr.defaults import LR_DEFAULTS
from graphrec.models.ctr.features import CTRFeatures, EmbeddedFeatures

__all__ = ["LR"]


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
        extra_fields: fields appended by an input module (summed like the others; they must
            then be 1-dimensional).
    """

    def __init__(self, features: CTRFeatures, *, extra_fields: int = 0) -> None:
        super().__init__(features, LR_DEFAULTS.embedding_dim, extra_fields=extra_fields)
        self.bias = torch.nn.Parameter(torch.zeros(1))

    def interact(self, emb: EmbeddedFeatures) -> Tensor:
        return emb.all_fields().sum(dim=(1, 2)) + self.bias
