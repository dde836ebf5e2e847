r"""CrossDistil: cross-task knowledge distillation for two binary tasks.

"Cross-Task Knowledge Distillation in Multi-Task Recommendation" (C. Yang et al., AAAI 2022)
has no public code; this module is our reconstruction of its three mechanisms, every variant a
config field:

1. **Augmented teacher towers with quadruplet ranking losses.** Next to each task's student
   tower sits a teacher tower on the same tower input. Teacher :math:`t` ranks the four label
   groups :math:`S_{y_A y_B}` in an augmented order in which its own label dominates and the
   other task's label breaks ties (:func:`quadruplet_loss`): for task A
   :math:`S_{++} \succ S_{+-} \succ S_{-+} \succ S_{--}`, for task B
   :math:`S_{++} \succ S_{-+} \succ S_{+-} \succ S_{--}`.
2. **Calibrated distillation.** A monotone Platt map (:class:`PlattCalibration`) turns the
   teacher's ranking score into a probability, fitted by BCE on the task label with a
   stop-gradient into the score, so calibration never changes the teacher's ranking; the student
   is distilled towards it (:func:`kd_loss`).
3. **Error correction** (the paper's exact rule is unverified): no distillation gradient into
   the teacher, a linear warm-up of the distillation weight (:func:`alpha_at`), and a
   ground-truth override or blend of the soft label (:func:`correct_soft_labels`).

:class:`CrossDistil` puts the four parts together; with ``mode="kd"`` the same teacher towers
are trained with BCE instead of the quadruplet loss (plain knowledge distillation, the
ablation baseline), everything else equal.

Isotonic calibration (``sklearn.isotonic``) is deliberately not offered: it is fitted offline,
not by gradient steps inside the joint training, and its piecewise-constant map ties teacher
scores, so it would blur exactly the fine-grained ranking the teacher is there to transfer.

Example:
    >>> import torch
    >>> from graphrec.models.mtl import MMoE, load_mtl_dataset
    >>> data = load_mtl_dataset("synthetic", seed=0)
    >>> model = MMoE(data.features, num_tasks=2)
    >>> distill = CrossDistil(model.tower_in_channels, CrossDistilConfig(warmup_steps=100))
    >>> train = data.split.train
    >>> batch = data.features.batch(train.table, rows=range(512))
    >>> tower_inputs, logits = model.forward_towers(batch)
    >>> loss, parts = distill(tower_inputs, logits, torch.as_tensor(train.labels[:512]), step=0)
    >>> loss.backward()  # trains backbone, student towers, teachers and calibrators together
    >>> sorted(parts)
    ['alpha', 'bce_a', 'bce_b', 'cal_a', 'cal_b', 'kd_a', 'kd_b', 'teacher_a', 'teacher_b']
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from graphrec.errors import ConfigError
from graphrec.nn.mlp import MLP

__all__ = [
    "CrossDistil",
    "CrossDistilConfig",
    "PlattCalibration",
    "alpha_at",
    "correct_soft_labels",
    "group_rank",
    "kd_loss",
    "quadruplet_loss",
]

TASKS = ("a", "b")
PAIRS = ("adjacent", "all")
MODES = ("crossdistil", "kd")
CORRECTIONS = ("none", "override", "blend")

# Pairs (higher group, lower group) of group ranks 0 (top) .. 3 (bottom), in loss order.
_PAIRS = {
    "adjacent": ((0, 1), (1, 2), (2, 3)),
    "all": ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)),
}


def group_rank(y_a: Tensor, y_b: Tensor, task: str = "a") -> Tensor:
    r"""Rank ``[B]`` (0 = top, 3 = bottom) of each sample's label group in ``task``'s
    augmented order: ``3 - (2 y_A + y_B)`` for task A (``++, +-, -+, --``) and
    ``3 - (2 y_B + y_A)`` for task B (``++, -+, +-, --``). Labels are 0/1 (any float or
    integer dtype; values above 0.5 count as positive).
    """
    if task not in TASKS:
        raise ConfigError(f"task must be one of {TASKS}; got {task!r}")
    own, other = (y_a, y_b) if task == "a" else (y_b, y_a)
    return 3 - (2 * (own > 0.5).long() + (other > 0.5).long())


def quadruplet_loss(
    scores: Tensor,
    y_a: Tensor,
    y_b: Tensor,
    *,
    task: str = "a",
    pairs: str = "adjacent",
    margins: Sequence[float] | None = None,
    weights: Sequence[float] | None = None,
) -> Tensor:
    r"""The quadruplet ranking loss of one teacher over the four label groups:

    .. math::
        L_{\mathrm{quad}} = \sum_{k=1}^{K} w_k \frac{1}{|S_{a_k}| |S_{b_k}|}
            \sum_{i \in S_{a_k}} \sum_{j \in S_{b_k}} -\log \sigma(r_i - r_j - m_k)

    over the group pairs :math:`(S_{a_k} \succ S_{b_k})` of ``task``'s augmented order
    (:func:`group_rank`): the three adjacent pairs (``pairs="adjacent"``: ``++/+-, +-/-+, -+/--``
    for task A, ``++/-+, -+/+-, +-/--`` for task B) or all six (``pairs="all"``: ``(0,1), (0,2),
    (0,3), (1,2), (1,3), (2,3)`` in group ranks). A pair with an empty group contributes 0
    (never NaN); with adjacent pairs an empty middle group also drops the comparison across it,
    which ``pairs="all"`` keeps. A batch without any valid pair returns a zero that still has a
    ``grad_fn``.

    With the one-hot group indicators :math:`\mathbf{O} \in \{0, 1\}^{B \times 4}` and
    :math:`\mathbf{T}_{ij} = -\log \sigma(r_i - r_j - m)` over the ``[B, B]`` score differences,
    :math:`\mathbf{O}^\top \mathbf{T} \mathbf{O}` holds every group pair's sum (one such
    product per distinct margin); no data-dependent branching, so no host synchronisation on a
    GPU.

    Args:
        scores: teacher ranking scores :math:`r` ``[B]``.
        y_a, y_b: 0/1 labels of task A and task B ``[B]``.
        task: ``"a"`` or ``"b"``, whose augmented order to use.
        pairs: ``"adjacent"`` or ``"all"``.
        margins: one margin :math:`m_k \ge 0` per pair, in the order above (default 0).
        weights: one weight :math:`w_k \ge 0` per pair (default 1).

    Returns:
        The scalar loss.
    """
    if pairs not in _PAIRS:
        raise ConfigError(f"pairs must be one of {PAIRS}; got {pairs!r}")
    if scores.dim() != 1 or y_a.shape != scores.shape or y_b.shape != scores.shape:
        raise ConfigError(
            f"scores, y_a and y_b must all have shape [B]; got {tuple(scores.shape)}, "
            f"{tuple(y_a.shape)}, {tuple(y_b.shape)}"
        )
    group_pairs = _PAIRS[pairs]
    k = len(group_pairs)
    margin = [0.0] * k if margins is None else _per_pair("margins", margins, k)
    weight = scores.new_tensor([1.0] * k if weights is None else _per_pair("weights", weights, k))
    onehot = F.one_hot(group_rank(y_a, y_b, task), 4).to(scores.dtype)  # [B, 4]
    diff = scores.unsqueeze(1) - scores.unsqueeze(0)
    # [4, 4] sums of the terms over every (group, group) block, one per distinct margin
    blocks = {m: onehot.T @ -F.logsigmoid(diff - m) @ onehot for m in set(margin)}
    sums = torch.stack([blocks[m][hi, lo] for m, (hi, lo) in zip(margin, group_pairs, strict=True)])
    size = onehot.sum(0)
    counts = torch.stack([size[hi] * size[lo] for hi, lo in group_pairs])
    return (weight * sums / counts.clamp(min=1)).sum()


def _per_pair(name: str, values: Sequence[float], k: int) -> list[float]:
    values = [float(v) for v in values]
    if len(values) != k or any(v < 0 for v in values):
        raise ConfigError(f"{name} needs {k} values >= 0 (one per group pair); got {values}")
    return values


class PlattCalibration(torch.nn.Module):
    r"""Monotone Platt calibration of a ranking score:

    .. math::
        \tilde z = a \, \mathrm{sg}(r) + b, \qquad a = \mathrm{softplus}(\theta) > 0, \qquad
        p_T = \sigma(\tilde z)

    with :math:`\mathrm{sg}` the stop-gradient. Fitted by :meth:`loss`,
    :math:`\mathrm{BCE}(\sigma(\tilde z), y)`; since :math:`a > 0` the map is strictly increasing
    and, with the stop-gradient, the calibration loss never reaches (so never re-ranks) the
    teacher. Initialised to the identity (:math:`a = 1, b = 0`).

    Shapes:
        - **input:** scores :math:`r` ``[*]``
        - **output:** calibrated logits :math:`\tilde z` ``[*]``
    """

    def __init__(self) -> None:
        super().__init__()
        self.theta = torch.nn.Parameter(torch.empty(()))
        self.bias = torch.nn.Parameter(torch.empty(()))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Back to the identity map (:math:`\\theta = \\log(e - 1)`, so :math:`a = 1`)."""
        with torch.no_grad():
            self.theta.fill_(math.log(math.e - 1.0))
            self.bias.zero_()

    @property
    def scale(self) -> Tensor:
        """The slope :math:`a = \\mathrm{softplus}(\\theta) > 0`."""
        return F.softplus(self.theta)

    def forward(self, scores: Tensor, *, detach: bool = True) -> Tensor:
        """Calibrated logits; ``detach=False`` lets gradients through to ``scores`` (only the
        ablation of :attr:`CrossDistilConfig.kd_into_teacher` uses it)."""
        return self.scale * (scores.detach() if detach else scores) + self.bias

    def loss(self, scores: Tensor, labels: Tensor) -> Tensor:
        """The calibration loss :math:`\\mathrm{BCE}(\\sigma(a\\,\\mathrm{sg}(r) + b), y)`."""
        return F.binary_cross_entropy_with_logits(self(scores), labels.to(scores.dtype))


