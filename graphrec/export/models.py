"""Export-ready forms of models whose on-device part differs from the training module.

A device does not run a collaborative-filtering backbone's propagation: MF has no graph part,
and LightGCN's propagation over the whole user-item graph is done once on the server. What
ships is :class:`CFScorer`: the final user and item tables (precomputed) and the scoring of a
batch of users against every item, ``E_U[users] @ E_I^T`` -- a Gather and a 2-D MatMul, both
exact in onnxruntime and MNN.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["CFScorer"]


class CFScorer(torch.nn.Module):
    """``forward(users [B] int64) -> scores [B, I]`` from fixed user and item tables.

    Args:
        user_embedding: ``[U, F]`` final user embeddings.
        item_embedding: ``[I, F]`` final item embeddings.
    """

    def __init__(self, user_embedding: Tensor, item_embedding: Tensor) -> None:
        super().__init__()
        if user_embedding.dim() != 2 or item_embedding.dim() != 2:
            raise ValueError("user_embedding and item_embedding must be 2-D")
        if user_embedding.shape[1] != item_embedding.shape[1]:
            raise ValueError(
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
