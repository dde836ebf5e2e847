"""Second-order factorization-machine interaction of field embeddings."""

from __future__ import annotations

import torch
from torch import Tensor


class FMInteraction(torch.nn.Module):
    r"""The pairwise interaction term of the `"Factorization Machines"
    <https://doi.org/10.1109/ICDM.2010.127>`_ paper (Rendle, ICDM 2010), as used by DeepFM.

    For field embeddings :math:`\mathbf{v}_1, \dots, \mathbf{v}_F \in \mathbb{R}^d` (the
    embedding of each field already scaled by its value):

    .. math::
        y_{\mathrm{FM}} = \sum_{i < j} \langle \mathbf{v}_i, \mathbf{v}_j \rangle
        = \frac{1}{2} \sum_{k=1}^{d} \left[ \Big(\sum_{i=1}^{F} v_{ik}\Big)^2
        - \sum_{i=1}^{F} v_{ik}^2 \right]

    computed in :math:`O(F d)` with the right-hand form. The layer has no parameters.

    Shapes:
        - **input:** field embeddings :math:`(B, F, d)`
        - **output:** :math:`(B)`
    """

    def forward(self, fields: Tensor) -> Tensor:
        square_of_sum = fields.sum(dim=1).pow(2)
        sum_of_square = fields.pow(2).sum(dim=1)
        return 0.5 * (square_of_sum - sum_of_square).sum(dim=-1)