def kd_loss(student_logits: Tensor, soft_labels: Tensor) -> Tensor:
    r"""Distillation loss :math:`\mathrm{BCE}(\sigma(z), \tilde p)`, averaged over the batch.

    ``soft_labels`` are used as given: detach them for the usual stop-gradient into the teacher.
    Note that this BCE is not 0 at :math:`\sigma(z) = \tilde p` (it is the cross-entropy, i.e.
    the KL divergence plus the soft labels' entropy); its gradient in :math:`z` is
    :math:`\sigma(z) - \tilde p`.
    """
    return F.binary_cross_entropy_with_logits(student_logits, soft_labels)


def correct_soft_labels(
    soft_labels: Tensor, labels: Tensor, mode: str = "none", blend: float = 0.3
) -> Tensor:
    r"""Ground-truth correction of the teacher's soft labels :math:`p_T` (``[B]``):

    * ``"none"``: :math:`p_T` unchanged;
    * ``"override"``: the label :math:`y` where :math:`p_T` is strictly on the wrong side of 0.5
      (:math:`(p_T - 0.5)(2y - 1) < 0`), :math:`p_T` elsewhere;
    * ``"blend"``: :math:`(1 - \lambda) p_T + \lambda y` everywhere (``blend`` = :math:`\lambda`
      in [0, 1]; :math:`\lambda > 0.5` puts every soft label on the label's side).
    """
    if mode not in CORRECTIONS:
        raise ConfigError(f"correction must be one of {CORRECTIONS}; got {mode!r}")
    if not 0.0 <= blend <= 1.0:
        raise ConfigError(f"blend must be in [0, 1]; got {blend}")
    labels = labels.to(soft_labels.dtype)
    if mode == "override":
        wrong = (soft_labels - 0.5) * (2.0 * labels - 1.0) < 0
        return torch.where(wrong, labels, soft_labels)
    if mode == "blend":
        return (1.0 - blend) * soft_labels + blend * labels
    return soft_labels


