"""Hostile inputs and faults of ``graphrec cf train`` / ``graphrec fl run``: output paths checked
up front, options checked on parse, corrupt or foreign checkpoints refused in one line, resume
refused when the configuration or data changed, and atomic checkpoints under ``kill -9``."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from graphrec.cli import main
from graphrec.federated import FedAvg, Simulator
from graphrec.federated.partition import synthetic_leaf
from graphrec.federated.tasks import SoftmaxRegressionTask
from graphrec.graphs import build_bipartite
from graphrec.io.checkpoint import CheckpointError, fingerprint, save_checkpoint
from graphrec.models.cf import CFConfig, CFTrainer

REPO = Path(__file__).resolve().parents[2]
FL = ["fl", "run", "--dataset", "synthetic", "--devices", "12", "--clients-per-round", "3",
      "--eval-every", "1", "--quiet", "--json", "--seed", "1"]  # fmt: skip


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def log_file(tmp_path):
    """A 30-user x 20-item rating log."""
    rng = np.random.default_rng(0)
    lines = ["user,item,rating"]
    for u in range(30):
        lines += [f"u{u},i{i},5" for i in rng.choice(20, size=6, replace=False)]
    path = tmp_path / "log.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def cf_train(capsys, log_file, out, *extra):
    return cli(
        capsys, "cf", "train", "--dataset", str(log_file), "--backbone", "mf", "--dim", "8",
        "--epochs", "2", "--batch-size", "64", "--patience", "0", "--out", str(out), "--quiet",
        "--json", *extra,
    )  # fmt: skip


class Evil:
    """Unpickling this would run a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def hostile_files(folder: Path, good: Path) -> dict[str, Path]:
    """Checkpoint look-alikes built here: truncated, random bytes, malicious pickles (raw and
    inside a torch zip), another file type, an empty file, and loadable copies of ``good`` with
    odd values (a record that is no dict, tensors of other shapes, values of other types)."""
    marker = folder / "pwned"
    files = {
        "truncated": good.read_bytes()[: good.stat().st_size // 2],
        "random": np.random.default_rng(0).bytes(3000),
        "pickle": pickle.dumps({"round": Evil(marker)}),
        "genre": b"0|unknown\n1|Action\n",
        "empty": b"",
    }
    paths = {}
    for name, content in files.items():
        paths[name] = folder / f"{name}.pt"
        paths[name].write_bytes(content)
    paths["torch-pickle"] = folder / "torch-pickle.pt"
    torch.save({"round": Evil(marker), "state": {}}, paths["torch-pickle"])
    # loadable dicts with the right keys but odd values
    real = torch.load(good, weights_only=True)
    for name, change in {
        "no-dict": {"config": 5},
        "odd-state": {"state": {"w": torch.zeros(2)}, "model": {"w": torch.zeros(2)}},
        "odd-types": {"round": "x", "epoch": [1], "history": 3, "optimizer": None},
    }.items():
        paths[name] = folder / f"{name}.pt"
        torch.save({**real, **change}, paths[name])
    return paths


@pytest.mark.parametrize("command", ["cf", "fl"])
def test_corrupt_checkpoints_are_refused_in_one_line(capsys, recwarn, tmp_path, log_file, command):
    good = tmp_path / "good.pt"
    if command == "cf":
        assert cf_train(capsys, log_file, good)[0] == 0
        good = good.with_name("good.pt.ckpt")
    else:
        assert cli(capsys, *FL, "--rounds", "1", "--checkpoint", str(good))[0] == 0
    for name, path in hostile_files(tmp_path, good).items():
        if command == "cf":
            path = path.rename(path.with_name(path.name + ".ckpt"))
            code, _, err = cf_train(capsys, log_file, path.with_name(path.name[: -len(".ckpt")]))
        else:
            code, _, err = cli(capsys, *FL, "--rounds", "2", "--checkpoint", str(path))
        assert code == 2, name
        assert err.count("\n") == 1 and err.startswith("graphrec: error: "), err
        assert str(path) in err and "--force starts over" in err, err
        if command == "cf" and name != "odd-types":  # as model files (odd-types has a model)
            code, _, err = cli(capsys, "cf", "recommend", str(path), "--users", "u0")
            assert code == 2 and err.count("\n") == 1 and str(path) in err, (name, err)
    marker = tmp_path / "pwned"
    assert not marker.exists()  # the malicious pickles never ran ...
    pickle.loads(pickle.dumps(Evil(marker)))
    assert marker.exists()  # ... though a plain unpickling would have run them
    assert not [w for w in recwarn if "torch" in w.filename]  # no stray warning lines either
    # --force starts over and replaces the bad file with a real checkpoint
    if command == "cf":
        assert cf_train(capsys, log_file, tmp_path / "random.pt", "--force")[0] == 0
    else:
        code, out, _ = cli(capsys, *FL, "--rounds", "1", "--checkpoint", str(path), "--force")
        assert code == 0 and json.loads(out)["resumed_from_round"] == 0
        code, out, _ = cli(capsys, *FL, "--rounds", "2", "--checkpoint", str(path))
        assert code == 0 and json.loads(out)["resumed_from_round"] == 1


def test_fl_resume_with_other_settings_lists_the_differences(capsys, tmp_path):
    ckpt = tmp_path / "sim.pt"
    assert cli(capsys, *FL, "--rounds", "1", "--checkpoint", str(ckpt))[0] == 0
    before = ckpt.read_bytes()
    code, _, err = cli(
        capsys, *FL, "--rounds", "2", "--checkpoint", str(ckpt), "--strategy", "fedavg",
        "--lr", "0.05", "--local-steps", "3",
    )  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and "--force starts over" in err
    for diff in ("strategy.class 'FedSubAvg' -> 'FedAvg'", "local.lr 0.1 -> 0.05",
                 "local.local_steps 10 -> 3"):  # fmt: skip
        assert diff in err, err
    code, _, err = cli(capsys, *FL, "--rounds", "2", "--checkpoint", str(ckpt), "--devices", "14")
    assert code == 2 and "data.devices 12 -> 14" in err and "data.task" in err
    code, _, err = cli(capsys, *FL[:-1], "2", "--rounds", "2", "--checkpoint", str(ckpt))
    assert code == 2 and "seed 1 -> 2" in err
    assert ckpt.read_bytes() == before  # a refused resume leaves the checkpoint alone
    code, out, _ = cli(capsys, *FL, "--rounds", "2", "--checkpoint", str(ckpt))
    assert code == 0 and json.loads(out)["resumed_from_round"] == 1
    code, _, err = cli(capsys, *FL, "--rounds", "1", "--checkpoint", str(ckpt))
    assert code == 2 and "at round 2, past --rounds 1" in err


def test_cf_resume_with_other_settings_lists_the_differences(capsys, tmp_path, log_file):
    out = tmp_path / "m.pt"
    assert cf_train(capsys, log_file, out)[0] == 0
    out.unlink()  # keep m.pt.ckpt: the next runs resume from it
    code, _, err = cf_train(capsys, log_file, out, "--lr", "0.01", "--reg", "0")
    assert code == 2 and err.count("\n") == 1 and "--force starts over" in err
    assert "lr 0.001 -> 0.01" in err and "reg 0.0001 -> 0.0" in err, err
    other = tmp_path / "other.csv"
    other.write_text(log_file.read_text().replace("u0,", "u99,"))
    log_file.write_text(other.read_text())  # same path, other content
    code, _, err = cf_train(capsys, log_file, out)
    assert code == 2 and "data.graph" in err
    # more epochs (or another patience / CPU budget) continue the run
    code, _, err = cf_train(capsys, log_file, out, "--force")
    assert code == 0
    out.unlink()
    code, stdout, _ = cf_train(capsys, log_file, out, "--epochs", "3")
    assert code == 0 and json.loads(stdout)["epochs"] == 3


def test_output_paths_are_checked_and_created_up_front(capsys, tmp_path, log_file):
    out = tmp_path / "new" / "deeper" / "m.pt"
    assert cf_train(capsys, log_file, out)[0] == 0
    assert out.is_file() and out.with_name("m.pt.ckpt").is_file()
    ckpt, res = tmp_path / "new2" / "c.pt", tmp_path / "new3" / "r.json"
    code, _, _ = cli(capsys, *FL, "--rounds", "1", "--checkpoint", str(ckpt), "--out", str(res))
    assert code == 0 and ckpt.is_file() and json.loads(res.read_text())["devices"] == 12
    afile = tmp_path / "afile"
    afile.write_text("x")
    started = time.perf_counter()
    for argv in (
        [*FL, "--rounds", "50", "--checkpoint", str(tmp_path)],
        [*FL, "--rounds", "50", "--checkpoint", str(afile / "c.pt")],
        [*FL, "--rounds", "50", "--out", str(afile / "r.json")],
        [*FL, "--rounds", "50", "--out", str(res)],  # exists, no --force
        [*FL, "--rounds", "50", "--out", str(ckpt), "--checkpoint", str(ckpt), "--force"],
    ):
        code, _, err = cli(capsys, *argv)
        assert code == 2 and err.count("\n") == 1, (argv, err)
    for bad in (tmp_path, afile / "m.pt"):
        code, _, err = cf_train(capsys, log_file, bad, "--epochs", "50")
        assert code == 2 and err.count("\n") == 1, err
    assert time.perf_counter() - started < 10  # refused before any training


@pytest.mark.parametrize(
    "argv, message",
    [
        (["cf", "--reg", "-1"], "--reg must be >= 0"),
        (["cf", "--reg", "nan"], "--reg must be a finite number"),
        (["cf", "--tau-plus", "inf", "--loss", "hdccf"], "--tau-plus must be a finite number"),
        (["cf", "--logq", "-0.5", "--loss", "hdccf"], "--logq must be >= 0"),
        (["cf", "--valid-fraction", "1"], "--valid-fraction must be < 1"),
        (["cf", "--seed", "-3"], "--seed must be >= 0"),
        (["cf", "--patience", "-1"], "--patience must be >= 0"),
        (["fl", "--seed", "-1"], "--seed must be >= 0"),
        (["fl", "--dropout", "nan"], "--dropout must be a finite number"),
        (["fl", "--lr", "inf"], "--lr must be a finite number > 0"),
    ],
)
def test_bad_numbers_are_refused_on_parse(capsys, argv, message):
    base = (
        ["cf", "train", "--dataset", "x.csv", "--out", "x.pt"]
        if argv[0] == "cf"
        else ["fl", "run", "--dataset", "synthetic"]
    )
    with pytest.raises(SystemExit) as exc:
        main([*base, *argv[1:]])
    assert exc.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--strategy", "fedavg", "--prox-mu", "0.1"], "--prox-mu applies to --strategy fedprox"),
        (["--strategy", "fedprox", "--coef-clip", "2"], "--coef-clip applies to --strategy fedsub"),
        (["--backbone", "mf", "--layers", "2"], "--layers applies to --backbone lightgcn"),
        (["--loss", "bpr", "--temperature", "0.2"], "--temperature applies to --loss infonce"),
        (["--loss", "infonce", "--logq", "1"], "--logq applies to --loss hdccf"),
        (["--fold", "2"], "--fold applies to --dataset ml-100k"),
        (["--loss", "bpr", "--negatives", "0"], "--negatives must be >= 1 with --loss bpr"),
    ],
)
def test_options_that_do_not_apply_are_refused(capsys, tmp_path, log_file, argv, message):
    if argv[0] == "--strategy":
        code, _, err = cli(capsys, *FL, "--rounds", "1", *argv)
    else:
        code, _, err = cf_train(capsys, log_file, tmp_path / "m.pt", *argv)
    assert code == 2 and err.startswith(f"graphrec: error: {message}"), err
    assert err.count("\n") == 1 and not (tmp_path / "m.pt.ckpt").exists()


