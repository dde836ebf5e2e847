"""HIEN's capped user-intent bags counted once per table (HIEN.features) instead of per step."""

from __future__ import annotations

import numpy as np
import torch

from graphrec.datasets.synthetic_ctr import SYNTHETIC_TREES, synthetic_ctr
from graphrec.graphs.attribute_tree import tree_from_table
from graphrec.models.ctr import DIN, CTRFeatures
from graphrec.models.hien import HIEN, _top_values

torch.set_num_threads(1)

CAP = 4


def _setup():
    data = synthetic_ctr(num_users=30, num_items=60, num_campaigns=20, num_customers=8,
                         num_cates=12, num_brands=15, impressions_per_user=10, seed=3)  # fmt: skip
    tables = [data.train, data.valid, data.test]
    trees = [tree_from_table(tables, list(levels)) for levels in SYNTHETIC_TREES]
    features = CTRFeatures.from_table(data.train)
    torch.manual_seed(0)
    base = DIN(features, 8, (16,), attention_hidden=(8,), extra_fields=1)
    model = HIEN(base, trees, item="item", user="user", max_values=CAP)
    with torch.no_grad():  # trained-like scale
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    return data, features, model.eval()


def test_bags_equal_the_per_step_count():
    data, features, model = _setup()
    rows = np.random.default_rng(0).permutation(data.train.num_rows)[:50]
    plain = features.batch(data.train, rows)
    cached = model.features.batch(data.train, rows)  # counts the whole table once
    assert model.features.batch(data.train, rows).keys() == cached.keys()
    for k, key in enumerate(model._item_levels):  # every type is capped here
        values, shares = model._type_values(k, plain["history"])
        n = model.levels[key].num_nodes
        top, counts, _ = _top_values(values, shares, CAP, n)
        names = model._bag_names(k)
        assert torch.equal(cached[names[0]], top) and torch.equal(cached[names[1]], counts)
        assert cached[names[0]].shape == (50, CAP)
    with torch.no_grad():  # the same logits with and without the precounted bags
        assert torch.equal(model(cached), model(plain))


def test_user_intent_does_not_read_the_history():
    """With the bags in the batch, the user intent's inputs are [B, cap] per type, whatever
    the history's length: changing the history column leaves the intent unchanged."""
    data, _, model = _setup()
    for max_len in (6, 40):
        batch = model.features.batch(data.train, np.arange(20), max_len=max_len)
        assert batch["history"].shape[1] == max_len
        assert all(batch[n].shape == (20, CAP) for k in range(4) for n in model._bag_names(k))
        with torch.no_grad():
            intent = model._run(batch, weights=False)[0].extra[:, 0]
            other = {**batch, "history": batch["history"].roll(1, 0)}  # other users' histories
            torch.testing.assert_close(model._run(other, weights=False)[0].extra[:, 0],
                                       intent, atol=0, rtol=0)  # fmt: skip
