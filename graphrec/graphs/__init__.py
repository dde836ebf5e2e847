"""Graph builders: the user-item bipartite graph, attribute trees, the device-cloud graph and
the party graph of vertical FL."""

from graphrec.graphs.attribute_tree import (
    AttributeTree,
    build_attribute_tree,
    movielens_ctr_trees,
    taobao_ctr_trees,
    tree_from_table,
)
from graphrec.graphs.bipartite import BipartiteGraph, build_bipartite, split_per_user, to_binary_csr
from graphrec.graphs.device_cloud import DeviceCloudGraph
from graphrec.graphs.party import Link, PartyGraph

__all__ = [
    "AttributeTree",
    "BipartiteGraph",
    "DeviceCloudGraph",
    "Link",
    "PartyGraph",
    "build_attribute_tree",
    "build_bipartite",
    "movielens_ctr_trees",
    "split_per_user",
    "taobao_ctr_trees",
    "to_binary_csr",
    "tree_from_table",
]
