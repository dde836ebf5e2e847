"""Flower adapter (extra ``fl``: ``pip install -e ".[fl]"``, flwr >= 1.42 Message API).

* :func:`flower_strategy` wraps any :class:`~graphrec.federated.strategies.Strategy` (FedAvg,
  FedSubAvg, involved averaging, the ODE server) as a Flower ``Strategy``: ``configure_train``
  keeps the current global arrays, asks the wrapped strategy's ``configure`` hook for the
  clients' configuration, asks new nodes for their partition (a ``query`` message), samples
  ``clients_per_round`` devices as the simulator does and sends each to the node whose
  ``partition-id`` is ``device % num-partitions``; ``aggregate_train`` decodes
  the replies into :class:`~graphrec.federated.strategies.ClientUpdate` objects, rejects
  non-finite or oversized ones (logged, the round goes on) and calls the **same**
  ``aggregate(global_state, updates)`` hook as the in-process simulator.
* :func:`client_app` builds a ``ClientApp`` whose ``train`` handler runs
  :func:`~graphrec.federated.simulator.local_update` for the message's device (default
  ``node_config["partition-id"]``) on its submodel, with the simulator's per-(seed, round,
  device) generator, and keeps the device's ``client_state`` in ``context.state``. With a
  :class:`~graphrec.federated.stream.StreamTask` this is the ODE client: a device replays the
  stream rounds it missed (lazy catch-up) with the model and estimate it last received.
* :func:`run_simulation` runs both with Flower's simulation engine (Ray backend, loopback only).
* :func:`deployed_server_app` and :func:`deployed_client_app` are the apps of the Flower app
  shipped in ``graphrec/federated/flower_app`` (for ``flwr run`` against SuperLinks and
  SuperNodes), configured by its run configuration (:data:`RUN_CONFIG`);
  :mod:`graphrec.federated.deploy` runs it on one machine.

Wire format of a reply: one ArrayRecord ``"update"`` with the dense deltas under their names,
``"<name>.idx"`` (int64 rows) and ``"<name>.delta"`` per table parameter (only the touched
rows travel), and ``"extra.<key>"`` tensors; a MetricRecord ``"metrics"`` with
``num-examples``, ``device``, optional ``weight`` and the local metrics. Tensor-valued entries
of the strategy's configuration travel in an ArrayRecord ``"config-arrays"``.

flwr is imported lazily: ``graphrec.federated`` works without it. Flower's telemetry and Ray's
usage statistics are switched off (``FLWR_TELEMETRY_ENABLED=0``, ``RAY_USAGE_STATS_ENABLED=0``)
unless the environment sets them, also when flwr was imported before graphrec. A local
simulation's Ray listens and connects on 127.0.0.1 only and leaves no session folder behind.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import math
import os
import pickle
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from graphrec.errors import ConfigError, GraphrecError, MissingExtraError
from graphrec.federated.simulator import (
    FederatedTask,
    LocalConfig,
    _seed,
    check_update,
    local_update,
)
from graphrec.federated.strategies import ClientUpdate, RowDelta, Strategy

__all__ = [
    "flower_strategy",
    "client_app",
    "server_app",
    "run_simulation",
    "deployed_server_app",
    "deployed_client_app",
    "serve",
]

logger = logging.getLogger("graphrec.federated")


def _flwr() -> Any:
    """Import flwr (telemetry off unless configured) or explain how to install it."""
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import flwr
        import flwr.app
        import flwr.clientapp
        import flwr.serverapp
        import flwr.serverapp.strategy
        import flwr.supercore.telemetry
    except ImportError as exc:
        raise MissingExtraError("the Flower adapter", "fl") from exc
    # flwr reads the variable once, on import, which may have come before this function
    flwr.supercore.telemetry.FLWR_TELEMETRY_ENABLED = os.environ["FLWR_TELEMETRY_ENABLED"]
    return flwr


# --------------------------------------------------------------------------- encoding


def _to_record(tensors: Mapping[str, Tensor]) -> Any:
    app = _flwr().app
    return app.ArrayRecord(
        torch_state_dict={k: v.detach().contiguous() for k, v in tensors.items()}
    )


def _from_record(record: Any) -> dict[str, Tensor]:
    return {k: torch.as_tensor(v) for k, v in record.to_torch_state_dict().items()}


def encode_update(update: ClientUpdate) -> Any:
    """A ``RecordDict`` carrying ``update`` (see the module docstring for the layout)."""
    app = _flwr().app
    tensors = dict(update.dense)
    for name, row in update.rows.items():
        tensors[f"{name}.idx"] = row.index.to(torch.int64)
        tensors[f"{name}.delta"] = row.values
    for key, value in update.extras.items():
        tensors[f"extra.{key}"] = value
    metrics: dict[str, Any] = {"num-examples": int(update.num_samples), "device": update.client}
    if update.weight is not None:
        metrics["weight"] = float(update.weight)
    metrics.update({f"m.{k}": float(v) for k, v in update.metrics.items()})
    tables = ",".join(f"{name}={row.table}" for name, row in update.rows.items())
    return app.RecordDict(
        {
            "update": _to_record(tensors),
            "metrics": app.MetricRecord(metrics),
            "tables": app.ConfigRecord({"tables": tables}),
        }
    )


def decode_update(content: Any) -> ClientUpdate:
    """Inverse of :func:`encode_update`."""
    tensors = _from_record(content["update"])
    metrics = dict(content["metrics"])
    tables = dict(
        item.split("=", 1) for item in str(content["tables"]["tables"]).split(",") if item
    )
    update = ClientUpdate(
        int(metrics.pop("device")),
        int(metrics.pop("num-examples")),
        weight=None if "weight" not in metrics else float(metrics.pop("weight")),
        metrics={k[2:]: float(v) for k, v in metrics.items() if k.startswith("m.")},
    )
    for key, value in tensors.items():
        if key.startswith("extra."):
            update.extras[key[6:]] = value
        elif key.endswith(".idx"):
            name = key[:-4]
            update.rows[name] = RowDelta(tables[name], value, tensors[f"{name}.delta"])
        elif not key.endswith(".delta"):
            update.dense[key] = value
    return update


def _split_config(config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Tensor]]:
    scalars = {k: v for k, v in config.items() if not isinstance(v, Tensor) and v is not None}
    return scalars, {k: v for k, v in config.items() if isinstance(v, Tensor)}


# --------------------------------------------------------------------------- server


def flower_strategy(
    strategy: Strategy,
    *,
    clients_per_round: int,
    local: LocalConfig | None = None,
    max_update_norm: float | None = None,
    seed: int = 0,
    min_available_nodes: int = 0,
    wait_s: float = 600.0,
    devices: Sequence[int] | None = None,
) -> Any:
    """A Flower ``Strategy`` (subclass of ``flwr.serverapp.strategy.FedAvg``, whose node
    sampling and message plumbing it reuses) that aggregates with ``strategy.aggregate``.

    Each round waits (at most ``wait_s``) until ``min_available_nodes`` (without ``devices``
    at least ``clients_per_round``) nodes are connected and asks new nodes for their
    ``partition-id`` / ``num-partitions`` (a ``query`` message), then samples
    ``clients_per_round`` of ``devices`` (default: the partition ids) as the simulator does
    (``Simulator.sample_clients`` with ``devices`` = its eligible devices). Device ``d`` is
    trained by the node with ``partition-id == d % num-partitions``; its id travels as
    ``device`` in the configuration. Attributes of the returned object: ``history`` (per
    round: devices, accepted, rejected, bytes up, seconds from ``configure_train`` to the end
    of ``aggregate_train``) and ``state`` (the latest global state as tensors).
    """
    flwr = _flwr()
    app, strategies = flwr.app, flwr.serverapp.strategy
    local = local or LocalConfig()

    class GraphrecStrategy(strategies.FedAvg):
        def __init__(self) -> None:
            super().__init__(
                fraction_train=0.0,
                fraction_evaluate=0.0,
                # without ``devices`` one node is one device
                min_available_nodes=max(
                    clients_per_round if devices is None else 1, min_available_nodes
                ),
            )
            self.inner = strategy
            self.clients_per_round = clients_per_round
            self.state: dict[str, Tensor] = {}
            self.history: list[dict[str, Any]] = []
            self.partition_of: dict[int, tuple[int, int]] = {}  # node id -> (id, count)

        def summary(self) -> None:
            logger.info(
                "graphrec strategy %s, %d clients per round", strategy.name, clients_per_round
            )

        def configure_train(
            self, server_round: int, arrays: Any, config: Any, grid: Any
        ) -> Iterable[Any]:
            self.started = time.perf_counter()
            self.state = _from_record(arrays)
            cfg = self.inner.configure(server_round, local.for_round(server_round - 1))
            scalars, tensors = _split_config({**dict(config), **cfg})
            scalars["server-round"] = server_round
            deadline = time.monotonic() + wait_s
            while len(nodes := sorted(grid.get_node_ids())) < self.min_available_nodes:
                if time.monotonic() > deadline:
                    raise GraphrecError(
                        f"{len(nodes)} nodes connected after {wait_s:.0f} s, "
                        f"{self.min_available_nodes} needed"
                    )
                time.sleep(0.5)
            owner = self.owners(grid, nodes)
            pool = np.asarray(sorted(owner) if devices is None else devices, dtype=np.int64)
            count = next(iter(self.partition_of.values()))[1]
            # as Simulator.sample_clients (node ids are uint64: they never go through numpy)
            rng = np.random.default_rng(_seed(seed, server_round, 0))
            chosen = np.sort(rng.choice(pool, self.clients_per_round, replace=False))
            messages = []
            for device in chosen.tolist():
                if device % count not in owner:
                    logger.warning("round %d: no node holds device %d", server_round, device)
                    continue
                content = {
                    "arrays": arrays,
                    "config": app.ConfigRecord({**scalars, "device": device}),
                }
                if tensors:
                    content["config-arrays"] = _to_record(tensors)
                messages.append(
                    app.Message(
                        content=app.RecordDict(content),
                        message_type="train",
                        dst_node_id=owner[device % count],
                    )
                )
            return messages

        def owners(self, grid: Any, nodes: list[int]) -> dict[int, int]:
            """``{partition-id: node id}`` of the connected ``nodes`` (new ones are asked)."""
            new = [n for n in nodes if n not in self.partition_of]
            if new:
                query = [
                    app.Message(content=app.RecordDict(), message_type="query", dst_node_id=n)
                    for n in new
                ]
                for reply in grid.send_and_receive(query, timeout=wait_s):
                    if reply.has_error():
                        logger.warning("a node did not say its partition: %s", reply.error)
                        continue
                    part = reply.content["partition"]
                    self.partition_of[reply.metadata.src_node_id] = (
                        int(part["partition-id"]),
                        int(part["num-partitions"]),
                    )
            counts = {self.partition_of[n][1] for n in nodes if n in self.partition_of}
            if not counts:
                raise GraphrecError("no node said its partition-id")
            if len(counts) > 1:
                raise GraphrecError(f"the nodes disagree on num-partitions: {sorted(counts)}")
            return {self.partition_of[n][0]: n for n in nodes if n in self.partition_of}

        def aggregate_train(self, server_round: int, replies: Iterable[Any]) -> tuple[Any, Any]:
            updates, rejected, failed, nbytes, losses = [], [], 0, 0, []
            for msg in replies:
                if msg.has_error():
                    failed += 1
                    logger.warning("round %d: a node failed: %s", server_round, msg.error.reason)
                    continue
                update = decode_update(msg.content)
                nbytes += update.nbytes
                reason = check_update(update, max_update_norm)
                if reason is not None:
                    logger.warning(
                        "round %d: rejected update of client %d: %s",
                        server_round,
                        update.client,
                        reason,
                    )
                    rejected.append(update.client)
                    continue
                if "loss" in update.metrics:
                    losses.append(update.metrics["loss"])
                updates.append(update)
            updates.sort(key=lambda u: u.client)
            self.state = self.inner.aggregate(self.state, updates)
            self.history.append(
                {
                    "round": server_round,
                    "devices": [u.client for u in updates],
                    "rejected": rejected,
                    "failed": failed,
                    "accepted": len(updates),
                    "bytes_up": nbytes,
                    "seconds": time.perf_counter() - self.started,
                }
            )
            loss = float(np.mean(losses)) if losses else math.nan
            metrics = app.MetricRecord({"accepted": len(updates), "train-loss": loss})
            return _to_record(self.state), metrics

    return GraphrecStrategy()


def server_app(
    strategy: Any,
    initial_state: Mapping[str, Tensor],
    *,
    rounds: int,
    evaluate_fn: Callable[[Mapping[str, Tensor]], Mapping[str, float]] | None = None,
) -> Any:
    """A ``ServerApp`` running ``strategy`` (from :func:`flower_strategy`) for ``rounds``
    rounds from ``initial_state``; ``evaluate_fn(state) -> metrics`` evaluates centrally after
    every round (results in ``strategy.evaluations``)."""
    flwr = _flwr()
    app = flwr.serverapp.ServerApp()
    strategy.evaluations = []

    def central(server_round: int, arrays: Any) -> Any:
        metrics = {k: float(v) for k, v in evaluate_fn(_from_record(arrays)).items()}
        strategy.evaluations.append({"round": server_round, **metrics})
        return flwr.app.MetricRecord(metrics)

    @app.main()
    def main(grid: Any, context: Any) -> None:
        strategy.start(
            grid=grid,
            initial_arrays=_to_record(initial_state),
            num_rounds=rounds,
            evaluate_fn=central if evaluate_fn is not None else None,
        )

    return app


# --------------------------------------------------------------------------- client

_TASKS: dict[str, FederatedTask] = {}


def _cached_task(key: str, task_fn: Callable[[], FederatedTask]) -> FederatedTask:
    """``task_fn()`` built once per process (a module-level function, so that a ClientApp
    unpickled in a worker uses this module's cache rather than a pickled copy of it)."""
    if key not in _TASKS:
        _TASKS[key] = task_fn()
    return _TASKS[key]


def client_app(task_fn: Callable[[], FederatedTask], *, seed: int = 0) -> Any:
    """A ``ClientApp`` for ``task_fn()`` (built once per process): ``train`` trains the
    message's ``device`` (default ``node_config["partition-id"]``), which must belong to this
    node (``device % num-partitions == partition-id``); ``query`` answers the node's partition.
    ``seed`` must equal the simulator's to reproduce its local training."""
    flwr = _flwr()
    app = flwr.clientapp.ClientApp()
    # a stable key: the app (and task_fn) may be unpickled anew for every message
    key = hashlib.sha1(pickle.dumps(task_fn)).hexdigest()

    @app.train()
    def train(msg: Any, context: Any) -> Any:
        return _train(_cached_task(key, task_fn), seed, msg, context)

    @app.query()
    def query(msg: Any, context: Any) -> Any:
        return _partition_reply(msg, context)

    return app


def _partition(context: Any) -> tuple[int, int]:
    """``(partition-id, num-partitions)`` of this node (one partition if not configured)."""
    node = context.node_config
    if "partition-id" not in node:
        raise GraphrecError("the SuperNode has no node config partition-id")
    return int(node["partition-id"]), int(node.get("num-partitions", 1))


def _partition_reply(msg: Any, context: Any) -> Any:
    app = _flwr().app
    pid, count = _partition(context)
    content = {"partition": app.ConfigRecord({"partition-id": pid, "num-partitions": count})}
    return app.Message(app.RecordDict(content), reply_to=msg)


def _train(task: FederatedTask, seed: int, msg: Any, context: Any) -> Any:
    """One ``train`` message: local training of the message's device on ``task``."""
    app = _flwr().app
    if getattr(task, "initial_state", False) is None:  # a StreamTask not started yet
        task.start(seed)
    pid, count = _partition(context)
    state = _from_record(msg.content["arrays"])
    config: dict[str, Any] = dict(msg.content["config"])
    if "config-arrays" in msg.content:
        config.update(_from_record(msg.content["config-arrays"]))
    device = int(config.pop("device", pid))
    if device % count != pid:
        raise GraphrecError(f"device {device} is not in partition {pid} of {count}")
    round = int(config["server-round"])
    saved = context.state.get(f"graphrec-{device}")
    client_state = pickle.loads(saved["client-state"]) if saved is not None else {}
    generator = torch.Generator().manual_seed(_seed(seed, round, 1, device))
    update = local_update(task, state, device, config, client_state, generator)
    context.state[f"graphrec-{device}"] = app.ConfigRecord(
        {"client-state": pickle.dumps(client_state)}
    )
    return app.Message(encode_update(update), reply_to=msg)


# --------------------------------------------------------------------------- deployed app

#: the run configuration of the shipped Flower app (``[tool.flwr.app.config]`` of
#: ``graphrec/federated/flower_app/pyproject.toml``; ``flwr run --run-config`` overrides it).
#: Zero or an empty string means "not set" for the optional keys.
RUN_CONFIG: dict[str, Any] = {
    "strategy": "fedsubavg",
    "dataset": "synthetic",
    "model": "",
    "data-root": "",
    "devices": 12,
    "rounds": 3,
    "clients-per-round": 4,
    "min-nodes": 1,
    "lr": 0.1,
    "lr-decay": 0.999,
    "local-steps": 10,
    "batch-size": 4,
    "clip-norm": 5.0,
    "prox-mu": 0.0,
    "coef-clip": 0.0,
    "max-update-norm": 0.0,
    "selector": "ode",
    "buffer": 10,
    "velocity": 8,
    "layers": 0,
    "estimator": "replacement",
    "seed": 0,
    "results-file": "",
    "state-file": "",
}


def _run_config(run_config: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(run_config) - set(RUN_CONFIG))
    if unknown:
        raise ConfigError(
            f"unknown run config keys {unknown}; expected some of {sorted(RUN_CONFIG)}"
        )
    return {**RUN_CONFIG, **run_config}


def _deployed_task(cfg: Mapping[str, Any]) -> FederatedTask:
    """``graphrec fl run``'s task, or with strategy ``ode`` the stream task of ``fl ode``."""
    from graphrec.federated.experiment import federated_task, stream_data, stream_task

    root, seed = cfg["data-root"] or None, int(cfg["seed"])
    if cfg["strategy"] == "ode":
        data = stream_data(cfg["dataset"], root=root, devices=int(cfg["devices"]) or 200, seed=seed)
        return stream_task(
            data,
            cfg["selector"],
            buffer_size=int(cfg["buffer"]),
            velocity=int(cfg["velocity"]),
            seed=seed,
            layers=int(cfg["layers"]) or None,
        )
    default_model = {"amazon-users": "din", "ml-100k": "tiny", "synthetic": "softmax"}
    return federated_task(
        cfg["dataset"],
        cfg["model"] or default_model.get(cfg["dataset"], ""),
        root=root,
        devices=int(cfg["devices"]) or None,
        seed=seed,
    )


def deployed_strategy(name: str, task: FederatedTask, cfg: Mapping[str, Any]) -> Strategy:
    """The strategy ``name`` for ``task``: ``ode`` is the ODE server of ``graphrec fl ode``
    (``estimator`` of ``cfg``; it starts the stream task); any other name is one of
    :data:`graphrec.registry.FL_STRATEGIES`, built as ``graphrec fl run --strategy`` builds it,
    with ``prox-mu`` and ``coef-clip`` (0 = not set) as its ``mu`` and ``clip`` options where
    it has them."""
    from graphrec.federated.experiment import build_strategy
    from graphrec.federated.stream import ode_strategy
    from graphrec.registry import FL_STRATEGIES

    if name == "ode":
        return ode_strategy(task, int(cfg["seed"]), estimator=cfg["estimator"])
    given = {"mu": float(cfg["prox-mu"]) or None, "clip": float(cfg["coef-clip"]) or None}
    defaults = FL_STRATEGIES.defaults(name)
    options = {k: v for k, v in given.items() if k in defaults and v is not None}
    return build_strategy(name, task.graph, **options)


def deployed_local_config(cfg: Mapping[str, Any]) -> LocalConfig:
    """The local training of run configuration ``cfg``, as ``graphrec fl run`` has it; with
    strategy ``ode`` as ``graphrec fl ode`` has it (``local-steps`` full-batch epochs, ``lr``
    constant, no clipping)."""
    if cfg["strategy"] == "ode":
        return LocalConfig(
            lr=float(cfg["lr"]),
            lr_decay=1.0,
            local_steps=int(cfg["local-steps"]),
            batch_size=10**9,
            clip_norm=None,
        )
    return LocalConfig(
        lr=float(cfg["lr"]),
        lr_decay=float(cfg["lr-decay"]),
        local_steps=int(cfg["local-steps"]),
        batch_size=int(cfg["batch-size"]),
        clip_norm=float(cfg["clip-norm"]) or None,
    )


def serve(grid: Any, run_config: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
    """Run the shipped app's server on ``grid`` (a Flower ``Grid``): returns the Flower
    strategy (``state``: the final global state) and the results (see
    :func:`deployed_server_app`)."""
    flwr = _flwr()
    cfg = _run_config(run_config)
    seed = int(cfg["seed"])
    task = _deployed_task(cfg)
    strategy = deployed_strategy(cfg["strategy"], task, cfg)
    eligible = np.flatnonzero(task.graph.num_samples > 0)
    per_round = min(int(cfg["clients-per-round"]), eligible.size)
    wrapped = flower_strategy(
        strategy,
        clients_per_round=per_round,
        local=deployed_local_config(cfg),
        max_update_norm=float(cfg["max-update-norm"]) or None,
        seed=seed,
        min_available_nodes=int(cfg["min-nodes"]),
        devices=eligible.tolist(),
    )
    evaluations: list[dict[str, Any]] = []

    def central(server_round: int, arrays: Any) -> Any:
        metrics = {k: float(v) for k, v in task.evaluate(_from_record(arrays)).items()}
        evaluations.append({"round": server_round, **metrics})
        return flwr.app.MetricRecord(metrics)

    wrapped.start(
        grid=grid,
        initial_arrays=_to_record(task.init_state(seed)),
        num_rounds=int(cfg["rounds"]),
        evaluate_fn=central,
    )
    results = {
        "command": "flower app",
        "run_config": cfg,
        "devices": task.graph.num_devices,
        "clients_per_round": per_round,
        "history": wrapped.history,
        "evaluations": evaluations,
    }
    return wrapped, results


def deployed_server_app() -> Any:
    """The ServerApp of the shipped Flower app: task, strategy and local training from the
    run configuration (:data:`RUN_CONFIG`), as ``graphrec fl run`` builds them; device ``d``
    is trained by the SuperNode with ``partition-id == d % num-partitions``. Writes the
    results JSON to ``results-file`` and the final global state (``torch.save``) to
    ``state-file`` when they are set."""
    flwr = _flwr()
    app = flwr.serverapp.ServerApp()

    @app.main()
    def main(grid: Any, context: Any) -> None:
        from graphrec.io.atomic import atomic_write_text

        wrapped, results = serve(grid, context.run_config)
        cfg = results["run_config"]
        if cfg["state-file"]:
            torch.save(wrapped.state, cfg["state-file"])
        if cfg["results-file"]:
            atomic_write_text(Path(cfg["results-file"]), json.dumps(results, indent=1))

    return app


def deployed_client_app() -> Any:
    """The ClientApp of the shipped Flower app: the task of the run configuration (built once
    per process), trained as :func:`client_app` trains it."""
    flwr = _flwr()
    app = flwr.clientapp.ClientApp()

    @app.train()
    def train(msg: Any, context: Any) -> Any:
        cfg = _run_config(context.run_config)
        key = json.dumps(cfg, sort_keys=True)
        task = _cached_task(key, functools.partial(_deployed_task, cfg))
        return _train(task, int(cfg["seed"]), msg, context)

    @app.query()
    def query(msg: Any, context: Any) -> Any:
        return _partition_reply(msg, context)

    return app


def run_simulation(
    task_fn: Callable[[], FederatedTask],
    strategy: Strategy,
    *,
    rounds: int,
    clients_per_round: int,
    num_supernodes: int,
    local: LocalConfig | None = None,
    seed: int = 0,
    num_cpus: int = 1,
    max_update_norm: float | None = None,
    evaluate: bool = True,
) -> Any:
    """Run ``strategy`` on ``task_fn()`` with Flower's simulation engine (Ray backend,
    ``num_cpus`` CPUs in all, one per ClientApp); returns the Flower strategy object
    (``history``, ``state``, ``evaluations``). Ray listens on 127.0.0.1 only, keeps its
    session folder in a private temporary directory and is shut down afterwards, that
    directory removed (see :func:`_init_local_ray`); a Ray already initialised in this
    process is used as it is instead."""
    _flwr()
    import flwr.simulation

    task = task_fn()
    wrapped = flower_strategy(
        strategy,
        clients_per_round=clients_per_round,
        local=local,
        max_update_norm=max_update_norm,
        seed=seed,
        min_available_nodes=num_supernodes,
    )
    server = server_app(
        wrapped,
        task.init_state(seed),
        rounds=rounds,
        evaluate_fn=task.evaluate if evaluate else None,
    )
    with _local_ray(num_cpus):
        flwr.simulation.run_simulation(
            server_app=server,
            client_app=client_app(task_fn, seed=seed),
            num_supernodes=num_supernodes,
            backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}},
        )
    return wrapped


