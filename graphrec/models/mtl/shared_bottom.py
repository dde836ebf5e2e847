"""Shared-Bottom: one MLP shared by every task, one tower per task (Caruana, 1997)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from graphrec.models.ctr.features import CTRFeatures
from graphrec.models.mtl.base import MTLModel
from graphrec.models.mtl.defaults import SHARED_BOTTOM_DEFAULTS as D
from graphrec.models.mtl.defaults import SharedBottomConfig
from graphrec.nn.mlp import MLP
from graphrec.registry import MTL_MODELS

__all__ = ["SharedBottom"]


@MTL_MODELS.register("shared", config=SharedBottomConfig)
class SharedBottom(MTLModel):
    r"""Shared-Bottom multi-task network (Caruana, "Multitask Learning", Machine Learning 28,
    1997):

    .. math::
        \mathbf{h}_t = \mathrm{MLP}_{\text{bottom}}(\mathbf{x}), \qquad
        z_t = \mathrm{MLP}_t(\mathbf{h}_t) \qquad (t = 1, \dots, T)

    with :math:`\mathbf{x}` the flattened field embeddings; every task reads the same bottom
    output.

    Args:
        features: the :class:`~graphrec.models.ctr.CTRFeatures` the model reads.
        num_tasks: number of binary tasks.
        embedding_dim: embedding size :math:`d`.
        bottom_channels: hidden sizes of the shared bottom (its last one is :math:`H`).
        tower_channels: hidden sizes of every tower.
        dropout: dropout after every hidden activation.

    Shapes:
        - **input:** a batch ``dict[str, Tensor]``
        - **output:** logits :math:`(B, T)`; tower inputs :math:`T \times (B, H)`
    """

    def __init__(
        self,
        features: CTRFeatures,
        num_tasks: int = 2,
        *,
        embedding_dim: int = D.embedding_dim,
        bottom_channels: Sequence[int] = D.bottom_channels,
        tower_channels: Sequence[int] = D.tower_channels,
        dropout: float = D.dropout,
    ) -> None:
        in_channels = features.num_fields * embedding_dim
        bottom = MLP(in_channels, bottom_channels, None, dropout=dropout)
        super().__init__(features, num_tasks, embedding_dim, bottom.out_channels,
                         tower_channels, dropout)  # fmt: skip
        self.bottom = bottom

    def tower_inputs(self, x: Tensor) -> list[Tensor]:
        h = self.bottom(x)
        return [h] * self.num_tasks
