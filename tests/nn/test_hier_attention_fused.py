"""HierarchicalIntentAttention.forward_weighted with torch's fused attention (``fused=True``)."""

from __future__ import annotations

import pytest
import torch

from graphrec.errors import ConfigError
from graphrec.nn.hier_attention import HierarchicalIntentAttention


def _inputs(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    B, d, sizes = 6, 8, (5, 9, 3)
    keys = [torch.randn(B, E, d, generator=gen, requires_grad=True) for E in sizes]
    weights = [torch.rand(B, E, generator=gen) for E in sizes]
    weights[0][:, 3:] = 0.0  # padding
    weights[1][2] = 0.0  # a sample without any key of the type
    weights[2][:, 1] = 2.0  # a value held twice
    shared = torch.randn(4, d, generator=gen, requires_grad=True)  # a bag over a small table
    keys.append(shared)
    weights.append(torch.rand(B, 4, generator=gen))
    target = torch.randn(B, len(keys), d, generator=gen)
    context = torch.randn(B, d, generator=gen)
    return keys, weights, target, context


def test_fused_equals_plain_softmax_values_and_gradients():
    torch.manual_seed(0)
    layer = HierarchicalIntentAttention(8, 4, context_channels=8)
    out, grads = {}, {}
    for fused in (False, True):
        keys, weights, target, context = _inputs()
        res = layer.forward_weighted(keys, weights, target, context, return_alpha=False,
                                     fused=fused)  # fmt: skip
        res.intent.pow(2).sum().backward()
        out[fused] = res
        grads[fused] = [k.grad for k in keys] + [p.grad.clone() for p in layer.parameters()]
        layer.zero_grad()
    torch.testing.assert_close(out[True].intent, out[False].intent, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out[True].beta, out[False].beta, atol=1e-6, rtol=1e-5)
    # the empty row's per-type intent is exactly 0 either way
    assert out[True].per_type[2, 1].abs().max() == 0 == out[False].per_type[2, 1].abs().max()
    for g_fused, g_plain in zip(grads[True], grads[False]):
        assert torch.isfinite(g_fused).all()
        torch.testing.assert_close(g_fused, g_plain, atol=1e-5, rtol=1e-4)


def test_fused_needs_no_alpha():
    layer = HierarchicalIntentAttention(8, 4, context_channels=8)
    keys, weights, target, context = _inputs()
    with pytest.raises(ConfigError, match="return_alpha"):
        layer.forward_weighted(keys, weights, target, context, fused=True)
