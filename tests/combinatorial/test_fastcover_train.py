"""``train_fastcover`` / ``graphrec fastcover train``: output folder, determinism, resume."""

from __future__ import annotations

import json
import shlex
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch

import combinatorial.gnn.train as train_module
from combinatorial.gnn import FastCover, load_pretrained
from combinatorial.gnn.inference import WEIGHTS_DIR
from combinatorial.gnn.loss import imitation_loss
from combinatorial.gnn.train import TrainConfig, fastcover_data_root, train_fastcover
from graphrec.cli import _build_parser, main
from graphrec.errors import GraphrecError

SMALL = {
    "graphs": ["fastcover/directed/train.txt"],
    "val_graphs": ["fastcover/undirected/val.txt"],
    "ks": [1, 8],
    "max_epochs": 3,
    "max_entries": 2000,  # the training graph (~4,000 closure entries) samples its targets
    "progress": False,
}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A data root with one small random training graph and one validation graph."""
    root = tmp_path_factory.mktemp("data")
    edges = np.random.default_rng(0).integers(0, 200, size=(800, 2))
    for name, rows in (("directed/train.txt", edges), ("undirected/val.txt", edges[:400])):
        path = root / "fastcover" / name
        path.parent.mkdir(parents=True)
        np.savetxt(path, rows, fmt="%d")
    return root


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _stable(entry: dict) -> dict:
    """A manifest entry without what depends on the run: the output folder and times."""
    return {k: v for k, v in entry.items() if k not in ("command", "prepare_s", "train_s")}


def test_same_config_same_bytes_and_loadable(root, tmp_path):
    entries = [train_fastcover(2, tmp_path / name, data_root=root, **SMALL) for name in "ab"]
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert sorted(a) == ["fastcover_d2.pt", "weights.json"]  # no checkpoint, no temp file
    assert a["fastcover_d2.pt"] == b["fastcover_d2.pt"]
    assert _stable(entries[0]) == _stable(entries[1])
    manifest = json.loads(a["weights.json"])
    assert manifest["models"]["2"] == entries[0] and "load_pretrained" in manifest["about"]
    assert entries[0]["epochs_run"] == 3 and entries[0]["seed"] == 42
    assert entries[0]["train_graphs"]["train"]["sampled"]
    assert isinstance(load_pretrained(2, weights_dir=tmp_path / "a"), FastCover)


def test_existing_model_needs_force(root, tmp_path):
    first = train_fastcover(2, tmp_path, data_root=root, **SMALL)
    model = (tmp_path / "fastcover_d2.pt").read_bytes()
    with pytest.raises(GraphrecError, match="fastcover_d2.pt exists; pass --force"):
        train_fastcover(2, tmp_path, data_root=root, **SMALL)
    again = train_fastcover(2, tmp_path, data_root=root, force=True, **SMALL)
    assert (tmp_path / "fastcover_d2.pt").read_bytes() == model
    assert _stable(again) == _stable(first)
    (tmp_path / "file").touch()
    with pytest.raises(GraphrecError, match="is a file"):
        train_fastcover(2, tmp_path / "file", data_root=root, **SMALL)


def test_resume_after_interruption_equals_uninterrupted(root, tmp_path, monkeypatch):
    full = train_fastcover(2, tmp_path / "full", data_root=root, **SMALL)
    with monkeypatch.context() as patch:
        _interrupt_in_epoch_1(patch)
        with pytest.raises(KeyboardInterrupt):
            train_fastcover(2, tmp_path / "cut", data_root=root, **SMALL)
    assert sorted(_files(tmp_path / "cut")) == ["fastcover_d2.ckpt"]
    with pytest.raises(GraphrecError, match=r"written by another run: max_epochs 3 -> 4; lr"):
        train_fastcover(
            2, tmp_path / "cut", data_root=root, **{**SMALL, "max_epochs": 4, "lr": 0.1}
        )
    resumed = train_fastcover(2, tmp_path / "cut", data_root=root, **SMALL)
    assert (
        _files(tmp_path / "cut")["fastcover_d2.pt"] == _files(tmp_path / "full")["fastcover_d2.pt"]
    )
    assert _stable(resumed) == _stable(full)


def test_manifest_keeps_other_entries_and_blocks(root, tmp_path):
    old = {
        "about": "shipped",
        "notes": {"kept": True},
        "models": {
            "1": {"file": "fastcover_d1.pt", "sha256": "x"},
            "2": {"alternatives": {"a": 1}},
        },
    }
    (tmp_path / "weights.json").write_text(json.dumps(old))
    entry = train_fastcover(2, tmp_path, data_root=root, **SMALL)
    manifest = json.loads((tmp_path / "weights.json").read_text())
    assert manifest["about"] == "shipped" and manifest["notes"] == {"kept": True}
    assert manifest["models"]["1"] == old["models"]["1"]
    assert manifest["models"]["2"]["alternatives"] == {"a": 1} and entry["alternatives"]
    assert manifest["models"]["2"]["sha256"] == entry["sha256"]
    (tmp_path / "weights.json").write_text("{")
    with pytest.raises(GraphrecError, match="not a weights manifest"):
        train_fastcover(2, tmp_path, data_root=root, force=True, **SMALL)


def test_data_root_resolution_and_errors(root, tmp_path, monkeypatch):
    monkeypatch.delenv("GRAPHREC_DATA", raising=False)
    assert fastcover_data_root(root) == root
    assert fastcover_data_root(root / "fastcover") == root
    with pytest.raises(GraphrecError, match="GRAPHREC_DATA"):
        fastcover_data_root()
    monkeypatch.setenv("GRAPHREC_DATA", str(root))
    assert fastcover_data_root() == root
    with pytest.raises(GraphrecError, match="not found under .*: fastcover/directed/soc-wiki-elec"):
        train_fastcover(1, tmp_path / "out", data_root=tmp_path, progress=False)
    assert not (tmp_path / "out").exists()  # nothing created before the checks
    with pytest.raises(ValueError, match="benchmark test graph"):
        TrainConfig(d=1, graphs=["fastcover/directed/soc-epinions.txt.gz"])
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(d=1, optimizer="adam")


def _interrupt_in_epoch_1(monkeypatch) -> None:
    """Make the third ``validate`` call (untrained, epoch 0, epoch 1) raise KeyboardInterrupt."""
    validate, calls = train_module.validate, []

    def interrupted(*args, **kwargs):
        calls.append(None)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return validate(*args, **kwargs)

    monkeypatch.setattr(train_module, "validate", interrupted)


def test_cli_trains_refuses_and_records_its_command(root, tmp_path, capsys, monkeypatch):
    out = tmp_path / "w"
    argv = ["fastcover", "train", "--d", "2", "--out", str(out), "--data-root", str(root)]
    argv += ["--graphs", *SMALL["graphs"], "--val-graphs", *SMALL["val_graphs"]]
    argv += ["--ks", "1", "8", "--max-epochs", "2", "--max-entries", "2000", "--lr", "0.001"]
    argv += ["--quiet"]
    assert main(argv + ["--json"]) == 0
    entry = json.loads(capsys.readouterr().out)
    assert entry["epochs_run"] == 2 and entry["file"] == "fastcover_d2.pt"
    assert main(argv) == 2
    assert "fastcover_d2.pt exists; pass --force" in capsys.readouterr().err
    assert main(argv + ["--force"]) == 0
    printed = capsys.readouterr().out
    assert entry["sha256"] in printed and "differs from the shipped fastcover_d2.pt" in printed
    # The recorded command parses back to the same config.
    words = shlex.split(entry["command"])
    assert words[:3] == ["graphrec", "fastcover", "train"] and "--lr" in words
    args = _build_parser().parse_args(["fastcover train", *words[3:]])
    config = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
    graphs = {k: SMALL[k] for k in ("graphs", "val_graphs", "ks", "max_entries")}
    assert config == TrainConfig(d=2, **graphs, max_epochs=2, lr=0.001)
    with monkeypatch.context() as patch:
        _interrupt_in_epoch_1(patch)
        assert main([*argv, "--out", str(tmp_path / "cut")]) == 130
    assert "run the same command to resume from" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--debug", "fastcover", "train", "--help"])
    assert exc.value.code == 0 and "usage: graphrec fastcover train" in capsys.readouterr().out


def test_shipped_recipe_reads_the_recorded_data(shared_data):
    """The graphs read as when the shipped weights were trained (else they cannot be reproduced:
    ``graphrec fastcover train --d D --out DIR`` gives their bytes, checked by hand, 20-90 s)."""
    entry = json.loads((WEIGHTS_DIR / "weights.json").read_text())["models"]["1"]
    config = TrainConfig(d=1)
    for path in config.graphs:
        g = train_module.load_graph(shared_data / path, 1)
        recorded = entry["train_graphs"][g.name]
        assert (g.num_nodes, int(g.closure_entries)) == (
            recorded["n"],
            recorded["closure_entries_est"],
        )
    for path in config.val_graphs:
        g = train_module.load_graph(shared_data / path, 1)
        assert g.num_nodes == entry["val_graphs"][g.name]


def test_corrupt_checkpoint_is_one_error_and_force_starts_over(root, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "fastcover_d2.ckpt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(GraphrecError, match="truncated, corrupt or not a FastCover training"):
        train_fastcover(2, out, data_root=root, **SMALL)
    train_fastcover(2, out, data_root=root, force=True, **SMALL)
    assert sorted(_files(out)) == ["fastcover_d2.pt", "weights.json"]


@pytest.mark.parametrize("bad", [["--clip", "nan"], ["--weight-decay", "-1"], ["--ks", "0"],
                                 ["--c", "inf"], ["--train-ks", "1", "-4"],
                                 ["--imitation", "-1"]])  # fmt: skip
def test_cli_refuses_bad_training_numbers(bad, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["fastcover", "train", "--d", "1", "--out", str(tmp_path / "w"), *bad])
    assert bad[0] in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_imitation_loss_hand_case():
    logits = torch.tensor([2.0, 1.0, 0.0])  # standardised (mean 1, std 1): z = [1, 0, -1]
    lse = torch.logsumexp
    first = lse(torch.tensor([1.0, 0.0, -1.0]), 0) - 1.0  # node 0 drawn among {0, 1, 2}
    second = lse(torch.tensor([0.0, -1.0]), 0) - 0.0  # then node 1 among {1, 2}
    torch.testing.assert_close(imitation_loss(logits, torch.tensor([0])), first)
    torch.testing.assert_close(imitation_loss(logits, torch.tensor([0, 1])), (first + second) / 2)
    # invariant to the scale and shift of the logits
    torch.testing.assert_close(imitation_loss(7 * logits - 3, torch.tensor([0, 1])),
                               (first + second) / 2)  # fmt: skip


def test_imitation_and_sketch_options_train_and_are_recorded(root, tmp_path):
    base = train_fastcover(2, tmp_path / "base", data_root=root, **SMALL)
    entry = train_fastcover(
        2, tmp_path / "imit", data_root=root, imitation=0.5, features="sketch", **SMALL
    )
    assert "imitation" not in base["loss"]
    assert entry["loss"]["imitation"] == {"weight": 0.5, "order": "greedy", "k": 1024}
    assert entry["config"]["features"] == "sketch" and entry["sha256"] != base["sha256"]
    assert "--imitation 0.5" in entry["command"] and "--features sketch" in entry["command"]
    with pytest.raises(ValueError, match="imitation must be >= 0"):
        TrainConfig(d=1, imitation=-0.1)
