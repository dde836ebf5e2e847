"""HIEN's hierarchical intention attention: within each attribute type, then across types."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from graphrec.errors import ConfigError

__all__ = ["HierarchicalIntentAttention", "IntentOutput"]

#: Floor of the level-1 normaliser of :meth:`HierarchicalIntentAttention.forward_weighted`:
#: far below a non-empty row's (at least its largest weight), far above float32's tiny, so an
#: empty row's gradient (divided by it) stays finite.
_MIN_TOTAL = 1e-20


class IntentOutput(NamedTuple):
    """Output of :class:`HierarchicalIntentAttention`.

    Attributes:
        intent: ``[B, d]`` the intent :math:`\\mathbf{h}`.
        alpha: level-1 weights, exactly 0 where masked: ``[B, K, L]`` over positions
            (:meth:`~HierarchicalIntentAttention.forward`), or per type ``[B, E_k]`` over its
            weighted keys (:meth:`~HierarchicalIntentAttention.forward_weighted`).
        beta: ``[B, K]`` level-2 weights across types (sum to 1).
        per_type: ``[B, K, d]`` the per-type intents :math:`\\mathbf{h}^k`.
    """

    intent: Tensor
    alpha: Tensor | list[Tensor]
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

    A position may hold several keys of one type with weights (e.g. the genres of a movie,
    1/3 each): :meth:`forward_weighted` takes per type its own number of weighted keys and a
    weighted softmax, at a cost linear in the number of keys (independent of the size of the
    attribute vocabularies they come from). The equations are a design choice reconstructed from
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

    def forward_weighted(
        self,
        keys: Sequence[Tensor],
        weights: Sequence[Tensor],
        target: Tensor,
        context: Tensor | None = None,
        *,
        return_alpha: bool = True,
        fused: bool = False,
    ) -> IntentOutput:
        """Level 1 over weighted keys, per type its own number of keys.

        Args:
            keys: per type ``k`` its keys ``[B, E_k, d]`` (e.g. the attribute values of every
                history position, several per position for a multi-valued attribute), or
                ``[E_k, d]`` keys shared by all samples (a small attribute table, the weights
                then being each sample's bag of values: dense products, cheaper when the table
                has fewer rows than a sample has keys).
            weights: per type ``[B, E_k]`` the weight of each key (e.g. 1/3 for each of three
                genres of one position); 0 = absent (padding).
            target: ``[B, K, d]``; context: ``[B, d_c]``.
            return_alpha: compute ``alpha`` (else empty ``[B, 0]`` tensors: a training step
                does not need it).
            fused: per-sample keys go through torch's fused
                :func:`~torch.nn.functional.scaled_dot_product_attention` (scale 1, additive
                mask :math:`\\log w`: the same softmax, within float rounding, in one
                kernel); needs ``return_alpha=False``. Off for an exported graph (not every
                runtime has the fused operator).

        The softmax over keys is weighted, :math:`\\alpha_{k,j} \\propto w_{k,j}
        \\exp(s_{k,j})`: with 0/1 weights the same as :meth:`forward`, and a value held by
        ``n`` positions counts ``n`` times. The cost is linear in ``sum_k E_k``, whatever the
        size of the tables the keys come from. ``alpha`` is a list of ``[B, E_k]``: the weight
        share of each key (0 where the weight is 0).
        """
        if fused and return_alpha:
            raise ConfigError("fused=True computes no alpha: pass return_alpha=False")
        q = self.query(target, context)
        alpha, per_type = [], []
        for q_k, e, w in zip(q.unbind(1), keys, weights):
            shared = e.dim() == 2
            if fused and not shared:  # alpha ~ w exp(s) = exp(s + log w); an empty row gives 0
                e = e.unsqueeze(1)
                h_k = F.scaled_dot_product_attention(
                    q_k[:, None, None], e, e, attn_mask=w.log()[:, None, None], scale=1.0
                )
                per_type.append(h_k.view(len(q_k), -1))
                continue
            s = q_k @ e.T if shared else (e * q_k.unsqueeze(1)).sum(-1)  # [B, E_k]
            # shifted by the (constant) maximum over the present keys: exp cannot overflow and
            # absent keys get exp(min - max) * 0 = 0 (or exp(0) * 0 when none is present)
            s = s.masked_fill(w <= 0, torch.finfo(s.dtype).min)
            ew = torch.exp(s - s.detach().amax(dim=-1, keepdim=True)) * w
            # the floor only acts on an empty row (all-zero intent, finite gradients)
            z = ew.sum(dim=-1, keepdim=True).clamp(min=_MIN_TOTAL)
            per_type.append((ew @ e if shared else (ew.unsqueeze(-1) * e).sum(1)) / z)
            if return_alpha:
                alpha.append(ew / z)
        h = torch.stack(per_type, dim=1)
        intent, beta = self.across_types(h)
        alpha_out = alpha if return_alpha else [target[:, 0, :0]]
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
