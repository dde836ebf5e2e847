"""DP for split learning: clipping, Gaussian noise, and epsilon from Opacus's RDP accountant.

Needs the ``vfl`` extra (opacus); skipped without it, except under CI, where it is a failure.
"""

from __future__ import annotations

import os
import sys

import pytest
import torch

try:
    from opacus.accountants import RDPAccountant
    from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent
except ImportError:
    if os.environ.get("CI"):
        raise
    pytest.skip("opacus is not installed (pip install -e '.[vfl]')", allow_module_level=True)

from graphrec.errors import ConfigError, MissingExtraError
from graphrec.federated.vertical import (
    GaussianDP,
    MessageLog,
    PrivacyAccountant,
    SplitLearner,
    SplitNN,
    clip_rows,
)
from graphrec.graphs import PartyGraph


def _learner(dp=None, n=64, log=None, seed=0):
    gen = torch.Generator().manual_seed(seed)
    graph = PartyGraph({"bank": 4, "shop": 3, "app": 2}, 3, "bank")
    torch.manual_seed(seed)
    model = SplitNN(graph, hidden_channels=(5,), top_hidden_channels=(4,))
    x = {p: 3 * torch.randn(n, w, generator=gen) for p, w in graph.num_features.items()}
    y = (torch.rand(n, generator=gen) > 0.5).float()
    return SplitLearner(model, x, y, dp=dp, log=log, seed=seed)


def test_clip_rows_hand_case():
    x = torch.tensor([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]])
    want = torch.tensor([[0.6, 0.8], [0.3, 0.4], [0.0, 0.0]])
    torch.testing.assert_close(clip_rows(x, 1.0), want)


def test_noise_scale_and_seed():
    dp = GaussianDP(noise_multiplier=0.5, clip_norm=2.0)
    a = dp(torch.zeros(20000, 1), torch.Generator().manual_seed(1))
    b = dp(torch.zeros(20000, 1), torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.std().item() == pytest.approx(1.0, rel=0.03)


@pytest.mark.parametrize("targets", [("embedding",), ("gradient",), ("embedding", "gradient")])
def test_epsilon_equals_opacus(targets):
    sigma, batch, n, steps, delta = 1.1, 16, 64, 12, 1e-5
    learner = _learner(GaussianDP(sigma, 1.0, targets, delta), n=n)
    learner.fit(steps=steps, batch_size=batch)
    releases = steps * len(targets)
    assert learner.accountant.releases == releases
    alphas = RDPAccountant.DEFAULT_ALPHAS
    rdp = compute_rdp(q=batch / n, noise_multiplier=sigma, steps=releases, orders=alphas)
    want, _ = get_privacy_spent(orders=alphas, rdp=rdp, delta=delta)
    assert learner.epsilon() == pytest.approx(want, rel=1e-12)
    assert 0 < want < float("inf")


def test_no_noise_and_large_clip_equals_plain_training():
    plain = _learner()
    dp = _learner(GaussianDP(0.0, 1e9, ("embedding", "gradient")))
    batch = torch.arange(0, 64, 3)
    assert plain.forward_backward(batch) == dp.forward_backward(batch)
    for p, q in zip(plain.model.parameters(), dp.model.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-6, rtol=0)
    assert plain.epsilon() == dp.epsilon() == float("inf")


def test_released_rows_are_clipped_and_noise_changes_gradients():
    log = MessageLog(keep_payloads=True)
    learner = _learner(GaussianDP(0.0, 0.01, ("embedding", "gradient")), log=log)
    learner.fit(steps=3, batch_size=8)
    sent = [m.payload for m in log if m.kind in ("embedding", "gradient")]
    assert len(sent) == 3 * 2 * 2
    assert all(torch.linalg.vector_norm(x, dim=1).max() <= 0.01 * (1 + 1e-5) for x in sent)
    plain, noisy = _learner(), _learner(GaussianDP(1.0, 1.0, ("gradient",)))
    batch = torch.arange(8)
    plain.forward_backward(batch), noisy.forward_backward(batch)
    top = [p.grad for p in plain.model.top.parameters()]
    assert all(torch.equal(a, p.grad) for a, p in zip(top, noisy.model.top.parameters()))
    bottom = plain.model.bottoms["shop"][0].weight.grad
    assert not torch.allclose(bottom, noisy.model.bottoms["shop"][0].weight.grad)


def test_predict_releases_are_accounted():
    learner = _learner(GaussianDP(1.0, 1.0))
    learner.predict(torch.arange(16))
    assert learner.accountant.releases == 1 and learner.epsilon() > 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"noise_multiplier": -1.0, "clip_norm": 1.0}, "noise_multiplier"),
        ({"noise_multiplier": 1.0, "clip_norm": 0.0}, "clip_norm"),
        ({"noise_multiplier": 1.0, "clip_norm": 1.0, "targets": ("labels",)}, "targets"),
        ({"noise_multiplier": 1.0, "clip_norm": 1.0, "targets": ()}, "targets"),
        ({"noise_multiplier": 1.0, "clip_norm": 1.0, "delta": 1.0}, "delta"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        GaussianDP(**kwargs)


def test_accountant_errors_and_missing_extra(monkeypatch):
    acc = PrivacyAccountant()
    assert acc.epsilon(1e-5) == 0.0
    with pytest.raises(ConfigError, match="sample_rate"):
        acc.record(1.0, 0.0)
    monkeypatch.setitem(sys.modules, "opacus.accountants", None)
    with pytest.raises(MissingExtraError, match="needs the 'vfl' extra"):
        PrivacyAccountant()
