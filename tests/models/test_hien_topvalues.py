"""HIEN's cap on the user intent's values per type (top-L by count, EmbeddingBag-style)."""

from __future__ import annotations

import pytest
import torch

from graphrec.datasets.synthetic_ctr import SYNTHETIC_TREES, synthetic_ctr
from graphrec.errors import ConfigError
from graphrec.graphs.attribute_tree import tree_from_table
from graphrec.models.ctr import DIN, CTRFeatures
from graphrec.models.hien import HIEN, _top_values

torch.set_num_threads(1)


def test_top_values_hand_case():
    values = torch.tensor([[5, 3, 5, 0, 3, 5, 0, 0, 0, 0], [2, 2, 2, 2, 7, 9, 0, 0, 0, 0]])
    weights = torch.tensor([[1.0, 0.5, 1.0, 0.0, 1.0, 0.5] + [0.0] * 4,
                            [1.0, 1.0, 1.0, 1.0, 0.5, 0.25] + [0.0] * 4])  # fmt: skip
    for num_values in (10, 100):  # dense counts (num_values <= keys), sorted keys
        top, counts, slot = _top_values(values, weights, 2, num_values, slots=True)
        assert top.tolist() == [[5, 3], [2, 7]]
        assert counts.tolist() == [[2.5, 1.5], [4.0, 0.5]]
        assert slot.tolist() == [[0, 1, 0, -1, 1, 0] + [-1] * 4, [0, 0, 0, 0, 1, -1] + [-1] * 4]


def test_top_values_shape_independent_of_history():
    """The keys the attention reads are [B, cap] whatever the history length."""
    gen = torch.Generator().manual_seed(0)
    for length in (50, 500):
        values = torch.randint(0, 10**6, (4, length), generator=gen)
        for num_values in (length, 10**6):
            top, counts, slot = _top_values(values % num_values, torch.ones(4, length), 32,
                                            num_values)  # fmt: skip
            assert top.shape == counts.shape == (4, 32) and slot is None


def test_top_values_sorted_path_matches_dense_counts():
    """Large vocabularies (one flat sort of the keys) count and place keys like the dense
    counts of the same values."""
    gen = torch.Generator().manual_seed(1)
    values = torch.randint(0, 12, (5, 40), generator=gen)
    weights = torch.randint(0, 3, (5, 40), generator=gen).float()  # integers: exact sums
    dense = torch.zeros(5, 12).scatter_add_(1, values, weights)
    top, counts, slot = _top_values(values, weights, 4, 10**6, slots=True)
    assert torch.equal(counts, dense.topk(4, dim=1).values)
    assert torch.equal(dense.gather(1, top), counts)
    kept = slot >= 0
    assert torch.equal(top.gather(1, slot.clamp(min=0))[kept], values[kept])
    for row in range(5):  # a dropped key's value is not among its row's top values
        assert not torch.isin(values[row][~kept[row]], top[row]).any()


def _model(features, trees, max_values: int) -> HIEN:
    torch.manual_seed(0)
    base = DIN(features, 8, (16,), attention_hidden=(8,), extra_fields=1)
    model = HIEN(base, trees, item="item", user="user", max_values=max_values)
    with torch.no_grad():  # trained-like scale
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    return model.eval()


def test_cap_equals_uncapped_when_no_user_exceeds_it():
    data = synthetic_ctr(num_users=30, num_items=60, num_campaigns=40, num_customers=4,
                         num_cates=30, num_brands=30, impressions_per_user=10, seed=3)  # fmt: skip
    tables = [data.train, data.valid, data.test]
    trees = [tree_from_table(tables, list(levels)) for levels in SYNTHETIC_TREES]
    features = CTRFeatures.from_table(data.train)
    batch = features.batch(data.train)
    hist = batch["history"]
    # the most distinct values (of any type) a sample's history holds: the cap keeps them all
    cap = max(len(set(row.tolist()) - {0}) for row in hist) + 1
    assert cap < hist.shape[1] and cap < min(t.sizes[1] for t in trees)  # the capped path runs
    full, capped = _model(features, trees, 10**6), _model(features, trees, cap)
    with torch.no_grad():
        torch.testing.assert_close(capped(batch), full(batch), atol=1e-6, rtol=0)
        got, want = capped.attention_weights(batch), full.attention_weights(batch)
    torch.testing.assert_close(got["alpha"], want["alpha"], atol=1e-6, rtol=0)
    torch.testing.assert_close(got["beta"], want["beta"], atol=1e-6, rtol=0)
    with pytest.raises(ConfigError, match="max_values"):
        _model(features, trees, 0)
