r"""Differential privacy for split learning: per-row clipping and Gaussian noise on the tensors
that cross a party boundary, accounted with Opacus's RDP accountant.

A protected tensor :math:`X` (``[B, d]``: a party's embeddings, or the gradients the label
owner returns) is released as

.. math::
    \tilde{X}_i = X_i \cdot \min\!\Big(1, \frac{C}{\lVert X_i \rVert_2}\Big)
    + \mathcal{N}(0, \sigma^2 C^2 I)

row by row: adding or removing one aligned row changes the release by at most :math:`C` in
:math:`L_2`, so each release is the sampled Gaussian mechanism with noise multiplier
:math:`\sigma` and sampling rate :math:`q = B / N`. Embedding noise protects the features of the
party that sends them; gradient noise protects the labels (and what the gradient reveals of the
other parties' rows) from the party that receives them. :class:`PrivacyAccountant` composes
every release of a run in Rényi DP (Mironov, "Rényi Differential Privacy of the Sampled Gaussian
Mechanism", arXiv 1908.10530) and reports :math:`\varepsilon` at :math:`\delta`; it composes
releases that protect different data too, so the :math:`\varepsilon` it reports bounds each of
them. As in Opacus, shuffled batches are accounted as Poisson-sampled ones with the same rate.
The gradient rows are rows of :math:`\partial L / \partial \mathbf{h}` for the batch loss
:math:`L` (a mean over the batch makes each row :math:`1/B` of its sample's gradient), so ``C``
for gradients is on that scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from graphrec.errors import ConfigError, MissingExtraError

__all__ = ["TARGETS", "GaussianDP", "PrivacyAccountant", "clip_rows"]

#: The tensors differential privacy can protect.
TARGETS = ("embedding", "gradient")


def clip_rows(x: Tensor, clip_norm: float) -> Tensor:
    r"""Scale every row of ``x`` (``[B, d]``) to :math:`L_2` norm at most ``clip_norm``
    (differentiable; rows already inside the ball are unchanged)."""
    norms = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    return x * (clip_norm / norms.clamp_min(clip_norm))


@dataclass(frozen=True)
class GaussianDP:
    """Clipping and Gaussian noise for the tensors in ``targets``.

    Args:
        noise_multiplier: :math:`\\sigma \\ge 0` (noise std = ``noise_multiplier * clip_norm``).
        clip_norm: :math:`C > 0`, the largest row norm.
        targets: which tensors to protect, a subset of ``("embedding", "gradient")``.
        delta: the :math:`\\delta` at which :math:`\\varepsilon` is reported, in ``(0, 1)``.
    """

    noise_multiplier: float
    clip_norm: float
    targets: tuple[str, ...] = ("embedding",)
    delta: float = 1e-5

    def __post_init__(self) -> None:
        if not self.noise_multiplier >= 0:
            raise ConfigError(f"noise_multiplier must be >= 0; got {self.noise_multiplier}")
        if not self.clip_norm > 0:
            raise ConfigError(f"clip_norm must be > 0; got {self.clip_norm}")
        targets = tuple(self.targets)
        if not targets or not set(targets) <= set(TARGETS) or len(set(targets)) < len(targets):
            raise ConfigError(
                f"targets must be distinct names from {list(TARGETS)}; got {list(targets)}"
            )
        if not 0 < self.delta < 1:
            raise ConfigError(f"delta must be in (0, 1); got {self.delta}")
        object.__setattr__(self, "targets", targets)

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The release of ``x`` (``[B, d]``): rows clipped to ``clip_norm`` plus noise."""
        return self.add_noise(clip_rows(x, self.clip_norm), generator)

    def add_noise(self, clipped: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``clipped`` (rows already clipped) plus the Gaussian noise of one release."""
        if self.noise_multiplier == 0:
            return clipped
        noise = torch.randn(
            clipped.shape, generator=generator, dtype=clipped.dtype, device=clipped.device
        )
        return clipped + (self.noise_multiplier * self.clip_norm) * noise


def _opacus_accountant() -> Any:
    try:
        from opacus.accountants import RDPAccountant
    except ImportError as exc:
        raise MissingExtraError("DP accounting", "vfl") from exc
    return RDPAccountant()


class PrivacyAccountant:
    """Composes the releases of a run with Opacus's RDP accountant (the ``vfl`` extra).

    Attributes:
        releases: number of releases recorded.
    """

    def __init__(self) -> None:
        self._rdp = _opacus_accountant()
        self.releases = 0
        self._noiseless = False

    def record(self, noise_multiplier: float, sample_rate: float) -> None:
        """One sampled Gaussian release with rate ``sample_rate`` in ``(0, 1]``."""
        if not 0 < sample_rate <= 1:
            raise ConfigError(f"sample_rate must be in (0, 1]; got {sample_rate}")
        self._rdp.step(noise_multiplier=noise_multiplier, sample_rate=sample_rate)
        self.releases += 1
        self._noiseless |= noise_multiplier == 0

    def state_dict(self) -> dict[str, Any]:
        """The releases recorded (Opacus's ``(sigma, q, steps)`` history)."""
        return {
            "history": [list(h) for h in self._rdp.history],
            "releases": self.releases,
            "noiseless": self._noiseless,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self._rdp.history = [tuple(h) for h in state["history"]]
        self.releases, self._noiseless = state["releases"], state["noiseless"]

    def epsilon(self, delta: float) -> float:
        """:math:`\\varepsilon` of everything recorded, at ``delta`` (0 before any release;
        infinite once a release had no noise)."""
        if not self.releases:
            return 0.0
        if self._noiseless:
            return float("inf")
        return float(self._rdp.get_epsilon(delta=delta))
