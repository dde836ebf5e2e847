"""The message log of vertical FL: every payload that crosses a party boundary goes through it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import Tensor

from graphrec.errors import ConfigError

__all__ = ["Message", "MessageLog", "payload_bytes"]


def payload_bytes(payload: Any) -> int:
    """Bytes of a payload as sent: a tensor's or array's data, a byte string, a protobuf message's
    serialized size, or the sum over a tuple/list of those."""
    if isinstance(payload, Tensor):
        return payload.numel() * payload.element_size()
    if isinstance(payload, np.ndarray):
        return int(payload.nbytes)
    if isinstance(payload, (bytes, bytearray)):
        return len(payload)
    if hasattr(payload, "ByteSize"):
        return int(payload.ByteSize())
    if isinstance(payload, (tuple, list)):
        return sum(payload_bytes(p) for p in payload)
    raise ConfigError(
        f"payload must be a tensor, array, bytes, protobuf message or a sequence of those; "
        f"got {type(payload).__name__}"
    )


@dataclass(frozen=True)
class Message:
    """One logged message. ``payload`` and ``rows`` (the aligned positions the payload's rows
    belong to, known to both ends and not sent) are kept only by a log with
    ``keep_payloads=True``."""

    sender: str
    receiver: str
    kind: str
    nbytes: int
    payload: Any = None
    rows: Tensor | None = None


class MessageLog:
    """Records sender, receiver, kind and bytes of every message between parties.

    :meth:`send` is the only way a payload crosses a party boundary: it logs the message and
    returns what the receiver gets (a tensor detached from the sender's autograd graph).

    Args:
        keep_payloads: keep each payload too (for audits in tests; costs memory).
    """

    def __init__(self, *, keep_payloads: bool = False) -> None:
        self.keep_payloads = keep_payloads
        self.messages: list[Message] = []

    def send(
        self, sender: str, receiver: str, kind: str, payload: Any, rows: Tensor | None = None
    ) -> Any:
        """Log ``payload`` going from ``sender`` to ``receiver`` and return the received copy;
        ``rows``: the aligned positions of the payload's rows, if both ends know them."""
        if sender == receiver:
            raise ConfigError(f"sender and receiver must differ; both are {sender!r}")
        if isinstance(payload, Tensor):
            payload = payload.detach()
        message = Message(sender, receiver, kind, payload_bytes(payload))
        if self.keep_payloads:
            message = Message(sender, receiver, kind, message.nbytes, payload, rows)
        self.messages.append(message)
        return payload

    def __len__(self) -> int:
        return len(self.messages)

    def __iter__(self) -> Iterator[Message]:
        return iter(self.messages)

    @property
    def total_bytes(self) -> int:
        return sum(m.nbytes for m in self.messages)

    def bytes_by(self, key: str = "kind") -> dict[Any, int]:
        """Bytes summed per ``"kind"``, ``"sender"``, ``"receiver"`` or ``"link"`` (the
        ``(sender, receiver)`` pair)."""
        keys = {
            "kind": lambda m: m.kind,
            "sender": lambda m: m.sender,
            "receiver": lambda m: m.receiver,
            "link": lambda m: (m.sender, m.receiver),
        }
        if key not in keys:
            raise ConfigError(f"key must be one of {list(keys)}; got {key!r}")
        out: Counter = Counter()
        for m in self.messages:
            out[keys[key](m)] += m.nbytes
        return dict(out)

    def state_dict(self) -> dict[str, Any]:
        """The messages as plain records (payloads and rows only where kept as tensors)."""
        return {
            "messages": [
                {
                    "sender": m.sender,
                    "receiver": m.receiver,
                    "kind": m.kind,
                    "nbytes": m.nbytes,
                    "payload": m.payload if isinstance(m.payload, Tensor) else None,
                    "rows": m.rows,
                }
                for m in self.messages
            ]
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.messages = [Message(**m) for m in state["messages"]]

    def clear(self) -> None:
        self.messages.clear()
