"""``graphrec vfl train --out``: an interrupted run resumes from its checkpoint with the numbers
of an uninterrupted one; another configuration is refused."""

from __future__ import annotations

import json

import pytest

from graphrec.cli import main
from graphrec.federated.vertical import SplitLearner

pytest.importorskip("opacus")

ARGS = [
    "vfl", "train", "--dataset", "synthetic", "--parties", "3", "--epochs", "4",
    "--batch-size", "64", "--dp-sigma", "0.5", "--dp-target", "both", "--compress", "q8",
    "--staleness", "40", "--centralized", "--seed", "3", "--json",
]  # fmt: skip


def _results(capsys) -> dict:
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    out.pop("train_s")
    return out


def test_interrupted_run_resumes_with_the_same_numbers(tmp_path, capsys, monkeypatch):
    assert main([*ARGS, "--out", str(tmp_path / "whole")]) == 0
    whole = _results(capsys)
    step, calls = SplitLearner.step, []

    def interrupted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2 * 25 + 7:  # 25 steps per epoch: killed in the third epoch
            raise KeyboardInterrupt
        return step(self, *args, **kwargs)

    monkeypatch.setattr(SplitLearner, "step", interrupted)
    assert main([*ARGS, "--out", str(tmp_path / "cut")]) == 130  # as Ctrl-C
    monkeypatch.setattr(SplitLearner, "step", step)
    assert (tmp_path / "cut" / "checkpoint.pt").exists()
    assert not (tmp_path / "cut" / "results.json").exists()
    capsys.readouterr()
    assert main([*ARGS, "--out", str(tmp_path / "cut")]) == 0
    resumed = _results(capsys)
    assert resumed == whole  # AUCs, losses, bytes, epsilon, cache hits, centralized run
    assert whole["epsilon"] > 0 and whole["stragglers"]["cached"] > 0
    assert json.loads((tmp_path / "cut" / "results.json").read_text())["test_auc"] == (
        whole["test_auc"]
    )


def test_resume_refuses_another_configuration(tmp_path, capsys, monkeypatch):
    def stop(self, *args, **kwargs):
        raise KeyboardInterrupt

    step = SplitLearner.step
    monkeypatch.setattr(SplitLearner, "step", stop)
    assert main([*ARGS, "--out", str(tmp_path)]) == 130
    monkeypatch.setattr(SplitLearner, "step", step)
    (tmp_path / "checkpoint.pt").write_bytes(b"")  # no epoch finished: write one by hand
    other = [*ARGS[:-1], "--lr", "0.1", "--out", str(tmp_path)]
    assert main(other) == 2
    err = capsys.readouterr().err
    assert "written by another run: lr 0.01 -> 0.1" in err and "--force starts over" in err
    assert main([*ARGS, "--out", str(tmp_path)]) == 2  # the same run, a broken checkpoint
    assert "truncated, corrupt or not a vfl training checkpoint" in capsys.readouterr().err
    assert main([*other, "--force"]) == 0
