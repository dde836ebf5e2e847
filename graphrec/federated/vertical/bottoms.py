"""A party's bottom model over id and dense features: the CTR feature embedding, then an MLP."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from graphrec.errors import ConfigError
from graphrec.models.ctr.features import CTRFeatures, FeatureEmbedding
from graphrec.nn.mlp import MLP


class EmbeddingBottom(torch.nn.Module):
    r"""Bottom model of a party whose table mixes id (sparse) and dense columns.

    .. math::
        \mathbf{h} = \mathrm{MLP}\big(\mathbf{e}_1 \,\|\, \dots \,\|\, \mathbf{e}_F\big)

    with :math:`\mathbf{e}_f` the :class:`~graphrec.models.ctr.features.FeatureEmbedding` field
    of column :math:`f` (an id's table row, or a standardised dense value times a learned
    vector). The split learner sends float tables, so id columns hold their integer codes as
    floats.

    Args:
        features: the party's columns, sparse and dense only, in table-column order.
        embedding_dim: size of every field embedding.
        hidden_channels: hidden sizes of the MLP.
        out_channels: width of the embedding sent up.

    Shapes:
        - **input:** ``[B, F]`` (``F = len(features.specs)``)
        - **output:** ``[B, out_channels]``
    """

    def __init__(
        self,
        features: CTRFeatures,
        embedding_dim: int,
        hidden_channels: Sequence[int],
        out_channels: int,
    ) -> None:
        super().__init__()
        if features.sequence:
            names = [s.name for s in features.sequence]
            raise ConfigError(f"features must be sparse or dense; got sequences {names}")
        self.names = [s.name for s in features.specs]
        self.sparse = {s.name for s in features.sparse}
        self.embedding = FeatureEmbedding(features, embedding_dim)
        self.mlp = MLP(len(self.names) * embedding_dim, hidden_channels, out_channels)

    def reset_parameters(self) -> None:
        self.embedding.reset_parameters()
        self.mlp.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        batch = {
            n: x[:, i].long() if n in self.sparse else x[:, i] for i, n in enumerate(self.names)
        }
        return self.mlp(self.embedding(batch).fields.flatten(1))
