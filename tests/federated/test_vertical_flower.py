"""Split learning across Flower apps: the label owner's ServerApp and one ClientApp per party give
the in-process result bit for bit (losses, predictions, logged bytes, every parameter).

Needs the ``fl`` extra (flwr with its simulation engine). Without flwr the module is skipped,
except under CI, where a missing flwr is a failure.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch

try:
    import flwr  # noqa: F401
except ImportError:
    if os.environ.get("CI"):
        raise
    pytest.skip("flwr is not installed (pip install 'graphrec[fl]')", allow_module_level=True)

try:
    import tomllib
except ImportError:  # Python 3.10: flwr's dependency
    import tomli as tomllib

from flwr.app import Context, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from graphrec.cli import main
from graphrec.errors import ConfigError, GraphrecError
from graphrec.federated.vertical import MessageLog, SplitLearner, Stragglers, compressor
from graphrec.federated.vertical.data import build_split_model, epoch_batches, load_vertical
from graphrec.federated.vertical.flower import (
    APP_DIR,
    VFLConfig,
    connect_parties,
    decode_payload,
    encode_payload,
    party_app,
    simulate,
)
from graphrec.federated.vertical.nodes import PartyNode, node_generator
from graphrec.nn.mlp import MLP

torch.set_num_threads(1)


@pytest.fixture
def task_identity(monkeypatch):
    """The identity a ServerApp process gets from Flower (messages read it)."""
    for attr in ("_run_id", "_task_id", "_node_id"):
        monkeypatch.setattr(TaskIdentity, attr, 1)


@pytest.fixture
def flower_env(tmp_path, monkeypatch):
    monkeypatch.setenv("FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION", "1")
    monkeypatch.setenv("FLWR_HOME", str(tmp_path / "flwr_home"))
    monkeypatch.setenv("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")


class DirectGrid:
    """A Flower ``Grid`` stand-in: messages go straight to the ClientApp; node ``100 + K`` has
    ``partition-id`` K and keeps its ``Context`` (its ``context.state``)."""

    def __init__(self, app, num_nodes: int, run_config: dict | None = None) -> None:
        self.app, self.calls = app, 0
        self.contexts = {
            100 + k: Context(
                run_id=1,
                node_id=100 + k,
                node_config={"partition-id": k, "num-partitions": num_nodes},
                state=RecordDict(),
                run_config=run_config or {},
            )
            for k in range(num_nodes)
        }

    def get_node_ids(self):
        return list(self.contexts)

    def send_and_receive(self, messages, timeout=None):
        self.calls += 1
        return [self.app(m, self.contexts[m.metadata.dst_node_id]) for m in messages]


def train(config: VFLConfig, epochs: int, parties=None, **options) -> dict:
    """``graphrec vfl train``'s loop: per epoch the schedule, then its batches; then predict."""
    data = load_vertical(config.dataset, config.parties, config.seed)
    model = build_split_model(
        data, config.seed, bottom_hidden=config.bottom_hidden, top_hidden=config.top_hidden
    )
    features = {p: x for p, x in data.features.items() if parties is None or p not in parties}
    learner = SplitLearner(
        model,
        features,
        data.labels,
        log=MessageLog(),
        dp=config.dp(),
        seed=config.seed,
        compression=config.compression(),
        optimizer=lambda params: torch.optim.Adam(params, lr=config.lr),
        parties=parties,
        **options,
    )
    losses = []
    for e in range(epochs):
        learner.announce(config.seed, e)
        batches = epoch_batches(data.train_rows, config.batch_size, config.seed, e)
        losses += [learner.step(rows, send_batch=False) for rows in batches]
    logits = learner.predict(data.test_rows)
    bottoms = {p: node.state_dict()["bottom"] for p, node in learner.parties.items()}
    return {
        "losses": losses,
        "logits": logits,
        "log": [(m.sender, m.receiver, m.kind, m.nbytes) for m in learner.log],
        "top": model.top.state_dict(),
        "bottoms": bottoms,
        "owner_bottom": model.bottoms[data.label_owner].state_dict(),
        "steps": learner.step_count,
    }


def assert_identical(a: dict, b: dict) -> None:
    assert a["losses"] == b["losses"]
    assert torch.equal(a["logits"], b["logits"])
    assert a["log"] == b["log"]
    for key in ("top", "owner_bottom"):
        for name, value in a[key].items():
            assert torch.equal(value, b[key][name]), (key, name)
    assert set(a["bottoms"]) == set(b["bottoms"])
    for party, state in a["bottoms"].items():
        for name, value in state.items():
            assert torch.equal(value, b["bottoms"][party][name]), (party, name)


# --------------------------------------------------------------------------- encoding


