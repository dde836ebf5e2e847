"""The result type every k-dDSP solver returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Solution:
    """Seeds chosen by a solver and their exact d-hop coverage.

    Attributes:
        seeds: node indices (0..n-1) in the order the solver picked them, shape ``[<=k]``.
        covered: exact f_d(seeds), the number of nodes within d hops of a seed (seeds included).
        n: number of nodes of the graph.
        d: hop count.
        method: solver name (``"greedy"``, ``"ris"``, ``"fastcover"``, ...).
        timings: wall-clock seconds by phase (e.g. ``{"closure": 0.3, "solve": 1.2}``).
        info: solver-specific extras (RIS estimate and sample count, ILP bound, ...).
        node_ids: original id of each node index (from the input file), if known.
    """

    seeds: np.ndarray
    covered: int
    n: int
    d: int
    method: str
    timings: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    node_ids: np.ndarray | None = None

    @property
    def coverage(self) -> float:
        """Share of the n nodes that are covered, in [0, 1]."""
        return self.covered / self.n if self.n else 0.0

    @property
    def k(self) -> int:
        return int(len(self.seeds))

    @property
    def seed_ids(self) -> list:
        """Seeds as the input's own node ids (node indices when no id mapping is known)."""
        ids = self.seeds if self.node_ids is None else self.node_ids[self.seeds]
        return [i.item() if isinstance(i, np.generic) else i for i in ids]
