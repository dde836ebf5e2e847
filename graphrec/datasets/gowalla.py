"""Gowalla check-ins in the LightGCN / NGCF split (training adjacency + test lists)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from torch_geometric.data import Data

from graphrec.datasets._files import locate
from graphrec.errors import InputFormatError
from graphrec.io import bipartite_data, read_interactions

__all__ = ["Gowalla", "load_gowalla", "read_adjacency_split"]

_HINT = (
    "These are the files of the LightGCN reference code (gusye1234/LightGCN-PyTorch, "
    "data/gowalla); s_adj_mat.npz is written by its loader from train.txt."
)


@dataclass(repr=False)
class Gowalla:
    """LightGCN's Gowalla split: binary ``num_users x num_items`` train and test matrices.

    Attributes:
        train, test: float32 ``csr_array`` with 1.0 per interaction, one shared index space
            (the remapped ids of LightGCN's ``user_list.txt`` / ``item_list.txt``).
        overlap: test interactions that also occur in ``train`` (0 for the official split).
        root: the folder read.
    """

    train: sp.csr_array
    test: sp.csr_array
    overlap: int
    root: Path

    @property
    def num_users(self) -> int:
        return self.train.shape[0]

    @property
    def num_items(self) -> int:
        return self.train.shape[1]

    @property
    def num_train(self) -> int:
        return self.train.nnz

    @property
    def num_test(self) -> int:
        return self.test.nnz

    def to_bipartite_data(self) -> Data:
        """The training graph as PyG ``Data``: users ``0..U-1``, items ``U..U+I-1``.

        Same layout as :meth:`graphrec.io.Interactions.to_bipartite_data`: user -> item edges,
        then the same pairs item -> user; ``num_users`` / ``num_items`` are stored on it.
        """
        return bipartite_data(self.train)

    def summary(self) -> str:
        total = self.num_train + self.num_test
        density = total / (self.num_users * self.num_items)
        return "\n".join(
            [
                f"Gowalla (LightGCN split)  {self.root}",
                f"  users         {self.num_users:,}",
                f"  items         {self.num_items:,}",
                f"  interactions  {total:,} (train {self.num_train:,}, test {self.num_test:,}, "
                f"density {density:.4%})",
                f"  test in train {self.overlap:,}",
            ]
        )

    def __repr__(self) -> str:
        return (
            f"Gowalla(num_users={self.num_users}, num_items={self.num_items}, "
            f"num_train={self.num_train}, num_test={self.num_test})"
        )


def read_adjacency_split(
    adj_path: str | Path, test_path: str | Path
) -> tuple[sp.csr_array, sp.csr_array]:
    """Binary ``(train, test)`` ``[U, I]`` matrices of a LightGCN adjacency-form split.

    ``adj_path``: scipy sparse ``(U + I) x (U + I)`` adjacency of the training graph (users
    first; its user-item block's nonzeros are the training interactions, whatever its
    normalisation); ``test_path``: ``user item item ...`` lines. ``U`` is the largest test user
    id + 1 (every user has test items); the adjacency must then have empty user-user and
    item-item blocks.

    Raises:
        InputFormatError: the adjacency is not bipartite with ``U`` users first, or test ids
            are out of range.
    """
    adj = sp.csr_array(sp.load_npz(adj_path))
    test_log = read_interactions(test_path, format="lightgcn", keep_ids=True)
    n_users = test_log.num_users
    n_items = adj.shape[0] - n_users
    if adj.shape[0] != adj.shape[1] or n_items <= 0:
        raise InputFormatError(
            f"adjacency has shape {adj.shape}",
            path=adj_path,
            expected=f"a square (users + items) matrix with more than {n_users} rows",
        )
    if adj[:n_users, :n_users].nnz or adj[n_users:, n_users:].nnz:
        raise InputFormatError(
            f"adjacency has user-user or item-item entries when split after {n_users:,} users",
            path=adj_path,
            expected="a bipartite (users + items) adjacency with users first",
        )
    if test_log.num_items > n_items:
        raise InputFormatError(
            f"test item id {test_log.num_items - 1} is out of range",
            path=test_path,
            expected=f"item ids below {n_items} (the adjacency has {n_items} items)",
        )
    train = sp.csr_array(adj[:n_users, n_users:], dtype=np.float32)
    train.sum_duplicates()
    train.eliminate_zeros()
    train.data[:] = 1.0
    test = sp.csr_array(
        (np.ones(test_log.num_interactions, np.float32), (test_log.user, test_log.item)),
        shape=(n_users, n_items),
    )
    test.sum_duplicates()
    test.data[:] = 1.0
    return train, test


def load_gowalla(root: str | Path) -> Gowalla:
    """Load the LightGCN Gowalla split from ``root``; never downloads.

    Files: ``s_adj_mat.npz`` (the training adjacency) and ``test.txt[.gz]``, read by
    :func:`read_adjacency_split`. Published counts: 29,858 users, 40,981 items, 810,128
    training and 217,242 test interactions.

    References: X. He et al., "LightGCN", SIGIR 2020; E. Cho, S. A. Myers and J. Leskovec,
    "Friendship and Mobility: User Movement in Location-Based Social Networks", KDD 2011.

    Raises:
        DatasetNotFoundError: naming every missing file.
        InputFormatError: the adjacency is not bipartite with ``U`` users first, or test ids
            are out of range.
    """
    files = locate("gowalla (LightGCN)", root, ["s_adj_mat.npz", "test.txt"], _HINT)
    train, test = read_adjacency_split(files["s_adj_mat.npz"], files["test.txt"])
    overlap = int((train * test).nnz)
    return Gowalla(train=train, test=test, overlap=overlap, root=Path(root).expanduser())
