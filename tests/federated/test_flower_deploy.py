"""Flower's deployment engine: the shipped app run by a real SuperLink and SuperNodes on
127.0.0.1 (TLS and SuperNode authentication), compared with the in-process simulator.

Needs the ``fl`` extra. Without flwr the module is skipped, except under CI, where a missing
flwr is a failure. The two deployment tests start real processes (about 2-3 minutes on a
loaded 2-core machine) and have a time limit of their own.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

try:
    import flwr  # noqa: F401
    import psutil
except ImportError:
    if os.environ.get("CI"):
        raise
    pytest.skip("flwr is not installed (pip install 'graphrec[fl]')", allow_module_level=True)

try:
    import tomllib
except ImportError:  # Python 3.10: flwr's dependency
    import tomli as tomllib

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_ssh_private_key
from flwr.app import Context, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from graphrec.errors import GraphrecError
from graphrec.federated import Simulator, stream_simulator
from graphrec.federated.deploy import APP_DIR, LocalDeployment, write_node_key, write_tls
from graphrec.federated.flower import (
    RUN_CONFIG,
    _deployed_task,
    deployed_client_app,
    deployed_local_config,
    deployed_strategy,
    serve,
)

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[2]


def _marked() -> list[psutil.Process]:
    """Processes started by any LocalDeployment (they carry its marker variable)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if "GRAPHREC_FLOWER_DEPLOYMENT" in proc.environ():
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def _deployment_folders() -> set[str]:
    return {p for p in os.listdir(tempfile.gettempdir()) if p.startswith("graphrec-flower-")}


def test_run_config_is_the_apps_and_flwr_accepts_the_app():
    from flwr.cli.config_utils import load_and_validate

    config = tomllib.loads((APP_DIR / "pyproject.toml").read_text())
    assert config["tool"]["flwr"]["app"]["config"] == RUN_CONFIG
    _, warnings = load_and_validate(APP_DIR / "pyproject.toml")
    assert warnings == []


class NodesGrid:
    """A Flower ``Grid`` stand-in: ``n`` nodes with random-looking ids, node ``i`` holding
    partition ``i`` of ``n``, each with its ``Context``; messages go to the ClientApp
    directly."""

    def __init__(self, app, n: int, run_config: dict) -> None:
        self.app = app
        self.contexts = {
            (7919 * i + 13) % 10007: Context(
                run_id=1,
                node_id=(7919 * i + 13) % 10007,
                node_config={"partition-id": i, "num-partitions": n},
                state=RecordDict(),
                run_config=run_config,
            )
            for i in range(n)
        }

    def get_node_ids(self):
        return list(self.contexts)

    def send_and_receive(self, messages, timeout=None):
        return [self.app(m, self.contexts[m.metadata.dst_node_id]) for m in messages]


@pytest.mark.parametrize(
    "overrides",
    [
        {"strategy": "fedavg", "rounds": 3},
        {"strategy": "ode", "devices": 10, "rounds": 4, "lr": 0.05, "local-steps": 2},
    ],
    ids=["fedavg", "ode"],
)
def test_shipped_apps_equal_the_simulator_in_process(overrides, monkeypatch):
    """The shipped ServerApp's :func:`serve` and ClientApp over 3 nodes (several devices each,
    device state kept per device in ``context.state``): bit for bit ``graphrec fl run``'s
    (FedAvg) and ``graphrec fl ode``'s (ODE streams) simulators."""
    for attr in ("_run_id", "_task_id", "_node_id"):
        monkeypatch.setattr(TaskIdentity, attr, 1)
    cfg = {**RUN_CONFIG, **overrides, "min-nodes": 3}
    wrapped, results = serve(NodesGrid(deployed_client_app(), 3, cfg), cfg)
    task = _deployed_task(cfg)
    local = deployed_local_config(cfg)
    if cfg["strategy"] == "ode":
        sim = stream_simulator(task, clients_per_round=4, local=local, seed=0)
    else:
        sim = Simulator(
            task, deployed_strategy("fedavg", task, cfg), clients_per_round=4, local=local
        )
    for _ in range(cfg["rounds"]):
        sim.step()
    assert [h["devices"] for h in results["history"]] == [r["sampled"] for r in sim.history]
    assert len({d % 3 for h in results["history"] for d in h["devices"]}) == 3
    for name, value in sim.state.items():
        assert torch.equal(wrapped.state[name], value), name
    assert [e["round"] for e in results["evaluations"]] == list(range(cfg["rounds"] + 1))


