"""The device-cloud graph of federated learning: devices, the server and the parameter rows.

Nodes are the ``D`` devices (clients), one server, and the rows of every embedding table of the
model (one row per sparse ID: user, item, word, ...). Edges:

* ``device -> row``: the device's local data touches the row (its own user ID, target items,
  history items). Edge weight = number of (sample, row) touches on that device.
* ``device -> server``: every device talks to the server (a star).

Row heat is derived from the device -> row edges (FedSubAvg, Ding et al., arXiv 2109.07704):

* **device heat** ``h_j = |C_j|``, the number of devices whose data touches row ``j`` (paper);
* **sample heat** ``H_j = sum_{i in C_j} n_i``, the training-set sizes of those devices summed
  (official code, ``coef_statistic.py``);
* **touch count**: the number of (sample, row) touches over all devices.

Dense parameters count as touched by every device: ``h = D`` and ``H = N_tot``.

The adjacency is kept as one scipy ``csr_array`` ``[D, R_t]`` per table (int64 touch counts);
:meth:`DeviceCloudGraph.edge_index` and :meth:`DeviceCloudGraph.to_hetero_data` give
PyTorch-Geometric forms.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
from torch_geometric.data import HeteroData

from graphrec.errors import ConfigError

__all__ = ["DeviceCloudGraph"]


@dataclass
class DeviceCloudGraph:
    """Bipartite device <-> parameter-row graph with per-device sample counts.

    Attributes:
        num_samples: int64 ``[D]`` training samples per device (``n_i``).
        touches: table name -> ``csr_array [D, R]`` of int64 touch counts (device ``i`` touches
            row ``j`` iff entry ``(i, j)`` is stored and positive).
    """

    num_samples: np.ndarray
    touches: dict[str, sp.csr_array] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.num_samples = np.asarray(self.num_samples, dtype=np.int64)
        if self.num_samples.ndim != 1:
            raise ConfigError("num_samples must be one-dimensional")
        if (self.num_samples < 0).any():
            raise ConfigError("num_samples must be non-negative")
        for name, matrix in self.touches.items():
            if matrix.shape[0] != self.num_devices:
                raise ConfigError(
                    f"table {name!r}: adjacency has {matrix.shape[0]} device rows, "
                    f"expected {self.num_devices}"
                )
        self._cache: dict[tuple[str, str], np.ndarray] = {}

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pairs(
        cls,
        num_samples: np.ndarray | list[int],
        pairs: Mapping[str, tuple[np.ndarray, np.ndarray, int]],
    ) -> DeviceCloudGraph:
        """Build from ``table -> (device, row, num_rows)`` touch lists.

        Each ``(device[k], row[k])`` is one touch (a sample of the device uses the row);
        repeated pairs are summed into the edge weight.

        Example:
            >>> g = DeviceCloudGraph.from_pairs([3, 1], {"item": ([0, 0, 1], [2, 2, 0], 4)})
            >>> g.device_heat("item").tolist(), g.sample_heat("item").tolist()
            ([1, 0, 1, 0], [1, 0, 3, 0])
        """
        num_samples = np.asarray(num_samples, dtype=np.int64)
        touches = {}
        for name, (device, row, num_rows) in pairs.items():
            device = np.asarray(device, dtype=np.int64)
            row = np.asarray(row, dtype=np.int64)
            if device.shape != row.shape:
                raise ConfigError(f"table {name!r}: device and row lists differ in length")
            if row.size and (row.min() < 0 or row.max() >= num_rows):
                raise ConfigError(f"table {name!r}: row index outside 0..{num_rows - 1}")
            if device.size and (device.min() < 0 or device.max() >= num_samples.size):
                raise ConfigError(f"table {name!r}: device index outside 0..{num_samples.size - 1}")
            matrix = sp.csr_array(
                (np.ones(device.size, dtype=np.int64), (device, row)),
                shape=(num_samples.size, int(num_rows)),
            )
            matrix.sum_duplicates()
            matrix.sort_indices()
            touches[name] = matrix
        return cls(num_samples, touches)

    @classmethod
    def from_partition(
        cls,
        parts: Sequence[np.ndarray],
        sample_rows: Mapping[str, tuple[np.ndarray, int]],
    ) -> DeviceCloudGraph:
        """Build from a partition and the rows each sample touches.

        Args:
            parts: sample indices per device (``n_i = len(parts[i])``).
            sample_rows: table -> ``(rows, num_rows)``; ``rows`` is int ``[n]`` (one row per
                sample) or ``[n, L]`` (several, negative entries = padding), indexed by sample.

        Example:
            >>> parts = [np.array([0, 2]), np.array([1])]
            >>> hist = np.array([[1, -1], [0, 2], [1, 1]])
            >>> g = DeviceCloudGraph.from_partition(parts, {"item": (hist, 3)})
            >>> g.rows(0, "item").tolist(), g.touch_count("item").tolist()
            ([1], [1, 3, 1])
        """
        counts = [len(p) for p in parts]
        samples = np.concatenate([np.asarray(p, np.int64) for p in parts] or [[]]).astype(np.int64)
        device = np.repeat(np.arange(len(parts)), counts)
        pairs = {}
        for name, (rows, num_rows) in sample_rows.items():
            rows = np.asarray(rows, dtype=np.int64)
            picked = rows[samples]
            if picked.ndim == 1:
                pairs[name] = (device, picked, num_rows)
            elif picked.ndim == 2:
                keep = picked >= 0
                pairs[name] = (np.repeat(device, keep.sum(1)), picked[keep], num_rows)
            else:
                raise ConfigError(f"table {name!r}: rows must be 1-D or 2-D")
        return cls.from_pairs(counts, pairs)

    # ------------------------------------------------------------------ sizes
    @property
    def num_devices(self) -> int:
        return int(self.num_samples.size)

    @property
    def total_samples(self) -> int:
        """``N_tot = sum_i n_i``."""
        return int(self.num_samples.sum())

    @property
    def tables(self) -> list[str]:
        return list(self.touches)

    def num_rows(self, table: str) -> int:
        return int(self._table(table).shape[1])

    def num_edges(self, table: str | None = None) -> int:
        """Device -> row edges of one table (or of all tables)."""
        names = self.tables if table is None else [table]
        return int(sum(self._table(t).nnz for t in names))

    # ------------------------------------------------------------------ queries
    def rows(self, device: int, table: str) -> np.ndarray:
        """Sorted rows of ``table`` touched by ``device`` (int64): the device's submodel ``S_i``."""
        m = self._table(table)
        return m.indices[m.indptr[device] : m.indptr[device + 1]].astype(np.int64)

    def devices(self, table: str, row: int) -> np.ndarray:
        """Devices touching ``row`` of ``table`` (``C_j``)."""
        csc = self._table(table).tocsc()
        return csc.indices[csc.indptr[row] : csc.indptr[row + 1]].astype(np.int64)

    def device_heat(self, table: str) -> np.ndarray:
        """``h_j``: number of devices touching each row (int64 ``[R]``)."""
        key = (table, "device")
        if key not in self._cache:
            m = self._table(table)
            self._cache[key] = np.bincount(m.indices, minlength=m.shape[1]).astype(np.int64)
        return self._cache[key]

    def sample_heat(self, table: str) -> np.ndarray:
        """``H_j = sum of n_i over devices touching row j`` (int64 ``[R]``), the code's heat."""
        key = (table, "sample")
        if key not in self._cache:
            m = self._table(table)
            per_edge = np.repeat(self.num_samples, np.diff(m.indptr))
            heat = np.bincount(m.indices, weights=per_edge, minlength=m.shape[1])
            self._cache[key] = np.rint(heat).astype(np.int64)
        return self._cache[key]

    def touch_count(self, table: str) -> np.ndarray:
        """Number of (sample, row) touches per row over all devices (int64 ``[R]``)."""
        m = self._table(table)
        return np.bincount(m.indices, weights=m.data, minlength=m.shape[1]).astype(np.int64)

    # ------------------------------------------------------------------ PyG forms
    def adjacency(self, table: str) -> sp.csr_array:
        """The ``[D, R]`` csr touch-count matrix of ``table``."""
        return self._table(table)

    def edge_index(self, table: str) -> torch.Tensor:
        """``[2, E]`` int64 device -> row edges; devices are nodes ``0..D-1``, rows ``D..D+R-1``."""
        coo = self._table(table).tocoo()
        src = torch.from_numpy(coo.row.astype(np.int64))
        dst = torch.from_numpy(coo.col.astype(np.int64)) + self.num_devices
        return torch.stack([src, dst])

    @staticmethod
    def update_edge_index(rows: Sequence[torch.Tensor]) -> torch.Tensor:
        """``[2, E]`` int64 device -> row edges of one round's row updates (the part of the
        graph a round touches, the input of :class:`graphrec.nn.RowAggregation`): device slot
        ``k`` (the round's ``k``-th update) to each row of ``rows[k]``, in that order.

        Example:
            >>> DeviceCloudGraph.update_edge_index([torch.tensor([2, 5]), torch.tensor([5])])
            tensor([[0, 0, 1],
                    [2, 5, 5]])
        """
        if not rows:
            return torch.empty(2, 0, dtype=torch.long)
        counts = torch.tensor([r.numel() for r in rows])
        slots = torch.repeat_interleave(torch.arange(len(rows)), counts)
        return torch.stack([slots, torch.cat([r.reshape(-1).long() for r in rows])])

    def server_edge_index(self) -> torch.Tensor:
        """``[2, D]`` device -> server edges; the server is node ``D``."""
        src = torch.arange(self.num_devices)
        return torch.stack([src, torch.full_like(src, self.num_devices)])

    def to_hetero_data(self) -> HeteroData:
        """A :class:`~torch_geometric.data.HeteroData` with node types ``device``, ``server`` and
        one per table; edges ``(device, touches, table)`` with ``edge_weight`` = touch counts,
        ``(device, talks_to, server)``; node attributes ``num_samples`` (devices) and
        ``device_heat`` / ``sample_heat`` (rows)."""
        data = HeteroData()
        data["device"].num_nodes = self.num_devices
        data["device"].num_samples = torch.from_numpy(self.num_samples)
        data["server"].num_nodes = 1
        for name in self.tables:
            coo = self._table(name).tocoo()
            data[name].num_nodes = self.num_rows(name)
            data[name].device_heat = torch.from_numpy(self.device_heat(name))
            data[name].sample_heat = torch.from_numpy(self.sample_heat(name))
            rel = data["device", "touches", name]
            rel.edge_index = torch.from_numpy(np.stack([coo.row, coo.col]).astype(np.int64))
            rel.edge_weight = torch.from_numpy(coo.data.astype(np.int64))
        src = torch.arange(self.num_devices)
        data["device", "talks_to", "server"].edge_index = torch.stack([src, torch.zeros_like(src)])
        return data

    def summary(self) -> str:
        lines = [
            f"DeviceCloudGraph: {self.num_devices:,} devices, {self.total_samples:,} samples, "
            f"{len(self.tables)} table(s)"
        ]
        for name in self.tables:
            h = self.device_heat(name)
            used = h[h > 0]
            med = int(np.median(used)) if used.size else 0
            lines.append(
                f"  {name}: {self.num_rows(name):,} rows ({used.size:,} touched), "
                f"{self.num_edges(name):,} edges, device heat median {med}, "
                f"max {int(h.max(initial=0))}"
            )
        return "\n".join(lines)

    def _table(self, table: str) -> sp.csr_array:
        try:
            return self.touches[table]
        except KeyError:
            raise KeyError(f"unknown table {table!r}; tables: {self.tables}") from None
