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

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from graphrec.errors import ConfigError
from graphrec.graphs.attribute_tree import AttributeTree
from graphrec.io import CTRTable
from graphrec.models.ctr.base import CTRModel
from graphrec.models.ctr.defaults import HIEN_DEFAULTS
from graphrec.models.ctr.features import CTRFeatures, EmbeddedFeatures
from graphrec.nn.hier_attention import HierarchicalIntentAttention
from graphrec.nn.tree_aggregation import TREE_AGGREGATORS, TreeAggregation

__all__ = ["HIEN", "item_clickers"]


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


class HIEN(torch.nn.Module):
    r"""HIEN from `"Hierarchical Intention Embedding Network for Click-Through Rate Prediction"
    <https://arxiv.org/abs/2206.00510>`_ (Zheng et al., SIGIR 2022), as the input module of a
    base CTR model (:class:`graphrec.models.ctr.CTRModel`: LR, WideDeep, DeepFM, DCNv2, DIN).

    1. **Tree aggregation** (:class:`graphrec.nn.tree_aggregation.TreeAggregation`): along
       every item and user attribute tree (:class:`graphrec.graphs.attribute_tree.AttributeTree`)
       the attribute tables are refined bottom-up, level by level, from the base model's
       embedding tables (levels without a base table, e.g. a decade, get HIEN's own table).
       The refined tables replace the base tables in ``base.embed(batch, tables=...)``, so the
       target's and the history's attributes both use them.
    2. **User intent** (:class:`graphrec.nn.hier_attention.HierarchicalIntentAttention`): for
       every item attribute type :math:`k` (each non-leaf level of the item trees) the user's
       history items are seen through their refined attribute :math:`\mathbf{e}'_{A_k(h_j)}`
       (an item with several parents, e.g. genres, splits its position among them); level 1
       attends over the history given the target's attribute and the user, level 2 across
       types: intent :math:`\mathbf{h}_u`, weights :math:`\alpha` ``[B, K, L]``,
       :math:`\beta` ``[B, K]``. The history is passed as bags of attribute values
       (:meth:`HierarchicalIntentAttention.forward_bags`): dense products over the attribute
       tables, no gather of ``K * L`` keys per sample.
    3. **Item intent** (with ``clickers``): attention of the target item over users who
       clicked it in the training data, :math:`\mathbf{h}_v`, weights :math:`\gamma`
       ``[B, S]``. The sample's own user is masked out of the clickers, so a training label
       never leaks into its own features.
    4. The intents are appended as extra fields (``emb.extra = [h_u, h_v]``) and the base
       model's dense part runs unchanged: ``base.interact(emb)``. LR sums them, Wide&Deep and
       DeepFM read them like the other fields, DIN in its MLP input, DCN-V2 in its deep part
       only (not the cross layers).

    The base model must be built with ``extra_fields=2`` (``1`` without ``clickers``), see
    :meth:`num_extra_fields`. The forward pass has no data-dependent control flow. Defaults:
    :data:`graphrec.models.ctr.defaults.HIEN_DEFAULTS`.

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
    ) -> None:
        super().__init__()
        if aggregator not in TREE_AGGREGATORS:
            raise ConfigError(f"aggregator must be one of {TREE_AGGREGATORS}; got {aggregator!r}")
        if isinstance(trees, Mapping):
            unknown = set(trees) - {"item", "user"}
            if unknown:
                raise ConfigError(f"trees mapping keys must be 'item' and 'user'; got {unknown}")
            item_trees, user_trees = list(trees.get("item", [])), list(trees.get("user", []))
        else:
            item_trees, user_trees = list(trees), []
        if not item_trees:
            raise ConfigError("HIEN needs at least one item attribute tree")
        features: CTRFeatures = base.features
        self.base = base
        self.aggregator = aggregator
        d = base.embedding_dim
        self.item, self.user = item, user
        item_table = self._sparse_table(features, item, "item")
        user_table = self._sparse_table(features, user, "user") if user is not None else None
        if history is None:
            history = next((s.name for s in features.sequence if s.table == item_table), None)
            if history is None:
                raise ConfigError(f"no sequence feature shares the item table {item_table!r}")
        elif features[history].kind != "sequence" or features[history].table != item_table:
            raise ConfigError(f"history {history!r} must be a sequence of table {item_table!r}")
        self.history = history
        if user_trees and user is None:
            raise ConfigError("user trees need the user feature (user=...)")
        n_extra = self.num_extra_fields(clickers is not None)
        if base.extra_fields != n_extra:
            raise ConfigError(
                f"the base model must be built with extra_fields={n_extra} for HIEN's intents; "
                f"got {base.extra_fields}"
            )
        if clickers is not None:
            if user is None:
                raise ConfigError("clickers need the user feature (user=...)")
            n_items = features.tables[item_table]
            if clickers.dim() != 2 or clickers.shape[0] != n_items:
                raise ConfigError(f"clickers must be [{n_items}, S]; got {tuple(clickers.shape)}")
            self.register_buffer("clickers", clickers.to(torch.long).clone())
        else:
            self.register_buffer("clickers", None)

        base_tables = features.tables
        self.own_tables = torch.nn.ModuleDict()
        self.aggregators = torch.nn.ModuleDict()
        self._trees: list[tuple[str, list[tuple[str, bool]]]] = []  # tree key, [(table, own)]
        refined: set[str] = set()
        self.types: list[str] = []
        ancestors: list[tuple[Tensor, int]] = []  # per item attribute type: ancestors, size
        for side, side_trees, leaf_table in (
            ("item", item_trees, item_table),
            ("user", user_trees, user_table),
        ):
            for t_index, tree in enumerate(side_trees):
                tkey = _key(f"{side}{t_index}_{tree.name}")
                levels = []
                for lvl, (name, table, size) in enumerate(
                    zip(tree.levels, tree.tables, tree.sizes)
                ):
                    if lvl == 0:
                        if table != leaf_table or size != base_tables[leaf_table]:
                            raise ConfigError(
                                f"{side} tree {tree.name!r} has leaves of table {table!r} "
                                f"({size} nodes); expected {leaf_table!r} "
                                f"({base_tables[leaf_table]} rows)"
                            )
                        levels.append((table, False))
                        continue
                    if table is not None and table in base_tables:
                        if base_tables[table] != size:
                            raise ConfigError(
                                f"tree {tree.name!r} level {name!r} has {size} nodes but table "
                                f"{table!r} has {base_tables[table]} rows"
                            )
                        if table in refined:
                            raise ConfigError(f"table {table!r} is refined by two trees")
                        refined.add(table)
                        levels.append((table, False))
                    else:
                        own = _key(f"{tkey}.{name}")
                        self.own_tables[own] = torch.nn.Embedding(size, d)
                        torch.nn.init.normal_(self.own_tables[own].weight, std=0.01)
                        levels.append((own, True))
                    self.aggregators[f"{tkey}_{lvl}"] = TreeAggregation(d, aggregator)
                    edges = tree.level_edges(lvl - 1)
                    self.register_buffer(f"_edges_{tkey}_{lvl}", edges)
                    deg = TreeAggregation.degree(edges, size)
                    self.register_buffer(f"_deg_{tkey}_{lvl}", deg, persistent=False)
                    if side == "item":
                        ancestors.append((tree.ancestors(lvl), size))
                        label = name if name not in self.types else f"{tree.name}/{name}"
                        self.types.append(label)
                self._trees.append((tkey, levels))
        self._item_levels = [
            (tkey, lvl) for tkey, levels in self._trees[: len(item_trees)]
            for lvl in range(1, len(levels))
        ]  # fmt: skip
        self.item_table, self.user_table = item_table, user_table
        sparse = [s.name for s in features.sparse]
        self._item_field = sparse.index(item)
        self._user_field = sparse.index(user) if user is not None else None
        self._register_depths()
        self._register_bags(ancestors, features.tables[item_table])
        self.user_attention = HierarchicalIntentAttention(
            d, len(self.types), context_channels=d if user is not None else 0,
            hidden_channels=attention_hidden,
        )  # fmt: skip
        self.item_attention = (
            HierarchicalIntentAttention(d, 1, context_channels=0, hidden_channels=attention_hidden)
            if clickers is not None
            else None
        )

    @staticmethod
    def num_extra_fields(clickers: bool = True) -> int:
        """Extra fields HIEN appends: the user intent, plus the item intent with clickers."""
        return 2 if clickers else 1

    @staticmethod
    def _sparse_table(features: CTRFeatures, name: str, what: str) -> str:
        spec = features[name]
        if spec.kind != "sparse":
            raise ConfigError(f"{what} feature {name!r} must be sparse; got {spec.kind}")
        return spec.table

    def _weight(self, table: str, own: bool) -> Tensor:
        return self.own_tables[table].weight if own else self.base.embedding.table(table).weight

    def refine_tables(self) -> tuple[dict[str, Tensor], list[Tensor]]:
        """Bottom-up aggregation over every tree.

        Returns:
            ``(tables, views)``: refined weights by base table name (to pass to
            ``base.embed``), and per item attribute type the refined table of its level.
        """
        tables: dict[str, Tensor] = {}
        levels_out: dict[tuple[str, int], Tensor] = {}
        for depth, (sources, members) in enumerate(self._depths, start=1):
            # depth 1: the leaf tables; deeper: each tree's previous level
            children = [
                self._weight(src, False) if depth == 1 else levels_out[(src, depth - 1)]
                for src in sources
            ]
            parents = [self._weight(table, own) for _, table, own in members]
            x = TreeAggregation.forward_groups(
                [self.aggregators[f"{tkey}_{depth}"] for tkey, _, _ in members],
                children[0] if len(children) == 1 else torch.cat(children),
                parents[0] if len(parents) == 1 else torch.cat(parents),
                getattr(self, f"_depth_edges_{depth}"),
                getattr(self, f"_depth_deg_{depth}").to(children[0].dtype),
                getattr(self, f"_depth_group_{depth}"),
            )
            for (tkey, table, own), part in zip(members, x.split([p.shape[0] for p in parents])):
                levels_out[(tkey, depth)] = part
                if not own:
                    tables[table] = part
        return tables, [levels_out[key] for key in self._item_levels]

    def _register_depths(self) -> None:
        """Every tree's step at one depth runs as one grouped step
        (:meth:`TreeAggregation.forward_groups`): ``_depths[l - 1] = (sources, members)``,
        the stacked children (leaf tables at depth 1, else trees) and parents
        ``(tree, table, own)``, with non-persistent buffers ``_depth_edges_l`` (into the
        stacked tables), ``_depth_deg_l`` and ``_depth_group_l``."""
        self._depths: list[tuple[list[str], list[tuple[str, str, bool]]]] = []
        for depth in range(1, max(len(levels) for _, levels in self._trees)):
            trees = [(tkey, levels) for tkey, levels in self._trees if len(levels) > depth]
            sources: list[str] = []
            members, edges, degs, groups = [], [], [], []
            child_offsets: dict[str, int] = {}
            parent_offset = 0
            for g, (tkey, levels) in enumerate(trees):
                src = levels[0][0] if depth == 1 else tkey
                if src not in child_offsets:
                    child_offsets[src] = sum(self._source_size(s, depth) for s in sources)
                    sources.append(src)
                table, own = levels[depth]
                e = getattr(self, f"_edges_{tkey}_{depth}")
                deg = getattr(self, f"_deg_{tkey}_{depth}")
                edges.append(e + torch.tensor([[child_offsets[src]], [parent_offset]]))
                degs.append(deg)
                groups.append(torch.full((deg.shape[0],), g, dtype=torch.long))
                members.append((tkey, table, own))
                parent_offset += deg.shape[0]
            self.register_buffer(f"_depth_edges_{depth}", torch.cat(edges, 1), persistent=False)
            self.register_buffer(f"_depth_deg_{depth}", torch.cat(degs), persistent=False)
            self.register_buffer(f"_depth_group_{depth}", torch.cat(groups), persistent=False)
            self._depths.append((sources, members))

    def _source_size(self, source: str, depth: int) -> int:
        """Rows of a stacked child table: a leaf table (depth 1) or a tree's level ``depth-1``."""
        if depth == 1:
            return self._weight(source, False).shape[0]
        return getattr(self, f"_deg_{source}_{depth - 1}").shape[0]

    def _register_bags(self, ancestors: list[tuple[Tensor, int]], n_items: int) -> None:
        """Buffers mapping an item to its attribute values of every type in one value space
        of ``M = sum_k N_k`` columns (type ``k``'s values after the previous types'):
        ``_bag_index [n_items, P]`` (padding: column ``M``) and ``_bag_weight [n_items, P]``
        (per type, a leaf's weights sum to 1: several parents share it), and the same as one
        dense ``_bag_matrix [n_items, M]`` (not saved: derived from the two)."""
        offset, cols, leaves, weights = 0, [], [], []
        for anc, size in ancestors:
            leaves.append(anc[0].long())
            cols.append(anc[1].long() + offset)
            weights.append(anc[2].float())
            offset += size
        leaf, col, w = torch.cat(leaves), torch.cat(cols), torch.cat(weights)
        order = torch.argsort(leaf, stable=True)
        leaf, col, w = leaf[order], col[order], w[order]
        per_leaf = torch.bincount(leaf, minlength=n_items)
        slot = torch.arange(len(leaf)) - (torch.cumsum(per_leaf, 0) - per_leaf)[leaf]
        width = max(int(per_leaf.max()), 1)
        index = torch.full((n_items, width), offset, dtype=torch.long)
        weight = torch.zeros(n_items, width)
        index[leaf, slot] = col
        weight[leaf, slot] = w
        weight[0] = 0.0  # code 0 (padding, unknown item) has no attribute values
        self.register_buffer("_bag_index", index)
        self.register_buffer("_bag_weight", weight)
        matrix = torch.zeros(n_items, offset + 1).scatter_add_(1, index, weight)[:, :offset]
        self.register_buffer("_bag_matrix", matrix.contiguous(), persistent=False)
        self._type_sizes = [size for _, size in ancestors]
        self._bounds = np.cumsum([0, *self._type_sizes]).tolist()

    def _bags(self, items: Tensor) -> Tensor:
        """``[B, M]``: the attribute values (every type) of ``items`` (``[B]`` or ``[B, L]``;
        code 0 is ignored), counted over the positions of each sample."""
        # one fused gather-and-sum of the items' rows of the dense bag matrix (row 0 is zero)
        return F.embedding_bag(items.reshape(items.shape[0], -1), self._bag_matrix, mode="sum")

    def _run(
        self, batch: dict[str, Tensor], weights: bool = True
    ) -> tuple[EmbeddedFeatures, dict[str, Tensor]]:
        """The embedded features with HIEN's intents, and the attention weights (``alpha``
        per value only with ``weights``: a training step does not need it)."""
        tables, level_tables = self.refine_tables()
        emb = self.base.embed(batch, tables=tables)
        hist = batch[self.history]
        # the target's attribute per type: its (weighted) values through the refined tables
        target_bag = self._bags(batch[self.item])
        bounds = zip(self._bounds[:-1], self._bounds[1:], level_tables)
        target = torch.stack([target_bag[:, lo:hi] @ t for lo, hi, t in bounds], dim=1)
        # the (refined) user and item embeddings are fields of the base model's embedding
        context = None if self.user is None else emb.fields[:, self._user_field]
        history_bag = self._bags(hist)
        user_out = self.user_attention.forward_bags(
            level_tables, history_bag, target, context, return_alpha=weights
        )
        extra = [user_out.intent]
        out = {"alpha_values": user_out.alpha, "beta": user_out.beta}
        if self.item_attention is not None:
            user_weight = tables.get(
                self.user_table, self.base.embedding.table(self.user_table).weight
            )
            clickers = self.clickers.index_select(0, batch[self.item])  # [B, S]
            mask = (clickers != 0) & (clickers != batch[self.user].unsqueeze(-1))
            e_v = emb.fields[:, self._item_field]
            # index_select: its backward (index_add) is cheaper than embedding's on CPU
            e_clickers = user_weight.index_select(0, clickers.reshape(-1)).view(
                *clickers.shape, user_weight.shape[1]
            )
            item_out = self.item_attention(e_clickers.unsqueeze(1), e_v.unsqueeze(1), mask)
            extra.append(item_out.intent)
            out["gamma"] = item_out.alpha[:, 0]
        emb.extra = torch.stack(extra, dim=1)
        return emb, out

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        """Click logits ``[B]``."""
        return self.base.interact(self._run(batch, weights=False)[0])

    @property
    def features(self) -> CTRFeatures:
        """The base model's features (so :func:`graphrec.models.ctr.train_ctr` works as is)."""
        return self.base.features

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
        K = len(self._type_sizes)
        index = self._bag_index[hist]  # [B, L, P]
        unit = torch.nn.functional.pad(weights.pop("alpha_values"), (0, 1))  # pad column: 0
        share = unit.gather(1, index.reshape(B, -1)).reshape(index.shape) * self._bag_weight[hist]
        type_of = torch.repeat_interleave(torch.arange(K + 1),
                                          torch.tensor([*self._type_sizes, 1]))  # fmt: skip
        alpha = share.new_zeros(B, L, K + 1).scatter_add(2, type_of[index], share)[..., :K]
        weights["alpha"] = alpha.transpose(1, 2) * (hist != 0).unsqueeze(1)
        return weights

    def extra_repr(self) -> str:
        return f"aggregator={self.aggregator!r}, types={self.types}"
