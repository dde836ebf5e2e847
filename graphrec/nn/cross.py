"""One cross layer of DCN-V2 (full rank or low rank)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from graphrec.errors import ConfigError


class CrossLayerV2(torch.nn.Module):
    r"""The cross layer from the `"DCN V2: Improved Deep & Cross Network and Practical Lessons
    for Web-scale Learning to Rank Systems" <https://arxiv.org/abs/2008.13535>`_ paper
    (Wang et al., WWW 2021):

    .. math::
        \mathbf{x}_{l+1} = \mathbf{x}_0 \odot \left( \mathbf{W} \mathbf{x}_l + \mathbf{b} \right)
        + \mathbf{x}_l

    with a full matrix :math:`\mathbf{W} \in \mathbb{R}^{D \times D}`, or with ``low_rank=r``
    the factorised :math:`\mathbf{W} = \mathbf{U} \mathbf{V}^{\top}`,
    :math:`\mathbf{U}, \mathbf{V} \in \mathbb{R}^{D \times r}` (the paper's DCN-Mix without
    experts). :math:`\mathbf{x}_0` is the flattened embedding of all fields.

    Args:
        in_channels (int): Size :math:`D` of :math:`\mathbf{x}_0` and :math:`\mathbf{x}_l`.
        low_rank (int, optional): Rank :math:`r` of :math:`\mathbf{W}`; :obj:`None` for a full
            matrix. (default: :obj:`None`)

    Shapes:
        - **input:** :math:`\mathbf{x}_0` :math:`(B, D)`, :math:`\mathbf{x}_l` :math:`(B, D)`
        - **output:** :math:`\mathbf{x}_{l+1}` :math:`(B, D)`
    """

    def __init__(self, in_channels: int, low_rank: int | None = None) -> None:
        super().__init__()
        if low_rank is not None and not 1 <= low_rank <= in_channels:
            raise ConfigError(f"low_rank must be in 1..{in_channels} or None; got {low_rank}")
        self.in_channels = in_channels
        self.low_rank = low_rank
        if low_rank is None:
            self.weight = torch.nn.Parameter(torch.empty(in_channels, in_channels))
        else:
            self.u = torch.nn.Parameter(torch.empty(in_channels, low_rank))
            self.v = torch.nn.Parameter(torch.empty(in_channels, low_rank))
        self.bias = torch.nn.Parameter(torch.empty(in_channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform weights (as in the official TensorFlow code), zero bias."""
        if self.low_rank is None:
            torch.nn.init.xavier_uniform_(self.weight)
        else:
            bound = math.sqrt(6.0 / (self.in_channels + self.low_rank))
            torch.nn.init.uniform_(self.u, -bound, bound)
            torch.nn.init.uniform_(self.v, -bound, bound)
        torch.nn.init.zeros_(self.bias)

    def forward(self, x0: Tensor, x: Tensor) -> Tensor:
        if self.low_rank is None:
            wx = x @ self.weight.t()
        else:
            wx = (x @ self.v) @ self.u.t()
        return x0 * (wx + self.bias) + x

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.in_channels}, low_rank={self.low_rank})"
