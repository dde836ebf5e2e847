"""PLE: progressive layered extraction with task-specific and shared experts (Tang et al.,
RecSys 2020)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from graphrec.errors import ConfigError
from graphrec.models.ctr.features import CTRFeatures
from graphrec.models.mtl.base import MTLModel, gated_mixture
from graphrec.models.mtl.defaults import PLE_DEFAULTS as D
from graphrec.models.mtl.defaults import PLEConfig
from graphrec.nn.mlp import MLP
from graphrec.registry import MTL_MODELS

__all__ = ["PLE"]


class _Extraction(torch.nn.Module):
    """One extraction level: per-task and shared experts, a gate per task and (unless the
    level is the last) a gate for the shared path."""

    def __init__(self, in_channels: int, num_tasks: int, num_task: int, num_shared: int,
                 expert_channels: Sequence[int], dropout: float, last: bool) -> None:  # fmt: skip
        super().__init__()

        def experts(n: int) -> torch.nn.ModuleList:
            return torch.nn.ModuleList(
                MLP(in_channels, expert_channels, None, dropout=dropout) for _ in range(n)
            )

        self.task_experts = torch.nn.ModuleList(experts(num_task) for _ in range(num_tasks))
        self.shared_experts = experts(num_shared)
        self.task_gates = torch.nn.ModuleList(
            torch.nn.Linear(in_channels, num_task + num_shared) for _ in range(num_tasks)
        )
        self.shared_gate = (
            None if last else torch.nn.Linear(in_channels, num_tasks * num_task + num_shared)
        )

    def forward(self, xs: list[Tensor], shared: Tensor) -> tuple[list[Tensor], Tensor | None]:
        s = [f(shared) for f in self.shared_experts]
        own = [[f(x) for f in fs] for fs, x in zip(self.task_experts, xs)]
        out = [
            gated_mixture(gate(x), torch.stack(e + s, dim=1))
            for gate, x, e in zip(self.task_gates, xs, own)
        ]
        if self.shared_gate is None:
            return out, None
        every = torch.stack([h for e in own for h in e] + s, dim=1)
        return out, gated_mixture(self.shared_gate(shared), every)


@MTL_MODELS.register("ple", config=PLEConfig)
class PLE(MTLModel):
    r"""Progressive Layered Extraction (Tang et al., "Progressive Layered Extraction (PLE): A
    Novel Multi-Task Learning (MTL) Model for Personalized Recommendations", RecSys 2020).

    Level :math:`l = 1, \dots, L` holds :math:`m_t` experts :math:`f^{l}_{t,i}` per task and
    :math:`m_s` shared experts :math:`f^{l}_{s,j}`. With
    :math:`\mathbf{x}^{0}_t = \mathbf{x}^{0}_s = \mathbf{x}` (the flattened field embeddings):

    .. math::
        \mathbf{x}^{l}_t = \sum_k \mathrm{softmax}(\mathbf{W}^{l}_t \mathbf{x}^{l-1}_t)_k \,
        \mathbf{e}_k, \qquad
        \mathbf{e} = [f^{l}_{t,1}(\mathbf{x}^{l-1}_t), \dots,
        f^{l}_{s,1}(\mathbf{x}^{l-1}_s), \dots]

    and, below the last level, the shared path
    :math:`\mathbf{x}^{l}_s = \sum_k \mathrm{softmax}(\mathbf{W}^{l}_s
    \mathbf{x}^{l-1}_s)_k \, \mathbf{e}^{s}_k` over every expert of the level (all tasks' and
    the shared ones). Task :math:`t`'s tower reads :math:`\mathbf{h}_t = \mathbf{x}^{L}_t`:
    :math:`z_t = \mathrm{MLP}_t(\mathbf{h}_t)`. One level is the CGC network of the paper.

    Args:
        features: the :class:`~graphrec.models.ctr.CTRFeatures` the model reads.
        num_tasks: number of binary tasks.
        embedding_dim: embedding size :math:`d`.
        num_levels: :math:`L \ge 1`.
        num_shared_experts: :math:`m_s` per level.
        num_task_experts: :math:`m_t` per task and level.
        expert_channels: hidden sizes of every expert (the last one is :math:`H`).
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
        num_levels: int = D.num_levels,
        num_shared_experts: int = D.num_shared_experts,
        num_task_experts: int = D.num_task_experts,
        expert_channels: Sequence[int] = D.expert_channels,
        tower_channels: Sequence[int] = D.tower_channels,
        dropout: float = D.dropout,
    ) -> None:
        if num_levels < 1 or num_shared_experts < 0 or num_task_experts < 0:
            raise ConfigError(
                "num_levels must be >= 1 and the expert counts >= 0; got "
                f"{num_levels}, {num_shared_experts}, {num_task_experts}"
            )
        if num_shared_experts + num_task_experts < 1 or not expert_channels:
            raise ConfigError("PLE needs at least one expert and non-empty expert_channels")
        super().__init__(features, num_tasks, embedding_dim, expert_channels[-1],
                         tower_channels, dropout)  # fmt: skip
        self.levels = torch.nn.ModuleList(
            _Extraction(
                self.in_channels if level == 0 else expert_channels[-1],
                num_tasks,
                num_task_experts,
                num_shared_experts,
                expert_channels,
                dropout,
                last=level == num_levels - 1,
            )  # fmt: skip
            for level in range(num_levels)
        )

    def tower_inputs(self, x: Tensor) -> list[Tensor]:
        xs, shared = [x] * self.num_tasks, x
        for level in self.levels:
            xs, shared = level(xs, shared)
        return xs
