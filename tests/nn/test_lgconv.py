"""graphrec.nn.LGConv: hand case, and the edge-list, torch sparse and scipy paths agree."""

from __future__ import annotations

import pytest
import torch

from graphrec.errors import ConfigError
from graphrec.nn import LGConv, ScipyAdjacency


def test_hand_case_path_graph():
    # 0 - 1 - 2 (both directions): deg = [1, 2, 1], weights 1/sqrt(2) on every edge
    edge_index = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    x = torch.tensor([[1.0], [10.0], [100.0]], dtype=torch.float64)
    out = LGConv()(x, edge_index)
    r = 2**-0.5
    expected = torch.tensor([[10 * r], [(1 + 100) * r], [10 * r]], dtype=torch.float64)
    torch.testing.assert_close(out, expected)
    # an isolated node (degree 0) gets 0, not NaN
    out = LGConv()(torch.ones(4, 1), edge_index)
    assert out[3].item() == 0.0 and torch.isfinite(out).all()


def test_edge_list_sparse_and_scipy_paths_agree():
    g = torch.Generator().manual_seed(0)
    n, m = 40, 200
    edge_index = torch.randint(0, n, (2, m), generator=g)
    weight = torch.rand(m, generator=g, dtype=torch.float64)
    adj_t = torch.sparse_coo_tensor(edge_index.flip(0), weight, (n, n), check_invariants=True)
    adj_t = adj_t.coalesce()
    conv = LGConv(normalize=False)
    grads, outs = [], []
    for adj in ((edge_index, weight), (adj_t, None), (ScipyAdjacency.from_torch(adj_t), None)):
        x = torch.randn(n, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        x.requires_grad_()
        out = conv(x, *adj)
        (out * torch.arange(3.0, dtype=torch.float64)).sum().backward()
        outs.append(out.detach())
        grads.append(x.grad)
    for out, grad in zip(outs[1:], grads[1:]):
        torch.testing.assert_close(out, outs[0])
        torch.testing.assert_close(grad, grads[0])


def test_sparse_input_must_be_normalised_already():
    adj_t = torch.eye(3).to_sparse_csr()
    with pytest.raises(ConfigError, match="normalize=False"):
        LGConv()(torch.ones(3, 2), adj_t)
    with pytest.raises(ConfigError, match="normalize=False"):
        LGConv()(torch.ones(3, 2), ScipyAdjacency.from_torch(adj_t))
    with pytest.raises(ConfigError, match="sparse"):
        ScipyAdjacency.from_torch(torch.eye(3))
