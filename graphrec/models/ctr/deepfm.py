"""DeepFM."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from graphrec.models.ctr.base import _WideAndDeepModel
from graphrec.models.ctr.defaults import DEEPFM_DEFAULTS, DeepFMConfig
from graphrec.models.ctr.features import CTRFeatures, EmbeddedFeatures
from graphrec.nn.fm import FMInteraction
from graphrec.registry import CTR_MODELS

__all__ = ["DeepFM"]


@CTR_MODELS.register("deepfm", config=DeepFMConfig)
class DeepFM(_WideAndDeepModel):
    r"""DeepFM from `"DeepFM: A Factorization-Machine based Neural Network for CTR Prediction"
    <https://arxiv.org/abs/1703.04247>`_ (Guo et al., IJCAI 2017):

    .. math::
        \hat{y} = \sigma\Big( b + \sum_f w_f(x_f)
        + \sum_{i<j} \langle \mathbf{e}_i, \mathbf{e}_j \rangle
        + \mathrm{MLP}\big([\mathbf{e}_1 \Vert \cdots \Vert \mathbf{e}_F]\big) \Big)

    The FM component (first order plus :class:`graphrec.nn.fm.FMInteraction`) and the deep
    component share the field embeddings :math:`\mathbf{e}_f` (sequences mean-pooled, dense
    features as value times vector). Returns the logit.

    Defaults: :data:`graphrec.models.ctr.defaults.DEEPFM_DEFAULTS`.

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
        embedding_dim: int = DEEPFM_DEFAULTS.embedding_dim,
        hidden_channels: Sequence[int] = DEEPFM_DEFAULTS.hidden_channels,
        *,
        dropout: float = DEEPFM_DEFAULTS.dropout,
        extra_fields: int = 0,
    ) -> None:
        super().__init__(
            features, embedding_dim, hidden_channels, dropout=dropout, extra_fields=extra_fields
        )
        self.fm = FMInteraction()

    def interact(self, emb: EmbeddedFeatures) -> Tensor:
        fields = emb.all_fields()
        return self.wide(emb) + self.fm(fields) + self.deep(fields)
