"""``graphrec mtl train``: JSON results, reload of the saved model, resume, errors."""

from __future__ import annotations

import json

import pytest
import torch

from graphrec.cli import main
from graphrec.models.mtl import build_mtl, evaluate_mtl, load_mtl_dataset
from graphrec.models.mtl import train as train_module

torch.set_num_threads(1)

SYN = ["mtl", "train", "--dataset", "synthetic", "--epochs", "2", "--threads", "1", "--quiet",
       "--embedding-dim", "8"]  # fmt: skip


def _run(capsys, *argv):
    rc = main(list(argv))
    return rc, capsys.readouterr()


def test_json_reload_and_resume(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    argv = [*SYN, "--backbone", "mmoe", "--distill", "crossdistil", "--alpha", "0.3"]
    rc, cap = _run(capsys, *argv, "--out", str(out), "--json")
    assert rc == 0, cap.err
    res = json.loads(cap.out)
    assert res == json.loads((out / "results.json").read_text())
    assert res["tasks"] == ["a", "b"] and res["epochs_run"] == 2
    assert res["config"]["distill_options"] == {"alpha": 0.3}
    assert res["config"]["batch_size"] == 1024  # the synthetic recipe
    assert res["data"]["train"]["rows"] == 16000 and min(res["data"]["test"]["groups"].values())
    assert res["teacher_parameters"] > 0 and res["train_s_per_epoch"] > 0
    for key in ("auc_a", "auc_b", "gauc_a", "multi_auc", "ndcg"):
        assert 0.5 < res["test"][key] <= 1

    # the saved student reloads (weights only) and predicts the same test metrics
    data = load_mtl_dataset("synthetic", seed=0)
    model, _ = build_mtl("mmoe", data.features, embedding_dim=8)
    model.load_state_dict(torch.load(out / "model.pt", weights_only=True))
    assert evaluate_mtl(model, data.split.test) == res["test"]
    assert "teachers.0.0.weight" in torch.load(out / "teacher.pt", weights_only=True)

    # interrupted after the first epoch's checkpoint, then resumed: the same result
    part = tmp_path / "part"
    calls = {"n": 0}
    evaluate = train_module.evaluate_mtl

    def interrupt(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(train_module, "evaluate_mtl", interrupt)
    rc, cap = _run(capsys, *argv, "--out", str(part))
    assert rc == 130 and "interrupted" in cap.err
    monkeypatch.undo()
    assert (part / "checkpoint.pt").exists() and not (part / "results.json").exists()
    rc, cap = _run(capsys, *argv, "--out", str(part), "--json")
    assert rc == 0, cap.err
    resumed = json.loads(cap.out)
    assert resumed["test"] == res["test"] and len(resumed["history"]) == 2
    # a finished run needs --force; another configuration is not resumed
    rc, cap = _run(capsys, *argv, "--out", str(part))
    assert rc == 2 and "--force" in cap.err
    (part / "results.json").unlink()
    rc, cap = _run(capsys, *argv[:-1], "0.5", "--out", str(part))
    assert rc == 2 and "written by another run" in cap.err


def test_text_output_kd_and_taobao(shared_data, capsys):
    rc, cap = _run(capsys, *SYN, "--backbone", "shared", "--distill", "kd", "--epochs", "1")
    assert rc == 0, cap.err
    assert "distill kd" in cap.out and "Multi-AUC" in cap.out and "test " in cap.out
    rc, cap = _run(capsys, "mtl", "train", "--dataset", "taobao", "--data-root",
                   str(shared_data), "--backbone", "ple", "--epochs", "1", "--json")  # fmt: skip
    assert rc == 0, cap.err
    res = json.loads(cap.out)
    assert res["tasks"] == ["cart_fav", "buy"]
    assert sum(res["data"][k]["rows"] for k in ("train", "valid", "test")) == 3329


def test_errors(tmp_path, capsys):
    rc, cap = _run(capsys, *SYN, "--backbone", "mmoe", "--alpha", "0.3")
    assert rc == 2 and "--alpha applies to --distill" in cap.err
    rc, cap = _run(capsys, "mtl", "train", "--dataset", str(tmp_path / "nope"), "--backbone",
                   "mmoe")  # fmt: skip
    assert rc == 2 and "neither" in cap.err
    rc, cap = _run(capsys, "mtl", "train", "--dataset", str(tmp_path), "--backbone", "mmoe")
    assert rc == 2 and "UserBehavior" in cap.err
    bad = tmp_path / "UserBehavior.csv"
    bad.write_text("1,2,3,click,100\n")
    rc, cap = _run(capsys, "mtl", "train", "--dataset", str(bad), "--backbone", "mmoe")
    assert rc == 2 and "line 1" in cap.err and "pv|cart|fav|buy" in cap.err
    for wrong in (["--backbone", "cgc"], ["--backbone", "mmoe", "--distill", "dml"],
                  ["--backbone", "mmoe", "--epochs", "0"]):  # fmt: skip
        with pytest.raises(SystemExit):
            main(["mtl", "train", "--dataset", "synthetic", *wrong])
