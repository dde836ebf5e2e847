"""``graphrec export CHECKPOINT --to onnx|mnn [--check]`` on the checkpoints the trainers write."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from graphrec.cli import main
from graphrec.export.onnx import EXTRA_MODULES

_MISSING = [m for m in EXTRA_MODULES if importlib.util.find_spec(m) is None]
if _MISSING and os.environ.get("CI", "").lower() in ("1", "true", "yes"):
    raise ImportError(f"CI installs the 'export' extra; missing: {_MISSING}")
needs_extra = pytest.mark.skipif(
    bool(_MISSING), reason=f"{', '.join(_MISSING)} not installed (pip install -e '.[export]')"
)

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[2]
WEIGHTS = REPO / "combinatorial" / "weights"


def _json_out(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def hien_run(tmp_path_factory):
    """A HIEN+DIN run of ``graphrec ctr train`` on the synthetic CTR data (one epoch)."""
    out = tmp_path_factory.mktemp("ctr") / "hien_din"
    argv = ["ctr", "train", "--dataset", "synthetic", "--model", "din", "--hien", "--epochs", "1",
            "--embedding-dim", "8", "--threads", "1", "--out", str(out), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    return out


@needs_extra
def test_export_ctr_run_to_mnn_with_check(hien_run, tmp_path, capsys):
    capsys.readouterr()
    target = tmp_path / "model.mnn"
    argv = ["export", str(hien_run), "--to", "mnn", "--check", "--out", str(target), "--json"]
    assert main(argv) == 0
    result = _json_out(capsys.readouterr().out)
    assert result["kind"] == "hien"
    assert set(result["files"]) == {"onnx", "mnn"} and target.stat().st_size > 0
    assert result["bytes"]["mnn"] == target.stat().st_size
    assert result["parity"]["ok"]
    assert set(result["parity"]["max_abs_diff"]) == {"onnxruntime", "mnn"}
    assert max(result["parity"]["max_abs_diff"].values()) <= 1e-5
    assert (result["parity"]["atol"], result["parity"]["rtol"]) == (1e-5, 0.0)  # absolute
    assert result["parity"]["top_k"] == 10 and result["parity"]["min_overlap"] == 0.9
    assert set(result["parity"]["min_top_k_overlap"].values()) == {1.0}

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


@needs_extra
def test_export_fastcover_weights_to_onnx(tmp_path, capsys):
    weights = WEIGHTS / "fastcover_d1.pt"
    target = tmp_path / "fc.onnx"
    argv = ["export", str(weights), "--to", "onnx", "--check", "--out", str(target)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"wrote {target}" in out and "parity: ok" in out
    assert "onnxruntime     300" in out  # the graph ten times the example's size
    # the report states the criteria FastCover is held to
    assert "max|diff| <= 1e-05 + 5e-06 x max|torch|; top-10 overlap >= 0.9 for every query" in out


@needs_extra
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
    result = _json_out(capsys.readouterr().out)
    assert result["kind"] == "cf" and result["parity"]["ok"]


@needs_extra
def test_export_rejects_what_is_not_a_checkpoint(tmp_path, capsys):
    junk = tmp_path / "junk.pt"
    torch.save({"weights": torch.ones(2)}, junk)
    assert main(["export", str(junk), "--to", "onnx"]) == 2
    assert "is not a graphrec checkpoint" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "missing.pt"), "--to", "onnx"]) == 2
    assert "does not exist" in capsys.readouterr().err
    weights = WEIGHTS / "fastcover_d1.pt"
    assert main(["export", str(weights), "--to", "mnn", "--out", str(tmp_path / "x.onnx")]) == 2
    assert "expected a .mnn file" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.onnx"))


def test_help_states_the_parity_criteria(capsys, monkeypatch):
    from graphrec.commands import export as command
    from graphrec.export.checkpoint import FASTCOVER_RTOL
    from graphrec.export.parity import MIN_TOP_K_OVERLAP, PARITY_ATOL

    # the help is written without importing torch; its numbers are the library's
    assert (command.ATOL, command.FASTCOVER_RTOL) == (PARITY_ATOL, FASTCOVER_RTOL)
    assert command.MIN_OVERLAP == MIN_TOP_K_OVERLAP
    monkeypatch.setenv("COLUMNS", "1000")  # no line breaks inside option names
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "max |diff| <= 1e-05 for CTR, HIEN and CF models (absolute)" in text
    assert "<= 1e-05 + 5e-06 x max |torch score| for FastCover (relative" in text
    assert "--min-overlap (default 0.9) of its top --top-k (default 10)" in text
    assert "1e-5 unless" not in text and "unless max |diff|" not in text
    with pytest.raises(SystemExit):
        main(["export", "x.pt", "--to", "onnx", "--min-overlap", "1.5"])
    assert "--min-overlap must be in (0, 1]" in capsys.readouterr().err


@needs_extra
def test_export_check_fails_when_the_runtime_ranks_differently(tmp_path, capsys, monkeypatch):
    """onnxruntime's scores reversed (a stand-in for a wrong runtime): the top-k check fails."""
    from graphrec.export import parity

    run = parity.run_onnxruntime

    def reversed_scores(session, inputs):
        return [out.max() + out.min() - out for out in run(session, inputs)]

    monkeypatch.setattr(parity, "run_onnxruntime", reversed_scores)
    weights = WEIGHTS / "fastcover_d1.pt"
    argv = ["export", str(weights), "--to", "onnx", "--check", "--out", str(tmp_path / "fc.onnx")]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "parity: FAILED" in out
    failures = [line for line in out.splitlines() if line.startswith("onnxruntime")]
    assert len(failures) == 3
    for line in failures:
        assert "NO: max|diff| above allowed; top-10 overlap 0." in line, line
        assert "< 0.9 (query 0)" in line, line

    # --json carries the lowest overlap; a stricter --min-overlap is accepted
    argv += ["--force", "--json", "--top-k", "5", "--min-overlap", "1"]
    assert main(argv) == 1
    parity_json = _json_out(capsys.readouterr().out)["parity"]
    assert not parity_json["ok"] and parity_json["top_k"] == 5
    assert parity_json["min_top_k_overlap"]["onnxruntime"] < 0.5
    assert "top-5 overlap >= 1 for every query" in parity_json["criteria"]


