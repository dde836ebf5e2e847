"""HIEN's user-intent bags (capped, or every value once) counted once per table
(HIEN.features) instead of per step."""

from __future__ import annotations

import numpy as np
import torch

from graphrec.datasets.synthetic_ctr import SYNTHETIC_TREES, synthetic_ctr
from graphrec.graphs.attribute_tree import tree_from_table
from graphrec.models.ctr import DIN, CTRFeatures
from graphrec.models.hien import HIEN, _top_values

torch.set_num_threads(1)

CAP = 4


def _setup(max_values: int = CAP, max_history: int = 20):
    data = synthetic_ctr(num_users=30, num_items=60, num_campaigns=20, num_customers=8,
                         num_cates=12, num_brands=15, impressions_per_user=10,
                         max_history=max_history, seed=3)  # fmt: skip
    tables = [data.train, data.valid, data.test]
    trees = [tree_from_table(tables, list(levels)) for levels in SYNTHETIC_TREES]
    features = CTRFeatures.from_table(data.train)
    torch.manual_seed(0)
    base = DIN(features, 8, (16,), attention_hidden=(8,), extra_fields=1)
    model = HIEN(base, trees, item="item", user="user", max_values=max_values)
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
    with torch.no_grad():  # the same logits with and without the precounted bags (a step
        # reads its batch's widest bag only: fewer padded keys, float rounding)
        torch.testing.assert_close(model(cached), model(plain), rtol=1e-6, atol=1e-6)


def test_user_intent_does_not_read_the_history():
    """With the bags in the batch, the user intent's inputs are [B, cap] per type, whatever
    the history's length: changing the history column leaves the intent unchanged."""
    data, _, model = _setup()
    for max_len in (6, 40):
        batch = model.features.batch(data.train, np.arange(20), max_len=max_len)
        assert batch["history"].shape[1] == max_len
        widths = [batch[n].shape[1] for k in range(4) for n in model._bag_names(k)]
        assert all(batch[n].shape[0] == 20 for k in range(4) for n in model._bag_names(k))
        assert 1 <= min(widths) and max(widths) <= CAP  # at most the cap, whatever max_len
        with torch.no_grad():
            intent = model._run(batch, weights=False)[0].extra[:, 0]
            other = {**batch, "history": batch["history"].roll(1, 0)}  # other users' histories
            torch.testing.assert_close(model._run(other, weights=False)[0].extra[:, 0],
                                       intent, atol=0, rtol=0)  # fmt: skip


def test_uncapped_bags_hold_each_value_once_with_its_count():
    """No type is capped (12 keys per sample, cap 64), yet types whose values repeat within a
    history get bags: one column per distinct value, its count as the weight."""
    data, features, model = _setup(max_values=64, max_history=12)  # nothing capped
    rows = np.arange(40)
    plain, cached = features.batch(data.train, rows), model.features.batch(data.train, rows)
    bagged = [k for k in range(4) if model._bag_names(k)[0] in cached]
    assert bagged  # 12 clicks over 8 customers must repeat a value
    for k in bagged:
        values, shares = model._type_values(k, plain["history"])
        bag_v, bag_c = (cached[n] for n in model._bag_names(k))
        assert bag_v.shape[1] < values.shape[1]  # fewer keys than positions
        for r in range(len(rows)):
            want: dict[int, float] = {}
            for v, w in zip(values[r].tolist(), shares[r].tolist()):
                if w > 0:
                    want[v] = want.get(v, 0.0) + w
            got = {v: c for v, c in zip(bag_v[r].tolist(), bag_c[r].tolist()) if c > 0}
            assert got.keys() == want.keys()
            assert all(abs(got[v] - want[v]) < 1e-6 for v in want)
            assert bag_c[r].tolist() == sorted(bag_c[r].tolist(), reverse=True)
    with torch.no_grad():  # the same logits as one key per position (float rounding)
        torch.testing.assert_close(model(cached), model(plain), rtol=1e-5, atol=1e-6)
    # a batch of rows with narrow bags reads only its own widest bag: same logits again
    narrow = {name: col[:5] for name, col in cached.items()}
    with torch.no_grad():
        torch.testing.assert_close(model(narrow), model(cached)[:5], rtol=1e-5, atol=1e-6)
