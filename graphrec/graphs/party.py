"""The party graph of vertical federated learning: feature owners, the label owner, links.

In vertical FL, ``M`` parties hold different feature blocks ``X^(m)`` (``[N, F_m]``) over one
common id space (aligned by private set intersection); one of them, or a separate node, owns the
labels and the top model. Nodes are the parties (feature owners) and the label owner; for every
party other than the label owner three tensors travel per training batch of ``B`` rows:

* ``label owner -> party``: the batch, ``B`` int64 positions in the aligned order
  (kind ``"batch"``; in training the parties may instead derive the batches from a schedule
  the label owner announces once, kind ``"schedule"``, and then no batch travels);
* ``party -> label owner``: the party's embedding ``h_m = f_m(X^(m)_B)``, ``[B, d_m]``
  (kind ``"embedding"``);
* ``label owner -> party``: the gradient ``dL/dh_m``, ``[B, d_m]`` (kind ``"gradient"``).

A label owner that also holds features computes its own embedding locally: no edge.
:meth:`PartyGraph.links` lists the edges with the tensor each carries and its bytes per batch;
:meth:`PartyGraph.to_data` gives the PyTorch-Geometric form.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch_geometric.data import Data

from graphrec.errors import ConfigError

__all__ = ["COMBINE", "Link", "PartyGraph"]

#: How the label owner combines the parties' embeddings.
COMBINE = ("concat", "sum")

#: Edge kinds, in the order of the ``edge_kind`` codes of :meth:`PartyGraph.to_data`.
KINDS = ("batch", "embedding", "gradient")


@dataclass(frozen=True)
class Link:
    """One directed edge of the party graph and the tensor it carries every batch.

    Attributes:
        sender, receiver: party names.
        kind: ``"batch"`` (down), ``"embedding"`` (up) or ``"gradient"`` (down).
        width: the tensor's size per sample (``d_m``; 1 for the batch); the tensor is
            ``[B, width]``.
        itemsize: bytes per element.
    """

    sender: str
    receiver: str
    kind: str
    width: int
    itemsize: int

    def bytes_per_batch(self, batch_size: int) -> int:
        """Bytes of the ``[batch_size, width]`` tensor this link carries once per batch."""
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1; got {batch_size}")
        return batch_size * self.width * self.itemsize


@dataclass(frozen=True)
class PartyGraph:
    """Parties with their feature widths, the label owner and the embedding links.

    Args:
        num_features: party name -> ``F_m``, the width of its feature block (``0`` allowed only
            for the label owner: it then holds labels and the top model only).
        embedding_dim: party name -> ``d_m`` (the width each bottom model sends up), or one
            int for every party.
        label_owner: name of the party holding the labels and the top model; a name not in
            ``num_features`` adds a label-only node.
        combine: ``"concat"`` (top input width ``sum d_m``) or ``"sum"`` (every ``d_m`` equal).
        dtype: dtype of the embeddings and gradients on the links.

    Example:
        >>> g = PartyGraph({"bank": 10, "shop": 4}, embedding_dim=8, label_owner="bank")
        >>> for link in g.links():
        ...     print(link.sender, link.receiver, link.kind, link.bytes_per_batch(32))
        bank shop batch 256
        shop bank embedding 1024
        bank shop gradient 1024
        >>> g.top_in_channels
        16
    """

    num_features: Mapping[str, int]
    embedding_dim: Mapping[str, int] | int
    label_owner: str
    combine: str = "concat"
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        features = dict(self.num_features)
        if not features:
            raise ConfigError("num_features must name at least one party")
        for name, width in features.items():
            if not isinstance(name, str) or not name:
                raise ConfigError(
                    f"num_features: party names must be non-empty strings; got {name!r}"
                )
            if not isinstance(width, int) or width < 0 or (width == 0 and name != self.label_owner):
                raise ConfigError(
                    f"num_features[{name!r}] must be a positive int (0 only for the label owner); "
                    f"got {width!r}"
                )
        if not isinstance(self.label_owner, str) or not self.label_owner:
            raise ConfigError(f"label_owner must be a party name; got {self.label_owner!r}")
        if self.combine not in COMBINE:
            raise ConfigError(f"combine must be one of {list(COMBINE)}; got {self.combine!r}")
        if not (self.dtype.is_floating_point if isinstance(self.dtype, torch.dtype) else False):
            raise ConfigError(f"dtype must be a floating-point torch.dtype; got {self.dtype!r}")
        holders = [n for n, w in features.items() if w > 0]
        if isinstance(self.embedding_dim, int):
            dims = dict.fromkeys(holders, self.embedding_dim)
        else:
            dims = dict(self.embedding_dim)
            if sorted(dims) != sorted(holders):
                raise ConfigError(
                    f"embedding_dim must name the parties with features {sorted(holders)}; "
                    f"got {sorted(dims)}"
                )
        for name, d in dims.items():
            if not isinstance(d, int) or d < 1:
                raise ConfigError(f"embedding_dim[{name!r}] must be a positive int; got {d!r}")
        if self.combine == "sum" and len(set(dims.values())) > 1:
            raise ConfigError(f"combine='sum' needs one embedding_dim for all parties; got {dims}")
        object.__setattr__(self, "num_features", features)
        object.__setattr__(self, "embedding_dim", dims)

    # ------------------------------------------------------------------ nodes
    @property
    def parties(self) -> list[str]:
        """The parties holding features, in the order given."""
        return list(self.embedding_dim)

    @property
    def nodes(self) -> list[str]:
        """Node names: the parties, then the label owner when it holds no features."""
        names = self.parties
        return names if self.label_owner in names else [*names, self.label_owner]

    @property
    def top_in_channels(self) -> int:
        """Width of the top model's input: ``sum d_m`` (concat) or ``d`` (sum)."""
        dims = list(self.embedding_dim.values())
        return sum(dims) if self.combine == "concat" else dims[0]

    # ------------------------------------------------------------------ edges
    def links(self) -> list[Link]:
        """The edges: per remote party, the batch down, its embedding up, its gradient down."""
        itemsize = torch.empty(0, dtype=self.dtype).element_size()
        out = []
        for name, d in self.embedding_dim.items():
            if name != self.label_owner:
                out.append(Link(self.label_owner, name, "batch", 1, 8))
                out.append(Link(name, self.label_owner, "embedding", d, itemsize))
                out.append(Link(self.label_owner, name, "gradient", d, itemsize))
        return out

    def bytes_per_batch(self, batch_size: int) -> int:
        """Bytes crossing party boundaries for one batch (every link once)."""
        return sum(link.bytes_per_batch(batch_size) for link in self.links())

    def to_data(self, batch_size: int) -> Data:
        """A :class:`~torch_geometric.data.Data` over :attr:`nodes`: ``edge_index`` ``[2, E]``,
        ``edge_kind`` ``[E]`` (index into ``("batch", "embedding", "gradient")``),
        ``edge_bytes`` ``[E]`` (bytes per batch of ``batch_size``); node attributes
        ``feature_width`` ``[N]`` and ``is_label_owner`` ``[N]`` (bool)."""
        index = {name: i for i, name in enumerate(self.nodes)}
        links = self.links()
        data = Data(
            edge_index=torch.tensor(
                [[index[link.sender] for link in links], [index[link.receiver] for link in links]],
                dtype=torch.long,
            ).reshape(2, -1),
            edge_kind=torch.tensor([KINDS.index(link.kind) for link in links], dtype=torch.long),
            edge_bytes=torch.tensor([link.bytes_per_batch(batch_size) for link in links]),
            feature_width=torch.tensor([self.num_features.get(n, 0) for n in self.nodes]),
            is_label_owner=torch.tensor([n == self.label_owner for n in self.nodes]),
            num_nodes=len(self.nodes),
        )
        data.node_names = self.nodes
        return data
