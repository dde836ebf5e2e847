"""``graphrec export CHECKPOINT --to onnx|mnn [--check]`` on the checkpoints the trainers write."""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

for _module in ("onnx", "onnxruntime", "onnxscript", "MNN"):  # the ``export`` extra
    try:
        importlib.import_module(_module)
    except ImportError:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            raise
        pytest.skip(
            f"{_module} is not installed (pip install graphrec[export])", allow_module_level=True
        )

from graphrec.cli import main  # noqa: E402

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]


def _json_out(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def hien_run(tmp_path_factory):
    """A HIEN+DIN run of ``graphrec ctr train`` on the synthetic CTR data (one epoch)."""
    out = tmp_path_factory.mktemp("ctr") / "hien_din"
    argv = ["ctr", "train", "--dataset", "synthetic", "--model", "din", "--hien", "--epochs", "1",
            "--embedding-dim", "8", "--threads", "1", "--out", str(out), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    return out


def test_export_ctr_run_to_mnn_with_check(hien_run, tmp_path, capsys):
    capsys.readouterr()
    target = tmp_path / "model.mnn"
    argv = ["export", str(hien_run), "--to", "mnn", "--check", "--out", str(target), "--json"]
    assert main(argv) == 0
    result = _json_out(capsys)
    assert result["kind"] == "hien"
    assert set(result["files"]) == {"onnx", "mnn"} and target.stat().st_size > 0
    assert result["bytes"]["mnn"] == target.stat().st_size
    assert result["parity"]["ok"]
    assert set(result["parity"]["max_abs_diff"]) == {"onnxruntime", "mnn"}
    assert max(result["parity"]["max_abs_diff"].values()) <= 1e-5

    # the exported scores are the trained model's (not a fresh initialisation)
    from graphrec.export import MNNModel
    from graphrec.export.checkpoint import load_checkpoint

    plan = load_checkpoint(hien_run)
    trained = torch.load(hien_run / "model.pt", weights_only=True)
    for name, value in plan.reference.state_dict().items():
        torch.testing.assert_close(value, trained[name])
    inputs = plan.parity_inputs[1]
    got = MNNModel(target, onnx_path=target.with_suffix(".onnx"))(inputs)[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, plan.reference(inputs).numpy(), atol=1e-5)

    # nothing is overwritten without --force
    before = target.read_bytes()
    assert main(["export", str(hien_run), "--to", "mnn", "--out", str(target)]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert target.read_bytes() == before


def test_export_fastcover_weights_to_onnx(tmp_path, capsys):
    weights = REPO / "combinatorial" / "weights" / "fastcover_d1.pt"
    target = tmp_path / "fc.onnx"
    argv = ["export", str(weights), "--to", "onnx", "--check", "--out", str(target)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"wrote {target}" in out and "parity: ok" in out
    assert "onnxruntime     300" in out  # the graph ten times the example's size


def test_export_cf_model_file(tmp_path, capsys):
    rng = np.random.default_rng(0)
    log = tmp_path / "log.txt"
    pairs = {(int(u), int(i)) for u, i in zip(rng.integers(0, 30, 400), rng.integers(0, 40, 400))}
    log.write_text("".join(f"{u} {i}\n" for u, i in sorted(pairs)))
    model = tmp_path / "lightgcn.pt"
    argv = ["cf", "train", "--dataset", str(log), "--backbone", "lightgcn", "--dim", "8",
            "--layers", "2", "--epochs", "2", "--out", str(model), "--quiet", "--json"]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    argv = [
        "export",
        str(model),
        "--to",
        "mnn",
        "--check",
        "--json",
        "--out",
        str(tmp_path / "cf.mnn"),
    ]
    assert main(argv) == 0
    result = _json_out(capsys)
    assert result["kind"] == "cf" and result["parity"]["ok"]


def test_export_rejects_what_is_not_a_checkpoint(tmp_path, capsys):
    junk = tmp_path / "junk.pt"
    torch.save({"weights": torch.ones(2)}, junk)
    assert main(["export", str(junk), "--to", "onnx"]) == 2
    assert "is not a graphrec checkpoint" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "missing.pt"), "--to", "onnx"]) == 2
    assert "does not exist" in capsys.readouterr().err
    weights = REPO / "combinatorial" / "weights" / "fastcover_d1.pt"
    assert main(["export", str(weights), "--to", "mnn", "--out", str(tmp_path / "x.onnx")]) == 2
    assert "expected a .mnn file" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.onnx"))
