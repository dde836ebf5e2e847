"""The vertical FL Flower app on Flower's deployment engine: a real SuperLink and one SuperNode
per party on 127.0.0.1 (TLS and SuperNode authentication) give the in-process results.

Needs the ``fl`` extra. Without flwr the module is skipped, except under CI, where a missing
flwr is a failure. The test starts real processes (a few minutes on a loaded 2-core machine:
every round trip of the deployment costs seconds) and has a time limit of its own.
"""

from __future__ import annotations

import json
import os

import pytest
import torch

try:
    import flwr  # noqa: F401
except ImportError:
    if os.environ.get("CI"):
        raise
    pytest.skip("flwr is not installed (pip install 'graphrec[fl]')", allow_module_level=True)

from graphrec.cli import main
from graphrec.federated.deploy import LocalDeployment
from graphrec.federated.vertical.flower import APP_DIR

torch.set_num_threads(1)


@pytest.mark.timeout(480)
def test_deployment_engine_equals_in_process(capsys):
    """4 parties: the label owner's ServerApp behind the SuperLink, 3 SuperNodes (partition-id
    0..2 = p1..p3) with their ClientApps, q8 compression and DP on the gradients; one epoch of
    two steps: the results JSON equals ``graphrec vfl train`` in process."""
    options = {"dataset": "breast-cancer", "parties": 4, "epochs": 1, "batch-size": 256}
    options.update({"compress": "q8", "dp-sigma": 0.5, "dp-targets": "gradient"})
    with LocalDeployment(3, log=lambda line: None) as deployment:
        got = json.loads(deployment.run(options, app=APP_DIR, timeout_s=420).read_text())
    argv = ["vfl", "train", "--dataset", "breast-cancer", "--parties", "4", "--epochs", "1"]
    argv += ["--batch-size", "256", "--compress", "q8", "--dp-sigma", "0.5"]
    argv += ["--dp-target", "gradient", "--json"]
    assert main(argv) == 0
    expected = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert got.pop("flower")["round_trips"] == 2 + 2  # two steps, predict test and train
    for result in (expected, got):
        result.pop("train_s")
    assert got == expected
