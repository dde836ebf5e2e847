"""``graphrec ondevice coda --out``: a run interrupted after the cloud model resumes to the
uninterrupted run's results without training the cloud model again; another configuration is
refused with the differences, a finished run without --force."""

from __future__ import annotations

import copy
import json
import shutil

import pytest

from graphrec.cli import main
from graphrec.ondevice import coda, experiment

RUN = ["ondevice", "coda", "--dataset", "synthetic", "--model", "lr", "--key", "fields",
       "--epochs", "1", "--k-factor", "1", "--top-factor", "0", "--tau", "0.3", "--threads",
       "1", "--quiet", "--json"]  # fmt: skip


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def metrics(report: dict) -> dict:
    """``report`` without its timings (seconds of the methods, the cloud model, overheads)."""
    report = copy.deepcopy(report)
    report.pop("cloud_train_s")
    for m in report["methods"].values():
        m.pop("seconds")
    for name in ("classifier_s", "finetune_s"):
        report["overhead"].pop(name)
    return report


def with_options(**options: str) -> list[str]:
    """``RUN`` with ``--name value`` for each option (replaced or added)."""
    argv = list(RUN)
    for name, value in options.items():
        option = "--" + name.replace("_", "-")
        if option in argv:
            argv[argv.index(option) + 1] = value
        else:
            argv += [option, value]
    return argv


def counting(monkeypatch) -> list:
    """The cloud model's trainings from now on (each call's arguments)."""
    calls, real = [], experiment.train_cloud

    def train_cloud(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(experiment, "train_cloud", train_cloud)
    return calls


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The run folder of an uninterrupted run and its results."""
    full = tmp_path_factory.mktemp("coda") / "full"
    assert main([*RUN, "--out", str(full)]) == 0
    return full, json.loads((full / "results.json").read_text())


@pytest.fixture
def no_training(monkeypatch):
    """Counts the cloud model's trainings (and refuses them)."""
    calls = []

    def train_cloud(*args, **kwargs):
        calls.append(args)
        raise AssertionError("the cloud model was trained again")

    monkeypatch.setattr(experiment, "train_cloud", train_cloud)
    return calls


def test_files_and_config(finished):
    full, report = finished
    assert sorted(p.name for p in full.iterdir()) == ["cloud.pt", "config.json", "results.json"]
    config = json.loads((full / "config.json").read_text())
    assert config["coda"]["tau"] == 0.3 and config["coda"]["top_factor"] is None
    assert config["finetune"]["epochs"] == 1 and config["runtime"] == "torch"
    assert set(report["methods"]) == {"cloud", "local", "unfiltered", "coda"}


def test_interrupted_after_cloud_resumes_without_training(finished, tmp_path, capsys,
                                                          monkeypatch):  # fmt: skip
    expected = finished[1]
    run = tmp_path / "run"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(coda, "run_coda", interrupted)
        code, _, err = cli(capsys, *RUN, "--out", str(run))
    assert code == 130 and "interrupted" in err
    assert sorted(p.name for p in run.iterdir()) == ["cloud.pt", "config.json"]

    calls = counting(monkeypatch)
    code, out, _ = cli(capsys, *RUN, "--out", str(run))
    assert code == 0 and calls == []  # the saved cloud model, not trained again
    resumed = json.loads(out)
    assert resumed == json.loads((run / "results.json").read_text())
    assert metrics(resumed) == metrics(expected)


def test_results_deleted_gives_the_same_json(finished, tmp_path, capsys, no_training):
    full, expected = finished
    part = tmp_path / "part"
    shutil.copytree(full, part)
    (part / "results.json").unlink()
    code, out, _ = cli(capsys, *RUN, "--out", str(part))
    assert code == 0 and no_training == []
    resumed = json.loads(out)
    assert resumed["cloud_train_s"] == expected["cloud_train_s"]  # read from the checkpoint
    assert metrics(resumed) == metrics(expected)

    (part / "results.json").unlink()
    code, text, _ = cli(capsys, *RUN[:-1], "--out", str(part))  # text output
    assert code == 0 and f"resuming from {part} (cloud model saved)" in text


def test_other_configuration_and_finished_run_refused(finished, tmp_path, capsys, no_training):
    out = tmp_path / "run"
    shutil.copytree(finished[0], out)
    code, _, err = cli(capsys, *RUN, "--out", str(out))
    assert code == 2 and "holds a finished run" in err and "--force" in err

    (out / "results.json").unlink()
    argv = with_options(tau="0.4", epochs="2", classifier="mlp", budget_bytes="999")
    code, _, err = cli(capsys, *argv, "--out", str(out))
    assert code == 2 and err.count("\n") == 1 and "--force starts over" in err, err
    for diff in ("coda.tau 0.3 -> 0.4", "finetune.epochs 1 -> 2",
                 "coda.classifier 'lr' -> 'mlp'", "coda.budget_bytes 1048576 -> 999"):  # fmt: skip
        assert diff in err, err
    others = (("model", "din", "model 'lr' -> 'din'"), ("seed", "1", "seed 0 -> 1"),
              ("layers", "dense", "finetune.layers 'all' -> 'dense'"))  # fmt: skip
    for option, value, diff in others:
        code, _, err = cli(capsys, *with_options(**{option: value}), "--out", str(out))
        assert code == 2 and diff in err, err
    assert not (out / "results.json").exists()


def test_force_starts_over(finished, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    shutil.copytree(finished[0], out)
    calls = counting(monkeypatch)
    code, text, _ = cli(capsys, *RUN, "--force", "--out", str(out))
    assert code == 0 and len(calls) == 1
    assert metrics(json.loads(text)) == metrics(finished[1])
