"""``graphrec vfl train``: results, bytes of the compressed run, epsilon, errors."""

from __future__ import annotations

import json
import math

import pytest

from graphrec.cli import main

BASE = ["vfl", "train", "--dataset", "synthetic", "--epochs", "1", "--batch-size", "100"]


def _json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_train_writes_results_and_compression_cuts_bytes(tmp_path, capsys):
    plain = _json(capsys, [*BASE, "--parties", "3", "--out", str(tmp_path), "--json"])
    assert json.loads((tmp_path / "results.json").read_text()) == plain
    assert json.loads((tmp_path / "config.json").read_text()) == plain["config"]
    assert plain["data"] == {"train": 1600, "test": 400, "features": {"p0": 4, "p1": 4, "p2": 4}}
    assert 0.5 < plain["test_auc"] <= 1 and plain["epsilon"] is None
    # 16 steps x 2 remote parties x 100 rows x 8 floats, each way
    assert plain["train_bytes_by_kind"]["embedding"] == 16 * 2 * 100 * 8 * 4
    plain_q8 = [*BASE, "--parties", "3", "--compress", "q8:entropy_coding=false", "--json"]
    q8 = _json(capsys, plain_q8)
    assert q8["train_bytes_by_kind"]["embedding"] == 16 * 2 * (100 * 8 + 8)
    coded = _json(capsys, [*BASE, "--parties", "3", "--compress", "q8", "--json"])
    assert coded["loss_history"] == q8["loss_history"]  # deflating the codes is lossless
    assert coded["train_bytes_by_kind"]["embedding"] < q8["train_bytes_by_kind"]["embedding"]
    again = _json(capsys, [*BASE, "--parties", "3", "--json"])
    assert again["loss_history"] == plain["loss_history"]  # seeded
    dp = _json(capsys, [*BASE, "--dp-sigma", "1.0", "--json"])
    assert 0 < dp["epsilon"] < float("inf") and dp["delta"] == 1e-5
    assert main([*BASE, "--out", str(tmp_path)]) != 0  # a finished run is not overwritten


