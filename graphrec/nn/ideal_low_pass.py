"""Ideal low-pass graph filter from the top singular vectors of the normalised interactions."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import LinearOperator, svds
from torch import Tensor
from tqdm import tqdm

from graphrec.errors import ConfigError
from graphrec.nn.linear_filter import Signal, as_signal, normalize_interactions

__all__ = ["IdealLowPassFilter"]


def _counted(matrix: sp.csr_array, bar: tqdm) -> LinearOperator:
    """``matrix`` as a LinearOperator that advances ``bar`` once per product."""
    matrix_t = sp.csr_array(matrix.T)

    def product(m: sp.csr_array, v: np.ndarray) -> np.ndarray:
        bar.update(1)
        return m @ v

    return LinearOperator(
        matrix.shape,
        matvec=lambda v: product(matrix, v),
        rmatvec=lambda v: product(matrix_t, v),
        matmat=lambda v: product(matrix, v),
        rmatmat=lambda v: product(matrix_t, v),
        dtype=matrix.dtype,
    )


class IdealLowPassFilter(torch.nn.Module):
    r"""The ideal low-pass filter on the item graph (GF-CF's spectral part, `"How Powerful is
    Graph Convolution for Recommendation?" <https://arxiv.org/abs/2108.07567>`_):

    .. math::
        \mathbf{S} = \mathbf{X} \bar{\mathbf{V}}_k \bar{\mathbf{V}}_k^{\top}

    with :math:`\bar{\mathbf{V}}_k` the right singular vectors of the ``k`` largest singular
    values of :math:`\tilde{\mathbf{R}} = \mathbf{D}_U^{-1/2} \mathbf{R} \mathbf{D}_I^{-1/2}`,
    i.e. the eigenvectors of the ``k`` largest eigenvalues of the item-item filter
    :math:`\tilde{\mathbf{R}}^{\top} \tilde{\mathbf{R}}` (frequencies above the cut-off are
    removed, the others kept unchanged). The truncated SVD is
    :func:`scipy.sparse.linalg.svds` (ARPACK) from a start vector drawn from ``seed``, so it is
    deterministic; memory O(nnz + k I). Vectors are stored by decreasing singular value, so
    ``forward(x, k=j)`` applies the filter of the top ``j <= k`` vectors.

    Args:
        interactions: ``[U, I]`` scipy sparse user-item matrix :math:`\mathbf{R}`.
        k: number of singular vectors, ``1 <= k < min(U, I)``.
        seed: seed of the SVD's start vector.
        progress: show a tqdm counter of the SVD's matrix products (on stderr).

    Shapes:
        - **input:** item signals :math:`(B, |\mathcal{I}|)` (tensor, numpy or scipy sparse)
        - **output:** filtered signals :math:`(B, |\mathcal{I}|)`, float32 tensor
    """

    def __init__(
        self,
        interactions: sp.sparray | sp.spmatrix,
        k: int = 256,
        *,
        seed: int = 0,
        progress: bool = False,
    ) -> None:
        super().__init__()
        matrix, _ = normalize_interactions(interactions)
        if not 1 <= k < min(matrix.shape):
            raise ConfigError(
                f"k must be in [1, {min(matrix.shape) - 1}] (min(users, items) - 1); got {k}"
            )
        v0 = np.random.default_rng(seed).uniform(-1.0, 1.0, min(matrix.shape))
        with tqdm(desc=f"svd (k={k})", unit=" products", disable=not progress) as bar:
            _, values, vt = svds(_counted(matrix, bar), k=k, v0=v0.astype(np.float32))
        order = np.argsort(-values, kind="stable")
        self.register_buffer("singular_values", torch.from_numpy(values[order].copy()))
        self.register_buffer("basis", torch.from_numpy(np.ascontiguousarray(vt[order].T)))

    @property
    def k(self) -> int:
        return self.basis.shape[1]

    def reset_parameters(self) -> None:
        """The filter has no learnable parameters (PyG layer interface)."""

    def project(self, x: np.ndarray | sp.csr_array, k: int | None = None) -> np.ndarray:
        """``x V_k V_k^T`` of a checked float32 signal (numpy in, numpy out)."""
        k = self.k if k is None else k
        if not 1 <= k <= self.k:
            raise ConfigError(f"k must be in [1, {self.k}]; got {k}")
        basis = self.basis[:, :k].numpy()
        return np.ascontiguousarray((x @ basis) @ basis.T, dtype=np.float32)

    def forward(self, x: Signal, k: int | None = None) -> Tensor:
        """Filter ``x`` (``[B, I]``) with the top ``k`` vectors (default all)."""
        return torch.from_numpy(self.project(as_signal(x, self.basis.shape[0]), k))
