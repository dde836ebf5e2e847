"""Export-ready forms of models whose on-device part differs from the training module.

HIEN needs no wrapper: :meth:`graphrec.models.hien.HIEN.freeze_tables` (on a copy) serves its
tree-aggregated attribute tables as constants (they depend on the weights only), so the device
runs the request-time attention and base model.

:class:`GraphScorer` gives a graph model (FastCover's GRAT stack) tensor-only inputs: the
number of nodes comes from the shape of the ``target_weight`` input, and in the ``"csr"``
aggregation mode the host passes the CSR layouts of the edge list as four more inputs.

A device does not run a collaborative-filtering backbone's propagation: MF has no graph part,
and LightGCN's propagation over the whole user-item graph is done once on the server. What
ships is :class:`CFScorer`: the final user and item tables (precomputed) and the scoring of a
batch of users against every item, ``E_U[users] @ E_I^T`` -- a Gather and a 2-D MatMul, both
exact in onnxruntime and MNN.
"""

from __future__ import annotations

import torch
from torch import Tensor

from graphrec.errors import ConfigError
from graphrec.nn.segment import EdgeSegments, Segments

__all__ = [
    "GRAPH_INPUT_NAMES",
    "CFScorer",
    "GraphScorer",
    "graph_dynamic_shapes",
    "graph_inputs",
]


class CFScorer(torch.nn.Module):
    """``forward(users [B] int64) -> scores [B, I]`` from fixed user and item tables.

    Args:
        user_embedding: ``[U, F]`` final user embeddings.
        item_embedding: ``[I, F]`` final item embeddings.
    """

    def __init__(self, user_embedding: Tensor, item_embedding: Tensor) -> None:
        super().__init__()
        if user_embedding.dim() != 2 or item_embedding.dim() != 2:
            raise ConfigError("user_embedding and item_embedding must be 2-D")
        if user_embedding.shape[1] != item_embedding.shape[1]:
            raise ConfigError(
                f"embedding sizes differ: {user_embedding.shape[1]} vs {item_embedding.shape[1]}"
            )
        self.register_buffer("user_embedding", user_embedding.detach().clone())
        # stored transposed: the MatMul's right operand is a plain 2-D [F, I] constant
        self.register_buffer("item_embedding_t", item_embedding.detach().t().contiguous())

    @classmethod
    @torch.no_grad()
    def from_backbone(cls, backbone: torch.nn.Module) -> CFScorer:
        """Precompute the tables of a :class:`graphrec.models.cf.CFBackbone` (MF, LightGCN):
        ``backbone()`` returns the final ``(user_emb, item_emb)``."""
        was_training = backbone.training
        backbone.eval()
        try:
            users, items = backbone()
        finally:
            backbone.train(was_training)
        return cls(users, items)

    def forward(self, users: Tensor) -> Tensor:
        return torch.nn.functional.embedding(users, self.user_embedding) @ self.item_embedding_t


class GraphScorer(torch.nn.Module):
    """``forward(target_weight [n], edge_index [2, m][, perm_row, ptr_row, perm_col, ptr_col])``
    -> ``[n]`` scores of a graph model ``model(edge_index, num_nodes, target_weight, segments)``
    (:class:`combinatorial.gnn.model.FastCover`).

    ``target_weight`` is all ones for a plain scoring pass (multiplying by 1 is exact) and 0
    for nodes already covered (re-scoring). The four CSR inputs
    (:meth:`graphrec.nn.segment.EdgeSegments.from_edge_index`, see :func:`graph_inputs`) are
    needed when the model is exported in the ``"csr"`` aggregation mode and ignored otherwise.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, target_weight: Tensor, edge_index: Tensor, *csr: Tensor) -> Tensor:
        segments = None
        if csr:
            if len(csr) != 4:
                raise ConfigError(f"give 0 or 4 CSR tensors; got {len(csr)}")
            segments = EdgeSegments(Segments(csr[0], csr[1]), Segments(csr[2], csr[3]))
        return self.model(edge_index, target_weight.shape[0], target_weight, segments)


#: Input names of :class:`GraphScorer` (the last four only in the ``"csr"`` mode).
GRAPH_INPUT_NAMES = ("target_weight", "edge_index", "perm_row", "ptr_row", "perm_col", "ptr_col")


def graph_inputs(
    edge_index: Tensor, num_nodes: int, *, csr: bool = False, target_weight: Tensor | None = None
) -> dict[str, Tensor]:
    """The named inputs of :class:`GraphScorer` for a graph (the host-side preprocessing).

    Args:
        edge_index: ``[2, m]`` int64 edges.
        num_nodes: ``n``.
        csr: add the CSR layouts (for a model exported in the ``"csr"`` mode).
        target_weight: ``[n]`` weights; default all ones.
    """
    if target_weight is None:
        target_weight = torch.ones(num_nodes)
    out = {"target_weight": target_weight, "edge_index": edge_index}
    if csr:
        (perm_row, ptr_row), (perm_col, ptr_col) = EdgeSegments.from_edge_index(
            edge_index, num_nodes
        )
        out.update(perm_row=perm_row, ptr_row=ptr_row, perm_col=perm_col, ptr_col=ptr_col)
    return out


def graph_dynamic_shapes(csr: bool = False) -> dict[str, dict[int, object]]:
    """``dynamic_shapes`` for :func:`graphrec.export.export_onnx` of a :class:`GraphScorer`:
    any number of nodes and edges (``ptr`` inputs have ``nodes + 1`` entries)."""
    nodes = torch.export.Dim("nodes", min=2)
    edges = torch.export.Dim("edges", min=2)
    shapes: dict[str, dict[int, object]] = {"target_weight": {0: nodes}, "edge_index": {1: edges}}
    if csr:
        shapes.update(
            perm_row={0: edges}, ptr_row={0: nodes + 1}, perm_col={0: edges}, ptr_col={0: nodes + 1}
        )
    return shapes
