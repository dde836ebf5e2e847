"""HIEN: attribute-tree aggregation and hierarchical intents as the input module of a CTR model.

Example:
    >>> from graphrec.graphs.attribute_tree import movielens_ctr_trees
    >>> from graphrec.models.ctr import DIN, CTRFeatures, movielens_ctr
    >>> split = movielens_ctr(ml)  # doctest: +SKIP
    >>> features = CTRFeatures.from_table(split.train)  # doctest: +SKIP
    >>> trees = movielens_ctr_trees([split.train, split.valid, split.test])  # doctest: +SKIP
    >>> clickers = item_clickers(split.train, item="item", user="user")  # doctest: +SKIP
    >>> model = HIEN(DIN(features, extra_fields=2), trees, item="item", user="user",
    ...              history="history", clickers=clickers)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import Tensor

from graphrec.errors import ConfigError
from graphrec.graphs.attribute_tree import AttributeTree
from graphrec.io import CTRTable
from graphrec.models.ctr.base import CTRModel
from graphrec.models.ctr.defaults import HIEN_DEFAULTS
from graphrec.models.ctr.features import CTRFeatures, DerivedFeatures, EmbeddedFeatures
from graphrec.nn.hier_attention import HierarchicalIntentAttention
from graphrec.nn.tree_aggregation import TREE_AGGREGATORS, TreeAggregation

__all__ = ["HIEN", "PLUGS", "item_clickers"]

#: How HIEN hands its intents to the base model (see :class:`HIEN`).
PLUGS = ("append", "add")

#: The user intent reads a type as a bag over its refined rows (dense products) while they
#: are at most this many times a sample's keys, else key by key.
_BAG_ROWS_PER_KEY = 4

#: A batch's refinement finds the nodes it reads by marking a mask over the level while the
#: level has at most this many nodes per code read (else by sorting the codes).
_MARK_NODES_PER_CODE = 4

#: Rows per chunk when :meth:`HIEN.user_bags` counts a whole table (bounded memory).
_BAG_CHUNK = 4096

#: Floor of a value's count when its weight is spread back over its keys (an empty count is
#: never divided by: its keys get weight 0).
_MIN_COUNT = 1e-20


def item_clickers(
    table: CTRTable,
    *,
    item: str,
    user: str,
    max_clickers: int = HIEN_DEFAULTS.max_clickers,
    seed: int = 0,
) -> Tensor:
    """Users who clicked each item in ``table`` (pass the **training** table: no leakage).

    Returns:
        ``int64 [vocab_size(item), max_clickers]``: row ``v`` lists up to ``max_clickers``
        distinct users (codes) with a positive row for item ``v`` (a seeded random sample when
        there are more), 0-padded on the right. Code-0 items and users are ignored.
    """
    if max_clickers < 1:
        raise ConfigError(f"max_clickers must be >= 1; got {max_clickers}")
    rng = np.random.default_rng(seed)
    items = np.asarray(table.categorical[item])
    users = np.asarray(table.categorical[user])
    keep = (table.labels > 0) & (items != 0) & (users != 0)
    pairs = np.unique(np.stack([items[keep], users[keep]]), axis=1)
    pairs = pairs[:, rng.permutation(pairs.shape[1])]
    pairs = pairs[:, np.argsort(pairs[0], kind="stable")]
    out = np.zeros((table.vocab_size(item), max_clickers), dtype=np.int64)
    starts = np.searchsorted(pairs[0], pairs[0], side="left")
    rank = np.arange(pairs.shape[1]) - starts
    fits = rank < max_clickers
    out[pairs[0][fits], rank[fits]] = pairs[1][fits]
    return torch.from_numpy(out)


def _key(name: str) -> str:
    return name.replace(".", "_").replace("/", "__")


def _gather(weight: Tensor, codes: Tensor) -> Tensor:
    """``weight[codes]``, ``[*codes.shape, d]`` (``index_select``: a cheap backward on CPU)."""
    return weight.index_select(0, codes.reshape(-1)).view(*codes.shape, weight.shape[1])


def _locate_sorted(codes: Tensor, *, nodes: Tensor) -> Tensor:
    """Positions of ``codes`` among the sorted ``nodes`` (binary search)."""
    return torch.searchsorted(nodes, codes)


def _locate_mapped(codes: Tensor, *, position: Tensor) -> Tensor:
    """Positions of ``codes`` through a table ``position [N]`` (code -> row)."""
    return position.index_select(0, codes.reshape(-1)).view(codes.shape)


def _gather_located(codes: Tensor, *, locate: Any, rows: Tensor) -> Tensor:
    """The refined rows ``rows`` of ``codes``, found by ``locate`` (None: code = row)."""
    return _gather(rows, codes if locate is None else locate(codes))


def _top_values(
    values: Tensor, weights: Tensor, cap: int, num_values: int, slots: bool = False
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Per row of ``values [B, E]`` (ids below ``num_values``), the ``cap`` distinct values
    with the largest summed ``weights [B, E]`` (ties: any; ``cap <= min(E, num_values)``).
    Counted densely (``[B, num_values]``) when ``num_values <= E``, else by one sort of the
    rows' keys: ``O(B * E)`` memory either way.

    Returns:
        ``(top [B, cap], counts [B, cap], slot)``: the values, their summed weights (0 for a
        column left empty), and with ``slots`` each key's column in ``top`` ``[B, E]`` (-1:
        dropped), else None.
    """
    B, E = values.shape
    if num_values <= E:
        run, run_values, order, n_runs = values, None, None, num_values
    else:  # one flat (stable: radix) sort of (row, value) keys: rows stay contiguous
        start = torch.arange(B, device=values.device).unsqueeze(1) * num_values
        order = (values + start).view(-1).sort(stable=True)[1]  # flat positions
        v = values.reshape(-1).index_select(0, order).view(B, E)
        first = torch.ones_like(v, dtype=torch.bool)
        first[:, 1:] = v[:, 1:] != v[:, :-1]
        run = first.long().cumsum(1) - 1  # each sorted key's distinct value (run) in its row
        run_values, n_runs = torch.zeros_like(v).scatter_(1, run, v), E
        weights = weights.reshape(-1).index_select(0, order).view(B, E)
    counts = weights.new_zeros(B, n_runs).scatter_add_(1, run, weights)
    counts, top_run = counts.topk(cap, dim=1)
    top = top_run if run_values is None else run_values.gather(1, top_run)
    if not slots:
        return top, counts, None
    col = run.new_full((B, n_runs), -1)
    col.scatter_(1, top_run, torch.arange(cap, device=run.device).expand_as(top_run))
    slot = col.gather(1, run)
    if order is not None:  # back to the keys' own order
        slot = torch.empty_like(slot).view(-1).scatter_(0, order, slot.view(-1)).view(B, E)
    return top, counts, slot


