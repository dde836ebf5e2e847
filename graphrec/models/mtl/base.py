"""Common base of the multi-task backbones: embedding part -> experts -> one tower per task."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from graphrec.errors import ConfigError
from graphrec.models.ctr.features import CTRFeatures, FeatureEmbedding
from graphrec.nn.mlp import MLP

__all__ = ["MTLModel", "gated_mixture"]


def gated_mixture(gate_logits: Tensor, experts: Tensor) -> Tensor:
    r"""Softmax-gated sum of expert outputs, :math:`\sum_e \mathrm{softmax}(\mathbf{g})_e
    \mathbf{h}_e`.

    Args:
        gate_logits: ``[B, E]``.
        experts: ``[B, E, H]``.

    Returns:
        ``[B, H]``.
    """
    return torch.einsum("be,beh->bh", torch.softmax(gate_logits, dim=-1), experts)


class MTLModel(torch.nn.Module):
    r"""Base class of the multi-task backbones over the CTR feature schema.

    The embedding part is the CTR one (:class:`~graphrec.models.ctr.FeatureEmbedding`), its
    fields (sequences mean-pooled) flattened to :math:`\mathbf{x} \in \mathbb{R}^{F d}`. A
    subclass maps :math:`\mathbf{x}` to one tower input :math:`\mathbf{h}_t \in \mathbb{R}^{H}`
    per task (:meth:`tower_inputs`); task :math:`t`'s tower is an MLP giving its logit
    :math:`z_t = \mathrm{MLP}_t(\mathbf{h}_t)`. The tower inputs are exposed
    (:meth:`forward_towers`) so that further heads, such as CrossDistil's teacher towers, can
    sit beside the student towers.

    Args:
        features: the :class:`~graphrec.models.ctr.CTRFeatures` the model reads.
        num_tasks: number :math:`T \ge 2` of binary tasks.
        embedding_dim: embedding size :math:`d`.
        tower_in_channels: size :math:`H` of the tower inputs (set by the subclass).
        tower_channels: hidden sizes of every tower.
        dropout: dropout after the hidden activations of the towers.

    Shapes:
        - **input:** a batch ``dict[str, Tensor]`` (:meth:`CTRFeatures.batch`)
        - **output:** logits :math:`(B, T)`
    """

    def __init__(
        self,
        features: CTRFeatures,
        num_tasks: int,
        embedding_dim: int,
        tower_in_channels: int,
        tower_channels: Sequence[int],
        dropout: float,
    ) -> None:
        super().__init__()
        if num_tasks < 2:
            raise ConfigError(f"num_tasks must be >= 2; got {num_tasks}")
        self.features = features
        self.num_tasks = num_tasks
        self.embedding = FeatureEmbedding(features, embedding_dim)
        #: size of the flattened embedded fields (the backbone's input)
        self.in_channels = features.num_fields * embedding_dim
        #: size of every tower input
        self.tower_in_channels = tower_in_channels
        self.towers = torch.nn.ModuleList(
            MLP(tower_in_channels, tower_channels, 1, dropout=dropout) for _ in range(num_tasks)
        )

    def reset_parameters(self) -> None:
        """Re-initialise every parameter."""
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()

    def embed(self, batch: dict[str, Tensor]) -> Tensor:
        """The flattened embedded fields ``[B, F * d]``."""
        return self.embedding(batch).all_fields().flatten(1)

    def tower_inputs(self, x: Tensor) -> list[Tensor]:
        """One ``[B, H]`` tower input per task from the embedded fields ``x [B, F * d]``."""
        raise NotImplementedError

    def forward_towers(self, batch: dict[str, Tensor]) -> tuple[list[Tensor], Tensor]:
        """The tower inputs (``T`` tensors ``[B, H]``) and the task logits ``[B, T]``."""
        inputs = self.tower_inputs(self.embed(batch))
        logits = torch.cat([tower(h) for tower, h in zip(self.towers, inputs)], dim=1)
        return inputs, logits

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        """Task logits ``[B, T]`` (apply a sigmoid for probabilities)."""
        return self.forward_towers(batch)[1]

    @torch.no_grad()
    def predict_proba(self, batch: dict[str, Tensor]) -> Tensor:
        """Task probabilities ``[B, T]`` (no gradient; switch to ``eval()`` first)."""
        return torch.sigmoid(self(batch))