@needs_extra
def test_export_refuses_tampered_fastcover_weights(tmp_path, capsys):
    """The SHA-256 in weights.json is checked (by load_pretrained), as for the shipped models."""
    shutil.copy(WEIGHTS / "weights.json", tmp_path / "weights.json")
    state = torch.load(WEIGHTS / "fastcover_d2.pt", weights_only=True)
    name = next(iter(state))
    state[name] = state[name] + 1e-3  # still a valid state dict of the same model
    torch.save(state, tmp_path / "fastcover_d2.pt")
    target = tmp_path / "fc.onnx"
    assert (
        main(["export", str(tmp_path / "fastcover_d2.pt"), "--to", "onnx", "--out", str(target)])
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("graphrec: error: ")
    assert "fastcover_d2.pt: SHA-256" in err and "does not match" in err and "replaced" in err
    assert not target.exists()

    # an untampered copy exports
    shutil.copy(WEIGHTS / "fastcover_d2.pt", tmp_path / "fastcover_d2.pt")
    assert (
        main(["export", str(tmp_path / "fastcover_d2.pt"), "--to", "onnx", "--out", str(target)])
        == 0
    )
    assert target.stat().st_size > 0


_WITHOUT = """
import sys
sys.modules[sys.argv[1]] = None  # as if the package were not installed
from graphrec.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize(
    ("module", "argv"),
    [
        ("onnx", ["--to", "onnx"]),
        ("onnxscript", ["--to", "onnx"]),
        ("onnxruntime", ["--to", "onnx", "--check"]),
        ("MNN", ["--to", "mnn"]),
    ],
)
def test_export_without_the_extra_is_one_line(module, argv, tmp_path):
    weights = WEIGHTS / "fastcover_d1.pt"
    cmd = [sys.executable, "-c", _WITHOUT, module, "export", str(weights), *argv]
    cmd += ["--out", str(tmp_path / f"fc.{argv[1]}")]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        "graphrec: error: 'graphrec export' needs the 'export' extra: pip install -e \".[export]\" "
        "(run in the graphrec clone; 'make install-dev' installs every extra)"
    ]
    assert "Traceback" not in proc.stderr and not list(tmp_path.iterdir())


@needs_extra
def test_export_cf_model_reloads_its_dataset_from_the_data_root(
    shared_data, tmp_path, capsys, monkeypatch
):
    """A named dataset is found from --data-root given as the data root or as its own folder
    (or the deprecated --root, or $GRAPHREC_DATA) when the folder of training is gone."""
    model = tmp_path / "mf.pt"
    argv = ["cf", "train", "--dataset", "ml-100k", "--data-root", str(shared_data), "--backbone",
            "mf", "--dim", "8", "--epochs", "1", "--out", str(model), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    state = torch.load(model, weights_only=True)
    state["data"]["root"] = str(tmp_path / "moved")
    torch.save(state, model)
    capsys.readouterr()
    monkeypatch.delenv("GRAPHREC_DATA", raising=False)
    base = ["export", str(model), "--to", "onnx", "--out", str(tmp_path / "mf.onnx"), "--force"]
    assert main(base) == 2
    err = capsys.readouterr().err
    assert "moved, the folder recorded at training, does not exist; pass --data-root" in err
    for extra in (
        ["--data-root", str(shared_data)],
        ["--data-root", str(shared_data / "movielens" / "ml-100k")],
        ["--root", str(shared_data)],
        [],  # with $GRAPHREC_DATA
    ):
        if not extra:
            monkeypatch.setenv("GRAPHREC_DATA", str(shared_data))
        assert main([*base, *extra, "--check", "--json"]) == 0
        captured = capsys.readouterr()
        assert _json_out(captured.out)["parity"]["ok"]
        assert ("deprecated" in captured.err) == ("--root" in extra)


@needs_extra
def test_export_ctr_run_reloads_its_dataset_from_the_data_root(shared_data, tmp_path, capsys):
    """The folder recorded in config.json ('root') or --data-root (here the dataset's own
    folder) locates ml-100k."""
    run = tmp_path / "lr"
    argv = ["ctr", "train", "--dataset", "ml-100k", "--root", str(shared_data), "--model", "lr",
            "--epochs", "1", "--threads", "1", "--out", str(run), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    assert json.loads((run / "config.json").read_text())["root"]  # the key export reads
    capsys.readouterr()
    base = ["export", str(run), "--to", "onnx", "--out", str(tmp_path / "lr.onnx"), "--force"]
    for extra in ([], ["--data-root", str(shared_data / "movielens" / "ml-100k")]):
        assert main([*base, *extra, "--check", "--json"]) == 0
        assert _json_out(capsys.readouterr().out)["parity"]["ok"]
