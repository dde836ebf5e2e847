"""HIEN's per-level modules, frozen tables and the upgrade of state dicts with the old keys."""

from __future__ import annotations

import pytest
import torch

from graphrec.datasets.synthetic_ctr import synthetic_ctr
from graphrec.graphs.attribute_tree import tree_from_table
from graphrec.models.ctr import LR, CTRFeatures
from graphrec.models.hien import HIEN, item_clickers
from graphrec.nn.tree_aggregation import TreeAggregation

torch.set_num_threads(1)

#: The state-dict keys of the model below as the code before the per-level modules saved them
#: (HIEN's own entries; each level's edges were a top-level buffer ``_edges_{level}``).
OLD_HIEN_KEYS = {
    "clickers", "_bag_index", "_bag_weight",
    "_edges_item0_campaign_1", "_edges_item0_campaign_2", "_edges_item1_cate_1",
    "_edges_item1_cate_2", "_edges_item2_brand_1",
}  # fmt: skip


@pytest.fixture(scope="module")
def parts():
    data = synthetic_ctr(num_users=30, num_items=40, num_campaigns=10, num_customers=4,
                         num_cates=5, num_brands=6, impressions_per_user=10, seed=3)  # fmt: skip
    tables = [data.train, data.valid, data.test]
    trees = [
        tree_from_table(tables, ["item", "campaign", "customer"]),
        # a level without a base table: HIEN's own table
        tree_from_table(tables, ["item", "cate"], derived=[("parity", lambda v: str(int(v) % 2))]),
        tree_from_table(tables, ["item", "brand"]),
    ]
    features = CTRFeatures.from_table(data.train)
    clickers = item_clickers(data.train, item="item", user="user", max_clickers=4)
    return data, trees, features, clickers


def _model(parts, seed: int = 0) -> HIEN:
    _, trees, features, clickers = parts
    torch.manual_seed(seed)
    base = LR(features, 8, extra_fields=2)
    model = HIEN(base, trees, item="item", user="user", clickers=clickers)
    with torch.no_grad():  # trained-like scale
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    return model.eval()


def test_levels_and_depth_steps(parts):
    model = _model(parts)
    assert list(model.levels) == [
        "item0_campaign_1", "item0_campaign_2", "item1_cate_1", "item1_cate_2", "item2_brand_1"
    ]  # fmt: skip
    own = model.levels["item1_cate_2"]
    assert (own.table, own.own) == ("item1_cate_parity", True)
    # cate code c (id c - 1) -> parity code (c - 1) % 2 + 1; code 0 has no children
    assert own.edge_index.tolist() == [[1, 2, 3, 4, 5], [1, 2, 1, 2, 1]]
    assert own.deg.squeeze(-1).tolist() == [0.0, 3.0, 2.0]
    for level in model.levels.values():  # deg counts the children of each node
        counts = torch.bincount(level.edge_index[1], minlength=level.num_nodes)
        assert torch.equal(level.deg.squeeze(-1), counts.float())

    one, two = model.depths
    assert (one.sources, one.members) == (["item"], ["item0_campaign_1", "item1_cate_1",
                                                     "item2_brand_1"])  # fmt: skip
    assert (two.sources, two.members) == (["item0_campaign_1", "item1_cate_1"],
                                          ["item0_campaign_2", "item1_cate_2"])  # fmt: skip
    # depth 2 stacks the parity level after the customers, and its children after campaigns
    campaigns = model.levels["item0_campaign_1"].num_nodes
    customers = model.levels["item0_campaign_2"].num_nodes
    assert two.edge_index[:, -5:].tolist() == [
        [campaigns + c for c in (1, 2, 3, 4, 5)], [customers + p for p in (1, 2, 1, 2, 1)]
    ]  # fmt: skip
    assert two.group.tolist() == [0] * customers + [1] * 3

    # the grouped steps equal each level's aggregator on its own tree
    out = model._aggregate()
    for key, level in model.levels.items():
        tree, lvl = key.rsplit("_", 1)
        below = model.base.embedding.table("item").weight if lvl == "1" else out[f"{tree}_1"]
        parent = model._weight(level.table, level.own)
        expected = model.aggregators[key](below, parent, level.edge_index)
        torch.testing.assert_close(out[key], expected, rtol=0, atol=1e-6)
    tables, views = model.refine_tables()
    assert list(tables) == ["campaign", "customer", "cate", "brand"]
    assert torch.equal(views[3], out["item1_cate_2"])
    assert model.types == ["campaign", "customer", "cate", "parity", "brand"]


