"""Label correction for on-device fine-tuning under CTR drift.

A device holds ``n`` local samples with labels :math:`y_i \\in \\{0, 1\\}`; its *local share*
:math:`r = \\frac{1}{n}\\sum_i y_i` differs from the *global share* :math:`g` of the cloud's
training data (shipped with the model). Fine-tuning with log loss pulls the mean prediction from
:math:`g` to :math:`r`; a correction changes the labels (or the logit) so that the local prior
matches the global one. Every rule guarantees

.. math::
    \\frac{1}{n} \\sum_i \\tilde{y}_i = g

for the labels it trains on (rule ``offset`` through its effective labels, see below):

* ``soft`` (rule A): one side is relabelled by a constant. If :math:`r < g` the negatives become
  :math:`(g - r) / (1 - r)`; if :math:`r > g` the positives become :math:`g / r`. Every positive
  stays above every negative.
* ``flip`` (rule B): :math:`m = n\\,|g - r|` labels of the over-represented side move to the
  other side, those the cloud model scores most like the other side first (if :math:`r < g`,
  the negatives with the highest initial score become 1; if :math:`r > g`, the positives with
  the lowest become 0). :math:`\\lfloor m \\rfloor` samples flip fully; the next one takes the
  fractional part :math:`m - \\lfloor m \\rfloor` as a soft flip, so the mean is exactly
  :math:`g` (rounding :math:`m` would miss it by up to :math:`1/(2n)`).
* ``random`` (rule C): as ``flip`` in a random order (ablation of the score order).
* ``offset`` (rule D): the labels stay; the constant :math:`\\delta = \\mathrm{logit}(r) -
  \\mathrm{logit}(g)` is added to the logit while fine-tuning and dropped at inference (the
  textbook prior-shift correction). At the cloud prior (every logit :math:`\\mathrm{logit}(g)`)
  the log-loss gradient is :math:`\\sigma(\\mathrm{logit}(g) + \\delta) - y_i = r - y_i`,
  i.e. that of the effective labels :math:`\\tilde{y}_i = y_i - r + g`, whose mean is
  :math:`g`. For :math:`r \\in \\{0, 1\\}`, :math:`\\delta = \\mp\\infty` and the gradient is 0
  (the limit): the device does not update.

The rules are a design choice (the exact rule of Ding et al., "On-Device Model Fine-Tuning
with Label Correction in Recommender Systems", arXiv 2211.01163, is not public).

Example:
    >>> import torch
    >>> c = correct_labels(torch.tensor([1.0, 1.0, 1.0, 0.0]), 0.5, "soft")
    >>> c.labels.tolist(), c.offset
    ([0.6666666666666666, 0.6666666666666666, 0.6666666666666666, 0.0], 0.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from graphrec.errors import ConfigError

__all__ = ["CORRECTIONS", "CorrectedLabels", "correct_labels"]

#: Correction rule names: no correction, then rules A-D.
CORRECTIONS = ("none", "soft", "flip", "random", "offset")


@dataclass
class CorrectedLabels:
    """Labels to fine-tune on and the logit offset to add while fine-tuning.

    Attributes:
        labels: ``float64 [n]`` corrected (possibly soft) labels.
        offset: added to every training logit (``inf``/``-inf``: the device does not update).
        local_share: :math:`r`, the mean of the original labels.
    """

    labels: Tensor
    offset: float
    local_share: float


def correct_labels(
    labels: Tensor,
    global_share: float,
    rule: str,
    *,
    scores: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> CorrectedLabels:
    """Correct one device's labels so that their mean is ``global_share`` (module docstring).

    Args:
        labels: ``[n]`` 0/1 labels of the device's local samples (``n >= 1``).
        global_share: :math:`g` in ``(0, 1)``, the share of positives of the cloud data.
        rule: one of :data:`CORRECTIONS`.
        scores: ``[n]`` initial scores (logits or probabilities) of the cloud model; ``flip``
            only.
        generator: random order of ``random`` (default: torch's global generator).

    Raises:
        ConfigError: unknown rule, ``global_share`` outside ``(0, 1)``, non-binary or empty
            labels, or ``flip`` without ``scores`` of the labels' shape.
    """
    if rule not in CORRECTIONS:
        raise ConfigError(f"correction must be one of {', '.join(CORRECTIONS)}; got {rule!r}")
    if not 0.0 < global_share < 1.0:
        raise ConfigError(f"global_share must be in (0, 1); got {global_share}")
    y = torch.as_tensor(labels, dtype=torch.float64).reshape(-1)
    if y.numel() == 0:
        raise ConfigError("labels must hold at least one sample")
    if not bool(((y == 0) | (y == 1)).all()):
        raise ConfigError("labels must be 0/1")
    g = float(global_share)
    n = y.numel()
    r = float(y.mean())
    if rule == "none" or r == g:
        return CorrectedLabels(y, 0.0, r)
    if rule == "offset":
        return CorrectedLabels(y, _logit(r) - _logit(g), r)
    if rule == "soft":
        out = y.clone()
        if r < g:
            out[y == 0] = (g - r) / (1 - r)
        else:
            out[y == 1] = g / r
        return CorrectedLabels(out, 0.0, r)
    # hard flips of m = n |g - r| samples of the over-represented side, the last one soft
    side = 0.0 if r < g else 1.0
    candidates = torch.nonzero(y == side).flatten()
    if rule == "flip":
        if scores is None or torch.as_tensor(scores).numel() != n:
            raise ConfigError("correction 'flip' needs the cloud model's scores, one per label")
        s = torch.as_tensor(scores, dtype=torch.float64).reshape(-1)[candidates]
        # most like the other side first (stable: ties keep sample order)
        order = torch.sort(s, descending=side == 0.0, stable=True).indices
    else:
        order = torch.randperm(len(candidates), generator=generator)
    m = n * abs(g - r)
    whole = min(int(math.floor(m + 1e-9)), len(candidates))
    out = y.clone()
    target = 1.0 - side
    out[candidates[order[:whole]]] = target
    frac = m - whole
    if frac > 1e-9 and whole < len(candidates):
        out[candidates[order[whole]]] = side + (target - side) * frac
    return CorrectedLabels(out, 0.0, r)


def _logit(p: float) -> float:
    if p <= 0.0:
        return -math.inf
    if p >= 1.0:
        return math.inf
    return math.log(p / (1.0 - p))
