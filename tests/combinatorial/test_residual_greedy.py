"""Residual greedy (exact greedy after a given first pick), sampled reverse balls, and
FastCover's default at d >= 3: a sampled first pick, then residual greedy or the GNN pool."""

from __future__ import annotations

import doctest
import importlib

import numpy as np
import pytest
import scipy.sparse as sp

import combinatorial
import combinatorial.pruned as pruned
from combinatorial.baselines.greedy import max_cover
from combinatorial.closure import ball_sizes, sampled_reverse_balls
from combinatorial.graph import reach
from combinatorial.pruned import fastcover_greedy, residual_greedy
from graphrec.errors import ConfigError


def _random_adj(n: int, p: float, seed: int) -> sp.csr_array:
    rng = np.random.default_rng(seed)
    dense = rng.random((n, n)) < p
    np.fill_diagonal(dense, False)
    return sp.csr_array(dense.astype(np.int8))


def test_closure_doctests():  # combinatorial.pruned's run in test_pruned.py
    assert doctest.testmod(importlib.import_module("combinatorial.closure")).failed == 0


@pytest.mark.parametrize("d", [1, 2, 3])
def test_residual_greedy_after_greedys_first_pick_is_greedy(d):
    for seed in range(3):
        adj = _random_adj(120, 0.02, seed)
        for k in (2, 5, 17):
            ref = combinatorial.greedy(adj, k, d)
            sol = residual_greedy(adj, k, d, int(ref.seeds[0]))
            # same gains after the first pick, same tie-breaking (smallest id): the same picks
            assert sol.seeds.tolist() == ref.seeds.tolist()
            assert sol.covered == ref.covered == combinatorial.coverage(adj, sol.seeds, d)
            assert sol.info["first_covered"] == combinatorial.coverage(adj, ref.seeds[:1], d)
            assert sol.info["upper_bound"] >= ref.covered


def test_residual_bound_is_above_the_optimum_for_any_first_pick():
    adj = _random_adj(30, 0.08, 4)
    for d in (1, 2):
        for k in (2, 3):
            opt = combinatorial.ilp(adj, k, d).covered
            for first in (0, 7, 29):
                sol = residual_greedy(adj, k, d, first)
                assert sol.seeds[0] == first and len(set(sol.seeds.tolist())) == k
                assert sol.info["upper_bound"] >= opt >= sol.covered


def test_residual_entries_are_the_reverse_balls_of_the_uncovered_nodes():
    adj = _random_adj(60, 0.05, 5)
    n = adj.shape[0]
    sol = residual_greedy(adj, 3, 2, 0)
    covered = reach(adj, np.array([0]), 2, np.zeros(n, dtype=bool))
    left = np.setdiff1d(np.arange(n), covered)
    reverse = ball_sizes(sp.csr_array(adj.T), 2)
    assert sol.info["residual_entries"] == int(reverse[left].sum())


def test_residual_greedy_when_the_first_pick_covers_everything():
    # a star 0 -> 1..4: after 0 nothing is left; the other picks are the smallest unused ids
    adj = sp.csr_array(([1] * 4, ([0] * 4, [1, 2, 3, 4])), shape=(5, 5))
    sol = residual_greedy(adj, 3, 1, 0)
    assert sol.seeds.tolist() == [0, 1, 2] and sol.covered == 5
    full = residual_greedy(adj, 5, 1, 0)
    assert sorted(full.seeds.tolist()) == [0, 1, 2, 3, 4] and full.covered == 5
    with pytest.raises(ConfigError, match="first must be a node id"):
        residual_greedy(adj, 2, 1, 5)


