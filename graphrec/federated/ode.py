"""ODE sample valuation (Gong et al., "ODE: A Data Sample Selection Framework for Federated
Learning with Limited Storage", WWW 2023, arXiv 2209.00195; official code
``gongchenooo/WWW23-ODE`` @ c912585).

The value of a sample ``(x, y)`` for the next round is the projection of its gradient on the
global gradient at the last global model ``w``:

    v(x, y) = < grad_w l(w; x, y), grad_w F(w) >

(the dominant term of the paper's lower bound on the one-round global-loss drop; the code uses
the raw inner product). To first order, one SGD step of size ``eta`` on the sample changes the
global loss by ``-eta * v(x, y)``. "Simplified ODE" restricts both gradients to the last
layers (``params=last_layers(model, k)``).

``grad F`` is either exact (ODE-Exact: :func:`global_gradient` over all data) or estimated
(ODE-Est): each device keeps a :class:`LocalGradientEstimator` (running mean of per-sample
gradients at its last received model) and the server a :class:`GlobalGradientEstimator`
(incremental "Estimation1" or replacement "Estimation2" update).

Also here: the greedy cross-client label coordination (:func:`coordinate_labels`) and the
per-label value store (:class:`ValueBuffer`). Streams, stores, the selection baselines and the
round loop are in :mod:`graphrec.federated.stream`.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, grad_and_value, vmap

from graphrec.errors import ConfigError

__all__ = [
    "last_layers",
    "per_sample_gradients",
    "global_gradient",
    "sample_values",
    "LocalGradientEstimator",
    "GlobalGradientEstimator",
    "LabelAssignment",
    "coordinate_labels",
    "ValueBuffer",
    "per_sample_losses",
]

#: ``loss_fn(model_output, target) -> scalar loss`` of a batch (mean over the batch).
LossFn = Callable[[Tensor, Tensor], Tensor]


def last_layers(model: nn.Module, k: int = 1) -> list[str]:
    """Parameter names of the last ``k`` modules that own parameters (in registration order)."""
    owners = [
        (name, [f"{name}.{p}" if name else p for p, _ in mod.named_parameters(recurse=False)])
        for name, mod in model.named_modules()
        if any(True for _ in mod.parameters(recurse=False))
    ]
    if not 1 <= k <= len(owners):
        raise ConfigError(f"k must be in 1..{len(owners)}, got {k}")
    return [p for _, names in owners[-k:] for p in names]


def _split(
    model: nn.Module, params: Sequence[str] | None, state: Mapping[str, Tensor] | None = None
) -> tuple[dict, dict]:
    everything = {n: p.detach() for n, p in model.named_parameters()}
    if state is not None:
        everything.update({n: state[n].detach() for n in everything if n in state})
    names = list(everything) if params is None else list(params)
    unknown = set(names) - set(everything)
    if unknown:
        raise KeyError(f"unknown parameters: {sorted(unknown)}")
    chosen = {n: everything[n] for n in names}
    fixed = {n: p for n, p in everything.items() if n not in chosen}
    fixed.update(dict(model.named_buffers()))
    return chosen, fixed


def _flatten(grads: Mapping[str, Tensor], names: Sequence[str], batch: bool) -> Tensor:
    lead = 1 if batch else 0
    return torch.cat([grads[n].flatten(start_dim=lead) for n in names], dim=lead)


def _one_sample_loss(model: nn.Module, loss_fn: LossFn, fixed: dict) -> Callable:
    def one(p: dict, xi: Tensor, yi: Tensor) -> Tensor:
        out = functional_call(model, {**fixed, **p}, (xi.unsqueeze(0),))
        return loss_fn(out, yi.unsqueeze(0))

    return one


def per_sample_gradients(
    model: nn.Module,
    loss_fn: LossFn,
    x: Tensor,
    y: Tensor,
    *,
    params: Sequence[str] | None = None,
    state: Mapping[str, Tensor] | None = None,
    with_loss: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Per-sample gradients ``[n, P]`` of ``loss_fn(model(x_i), y_i)`` w.r.t. ``params``
    (default: all parameters, flattened in ``named_parameters`` order), via ``torch.func.vmap``,
    at the model's parameters or at ``state`` (parameter name -> tensor) where given.
    ``with_loss=True`` also returns the per-sample losses ``[n]``.
    The model must not mix samples (no batch norm in training mode)."""
    chosen, fixed = _split(model, params, state)
    one = _one_sample_loss(model, loss_fn, fixed)
    grads, losses = vmap(grad_and_value(one), in_dims=(None, 0, 0))(chosen, x, y)
    flat = _flatten(grads, list(chosen), batch=True)
    return (flat, losses.detach()) if with_loss else flat


def per_sample_losses(
    model: nn.Module,
    loss_fn: LossFn,
    x: Tensor,
    y: Tensor,
    *,
    state: Mapping[str, Tensor] | None = None,
) -> Tensor:
    """Per-sample losses ``[n]`` of ``loss_fn(model(x_i), y_i)`` at the model or ``state``."""
    chosen, fixed = _split(model, None, state)
    one = _one_sample_loss(model, loss_fn, fixed)
    with torch.no_grad():
        return vmap(one, in_dims=(None, 0, 0))(chosen, x, y)


