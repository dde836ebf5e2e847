"""Graph Reversed Attention (GRAT) layer of FastCover."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Linear, Parameter
from torch_geometric.nn import MessagePassing

from graphrec.nn.segment import EdgeSegments, segment_softmax, segment_sum


class GRATConv(MessagePassing):
    r"""The Graph Reversed Attention operator from the `"FastCover: An Unsupervised Learning
    Framework for Multi-Hop Influence Maximization in Social Networks"
    <https://arxiv.org/abs/2111.00463>`_ paper.

    An edge :math:`u \to v` means that :math:`u` *covers* :math:`v`. Every covered node spreads one
    unit of credit over its coverers, so the attention is normalised over the **coverers of the
    covered node** :math:`v` (not over the neighbours of the receiver as in GAT):

    .. math::
        e_{uv} &= \mathrm{ReLU}\left(\mathbf{a}^{\top}[\mathbf{x}_v \,\Vert\, \mathbf{x}_u]
        + c\right)

        \alpha_{uv} &= \frac{\exp(e_{uv})}{\sum_{w \in \mathcal{N}^-(v)} \exp(e_{wv})}

        \mathbf{x}^{\prime}_u &= \mathbf{W} \sum_{v \in \mathcal{N}^+(u)}
        \omega_v \, \alpha_{uv} \, \mathbf{x}_v + \mathbf{b}

    where :math:`\mathcal{N}^+(u)` are the successors of :math:`u`, :math:`\mathcal{N}^-(v)` the
    predecessors of :math:`v` and :math:`\omega_v` an optional per-target weight (1 by default; 0
    removes :math:`v` as a target, e.g. once it is covered). Messages flow from :math:`v` to
    :math:`u` against the edge direction; nodes without successors receive
    :math:`\mathbf{x}^{\prime}_u = \mathbf{b}`. No self-loops are added. With constant inputs,
    :math:`\alpha_{uv} = 1 / \deg^-(v)` and the aggregate is the soft-coverage count
    :math:`\sum_{v \in \mathcal{N}^+(u)} 1 / \deg^-(v)`.

    The softmax and the sum go through :func:`graphrec.nn.segment.segment_softmax` and
    :func:`graphrec.nn.segment.segment_sum`, so the layer follows the aggregation mode
    (:func:`graphrec.nn.segment.aggregation_mode`): scatter for training, a dense incidence
    matmul or host-sorted CSR segments for export (the ``"csr"`` mode needs ``segments``).
    With ``chunks`` (scatter mode, inference) the edges are processed a chunk at a time, so no
    ``[|E|, F]`` tensor of the whole graph exists: memory
    :math:`O(|\mathcal{E}| + |\mathcal{V}| F + c F)` for chunks of :math:`c` edges, the same
    output (bit for bit on the CPU, where ``scatter_add_`` sums in edge order).

    Args:
        in_channels (int): Size of each input sample :math:`F_{in}`.
        out_channels (int): Size of each output sample :math:`F_{out}`.
        bias (bool, optional): If set to :obj:`False`, the layer will not learn the additive
            bias :math:`\mathbf{b}`. (default: :obj:`True`)
        **kwargs (optional): Additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:**
          node features :math:`(|\mathcal{V}|, F_{in})`,
          edge indices :math:`(2, |\mathcal{E}|)` in the original orientation
          (row 0 = coverer :math:`u`, row 1 = covered :math:`v`),
          target weights :math:`(|\mathcal{V}|)` *(optional)*,
          segments :class:`graphrec.nn.segment.EdgeSegments` *(optional, "csr" mode)*,
          chunks: edge selections (slices or ``[c]`` index tensors) *(optional)*
        - **output:** node features :math:`(|\mathcal{V}|, F_{out})`
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True, **kwargs) -> None:
        super().__init__(aggr="add", flow="target_to_source", node_dim=0, **kwargs)
        self.in_channels = in_channels
        self.out_channels = out_channels
        # a = [a_covered || a_coverer]; c is the scalar attention bias.
        self.att = Parameter(torch.empty(2 * in_channels))
        self.att_bias = Parameter(torch.empty(1))
        self.lin = Linear(in_channels, out_channels, bias=bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        # PyTorch's default init of the Linear(2 * in_channels, 1) that holds [a; c].
        bound = 1.0 / (2 * self.in_channels) ** 0.5
        torch.nn.init.uniform_(self.att, -bound, bound)
        torch.nn.init.uniform_(self.att_bias, -bound, bound)
        self.lin.reset_parameters()

    def forward(
        self,
        x: Tensor,
        edge_index: Tensor,
        target_weight: Tensor | None = None,
        segments: EdgeSegments | None = None,
        chunks: Iterable[slice | Tensor] | None = None,
    ) -> Tensor:
        """Runs the layer.

        Args:
            x: node features ``[n, in_channels]``.
            edge_index: edges ``[2, m]``, row 0 = coverer ``u``, row 1 = covered ``v``.
            target_weight: optional ``[n]`` weight of each node as a target (0 drops it).
            segments: CSR layouts of ``edge_index`` (``EdgeSegments.from_edge_index``),
                needed in the ``"csr"`` aggregation mode only.
            chunks: edge positions (slices or index tensors, iterated three times) that
                partition the edges in edge order; the layer then runs a chunk at a time
                (``"scatter"`` mode, inference), with the output of the unchunked layer.
        """
        att_covered = x @ self.att[: self.in_channels]
        att_coverer = x @ self.att[self.in_channels :]
        if chunks is not None:
            return self.lin(
                self._chunked(x, edge_index, att_coverer, att_covered, target_weight, chunks)
            )
        # flow="target_to_source": "_i" is edge_index[0] (coverer), "_j" is edge_index[1].
        out = self.propagate(
            edge_index,
            x=x,
            att_coverer=att_coverer,
            att_covered=att_covered,
            target_weight=target_weight,
            segments=segments,
            size=(x.size(0), x.size(0)),
        )
        return self.lin(out)

    def message(
        self,
        x_j: Tensor,
        att_coverer_i: Tensor,
        att_covered_j: Tensor,
        target_weight_j: Tensor | None,
        edge_index_j: Tensor,
        size_j: int,
        segments: EdgeSegments | None,
    ) -> Tensor:
        logit = self._logit(att_coverer_i, att_covered_j)
        by_covered = None if segments is None else segments.col
        alpha = segment_softmax(logit, edge_index_j, size_j, by_covered)
        if target_weight_j is not None:
            alpha = alpha * target_weight_j
        return alpha.unsqueeze(-1) * x_j

    def _logit(self, att_coverer_i: Tensor, att_covered_j: Tensor) -> Tensor:
        """Attention logits :math:`e_{uv}` of the edges with these endpoint terms."""
        return F.relu(att_covered_j + att_coverer_i + self.att_bias)

    def _chunked(
        self,
        x: Tensor,
        edge_index: Tensor,
        att_coverer: Tensor,
        att_covered: Tensor,
        target_weight: Tensor | None,
        chunks: Iterable[slice | Tensor],
    ) -> Tensor:
        """The aggregate of :meth:`propagate` a chunk of edges at a time: the softmax maximum
        and denominator of every covered node (one scalar per edge kept), then the sums."""
        n = x.size(0)
        edge = x.new_empty(edge_index.size(1))  # logits, then their exponentials
        shift = x.new_full((n,), float("-inf"))
        for part in chunks:
            u, v = edge_index[:, part]
            edge[part] = logit = self._logit(att_coverer[u], att_covered[v])
            shift.scatter_reduce_(0, v, logit, "amax")
        total = x.new_zeros(n)
        for part in chunks:
            v = edge_index[1, part]
            edge[part] = exp = (edge[part] - shift[v]).exp()
            total.scatter_add_(0, v, exp)
        total += 1e-16
        out = x.new_zeros(n, x.size(1))
        for part in chunks:
            u, v = edge_index[:, part]
            alpha = edge[part] / total[v]
            if target_weight is not None:
                alpha = alpha * target_weight[v]
            msg = alpha.unsqueeze(-1) * x[v]
            out.scatter_add_(0, u.unsqueeze(-1).expand_as(msg), msg)
        return out

    def aggregate(
        self, inputs: Tensor, index: Tensor, dim_size: int, segments: EdgeSegments | None
    ) -> Tensor:
        return segment_sum(inputs, index, dim_size, None if segments is None else segments.row)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.in_channels}, {self.out_channels})"
