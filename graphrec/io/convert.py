"""Conversions between :class:`EdgeList` and PyG ``Data``, networkx, scipy.sparse and DGL."""

from __future__ import annotations

import os
from typing import Any

import networkx as nx
import numpy as np
import scipy.sparse as sp
from torch_geometric.data import Data

from graphrec.errors import ConfigError, MissingExtraError
from graphrec.io.edgelist import EdgeList, read_edgelist


def as_edgelist(obj: Any, *, undirected: bool = False) -> EdgeList:
    """Turn any supported graph into an :class:`EdgeList`.

    Accepts a path (``str`` / ``os.PathLike``, read with :func:`read_edgelist`), an
    ``EdgeList``, a PyG ``Data``, a networkx graph, a square scipy sparse matrix or array
    (see :func:`from_scipy`) or a DGL graph. With ``undirected`` the result is symmetrised
    (an undirected input already is; a directed ``EdgeList`` is symmetrised like
    ``read_edgelist(..., undirected=True)`` would).

    Example:
        >>> import networkx as nx
        >>> as_edgelist(nx.path_graph(3)).num_edges
        4
    """
    if isinstance(obj, str | os.PathLike):
        return read_edgelist(obj, undirected=undirected)
    if isinstance(obj, EdgeList):
        g = obj
    elif isinstance(obj, Data):
        g = _from_data(obj)
    elif isinstance(obj, nx.Graph):
        g = from_networkx(obj)
    elif sp.issparse(obj):
        g = from_scipy(obj)
    elif type(obj).__module__.split(".")[0] == "dgl":
        g = from_dgl(obj)
    else:
        raise TypeError(
            "expected a path, graphrec.io.EdgeList, torch_geometric.data.Data, networkx graph, "
            f"scipy sparse matrix or DGL graph; got {type(obj).__name__}"
        )
    if undirected and g.directed:
        row, col = g.data.edge_index.cpu().numpy()
        weight = g.data.get("edge_weight")
        g = EdgeList.from_edges(
            row,
            col,
            node_ids=g.node_ids,
            edge_weight=None if weight is None else weight.cpu().numpy(),
            undirected=True,
        )
    return g


def _from_data(data: Data) -> EdgeList:
    row, col = data.edge_index.cpu().numpy()
    weight = data.get("edge_weight")
    return EdgeList.from_edges(
        row,
        col,
        node_ids=np.arange(data.num_nodes, dtype=np.int64),
        edge_weight=None if weight is None else weight.cpu().numpy(),
    )


def _edges(g: EdgeList | Data) -> tuple[EdgeList, np.ndarray, np.ndarray, np.ndarray | None]:
    g = g if isinstance(g, EdgeList) else _from_data(g)
    row, col = g.data.edge_index.cpu().numpy()
    weight = g.data.get("edge_weight")
    return g, row, col, None if weight is None else weight.cpu().numpy()


def to_networkx(g: EdgeList | Data) -> nx.Graph:
    """A networkx graph whose node labels are the original ids (indices for a ``Data``).

    Returns a ``DiGraph`` for directed input, a ``Graph`` for an undirected ``EdgeList`` (each
    stored pair once), and ``MultiDiGraph`` / ``MultiGraph`` when there are parallel edges.
    Weights become the ``"weight"`` edge attribute. Isolated nodes are kept.

    Example:
        >>> G = to_networkx(EdgeList.from_edges(["a", "b"], ["b", "c"]))
        >>> sorted(G.edges())
        [('a', 'b'), ('b', 'c')]
    """
    g, row, col, weight = _edges(g)
    if not g.directed:
        half = row <= col
        row, col = row[half], col[half]
        weight = None if weight is None else weight[half]
    keys = row * max(g.num_nodes, 1) + col
    multi = len(np.unique(keys)) < len(keys)
    G = {
        (False, False): nx.Graph,
        (False, True): nx.MultiGraph,
        (True, False): nx.DiGraph,
        (True, True): nx.MultiDiGraph,
    }[(g.directed, multi)]()
    labels = g.node_ids.tolist()
    G.add_nodes_from(labels)
    ends = zip([labels[i] for i in row.tolist()], [labels[i] for i in col.tolist()])
    if weight is None:
        G.add_edges_from(ends)
    else:
        G.add_edges_from((u, v, {"weight": w}) for (u, v), w in zip(ends, weight.tolist()))
    return G


