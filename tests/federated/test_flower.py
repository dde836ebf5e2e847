"""Flower adapter: the same aggregation hook and client code as the in-process simulator.

Needs the ``fl`` extra (flwr with its simulation engine). Without flwr the module is skipped,
except under CI, where a missing flwr is a failure.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import psutil
import pytest
import torch

try:
    import flwr
    import flwr.supercore.telemetry
except ImportError:
    if os.environ.get("CI"):
        raise
    pytest.skip("flwr is not installed (pip install 'graphrec[fl]')", allow_module_level=True)

from flwr.app import Context, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from graphrec.federated import (
    EmbeddingCTRTask,
    FedAvg,
    FedSubAvg,
    LocalConfig,
    Simulator,
    ode_strategy,
    synthetic_leaf,
)
from graphrec.federated.experiment import stream_task
from graphrec.federated.flower import (
    _to_record,
    client_app,
    decode_update,
    encode_update,
    flower_strategy,
    run_simulation,
)
from graphrec.federated.simulator import _seed, local_update

torch.set_num_threads(1)


def ctr_task(num_users: int = 12, seed: int = 0) -> EmbeddingCTRTask:
    rng = np.random.default_rng(seed)
    per = rng.integers(4, 10, num_users)
    user = np.repeat(np.arange(num_users), per)
    n = user.size
    item = rng.integers(1, 30, n)
    hist = np.where(rng.random((n, 5)) < 0.6, rng.integers(1, 30, (n, 5)), 0)
    labels = (rng.random(n) < 0.3 + 0.4 * (user % 2)).astype(np.float32)
    off = np.concatenate([[0], np.cumsum(per)])
    parts = [np.arange(off[u], off[u + 1] - 1) for u in range(num_users)]
    return EmbeddingCTRTask(
        user, item, hist, labels, parts, off[1:] - 1, num_users=num_users, num_items=30, dim=4
    )


@pytest.fixture
def task_identity(monkeypatch):
    """The identity a ServerApp process gets from Flower (messages read it)."""
    for attr in ("_run_id", "_task_id", "_node_id"):
        monkeypatch.setattr(TaskIdentity, attr, 1)


class InProcessGrid:
    """A Flower ``Grid`` stand-in: node ``i`` is device ``i``; messages are delivered to the
    ClientApp directly; each node keeps its ``Context`` (and so its ``context.state``)."""

    def __init__(self, app, num_nodes: int) -> None:
        self.app = app
        self.contexts = {
            i: Context(
                run_id=1,
                node_id=i,
                node_config={"partition-id": i, "num-partitions": num_nodes},
                state=RecordDict(),
                run_config={},
            )
            for i in range(num_nodes)
        }

    def get_node_ids(self):
        return list(self.contexts)

    def send_and_receive(self, messages, timeout=None):
        return [self.app(m, self.contexts[m.metadata.dst_node_id]) for m in messages]


def test_update_round_trip_through_records():
    task = ctr_task()
    sim = Simulator(task, FedSubAvg(task.graph), clients_per_round=3, seed=0)
    update = sim.client_update(4, sim.local.for_round(0), 1)
    update.weight, update.extras = 2.5, {"ghat": torch.arange(3.0)}
    back = decode_update(encode_update(update))
    assert (back.client, back.num_samples, back.weight) == (4, update.num_samples, 2.5)
    assert back.metrics == pytest.approx(update.metrics)
    assert set(back.dense) == set(update.dense) and set(back.rows) == set(update.rows)
    for name, delta in update.dense.items():
        assert torch.equal(back.dense[name], delta)
    for name, row in update.rows.items():
        assert back.rows[name].table == row.table
        assert torch.equal(back.rows[name].index, row.index)
        assert torch.equal(back.rows[name].values, row.values)
    assert torch.equal(back.extras["ghat"], update.extras["ghat"])
    assert back.nbytes == update.nbytes


@pytest.mark.parametrize("kind", ["fedsubavg", "ode"])
def test_flower_strategy_and_client_app_equal_the_simulator(kind, task_identity, split_streams):
    """Same seeds, node i = device i: the Flower strategy + ClientApp reproduce the in-process
    simulator bit for bit (FedSubAvg on sparse rows; ODE with lazy catch-up whose device state
    lives, pickled, in context.state between rounds)."""
    rounds, k, seed = 4, 4, 4
    if kind == "fedsubavg":
        make, local = ctr_task, LocalConfig()
        reference_task = make()
        sim = Simulator(
            reference_task, FedSubAvg(reference_task.graph), clients_per_round=k, seed=seed
        )
        server = FedSubAvg(make().graph)
    else:
        data = synthetic_leaf(0.5, 0.5, 10, samples_per_device=40, dim=8, num_classes=3, seed=2)
        make = functools.partial(  # picklable, as client_app needs
            stream_task, split_streams(data, 32), "ode", buffer_size=5, velocity=2, seed=4
        )
        local = LocalConfig(lr=0.2, lr_decay=1.0, local_steps=2, batch_size=100, clip_norm=None)
        reference_task = make()
        sim = Simulator(
            reference_task,
            ode_strategy(reference_task, seed),
            clients_per_round=k,
            local=local,
            seed=seed,
        )
        server = ode_strategy(make(), seed)
    for _ in range(rounds):
        sim.step()
    task = make()
    wrapped = flower_strategy(server, clients_per_round=k, local=local, seed=seed)
    grid = InProcessGrid(client_app(make, seed=seed), task.graph.num_devices)
    wrapped.start(grid=grid, initial_arrays=_to_record(task.init_state(seed)), num_rounds=rounds)
    assert [h["devices"] for h in wrapped.history] == [r["sampled"] for r in sim.history]
    assert [h["bytes_up"] for h in wrapped.history] == [r["bytes_up"] for r in sim.history]
    for name, value in sim.state.items():
        assert torch.equal(wrapped.state[name], value), name
    if kind == "ode":
        assert torch.equal(wrapped.inner.estimator.estimate, sim.strategy.estimator.estimate)


def test_flower_rejects_nan_updates_and_goes_on(caplog, task_identity):
    task = ctr_task()
    make = functools.partial(ctr_task)
    wrapped = flower_strategy(FedAvg(), clients_per_round=4, max_update_norm=1e3, seed=0)
    grid = InProcessGrid(client_app(make, seed=0), task.graph.num_devices)
    state0 = task.init_state(0)
    state0["mlp.0.bias"] = state0["mlp.0.bias"] * float("nan")  # every client returns NaN
    with caplog.at_level("WARNING", logger="graphrec.federated"):
        wrapped.start(grid=grid, initial_arrays=_to_record(state0), num_rounds=2)
    assert [h["accepted"] for h in wrapped.history] == [0, 0]
    assert all(len(h["rejected"]) == 4 for h in wrapped.history)
    assert sum("non-finite" in m for m in caplog.messages) == 8


def _ray_processes() -> list[int]:
    """Ray processes that are children of this test process."""
    me, found = str(os.getpid()), []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = fh.read().decode(errors="replace")
        except OSError:
            continue
        if fields[1] == me and ("ray" in cmd or "gcs_server" in cmd):
            found.append(int(pid))
    return found


def test_flower_simulation_with_ten_virtual_clients(tmp_path, monkeypatch):
    """A real Flower simulation (Ray backend, 1 CPU): 10 SuperNodes, 5 per round, 2 rounds of
    FedSubAvg; the result equals replaying the sampled devices' updates in process."""
    monkeypatch.setenv("FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION", "1")
    monkeypatch.setenv("FLWR_HOME", str(tmp_path / "flwr_home"))
    monkeypatch.setenv("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    make = functools.partial(ctr_task, 10)
    task = make()
    local = LocalConfig()
    wrapped = run_simulation(
        make,
        FedSubAvg(task.graph),
        rounds=2,
        clients_per_round=5,
        num_supernodes=10,
        local=local,
        seed=1,
        num_cpus=1,
    )
    assert [h["accepted"] for h in wrapped.history] == [5, 5]
    assert [e["round"] for e in wrapped.evaluations] == [0, 1, 2]
    # replay: the same devices, the same per-(seed, round, device) generators and client states
    state, strategy, client_state = task.init_state(1), FedSubAvg(task.graph), {}
    for t, h in enumerate(wrapped.history, 1):
        assert len(set(h["devices"])) == 5 and set(h["devices"]) <= set(range(10))
        config = strategy.configure(t, local.for_round(t - 1))
        updates = [
            local_update(
                task,
                state,
                d,
                config,
                client_state.setdefault(d, {}),
                torch.Generator().manual_seed(_seed(1, t, 1, d)),
            )
            for d in h["devices"]
        ]
        state = strategy.aggregate(state, updates)
    for name, value in state.items():
        assert torch.equal(wrapped.state[name], value), name
    deadline = time.time() + 10
    while _ray_processes() and time.time() < deadline:
        time.sleep(0.5)
    assert not _ray_processes()


def test_adapter_switches_off_flower_telemetry_and_ray_usage_stats(monkeypatch):
    from graphrec.federated import flower

    monkeypatch.delenv("FLWR_TELEMETRY_ENABLED", raising=False)
    monkeypatch.delenv("RAY_USAGE_STATS_ENABLED", raising=False)
    # as if flwr had been imported (it reads the variable then) before graphrec set it
    monkeypatch.setattr(flwr.supercore.telemetry, "FLWR_TELEMETRY_ENABLED", "1")
    flower._flwr()
    assert os.environ["FLWR_TELEMETRY_ENABLED"] == "0"
    assert os.environ["RAY_USAGE_STATS_ENABLED"] == "0"
    assert flwr.supercore.telemetry.FLWR_TELEMETRY_ENABLED == "0"
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "1")
    flower._flwr()
    assert os.environ["RAY_USAGE_STATS_ENABLED"] == "1"  # the user's choice is kept


