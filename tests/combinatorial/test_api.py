"""``combinatorial.fastcover`` / ``solve``: every input type, every method, and bad input."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch_geometric.data import Data

import combinatorial
from combinatorial.api import solve
from graphrec.errors import InputFormatError
from graphrec.registry import SOLVERS

# A small directed graph: 0 covers 1..4, 4 covers 5, 5 covers 6, 7 is isolated.
EDGES = [(0, 1), (0, 2), (0, 3), (0, 4), (4, 5), (5, 6)]


def _inputs(tmp_path):
    path = tmp_path / "g.txt"
    path.write_text("# u covers v\n" + "".join(f"{u} {v}\n" for u, v in EDGES) + "7 7\n")
    ei = torch.tensor(EDGES, dtype=torch.long).t()
    data = Data(edge_index=ei, num_nodes=8)
    G = nx.DiGraph(EDGES)
    G.add_node(7)
    A = sp.csr_array((np.ones(len(EDGES)), tuple(np.array(EDGES).T)), shape=(8, 8))
    return {"path": path, "str": str(path), "data": data, "networkx": G, "scipy": A}


@pytest.mark.parametrize("kind", ["path", "str", "data", "networkx", "scipy"])
def test_every_input_type_gives_the_same_greedy_answer(tmp_path, kind):
    graph = _inputs(tmp_path)[kind]
    sol = combinatorial.fastcover(graph, k=1, d=1, method="greedy")
    assert sol.seed_ids == [0] and sol.covered == 5 and sol.n == 8
    sol = combinatorial.fastcover(graph, k=2, d=2, method="greedy")
    # d=2: B(0) = {0..5}; then 4, 5, 6 (each reaches 6) and 7 all gain 1: smallest id, 4.
    assert sol.seed_ids == [0, 4] and sol.covered == 7
    assert set(sol.timings) >= {"load", "graph"}


@pytest.mark.parametrize("method", SOLVERS.names())
def test_every_method_returns_a_valid_solution(method):
    G = nx.gnp_random_graph(60, 0.05, seed=1, directed=True)
    sol = solve(G, 5, 2, method=method)
    assert sol.method == method
    assert len(sol.seeds) == 5 and len(set(sol.seeds.tolist())) == 5
    adj = combinatorial.adjacency(
        torch.tensor(list(G.edges()), dtype=torch.long).t(), G.number_of_nodes()
    )
    assert sol.covered == combinatorial.coverage(adj, sol.seeds, 2)


def test_string_ids_come_back_as_file_ids(tmp_path):
    path = tmp_path / "names.csv"
    path.write_text("hub,a\nhub,b\nhub,c\na,b\n")
    sol = combinatorial.fastcover(path, k=1, d=1)
    assert sol.seed_ids == ["hub"] and sol.covered == 4


def test_undirected_option_symmetrises(tmp_path):
    path = _inputs(tmp_path)["path"]
    directed = solve(path, 1, 1, method="greedy")
    undirected = solve(path, 1, 1, method="greedy", undirected=True)
    assert directed.covered == 5  # 0 -> 1..4
    assert undirected.covered == 5 and undirected.seed_ids == [0]
    # undirected, d = 3 from node 0 reaches 5 and 6 as well
    assert solve(path, 1, 3, method="greedy", undirected=True).covered == 7


@pytest.mark.parametrize(
    ("kwargs", "error", "needle"),
    [
        ({"k": 0, "d": 1}, ValueError, "k must be"),
        ({"k": -3, "d": 1}, ValueError, "k must be"),
        ({"k": 2, "d": 0}, ValueError, "d must be"),
        ({"k": 2, "d": 1, "method": "magic"}, ValueError, "unknown method 'magic'; choose one of"),
        ({"k": 2, "d": 1, "rounds": 0}, ValueError, "rounds must be"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, error, needle):
    graph = _inputs(tmp_path)["data"]
    with pytest.raises(error, match=needle):
        solve(graph, **kwargs)


def test_k_above_n_is_capped_with_a_warning(tmp_path):
    graph = _inputs(tmp_path)["data"]
    with pytest.warns(UserWarning, match="exceeds the number of nodes"):
        sol = solve(graph, 50, 1, method="greedy")
    assert len(sol.seeds) == 8 and sol.covered == 8


def test_empty_and_unreadable_inputs(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        solve(Data(edge_index=torch.empty(2, 0, dtype=torch.long), num_nodes=0), 1, 1)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        solve(tmp_path / "missing.txt", 1, 1)
    bad = tmp_path / "bad.txt"
    bad.write_text("0 1\n1 two three four\n")
    with pytest.raises(InputFormatError, match="line 2"):
        solve(bad, 1, 1)
    with pytest.raises(TypeError):
        solve(42, 1, 1)


def test_fastcover_rounds_not_worse_than_one_pass_on_a_real_graph(shared_data):
    path = shared_data / "fastcover/undirected/fb-pages-food.txt"
    one = solve(path, 16, 2, one_pass=True)
    eight = solve(path, 16, 2, rounds=8, one_pass=True)
    greedy = solve(path, 16, 2, method="greedy")
    assert one.covered <= greedy.covered * 1.0001 + 16  # greedy is a (1-1/e) reference only
    assert eight.covered >= 0.9 * greedy.covered
    assert one.timings["score"] > 0 and eight.info["rounds"] == 8
