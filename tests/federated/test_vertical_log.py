"""The message log of vertical FL: bytes per payload, sums, detaching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from graphrec.errors import ConfigError
from graphrec.federated.vertical import MessageLog, payload_bytes


def test_payload_bytes():
    assert payload_bytes(torch.zeros(3, 4)) == 48
    assert payload_bytes(torch.zeros(5, dtype=torch.float64)) == 40
    assert payload_bytes(np.zeros(2, np.int64)) == 16
    assert payload_bytes((b"ab", b"cde", torch.zeros(1, dtype=torch.int8))) == 6
    with pytest.raises(ConfigError, match="payload must be"):
        payload_bytes("text")


def test_send_logs_and_detaches():
    log = MessageLog()
    h = torch.ones(2, 3, requires_grad=True) * 2
    got = log.send("shop", "bank", "embedding", h)
    assert not got.requires_grad and torch.equal(got, h.detach())
    log.send("bank", "shop", "gradient", torch.zeros(2, 3))
    log.send("app", "bank", "embedding", torch.zeros(2, 1))
    assert len(log) == 3 and log.total_bytes == 24 + 24 + 8
    assert [m.payload for m in log] == [None, None, None]
    assert log.bytes_by("kind") == {"embedding": 32, "gradient": 24}
    assert log.bytes_by("link") == {("shop", "bank"): 24, ("bank", "shop"): 24, ("app", "bank"): 8}
    assert log.bytes_by("receiver") == {"bank": 32, "shop": 24}
    with pytest.raises(ConfigError, match="key must be"):
        log.bytes_by("size")
    with pytest.raises(ConfigError, match="sender and receiver must differ"):
        log.send("bank", "bank", "embedding", h)
    log.clear()
    assert len(log) == 0