def _uncap(alpha: Tensor, slot: Tensor, counts: Tensor, weights: Tensor) -> Tensor:
    """Weights ``alpha [B, cap]`` of :func:`_top_values`' columns spread over the original keys
    ``[B, E]`` in proportion to their ``weights`` (0 for a dropped key)."""
    at = slot.clamp(min=0)
    count = counts.gather(1, at)
    share = torch.where(count > 0, weights / count.clamp(min=_MIN_COUNT), 0.0)
    return alpha.gather(1, at) * share * (slot >= 0)


def _with_fields(fields: Tensor, new: dict[int, Tensor]) -> Tensor:
    """``fields [B, F, d]`` with field ``f`` replaced by ``new[f] [B, d]`` (stacked: no scatter
    in an exported graph)."""
    return torch.stack([new.get(f, x) for f, x in enumerate(fields.unbind(1))], dim=1)


def _no_nodes(level: _TreeLevel) -> Tensor:
    """No node of ``level`` needed: an empty index."""
    return level.ptr.new_zeros(0)


class _TreeLevel(torch.nn.Module):
    """One non-leaf level of an attribute tree: its table and the edges from the level below.

    Attributes:
        table: the base table it refines, or the key of HIEN's own table (``own``).
        own: whether the level has HIEN's own table (no base table, e.g. a decade).

    Buffers:
        ``edge_index [2, E]``: child -> parent, into the level below and this level (saved);
        ``deg [N, 1]``: children per node (derived, not saved); ``frozen [N, d]``: the refined
        table while HIEN's tables are frozen (:meth:`HIEN.freeze_tables`), else None (not saved).
    """

    def __init__(self, edge_index: Tensor, num_nodes: int, table: str, own: bool) -> None:
        super().__init__()
        self.table, self.own = table, own
        self.register_buffer("edge_index", edge_index)
        deg = TreeAggregation.degree(edge_index, num_nodes)
        self.register_buffer("deg", deg, persistent=False)
        self.register_buffer("frozen", None, persistent=False)
        # children grouped by parent (CSR): a batch refines only the parents it needs
        order = torch.argsort(edge_index[1], stable=True)
        self.register_buffer("child_ids", edge_index[0][order], persistent=False)
        ptr = torch.cat([deg.new_zeros(1), deg[:, 0].cumsum(0)]).long()
        self.register_buffer("ptr", ptr, persistent=False)

    def children_of(self, parents: Tensor) -> tuple[Tensor, Tensor]:
        """``(children, slot)``: every child of ``parents`` and the position of its parent in
        ``parents``, ``O(sum of their degrees)``."""
        start, count = self.ptr[parents], self.ptr[parents + 1] - self.ptr[parents]
        slot = torch.repeat_interleave(torch.arange(len(parents), device=parents.device), count)
        first = torch.repeat_interleave(start - (count.cumsum(0) - count), count)
        return self.child_ids[first + torch.arange(len(slot), device=slot.device)], slot

    @property
    def num_nodes(self) -> int:
        return self.deg.shape[0]


class _DepthStep(torch.nn.Module):
    """Every tree's aggregation at one depth as one grouped step
    (:meth:`TreeAggregation.forward_groups`) over the stacked children and parents.

    Attributes:
        sources: the stacked children: leaf tables at depth 1, else the level keys below.
        members: the level keys of the stacked parents.

    Buffers (derived from the levels, not saved): ``edge_index [2, E]`` into the stacked
    tables, ``deg [N_p, 1]`` children per parent, ``group [N_p]`` the member of each parent.
    """

    def __init__(
        self, sources: list[str], members: list[str], edges: list[Tensor], degs: list[Tensor]
    ) -> None:
        super().__init__()
        self.sources, self.members = sources, members
        sizes = torch.tensor([deg.shape[0] for deg in degs])
        self.register_buffer("edge_index", torch.cat(edges, 1), persistent=False)
        self.register_buffer("deg", torch.cat(degs), persistent=False)
        group = torch.repeat_interleave(torch.arange(len(members)), sizes)
        self.register_buffer("group", group, persistent=False)


