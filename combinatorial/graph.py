"""Graph representation shared by the k-dDSP code, plus argument checks.

Every function of :mod:`combinatorial` takes ``adj``, an ``n x n`` SciPy sparse matrix or array in
which a stored nonzero ``A[u, v]`` is the edge u -> v, read "u covers v": coverage follows
out-edges. Values are ignored (the graph is binarised), self-loops are harmless (a seed always
covers itself) and duplicate entries count once. :func:`adjacency` builds the canonical form from
an edge list; :func:`as_csr` brings any other input to it, copying only when needed.
"""

from __future__ import annotations

import warnings
from numbers import Integral
from typing import Any

import numpy as np
import scipy.sparse as sp

from graphrec.errors import ConfigError

__all__ = ["adjacency", "as_csr", "check_d", "check_k"]

_INT32_MAX = np.iinfo(np.int32).max


def _index_dtype(n: int, nnz: int) -> type[np.signedinteger]:
    return np.int32 if max(n, nnz) <= _INT32_MAX else np.int64


def adjacency(edge_index: Any, num_nodes: int) -> sp.csr_array:
    """Binary CSR adjacency of a directed edge list: ``A[u, v] = True`` iff some edge u -> v.

    Parameters
    ----------
    edge_index : array-like of int, shape ``[2, m]``
        Row 0 holds sources, row 1 targets (a NumPy array or a CPU ``torch.Tensor``).
        Duplicate edges collapse to one entry; self-loops are kept.
    num_nodes : int
        n; every id must lie in ``[0, n)``.

    Returns
    -------
    scipy.sparse.csr_array
        ``n x n``, ``bool`` data, sorted column indices without duplicates (canonical),
        int32 indices when they fit. Cost O(m log m).

    Examples
    --------
    >>> import numpy as np
    >>> A = adjacency(np.array([[0, 0, 1, 1], [1, 1, 2, 1]]), 3)
    >>> A.nnz, A.dtype.name
    (3, 'bool')
    >>> A.toarray().astype(int).tolist()
    [[0, 1, 0], [0, 1, 1], [0, 0, 0]]
    """
    if hasattr(edge_index, "detach"):  # torch.Tensor
        edge_index = edge_index.detach().cpu().numpy()
    ei = np.asarray(edge_index)
    if ei.ndim != 2 or ei.shape[0] != 2:
        raise ConfigError(f"edge_index must have shape [2, m], got {list(ei.shape)}")
    if ei.size and not np.issubdtype(ei.dtype, np.integer):
        raise TypeError(f"edge_index must hold integers, got dtype {ei.dtype}")
    n = _check_int(num_nodes, "num_nodes", 0)
    ei = ei.astype(np.int64, copy=False)
    if ei.size and (ei.min() < 0 or ei.max() >= n):
        bad = ei[(ei < 0) | (ei >= n)][0]
        raise ConfigError(f"node id {bad} in edge_index is outside [0, num_nodes={n})")
    keys = ei[0] * n
    keys += ei[1]
    keys = unique_sorted(keys)
    idx = _index_dtype(n, keys.size)
    # row u holds the keys in [u n, (u + 1) n); the keys are sorted, so a search finds the rows
    indptr = np.searchsorted(keys, np.arange(n + 1, dtype=np.int64) * n).astype(idx)
    indices = np.remainder(keys, max(n, 1), out=keys).astype(idx)
    del keys
    A = sp.csr_array((np.ones(indices.size, dtype=bool), indices, indptr), shape=(n, n))
    A.has_canonical_format = True
    return A


