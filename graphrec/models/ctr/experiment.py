"""Named CTR datasets and models shared by the CLI, the benchmark and the notebooks.

:func:`load_ctr_dataset` turns a dataset name (or a folder in the FuxiCTR Taobao format) into
train / validation / test tables plus what HIEN needs (attribute trees, the item, user and
history features); :func:`build_ctr_model` builds one of the five base models, optionally
wrapped in :class:`graphrec.models.hien.HIEN`, with the defaults of
:mod:`graphrec.models.ctr.defaults` (train it with ``train_recipe(name)``).

Example:
    >>> data = load_ctr_dataset("synthetic", seed=0)
    >>> model = build_ctr_model("din", data, hien=True)
    >>> type(model).__name__, model.types
    ('HIEN', ['campaign', 'customer', 'cate', 'brand'])
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from graphrec.errors import GraphrecError
from graphrec.graphs.attribute_tree import (
    AttributeTree,
    movielens_ctr_trees,
    taobao_ctr_trees,
    tree_from_table,
)
from graphrec.io import CTRTable
from graphrec.models.ctr.data import CTRSplit, amazon_ctr, movielens_ctr
from graphrec.models.ctr.defaults import HIEN_DEFAULTS
from graphrec.models.ctr.features import CTRFeatures
from graphrec.registry import CTR_MODELS

__all__ = ["CTR_DATASETS", "CTRDataset", "build_ctr_model", "load_ctr_dataset"]

#: Dataset names :func:`load_ctr_dataset` knows (anything else is read as a folder).
CTR_DATASETS = ("ml-100k", "amazon-users", "synthetic")


@dataclass(repr=False)
class CTRDataset:
    """A CTR dataset ready for training.

    Attributes:
        name: the dataset name or folder.
        split: train / validation / test tables (one vocabulary).
        features: :class:`CTRFeatures` of the training table.
        trees: ``{"item": [...], "user": [...]}`` attribute trees, or None (no attributes:
            the base models only).
        item, user, history: the target item, user and behaviour-history features.
    """

    name: str
    split: CTRSplit
    features: CTRFeatures
    trees: dict[str, list[AttributeTree]] | None
    item: str
    user: str
    history: str

    def __repr__(self) -> str:
        trees = "none" if self.trees is None else {k: len(v) for k, v in self.trees.items()}
        return f"CTRDataset({self.name!r}, {self.split!r}, trees={trees})"


def _tables(split: CTRSplit) -> list[CTRTable]:
    return [split.train, split.valid, split.test]


def load_ctr_dataset(
    dataset: str | Path,
    root: str | Path | None = None,
    *,
    seed: int = 0,
    valid_fraction: float = 0.1,
) -> CTRDataset:
    """Load a CTR dataset by name or folder.

    Args:
        dataset: ``"ml-100k"`` (MovieLens-100K as CTR, :func:`movielens_ctr`),
            ``"amazon-users"`` (Amazon Electronics per-user samples, :func:`amazon_ctr`, no
            attributes),
            ``"synthetic"`` (:func:`graphrec.datasets.synthetic_ctr` with ``seed``; no root) or
            a folder with FuxiCTR Taobao ``train_sample.csv`` / ``test_sample.csv`` (the
            validation set is a seeded ``valid_fraction`` of the training rows).
        root: the data root of a named dataset (laid out like ``shared/data``) or the dataset's
            own folder; default ``$GRAPHREC_DATA`` (:func:`graphrec.datasets.dataset_folder`).
        seed: seed of the synthetic data and of the Taobao validation holdout.

    Raises:
        GraphrecError: a named dataset without ``root`` or ``$GRAPHREC_DATA``, or an unknown
            name that is not a folder.
        DatasetNotFoundError: files missing under ``root`` or the folder.
    """
    name = str(dataset)
    if name == "synthetic":
        from graphrec.datasets.synthetic_ctr import SYNTHETIC_TREES, synthetic_ctr

        syn = synthetic_ctr(seed=seed)
        split = CTRSplit(syn.train, syn.valid, syn.test)
        trees = [tree_from_table(_tables(split), list(levels)) for levels in SYNTHETIC_TREES]
        return CTRDataset(name, split, CTRFeatures.from_table(split.train),
                          {"item": trees, "user": []}, "item", "user", "history")  # fmt: skip
    if name in ("ml-100k", "amazon-users"):
        from graphrec.datasets import dataset_folder

        root = dataset_folder(name, root)
        if name == "ml-100k":
            from graphrec.datasets import load_movielens100k

            split = movielens_ctr(load_movielens100k(root))
            trees = movielens_ctr_trees(_tables(split))
        else:
            from graphrec.datasets import load_amazon_electronics_users

            split, trees = amazon_ctr(load_amazon_electronics_users(root)), None
        return CTRDataset(name, split, CTRFeatures.from_table(split.train), trees,
                          "item", "user", "history")  # fmt: skip
    path = Path(name).expanduser()
    if not path.is_dir():
        raise GraphrecError(
            f"--dataset {name!r} is neither one of {', '.join(CTR_DATASETS)} nor a folder "
            "(a folder must hold FuxiCTR Taobao train_sample.csv and test_sample.csv)"
        )
    from graphrec.datasets import load_taobao_tiny

    taobao = load_taobao_tiny(path)
    # a stratified holdout: the validation set gets clicks and non-clicks (when there are two
    # of each), so its AUC is defined even on the 100-row sample with 4 clicks
    rng = np.random.default_rng(seed)
    valid_rows = []
    for cls in (0, 1):
        rows = rng.permutation(np.flatnonzero(taobao.train.labels == cls))
        valid_rows.append(rows[: max(int(len(rows) >= 2), int(round(valid_fraction * len(rows))))])
    valid = np.sort(np.concatenate(valid_rows))
    rest = np.setdiff1d(np.arange(taobao.train.num_rows), valid)
    if len(valid) == 0 or len(rest) == 0:
        raise GraphrecError(f"{path}: too few training rows for a validation set")
    split = CTRSplit(
        taobao.train.take(rest),
        taobao.train.take(valid),
        taobao.test,
    )
    return CTRDataset(str(path), split, CTRFeatures.from_table(split.train),
                      taobao_ctr_trees(_tables(split)), "adgroup_id", "userid",
                      "click_sequence")  # fmt: skip


def build_ctr_model(
    model: str,
    data: CTRDataset,
    *,
    hien: bool = False,
    embedding_dim: int | None = None,
    aggregator: str = HIEN_DEFAULTS.aggregator,
    max_clickers: int = HIEN_DEFAULTS.max_clickers,
    plug: str = HIEN_DEFAULTS.plug,
    seed: int = 0,
) -> torch.nn.Module:
    """A model of :data:`graphrec.registry.CTR_MODELS` (``lr``, ``widedeep``, ``deepfm``,
    ``dcn``, ``din``) on ``data``'s features, optionally as the base of
    :class:`~graphrec.models.hien.HIEN`.

    Every hyper-parameter is the model's default (its registered config) but
    ``embedding_dim`` when given (LR's is fixed at 1, and at
    ``HIEN_DEFAULTS.lr_embedding_dim`` under HIEN, whose attention needs room). The weights are
    initialised after ``torch.manual_seed(seed)``. With ``hien``, HIEN uses the dataset's item
    and user trees, an item intent over at most ``max_clickers`` users who clicked the item in
    training, and ``plug`` (:class:`~graphrec.models.hien.HIEN`).

    Raises:
        ConfigError: an unknown model name.
        GraphrecError: ``hien`` on a dataset without attributes.
    """
    from graphrec.models.hien import HIEN, item_clickers

    if model == "lr":
        embedding_dim = HIEN_DEFAULTS.lr_embedding_dim if hien else None
    sizes = {} if embedding_dim is None else {"embedding_dim": embedding_dim}
    options = CTR_MODELS.options(model, **sizes)  # the registered config, checked
    cls = CTR_MODELS.get(model)
    if hien and data.trees is None:
        raise GraphrecError(
            f"dataset {data.name!r} has no item attributes: HIEN needs attribute trees "
            "(use ml-100k, synthetic or a Taobao folder)"
        )
    torch.manual_seed(seed)
    if not hien:
        return cls(data.features, **options)
    clickers = item_clickers(data.split.train, item=data.item, user=data.user,
                             max_clickers=max_clickers, seed=seed)  # fmt: skip
    base = cls(data.features, extra_fields=HIEN.num_extra_fields(True, plug), **options)
    return HIEN(base, data.trees, item=data.item, user=data.user, history=data.history,
                aggregator=aggregator, clickers=clickers, plug=plug)  # fmt: skip
