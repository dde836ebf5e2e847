"""Normalised item-item linear filter (the linear part of GF-CF) on a user-item matrix."""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from graphrec.errors import ConfigError

__all__ = ["LinearItemFilter", "normalize_interactions"]

Signal = Tensor | np.ndarray | sp.sparray | sp.spmatrix


def _inverse_sqrt(degree: np.ndarray) -> np.ndarray:
    """``degree^{-1/2}`` with 0 where the degree is 0."""
    out = np.zeros(degree.shape, dtype=np.float32)
    np.divide(1.0, np.sqrt(degree), out=out, where=degree > 0)
    return out


def normalize_interactions(
    interactions: sp.sparray | sp.spmatrix,
) -> tuple[sp.csr_array, np.ndarray]:
    r"""``(R~, D_I^{-1/2})`` with :math:`\tilde{R} = D_U^{-1/2} R D_I^{-1/2}`.

    Args:
        interactions: ``[U, I]`` scipy sparse user-item matrix ``R`` (binary or weighted,
            non-negative); ``D_U`` / ``D_I`` are its row / column sums.

    Returns:
        ``R~`` as a float32 CSR array and the ``[I]`` float32 vector ``D_I^{-1/2}`` (0 for
        items without interactions, whose rows and columns of ``R~`` are empty).
    """
    if not sp.issparse(interactions) or len(interactions.shape) != 2:
        raise ConfigError(
            f"interactions must be a 2-D scipy sparse matrix; got {type(interactions).__name__}"
        )
    r = sp.csr_array(interactions, dtype=np.float32)
    if r.nnz and r.data.min() < 0:
        raise ConfigError("interactions must be non-negative")
    user_scale = _inverse_sqrt(np.asarray(r.sum(axis=1)).ravel())
    item_scale = _inverse_sqrt(np.asarray(r.sum(axis=0)).ravel())
    normed = sp.diags_array(user_scale) @ r @ sp.diags_array(item_scale)
    return sp.csr_array(normed, dtype=np.float32), item_scale


def torch_csr(matrix: sp.csr_array) -> Tensor:
    """``matrix`` as a float32 torch CSR tensor (sharing no memory with it)."""
    with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state"
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(
            torch.from_numpy(matrix.indptr.astype(np.int64)),
            torch.from_numpy(matrix.indices.astype(np.int64)),
            torch.from_numpy(matrix.data.astype(np.float32)),
            size=matrix.shape,
            check_invariants=False,
        )


def as_signal(x: Signal, num_items: int) -> np.ndarray | sp.csr_array:
    """A ``[B, I]`` float32 numpy array or CSR array of ``x`` (checked against ``num_items``)."""
    if sp.issparse(x):
        out = sp.csr_array(x, dtype=np.float32)
    elif isinstance(x, Tensor):
        out = x.detach().cpu().to(torch.float32).numpy()
    else:
        out = np.asarray(x, dtype=np.float32)
    if len(out.shape) != 2 or out.shape[1] != num_items:
        raise ConfigError(f"x must be [B, {num_items}] item signals; got {tuple(out.shape)}")
    return out


class LinearItemFilter(torch.nn.Module):
    r"""The normalised linear item-item filter of GF-CF (`"How Powerful is Graph Convolution
    for Recommendation?" <https://arxiv.org/abs/2108.07567>`_, Shen et al., CIKM 2021):

    .. math::
        \mathbf{S} = \mathbf{X} \tilde{\mathbf{R}}^{\top} \tilde{\mathbf{R}}, \qquad
        \tilde{\mathbf{R}} = \mathbf{D}_U^{-1/2} \mathbf{R} \mathbf{D}_I^{-1/2}

    with :math:`\mathbf{R}` the user-item matrix and :math:`\mathbf{D}_U`,
    :math:`\mathbf{D}_I` its user and item degrees. :math:`\tilde{\mathbf{R}}^{\top}
    \tilde{\mathbf{R}}` is the item-item block of the squared normalised adjacency (two
    LightGCN propagation steps); it is applied as
    :math:`(\mathbf{X} \tilde{\mathbf{R}}^{\top}) \tilde{\mathbf{R}}`, two sparse-dense
    products (torch CSR), so the items x items matrix is never formed (memory
    O(nnz + B (U + I))).

    Args:
        interactions: ``[U, I]`` scipy sparse user-item matrix :math:`\mathbf{R}`.

    Shapes:
        - **input:** item signals :math:`(B, |\mathcal{I}|)` (a user's interaction row),
          a tensor, numpy array or scipy sparse matrix
        - **output:** filtered signals :math:`(B, |\mathcal{I}|)`, float32 tensor
    """

    def __init__(self, interactions: sp.sparray | sp.spmatrix) -> None:
        super().__init__()
        self.matrix, self.item_scale = normalize_interactions(interactions)
        self._csr = torch_csr(self.matrix)
        self._csr_t = torch_csr(sp.csr_array(self.matrix.T))

    @property
    def num_items(self) -> int:
        return self.matrix.shape[1]

    def reset_parameters(self) -> None:
        """The filter has no learnable parameters (PyG layer interface)."""

    def propagate(self, x: np.ndarray | sp.csr_array) -> np.ndarray:
        """``x R~^T R~`` of a checked float32 signal (numpy in, numpy out)."""
        signal_t = x.T.toarray() if sp.issparse(x) else np.ascontiguousarray(x.T)  # [I, B]
        out_t = self.propagate_t(torch.from_numpy(signal_t.astype(np.float32, copy=False)))
        return np.ascontiguousarray(out_t.numpy().T)

    def propagate_t(self, signal_t: Tensor) -> Tensor:
        """The filter in item-major layout: ``R~^T (R~ y)`` of a float32 ``[I, B]`` tensor
        ``y = x^T`` (no transposes; the layout of repeated filtering)."""
        return self._csr_t @ (self._csr @ signal_t)

    def forward(self, x: Signal) -> Tensor:
        """Filter ``x`` (``[B, I]``)."""
        return torch.from_numpy(self.propagate(as_signal(x, self.num_items)))
