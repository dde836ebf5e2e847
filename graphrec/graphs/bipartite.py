"""User-item bipartite graphs for collaborative filtering, with train/validation/test splits.

Node layout (shared with :meth:`graphrec.io.Interactions.to_bipartite_data`): users are nodes
``0..U-1``, items are nodes ``U..U+I-1``. Only **training** interactions become edges; the
validation and test interactions are held out as sparse ``U x I`` matrices, so nothing held
out leaks into the propagation graph.

Split protocol (a design choice; LightGCN's and RecBole's conventions):

* a dataset with an official split (LightGCN's Gowalla, MovieLens-100K ``u{fold}.base`` /
  ``.test``) keeps its test set; otherwise the test set is carved per user from the log;
* the validation set is always carved from the training interactions, per user, seeded:
  a user with ``n`` training items gives ``round(fraction * n)`` of them (at most ``n - 1``)
  to validation, so every user keeps at least one training item;
* test pairs that also occur in train are dropped from test (they are masked at evaluation
  anyway); :attr:`BipartiteGraph.dropped_test` counts them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
from torch_geometric.data import Data
from torch_geometric.nn.conv.gcn_conv import gcn_norm

from graphrec.errors import ConfigError
from graphrec.io import Interactions

__all__ = ["BipartiteGraph", "build_bipartite", "split_per_user", "to_binary_csr"]

InteractionSource = Interactions | sp.spmatrix | sp.sparray


def to_binary_csr(
    source: InteractionSource,
    *,
    min_rating: float | None = None,
    shape: tuple[int, int] | None = None,
) -> sp.csr_array:
    """A binary float32 ``U x I`` csr_array (1.0 per distinct pair) from a log or a matrix.

    Args:
        source: an :class:`~graphrec.io.Interactions` log or a scipy sparse ``U x I`` matrix
            (any nonzero counts as an interaction).
        min_rating: keep only interactions with ``rating >= min_rating`` (implicit feedback
            from ratings, e.g. 4 for MovieLens); needs a log with ratings.
        shape: the ``(U, I)`` shape to use (default: the log's or the matrix's own).
    """
    if isinstance(source, Interactions):
        keep = np.ones(source.num_interactions, dtype=bool)
        if min_rating is not None:
            if source.rating is None:
                raise ConfigError("min_rating needs an interaction log with ratings")
            keep = source.rating >= min_rating
        shape = shape or (source.num_users, source.num_items)
        rows, cols = source.user[keep], source.item[keep]
    elif sp.issparse(source):
        if min_rating is not None:
            raise ConfigError("min_rating applies to an Interactions log, not a matrix")
        coo = sp.coo_array(source)
        nz = coo.data != 0
        rows, cols = coo.row[nz], coo.col[nz]
        shape = shape or coo.shape
    else:
        raise TypeError(f"expected Interactions or a scipy sparse matrix, got {type(source)}")
    ones = np.ones(len(rows), dtype=np.float32)
    matrix = sp.csr_array((ones, (rows, cols)), shape=shape)
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    matrix.sort_indices()
    return matrix


def split_per_user(
    matrix: sp.csr_array | sp.spmatrix, fraction: float, *, seed: int = 0, min_keep: int = 1
) -> tuple[sp.csr_array, sp.csr_array]:
    """Hold out ``round(fraction * n_u)`` random items of every user (seeded).

    A user with ``n_u`` items holds out at most ``n_u - min_keep`` of them, so a user keeps at
    least ``min(min_keep, n_u)`` items. Vectorised: one random key per nonzero, one sort.

    Returns:
        ``(kept, held_out)``: binary csr_arrays of the input's shape that partition its
        nonzeros.
    """
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"fraction must be in [0, 1); got {fraction!r}")
    if min_keep < 0:
        raise ConfigError(f"min_keep must be >= 0; got {min_keep!r}")
    csr = to_binary_csr(matrix)
    n_users = csr.shape[0]
    counts = np.diff(csr.indptr)
    rows = np.repeat(np.arange(n_users), counts)
    keys = np.random.default_rng(seed).random(csr.nnz)
    order = np.lexsort((keys, rows))  # rows stay grouped, random order inside each row
    rank = np.empty(csr.nnz, dtype=np.int64)
    rank[order] = np.arange(csr.nnz) - csr.indptr[rows[order]]
    n_out = np.floor(fraction * counts + 0.5).astype(np.int64)
    n_out = np.minimum(n_out, np.maximum(counts - min_keep, 0))
    out = rank < n_out[rows]
    cols = csr.indices

    def part(mask: np.ndarray) -> sp.csr_array:
        ones = np.ones(int(mask.sum()), dtype=np.float32)
        m = sp.csr_array((ones, (rows[mask], cols[mask])), shape=csr.shape)
        m.sort_indices()
        return m

    return part(~out), part(out)


@dataclass(repr=False, eq=False)
class BipartiteGraph:
    """A user-item training graph with held-out validation and test interactions.

    Attributes:
        train, valid, test: binary float32 ``U x I`` csr_arrays (pairwise disjoint);
            ``valid`` / ``test`` may be empty.
        user_ids, item_ids: original id per user / item index (from the log), or None.
        dropped_test: test pairs removed because they also occur in the training data.
    """

    train: sp.csr_array
    valid: sp.csr_array
    test: sp.csr_array
    user_ids: np.ndarray | None = None
    item_ids: np.ndarray | None = None
    dropped_test: int = 0
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def num_users(self) -> int:
        return self.train.shape[0]

    @property
    def num_items(self) -> int:
        return self.train.shape[1]

    @property
    def num_nodes(self) -> int:
        return self.num_users + self.num_items

    def user_degree(self) -> np.ndarray:
        """Training items per user (int64 ``[U]``)."""
        return np.diff(self.train.indptr).astype(np.int64)

    def item_degree(self) -> np.ndarray:
        """Training users per item (int64 ``[I]``)."""
        return np.bincount(self.train.indices, minlength=self.num_items).astype(np.int64)

    def train_pairs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(users, items)`` int64 tensors of the training interactions (row-major order)."""
        users = np.repeat(np.arange(self.num_users), np.diff(self.train.indptr))
        return torch.from_numpy(users), torch.from_numpy(self.train.indices.astype(np.int64))

    def edge_index(self) -> torch.Tensor:
        """Symmetric ``[2, 2 * nnz]`` edge index: user -> item edges, then item -> user."""
        users, items = self.train_pairs()
        items = items + self.num_users
        return torch.cat([torch.stack([users, items]), torch.stack([items, users])], dim=1)

    def normalized_edges(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(edge_index, edge_weight)`` of ``D^-1/2 A D^-1/2`` (LightGCN propagation).

        ``edge_weight = 1 / sqrt(deg(u) deg(i))`` over training degrees
        (``torch_geometric.nn.conv.gcn_norm`` without self-loops), computed once so that
        :class:`graphrec.nn.LGConv` can run with ``normalize=False``.
        """
        if "norm" not in self._cache:
            self._cache["norm"] = gcn_norm(
                self.edge_index(), num_nodes=self.num_nodes, add_self_loops=False
            )
        return self._cache["norm"]

    def normalized_adjacency(self) -> torch.Tensor:
        """``D^-1/2 A D^-1/2`` as a ``[U + I, U + I]`` torch sparse CSR tensor (symmetric)."""
        edge_index, weight = self.normalized_edges()
        n = self.num_nodes
        coo = torch.sparse_coo_tensor(edge_index, weight, (n, n), check_invariants=True)
        with warnings.catch_warnings():  # "sparse CSR support is in beta state"
            warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support.*")
            return coo.coalesce().to_sparse_csr()

    def to_data(self) -> Data:
        """PyG ``Data`` with ``edge_index``, normalised ``edge_weight``, ``num_users/items``."""
        edge_index, weight = self.normalized_edges()
        return Data(
            edge_index=edge_index,
            edge_weight=weight,
            num_nodes=self.num_nodes,
            num_users=self.num_users,
            num_items=self.num_items,
        )

    def summary(self) -> str:
        u, i = self.num_users, self.num_items
        return "\n".join(
            [
                "BipartiteGraph",
                f"  users   {u:,}",
                f"  items   {i:,}",
                f"  train   {self.train.nnz:,}",
                f"  valid   {self.valid.nnz:,}",
                f"  test    {self.test.nnz:,} ({self.dropped_test:,} test pairs in train dropped)",
            ]
        )

    def __repr__(self) -> str:
        return (
            f"BipartiteGraph(num_users={self.num_users}, num_items={self.num_items}, "
            f"train={self.train.nnz}, valid={self.valid.nnz}, test={self.test.nnz})"
        )


def build_bipartite(
    train: InteractionSource,
    test: InteractionSource | None = None,
    *,
    valid_fraction: float = 0.1,
    test_fraction: float = 0.2,
    min_rating: float | None = None,
    seed: int = 0,
) -> BipartiteGraph:
    """Build the training graph and the held-out sets from interaction logs or matrices.

    Args:
        train: the training log (or the whole log when ``test`` is None): an
            :class:`~graphrec.io.Interactions` or a scipy sparse ``U x I`` matrix.
        test: the official test log / matrix in the same index space, or None to carve
            ``test_fraction`` of every user's interactions (seed ``seed``).
        valid_fraction: fraction of every user's training items moved to validation
            (seed ``seed + 1``); 0 gives an empty validation set.
        test_fraction: used only when ``test`` is None.
        min_rating: keep only ``rating >= min_rating`` (logs with ratings only), applied to
            train and test alike, e.g. 4 for MovieLens implicit feedback.
        seed: seed of the per-user splits.

    Example:
        >>> from graphrec.datasets import load_movielens100k
        >>> ml = load_movielens100k("ml-100k", fold=1)  # doctest: +SKIP
        >>> g = build_bipartite(ml.train, ml.test, min_rating=4)  # doctest: +SKIP
    """
    if isinstance(train, Interactions):
        shape = (train.num_users, train.num_items)
        user_ids, item_ids = train.user_ids, train.item_ids
    else:
        shape = tuple(train.shape)
        user_ids = item_ids = None
    if isinstance(test, Interactions) and (test.num_users, test.num_items) != shape:
        shape = (max(shape[0], test.num_users), max(shape[1], test.num_items))
        user_ids = item_ids = None
    elif test is not None and not isinstance(test, Interactions) and tuple(test.shape) != shape:
        raise ConfigError(f"test has shape {tuple(test.shape)}, train has shape {shape}")
    full = to_binary_csr(train, min_rating=min_rating, shape=shape)
    if test is None:
        full, test_m = split_per_user(full, test_fraction, seed=seed)
        dropped = 0
    else:
        test_m = to_binary_csr(test, min_rating=min_rating, shape=shape)
        overlap = test_m.multiply(full)
        dropped = int(overlap.nnz)
        if dropped:
            test_m = to_binary_csr(test_m - overlap)
    train_m, valid_m = split_per_user(full, valid_fraction, seed=seed + 1)
    return BipartiteGraph(
        train=sp.csr_array(train_m),
        valid=sp.csr_array(valid_m),
        test=sp.csr_array(test_m),
        user_ids=user_ids,
        item_ids=item_ids,
        dropped_test=dropped,
    )
