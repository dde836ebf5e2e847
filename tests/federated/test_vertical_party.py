"""The party graph of vertical FL: nodes, links, bytes per batch, validation."""

from __future__ import annotations

import pytest
import torch

from graphrec.errors import ConfigError
from graphrec.graphs import PartyGraph


def test_links_and_bytes_concat():
    g = PartyGraph({"bank": 10, "shop": 4, "app": 3}, {"bank": 8, "shop": 4, "app": 2}, "bank")
    assert g.parties == g.nodes == ["bank", "shop", "app"]
    assert g.top_in_channels == 14
    got = [(x.sender, x.receiver, x.kind, x.bytes_per_batch(5)) for x in g.links()]
    assert got == [
        ("bank", "shop", "batch", 5 * 8),
        ("shop", "bank", "embedding", 5 * 4 * 4),
        ("bank", "shop", "gradient", 5 * 4 * 4),
        ("bank", "app", "batch", 5 * 8),
        ("app", "bank", "embedding", 5 * 2 * 4),
        ("bank", "app", "gradient", 5 * 2 * 4),
    ]
    assert g.bytes_per_batch(5) == 2 * 5 * 8 + 2 * 5 * 6 * 4


def test_label_only_node_sum_and_pyg_form():
    g = PartyGraph({"a": 3, "b": 5}, 4, "server", combine="sum", dtype=torch.float64)
    assert g.nodes == ["a", "b", "server"] and g.top_in_channels == 4
    data = g.to_data(batch_size=2)
    assert data.num_nodes == 3 and data.node_names == ["a", "b", "server"]
    assert data.edge_index.tolist() == [[2, 0, 2, 2, 1, 2], [0, 2, 0, 1, 2, 1]]
    assert data.edge_kind.tolist() == [0, 1, 2, 0, 1, 2]
    assert data.edge_bytes.tolist() == [2 * 8, 2 * 4 * 8, 2 * 4 * 8] * 2
    assert data.feature_width.tolist() == [3, 5, 0]
    assert data.is_label_owner.tolist() == [False, False, True]


def test_single_party_has_no_links():
    g = PartyGraph({"bank": 3}, 2, "bank")
    assert g.links() == [] and g.to_data(4).edge_index.shape == (2, 0)


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (({}, 2, "a"), {}, "num_features"),
        (({"a": 0, "b": 2}, 2, "b"), {}, r"num_features\['a'\]"),
        (({"a": 2, "b": -1}, 2, "a"), {}, r"num_features\['b'\]"),
        (({"a": 2}, {"a": 2, "b": 1}, "a"), {}, "embedding_dim must name"),
        (({"a": 2}, {"a": 0}, "a"), {}, r"embedding_dim\['a'\]"),
        (({"a": 2}, 2, ""), {}, "label_owner"),
        (({"a": 2}, 2, "a"), {"combine": "max"}, "combine"),
        (({"a": 2, "b": 2}, {"a": 2, "b": 3}, "a"), {"combine": "sum"}, "combine='sum'"),
        (({"a": 2}, 2, "a"), {"dtype": torch.int64}, "dtype"),
    ],
)
def test_invalid_arguments(args, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        PartyGraph(*args, **kwargs)


def test_bad_batch_size():
    with pytest.raises(ConfigError, match="batch_size"):
        PartyGraph({"a": 2, "b": 2}, 2, "a").bytes_per_batch(0)


def test_doctests():
    import doctest

    from graphrec.graphs import party

    assert doctest.testmod(party).failed == 0