def as_csr(adj: Any) -> sp.csr_array:
    """Canonical binary form of ``adj``: square ``csr_array``, ``bool`` data, no explicit zeros,
    no duplicate entries, int32 indices when they fit. Returns ``adj`` itself when it already
    is in that form (a check of O(nnz)), a converted copy otherwise.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> A = as_csr(sp.coo_matrix((np.array([2, 0, 1]), ([0, 0, 1], [1, 2, 0])), shape=(3, 3)))
    >>> A.nnz, A.dtype.name, type(A).__name__
    (2, 'bool', 'csr_array')
    """
    if not sp.issparse(adj):
        raise TypeError(f"adj must be a scipy.sparse matrix or array, got {type(adj).__name__}")
    if adj.ndim != 2 or adj.shape[0] != adj.shape[1]:
        raise ConfigError(f"adj must be square (n x n), got shape {adj.shape}")
    A = adj if isinstance(adj, sp.csr_array) else sp.csr_array(adj.tocsr())
    explicit_zeros = not A.data.all()
    if explicit_zeros or not A.has_canonical_format:
        A = A.copy()  # the fixes below work in place; never touch the caller's arrays
        if explicit_zeros:  # explicit zeros are not edges
            A.eliminate_zeros()
        A.sum_duplicates()
    idx = _index_dtype(A.shape[0], A.nnz)
    if A.dtype != np.bool_ or A.indices.dtype != idx or A.indptr.dtype != idx:
        A = sp.csr_array(
            (
                np.ones(A.nnz, dtype=bool),
                A.indices.astype(idx, copy=False),
                A.indptr.astype(idx, copy=False),
            ),
            shape=A.shape,
        )
        A.has_canonical_format = True
    return A


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_d(d: Any, minimum: int = 1) -> int:
    """Validate the hop count: an int >= ``minimum`` (TypeError / ValueError otherwise)."""
    return _check_int(d, "d", minimum)


def check_k(k: Any, n: int) -> int:
    """Validate the budget for an ``n``-node graph: an int >= 1, capped at n with a warning.

    Raises ValueError for an empty graph (n == 0): no seed set exists.
    """
    k = _check_int(k, "k", 1)
    if n == 0:
        raise ConfigError("the graph is empty (n == 0): there is nothing to cover")
    if k > n:
        warnings.warn(f"k={k} exceeds the number of nodes n={n}; using k={n}", stacklevel=3)
        k = n
    return k


def with_self_loops(A: sp.csr_array) -> sp.csr_array:
    """``A + I`` of a canonical binary adjacency (same index dtype, canonical, bool)."""
    n = A.shape[0]
    return as_csr(A + sp.eye_array(n, dtype=bool, format="csr"))


def unique_sorted(a: np.ndarray) -> np.ndarray:
    """Sorted distinct values of a 1-D array, a new array (sort + adjacent compare; we measured
    NumPy 2's hash-based ``np.unique`` much slower on millions of int64 keys). An input that is
    already sorted, e.g. the keys of a file sorted by source and target, skips the sort."""
    if a.size < 2 or not np.all(a[1:] >= a[:-1]):
        a = np.sort(a)
    if a.size < 2:
        return a
    keep = np.empty(a.size, dtype=bool)
    keep[0] = True
    np.not_equal(a[1:], a[:-1], out=keep[1:])
    return a[keep]


def gather_rows(M: sp.csr_array, rows: np.ndarray) -> np.ndarray:
    """Concatenation of the column indices of ``rows`` of ``M``, O(len(rows) + output)."""
    if rows.size == 1:
        r = int(rows[0])
        return M.indices[M.indptr[r] : M.indptr[r + 1]]
    if rows.size > 256:  # SciPy's C row gather is fastest for large selections
        return M[rows].indices
    starts = M.indptr[rows].astype(np.int64, copy=False)
    lens = M.indptr[rows + 1] - starts
    total = int(lens.sum())
    if total == 0:
        return M.indices[:0]
    shift = np.repeat(starts - (np.cumsum(lens) - lens), lens)
    return M.indices[np.arange(total, dtype=np.int64) + shift]


def reach(A: sp.csr_array, sources: np.ndarray, d: int, mark: np.ndarray) -> np.ndarray:
    """Nodes within ``d`` hops of ``sources`` (sources included), by truncated multi-source BFS.

    ``mark`` is a caller-owned boolean scratch array of length n, all False on entry; on return
    it is True exactly at the returned nodes (the caller resets ``mark[result] = False`` to reuse
    it). Nodes are returned level by level, each level sorted. Cost O(reached nodes + edges
    leaving nodes at distance < d), independent of n.
    """
    frontier = unique_sorted(sources)
    mark[frontier] = True
    levels = [frontier]
    for _ in range(d):
        nbrs = gather_rows(A, frontier)
        nbrs = nbrs[~mark[nbrs]]
        if nbrs.size == 0:
            break
        frontier = unique_sorted(nbrs)
        mark[frontier] = True
        levels.append(frontier)
    return levels[0] if len(levels) == 1 else np.concatenate(levels)
