"""Paillier vertical logistic regression: equal to plaintext, gradients of the real loss, no
label or residual in the clear at the parties.

Needs the ``vfl`` extra (phe); skipped without it, except under CI, where it is a failure.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch

try:
    import phe  # noqa: F401
except ImportError:
    if os.environ.get("CI"):
        raise
    pytest.skip("phe is not installed (pip install -e '.[vfl]')", allow_module_level=True)

from graphrec.errors import ConfigError, MissingExtraError
from graphrec.federated.vertical import MessageLog, PaillierLogisticRegression

KEY_BITS = 256  # fast for tests only


def _data(n=20, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = {"bank": torch.randn(n, 2, generator=gen), "shop": torch.randn(n, 3, generator=gen)}
    x["app"] = torch.randn(n, 2, generator=gen)
    y = (torch.rand(n, generator=gen) > 0.6).float()
    return x, y


def _lr(encrypted, log=None, **kw):
    x, y = _data()
    return PaillierLogisticRegression(
        x, y, "bank", lr=0.5, l2=0.01, key_bits=KEY_BITS, encrypted=encrypted, log=log, **kw
    )


def test_encrypted_equals_plaintext():
    plain, enc = _lr(False), _lr(True)
    assert plain.fit(3, 8) == pytest.approx(enc.fit(3, 8), abs=1e-9)
    for party in ("bank", "shop", "app"):
        np.testing.assert_allclose(enc.weights[party], plain.weights[party], atol=1e-6, rtol=0)
        assert np.abs(plain.weights[party]).min() > 0  # every weight moved
    assert enc.bias == pytest.approx(plain.bias, abs=1e-12)


def test_plaintext_step_is_gradient_descent_on_the_loss():
    x, y = _data()
    model = _lr(False)
    model.weights = {p: np.full(w.shape, 0.1) for p, w in model.weights.items()}
    batch = np.array([3, 0, 7, 11, 19])
    w = {p: torch.full((x[p].shape[1],), 0.1, dtype=torch.float64, requires_grad=True) for p in x}
    z = sum(x[p][batch].double() @ w[p] for p in x)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(z, y[batch].double())
    assert model.step(batch) == pytest.approx(loss.item(), abs=1e-12)
    loss.backward()
    for p in x:
        want = w[p].detach() - 0.5 * (w[p].grad + 0.01 * w[p].detach())
        np.testing.assert_allclose(model.weights[p], want.numpy(), atol=1e-12, rtol=0)


def test_messages_and_masks():
    log = MessageLog(keep_payloads=True)
    model = _lr(True, log=log)
    model.step(np.arange(8))
    kinds = [(m.sender, m.receiver, m.kind) for m in log]
    assert kinds.count(("bank", "shop", "residual")) == 1
    width = 2 * KEY_BITS // 8
    for m in log:
        if m.kind in ("residual", "masked_gradient"):
            data, exps = m.payload
            assert isinstance(data, bytes) and m.nbytes == len(exps) * (width + 4)
            assert len(exps) == (8 if m.kind == "residual" else model.features[m.sender].shape[1])
    # what the label owner decrypts is the gradient plus the party's mask, not the gradient
    plain = _lr(False, log=(plog := MessageLog(keep_payloads=True)))
    plain.step(np.arange(8))
    masked = [m.payload for m in plog if m.kind == "gradient" and m.receiver == "shop"][0]
    x = plain.features["shop"][:8]
    residual = [m.payload for m in plog if m.kind == "residual" and m.receiver == "shop"][0]
    assert np.abs(masked - x.T @ residual / 8).min() > 1e-3


def test_errors(monkeypatch):
    x, y = _data()
    with pytest.raises(ConfigError, match="lr"):
        PaillierLogisticRegression(x, y, "bank", lr=0.0, encrypted=False)
    with pytest.raises(ConfigError, match="key_bits"):
        PaillierLogisticRegression(x, y, "bank", key_bits=100)
    with pytest.raises(ConfigError, match="labels must be 0 or 1"):
        PaillierLogisticRegression(x, 2 * y, "bank", encrypted=False)
    with pytest.raises(ConfigError, match="other than the label owner"):
        PaillierLogisticRegression({"bank": x["bank"]}, y, "bank", encrypted=False)
    with pytest.raises(ConfigError, match="batch"):
        _lr(False).step(np.array([20]))
    monkeypatch.setitem(sys.modules, "phe", None)
    with pytest.raises(MissingExtraError, match="needs the 'vfl' extra"):
        _lr(True)