# --------------------------------------------------------------------------- network audit

# installed as sitecustomize.py in every Python process of the audited run (PYTHONPATH):
# appends the destinations of its inet sockets and the names it resolves to $GRAPHREC_NET_AUDIT
_AUDIT_HOOK = """
import json, os, socket, sys

_LOG = os.path.join(os.environ["GRAPHREC_NET_AUDIT"], f"{os.getpid()}.jsonl")
_INET = (socket.AF_INET, socket.AF_INET6)


def _hook(event, args):
    if event in ("socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg"):
        if args[0].family not in _INET or not isinstance(args[1], tuple):
            return
        host = args[1][0]
    elif event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex"):
        host = args[0]
    else:
        return
    if isinstance(host, bytes):
        host = host.decode()
    with open(_LOG, "a") as fh:
        fh.write(json.dumps([event, host, " ".join(sys.argv)[:200]]) + "\\n")


sys.addaudithook(_hook)
"""

_AUDITED_RUN = """
import functools, json, sys
sys.path.insert(0, {tests!r})
from test_flower import ctr_task  # imports flwr before graphrec sets its defaults
from graphrec.federated import FedSubAvg
from graphrec.federated.flower import run_simulation
make = functools.partial(ctr_task, 3)
wrapped = run_simulation(
    make, FedSubAvg(make().graph), rounds=1, clients_per_round=2, num_supernodes=3, seed=1
)
print(json.dumps([h["accepted"] for h in wrapped.history]))
"""


