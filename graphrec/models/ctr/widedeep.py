"""Wide & Deep."""

from __future__ import annotations

from torch import Tensor

from graphrec.models.ctr.base import _WideAndDeepModel
from graphrec.models.ctr.defaults import WideDeepConfig
from graphrec.models.ctr.features import EmbeddedFeatures
from graphrec.registry import CTR_MODELS

__all__ = ["WideDeep"]


@CTR_MODELS.register("widedeep", config=WideDeepConfig)
class WideDeep(_WideAndDeepModel):
    r"""Wide & Deep from `"Wide & Deep Learning for Recommender Systems"
    <https://arxiv.org/abs/1606.07792>`_ (Cheng et al., DLRS 2016):

    .. math::
        \hat{y} = \sigma\Big( \underbrace{b + \sum_f w_f(x_f)}_{\text{wide}}
        + \underbrace{\mathrm{MLP}\big([\mathbf{e}_1 \Vert \cdots \Vert \mathbf{e}_F]\big)}
        _{\text{deep}} \Big)

    The wide part is first-order over the raw features (no hand-made cross features, as in
    FuxiCTR and DeepCTR); the deep part is an MLP over the concatenated field embeddings
    (sequences mean-pooled). Returns the logit.

    Defaults: :data:`graphrec.models.ctr.defaults.WIDEDEEP_DEFAULTS`.

    Args:
        features: the :class:`CTRFeatures`.
        embedding_dim: embedding size ``d``.
        hidden_channels: MLP hidden sizes.
        dropout: MLP dropout.
        extra_fields: ``[B, d]`` fields appended by an input module.
    """

    def interact(self, emb: EmbeddedFeatures) -> Tensor:
        return self.wide(emb) + self.deep(emb.all_fields())
