r"""Bounded staleness for split learning: the label owner's cache of the parties' embeddings.

A party that does not answer in time (slow or dropped) need not stall a step: the label owner
keeps the last embedding each party sent for every aligned row, with the step it was sent in,
and uses it in place of a fresh one while it is at most ``staleness`` steps old. The party sends
nothing that step and receives no gradient. Rows whose cached embedding is missing or older make
the label owner wait for the party (a synchronous exchange, counted in
:attr:`EmbeddingCache.waits`). With ``staleness = 0`` every step waits: plain synchronous split
learning.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from graphrec.errors import ConfigError

__all__ = ["EmbeddingCache", "Stragglers"]


@dataclass(frozen=True)
class Stragglers:
    """Which parties answer at which step, and how stale a cached embedding may be.

    Args:
        staleness: the largest age in steps of a cached embedding used in place of a fresh
            one (``>= 0``).
        available: ``(step, party) -> bool``, whether the party answers at that training step
            (default: always; a dropped party answers never).
    """

    staleness: int
    available: Callable[[int, str], bool] = lambda step, party: True

    def __post_init__(self) -> None:
        if not isinstance(self.staleness, int) or self.staleness < 0:
            raise ConfigError(f"staleness must be an integer >= 0; got {self.staleness!r}")


class EmbeddingCache:
    """The label owner's last received embedding of every (party, aligned row).

    Args:
        num_rows: number of aligned rows.

    Attributes:
        waits: how often a party was waited for although it did not answer in time.
    """

    def __init__(self, num_rows: int) -> None:
        self.num_rows = num_rows
        self.waits = 0
        self._values: dict[str, Tensor] = {}
        self._steps: dict[str, Tensor] = {}

    def store(self, party: str, rows: Tensor, embeddings: Tensor, step: int) -> None:
        """Remember ``embeddings`` (``[B, d]``) of ``rows`` as received at ``step``."""
        if party not in self._values:
            self._values[party] = torch.zeros(self.num_rows, *embeddings.shape[1:])
            self._steps[party] = torch.full((self.num_rows,), -1, dtype=torch.long)
        self._values[party][rows] = embeddings.detach().to(self._values[party].dtype)
        self._steps[party][rows] = step

    def lookup(self, party: str, rows: Tensor, step: int, staleness: int) -> Tensor | None:
        """The cached embeddings of ``rows`` if every one is at most ``staleness`` steps old at
        ``step``, else None."""
        if party not in self._values:
            return None
        sent = self._steps[party][rows]
        if (sent < 0).any() or (step - sent > staleness).any():
            return None
        return self._values[party][rows]

    def state_dict(self) -> dict[str, Any]:
        """The cached embeddings, their steps and the wait count."""
        return {"values": dict(self._values), "steps": dict(self._steps), "waits": self.waits}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self._values, self._steps = dict(state["values"]), dict(state["steps"])
        self.waits = state["waits"]