def test_breast_cancer_text_output(capsys):
    pytest.importorskip("sklearn")
    assert main(["vfl", "train", "--dataset", "breast-cancer", "--parties", "2", "--epochs",
                 "3", "--quiet"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "455 train / 114 test rows, 2 parties" in out and "test AUC" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--parties", "1"], "--parties must be >= 2"), (["--compress", "q3"], "--compress")],
)
def test_bad_options(argv, message, capsys):
    with pytest.raises(SystemExit):
        main([*BASE, *argv])
    assert message in capsys.readouterr().err


def test_uci_heart_from_data_root(shared_data, capsys):
    argv = ["vfl", "train", "--dataset", "uci-heart", "--data-root", str(shared_data)]
    out = _json(capsys, [*argv, "--parties", "3", "--epochs", "3", "--json"])
    assert out["data"] == {"train": 500, "test": 126, "features": {"p0": 5, "p1": 4, "p2": 4}}
    assert out["config"]["data_root"] == str(shared_data)
    assert all(math.isfinite(v) for v in out["loss_history"]) and 0.5 < out["test_auc"] <= 1


def test_ml100k_user_and_item_parties_labels_at_platform(shared_data, capsys):
    argv = ["vfl", "train", "--dataset", "ml-100k", "--data-root", str(shared_data)]
    out = _json(capsys, [*argv, "--epochs", "1", "--batch-size", "4000", "--json"])
    assert out["data"] == {"train": 80000, "test": 20000, "features": {"user": 4, "item": 21}}
    # the platform holds no features: 20 steps x 2 parties x 4000 rows x 8 floats up
    assert out["train_bytes_by_kind"]["embedding"] == 20 * 2 * 4000 * 8 * 4
    assert 0.6 < out["test_auc"] <= 1
    assert main([*argv, "--parties", "3"]) != 0
    assert "--parties must be 2" in capsys.readouterr().err


@pytest.mark.parametrize("dataset", ["synthetic", "uci-heart"])
def test_centralized_matches_split_without_dp_or_compression(dataset, shared_data, capsys):
    argv = ["vfl", "train", "--dataset", dataset, "--data-root", str(shared_data)]
    argv += ["--parties", "3", "--epochs", "2", "--batch-size", "64", "--centralized", "--json"]
    out = _json(capsys, argv)
    central = out["centralized"]
    assert central["test_auc"] == pytest.approx(out["test_auc"], abs=1e-5)
    assert central["train_auc"] == pytest.approx(out["train_auc"], abs=1e-5)
    assert central["loss_history"] == pytest.approx(out["loss_history"], abs=1e-5)
    noisy = _json(capsys, [*argv, "--dp-sigma", "1.0"])
    assert noisy["centralized"] == central  # the baseline sees no noise
    assert noisy["loss_history"] != pytest.approx(central["loss_history"], abs=1e-5)
    assert _json(capsys, argv[:-2] + ["--json"])["centralized"] is None


def test_staleness_serves_late_parties_from_the_cache(capsys):
    plain = _json(capsys, [*BASE, "--json"])
    assert plain["stragglers"] is None
    sync = _json(capsys, [*BASE, "--staleness", "0", "--json"])
    assert sync["loss_history"] == plain["loss_history"]  # bound 0: every late party waited for
    assert sync["stragglers"]["cached"] == 0 < sync["stragglers"]["waits"]
    # 16 steps of 100 rows in one epoch: no row recurs, so even a large bound cannot hit
    assert _json(capsys, [*BASE, "--staleness", "100", "--json"])["stragglers"]["cached"] == 0
    two = _json(capsys, [*BASE, "--epochs", "2", "--staleness", "100", "--json"])
    st = two["stragglers"]
    assert st["cached"] > 0 and st["cached"] + st["waits"] == st["late"]
    # every step served from the cache saves one batch message and one embedding up
    full = _json(capsys, [*BASE, "--epochs", "2", "--json"])
    embedding = 100 * 8 * 4
    assert two["train_bytes_by_kind"]["embedding"] == (
        full["train_bytes_by_kind"]["embedding"] - st["cached"] * embedding
    )


def test_attack_strong_without_protection_and_weak_with_gradient_noise(capsys):
    pytest.importorskip("sklearn")
    argv = ["vfl", "train", "--dataset", "breast-cancer", "--epochs", "3", "--attack", "--json"]
    plain = _json(capsys, argv)
    assert plain["config"]["attack"] is True and list(plain["attack"]) == ["p1"]
    assert plain["attack"]["p1"]["direction_auc"] > 0.9  # one known positive per batch suffices
    protect = ["--dp-sigma", "4", "--dp-clip", "0.01"]
    noisy = _json(capsys, [*argv, "--dp-target", "gradient", *protect])
    assert noisy["config"]["dp_target"] == "gradient" and 0 < noisy["epsilon"] < 5
    assert max(noisy["attack"]["p1"].values()) < 0.6
    both = _json(capsys, [*argv, "--dp-target", "both", *protect])
    assert both["epsilon"] > noisy["epsilon"]  # two releases per step
    assert main([*argv, "--compress", "q8"]) != 0
    assert "--attack reads uncompressed gradients" in capsys.readouterr().err


def test_hidden_sizes_set_the_cut(capsys):
    default = _json(capsys, [*BASE, "--json"])
    assert default["config"]["bottom_hidden"] == [16] and default["config"]["top_hidden"] == [16]
    # bottom 4 -> 16 -> 8, top 16 -> 16 -> 1
    assert default["parameters"] == {"bottoms": {"p0": 216, "p1": 216}, "top": 289}
    assert default["config"]["dp_target"] is None and default["attack"] is None
    deep = _json(capsys, [*BASE, "--bottom-hidden", "8,8", "--top-hidden", "", "--json"])
    # bottom 4 -> 8 -> 8 -> 8, top 16 -> 1 (linear)
    assert deep["parameters"] == {"bottoms": {"p0": 184, "p1": 184}, "top": 17}
    assert deep["config"]["bottom_hidden"] == [8, 8] and deep["config"]["top_hidden"] == []
    with pytest.raises(SystemExit):
        main([*BASE, "--top-hidden", "16,0"])
    assert "--top-hidden must be >= 1" in capsys.readouterr().err
