"""HIEN refines only the nodes a batch reads: marked in a mask, sorted, or the whole level."""

from __future__ import annotations

import numpy as np
import torch

from graphrec.datasets.synthetic_ctr import SYNTHETIC_TREES, synthetic_ctr
from graphrec.graphs.attribute_tree import tree_from_table
from graphrec.models import hien as hien_module
from graphrec.models.ctr import DIN, CTRFeatures
from graphrec.models.hien import HIEN

torch.set_num_threads(1)


def _model():
    data = synthetic_ctr(num_users=30, num_items=200, num_campaigns=120, num_customers=40,
                         num_cates=60, num_brands=90, impressions_per_user=10, seed=5)  # fmt: skip
    tables = [data.train, data.valid, data.test]
    trees = [tree_from_table(tables, list(levels)) for levels in SYNTHETIC_TREES]
    torch.manual_seed(0)
    base = DIN(CTRFeatures.from_table(data.train), 8, (16,), attention_hidden=(8,),
               extra_fields=1)  # fmt: skip
    model = HIEN(base, trees, item="item", user="user")
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    return data, model.eval()


def test_the_three_ways_to_find_the_needed_nodes():
    _, model = _model()
    level = model.levels["item0_campaign_1"]
    n = level.num_nodes
    codes = torch.tensor([7, 3, 7, 0, 50, 3])
    # few nodes per code: marked; the nodes sorted, a code's position by one gather
    nodes, locate = HIEN._needed_nodes(level, [codes, codes[:2]])
    assert nodes.tolist() == [0, 3, 7, 50]
    assert torch.equal(nodes[locate(codes)], codes)
    # many nodes per code: sorted (binary search)
    one = torch.tensor([9, 2, 9])
    assert n > hien_module._MARK_NODES_PER_CODE * one.numel()
    nodes, locate = HIEN._needed_nodes(level, [one])
    assert nodes.tolist() == [2, 9] and torch.equal(nodes[locate(one)], one)
    # every node read: the whole level, code = row
    every = torch.arange(n).flip(0)
    nodes, locate = HIEN._needed_nodes(level, [every])
    assert locate is None and torch.equal(nodes, torch.arange(n))
    nodes, locate = HIEN._needed_nodes(level, [])
    assert len(nodes) == 0


def test_partial_refinement_equals_the_whole_tables():
    """The rows a batch reads are those of refine_tables, whichever way its nodes are found."""
    data, model = _model()
    batch = model.base.features.batch(data.train, np.arange(64))
    items = batch["item"].unsqueeze(1)
    item_values = [model._type_values(k, items) for k in range(len(model._item_levels))]
    hist_values = [model._type_values(k, batch["history"]) for k in range(len(item_values))]
    with torch.no_grad():
        _, views = model.refine_tables()
        full = dict(zip(model._item_levels, views))
        rows, compact = model._refine_rows(batch, item_values, hist_values)
    kinds = set()
    for key, (v_h, _) in zip(model._item_levels, hist_values):
        nodes, _, locate = compact[key]
        kinds.add("whole" if locate is None else locate.func.__name__)
        assert len(nodes) <= model.levels[key].num_nodes
        torch.testing.assert_close(rows[key](v_h), full[key][v_h], rtol=1e-5, atol=1e-6)
    assert "_locate_mapped" in kinds  # at least one level only partly read, found by a mask
