r"""Training objectives for collaborative filtering: BPR, InfoNCE and HDCCF.

All losses take *embeddings or scores of a batch* (never a backbone), so any encoder of
:mod:`graphrec.models.cf.backbones` can be trained with any of them. Every reduction is a
single mean over the batch. L2 regularisation is separate: :func:`l2_regularization`, LightGCN's
``||E_batch||^2 / (2B)`` on the batch's layer-0 embeddings. PyG's
``LightGCN.recommendation_loss`` differs (pyg-team/pytorch_geometric#7196: older releases
divided the BPR sum twice); in the installed 2.8.1 its BPR term is a plain mean, equal to
:func:`bpr_loss`, but its L2 term is ``lambda ||E||^2 / B`` over *all* node embeddings unless
``node_id`` is given -- with ``node_id`` twice :func:`l2_regularization` at the same
``lambda`` (pinned by the CF tests).

HDCCF ("Trading Hard Negatives and True Negatives: A Debiased Contrastive Collaborative
Filtering Approach", C. Yang et al., IJCAI 2022) has no public code and only its abstract was
available: :class:`HDCCFLoss` is our reconstruction (a design choice, configurable), which
combines the three ingredients the abstract names with the standard technique for each:

* set-wise positives (``M`` per anchor) in one softmax ("set-wise contrastive objective");
* in-batch negatives, i.e. negatives drawn proportionally to item / user frequency
  (":func:`graphrec.models.cf.sampler.InteractionSampler`"), or explicit negatives;
* the debiased negative term of DCL (Chuang et al., NeurIPS 2020) with class prior
  :math:`\tau^+` and its clip, optionally tilted towards hard negatives as in HCL
  (Robinson et al., ICLR 2021) by :math:`\beta`.

Which of these match the paper is unverified (only its abstract was available); every one of them
is a constructor argument.

:data:`graphrec.registry.CF_LOSSES` holds each loss as a :class:`CFObjective`, the one interface
:class:`~graphrec.models.cf.CFTrainer` calls: built from ``(graph, config)``, it says what the
sampler must provide (explicit negatives, the known-pair mask) and computes the batch loss from a
:class:`CFLossInput`. A new loss is one registered subclass, in this file or any other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from graphrec.errors import ConfigError
from graphrec.models.cf.sampler import CFBatch
from graphrec.registry import CF_LOSSES

if TYPE_CHECKING:
    from graphrec.graphs.bipartite import BipartiteGraph
    from graphrec.models.cf.trainer import CFConfig

__all__ = [
    "BPRObjective",
    "CFLossInput",
    "CFObjective",
    "HDCCFLoss",
    "HDCCFObjective",
    "InfoNCEObjective",
    "bpr_loss",
    "debiased_negative_mean",
    "info_nce_loss",
    "l2_regularization",
    "log_debiased_negative_mean",
    "pairwise_similarity",
    "setwise_contrastive_loss",
]

SIMILARITIES = ("cosine", "dot")


def bpr_loss(pos_scores: Tensor, neg_scores: Tensor) -> Tensor:
    r"""Bayesian personalised ranking (Rendle et al., UAI 2009), averaged once.

    .. math::
        L = \frac{1}{|\mathcal{B}|} \sum_{(u,i,j) \in \mathcal{B}}
            -\log \sigma(s_{ui} - s_{uj}) = \operatorname{mean}\,
            \operatorname{softplus}(s_{uj} - s_{ui})

    Args:
        pos_scores: ``[B]`` scores of the observed pairs.
        neg_scores: ``[B]`` (one negative each) or ``[B, N]`` (the mean runs over all ``B N``
            triples).
    """
    if neg_scores.dim() == pos_scores.dim() + 1:
        pos_scores = pos_scores.unsqueeze(-1)
    return F.softplus(neg_scores - pos_scores).mean()


def l2_regularization(*embeddings: Tensor, batch_size: int | None = None) -> Tensor:
    r"""LightGCN's regulariser :math:`\frac{1}{2B} \sum_t \|E_t\|_F^2` over the given tensors.

    Pass the *layer-0* (ego) embeddings of the users / items in the batch; multiply by the
    weight ``lambda`` yourself. ``batch_size`` defaults to the first tensor's length.
    """
    if not embeddings:
        raise ConfigError("l2_regularization needs at least one tensor")
    b = embeddings[0].shape[0] if batch_size is None else batch_size
    return sum(e.pow(2).sum() for e in embeddings) / (2.0 * max(b, 1))


def pairwise_similarity(a: Tensor, b: Tensor, similarity: str = "cosine") -> Tensor:
    """``a @ b^T`` of the last dimension, on L2-normalised rows for ``"cosine"``.

    ``a`` is ``[..., F]``; ``b`` is ``[N, F]`` (all-pairs, ``[..., N]`` result).
    """
    if similarity == "cosine":
        a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    elif similarity != "dot":
        raise ConfigError(f"similarity must be one of {SIMILARITIES}; got {similarity!r}")
    return a @ b.t()


def _rowwise_similarity(a: Tensor, b: Tensor, similarity: str) -> Tensor:
    """``a [B, F]`` against its own set ``b [B, K, F]`` -> ``[B, K]``."""
    if similarity == "cosine":
        a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    elif similarity != "dot":
        raise ConfigError(f"similarity must be one of {SIMILARITIES}; got {similarity!r}")
    return torch.einsum("bf,bkf->bk", a, b)


def info_nce_loss(
    user_emb: Tensor,
    item_emb: Tensor,
    *,
    temperature: float = 0.1,
    known: Tensor | None = None,
    similarity: str = "cosine",
    symmetric: bool = True,
) -> Tensor:
    r"""Sampled softmax / InfoNCE with in-batch negatives.

    With :math:`s_{bc} = \mathrm{sim}(u_b, i_c)/t` over a batch of observed pairs
    :math:`(u_b, i_b)`:

    .. math::
        L_u = \frac{1}{B}\sum_b -\log \frac{e^{s_{bb}}}{\sum_{c \in \{b\} \cup N_b} e^{s_{bc}}},
        \qquad L_i \text{ the same over columns}, \qquad L = L_u + L_i \ (\text{symmetric})

    where :math:`N_b` are the other items of the batch except *known* positives of
    :math:`u_b`.

    Args:
        user_emb, item_emb: ``[B, F]`` embeddings of the batch's pairs.
        temperature: ``t``.
        known: optional ``[B, B]`` bool, ``known[b, c]`` = ``(u_b, i_c)`` is a training
            interaction; those entries (except the diagonal) are removed from the negatives.
            The item side uses ``known.T``.
        similarity: ``"cosine"`` or ``"dot"``.
        symmetric: add the item-side term ``L_i`` (items as anchors, users as candidates).
    """
    logits = pairwise_similarity(user_emb, item_emb, similarity) / temperature
    target = torch.arange(logits.shape[0], device=logits.device)
    if known is not None:
        off_diag = known.to(torch.bool).clone()
        off_diag.fill_diagonal_(False)
        logits = logits.masked_fill(off_diag, -math.inf)
    loss = F.cross_entropy(logits, target)
    if symmetric:
        loss = loss + F.cross_entropy(logits.t(), target)
    return loss


def debiased_negative_mean(
    neg_logits: Tensor,
    pos_logits: Tensor,
    *,
    tau_plus: float,
    beta: float = 0.0,
    valid: Tensor | None = None,
    clip: float | Tensor | None = None,
    detach_hardness: bool = True,
    log_weight: Tensor | None = None,
) -> Tensor:
    r"""The debiased (and hardness-weighted) negative term ``g`` in natural scale.

    .. math::
        g = \frac{\sum_{j} w_j e^{s_j} / N - \tau^+ \frac{1}{M}\sum_{i \in P} e^{s_i}}
                 {1 - \tau^+},
        \qquad w_j = N\, \frac{e^{\beta s_j}}{\sum_k e^{\beta s_k}}\ (\text{mean } 1),

    then ``g = max(g, clip)`` when ``clip`` is given. With :math:`\beta = 0` and the
    candidates drawn from :math:`p = \tau^+ p^+ + (1-\tau^+) p^-`, the unclipped ``g`` is an
    unbiased estimate of :math:`E_{j \sim p^-} e^{s_j}` (DCL, Chuang et al. 2020); the clip
    (``e^{-1/t}`` for cosine scores, the smallest possible value) keeps it positive at the
    price of a small upward bias. :math:`\beta > 0` is HCL's importance weighting towards
    hard negatives (Robinson et al. 2021); the positive term is not tilted, as in HCL's code.

    This plain version can be negative without a clip; it exists for checks. The losses use
    :func:`log_debiased_negative_mean`, which computes ``log g`` stably.

    Args:
        neg_logits: ``[B, N]`` candidate-negative logits ``s_j``.
        pos_logits: ``[B, M]`` positive logits ``s_i``.
        tau_plus: class prior ``tau+`` in ``[0, 1)``.
        beta: hardness exponent (0 = uniform weights).
        valid: ``[B, N]`` bool, False for masked candidates (known positives, padding).
        clip: lower bound of ``g`` (scalar or ``[B]``), or None.
        detach_hardness: treat the weights ``w_j`` as constants in the backward pass (design
            choice, default): every negative's gradient is then ``∝ w_j e^{s_j}``, positive
            and increasing in ``s_j``, so harder negatives are pushed harder. False
            differentiates through ``w_j`` as HCL's code does; then a very easy negative
            (``e^{s_j} < β/(1+β) · g``) gets a small gradient *towards* the anchor, because
            raising its score raises its own weight. The forward value is the same.
        log_weight: optional log importance weight of each candidate (broadcast to
            ``[B, N]``), multiplied into ``w_j`` before the normalisation to mean 1, e.g.
            ``-log q_j`` to re-weight candidates drawn ``∝ q_j`` (in-batch: item frequency)
            towards a uniform draw over the catalogue (logQ correction).

    Returns:
        ``[B]``; NaN for rows without a valid candidate.
    """
    _check_tau(tau_plus)
    if valid is None:
        valid = torch.ones_like(neg_logits, dtype=torch.bool)
    weights = _hardness_weights(neg_logits, valid, beta, detach_hardness, log_weight)
    neg = (weights * neg_logits.masked_fill(~valid, -math.inf).exp()).sum(-1)
    neg = torch.where(valid.any(-1), neg, torch.full_like(neg, math.nan))
    pos = pos_logits.exp().mean(-1)
    g = (neg - tau_plus * pos) / (1.0 - tau_plus)
    if clip is not None:
        g = torch.maximum(g, torch.as_tensor(clip, dtype=g.dtype, device=g.device))
    return g


def log_debiased_negative_mean(
    neg_logits: Tensor,
    pos_logits: Tensor,
    *,
    tau_plus: float,
    beta: float = 0.0,
    valid: Tensor | None = None,
    log_clip: float | Tensor | None = None,
    detach_hardness: bool = True,
    log_weight: Tensor | None = None,
) -> Tensor:
    """``log g`` of :func:`debiased_negative_mean`, computed with a per-row shift.

    ``log_clip`` is ``log`` of the clip (``-1/t`` for cosine logits). Without a clip, a
    non-positive ``g`` is floored at the smallest positive float of the dtype (times the
    shift). Rows without a valid candidate give ``-inf`` (no negative mass).
    """
    _check_tau(tau_plus)
    if valid is None:
        valid = torch.ones_like(neg_logits, dtype=torch.bool)
    has_neg = valid.any(-1)
    masked = neg_logits.masked_fill(~valid, -math.inf)
    shift = torch.maximum(masked.amax(-1), pos_logits.amax(-1)).detach()
    shift = torch.where(has_neg, shift, pos_logits.amax(-1).detach())
    scaled = (masked - shift[:, None]).exp()  # exp(-inf) = 0 for masked entries
    if beta == 0 and log_weight is None:  # uniform weights: a plain mean (fast path)
        neg = scaled.sum(-1) / valid.sum(-1).clamp_min(1).to(scaled.dtype)
    else:
        weights = _hardness_weights(neg_logits, valid, beta, detach_hardness, log_weight)
        neg = (weights * scaled).sum(-1)
    pos = (pos_logits - shift[:, None]).exp().mean(-1)
    x = (neg - tau_plus * pos) / (1.0 - tau_plus)
    tiny = torch.finfo(x.dtype).tiny
    log_g = torch.log(x.clamp_min(tiny)) + shift
    if log_clip is not None:
        log_g = torch.maximum(log_g, torch.as_tensor(log_clip, dtype=x.dtype, device=x.device))
    return torch.where(has_neg, log_g, torch.full_like(log_g, -math.inf))


def setwise_contrastive_loss(
    pos_logits: Tensor,
    neg_logits: Tensor,
    *,
    valid: Tensor | None = None,
    tau_plus: float = 0.0,
    beta: float = 0.0,
    log_clip: float | Tensor | None = None,
    detach_hardness: bool = True,
    log_weight: Tensor | None = None,
) -> Tensor:
    r"""Per-anchor set-wise debiased contrastive loss (one side of HDCCF).

    .. math::
        L = -\log \frac{\sum_{i \in P} e^{s_i}}{\sum_{i \in P} e^{s_i} + N\, g}

    with ``g`` from :func:`log_debiased_negative_mean` and ``N`` the number of valid
    candidates of the row. With ``tau_plus = 0``, ``beta = 0`` and ``M = 1`` this is exactly
    the softmax cross-entropy of the positive against the valid candidates (InfoNCE).

    Args:
        pos_logits: ``[B, M]``.
        neg_logits: ``[B, N]``.
        valid: ``[B, N]`` bool mask of usable candidates (default: all).
        tau_plus, beta, log_clip, detach_hardness, log_weight: see
            :func:`debiased_negative_mean`.

    Returns:
        ``[B]`` losses (0 for a row without a valid candidate).
    """
    if valid is None:
        valid = torch.ones_like(neg_logits, dtype=torch.bool)
    log_g = log_debiased_negative_mean(
        neg_logits,
        pos_logits,
        tau_plus=tau_plus,
        beta=beta,
        valid=valid,
        log_clip=log_clip,
        detach_hardness=detach_hardness,
        log_weight=log_weight,
    )
    n = valid.sum(-1).to(neg_logits.dtype)
    log_neg = torch.log(n) + log_g  # -inf (+ -inf) for rows without candidates
    log_pos = torch.logsumexp(pos_logits, dim=-1)
    return torch.logaddexp(log_pos, log_neg) - log_pos


def _hardness_weights(
    neg_logits: Tensor, valid: Tensor, beta: float, detach: bool, log_weight: Tensor | None = None
) -> Tensor:
    """``softmax(beta * s + log_weight)`` over the valid candidates of each row (0 elsewhere).

    ``detach``: the weights are constants for autograd (skipped when ``beta == 0``, where
    they are constant anyway).

    Rows without a valid candidate get finite (uniform) weights, so no NaN reaches the
    backward pass; their masked entries are multiplied by ``exp(-inf) = 0`` anyway.
    """
    if detach:
        neg_logits = neg_logits.detach()
    tilted = beta * neg_logits
    if log_weight is not None:
        tilted = tilted + log_weight
    tilted = tilted.masked_fill(~valid, -math.inf)
    tilted = torch.where(valid.any(-1, keepdim=True), tilted, torch.zeros_like(tilted))
    return torch.softmax(tilted, dim=-1)


def _check_tau(tau_plus: float) -> None:
    if not 0.0 <= tau_plus < 1.0:
        raise ConfigError(f"tau_plus must be in [0, 1); got {tau_plus!r}")


class HDCCFLoss(nn.Module):
    r"""Hardness-aware debiased contrastive CF loss (design choice, see the module docstring).

    For a batch of observed pairs :math:`(u_b, i_b)`, with :math:`s(u, i) = \cos(e_u, e_i)/t`:

    .. math::
        L = \frac{1}{B}\sum_b \big( L_{u_b} + L_{i_b} \big), \qquad
        L_u = -\log \frac{\sum_{i \in P_u} e^{s(u,i)}}
                         {\sum_{i \in P_u} e^{s(u,i)} + N_u\, g(u)}

    * :math:`P_u`: ``M`` positives of the anchor user (the pair's item first; the sampler
      adds ``M - 1`` more of the user's training items). ``M = 1`` is pairwise.
    * candidates :math:`N_u`: the other items of the batch (in-batch, so drawn
      :math:`\propto` item frequency) or explicit negatives, *minus known training
      positives of u* (the ``known`` mask) -- :math:`\tau^+` accounts for unknown positives
      only.
    * :math:`g(u)` = :func:`debiased_negative_mean` with class prior :math:`\tau^+`,
      hardness :math:`\beta` and the clip :math:`e^{-1/t}` (cosine) or, for ``"dot"``
      scores, the row's smallest candidate :math:`e^{s}` (a design choice: the sample's
      minimum bounds the mean of ``e^s`` over the sampled negatives from below).
    * :math:`L_i`: the same with the item as anchor, users as candidates, :math:`P_i` = ``M``
      users of the item.

    With ``tau_plus = 0``, ``beta = 0`` and ``M = 1`` the loss equals
    :func:`info_nce_loss` (``symmetric=True``, same ``known`` mask).

    Args:
        temperature: ``t`` (spec grid 0.05-0.5).
        tau_plus: class prior of unknown positives among candidates, ``[0, 1)``.
        beta: hardness exponent (0 = the plain set-wise softmax weighting).
        similarity: ``"cosine"`` (default) or ``"dot"``.
        user_side, item_side: which anchor terms to include (at least one).
        clip: apply the clip to ``g`` (turn off only for experiments).
        detach_hardness: see :func:`debiased_negative_mean` (no effect when ``beta = 0``).
        logq: popularity-correction strength ``gamma`` (design choice, 0 = off): in-batch
            candidates are drawn ``∝`` their frequency ``q``, so their mean is re-weighted by
            ``q^-gamma`` (normalised per row; ``log_weight`` of
            :func:`debiased_negative_mean`). ``gamma = 1`` estimates the mean over a uniform
            draw from the catalogue, as the full-ranking evaluation ranks; without it the
            frequency-aware negatives push popular items down (the "logQ correction" of
            sampled softmax, Yi et al., RecSys 2019). Needs ``item_log_q`` / ``user_log_q``
            in :meth:`forward`; applies to in-batch candidates only.
    """

    def __init__(
        self,
        temperature: float = 0.1,
        tau_plus: float = 0.05,
        beta: float = 0.0,
        *,
        similarity: str = "cosine",
        user_side: bool = True,
        item_side: bool = True,
        clip: bool = True,
        detach_hardness: bool = True,
        logq: float = 0.0,
    ) -> None:
        super().__init__()
        _check_tau(tau_plus)
        if temperature <= 0:
            raise ConfigError(f"temperature must be > 0; got {temperature!r}")
        if similarity not in SIMILARITIES:
            raise ConfigError(f"similarity must be one of {SIMILARITIES}; got {similarity!r}")
        if not (user_side or item_side):
            raise ConfigError("at least one of user_side and item_side must be True")
        self.temperature, self.tau_plus, self.beta = temperature, tau_plus, beta
        self.similarity = similarity
        self.user_side, self.item_side, self.clip = user_side, item_side, clip
        self.detach_hardness = detach_hardness
        self.logq = logq

    def _log_weight(self, log_q: Tensor | None) -> Tensor | None:
        if self.logq == 0:
            return None
        if log_q is None:
            raise ConfigError("logq > 0 needs item_log_q and user_log_q in forward()")
        return -self.logq * log_q[None, :]

    def _side(
        self, pos: Tensor, neg: Tensor, valid: Tensor, log_weight: Tensor | None = None
    ) -> Tensor:
        log_clip = None
        if self.clip:
            if self.similarity == "cosine":
                log_clip = -1.0 / self.temperature
            else:
                low = neg.detach().masked_fill(~valid, math.inf).amin(-1)
                log_clip = torch.where(torch.isfinite(low), low, torch.zeros_like(low))
        return setwise_contrastive_loss(
            pos,
            neg,
            valid=valid,
            tau_plus=self.tau_plus,
            beta=self.beta,
            log_clip=log_clip,
            detach_hardness=self.detach_hardness,
            log_weight=log_weight,
        )

    def forward(
        self,
        user_emb: Tensor,
        item_emb: Tensor,
        *,
        pos_item_emb: Tensor | None = None,
        pos_user_emb: Tensor | None = None,
        known: Tensor | None = None,
        neg_item_emb: Tensor | None = None,
        neg_item_valid: Tensor | None = None,
        item_log_q: Tensor | None = None,
        user_log_q: Tensor | None = None,
    ) -> Tensor:
        """The batch loss.

        Args:
            user_emb, item_emb: ``[B, F]`` final embeddings of the batch's pairs.
            pos_item_emb: ``[B, M, F]`` positives of each user (default ``item_emb[:, None]``).
            pos_user_emb: ``[B, M, F]`` positives of each item (default ``user_emb[:, None]``).
            known: ``[B, B]`` bool, ``known[b, c]`` = ``(u_b, i_c)`` is a training pair; the
                diagonal is always excluded from the candidates. Default: only the diagonal.
            neg_item_emb: optional explicit item negatives ``[B, N, F]`` for the user side
                (e.g. from a ``deg^alpha`` sampler) instead of the in-batch items.
            neg_item_valid: ``[B, N]`` bool mask for ``neg_item_emb`` (False = known
                positive or padding).
            item_log_q, user_log_q: ``[B]`` log sampling frequency (up to a constant) of the
                batch's items / users, for ``logq > 0``.
        """
        t = self.temperature
        b = user_emb.shape[0]
        if pos_item_emb is None:
            pos_item_emb = item_emb[:, None]
        if pos_user_emb is None:
            pos_user_emb = user_emb[:, None]
        eye = torch.eye(b, dtype=torch.bool, device=user_emb.device)
        masked = eye if known is None else (known.to(torch.bool) | eye)
        need_batch = self.item_side or neg_item_emb is None
        logits = (
            pairwise_similarity(user_emb, item_emb, self.similarity) / t if need_batch else None
        )
        total = user_emb.new_zeros(())
        if self.user_side:
            pos = _rowwise_similarity(user_emb, pos_item_emb, self.similarity) / t
            log_weight = None
            if neg_item_emb is None:
                neg, valid = logits, ~masked
                log_weight = self._log_weight(item_log_q)
            else:
                neg = _rowwise_similarity(user_emb, neg_item_emb, self.similarity) / t
                valid = (
                    torch.ones(neg.shape, dtype=torch.bool, device=neg.device)
                    if neg_item_valid is None
                    else neg_item_valid.to(torch.bool)
                )
            total = total + self._side(pos, neg, valid, log_weight).mean()
        if self.item_side:
            pos = _rowwise_similarity(item_emb, pos_user_emb, self.similarity) / t
            log_weight = self._log_weight(user_log_q)
            total = total + self._side(pos, logits.t(), ~masked.t(), log_weight).mean()
        return total

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, tau_plus={self.tau_plus}, beta={self.beta}, "
            f"similarity={self.similarity!r}, user_side={self.user_side}, "
            f"item_side={self.item_side}, clip={self.clip}, "
            f"detach_hardness={self.detach_hardness}, logq={self.logq}"
        )


# ----------------------------------------------------------------------------- objectives


@dataclass(frozen=True)
class CFLossInput:
    """What :class:`~graphrec.models.cf.CFTrainer` hands a :class:`CFObjective` for one batch.

    Attributes:
        batch: the sampled pairs, with what the objective asked the sampler for.
        user_emb, item_emb: ``[U, F]``, ``[I, F]`` final embeddings of all users / items.
        users, items: ``[B, F]`` final embeddings of the batch's pairs
            (``user_emb[batch.users]``, ``item_emb[batch.items]``).
        user_ego, item_ego: ``[U, F]``, ``[I, F]`` layer-0 embeddings (what L2 covers).
    """

    batch: CFBatch
    user_emb: Tensor
    item_emb: Tensor
    users: Tensor
    items: Tensor
    user_ego: Tensor
    item_ego: Tensor


class CFObjective:
    """A CF loss as :class:`~graphrec.models.cf.CFTrainer` trains with it (``CF_LOSSES`` entry).

    The class attributes say what the sampler must provide and which settings apply:

    Attributes:
        negatives: explicit negatives per pair when ``CFConfig.num_negatives`` is None.
        min_negatives: the fewest explicit negatives it accepts (``CFConfig`` checks).
        known: the sampler builds the ``[B, B]`` known-pair mask ``CFBatch.known``.
        config_fields: the :class:`~graphrec.models.cf.CFConfig` fields that apply to this
            loss only (the command line refuses their options with other losses).

    Args:
        config: the run's configuration (its loss settings).
    """

    negatives: int = 0
    min_negatives: int = 0
    known: bool = False
    config_fields: tuple[str, ...] = ()

    def __init__(self, config: CFConfig) -> None:
        self.config = config

    @classmethod
    def from_config(cls, graph: BipartiteGraph, config: CFConfig) -> CFObjective:
        """The objective of ``config`` for training on ``graph``."""
        return cls(config)

    def __call__(self, inputs: CFLossInput) -> Tensor:  # pragma: no cover - abstract
        """The scalar batch loss, without the L2 term (the trainer adds it)."""
        raise NotImplementedError

    def regularized(self, inputs: CFLossInput) -> tuple[Tensor, ...]:
        """Layer-0 rows the L2 term covers besides the batch's users and items (default none)."""
        return ()


