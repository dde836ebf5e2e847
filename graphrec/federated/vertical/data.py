"""The datasets of vertical FL, split into parties: bundled, local and synthetic.

:func:`load_vertical` gives every party's (dense) feature table over the same rows, the labels,
and a seeded train/test split; each party fills its missing values with its train-row column
means and standardizes its own dense columns on the train rows, so a party can prepare its
block without the others. :func:`build_split_model` builds the split model every node builds
from the same seed (a party keeps its bottom, the label owner the top). Nothing is downloaded:
breast-cancer is scikit-learn's bundled copy, uci-heart and ml-100k are read from a data root.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from graphrec.errors import ConfigError, MissingExtraError
from graphrec.federated.vertical.bottoms import EmbeddingBottom
from graphrec.federated.vertical.split import SplitNN
from graphrec.graphs.party import PartyGraph
from graphrec.models.ctr.features import CTRFeatures, FeatureSpec

__all__ = [
    "VFL_DATASETS",
    "VerticalDataset",
    "build_split_model",
    "epoch_batches",
    "load_ml100k_parties",
    "load_vertical",
    "load_vfl_dataset",
]

#: Dataset names of :func:`load_vertical`.
VFL_DATASETS = ("breast-cancer", "synthetic", "uci-heart", "ml-100k")


def load_vfl_dataset(
    name: str, parties: int, seed: int, data_root: str | Path | None = None
) -> tuple[Tensor, Tensor, list[np.ndarray]]:
    """Features ``[N, F]`` (float32, ``nan`` = missing), 0/1 labels ``[N]`` and the column
    blocks of ``parties`` parties (``F >= parties``); ``data_root`` locates uci-heart."""
    if name == "breast-cancer":
        try:
            from sklearn.datasets import load_breast_cancer
        except ImportError as exc:
            raise MissingExtraError("the breast-cancer dataset (scikit-learn)", "vfl") from exc
        x, y = load_breast_cancer(return_X_y=True)
    elif name == "uci-heart":
        from graphrec.datasets._files import dataset_folder
        from graphrec.federated.data import load_uci_heart_per_centre

        heart = load_uci_heart_per_centre(dataset_folder(name, data_root))
        x, y = heart.x, (heart.y > 0).astype(np.int64)
    else:
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((2000, 4 * parties))
        z = sum(x[:, 4 * p] * x[:, 4 * ((p + 1) % parties) + 1] for p in range(parties))
        y = (z + 0.1 * rng.standard_normal(2000) > 0).astype(np.int64)
    if x.shape[1] < parties:
        raise ConfigError(f"--parties must be at most {x.shape[1]} for {name}; got {parties}")
    blocks = np.array_split(np.arange(x.shape[1]), parties)
    return torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y).float(), blocks


def load_ml100k_parties(
    data_root: str | Path | None,
) -> tuple[dict[str, Tensor], Tensor, dict[str, list[FeatureSpec]]]:
    """MovieLens-100K as vertical CTR, one row per rating: the ``user`` and ``item`` parties'
    float tables (id columns hold codes ``index + 1``; 0 is the out-of-vocabulary code), the
    0/1 labels (rating >= 4) and each party's column specs. The one item without a release
    year gets the median year."""
    from graphrec.datasets import load_movielens100k
    from graphrec.datasets._files import dataset_folder

    ml = load_movielens100k(dataset_folder("ml-100k", data_root))
    u, i = ml.ratings.user, ml.ratings.item
    year = ml.release_year.astype(np.float64)
    year[year < 0] = np.median(year[year >= 0])
    genres = [f"genre_{g}" for g in range(ml.item_genres.shape[1])]
    tables = {
        "user": np.column_stack(
            [u + 1, ml.user_gender[u] + 1, ml.user_occupation[u] + 1, ml.user_age[u]]
        ),
        "item": np.column_stack([i + 1, year[i], ml.item_genres[i]]),
    }
    specs = {
        "user": [
            FeatureSpec("user_id", "sparse", "user_id", ml.num_users + 1),
            FeatureSpec("gender", "sparse", "gender", 3),
            FeatureSpec("occupation", "sparse", "occupation", len(ml.occupations) + 1),
            FeatureSpec("age", "dense"),
        ],
        "item": [
            FeatureSpec("item_id", "sparse", "item_id", ml.num_items + 1),
            FeatureSpec("year", "dense"),
            *(FeatureSpec(g, "dense") for g in genres),
        ],
    }
    features = {p: torch.as_tensor(t, dtype=torch.float32) for p, t in tables.items()}
    return features, torch.as_tensor(ml.ratings.rating >= 4).float(), specs


@dataclass(frozen=True)
class VerticalDataset:
    """Every party's table over the same rows, the labels and the train/test split.

    Attributes:
        features: party -> float ``[N, F_m]`` (standardized dense columns; id columns as codes).
        labels: ``[N]``, 0/1.
        train_rows, test_rows: sorted row indices (80/20, seeded).
        label_owner: the node holding the labels (``p0``, or ``platform`` for ml-100k).
        specs: party -> column specs for parties with id columns (ml-100k), else empty.
    """

    features: dict[str, Tensor]
    labels: Tensor
    train_rows: Tensor
    test_rows: Tensor
    label_owner: str
    specs: dict[str, list[FeatureSpec]]


def load_vertical(
    name: str, parties: int, seed: int, data_root: str | Path | None = None
) -> VerticalDataset:
    """Dataset ``name`` (one of :data:`VFL_DATASETS`) split over ``parties`` parties, rows split
    80/20 into train/test with ``seed``."""
    if name not in VFL_DATASETS:
        raise ConfigError(f"dataset must be one of {list(VFL_DATASETS)}; got {name!r}")
    specs: dict[str, list[FeatureSpec]] = {}
    if name == "ml-100k":
        if parties != 2:
            raise ConfigError(f"--parties must be 2 for ml-100k (user, item); got {parties}")
        features, y, specs = load_ml100k_parties(data_root)
        owner = "platform"
    else:
        x, y, blocks = load_vfl_dataset(name, parties, seed, data_root)
        owner = "p0"
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(y), generator=gen)
    cut = int(0.8 * len(y))
    train_rows, test_rows = order[:cut].sort().values, order[cut:].sort().values
    if name != "ml-100k":
        features = {}
        for i, cols in enumerate(blocks):
            block = x[:, torch.as_tensor(cols)]
            block = torch.where(block.isnan(), block[train_rows].nanmean(0), block)
            mean, std = block[train_rows].mean(0), block[train_rows].std(0).clamp_min(1e-8)
            features[f"p{i}"] = (block - mean) / std
    return VerticalDataset(features, y, train_rows, test_rows, owner, specs)


def build_split_model(
    data: VerticalDataset,
    seed: int,
    *,
    bottom_hidden: Sequence[int] = (16,),
    top_hidden: Sequence[int] = (16,),
    embedding_dim: int = 8,
) -> SplitNN:
    """The split model of ``data``, initialised from ``seed``: an MLP bottom per party (an
    :class:`~graphrec.federated.vertical.bottoms.EmbeddingBottom` for parties with id columns,
    dense statistics from the train rows), concatenated embeddings, an MLP top."""
    names = list(data.features)
    graph = PartyGraph(
        {n: data.features[n].shape[1] for n in names}, embedding_dim, data.label_owner
    )
    torch.manual_seed(seed)
    bottoms = {}
    for name, specs in data.specs.items():
        dense = [c for c, spec in enumerate(specs) if spec.kind == "dense"]
        values = data.features[name][data.train_rows][:, dense]
        std = values.std(0).clamp_min(1e-8)
        stats = CTRFeatures(specs, values.mean(0).tolist(), std.tolist())
        bottoms[name] = EmbeddingBottom(stats, embedding_dim, bottom_hidden, embedding_dim)
    return SplitNN(graph, bottoms, hidden_channels=bottom_hidden, top_hidden_channels=top_hidden)


def epoch_batches(train_rows: Tensor, batch_size: int, seed: int, epoch: int) -> list[Tensor]:
    """The batches of epoch ``epoch``: the train rows shuffled with ``(seed, epoch)``, in
    slices of ``batch_size`` (the last one shorter). Every party derives them from the announced
    ``(seed, epoch)``, so batch positions never travel in training."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = train_rows[torch.randperm(len(train_rows), generator=gen)]
    return list(perm.split(batch_size))
