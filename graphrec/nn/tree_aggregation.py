"""One bottom-up step of HIEN's attribute-tree aggregation (children -> parents)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import degree as pyg_degree

from graphrec.errors import ConfigError
from graphrec.nn.segment import Segments, segment_sum
from graphrec.registry import HIEN_AGGREGATORS

# No __all__: PyG's generated ``propagate`` star-imports this module and needs the
# ``Segments`` annotation's name.

#: The aggregator names of HIEN's official code (``--tree_type``).
TREE_AGGREGATORS = ("gcn", "ngcf", "lightgcn", "cp")


class TreeAggregation(MessagePassing):
    r"""Refines parent embeddings from their (already refined) children, one tree level at a
    time, as in the bottom-up aggregation of `"Hierarchical Intention Embedding Network for
    Click-Through Rate Prediction" <https://arxiv.org/abs/2206.00510>`_ (HIEN, Zheng et al.,
    SIGIR 2022).

    For a parent :math:`p` with children :math:`\mathcal{C}(p)` (edges child -> parent):

    .. math::
        \text{gcn:}\quad \mathbf{e}'_p &= \sigma\Big( \mathbf{W}\,
        \frac{\mathbf{e}_p + \sum_{c \in \mathcal{C}(p)} \mathbf{e}_c}{|\mathcal{C}(p)| + 1}
        \Big)

        \text{ngcf:}\quad \mathbf{e}'_p &= \sigma\Big( \mathbf{W}_1 \mathbf{e}_p +
        \sum_{c \in \mathcal{C}(p)} \frac{\mathbf{W}_1 \mathbf{e}_c + \mathbf{W}_2
        (\mathbf{e}_c \odot \mathbf{e}_p)}{\sqrt{|\mathcal{C}(p)|}} \Big)

        \text{lightgcn:}\quad \mathbf{e}'_p &= \mathbf{e}_p + \sum_{c \in \mathcal{C}(p)}
        \frac{\mathbf{e}_c}{\sqrt{|\mathcal{C}(p)|}}

        \text{cp:}\quad \mathbf{e}'_p &= \mathbf{W} \big[ \mathbf{e}_p \,\Vert\, \mathbf{m}_p
        \,\Vert\, \mathbf{e}_p \odot \mathbf{m}_p \big], \qquad
        \mathbf{m}_p = \frac{1}{|\mathcal{C}(p)|} \sum_{c \in \mathcal{C}(p)} \mathbf{e}_c

    with :math:`\sigma` = LeakyReLU (slope 0.2) and linear maps without bias. Every mode only
    needs the children's sum :math:`\mathbf{s}_p = \sum_c \mathbf{e}_c` (for ngcf,
    :math:`\sum_c \mathbf{W}_2 (\mathbf{e}_c \odot \mathbf{e}_p) = \mathbf{W}_2
    (\mathbf{s}_p \odot \mathbf{e}_p)`), one message-passing sum per step (messages
    :math:`\mathbf{e}_c` along child -> parent edges). A parent without
    children gets the same formula with an empty sum (:math:`\mathbf{m}_p = \mathbf{0}`), so
    the output table keeps the input's shape. The equations follow the aggregator names of
    HIEN's official code (GCN, NGCF, LightGCN, Concat&Product); their exact form in the paper
    is not available (a design choice).

    The children's sum goes through :func:`graphrec.nn.segment.segment_sum`, so the layer
    follows the aggregation mode (:func:`graphrec.nn.segment.aggregation_mode`): scatter for
    training, a dense incidence matmul or host-sorted CSR segments for export (the ``"csr"``
    mode needs ``segments``).

    Args:
        channels (int): Embedding size :math:`d` of children and parents.
        mode (str, optional): ``"gcn"``, ``"ngcf"``, ``"lightgcn"`` or ``"cp"``.
            (default: :obj:`"gcn"`)
        negative_slope (float, optional): LeakyReLU slope of ``gcn`` and ``ngcf``.
            (default: :obj:`0.2`)

    Shapes:
        - **input:** children :math:`(N_c, d)`, parents :math:`(N_p, d)`, edge_index
          :math:`(2, E)` (row 0: child id, row 1: parent id), deg :math:`(N_p, 1)`
          *(optional)*, segments :class:`graphrec.nn.segment.Segments` of ``edge_index[1]``
          *(optional, "csr" mode)*
        - **output:** refined parents :math:`(N_p, d)`
    """

    def __init__(self, channels: int, mode: str = "gcn", negative_slope: float = 0.2) -> None:
        super().__init__(aggr="add", node_dim=0)
        if mode not in TREE_AGGREGATORS:
            raise ConfigError(f"mode must be one of {TREE_AGGREGATORS}; got {mode!r}")
        self.channels = channels
        self.mode = mode
        self.negative_slope = negative_slope
        if mode in ("gcn", "ngcf"):
            self.lin = torch.nn.Linear(channels, channels, bias=False)
        if mode == "ngcf":
            self.lin_prod = torch.nn.Linear(channels, channels, bias=False)
        if mode == "cp":
            self.lin = torch.nn.Linear(3 * channels, channels, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        for name in ("lin", "lin_prod"):
            if hasattr(self, name):
                getattr(self, name).reset_parameters()

    def forward(
        self,
        x_child: Tensor,
        x_parent: Tensor,
        edge_index: Tensor,
        deg: Tensor | None = None,
        segments: Segments | None = None,
    ) -> Tensor:
        """Runs the layer.

        Args:
            x_child: ``[N_c, d]`` children.
            x_parent: ``[N_p, d]`` parents.
            edge_index: ``[2, E]`` child -> parent.
            deg: optional ``[N_p, 1]`` number of children per parent (counted from
                ``edge_index`` when omitted; pass :meth:`degree` to save the count when the
                tree is fixed).
            segments: CSR layout of ``edge_index[1]`` (``Segments.from_index``), needed in
                the ``"csr"`` aggregation mode only.
        """
        if deg is None:  # the count in the aggregation mode (export: no scatter)
            ones = x_parent.new_ones(edge_index.shape[1])
            deg = segment_sum(ones, edge_index[1], x_parent.shape[0], segments).unsqueeze(-1)
        return self._step(
            x_child, x_parent, edge_index, deg, lambda name, x: getattr(self, name)(x), segments
        )

    @staticmethod
    def forward_groups(
        layers: Sequence[TreeAggregation],
        x_child: Tensor,
        x_parent: Tensor,
        edge_index: Tensor,
        deg: Tensor,
        group: Tensor,
        segments: Segments | None = None,
    ) -> Tensor:
        """Several trees' steps at once (one message-passing sum and one batched product
        per linear map for all): parent ``p`` of the stacked parents is refined by
        ``layers[group[p]]`` (all layers of one mode). Equal to each layer on its own tree.

        Args:
            layers: one layer per tree.
            x_child: ``[N_c, d]`` the children of every tree, stacked.
            x_parent: ``[N_p, d]`` the parents of every tree, stacked.
            edge_index: ``[2, E]`` child -> parent, into the stacked tables.
            deg: ``[N_p, 1]`` children per parent.
            group: ``[N_p]`` int64, the layer of each parent.
            segments: CSR layout of ``edge_index[1]`` (``"csr"`` aggregation mode only).
        """
        if len({layer.mode for layer in layers}) != 1:
            raise ConfigError("forward_groups needs layers of one mode")

        # row p of the product with every layer's map stacked: its own layer's block
        pick = torch.arange(len(group), device=group.device) * len(layers) + group

        def lin(name: str, x: Tensor) -> Tensor:
            weight = torch.cat([getattr(layer, name).weight for layer in layers])
            return (x @ weight.T).view(len(pick) * len(layers), -1).index_select(0, pick)

        return layers[0]._step(x_child, x_parent, edge_index, deg, lin, segments)

    def _step(
        self,
        x_child: Tensor,
        x_parent: Tensor,
        edge_index: Tensor,
        deg: Tensor,
        lin: Callable[[str, Tensor], Tensor],
        segments: Segments | None,
    ) -> Tensor:
        """The equations, with ``lin(name, x)`` applying the linear map ``name``."""
        total = self.propagate(
            edge_index,
            x=(x_child, x_parent),
            segments=segments,
            size=(x_child.shape[0], x_parent.shape[0]),
        )
        if self.mode == "gcn":
            out = lin("lin", (x_parent + total) / (deg + 1.0))
            return F.leaky_relu(out, self.negative_slope)
        if self.mode == "ngcf":
            msg = lin("lin", total) + lin("lin_prod", total * x_parent)
            out = lin("lin", x_parent) + msg / deg.clamp(min=1.0).sqrt()
            return F.leaky_relu(out, self.negative_slope)
        if self.mode == "lightgcn":
            return x_parent + total / deg.clamp(min=1.0).sqrt()
        mean = total / deg.clamp(min=1.0)
        return lin("lin", torch.cat([x_parent, mean, x_parent * mean], dim=-1))

    def message(self, x_j: Tensor) -> Tensor:
        return x_j

    def aggregate(
        self, inputs: Tensor, index: Tensor, dim_size: int, segments: Segments | None
    ) -> Tensor:
        return segment_sum(inputs, index, dim_size, segments)

    @staticmethod
    def degree(edge_index: Tensor, num_parents: int) -> Tensor:
        """``[N_p, 1]`` float32: the number of children of every parent."""
        return pyg_degree(edge_index[1], num_parents, dtype=torch.float32).unsqueeze(-1)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.channels}, mode={self.mode!r})"


for _mode in TREE_AGGREGATORS:
    HIEN_AGGREGATORS.register(_mode, partial(TreeAggregation, mode=_mode))
