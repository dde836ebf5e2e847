"""GRATConv: reversed-attention direction, shapes, gradients, target masking, DGL parity;
the segment reductions and the export-safe aggregation modes it runs on."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor
from torch_geometric.utils import softmax

from graphrec.nn import GRATConv
from graphrec.nn.segment import (
    EdgeSegments,
    Segments,
    aggregation_mode,
    get_aggregation_mode,
    segment_max,
    segment_softmax,
    segment_sum,
)


def _identity_layer(channels: int) -> GRATConv:
    """A layer whose output is the raw aggregate m_u (W = I, b = 0), random attention."""
    conv = GRATConv(channels, channels)
    with torch.no_grad():
        conv.lin.weight.copy_(torch.eye(channels))
        conv.lin.bias.zero_()
    return conv


def _bidirected(edges: list[tuple[int, int]]) -> Tensor:
    pairs = edges + [(v, u) for u, v in edges]
    return torch.tensor(pairs, dtype=torch.long).t()


def _soft_coverage(edge_index: Tensor, n: int) -> Tensor:
    """c_u = sum over successors v of 1 / indeg(v), by hand from the edge list."""
    indeg = [0] * n
    for v in edge_index[1].tolist():
        indeg[v] += 1
    c = [0.0] * n
    for u, v in edge_index.t().tolist():
        c[u] += 1.0 / indeg[v]
    return torch.tensor(c)


STAR = (_bidirected([(0, 1), (0, 2), (0, 3), (0, 4)]), 5, [4.0, 0.25, 0.25, 0.25, 0.25])
PATH = (_bidirected([(0, 1), (1, 2), (2, 3)]), 4, [0.5, 1.5, 1.5, 0.5])


class PerReceiverGRAT(GRATConv):
    """Wrong variant: softmax grouped by the receiving coverer (PyG/DGL default = plain GAT)."""

    def message(self, x_j, att_coverer_i, att_covered_j, index, size_i):
        logit = torch.relu(att_covered_j + att_coverer_i + self.att_bias)
        alpha = softmax(logit, index, num_nodes=size_i)  # index = receiving coverer u
        return alpha.unsqueeze(-1) * x_j


def _per_receiver(channels: int) -> GRATConv:
    conv = PerReceiverGRAT(channels, channels)
    conv.load_state_dict(_identity_layer(channels).state_dict())
    return conv


@pytest.mark.parametrize("graph", [STAR, PATH], ids=["star", "path"])
def test_layer1_is_soft_coverage(graph):
    torch.manual_seed(0)
    edge_index, n, expected = graph
    expected = torch.tensor(expected)
    assert torch.allclose(_soft_coverage(edge_index, n), expected)
    x = torch.ones(n, 3)
    out = _identity_layer(3)(x, edge_index)
    assert torch.allclose(out, expected.unsqueeze(1).expand(n, 3), atol=1e-6)
    # The per-receiver softmax averages the successors: every non-sink node gets 1.
    wrong = _per_receiver(3)(x, edge_index)
    assert torch.allclose(wrong, torch.ones(n, 3), atol=1e-6)
    assert not torch.allclose(wrong, out, atol=1e-3)


def test_directed_sinks_and_shapes():
    torch.manual_seed(0)
    edge_index = torch.tensor([[0, 0, 1, 3], [1, 2, 2, 2]])  # node 2 and 4 are sinks
    conv = GRATConv(7, 5)
    out = conv(torch.randn(5, 7), edge_index)
    assert out.shape == (5, 5)
    assert torch.allclose(out[2], conv.lin.bias) and torch.allclose(out[4], conv.lin.bias)
    ones = _identity_layer(2)(torch.ones(5, 2), edge_index)[:, 0]
    assert torch.allclose(ones, torch.tensor([1 + 1 / 3, 1 / 3, 0.0, 1 / 3, 0.0]))
    assert GRATConv(3, 1, bias=False).lin.bias is None
    assert sum(p.numel() for p in GRATConv(32, 32).parameters()) == 32 * 32 + 32 + 64 + 1


def test_gradients_flow():
    torch.manual_seed(0)
    edge_index = torch.randint(0, 20, (2, 60))
    x = torch.randn(20, 4, requires_grad=True)
    conv = GRATConv(4, 3)
    conv(x, edge_index).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, param in conv.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_target_weight_zero_equals_dropping_in_edges():
    torch.manual_seed(0)
    n = 30
    edge_index = torch.randint(0, n, (2, 120))
    x = torch.randn(n, 4)
    covered = torch.zeros(n, dtype=torch.bool)
    covered[::3] = True
    conv = GRATConv(4, 6)
    masked = conv(x, edge_index, target_weight=(~covered).float())
    dropped = conv(x, edge_index[:, ~covered[edge_index[1]]])
    assert torch.allclose(masked, dropped, atol=1e-6)


def test_matches_dgl_edge_softmax_on_reversed_graph():
    dgl = pytest.importorskip("dgl")
    from dgl.nn.functional import edge_softmax

    torch.manual_seed(0)
    n, m, f_in, f_out = 40, 200, 5, 3
    edge_index = torch.randint(0, n, (2, m))  # self-loops and duplicates included
    x = torch.randn(n, f_in)
    conv = GRATConv(f_in, f_out)
    with torch.no_grad():
        for p in conv.parameters():
            p.normal_()

    u, v = edge_index
    rev = dgl.graph((v, u), num_nodes=n)  # messages flow covered -> coverer
    a = conv.att.detach()
    logit = torch.relu(x[v] @ a[:f_in] + x[u] @ a[f_in:] + conv.att_bias.detach())
    rev.edata["a"] = edge_softmax(rev, logit.unsqueeze(1), norm_by="src")  # group by v
    rev.ndata["h"] = x
    rev.update_all(dgl.function.u_mul_e("h", "a", "m"), dgl.function.sum("m", "agg"))
    expected = conv.lin(rev.ndata["agg"]).detach()
    assert torch.allclose(conv(x, edge_index).detach(), expected, atol=1e-5)


def test_torch_export_with_dynamic_sizes():
    torch.manual_seed(0)
    conv = GRATConv(4, 3)
    x, edge_index = torch.randn(50, 4), torch.randint(0, 50, (2, 300))
    dims = ({0: torch.export.Dim("n")}, {1: torch.export.Dim("m")})
    exported = torch.export.export(conv, (x, edge_index), dynamic_shapes=dims).module()
    x, edge_index = torch.randn(70, 4), torch.randint(0, 70, (2, 500))
    assert torch.allclose(exported(x, edge_index), conv(x, edge_index), atol=1e-6)


# --- segment reductions and aggregation modes ------------------------------------------------

EXPORT_MODES = ("dense", "csr")


def _segments_case(seed: int = 0, n: int = 40, m: int = 300, width: int = 3):
    g = torch.Generator().manual_seed(seed)
    index = torch.randint(0, n - 5, (m,), generator=g)  # the last 5 segments are empty
    return torch.randn(m, width, generator=g), index, n, Segments.from_index(index, n)


def test_segments_layout_by_hand():
    perm, ptr = Segments.from_index(torch.tensor([2, 0, 2, 1, 0]), 4)
    assert perm.tolist() == [1, 4, 3, 0, 2] and ptr.tolist() == [0, 2, 3, 5, 5]
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        Segments.from_index(torch.tensor([0, 3]), 3)


@pytest.mark.parametrize("mode", EXPORT_MODES)
def test_segment_ops_equal_the_scatter_path(mode):
    src, index, n, seg = _segments_case()
    ref_sum, ref_max = segment_sum(src, index, n), segment_max(src, index, n)
    ref_soft = segment_softmax(src, index, n)
    with aggregation_mode(mode):
        assert get_aggregation_mode() == mode
        got_sum = segment_sum(src, index, n, seg)
        got_max = segment_max(src, index, n, seg)
        got_soft = segment_softmax(src, index, n, seg)
        got_flat = segment_sum(src[:, 0], index, n, seg)
    assert get_aggregation_mode() == "scatter"
    torch.testing.assert_close(got_sum, ref_sum, atol=1e-6, rtol=0)
    torch.testing.assert_close(got_flat, ref_sum[:, 0], atol=1e-6, rtol=0)
    torch.testing.assert_close(got_max[:-5], ref_max[:-5], atol=0, rtol=0)  # exact
    assert torch.isneginf(got_max[-5:]).all() and (got_sum[-5:] == 0).all()
    torch.testing.assert_close(got_soft, ref_soft, atol=1e-6, rtol=0)
    sums = segment_sum(got_soft, index, n, None)
    torch.testing.assert_close(sums[:-5], torch.ones(n - 5, 3))


@pytest.mark.parametrize("mode", EXPORT_MODES)
def test_segment_softmax_is_stable_for_extreme_logits(mode):
    g = torch.Generator().manual_seed(1)
    index = torch.randint(0, 30, (400,), generator=g)
    # groups far apart (+-1e4) and spreads of 200 inside a group: exp() of the raw logits,
    # or of logits shifted by one global maximum, overflows or underflows to 0/0
    logits = (index.float() - 15.0) * 700.0 + torch.rand(400, generator=g) * 200.0
    ref = segment_softmax(logits, index, 30)
    with aggregation_mode(mode):
        got = segment_softmax(logits, index, 30, Segments.from_index(index, 30))
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=0)


def test_csr_sum_has_no_float32_cancellation():
    """Cumsum differences lose ~eps * |running total|; the compensated CSR sum does not."""
    import numpy as np

    g = torch.Generator().manual_seed(2)
    n, m = 500, 200_000
    index = torch.randint(0, n, (m,), generator=g)
    src = torch.rand(m, 2, generator=g) * 1000.0  # running total up to 1e8
    truth = torch.zeros(n, 2, dtype=torch.float64).index_add_(0, index, src.double())
    seg = Segments.from_index(index, n)
    with aggregation_mode("csr"):
        got = segment_sum(src, index, n, seg)
    tolerance = 4 * torch.finfo(torch.float32).eps * truth.abs().max().item()  # a few ulps
    assert (got.double() - truth).abs().max().item() < tolerance
    # the uncompensated form (sequential float32 cumsum, as a runtime computes it) is far off
    c = np.concatenate([np.zeros((1, 2), np.float32), np.cumsum(src[seg.perm].numpy(), 0)])
    plain = c[seg.ptr[1:].numpy()] - c[seg.ptr[:-1].numpy()]
    assert np.abs(plain - truth.numpy()).max() > 100 * tolerance


def test_csr_segments_longer_than_the_scan():
    index = torch.tensor([0] * 9 + [1] * 3)
    logits = torch.arange(12.0)
    seg = Segments.from_index(index, 2)
    with aggregation_mode("csr", max_segment=9):
        assert segment_max(logits, index, 2, seg).tolist() == [8.0, 11.0]
    ref = segment_softmax(logits, index, 2)
    with aggregation_mode("csr", max_segment=8):  # 3 scan steps: segment 0 is too long
        assert torch.isnan(segment_max(logits, index, 2, seg)).all()
        assert segment_max(logits, index, 2, seg, strict=False).tolist() == [8.0, 11.0]
        # the softmax does not depend on the shift: still exact
        torch.testing.assert_close(segment_softmax(logits, index, 2, seg), ref)
        logits[0] = 200.0  # exceeds the shift of its segment (the max of items 1..8) by 192
        assert not torch.isfinite(segment_softmax(logits, index, 2, seg)).all()


def test_csr_mode_needs_segments_and_modes_are_checked():
    src, index, n, _ = _segments_case()
    with aggregation_mode("csr"), pytest.raises(ValueError, match="Segments.from_index"):
        segment_sum(src, index, n)
    with pytest.raises(ValueError, match="aggregation mode must be one of"):
        with aggregation_mode("sparse"):
            pass


@pytest.mark.parametrize("mode", EXPORT_MODES)
def test_grat_conv_modes_equal_training_path(mode):
    torch.manual_seed(0)
    n = 60
    edge_index = torch.randint(0, n, (2, 400))
    x = torch.randn(n, 4)
    weight = (torch.rand(n) > 0.3).float()
    conv = GRATConv(4, 3)
    with torch.no_grad():
        for p in conv.parameters():
            p.normal_(0.0, 2.0)  # wide logits
    segments = EdgeSegments.from_edge_index(edge_index, n)
    ref = conv(x, edge_index, weight)
    ref.square().sum().backward()
    ref_grads = [p.grad.clone() for p in conv.parameters()]
    conv.zero_grad()
    with aggregation_mode(mode):
        got = conv(x, edge_index, weight, segments)
        got.square().sum().backward()
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-6)
    for g_ref, p in zip(ref_grads, conv.parameters()):
        torch.testing.assert_close(p.grad, g_ref, atol=1e-4, rtol=1e-5)
