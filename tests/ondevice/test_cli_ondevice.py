"""``graphrec ondevice finetune`` end to end on the synthetic drift data."""

import json

import pytest

from graphrec.cli import main


def test_finetune_json(capsys):
    argv = ["ondevice", "finetune", "--dataset", "synthetic", "--model", "lr",
            "--correction", "soft", "--epochs", "1", "--json", "--threads", "1"]  # fmt: skip
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["methods"]) == {"cloud", "naive", "soft"}
    assert out["config"] == {"layers": "all", "epochs": 1, "lr": 0.1, "batch_size": None}
    for m in out["methods"].values():
        assert 0.0 <= m["gauc"] <= 1.0 and m["logloss"] > 0
    assert (
        sum(b["users"] for b in out["buckets"]["soft"]) == out["methods"]["soft"]["users_with_both"]
    )
    assert out["users"] == 400


def test_finetune_text(capsys):
    argv = ["ondevice", "finetune", "--dataset", "synthetic", "--model", "lr",
            "--epochs", "1", "--layers", "dense", "--threads", "1"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "naive" in out and "cloud" in out and "GAUC gain" in out


@pytest.mark.parametrize(
    "extra",
    [["--correction", "bogus"], ["--layers", "top"], ["--lr", "0"], ["--runtime", "tflite"]],
)
def test_bad_options(extra, capsys):
    argv = ["ondevice", "finetune", "--dataset", "synthetic", "--model", "lr", *extra]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
