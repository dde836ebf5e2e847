"""BSPM: blurring-sharpening process filter for collaborative filtering."""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch
from numpy.polynomial import polynomial
from torch import Tensor

from graphrec.errors import ConfigError
from graphrec.nn.gf_cf import GFCFFilter
from graphrec.nn.linear_filter import Signal, as_signal

__all__ = ["BSPMFilter", "sharpening_polynomial"]

#: ODE solvers of the sharpening process.
SOLVERS = ("euler", "rk4")
#: Where the ideal low-pass part joins: before the sharpening (early) or after it (late).
MERGES = ("early", "late")


def sharpening_polynomial(time: float, steps: int, solver: str) -> np.ndarray:
    r"""Coefficients :math:`c_0, \dots, c_n` of the sharpening map
    :math:`\mathbf{S}_K = \sum_j c_j \mathbf{S}_0 \tilde{\mathbf{P}}^j` of ``steps``
    fixed steps of ``solver`` on :math:`d\mathbf{S}/dt = -\mathbf{S} \tilde{\mathbf{P}}`
    over ``time`` (the ODE is linear, so each step multiplies by a polynomial of
    :math:`\tilde{\mathbf{P}}`: :math:`1 - h x` for Euler, the degree-4 Taylor polynomial of
    :math:`e^{-h x}` for any 4-stage 4th-order Runge-Kutta method, :math:`h` = time / steps).
    """
    if solver not in SOLVERS:
        raise ConfigError(f"solver must be one of {SOLVERS}; got {solver!r}")
    h = time / steps
    order = 1 if solver == "euler" else 4
    step = [(-h) ** j / math.factorial(j) for j in range(order + 1)]
    return polynomial.polypow(step, steps)


class BSPMFilter(torch.nn.Module):
    r"""The blurring-sharpening process filter from the `"Blurring-Sharpening Process Models
    for Collaborative Filtering" <https://arxiv.org/abs/2211.09324>`_ paper (Choi et al.,
    SIGIR 2023):

    .. math::
        \mathbf{B} &= \mathbf{X} \tilde{\mathbf{P}}, \qquad
        \mathbf{L} = \beta \, \mathbf{X} \mathbf{D}_I^{-1/2} \bar{\mathbf{V}}_k
        \bar{\mathbf{V}}_k^{\top} \mathbf{D}_I^{1/2}

        \mathbf{S} &= \operatorname{sharpen}_T(\mathbf{B} + \mathbf{L}) \text{ (early merge)}
        \quad \text{or} \quad \operatorname{sharpen}_T(\mathbf{B}) + \mathbf{L}
        \text{ (late merge)}

    with :math:`\tilde{\mathbf{P}} = \tilde{\mathbf{R}}^{\top} \tilde{\mathbf{R}}` the linear
    item-item filter. :math:`\mathbf{B}` is the blurring process
    :math:`d\mathbf{S}/dt = \mathbf{S} (\tilde{\mathbf{P}} - \mathbf{I})` solved by one Euler
    step of length 1, :math:`\mathbf{L}` is ``beta`` times the ideal low-pass filter (as in
    :class:`~graphrec.nn.GFCFFilter`: early merge with ``T = 0`` is GF-CF with
    ``alpha = beta``), and :math:`\operatorname{sharpen}_T` solves the sharpening process
    :math:`d\mathbf{S}/dt = -\mathbf{S} \tilde{\mathbf{P}}` up to time ``T`` with ``K``
    fixed steps of Euler (one application of :math:`\tilde{\mathbf{P}}`, i.e. two sparse
    products, per step) or classical Runge-Kutta 4 (four per step). The paper's Gowalla
    setting is RK4, one step, early merge (BSPM-EM).

    Args:
        interactions: ``[U, I]`` scipy sparse user-item matrix :math:`\mathbf{R}`.
        k: singular vectors of the low-pass part, ``1 <= k < min(U, I)``.
        beta: weight of the low-pass part (>= 0).
        sharpen_time: sharpening time ``T`` (>= 0).
        sharpen_steps: solver steps ``K`` (>= 1).
        solver: ``"euler"`` or ``"rk4"``.
        merge: ``"early"`` or ``"late"``.
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
        solver: str = "euler",
        merge: str = "early",
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
        if solver not in SOLVERS:
            raise ConfigError(f"solver must be one of {SOLVERS}; got {solver!r}")
        if merge not in MERGES:
            raise ConfigError(f"merge must be one of {MERGES}; got {merge!r}")
        self.blur = GFCFFilter(interactions, k, beta, seed=seed, progress=progress)
        self.sharpen_time = float(sharpen_time)
        self.sharpen_steps = sharpen_steps
        self.solver = solver
        self.merge = merge

    @property
    def num_items(self) -> int:
        return self.blur.num_items

    def reset_parameters(self) -> None:
        """The filter has no learnable parameters (PyG layer interface)."""

    def sharpen(self, out: np.ndarray) -> np.ndarray:
        """Solve the sharpening process from ``out`` (``[B, I]`` numpy; steps run in item-major
        layout, :meth:`~graphrec.nn.LinearItemFilter.propagate_t`)."""
        if not self.sharpen_time:
            return out
        h = self.sharpen_time / self.sharpen_steps
        propagate = self.blur.linear.propagate_t
        y = torch.from_numpy(np.ascontiguousarray(out.T))  # [I, B]
        stage = torch.empty_like(y) if self.solver == "rk4" else None
        for _ in range(self.sharpen_steps):
            if self.solver == "euler":
                y -= h * propagate(y)
                continue
            slope = propagate(y).neg_()  # classical RK4: k1 + 2 k2 + 2 k3 + k4 summed in total
            total = slope.clone()
            for weight, span in ((2.0, h / 2), (2.0, h / 2), (1.0, h)):
                torch.add(y, slope, alpha=span, out=stage)
                slope = propagate(stage).neg_()
                total.add_(slope, alpha=weight)
            y.add_(total, alpha=h / 6)
        return np.ascontiguousarray(y.numpy().T)

    def forward(self, x: Signal) -> Tensor:
        """Score items from the signals ``x`` (``[B, I]``)."""
        x = as_signal(x, self.num_items)
        if self.merge == "early":
            return torch.from_numpy(self.sharpen(self.blur.filter(x)))
        out = self.sharpen(self.blur.linear.propagate(x))
        if self.blur.alpha:
            out += self.blur.alpha * self.blur.low_pass_part(x)
        return torch.from_numpy(out)
