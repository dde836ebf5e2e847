"""HIEN's hierarchical intention attention: within each attribute type, then across types."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from graphrec.errors import ConfigError

__all__ = ["HierarchicalIntentAttention", "IntentOutput"]

#: Floor of the level-1 normaliser of :meth:`HierarchicalIntentAttention.forward_bags`: far
#: below a non-empty bag's (unless its best score is ~46 below the row's best absent value),
#: far above float32's tiny, so an empty bag's gradient (divided by it) stays finite.
_MIN_TOTAL = 1e-20


class IntentOutput(NamedTuple):
    """Output of :class:`HierarchicalIntentAttention`.

    Attributes:
        intent: ``[B, d]`` the intent :math:`\\mathbf{h}`.
        alpha: level-1 weights, exactly 0 where masked: ``[B, K, L]`` over positions
            (:meth:`~HierarchicalIntentAttention.forward`), or ``[B, M]`` per unit of count
            over the values of every type (:meth:`~HierarchicalIntentAttention.forward_bags`).
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
    clicked) with a query built from the target's attribute :math:`\mathbf{t}_k` and a context
    :math:`\mathbf{c}` (e.g. the user); level 2 weighs the per-type intents:

    .. math::
        \mathbf{q}_k &= \mathbf{W}_k [\mathbf{t}_k \Vert \mathbf{c}] + \mathbf{b}_k, \qquad
        \alpha_{k,j} = \operatorname{softmax}_{j:\,m_{k,j}=1}\big(
        \mathbf{e}_{k,j}^{\top} \mathbf{q}_k / \sqrt{d} \big), \qquad
        \mathbf{h}^k = \sum_j \alpha_{k,j}\, \mathbf{e}_{k,j}

        \beta_k &= \operatorname{softmax}_k\big( \mathbf{u}^{\top}
        \tanh(\mathbf{W} \mathbf{h}^k + \mathbf{b}) \big), \qquad
        \mathbf{h} = \sum_k \beta_k\, \mathbf{h}^k

    Masked (padded) positions get :math:`\alpha_{k,j} = 0` exactly; a sequence that is all
    padding gives all-zero weights and :math:`\mathbf{h}^k = \mathbf{0}` (no NaN). With one type
    (:math:`K = 1`, :math:`\beta = 1`) and no context, it is HIEN's item intent: attention of
    the item over the users who clicked it.

    Since the level-1 score of a position depends only on its key, a sequence whose keys come
    from a small table (an attribute vocabulary) can be given as a *bag*: per value, how many
    positions hold it (:meth:`forward_bags`); the softmax over positions is then a softmax
    over values weighted by their counts, computed with dense products over the table instead
    of a gather of ``L`` keys per sample. The equations are a design choice reconstructed from
    the paper's abstract (HIEN, SIGIR 2022, arXiv 2206.00510); level 1 uses a bilinear score
    (cheaper than an additive MLP over every position).

    Args:
        channels (int): Embedding size :math:`d`.
        num_types (int): Number :math:`K` of attribute types.
        context_channels (int, optional): Size of the context :math:`\mathbf{c}`; 0 for none.
            (default: :obj:`None`, i.e. :math:`d`)
        hidden_channels (int, optional): Size of the level-2 attention layer.
            (default: :obj:`None`, i.e. :math:`d`)

    Shapes:
        - **input:** keys :math:`(B, K, L, d)`, target :math:`(B, K, d)`, mask :math:`(B, L)`
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
            raise ConfigError(f"num_types must be >= 1; got {num_types}")
        self.channels = channels
        self.num_types = num_types
        self.context_channels = channels if context_channels is None else context_channels
        self.hidden_channels = hidden_channels or channels
        self.weight1 = torch.nn.Parameter(torch.empty(num_types, channels + self.context_channels,
                                                      channels))  # fmt: skip
        self.bias1 = torch.nn.Parameter(torch.empty(num_types, channels))
        self.lin2 = torch.nn.Linear(channels, self.hidden_channels)
        self.score2 = torch.nn.Parameter(torch.empty(self.hidden_channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound1 = 1.0 / (self.weight1.shape[1] ** 0.5)
        torch.nn.init.uniform_(self.weight1, -bound1, bound1)
        torch.nn.init.uniform_(self.bias1, -bound1, bound1)
        self.lin2.reset_parameters()
        bound = 1.0 / (self.hidden_channels**0.5)
        torch.nn.init.uniform_(self.score2, -bound, bound)

    def query(self, target: Tensor, context: Tensor | None = None) -> Tensor:
        """:math:`\\mathbf{q}_k / \\sqrt{d}` for every type: ``[B, K, d]``."""
        d = self.channels
        q = torch.einsum("bkd,kde->bke", target, self.weight1[:, :d]) + self.bias1
        if self.context_channels:
            if context is None:
                raise ConfigError("this layer needs a context (context_channels > 0)")
            q = q + torch.einsum("bc,kce->bke", context, self.weight1[:, d:])
        return q / d**0.5

    def across_types(self, per_type: Tensor) -> tuple[Tensor, Tensor]:
        """Level 2: ``(intent [B, d], beta [B, K])`` from the per-type intents ``[B, K, d]``."""
        if self.num_types == 1:  # a softmax over one type is exactly 1 (and has no gradient)
            return per_type[:, 0], torch.ones_like(per_type[..., 0])
        score = torch.tanh(self.lin2(per_type)) @ self.score2  # [B, K]
        beta = _softmax_short(score)
        return (beta.unsqueeze(-1) * per_type).sum(dim=1), beta

    def forward(
        self, keys: Tensor, target: Tensor, mask: Tensor, context: Tensor | None = None
    ) -> IntentOutput:
        B, K, L, _ = keys.shape
        if mask.dim() == 2:
            mask = mask.unsqueeze(1).expand(B, K, L)
        # broadcast multiply-and-sum: on CPU much faster than bmm over tiny [L, d] blocks
        s = (keys * self.query(target, context).unsqueeze(2)).sum(-1)  # [B, K, L]
        s = s.masked_fill(~mask, torch.finfo(s.dtype).min)
        alpha = torch.where(mask, _softmax_short(s), torch.zeros_like(s))
        per_type = (alpha.unsqueeze(-1) * keys).sum(2)  # [B, K, d]
        intent, beta = self.across_types(per_type)
        return IntentOutput(intent, alpha, beta, per_type)

    def forward_bags(
        self,
        tables: Sequence[Tensor],
        counts: Tensor,
        target: Tensor,
        context: Tensor | None = None,
        *,
        return_alpha: bool = True,
    ) -> IntentOutput:
        """Level 1 over bags of values.

        Args:
            tables: per type ``k`` its value embeddings ``[N_k, d]``.
            counts: ``[B, M]`` (``M = sum_k N_k``, type ``k``'s columns after those of the
                types before it): how many positions of sample ``b`` hold each value (may be
                fractional, e.g. 1/3 for each of three genres of one item); 0 = absent.
            target: ``[B, K, d]``; context: ``[B, d_c]``.
            return_alpha: compute ``alpha`` (else it is an empty ``[B, 0]`` tensor: a
                training step does not need it).

        The same as :meth:`forward` with one key per position. ``alpha`` is ``[B, M]``: the
        weight of *one* position holding the value (0 where the count is 0).
        """
        q = self.query(target, context)
        alpha, per_type = [], []
        counts_per_type = counts.split([table.shape[0] for table in tables], dim=1)
        for q_k, c, table in zip(q.unbind(1), counts_per_type, tables):
            s = q_k @ table.T
            # shifted by the (constant) row maximum: exp cannot overflow, the weights and
            # their gradients are exact (a softmax is shift-invariant), and absent values
            # (count 0) drop out of the sums
            w = torch.exp(s - s.detach().amax(dim=-1, keepdim=True))
            cw = c * w
            # the normaliser divides the [B, d] sum, not the [B, N_k] weights; the floor only
            # acts on an empty bag (all-zero intent, finite gradients)
            z = cw.sum(dim=-1, keepdim=True).clamp(min=_MIN_TOTAL)
            per_type.append((cw @ table) / z)
            if return_alpha:
                alpha.append(torch.where(c > 0, w / z, torch.zeros_like(w)))
        h = torch.stack(per_type, dim=1)
        intent, beta = self.across_types(h)
        alpha_out = torch.cat(alpha, dim=1) if return_alpha else counts[:, :0]
        return IntentOutput(intent, alpha_out, beta, h)

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}({self.channels}, num_types={self.num_types}, "
            f"context_channels={self.context_channels})"
        )


def _softmax_short(x: Tensor) -> Tensor:
    """Softmax over the last dimension, computed over the leading dimension of a transposed
    copy: on CPU, torch's kernel is 2-3x faster there when the last dimension is short
    (types, clickers; ``benchmarks/ctr_ops.py``). The same values."""
    return torch.softmax(x.movedim(-1, 0).contiguous(), dim=0).movedim(0, -1)
