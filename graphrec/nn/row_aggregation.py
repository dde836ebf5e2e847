"""Server-side aggregation of sparse row updates over a round's device -> row edges."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torch_geometric.nn import MessagePassing

from graphrec.nn.segment import Segments, segment_sum

# No __all__: PyG's generated ``propagate`` star-imports this module and needs the
# ``Segments`` annotation's name.


class RowAggregate(NamedTuple):
    """The output of :class:`RowAggregation` (``R`` rows)."""

    total: Tensor  #: ``[R, F]`` weighted sum of the deltas
    weight: Tensor  #: ``[R]`` sum of the weights of the devices touching the row
    count: Tensor  #: ``[R]`` number of devices touching the row


class RowAggregation(MessagePassing):
    r"""The row aggregation of federated submodel training (FedAvg with sparse row updates,
    involved-participant averaging, `"Federated Submodel Optimization for Hot and Cold Data
    Features" <https://arxiv.org/abs/2109.07704>`_): over the round's device -> row edges
    :math:`(i, j)` of the device-cloud graph (:class:`graphrec.graphs.DeviceCloudGraph`,
    device :math:`i` updated row :math:`j`, :math:`j \in S_i`), each edge carrying the
    device's delta :math:`\Delta_{ij}`,

    .. math::
        \mathbf{t}_j = \sum_{i:\, j \in S_i} w_i \Delta_{ij}, \qquad
        s_j = \sum_{i:\, j \in S_i} w_i, \qquad
        c_j = \left|\{ i : j \in S_i \}\right|

    with :math:`w_i` the device's aggregation weight. The three sums are one message-passing
    sum of the messages :math:`[w_i \Delta_{ij} \,\Vert\, w_i \,\Vert\, 1]` through
    :func:`graphrec.nn.segment.segment_sum`, so the layer follows the aggregation mode
    (:func:`graphrec.nn.segment.aggregation_mode`; ``"csr"`` needs ``segments``). In the
    ``"scatter"`` mode each row's terms are added in edge order, as a loop of ``index_add_``
    over the devices would. The strategies of :mod:`graphrec.federated.strategies` build
    their row updates from these sums. No parameters.

    Shapes:
        - **input:**
          edge deltas :math:`(|\mathcal{E}|, F)`,
          edge indices :math:`(2, |\mathcal{E}|)` (row 0: device slot, row 1: row),
          device weights :math:`(K)`,
          segments :class:`graphrec.nn.segment.Segments` of ``edge_index[1]``
          *(optional, "csr" mode)*
        - **output:** :class:`RowAggregate` of :math:`(R, F)`, :math:`(R)`, :math:`(R)`
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(aggr="add", node_dim=0, **kwargs)

    def forward(
        self,
        edge_attr: Tensor,
        edge_index: Tensor,
        weight: Tensor,
        num_rows: int,
        segments: Segments | None = None,
    ) -> RowAggregate:
        """Runs the layer.

        Args:
            edge_attr: ``[E, F]`` the delta of each edge's row.
            edge_index: ``[2, E]`` device slot (``0..K-1``) -> row (``0..R-1``).
            weight: ``[K]`` aggregation weight of each device.
            num_rows: ``R``.
            segments: CSR layout of ``edge_index[1]`` (``Segments.from_index``), needed in
                the ``"csr"`` aggregation mode only.
        """
        out = self.propagate(
            edge_index,
            edge_attr=edge_attr,
            weight=weight,
            segments=segments,
            size=(weight.shape[0], num_rows),
        )
        return RowAggregate(out[:, :-2], out[:, -2], out[:, -1])

    def message(self, edge_attr: Tensor, weight_j: Tensor) -> Tensor:
        w = weight_j.unsqueeze(-1)
        return torch.cat([w * edge_attr, w, torch.ones_like(w)], dim=-1)

    def aggregate(
        self, inputs: Tensor, index: Tensor, dim_size: int, segments: Segments | None
    ) -> Tensor:
        return segment_sum(inputs, index, dim_size, segments)
