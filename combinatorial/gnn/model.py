"""The FastCover scoring network: a stack of GRAT layers giving one logit per node."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from combinatorial.graph import adjacency
from combinatorial.sketch import ball_size_sketch
from graphrec.errors import ConfigError
from graphrec.nn import GRATConv
from graphrec.nn.segment import EdgeSegments, segment_sum

FEATURES = ("ones", "degree", "sketch")
#: Hops of the ball-size estimates in the ``"sketch"`` features.
SKETCH_HOPS = 3


def node_features(
    edge_index: Tensor,
    num_nodes: int,
    kind: str = "ones",
    dim: int = 32,
    segments: EdgeSegments | None = None,
) -> Tensor:
    """Input features of FastCover, computed from the graph alone.

    Args:
        edge_index: edges ``[2, m]`` (row 0 covers row 1).
        num_nodes: number of nodes ``n``.
        kind: ``"ones"`` (all-ones ``[n, dim]``, the official code's input), ``"degree"``
            (``[1, log(1 + in-degree), log(1 + out-degree)]``, ``[n, 3]``) or ``"sketch"``
            (``"degree"`` plus ``log |B_l(v)|`` for ``l = 2..SKETCH_HOPS``, the HyperLogLog
            out-ball estimates of :func:`combinatorial.sketch.ball_size_sketch`, seed 0).
        dim: width of the ``"ones"`` input.
        segments: CSR layouts of ``edge_index`` (``"csr"`` aggregation mode only).
    """
    device = edge_index.device
    if kind == "ones":
        return torch.ones(num_nodes, dim, device=device)
    if kind in ("degree", "sketch"):
        ones = torch.ones(edge_index.size(1), device=device)
        row, col = (None, None) if segments is None else segments
        deg_in = segment_sum(ones, edge_index[1], num_nodes, col)
        deg_out = segment_sum(ones, edge_index[0], num_nodes, row)
        x = torch.stack([deg_in.new_ones(num_nodes), deg_in.log1p(), deg_out.log1p()], dim=1)
        if kind == "degree":
            return x
        balls = ball_size_sketch(adjacency(edge_index.cpu(), num_nodes), SKETCH_HOPS)
        balls = torch.from_numpy(np.log(balls[:, 1:])).to(x)
        return torch.cat([x, balls], dim=1)
    raise ConfigError(f"features must be one of {FEATURES}, got {kind!r}")


def feature_dim(kind: str, dim: int = 32) -> int:
    """Number of input columns :func:`node_features` produces for ``kind``."""
    if kind not in FEATURES:
        raise ConfigError(f"features must be one of {FEATURES}, got {kind!r}")
    return {"ones": dim, "degree": 3}.get(kind, 2 + SKETCH_HOPS)


class FastCover(torch.nn.Module):
    r"""GRAT stack scoring every node as a seed for budgeted d-hop coverage (k-dDSP).

    The default configuration is the official GRAT3 model: all-ones input of width 32, GRAT layers
    32 -> 32 -> 32 -> 1 with ReLU in between, 2,340 parameters. The output is one logit
    :math:`s_u` per node; :math:`p_u = \sigma(s_u)` is the selection probability that the
    unsupervised loss (:func:`combinatorial.gnn.loss.fastcover_loss`) trains, and top-k
    of the logits gives the seeds.

    Args:
        features: input features, ``"ones"``, ``"degree"`` or ``"sketch"`` (see
            :func:`node_features`).
        in_channels: width of the ``"ones"`` input (ignored for ``"degree"``).
        hidden_channels: width of the hidden layers.
        num_layers: number of GRAT layers (receptive field in hops; 3 covers d <= 3).
        mask_layer: index of the layer whose credit ``target_weight`` applies to (re-scoring):
            0 for the official layout; ``num_layers - d`` for a model whose first layers start
            constant (see :func:`combinatorial.gnn.train.monotone_init_`).
        residual_input: append ``target_weight`` (1 = still a target, 0 = covered; all ones
            when not given) to the input features as one more column, so that every layer,
            not only the credit of ``mask_layer``, can see the residual.
    """

    def __init__(
        self,
        features: str = "ones",
        in_channels: int = 32,
        hidden_channels: int = 32,
        num_layers: int = 3,
        mask_layer: int = 0,
        residual_input: bool = False,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ConfigError(f"num_layers must be >= 1, got {num_layers}")
        if not 0 <= mask_layer < num_layers:
            raise ConfigError(f"mask_layer must be in [0, {num_layers}), got {mask_layer}")
        self.features = features
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.num_layers = num_layers
        self.mask_layer = mask_layer
        self.residual_input = residual_input
        dims = [feature_dim(features, in_channels) + int(residual_input)]
        dims += [hidden_channels] * (num_layers - 1) + [1]
        self.convs = torch.nn.ModuleList(GRATConv(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def config(self) -> dict:
        """Constructor arguments, enough to rebuild the model around a saved ``state_dict``
        (``residual_input`` only when set, as in the manifests written before it existed)."""
        config = {
            "features": self.features,
            "in_channels": self.in_channels,
            "hidden_channels": self.hidden_channels,
            "num_layers": self.num_layers,
            "mask_layer": self.mask_layer,
        }
        return {**config, "residual_input": True} if self.residual_input else config

    def reset_parameters(self) -> None:
        for conv in self.convs:
            conv.reset_parameters()

    def forward(
        self,
        edge_index: Tensor,
        num_nodes: int,
        target_weight: Tensor | None = None,
        segments: EdgeSegments | None = None,
        chunks: Iterable[slice | Tensor] | None = None,
    ) -> Tensor:
        """Logits ``[n]`` of every node.

        Args:
            edge_index: edges ``[2, m]``, row 0 = coverer, row 1 = covered.
            num_nodes: number of nodes ``n``.
            target_weight: optional ``[n]`` weight of each node as a target in the credit of
                layer ``mask_layer`` (0 = already covered; see :class:`graphrec.nn.GRATConv`),
                and the last input column with ``residual_input``.
            segments: CSR layouts of ``edge_index`` for the ``"csr"`` aggregation mode
                (:func:`graphrec.nn.segment.aggregation_mode`).
            chunks: edge chunks for every layer (see :class:`graphrec.nn.GRATConv`): the same
                logits with memory bounded by the chunk size (inference only).
        """
        x = node_features(edge_index, num_nodes, self.features, self.in_channels, segments)
        if self.residual_input:
            flag = x.new_ones(num_nodes) if target_weight is None else target_weight.to(x)
            x = torch.cat([x, flag.unsqueeze(1)], dim=1)
        for i, conv in enumerate(self.convs):
            if i > 0:
                x = F.relu(x)
            weight = target_weight if i == self.mask_layer else None
            x = conv(x, edge_index, weight, segments, chunks)
        return x.view(-1)

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(features={self.features!r}, "
            f"layers={self.num_layers}, hidden={self.hidden_channels})"
        )
