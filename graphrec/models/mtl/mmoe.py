"""MMoE: experts shared by every task, one softmax gate per task (Ma et al., KDD 2018)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from graphrec.errors import ConfigError
from graphrec.models.ctr.features import CTRFeatures
from graphrec.models.mtl.base import MTLModel, gated_mixture
from graphrec.models.mtl.defaults import MMOE_DEFAULTS as D
from graphrec.models.mtl.defaults import MMoEConfig
from graphrec.nn.mlp import MLP
from graphrec.registry import MTL_MODELS

__all__ = ["MMoE"]


@MTL_MODELS.register("mmoe", config=MMoEConfig)
class MMoE(MTLModel):
    r"""Multi-gate Mixture-of-Experts (Ma et al., "Modeling Task Relationships in Multi-task
    Learning with Multi-gate Mixture-of-Experts", KDD 2018):

    .. math::
        \mathbf{h}_t = \sum_{e=1}^{E} \mathrm{softmax}(\mathbf{W}_t \mathbf{x})_e \,
        f_e(\mathbf{x}), \qquad z_t = \mathrm{MLP}_t(\mathbf{h}_t)

    with :math:`E` expert MLPs :math:`f_e` shared by all tasks and one linear gate
    :math:`\mathbf{W}_t \in \mathbb{R}^{E \times Fd}` per task.

    Args:
        features: the :class:`~graphrec.models.ctr.CTRFeatures` the model reads.
        num_tasks: number of binary tasks.
        embedding_dim: embedding size :math:`d`.
        num_experts: :math:`E`.
        expert_channels: hidden sizes of every expert (the last one is :math:`H`).
        tower_channels: hidden sizes of every tower.
        dropout: dropout after every hidden activation.

    Shapes:
        - **input:** a batch ``dict[str, Tensor]``
        - **output:** logits :math:`(B, T)`; tower inputs :math:`T \times (B, H)`; gate weights
          (:meth:`gate_weights`) :math:`(B, T, E)`
    """

    def __init__(
        self,
        features: CTRFeatures,
        num_tasks: int = 2,
        *,
        embedding_dim: int = D.embedding_dim,
        num_experts: int = D.num_experts,
        expert_channels: Sequence[int] = D.expert_channels,
        tower_channels: Sequence[int] = D.tower_channels,
        dropout: float = D.dropout,
    ) -> None:
        if num_experts < 1 or not expert_channels:
            raise ConfigError(
                f"num_experts must be >= 1 and expert_channels non-empty; got {num_experts}, "
                f"{tuple(expert_channels)}"
            )
        in_channels = features.num_fields * embedding_dim
        super().__init__(features, num_tasks, embedding_dim, expert_channels[-1],
                         tower_channels, dropout)  # fmt: skip
        self.experts = torch.nn.ModuleList(
            MLP(in_channels, expert_channels, None, dropout=dropout) for _ in range(num_experts)
        )
        self.gates = torch.nn.ModuleList(
            torch.nn.Linear(in_channels, num_experts) for _ in range(num_tasks)
        )

    def tower_inputs(self, x: Tensor) -> list[Tensor]:
        experts = torch.stack([f(x) for f in self.experts], dim=1)
        return [gated_mixture(gate(x), experts) for gate in self.gates]

    @torch.no_grad()
    def gate_weights(self, batch: dict[str, Tensor]) -> Tensor:
        """Each task's softmax weights over the experts, ``[B, T, E]``."""
        x = self.embed(batch)
        return torch.stack([torch.softmax(gate(x), dim=-1) for gate in self.gates], dim=1)