def test_payloads_round_trip_through_records():
    x = torch.randn(5, 8)
    payloads = [
        x,
        torch.tensor(3.5),
        torch.arange(6, dtype=torch.int64).reshape(2, 3),
        torch.tensor([True, False]),
        torch.zeros(0, 4),
        b"\x00\x01\xff",
        (b"abc", torch.arange(3, dtype=torch.int32)),
        {"ops": [("backward", x), ("update",)], 3: None, "f": [math.inf, -0.0, 1e-300]},
        "text",
        None,
    ]
    for name in ("q8", "q4", "topk:0.25", "q8:entropy_coding=false"):
        try:
            payloads.append(compressor(name).encode(x))
        except ConfigError:  # an option of a compressor this checkout does not have
            pass
    for payload in payloads:
        back = decode_payload(encode_payload(payload))
        assert type(back) is type(payload)
        assert _equal(back, payload), payload
    with pytest.raises(ConfigError, match="payload"):
        encode_payload(object())


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_equal, a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return a == b


def test_party_node_state_round_trips_exactly():
    """Adam state, noise generator, error-feedback residual and last gradient come back exact:
    the restored node continues with the same numbers."""
    from graphrec.federated.vertical import Compression, GaussianDP

    def node() -> PartyNode:
        torch.manual_seed(0)
        return PartyNode(
            "p1",
            MLP(3, [4], 2),
            torch.randn(10, 3, generator=torch.Generator().manual_seed(1)),
            np.arange(10),
            lambda params: torch.optim.Adam(params, lr=0.1),
            dp=GaussianDP(0.5, 1.0, ("embedding",)),
            generator=node_generator(0, 1),
            compressor=Compression(compressor("q8")).embedding,
        )

    a = node()
    batch = torch.tensor([1, 4, 7])
    for _ in range(2):
        a.embed(batch)
        a.backward(torch.randn(3, 2), batch)
        a.update()
    state = a.state_dict()
    b = node()
    b.load_state_dict(decode_payload(encode_payload(state, "node"), "node"))
    assert _equal(b.state_dict(), state)
    assert _equal(a.embed(batch), b.embed(batch))


def test_config_round_trips_through_the_run_configuration():
    config = VFLConfig(
        "synthetic", 3, 2, batch_size=16, top_hidden=(), dp_sigma=0.5, compress="topk:0.1"
    )
    run_config = config.run_config()
    assert all(isinstance(v, (int, float, str)) for v in run_config.values())
    assert VFLConfig.from_run_config({**run_config, "epochs": 3}) == config
    assert VFLConfig.from_run_config({"dataset": "synthetic"}) == VFLConfig("synthetic")
    with pytest.raises(ConfigError, match="dataset"):
        VFLConfig.from_run_config({})


# --------------------------------------------------------------------------- protocol


