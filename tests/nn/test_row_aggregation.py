"""graphrec.nn.RowAggregation: hand case, and equal to the index_add_ loop it replaced."""

from __future__ import annotations

import torch

from graphrec.graphs import DeviceCloudGraph
from graphrec.nn import RowAggregation


def test_hand_case():
    # device 0 updated rows 0 and 2, device 1 rows 2 and 3; weights 0.25 and 0.75; 5 rows
    rows = [torch.tensor([0, 2]), torch.tensor([2, 3])]
    edge_index = DeviceCloudGraph.update_edge_index(rows)
    assert edge_index.tolist() == [[0, 0, 1, 1], [0, 2, 2, 3]]
    deltas = torch.tensor([[4.0], [8.0], [-4.0], [2.0]], dtype=torch.float64)
    agg = RowAggregation()(deltas, edge_index, torch.tensor([0.25, 0.75]).double(), 5)
    assert agg.total.squeeze(-1).tolist() == [1.0, 0.0, 2.0 - 3.0, 1.5, 0.0]
    assert agg.weight.tolist() == [0.25, 0.0, 1.0, 0.75, 0.0]
    assert agg.count.tolist() == [1.0, 0.0, 2.0, 1.0, 0.0]
    assert DeviceCloudGraph.update_edge_index([]).shape == (2, 0)


def test_equals_index_add_loop_bit_for_bit():
    # the scatter mode adds each row's terms in edge (= device) order, like the loop
    g = torch.Generator().manual_seed(0)
    num_rows, dim = 30, 5
    rows = [torch.randperm(num_rows, generator=g)[: 4 + k] for k in range(12)]
    deltas = [torch.randn(len(r), dim, generator=g, dtype=torch.float64) * 1e3 for r in rows]
    w = torch.rand(len(rows), generator=g, dtype=torch.float64)
    acc = torch.zeros(num_rows, dim, dtype=torch.float64)
    wsum = torch.zeros(num_rows, dtype=torch.float64)
    for wi, r, d in zip(w, rows, deltas):
        acc.index_add_(0, r, wi * d)
        wsum.index_add_(0, r, wi.expand(len(r)))
    agg = RowAggregation()(torch.cat(deltas), DeviceCloudGraph.update_edge_index(rows), w, num_rows)
    assert torch.equal(agg.total, acc) and torch.equal(agg.weight, wsum)
