"""On-device data streams with limited storage: stores (ODE and the baselines), devices with
lazy catch-up, the stream task and the ODE server aggregation.

Setting (ODE, Gong et al., WWW 2023): device ``c``
receives ``v_c`` samples per round from a stream (its data, in a seeded random order, replayed
cyclically) and keeps at most ``|B_c|`` of them in a *store*; a selected device trains ``E``
local SGD steps on its store (full-batch in the paper's setting: ``E`` epochs). How a store
decides what to keep is the *selector*:

===============  ==========================================================================
``rs``           reservoir sampling (uniform over everything seen)
``fifo``         the latest ``|B_c|`` samples
``hl``           highest loss at the device's model
``gn``           highest gradient norm
``fb``           FedBalancer-style: highest loss; a sample whose loss exceeds 0.9 x the
                 largest loss seen is kept only with probability 0.3 (outlier guard)
``sld``          SLD-style (Li et al., INFOCOM'21): highest gradient norm; a sample whose norm
                 exceeds 1.2 x the running mean norm (after 50 samples) is kept only with
                 probability 0.2
``fd``           full data: unlimited storage (every distinct sample)
``ode``          ODE-Est: per-label stores from :func:`~graphrec.federated.ode.coordinate_labels`,
                 value ``<grad l(w_last; x, y), g_hat_last>`` with the model and global-gradient
                 estimate the device last received, gamma-weighted loss, local gradient
                 estimate uploaded on participation
``ode-exact``    ODE-Exact: the same with the current global model and the exact global
                 gradient of every round (an in-process oracle; not deployable)
===============  ==========================================================================

No store holds a sample twice (streams replay). Priority stores (``hl``, ``gn``, ``fb``,
``sld``, ``ode``) re-value their samples under the
newly received model when their device is selected (as the official ODE code does).

**Initial store** (:class:`StreamTask` option ``initial_store``): ``"empty"``, or ``"last"``
(the official code): every store but ``fd``'s starts full with the last ``|B_c|`` samples of
its device's stream (ODE: per label ``y`` the last ``S_{c,y}`` samples of label ``y``), counted
as seen by reservoir sampling; priority stores value them at the initial model (and, for ODE,
the initial global gradient) before the first arrivals.

**Lazy catch-up.** A device that is not selected only uses its stale model (and estimate), so
its stream work can wait until it is selected: :meth:`StreamDevice.catch_up` replays the pending
rounds in order, which gives the same store and local estimate as processing every round when it
happens (:meth:`StreamDevice.process`). The in-process simulator and the Flower ClientApp both
run devices this way; ODE-Exact replays with the per-round oracle.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, vmap

from graphrec.errors import ConfigError
from graphrec.federated.ode import (
    GlobalGradientEstimator,
    LabelAssignment,
    LocalGradientEstimator,
    LossFn,
    ValueBuffer,
    coordinate_labels,
    global_gradient,
    last_layers,
    per_sample_gradients,
    per_sample_losses,
)
from graphrec.federated.simulator import LocalConfig, Simulator
from graphrec.federated.strategies import ClientUpdate, FedAvg, State, Strategy
from graphrec.federated.tasks import local_sgd
from graphrec.graphs.device_cloud import DeviceCloudGraph

__all__ = [
    "SELECTORS",
    "INITIAL_VALUE",
    "make_store",
    "StreamDevice",
    "StreamTask",
    "ODEAggregation",
    "ode_strategy",
    "stream_simulator",
    "rounds_to_reach",
    "final_value",
    "speedup",
]

#: selector name -> per-sample statistics its store needs
SELECTORS: dict[str, frozenset[str]] = {
    "rs": frozenset(),
    "fifo": frozenset(),
    "hl": frozenset({"loss"}),
    "gn": frozenset({"grad_norm"}),
    "fb": frozenset({"loss"}),
    "sld": frozenset({"grad_norm"}),
    "fd": frozenset(),
    "ode": frozenset({"value"}),
    "ode-exact": frozenset({"value"}),
}


# --------------------------------------------------------------------------- stores

#: value of a preloaded sample in a priority store until it is re-valued (the official code's)
INITIAL_VALUE = -1e4


class _Reservoir:
    """Reservoir sampling (Vitter's algorithm R) of ``capacity`` samples."""

    def __init__(self, capacity: int, rng: np.random.Generator) -> None:
        self.capacity, self.rng, self.items, self.seen = capacity, rng, [], 0

    def offer(self, sample: int, label: int, stats: Mapping[str, float]) -> None:
        if sample in self.items:
            return
        self.seen += 1
        if len(self.items) < self.capacity:
            self.items.append(sample)
        elif self.seen <= self.capacity:  # refilling after restart()
            self.items[self.seen - 1] = sample
        else:
            j = int(self.rng.integers(self.seen))
            if j < self.capacity:
                self.items[j] = sample

    def samples(self) -> list[int]:
        return list(self.items)

    def preload(self, samples: Sequence[int], labels: Sequence[int]) -> None:
        """Start holding ``samples`` (counted as seen)."""
        for s, y in zip(samples, labels, strict=True):
            self.offer(int(s), int(y), {})

    def restart(self) -> None:
        """Restart the count of samples seen (the official RS at each participation): the
        store then holds a uniform sample of the arrivals since the restart (the first
        ``capacity`` of them overwrite the stored samples in order)."""
        self.seen = 0


class _FIFO:
    def __init__(self, capacity: int) -> None:
        self.items: deque[int] = deque(maxlen=capacity)

    def offer(self, sample: int, label: int, stats: Mapping[str, float]) -> None:
        if sample not in self.items:
            self.items.append(sample)

    def samples(self) -> list[int]:
        return list(self.items)

    preload = _Reservoir.preload


class _Full:
    def __init__(self) -> None:
        self.items: dict[int, None] = {}

    def offer(self, sample: int, label: int, stats: Mapping[str, float]) -> None:
        self.items[sample] = None

    def samples(self) -> list[int]:
        return list(self.items)


class _Priority:
    """Keep the highest ``key`` values (per label when ``slots`` is given, else overall), with an
    optional admission rule ``admit(value) -> bool`` applied before the queue."""

    def __init__(
        self,
        key: str,
        capacity: int,
        slots: Mapping[int, int] | None = None,
        admit: Callable[[float], bool] | None = None,
    ) -> None:
        self.key, self.per_label, self.admit = key, slots is not None, admit
        self.buffer = ValueBuffer(slots if slots is not None else {0: capacity})

    def offer(self, sample: int, label: int, stats: Mapping[str, float]) -> None:
        if sample in self.samples():  # a replayed stored sample: its value is refreshed on
            return  # revalue
        value = stats[self.key]
        if self.admit is not None and not self.admit(value):
            return
        self.buffer.offer(sample, label if self.per_label else 0, value)

    def samples(self) -> list[int]:
        return [s for s, _ in self.buffer.samples()]

    def preload(self, samples: Sequence[int], labels: Sequence[int]) -> None:
        """Start holding ``samples`` valued :data:`INITIAL_VALUE` (no admission rule)."""
        for s, y in zip(samples, labels, strict=True):
            self.buffer.offer(int(s), int(y) if self.per_label else 0, INITIAL_VALUE)

    def revalue(self, stats_fn: Callable[[list[int]], Mapping[str, np.ndarray]]) -> None:
        self.buffer.revalue(lambda samples, labels: stats_fn(samples)[self.key])


class _OutlierGuard:
    """FedBalancer-style: admit if ``v <= factor * max seen``, else with probability ``p``."""

    def __init__(self, rng: np.random.Generator, factor: float = 0.9, p: float = 0.3) -> None:
        self.rng, self.factor, self.p, self.max = rng, factor, p, -np.inf

    def __call__(self, v: float) -> bool:
        self.max = max(self.max, v)
        return v <= self.factor * self.max or self.rng.random() < self.p


class _MeanGuard:
    """SLD-style: after ``warmup`` samples, admit if ``v <= factor * running mean``, else with
    probability ``p``."""

    def __init__(
        self, rng: np.random.Generator, factor: float = 1.2, p: float = 0.2, warmup: int = 50
    ) -> None:
        self.rng, self.factor, self.p, self.warmup = rng, factor, p, warmup
        self.count, self.mean = 0, 0.0

    def __call__(self, v: float) -> bool:
        ok = self.count < self.warmup or v <= self.factor * self.mean or self.rng.random() < self.p
        self.count += 1
        self.mean += (v - self.mean) / self.count
        return ok


def make_store(
    selector: str,
    capacity: int,
    *,
    slots: Mapping[int, int] | None = None,
    rng: np.random.Generator | None = None,
) -> Any:
    """A device's store for ``selector`` (see the module table). ``slots`` (label -> places) is
    required by ``ode``/``ode-exact``; ``rng`` drives ``rs``, ``fb`` and ``sld``."""
    rng = rng if rng is not None else np.random.default_rng(0)
    if selector == "rs":
        return _Reservoir(capacity, rng)
    if selector == "fifo":
        return _FIFO(capacity)
    if selector == "fd":
        return _Full()
    if selector == "hl":
        return _Priority("loss", capacity)
    if selector == "gn":
        return _Priority("grad_norm", capacity)
    if selector == "fb":
        return _Priority("loss", capacity, admit=_OutlierGuard(rng))
    if selector == "sld":
        return _Priority("grad_norm", capacity, admit=_MeanGuard(rng))
    if selector in ("ode", "ode-exact"):
        if slots is None:
            raise ConfigError(f"selector {selector!r} needs per-label slots")
        return _Priority("value", capacity, slots=slots)
    raise ConfigError(f"unknown selector {selector!r}; expected one of {sorted(SELECTORS)}")


# --------------------------------------------------------------------------- one device

#: ``oracle(round) -> (model state, global gradient)`` valid for valuing ``round``'s arrivals
Oracle = Callable[[int], tuple[Mapping[str, Tensor], Tensor]]


class StreamDevice:
    """One device: a stream, a store and (ODE-Est) a :class:`LocalGradientEstimator`.

    The stream is ``(x, y)`` replayed cyclically, ``velocity`` samples per round: round ``t``
    (1-based) brings positions ``(t-1)*velocity .. t*velocity-1`` modulo ``len(y)``; stored
    samples are identified by their position. Arrivals are valued with the last model and
    global-gradient estimate the device received (:meth:`receive`), or with ``oracle(round)``
    (ODE-Exact).

    Args:
        x, y: the device's stream.
        velocity: samples per round.
        store: from :func:`make_store`.
        needs: per-sample statistics the store uses (``loss``, ``grad_norm``, ``value``).
        model, loss_fn: the model and batch-mean loss.
        params: parameters of gradients and values (default all; Simplified ODE:
            :func:`~graphrec.federated.ode.last_layers`).
        estimate: keep a local gradient estimate (ODE-Est).
        oracle: value with ``oracle(round)`` instead of the stale pair.
        revalue_each_round: with an oracle, re-value the store under ``oracle(round)`` before
            each round's arrivals (the official ODE-Exact), not only on participation.
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        velocity: int,
        store: Any,
        model: nn.Module,
        loss_fn: LossFn,
        *,
        needs: frozenset[str] = frozenset(),
        params: Sequence[str] | None = None,
        estimate: bool = False,
        oracle: Oracle | None = None,
        revalue_each_round: bool = False,
    ) -> None:
        if velocity < 1 or len(y) == 0:
            raise ConfigError("need a non-empty stream and velocity >= 1")
        self.x, self.y, self.velocity = x, y, int(velocity)
        self.store, self.needs = store, frozenset(needs)
        self.model, self.loss_fn, self.params, self.oracle = model, loss_fn, params, oracle
        self.revalue_each_round = bool(revalue_each_round)
        names = list(params) if params is not None else [n for n, _ in model.named_parameters()]
        sizes = dict(model.named_parameters())
        dim = sum(sizes[n].numel() for n in names)
        self.estimator = LocalGradientEstimator(dim, x.dtype) if estimate else None
        self.cursor = 0  #: last round whose arrivals were processed
        self.model_state: dict[str, Tensor] | None = None
        self.global_grad: Tensor | None = None
        self.valued = 0  #: samples whose statistics were computed
        self.value_seconds = 0.0  #: time spent computing them

    _DETACHED = ("x", "y", "model", "loss_fn", "oracle")

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without the stream data, model and oracle (re-attached by
        :meth:`StreamTask.local_train`), so a Flower node keeps it small in ``context.state``."""
        return {k: (None if k in self._DETACHED else v) for k, v in self.__dict__.items()}

    def arrivals(self, round: int) -> np.ndarray:
        """Stream positions arriving in (1-based) ``round``."""
        start = (round - 1) * self.velocity
        return np.arange(start, start + self.velocity) % len(self.y)

    def receive(self, state: Mapping[str, Tensor], global_grad: Tensor | None = None) -> None:
        """Store the global model (and gradient estimate) sent to the device."""
        self.model_state = {k: v.detach().clone() for k, v in state.items()}
        self.global_grad = None if global_grad is None else global_grad.detach().clone()

    def stats(
        self,
        positions: Sequence[int] | np.ndarray,
        state: Mapping[str, Tensor],
        global_grad: Tensor | None,
        *,
        gradients: bool = False,
    ) -> tuple[dict[str, np.ndarray], Tensor | None]:
        """Per-sample statistics ``needs`` of stream ``positions`` at ``state`` (and the
        per-sample gradients when ``gradients`` or a statistic needs them)."""
        t0 = time.perf_counter()
        idx = torch.as_tensor(np.asarray(positions, np.int64))
        x, y = self.x[idx], self.y[idx]
        out: dict[str, np.ndarray] = {}
        g = None
        if gradients or self.needs & {"grad_norm", "value"}:
            g, loss = per_sample_gradients(
                self.model, self.loss_fn, x, y, params=self.params, state=state, with_loss=True
            )
            out["loss"] = loss.numpy()
            out["grad_norm"] = g.norm(dim=1).numpy()
            if "value" in self.needs:
                if global_grad is None:
                    raise RuntimeError("ODE valuation needs a global gradient (estimate)")
                out["value"] = (g @ global_grad.to(g.dtype)).numpy()
        elif "loss" in self.needs:
            out["loss"] = per_sample_losses(self.model, self.loss_fn, x, y, state=state).numpy()
        self.value_seconds += time.perf_counter() - t0
        self.valued += len(idx)
        return out, g

    def process(self, round: int) -> None:
        """Value and offer the arrivals of ``round`` (must be the next unprocessed round)."""
        if round != self.cursor + 1:
            raise ConfigError(f"next round to process is {self.cursor + 1}, got {round}")
        self._run([round])

    def catch_up(self, round: int) -> None:
        """Process every pending round up to and including ``round``. Without an oracle the
        pending rounds share the stale model, so their statistics come from one batched call;
        offers and estimator updates still go round by round, in stream order."""
        pending = list(range(self.cursor + 1, round + 1))
        if self.oracle is not None:
            for t in pending:
                if self.revalue_each_round:
                    self._revalue(*self.oracle(t))
                self._run([t])
        elif pending:
            self._run(pending)

    def _run(self, rounds: list[int]) -> None:
        if self.oracle is not None:
            state, global_grad = self.oracle(rounds[0])
        else:
            if self.model_state is None:
                raise RuntimeError("the device has not received a model yet")
            state, global_grad = self.model_state, self.global_grad
        pos = np.concatenate([self.arrivals(t) for t in rounds])
        stats: dict[str, np.ndarray] = {}
        g = None
        if self.needs or self.estimator is not None:
            stats, g = self.stats(pos, state, global_grad, gradients=self.estimator is not None)
        labels = self.y[torch.as_tensor(pos)].tolist()
        for r, t in enumerate(rounds):
            chunk = slice(r * self.velocity, (r + 1) * self.velocity)
            if self.estimator is not None:
                self.estimator.add(g[chunk])
            for k in range(chunk.start, chunk.stop):
                self.store.offer(
                    int(pos[k]), int(labels[k]), {n: float(v[k]) for n, v in stats.items()}
                )
            self.cursor = t

    def upload(self) -> tuple[Tensor | None, int]:
        """The local gradient estimate and its sample count; resets the estimator."""
        if self.estimator is None:
            return None, 0
        mean, count = self.estimator.mean(), self.estimator.count
        mean = None if mean is None else mean.clone()
        self.estimator.reset()
        return mean, count

    def revalue(self) -> None:
        """Recompute stored values under the model (and estimate) last received; with an
        oracle, under ``oracle(cursor)`` (``oracle(1)`` before the first round)."""
        if self.model_state is None:
            return
        if self.oracle is not None:
            self._revalue(*self.oracle(max(self.cursor, 1)))
        else:
            self._revalue(self.model_state, self.global_grad)

    def _revalue(self, state: Mapping[str, Tensor], global_grad: Tensor | None) -> None:
        if hasattr(self.store, "revalue"):
            self.store.revalue(lambda positions: self.stats(positions, state, global_grad)[0])


# --------------------------------------------------------------------------- the task


class StreamTask:
    """A classification task whose devices learn from storage-limited streams
    (a :class:`~graphrec.federated.simulator.FederatedTask`).

    Local training: :func:`~graphrec.federated.tasks.local_sgd` on the store, as every task:
    ``config["local_steps"]`` SGD steps with ``config["lr"]`` on shuffled mini-batches of
    ``config["batch_size"]`` stored samples (a batch size of at least the store size makes
    every step one full-batch epoch over the store), FedProx's ``config["prox_mu"]`` and
    clipping ``config["clip_norm"]``; with ODE the loss of a sample of label ``y`` is weighted
    by ``gamma_y`` and the aggregation weight is ``sum_y gamma_y B_{c,y}``; otherwise the weight
    is the number of stored samples. The device's objects live in its ``client_state`` (so the
    simulator keeps them across rounds; such checkpoints need ``weights_only=False``).

    Args:
        model: a classifier (no batch norm); its initial weights come from :meth:`init_state`.
        x, y: all samples (float features, int64 labels); parts: stream sample indices per
            device; test_rows: the central test set (the union of per-device test data).
        selector: see the module table.
        buffer_size: ``|B_c|`` (one value or one per device; ignored by ``fd``).
        velocity: samples per round (one value or one per device).
        label_owners, client_labels: ``N^label`` and ``N^client`` of the ODE coordination
            (default: no limit).
        layers: Simplified ODE: value with the last ``layers`` parameter-owning modules only.
        loss_fn: batch-mean loss (default cross-entropy).
        seed: orders each device's stream and seeds the stores' randomness.
        loss_norm: ODE's gamma-weighted batch loss: ``"mean"`` ``mean_i(gamma_i l_i)`` or
            ``"gamma"`` ``sum_i(gamma_i l_i) / sum_i gamma_i`` (the official code).
        estimate_timing: when an ODE-Est device gets ``g_hat``: ``"before"`` with the model at
            the start of its round (``g_hat^{t-1}``, re-valuing the store under the new pair
            before training), or ``"after"`` (the official code): after the round's
            aggregation, ``g_hat^t``, which includes the device's own upload; the store is
            re-valued under (last model, ``g_hat^t``) before the next round's arrivals, and
            training uses the store as it is. In-process only (the task keeps every round's
            estimate).
        exact_revalue: ODE-Exact re-values a store on ``"participation"`` or
            ``"every-round"`` (the official code: before every round's arrivals).
        rs_counter: reservoir sampling's count of seen samples is ``"cumulative"`` or
            ``"restart"``-ed at each participation (the official code).
        initial_store: stores start ``"empty"`` or full with the ``"last"`` samples of the
            stream (the official code; see the module docstring).
    """

    #: accepted values of the official-behaviour options (the first is the default)
    OPTIONS = {
        "loss_norm": ("mean", "gamma"),
        "estimate_timing": ("before", "after"),
        "exact_revalue": ("participation", "every-round"),
        "rs_counter": ("cumulative", "restart"),
        "initial_store": ("empty", "last"),
    }

    def __init__(
        self,
        model: nn.Module,
        x: np.ndarray | Tensor,
        y: np.ndarray | Tensor,
        parts: Sequence[np.ndarray],
        test_rows: np.ndarray,
        *,
        selector: str,
        buffer_size: int | Sequence[int] = 10,
        velocity: int | Sequence[int] = 1,
        label_owners: int | None = None,
        client_labels: int | None = None,
        layers: int | None = None,
        loss_fn: LossFn = F.cross_entropy,
        seed: int = 0,
        loss_norm: str = "mean",
        estimate_timing: str = "before",
        exact_revalue: str = "participation",
        rs_counter: str = "cumulative",
        initial_store: str = "empty",
    ) -> None:
        if selector not in SELECTORS:
            raise ConfigError(f"unknown selector {selector!r}; expected one of {sorted(SELECTORS)}")
        chosen = {
            "loss_norm": loss_norm,
            "estimate_timing": estimate_timing,
            "exact_revalue": exact_revalue,
            "rs_counter": rs_counter,
            "initial_store": initial_store,
        }
        for name, value in chosen.items():
            if value not in self.OPTIONS[name]:
                raise ConfigError(f"{name} must be one of {self.OPTIONS[name]}, got {value!r}")
        self.loss_norm, self.estimate_timing = loss_norm, estimate_timing
        self.exact_revalue, self.rs_counter = exact_revalue, rs_counter
        self.initial_store = initial_store
        self.model, self.loss_fn, self.selector, self.seed = model, loss_fn, selector, seed
        self.x = torch.as_tensor(np.asarray(x, np.float32))
        self.y = torch.as_tensor(np.asarray(y, np.int64))
        rng = np.random.default_rng(seed)
        self.streams = [rng.permutation(np.asarray(p, np.int64)) for p in parts]
        n = len(self.streams)
        self.test_rows = np.asarray(test_rows, np.int64)
        self.buffer_size = np.broadcast_to(np.asarray(buffer_size, np.int64), (n,)).copy()
        self.velocity = np.broadcast_to(np.asarray(velocity, np.int64), (n,)).copy()
        if (self.velocity < 1).any() or (self.buffer_size < 1).any():
            raise ConfigError("velocity and buffer_size must be >= 1")
        self.graph = DeviceCloudGraph([s.size for s in self.streams])
        self.tables: dict[str, str] = {}
        self.params = None if layers is None else last_layers(model, layers)
        self.num_classes = int(self.y.max()) + 1
        self.assignment: LabelAssignment | None = None
        if selector in ("ode", "ode-exact"):
            counts = np.stack(
                [np.bincount(self.y[s].numpy(), minlength=self.num_classes) for s in self.streams]
            )
            rate = counts * (self.velocity / np.maximum(counts.sum(1), 1))[:, None]
            self.assignment = coordinate_labels(
                self.buffer_size,
                rate,
                label_owners=label_owners or n,
                client_labels=client_labels or self.num_classes,
                label_counts=counts.sum(0),
            )
        self.initial_state: dict[str, Tensor] | None = None
        self.initial_grad: Tensor | None = None
        self._models: dict[int, dict[str, Tensor]] = {}  # ODE-Exact oracle: round -> w^{t-1}
        self._exact: dict[int, Tensor] = {}
        self._estimates: dict[int, Tensor] = {}  # estimate_timing "after": round -> g_hat^t
        train = np.concatenate(self.streams) if self.streams else np.zeros(0, np.int64)
        self._train = torch.from_numpy(np.sort(train))

    @property
    def grad_dim(self) -> int:
        sizes = dict(self.model.named_parameters())
        names = self.params if self.params is not None else list(sizes)
        return sum(sizes[n].numel() for n in names)

    def init_state(self, seed: int) -> dict[str, Tensor]:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            for module in self.model.modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
        state = {k: v.detach().clone() for k, v in self.model.named_parameters()}
        self.initial_state = {k: v.clone() for k, v in state.items()}
        self._models = {0: self.initial_state}
        return state

    def client_gradients(self, state: Mapping[str, Tensor]) -> Tensor:
        """Each device's full-stream mean gradient at ``state`` (``[D, P]``; the official code's
        initialisation of the estimators)."""
        out = []
        for s in self.streams:
            idx = torch.from_numpy(s)
            with _loaded(self.model, state):
                out.append(
                    global_gradient(
                        self.model, self.loss_fn, self.x[idx], self.y[idx], params=self.params
                    )
                )
        return torch.stack(out)

    def _oracle(self, round: int) -> tuple[Mapping[str, Tensor], Tensor]:
        """ODE-Exact: the global model before ``round`` and the exact gradient there."""
        if round - 1 not in self._models:
            raise RuntimeError(f"no global model recorded before round {round}")
        state = self._models[round - 1]
        if round not in self._exact:
            with _loaded(self.model, state):
                self._exact[round] = global_gradient(
                    self.model,
                    self.loss_fn,
                    self.x[self._train],
                    self.y[self._train],
                    params=self.params,
                )
        return state, self._exact[round]

    def start(self, seed: int, estimator: str = "replacement") -> GlobalGradientEstimator | None:
        """Set the initial model (:meth:`init_state`) and, for ``ode``, seed the global-gradient
        estimate with exact gradients at it (the official simulation shortcut); return that
        server-side estimator (``"replacement"``: Estimation2, ODE-Est; ``"incremental"``:
        Estimation1), None for the other selectors. Every device starts from this pair."""
        state0 = self.init_state(seed)
        if self.selector != "ode":
            return None
        est = GlobalGradientEstimator(self.graph.num_samples, self.grad_dim, mode=estimator)
        est.initialize(self.client_gradients(state0))
        self.initial_grad = est.estimate.float().clone()
        return est

    def device(self, client: int) -> StreamDevice:
        """A fresh device ``client`` holding the initial model and gradient estimate."""
        if self.initial_state is None:
            raise RuntimeError("call start(seed) first")
        idx = torch.from_numpy(self.streams[client])
        slots = None
        if self.assignment is not None:
            slots = {int(y): int(k) for y, k in enumerate(self.assignment.slots[client])}
        rng = np.random.default_rng([self.seed, client, 7])
        store = make_store(self.selector, int(self.buffer_size[client]), slots=slots, rng=rng)
        dev = StreamDevice(
            self.x[idx],
            self.y[idx],
            int(self.velocity[client]),
            store,
            self.model,
            self.loss_fn,
            needs=SELECTORS[self.selector],
            params=self.params,
            estimate=self.selector == "ode",
            oracle=self._oracle if self.selector == "ode-exact" else None,
            revalue_each_round=self.exact_revalue == "every-round",
        )
        dev.receive(self.initial_state, self.initial_grad)
        if self.initial_store == "last" and hasattr(store, "preload"):
            labels = self.y[idx].numpy()
            if slots is None:
                first = max(0, labels.size - int(self.buffer_size[client]))
                positions = np.arange(first, labels.size)
            else:
                positions = np.concatenate(
                    [np.flatnonzero(labels == y)[-k:] for y, k in slots.items() if k > 0]
                    + [np.zeros(0, np.int64)]
                )
            store.preload(positions.tolist(), labels[positions].tolist())
            dev.revalue()
        return dev

    def local_train(
        self,
        client: int,
        state: Mapping[str, Tensor],
        config: dict[str, Any],
        client_state: dict[str, Any],
        generator: torch.Generator,
    ) -> tuple[dict[str, Tensor], dict[str, Any]]:
        t = int(config["round"]) + 1
        self._models.setdefault(t - 1, {k: v.detach().clone() for k, v in state.items()})
        after = self.estimate_timing == "after" and self.selector == "ode"
        if after:
            self._estimates.setdefault(t - 1, config["global_grad"].detach().clone())
        dev = client_state.get("device")
        if dev is None:
            dev = client_state["device"] = self.device(client)
        elif dev.model is None:  # unpickled (Flower context.state): re-attach data and model
            fresh = self.device(client)
            for k in StreamDevice._DETACHED:
                setattr(dev, k, getattr(fresh, k))
        last = client_state.get("last_round")
        if after and last is not None:  # g_hat^last, sent after that round's aggregation
            dev.global_grad = self._estimates[last].clone()
            dev.revalue()
        dev.catch_up(t)
        if after:
            client_state["last_round"] = t
        if self.rs_counter == "restart" and hasattr(dev.store, "restart"):
            dev.store.restart()
        ghat, count = dev.upload()
        if after:
            dev.receive(state, dev.global_grad)
        else:
            dev.receive(state, config.get("global_grad"))
            dev.revalue()
        positions = dev.store.samples()
        metrics: dict[str, Any] = {}
        if ghat is not None:
            metrics["ghat"] = ghat
        if not positions:
            metrics["weight"] = 0.0
            return {k: v.detach().clone() for k, v in state.items()}, metrics
        idx = torch.as_tensor(positions)
        x, y = dev.x[idx], dev.y[idx]
        if self.assignment is not None:
            gamma = torch.as_tensor(self.assignment.gamma, dtype=x.dtype)
            weights = gamma[y]
            metrics["weight"] = float(self.assignment.weights[client])
        else:
            weights = None
            metrics["weight"] = float(len(positions))

        def loss_fn(params: dict[str, Tensor], b: Tensor) -> Tensor:
            out = functional_call(self.model, params, (x[b],))
            if weights is None:
                return self.loss_fn(out, y[b])
            per = vmap(lambda o, t: self.loss_fn(o[None], t[None]))(out, y[b])
            if self.loss_norm == "gamma":
                return (weights[b] * per).sum() / weights[b].sum()
            return (weights[b] * per).mean()

        local, train_metrics = local_sgd(state, len(positions), config, generator, loss_fn)
        return local, {**metrics, **train_metrics}

    @torch.no_grad()
    def evaluate(self, state: Mapping[str, Tensor]) -> dict[str, float]:
        idx = torch.from_numpy(self.test_rows)
        logits = functional_call(self.model, dict(state), (self.x[idx],))
        return {
            "accuracy": float((logits.argmax(1) == self.y[idx]).float().mean()),
            "loss": float(self.loss_fn(logits, self.y[idx])),
        }

    def selection_cost(self, devices: Sequence[StreamDevice]) -> dict[str, float]:
        """Per-sample valuation time (ms) over ``devices`` and per-sample working memory (bytes
        of the statistics computed per sample: the gradient for gradient-based selectors)."""
        valued = sum(d.valued for d in devices)
        seconds = sum(d.value_seconds for d in devices)
        needs = SELECTORS[self.selector]
        if needs & {"grad_norm", "value"} or self.selector == "ode":
            nbytes = self.grad_dim * self.x.element_size()
        else:
            nbytes = self.x.element_size() if needs else 0
        return {
            "ms_per_sample": 1000 * seconds / valued if valued else 0.0,
            "bytes_per_sample": float(nbytes),
        }


class _loaded:
    """Context manager: temporarily load ``state`` into ``model``'s parameters."""

    def __init__(self, model: nn.Module, state: Mapping[str, Tensor]) -> None:
        self.model, self.state = model, state

    def __enter__(self) -> None:
        params = dict(self.model.named_parameters())
        self.saved = {k: p.detach().clone() for k, p in params.items()}
        with torch.no_grad():
            for k, v in self.state.items():
                params[k].copy_(v)

    def __exit__(self, *exc: object) -> None:
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for k, v in self.saved.items():
                params[k].copy_(v)


# --------------------------------------------------------------------------- the server


class ODEAggregation(Strategy):
    """FedAvg with per-update aggregation weights (ODE's ``sum_y gamma_y B_{c,y}``, or store
    sizes) and, for ODE-Est, the server's global-gradient estimate.

    Hooks: :meth:`configure` adds ``config["global_grad"]`` (the current estimate, sent with the
    model); :meth:`aggregate` averages the updates of positive weight
    (:class:`~graphrec.federated.strategies.FedAvg`) and feeds their ``extras["ghat"]`` to the
    :class:`~graphrec.federated.ode.GlobalGradientEstimator`.
    """

    name = "ode"

    def __init__(
        self, estimator: GlobalGradientEstimator | None = None, *, server_lr: float = 1.0
    ) -> None:
        self.estimator = estimator
        self.fedavg = FedAvg(weighted=True, server_lr=server_lr)

    def configure(self, round: int, config: dict) -> dict:
        config = dict(config)
        if self.estimator is not None:
            config["global_grad"] = self.estimator.estimate.float().clone()
        return config

    def aggregate(
        self, global_state: Mapping[str, Tensor], updates: Sequence[ClientUpdate]
    ) -> State:
        kept = [u for u in updates if (u.num_samples if u.weight is None else u.weight) > 0]
        new = self.fedavg.aggregate(global_state, kept)
        if self.estimator is not None:
            self.estimator.update(
                {u.client: u.extras["ghat"] for u in updates if "ghat" in u.extras}
            )
        return new

    def state_dict(self) -> dict[str, Any]:
        if self.estimator is None:
            return {}
        return {"estimate": self.estimator.estimate, "previous": self.estimator.previous}

    def load_state_dict(self, data: Mapping[str, Any]) -> None:
        if self.estimator is not None:
            self.estimator.estimate = data["estimate"].clone()
            self.estimator.previous = data["previous"].clone()


def ode_strategy(task: StreamTask, seed: int, *, estimator: str = "replacement") -> ODEAggregation:
    """Start ``task`` (:meth:`StreamTask.start`) and return its server aggregation."""
    return ODEAggregation(task.start(seed, estimator))


def stream_simulator(
    task: StreamTask,
    *,
    clients_per_round: int,
    local: LocalConfig,
    seed: int = 0,
    eval_every: int = 10,
    estimator: str = "replacement",
) -> Simulator:
    """A :class:`~graphrec.federated.simulator.Simulator` running ``task`` with
    :func:`ode_strategy` (``estimator``: see :meth:`StreamTask.start`)."""
    return Simulator(
        task,
        ode_strategy(task, seed, estimator=estimator),
        clients_per_round=clients_per_round,
        local=local,
        seed=seed,
        eval_every=eval_every,
    )


# --------------------------------------------------------------------------- metrics


def rounds_to_reach(
    history: Sequence[Mapping[str, Any]], target: float, metric: str = "accuracy"
) -> int | None:
    """First evaluated round whose ``metric`` is at least ``target`` (None: never)."""
    for r in history:
        if metric in r and r[metric] >= target:
            return int(r["round"])
    return None


def final_value(
    history: Sequence[Mapping[str, Any]], metric: str = "accuracy", tail: int = 1
) -> float:
    """Mean ``metric`` over the last ``tail`` evaluations."""
    values = [r[metric] for r in history if metric in r]
    return float(np.mean(values[-tail:]))


def speedup(
    reference: Sequence[Mapping[str, Any]],
    history: Sequence[Mapping[str, Any]],
    metric: str = "accuracy",
    tail: int = 1,
) -> float | None:
    """Time-to-accuracy speedup (ODE paper, Table 2): rounds ``reference`` (RS) needs to reach
    its final ``metric`` (mean of its last ``tail`` evaluations) / rounds ``history`` needs to
    reach it; None if ``history`` never does."""
    target = final_value(reference, metric, tail)
    base = rounds_to_reach(reference, target, metric)
    mine = rounds_to_reach(history, target, metric)
    if mine is None or base is None:
        return None
    return base / max(mine, 1)
