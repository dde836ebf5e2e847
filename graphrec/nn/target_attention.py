"""DIN's target attention over a behaviour sequence, with padding masked."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from graphrec.nn.mlp import MLP


class TargetAttention(torch.nn.Module):
    r"""The local activation unit from the `"Deep Interest Network for Click-Through Rate
    Prediction" <https://arxiv.org/abs/1706.06978>`_ paper (Zhou et al., KDD 2018).

    Each behaviour :math:`\mathbf{e}_j` of a history of length :math:`L` is scored against the
    target (query) :math:`\mathbf{v}` by a small MLP, and the history is pooled with the scores:

    .. math::
        s_j &= \mathrm{MLP}\left( [\mathbf{e}_j \,\Vert\, \mathbf{v} \,\Vert\,
        \mathbf{e}_j - \mathbf{v} \,\Vert\, \mathbf{e}_j \odot \mathbf{v}] \right)

        \alpha_j &= m_j \, s_j \quad \text{or, with softmax,} \quad
        \alpha_j = \frac{m_j \exp(s_j)}{\sum_{k} m_k \exp(s_k)}

        \mathbf{h} &= \sum_{j=1}^{L} \alpha_j \, \mathbf{e}_j

    where :math:`m_j \in \{0, 1\}` masks padding. Padded positions get an attention weight of
    exactly zero in both modes, and a history that is all padding pools to the zero vector
    (no NaN). The paper leaves the weights unnormalised (``softmax=False``, the default);
    ``softmax=True`` gives weights that sum to one, easier to read as "which behaviour mattered".
    The MLP (:class:`~graphrec.nn.mlp.MLP`) uses PReLU activations (the paper's Dice is a
    data-adaptive PReLU).

    Args:
        channels (int): Embedding size :math:`d` of the query and of the behaviours.
        hidden_channels (Sequence[int], optional): Hidden sizes of the scoring MLP.
            (default: :obj:`(64, 32)`)
        softmax (bool, optional): Normalise the weights with a masked softmax.
            (default: :obj:`False`)

    Shapes:
        - **input:** query :math:`(B, d)`, keys :math:`(B, L, d)`, mask :math:`(B, L)` (bool,
          :obj:`True` = real behaviour)
        - **output:** pooled :math:`(B, d)`, weights :math:`(B, L)`
    """

    def __init__(
        self, channels: int, hidden_channels: Sequence[int] = (64, 32), softmax: bool = False
    ) -> None:
        super().__init__()
        self.channels = channels
        self.softmax = softmax
        self.mlp = MLP(4 * channels, hidden_channels, 1, activation="prelu")

    def reset_parameters(self) -> None:
        self.mlp.reset_parameters()

    def scores(self, query: Tensor, keys: Tensor, mask: Tensor) -> Tensor:
        """Attention weights :math:`\\alpha` of shape ``[B, L]`` (exact zeros where masked)."""
        q = query.unsqueeze(1).expand_as(keys)
        s = self.mlp(torch.cat([keys, q, keys - q, keys * q], dim=-1)).squeeze(-1)
        if self.softmax:
            s = s.masked_fill(~mask, torch.finfo(s.dtype).min)
            s = torch.softmax(s, dim=-1)
        return torch.where(mask, s, torch.zeros_like(s))

    def forward(self, query: Tensor, keys: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        weights = self.scores(query, keys, mask)
        return (weights.unsqueeze(-1) * keys).sum(dim=1), weights

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.channels}, softmax={self.softmax})"
