"""HIEN's sparse user intent (against dense bags), the plug choice, LR and the large generator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from graphrec.datasets.synthetic_ctr import SYNTHETIC_TREES, synthetic_ctr
from graphrec.errors import ConfigError
from graphrec.graphs.attribute_tree import tree_from_table
from graphrec.models.ctr import DIN, LR, CTRFeatures
from graphrec.models.hien import HIEN, item_clickers

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def parts():
    data = synthetic_ctr(num_users=30, num_items=40, num_campaigns=10, num_customers=4,
                         num_cates=5, num_brands=6, impressions_per_user=10, seed=3)  # fmt: skip
    tables = [data.train, data.valid, data.test]
    trees = [
        tree_from_table(tables, ["item", "campaign", "customer"]),
        tree_from_table(tables, ["item", "cate"], derived=[("parity", lambda v: str(int(v) % 2))]),
        tree_from_table(tables, ["item", "brand"]),
    ]
    features = CTRFeatures.from_table(data.train)
    clickers = item_clickers(data.train, item="item", user="user", max_clickers=4)
    return data, trees, features, clickers


def _hien(parts, plug: str = "append", seed: int = 0) -> HIEN:
    _, trees, features, clickers = parts
    torch.manual_seed(seed)
    base = DIN(features, 8, (16,), attention_hidden=(8,),
               extra_fields=HIEN.num_extra_fields(True, plug))  # fmt: skip
    model = HIEN(base, trees, item="item", user="user", clickers=clickers, plug=plug)
    with torch.no_grad():  # trained-like scale
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    return model.eval()


def test_sparse_user_intent_equals_dense_bags(parts):
    """alpha from the sparse keys equals the dense-bag form written out by hand: per type, a
    softmax over the vocabulary weighted by each value's count in the history."""
    data, trees, features, _ = parts
    model = _hien(parts).double()
    batch = features.batch(data.test)
    hist, item = batch["history"], batch["item"]
    with torch.no_grad():
        got = model.attention_weights(batch)
        tables, views = model.refine_tables()
        context = model.base.embed(batch, tables=tables).fields[:, model._user_field]
        types = [(tree, lvl) for tree in trees for lvl in range(1, tree.num_levels)]
        # dense [n_items, N_k] share matrices from the trees
        shares = []
        for tree, lvl in types:
            leaf, anc, w = tree.ancestors(lvl)
            dense = torch.zeros(tree.sizes[0], tree.sizes[lvl], dtype=torch.float64)
            dense.index_put_((leaf.long(), anc.long()), w.double(), accumulate=True)
            dense[0] = 0.0
            shares.append(dense)
        target = torch.stack([s[item] @ v for s, v in zip(shares, views)], dim=1)
        q = model.user_attention.query(target, context)  # [B, K, d]
        for k, (s, v) in enumerate(zip(shares, views)):
            score = torch.exp(q[:, k] @ v.T)  # [B, N_k]
            counts = s[hist].sum(1)  # [B, N_k] the dense bag
            z = (counts * score).sum(-1, keepdim=True)
            want = (s[hist] * score.unsqueeze(1)).sum(-1) / z  # [B, L] per position
            torch.testing.assert_close(got["alpha"][:, k], want * (hist != 0))
    assert len(types) == len(model.types) == 5
    # a training forward reads small types as bags of shared keys: the same logits
    with torch.no_grad():
        bags = model(batch)
        per_position = model.base.interact(model._run(batch, weights=True)[0])
    torch.testing.assert_close(bags, per_position)


def test_plug_add_adds_the_intents_to_the_user_and_item_fields(parts):
    data, _, features, _ = parts
    model = _hien(parts, plug="add")
    assert model.base.extra_fields == 0 and model.plug == "add"
    batch = features.batch(data.test)
    with torch.no_grad():
        emb, _ = model._run(batch, weights=False)
        plain = model.base.embed(batch, tables=model.refine_tables()[0])
    assert emb.extra is None and emb.fields.shape == plain.fields.shape
    delta = emb.fields - plain.fields
    others = [f for f in range(delta.shape[1]) if f not in (model._user_field, model._item_field)]
    assert delta[:, others].abs().max() < 1e-6  # the rest: the refined embeddings
    assert (
        delta[:, model._user_field].abs().sum() > 0 and delta[:, model._item_field].abs().sum() > 0
    )
    model.train()
    model(batch).sum().backward()
    assert model.user_attention.weight1.grad.abs().sum() > 0
    assert model.item_attention.weight1.grad.abs().sum() > 0


def test_invalid_plug_and_lr_with_scalar_weights(parts):
    _, trees, features, clickers = parts
    with pytest.raises(ConfigError, match="plug"):
        HIEN(DIN(features, 8, extra_fields=2), trees, item="item", user="user",
             clickers=clickers, plug="concat")  # fmt: skip
    with pytest.raises(ConfigError, match="extra_fields=0"):
        HIEN(DIN(features, 8, extra_fields=2), trees, item="item", user="user",
             clickers=clickers, plug="add")  # fmt: skip
    with pytest.raises(ConfigError, match="needs user"):
        HIEN(DIN(features, 8), trees, item="item", plug="add")
    with pytest.raises(ConfigError, match=r"LR has embedding_dim=1"):
        HIEN(LR(features, extra_fields=2), trees, item="item", user="user", clickers=clickers)
    model = HIEN(LR(features, 16, extra_fields=2), trees, item="item", user="user",
                 clickers=clickers)  # fmt: skip
    assert model(features.batch(parts[0].test)).shape == (parts[0].test.num_rows,)


def test_generator_large_vocabularies_and_planted_type():
    n = 100_000
    data = synthetic_ctr(num_users=60, num_items=300, num_campaigns=n, num_customers=n,
                         num_cates=n, num_brands=n, value_skew=1.1, impressions_per_user=20,
                         seed=1)  # fmt: skip
    for col in ("campaign", "customer", "cate", "brand"):
        assert data.train.vocab_size(col) == n + 1
    cate = data.item_attributes["cate"]
    assert np.bincount(cate).max() >= 20  # skewed: head values shared by many items
    assert np.isin(data.preferences, cate).all()  # preferred values are held by items
    # clicks follow the planted type: preferred-cate impressions are clicked far more often
    rows = data.train
    users, items = rows.categorical["user"] - 1, rows.categorical["item"] - 1
    liked = (cate[items][:, None] == data.preferences[users]).any(1)
    assert rows.labels[liked].mean() > rows.labels[~liked].mean() + 0.4
    # the same seed gives the same data; the default (uniform) draw is unchanged by the option
    again = synthetic_ctr(num_users=60, num_items=300, num_campaigns=n, num_customers=n,
                          num_cates=n, num_brands=n, value_skew=1.1, impressions_per_user=20,
                          seed=1)  # fmt: skip
    assert np.array_equal(again.train.labels, rows.labels)
    with pytest.raises(ConfigError, match="value_skew"):
        synthetic_ctr(value_skew=-1.0)
    assert len(SYNTHETIC_TREES) == 3
