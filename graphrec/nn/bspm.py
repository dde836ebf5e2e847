"""BSPM: blurring-sharpening process filter for collaborative filtering."""

from __future__ import annotations

import scipy.sparse as sp
import torch
from torch import Tensor

from graphrec.errors import ConfigError
from graphrec.nn.gf_cf import GFCFFilter
from graphrec.nn.linear_filter import Signal, as_signal

__all__ = ["BSPMFilter"]


class BSPMFilter(torch.nn.Module):
    r"""The blurring-sharpening process filter from the `"Blurring-Sharpening Process Models
    for Collaborative Filtering" <https://arxiv.org/abs/2211.09324>`_ paper (Choi et al.,
    SIGIR 2023), final-sharpening form with Euler steps:

    .. math::
        \mathbf{S}_0 &= \mathbf{X} \tilde{\mathbf{P}} + \beta \, \mathbf{X}
        \mathbf{D}_I^{-1/2} \bar{\mathbf{V}}_k \bar{\mathbf{V}}_k^{\top} \mathbf{D}_I^{1/2}

        \mathbf{S}_{j+1} &= \mathbf{S}_j - \tfrac{T}{K} \, \mathbf{S}_j \tilde{\mathbf{P}},
        \qquad j = 0, \dots, K - 1

    with :math:`\tilde{\mathbf{P}} = \tilde{\mathbf{R}}^{\top} \tilde{\mathbf{R}}` the linear
    item-item filter. :math:`\mathbf{S}_0` is the blurring process
    :math:`d\mathbf{S}/dt = \mathbf{S} (\tilde{\mathbf{P}} - \mathbf{I})` solved by one Euler
    step of length 1 plus ``beta`` times the ideal low-pass filter, i.e. the
    :class:`~graphrec.nn.GFCFFilter` with ``alpha = beta``; the sharpening process
    :math:`d\mathbf{S}/dt = -\mathbf{S} \tilde{\mathbf{P}}` then runs for time ``T`` in ``K``
    Euler steps and :math:`\mathbf{S}_K` is the output (``T = 0`` gives GF-CF). Each step is
    one more application of :math:`\tilde{\mathbf{P}}` (two sparse products).

    Args:
        interactions: ``[U, I]`` scipy sparse user-item matrix :math:`\mathbf{R}`.
        k: singular vectors of the low-pass part, ``1 <= k < min(U, I)``.
        beta: weight of the low-pass part (>= 0).
        sharpen_time: sharpening time ``T`` (>= 0).
        sharpen_steps: Euler steps ``K`` (>= 1).
        seed: seed of the SVD's start vector.
        progress: show the SVD's progress (tqdm, on stderr).

    Shapes:
        - **input:** item signals :math:`(B, |\mathcal{I}|)` (tensor, numpy or scipy sparse)
        - **output:** item scores :math:`(B, |\mathcal{I}|)`, float32 tensor
    """

    def __init__(
        self,
        interactions: sp.sparray | sp.spmatrix,
        k: int = 256,
        beta: float = 0.3,
        sharpen_time: float = 1.0,
        sharpen_steps: int = 1,
        *,
        seed: int = 0,
        progress: bool = False,
    ) -> None:
        super().__init__()
        if not sharpen_time >= 0:
            raise ConfigError(f"sharpen_time must be >= 0; got {sharpen_time}")
        if (
            isinstance(sharpen_steps, bool)
            or not isinstance(sharpen_steps, int)
            or (sharpen_steps < 1)
        ):
            raise ConfigError(f"sharpen_steps must be an integer >= 1; got {sharpen_steps!r}")
        self.blur = GFCFFilter(interactions, k, beta, seed=seed, progress=progress)
        self.sharpen_time = float(sharpen_time)
        self.sharpen_steps = sharpen_steps

    @property
    def num_items(self) -> int:
        return self.blur.num_items

    def reset_parameters(self) -> None:
        """The filter has no learnable parameters (PyG layer interface)."""

    def forward(self, x: Signal) -> Tensor:
        """Score items from the signals ``x`` (``[B, I]``)."""
        out = self.blur.filter(as_signal(x, self.num_items))
        if self.sharpen_time:
            step = self.sharpen_time / self.sharpen_steps
            for _ in range(self.sharpen_steps):
                out -= step * self.blur.linear.propagate(out)
        return torch.from_numpy(out)
