"""Coverage evaluation, graph representation and the d-closure."""

from __future__ import annotations

import doctest
import importlib
import tarfile
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from combinatorial import (
    adjacency,
    ball_sizes,
    coverage,
    covered_mask,
    d_closure,
    estimate_closure_bytes,
)
from combinatorial.graph import as_csr
from graphrec.errors import GraphrecError, MemoryBudgetError
from graphrec.io import read_edgelist

FASTCOVER = Path("fastcover")


def load(path: Path) -> sp.csr_array:
    g = read_edgelist(path)
    return adjacency(g.data.edge_index, g.data.num_nodes)


def extract_er(shared_data: Path, dest: Path, members: list[str]) -> list[Path]:
    archive = shared_data / FASTCOVER / "er-graphs-1000" / "er_1000_x20.tar.gz"
    with tarfile.open(archive) as tar:
        for name in members:
            (dest / name).write_bytes(tar.extractfile(name).read())
    return [dest / name for name in members]


@pytest.fixture(scope="module")
def er_graphs(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> list[sp.csr_array]:
    dest = tmp_path_factory.mktemp("er1000")
    return [load(p) for p in extract_er(shared_data, dest, [f"{i}.txt" for i in range(20)])]


@pytest.fixture(scope="module")
def bitcoinotc(shared_data: Path) -> sp.csr_array:
    return load(shared_data / FASTCOVER / "directed" / "soc-sign-bitcoinotc.txt.gz")


def random_graph(rng: np.random.Generator, n: int, m: int) -> tuple[sp.csr_array, nx.DiGraph]:
    """Random digraph with self-loops and duplicate edges, as adjacency and networkx graph."""
    edges = rng.integers(0, n, size=(2, m))
    edges = np.concatenate([edges, edges[:, : m // 5], np.array([[0, 1], [0, 1]])], axis=1)
    G = nx.DiGraph()
    G.add_nodes_from(range(n))
    G.add_edges_from(edges.T.tolist())
    return adjacency(edges, n), G


def brute_force(G: nx.DiGraph, seeds: list[int], d: int) -> set[int]:
    covered: set[int] = set()
    for s in seeds:
        covered |= set(nx.single_source_shortest_path_length(G, s, cutoff=d))
    return covered


def to_networkx(A: sp.csr_array) -> nx.DiGraph:
    G = nx.DiGraph()
    G.add_nodes_from(range(A.shape[0]))
    G.add_edges_from(zip(*A.nonzero()))
    return G


# ---------------------------------------------------------------- graph representation


def test_adjacency_is_binary_canonical() -> None:
    ei = np.array([[2, 0, 0, 2, 1, 1], [0, 2, 1, 0, 1, 0]])  # duplicate 2->0, self-loop 1->1
    A = adjacency(ei, 4)
    assert isinstance(A, sp.csr_array) and A.shape == (4, 4) and A.dtype == np.bool_
    assert A.has_canonical_format and A.indices.dtype == np.int32
    assert A.nnz == 5
    assert A.toarray().astype(int).tolist() == [[0, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0], [0] * 4]
    assert (adjacency(torch.as_tensor(ei), 4) != A).nnz == 0
    assert adjacency(np.zeros((2, 0), dtype=np.int64), 3).nnz == 0
    ordered = ei[:, np.lexsort(ei[::-1])]  # sorted keys skip the sort: the same matrix
    assert (adjacency(ordered, 4) != A).nnz == 0 and adjacency(ordered, 4).has_canonical_format


def test_adjacency_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="node id 5"):
        adjacency(np.array([[0, 5], [1, 1]]), 5)
    with pytest.raises(ValueError, match=r"shape \[2, m\]"):
        adjacency(np.zeros((3, 2), dtype=int), 5)
    with pytest.raises(TypeError, match="integers"):
        adjacency(np.zeros((2, 2)), 5)


def test_as_csr_binarises_without_touching_input() -> None:
    coo = sp.coo_matrix((np.array([3, 0, 1, 1]), ([0, 0, 1, 1], [1, 2, 0, 0])), shape=(3, 3))
    A = as_csr(coo)
    assert A.dtype == np.bool_ and A.nnz == 2 and A.has_canonical_format
    assert coo.nnz == 4  # input untouched
    B = as_csr(A)
    assert B is A  # already canonical: no copy
    with pytest.raises(ValueError, match="square"):
        as_csr(sp.csr_array((2, 3)))
    with pytest.raises(TypeError, match="scipy.sparse"):
        as_csr(np.eye(3))


# ---------------------------------------------------------------- coverage


@pytest.mark.parametrize("seed", range(6))
def test_coverage_matches_bfs_on_random_graphs(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 40))
    A, G = random_graph(rng, n, int(rng.integers(0, 3 * n)))
    for d in range(5):
        seeds = rng.integers(0, n, size=int(rng.integers(0, 6))).tolist()  # duplicates allowed
        expected = brute_force(G, seeds, d)
        assert coverage(A, seeds, d) == len(expected)
        assert set(np.flatnonzero(covered_mask(A, seeds, d)).tolist()) == expected


def test_coverage_matches_bfs_on_er1000(er_graphs: list[sp.csr_array]) -> None:
    rng = np.random.default_rng(0)
    for A in er_graphs:
        G = to_networkx(A)
        for size in (1, 4, 16):
            seeds = rng.choice(A.shape[0], size=size, replace=False).tolist()
            for d in (1, 2, 3):
                assert coverage(A, seeds, d) == len(brute_force(G, seeds, d))


def test_coverage_matches_bfs_on_fb_pages_food(shared_data: Path) -> None:
    A = load(shared_data / FASTCOVER / "undirected" / "fb-pages-food.txt")
    assert A.shape == (620, 620)
    G = to_networkx(A)
    rng = np.random.default_rng(1)
    for size in (1, 3, 10, 50):
        seeds = rng.choice(620, size=size, replace=False).tolist()
        for d in (0, 1, 2, 3, 5):
            assert coverage(A, seeds, d) == len(brute_force(G, seeds, d))


def test_coverage_validation() -> None:
    A = adjacency(np.array([[0, 1], [1, 2]]), 4)
    assert coverage(A, [], 3) == 0
    assert coverage(A, np.array([3, 3, 0]), 0) == 2
    assert coverage(sp.csr_array((0, 0)), [], 2) == 0
    with pytest.raises(ValueError, match="seed 7"):
        coverage(A, [0, 7], 1)
    with pytest.raises(ValueError, match="seed -1"):
        coverage(A, [-1], 1)
    with pytest.raises(TypeError, match="integer"):
        coverage(A, [0.5], 1)
    with pytest.raises(ValueError, match="d must be >= 0, got -1"):
        coverage(A, [0], -1)
    with pytest.raises(TypeError, match="d must be an int"):
        coverage(A, [0], 1.5)


# ---------------------------------------------------------------- closure


@pytest.mark.parametrize("seed", range(4))
def test_closure_rows_are_d_balls(seed: int) -> None:
    rng = np.random.default_rng(10 + seed)
    n = int(rng.integers(1, 30))
    A, G = random_graph(rng, n, int(rng.integers(0, 3 * n)))
    for d in range(4):
        M = d_closure(A, d)
        assert M.dtype == np.bool_ and M.shape == (n, n)
        for u in range(n):
            assert set(M[[u]].indices.tolist()) == brute_force(G, [u], d)
        assert M.nnz == len(set(zip(*M.nonzero())))  # no duplicate entries
        assert ball_sizes(A, d).tolist() == np.diff(M.indptr).tolist()


def test_closure_nnz_reference(er_graphs: list[sp.csr_array], bitcoinotc: sp.csr_array) -> None:
    """Spec section 8.2: closure nnz = sum_v |B_d(v)|."""
    for A, expected in (
        (er_graphs[0], (11058, 106062, 637620)),
        (bitcoinotc, (41473, 1691429, 11419975)),
    ):
        for d, nnz in zip((1, 2, 3), expected):
            assert d_closure(A, d).nnz == nnz
            assert int(ball_sizes(A, d).sum()) == nnz


def test_estimate_closure_bytes(bitcoinotc: sp.csr_array, er_graphs: list[sp.csr_array]) -> None:
    A = er_graphs[0]
    exact = estimate_closure_bytes(A, 2, samples=A.shape[0])  # every source: exact sizes
    assert exact >= 5 * (106062 + 11058)  # M_2 and M_1 with 1-byte data + int32 indices
    assert exact < 5 * (106062 + 11058) + 64 * A.shape[0] + 5 * 20000
    est = estimate_closure_bytes(bitcoinotc, 2)
    assert 0.7 < est / (5 * (1691429 + 41473)) < 1.5
    assert estimate_closure_bytes(bitcoinotc, 2) == est  # deterministic for a fixed seed
    with pytest.raises(ValueError, match="samples"):
        estimate_closure_bytes(A, 2, samples=0)


def test_closure_memory_budget_refusal(bitcoinotc: sp.csr_array) -> None:
    with pytest.raises(MemoryBudgetError) as info:
        d_closure(bitcoinotc, 3, max_bytes=10**6)
    msg = str(info.value)
    assert "max_bytes=" in msg and "--max-memory" in msg and "1000000" in msg
    assert isinstance(info.value, MemoryError) and isinstance(info.value, GraphrecError)
    assert d_closure(bitcoinotc, 1, max_bytes=None).nnz == 41473


def test_doctests() -> None:
    for name in ("graph", "coverage", "closure"):  # the package re-exports a *function* coverage
        module = importlib.import_module(f"combinatorial.{name}")
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0, module.__name__