@CF_LOSSES.register("bpr")
class BPRObjective(CFObjective):
    """:func:`bpr_loss` of each pair against its explicit negatives (those still a known
    positive after resampling left out); L2 also covers the negatives."""

    negatives = min_negatives = 1

    def __call__(self, inputs: CFLossInput) -> Tensor:
        batch = inputs.batch
        neg = inputs.item_emb[batch.neg_items]  # [B, N, F]
        pos_s = (inputs.users * inputs.items).sum(-1, keepdim=True).expand(batch.neg_items.shape)
        neg_s = torch.einsum("bf,bnf->bn", inputs.users, neg)
        valid = batch.neg_valid
        return bpr_loss(pos_s[valid], neg_s[valid])

    def regularized(self, inputs: CFLossInput) -> tuple[Tensor, ...]:
        ego = inputs.item_ego
        return (ego[inputs.batch.neg_items].reshape(-1, ego.shape[1]),)


@CF_LOSSES.register("infonce")
class InfoNCEObjective(CFObjective):
    """:func:`info_nce_loss` with in-batch negatives (``temperature``, ``symmetric``)."""

    known = True
    config_fields = ("temperature", "symmetric")

    def __call__(self, inputs: CFLossInput) -> Tensor:
        cfg = self.config
        return info_nce_loss(
            inputs.users,
            inputs.items,
            temperature=cfg.temperature,
            known=inputs.batch.known,
            symmetric=cfg.symmetric,
        )