@contextlib.contextmanager
def _local_ray(num_cpus: int) -> Iterator[None]:
    """Ray for a local simulation (see :func:`_init_local_ray`), shut down on exit, also on
    error, and its temporary directory removed. A Ray already initialised in this process is
    used as it is and left running."""
    import ray
    from ray._common.utils import get_default_system_temp_dir

    if ray.is_initialized():
        yield
        return
    # where Ray itself would go: RAY_TMPDIR, else TMPDIR on Linux and /tmp on macOS (Ray's Unix
    # socket paths under it must stay short)
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir=get_default_system_temp_dir())
    try:
        _init_local_ray(num_cpus, temp_dir)
        yield
    finally:
        if ray.is_initialized():
            ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _init_local_ray(num_cpus: int, temp_dir: str) -> None:
    """``ray.init`` on the loopback interface only, Ray's session folder under ``temp_dir``.

    * ``_node_ip_address="127.0.0.1"`` and ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``: Ray's
      servers listen on 127.0.0.1. Without the latter Ray replaces 127.0.0.1 by the address of
      a UDP socket "connected" to 8.8.8.8, and its servers listen on that address or on all.
    * Ray's dashboard process runs even with ``include_dashboard=False`` and, whatever
      ``RAY_USAGE_STATS_ENABLED`` says, asks the cloud metadata servers (169.254.169.254,
      metadata.google.internal) which cloud it runs on unless ``~/ray_bootstrap_config.yaml``
      exists: Ray's processes get ``temp_dir`` as HOME, holding an empty one. The workers
      running ClientApps get the real HOME back and, as Flower's Ray backend gives them, this
      process's ``sys.path`` as PYTHONPATH.

    The environment changes last only while ``ray.init`` starts Ray's processes.
    """
    import ray
    from ray._private import ray_constants

    with open(os.path.join(temp_dir, "ray_bootstrap_config.yaml"), "w") as fh:
        fh.write("{}\n")
    worker_env = {
        "HOME": os.path.expanduser("~"),
        "PYTHONPATH": os.pathsep.join([*sys.path, *filter(None, [os.environ.get("PYTHONPATH")])]),
    }
    saved = {key: os.environ.get(key) for key in ("HOME", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")}
    enable_cluster = ray_constants.ENABLE_RAY_CLUSTER  # read from the environment at import
    os.environ.update(HOME=temp_dir, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        ray.init(
            num_cpus=num_cpus,
            num_gpus=0,
            include_dashboard=False,
            logging_level=logging.WARNING,
            runtime_env={"env_vars": worker_env},
            _node_ip_address="127.0.0.1",
            _temp_dir=temp_dir,
        )
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = enable_cluster
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
