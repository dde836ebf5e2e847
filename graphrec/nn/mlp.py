"""A multi-layer perceptron: the dense part of the CTR models, DIN's attention scorer, ..."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from graphrec.errors import ConfigError

__all__ = ["MLP"]

ACTIVATIONS = {"relu": torch.nn.ReLU, "prelu": torch.nn.PReLU, "tanh": torch.nn.Tanh}


class MLP(torch.nn.Sequential):
    r"""A multi-layer perceptron with an optional plain last layer:

    .. math::
        \mathbf{h}_0 = \mathbf{x}, \qquad
        \mathbf{h}_{l} = \mathrm{Dropout}\big(\sigma_l(\mathbf{W}_l \mathbf{h}_{l-1}
        + \mathbf{b}_l)\big) \quad (l = 1, \dots, L), \qquad
        \mathbf{y} = \mathbf{W}_{L+1} \mathbf{h}_L + \mathbf{b}_{L+1}

    with one activation module :math:`\sigma_l` per hidden layer (so ``"prelu"`` learns one
    slope per layer). A :class:`torch.nn.Sequential` of ``Linear``, activation and (when
    ``dropout > 0``) ``Dropout`` modules, built and initialised in that order (PyTorch's default
    ``Linear`` initialisation), so its state-dict keys are ``"0.weight"``, ``"0.bias"``, ...
    (PyG's :class:`torch_geometric.nn.models.MLP` shares one activation module between layers
    and names its layers ``lins.*``.)

    Args:
        in_channels (int): Input size.
        hidden_channels (Sequence[int]): Hidden sizes (may be empty).
        out_channels (int, optional): Size of the final linear layer (no activation); None for
            no final layer. (default: :obj:`1`)
        dropout (float, optional): Dropout after every hidden activation. (default: :obj:`0.0`)
        activation (str, optional): ``"relu"``, ``"prelu"`` or ``"tanh"``.
            (default: :obj:`"relu"`)

    Shapes:
        - **input:** :math:`(*, F_{in})`
        - **output:** :math:`(*, F_{out})`; :attr:`out_channels` is :math:`F_{out}` (the last
          hidden size without a final layer)
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: Sequence[int],
        out_channels: int | None = 1,
        *,
        dropout: float = 0.0,
        activation: str = "relu",
    ) -> None:
        if activation not in ACTIVATIONS:
            raise ConfigError(f"activation must be one of {list(ACTIVATIONS)}; got {activation!r}")
        if not 0.0 <= dropout <= 1.0:
            raise ConfigError(f"dropout must be in [0, 1]; got {dropout}")
        layers: list[torch.nn.Module] = []
        width = in_channels
        for hidden in hidden_channels:
            layers += [torch.nn.Linear(width, hidden), ACTIVATIONS[activation]()]
            if dropout > 0:
                layers.append(torch.nn.Dropout(dropout))
            width = hidden
        if out_channels is not None:
            layers.append(torch.nn.Linear(width, out_channels))
            width = out_channels
        super().__init__(*layers)
        self.in_channels = in_channels
        self.out_channels = width

    def linears(self) -> list[torch.nn.Linear]:
        """The ``Linear`` layers, first to last."""
        return [m for m in self if isinstance(m, torch.nn.Linear)]

    def reset_parameters(self) -> None:
        """Re-initialise every layer (PyTorch's defaults; PReLU slopes back to 0.25)."""
        for module in self:
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
