"""Amazon Electronics click samples partitioned by user (the FedSubAvg / DIN client split)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from graphrec.datasets._files import locate, open_text
from graphrec.errors import ConfigError, InputFormatError

__all__ = ["AmazonElectronicsUsers", "load_amazon_electronics_users"]

_HISTORY = re.compile(r"(\d+(,\d+)*)?")
_EMPTY = ("", "0")  # no earlier label-1 item


@dataclass
class AmazonElectronicsUsers:
    """Per-user CTR samples ``(label, user, item, history)`` in time order within each user.

    Items are vocabulary indices ``1..len(item_vocab)`` over target and history items (index 0
    is padding); ``item_vocab[i - 1]`` is the raw id of index ``i``. Rows are grouped by user:
    user ``u`` owns rows ``user_offsets[u]:user_offsets[u + 1]``. Histories are stored flat
    (``history[history_offsets[r]:history_offsets[r + 1]]``, oldest first); use
    :meth:`padded_history` for a dense batch.
    """

    labels: np.ndarray  #: float32 [n], 1.0 = rating 5
    user: np.ndarray  #: int64 [n], user index 0..num_users-1
    item: np.ndarray  #: int64 [n], vocabulary index of the target item
    history: np.ndarray  #: int64 [sum of history lengths], vocabulary indices
    history_offsets: np.ndarray  #: int64 [n + 1]
    user_offsets: np.ndarray  #: int64 [num_users + 1]
    user_ids: np.ndarray  #: int64 [num_users], raw uid of each user index
    item_vocab: np.ndarray  #: int64 [V], raw item id of vocabulary index 1..V
    path: Path

    @property
    def num_rows(self) -> int:
        return int(self.labels.size)

    @property
    def num_users(self) -> int:
        return int(self.user_ids.size)

    @property
    def num_items(self) -> int:
        """Distinct target items (history-only items excluded)."""
        return int(np.unique(self.item).size)

    @property
    def vocab_size(self) -> int:
        """Embedding-table size: ``len(item_vocab) + 1`` (index 0 = padding)."""
        return int(self.item_vocab.size) + 1

    def user_rows(self, u: int) -> slice:
        """Rows of user index ``u``, in time order."""
        return slice(int(self.user_offsets[u]), int(self.user_offsets[u + 1]))

    def padded_history(
        self, rows: np.ndarray | None = None, max_len: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Dense histories of ``rows`` (default: all), keeping the ``max_len`` most recent items.

        Returns:
            ``(history [len(rows), L] int64, lengths [len(rows)] int64)``; items are
            left-aligned, oldest first, zero-padded on the right; ``L`` is the longest kept
            length.
        """
        rows = np.arange(self.num_rows) if rows is None else np.asarray(rows, dtype=np.int64)
        end = self.history_offsets[rows + 1]
        length = end - self.history_offsets[rows]
        if max_len is not None:
            length = np.minimum(length, max_len)
        width = int(length.max(initial=0))
        pos = np.arange(width)
        mask = pos[None, :] < length[:, None]
        index = np.where(mask, (end - length)[:, None] + pos[None, :], 0)
        values = np.where(mask, self.history[index] if self.history.size else 0, 0)
        return torch.from_numpy(values), torch.from_numpy(length)

    def holdout(
        self, *, test_fraction: float | None = None, last_n: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-user temporal hold-out: each user's last samples (by position) form the test set.

        Give exactly one of ``test_fraction`` (a user with ``n`` samples holds out the last
        ``ceil(test_fraction * n)``) or ``last_n``. Either way at least one sample of every user
        stays in training, so single-sample users have no test rows.

        Returns:
            ``(train_rows, test_rows)`` sorted row indices.
        """
        if (test_fraction is None) == (last_n is None):
            raise ConfigError("give exactly one of test_fraction and last_n")
        n_user = np.diff(self.user_offsets)
        if test_fraction is not None:
            if not 0.0 <= test_fraction < 1.0:
                raise ConfigError(f"test_fraction must be in [0, 1), got {test_fraction}")
            n_test = np.ceil(test_fraction * n_user).astype(np.int64)
        else:
            if last_n < 0:
                raise ConfigError(f"last_n must be non-negative, got {last_n}")
            n_test = np.full_like(n_user, last_n)
        n_test = np.minimum(n_test, n_user - 1)
        first_test = (self.user_offsets[1:] - n_test)[self.user]
        is_test = np.arange(self.num_rows) >= first_test
        return np.flatnonzero(~is_test), np.flatnonzero(is_test)

    def summary(self) -> str:
        lengths = np.diff(self.history_offsets)
        per_user = np.diff(self.user_offsets)
        return (
            f"AmazonElectronicsUsers ({self.path}): {self.num_rows:,} samples, "
            f"{self.num_users:,} users, {self.num_items:,} target items "
            f"(vocabulary {self.vocab_size:,} incl. padding); label-1 share "
            f"{self.labels.mean():.3f}; samples per user median {int(np.median(per_user))}, "
            f"max {per_user.max()}; history length median {int(np.median(lengths))}, "
            f"max {lengths.max()}"
        )


def load_amazon_electronics_users(root: str | Path) -> AmazonElectronicsUsers:
    """Load ``users.tsv(.gz)`` from ``root``: Amazon Electronics as per-user click samples.

    Format: tab-separated ``label uid item history`` lines, no header; ``history`` is a
    comma-separated list of earlier label-1 items of the same user, or ``0`` / empty for none.
    Lines of one user are in time order. This is the preprocessing of the FedSubAvg code
    (Niu et al., MobiCom 2020) of the Amazon review data (McAuley et al., SIGIR 2015): users
    with at least 40 ratings, label 1 iff the rating is 5. The real file has 99,710 rows,
    1,859 users and 29,148 target items.
    """
    path = locate("amazon-electronics-users", root, ["users.tsv"])["users.tsv"]
    labels, uids, items, histories = [], [], [], []
    with open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            parts = line.rstrip("\r\n").split("\t")
            if len(parts) != 4:
                raise InputFormatError(
                    f"has {len(parts)} tab-separated fields",
                    path=path,
                    line=lineno,
                    content=line,
                    expected="4 (label uid item history)",
                )
            try:
                label, uid, item = int(parts[0]), int(parts[1]), int(parts[2])
                if not _HISTORY.fullmatch(parts[3]):
                    raise ConfigError
            except ValueError:
                raise InputFormatError(
                    "non-integer field",
                    path=path,
                    line=lineno,
                    content=line,
                    expected="integer label, uid, item and comma-separated item ids",
                ) from None
            if label not in (0, 1):
                raise InputFormatError(
                    f"label {label}", path=path, line=lineno, content=line, expected="0 or 1"
                )
            labels.append(label)
            uids.append(uid)
            items.append(item)
            histories.append(parts[3])
    if not labels:
        raise InputFormatError("contains no samples", path=path, expected="label uid item history")
    uid = np.asarray(uids, dtype=np.int64)
    order = np.argsort(uid, kind="stable")  # group rows by user, keep time order
    uid = uid[order]
    histories = [histories[r] for r in order.tolist()]
    lengths = np.array([h.count(",") + 1 if h not in _EMPTY else 0 for h in histories], np.int64)
    joined = ",".join(h for h in histories if h not in _EMPTY)
    flat = np.array(joined.split(",") if joined else [], dtype=np.int64)
    raw_item = np.asarray(items, dtype=np.int64)[order]
    item_vocab = np.unique(np.concatenate([raw_item, flat]))
    user_ids, user, counts = np.unique(uid, return_inverse=True, return_counts=True)
    return AmazonElectronicsUsers(
        labels=np.asarray(labels, dtype=np.float32)[order],
        user=user.astype(np.int64),
        item=np.searchsorted(item_vocab, raw_item) + 1,
        history=np.searchsorted(item_vocab, flat) + 1,
        history_offsets=np.concatenate([[0], np.cumsum(lengths)]),
        user_offsets=np.concatenate([[0], np.cumsum(counts)]),
        user_ids=user_ids,
        item_vocab=item_vocab,
        path=path,
    )
