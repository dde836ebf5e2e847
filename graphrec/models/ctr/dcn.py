"""DCN-V2."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from graphrec.errors import ConfigError
from graphrec.models.ctr.base import MLP, CTRModel
from graphrec.models.ctr.defaults import DCNV2_DEFAULTS, DCNv2Config
from graphrec.models.ctr.features import CTRFeatures, EmbeddedFeatures
from graphrec.nn.cross import CrossLayerV2
from graphrec.registry import CTR_MODELS

__all__ = ["DCNv2"]


@CTR_MODELS.register("dcn", config=DCNv2Config)
class DCNv2(CTRModel):
    r"""DCN-V2 from `"DCN V2: Improved Deep & Cross Network and Practical Lessons for Web-scale
    Learning to Rank Systems" <https://arxiv.org/abs/2008.13535>`_ (Wang et al., WWW 2021).

    With :math:`\mathbf{x}_0 = [\mathbf{e}_1 \Vert \cdots \Vert \mathbf{e}_F]` and
    :math:`L` cross layers :math:`\mathbf{x}_{l+1} = \mathbf{x}_0 \odot (\mathbf{W}_l
    \mathbf{x}_l + \mathbf{b}_l) + \mathbf{x}_l` (:class:`graphrec.nn.cross.CrossLayerV2`):

    .. math::
        \text{parallel:}\quad \hat{y} = \sigma\big(\mathbf{w}^{\top}
        [\mathbf{x}_L \Vert \mathrm{MLP}(\mathbf{x}_0)] + b\big) \qquad
        \text{stacked:}\quad \hat{y} = \sigma\big(\mathbf{w}^{\top}
        \mathrm{MLP}(\mathbf{x}_L) + b\big)

    Returns the logit. Fields appended by an input module (``extra_fields``, e.g. HIEN's
    intents) join the deep part's input only, as DIN's MLP input in HIEN's plugging rule
    (HIEN, arXiv 2206.00510), not :math:`\mathbf{x}_0`: the cross layers' cost grows with
    the square of their width (two more fields of 9 would cost 1.5x), and the intents are
    already target-aware interactions.

    Defaults: :data:`graphrec.models.ctr.defaults.DCNV2_DEFAULTS`.

    Args:
        features: the :class:`CTRFeatures`.
        embedding_dim: embedding size ``d``.
        num_cross_layers: number :math:`L` of cross layers.
        hidden_channels: MLP hidden sizes.
        structure: ``"parallel"`` or ``"stacked"``.
        low_rank: rank of the cross matrices (None = full rank).
        dropout: MLP dropout.
        extra_fields: ``[B, d]`` fields appended by an input module.
    """

    def __init__(
        self,
        features: CTRFeatures,
        embedding_dim: int = DCNV2_DEFAULTS.embedding_dim,
        num_cross_layers: int = DCNV2_DEFAULTS.num_cross_layers,
        hidden_channels: Sequence[int] = DCNV2_DEFAULTS.hidden_channels,
        *,
        structure: str = DCNV2_DEFAULTS.structure,
        low_rank: int | None = DCNV2_DEFAULTS.low_rank,
        dropout: float = DCNV2_DEFAULTS.dropout,
        extra_fields: int = 0,
    ) -> None:
        super().__init__(features, embedding_dim, extra_fields=extra_fields)
        if structure not in ("parallel", "stacked"):
            raise ConfigError(f"structure must be 'parallel' or 'stacked'; got {structure!r}")
        width = (self.num_fields - extra_fields) * embedding_dim
        self.structure = structure
        self.cross = torch.nn.ModuleList(
            [CrossLayerV2(width, low_rank) for _ in range(num_cross_layers)]
        )
        self.mlp = MLP(width + extra_fields * embedding_dim, hidden_channels, None,
                       dropout=dropout)  # fmt: skip
        out_in = self.mlp.out_channels + (width if structure == "parallel" else 0)
        self.out = torch.nn.Linear(out_in, 1)

    def interact(self, emb: EmbeddedFeatures) -> Tensor:
        fields = emb.all_fields()
        n_cross = fields.shape[1] - self.extra_fields
        x0 = fields[:, :n_cross].flatten(1)
        x = x0
        for layer in self.cross:
            x = layer(x0, x)
        if self.structure == "parallel":
            h = torch.cat([x, self.mlp(fields.flatten(1))], dim=-1)
        else:
            h = self.mlp(torch.cat([x, fields[:, n_cross:].flatten(1)], dim=-1))
        return self.out(h).squeeze(-1)
