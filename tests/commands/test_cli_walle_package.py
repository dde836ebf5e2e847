"""``graphrec walle package build | verify | run``."""

from __future__ import annotations

import csv
import importlib.util
import json
import os

import numpy as np
import pytest
import torch

from graphrec.cli import main
from graphrec.export.onnx import EXTRA_MODULES

_MISSING = [m for m in EXTRA_MODULES if importlib.util.find_spec(m) is None]
if _MISSING and os.environ.get("CI", "").lower() in ("1", "true", "yes"):
    raise ImportError(f"CI installs the 'export' extra; missing: {_MISSING}")
pytestmark = pytest.mark.skipif(
    bool(_MISSING), reason=f"{', '.join(_MISSING)} not installed (pip install -e '.[export]')"
)

torch.set_num_threads(1)


def _json_out(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def taobao(shared_data):
    return shared_data / "ctr" / "fuxictr_tiny_taobao"


@pytest.fixture(scope="module")
def package(taobao, tmp_path_factory):
    """An LR package trained for one epoch on the Taobao sample, as an archive."""
    folder = tmp_path_factory.mktemp("walle_cli")
    (folder / "triggers.json").write_text(
        json.dumps({"tasks": [{"name": "exposure_click", "triggers": [[3, 4]], "window": 64}]})
    )
    out = folder / "lr.tar"
    argv = ["walle", "package", "build", "--model", "lr", "--dataset", str(taobao),
            "--epochs", "1", "--threshold", "0.5", "--top-k", "4", "--name", "lr-ctr",
            "--version", "2.1.0", "--triggers", str(folder / "triggers.json"), "--out", str(out),
            "--json"]  # fmt: skip
    assert main(argv) == 0
    return out


def test_build_writes_a_verified_package(package, capsys):
    assert main(["walle", "package", "verify", str(package), "--json"]) == 0
    info = _json_out(capsys.readouterr().out)
    assert (info["name"], info["version"], info["model"]) == ("lr-ctr", "2.1.0", "LR")
    assert info["ok"] and info["triggers"] == {
        "tasks": [{"name": "exposure_click", "triggers": [[3, 4]], "window": 64}]
    }
    assert info["postprocess"] == {"activation": "sigmoid", "threshold": 0.5, "top_k": 4}
    assert max(info["parity"]["max_abs_diff"].values()) <= 1e-5
    assert main(["walle", "package", "build", "--model", "lr", "--dataset", "x",
                 "--out", str(package)]) == 2  # fmt: skip
    assert "exists; pass --force" in capsys.readouterr().err


def test_run_matches_the_python_runner_and_reports_a_failing_task(package, taobao, tmp_path,
                                                                  capsys):  # fmt: skip
    from graphrec.ondevice.walle.package import Task

    with open(taobao / "test_sample.csv", newline="") as f:
        rows = list(csv.DictReader(f))[:12]
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = ["walle", "package", "run", str(package), "--input", str(source), "--runtime",
            "onnxruntime", "--repeat", "3", "--json"]  # fmt: skip
    assert main(argv) == 0
    report = _json_out(capsys.readouterr().out)
    task = report["tasks"]["lr-ctr"]
    assert report["rows"] == 12 and task["ok"] and task["runtime"] == "onnxruntime"
    assert set(task["latency_ms_median"]) == {"pre", "model", "post"}
    expected = Task(package, "onnxruntime")
    try:
        want = expected.run(rows).output
    finally:
        expected.close()
    np.testing.assert_allclose(task["output"]["score"], want["score"], rtol=0, atol=1e-7)
    assert task["output"]["top_k"] == want["top_k"].tolist()

    rows[3]["price"] = "n/a"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(argv[:-1]) == 1
    assert "lr-ctr: FAILED (onnxruntime): ConfigError: row 3: column 'price'" in (
        capsys.readouterr().out
    )


def test_verify_refuses_a_tampered_archive(package, tmp_path, capsys):
    data = bytearray(package.read_bytes())
    offset = data.index(b'"activation"')  # inside task.json
    data[offset + 2] ^= 0x20
    bad = tmp_path / "bad.tar"
    bad.write_bytes(bytes(data))
    assert main(["walle", "package", "verify", str(bad)]) == 2
    assert "task.json: sha256 does not match the manifest" in capsys.readouterr().err
