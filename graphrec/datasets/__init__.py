"""Named datasets read from a folder the user provides, and synthetic graph generators.

graphrec never downloads anything: each loader takes the ``root`` folder holding the
dataset's files (plain or ``.gz``) and raises :class:`graphrec.errors.DatasetNotFoundError`
listing every missing file. Only SNAP ego-Facebook is embedded (:func:`ego_facebook`).

=====================================  ==========================================================
:func:`load_movielens100k`             MovieLens 100K ratings, genres, years, users, folds 1-5
:func:`load_gowalla`                   Gowalla, LightGCN train/test split (csr matrices)
:func:`load_amazon_electronics_users`  Amazon Electronics per-user click samples with history
:func:`load_taobao_tiny`               FuxiCTR tiny Taobao CTR table with click sequences
:func:`fastcover_graph`                FastCover benchmark graphs (:func:`list_fastcover_graphs`)
:func:`snap_graph`                     any SNAP edge list by name
:func:`ego_facebook`                   embedded SNAP ego-Facebook (4,039 nodes, 88,234 edges)
:func:`powerlaw_digraph`               synthetic Chung-Lu directed graph, power-law degrees
:func:`erdos_renyi_digraph`            synthetic directed G(n, p)
:func:`synthetic_ctr`                  synthetic CTR tables, planted attribute hierarchy and tastes
:func:`dataset_folder`                 a named dataset's folder (``--data-root`` or $GRAPHREC_DATA)
=====================================  ==========================================================

Example:
    >>> from graphrec.datasets import load_movielens100k
    >>> ml = load_movielens100k("data/ml-100k", fold=1)  # doctest: +SKIP
    >>> ml.train.num_interactions, ml.test.num_interactions
    (80000, 20000)
"""

from graphrec.datasets._files import DATA_ENV, DATASET_FOLDERS, dataset_folder
from graphrec.datasets.amazon import AmazonElectronicsUsers, load_amazon_electronics_users
from graphrec.datasets.gowalla import Gowalla, load_gowalla
from graphrec.datasets.graphs import (
    ego_facebook,
    fastcover_graph,
    list_fastcover_graphs,
    snap_graph,
)
from graphrec.datasets.movielens import MOVIELENS_GENRES, MovieLens100K, load_movielens100k
from graphrec.datasets.synthetic import erdos_renyi_digraph, powerlaw_digraph
from graphrec.datasets.synthetic_ctr import (
    SYNTHETIC_CTR_SCHEMA,
    SYNTHETIC_TREES,
    SyntheticCTR,
    synthetic_ctr,
)
from graphrec.datasets.taobao import TAOBAO_SCHEMA, TaobaoTiny, load_taobao_tiny

__all__ = [
    "DATA_ENV",
    "DATASET_FOLDERS",
    "AmazonElectronicsUsers",
    "Gowalla",
    "MOVIELENS_GENRES",
    "MovieLens100K",
    "SYNTHETIC_CTR_SCHEMA",
    "SYNTHETIC_TREES",
    "SyntheticCTR",
    "TAOBAO_SCHEMA",
    "TaobaoTiny",
    "dataset_folder",
    "ego_facebook",
    "erdos_renyi_digraph",
    "fastcover_graph",
    "list_fastcover_graphs",
    "load_amazon_electronics_users",
    "load_gowalla",
    "load_movielens100k",
    "load_taobao_tiny",
    "powerlaw_digraph",
    "snap_graph",
    "synthetic_ctr",
]