def test_freeze_tables_serves_constants(parts, monkeypatch):
    data, _, features, _ = parts
    model = _model(parts)
    batch = features.batch(data.test)
    with torch.no_grad():
        live_tables, live_views = model.refine_tables()
        live = model(batch)
    keys = set(model.state_dict())
    assert model.freeze_tables() is model and model.tables_frozen
    assert set(model.state_dict()) == keys  # the frozen tables are not saved

    def no_aggregation(*args, **kwargs):
        raise AssertionError("tree aggregation ran on frozen tables")

    monkeypatch.setattr(TreeAggregation, "forward_groups", no_aggregation)
    tables, views = model.refine_tables()
    assert tables.keys() == live_tables.keys()
    assert all(torch.equal(tables[k], live_tables[k]) for k in tables)
    assert all(torch.equal(a, b) for a, b in zip(views, live_views))
    assert not any(t.requires_grad for t in views)
    with torch.no_grad():
        torch.testing.assert_close(model(batch), live, rtol=0, atol=1e-6)
        weights = model.attention_weights(batch)
    assert torch.allclose(weights["beta"].sum(-1), torch.ones(len(live)))
    monkeypatch.undo()

    assert model.unfreeze_tables() is model and not model.tables_frozen
    assert all(level.frozen is None for level in model.levels.values())
    with torch.no_grad():
        assert torch.equal(model(batch), live)
    model.train()
    model(batch).sum().backward()  # live again: the aggregators learn
    grads = [p.grad for p in model.aggregators.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_old_state_dict_loads(parts):
    """A state dict with the keys of the code before the per-level modules (built here by
    renaming ``levels.{level}.edge_index`` back to ``_edges_{level}``) loads strictly, and the
    loaded model gives the saved model's outputs bit for bit."""
    data, _, features, _ = parts
    saved = _model(parts, seed=0)
    old = {}
    for key, value in saved.state_dict().items():
        if key.startswith("levels."):
            key = "_edges_" + key.removeprefix("levels.").removesuffix(".edge_index")
        old[key] = value.clone()
    # the items' attribute values, saved before the sparse user intent (now derived)
    old["_bag_index"], old["_bag_weight"] = torch.zeros(40, 3, dtype=torch.long), torch.zeros(40, 3)
    submodules = ("base.", "aggregators.", "own_tables.", "user_attention.", "item_attention.")
    hien_keys = {k for k in old if not k.startswith(submodules)}
    assert hien_keys == OLD_HIEN_KEYS

    loaded = _model(parts, seed=1)
    for level in loaded.levels.values():  # the edges come from the file
        level.edge_index.zero_()
    assert loaded.load_state_dict(old, strict=True)
    assert OLD_HIEN_KEYS <= set(old)  # the caller's dict is not changed
    batch = features.batch(data.test)
    with torch.no_grad():
        assert torch.equal(loaded(batch), saved(batch))
    for key, level in loaded.levels.items():
        assert torch.equal(level.edge_index, saved.levels[key].edge_index)

    # under a parent module, the prefixed keys are upgraded too
    wrapper = torch.nn.ModuleDict({"hien": _model(parts, seed=2)})
    wrapper.load_state_dict({f"hien.{k}": v for k, v in old.items()})
    with torch.no_grad():
        assert torch.equal(wrapper["hien"](batch), saved(batch))
