"""HIEN: attribute trees, tree aggregators, hierarchical attention, HIEN on five base models."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from graphrec.datasets.synthetic_ctr import SYNTHETIC_TREES, synthetic_ctr
from graphrec.graphs.attribute_tree import (
    build_attribute_tree,
    movielens_ctr_trees,
    taobao_ctr_trees,
    tree_from_table,
)
from graphrec.metrics import auc
from graphrec.models.ctr import (
    DIN,
    LR,
    CTRFeatures,
    DCNv2,
    DeepFM,
    WideDeep,
    evaluate_ctr,
    train_ctr,
)
from graphrec.models.hien import HIEN, item_clickers
from graphrec.nn.hier_attention import HierarchicalIntentAttention
from graphrec.nn.tree_aggregation import TREE_AGGREGATORS, TreeAggregation

torch.set_num_threads(1)

BASES = {
    "lr": lambda f, extra: LR(f, 8, extra_fields=extra),
    "widedeep": lambda f, extra: WideDeep(f, 8, (16,), extra_fields=extra),
    "deepfm": lambda f, extra: DeepFM(f, 8, (16,), extra_fields=extra),
    "dcn": lambda f, extra: DCNv2(f, 8, 2, (16,), extra_fields=extra),
    "din": lambda f, extra: DIN(f, 8, (16,), attention_hidden=(8,), extra_fields=extra),
}


# ---------------------------------------------------------------- attribute trees


def _three_level_tree():
    """leaves 0..4 -> mid 0..2 -> root 0..1: mid0 <- {0, 1}, mid1 <- {2, 3, 4}, mid2 <- {};
    root0 <- {mid0, mid1}, root1 <- {mid2}."""
    return build_attribute_tree(
        "t",
        ["leaf", "mid", "root"],
        [5, 3, 2],
        [(np.array([0, 1, 2, 3, 4, 4]), np.array([0, 0, 1, 1, 1, 1])), ([0, 1, 2], [0, 0, 1])],
    )


def test_build_tree_levels_and_edges():
    tree = _three_level_tree()
    assert tree.ptr.tolist() == [0, 5, 8, 10]
    assert tree.sizes == [5, 3, 2] and tree.num_nodes == 10
    # the repeated pair (4, 1) is merged; global ids child -> parent
    assert tree.edge_index.tolist() == [[0, 1, 2, 3, 4, 5, 6, 7], [5, 5, 6, 6, 6, 8, 8, 9]]
    assert tree.level_edges(1).tolist() == [[0, 1, 2], [0, 0, 1]]
    data = tree.to_data()
    assert data.num_nodes == 10 and data.level.tolist() == [0] * 5 + [1] * 3 + [2] * 2
    leaf, anc, w = tree.ancestors(2)
    assert list(zip(leaf.long().tolist(), anc.long().tolist())) == [(i, 0) for i in range(5)]
    assert torch.allclose(w, torch.ones(5, dtype=torch.float64))
    with pytest.raises(ValueError, match="ids must be in"):
        build_attribute_tree("bad", ["a", "b"], [2, 2], [(np.array([0]), np.array([2]))])
    with pytest.raises(ValueError, match="at least two levels"):
        build_attribute_tree("bad", ["a"], [2], [])


def test_tree_from_table_multi_parent_and_derived():
    data = synthetic_ctr(num_users=20, num_items=30, impressions_per_user=6, seed=1)
    tables = [data.train, data.valid, data.test]
    tree = tree_from_table(tables, ["item", "campaign", "customer"])
    assert tree.levels == ("item", "campaign", "customer")
    child, parent = tree.level_edges(0)
    # each item in exactly one campaign, and the right one (code = id + 1)
    assert len(set(child.tolist())) == len(child)
    assert np.array_equal(data.item_attributes["campaign"][child - 1] + 1, parent.numpy())
    # a derived top level: campaign code parity
    tree2 = tree_from_table(
        tables, ["item", "cate"], derived=[("parity", lambda v: str(int(v) % 2))]
    )
    assert tree2.tables == ("item", "cate", None) and tree2.sizes[2] == 3
    c, p = tree2.level_edges(1)
    assert torch.equal(p, (c - 1) % 2 + 1)  # cate id = code - 1; "0" -> 1, "1" -> 2


def test_movielens_and_taobao_trees(shared_data):
    from graphrec.datasets import load_movielens100k, load_taobao_tiny
    from graphrec.models.ctr import movielens_ctr

    split = movielens_ctr(load_movielens100k(shared_data / "movielens" / "ml-100k"))
    tables = [split.train, split.valid, split.test]
    trees = movielens_ctr_trees(tables)
    year, genres = trees["item"]
    assert year.levels == ("item", "year", "decade") and genres.levels == ("item", "genres")
    c, p = year.level_edges(1)
    assert len(set(c.tolist())) == len(c)  # every year in one decade
    vocab = split.train.vocab["year"]
    year_of = {code: y for y, code in vocab.items()}
    decades = {}
    for yc, dc in zip(c.tolist(), p.tolist()):
        decades.setdefault(dc, set()).add(int(year_of[yc]) // 10 if int(year_of[yc]) > 0 else -1)
    assert all(len(v) == 1 for v in decades.values())
    # a movie with several genres: ancestors weigh them equally
    leaf, _, w = genres.ancestors(1)
    counts = torch.bincount(leaf.long())
    assert counts.max() > 1 and torch.allclose(w, 1.0 / counts[leaf.long()].double())
    assert [t.levels[-1] for t in trees["user"]] == ["age", "gender", "occupation", "zip_region"]

    tb = load_taobao_tiny(shared_data / "ctr" / "fuxictr_tiny_taobao")
    tt = taobao_ctr_trees([tb.train, tb.test])
    assert [t.name for t in tt["item"]] == ["campaign", "cate", "brand"]
    campaign = tt["item"][0]
    # campaign -> one customer; the sample itself lists a few ad groups under several
    # campaigns (e.g. 170301 under three), kept as multi-parent links
    child = campaign.level_edges(1)[0]
    assert len(set(child.tolist())) == len(child) > 0
    child = campaign.level_edges(0)[0]
    assert len(set(child.tolist())) >= 0.9 * len(child)

    # HIEN + DIN runs on both real datasets
    for tab, tr, item, user in (
        (split.train, trees, "item", "user"),
        (tb.train, tt, "adgroup_id", "userid"),
    ):
        feats = CTRFeatures.from_table(tab)
        torch.manual_seed(0)
        model = HIEN(
            BASES["din"](feats, 2), tr, item=item, user=user,
            clickers=item_clickers(tab, item=item, user=user, max_clickers=5),
        )  # fmt: skip
        batch = feats.batch(tab, np.arange(min(200, tab.num_rows)))
        logits = model(batch)
        assert logits.shape == (len(batch[item]),) and torch.isfinite(logits).all()
        logits.sum().backward()


# ---------------------------------------------------------------- tree aggregation


def _hand_step(mode, layer, x_child, x_parent, edges):
    """Loop-based reference of one aggregation step."""
    out = []
    lrelu = torch.nn.LeakyReLU(0.2)
    for p in range(x_parent.shape[0]):
        kids = [int(c) for c, q in zip(*edges.tolist()) if q == p]
        e_p = x_parent[p]
        n = len(kids)
        if mode == "gcn":
            s = e_p + sum((x_child[c] for c in kids), torch.zeros_like(e_p))
            out.append(lrelu(layer.lin.weight @ (s / (n + 1))))
        elif mode == "ngcf":
            w1, w2 = layer.lin.weight, layer.lin_prod.weight
            s = sum(
                (w1 @ x_child[c] + w2 @ (x_child[c] * e_p) for c in kids), torch.zeros_like(e_p)
            )
            out.append(lrelu(w1 @ e_p + (s / n**0.5 if n else s)))
        elif mode == "lightgcn":
            s = sum((x_child[c] for c in kids), torch.zeros_like(e_p))
            out.append(e_p + (s / n**0.5 if n else s))
        else:
            m = sum((x_child[c] for c in kids), torch.zeros_like(e_p)) / max(n, 1)
            out.append(layer.lin.weight @ torch.cat([e_p, m, e_p * m]))
    return torch.stack(out)


@pytest.mark.parametrize("mode", TREE_AGGREGATORS)
def test_tree_aggregation_matches_hand_computation(mode):
    torch.manual_seed(0)
    tree = _three_level_tree()
    d = 4
    x = [torch.randn(n, d, dtype=torch.float64) for n in tree.sizes]
    layers = [TreeAggregation(d, mode).double() for _ in range(2)]
    # bottom-up: refine mid from leaves, then root from the refined mid
    mid = layers[0](x[0], x[1], tree.level_edges(0))
    root = layers[1](mid, x[2], tree.level_edges(1))
    mid_ref = _hand_step(mode, layers[0], x[0], x[1], tree.level_edges(0))
    root_ref = _hand_step(mode, layers[1], mid_ref, x[2], tree.level_edges(1))
    assert mid.shape == (3, d) and root.shape == (2, d)
    assert torch.allclose(mid, mid_ref) and torch.allclose(root, root_ref)
    if mode == "lightgcn":  # fully by hand: mid0 = e + (l0 + l1)/sqrt2, root0 = e + (m0 + m1)/sqrt2
        m0 = x[1][0] + (x[0][0] + x[0][1]) / 2**0.5
        m1 = x[1][1] + (x[0][2] + x[0][3] + x[0][4]) / 3**0.5
        assert torch.allclose(root[0], x[2][0] + (m0 + m1) / 2**0.5)
        assert torch.allclose(root[1], x[2][1] + x[1][2])  # mid2 has no children
    x0 = x[0].clone().requires_grad_()
    layers[0](x0, x[1], tree.level_edges(0)).sum().backward()
    assert x0.grad is not None and torch.isfinite(x0.grad).all()
    with pytest.raises(ValueError, match="mode"):
        TreeAggregation(d, "mean")


@pytest.mark.parametrize("mode", TREE_AGGREGATORS)
def test_tree_aggregation_groups_equal_separate_steps(mode):
    # two trees stacked (children of tree 1 after tree 0's, parents likewise): one grouped
    # step equals each layer on its own tree
    torch.manual_seed(0)
    tree = _three_level_tree()
    d = 3
    layers = [TreeAggregation(d, mode).double() for _ in range(2)]
    kids = [torch.randn(5, d, dtype=torch.float64), torch.randn(3, d, dtype=torch.float64)]
    parents = [torch.randn(3, d, dtype=torch.float64), torch.randn(2, d, dtype=torch.float64)]
    edges = [tree.level_edges(0), tree.level_edges(1)]
    stacked = torch.cat([edges[0], edges[1] + torch.tensor([[5], [3]])], dim=1)
    deg = torch.cat([TreeAggregation.degree(e, len(p)) for e, p in zip(edges, parents)])
    group = torch.tensor([0, 0, 0, 1, 1])
    out = TreeAggregation.forward_groups(
        layers, torch.cat(kids), torch.cat(parents), stacked, deg.double(), group
    )
    ref = torch.cat([layer(k, p, e) for layer, k, p, e in zip(layers, kids, parents, edges)])
    torch.testing.assert_close(out, ref)


# ---------------------------------------------------------------- hierarchical attention


def test_hierarchical_attention_hand_case_and_padding():
    torch.manual_seed(0)
    B, K, L, d = 3, 2, 4, 5
    layer = HierarchicalIntentAttention(d, K).double()
    keys = torch.randn(B, K, L, d, dtype=torch.float64)
    target = torch.randn(B, K, d, dtype=torch.float64)
    ctx = torch.randn(B, d, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]], dtype=torch.bool)
    out = layer(keys, target, mask, ctx)
    assert out.intent.shape == (B, d) and out.alpha.shape == (B, K, L)
    assert out.beta.shape == (B, K) and out.per_type.shape == (B, K, d)
    assert torch.isfinite(out.intent).all()
    # padded positions: exactly zero; an empty history: all zero, zero per-type intent
    assert (out.alpha[0, :, 2:] == 0).all() and (out.alpha[2] == 0).all()
    assert torch.allclose(out.alpha[:2].sum(-1), torch.ones(2, K, dtype=torch.float64))
    assert (out.per_type[2] == 0).all()
    assert torch.allclose(out.beta.sum(-1), torch.ones(B, dtype=torch.float64))
    # by hand for sample 0: bilinear level 1, additive level 2
    b = 0
    h_types = []
    for k in range(K):
        q = torch.cat([target[b, k], ctx[b]]) @ layer.weight1[k] + layer.bias1[k]
        a = torch.softmax(torch.stack([keys[b, k, j] @ q / d**0.5 for j in range(2)]), 0)
        assert torch.allclose(out.alpha[b, k, :2], a)
        h_types.append(a[0] * keys[b, k, 0] + a[1] * keys[b, k, 1])
    s2 = torch.stack([layer.score2 @ torch.tanh(layer.lin2(h)) for h in h_types])
    beta = torch.softmax(s2, 0)
    assert torch.allclose(out.beta[b], beta)
    assert torch.allclose(out.intent[b], beta[0] * h_types[0] + beta[1] * h_types[1])
    # weighted keys: per type its own number of keys; 0/1 weights give forward's outputs, a
    # weight of 2 counts a key twice, a weight of 0 drops it
    tables = [torch.randn(4, d, dtype=torch.float64), torch.randn(3, d, dtype=torch.float64)]
    values = torch.tensor([[[1, 1, 0, 0], [2, 1, 0, 0]], [[1, 2, 3, 3], [1, 1, 2, 2]],
                           [[0, 0, 0, 0], [0, 0, 0, 0]]])  # [B, K, L]  # fmt: skip
    keys = torch.stack([tables[k][values[:, k]] for k in range(K)], dim=1)
    pos = layer(keys, target, values != 0, ctx)
    w = [(values[:, k] != 0).double() for k in range(K)]
    wk = layer.forward_weighted([keys[:, k] for k in range(K)], w, target, ctx)
    for a, b_ in zip(pos[:1] + pos[2:], wk[:1] + wk[2:]):
        assert torch.allclose(a, b_)
    assert torch.allclose(torch.stack(wk.alpha, 1), pos.alpha)
    # type 0 of sample 1 as three keys, the last one with weight 2 (positions 2 and 3 merged),
    # type 1 with a zero-weight extra key: the same intent
    merged = [torch.stack([tables[0][1], tables[0][2], tables[0][3]]).expand(B, 3, d),
              torch.cat([keys[:, 1], tables[1][:1].expand(B, 1, d)], 1)]  # fmt: skip
    mw = [torch.tensor([1.0, 1.0, 2.0], dtype=torch.float64).expand(B, 3),
          torch.cat([w[1], torch.zeros(B, 1, dtype=torch.float64)], 1)]  # fmt: skip
    m = layer.forward_weighted(merged, mw, target, ctx)
    assert torch.allclose(m.per_type[1], pos.per_type[1])
    assert torch.allclose(m.alpha[0][1, 2], pos.alpha[1, 0, 2:].sum()) and m.alpha[1][1, 4] == 0
    # an empty row (sample 2) with a large upstream gradient: finite gradients, same intent
    # without alpha
    tables = [t.float().requires_grad_() for t in tables]
    fl = layer.float()
    fkeys = [tables[k][values[:, k]] for k in range(K)]
    out = fl.forward_weighted(fkeys, [x.float() for x in w], target.float(), ctx.float(),
                              return_alpha=False)  # fmt: skip
    (out.per_type * 1e3).sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in tables) and out.alpha[0].shape == (B, 0)
    assert (out.per_type[2] == 0).all()
    torch.testing.assert_close(out.intent.double(), wk.intent, atol=1e-5, rtol=1e-5)
    # scores far beyond exp's float32 range (|s| ~ 1e4): still finite, the exact softmax
    big = [t.detach() * 100 for t in tables]
    keys_big = torch.stack([big[k][values[:, k]] for k in range(K)], dim=1)
    t_big, c_big = target.float() * 100, ctx.float()
    q_big = fl.query(t_big, c_big)
    assert max((q_big[:, k] @ big[k].T).abs().max() for k in range(K)) > 1e3  # exp(88) = inf
    pos_big = fl(keys_big, t_big, values != 0, c_big)
    w_big = fl.forward_weighted(list(keys_big.unbind(1)), [x.float() for x in w], t_big, c_big)
    assert torch.isfinite(w_big.intent).all()
    torch.testing.assert_close(w_big.per_type, pos_big.per_type, atol=1e-3, rtol=1e-4)
    layer.double()
    # without context (item intent)
    item_layer = HierarchicalIntentAttention(d, 1, context_channels=0).double()
    out1 = item_layer(keys[:, :1], target[:, :1], mask)
    assert torch.allclose(out1.beta, torch.ones(B, 1, dtype=torch.float64))


# ---------------------------------------------------------------- HIEN


@pytest.fixture(scope="module")
def small():
    data = synthetic_ctr(num_users=30, num_items=40, num_campaigns=10, num_customers=4,
                         num_cates=5, num_brands=6, impressions_per_user=10, seed=3)  # fmt: skip
    tables = [data.train, data.valid, data.test]
    trees = [tree_from_table(tables, list(levels)) for levels in SYNTHETIC_TREES]
    feats = CTRFeatures.from_table(data.train)
    clickers = item_clickers(data.train, item="item", user="user", max_clickers=4)
    return data, trees, feats, clickers


def test_item_clickers():
    from graphrec.io import CTRSchema, CTRTable

    schema = CTRSchema("y", categorical=["u", "i"])
    table = CTRTable(
        labels=np.array([1, 1, 0, 1, 1, 1], dtype=np.float32),
        categorical={"u": np.array([1, 2, 3, 1, 3, 0]), "i": np.array([1, 1, 1, 1, 2, 2])},
        numeric={}, sequence={}, sequence_lengths={},
        vocab={"u": {"a": 1, "b": 2, "c": 3}, "i": {"x": 1, "y": 2}}, schema=schema,
    )  # fmt: skip
    out = item_clickers(table, item="i", user="u", max_clickers=3)
    assert out.shape == (3, 3)
    assert sorted(out[1].tolist()) == [0, 1, 2] and out[2].tolist() == [3, 0, 0]
    assert out[0].tolist() == [0, 0, 0]
    assert (item_clickers(table, item="i", user="u", max_clickers=1)[1] > 0).all()


@pytest.mark.parametrize("name", list(BASES))
def test_hien_with_each_base_model_overfits(name, small):
    data, trees, feats, clickers = small
    torch.manual_seed(0)
    model = HIEN(BASES[name](feats, 2), trees, item="item", user="user", clickers=clickers)
    rows = np.arange(32)
    batch, labels = feats.batch(data.train, rows), feats.labels(data.train, rows)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    first = None
    for _ in range(150):
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(model(batch), labels)
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert loss.item() < 0.1 < first
    assert auc(labels, model(batch).detach()) == 1.0
    # the refined tables reach the base model, and every HIEN part gets a gradient
    opt.zero_grad()
    F.binary_cross_entropy_with_logits(model(batch), labels).backward()
    for part in (model.user_attention, model.item_attention, model.aggregators):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())


@pytest.mark.parametrize("aggregator", TREE_AGGREGATORS)
def test_hien_aggregators_and_attention_weights(aggregator, small):
    data, trees, feats, clickers = small
    torch.manual_seed(0)
    model = HIEN(BASES["din"](feats, 2), trees, item="item", user="user",
                 aggregator=aggregator, clickers=clickers)  # fmt: skip
    assert model.types == ["campaign", "customer", "cate", "brand"]
    batch = feats.batch(data.train, np.arange(64))
    w = model.attention_weights(batch)
    pad = batch["history"] == 0
    assert w["alpha"].shape == (64, 4, batch["history"].shape[1])
    assert (w["alpha"].transpose(1, 2)[pad] == 0).all()
    assert torch.allclose(w["beta"].sum(-1), torch.ones(64))
    # clickers: padding and the sample's own user get zero weight
    cl = clickers[batch["item"]]
    assert (w["gamma"][(cl == 0) | (cl == batch["user"][:, None])] == 0).all()
    assert torch.isfinite(model(batch)).all()


def test_hien_checks_and_serialization(small, tmp_path):
    data, trees, feats, clickers = small
    with pytest.raises(ValueError, match="extra_fields=2"):
        HIEN(BASES["deepfm"](feats, 0), trees, item="item", user="user", clickers=clickers)
    with pytest.raises(ValueError, match="leaves of table"):
        HIEN(BASES["deepfm"](feats, 1), [tree_from_table(data.train, ["cate", "brand"])],
             item="item", user="user")  # fmt: skip
    # without clickers: one extra field; trained weights round-trip through a file
    torch.manual_seed(0)
    model = HIEN(BASES["dcn"](feats, 1), {"item": trees}, item="item", user="user")
    train_ctr(model, data.train, data.valid, epochs=2, batch_size=64, lr=0.01)
    path = tmp_path / "hien.pt"
    torch.save(model.state_dict(), path)
    torch.manual_seed(1)
    again = HIEN(BASES["dcn"](feats, 1), {"item": trees}, item="item", user="user")
    again.load_state_dict(torch.load(path, weights_only=True))
    batch = feats.batch(data.test)
    model.eval()
    again.eval()
    assert torch.equal(model(batch), again(batch))
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    assert "clickers" not in model.state_dict()


# ---------------------------------------------------------------- synthetic planted preferences


def test_synthetic_generator_is_seeded_and_planted():
    a = synthetic_ctr(num_users=50, num_items=60, seed=7)
    b = synthetic_ctr(num_users=50, num_items=60, seed=7)
    c = synthetic_ctr(num_users=50, num_items=60, seed=8)
    assert np.array_equal(a.train.labels, b.train.labels)
    assert np.array_equal(a.train.sequence["history"], b.train.sequence["history"])
    assert not np.array_equal(a.train.categorical["item"], c.train.categorical["item"])
    t = a.train
    assert t.num_rows == 50 * 32 and a.valid.num_rows == a.test.num_rows == 50 * 4
    # clicks follow the planted preference
    cate = t.categorical["cate"] - 1
    liked = np.array([c in a.preferences[u] for u, c in zip(t.categorical["user"] - 1, cate)])
    assert t.labels[liked].mean() > 0.6 > 0.2 > t.labels[~liked].mean()
    # the campaign -> customer hierarchy is consistent
    camp, cust = t.categorical["campaign"], t.categorical["customer"]
    for code in np.unique(camp):
        assert len(np.unique(cust[camp == code])) == 1
    with pytest.raises(ValueError, match="planted"):
        synthetic_ctr(planted="price")


def test_hien_recovers_planted_type_and_improves_auc():
    data = synthetic_ctr(num_users=200, num_items=200, impressions_per_user=30, seed=0)
    tables = [data.train, data.valid, data.test]
    trees = [tree_from_table(tables, list(levels)) for levels in SYNTHETIC_TREES]
    feats = CTRFeatures.from_table(data.train)
    # small initial embeddings make both models start slowly: a fixed budget, no early stop
    fit = {"epochs": 12, "batch_size": 128, "lr": 0.01, "patience": 12}
    torch.manual_seed(0)
    base = DIN(feats, 8, (32, 16), attention_hidden=(16,), softmax=True)
    train_ctr(base, data.train, data.valid, **fit)
    torch.manual_seed(0)
    clickers = item_clickers(data.train, item="item", user="user", max_clickers=10)
    hien = HIEN(
        DIN(feats, 8, (32, 16), attention_hidden=(16,), softmax=True, extra_fields=2),
        trees, item="item", user="user", clickers=clickers,
    )  # fmt: skip
    train_ctr(hien, data.train, data.valid, **fit)
    auc_base = evaluate_ctr(base, data.test)["auc"]
    auc_hien = evaluate_ctr(hien, data.test)["auc"]
    batch = feats.batch(data.test)
    hien.eval()
    beta = hien.attention_weights(batch)["beta"]
    users = batch["user"]
    per_user = torch.zeros(int(users.max()) + 1, beta.shape[1]).index_add(0, users, beta)
    seen = torch.bincount(users) > 0
    top = per_user[seen].argmax(dim=1)
    share = (top == hien.types.index(data.planted)).float().mean().item()
    print(f"planted share {share:.3f}, test AUC base {auc_base:.4f}, HIEN {auc_hien:.4f}")
    assert share >= 0.9
    assert auc_hien > auc_base