CASES = {
    "plain": (VFLConfig("breast-cancer", 3), {}),
    "q8": (VFLConfig("breast-cancer", 3, compress="q8"), {}),
    "topk": (VFLConfig("breast-cancer", 2, compress="topk:0.25"), {}),
    "dp-both": (VFLConfig("synthetic", 3, dp_sigma=0.5, dp_targets=("embedding", "gradient")), {}),
    "fedbcd": (VFLConfig("breast-cancer", 3), {"local_steps": 3}),
    "stragglers": (
        VFLConfig("synthetic", 3, batch_size=256),
        {"stragglers": Stragglers(20, lambda step, party: (step + int(party[1:])) % 3 != 0)},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_flower_parties_equal_the_in_process_parties(case, task_identity):
    """The ClientApps (node state restored from context.state every message) and the proxies
    give the in-process numbers bit for bit; one round trip per step asks every party."""
    config, options = CASES[case]
    expected = train(config, 2, **options)
    grid = DirectGrid(party_app(config), config.parties - 1)
    parties = connect_parties(grid, config)
    got = train(config, 2, parties, **options)
    assert_identical(expected, got)
    steps = got["steps"]
    # one query round, one round trip per step, the predict round, one state fetch per party
    if case != "stragglers":
        assert parties.stats["round_trips"] == steps + 1 + (config.parties - 1)
        assert grid.calls == 1 + parties.stats["round_trips"]
    assert parties.stats["bytes_down"] > 0 and parties.stats["bytes_up"] > 0


def test_checkpoints_move_between_in_process_and_flower(task_identity):
    """``SplitLearner.state_dict`` of an in-process run resumes on Flower parties, and a
    Flower run's resumes in process: the same numbers as an uninterrupted run."""
    config = VFLConfig("breast-cancer", 3, compress="q8", dp_sigma=0.5)
    data = load_vertical(config.dataset, config.parties, config.seed)

    def learner(parties=None) -> SplitLearner:
        model = build_split_model(data, config.seed)
        features = {p: x for p, x in data.features.items() if parties is None or p not in parties}
        return SplitLearner(
            model,
            features,
            data.labels,
            dp=config.dp(),
            seed=config.seed,
            compression=config.compression(),
            optimizer=lambda params: torch.optim.Adam(params, lr=config.lr),
            parties=parties,
        )

    def epoch(run: SplitLearner, e: int) -> list[float]:
        run.announce(config.seed, e)
        batches = epoch_batches(data.train_rows, config.batch_size, config.seed, e)
        return [run.step(rows, send_batch=False) for rows in batches]

    reference = learner()
    expected = [epoch(reference, e) for e in range(3)]
    remote = learner(connect_parties(DirectGrid(party_app(config), 2), config))
    local = learner()
    assert epoch(local, 0) == expected[0]
    remote.load_state_dict(local.state_dict())  # in process -> Flower
    assert epoch(remote, 1) == expected[1]
    local.load_state_dict(remote.state_dict())  # Flower -> in process
    assert epoch(local, 2) == expected[2]
    assert torch.equal(local.predict(data.test_rows), reference.predict(data.test_rows))


def test_a_party_outside_the_graph_is_refused(task_identity):
    config = VFLConfig("breast-cancer", 2)
    grid = DirectGrid(party_app(config), 2)  # two nodes for one remote party
    with pytest.raises(GraphrecError, match="partition-id"):
        connect_parties(grid, config)


def test_shipped_vfl_app_gives_the_cli_results(tmp_path, capsys, task_identity):
    """The app for ``flwr run`` (graphrec/federated/vfl_flower_app): its ServerApp runs
    ``graphrec vfl train`` with the run configuration's options, its ClientApp reads the same
    run configuration; the results file equals the CLI's JSON in process."""
    from flwr.cli.config_utils import load_and_validate

    from graphrec.commands.vfl import flower_server_app

    assert load_and_validate(APP_DIR / "pyproject.toml")[1] == []  # flwr accepts the app
    app_config = tomllib.loads((APP_DIR / "pyproject.toml").read_text())["tool"]["flwr"]
    app_config = app_config["app"]["config"]
    assert set(VFLConfig("synthetic").run_config()) <= set(app_config)
    overrides = {
        "dataset": "synthetic",
        "epochs": 2,
        "batch-size": 400,
        "dp-sigma": 0.5,
        "dp-targets": "embedding,gradient",
        "compress": "q4",
        "staleness": 3,
        "results-file": str(tmp_path / "results.json"),
    }
    run_config = {**app_config, **overrides}
    grid = DirectGrid(party_app(), 2, run_config)
    server_context = Context(
        run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=run_config
    )
    flower_server_app()(grid, server_context)
    got = json.loads((tmp_path / "results.json").read_text())
    argv = ["vfl", "train", "--dataset", "synthetic", "--parties", "3", "--epochs", "2"]
    argv += ["--batch-size", "400", "--dp-sigma", "0.5", "--dp-target", "both"]
    argv += ["--compress", "q4", "--staleness", "3", "--json"]
    assert main(argv) == 0
    expected = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert got.pop("flower")["round_trips"] > 0
    for result in (expected, got):
        result.pop("train_s")
    assert got == expected


def test_flower_refuses_centralized(capsys):
    assert main(["vfl", "train", "--dataset", "breast-cancer", "--flower", "--centralized"]) == 2
    assert "--centralized needs every party's features in one place" in capsys.readouterr().err


# --------------------------------------------------------------------------- simulation engine


def test_simulation_engine_equals_in_process(flower_env):
    """Flower's simulation engine (Ray, one ClientApp per party), with q8 compression and DP
    on embeddings and gradients: same losses, predictions, logged bytes and parameters as in
    process (each mode alone: the tests above; few steps, as a round trip costs ~0.5 s)."""
    config = VFLConfig(
        "synthetic",
        3,
        batch_size=400,
        dp_sigma=0.5,
        dp_targets=("embedding", "gradient"),
        compress="q8",
    )
    expected = train(config, 2)
    got = simulate(config, lambda parties: train(config, 2, parties))
    assert_identical(expected, got)


def test_cli_flower_gives_the_in_process_results(flower_env, capsys):
    argv = ["vfl", "train", "--dataset", "breast-cancer", "--parties", "3", "--epochs", "2"]
    argv += ["--batch-size", "128"]
    assert main([*argv, "--json"]) == 0
    expected = json.loads(capsys.readouterr().out)
    assert main([*argv, "--json", "--flower"]) == 0
    got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    flower = got.pop("flower")
    assert flower["round_trips"] == 2 * math.ceil(455 / 128) + 2  # steps, predict test + train
    for result in (expected, got):
        result.pop("train_s")
    assert got == expected
