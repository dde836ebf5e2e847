"""Distributed FastCover scoring and RIS sampling: 2 local gloo workers = one process."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from combinatorial.coverage import covered_mask
from combinatorial.distributed import (
    distributed_fastcover,
    distributed_ris,
    distributed_scores,
    halo_mask,
    partitioned_ris,
    partitioned_scores,
    rank_reverse_balls,
    rank_scores,
    ris_targets,
    select_seeds,
)
from combinatorial.gnn import FastCover, fastcover_seeds, load_pretrained, scores
from combinatorial.graph import adjacency
from combinatorial.pruned import fastcover_greedy
from graphrec.datasets import powerlaw_digraph
from graphrec.errors import ConfigError

N = 3000


@pytest.fixture(scope="module")
def graph():
    # mean degree 1.5: halos are proper subsets of the graph (at degree 10 they are all of it)
    edge_index = powerlaw_digraph(N, 1.5, seed=0).edge_index
    return edge_index, adjacency(edge_index, N)


def test_halo_mask_hand_case():
    # 0 -> 1 <- 2 <- 3, 4 -> 5: the logit of 0 reads 1 (its successor) and 2 (1's other coverer)
    adj = adjacency(np.array([[0, 2, 3, 4], [1, 1, 2, 5]]), 6)
    owned = np.array([True, False, False, False, False, False])
    assert np.flatnonzero(halo_mask(adj, owned, 1)).tolist() == [0, 1, 2]
    assert np.flatnonzero(halo_mask(adj, owned, 2)).tolist() == [0, 1, 2]
    # degree features also need the in-degree of 2, hence its coverer 3
    assert np.flatnonzero(halo_mask(adj, owned, 2, 1)).tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("d", [1, 3])
def test_rank_scores_in_process(graph, d):
    edge_index, adj = graph
    model = load_pretrained(d)
    parts = [rank_scores(model, edge_index, N, r, 3, adj=adj) for r in range(3)]
    assert all(stats["halo_nodes"] < N for _, stats in parts)
    assert torch.equal(torch.cat([p for p, _ in parts]), scores(model, edge_index, N))


def test_rank_scores_constant_features():
    # "ones" features need no extra halo step
    torch.manual_seed(0)
    model = FastCover(features="ones", in_channels=4, hidden_channels=4).eval()
    edge_index = powerlaw_digraph(500, 1.2, seed=1).edge_index
    got = torch.cat([rank_scores(model, edge_index, 500, r, 4)[0] for r in range(4)])
    assert torch.equal(got, scores(model, edge_index, 500))


def test_two_workers_scores_and_seeds_equal_one_process(graph):
    edge_index, adj = graph
    logits, stats = distributed_scores(edge_index, N, 2, workers=2)
    assert [s["owned"] for s in stats] == [N // 2, N // 2]
    assert all(s["halo_nodes"] < N for s in stats)
    assert torch.equal(logits, scores(load_pretrained(2), edge_index, N))
    for k in (1, 10, 100):
        assert select_seeds(lambda: logits, adj, k, 2, one_pass=True).seeds.tolist() == (
            fastcover_seeds(edge_index, N, k, 2).tolist()
        )
    ref = scores(load_pretrained(2), edge_index, N).numpy()
    for candidates in (None, 8):  # the default method (automatic pool) and a fixed pool
        one = fastcover_greedy(adj, 10, 2, lambda: ref, candidates=candidates)
        two = select_seeds(lambda: logits, adj, 10, 2, candidates=candidates)
        assert two.seeds.tolist() == one.seeds.tolist()
        assert two.info["strategy"] == one.info["strategy"]


def test_two_workers_edge_split_equal_one_process_to_rounding(graph):
    edge_index, adj = graph
    logits, stats = distributed_scores(edge_index, N, 3, workers=2, split="edges")
    assert sum(s["edges"] for s in stats) == edge_index.size(1)
    ref = scores(load_pretrained(3), edge_index, N)
    torch.testing.assert_close(logits, ref, rtol=1e-5, atol=1e-6)
    for k in (1, 10, 100):
        assert select_seeds(lambda: logits, adj, k, 3, one_pass=True).seeds.tolist() == (
            fastcover_seeds(edge_index, N, k, 3).tolist()
        )


def test_one_process_edge_split_is_the_forward(graph):
    edge_index, _ = graph
    model = load_pretrained(2)
    logits, stats = partitioned_scores(model, edge_index, N, split="edges")
    assert torch.equal(logits, scores(model, edge_index, N))
    assert stats == [{"owned": N, "edges": edge_index.size(1)}]


def test_two_workers_fastcover_solution(graph):
    edge_index, adj = graph
    sol = distributed_fastcover(edge_index, N, 10, 1, workers=2, one_pass=True)
    assert sol.seeds.tolist() == fastcover_seeds(edge_index, N, 10, 1).tolist()
    assert sol.covered == int(covered_mask(adj, sol.seeds, 1).sum())
    assert sol.info["workers"] == 2 and len(sol.info["ranks"]) == 2


def test_two_workers_ris_equal_one_process(graph):
    _, adj = graph
    one = partitioned_ris(adj, 10, 2, samples=2000, seed=3)
    two = distributed_ris(adj, 10, 2, samples=2000, seed=3, workers=2)
    assert two.seeds.tolist() == one.seeds.tolist()
    assert two.covered == one.covered == int(covered_mask(adj, one.seeds, 2).sum())
    assert two.info["workers"] == 2 and one.info["workers"] == 1


def test_reverse_ball_blocks_concatenate_to_one_block(graph):
    _, adj = graph
    targets, mult = ris_targets(N, 500, 0)
    assert mult.sum() == 500 and np.all(np.diff(targets) > 0)
    whole = rank_reverse_balls(adj, targets, 2, 0, 1)
    blocks = sp.vstack([rank_reverse_balls(adj, targets, 2, r, 3) for r in range(3)], format="csr")
    assert (whole != blocks).nnz == 0
    # row i is the reverse 2-ball of targets[i]
    i = int(np.argmax(np.diff(whole.indptr)))
    ball = covered_mask(sp.csr_array(adj.T), np.array([targets[i]]), 2)
    assert np.sort(whole[[i]].indices).tolist() == np.flatnonzero(ball).tolist()


def test_bad_arguments(graph):
    edge_index, adj = graph
    with pytest.raises(ConfigError, match="workers"):
        distributed_scores(edge_index, N, 2, workers=0)
    with pytest.raises(ConfigError, match="split"):
        distributed_scores(edge_index, N, 2, split="nodes")
    with pytest.raises(ConfigError, match="samples"):
        distributed_ris(adj, 10, 2, samples=0)
    model = FastCover()
    model.features = "sketch"
    with pytest.raises(ConfigError, match="features"):
        distributed_scores(edge_index, N, 2, model=model)


def test_inside_an_existing_process_group(graph, tmp_path):
    edge_index, adj = graph
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        with pytest.raises(ConfigError, match="already initialised"):
            distributed_scores(edge_index, N, 2, workers=2)
        logits, _ = partitioned_scores(load_pretrained(2), edge_index, N)
        assert torch.equal(logits, scores(load_pretrained(2), edge_index, N))
        sol = partitioned_ris(adj, 5, 2, samples=300)
        assert sol.seeds.tolist() == partitioned_ris(adj, 5, 2, samples=300).seeds.tolist()
    finally:
        torch.distributed.destroy_process_group()