def _loopback(host: str | None) -> bool:
    if host is None or host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def _sockets(proc: psutil.Process) -> set[tuple[str, str, str | None, str]]:
    """(status, local host, remote host, command) of the inet sockets of ``proc`` and its
    descendants; unbound sockets (local port 0) have no local host."""
    found = set()
    for p in [proc, *proc.children(recursive=True)]:
        try:
            name = " ".join(p.cmdline())[:120]
            for conn in p.net_connections(kind="inet"):
                local = conn.laddr.ip if conn.laddr and conn.laddr.port else None
                remote = conn.raddr.ip if conn.raddr else None
                found.add((conn.status, local, remote, name))
        except (psutil.Error, OSError):
            continue
    return found


linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="Ray's temporary folder follows TMPDIR on Linux"
)


@pytest.fixture
def short_tmp():
    """A temporary directory with a short path: Ray's Unix sockets live under its session
    folder, and a socket path may not exceed 107 bytes (pytest's tmp_path is too deep)."""
    path = tempfile.mkdtemp(prefix="gr-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@linux_only
def test_local_simulation_stays_on_loopback_and_leaves_no_ray_folder(tmp_path, short_tmp):
    """A real Flower simulation (3 SuperNodes, 1 round) in a subprocess, with Flower's telemetry
    and Ray's usage statistics at graphrec's defaults, audited two ways:

    * every Python process of the run (the driver; Ray's dashboard, dashboard agent,
      runtime-env agent, log monitor, autoscaler monitor; the workers running ClientApps)
      gets an audit hook, through a sitecustomize.py on PYTHONPATH, recording the address of
      every inet connect, bind, sendto and sendmsg and every name resolved with getaddrinfo
      or gethostbyname; a record from a worker proves the hook reached Ray's children;
    * the inet sockets of the driver and all its descendants, Ray's C++ gcs_server and raylet
      included, are sampled from /proc (psutil) every 0.2 s: local and remote addresses.

    Not covered: what the C++ processes do with a socket that lives less than a sample
    apart, and name lookups outside Python's socket module. Asserted: all addresses and
    names are loopback, and no Ray folder is left in the run's temporary directory."""
    site, audit = tmp_path / "site", tmp_path / "audit"
    site.mkdir()
    audit.mkdir()
    (site / "sitecustomize.py").write_text(_AUDIT_HOOK)
    unset = ("FLWR_TELEMETRY_ENABLED", "RAY_USAGE_STATS_ENABLED", "PYTHONPATH", "RAY_TMPDIR")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update(
        PYTHONPATH=str(site),
        TMPDIR=short_tmp,
        GRAPHREC_NET_AUDIT=str(audit),
        FLWR_HOME=str(tmp_path / "flwr_home"),
        FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1",
        RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO="0",
    )
    script = _AUDITED_RUN.format(tests=os.path.dirname(os.path.abspath(__file__)))
    run = subprocess.Popen(
        [sys.executable, "-c", script],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    sampled, proc, deadline = set(), psutil.Process(run.pid), time.time() + 600
    while run.poll() is None and time.time() < deadline:
        sampled |= _sockets(proc)
        time.sleep(0.2)
    if run.poll() is None:
        run.kill()
    output = run.communicate()[0]
    assert run.returncode == 0, output[-3000:]
    assert output.strip().splitlines()[-1] == "[2]"

    records = [json.loads(line) for log in audit.iterdir() for line in log.read_text().splitlines()]
    assert any("default_worker.py" in cmd for _, _, cmd in records)  # the hook reached Ray
    assert any(status == psutil.CONN_LISTEN for status, *_ in sampled)  # Ray's servers seen
    assert [r for r in records if not _loopback(r[1])] == []
    assert [s for s in sampled if not (_loopback(s[1]) and _loopback(s[2]))] == []
    assert [p for p in os.listdir(short_tmp) if "ray" in p or p.startswith("session")] == []


@linux_only
def test_simulation_error_still_shuts_ray_down_and_removes_its_folder(monkeypatch, short_tmp):
    """Ray is started before Flower's engine; when the engine fails, Ray is shut down, its
    temporary folder removed, and the environment changed for ``ray.init`` is as before."""
    import flwr.simulation
    import ray
    from ray._private import ray_constants

    monkeypatch.delenv("RAY_TMPDIR", raising=False)
    monkeypatch.setenv("TMPDIR", short_tmp)
    monkeypatch.setenv("FLWR_HOME", os.path.join(short_tmp, "flwr_home"))
    monkeypatch.setenv("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    before = (os.environ.get("HOME"), os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"))
    enable_cluster, seen = ray_constants.ENABLE_RAY_CLUSTER, {}

    def failing_engine(**kwargs):
        seen["folders"] = os.listdir(short_tmp)
        seen["node"] = ray.get_runtime_context().get_node_id()
        raise RuntimeError("engine failed")

    monkeypatch.setattr(flwr.simulation, "run_simulation", failing_engine)
    make = functools.partial(ctr_task, 3)
    with pytest.raises(RuntimeError, match="engine failed"):
        run_simulation(make, FedAvg(), rounds=1, clients_per_round=2, num_supernodes=3)
    assert [p for p in seen["folders"] if p.startswith("ray-")] and seen["node"]
    assert not ray.is_initialized()
    assert [p for p in os.listdir(short_tmp) if p.startswith("ray-")] == []
    assert (os.environ.get("HOME"), os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")) == before
    assert ray_constants.ENABLE_RAY_CLUSTER == enable_cluster