def global_gradient(
    model: nn.Module,
    loss_fn: LossFn,
    x: Tensor,
    y: Tensor,
    *,
    params: Sequence[str] | None = None,
) -> Tensor:
    """Flattened gradient ``[P]`` of the mean loss over ``(x, y)`` (the exact ``grad F`` of
    ODE-Exact when ``(x, y)`` is all clients' data)."""
    chosen, fixed = _split(model, params)

    def full(p: dict) -> Tensor:
        return loss_fn(functional_call(model, {**fixed, **p}, (x,)), y)

    return _flatten(grad(full)(chosen), list(chosen), batch=False)


def sample_values(
    model: nn.Module,
    loss_fn: LossFn,
    x: Tensor,
    y: Tensor,
    global_grad: Tensor,
    *,
    params: Sequence[str] | None = None,
) -> Tensor:
    """ODE values ``v_i = <grad l(w; x_i, y_i), global_grad>`` (``[n]``); ``global_grad`` must be
    flattened over the same ``params``."""
    g = per_sample_gradients(model, loss_fn, x, y, params=params)
    if global_grad.shape != g.shape[1:]:
        raise ConfigError(
            f"global_grad has shape {tuple(global_grad.shape)}, expected ({g.shape[1]},)"
        )
    return g @ global_grad.to(g.dtype)


class LocalGradientEstimator:
    """A device's running mean of per-sample gradients since its last participation (sum and
    count, as in the official code); uploaded and reset when the device is selected."""

    def __init__(self, dim: int, dtype: torch.dtype = torch.float32) -> None:
        self.total = torch.zeros(dim, dtype=dtype)
        self.count = 0

    def add(self, grads: Tensor) -> None:
        """Add per-sample gradients ``[n, P]`` (or one ``[P]``)."""
        grads = grads.reshape(-1, self.total.numel())
        self.total += grads.sum(0).to(self.total.dtype)
        self.count += grads.shape[0]

    def mean(self) -> Tensor | None:
        return None if self.count == 0 else self.total / self.count

    def reset(self) -> None:
        self.total.zero_()
        self.count = 0


class GlobalGradientEstimator:
    """The server's estimate ``g_hat`` of the global gradient.

    * ``mode="incremental"`` (Estimation1): ``g_hat += sum_{c in P_t} (n_c/N_tot)
      (g_c_new - g_c_old)``; ``g_c_old`` is the estimate last received from ``c``.
    * ``mode="replacement"`` (Estimation2, ODE-Est in the code's README): ``g_hat`` = the
      ``n_c``-weighted mean of this round's ``g_c``.

    ``num_samples[c]`` is ``n_c``. :meth:`initialize` seeds ``g_hat`` and every ``g_c_old``
    (the official simulation shortcut: exact gradients at the initial model).
    """

    def __init__(self, num_samples: Sequence[int], dim: int, *, mode: str = "replacement") -> None:
        if mode not in ("incremental", "replacement"):
            raise ConfigError(f"mode must be 'incremental' or 'replacement', got {mode!r}")
        self.mode = mode
        self.num_samples = torch.as_tensor(num_samples, dtype=torch.float64)
        self.estimate = torch.zeros(dim, dtype=torch.float64)
        self.previous = torch.zeros(len(num_samples), dim, dtype=torch.float64)

    def initialize(self, per_client: Tensor) -> None:
        """Seed with per-client gradients ``[C, P]``; ``g_hat`` = their ``n_c``-weighted mean."""
        self.previous = per_client.double().clone()
        w = self.num_samples / self.num_samples.sum()
        self.estimate = w @ self.previous

    def update(self, reports: Mapping[int, Tensor]) -> Tensor:
        """Apply this round's reports ``client -> g_c``; return the new ``g_hat``."""
        if not reports:
            return self.estimate
        total = self.num_samples.sum()
        if self.mode == "incremental":
            for c, g in reports.items():
                g = g.double()
                self.estimate += (self.num_samples[c] / total) * (g - self.previous[c])
        else:
            n = torch.stack([self.num_samples[c] for c in reports])
            g = torch.stack([r.double() for r in reports.values()])
            self.estimate = (n / n.sum()) @ g
        for c, g in reports.items():
            self.previous[c] = g.double()
        return self.estimate


@dataclass
class LabelAssignment:
    """Output of :func:`coordinate_labels`.

    Attributes:
        slots: int64 ``[C, Y]``, ``S_{c,y}`` = buffer slots of client ``c`` for label ``y``.
        gamma: float64 ``[Y]``, loss weight ``gamma_y = (N_y / N_tot) / (B_y / B)`` (0 where a
            label got no slot).
        weights: float64 ``[C]``, aggregation weight ``sum_y gamma_y S_{c,y}``.
    """

    slots: np.ndarray
    gamma: np.ndarray
    weights: np.ndarray

    def labels_of(self, client: int) -> np.ndarray:
        return np.flatnonzero(self.slots[client] > 0)


