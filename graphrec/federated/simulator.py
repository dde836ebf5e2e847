"""In-process federated simulator on the device-cloud graph.

One :class:`Simulator` runs synchronous rounds:

1. sample ``clients_per_round`` devices uniformly without replacement (seeded per round);
2. each sampled device may drop out (probability ``dropout``) or straggle (probability
   ``straggler``: it completes only ``straggler_steps`` of its local steps);
3. each remaining device receives the dense parameters and **only the rows of its submodel**
   ``S_i`` (from :class:`~graphrec.graphs.device_cloud.DeviceCloudGraph`), trains locally
   (:meth:`FederatedTask.local_train`, with its persistent per-client state) and sends back
   dense deltas plus the deltas of its touched rows
   (:class:`~graphrec.federated.strategies.RowDelta`);
4. updates that are not finite, or whose L2 norm exceeds ``max_update_norm``, are rejected and
   logged (logger ``graphrec.federated``); the round goes on with the rest;
5. the strategy's hook ``aggregate(global_state, updates)`` gives the new global state;
6. every ``eval_every`` rounds the task evaluates the global model.

Bytes down (dense + touched rows, also for devices that then drop out) and up (dense deltas +
row indices + row deltas) are counted per round. The task really trains on the submodel only
(:meth:`Simulator.submodel`), with its table indices remapped to the local rows.

All randomness of round ``t`` derives from ``(seed, t)``, so a run resumed from a
checkpoint (:meth:`Simulator.save` / :meth:`Simulator.load`) equals an uninterrupted one.
A checkpoint records the run's configuration (:meth:`Simulator.config`) and data
(:meth:`Simulator.data_record`); loading one of another run raises
:class:`~graphrec.io.checkpoint.CheckpointError` listing the differences.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from graphrec.errors import ConfigError
from graphrec.federated.strategies import ClientUpdate, RowDelta, Strategy
from graphrec.graphs.device_cloud import DeviceCloudGraph
from graphrec.io.checkpoint import (
    CheckpointError,
    check_same_run,
    fingerprint,
    load_checkpoint,
    save_checkpoint,
)

__all__ = ["LocalConfig", "FederatedTask", "Simulator", "submodel", "local_update", "check_update"]

logger = logging.getLogger("graphrec.federated")

State = dict[str, Tensor]


@dataclass
class LocalConfig:
    """Local-training configuration sent to the clients of a round.

    Defaults follow the official FedSubAvg Amazon setting (SGD lr 0.1 x 0.999 per round,
    batch 4, 10 local iterations, global-norm clip 5).
    """

    lr: float = 0.1
    lr_decay: float = 0.999  #: per round: round ``t`` uses ``lr * lr_decay**t``
    local_steps: int = 10
    batch_size: int = 4
    clip_norm: float | None = 5.0
    prox_mu: float = 0.0

    def for_round(self, round: int) -> dict[str, Any]:
        cfg = asdict(self)
        cfg["lr"] = self.lr * self.lr_decay**round
        cfg["round"] = round
        return cfg


class FederatedTask(Protocol):
    """What the simulator needs from a model + federated data set.

    Attributes:
        graph: the device-cloud graph (devices, their sample counts and touched rows).
        tables: parameter name -> graph table name for every embedding-table parameter; all
            other parameters are dense.
    """

    graph: DeviceCloudGraph
    tables: dict[str, str]

    def init_state(self, seed: int) -> State:
        """The initial global model."""

    def local_train(
        self,
        client: int,
        state: Mapping[str, Tensor],
        config: dict[str, Any],
        client_state: dict[str, Any],
        generator: torch.Generator,
    ) -> tuple[State, dict[str, float]]:
        """Train on ``client``'s data from its submodel; return the local submodel and metrics.

        ``state`` is the submodel the client downloaded: dense parameters in full, each table
        parameter restricted to the rows ``graph.rows(client, table)`` in that order (local row
        ``k`` = the ``k``-th touched row). It must not be modified; the returned dict has the
        same keys and shapes. ``client_state`` persists across rounds (and checkpoints); it may
        hold tensors, numbers, strings, lists and dicts. In the returned metrics, ``"weight"``
        becomes the update's aggregation weight and tensor values become its ``extras``.
        """

    def evaluate(self, state: Mapping[str, Tensor]) -> dict[str, float]:
        """Metrics of a global model (e.g. test ``auc``, ``loss``)."""


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def submodel(
    task: FederatedTask, state: Mapping[str, Tensor], client: int
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """What ``client`` downloads: ``(sub, rows)``. ``sub`` holds every dense parameter of
    ``state`` in full and each table parameter restricted to the rows ``rows[name]`` = ``S_i``
    (sorted; local row ``k`` is global row ``rows[name][k]``)."""
    sub, rows = {}, {}
    for name, value in state.items():
        if name in task.tables:
            idx = torch.from_numpy(task.graph.rows(client, task.tables[name]))
            rows[name] = idx
            sub[name] = value[idx]
        else:
            sub[name] = value
    return sub, rows


def local_update(
    task: FederatedTask,
    state: Mapping[str, Tensor],
    client: int,
    config: dict[str, Any],
    client_state: dict[str, Any],
    generator: torch.Generator,
) -> ClientUpdate:
    """One client's local training on its submodel of ``state``; returns its deltas (the
    in-process simulator and the Flower ClientApp both call this)."""
    sub, rows = submodel(task, state, client)
    local, metrics = task.local_train(int(client), sub, config, client_state, generator)
    metrics = dict(metrics)
    weight = metrics.pop("weight", None)
    update = ClientUpdate(
        int(client),
        int(task.graph.num_samples[client]),
        weight=None if weight is None else float(weight),
        extras={k: v for k, v in metrics.items() if isinstance(v, Tensor)},
        metrics={k: v for k, v in metrics.items() if not isinstance(v, Tensor)},
    )
    for name, value in sub.items():
        if local[name].shape != value.shape:
            raise ConfigError(
                f"client {client}: local_train returned {name} of shape "
                f"{tuple(local[name].shape)}, expected {tuple(value.shape)}"
            )
        delta = (local[name] - value).detach()
        if name in rows:
            update.rows[name] = RowDelta(task.tables[name], rows[name], delta)
        else:
            update.dense[name] = delta
    return update


def check_update(update: ClientUpdate, max_update_norm: float | None) -> str | None:
    """Why ``update`` must be rejected (non-finite, or L2 norm above ``max_update_norm``), or
    None if it is acceptable."""
    if not update.is_finite():
        return "non-finite update"
    if max_update_norm is not None:
        norm = update.norm()
        if not norm <= max_update_norm:
            return f"update norm {norm:.4g} > max_update_norm {max_update_norm:.4g}"
    return None


class Simulator:
    """Synchronous FL rounds over a :class:`FederatedTask` with a :class:`Strategy`.

    Args:
        task: model, data and device-cloud graph.
        strategy: aggregation strategy (its ``aggregate`` hook is called once per round).
        clients_per_round: ``K``; devices without samples are never sampled.
        local: local-training configuration (the strategy's ``configure`` may amend it).
        seed: seeds the initial model, client sampling and local training.
        eval_every: evaluate after every this many rounds (and at round 0 and the last round
            of :meth:`run`).
        max_update_norm: reject updates with a larger global L2 norm (None: only non-finite
            updates are rejected).
        dropout: probability that a sampled device does not report back.
        straggler: probability that a sampled device is a straggler.
        straggler_steps: fraction of local steps a straggler completes (at least one).
        data_info: how the task's data was built (e.g. dataset, folder, a
            :func:`~graphrec.io.checkpoint.fingerprint` of the task; plain values), recorded
            in checkpoints with the device-cloud graph's fingerprint and compared on resume.
    """

    def __init__(
        self,
        task: FederatedTask,
        strategy: Strategy,
        *,
        clients_per_round: int,
        local: LocalConfig | None = None,
        seed: int = 0,
        eval_every: int = 1,
        max_update_norm: float | None = None,
        dropout: float = 0.0,
        straggler: float = 0.0,
        straggler_steps: float = 0.5,
        data_info: Mapping[str, Any] | None = None,
    ) -> None:
        self.task = task
        self.strategy = strategy
        self.local = local or LocalConfig()
        self.seed = seed
        self.eval_every = eval_every
        self.max_update_norm = max_update_norm
        self.dropout = dropout
        self.straggler = straggler
        self.straggler_steps = straggler_steps
        self.data_info = dict(data_info or {})
        self._data: dict[str, Any] | None = None
        self.eligible = np.flatnonzero(task.graph.num_samples > 0)
        if not 1 <= clients_per_round <= self.eligible.size:
            raise ConfigError(
                f"clients_per_round must be in 1..{self.eligible.size} (devices with data), "
                f"got {clients_per_round}"
            )
        for p in ("dropout", "straggler"):
            if not 0.0 <= getattr(self, p) < 1.0:
                raise ConfigError(f"{p} must be in [0, 1)")
        self.clients_per_round = clients_per_round
        self.state: State = task.init_state(seed)
        unknown = set(task.tables) - set(self.state)
        if unknown:
            raise ConfigError(f"task.tables names parameters not in the model: {sorted(unknown)}")
        self.round = 0
        self.history: list[dict[str, Any]] = []
        self.rejected: list[dict[str, Any]] = []
        self.client_state: dict[int, dict[str, Any]] = {}

    # ------------------------------------------------------------------ one round
    def sample_clients(self, round: int) -> np.ndarray:
        """The devices sampled in (1-based) ``round``: uniform without replacement, sorted."""
        rng = np.random.default_rng(_seed(self.seed, round, 0))
        return np.sort(rng.choice(self.eligible, self.clients_per_round, replace=False))

    def submodel(self, client: int) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """What ``client`` downloads from the current global state (see :func:`submodel`)."""
        return submodel(self.task, self.state, client)

    @staticmethod
    def _nbytes(sub: Mapping[str, Tensor]) -> int:
        return sum(v.numel() * v.element_size() for v in sub.values())

    def client_update(self, client: int, config: dict[str, Any], round: int) -> ClientUpdate:
        """Run one client's local training on its submodel; return its deltas."""
        generator = torch.Generator().manual_seed(_seed(self.seed, round, 1, client))
        cstate = self.client_state.setdefault(int(client), {})
        return local_update(self.task, self.state, int(client), config, cstate, generator)

    def step(self) -> dict[str, Any]:
        """Run the next round; return (and append to :attr:`history`) its record."""
        t = self.round + 1
        sampled = self.sample_clients(t)
        rng = np.random.default_rng(_seed(self.seed, t, 2))
        drop = rng.random(sampled.size) < self.dropout
        slow = rng.random(sampled.size) < self.straggler
        base = self.strategy.configure(t, self.local.for_round(t - 1))
        updates, bytes_down, bytes_up, losses, rejected = [], 0, 0, [], []
        for client, dropped, straggles in zip(sampled, drop, slow, strict=True):
            bytes_down += self._nbytes(self.submodel(int(client))[0])
            if dropped:
                continue
            config = dict(base)
            if straggles:
                config["local_steps"] = max(1, int(config["local_steps"] * self.straggler_steps))
            update = self.client_update(int(client), config, t)
            bytes_up += update.nbytes
            reason = check_update(update, self.max_update_norm)
            if reason is not None:
                logger.warning("round %d: rejected update of client %d: %s", t, client, reason)
                entry = {"round": t, "client": int(client), "reason": reason}
                self.rejected.append(entry)
                rejected.append(int(client))
                continue
            if "loss" in update.metrics:
                losses.append(update.metrics["loss"])
            updates.append(update)
        self.state = self.strategy.aggregate(self.state, updates)
        self.round = t
        record: dict[str, Any] = {
            "round": t,
            "sampled": [int(c) for c in sampled],
            "dropped": [int(c) for c in sampled[drop]],
            "stragglers": [int(c) for c in sampled[slow & ~drop]],
            "rejected": rejected,
            "accepted": len(updates),
            "bytes_down": bytes_down,
            "bytes_up": bytes_up,
            "lr": float(base["lr"]),
            "train_loss": float(np.mean(losses)) if losses else math.nan,
        }
        self.history.append(record)
        return record

    def evaluate(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.task.evaluate(self.state).items()}

    def run(
        self,
        rounds: int,
        *,
        checkpoint: str | Path | None = None,
        checkpoint_every: int = 1,
        stop_after: int | None = None,
        progress: bool = False,
    ) -> list[dict[str, Any]]:
        """Run until :attr:`round` equals ``rounds`` (continuing a resumed run); return history.

        Evaluates at round 0 (if not yet done), every ``eval_every`` rounds and at ``rounds``.
        With ``checkpoint``, saves after every ``checkpoint_every`` rounds and at the end.
        ``stop_after`` stops early after that many rounds of this call (to simulate an
        interruption; the checkpoint is written then too). ``progress`` shows a tqdm bar.
        """
        if self.round == 0 and not self.history:
            self.history.append({"round": 0, **self.evaluate()})
        done = 0
        bar = tqdm(total=rounds, initial=self.round, disable=not progress, unit="round")
        while self.round < rounds:
            record = self.step()
            bar.update(1)
            if "train_loss" in record:
                bar.set_postfix(loss=f"{record['train_loss']:.4f}")
            if self.round % self.eval_every == 0 or self.round == rounds:
                record.update(self.evaluate())
            done += 1
            if checkpoint is not None and (
                self.round % checkpoint_every == 0 or self.round == rounds
            ):
                self.save(checkpoint)
            if stop_after is not None and done >= stop_after:
                if checkpoint is not None:
                    self.save(checkpoint)
                break
        bar.close()
        return self.history

    # ------------------------------------------------------------------ checkpoints
    def config(self) -> dict[str, Any]:
        """The run's settings (recorded in checkpoints): the strategy's class and scalar
        settings, local training, clients per round, seed, evaluation and fault settings."""
        strategy = {
            k: v
            for k, v in vars(self.strategy).items()
            if not k.startswith("_") and (v is None or isinstance(v, (bool, int, float, str)))
        }
        return {
            "strategy": {"class": type(self.strategy).__name__, **strategy},
            "local": asdict(self.local),
            "clients_per_round": self.clients_per_round,
            "seed": self.seed,
            "eval_every": self.eval_every,
            "max_update_norm": self.max_update_norm,
            "dropout": self.dropout,
            "straggler": self.straggler,
            "straggler_steps": self.straggler_steps,
        }

    def data_record(self) -> dict[str, Any]:
        """``data_info`` plus the number of devices and a fingerprint of the device-cloud
        graph (sample counts and touched rows), recorded in checkpoints."""
        if self._data is None:
            graph = self.task.graph
            self._data = {
                **self.data_info,
                "devices": graph.num_devices,
                "graph": fingerprint(graph.num_samples, graph.touches),
            }
        return self._data

    def state_dict(self) -> dict[str, Any]:
        return {
            "config": self.config(),
            "data": self.data_record(),
            "round": self.round,
            "seed": self.seed,
            "state": {k: v.clone() for k, v in self.state.items()},
            "history": list(self.history),
            "rejected": list(self.rejected),
            "client_state": {int(k): v for k, v in self.client_state.items()},
            "strategy": getattr(self.strategy, "state_dict", dict)(),
        }

    def load_state_dict(self, data: Mapping[str, Any], *, path: str | Path = "<state>") -> None:
        """Restore :meth:`state_dict` output of the same run.

        Raises:
            CheckpointError: the configuration or the data differ (all differences listed), or
                the state does not fit the task's model (``path`` names the checkpoint).
        """
        check_same_run(
            path,
            {**data["config"], "data": data["data"]},
            {**self.config(), "data": self.data_record()},
        )
        try:
            state = {k: v.clone() for k, v in data["state"].items()}
            shapes = {k: v.shape for k, v in self.state.items()}
            if {k: v.shape for k, v in state.items()} != shapes:
                raise ConfigError("parameters of other names or shapes")
            self.round = int(data["round"])
            self.history = list(data["history"])
            self.rejected = list(data["rejected"])
            self.client_state = {int(k): v for k, v in data["client_state"].items()}
            if hasattr(self.strategy, "load_state_dict"):
                self.strategy.load_state_dict(data["strategy"])
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"checkpoint {path}: its model or simulator state does not fit this task"
            ) from exc
        self.state = state

    def save(self, path: str | Path) -> None:
        """Write a checkpoint atomically (temporary file, fsync, rename)."""
        save_checkpoint(self.state_dict(), path)

    def load(self, path: str | Path) -> None:
        """Resume from a checkpoint written by :meth:`save` (``weights_only=True``).

        Raises:
            CheckpointError: unreadable (truncated, corrupt, not a simulator checkpoint), or
                written by another run (see :meth:`load_state_dict`).
        """
        data = load_checkpoint(
            path,
            keys=("round", "state"),
            records=("config", "data"),
            what="federated simulator checkpoint",
        )
        self.load_state_dict(data, path=path)