def test_tls_certificates_and_node_keys(tmp_path):
    ca_path, cert_path, key_path = write_tls(tmp_path)
    ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    cert.verify_directly_issued_by(ca)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert key_path.stat().st_mode & 0o777 == 0o600
    public = write_node_key(tmp_path / "node")
    key = load_ssh_private_key((tmp_path / "node").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1"
    assert public.read_text().startswith("ecdsa-sha2-nistp384 ")
    assert (tmp_path / "node").stat().st_mode & 0o777 == 0o600


def test_flower_app_command_copies_the_app(tmp_path):
    from graphrec.cli import main

    assert main(["fl", "flower-app", str(tmp_path / "app")]) == 0
    assert (tmp_path / "app" / "pyproject.toml").read_bytes() == (
        APP_DIR / "pyproject.toml"
    ).read_bytes()
    assert main(["fl", "flower-app", str(tmp_path / "app")]) == 2  # exists: needs --force
    assert main(["fl", "flower-app", str(tmp_path / "app"), "--force"]) == 0


@pytest.mark.timeout(420)
def test_deployment_engine_equals_simulator_and_refuses_unauthenticated_supernodes(tmp_path):
    """3 SuperNodes with TLS and registered keys, 2 rounds of FedSubAvg on the app's default
    task (12 synthetic devices, 4 per round): the same devices and bit for bit the same model
    as the in-process simulator with the same seed (the same code computes every update and
    the aggregate; arrays travel as raw float32 bytes). A SuperNode with an unregistered key
    and one without a key are refused. Afterwards no process and no folder is left."""
    before = _deployment_folders()
    state_file, lines = tmp_path / "state.pt", []
    with LocalDeployment(3, log=lines.append) as deployment:
        folder = deployment.folder
        write_node_key(folder / "keys" / "intruder")
        intruders = [
            deployment.start_supernode(0, folder / "keys" / "intruder", name="intruder"),
            deployment.start_supernode(1, None, name="keyless"),
        ]
        results = json.loads(
            deployment.run({"rounds": 2, "state-file": str(state_file)}, timeout_s=300).read_text()
        )
        # the unregistered key is refused (Flower's exit code 305, the process exits with 1);
        # the keyless SuperNode cannot even connect (it keeps retrying until stopped)
        assert intruders[0].wait(timeout=60) != 0
        assert "Exit Code: 305" in deployment.logs("intruder")
        assert "Failed to activate SuperNode" in deployment.logs("intruder")
        assert "Connection attempt failed" in deployment.logs("keyless")
        for name in ("intruder", "keyless"):
            assert "SuperNode ID" not in deployment.logs(name), name
        listed = deployment.cli("supernode", "list", "local", "--format", "json").stdout
        assert len(re.findall(r'"online"', listed)) == 3
        listening = {
            conn.laddr.ip
            for proc in _marked()
            for conn in proc.net_connections(kind="inet")
            if conn.status == psutil.CONN_LISTEN
        }
        assert listening == {"127.0.0.1"}  # nothing listens beyond loopback
    assert any("[ROUND 2/2]" in line for line in lines)

    cfg = {**RUN_CONFIG, "rounds": 2}
    task = _deployed_task(cfg)
    sim = Simulator(
        task,
        deployed_strategy("fedsubavg", task, cfg),
        clients_per_round=4,
        local=deployed_local_config(cfg),
        seed=0,
    )
    for _ in range(2):
        sim.step()
    assert [h["devices"] for h in results["history"]] == [r["sampled"] for r in sim.history]
    assert [h["bytes_up"] for h in results["history"]] == [r["bytes_up"] for r in sim.history]
    state = torch.load(state_file, weights_only=True)
    assert set(state) == set(sim.state)
    for name, value in sim.state.items():
        assert torch.equal(state[name], value), name
    assert results["evaluations"][-1]["accuracy"] == pytest.approx(
        sim.evaluate()["accuracy"], abs=0
    )

    assert not folder.exists() and _deployment_folders() <= before
    assert not _marked()


@pytest.mark.timeout(240)
def test_deploy_local_stops_every_process_on_ctrl_c(tmp_path):
    """``graphrec fl deploy-local`` interrupted (SIGINT, as Ctrl-C) while the run goes on:
    the SuperLink, the SuperNodes, their SuperExecs and app processes all end, and the
    temporary folder is removed."""
    before = _deployment_folders()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "graphrec.cli", "fl", "deploy-local", "--nodes", "2"]
    proc = subprocess.Popen(
        [*command, "--rounds", "50", "--out", str(tmp_path / "r.json")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=tmp_path,
        # as a foreground command: SIGINT handled even when this runner was started with it
        # ignored (a background job of a non-interactive shell)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if "[ROUND 1/50]" in line:
                break
        assert any("started   SuperLink 127.0.0.1:" in line for line in seen), seen
        assert len(_marked()) >= 5  # SuperLink, 2 SuperNodes, their SuperExecs, flwr run
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    deadline = time.time() + 10
    while _marked() and time.time() < deadline:
        time.sleep(0.5)
    assert not _marked()
    assert _deployment_folders() <= before
    assert not (tmp_path / "r.json").exists()


@pytest.mark.timeout(180)
def test_deployment_stops_its_processes_when_starting_fails(monkeypatch):
    """A failure after the SuperLink is up (here: a SuperNode key the SuperLink cannot
    register) stops the SuperLink and its SuperExec and removes the temporary folder."""
    from graphrec.federated import deploy

    before = _deployment_folders()

    def bad_key(path):
        path.write_bytes(b"not a key\n")
        path.with_name(path.name + ".pub").write_bytes(b"ssh-rsa AAAA not-a-key\n")
        return path.with_name(path.name + ".pub")

    monkeypatch.setattr(deploy, "write_node_key", bad_key)
    deployment = LocalDeployment(2)
    with pytest.raises(GraphrecError, match="flwr supernode register failed"):
        with deployment:
            pass
    assert deployment.folder is None and _deployment_folders() <= before
    assert not _marked()
