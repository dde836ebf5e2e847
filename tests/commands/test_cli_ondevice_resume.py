"""``graphrec ondevice finetune --out``: an interrupted run resumes to the uninterrupted run's
results, finished methods are not run again, another configuration is refused."""

from __future__ import annotations

import copy
import json
import shutil

import pytest
import torch

from graphrec.cli import main
from graphrec.io.checkpoint import load_checkpoint, save_checkpoint

RUN = ["ondevice", "finetune", "--dataset", "synthetic", "--model", "lr", "--correction",
       "flip", "--epochs", "2", "--threads", "1", "--json"]  # fmt: skip
SCORES = ("users", "local_size", "local_share", "user", "labels", "scores")


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The run folder of an uninterrupted run and its printed JSON."""
    full = tmp_path_factory.mktemp("ondevice") / "full"
    assert main([*RUN, "--out", str(full)]) == 0
    return full, json.loads((full / "results.json").read_text())


def test_resume_equals_uninterrupted_run(finished, tmp_path, capsys):
    full, expected = finished[0], copy.deepcopy(finished[1])
    names = sorted(p.name for p in full.iterdir())
    assert names == ["cloud.pt", "config.json", "method-cloud.pt", "method-flip.pt",
                     "method-naive.pt", "results.json"]  # fmt: skip

    # interrupted after the naive method: the cloud model and two methods are on disk
    part = tmp_path / "part"
    shutil.copytree(full, part)
    (part / "results.json").unlink()
    (part / "method-flip.pt").unlink()
    naive = load_checkpoint(part / "method-naive.pt", keys=("scores",), what="method result")
    save_checkpoint(naive | {"seconds": 123.0}, part / "method-naive.pt")  # marks reuse
    code, out, _ = cli(capsys, *RUN, "--out", str(part))
    assert code == 0
    resumed = json.loads(out)
    assert resumed["methods"]["naive"].pop("seconds") == 123.0  # read back, not run again
    expected["methods"]["naive"].pop("seconds")
    for report in (resumed, expected):
        report["methods"]["flip"].pop("seconds")  # the one method run again
    assert resumed == expected  # the cloud model's training seconds come from the checkpoint
    a = load_checkpoint(full / "method-flip.pt", keys=("scores",), what="method result")
    b = load_checkpoint(part / "method-flip.pt", keys=("scores",), what="method result")
    for key in SCORES:
        assert torch.equal(a["scores"][key], b["scores"][key]), key
    assert a["scores"]["scores"].dtype == torch.float32
    assert a["scores"]["users"].dtype == torch.int64


def test_other_configuration_refused(finished, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(finished[0], out)
    code, _, err = cli(capsys, *RUN, "--out", str(out))
    assert code == 2 and "holds a finished run" in err and "--force" in err

    (out / "results.json").unlink()
    code, _, err = cli(capsys, *RUN[:-3], "--epochs", "3", "--correction", "soft", "--json",
                       "--out", str(out))  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and "--force starts over" in err, err
    assert "epochs 2 -> 3" in err and "correction 'flip' -> 'soft'" in err, err

    code, text, _ = cli(capsys, *RUN[:-1], "--out", str(out))  # same run, text output
    assert code == 0 and "resuming from" in text and "finished methods: cloud, naive, flip" in text
    assert json.loads((out / "results.json").read_text()) == finished[1]

    (out / "results.json").unlink()
    (out / "method-naive.pt").write_bytes(b"not a checkpoint")
    code, _, err = cli(capsys, *RUN, "--out", str(out))
    assert code == 2 and err.count("\n") == 1 and "method-naive.pt" in err, err
    assert "--force starts over" in err