@CF_LOSSES.register("hdccf")
class HDCCFObjective(CFObjective):
    """:class:`HDCCFLoss` with set-wise positives, optional explicit negatives and the logQ
    correction by training degrees.

    Args:
        config: the run's configuration.
        log_degrees: ``([U], [I])`` log training degrees (at least 1), the ``log q`` of logQ.
    """

    known = True
    config_fields = ("temperature", "tau_plus", "beta", "logq", "num_positives")

    def __init__(self, config: CFConfig, log_degrees: tuple[Tensor, Tensor]) -> None:
        super().__init__(config)
        self.loss = HDCCFLoss(config.temperature, config.tau_plus, config.beta, logq=config.logq)
        self.user_log_q, self.item_log_q = log_degrees

    @classmethod
    def from_config(cls, graph: BipartiteGraph, config: CFConfig) -> HDCCFObjective:
        log_degrees = tuple(
            torch.from_numpy(np.log(np.maximum(degree, 1)).astype(np.float32))
            for degree in (graph.user_degree(), graph.item_degree())
        )
        return cls(config, log_degrees)

    def __call__(self, inputs: CFLossInput) -> Tensor:
        batch, item_emb = inputs.batch, inputs.item_emb
        neg = None if batch.neg_items is None else item_emb[batch.neg_items]
        return self.loss(
            inputs.users,
            inputs.items,
            pos_item_emb=item_emb[batch.pos_items],
            pos_user_emb=inputs.user_emb[batch.pos_users],
            known=batch.known,
            neg_item_emb=neg,
            neg_item_valid=batch.neg_valid,
            item_log_q=self.item_log_q[batch.items],
            user_log_q=self.user_log_q[batch.users],
        )