class HIEN(torch.nn.Module):
    r"""HIEN from `"Hierarchical Intention Embedding Network for Click-Through Rate Prediction"
    <https://arxiv.org/abs/2206.00510>`_ (Zheng et al., SIGIR 2022), as the input module of a
    base CTR model (:class:`graphrec.models.ctr.CTRModel`: LR, WideDeep, DeepFM, DCNv2, DIN).

    1. **Tree aggregation** (:class:`graphrec.nn.tree_aggregation.TreeAggregation`): along
       every item and user attribute tree (:class:`graphrec.graphs.attribute_tree.AttributeTree`)
       the attribute tables are refined bottom-up, level by level, from the base model's
       embedding tables (levels without a base table, e.g. a decade, get HIEN's own table).
       The refined rows replace the base model's lookups of those tables, so the target's and
       the history's attributes both use them. A batch refines only the nodes it reads (with
       their subtrees), so a step does not touch whole tables (:meth:`refine_tables` gives
       them all, e.g. for inspection).
    2. **User intent** (:class:`graphrec.nn.hier_attention.HierarchicalIntentAttention`): for
       every item attribute type :math:`k` (each non-leaf level of the item trees) the user's
       history items are seen through their refined attribute :math:`\mathbf{e}'_{A_k(h_j)}`
       (an item with several parents, e.g. genres, splits its position among them); level 1
       attends over the history given the target's attribute and the user, level 2 across
       types: intent :math:`\mathbf{h}_u`, weights :math:`\alpha` ``[B, K, L]``,
       :math:`\beta` ``[B, K]``. The keys are the history items' attribute values, gathered
       from the refined tables (:meth:`HierarchicalIntentAttention.forward_weighted`). A type
       with more than ``max_values`` values, read by more than ``max_values`` keys per sample,
       is bagged (EmbeddingBag-style: one key per distinct value, weighted by its count in the
       history: the same softmax as one key per position) and keeps each user's
       ``max_values`` most frequent values (ties: any). The attention's cost is then
       ``O(B * types * max_values)``, independent of the history length and of the attribute
       vocabularies; with no user above ``max_values`` values per type the intent is that of
       the whole history. Counting the values (one sort per type, ``O(B * history)``) is done
       once per table: batches of :attr:`features` carry every sample's bags
       (:meth:`user_bags`: also for uncapped types whose values repeat within histories, so
       a step reads one key per distinct value), and a step reads them instead of the
       history (batches without them are counted in the step, with the same values).
       :meth:`forward` reads per-sample keys through torch's fused attention (the same softmax
       within float rounding); :meth:`attention_weights` and frozen tables (export) use the
       explicit one.
    3. **Item intent** (with ``clickers``): attention of the target item over users who
       clicked it in the training data, :math:`\mathbf{h}_v`, weights :math:`\gamma`
       ``[B, S]``. The sample's own user is masked out of the clickers, so a training label
       never leaks into its own features.
    4. ``plug="append"``: the intents are appended as extra fields (``emb.extra = [h_u, h_v]``)
       and the base model's dense part runs unchanged: ``base.interact(emb)``. LR sums them,
       Wide&Deep and DeepFM read them like the other fields, DIN in its MLP input, DCN-V2 in
       its deep part only (not the cross layers). ``plug="add"``: they are added to the user
       and the target item fields (:math:`\mathbf{e}_u + \mathbf{h}_u`,
       :math:`\mathbf{e}_v + \mathbf{h}_v`), so the base model keeps its number of fields
       (and DIN's query carries the item intent).

    The base model must be built with ``extra_fields=2`` (``1`` without ``clickers``, ``0``
    with ``plug="add"``), see :meth:`num_extra_fields`. Its ``embedding_dim`` must be at least
    2: HIEN's attention runs in the base model's embedding space, and LR's default scalar
    weights (``embedding_dim=1``) leave it no room (use ``LR(features, embedding_dim=16)``:
    still a linear model of the ids, plus the summed intents). The forward pass has no
    data-dependent control flow. Defaults: :data:`graphrec.models.ctr.defaults.HIEN_DEFAULTS`.

    Each non-leaf tree level keeps its edges in a small module of :attr:`levels` (key
    ``{side}{i}_{tree name}_{level}``, e.g. ``item0_campaign_1``, as in :attr:`aggregators`), and
    :attr:`depths` holds the grouped step of every depth. For export, :meth:`freeze_tables`
    serves the tree-aggregated tables as constants. State dicts saved before the per-level
    modules (keys ``_edges_{level}``) load as they are.

    Args:
        base: the base CTR model.
        trees: item attribute trees (leaves = the ``item`` feature's table), or a mapping
            ``{"item": [...], "user": [...]}`` as returned by
            :func:`graphrec.graphs.attribute_tree.movielens_ctr_trees`.
        item: sparse feature of the target item.
        user: sparse feature of the user (context of the user intent, clicker masking, leaves
            of the user trees); None for no user.
        history: sequence feature of the user's clicked items (sharing the item table);
            default: the first sequence with the item's table.
        aggregator: ``"gcn"``, ``"ngcf"``, ``"lightgcn"`` or ``"cp"``.
        clickers: ``[num_items, S]`` from :func:`item_clickers`, or None for no item intent.
        attention_hidden: hidden size of the attention layers (default ``d``).
        plug: ``"append"`` (the intents as extra fields) or ``"add"`` (added to the user and
            item fields; needs ``user``).
        max_values: per item attribute type, the user intent reads at most this many distinct
            values of a user's history (the most frequent, weighted by their counts).
    """

    def __init__(
        self,
        base: CTRModel,
        trees: Sequence[AttributeTree] | Mapping[str, Sequence[AttributeTree]],
        *,
        item: str,
        user: str | None = None,
        history: str | None = None,
        aggregator: str = HIEN_DEFAULTS.aggregator,
        clickers: Tensor | None = None,
        attention_hidden: int | None = HIEN_DEFAULTS.attention_hidden,
        plug: str = HIEN_DEFAULTS.plug,
        max_values: int = HIEN_DEFAULTS.max_values,
    ) -> None:
        super().__init__()
        if max_values < 1:
            raise ConfigError(f"max_values must be >= 1; got {max_values}")
        if aggregator not in TREE_AGGREGATORS:
            raise ConfigError(f"aggregator must be one of {TREE_AGGREGATORS}; got {aggregator!r}")
        if plug not in PLUGS:
            raise ConfigError(f"plug must be one of {PLUGS}; got {plug!r}")
        if plug == "add" and user is None:
            raise ConfigError("plug='add' adds the user intent to the user field: needs user=...")
        if base.embedding_dim < 2:
            raise ConfigError(
                f"HIEN needs a base model with embedding_dim >= 2 (its attention runs in the "
                f"embedding space); {type(base).__name__} has embedding_dim="
                f"{base.embedding_dim} (build LR with embedding_dim=16 to use HIEN)"
            )
        item_trees, user_trees = self._split_trees(trees)
        if user_trees and user is None:
            raise ConfigError("user trees need the user feature (user=...)")
        features: CTRFeatures = base.features
        self.base = base
        self.aggregator, self.plug, self.max_values = aggregator, plug, max_values
        self.item, self.user = item, user
        self.item_table = self._sparse_table(features, item, "item")
        self.user_table = self._sparse_table(features, user, "user") if user is not None else None
        self.history = self._history(features, history, self.item_table)
        self._register_clickers(clickers)
        sparse = [s.name for s in features.sparse]
        self._item_field = sparse.index(item)
        self._user_field = sparse.index(user) if user is not None else None
        ancestors = self._build_levels(item_trees, user_trees)
        self._build_depths()
        self._register_bags(ancestors, features.tables[self.item_table])
        self._features = DerivedFeatures(features, self.user_bags)
        d = base.embedding_dim
        self.user_attention = HierarchicalIntentAttention(
            d, len(self.types), context_channels=d if user is not None else 0,
            hidden_channels=attention_hidden,
        )  # fmt: skip
        self.item_attention = (
            HierarchicalIntentAttention(d, 1, context_channels=0, hidden_channels=attention_hidden)
            if clickers is not None
            else None
        )
        self.tables_frozen = False

    @staticmethod
    def _split_trees(
        trees: Sequence[AttributeTree] | Mapping[str, Sequence[AttributeTree]],
    ) -> tuple[list[AttributeTree], list[AttributeTree]]:
        """``(item_trees, user_trees)`` from a list of item trees or a mapping by side."""
        if isinstance(trees, Mapping):
            unknown = set(trees) - {"item", "user"}
            if unknown:
                raise ConfigError(f"trees mapping keys must be 'item' and 'user'; got {unknown}")
            item_trees, user_trees = list(trees.get("item", [])), list(trees.get("user", []))
        else:
            item_trees, user_trees = list(trees), []
        if not item_trees:
            raise ConfigError("HIEN needs at least one item attribute tree")
        return item_trees, user_trees

    @staticmethod
    def _history(features: CTRFeatures, history: str | None, item_table: str) -> str:
        """The history feature: ``history`` checked, or the first sequence of the item table."""
        if history is None:
            history = next((s.name for s in features.sequence if s.table == item_table), None)
            if history is None:
                raise ConfigError(f"no sequence feature shares the item table {item_table!r}")
        elif features[history].kind != "sequence" or features[history].table != item_table:
            raise ConfigError(f"history {history!r} must be a sequence of table {item_table!r}")
        return history

    def _register_clickers(self, clickers: Tensor | None) -> None:
        """Check the base model's extra fields and register ``clickers`` (a buffer, or None)."""
        n_extra = self.num_extra_fields(clickers is not None, self.plug)
        if self.base.extra_fields != n_extra:
            raise ConfigError(
                f"the base model must be built with extra_fields={n_extra} for HIEN's intents; "
                f"got {self.base.extra_fields}"
            )
        if clickers is not None:
            if self.user is None:
                raise ConfigError("clickers need the user feature (user=...)")
            n_items = self.base.features.tables[self.item_table]
            if clickers.dim() != 2 or clickers.shape[0] != n_items:
                raise ConfigError(f"clickers must be [{n_items}, S]; got {tuple(clickers.shape)}")
            clickers = clickers.to(torch.long).clone()
        self.register_buffer("clickers", clickers)

    def _build_levels(
        self, item_trees: list[AttributeTree], user_trees: list[AttributeTree]
    ) -> list[tuple[Tensor, int]]:
        """HIEN's own tables, one aggregator and one :class:`_TreeLevel` per non-leaf level of
        every tree (keyed ``{tree}_{level}``), and the item attribute types (:attr:`types`).

        Returns:
            per item attribute type: the tree's ``ancestors`` of that level and its size.
        """
        self.own_tables = torch.nn.ModuleDict()
        self.aggregators = torch.nn.ModuleDict()
        self.levels = torch.nn.ModuleDict()
        self._trees: list[tuple[str, str, int]] = []  # tree key, leaf table, number of levels
        self._item_levels: list[str] = []  # level key of every item attribute type
        self._below: dict[str, str | None] = {}  # level key -> the level below (None: leaves)
        self._leaf_of: dict[str, str] = {}  # level key -> its tree's leaf table
        self.types: list[str] = []
        refined: set[str] = set()
        ancestors: list[tuple[Tensor, int]] = []
        for side, side_trees, leaf_table in (
            ("item", item_trees, self.item_table),
            ("user", user_trees, self.user_table),
        ):
            for t_index, tree in enumerate(side_trees):
                tkey = _key(f"{side}{t_index}_{tree.name}")
                self._check_leaves(side, tree, leaf_table)
                keys = [
                    self._build_level(tree, tkey, lvl, refined) for lvl in range(1, tree.num_levels)
                ]
                self._trees.append((tkey, leaf_table, tree.num_levels))
                for lvl, key in enumerate(keys, start=1):
                    self._below[key] = keys[lvl - 2] if lvl > 1 else None
                    self._leaf_of[key] = leaf_table
                if side == "item":
                    ancestors += self._add_item_types(tree, keys)
        return ancestors

    def _add_item_types(self, tree: AttributeTree, keys: list[str]) -> list[tuple[Tensor, int]]:
        """The item attribute types of ``tree``'s levels ``keys``: appended to :attr:`types`
        (as ``{tree}/{level}`` when the name is taken); returns their ancestors and sizes."""
        self._item_levels += keys
        for name in tree.levels[1:]:
            self.types.append(name if name not in self.types else f"{tree.name}/{name}")
        return [(tree.ancestors(lvl), tree.sizes[lvl]) for lvl in range(1, tree.num_levels)]

    def _check_leaves(self, side: str, tree: AttributeTree, leaf_table: str | None) -> None:
        size, base_size = tree.sizes[0], self.base.features.tables.get(leaf_table)
        if tree.tables[0] != leaf_table or size != base_size:
            raise ConfigError(
                f"{side} tree {tree.name!r} has leaves of table {tree.tables[0]!r} "
                f"({size} nodes); expected {leaf_table!r} ({base_size} rows)"
            )

    def _build_level(self, tree: AttributeTree, tkey: str, lvl: int, refined: set[str]) -> str:
        """Level ``lvl`` of ``tree``: its table (a base table it refines, else HIEN's own), its
        aggregator and its :class:`_TreeLevel`; returns the level key."""
        name, table, size = tree.levels[lvl], tree.tables[lvl], tree.sizes[lvl]
        base_tables = self.base.features.tables
        own = table is None or table not in base_tables
        if not own:
            if base_tables[table] != size:
                raise ConfigError(
                    f"tree {tree.name!r} level {name!r} has {size} nodes but table "
                    f"{table!r} has {base_tables[table]} rows"
                )
            if table in refined:
                raise ConfigError(f"table {table!r} is refined by two trees")
            refined.add(table)
        else:
            table = _key(f"{tkey}.{name}")
            self.own_tables[table] = torch.nn.Embedding(size, self.base.embedding_dim)
            torch.nn.init.normal_(self.own_tables[table].weight, std=0.01)
        key = f"{tkey}_{lvl}"
        self.aggregators[key] = TreeAggregation(self.base.embedding_dim, self.aggregator)
        self.levels[key] = _TreeLevel(tree.level_edges(lvl - 1), size, table, own)
        return key

    @staticmethod
    def num_extra_fields(clickers: bool = True, plug: str = HIEN_DEFAULTS.plug) -> int:
        """Extra fields HIEN appends: the user intent, plus the item intent with clickers
        (none with ``plug="add"``)."""
        return 0 if plug == "add" else 2 if clickers else 1

    @staticmethod
    def _sparse_table(features: CTRFeatures, name: str, what: str) -> str:
        spec = features[name]
        if spec.kind != "sparse":
            raise ConfigError(f"{what} feature {name!r} must be sparse; got {spec.kind}")
        return spec.table

    def _weight(self, table: str, own: bool) -> Tensor:
        return self.own_tables[table].weight if own else self.base.embedding.table(table).weight

    def refine_tables(self) -> tuple[dict[str, Tensor], list[Tensor]]:
        """Bottom-up aggregation over every tree (the frozen tables after
        :meth:`freeze_tables`).

        Returns:
            ``(tables, views)``: refined weights by base table name (to pass to
            ``base.embed``), and per item attribute type the refined table of its level.
        """
        if self.tables_frozen:
            out = {key: level.frozen for key, level in self.levels.items()}
        else:
            out = self._aggregate()
        tables = {level.table: out[key] for key, level in self.levels.items() if not level.own}
        return tables, [out[key] for key in self._item_levels]

    def _aggregate(self) -> dict[str, Tensor]:
        """The refined table of every level, by level key, one grouped step per depth."""
        out: dict[str, Tensor] = {}
        for depth, step in enumerate(self.depths, start=1):
            # depth 1: the leaf tables; deeper: the levels below
            children = [self._weight(s, False) if depth == 1 else out[s] for s in step.sources]
            levels = [self.levels[key] for key in step.members]
            parents = [self._weight(level.table, level.own) for level in levels]
            x = TreeAggregation.forward_groups(
                [self.aggregators[key] for key in step.members],
                children[0] if len(children) == 1 else torch.cat(children),
                parents[0] if len(parents) == 1 else torch.cat(parents),
                step.edge_index,
                step.deg.to(children[0].dtype),
                step.group,
            )
            out.update(zip(step.members, x.split([level.num_nodes for level in levels])))
        return out

    @torch.no_grad()
    def freeze_tables(self) -> HIEN:
        """Serve the tree-aggregated tables as constants (the on-device form for export).

        Runs the aggregation once, from the current weights, and keeps each level's refined
        table; from then on :meth:`refine_tables` returns them (no tree aggregation runs).
        Outputs are unchanged up to float32 summation order. The frozen
        tables are a snapshot, not saved in the state dict: freeze after the weights are final
        (training or ``load_state_dict`` afterwards does not update them, and the aggregators
        and HIEN's own tables get no gradient); :meth:`unfreeze_tables` undoes it.

        Returns:
            ``self``.
        """
        self.unfreeze_tables()
        for key, table in self._aggregate().items():
            self.levels[key].frozen = table.detach().clone()
        self.tables_frozen = True
        return self

    def unfreeze_tables(self) -> HIEN:
        """Undo :meth:`freeze_tables`: aggregate along the trees on every call again.

        Returns:
            ``self``.
        """
        for level in self.levels.values():
            level.frozen = None
        self.tables_frozen = False
        return self

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # upgrade: state dicts saved before the per-level modules hold each level's edges as
        # ``_edges_{level}``, now ``levels.{level}.edge_index``; those saved before the sparse
        # user intent hold the items' attribute values (now derived from the trees)
        for key in ("_bag_index", "_bag_weight"):
            state_dict.pop(prefix + key, None)
        old = prefix + "_edges_"
        for key in [key for key in state_dict if key.startswith(old)]:
            state_dict[f"{prefix}levels.{key.removeprefix(old)}.edge_index"] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def _build_depths(self) -> None:
        """One :class:`_DepthStep` per depth in :attr:`depths`: the stacked children (every
        leaf table once at depth 1, else the trees' levels below) and parents of the trees
        that reach that depth, with the edges moved into the stacked tables."""
        self.depths = torch.nn.ModuleList()
        for depth in range(1, max(n for _, _, n in self._trees)):
            sources: list[str] = []
            members, edges, degs = [], [], []
            child_offsets: dict[str, int] = {}
            parent_offset = 0
            for tkey, leaf_table, _ in filter(lambda t: t[2] > depth, self._trees):
                src = leaf_table if depth == 1 else f"{tkey}_{depth - 1}"
                if src not in child_offsets:
                    child_offsets[src] = sum(self._source_size(s, depth) for s in sources)
                    sources.append(src)
                key = f"{tkey}_{depth}"
                level = self.levels[key]
                offsets = torch.tensor([[child_offsets[src]], [parent_offset]])
                edges.append(level.edge_index + offsets)
                degs.append(level.deg)
                members.append(key)
                parent_offset += level.num_nodes
            self.depths.append(_DepthStep(sources, members, edges, degs))

    def _source_size(self, source: str, depth: int) -> int:
        """Rows of a stacked child table: a leaf table (depth 1) or a level (deeper)."""
        return self._weight(source, False).shape[0] if depth == 1 else self.levels[source].num_nodes

    def _register_bags(self, ancestors: list[tuple[Tensor, int]], n_items: int) -> None:
        """Per item attribute type ``k``, buffers mapping an item to its values of the type:
        ``_values_{k} [n_items, P_k]`` (value ids, padding 0) and ``_shares_{k} [n_items, P_k]``
        (a leaf's shares sum to 1: several parents share it; padding and item code 0: 0).
        Derived from the trees, not saved."""
        for k, (anc, _) in enumerate(ancestors):
            leaf, value, w = anc[0].long(), anc[1].long(), anc[2].float()
            order = torch.argsort(leaf, stable=True)
            leaf, value, w = leaf[order], value[order], w[order]
            per_leaf = torch.bincount(leaf, minlength=n_items)
            slot = torch.arange(len(leaf)) - (torch.cumsum(per_leaf, 0) - per_leaf)[leaf]
            width = max(int(per_leaf.max()), 1)
            values = torch.zeros(n_items, width, dtype=torch.long)
            shares = torch.zeros(n_items, width)
            values[leaf, slot] = value
            shares[leaf, slot] = w
            shares[0] = 0.0  # code 0 (padding, unknown item) has no attribute values
            self.register_buffer(f"_values_{k}", values, persistent=False)
            self.register_buffer(f"_shares_{k}", shares, persistent=False)

    def _type_values(self, k: int, items: Tensor) -> tuple[Tensor, Tensor]:
        """``(values, shares)`` of type ``k`` for ``items`` (``[B, L]``), each ``[B, L * P_k]``
        (the values of every position, ``P_k`` slots each)."""
        values, shares = getattr(self, f"_values_{k}"), getattr(self, f"_shares_{k}")
        return _gather(values, items).flatten(1), _gather(shares, items).flatten(1)

    def _capped(self, k: int, keys: int) -> bool:
        """Whether type ``k`` is read through its top ``max_values`` values when a sample has
        ``keys`` keys of it (more values and more keys than the cap)."""
        return self.max_values < min(keys, self.levels[self._item_levels[k]].num_nodes)

    def _bag_names(self, k: int) -> tuple[str, str]:
        """The batch columns of type ``k``'s capped bag (:meth:`user_bags`)."""
        return f"{self.history}.hien_values_{k}", f"{self.history}.hien_counts_{k}"

    def user_bags(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Per item attribute type, each sample's history as a bag: its distinct values
        (at most ``max_values``, the most frequent) and their counts, ``[N, W_k]`` each
        (columns :meth:`_bag_names`; ``W_k``: the table's widest bag, counts sorted
        descending, 0 = empty). A capped type's bag is what :meth:`forward` otherwise counts
        in the step; an uncapped type's bag holds every value once, weighted by its count (the
        same softmax as one key per position, over fewer keys); a type whose values never
        repeat within a history is left out. :attr:`features` adds them to its batches,
        computed once per table, so a training step's user intent does not read the history.
        Rows are independent: the same values as counted batch by batch."""
        history, out = batch[self.history], {}
        device = self._values_0.device
        for k, key in enumerate(self._item_levels):
            keys = history.shape[1] * getattr(self, f"_values_{k}").shape[1]
            n = self.levels[key].num_nodes
            cap = min(self.max_values, keys, n)
            if cap < 2:
                continue
            parts = [
                _top_values(*self._type_values(k, rows.to(device)), cap, n)[:2]
                for rows in history.split(_BAG_CHUNK)
            ]
            values, counts = (torch.cat(part) for part in zip(*parts))
            width = int((counts > 0).sum(1).max()) if len(counts) else 0
            if not self._capped(k, keys) and width >= keys:
                continue  # no value repeats: the bag is the history itself
            width = max(width, 1)
            for name, col in zip(self._bag_names(k), (values, counts)):
                out[name] = col[:, :width].contiguous().to(history.device)
        return out

    def _run(
        self, batch: dict[str, Tensor], weights: bool = True
    ) -> tuple[EmbeddedFeatures, dict[str, Tensor]]:
        """The embedded features with HIEN's intents, and the attention weights (``alpha``
        per value only with ``weights``: a training step does not need it)."""
        items = batch[self.item].unsqueeze(1)
        item_values = [self._type_values(k, items) for k in range(len(self._item_levels))]
        hist_values, capped = [], {}
        for k, key in enumerate(self._item_levels):
            names = self._bag_names(k)
            # counted once per table (user_bags); an exported graph (frozen tables) reads the
            # history, except for capped types, and has no data-dependent shapes
            n_keys = batch[self.history].shape[1] * getattr(self, f"_values_{k}").shape[1]
            if not weights and names[0] in batch and not self.tables_frozen:
                v_h, w_h = batch[names[0]], batch[names[1]]
                width = max(int((w_h > 0).sum(1).max()), 1) if len(w_h) else 1
                if width < w_h.shape[1]:  # the batch's widest bag (counts sorted descending)
                    v_h, w_h = v_h[:, :width].contiguous(), w_h[:, :width].contiguous()
                hist_values.append((v_h, w_h))
                continue
            if not weights and names[0] in batch and self._capped(k, n_keys):
                hist_values.append((batch[names[0]], batch[names[1]]))
                continue
            v_h, w_h = self._type_values(k, batch[self.history])
            if self._capped(k, v_h.shape[1]):
                n = self.levels[key].num_nodes
                top, counts, slot = _top_values(v_h, w_h, self.max_values, n, slots=weights)
                v_h, w_h, capped[k] = top, counts, (slot, counts, w_h)
            hist_values.append((v_h, w_h))
        rows, compact = self._refine_rows(batch, item_values, hist_values)
        emb = self._embed(batch, rows)
        # per type: the target's attribute (its weighted values) and the history's values,
        # gathered from the refined rows (cost O(B * L), whatever the vocabulary sizes)
        target, keys, shares = [], [], []
        for key, (v_t, w_t), (v_h, w_h) in zip(self._item_levels, item_values, hist_values):
            target.append((rows[key](v_t) * w_t.unsqueeze(-1)).sum(1))
            nodes, table, locate = compact.get(key, (None, None, None))
            # a bag's dense products beat the per-key work up to a few rows per key
            if weights or nodes is None or len(nodes) > _BAG_ROWS_PER_KEY * v_h.shape[1]:
                keys.append(rows[key](v_h))
                shares.append(w_h)
            else:  # fewer refined rows than keys per sample: a bag over them (same values)
                keys.append(table)
                bag = w_h.new_zeros(len(w_h), len(nodes))
                shares.append(bag.scatter_add(1, v_h if locate is None else locate(v_h), w_h))
        # the (refined) user and item embeddings are fields of the base model's embedding
        context = None if self.user is None else emb.fields[:, self._user_field]
        user_out = self.user_attention.forward_weighted(
            keys, shares, torch.stack(target, dim=1), context, return_alpha=weights,
            fused=not (weights or self.tables_frozen),
        )  # fmt: skip
        extra = [user_out.intent]
        alpha = user_out.alpha
        if weights:  # a capped type's weights back on its keys (a value's weight by share)
            alpha = [_uncap(a, *capped[k]) if k in capped else a for k, a in enumerate(alpha)]
        out = {"alpha_keys": alpha, "beta": user_out.beta}
        if self.item_attention is not None:
            clickers = self.clickers.index_select(0, batch[self.item])  # [B, S]
            mask = (clickers != 0) & (clickers != batch[self.user].unsqueeze(-1))
            e_v = emb.fields[:, self._item_field]
            e_clickers = self._table_rows(rows, self.user_table, clickers)
            item_out = self.item_attention(e_clickers.unsqueeze(1), e_v.unsqueeze(1), mask)
            extra.append(item_out.intent)
            out["gamma"] = item_out.alpha[:, 0]
        if self.plug == "add":
            fields = [self._user_field, self._item_field]
            added = {f: emb.fields[:, f] + h for f, h in zip(fields, extra)}
            emb.fields = _with_fields(emb.fields, added)
        else:
            emb.extra = torch.stack(extra, dim=1)
        return emb, out

    def _refine_rows(
        self,
        batch: dict[str, Tensor],
        item_values: list[tuple[Tensor, Tensor]],
        hist_values: list[tuple[Tensor, Tensor]],
    ) -> tuple[dict[str, Any], dict[str, tuple[Tensor, Tensor]]]:
        """Per level key, a lookup ``codes -> refined rows [*codes.shape, d]`` for the nodes
        the batch reads (its features of the level's table, the items' attribute values), and
        the refined nodes themselves ``(sorted ids, rows)`` (none with frozen tables).

        Only those nodes are refined, with their subtrees: needed parents pull in all their
        children, top-down, then the aggregation runs bottom-up on these nodes alone (equal to
        the rows of :meth:`refine_tables`, at a cost independent of the vocabulary sizes). With
        frozen tables, the rows are gathered from them."""
        if self.tables_frozen:
            return {key: partial(_gather, level.frozen) for key, level in self.levels.items()}, {}
        need: dict[str, list[Tensor]] = {key: [] for key in self.levels}
        by_table = {level.table: key for key, level in self.levels.items() if not level.own}
        for spec in (*self.base.features.sparse, *self.base.features.sequence):
            if spec.table in by_table:
                need[by_table[spec.table]].append(batch[spec.name].reshape(-1))
        for key, (v_t, _), (v_h, _) in zip(self._item_levels, item_values, hist_values):
            need[key] += [v_t.reshape(-1), v_h.reshape(-1)]
        nodes: dict[str, Tensor] = {}
        locate: dict[str, Any] = {}  # codes -> positions in nodes (None: the level is whole)
        edges: dict[str, tuple[Tensor, Tensor]] = {}
        for key in reversed(list(self.levels)):  # a level's keys come after those below it
            level = self.levels[key]
            nodes[key], locate[key] = self._needed_nodes(level, need[key])
            edges[key] = level.children_of(nodes[key])
            if self._below[key] is not None:
                need[self._below[key]].append(edges[key][0])
        refined: dict[str, Tensor] = {}
        for key, level in self.levels.items():  # bottom-up
            children, slot = edges[key]
            below = self._below[key]
            if below is None:
                x_child = self._weight(self._leaf_of[key], False).index_select(0, children)
            else:
                at = children if locate[below] is None else locate[below](children)
                x_child = refined[below].index_select(0, at)
            x_parent = self._weight(level.table, level.own).index_select(0, nodes[key])
            edge_index = torch.stack([torch.arange(len(children), device=slot.device), slot])
            refined[key] = self.aggregators[key](
                x_child, x_parent, edge_index, level.deg.index_select(0, nodes[key])
            )
        compact = {key: (nodes[key], refined[key], locate[key]) for key in self.levels}
        rows = {
            key: partial(_gather_located, locate=at, rows=r) for key, (_, r, at) in compact.items()
        }
        return rows, compact

    @staticmethod
    def _needed_nodes(level: _TreeLevel, need: list[Tensor]) -> tuple[Tensor, Any]:
        """The sorted nodes of ``level`` among the codes ``need``, and how to find a code's
        position among them (None: every node is needed, position = code). A level with at
        most :data:`_MARK_NODES_PER_CODE` nodes per code is marked in a ``[N]`` mask (no
        sort, a code's position by one gather); a larger one is sorted (``torch.unique``)."""
        n = level.num_nodes
        if not need:
            return _no_nodes(level), None
        codes = need[0] if len(need) == 1 else torch.cat(need)
        if n > _MARK_NODES_PER_CODE * codes.numel():
            nodes = torch.unique(codes)
            return nodes, partial(_locate_sorted, nodes=nodes)
        present = torch.zeros(n, dtype=torch.bool, device=codes.device)
        present[codes] = True
        if bool(present.all()):
            return torch.arange(n, device=codes.device), None
        position = present.long().cumsum(0) - 1
        return present.nonzero().view(-1), partial(_locate_mapped, position=position)

    def _table_rows(self, rows: dict[str, Any], table: str, codes: Tensor) -> Tensor:
        """``codes`` of a base table looked up in its refined rows (or the base weights)."""
        for key, level in self.levels.items():
            if not level.own and level.table == table:
                return rows[key](codes)
        return _gather(self.base.embedding.table(table).weight, codes)

    def _embed(self, batch: dict[str, Tensor], rows: dict[str, Any]) -> EmbeddedFeatures:
        """``base.embed`` with the refined rows in place of the refined tables' lookups."""
        refined = {level.table for level in self.levels.values() if not level.own}
        # the refined tables' own lookups are replaced below: read without a gradient (each
        # read of a table costs a full-size gradient in the backward pass)
        emb = self.base.embed(batch, {t: self._weight(t, False).detach() for t in refined})
        sparse = self.base.features.sparse
        new = {
            f: self._table_rows(rows, spec.table, batch[spec.name])
            for f, spec in enumerate(sparse)
            if spec.table in refined
        }
        if new:
            emb.fields = _with_fields(emb.fields, new)
        for spec in self.base.features.sequence:
            if spec.table in refined:
                emb.sequences[spec.name] = self._table_rows(rows, spec.table, batch[spec.name])
        return emb

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        """Click logits ``[B]``."""
        return self.base.interact(self._run(batch, weights=False)[0])

    @property
    def features(self) -> DerivedFeatures:
        """The base model's features, whose batches also hold :meth:`user_bags` (counted once
        per table; :func:`graphrec.models.ctr.train_ctr` works as is)."""
        return self._features

    @torch.no_grad()
    def predict_proba(self, batch: dict[str, Tensor]) -> Tensor:
        return torch.sigmoid(self(batch))

    @torch.no_grad()
    def attention_weights(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The attention weights for inspection.

        Returns:
            ``{"alpha": [B, K, L], "beta": [B, K], "gamma": [B, S]}`` (``gamma`` only with
            clickers): ``alpha[b, k, j]`` is the weight of history position ``j`` for type
            ``k`` = :attr:`types` ``[k]`` (a position with several values of the type, e.g.
            genres, sums their shares); padded positions have weight 0.
        """
        weights = self._run(batch)[1]
        hist = batch[self.history]
        B, L = hist.shape
        # per type, the shares of a position's values summed
        alpha = torch.stack([a.view(B, L, -1).sum(-1) for a in weights.pop("alpha_keys")], 1)
        weights["alpha"] = alpha * (hist != 0).unsqueeze(1)
        return weights

    def extra_repr(self) -> str:
        return f"aggregator={self.aggregator!r}, plug={self.plug!r}, types={self.types}"
