"""``graphrec cf train --method gf-cf|bspm`` and ``graphrec cf recommend`` on its output."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from graphrec.cli import main
from graphrec.models.cf import GraphFilterCF, GraphFilterConfig
from graphrec.models.cf.data import load_cf_graph


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_gf_cf_train_then_recommend(capsys, log_file, tmp_path):
    out = tmp_path / "gf.pt"
    argv = ("cf", "train", "--dataset", str(log_file), "--method", "gf-cf", "--k", "8",
            "--out", str(out), "--json", "--quiet")  # fmt: skip
    code, stdout, _ = run(capsys, *argv)
    assert code == 0
    result = json.loads(stdout)
    assert result["method"] == "gf-cf" and result["k"] == 8 and result["alpha"] == 0.2
    state = torch.load(out, weights_only=True)
    assert state["config"]["method"] == "gf-cf" and state["test"] == result["test"]
    assert not (tmp_path / "gf.pt.ckpt").exists()
    # the same numbers as the Python API on the same graph (fitted on train + validation)
    graph = load_cf_graph(str(log_file))
    model = GraphFilterCF(GraphFilterConfig(k=8)).fit(graph, include_valid=True)
    assert result["test"] == model.evaluate("test")

    code, stdout, _ = run(capsys, "cf", "recommend", str(out), "--users", "u0,u3", "-k", "5",
                          "--json")  # fmt: skip
    assert code == 0
    recs = json.loads(stdout)
    assert list(recs) == ["u0", "u3"]
    users = [int(np.flatnonzero(graph.user_ids == u)[0]) for u in ("u0", "u3")]
    items, _ = model.recommend(users, k=5)
    known = graph.train + graph.valid
    for user, index, row in zip(("u0", "u3"), users, items):
        assert recs[user]["items"] == graph.item_ids[row].tolist()
        assert not set(graph.item_ids[known[[index]].indices]) & set(recs[user]["items"])

    # export has no network to convert: one clear line, not an unknown-field error
    code, _, err = run(capsys, "export", str(out), "--to", "onnx")
    assert code == 2 and "training-free" in err and err.count("\n") == 1


def test_bspm_solver_and_merge_options(capsys, log_file, tmp_path):
    out = tmp_path / "bspm.pt"
    code, stdout, _ = run(
        capsys, "cf", "train", "--dataset", str(log_file), "--method", "bspm", "--k", "6",
        "--solver", "euler", "--merge", "late", "--sharpen-time", "0.5", "--out", str(out),
        "--json", "--quiet",
    )  # fmt: skip
    assert code == 0
    result = json.loads(stdout)
    assert (result["solver"], result["merge"]) == ("euler", "late")
    config = GraphFilterConfig("bspm", k=6, sharpen_time=0.5, solver="euler", merge="late")
    model = GraphFilterCF(config).fit(load_cf_graph(str(log_file)), include_valid=True)
    assert result["test"] == model.evaluate("test")


def test_bspm_tune(capsys, log_file, tmp_path):
    out = tmp_path / "bspm.pt"
    code, stdout, _ = run(
        capsys, "cf", "train", "--dataset", str(log_file), "--method", "bspm", "--k", "6",
        "--tune", "--out", str(out), "--json", "--quiet",
    )  # fmt: skip
    assert code == 0
    result = json.loads(stdout)
    assert result["k"] == 6 and result["sharpen_steps"] == 1
    assert result["solver"] == GraphFilterConfig("bspm").solver
    assert "valid_recall@20" in result and 0.0 <= result["valid_recall@20"] <= 1.0
    code, stdout, _ = run(capsys, "cf", "recommend", str(out), "--users", "u1", "-k", "3")
    assert code == 0 and stdout.startswith("u1\t")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--method", "gf-cf", "--epochs", "3"), "--epochs applies to trained models"),
        (("--method", "gf-cf", "--backbone", "mf"), "--backbone applies to trained models"),
        (("--method", "bspm", "--lr", "0.1"), "--lr applies to trained models"),
        (("--method", "gf-cf", "--sharpen-time", "1"), "--sharpen-time applies to --method bspm"),
        (("--method", "gf-cf", "--solver", "rk4"), "--solver applies to --method bspm"),
        (("--method", "gf-cf", "--merge", "late"), "--merge applies to --method bspm"),
        (("--merge", "late"), "--merge applies to --method gf-cf or bspm"),
        (("--method", "bspm", "--tune", "--sharpen-steps", "2"), "one sharpening step"),
        (("--k", "8"), "--k applies to --method gf-cf or bspm"),
        (("--tune",), "--tune applies to --method"),
    ],
)
def test_options_that_do_not_apply_are_refused(capsys, log_file, tmp_path, extra, message):
    out = tmp_path / "m.pt"
    code = main(["cf", "train", "--dataset", str(log_file), "--out", str(out), *extra])
    _, err = capsys.readouterr()
    assert code != 0 and message in err
    assert not out.exists()
