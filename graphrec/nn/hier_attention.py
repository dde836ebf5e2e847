"""HIEN's hierarchical intention attention: within each attribute type, then across types."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["HierarchicalIntentAttention", "IntentOutput"]


class IntentOutput(NamedTuple):
    """Output of :class:`HierarchicalIntentAttention`.

    Attributes:
        intent: ``[B, d]`` the intent :math:`\\mathbf{h}`.
        alpha: ``[B, K, L]`` level-1 weights per type (exactly 0 at masked positions).
        beta: ``[B, K]`` level-2 weights across types (sum to 1).
        per_type: ``[B, K, d]`` the per-type intents :math:`\\mathbf{h}^k`.
    """

    intent: Tensor
    alpha: Tensor
    beta: Tensor
    per_type: Tensor


class HierarchicalIntentAttention(torch.nn.Module):
    r"""Two-level intention attention of HIEN, `"Hierarchical Intention Embedding Network for
    Click-Through Rate Prediction" <https://arxiv.org/abs/2206.00510>`_ (Zheng et al., SIGIR
    2022).

    Level 1 attends, separately for every attribute type :math:`k`, over a sequence of
    attribute embeddings :math:`\mathbf{e}_{k,j}` (e.g. the categories of the items a user
    clicked), given the target's attribute :math:`\mathbf{t}_k` and a context
    :math:`\mathbf{c}` (e.g. the user); level 2 weighs the per-type intents:

    .. math::
        \alpha_{k,j} &= \operatorname{softmax}_{j:\,m_{k,j}=1}\Big( \mathbf{w}_k^{\top}
        \tanh\big( \mathbf{W}_k [\mathbf{e}_{k,j} \Vert \mathbf{t}_k \Vert \mathbf{c}]
        + \mathbf{b}_k \big) \Big), \qquad
        \mathbf{h}^k = \sum_j \alpha_{k,j}\, \mathbf{e}_{k,j}

        \beta_k &= \operatorname{softmax}_k\big( \mathbf{q}^{\top}
        \tanh(\mathbf{W} \mathbf{h}^k + \mathbf{b}) \big), \qquad
        \mathbf{h} = \sum_k \beta_k\, \mathbf{h}^k

    Masked (padded) positions get :math:`\alpha_{k,j} = 0` exactly; a sequence that is all
    padding gives all-zero weights and :math:`\mathbf{h}^k = \mathbf{0}` (no NaN). With one type
    (:math:`K = 1`, :math:`\beta = 1`) and no context, it is HIEN's item intent: attention of
    the item over the users who clicked it. The equations are a design choice reconstructed
    from the paper's abstract (see ``shared/specs/recsys.md``).

    Args:
        channels (int): Embedding size :math:`d`.
        num_types (int): Number :math:`K` of attribute types.
        context_channels (int, optional): Size of the context :math:`\mathbf{c}`; 0 for none.
            (default: :obj:`None`, i.e. :math:`d`)
        hidden_channels (int, optional): Size of the attention layers.
            (default: :obj:`None`, i.e. :math:`d`)

    Shapes:
        - **input:** keys :math:`(B, K, L, d)` (or a table :math:`(N, K, d)` with index
          :math:`(B, L)`), target :math:`(B, K, d)`, mask :math:`(B, L)`
          or :math:`(B, K, L)` (bool, :obj:`True` = real element), context :math:`(B, d_c)`
          (omitted when ``context_channels=0``)
        - **output:** :class:`IntentOutput` (intent :math:`(B, d)`, alpha :math:`(B, K, L)`,
          beta :math:`(B, K)`, per_type :math:`(B, K, d)`)
    """

    def __init__(
        self,
        channels: int,
        num_types: int,
        context_channels: int | None = None,
        hidden_channels: int | None = None,
    ) -> None:
        super().__init__()
        if num_types < 1:
            raise ValueError(f"num_types must be >= 1; got {num_types}")
        self.channels = channels
        self.num_types = num_types
        self.context_channels = channels if context_channels is None else context_channels
        self.hidden_channels = hidden_channels or channels
        in_dim = 2 * channels + self.context_channels
        a = self.hidden_channels
        self.weight1 = torch.nn.Parameter(torch.empty(num_types, in_dim, a))
        self.bias1 = torch.nn.Parameter(torch.empty(num_types, a))
        self.score1 = torch.nn.Parameter(torch.empty(num_types, a))
        self.lin2 = torch.nn.Linear(channels, a)
        self.score2 = torch.nn.Parameter(torch.empty(a))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound1 = 1.0 / (self.weight1.shape[1] ** 0.5)
        torch.nn.init.uniform_(self.weight1, -bound1, bound1)
        torch.nn.init.uniform_(self.bias1, -bound1, bound1)
        bound = 1.0 / (self.hidden_channels**0.5)
        torch.nn.init.uniform_(self.score1, -bound, bound)
        self.lin2.reset_parameters()
        torch.nn.init.uniform_(self.score2, -bound, bound)

    def forward(
        self,
        keys: Tensor,
        target: Tensor,
        mask: Tensor,
        context: Tensor | None = None,
        index: Tensor | None = None,
    ) -> IntentOutput:
        """With ``index`` (``int64 [B, L]``), ``keys`` is a table ``[N, K, d]`` and the keys of
        sample ``b`` are ``keys[index[b]]``; the table is projected once before the lookup,
        which is much cheaper than projecting ``B * L`` gathered keys."""
        d = self.channels
        w_key, w_target = self.weight1[:, :d], self.weight1[:, d : 2 * d]
        if index is None:
            proj = torch.einsum("bkld,kda->bkla", keys, w_key)
        else:
            proj = torch.einsum("nkd,kda->nka", keys, w_key)[index].transpose(1, 2)
            keys = keys[index].transpose(1, 2)
        B, K, L, _ = keys.shape
        if mask.dim() == 2:
            mask = mask.unsqueeze(1).expand(B, K, L)
        query = torch.einsum("bkd,kda->bka", target, w_target) + self.bias1
        if self.context_channels:
            if context is None:
                raise ValueError("this layer needs a context (context_channels > 0)")
            query = query + torch.einsum("bc,kca->bka", context, self.weight1[:, 2 * d :])
        hidden = torch.tanh(proj + query.unsqueeze(2))  # [B, K, L, a]
        s = torch.einsum("bkla,ka->bkl", hidden, self.score1)
        s = s.masked_fill(~mask, torch.finfo(s.dtype).min)
        alpha = torch.where(mask, torch.softmax(s, dim=-1), torch.zeros_like(s))
        per_type = torch.einsum("bkl,bkld->bkd", alpha, keys)
        s2 = torch.tanh(self.lin2(per_type)) @ self.score2  # [B, K]
        beta = torch.softmax(s2, dim=-1)
        intent = (beta.unsqueeze(-1) * per_type).sum(dim=1)
        return IntentOutput(intent, alpha, beta, per_type)

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}({self.channels}, num_types={self.num_types}, "
            f"context_channels={self.context_channels})"
        )