def alpha_at(step: int, alpha: float, warmup_steps: int = 0) -> float:
    """Distillation weight at optimisation step ``step`` (0-based): ``alpha * min(1, step / W)``
    for a warm-up over ``W = warmup_steps`` steps (0 at the first step), ``alpha`` when
    ``W = 0``."""
    if step < 0 or warmup_steps < 0:
        raise ConfigError(f"step and warmup_steps must be >= 0; got {step}, {warmup_steps}")
    if warmup_steps == 0:
        return alpha
    return alpha * min(1.0, step / warmup_steps)


@dataclass(frozen=True)
class CrossDistilConfig:
    """:class:`CrossDistil` settings. The defaults are starting points, not yet chosen on
    validation; ``pair_weights`` (which scale the ranking loss against the BCE terms on the
    shared backbone), ``alpha``, ``warmup_steps`` and ``correction`` are the ones to tune.

    Attributes:
        mode: ``"crossdistil"`` (teachers trained with the quadruplet loss) or ``"kd"`` (the
            same teachers trained with BCE on their own label: plain distillation).
        teacher_hidden: hidden sizes of each teacher tower (an :class:`~graphrec.nn.mlp.MLP`
            with one output).
        pairs, margins, pair_weights: the quadruplet loss's group pairs, per-pair margins and
            per-pair weights (:func:`quadruplet_loss`).
        alpha: distillation weight :math:`\\alpha` after the warm-up.
        warmup_steps: steps over which :math:`\\alpha` ramps linearly from 0 (:func:`alpha_at`).
        correction, blend: ground-truth correction of the soft labels
            (:func:`correct_soft_labels`).
        kd_into_teacher: let the distillation gradient reach the teacher tower and calibrator
            (off: stop-gradient, the error-correction default; on: the ablation).
        detach_backbone: stop the teacher losses at the tower inputs, so the teachers do not
            train the shared backbone (an ablation: off, the augmented ranking tasks also shape
            the shared representation).
    """

    mode: str = "crossdistil"
    teacher_hidden: tuple[int, ...] = (32,)
    pairs: str = "adjacent"
    margins: tuple[float, ...] | None = None
    pair_weights: tuple[float, ...] | None = None
    alpha: float = 0.5
    warmup_steps: int = 0
    correction: str = "none"
    blend: float = 0.3
    kd_into_teacher: bool = False
    detach_backbone: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}; got {self.mode!r}")
        if self.pairs not in _PAIRS:
            raise ConfigError(f"pairs must be one of {PAIRS}; got {self.pairs!r}")
        k = len(_PAIRS[self.pairs])
        for name in ("margins", "pair_weights"):
            values = getattr(self, name)
            if values is not None and (len(values) != k or min(values) < 0):
                raise ConfigError(
                    f"{name} needs {k} values >= 0 for pairs={self.pairs!r}; got {values}"
                )
        if any(h < 1 for h in self.teacher_hidden):
            raise ConfigError(f"teacher_hidden sizes must be >= 1; got {self.teacher_hidden}")
        if self.alpha < 0:
            raise ConfigError(f"alpha must be >= 0; got {self.alpha}")
        if self.warmup_steps < 0:
            raise ConfigError(f"warmup_steps must be >= 0; got {self.warmup_steps}")
        if self.correction not in CORRECTIONS:
            raise ConfigError(f"correction must be one of {CORRECTIONS}; got {self.correction!r}")
        if not 0.0 <= self.blend <= 1.0:
            raise ConfigError(f"blend must be in [0, 1]; got {self.blend}")


