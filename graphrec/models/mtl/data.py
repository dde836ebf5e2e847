"""Multi-task tables: CTR features with one binary label column per task.

:class:`MTLTable` wraps a :class:`graphrec.io.CTRTable` (the features, encoded by the CTR
code) with a ``[N, T]`` label matrix. Three sources, each split per user in time order:

* :func:`movielens_mtl` - MovieLens-100K, task ``like`` = rating >= 4, task ``love`` =
  rating = 5, on the tables of :func:`graphrec.models.ctr.movielens_ctr`;
* :func:`taobao_behavior_mtl` - a Taobao UserBehavior log (``user,item,category,behavior,
  timestamp``), one row per user-item pair, task ``cart_fav`` = carted or favourited, task
  ``buy`` = bought;
* :func:`synthetic_mtl` - a seeded generator with correlated tasks, rare task-B positives and
  every ``(y_A, y_B)`` group present in every split.

:func:`load_mtl_dataset` loads them by name.

Example:
    >>> data = load_mtl_dataset("synthetic", seed=0)
    >>> data.tasks, data.split.train.labels.shape
    (('a', 'b'), (16000, 2))
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graphrec.errors import ConfigError, GraphrecError, InputFormatError
from graphrec.io import CTRSchema, CTRTable
from graphrec.models.ctr.data import _parts, _vocab, movielens_ctr
from graphrec.models.ctr.features import CTRFeatures

__all__ = [
    "MTL_DATASETS",
    "MTLDataset",
    "MTLSplit",
    "MTLTable",
    "load_mtl_dataset",
    "movielens_mtl",
    "synthetic_mtl",
    "taobao_behavior_mtl",
]

#: Dataset names :func:`load_mtl_dataset` knows (anything else is read as a file or folder).
MTL_DATASETS = ("ml-100k", "synthetic", "taobao")

#: Column roles of :func:`taobao_behavior_mtl` tables.
TAOBAO_MTL_SCHEMA = CTRSchema(label="cart_fav", categorical=["user", "item", "category"])

#: Column roles of :func:`synthetic_mtl` tables; ``history`` (earlier task-A positives) shares
#: the ``item`` vocabulary.
SYNTHETIC_MTL_SCHEMA = CTRSchema(
    label="a",
    categorical=["user", "item", "cate"],
    sequence={"history": ","},
    shared_vocab={"history": "item"},
)

_BEHAVIORS = ("pv", "cart", "fav", "buy")


@dataclass(repr=False)
class MTLTable:
    """CTR features plus one binary label column per task.

    Attributes:
        table: the features (its ``labels`` are the first task's).
        labels: float32 ``[num_rows, T]`` 0/1.
        tasks: the task names, one per label column.
    """

    table: CTRTable
    labels: np.ndarray
    tasks: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.labels.shape != (self.table.num_rows, len(self.tasks)):
            raise ConfigError(
                f"labels must have shape ({self.table.num_rows}, {len(self.tasks)}); "
                f"got {self.labels.shape}"
            )

    @property
    def num_rows(self) -> int:
        return self.table.num_rows

    def take(self, rows: np.ndarray) -> MTLTable:
        """The table of ``rows`` (indices)."""
        rows = np.asarray(rows, dtype=np.int64)
        return MTLTable(self.table.take(rows), self.labels[rows], self.tasks)

    def group_counts(self) -> dict[str, int]:
        """Rows per ``(y_A, y_B)`` group of the first two tasks: ``{"++": n, "+-": ...}``."""
        a, b = self.labels[:, 0] > 0, self.labels[:, 1] > 0
        return {
            f"{'+' if ya else '-'}{'+' if yb else '-'}": int(((a == ya) & (b == yb)).sum())
            for ya in (True, False)
            for yb in (True, False)
        }

    def __repr__(self) -> str:
        rates = ", ".join(f"{t} {r:.3f}" for t, r in zip(self.tasks, self.labels.mean(axis=0)))
        return f"MTLTable(rows={self.num_rows}, positive rate: {rates})"


@dataclass(repr=False)
class MTLSplit:
    """Train / validation / test multi-task tables encoded with one vocabulary."""

    train: MTLTable
    valid: MTLTable
    test: MTLTable

    def __repr__(self) -> str:
        return (
            f"MTLSplit(train={self.train.num_rows}, valid={self.valid.num_rows}, "
            f"test={self.test.num_rows})"
        )


@dataclass(repr=False)
class MTLDataset:
    """A multi-task dataset ready for training.

    Attributes:
        name: the dataset name or path.
        split: the three tables.
        features: :class:`~graphrec.models.ctr.CTRFeatures` of the training table.
        tasks: the task names.
        user: the categorical column that groups rows by user (GAUC, NDCG).
    """

    name: str
    split: MTLSplit
    features: CTRFeatures
    tasks: tuple[str, ...]
    user: str = "user"

    def __repr__(self) -> str:
        return f"MTLDataset({self.name!r}, {self.split!r}, tasks={self.tasks})"


def movielens_mtl(ml, **kwargs) -> MTLSplit:
    """MovieLens-100K with two tasks: ``like`` (rating >= 4) and ``love`` (rating = 5).

    The features, rows and per-user time split are those of
    :func:`graphrec.models.ctr.movielens_ctr` with ``threshold=4`` (``kwargs`` go to it).

    Args:
        ml: a :class:`graphrec.datasets.MovieLens100K`.
    """
    if "threshold" in kwargs:
        raise ConfigError("threshold is fixed at 4 (task like); task love is rating = 5")
    split = movielens_ctr(ml, threshold=4.0, **kwargs)
    r = ml.ratings
    order = np.lexsort((r.item, r.timestamp, r.user))  # movielens_ctr's row order
    rating = r.rating[order]
    starts = np.flatnonzero(np.r_[True, r.user[order][1:] != r.user[order][:-1]])
    part = _parts(starts, len(order), kwargs.get("valid_fraction", 0.1),
                  kwargs.get("test_fraction", 0.1))  # fmt: skip
    tables = []
    for k, table in enumerate((split.train, split.valid, split.test)):
        rk = rating[part == k]
        if not np.array_equal(rk >= 4, table.labels > 0):
            raise GraphrecError("movielens_ctr's row order changed: cannot attach rating = 5")
        labels = np.stack([rk >= 4, rk >= 5], axis=1).astype(np.float32)
        tables.append(MTLTable(table, labels, ("like", "love")))
    return MTLSplit(*tables)


def taobao_behavior_mtl(
    path: str | Path, *, valid_fraction: float = 0.1, test_fraction: float = 0.1
) -> MTLSplit:
    """A Taobao UserBehavior log as two tasks per user-item pair.

    Each line is ``user,item,category,behavior,timestamp`` with behaviour ``pv``, ``cart``,
    ``fav`` or ``buy``. Every user-item pair becomes one row (its category from the pair's
    first event) with task ``cart_fav`` = the pair has a cart or fav event and task ``buy`` =
    it has a buy event. Each user's pairs are ordered by their first event (ties by item); the
    last ``test_fraction`` of them (rounded up) are the test set, the ``valid_fraction``
    before them the validation set, the rest (at least one) the training set. Vocabularies
    come from the training rows; unseen values get code 0.

    Raises:
        InputFormatError: a line without five fields, an unknown behaviour or a non-integer
            timestamp.
    """
    for name, value in (("valid_fraction", valid_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"{name} must be in [0, 1); got {value}")
    pairs: dict[tuple[str, str], list] = {}
    with open(path, newline="") as f:
        for line, fields in enumerate(csv.reader(f), start=1):
            if len(fields) != 5 or fields[3] not in _BEHAVIORS or not fields[4].isdigit():
                raise InputFormatError(
                    "not a UserBehavior event", path=path, line=line, content=",".join(fields),
                    expected=f"user,item,category,behavior ({'|'.join(_BEHAVIORS)}),timestamp",
                )  # fmt: skip
            user, item, cate, behavior, ts = fields
            entry = pairs.setdefault((user, item), [int(ts), cate, False, False])
            if int(ts) < entry[0]:
                entry[0], entry[1] = int(ts), cate
            entry[2] |= behavior in ("cart", "fav")
            entry[3] |= behavior == "buy"
    if not pairs:
        raise InputFormatError("no events", path=path)
    keys = list(pairs)
    user = np.array([u for u, _ in keys])
    item = np.array([i for _, i in keys])
    first = np.array([pairs[k][0] for k in keys])
    order = np.lexsort((item, first, user))
    raw = {
        "user": user[order],
        "item": item[order],
        "category": np.array([pairs[k][1] for k in keys])[order],
    }
    labels = np.array([[pairs[k][2], pairs[k][3]] for k in keys], dtype=np.float32)[order]
    u = raw["user"]
    starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])
    part = _parts(starts, len(order), valid_fraction, test_fraction)
    vocab = {c: _vocab(v[part == 0]) for c, v in raw.items()}

    def table(k: int) -> MTLTable:
        rows = np.flatnonzero(part == k)
        ctr = CTRTable(
            labels=labels[rows, 0],
            categorical={
                c: np.array([vocab[c].get(v, 0) for v in raw[c][rows]], dtype=np.int64) for c in raw
            },
            numeric={},
            sequence={},
            sequence_lengths={},
            vocab=vocab,
            schema=TAOBAO_MTL_SCHEMA,
            path=str(path),
        )
        return MTLTable(ctr, labels[rows], ("cart_fav", "buy"))

    return MTLSplit(table(0), table(1), table(2))


def _bias_for_rate(logits: np.ndarray, rate: float) -> float:
    """The bias ``b`` with ``mean(sigmoid(logits + b)) = rate`` (bisection)."""
    lo, hi = -30.0, 30.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if np.mean(1.0 / (1.0 + np.exp(-(logits + mid)))) < rate:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def synthetic_mtl(
    *,
    num_users: int = 400,
    num_items: int = 300,
    num_cates: int = 10,
    impressions_per_user: int = 50,
    dim: int = 4,
    correlation: float = 0.7,
    rate_a: float = 0.3,
    rate_b: float = 0.03,
    strength: float = 3.0,
    max_history: int = 20,
    valid_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
) -> MTLSplit:
    r"""A seeded two-task dataset with correlated tasks and rare task-B positives.

    Users have latent factors :math:`\mathbf{p}_u, \mathbf{p}'_u \sim N(0, I_k)`; items have
    :math:`\mathbf{q}_v = \mathbf{c}_{\text{cate}(v)} + \tfrac12 \boldsymbol{\epsilon}_v` and
    an independent :math:`\mathbf{q}'_v` of the same form (category centres
    :math:`\mathbf{c}, \mathbf{c}' \sim N(0, I_k)`). With
    :math:`s_A = \mathbf{p}_u^\top \mathbf{q}_v / \sqrt{k}`,
    :math:`s'_B = \mathbf{p}'^\top_u \mathbf{q}'_v / \sqrt{k}` and
    :math:`s_B = \rho\, s_A + \sqrt{1 - \rho^2}\, s'_B`, an impression has
    :math:`y_A \sim \mathrm{Bernoulli}(\sigma(\gamma s_A + b_A))` and, independently given
    the scores, :math:`y_B \sim \mathrm{Bernoulli}(\sigma(\gamma s_B + b_B))`, where the biases
    set the mean positive rates to ``rate_a`` and ``rate_b``. So :math:`\rho` controls how
    much task B's ranking follows task A's, and all four :math:`(y_A, y_B)` groups occur.

    Every user makes ``impressions_per_user`` impressions of uniformly drawn items in time
    order; ``history`` holds the user's earlier task-A positives (at most ``max_history``,
    oldest first). The last ``test_fraction`` of a user's impressions (rounded up) are the
    test set, the ``valid_fraction`` before them the validation set, the rest the training
    set. Tasks ``a`` and ``b``.

    Args:
        correlation: :math:`\rho \in [-1, 1]`.
        rate_a, rate_b: mean positive rates in ``(0, 1)``.
        strength: :math:`\gamma > 0`, how far the labels follow the scores.
        seed: seed of :func:`numpy.random.default_rng`; equal seeds give equal data.

    Raises:
        ConfigError: a parameter out of range, or a split without one of the four groups
            (too few impressions for ``rate_b``).
    """
    from graphrec.datasets.synthetic_ctr import impression_tables

    if not -1.0 <= correlation <= 1.0:
        raise ConfigError(f"correlation must be in [-1, 1]; got {correlation}")
    for name, value in (("rate_a", rate_a), ("rate_b", rate_b)):
        if not 0.0 < value < 1.0:
            raise ConfigError(f"{name} must be in (0, 1); got {value}")
    if min(num_users, num_items, num_cates, dim, max_history) < 1 or not strength > 0:
        raise ConfigError("counts, dim and max_history must be >= 1 and strength > 0")
    n_test = int(np.ceil(test_fraction * impressions_per_user))
    n_valid = int(np.ceil(valid_fraction * impressions_per_user))
    n_train = impressions_per_user - n_test - n_valid
    if n_train < 1:
        raise ConfigError("valid_fraction + test_fraction leave no training impressions")
    rng = np.random.default_rng(seed)
    cate = rng.integers(0, num_cates, num_items)

    def factors() -> tuple[np.ndarray, np.ndarray]:
        centres = rng.normal(size=(num_cates, dim))
        return rng.normal(size=(num_users, dim)), centres[cate] + 0.5 * rng.normal(
            size=(num_items, dim)
        )

    (p_a, q_a), (p_b, q_b) = factors(), factors()
    user = np.repeat(np.arange(num_users), impressions_per_user)
    item = rng.integers(0, num_items, user.size)
    s_a = np.einsum("nk,nk->n", p_a[user], q_a[item]) / np.sqrt(dim)
    s_b = correlation * s_a + np.sqrt(1 - correlation**2) * np.einsum(
        "nk,nk->n", p_b[user], q_b[item]
    ) / np.sqrt(dim)
    logit_a, logit_b = strength * s_a, strength * s_b
    logit_a += _bias_for_rate(logit_a, rate_a)
    logit_b += _bias_for_rate(logit_b, rate_b)
    y_a = rng.random(user.size) < 1 / (1 + np.exp(-logit_a))
    y_b = rng.random(user.size) < 1 / (1 + np.exp(-logit_b))
    t = np.tile(np.arange(impressions_per_user), num_users)
    part = np.where(t < n_train, 0, np.where(t < n_train + n_valid, 1, 2))
    history, clicks, current = [], [], -1
    for u, v, y in zip(user.tolist(), item.tolist(), y_a.tolist()):
        if u != current:
            current, clicks = u, []
        history.append(clicks[-max_history:])
        if y:
            clicks.append(v)
    rows = {"label": y_a.astype(np.float32), "history": history, "part": part}
    codes = {"user": user + 1, "item": item + 1, "cate": cate[item] + 1}
    count = {"user": num_users, "item": num_items, "cate": num_cates}
    path = f"synthetic multi-task (correlation={correlation}, seed={seed})"
    table = impression_tables(rows, codes, count, max_history, SYNTHETIC_MTL_SCHEMA, path)
    labels = np.stack([y_a, y_b], axis=1).astype(np.float32)
    split = MTLSplit(*(MTLTable(table(k), labels[part == k], ("a", "b")) for k in range(3)))
    for name in ("train", "valid", "test"):
        counts = getattr(split, name).group_counts()
        if min(counts.values()) == 0:
            raise ConfigError(
                f"the {name} split lacks a (y_A, y_B) group ({counts}): raise num_users, "
                "impressions_per_user or rate_b"
            )
    return split


def load_mtl_dataset(
    dataset: str | Path, root: str | Path | None = None, *, seed: int = 0
) -> MTLDataset:
    """Load a multi-task dataset by name or path.

    Args:
        dataset: ``"ml-100k"`` (:func:`movielens_mtl`), ``"synthetic"`` (:func:`synthetic_mtl`
            with ``seed``; no root), ``"taobao"`` (:func:`taobao_behavior_mtl` on the
            ``UserBehavior*.csv`` of the ``ctr/taobao_userbehavior_sample`` folder of the data
            root), or the path of a UserBehavior CSV file or of a folder holding one.
        root: the data root of a named dataset (laid out like ``shared/data``) or the
            dataset's own folder; default ``$GRAPHREC_DATA``.
        seed: seed of the synthetic data.

    Raises:
        GraphrecError: an unknown name that is not a file or folder, or a folder without a
            ``UserBehavior*.csv`` file.
    """
    from graphrec.datasets import dataset_folder

    name = str(dataset)
    if name == "synthetic":
        split = synthetic_mtl(seed=seed)
    elif name == "ml-100k":
        from graphrec.datasets import load_movielens100k

        split = movielens_mtl(load_movielens100k(dataset_folder(name, root)))
    else:
        path = Path(name).expanduser()
        if name == "taobao":
            path = dataset_folder(name, root)
        elif not path.exists():
            raise GraphrecError(
                f"--dataset {name!r} is neither one of {', '.join(MTL_DATASETS)} nor a file or "
                "folder (a Taobao UserBehavior CSV: user,item,category,behavior,timestamp)"
            )
        if path.is_dir():
            files = sorted(path.glob("UserBehavior*.csv"))
            if not files:
                raise GraphrecError(f"{path}: no UserBehavior*.csv file in this folder")
            path = files[0]
        split = taobao_behavior_mtl(path)
    return MTLDataset(name, split, CTRFeatures.from_table(split.train.table), split.train.tasks)
