"""CTR tables built from named datasets (MovieLens-100K as CTR)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graphrec.errors import ConfigError
from graphrec.io import CTRSchema, CTRTable

__all__ = [
    "AMAZON_CTR_SCHEMA",
    "CTRSplit",
    "MOVIELENS_CTR_SCHEMA",
    "amazon_ctr",
    "movielens_ctr",
]

#: Column roles of :func:`movielens_ctr` tables: the history holds items, so it shares the
#: ``item`` vocabulary; ``genres`` is a multi-valued attribute with its own vocabulary.
MOVIELENS_CTR_SCHEMA = CTRSchema(
    label="label",
    categorical=["user", "item", "gender", "age", "occupation", "zip", "year"],
    sequence={"genres": "|", "history": ","},
    shared_vocab={"history": "item"},
)

#: Column roles of :func:`amazon_ctr` tables (no attributes: user, item, item history).
AMAZON_CTR_SCHEMA = CTRSchema(
    label="label",
    categorical=["user", "item"],
    sequence={"history": ","},
    shared_vocab={"history": "item"},
)

_AGE_EDGES = np.array([18, 25, 35, 45, 50, 56])  # MovieLens-1M age groups


@dataclass(repr=False)
class CTRSplit:
    """Train / validation / test tables encoded with the training vocabulary."""

    train: CTRTable
    valid: CTRTable
    test: CTRTable

    def __repr__(self) -> str:
        return (
            f"CTRSplit(train={self.train.num_rows}, valid={self.valid.num_rows}, "
            f"test={self.test.num_rows})"
        )


def movielens_ctr(
    ml,
    *,
    threshold: float = 4.0,
    valid_fraction: float = 0.1,
    test_fraction: float = 0.1,
    max_history: int = 50,
) -> CTRSplit:
    """MovieLens-100K as a CTR task with a per-user time-ordered split.

    Every rating is one impression with label ``rating >= threshold``. Each user's ratings are
    sorted by time (ties by item); the last ``test_fraction`` of them (rounded up) form the test
    set, the ``valid_fraction`` before them the validation set, the rest (at least one rating)
    the training set. ``history`` is the user's earlier positives (at most ``max_history``,
    the most recent kept, oldest first); as in DIN's Amazon preprocessing it includes earlier
    positives of the validation and test periods. Features: user, item, gender, age group,
    occupation, first zip digit, release year, genres (multi-valued). Vocabularies are built on
    the training rows; unseen values get code 0.

    Args:
        ml: a :class:`graphrec.datasets.MovieLens100K` (any fold; ``ml.ratings`` is used).
        threshold: smallest rating counted as a click.
        valid_fraction, test_fraction: per-user shares of the validation and test periods.
        max_history: longest history kept.
    """
    _check(valid_fraction, test_fraction, max_history)
    r = ml.ratings
    order = np.lexsort((r.item, r.timestamp, r.user))
    user, item = r.user[order], r.item[order]
    label = (r.rating[order] >= threshold).astype(np.float32)
    n = len(order)
    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
    part = _parts(starts, n, valid_fraction, test_fraction)

    history = _histories(user, item, label, max_history)
    age = np.searchsorted(_AGE_EDGES, ml.user_age, side="right")
    zip1 = np.array([z[:1] if z[:1].isdigit() else "?" for z in ml.user_zip])
    genre_lists = [
        "|".join(str(g) for g in np.flatnonzero(flags)) for flags in np.asarray(ml.item_genres)
    ]
    raw = {
        "user": user.astype(str),
        "item": item.astype(str),
        "gender": ml.user_gender[user].astype(str),
        "age": age[user].astype(str),
        "occupation": ml.user_occupation[user].astype(str),
        "zip": zip1[user],
        "year": np.asarray(ml.release_year)[item].astype(str),
    }
    train = part == 0
    vocab = {c: _vocab(v[train]) for c, v in raw.items()}
    vocab["genres"] = {str(g): g + 1 for g in range(np.asarray(ml.item_genres).shape[1])}
    genres_of_item = [[vocab["genres"][g] for g in s.split("|")] if s else [] for s in genre_lists]
    genres, genre_len = _pad_lists([genres_of_item[i] for i in item])
    item_code = vocab["item"]
    hist_codes = [[item_code.get(str(h), 0) for h in hs] for hs in history]
    hist, hist_len = _pad_lists(hist_codes)

    def table(mask: np.ndarray) -> CTRTable:
        rows = np.flatnonzero(mask)
        keep = hist_len[rows].max(initial=0)
        return CTRTable(
            labels=label[rows],
            categorical={
                c: np.array([vocab[c].get(v, 0) for v in raw[c][rows]], dtype=np.int64) for c in raw
            },
            numeric={},
            sequence={"genres": genres[rows], "history": hist[rows, : max(keep, 1)]},
            sequence_lengths={"genres": genre_len[rows], "history": hist_len[rows]},
            vocab=vocab,
            schema=MOVIELENS_CTR_SCHEMA,
            path=f"{getattr(ml, 'root', 'movielens')} (ctr)",
        )

    return CTRSplit(table(part == 0), table(part == 1), table(part == 2))


def amazon_ctr(
    data,
    *,
    valid_fraction: float = 0.1,
    test_fraction: float = 0.1,
    max_history: int = 50,
) -> CTRSplit:
    """Amazon Electronics per-user samples as CTR tables with a per-user time-ordered split.

    The rows of each user are already in time order; the last ``test_fraction`` of them
    (rounded up) are the test set, the ``valid_fraction`` before them the validation set, the
    rest (at least one row) the training set. ``history`` keeps the ``max_history`` most
    recent earlier positives, oldest first. The item vocabulary is restricted to items seen in
    training rows (as target or in a history); other items get code 0 (unknown history items
    are then masked like padding).

    Args:
        data: a :class:`graphrec.datasets.AmazonElectronicsUsers`.
        valid_fraction, test_fraction: per-user shares of the validation and test periods.
        max_history: longest history kept.
    """
    _check(valid_fraction, test_fraction, max_history)
    n = data.num_rows
    part = _parts(np.asarray(data.user_offsets[:-1]), n, valid_fraction, test_fraction)
    history, lengths = data.padded_history(max_len=max_history)
    history, lengths = history.numpy(), lengths.numpy()
    train = part == 0
    seen = np.zeros(data.vocab_size, dtype=bool)
    seen[data.item[train]] = True
    seen[history[train].ravel()] = True
    seen[0] = False
    code = np.zeros(data.vocab_size, dtype=np.int64)
    code[seen] = np.arange(1, int(seen.sum()) + 1)
    raw_item = np.r_[0, data.item_vocab]
    vocab = {
        "user": {str(u): i + 1 for i, u in enumerate(data.user_ids.tolist())},
        "item": {str(raw_item[i]): int(code[i]) for i in np.flatnonzero(seen).tolist()},
    }
    history = code[history]

    def table(rows: np.ndarray) -> CTRTable:
        width = max(int(lengths[rows].max(initial=0)), 1)
        return CTRTable(
            labels=np.asarray(data.labels[rows], dtype=np.float32),
            categorical={"user": data.user[rows] + 1, "item": code[data.item[rows]]},
            numeric={},
            sequence={"history": np.ascontiguousarray(history[rows, :width])},
            sequence_lengths={"history": lengths[rows]},
            vocab=vocab,
            schema=AMAZON_CTR_SCHEMA,
            path=f"{data.path} (ctr)",
        )

    return CTRSplit(*(table(np.flatnonzero(part == k)) for k in range(3)))


def _check(valid_fraction: float, test_fraction: float, max_history: int) -> None:
    for name, value in (("valid_fraction", valid_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"{name} must be in [0, 1); got {value}")
    if max_history < 1:
        raise ConfigError(f"max_history must be >= 1; got {max_history}")


def _parts(starts: np.ndarray, n: int, valid_fraction: float, test_fraction: float) -> np.ndarray:
    """0/1/2 (train/valid/test) per row of rows grouped by user (group ``g`` starts at
    ``starts[g]``), by position within the group; at least one training row per group."""
    sizes = np.diff(np.r_[starts, n])
    pos = np.arange(n) - np.repeat(starts, sizes)
    size = np.repeat(sizes, sizes)
    n_test = np.minimum(np.ceil(test_fraction * size), size - 1)
    n_valid = np.minimum(np.ceil(valid_fraction * size), size - 1 - n_test)
    return np.where(pos >= size - n_test, 2, np.where(pos >= size - n_test - n_valid, 1, 0))


def _vocab(values: np.ndarray) -> dict[str, int]:
    return {str(v): code for code, v in enumerate(np.unique(values).tolist(), start=1)}


def _histories(user: np.ndarray, item: np.ndarray, label: np.ndarray, max_len: int) -> list:
    """Per row (sorted by user, time): items of the same user's earlier positive rows."""
    out = []
    current, positives = -1, []
    for u, i, y in zip(user.tolist(), item.tolist(), label.tolist()):
        if u != current:
            current, positives = u, []
        out.append(positives[-max_len:])
        if y:
            positives.append(i)
    return out


def _pad_lists(lists: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
    out = np.zeros((len(lists), max(int(lengths.max(initial=0)), 1)), dtype=np.int64)
    out[np.arange(out.shape[1]) < lengths[:, None]] = [v for x in lists for v in x]
    return out, lengths