def coordinate_labels(
    buffer_sizes: Sequence[int],
    velocity: np.ndarray,
    *,
    label_owners: int,
    client_labels: int,
    label_counts: np.ndarray | None = None,
) -> LabelAssignment:
    """ODE's greedy cross-client label coordination (paper section 4.3 / official code).

    Labels are visited by increasing number of clients that see them (``velocity > 0``); each
    label goes to the clients with the highest velocity for it, up to ``label_owners`` clients,
    skipping clients that already hold ``client_labels`` labels (or as many labels as they have
    slots). Each client splits its buffer evenly over its labels, leftovers one by one to its
    labels of highest velocity. ``gamma`` re-weights labels so that the gamma-weighted stored
    distribution equals the global one (``label_counts``, default ``velocity.sum(0)``).

    Args:
        buffer_sizes: ``|B_c|`` per client.
        velocity: ``[C, Y]`` samples of label ``y`` arriving at client ``c`` per round.
        label_owners: ``N^label``, target number of clients per label.
        client_labels: ``N^client``, most labels per client.
    """
    velocity = np.asarray(velocity, dtype=np.float64)
    sizes = np.asarray(buffer_sizes, dtype=np.int64)
    n_clients, n_labels = velocity.shape
    if sizes.shape != (n_clients,) or (sizes < 0).any():
        raise ConfigError("buffer_sizes must give a non-negative size per client (velocity rows)")
    if label_owners < 1 or client_labels < 1:
        raise ConfigError("label_owners and client_labels must be positive")
    counts = velocity.sum(0) if label_counts is None else np.asarray(label_counts, np.float64)
    capacity = np.minimum(sizes, client_labels)
    owned = np.zeros((n_clients, n_labels), dtype=bool)
    seen = (velocity > 0).sum(0)
    for y in np.argsort(seen, kind="stable"):
        candidates = np.flatnonzero(velocity[:, y] > 0)
        candidates = candidates[np.argsort(-velocity[candidates, y], kind="stable")]
        taken = 0
        for c in candidates:
            if taken >= label_owners:
                break
            if owned[c].sum() < capacity[c]:
                owned[c, y] = True
                taken += 1
    slots = np.zeros((n_clients, n_labels), dtype=np.int64)
    for c in range(n_clients):
        labels = np.flatnonzero(owned[c])
        if labels.size == 0:
            continue
        slots[c, labels] = sizes[c] // labels.size
        leftover = int(sizes[c] - slots[c, labels].sum())
        by_velocity = labels[np.argsort(-velocity[c, labels], kind="stable")]
        slots[c, by_velocity[:leftover]] += 1
    per_label = slots.sum(0).astype(np.float64)
    total_slots = per_label.sum()
    gamma = np.zeros(n_labels)
    ok = per_label > 0
    if total_slots > 0 and counts.sum() > 0:
        gamma[ok] = (counts[ok] / counts.sum()) / (per_label[ok] / total_slots)
    return LabelAssignment(slots, gamma, slots @ gamma)


class ValueBuffer:
    """A device's ODE store: per label a min-priority queue of ``(value, sample)`` with
    ``slots[y]`` places. A new sample of label ``y`` replaces the lowest-valued stored one if its
    value is at least that minimum (and fills free places first); labels without slots are
    dropped."""

    def __init__(self, slots: Mapping[int, int]) -> None:
        self.slots = {int(y): int(k) for y, k in slots.items() if k > 0}
        self._heaps: dict[int, list[tuple[float, int, Any]]] = {y: [] for y in self.slots}
        self._seq = 0

    def offer(self, sample: Any, label: int, value: float) -> bool:
        """Offer one arriving sample; return whether it was stored."""
        heap = self._heaps.get(int(label))
        if heap is None:
            return False
        self._seq += 1
        item = (float(value), self._seq, sample)
        if len(heap) < self.slots[int(label)]:
            heapq.heappush(heap, item)
            return True
        if value >= heap[0][0]:
            heapq.heapreplace(heap, item)
            return True
        return False

    def revalue(self, value_fn: Callable[[list[Any], list[int]], Sequence[float]]) -> None:
        """Recompute every stored value (e.g. under a newly received model)."""
        items = [(y, s) for y, heap in self._heaps.items() for _, _, s in heap]
        values = list(value_fn([s for _, s in items], [y for y, _ in items]))
        self._heaps = {y: [] for y in self.slots}
        for (y, s), v in zip(items, values, strict=True):
            self._seq += 1
            heapq.heappush(self._heaps[y], (float(v), self._seq, s))

    def entries(self) -> list[tuple[Any, int, float]]:
        """Stored ``(sample, label, value)``, by label then by increasing value (ties: older
        first)."""
        return [(s, y, v) for y in sorted(self._heaps) for v, _, s in sorted(self._heaps[y])]

    def samples(self) -> list[tuple[Any, int]]:
        """Stored ``(sample, label)`` pairs, in the order of :meth:`entries`."""
        return [(s, y) for s, y, _ in self.entries()]

    def __len__(self) -> int:
        return sum(len(h) for h in self._heaps.values())
