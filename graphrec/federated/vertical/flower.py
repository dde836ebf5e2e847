"""Split learning across machines with Flower (extra ``fl``, flwr >= 1.42 Message API).

The label owner runs the :class:`~graphrec.federated.vertical.split.SplitLearner` in a Flower
``ServerApp``; every other party is a ``ClientApp`` (:func:`party_app`) on its own SuperNode.
The learner drives the remote parties through :class:`FlowerParty` proxies, which have the
interface of :class:`~graphrec.federated.vertical.nodes.PartyNode` and turn its calls into
Flower messages through the ``Grid``:

* one round trip per training step for all parties at once: before a step the learner tells the
  proxies which parties it will ask (``prefetch``), the first ``embed`` asks them all in one
  ``grid.send_and_receive``; ``backward``, ``update`` and ``local_update`` (FedBCD) need no
  reply and travel with the party's next message, as does the announced schedule;
* in training only the position of the batch in the announced epoch schedule travels (the
  party derives the rows with :func:`~graphrec.federated.vertical.data.epoch_batches`), in
  prediction the batch positions the learner logs;
* each message restores the party's :class:`PartyNode` from ``context.state`` (its bottom,
  optimizer, noise generator, error-feedback residual and last gradient, exactly), applies the
  message and saves the node back, so the numbers equal the in-process run bit for bit.

Payloads (tensors, byte strings, tuples of those: whatever the compressors produce) and node
states travel through one generic encoder (:func:`encode_payload`): tensors in an
``ArrayRecord``, byte strings and the structure in a ``ConfigRecord``. The learner's
:class:`~graphrec.federated.vertical.log.MessageLog` records the same payload bytes as in
process; :attr:`FlowerParties.stats` counts the round trips and Flower's serialized bytes.

A party loads the public dataset file with
:func:`~graphrec.federated.vertical.data.load_vertical` (as every process does, to get the same
rows and initial model), keeps its own feature block and bottom model, and drops the rest: the
labels and the other parties' features; its ``partition-id`` (``node_config``) K is the K-th
party after the label owner in the party graph's order.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

from graphrec.errors import ConfigError, GraphrecError
from graphrec.federated.flower import _flwr, _local_ray, _partition, _partition_reply
from graphrec.federated.vertical.compress import Compression, compressor
from graphrec.federated.vertical.data import build_split_model, epoch_batches, load_vertical
from graphrec.federated.vertical.dp import GaussianDP
from graphrec.federated.vertical.nodes import PartyNode, node_generator

__all__ = [
    "APP_DIR",
    "FlowerParties",
    "FlowerParty",
    "VFLConfig",
    "connect_parties",
    "decode_payload",
    "encode_payload",
    "party_app",
    "simulate",
]

T = TypeVar("T")

#: the vertical FL Flower app shipped with graphrec (for ``flwr run``): the label owner's
#: ServerApp (``graphrec vfl train``) and :func:`party_app`, configured by its run configuration
APP_DIR = Path(__file__).parents[1] / "vfl_flower_app"

# --------------------------------------------------------------------------- encoding


def _pack(obj: Any, tensors: dict[str, Tensor], blobs: dict[str, bytes]) -> Any:
    """A JSON-able skeleton of ``obj``: tensors and byte strings replaced by keys."""
    if isinstance(obj, Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj.detach().contiguous()
        return {"t": key}
    if isinstance(obj, (bytes, bytearray)):
        key = f"b{len(blobs)}"
        blobs[key] = bytes(obj)
        return {"b": key}
    if isinstance(obj, tuple):
        return {"tuple": [_pack(v, tensors, blobs) for v in obj]}
    if isinstance(obj, list):
        return [_pack(v, tensors, blobs) for v in obj]
    if isinstance(obj, dict):
        items = [[_pack(k, tensors, blobs), _pack(v, tensors, blobs)] for k, v in obj.items()]
        return {"dict": items}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise ConfigError(
        "a payload must hold tensors, bytes, numbers, strings, None and tuples, lists or dicts "
        f"of those; got {type(obj).__name__}"
    )


def _unpack(skeleton: Any, tensors: Mapping[str, Tensor], blobs: Mapping[str, Any]) -> Any:
    if isinstance(skeleton, list):
        return [_unpack(v, tensors, blobs) for v in skeleton]
    if not isinstance(skeleton, dict):
        return skeleton
    ((tag, value),) = skeleton.items()
    if tag == "t":
        return tensors[value]
    if tag == "b":
        return blobs[value]
    if tag == "tuple":
        return tuple(_unpack(v, tensors, blobs) for v in value)
    return {_unpack(k, tensors, blobs): _unpack(v, tensors, blobs) for k, v in value}


def encode_payload(obj: Any, prefix: str = "payload") -> Any:
    """A ``RecordDict`` holding ``obj`` (tensors, bytes, numbers, strings, None and nested
    tuples, lists and dicts of those): the tensors in the ``ArrayRecord`` ``"<prefix>.arrays"``,
    the byte strings and the structure (JSON) in the ``ConfigRecord`` ``"<prefix>.config"``."""
    app = _flwr().app
    tensors: dict[str, Tensor] = {}
    blobs: dict[str, bytes] = {}
    skeleton = json.dumps(_pack(obj, tensors, blobs))
    return app.RecordDict(
        {
            f"{prefix}.arrays": app.ArrayRecord(torch_state_dict=tensors),
            f"{prefix}.config": app.ConfigRecord({"skeleton": skeleton, **blobs}),
        }
    )


def decode_payload(records: Any, prefix: str = "payload") -> Any:
    """Inverse of :func:`encode_payload` (``records``: a ``RecordDict`` holding its records)."""
    config = records[f"{prefix}.config"]
    tensors = records[f"{prefix}.arrays"].to_torch_state_dict()
    return _unpack(json.loads(config["skeleton"]), tensors, config)


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class VFLConfig:
    """What the label owner and every party agree on: the data, the model, the optimizer, the
    DP and the compression of ``graphrec vfl train`` (same names and defaults).

    Args:
        dataset: one of :data:`~graphrec.federated.vertical.data.VFL_DATASETS`.
        parties: number of parties (the label owner's included, except for ml-100k).
        seed: seed of the split, the weights, the batch order and the noise.
        data_root: where uci-heart or ml-100k lie ("" for the default).
        batch_size: rows per training step.
        lr: Adam step size.
        bottom_hidden, top_hidden: hidden sizes of the bottom and top MLPs.
        dp_sigma: Gaussian noise multiplier (None: no DP).
        dp_clip: row norm bound of the noised rows.
        dp_targets: what is noised: ``"embedding"`` and/or ``"gradient"``.
        compress: compressor of embeddings and gradients ("" for none), as ``--compress``.
    """

    dataset: str
    parties: int = 2
    seed: int = 0
    data_root: str = ""
    batch_size: int = 32
    lr: float = 0.01
    bottom_hidden: tuple[int, ...] = (16,)
    top_hidden: tuple[int, ...] = (16,)
    dp_sigma: float | None = None
    dp_clip: float = 1.0
    dp_targets: tuple[str, ...] = ("embedding",)
    compress: str = ""

    def run_config(self) -> dict[str, int | float | str]:
        """The flat Flower run configuration of this config (hidden sizes and DP targets
        comma-separated, ``dp-sigma`` -1 for no DP)."""
        out: dict[str, int | float | str] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, tuple):
                value = ",".join(map(str, value))
            elif value is None:
                value = -1.0
            out[field.name.replace("_", "-")] = value
        return out

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any]) -> VFLConfig:
        """The config of a Flower run configuration (keys of :meth:`run_config`; other keys are
        ignored, missing ones take the defaults)."""
        kwargs: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            key = field.name.replace("_", "-")
            if key not in run_config:
                continue
            value = run_config[key]
            if field.name in ("bottom_hidden", "top_hidden"):
                value = tuple(int(v) for v in str(value).split(",") if v.strip())
            elif field.name == "dp_targets":
                value = tuple(v.strip() for v in str(value).split(",") if v.strip())
            elif field.name == "dp_sigma":
                value = None if float(value) < 0 else float(value)
            elif field.name in ("parties", "seed", "batch_size"):
                value = int(value)
            elif field.name in ("lr", "dp_clip"):
                value = float(value)
            else:
                value = str(value)
            kwargs[field.name] = value
        if "dataset" not in kwargs:
            raise ConfigError("the run configuration must name the dataset (key 'dataset')")
        return cls(**kwargs)

    def dp(self) -> GaussianDP | None:
        """The clipping and noise of the config (None without ``dp_sigma``)."""
        if self.dp_sigma is None:
            return None
        return GaussianDP(self.dp_sigma, self.dp_clip, self.dp_targets)

    def compression(self) -> Compression | None:
        """The compression of embeddings and gradients, as ``graphrec vfl train --compress``."""
        if not self.compress:
            return None
        comp = compressor(self.compress)
        return Compression(comp, comp)


# --------------------------------------------------------------------------- party side


@dataclass
class _Party:
    node: PartyNode
    initial: dict[str, Any]
    train_rows: Tensor


@functools.lru_cache(maxsize=8)
def _party(config: VFLConfig, index: int) -> _Party:
    """The node of the ``index``-th party after the label owner, at its initial state (built
    once per process). The dataset is loaded whole; only the party's block is kept."""
    data = load_vertical(config.dataset, config.parties, config.seed, config.data_root or None)
    model = build_split_model(
        data, config.seed, bottom_hidden=config.bottom_hidden, top_hidden=config.top_hidden
    )
    parties = model.graph.parties
    remote = [p for p in parties if p != data.label_owner]
    if not 0 <= index < len(remote):
        raise ConfigError(
            f"partition-id must be in 0..{len(remote) - 1} (the parties {remote}); got {index}"
        )
    name = remote[index]
    features = data.features[name]
    compression = config.compression() or Compression(error_feedback=False)
    node = PartyNode(
        name,
        model.bottoms[name],
        features,
        np.arange(len(features), dtype=np.int64),
        lambda params: torch.optim.Adam(params, lr=config.lr),
        dp=config.dp(),
        generator=node_generator(config.seed, parties.index(name)),
        compressor=compression.embedding,
        error_feedback=compression.error_feedback,
        gradient_compressor=compression.gradient,
    )
    return _Party(node, copy.deepcopy(node.state_dict()), data.train_rows)


def _handle(config: VFLConfig, msg: Any, context: Any) -> Any:
    """One message to a party: restore its node, apply the queued operations, the schedule and
    the embedding request, save the node, reply with the payload (and the state if asked)."""
    app = _flwr().app
    party = _party(config, _partition(context)[0])
    node = party.node
    if "vfl.config" in context.state:
        kept = decode_payload(context.state, "vfl")
    else:
        kept = {"node": copy.deepcopy(party.initial), "batch": None, "schedule": None}
    request = decode_payload(msg.content)
    if request.get("load") is not None:
        kept = {"node": request["load"], "batch": None, "schedule": None}
    node.load_state_dict(kept["node"])
    with torch.enable_grad():  # also when the app is called inside the label owner's no_grad
        for op in request.get("ops", []):
            if op[0] == "backward":
                node.backward(op[1], kept["batch"])
            elif op[0] == "update":
                node.update()
            else:
                node.local_update(kept["batch"])
    if request.get("schedule") is not None:
        kept["schedule"] = request["schedule"]
    reply: dict[str, Any] = {}
    embed = request.get("embed")
    if embed is not None:
        if "step" in embed:
            seed, epoch = (int(v) for v in kept["schedule"])
            batch = epoch_batches(party.train_rows, config.batch_size, seed, epoch)[embed["step"]]
        else:
            batch = embed["rows"]
        reply["payload"] = node.embed(batch, train=embed["train"])
        if embed["train"]:
            kept["batch"] = batch
    kept["node"] = node.state_dict()
    if request.get("state"):
        reply["state"] = kept["node"]
    for key, record in encode_payload(kept, "vfl").items():
        context.state[key] = record
    return app.Message(encode_payload(reply), reply_to=msg)


def party_app(config: VFLConfig | None = None) -> Any:
    """The ``ClientApp`` of a party: ``train`` messages run its node (see the module
    docstring), ``query`` messages answer its partition. ``config`` None: read from the run
    configuration (:meth:`VFLConfig.from_run_config`, for ``flwr run``)."""
    flwr = _flwr()
    app = flwr.clientapp.ClientApp()

    @app.train()
    def train(msg: Any, context: Any) -> Any:
        return _handle(config or VFLConfig.from_run_config(context.run_config), msg, context)

    @app.query()
    def query(msg: Any, context: Any) -> Any:
        return _partition_reply(msg, context)

    return app


# --------------------------------------------------------------------------- label owner side


class FlowerParties(dict):
    """Remote party -> its :class:`FlowerParty` proxy, over one ``Grid``.

    Attributes:
        stats: ``round_trips`` (calls of ``send_and_receive``), ``messages`` (sent), and
            ``bytes_down`` / ``bytes_up``: Flower's serialized size of the message contents
            (``RecordDict`` protobufs) sent to and received from the parties.
    """

    def __init__(
        self,
        grid: Any,
        nodes: Mapping[str, int],
        train_rows: Tensor,
        batch_size: int,
        timeout: float,
    ) -> None:
        super().__init__()
        self.grid, self.nodes, self.timeout = grid, dict(nodes), timeout
        self.train_rows, self.batch_size = train_rows, batch_size
        self.stats = {"round_trips": 0, "messages": 0, "bytes_down": 0, "bytes_up": 0}
        self.pending: dict[str, dict[str, Any]] = {p: {"ops": []} for p in nodes}
        self.prefetched: dict[str, tuple[Tensor, bool]] = {}
        self.replies: dict[str, Any] = {}
        for party in nodes:
            self[party] = FlowerParty(self, party)

    def exchange(self, requests: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
        """Send each party its request (with its queued operations and schedule) in one round
        trip; returns party -> decoded reply."""
        from flwr.common.serde import recorddict_to_proto

        app = _flwr().app
        messages = []
        for party, request in requests.items():
            content = encode_payload({**self.pending[party], **request})
            self.pending[party] = {"ops": []}
            self.stats["bytes_down"] += recorddict_to_proto(content).ByteSize()
            messages.append(
                app.Message(content=content, message_type="train", dst_node_id=self.nodes[party])
            )
        party_of = {node: party for party, node in self.nodes.items()}
        replies = {}
        for reply in self.grid.send_and_receive(messages, timeout=self.timeout):
            party = party_of.get(reply.metadata.src_node_id)
            if reply.has_error():
                raise GraphrecError(f"party {party} failed: {reply.error.reason}")
            self.stats["bytes_up"] += recorddict_to_proto(reply.content).ByteSize()
            replies[party] = decode_payload(reply.content)
        self.stats["round_trips"] += 1
        self.stats["messages"] += len(messages)
        missing = sorted(set(requests) - set(replies))
        if missing:
            raise GraphrecError(f"no reply from the parties {missing} in {self.timeout:.0f} s")
        return replies


class FlowerParty:
    """The label owner's proxy of a party running in a Flower ``ClientApp``: the interface of
    :class:`~graphrec.federated.vertical.nodes.PartyNode` (plus the ``schedule`` and
    ``prefetch`` hooks of :class:`~graphrec.federated.vertical.split.SplitLearner`), each call
    a Flower message or queued for the party's next one."""

    def __init__(self, group: FlowerParties, name: str) -> None:
        self.group, self.name = group, name
        self.batches: list[Tensor] | None = None
        self.cursor = 0
        self.batch: Tensor | None = None  # of the last training embedding

    def schedule(self, values: Tensor) -> None:
        """The announced ``(seed, epoch)``: travels with the next message; batches of the
        epoch's schedule then travel as their position in it."""
        self.group.pending[self.name]["schedule"] = values
        seed, epoch = (int(v) for v in values)
        self.batches = epoch_batches(self.group.train_rows, self.group.batch_size, seed, epoch)
        self.cursor = 0

    def prefetch(self, batch: Tensor, *, train: bool) -> None:
        """Ask this party with the next round trip (see the module docstring)."""
        self.group.prefetched[self.name] = (batch, train)

    def _request(self, batch: Tensor, train: bool) -> dict[str, Any]:
        if train and self.batches is not None:
            for i in range(self.cursor, len(self.batches)):
                if torch.equal(self.batches[i], batch):
                    self.cursor = i + 1
                    return {"embed": {"step": i, "train": True}}
        return {"embed": {"rows": batch, "train": train}}

    def embed(self, batch: Tensor, *, train: bool = True) -> Any:
        """The party's payload for aligned positions ``batch``."""
        group = self.group
        if self.name in group.replies:
            return group.replies.pop(self.name)
        asked = dict(group.prefetched)
        group.prefetched.clear()
        mine = asked.get(self.name)
        if mine is None or mine[1] != train or not torch.equal(mine[0], batch):
            asked = {self.name: (batch, train)}
        requests = {}
        for party, (rows, mode) in asked.items():
            requests[party] = group[party]._request(rows, mode)
            if mode:
                group[party].batch = rows
        replies = group.exchange(requests)
        for party, reply in replies.items():
            if party != self.name:
                group.replies[party] = reply["payload"]
        return replies[self.name]["payload"]

    def _check(self, batch: Tensor) -> None:
        if self.batch is None or not torch.equal(self.batch, batch):
            raise GraphrecError(
                f"party {self.name}: backward and local updates must follow an embedding of the "
                "same batch"
            )

    def backward(self, payload: Any, batch: Tensor) -> None:
        """Queue the gradient payload of ``batch`` (the last embedded one)."""
        self._check(batch)
        self.group.pending[self.name]["ops"].append(("backward", payload))

    def update(self) -> None:
        """Queue the update."""
        self.group.pending[self.name]["ops"].append(("update",))

    def local_update(self, batch: Tensor) -> None:
        """Queue a FedBCD local update on ``batch`` (the last embedded one)."""
        self._check(batch)
        self.group.pending[self.name]["ops"].append(("local",))

    def state_dict(self) -> dict[str, Any]:
        """The party's :meth:`PartyNode.state_dict` after its queued operations, fetched in one
        round trip (so a checkpoint of a run on Flower resumes in process and back)."""
        return self.group.exchange({self.name: {"state": True}})[self.name]["state"]

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replace the party's node state by ``state`` (a :meth:`PartyNode.state_dict`; queued
        operations are dropped; the next schedule comes with :meth:`schedule`)."""
        self.group.pending[self.name] = {"ops": []}
        self.group.exchange({self.name: {"load": state}})


@functools.lru_cache(maxsize=4)
def _layout(config: VFLConfig) -> tuple[list[str], Tensor]:
    """The remote parties of ``config`` in the party graph's order, and the train rows."""
    data = load_vertical(config.dataset, config.parties, config.seed, config.data_root or None)
    return [p for p in data.features if p != data.label_owner], data.train_rows


def connect_parties(grid: Any, config: VFLConfig, *, timeout: float = 600.0) -> FlowerParties:
    """The proxies of the remote parties of ``config`` on ``grid``: waits (at most
    ``timeout``) until one node per party is connected and asks each its ``partition-id``."""
    app = _flwr().app
    remote, train_rows = _layout(config)
    deadline = time.monotonic() + timeout
    while len(node_ids := sorted(grid.get_node_ids())) < len(remote):
        if time.monotonic() > deadline:
            raise GraphrecError(
                f"{len(node_ids)} nodes connected after {timeout:.0f} s; one per party "
                f"{remote} needed"
            )
        time.sleep(0.2)
    query = [
        app.Message(content=app.RecordDict(), message_type="query", dst_node_id=n) for n in node_ids
    ]
    nodes: dict[str, int] = {}
    for reply in grid.send_and_receive(query, timeout=timeout):
        if reply.has_error():
            raise GraphrecError(f"a node did not say its partition: {reply.error.reason}")
        pid = int(reply.content["partition"]["partition-id"])
        if not 0 <= pid < len(remote) or remote[pid] in nodes:
            raise GraphrecError(
                f"partition-id {pid} is no party or taken twice; expected one node per "
                f"partition-id 0..{len(remote) - 1} ({remote})"
            )
        nodes[remote[pid]] = reply.metadata.src_node_id
    if len(nodes) < len(remote):
        raise GraphrecError(f"no node for the parties {sorted(set(remote) - set(nodes))}")
    return FlowerParties(grid, nodes, train_rows, config.batch_size, timeout)


def simulate(
    config: VFLConfig,
    body: Callable[[FlowerParties], T],
    *,
    num_cpus: int = 1,
    timeout: float = 600.0,
) -> T:
    """Run ``body(parties)`` as the label owner's ``ServerApp`` on Flower's simulation engine,
    one SuperNode per remote party running :func:`party_app`; returns what ``body`` returns.
    Ray runs locally on 127.0.0.1 with ``num_cpus`` CPUs (one per ClientApp) and is shut down
    afterwards (as :func:`graphrec.federated.flower.run_simulation`)."""
    _flwr()
    import flwr.serverapp
    import flwr.simulation

    count = len(_layout(config)[0])
    server = flwr.serverapp.ServerApp()
    result: dict[str, T] = {}

    @server.main()
    def main(grid: Any, context: Any) -> None:
        result["value"] = body(connect_parties(grid, config, timeout=timeout))

    with _local_ray(num_cpus):
        flwr.simulation.run_simulation(
            server_app=server,
            client_app=party_app(config),
            num_supernodes=count,
            backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}},
        )
    if "value" not in result:
        raise GraphrecError("the Flower simulation ended before the label owner finished")
    return result["value"]