def from_networkx(G: nx.Graph) -> EdgeList:
    """An :class:`EdgeList` of a networkx graph, node labels kept in ``node_ids``.

    Nodes are indexed in ``G``'s node order; ``node_ids`` is int64 when every label is an
    ``int``, else an object array of the labels. Undirected graphs are symmetrised; parallel
    edges of multigraphs are kept (and counted as duplicates). A ``"weight"`` attribute
    present on every edge becomes ``edge_weight``.

    Example:
        >>> g = from_networkx(nx.path_graph(["x", "y", "z"]))
        >>> g.num_nodes, g.num_edges, g.directed
        (3, 4, False)
    """
    labels = list(G.nodes())
    if all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in labels):
        node_ids = np.array(labels, dtype=np.int64)
    else:
        node_ids = np.empty(len(labels), dtype=object)
        node_ids[:] = labels
    index = {v: i for i, v in enumerate(labels)}
    edges = list(G.edges(data="weight"))
    row = np.array([index[u] for u, _, _ in edges], dtype=np.int64)
    col = np.array([index[v] for _, v, _ in edges], dtype=np.int64)
    weights = [w for _, _, w in edges]
    weighted = bool(edges) and all(w is not None for w in weights)
    return EdgeList.from_edges(
        row,
        col,
        node_ids=node_ids,
        edge_weight=weights if weighted else None,
        undirected=not G.is_directed(),
    )


def to_scipy(g: EdgeList | Data) -> sp.csr_array:
    """The ``n x n`` adjacency as ``scipy.sparse.csr_array``; entry = number of parallel edges.

    Both directions of an undirected pair are stored, so the matrix is symmetric; weights are
    not used (build ``csr_array((weight, (row, col)))`` for a weighted matrix).

    Example:
        >>> to_scipy(EdgeList.from_edges([0, 0, 1], [1, 1, 2])).toarray().tolist()
        [[0, 2, 0], [0, 0, 1], [0, 0, 0]]
    """
    g, row, col, _ = _edges(g)
    n = g.num_nodes
    return sp.csr_array((np.ones(len(row), dtype=np.int64), (row, col)), shape=(n, n))


def from_scipy(A: Any) -> EdgeList:
    """A directed :class:`EdgeList` of a square scipy sparse matrix or array.

    Each nonzero ``A[i, j]`` is an edge ``i -> j`` (rows in order). Integer or boolean entries
    count parallel edges (the inverse of :func:`to_scipy`); float entries give one edge each and
    become ``edge_weight`` unless all are 1.

    Example:
        >>> g = from_scipy(sp.csr_array([[0, 2], [1, 0]]))
        >>> g.data.edge_index.tolist()
        [[0, 0, 1], [1, 1, 0]]
    """
    if not sp.issparse(A):
        raise TypeError(f"expected a scipy sparse matrix or array; got {type(A).__name__}")
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ConfigError(f"the adjacency matrix must be square; got shape {A.shape}")
    coo = sp.coo_array(A)
    coo.sum_duplicates()
    coo.eliminate_zeros()
    row, col, values = coo.row.astype(np.int64), coo.col.astype(np.int64), coo.data
    weight = None
    if values.dtype.kind in "iub":
        if (values < 0).any():
            raise ConfigError("integer entries count parallel edges and must be >= 0")
        counts = values.astype(np.int64)
        row, col = np.repeat(row, counts), np.repeat(col, counts)
    elif not (values == 1).all():
        weight = values
    return EdgeList.from_edges(
        row, col, node_ids=np.arange(A.shape[0], dtype=np.int64), edge_weight=weight
    )


def to_dgl(g: EdgeList | Data) -> Any:
    """A DGL graph with the same nodes and directed edges (``edata["weight"]`` if weighted).

    DGL graphs are directed: an undirected ``EdgeList`` gives both directions. Node ids are
    not carried over (keep ``EdgeList.node_ids``).
    """
    try:
        import dgl
    except ImportError as exc:
        raise MissingExtraError("graphrec.io.to_dgl", "dgl") from exc
    data = g.data
    G = dgl.graph((data.edge_index[0], data.edge_index[1]), num_nodes=data.num_nodes)
    weight = data.get("edge_weight")
    if weight is not None:
        G.edata["weight"] = weight
    return G


def from_dgl(G: Any) -> EdgeList:
    """A directed :class:`EdgeList` of a homogeneous DGL graph (``edata["weight"]`` kept)."""
    if len(G.ntypes) != 1 or len(G.etypes) != 1:
        raise ConfigError(
            f"only homogeneous DGL graphs are supported; got node types {G.ntypes}, "
            f"edge types {G.etypes}"
        )
    row, col = G.edges()
    weight = G.edata.get("weight")
    return EdgeList.from_edges(
        row.cpu().numpy(),
        col.cpu().numpy(),
        node_ids=np.arange(G.num_nodes(), dtype=np.int64),
        edge_weight=None if weight is None else weight.cpu().numpy(),
    )
