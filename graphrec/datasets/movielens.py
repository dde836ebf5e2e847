"""MovieLens 100K (GroupLens): ratings, movie genres and years, user demographics, folds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graphrec.datasets._files import locate, open_text
from graphrec.errors import ConfigError, InputFormatError
from graphrec.io import Interactions, read_interactions

__all__ = ["MovieLens100K", "load_movielens100k", "MOVIELENS_GENRES"]

#: The 19 genre columns of ``u.item``, in file order (as listed in ``u.genre``).
MOVIELENS_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip

_HINT = (
    "Get ml-100k.zip from https://grouplens.org/datasets/movielens/100k/ and extract it there "
    "(plain or gzip-compressed files are both accepted)."
)


@dataclass(repr=False)
class MovieLens100K:
    """MovieLens 100K with side information; index ``i`` of users and items is id ``i + 1``.

    Attributes:
        ratings: all ratings of ``u.data`` (ratings 1..5 as float32, unix timestamps).
        train, test: the official fold ``u{fold}.base`` / ``u{fold}.test`` (same index space),
            or None without ``fold``.
        fold: 1..5, or None.
        item_titles: title per item (latin-1 decoded).
        item_genres: uint8 ``[num_items, 19]`` multi-hot, columns :data:`MOVIELENS_GENRES`.
        release_year: int32 per item from the release date; ``-1`` where the date is missing
            (one item, id 267 "unknown").
        user_age: int64 per user.
        user_gender: int64 per user, 0 = ``M``, 1 = ``F``.
        user_occupation: int64 index into ``occupations`` per user.
        occupations: occupation names, sorted.
        user_zip: zip code per user (strings; a few are not numeric).
        root: the folder read.
    """

    ratings: Interactions
    train: Interactions | None
    test: Interactions | None
    fold: int | None
    item_titles: list[str]
    item_genres: np.ndarray
    release_year: np.ndarray
    user_age: np.ndarray
    user_gender: np.ndarray
    user_occupation: np.ndarray
    occupations: list[str]
    user_zip: list[str]
    root: Path

    genres = MOVIELENS_GENRES

    @property
    def num_users(self) -> int:
        return self.ratings.num_users

    @property
    def num_items(self) -> int:
        return self.ratings.num_items

    @property
    def num_ratings(self) -> int:
        return self.ratings.num_interactions

    def summary(self) -> str:
        counts = np.bincount(self.ratings.rating.astype(np.int64), minlength=6)[1:]
        years = self.release_year[self.release_year >= 0]
        out = [
            f"MovieLens100K  {self.root}",
            f"  users    {self.num_users:,} (age {self.user_age.min()}..{self.user_age.max()}, "
            f"{int((self.user_gender == 1).sum())} female, {len(self.occupations)} occupations)",
            f"  items    {self.num_items:,} (19 genres, released {years.min()}..{years.max()}, "
            f"{int((self.release_year < 0).sum())} without date)",
            f"  ratings  {self.num_ratings:,} (1..5: {', '.join(f'{c:,}' for c in counts)})",
        ]
        if self.fold is not None:
            out.append(
                f"  fold {self.fold}   train {self.train.num_interactions:,}, "
                f"test {self.test.num_interactions:,}"
            )
        return "\n".join(out)

    def __repr__(self) -> str:
        return (
            f"MovieLens100K(num_users={self.num_users}, num_items={self.num_items}, "
            f"num_ratings={self.num_ratings}, fold={self.fold})"
        )


def _rows(path: Path, width: int, expected: str, encoding: str = "utf-8") -> list[list[str]]:
    """``|``-separated lines of ``path``, each checked to have ``width`` fields."""
    rows = []
    with open_text(path, encoding) as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            fields = line.split("|")
            if len(fields) != width:
                raise InputFormatError(
                    f"has {len(fields)} '|'-separated fields",
                    path=path,
                    line=lineno,
                    content=line,
                    expected=f"{width} ({expected})",
                )
            if fields[0] != str(len(rows) + 1):
                raise InputFormatError(
                    f"id {fields[0]!r} out of sequence",
                    path=path,
                    line=lineno,
                    content=line,
                    expected=f"ids 1, 2, ... in order (here {len(rows) + 1})",
                )
            rows.append(fields)
    return rows


def _items(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    rows = _rows(path, 24, "id|title|release date|video date|URL|19 genre flags", "latin-1")
    titles = [r[1] for r in rows]
    try:
        genres = np.array([r[5:] for r in rows], dtype=np.uint8)
        years = np.array([int(r[2].rsplit("-", 1)[-1]) if r[2] else -1 for r in rows], np.int32)
    except ValueError:
        raise InputFormatError(
            "bad release date or genre flag",
            path=path,
            expected="dates like 01-Jan-1995 and 0/1 genre flags",
        ) from None
    return titles, genres, years


def _ratings(path: Path, num_users: int, num_items: int) -> Interactions:
    """A ratings file in the index space of ``u.user`` / ``u.item`` (index = id - 1)."""
    log = read_interactions(path, format="movielens", keep_ids=True)
    for role, ids, n in (("user", log.user, num_users), ("item", log.item, num_items)):
        if len(ids) and (ids.min() < 1 or ids.max() > n):
            raise InputFormatError(
                f"{role} ids span {ids.min()}..{ids.max()}",
                path=path,
                expected=f"{role} ids 1..{n} as in the {'u.user' if role == 'user' else 'u.item'}",
            )
    return Interactions(
        user=log.user - 1,
        item=log.item - 1,
        rating=log.rating,
        timestamp=log.timestamp,
        user_ids=np.arange(1, num_users + 1),
        item_ids=np.arange(1, num_items + 1),
        path=log.path,
        format=log.format,
    )


def load_movielens100k(root: str | Path, *, fold: int | None = None) -> MovieLens100K:
    """Load MovieLens 100K from ``root`` (the extracted ``ml-100k`` folder); never downloads.

    Needs ``u.data``, ``u.item`` and ``u.user`` (each plain or ``.gz``), plus ``u{fold}.base``
    and ``u{fold}.test`` for ``fold`` in 1..5 (the official 80/20 five-fold split). 943 users,
    1,682 movies, 100,000 ratings.

    Reference: F. M. Harper and J. A. Konstan, "The MovieLens Datasets: History and Context",
    ACM TiiS 5(4), 2015. Research use only; do not redistribute.

    Raises:
        DatasetNotFoundError: naming every missing file.
        InputFormatError: a malformed line.
    """
    if fold is not None and fold not in range(1, 6):
        raise ConfigError(f"fold must be 1..5 or None; got {fold!r}")
    names = ["u.data", "u.item", "u.user"]
    if fold is not None:
        names += [f"u{fold}.base", f"u{fold}.test"]
    files = locate("movielens-100k", root, names, _HINT)

    titles, genres, years = _items(files["u.item"])
    users = _rows(files["u.user"], 5, "id|age|gender|occupation|zip")
    if any(r[2] not in ("M", "F") for r in users) or not all(r[1].isdigit() for r in users):
        raise InputFormatError(
            "bad age or gender", path=files["u.user"], expected="integer age and gender M or F"
        )
    occupations = sorted({r[3] for r in users})
    n_users, n_items = len(users), len(titles)

    def split(name: str) -> Interactions | None:
        return None if fold is None else _ratings(files[name], n_users, n_items)

    return MovieLens100K(
        ratings=_ratings(files["u.data"], n_users, n_items),
        train=split(f"u{fold}.base"),
        test=split(f"u{fold}.test"),
        fold=fold,
        item_titles=titles,
        item_genres=genres,
        release_year=years,
        user_age=np.array([int(r[1]) for r in users], dtype=np.int64),
        user_gender=np.array([r[2] == "F" for r in users], dtype=np.int64),
        user_occupation=np.array([occupations.index(r[3]) for r in users], dtype=np.int64),
        occupations=occupations,
        user_zip=[r[4] for r in users],
        root=Path(root).expanduser(),
    )
