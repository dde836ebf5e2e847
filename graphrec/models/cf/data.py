"""Build the CF training graph of a named dataset or of interaction-log files.

One entry point shared by ``graphrec cf``, ``benchmarks/cf.py`` and the notebooks:

* ``"gowalla"``: LightGCN's split under ``root/lightgcn/gowalla`` (or ``root`` itself);
  official test set, validation carved from train;
* ``"ml-100k"``: MovieLens-100K fold ``fold`` under ``root/movielens/ml-100k`` (or ``root``),
  ratings ``>= min_rating`` (default 4) as implicit feedback;
* a folder: a LightGCN-format split, ``train.txt`` and ``test.txt`` (``.gz`` too) with one
  ``user item item ...`` line per user and integer ids shared by both files, or the training
  adjacency ``s_adj_mat.npz`` and ``test.txt`` (the form of ``"gowalla"``); validation carved
  from train;
* a file: an interaction log (any :func:`graphrec.io.read_interactions` format); with
  ``test`` another log whose ids are matched to the training log's (test users/items absent
  from training are dropped, they cannot be ranked), otherwise ``test_fraction`` of every
  user's interactions is held out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from graphrec.datasets._files import DATASET_FOLDERS, dataset_folder, locate
from graphrec.errors import ConfigError
from graphrec.graphs.bipartite import BipartiteGraph, build_bipartite, to_binary_csr
from graphrec.io import Interactions

__all__ = ["DATASETS", "load_cf_graph", "load_lightgcn_folder"]

DATASETS = {name: DATASET_FOLDERS[name] for name in ("gowalla", "ml-100k")}


def _index_in(ids: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Position of each ``query`` id in the distinct ``ids``, -1 where absent."""
    if ids.dtype.kind != query.dtype.kind:  # e.g. integer ids in one log, strings in the other
        ids, query = ids.astype(str), query.astype(str)
    if not len(ids):
        return np.full(len(query), -1, dtype=np.int64)
    sorter = np.argsort(ids, kind="stable")
    pos = np.minimum(np.searchsorted(ids, query, sorter=sorter), len(ids) - 1)
    index = sorter[pos]
    return np.where(ids[index] == query, index, -1).astype(np.int64)


def _match_ids(
    test_log: Interactions, train_log: Interactions, min_rating: float | None
) -> sp.csr_array:
    """``test_log`` as a matrix in ``train_log``'s index space; pairs with unknown ids dropped."""
    keep = np.ones(test_log.num_interactions, dtype=bool)
    if min_rating is not None:
        if test_log.rating is None:
            raise ConfigError("min_rating needs a test log with ratings")
        keep &= test_log.rating >= min_rating
    users = _index_in(train_log.user_ids, test_log.user_ids[test_log.user])
    items = _index_in(train_log.item_ids, test_log.item_ids[test_log.item])
    known = keep & (users >= 0) & (items >= 0)
    shape = (train_log.num_users, train_log.num_items)
    ones = np.ones(int(known.sum()), dtype=np.float32)
    return sp.csr_array((ones, (users[known], items[known])), shape=shape)


def load_lightgcn_folder(
    folder: str | Path, *, valid_fraction: float = 0.1, seed: int = 0
) -> BipartiteGraph:
    """The graph of a LightGCN-format folder: ``train.txt`` and ``test.txt`` (``.gz`` too),
    or, without ``train.txt``, ``s_adj_mat.npz`` and ``test.txt``.

    Text form: every line is ``user item item ...`` with integer ids ``>= 0``, the ids of both
    files index one space (``num_users = max user id + 1``, likewise items). Adjacency form:
    the training interactions are the user-item block of the ``(U + I) x (U + I)`` adjacency
    (:func:`graphrec.datasets.gowalla.read_adjacency_split`). The validation set is
    ``valid_fraction`` of every user's training items (seed ``seed + 1``).

    Raises:
        DatasetNotFoundError: neither form is complete (naming the missing files of the text
            form, or of the adjacency form when the folder holds ``s_adj_mat.npz``).
        InputFormatError: a malformed line (naming the file and the line) or adjacency.
    """
    from graphrec.datasets.gowalla import read_adjacency_split
    from graphrec.io import read_interactions

    folder = Path(folder).expanduser()
    what = "LightGCN-format folder"
    hint = (
        "A LightGCN-format folder holds train.txt and test.txt, or s_adj_mat.npz and test.txt "
        "(.gz accepted for the .txt files)."
    )
    text = any((folder / name).is_file() for name in ("train.txt", "train.txt.gz"))
    if not text and (folder / "s_adj_mat.npz").is_file():
        files = locate(what, folder, ["s_adj_mat.npz", "test.txt"], hint)
        train, test = read_adjacency_split(files["s_adj_mat.npz"], files["test.txt"])
    else:
        files = locate(what, folder, ["train.txt", "test.txt"], hint)
        train, test = (read_interactions(files[n], format="lightgcn", keep_ids=True)
                       for n in files)  # fmt: skip
    return build_bipartite(train, test, valid_fraction=valid_fraction, seed=seed)