def _sim(devices: int = 12, seed: int = 1, lr: float = 0.1) -> Simulator:
    from graphrec.federated import LocalConfig
    from graphrec.federated.experiment import holdout

    syn = synthetic_leaf(1.0, 1.0, devices, seed=0)
    train, test = holdout(syn.parts, 0.2, 0)
    task = SoftmaxRegressionTask(syn.x, syn.y, train, test)
    info = {"task": fingerprint(task)}
    return Simulator(
        task, FedAvg(), clients_per_round=3, seed=seed, local=LocalConfig(lr=lr), data_info=info
    )


def test_simulator_and_trainer_refuse_other_runs(tmp_path):
    ckpt = tmp_path / "sim.pt"
    sim = _sim()
    sim.run(1, checkpoint=ckpt)
    with pytest.raises(CheckpointError, match=r"local.lr 0.1 -> 0.2; .*seed 1 -> 2"):
        _sim(seed=2, lr=0.2).load(ckpt)
    with pytest.raises(CheckpointError, match=r"data.task '\w+' -> '\w+'; data.devices 12 -> 13"):
        _sim(devices=13).load(ckpt)
    resumed = _sim()
    resumed.load(ckpt)
    assert resumed.round == 1 and resumed.history == sim.history

    rng = np.random.default_rng(0)
    train = sp.csr_array((rng.random((20, 15)) < 0.3).astype(np.float32))
    graph = build_bipartite(train, valid_fraction=0.2, seed=0)
    other = build_bipartite(train[np.roll(np.arange(20), 1)], valid_fraction=0.2, seed=0)
    cfg = {"backbone": "mf", "embedding_dim": 4, "batch_size": 16, "patience": 0}
    CFTrainer(graph, CFConfig(epochs=1, **cfg)).fit(checkpoint=tmp_path / "cf.pt")
    with pytest.raises(CheckpointError, match=r"^checkpoint \S+cf.pt was written by another run: "
                       r"data.graph '\w+' -> '\w+'$"):  # fmt: skip
        CFTrainer(other, CFConfig(epochs=2, **cfg)).fit(checkpoint=tmp_path / "cf.pt")
    trainer = CFTrainer(graph, CFConfig(epochs=2, **cfg)).fit(checkpoint=tmp_path / "cf.pt")
    assert trainer.epoch == 2 and len(trainer.history) == 2


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    save_checkpoint({"round": 1}, path)

    def crash(obj, f):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        save_checkpoint({"round": 2}, path)
    assert torch.load(path, weights_only=True) == {"round": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left


def test_kill_9_mid_run_leaves_a_loadable_checkpoint(capsys, tmp_path):
    """SIGKILL a ``graphrec fl run`` subprocess while it checkpoints every round; the file is
    always a whole checkpoint (the old one or the new one), and the run resumes from it."""
    ckpt = tmp_path / "sim.pt"
    argv = [*FL, "--rounds", "100000", "--checkpoint", str(ckpt), "--eval-every", "1000"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "graphrec.cli", *argv], env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not ckpt.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert ckpt.exists(), "no checkpoint written"
        rounds, stop = [], time.monotonic() + 1.5
        while time.monotonic() < stop:  # read while it is rewritten every round
            rounds.append(torch.load(ckpt, weights_only=True)["round"])
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    saved = torch.load(ckpt, weights_only=True)
    assert rounds == sorted(rounds) and rounds[-1] > rounds[0] >= 1
    assert saved["round"] >= rounds[-1]
    target = str(saved["round"] + 1)
    code, out, err = cli(capsys, *argv[:-6], "--rounds", target, *argv[-4:])
    assert code == 0, err
    assert json.loads(out)["resumed_from_round"] == saved["round"]


def test_fingerprint_hashes_data_not_layout_or_modules():
    dense = np.array([[2.0, 0.0, 1.0]])
    unsorted = sp.csr_array((np.array([1.0, 2.0]), np.array([2, 0]), np.array([0, 2])), (1, 3))
    assert (
        fingerprint(sp.csr_array(dense))
        == fingerprint(unsorted)
        == fingerprint(sp.coo_array(dense))
    )
    assert unsorted.indices.tolist() == [2, 0]  # the caller's matrix is left as it was
    assert fingerprint(sp.csr_array(dense * 2)) != fingerprint(sp.csr_array(dense))
    assert fingerprint(np.array(["a", "b"], dtype=object)) != fingerprint(
        np.array(["a", "c"], dtype=object)
    )
    a, b = _sim().task, _sim().task
    torch.nn.init.zeros_(b.model.weight)  # modules (initial weights) and caches do not count
    b._cache = {"x": 1}
    assert fingerprint(a) == fingerprint(b)
    b.y = b.y.clone()
    b.y[0] += 1
    assert fingerprint(a) != fingerprint(b)
