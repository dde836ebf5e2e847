"""Graph builders: the user-item bipartite graph (and, later, social and attribute graphs)."""

from graphrec.graphs.bipartite import BipartiteGraph, build_bipartite, split_per_user, to_binary_csr

__all__ = ["BipartiteGraph", "build_bipartite", "split_per_user", "to_binary_csr"]