def load_cf_graph(
    dataset: str | Path,
    *,
    root: str | Path | None = None,
    test: str | Path | None = None,
    min_rating: float | None = None,
    valid_fraction: float = 0.1,
    test_fraction: float = 0.2,
    fold: int = 1,
    seed: int = 0,
) -> BipartiteGraph:
    """The :class:`~graphrec.graphs.BipartiteGraph` of ``dataset`` (see the module docstring).

    Args:
        dataset: ``"gowalla"``, ``"ml-100k"``, a LightGCN-format folder or the path of an
            interaction log.
        root: data folder of a named dataset (``shared/data`` or the dataset's own folder;
            default ``$GRAPHREC_DATA``, see :func:`graphrec.datasets.dataset_folder`).
        test: test log for a path dataset (None: carve ``test_fraction`` per user).
        min_rating: keep ratings ``>= min_rating`` (default 4 for ml-100k, none otherwise).
        valid_fraction, test_fraction, seed: see :func:`~graphrec.graphs.build_bipartite`.
        fold: MovieLens-100K fold (1-5).

    Raises:
        DatasetNotFoundError: a named dataset's files are missing under ``root``.
        FileNotFoundError: a log path does not exist.
        InputFormatError: a malformed line of a file (naming the file and the line).
        ValueError: ``test`` given for a named dataset.
        GraphrecError: a named dataset without a data root.
    """
    name = str(dataset)
    if name in DATASETS and test is not None:
        raise ConfigError(f"dataset {name!r} has an official test set; do not pass test")
    if name == "gowalla":
        from graphrec.datasets import load_gowalla

        gw = load_gowalla(dataset_folder(name, root))
        return build_bipartite(gw.train, gw.test, valid_fraction=valid_fraction, seed=seed)
    if name == "ml-100k":
        from graphrec.datasets import load_movielens100k

        ml = load_movielens100k(dataset_folder(name, root), fold=fold)
        rating = 4.0 if min_rating is None else min_rating
        return build_bipartite(
            ml.train, ml.test, valid_fraction=valid_fraction, min_rating=rating, seed=seed
        )
    from graphrec.io import read_interactions

    path = Path(dataset)
    if path.is_dir():
        if test is not None or min_rating is not None:
            raise ConfigError(
                f"dataset {name!r} is a LightGCN-format folder (no ratings); "
                "do not pass test or min_rating"
            )
        return load_lightgcn_folder(path, valid_fraction=valid_fraction, seed=seed)
    if not path.is_file():
        raise FileNotFoundError(
            f"dataset {name!r} is neither {' nor '.join(DATASETS)} nor an existing file or folder"
        )
    log = read_interactions(path)
    if test is None:
        return build_bipartite(
            log,
            valid_fraction=valid_fraction,
            test_fraction=test_fraction,
            min_rating=min_rating,
            seed=seed,
        )
    test_path = Path(test)
    if not test_path.is_file():
        raise FileNotFoundError(f"test log {test_path} does not exist")
    train = to_binary_csr(log, min_rating=min_rating)
    graph = build_bipartite(
        train, _match_ids(read_interactions(test_path), log, min_rating), seed=seed,
        valid_fraction=valid_fraction,
    )  # fmt: skip
    graph.user_ids, graph.item_ids = log.user_ids, log.item_ids
    return graph
