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
    payload_bytes,
)
from graphrec.federated.vertical.compress import QuantizeConfig, TopKConfig
from graphrec.graphs import PartyGraph
from graphrec.registry import COMPRESSORS


def test_quantize_hand_cases():
    x = torch.tensor([[0.0, 0.6, 1.0]])
    codes, grid = Quantize(4, entropy_coding=False).encode(x)
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
    values, index = TopK(0.5, entropy_coding=False).encode(x)
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
    [
        ("q8:entropy_coding=false", 16 * 6 + 8, 16 * 3 + 8),
        ("q4:false", 16 * 3 + 8, 24 + 8),
        ("topk:0.25,entropy_coding=false", 24 * 8, 12 * 8),
    ],
)
def test_logged_bytes_are_the_compressed_ones(spec, bytes6, bytes3):
    """A [16, d] message costs bytes6 (d = 6) or bytes3 (d = 3) compressed without entropy
    coding, 64 d plain."""
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
    learner = _learner(Compression(TopK(0.1), TopK(0.1), error_feedback=True))
    learner.fit(2, 16)
    assert set(learner.feedback) == {"shop", "app"}  # the label owner's, of the gradients
    shop = learner.parties["shop"].feedback  # the party's, of its embeddings
    assert shop.residual.abs().sum() > 0 and learner.feedback["shop"].residual.abs().sum() > 0
    before = shop.residual.clone()
    learner.predict(torch.arange(64))
    assert torch.equal(before, shop.residual)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: Quantize(3), "bits"),
        (lambda: TopK(0.0), "ratio"),
        (lambda: compressor("topk:x"), "ratio"),
        (lambda: compressor("q16"), r"unknown compressor 'q16'; choose one of: q8, q4, topk"),
        (lambda: compressor("q8:maybe"), "option entropy_coding must be a bool"),
        (lambda: compressor("q8:bits=4"), "'q8' has no option bits; its options: entropy_coding"),
        (lambda: compressor("topk:0.1,0"), "options after the first must be field=value"),
    ],
)
def test_invalid_arguments(build, match):
    with pytest.raises(ConfigError, match=match):
        build()


def _tensors():
    """Normal, heavy-tailed (gradient-like), constant and odd-sized tensors."""
    gen = torch.Generator().manual_seed(0)
    normal = torch.randn(64, 8, generator=gen)
    heavy = normal / torch.randn(64, 8, generator=gen).abs().clamp_min(0.05)
    return [normal, heavy, torch.full((4, 3), -2.5), torch.randn(7, 3, generator=gen)]


@pytest.mark.parametrize("make", [lambda c: Quantize(8, c), lambda c: Quantize(4, c),
                                  lambda c: TopK(0.1, c), lambda c: TopK(0.5, c)])  # fmt: skip
def test_entropy_coding_is_lossless_and_counted(make):
    plain, coded = make(False), make(True)
    for x in _tensors():
        payload = coded.encode(x)
        blob = next(p for p in payload if isinstance(p, bytes))
        other = next(p for p in payload if isinstance(p, torch.Tensor))
        assert torch.equal(coded.decode(payload, x.shape), plain.decode(plain.encode(x), x.shape))
        # the log counts the byte string plus the float32 grid (m, s) or the kept values
        assert payload_bytes(payload) == len(blob) + 4 * other.numel()
        assert MessageLog().send("shop", "bank", "embedding", payload) is payload
        if isinstance(coded, Quantize):
            assert other.dtype == torch.float32 and other.numel() == 2
            plain_codes = plain.encode(x)[0]
            assert len(blob) <= plain_codes.numel() + 1  # never more than the tag byte


def test_entropy_coding_measured_bits_per_value():
    gen = torch.Generator().manual_seed(1)
    normal = torch.randn(512, 16, generator=gen)
    heavy = torch.randn(256, 8, generator=gen) / torch.randn(256, 8, generator=gen).abs()
    uniform = torch.arange(256.0).reshape(32, 8)  # every 8-bit code once: nothing to gain

    def bits(comp, x):
        return 8 * payload_bytes(comp.encode(x)) / x.numel()

    assert bits(Quantize(8), normal) < 7.5 < 8 < bits(Quantize(8, entropy_coding=False), normal)
    assert bits(Quantize(8), heavy) < 4 and bits(Quantize(4), heavy) < 1
    assert payload_bytes(Quantize(8).encode(uniform)) == 256 + 1 + 8  # stored behind the tag
    # top-k positions: a deflated bitmap, shorter than the plain bitmap and the int32 indices
    values, positions = TopK(0.1).encode(normal)
    assert values.numel() == 820 and len(positions) < 8192 / 8 < 820 * 4


def test_compressor_specs_go_through_the_registry():
    assert COMPRESSORS.names() == ["q8", "q4", "topk"]
    assert compressor("q8") == Quantize(8) == COMPRESSORS.build("q8")
    assert compressor("q4:entropy_coding=false") == Quantize(4, entropy_coding=False)
    assert compressor("topk") == TopK() == TopK(TopKConfig.ratio)
    assert compressor("topk:0.05") == TopK(0.05) and compressor("topk:0.2,entropy_coding=0") == (
        TopK(0.2, entropy_coding=False)
    )
    # the constructors' defaults are the registered configs'
    assert Quantize().entropy_coding == QuantizeConfig.entropy_coding
    assert COMPRESSORS.defaults("q8") == COMPRESSORS.defaults("q4") == {"entropy_coding": True}
    assert COMPRESSORS.defaults("topk") == {"ratio": TopK().ratio, "entropy_coding": True}


def test_laplace_ans_codes_a_small_smooth_batch_below_its_width():
    """A batch's 32 x 8 normal embeddings: deflate cannot shorten 256 8-bit codes, the
    two-parameter Laplace model can (tag 2), and the receiver decodes the same tensor."""
    x = torch.randn(32, 8, generator=torch.Generator().manual_seed(2))
    blob, grid = Quantize(8).encode(x)
    assert blob[0] == 2 and 5 < len(blob) < 256  # deflate: 257 (stored behind its tag)
    plain = Quantize(8, entropy_coding=False)
    assert torch.equal(Quantize(8).decode((blob, grid), x.shape), plain(x))
    q4 = Quantize(4).encode(x)[0]
    assert q4[0] == 2 and len(q4) < 128
    assert torch.equal(Quantize(4).decode(Quantize(4).encode(x), x.shape), Quantize(4, False)(x))
