"""``graphrec fl run`` and ``graphrec fl ode`` on tiny settings."""

from __future__ import annotations

import json

import pytest

from graphrec.cli import main


def run_json(capsys, argv: list[str]) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


SYN = ["fl", "run", "--dataset", "synthetic", "--devices", "20", "--clients-per-round", "4",
       "--eval-every", "1", "--quiet", "--seed", "3"]  # fmt: skip


def test_fl_run_writes_results_and_resumes(tmp_path, capsys):
    out = tmp_path / "res.json"
    full = run_json(capsys, [*SYN, "--rounds", "4", "--out", str(out), "--json"])
    assert json.loads(out.read_text()) == full
    assert full["devices"] == 20 and full["metric"] == "accuracy"
    assert [r for r, _ in full["curve"]] == [0, 1, 2, 3, 4]
    assert full["curve"][-1][1] > full["curve"][0][1]
    assert full["bytes_up"] == 4 * 4 * (60 * 10 + 10) * 4  # 4 rounds x 4 clients, dense model
    # an existing --out is not overwritten without --force
    assert main([*SYN, "--rounds", "4", "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    # interrupted after 2 rounds, resumed from the checkpoint: the same curve
    ckpt = tmp_path / "sim.pt"
    run_json(capsys, [*SYN, "--rounds", "2", "--checkpoint", str(ckpt), "--json"])
    resumed = run_json(capsys, [*SYN, "--rounds", "4", "--checkpoint", str(ckpt), "--json"])
    assert resumed["resumed_from_round"] == 2
    assert resumed["curve"] == full["curve"]


def test_fl_run_strategies_on_movielens(shared_data, capsys):
    root = shared_data / "movielens" / "ml-100k"
    base = ["fl", "run", "--dataset", "ml-100k", "--data-root", str(root), "--devices", "40",
            "--rounds", "2", "--clients-per-round", "10", "--quiet", "--json"]  # fmt: skip
    sub = run_json(capsys, [*base, "--strategy", "fedsubavg"])
    avg = run_json(capsys, [*base, "--strategy", "fedavg"])
    assert sub["metric"] == avg["metric"] == "auc" and sub["devices"] == 40
    assert sub["bytes_up"] == avg["bytes_up"]  # same clients, same sparse payloads
    assert sub["curve"][0] == avg["curve"][0] and sub["curve"][-1] != avg["curve"][-1]


def test_fl_run_errors(capsys, monkeypatch):
    monkeypatch.delenv("GRAPHREC_DATA", raising=False)
    assert main(["fl", "run", "--dataset", "ml-100k", "--quiet"]) == 2
    assert "--data-root" in capsys.readouterr().err
    assert main(["fl", "run", "--dataset", "synthetic", "--model", "din", "--quiet"]) == 2
    assert "not available" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["fl", "run", "--dataset", "synthetic", "--dropout", "1.5"])


def test_fl_data_root_is_one_option(shared_data, capsys, monkeypatch):
    """--data-root takes the data root or the dataset folder; --root still works, with a warning;
    $GRAPHREC_DATA is the default."""
    base = ["fl", "run", "--dataset", "ml-100k", "--devices", "20", "--rounds", "1",
            "--clients-per-round", "5", "--quiet", "--json"]  # fmt: skip
    monkeypatch.delenv("GRAPHREC_DATA", raising=False)
    parent = run_json(capsys, [*base, "--data-root", str(shared_data)])
    folder = run_json(capsys, [*base, "--data-root", str(shared_data / "movielens" / "ml-100k")])
    assert parent["curve"] == folder["curve"]
    assert main([*base, "--root", str(shared_data)]) == 0
    captured = capsys.readouterr()
    assert "--root is deprecated; use --data-root" in captured.err
    assert json.loads(captured.out)["curve"] == parent["curve"]
    monkeypatch.setenv("GRAPHREC_DATA", str(shared_data))
    assert run_json(capsys, base)["curve"] == parent["curve"]


def test_fl_ode_compares_selectors_with_rs(tmp_path, capsys, monkeypatch):
    out = tmp_path / "ode.json"
    argv = ["fl", "ode", "--devices", "20", "--rounds", "20", "--clients-per-round", "2",
            "--selector", "rs", "ode", "fd", "--quiet", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "rs" in text and "ode" in text and "speedup" in text
    payload = json.loads(out.read_text())
    res = payload["results"]
    assert set(res) == {"rs", "ode", "fd"} and res["rs"]["speedup_vs_rs"] == 1.0
    assert res["rs"]["bytes_per_sample"] == 0 and res["ode"]["bytes_per_sample"] == 610 * 4
    assert all(0 <= r["final_accuracy"] <= 1 for r in res.values())
    monkeypatch.delenv("GRAPHREC_DATA", raising=False)
    assert main(["fl", "ode", "--dataset", "uci-heart", "--quiet"]) == 2
    assert "--data-root" in capsys.readouterr().err