def test_max_cover_never_picks_an_excluded_set():
    # elements 0, 1; set 0 covers both, set 1 covers 0, set 2 covers nothing
    coverers = sp.csr_array(([1, 1, 1], ([0, 0, 1], [0, 1, 0])), shape=(2, 3))
    members = {0: np.array([0, 1]), 1: np.array([0]), 2: np.array([], dtype=np.int64)}
    seeds, covered, _ = max_cover(coverers, members.__getitem__, 2)
    assert seeds.tolist() == [0, 1] and covered == 2
    seeds, covered, _ = max_cover(coverers, members.__getitem__, 2, exclude=np.array([0]))
    assert seeds.tolist() == [1, 2] and covered == 1


def test_sampled_reverse_balls_are_the_reverse_balls_and_estimate_the_ball_sizes():
    adj = _random_adj(50, 0.04, 6)
    n, d, samples = adj.shape[0], 2, 20_000
    H, draws = sampled_reverse_balls(adj, d, samples, 3)
    assert draws.sum() == samples and H.shape == (draws.size, n)
    targets = np.random.default_rng(3).integers(0, n, size=samples)
    assert np.array_equal(np.unique(targets, return_counts=True)[1], draws)
    mark, AT = np.zeros(n, dtype=bool), sp.csr_array(adj.T)
    for row, t in enumerate(np.unique(targets)):
        ball = reach(AT, np.array([t]), d, mark)
        mark[ball] = False
        assert sorted(H.indices[H.indptr[row] : H.indptr[row + 1]].tolist()) == sorted(ball)
    est = np.bincount(H.indices, np.repeat(draws, np.diff(H.indptr)), n) * n / samples
    true = ball_sizes(adj, d)
    sd = n * np.sqrt(true / n * (1 - true / n) / samples)
    assert np.all(np.abs(est - true) <= 5 * sd + 1e-9)


@pytest.fixture(scope="module")
def facebook():
    from graphrec.datasets import ego_facebook

    g = ego_facebook()
    return combinatorial.adjacency(g.data.edge_index, g.num_nodes)


def test_default_at_d3_samples_the_first_pick_and_runs_residual_greedy(facebook):
    calls = []
    for k in (1, 8):
        ref = combinatorial.greedy(facebook, k, 3)
        sol = fastcover_greedy(facebook, k, 3, lambda: calls.append(1))
        assert sol.seeds.tolist() == ref.seeds.tolist() and sol.covered == ref.covered
        assert sol.info["upper_bound"] >= ref.covered and not sol.info["certified"]
    assert sol.info["strategy"] == "residual greedy after a sampled first pick"
    assert sol.info["residual_entries"] > 0 and "first" in sol.timings
    assert not calls  # no forward pass


def test_default_at_d3_uses_the_gnn_pool_when_the_residual_is_large(facebook, monkeypatch):
    monkeypatch.setattr(pruned, "RESIDUAL_SHARE", 10**9)  # any residual is too large
    calls = []

    def score():
        calls.append(1)
        return ball_sizes(facebook, 3).astype(float)

    sol = fastcover_greedy(facebook, 8, 3, score)
    assert calls == [1] and sol.info["strategy"] == "pruned greedy, GNN ranking"
    one = fastcover_greedy(facebook, 1, 3, score)  # k = 1: the sampled first pick decides
    assert calls == [1] and one.info["strategy"] == "sampled first pick"


@pytest.mark.parametrize("d", [2, 3])
def test_sampled_first_pick_is_the_largest_ball_with_a_valid_bound(monkeypatch, d):
    monkeypatch.setattr(pruned, "CLOSURE_WALKS", 0)  # every closure counts as large
    for seed in range(4):
        adj = _random_adj(150, 0.015, 10 + seed)
        sizes = ball_sizes(adj, d)
        sol = fastcover_greedy(adj, 1, d, lambda: None)
        assert sol.info["strategy"] == "sampled first pick"
        assert sol.covered == sizes.max() == sizes[sol.seeds[0]]
        assert sol.info["upper_bound"] >= sizes.max()
        if sol.info["certified"]:  # then it is greedy's pick: the smallest id among the largest
            assert sol.seeds[0] == np.flatnonzero(sizes == sizes.max())[0]
