"""Aggregation strategies: FedAvg, FedProx, involved-participant averaging, FedSubAvg.

**The hook.** A strategy is a class with one aggregation hook::

    new_state = strategy.aggregate(global_state, updates)

``global_state`` maps parameter names to tensors (the server model before the round; it is not
modified); ``updates`` is the list of accepted :class:`ClientUpdate` of the round. Each update
carries *deltas* (local model minus the global model the client received): a full delta per
dense parameter and, per embedding table, only the rows the client touched
(:class:`RowDelta`, "sparse row updates"). The in-process simulator
(:class:`graphrec.federated.simulator.Simulator`) calls exactly this hook, and a Flower adapter
calls the same one from ``aggregate_train``.

A second, optional hook, ``configure(round, config) -> config``, lets a strategy change the
clients' local-training configuration (FedProx adds its proximal coefficient ``prox_mu``).

Notation (FedSubAvg, arXiv 2109.07704): ``K`` updates in the round, ``n_i`` samples
of client ``i``, ``n_P = sum n_i`` over the round, ``N`` devices and ``N_tot`` samples in the
federation, row heat ``h_j`` (devices) and ``H_j`` (samples) from
:class:`graphrec.graphs.device_cloud.DeviceCloudGraph`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from graphrec.errors import ConfigError
from graphrec.graphs.device_cloud import DeviceCloudGraph
from graphrec.nn.row_aggregation import RowAggregation
from graphrec.registry import FL_STRATEGIES

__all__ = [
    "RowDelta",
    "ClientUpdate",
    "Strategy",
    "FedAvg",
    "FedProx",
    "FedProxConfig",
    "InvolvedAveraging",
    "FedSubAvg",
    "FedSubAvgConfig",
    "FedSubAvgPaperConfig",
]

State = dict[str, Tensor]


@dataclass
class RowDelta:
    """Delta of the rows ``index`` of the embedding table ``table`` (graph table name)."""

    table: str
    index: Tensor  #: int64 [r], sorted distinct rows
    values: Tensor  #: [r, dim]

    @property
    def nbytes(self) -> int:
        return _nbytes(self.index) + _nbytes(self.values)


@dataclass
class ClientUpdate:
    """What one client sends up after local training.

    Attributes:
        client: device id.
        num_samples: ``n_i``, the client's training samples (the weight of sample-weighted forms).
        dense: parameter name -> full delta.
        rows: parameter name -> :class:`RowDelta` (touched rows only).
        metrics: local-training metrics (e.g. ``loss``).
        weight: aggregation weight replacing ``num_samples`` in sample-weighted forms (ODE's
            ``sum_y gamma_y B_{c,y}``); None: ``num_samples``.
        extras: other tensors sent up (ODE's local gradient estimate ``ghat``), not deltas.
    """

    client: int
    num_samples: int
    dense: dict[str, Tensor] = field(default_factory=dict)
    rows: dict[str, RowDelta] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    weight: float | None = None
    extras: dict[str, Tensor] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        """Bytes of the payload (dense deltas, row indices, row deltas and extras)."""
        return (
            sum(_nbytes(t) for t in self.dense.values())
            + sum(r.nbytes for r in self.rows.values())
            + sum(_nbytes(t) for t in self.extras.values())
        )

    def norm(self) -> float:
        """Global L2 norm of all deltas (``inf`` on overflow, ``nan`` if any entry is NaN)."""
        tensors = list(self.dense.values()) + [r.values for r in self.rows.values()]
        return math.sqrt(sum(float(t.double().pow(2).sum()) for t in tensors))

    def is_finite(self) -> bool:
        tensors = list(self.dense.values()) + [r.values for r in self.rows.values()]
        tensors += list(self.extras.values())
        return all(bool(torch.isfinite(t).all()) for t in tensors)


def _nbytes(t: Tensor) -> int:
    return t.numel() * t.element_size()


class Strategy:
    """Base class. Subclasses implement :meth:`aggregate`; :meth:`configure` is optional."""

    name = "strategy"

    def configure(self, round: int, config: dict) -> dict:
        """Local-training configuration sent to the round's clients (default: unchanged)."""
        return dict(config)

    def aggregate(
        self, global_state: Mapping[str, Tensor], updates: Sequence[ClientUpdate]
    ) -> State:
        """Return the new global state from the round's accepted updates (no update: a copy)."""
        raise NotImplementedError

    # shared machinery ----------------------------------------------------------------
    def _weights(self, updates: Sequence[ClientUpdate], weighted: bool) -> np.ndarray:
        if weighted:
            n = np.array(
                [u.num_samples if u.weight is None else u.weight for u in updates],
                dtype=np.float64,
            )
            if n.sum() <= 0:
                raise ConfigError("sample-weighted aggregation needs positive num_samples")
            return n / n.sum()
        return np.full(len(updates), 1.0 / len(updates))

    @staticmethod
    def _copy(global_state: Mapping[str, Tensor]) -> State:
        return {k: v.detach().clone() for k, v in global_state.items()}

    @staticmethod
    def _dense_mean(new: State, updates: Sequence[ClientUpdate], w: np.ndarray) -> None:
        """``theta += sum_i w_i Delta_i`` for every dense parameter present in the updates."""
        names = {name for u in updates for name in u.dense}
        for name in names:
            acc = torch.zeros_like(new[name], dtype=torch.float64)
            for wi, u in zip(w, updates, strict=True):
                if name in u.dense:
                    acc += wi * u.dense[name].double()
            new[name] += acc.to(new[name].dtype)

    @staticmethod
    def _row_sums(
        global_state: Mapping[str, Tensor], updates: Sequence[ClientUpdate], w: np.ndarray
    ) -> dict[str, tuple[str, Tensor, Tensor, Tensor]]:
        """Per table parameter: ``(table, sum_i w_i Delta_ij, sum_i w_i [j in S_i], count)``,
        one :class:`graphrec.nn.RowAggregation` over the round's device -> row edges."""
        out = {}
        aggregation = RowAggregation()
        names = {name for u in updates for name in u.rows}
        for name in names:
            shape = global_state[name].shape
            slots = [k for k, u in enumerate(updates) if name in u.rows]
            rows = [updates[k].rows[name] for k in slots]
            width = math.prod(shape[1:])
            values = torch.cat([r.values.double().reshape(r.index.numel(), width) for r in rows])
            edge_index = DeviceCloudGraph.update_edge_index([r.index for r in rows])
            agg = aggregation(values, edge_index, torch.from_numpy(w[slots]), shape[0])
            out[name] = (rows[-1].table, agg.total.reshape(shape), agg.weight, agg.count)
        return out


class _WeightedStrategy(Strategy):
    """A strategy with sample weighting (``weighted``) and a server learning rate."""

    def __init__(self, *, weighted: bool = True, server_lr: float = 1.0) -> None:
        self.weighted = weighted
        self.server_lr = server_lr


@FL_STRATEGIES.register("fedavg")
class FedAvg(_WeightedStrategy):
    """FedAvg (McMahan et al., AISTATS 2017): ``x += sum_i w_i Delta_i``.

    ``w_i = n_i / n_P`` (``weighted=True``, the official FedSubAvg code's ``fedavg`` mode) or
    ``1/K``. Rows a client did not touch count as zero deltas. ``server_lr`` scales the
    aggregate (1 = plain FedAvg).
    """

    name = "fedavg"

    def aggregate(
        self, global_state: Mapping[str, Tensor], updates: Sequence[ClientUpdate]
    ) -> State:
        new = self._copy(global_state)
        if not updates:
            return new
        w = self._weights(updates, self.weighted) * self.server_lr
        self._dense_mean(new, updates, w)
        for name, (_, acc, _, _) in self._row_sums(global_state, updates, w).items():
            new[name] += acc.to(new[name].dtype)
        return new


@dataclass(frozen=True)
class FedProxConfig:
    """Options of ``fedprox``: the proximal coefficient ``mu``."""

    mu: float = 0.01


@FL_STRATEGIES.register("fedprox", config=FedProxConfig)
class FedProx(FedAvg):
    """FedProx (Li et al., MLSys 2020): FedAvg aggregation; clients add ``mu/2 ||w - w_g||^2``
    to their local loss (passed to them as ``config["prox_mu"]``)."""

    name = "fedprox"

    def __init__(
        self, mu: float = FedProxConfig.mu, *, weighted: bool = True, server_lr: float = 1.0
    ) -> None:
        super().__init__(weighted=weighted, server_lr=server_lr)
        if mu < 0:
            raise ConfigError(f"mu must be non-negative, got {mu}")
        self.mu = mu

    def configure(self, round: int, config: dict) -> dict:
        return {**config, "prox_mu": self.mu}


@FL_STRATEGIES.register("involved")
class InvolvedAveraging(_WeightedStrategy):
    """Average each row over this round's participants that touched it (HeteroFL-style; the
    official code's ``round_involved`` mode): ``E_j += sum_{i: j in S_i} w_i Delta_ij /
    sum_{i: j in S_i} w_i`` with ``w_i = n_i`` (``weighted``) or 1. Dense parameters: FedAvg.
    Not the FedSubAvg estimator (its normalizer is the round's, not the federation's, heat)."""

    name = "involved"

    def aggregate(
        self, global_state: Mapping[str, Tensor], updates: Sequence[ClientUpdate]
    ) -> State:
        new = self._copy(global_state)
        if not updates:
            return new
        w = self._weights(updates, self.weighted)
        self._dense_mean(new, updates, w * self.server_lr)
        for name, (_, acc, wsum, _) in self._row_sums(global_state, updates, w).items():
            touched = wsum > 0
            step = torch.zeros_like(acc)
            step[touched] = acc[touched] / wsum[touched, None]
            new[name] += (self.server_lr * step).to(new[name].dtype)
        return new


@dataclass(frozen=True)
class FedSubAvgConfig:
    """Options of ``fedsubavg``: the sample-weighted form of the official training loop."""

    form: str = "code"
    clip: float | None = None


@dataclass(frozen=True)
class FedSubAvgPaperConfig(FedSubAvgConfig):
    """Options of ``fedsubavg-paper``: the device-heat form of the paper."""

    form: str = "paper"


@FL_STRATEGIES.register("fedsubavg-paper", config=FedSubAvgPaperConfig)  # after "fedsubavg"
@FL_STRATEGIES.register("fedsubavg", config=FedSubAvgConfig)
class FedSubAvg(Strategy):
    """Federated Submodel Averaging (Ding et al., arXiv 2109.07704; official code
    ``sjtu-yc/federated-submodel-averaging`` @ 7739f5f).

    ``form="paper"``: ``E_j += (N / (K h_j)) sum_{i in P, j in S_i} Delta_ij``,
    ``theta += (1/K) sum_i Delta_i``, ``K`` = number of updates passed to the hook (the accepted
    ones; dropouts and rejections shrink it). With ``K`` of ``N`` clients sampled uniformly, the
    expected row update is the mean of ``Delta_ij`` over the ``h_j`` devices using row ``j``.

    ``form="code"`` (sample-weighted, the official training loop):
    ``E_j += (N_tot / H_j) sum_{i in P, j in S_i} n_i Delta_ij / n_P``,
    ``theta += sum_i n_i Delta_i / n_P`` (a ratio estimator, approximately unbiased).

    Args:
        graph: the device-cloud graph giving ``N``, ``N_tot``, ``h_j`` and ``H_j`` (heat is
            precomputed offline, as in the official code).
        form: ``"code"`` (default: the validated form, what ``graphrec fl run --strategy
            fedsubavg`` runs) or ``"paper"`` (``fedsubavg-paper``).
        clip: optional upper bound on the row coefficient ``N/h_j`` or ``N_tot/H_j`` (the
            coefficients reach thousands on Amazon; clipping trades bias for variance).
        server_lr: global scale of the aggregate.
    """

    name = "fedsubavg"

    def __init__(
        self,
        graph: DeviceCloudGraph,
        *,
        form: str = "code",
        clip: float | None = None,
        server_lr: float = 1.0,
    ) -> None:
        if form not in ("paper", "code"):
            raise ConfigError(f"form must be 'paper' or 'code', got {form!r}")
        if clip is not None and clip <= 0:
            raise ConfigError(f"clip must be positive, got {clip}")
        self.graph = graph
        self.form = form
        self.clip = clip
        self.server_lr = server_lr

    def coefficients(self, table: str) -> np.ndarray:
        """Per-row coefficient ``N/h_j`` (paper) or ``N_tot/H_j`` (code); 1 for untouched rows;
        clipped to ``clip``."""
        if self.form == "paper":
            heat, total = self.graph.device_heat(table), self.graph.num_devices
        else:
            heat, total = self.graph.sample_heat(table), self.graph.total_samples
        coef = np.ones(heat.size, dtype=np.float64)
        np.divide(total, heat, out=coef, where=heat > 0)
        if self.clip is not None:
            coef = np.minimum(coef, self.clip)
        return coef

    def aggregate(
        self, global_state: Mapping[str, Tensor], updates: Sequence[ClientUpdate]
    ) -> State:
        new = self._copy(global_state)
        if not updates:
            return new
        w = self._weights(updates, self.form == "code") * self.server_lr
        self._dense_mean(new, updates, w)
        for name, (table, acc, _, count) in self._row_sums(global_state, updates, w).items():
            cold = (count > 0) & (torch.from_numpy(self.graph.device_heat(table)) == 0)
            if bool(cold.any()):
                raise ConfigError(
                    f"table {table!r}: an update touches rows with zero heat in the graph "
                    f"(e.g. row {int(cold.nonzero()[0])}); rebuild the device-cloud graph"
                )
            coef = torch.from_numpy(self.coefficients(table))
            new[name] += (coef[:, None] * acc).to(new[name].dtype)
        return new
