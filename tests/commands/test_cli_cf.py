"""``graphrec cf train`` / ``graphrec cf recommend`` on small logs."""

from __future__ import annotations

import json

import pytest
import torch

from graphrec.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _train(capsys, log_file, out, *extra):
    return run(
        capsys, "cf", "train", "--dataset", str(log_file), "--backbone", "mf",
        "--dim", "8", "--epochs", "3", "--batch-size", "64", "--lr", "0.05", "--patience", "0",
        "--out", str(out), "--json", "--quiet", *extra,
    )  # fmt: skip


def test_train_then_recommend(capsys, log_file, tmp_path):
    out = tmp_path / "model.pt"
    code, stdout, _ = _train(
        capsys, log_file, out, "--loss", "hdccf", "--temperature", "0.2", "--logq", "1"
    )
    assert code == 0
    result = json.loads(stdout)
    assert result["epochs"] == 3 and 1 <= result["best_epoch"] <= 3
    assert set(result["test"]) == {"recall@20", "ndcg@20", "precision@20"}
    assert 0.0 <= result["test"]["recall@20"] <= 1.0
    state = torch.load(out, weights_only=True)
    assert state["config"]["loss"] == "hdccf" and state["config"]["logq"] == 1.0
    assert state["data"]["dataset"] == str(log_file)
    assert (tmp_path / "model.pt.ckpt").exists()

    code, stdout, _ = run(capsys, "cf", "recommend", str(out), "--users", "u0,u3", "-k", "5")
    assert code == 0
    rows = [line.split("\t") for line in stdout.strip().splitlines()]
    assert [r[0] for r in rows] == ["u0", "u3"]
    assert all(len(r[1].split()) == 5 for r in rows)

    code, stdout, _ = run(capsys, "cf", "recommend", str(out), "--users", "u0", "--json")
    rec = json.loads(stdout)["u0"]
    assert len(rec["items"]) == 20 and rec["scores"] == sorted(rec["scores"], reverse=True)
    # Known (train + validation) items of u0 are excluded; with --include-known they can appear.
    known = {
        line.split(",")[1] for line in log_file.read_text().splitlines() if line.startswith("u0,")
    }
    from graphrec.commands.cf import _graph

    graph = _graph(state["data"])
    seen = (graph.train + graph.valid)[[list(graph.user_ids).index("u0")]].indices
    assert not set(graph.item_ids[seen]) & set(rec["items"])
    assert set(graph.item_ids[seen]) <= known
    code, stdout, _ = run(
        capsys, "cf", "recommend", str(out), "--users", "u0", "--json", "-k", "30",
        "--include-known",
    )  # fmt: skip
    assert set(graph.item_ids[seen]) <= set(json.loads(stdout)["u0"]["items"])


def test_train_is_seeded_and_resumes(capsys, log_file, tmp_path):
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    _, out_a, _ = _train(capsys, log_file, a, "--seed", "3")
    _, out_b, _ = _train(capsys, log_file, b, "--seed", "3")
    assert json.loads(out_a)["test"] == json.loads(out_b)["test"]
    # Refuses to overwrite; --force retrains; an existing checkpoint is resumed (no new epoch).
    code, _, err = _train(capsys, log_file, a, "--seed", "3")
    assert code == 2 and "--force" in err
    a.unlink()
    code, out, _ = _train(capsys, log_file, a, "--seed", "3")
    assert code == 0 and json.loads(out)["test"] == json.loads(out_a)["test"]
    code, out, _ = _train(capsys, log_file, a, "--seed", "3", "--force", "--lr", "0.01")
    assert code == 0 and json.loads(out)["test"] != json.loads(out_a)["test"]
    # LightGCN's user-uniform BPR sampler is a CLI option and lands in the model file
    code, out, _ = _train(capsys, log_file, b, "--force", "--loss", "bpr", "--sampling", "user")
    assert code == 0 and torch.load(b, weights_only=True)["config"]["sampling"] == "user"


def test_errors_are_one_line(capsys, log_file, tmp_path, monkeypatch):
    monkeypatch.delenv("GRAPHREC_DATA", raising=False)
    code, _, err = run(
        capsys, "cf", "train", "--dataset", str(tmp_path / "nope.csv"), "--out", "x.pt"
    )
    assert code == 2 and "nope.csv" in err and err.count("\n") == 1
    code, _, err = run(capsys, "cf", "train", "--dataset", "gowalla", "--out", "x.pt")
    assert code == 2 and "data root" in err
    code, _, err = run(capsys, "cf", "recommend", str(tmp_path / "none.pt"), "--users", "1")
    assert code == 2 and "none.pt" in err
    bad = tmp_path / "bad.pt"
    bad.write_text("not a model")
    code, _, err = run(capsys, "cf", "recommend", str(bad), "--users", "1")
    assert code == 2 and "not a model file" in err
    out = tmp_path / "m.pt"
    assert _train(capsys, log_file, out)[0] == 0
    code, _, err = run(capsys, "cf", "recommend", str(out), "--users", "u0,zz")
    assert code == 2 and "zz" in err
    with pytest.raises(SystemExit):
        main(["cf", "train", "--dataset", str(log_file), "--out", "x.pt", "--lr", "-1"])


def test_train_ml100k_named_dataset(capsys, shared_data, tmp_path):
    out = tmp_path / "ml.pt"
    code, stdout, _ = run(
        capsys, "cf", "train", "--dataset", "ml-100k", "--data-root", str(shared_data),
        "--backbone", "lightgcn", "--layers", "2", "--dim", "16", "--epochs", "2",
        "--batch-size", "4096", "--lr", "0.01", "--out", str(out), "--json", "--quiet",
    )  # fmt: skip
    assert code == 0
    assert json.loads(stdout)["test"]["recall@20"] > 0.0
    code, stdout, _ = run(capsys, "cf", "recommend", str(out), "--users", "1,943", "-k", "3")
    assert [line.split("\t")[0] for line in stdout.strip().splitlines()] == ["1", "943"]
    assert all(1 <= int(i) <= 1682 for line in stdout.splitlines() for i in line.split()[1:])
