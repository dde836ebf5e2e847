"""Attribute trees: items (or users) as leaves, their attributes as parents, level by level.

An attribute tree links the nodes of consecutive *levels* by "belongs to" edges, child ->
parent, e.g. ``adgroup_id -> campaign_id -> customer`` (every ad group in one campaign, every
campaign of one customer), ``movie -> release year -> decade`` or ``movie -> genre`` (a movie
may have several genres: a level may have several parents per child). HIEN
(:class:`graphrec.models.hien.HIEN`) aggregates embeddings bottom-up along these edges.

Node ids are the codes of a :class:`graphrec.io.CTRTable` vocabulary (code 0 = missing / out of
vocabulary, a node without edges), so the nodes of level ``l`` are exactly the rows of that
column's embedding table. Levels derived from another level's values (decade from year, zip
region from zip prefix) get their own codes and no table (``tables[l] is None``).

As a PyG graph, level ``l`` holds the global node ids ``ptr[l] .. ptr[l+1]-1`` and
``edge_index`` lists every edge child -> parent in global ids (see :meth:`AttributeTree.to_data`).

Example:
    >>> import numpy as np
    >>> tree = build_attribute_tree(
    ...     "campaign", ["item", "campaign", "customer"], [4, 3, 2],
    ...     [(np.array([1, 2, 3]), np.array([1, 1, 2])), (np.array([1, 2]), np.array([1, 1]))])
    >>> tree.ptr.tolist(), tree.edge_index.tolist()
    ([0, 4, 7, 9], [[1, 2, 3, 5, 6], [5, 5, 6, 8, 8]])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor
from torch_geometric.data import Data

from graphrec.errors import ConfigError
from graphrec.io import CTRTable

__all__ = [
    "AttributeTree",
    "build_attribute_tree",
    "movielens_ctr_trees",
    "taobao_ctr_trees",
    "tree_from_table",
    "TAOBAO_USER_COLUMNS",
    "ZIP_REGIONS",
]

#: First zip digit -> region (design choice: the ten US national zip areas in three groups).
ZIP_REGIONS = {
    **{d: "east" for d in "0123"},
    **{d: "central" for d in "4567"},
    **{d: "west" for d in "89"},
}


@dataclass(repr=False)
class AttributeTree:
    """A levelled tree (or forest) of "belongs to" edges, leaves first.

    Attributes:
        name: the tree's name (e.g. ``"campaign"``).
        levels: node type per level, leaves first (e.g. ``("item", "campaign", "customer")``).
        tables: embedding table (vocabulary owner) of each level; None for a level without one
            (derived levels such as a decade).
        ptr: ``int64 [L+1]``: level ``l`` holds global nodes ``ptr[l] .. ptr[l+1]-1``; the local
            id of a node (its vocabulary code) is its global id minus ``ptr[l]``.
        edge_index: ``int64 [2, E]`` child -> parent in global ids; every edge goes from level
            ``l`` to level ``l+1``, sorted by level, then child, then parent, without repeats.
    """

    name: str
    levels: tuple[str, ...]
    tables: tuple[str | None, ...]
    ptr: Tensor
    edge_index: Tensor

    @property
    def num_levels(self) -> int:
        return len(self.levels)

    @property
    def num_nodes(self) -> int:
        return int(self.ptr[-1])

    @property
    def sizes(self) -> list[int]:
        """Number of nodes per level."""
        return (self.ptr[1:] - self.ptr[:-1]).tolist()

    def level_of(self) -> Tensor:
        """``int64 [num_nodes]``: the level of every node."""
        return torch.repeat_interleave(torch.arange(self.num_levels), self.ptr.diff())

    def level_edges(self, level: int) -> Tensor:
        """Edges from level ``level`` to ``level + 1`` in *local* ids: ``int64 [2, E_l]``."""
        if not 0 <= level < self.num_levels - 1:
            raise IndexError(f"level must be in 0..{self.num_levels - 2}; got {level}")
        child, parent = self.edge_index
        keep = (child >= self.ptr[level]) & (child < self.ptr[level + 1])
        return torch.stack([child[keep] - self.ptr[level], parent[keep] - self.ptr[level + 1]])

    def ancestors(self, level: int) -> Tensor:
        """Leaf -> ancestor pairs at ``level`` (local ids) with weights: ``[3, P]`` float rows
        ``(leaf, ancestor, weight)``; a leaf's weights sum to 1 (uniform over its paths).

        The weighted sum of the ancestors' embeddings is the leaf's view of that attribute
        type (e.g. the mean of a movie's genres).
        """
        if not 1 <= level < self.num_levels:
            raise IndexError(f"level must be in 1..{self.num_levels - 1}; got {level}")
        sizes = self.sizes
        paths = sp.identity(sizes[0], dtype=np.float64, format="csr")
        for step in range(level):
            child, parent = self.level_edges(step).numpy()
            step_matrix = sp.csr_array(
                (np.ones(len(child)), (child, parent)), shape=(sizes[step], sizes[step + 1])
            )
            paths = paths @ step_matrix
        paths = sp.coo_array(paths)
        leaf, anc, count = paths.row, paths.col, paths.data
        per_leaf = np.bincount(leaf, weights=count, minlength=sizes[0])
        weight = count / per_leaf[leaf]
        order = np.lexsort((anc, leaf))
        return torch.from_numpy(
            np.stack([leaf[order], anc[order], weight[order]]).astype(np.float64)
        )

    def to_data(self) -> Data:
        """The tree as a PyG ``Data(edge_index, num_nodes, level)`` (global ids)."""
        return Data(edge_index=self.edge_index, num_nodes=self.num_nodes, level=self.level_of())

    def __repr__(self) -> str:
        chain = " -> ".join(f"{lv}[{n}]" for lv, n in zip(self.levels, self.sizes))
        return f"AttributeTree({self.name!r}: {chain}, edges={self.edge_index.shape[1]})"


def build_attribute_tree(
    name: str,
    levels: Sequence[str],
    sizes: Sequence[int],
    links: Sequence[tuple[np.ndarray, np.ndarray]],
    tables: Sequence[str | None] | None = None,
) -> AttributeTree:
    """An :class:`AttributeTree` from child -> parent links given in local ids per level.

    Args:
        name: the tree's name.
        levels: node type per level, leaves first (at least two levels).
        sizes: number of nodes per level (ids ``0 .. size-1``).
        links: for every level ``l < L-1``, ``(child, parent)`` arrays of equal length: child
            ``child[i]`` of level ``l`` belongs to parent ``parent[i]`` of level ``l+1``.
            Repeated pairs are merged.
        tables: embedding table per level (default: the level names).

    Raises:
        ValueError: mismatched lengths or ids outside their level.
    """
    levels = tuple(levels)
    if len(levels) < 2:
        raise ConfigError(f"a tree needs at least two levels; got {levels}")
    if len(sizes) != len(levels) or len(links) != len(levels) - 1:
        raise ConfigError(
            f"{len(levels)} levels need {len(levels)} sizes and {len(levels) - 1} links; "
            f"got {len(sizes)} and {len(links)}"
        )
    tables = levels if tables is None else tuple(tables)
    if len(tables) != len(levels):
        raise ConfigError(f"tables needs one entry per level; got {tables}")
    ptr = np.concatenate([[0], np.cumsum(np.asarray(sizes, dtype=np.int64))])
    edges = []
    for lvl, (child, parent) in enumerate(links):
        child = np.asarray(child, dtype=np.int64).ravel()
        parent = np.asarray(parent, dtype=np.int64).ravel()
        if child.shape != parent.shape:
            raise ConfigError(f"link {lvl}: child and parent arrays differ in length")
        for ids, size, what in (
            (child, sizes[lvl], levels[lvl]),
            (parent, sizes[lvl + 1], levels[lvl + 1]),
        ):
            if ids.size and (ids.min() < 0 or ids.max() >= size):
                raise ConfigError(f"link {lvl}: {what} ids must be in 0..{size - 1}")
        key = np.unique(child * sizes[lvl + 1] + parent)
        edges.append(
            np.stack([key // sizes[lvl + 1] + ptr[lvl], key % sizes[lvl + 1] + ptr[lvl + 1]])
        )
    edge_index = torch.from_numpy(np.concatenate(edges, axis=1).astype(np.int64))
    return AttributeTree(name, levels, tables, torch.from_numpy(ptr), edge_index)


def _column(table: CTRTable, name: str) -> np.ndarray:
    if name in table.categorical:
        return np.asarray(table.categorical[name])[:, None]
    if name in table.sequence:
        return np.asarray(table.sequence[name])
    raise ConfigError(f"table {table.path!r} has no categorical or sequence column {name!r}")


def tree_from_table(
    tables: CTRTable | Sequence[CTRTable],
    levels: Sequence[str],
    *,
    name: str | None = None,
    derived: Sequence[tuple[str, Callable[[str], str]]] = (),
) -> AttributeTree:
    """An attribute tree over the columns ``levels`` of CTR tables (leaves first).

    Every row links the codes of consecutive columns (codes 0 are skipped); a sequence column
    (a multi-valued attribute such as genres) links the child to each of its elements. Node
    ids are the vocabulary codes, so level ``l`` has ``vocab_size(levels[l])`` nodes and the
    table of its vocabulary owner. Attributes are not labels: the tables of every split may be
    passed (encoded with one vocabulary); a leaf never seen in them has no parent.

    Args:
        tables: one table or several encoded with the same vocabulary.
        levels: column names, leaves first.
        name: the tree's name (default: ``levels[1]``).
        derived: extra top levels ``(name, fn)``: ``fn`` maps a value (vocabulary string) of
            the current top level to the value of the new level; each new value gets a code
            ``>= 1`` in sorted order (code 0 stays the missing bucket).
    """
    tables = [tables] if isinstance(tables, CTRTable) else list(tables)
    if not tables:
        raise ConfigError("need at least one table")
    first = tables[0]
    levels = list(levels)
    owner = first.schema.vocab_owner
    sizes = [first.vocab_size(c) for c in levels]
    links = []
    for lower, upper in zip(levels[:-1], levels[1:]):
        child, parent = [], []
        for t in tables:
            lo, up = _column(t, lower), _column(t, upper)
            if lo.shape[1] != 1 and up.shape[1] != 1:
                raise ConfigError(f"{lower!r} and {upper!r} cannot both be sequences")
            lo, up = np.broadcast_arrays(lo, up)
            keep = (lo != 0) & (up != 0)
            child.append(lo[keep])
            parent.append(up[keep])
        links.append((np.concatenate(child), np.concatenate(parent)))
    names = [owner(c) for c in levels]
    vocab = first.vocab[owner(levels[-1])]
    for new_name, fn in derived:
        values = {code: fn(value) for value, code in vocab.items()}
        new_vocab = {v: i for i, v in enumerate(sorted(set(values.values())), start=1)}
        codes = np.array(sorted(values), dtype=np.int64)
        links.append((codes, np.array([new_vocab[values[c]] for c in codes], dtype=np.int64)))
        levels.append(new_name)
        names.append(None)
        sizes.append(len(new_vocab) + 1)
        vocab = new_vocab
    return build_attribute_tree(name or levels[1], levels, sizes, links, names)


def _decade(year: str) -> str:
    return f"{int(year) // 10 * 10}s" if year.lstrip("-").isdigit() and int(year) > 0 else "?"


def movielens_ctr_trees(
    tables: CTRTable | Sequence[CTRTable],
) -> dict[str, list[AttributeTree]]:
    """Item and user trees of :func:`graphrec.models.ctr.movielens_ctr` tables.

    Items: ``item -> year -> decade`` and ``item -> genres`` (multi-parent). Users:
    ``user -> age`` (age group), ``user -> gender``, ``user -> occupation`` and
    ``user -> zip -> zip_region`` (first zip digit, then :data:`ZIP_REGIONS`).

    Returns:
        ``{"item": [...], "user": [...]}``.
    """
    items = [
        tree_from_table(tables, ["item", "year"], derived=[("decade", _decade)]),
        tree_from_table(tables, ["item", "genres"]),
    ]
    users = [tree_from_table(tables, ["user", c]) for c in ("age", "gender", "occupation")]
    users.append(
        tree_from_table(
            tables, ["user", "zip"], derived=[("zip_region", lambda z: ZIP_REGIONS.get(z, "?"))]
        )
    )
    return {"item": items, "user": users}


#: User-profile columns of the Taobao tables (:data:`graphrec.datasets.TAOBAO_SCHEMA`).
TAOBAO_USER_COLUMNS = (
    "cms_segid", "cms_group_id", "final_gender_code", "age_level", "pvalue_level",
    "shopping_level", "occupation", "new_user_class_level",
)  # fmt: skip


def taobao_ctr_trees(
    tables: CTRTable | Sequence[CTRTable],
) -> dict[str, list[AttributeTree]]:
    """Item and user trees of the Taobao Ali-Display-Ad tables (e.g. the tiny sample).

    Items: ``adgroup_id -> campaign_id -> customer``, ``adgroup_id -> cate_id`` and
    ``adgroup_id -> brand``. Users: ``userid -> f`` for every profile field ``f``.

    Returns:
        ``{"item": [...], "user": [...]}``.
    """
    items = [
        tree_from_table(tables, ["adgroup_id", "campaign_id", "customer"], name="campaign"),
        tree_from_table(tables, ["adgroup_id", "cate_id"], name="cate"),
        tree_from_table(tables, ["adgroup_id", "brand"], name="brand"),
    ]
    users = [tree_from_table(tables, ["userid", c]) for c in TAOBAO_USER_COLUMNS]
    return {"item": items, "user": users}
