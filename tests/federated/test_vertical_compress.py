"""Compression of split learning's messages: hand cases, error bounds, error feedback, bytes."""

from __future__ import annotations

import pytest
import torch

from graphrec.errors import ConfigError
from graphrec.federated.vertical import (
    Compression,
    ErrorFeedback,
    MessageLog,
    Quantize,
    SplitLearner,
    SplitNN,
    TopK,
    compressor,
)
from graphrec.graphs import PartyGraph


def test_quantize_hand_cases():
    x = torch.tensor([[0.0, 0.6, 1.0]])
    codes, grid = Quantize(4).encode(x)
    assert codes.dtype == torch.uint8 and codes.tolist() == [0 | 9 << 4, 15]
    assert grid.tolist() == pytest.approx([0.0, 1 / 15])
    torch.testing.assert_close(Quantize(4)(x), torch.tensor([[0.0, 9 / 15, 1.0]]))
    torch.testing.assert_close(Quantize(8)(torch.full((2, 2), 3.0)), torch.full((2, 2), 3.0))


@pytest.mark.parametrize("bits", [8, 4])
def test_quantize_error_bound(bits):
    x = torch.randn(33, 7, generator=torch.Generator().manual_seed(bits))
    step = (x.max() - x.min()) / (2**bits - 1)
    assert (Quantize(bits)(x) - x).abs().max() <= step / 2 + 1e-6


def test_topk_hand_case():
    x = torch.tensor([[1.0, -5.0], [3.0, 0.5]])
    values, index = TopK(0.5).encode(x)
    assert sorted(index.tolist()) == [1, 2] and index.dtype == torch.int32
    torch.testing.assert_close(TopK(0.5)(x), torch.tensor([[0.0, -5.0], [3.0, 0.0]]))


def test_error_feedback_accumulates_the_residual():
    x = torch.tensor([[1.0, -5.0, 3.0, 0.5]])
    feedback = ErrorFeedback(TopK(0.5), num_rows=3)
    rows = torch.tensor([1])
    for want in ([1.0, 0.0, 0.0, 0.5], [2.0, 0.0, 0.0, 1.0]):
        feedback.encode(x, rows)
        torch.testing.assert_close(feedback.residual[1], torch.tensor(want))
    assert not feedback.residual[[0, 2]].any()
    # over many messages, everything sent plus the residual is everything meant to be sent
    gen = torch.Generator().manual_seed(0)
    feedback, total, sent = ErrorFeedback(Quantize(4), num_rows=5), 0, 0
    for _ in range(10):
        x = torch.randn(5, 3, generator=gen)
        sent = sent + feedback.compressor.decode(feedback.encode(x, torch.arange(5)), x.shape)
        total = total + x
    torch.testing.assert_close(sent + feedback.residual, total, atol=1e-5, rtol=0)


def _learner(compression=None, log=None):
    gen = torch.Generator().manual_seed(0)
    graph = PartyGraph({"bank": 4, "shop": 3, "app": 5}, {"bank": 4, "shop": 6, "app": 3}, "bank")
    torch.manual_seed(0)
    model = SplitNN(graph, hidden_channels=(8,))
    x = {p: torch.randn(64, w, generator=gen) for p, w in graph.num_features.items()}
    y = (x["shop"][:, 0] * x["app"][:, 1] > 0).float()
    return SplitLearner(model, x, y, log=log, compression=compression)


@pytest.mark.parametrize(
    ("spec", "bytes6", "bytes3"),
    [("q8", 16 * 6 + 8, 16 * 3 + 8), ("q4", 16 * 3 + 8, 24 + 8), ("topk:0.25", 24 * 8, 12 * 8)],
)
def test_logged_bytes_are_the_compressed_ones(spec, bytes6, bytes3):
    """A [16, d] message costs bytes6 (d = 6) or bytes3 (d = 3) compressed, 64 d plain."""
    plain_log, log = MessageLog(), MessageLog()
    comp = compressor(spec)
    _learner(log=plain_log).step(torch.arange(16))
    _learner(Compression(comp, comp), log=log).step(torch.arange(16))
    plain, small = plain_log.bytes_by("link"), log.bytes_by("link")
    for party, d in (("shop", 6), ("app", 3)):
        assert plain[party, "bank"] == 16 * d * 4
        assert small[party, "bank"] == (bytes6 if d == 6 else bytes3)
        assert small["bank", party] == plain["bank", party] - 16 * d * 4 + small[party, "bank"]
    assert plain_log.bytes_by("kind")["embedding"] / log.bytes_by("kind")["embedding"] == (
        16 * 9 * 4 / (bytes6 + bytes3)
    )


def test_training_with_compression_and_error_feedback():
    plain = _learner().fit(60, 16)
    q8 = _learner(Compression(Quantize(8), Quantize(8))).fit(60, 16)
    assert abs(sum(plain[-10:]) - sum(q8[-10:])) / 10 < 0.01
    learner = _learner(Compression(TopK(0.1), error_feedback=True))
    learner.fit(2, 16)
    assert set(learner._feedback) == {("shop", "bank", "embedding"), ("app", "bank", "embedding")}
    assert learner._feedback["shop", "bank", "embedding"].residual.abs().sum() > 0
    before = learner._feedback["shop", "bank", "embedding"].residual.clone()
    learner.predict(torch.arange(64))
    assert torch.equal(before, learner._feedback["shop", "bank", "embedding"].residual)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: Quantize(3), "bits"),
        (lambda: TopK(0.0), "ratio"),
        (lambda: compressor("topk:x"), "ratio"),
        (lambda: compressor("q16"), "compression"),
    ],
)
def test_invalid_arguments(build, match):
    with pytest.raises(ConfigError, match=match):
        build()
