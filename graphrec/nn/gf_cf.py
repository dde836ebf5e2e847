"""GF-CF: the linear item-item filter plus a degree-rescaled ideal low-pass filter."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from graphrec.errors import ConfigError
from graphrec.nn.ideal_low_pass import IdealLowPassFilter
from graphrec.nn.linear_filter import LinearItemFilter, Signal, as_signal

__all__ = ["GFCFFilter"]


class GFCFFilter(torch.nn.Module):
    r"""The GF-CF graph filter from the `"How Powerful is Graph Convolution for
    Recommendation?" <https://arxiv.org/abs/2108.07567>`_ paper (Shen et al., CIKM 2021):

    .. math::
        \mathbf{S} = \mathbf{X} \tilde{\mathbf{R}}^{\top} \tilde{\mathbf{R}}
        + \alpha \, \mathbf{X} \mathbf{D}_I^{-1/2} \bar{\mathbf{V}}_k \bar{\mathbf{V}}_k^{\top}
        \mathbf{D}_I^{1/2}

    the :class:`~graphrec.nn.LinearItemFilter` plus ``alpha`` times the
    :class:`~graphrec.nn.IdealLowPassFilter` applied to degree-normalised signals and
    rescaled back (:math:`\mathbf{D}_I` the item degrees). Training-free: ``x`` is a user's
    interaction row and ``S`` its item scores. Memory O(nnz + k I).

    Args:
        interactions: ``[U, I]`` scipy sparse user-item matrix :math:`\mathbf{R}`.
        k: singular vectors of the low-pass part, ``1 <= k < min(U, I)``.
        alpha: weight of the low-pass part (>= 0; 0 = the linear filter alone).
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
        alpha: float = 0.3,
        *,
        seed: int = 0,
        progress: bool = False,
    ) -> None:
        super().__init__()
        if not alpha >= 0:
            raise ConfigError(f"alpha must be >= 0; got {alpha}")
        self.alpha = float(alpha)
        self.linear = LinearItemFilter(interactions)
        self.low_pass = IdealLowPassFilter(interactions, k, seed=seed, progress=progress)
        scale = self.linear.item_scale
        self.item_scale = sp.diags_array(scale)  # D_I^{-1/2}
        inverse = np.zeros_like(scale)
        np.divide(1.0, scale, out=inverse, where=scale > 0)
        self.item_unscale = inverse  # D_I^{1/2}

    @property
    def num_items(self) -> int:
        return self.linear.num_items

    def reset_parameters(self) -> None:
        """The filter has no learnable parameters (PyG layer interface)."""

    def low_pass_part(self, x: np.ndarray | sp.csr_array, k: int | None = None) -> np.ndarray:
        """``x D_I^{-1/2} V_k V_k^T D_I^{1/2}`` of a checked signal (numpy out)."""
        return self.low_pass.project(x @ self.item_scale, k) * self.item_unscale

    def low_pass_factors(
        self, x: np.ndarray | sp.csr_array, k: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Factors ``(x D_I^{-1/2} V_k [B, k], D_I^{1/2} V_k [I, k])`` of a checked signal:
        their product ``A @ B.T`` is :meth:`low_pass_part` (user and item embeddings whose
        dot products are the low-pass scores)."""
        k = self.low_pass.k if k is None else k
        if not 1 <= k <= self.low_pass.k:
            raise ConfigError(f"k must be in [1, {self.low_pass.k}]; got {k}")
        basis = self.low_pass.basis[:, :k].numpy()
        users = np.ascontiguousarray((x @ self.item_scale) @ basis, dtype=np.float32)
        return users, np.ascontiguousarray(basis * self.item_unscale[:, None], dtype=np.float32)

    def filter(self, x: np.ndarray | sp.csr_array) -> np.ndarray:
        """The filter of a checked float32 signal (numpy in, numpy out)."""
        out = self.linear.propagate(x)
        if self.alpha:
            out += self.alpha * self.low_pass_part(x)
        return out

    def forward(self, x: Signal) -> Tensor:
        """Score items from the signals ``x`` (``[B, I]``)."""
        return torch.from_numpy(self.filter(as_signal(x, self.num_items)))
