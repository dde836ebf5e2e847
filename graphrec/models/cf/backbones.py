"""Collaborative-filtering encoders: matrix factorisation and LightGCN.

Every backbone is a ``torch.nn.Module`` with the same small interface:

* ``forward() -> (user_emb [U, F], item_emb [I, F])``: the final embeddings of all users and
  items (the score of a pair is their dot product, or cosine for the contrastive losses);
* ``ego_embeddings() -> (user_emb [U, F], item_emb [I, F])``: the free parameters (layer 0),
  which is what L2 regularisation covers;
* ``reset_parameters()``;
* ``from_config(graph, config)``: the backbone a :class:`~graphrec.models.cf.CFConfig` names,
  sized for the graph (how :data:`graphrec.registry.CF_BACKBONES` entries are built).

The losses live in :mod:`graphrec.models.cf.losses`; none of them is attached to a backbone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor, nn
from torch_geometric.nn.models import LightGCN as PyGLightGCN

from graphrec.errors import ConfigError
from graphrec.graphs.bipartite import BipartiteGraph
from graphrec.nn.gf_cf import GFCFFilter
from graphrec.nn.lgconv import LGConv, ScipyAdjacency
from graphrec.registry import CF_BACKBONES

if TYPE_CHECKING:
    from graphrec.models.cf.trainer import CFConfig

__all__ = ["CFBackbone", "LightGCN", "MF"]

#: Embedding initialisations: random (``normal``, ``xavier``) or, for :class:`MF`, the
#: factors of GF-CF's ideal low-pass filter (``gf-cf``, :meth:`MF.from_low_pass`).
INITS = ("normal", "xavier", "gf-cf")


def _init_(weight: Tensor, init: str, std: float) -> None:
    if init == "normal":
        nn.init.normal_(weight, std=std)
    elif init == "xavier":
        nn.init.xavier_uniform_(weight)
    else:
        raise ConfigError(f"init must be one of {INITS[:2]}; got {init!r}")


class CFBackbone(nn.Module):
    """Base class: ``num_users``, ``num_items``, ``embedding_dim`` and the common interface.

    Attributes:
        config_fields: the :class:`~graphrec.models.cf.CFConfig` fields that apply to this
            backbone only (the command line refuses their options with other backbones).
    """

    num_users: int
    num_items: int
    embedding_dim: int
    config_fields: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, graph: BipartiteGraph, config: CFConfig) -> CFBackbone:
        """The backbone of ``config``, sized for ``graph`` (initialised from the global RNG)."""
        raise NotImplementedError

    def forward(self) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def ego_embeddings(self) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    @torch.no_grad()
    def scores(self, users: Tensor) -> Tensor:
        """Dot-product scores ``[len(users), I]`` of the given users against every item."""
        user_emb, item_emb = self()
        return user_emb[users] @ item_emb.t()


@CF_BACKBONES.register("mf")
class MF(CFBackbone):
    """Matrix factorisation: ``user_emb = E_U``, ``item_emb = E_I`` (no propagation).

    Args:
        num_users, num_items: table sizes.
        embedding_dim: ``F`` (64 in the LightGCN / BARS settings).
        init: ``"normal"`` (``N(0, init_std^2)``, LightGCN's official code) or ``"xavier"``
            (uniform, as PyG's ``LightGCN``).
        init_std: standard deviation for ``init="normal"``.
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        embedding_dim: int = 64,
        *,
        init: str = "normal",
        init_std: float = 0.1,
    ) -> None:
        super().__init__()
        self.num_users, self.num_items, self.embedding_dim = num_users, num_items, embedding_dim
        self.init, self.init_std = init, init_std
        self.user_embedding = nn.Embedding(num_users, embedding_dim)
        self.item_embedding = nn.Embedding(num_items, embedding_dim)
        self.reset_parameters()

    @classmethod
    def from_config(cls, graph: BipartiteGraph, config: CFConfig) -> MF:
        if config.init == "gf-cf":
            return cls.from_low_pass(graph.train, config.embedding_dim, seed=config.seed)
        return cls(graph.num_users, graph.num_items, config.embedding_dim, init=config.init)

    @classmethod
    def from_low_pass(
        cls, interactions: sp.sparray | sp.spmatrix, embedding_dim: int = 64, *, seed: int = 0
    ) -> MF:
        r"""MF whose scores are GF-CF's ideal low-pass filter of ``interactions`` (``[U, I]``):

        .. math::
            \mathbf{E}_U = c\, \mathbf{R} \mathbf{D}_I^{-1/2} \bar{\mathbf{V}}_F, \qquad
            \mathbf{E}_I = c^{-1} \mathbf{D}_I^{1/2} \bar{\mathbf{V}}_F, \qquad
            \mathbf{E}_U \mathbf{E}_I^{\top} = \mathbf{R} \mathbf{D}_I^{-1/2}
            \bar{\mathbf{V}}_F \bar{\mathbf{V}}_F^{\top} \mathbf{D}_I^{1/2}

        with :math:`\bar{\mathbf{V}}_F` the top ``F = embedding_dim`` right singular vectors of
        the normalised interactions (:class:`~graphrec.nn.GFCFFilter`, SVD start vector from
        ``seed``) and ``c`` the scalar that gives both tables the same root-mean-square norm.
        A training start from the filter; :meth:`reset_parameters` draws a random one.
        """
        limit = min(interactions.shape) - 1
        if not 1 <= embedding_dim <= limit:
            raise ConfigError(
                f"embedding_dim must be in [1, {limit}] (min(users, items) - 1) for the gf-cf "
                f"initialisation; got {embedding_dim}"
            )
        gfcf = GFCFFilter(interactions, embedding_dim, alpha=1.0, seed=seed)
        users, items = gfcf.low_pass_factors(sp.csr_array(interactions, dtype=np.float32))
        norm_u, norm_i = np.sqrt((users**2).sum(1).mean()), np.sqrt((items**2).sum(1).mean())
        c = float(np.sqrt(norm_i / norm_u)) if norm_u > 0 and norm_i > 0 else 1.0
        model = cls(*interactions.shape, embedding_dim)
        with torch.no_grad():
            model.user_embedding.weight.copy_(torch.from_numpy(users * c))
            model.item_embedding.weight.copy_(torch.from_numpy(items / c))
        return model

    def reset_parameters(self) -> None:
        _init_(self.user_embedding.weight, self.init, self.init_std)
        _init_(self.item_embedding.weight, self.init, self.init_std)

    def ego_embeddings(self) -> tuple[Tensor, Tensor]:
        return self.user_embedding.weight, self.item_embedding.weight

    def forward(self) -> tuple[Tensor, Tensor]:
        return self.ego_embeddings()

    def __repr__(self) -> str:
        return f"MF({self.num_users}, {self.num_items}, embedding_dim={self.embedding_dim})"


@CF_BACKBONES.register("lightgcn")
class LightGCN(CFBackbone):
    r"""LightGCN (He et al., SIGIR 2020) on the user-item training graph.

    .. math::
        \mathbf{x}^{(l+1)} = D^{-1/2} A D^{-1/2} \mathbf{x}^{(l)}, \qquad
        \mathbf{x} = \sum_{l=0}^{L} \alpha_l \mathbf{x}^{(l)}, \quad \alpha_l = 1/(L+1)

    over the ``(U + I)``-node bipartite graph (users first). Parameters and layer weights are
    those of PyG's :class:`torch_geometric.nn.models.LightGCN` (its embedding and ``alpha``);
    every propagation step is :class:`graphrec.nn.LGConv` (``normalize=False``, the weights
    are normalised once). With an ``(edge_index, edge_weight)`` pair it is a message-passing
    sum (following :func:`graphrec.nn.aggregation_mode`). With the sparse matrix of
    :meth:`BipartiteGraph.normalized_adjacency` it is a scipy CSR product on CPU
    (:class:`graphrec.nn.lgconv.ScipyAdjacency`, the fast path of CPU training) and
    ``torch.sparse.mm`` on other devices. PyG's
    ``recommendation_loss`` is *not* used (pyg-team #7196; see
    :mod:`graphrec.models.cf.losses`): train with :mod:`graphrec.models.cf.losses`.

    Args:
        num_users, num_items: the graph's sizes.
        adjacency: the normalised ``[U + I, U + I]`` torch sparse matrix, or an
            ``(edge_index, edge_weight)`` pair of already normalised edges.
        embedding_dim: ``F``.
        num_layers: ``L`` (2 in PyG's example, 3 in LightGCN's Gowalla setting).
        alpha: layer weights (scalar or ``[L + 1]`` tensor); None = ``1 / (L + 1)``.
        init, init_std: as for :class:`MF`.

    Use :meth:`from_graph` to build it from a :class:`~graphrec.graphs.BipartiteGraph`.
    """

    config_fields = ("num_layers",)

    def __init__(
        self,
        num_users: int,
        num_items: int,
        adjacency: Tensor | tuple[Tensor, Tensor],
        embedding_dim: int = 64,
        num_layers: int = 3,
        *,
        alpha: float | Tensor | None = None,
        init: str = "normal",
        init_std: float = 0.1,
    ) -> None:
        super().__init__()
        self.num_users, self.num_items, self.embedding_dim = num_users, num_items, embedding_dim
        self.num_layers = num_layers
        self.init, self.init_std = init, init_std
        n = num_users + num_items
        self._scipy: ScipyAdjacency | None = None
        if isinstance(adjacency, tuple):
            edge_index, edge_weight = adjacency
            if edge_index.dim() != 2 or edge_index.shape[0] != 2:
                raise ConfigError(f"edge_index must be [2, E]; got {tuple(edge_index.shape)}")
            self._adj: tuple[Tensor, Tensor | None] = (edge_index, edge_weight)
        else:
            if tuple(adjacency.shape) != (n, n):
                raise ConfigError(f"adjacency must be [{n}, {n}]; got {tuple(adjacency.shape)}")
            self._adj = (adjacency, None)
            self._scipy = ScipyAdjacency.from_torch(adjacency)
        self.lightgcn = PyGLightGCN(n, embedding_dim, num_layers, alpha=alpha, normalize=False)
        self.conv = LGConv(normalize=False)
        self.reset_parameters()

    @classmethod
    def from_graph(cls, graph: BipartiteGraph, **kwargs) -> LightGCN:
        """Build on ``graph``'s training edges (``kwargs`` as for the constructor)."""
        return cls(graph.num_users, graph.num_items, graph.normalized_adjacency(), **kwargs)

    @classmethod
    def from_config(cls, graph: BipartiteGraph, config: CFConfig) -> LightGCN:
        return cls.from_graph(
            graph,
            embedding_dim=config.embedding_dim,
            num_layers=config.num_layers,
            init=config.init,
        )

    def reset_parameters(self) -> None:
        _init_(self.lightgcn.embedding.weight, self.init, self.init_std)

    def _adjacency(self) -> tuple[Tensor, Tensor | None]:
        adj, weight = self._adj
        device = self.lightgcn.embedding.weight.device
        if adj.device != device:
            adj = adj.to(device)
            weight = None if weight is None else weight.to(device)
            self._adj = (adj, weight)
        return adj, weight

    def ego_embeddings(self) -> tuple[Tensor, Tensor]:
        weight = self.lightgcn.embedding.weight
        return weight[: self.num_users], weight[self.num_users :]

    def forward(self) -> tuple[Tensor, Tensor]:
        x, alpha = self.lightgcn.embedding.weight, self.lightgcn.alpha
        if self._scipy is not None and x.device.type == "cpu":
            adj: tuple[Tensor | ScipyAdjacency, Tensor | None] = (self._scipy, None)
        else:
            adj = self._adjacency()
        out = x * alpha[0]
        for layer in range(self.num_layers):
            x = self.conv(x, *adj)
            out = out + x * alpha[layer + 1]
        return out[: self.num_users], out[self.num_users :]

    def __repr__(self) -> str:
        return (
            f"LightGCN({self.num_users}, {self.num_items}, embedding_dim={self.embedding_dim}, "
            f"num_layers={self.num_layers})"
        )