class CrossDistil(torch.nn.Module):
    r"""Teacher towers, calibration and distillation for two tasks A and B, as one loss:

    .. math::
        L = \sum_{t \in \{A, B\}} \Big[ \mathrm{BCE}(\sigma(z_t), y_t)
            + \alpha\, \mathrm{BCE}\big(\sigma(z_t), \mathrm{sg}(\tilde p_t)\big)
            + L^t_{\mathrm{teacher}} + \mathrm{BCE}\big(\sigma(a_t\,\mathrm{sg}(r_t) + b_t),
            y_t\big) \Big]

    with student logits :math:`z_t`, teacher scores :math:`r_t = f_t(\mathbf{h}_t)` of a teacher
    tower :math:`f_t` on the backbone's tower input :math:`\mathbf{h}_t`, soft labels
    :math:`\tilde p_t` = the corrected (:func:`correct_soft_labels`) Platt-calibrated
    :math:`\sigma(a_t r_t + b_t)`, :math:`\alpha` after warm-up (:func:`alpha_at`), and
    :math:`L^t_{\mathrm{teacher}}` = :func:`quadruplet_loss` of :math:`r_t` (``mode="crossdistil"``)
    or :math:`\mathrm{BCE}(\sigma(r_t), y_t)` (``mode="kd"``). The module holds only the teachers;
    the backbone and its student towers stay outside, so any multi-task backbone that exposes
    per-task tower inputs and logits can use it.

    Args:
        in_channels: width of the tower inputs, one int for both tasks or one per task.
        config: a :class:`CrossDistilConfig` (default settings when None).

    Shapes:
        - **input:** tower inputs: a sequence of two ``[B, F_t]``; student logits and labels:
          ``[B, 2]`` (columns A, B) or a sequence of two ``[B]``; ``step``: the 0-based
          optimisation step (for the warm-up)
        - **output:** the scalar loss and a ``dict`` of detached scalar parts:
          ``bce_a, kd_a, teacher_a, cal_a`` and the same for ``b``, plus ``alpha``
    """

    def __init__(
        self, in_channels: int | Sequence[int], config: CrossDistilConfig | None = None
    ) -> None:
        super().__init__()
        self.config = config if config is not None else CrossDistilConfig()
        widths = [in_channels] * 2 if isinstance(in_channels, int) else list(in_channels)
        if len(widths) != 2 or min(widths) < 1:
            raise ConfigError(f"in_channels must be one int >= 1 or two; got {in_channels}")
        self.teachers = torch.nn.ModuleList(MLP(w, self.config.teacher_hidden, 1) for w in widths)
        self.calibrators = torch.nn.ModuleList(PlattCalibration() for _ in widths)

    def reset_parameters(self) -> None:
        """Re-initialise the teacher towers and reset the calibrators to the identity."""
        for module in (*self.teachers, *self.calibrators):
            module.reset_parameters()

    def teacher_scores(self, tower_inputs: Sequence[Tensor]) -> Tensor:
        """Teacher ranking scores :math:`r` ``[B, 2]``."""
        if len(tower_inputs) != 2:
            raise ConfigError(f"tower_inputs must hold 2 tensors; got {len(tower_inputs)}")
        detach = self.config.detach_backbone
        return torch.stack(
            [
                f(h.detach() if detach else h).squeeze(-1)
                for f, h in zip(self.teachers, tower_inputs, strict=True)
            ],
            dim=1,
        )

    @torch.no_grad()
    def teacher_proba(self, tower_inputs: Sequence[Tensor]) -> Tensor:
        """Calibrated teacher probabilities :math:`\\sigma(a r + b)` ``[B, 2]`` (no gradient;
        before :func:`correct_soft_labels`, which needs labels)."""
        r = self.teacher_scores(tower_inputs)
        return torch.sigmoid(torch.stack([c(r[:, t]) for t, c in enumerate(self.calibrators)], 1))

    def forward(
        self,
        tower_inputs: Sequence[Tensor],
        student_logits: Tensor | Sequence[Tensor],
        labels: Tensor | Sequence[Tensor],
        *,
        step: int,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        cfg = self.config
        z, y = _columns(student_logits, "student_logits"), _columns(labels, "labels")
        y = y.to(z.dtype)
        r = self.teacher_scores(tower_inputs)
        alpha = alpha_at(step, cfg.alpha, cfg.warmup_steps)
        parts: dict[str, Tensor] = {}
        total = z.new_zeros(())
        for t, name in enumerate(TASKS):
            cal = self.calibrators[t]
            if cfg.mode == "crossdistil":
                teacher = quadruplet_loss(
                    r[:, t],
                    y[:, 0],
                    y[:, 1],
                    task=name,
                    pairs=cfg.pairs,
                    margins=cfg.margins,
                    weights=cfg.pair_weights,
                )
            else:
                teacher = F.binary_cross_entropy_with_logits(r[:, t], y[:, t])
            soft = torch.sigmoid(cal(r[:, t], detach=False))
            if not cfg.kd_into_teacher:
                soft = soft.detach()
            soft = correct_soft_labels(soft, y[:, t], cfg.correction, cfg.blend)
            losses = {
                "bce": F.binary_cross_entropy_with_logits(z[:, t], y[:, t]),
                "kd": kd_loss(z[:, t], soft),
                "teacher": teacher,
                "cal": cal.loss(r[:, t], y[:, t]),
            }
            total = total + losses["bce"] + alpha * losses["kd"] + teacher + losses["cal"]
            parts.update({f"{key}_{name}": v.detach() for key, v in losses.items()})
        parts["alpha"] = torch.tensor(alpha)
        return total, parts


def _columns(x: Tensor | Sequence[Tensor], name: str) -> Tensor:
    """``[B, 2]`` from a ``[B, 2]`` tensor or a sequence of two ``[B]``."""
    if not isinstance(x, Tensor):
        x = torch.stack(list(x), dim=1)
    if x.dim() != 2 or x.shape[1] != 2:
        raise ConfigError(f"{name} must be [B, 2] or two [B] tensors; got {tuple(x.shape)}")
    return x
