"""graphrec.nn.MLP: structure, hand-computed forward, parity with the hand-written MLPs it
replaced (same initialisation, same state-dict keys)."""

from __future__ import annotations

import pytest
import torch

from graphrec.errors import ConfigError
from graphrec.federated import TinyCTR
from graphrec.nn import MLP, TargetAttention


def test_layers_keys_and_out_channels():
    mlp = MLP(6, [4, 3], 2, dropout=0.1, activation="prelu")
    kinds = [type(m).__name__ for m in mlp]
    assert kinds == ["Linear", "PReLU", "Dropout", "Linear", "PReLU", "Dropout", "Linear"]
    assert list(mlp.state_dict()) == [
        "0.weight", "0.bias", "1.weight", "3.weight", "3.bias", "4.weight", "6.weight", "6.bias"
    ]  # fmt: skip
    assert mlp(torch.zeros(5, 6)).shape == (5, 2) and mlp.out_channels == 2
    headless = MLP(6, [4], None)
    assert headless.out_channels == 4 and len(headless.linears()) == 1


def test_forward_hand_computed():
    mlp = MLP(2, [2], 1)
    with torch.no_grad():
        mlp[0].weight.copy_(torch.tensor([[1.0, -1.0], [2.0, 1.0]]))
        mlp[0].bias.copy_(torch.tensor([0.0, -1.0]))
        mlp[2].weight.copy_(torch.tensor([[3.0, -2.0]]))
        mlp[2].bias.fill_(0.5)
    x = torch.tensor([[1.0, 2.0], [-1.0, 0.0]])
    # hidden = relu([[-1, 3], [-1, -3]]) = [[0, 3], [0, 0]]; out = 3 h1 - 2 h2 + 0.5
    torch.testing.assert_close(mlp(x), torch.tensor([[-5.5], [0.5]]))


def test_same_initialisation_as_the_hand_written_mlps():
    torch.manual_seed(0)
    mlp = MLP(8, [5, 4], 1, activation="prelu")
    torch.manual_seed(0)
    layers = [torch.nn.Linear(8, 5), torch.nn.PReLU(), torch.nn.Linear(5, 4), torch.nn.PReLU()]
    old = torch.nn.Sequential(*layers, torch.nn.Linear(4, 1))
    assert mlp.state_dict().keys() == old.state_dict().keys()
    assert all(
        torch.equal(a, b) for a, b in zip(mlp.state_dict().values(), old.state_dict().values())
    )


def test_saved_attention_and_tinyctr_weights_still_load():
    """State dicts written with the former hand-written Sequentials load unchanged."""
    old_mlp = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.PReLU(), torch.nn.Linear(8, 1))
    att = TargetAttention(4, (8,))
    att.load_state_dict({f"mlp.{k}": v for k, v in old_mlp.state_dict().items()})
    torch.testing.assert_close(att.mlp[0].weight, old_mlp[0].weight)
    assert [k for k in TinyCTR(3, 5, dim=2, hidden=4).state_dict() if k.startswith("mlp")] == [
        "mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias"
    ]  # fmt: skip


def test_reset_parameters_and_validation():
    mlp = MLP(3, [2], 1, activation="prelu")
    with torch.no_grad():
        for p in mlp.parameters():
            p.fill_(7.0)
    mlp.reset_parameters()
    assert mlp[1].weight.item() == 0.25 and (mlp[0].weight != 7.0).all()
    with pytest.raises(ConfigError, match="activation"):
        MLP(3, [2], activation="gelu")
    with pytest.raises(ConfigError, match="dropout"):
        MLP(3, [2], dropout=1.5)
