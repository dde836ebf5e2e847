"""Validated readers and converters: edge lists, interaction logs, CTR tables.

Every reader raises :class:`graphrec.errors.InputFormatError` naming the file, the line, the
offending content and what was expected, and never returns part of a malformed file. Input
goes through shared guards: only readable regular files (checked before opening), at most
``max_input_bytes`` after decompression (default 8 GiB), no gzip bombs, lines up to 1 MiB,
UTF-8 only. Edge lists are parsed in chunks into compact arrays.

Example:
    >>> from graphrec.io import read_edgelist, to_networkx
    >>> g = read_edgelist("graph.txt.gz", undirected=True)  # doctest: +SKIP
    >>> print(g.summary())  # doctest: +SKIP
"""

from graphrec.io.convert import (
    as_edgelist,
    from_dgl,
    from_networkx,
    from_scipy,
    to_dgl,
    to_networkx,
    to_scipy,
)
from graphrec.io.ctr import CTRSchema, CTRTable, encode_ctr_table, read_ctr_table
from graphrec.io.edgelist import EdgeList, read_edgelist
from graphrec.io.interactions import Interactions, bipartite_data, read_interactions

__all__ = [
    "CTRSchema",
    "CTRTable",
    "EdgeList",
    "Interactions",
    "as_edgelist",
    "encode_ctr_table",
    "from_dgl",
    "from_networkx",
    "from_scipy",
    "read_ctr_table",
    "read_edgelist",
    "read_interactions",
    "bipartite_data",
    "to_dgl",
    "to_networkx",
    "to_scipy",
]
