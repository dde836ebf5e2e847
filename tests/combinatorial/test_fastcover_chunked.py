"""The chunked FastCover forward pass gives the unchunked logits bit for bit."""

import pytest
import torch

from combinatorial.gnn import FastCover
from combinatorial.gnn.inference import scores
from graphrec.datasets import powerlaw_digraph
from graphrec.errors import ConfigError
from graphrec.nn import GRATConv


@pytest.fixture(scope="module")
def graph() -> tuple[torch.Tensor, int]:
    """A small power-law digraph with its edges shuffled (row 0 unsorted)."""
    n = 500
    ei = powerlaw_digraph(n, 6, seed=1).edge_index
    perm = torch.randperm(ei.size(1), generator=torch.Generator().manual_seed(0))
    return ei[:, perm], n


@pytest.mark.parametrize("features", ["ones", "degree"])
def test_chunked_scores_equal_unchunked(graph, features):
    ei, n = graph
    torch.manual_seed(0)
    model = FastCover(features=features, in_channels=8, hidden_channels=8).eval()
    weight = (torch.arange(n) % 3 != 0).float()
    for target_weight in (None, weight):
        ref = scores(model, ei, n, target_weight=target_weight, chunk_edges=None)
        for chunk in (13, 1000, ei.size(1) - 1):
            got = scores(model, ei, n, target_weight=target_weight, chunk_edges=chunk)
            assert torch.equal(got, ref), (chunk, target_weight is None)


def test_layer_chunks_as_index_tensors(graph):
    ei, n = graph
    torch.manual_seed(1)
    conv = GRATConv(4, 3)
    x = torch.rand(n, 4)
    with torch.no_grad():
        ref = conv(x, ei)
        parts = list(torch.arange(ei.size(1)).split(123))
        assert torch.equal(conv(x, ei, chunks=parts), ref)
        assert torch.equal(conv(x, ei, chunks=[slice(0, ei.size(1))]), ref)


def test_progress_bar_over_chunks(graph, capsys):
    ei, n = graph
    torch.manual_seed(2)
    model = FastCover(in_channels=8, hidden_channels=8)
    logits = scores(model, ei, n, chunk_edges=500, progress=True)
    assert torch.equal(logits, scores(model, ei, n, chunk_edges=None))
    assert "scoring" in capsys.readouterr().err


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_chunk_edges_validated(graph, bad):
    ei, n = graph
    with pytest.raises(ConfigError, match="chunk_edges"):
        scores(FastCover(), ei, n, chunk_edges=bad)
