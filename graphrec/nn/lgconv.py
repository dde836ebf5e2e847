"""Light graph convolution (LightGCN propagation) with a scipy fast path and export modes."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor
from torch_geometric.nn.conv import LGConv as PyGLGConv

from graphrec.errors import ConfigError
from graphrec.nn.segment import Segments, segment_sum

# No __all__: PyG's generated ``propagate`` star-imports this module and needs the
# ``Segments`` annotation's name.


class ScipyAdjacency(NamedTuple):
    """A fixed sparse propagation matrix for :class:`LGConv`'s CPU fast path.

    Attributes:
        matrix: ``[N, N]`` scipy CSR ``A^T`` (row ``i`` holds the weights of the edges into
            node ``i``, as PyG's ``adj_t``).
        matrix_t: its transpose (for the backward product).
    """

    matrix: sp.csr_array
    matrix_t: sp.csr_array

    @classmethod
    def from_torch(cls, adj_t: Tensor) -> ScipyAdjacency:
        """From a square torch sparse (COO or CSR) ``adj_t``."""
        if not adj_t.is_sparse and adj_t.layout != torch.sparse_csr:
            raise ConfigError(f"adj_t must be a torch sparse tensor; got layout {adj_t.layout}")
        n = adj_t.shape[0]
        if tuple(adj_t.shape) != (n, n):
            raise ConfigError(f"adj_t must be square; got {tuple(adj_t.shape)}")
        csr = adj_t.cpu().to_sparse_csr()
        matrix = sp.csr_array(
            (csr.values().numpy(), csr.col_indices().numpy(), csr.crow_indices().numpy()),
            shape=(n, n),
        )
        return cls(matrix, sp.csr_array(matrix.T))


class _ScipySpmm(torch.autograd.Function):
    """``y = A x`` with a fixed scipy CSR ``A`` on CPU; backward ``A^T g`` (precomputed CSR).

    scipy's single-threaded CSR product is faster than ``torch.sparse.mm`` and avoids the
    per-call transpose in torch's backward.
    """

    @staticmethod
    def forward(ctx, x: Tensor, matrix: sp.csr_array, matrix_t: sp.csr_array) -> Tensor:
        ctx.matrix_t = matrix_t
        return torch.from_numpy(np.asarray(matrix @ x.detach().numpy()))

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        grad = grad.contiguous().numpy()
        return torch.from_numpy(np.asarray(ctx.matrix_t @ grad)), None, None


class LGConv(PyGLGConv):
    r"""The Light Graph Convolution (LGC) operator from the `"LightGCN: Simplifying and
    Powering Graph Convolution Network for Recommendation" <https://arxiv.org/abs/2002.02126>`_
    paper (PyG's :class:`~torch_geometric.nn.conv.LGConv`, same arguments and results):

    .. math::
        \mathbf{x}^{\prime}_i = \sum_{j \in \mathcal{N}(i)}
        \frac{e_{j,i}}{\sqrt{\deg(i)\deg(j)}} \mathbf{x}_j

    with :math:`\deg(i) = \sum_{j} e_{j,i}` (no self-loops) when ``normalize``, else
    :math:`\mathbf{x}^{\prime}_i = \sum_{j} e_{j,i} \mathbf{x}_j` with already normalised
    weights. Three propagation inputs:

    * an edge list ``[2, E]`` (+ weights): the degree and the sum go through
      :func:`graphrec.nn.segment.segment_sum`, so the layer follows the aggregation mode
      (:func:`graphrec.nn.segment.aggregation_mode`: scatter for training, dense or CSR for
      export; ``"csr"`` needs ``segments``);
    * a torch sparse ``adj_t``: one sparse-dense product (PyG's ``spmm``);
    * a :class:`ScipyAdjacency` (CPU tensors only): one scipy CSR product forward and one
      with the precomputed transpose backward, the fast path of CPU training.

    Sparse matrices are used as given (``normalize=False`` is required for them).

    Args:
        normalize (bool, optional): normalise the edge weights symmetrically.
            (default: :obj:`True`)
        **kwargs (optional): Additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:**
          node features :math:`(|\mathcal{V}|, F)`,
          edge indices :math:`(2, |\mathcal{E}|)`, a torch sparse or a
          :class:`ScipyAdjacency` :math:`(|\mathcal{V}|, |\mathcal{V}|)`,
          edge weights :math:`(|\mathcal{E}|)` *(optional)*,
          segments :class:`graphrec.nn.segment.Segments` of ``edge_index[1]``
          *(optional, "csr" mode)*
        - **output:** node features :math:`(|\mathcal{V}|, F)`
    """

    def forward(
        self,
        x: Tensor,
        edge_index: Tensor | ScipyAdjacency,
        edge_weight: Tensor | None = None,
        segments: Segments | None = None,
    ) -> Tensor:
        """Runs the layer.

        Args:
            x: node features ``[N, F]``.
            edge_index: edges ``[2, E]`` (source, target), a torch sparse ``adj_t`` or a
                :class:`ScipyAdjacency`.
            edge_weight: optional ``[E]`` weights of an edge list.
            segments: CSR layout of the aggregation index (``edge_index[1]``, or
                ``edge_index[0]`` with ``flow="target_to_source"``; ``Segments.from_index``),
                needed in the ``"csr"`` aggregation mode only.
        """
        sparse = isinstance(edge_index, ScipyAdjacency) or edge_index.layout != torch.strided
        if sparse and self.normalize:
            raise ConfigError("a sparse adjacency is used as given: build LGConv(normalize=False)")
        if isinstance(edge_index, ScipyAdjacency):
            if x.device.type != "cpu":
                raise ConfigError(f"a ScipyAdjacency needs CPU features; got {x.device}")
            return _ScipySpmm.apply(x, edge_index.matrix, edge_index.matrix_t)
        if self.normalize:
            edge_weight = self._normalize(edge_index, edge_weight, x.size(0), x.dtype, segments)
        return self.propagate(edge_index, x=x, edge_weight=edge_weight, segments=segments)

    def _normalize(
        self,
        edge_index: Tensor,
        edge_weight: Tensor | None,
        num_nodes: int,
        dtype: torch.dtype,
        segments: Segments | None,
    ) -> Tensor:
        """``e_ji / sqrt(deg(i) deg(j))``, PyG's ``gcn_norm`` without self-loops."""
        row, col = edge_index[0], edge_index[1]
        index = col if self.flow == "source_to_target" else row
        if edge_weight is None:
            edge_weight = torch.ones(row.shape[0], dtype=dtype, device=row.device)
        inv_sqrt = segment_sum(edge_weight, index, num_nodes, segments).pow(-0.5)
        inv_sqrt = inv_sqrt.masked_fill(inv_sqrt == float("inf"), 0.0)
        return inv_sqrt[row] * edge_weight * inv_sqrt[col]

    def aggregate(
        self, inputs: Tensor, index: Tensor, dim_size: int, segments: Segments | None
    ) -> Tensor:
        return segment_sum(inputs, index, dim_size, segments)
