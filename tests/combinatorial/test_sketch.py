"""HyperLogLog ball-size sketches and the ``"sketch"`` input features of FastCover."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from combinatorial import adjacency, ball_sizes
from combinatorial.gnn.model import FastCover, node_features
from combinatorial.gnn.train import monotone_init_
from combinatorial.sketch import ball_size_sketch, hll_estimate
from graphrec.errors import ConfigError


def _random_graph(n: int, m: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(2, m))


def test_estimates_within_hll_error_of_exact_ball_sizes():
    n, registers = 3000, 64
    A = adjacency(_random_graph(n, 4 * n), n)
    est = ball_size_sketch(A, 3, registers=registers, seed=1)
    bound = 1.04 / np.sqrt(registers)
    for hop in (1, 2, 3):
        exact = ball_sizes(A, hop)
        rel = (est[:, hop - 1] - exact) / exact
        assert np.sqrt(np.mean(rel**2)) < 1.5 * bound, hop  # RMS error of the HLL estimator
        assert abs(np.mean(rel)) < 0.5 * bound, hop  # no systematic bias
    # ball sizes grow with the hops, and so do the sketches (per-register maxima)
    assert (np.diff(est, axis=1) >= 0).all()


def test_deterministic_and_hand_cases():
    A = adjacency(_random_graph(200, 600), 200)
    a, b = ball_size_sketch(A, 2, seed=3), ball_size_sketch(A, 2, seed=3)
    assert np.array_equal(a, b) and not np.array_equal(a, ball_size_sketch(A, 2, seed=4))
    # isolated nodes: every ball is the node itself; linear counting gives r log(r / (r - 1))
    lone = ball_size_sketch(adjacency(np.zeros((2, 0), dtype=np.int64), 5), 1, registers=16)
    np.testing.assert_allclose(lone[:, 0], 16 * np.log(16 / 15))
    # an empty sketch estimates 0; a full one follows the raw HLL formula
    assert hll_estimate(np.zeros((1, 16), dtype=np.uint8))[0] == 0.0
    full = np.full((1, 16), 5, dtype=np.uint8)
    alpha = 0.7213 / (1 + 1.079 / 16)
    np.testing.assert_allclose(hll_estimate(full), alpha * 16 * 16 / (16 * 2.0**-5))


@pytest.mark.parametrize(("hops", "registers"), [(0, 64), (1, 8), (1, 48)])
def test_invalid_arguments(hops, registers):
    A = adjacency(_random_graph(10, 20), 10)
    with pytest.raises(ConfigError, match="hops" if hops < 1 else "registers"):
        ball_size_sketch(A, hops, registers=registers)


def test_sketch_features_extend_degree_features():
    n = 300
    edge_index = torch.from_numpy(_random_graph(n, 900))
    degree = node_features(edge_index, n, "degree")
    sketch = node_features(edge_index, n, "sketch")
    assert sketch.shape == (n, 5) and sketch.dtype == degree.dtype
    assert torch.equal(sketch[:, :3], degree)
    balls = ball_size_sketch(adjacency(edge_index, n), 3)
    torch.testing.assert_close(sketch[:, 3:], torch.from_numpy(np.log(balls[:, 1:])).float())
    model = FastCover(features="sketch")
    assert model.convs[0].in_channels == 5 and model(edge_index, n).shape == (n,)


def test_monotone_init_starts_a_sketch_model_as_a_degree_model():
    n = 300
    edge_index = torch.from_numpy(_random_graph(n, 900, seed=2))
    torch.manual_seed(0)
    model = FastCover(features="sketch")
    monotone_init_(model, 3)
    ref = FastCover(features="degree")
    state = dict(model.state_dict())
    state["convs.0.lin.weight"] = state["convs.0.lin.weight"][:, :3]
    att = state["convs.0.att"]
    state["convs.0.att"] = torch.cat([att[:3], att[5:8]])
    ref.load_state_dict(state)
    assert (model.convs[0].lin.weight[:, 3:] == 0).all() and (att[3:5] == 0).all()
    assert (att[8:] == 0).all()
    torch.testing.assert_close(model(edge_index, n), ref(edge_index, n))
