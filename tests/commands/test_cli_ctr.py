"""``graphrec ctr train``: results, determinism, --out/--force, checkpoint resume, errors."""

from __future__ import annotations

import json

import pytest
import torch

from graphrec.cli import main
from graphrec.models.ctr import train as train_module

torch.set_num_threads(1)

# the synthetic recipe (batch 256, lr 0.01, patience 5), 3 epochs
SYN = ["ctr", "train", "--dataset", "synthetic", "--epochs", "3", "--threads", "1", "--quiet"]


def _run(capsys, *argv):
    rc = main(list(argv))
    return rc, capsys.readouterr()


def test_train_json_deterministic_force_and_resume(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    rc, cap = _run(capsys, *SYN, "--model", "din", "--hien", "--out", str(out), "--json")
    assert rc == 0, cap.err
    res = json.loads(cap.out)
    assert res == json.loads((out / "results.json").read_text())
    assert res["epochs_run"] == 3 and 1 <= res["best_epoch"] <= 3
    for split in ("valid", "test"):
        assert 0.5 < res[split]["auc"] <= 1 and 0 < res[split]["logloss"] < 1
        assert 0.5 < res[split]["gauc"] <= 1
    assert res["samples_per_s"] > 0 and res["data"]["train"] == 9600
    # options left unset are the synthetic recipe and the model's defaults
    assert {k: res["config"][k] for k in ("batch_size", "lr", "weight_decay", "patience")} == {
        "batch_size": 256,
        "lr": 0.01,
        "weight_decay": 0.0,
        "patience": 5,
    }
    assert res["config"]["embedding_dim"] == 16 and res["config"]["aggregator"] == "gcn"
    assert set(res["hien_types"]) == {"campaign", "customer", "cate", "brand"}
    assert abs(sum(res["hien_types"].values()) - 1) < 1e-5
    state = torch.load(out / "model.pt", weights_only=True)
    assert any(k.startswith("user_attention.") for k in state)

    # a finished run is not overwritten without --force; with it, same seed -> same numbers
    rc, cap = _run(capsys, *SYN, "--model", "din", "--hien", "--out", str(out))
    assert rc == 2 and "--force" in cap.err and "results.json" in cap.err
    rc, cap = _run(capsys, *SYN, "--model", "din", "--hien", "--out", str(out), "--json",
                   "--force")  # fmt: skip
    assert rc == 0 and json.loads(cap.out)["test"] == res["test"]

    # interrupted after the first epoch's checkpoint, then resumed: the same result
    part = tmp_path / "part"
    calls = {"n": 0}
    evaluate = train_module.evaluate_ctr

    def interrupt(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(train_module, "evaluate_ctr", interrupt)
    rc, cap = _run(capsys, *SYN, "--model", "din", "--hien", "--out", str(part))
    assert rc == 130 and "interrupted" in cap.err  # Ctrl-C
    monkeypatch.undo()
    assert (part / "checkpoint.pt").exists() and not (part / "results.json").exists()
    rc, cap = _run(capsys, *SYN, "--model", "din", "--hien", "--out", str(part), "--json")
    assert rc == 0, cap.err
    resumed = json.loads(cap.out)
    assert resumed["test"] == res["test"] and len(resumed["history"]) == 3
    # a checkpoint of other arguments is not resumed
    (part / "results.json").unlink()
    rc, cap = _run(capsys, *SYN, "--model", "din", "--lr", "0.05", "--out", str(part))
    assert rc == 2 and "written by another run" in cap.err and "--force starts over" in cap.err
    assert "hien True -> False" in cap.err and "lr 0.01 -> 0.05" in cap.err
    assert cap.err.count("\n") == 1
    # the data is part of the run: another synthetic draw (--seed changes it) is refused too
    rc, cap = _run(capsys, *SYN, "--model", "din", "--hien", "--seed", "1", "--out", str(part))
    assert rc == 2 and "data_fingerprint" in cap.err


def test_corrupt_or_malicious_checkpoint_is_one_line(tmp_path, capsys):
    """A truncated checkpoint and a pickle that would run a command: one line, nothing runs."""
    out = tmp_path / "run"
    argv = [*SYN, "--epochs", "1", "--model", "lr", "--out", str(out)]
    assert _run(capsys, *argv)[0] == 0
    (out / "results.json").unlink()
    ckpt = out / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:200])
    rc, cap = _run(capsys, *argv)
    assert rc == 2 and "truncated, corrupt" in cap.err and cap.err.count("\n") == 1
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"model": Payload()}, ckpt)
    rc, cap = _run(capsys, *argv)
    assert rc == 2 and "--force starts over" in cap.err and not marker.exists()
    assert _run(capsys, *argv, "--force")[0] == 0


def test_train_text_output_base_model(tmp_path, capsys):
    rc, cap = _run(capsys, *SYN, "--model", "deepfm", "--seed", "1")
    assert rc == 0, cap.err
    assert "test      AUC" in cap.out and "HIEN" not in cap.out
    assert "deepfm" in cap.out and "seed 1" in cap.out


def test_train_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("GRAPHREC_DATA", raising=False)
    rc, cap = _run(capsys, "ctr", "train", "--dataset", "ml-100k", "--model", "lr")
    assert rc == 2 and "--data-root" in cap.err and "GRAPHREC_DATA" in cap.err
    rc, cap = _run(capsys, "ctr", "train", "--dataset", str(tmp_path / "nope"), "--model", "lr")
    assert rc == 2 and "neither" in cap.err
    rc, cap = _run(capsys, "ctr", "train", "--dataset", str(tmp_path), "--model", "lr")
    assert rc == 2 and "train_sample.csv" in cap.err
    rc, cap = _run(capsys, "ctr", "train", "--dataset", "amazon-users", "--model", "din",
                   "--hien", "--root", str(tmp_path))  # fmt: skip
    assert rc == 2 and "no item attributes" in cap.err
    assert "--root is deprecated; use --data-root" in cap.err
    with pytest.raises(SystemExit):
        main(["ctr", "train", "--dataset", "synthetic", "--model", "fm"])
    with pytest.raises(SystemExit):
        main(["ctr", "train", "--dataset", "synthetic", "--model", "lr", "--epochs", "0"])
    with pytest.raises(SystemExit):
        main(["ctr", "train", "--dataset", "synthetic", "--model", "lr", "--weight-decay", "-1"])


def test_train_taobao_folder_and_amazon(shared_data, tmp_path, capsys):
    taobao = shared_data / "ctr" / "fuxictr_tiny_taobao"
    rc, cap = _run(capsys, "ctr", "train", "--dataset", str(taobao), "--model", "din", "--hien",
                   "--epochs", "2", "--batch-size", "32", "--threads", "1", "--json")  # fmt: skip
    assert rc == 0, cap.err
    res = json.loads(cap.out)
    assert res["data"] == {"train": 89, "valid": 11, "test": 100}
    assert set(res["hien_types"]) == {"campaign_id", "customer", "cate_id", "brand"}
    assert 0 <= res["test"]["auc"] <= 1 and res["test"]["logloss"] > 0
    rc, cap = _run(capsys, "ctr", "train", "--dataset", "amazon-users", "--data-root",
                   str(shared_data), "--model", "lr", "--epochs", "1", "--batch-size", "4096",
                   "--threads", "1", "--json")  # fmt: skip
    assert rc == 0, cap.err
    res = json.loads(cap.out)
    assert res["data"]["train"] + res["data"]["valid"] + res["data"]["test"] == 99710
    assert 0.5 < res["test"]["auc"] < 1
