"""Per-user fine-tuning in MNN (``graphrec.ondevice.runtime``) equals the torch protocol on the
parameters MNN trains: scores and parameters to 1e-5 after 20 SGD steps, with label
correction (logit offset, flips by score), minibatches in the same order, weighted extra rows
(CoDA), and the CLI."""

from __future__ import annotations

import copy
import json
import os
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from graphrec.cli import main
from graphrec.errors import ConfigError, MissingExtraError
from graphrec.export.onnx import quiet_stdout
from graphrec.models.ctr.defaults import train_recipe
from graphrec.models.ctr.experiment import build_ctr_model, load_ctr_dataset
from graphrec.ondevice import (
    FineTuneConfig,
    MNNRuntime,
    OnDeviceData,
    correct_labels,
    finetune_users,
    run_finetune,
)
from graphrec.registry import CTR_MODELS

torch.set_num_threads(1)

ATOL = 1e-5
STEPS = 20
LR = 0.1


@pytest.fixture(scope="module")
def data():
    """Synthetic CTR tables cut to 6 users (one with only positives): local (train) and test
    rows, the global share."""
    ctr = load_ctr_dataset("synthetic", seed=0)
    local, test = ctr.split.train, ctr.split.test
    users = np.intersect1d(local.categorical["user"], test.categorical["user"])
    share = np.array([local.labels[local.categorical["user"] == u].mean() for u in users])
    order = np.argsort(share)
    picked = users[np.r_[order[:2], order[len(order) // 2], order[-3:]]]  # both tails
    cut = [t.take(np.flatnonzero(np.isin(t.categorical["user"], picked))) for t in (local, test)]
    cut[0].labels[cut[0].categorical["user"] == picked[-1]] = 1.0  # local share 1
    return ctr, *cut, float(local.labels.mean())


@pytest.fixture(scope="module")
def runtimes(export_extra, data):
    """The five CTR models with trained-like weights, each exported once for MNN."""
    ctr, local = data[0], data[1]
    out = {}
    for name in CTR_MODELS.names():
        model = build_ctr_model(name, ctr, seed=1).eval()
        gen = torch.Generator().manual_seed(3)
        with torch.no_grad():  # trained-like values (MNN's parameters are matched by value)
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=gen) * 0.2)
        out[name] = MNNRuntime(model, local)
    return out


def test_every_ctr_model_converts_with_its_dense_parameters(runtimes):
    assert sorted(runtimes) == sorted(CTR_MODELS.names())
    for name, rt in runtimes.items():
        dense = {n for n, _ in rt.model.named_parameters() if not n.startswith("embedding.")}
        twin = rt.torch_twin()
        twin_dense = {n for n, _ in twin.named_parameters() if not n.startswith("embedding.")}
        assert twin_dense == set(rt.tuned), name
        if name == "din":  # the converter folds PReLU slopes into the operator
            frozen = {n for n, m in rt.model.named_modules() if isinstance(m, torch.nn.PReLU)}
            assert dense - set(rt.tuned) == {f"{n}.weight" for n in frozen} and frozen
        else:
            assert set(rt.tuned) == dense, name  # free scalar biases included (LR: only that)
        assert twin_dense and dict(twin.state_dict()).keys() == rt.model.state_dict().keys()
    assert runtimes["lr"].tuned == ["bias"] and runtimes["lr"].constants == ["model.bias"]


@pytest.mark.parametrize("correction", ["offset", "flip"])
@pytest.mark.parametrize("name", CTR_MODELS.names())
def test_scores_equal_torch_after_20_steps(runtimes, data, name, correction):
    _, local, test, g = data
    rt = runtimes[name]
    kw = dict(global_share=g, correction=correction, epochs=STEPS, lr=LR, seed=2)
    got = rt.finetune_users(local, test, **kw)
    ref = finetune_users(rt.torch_twin(), local, test, layers="dense", **kw)
    for key in ("users", "local_size", "local_share", "user", "labels"):
        np.testing.assert_array_equal(getattr(got, key), getattr(ref, key))
    np.testing.assert_allclose(got.scores, ref.scores, atol=ATOL, rtol=0)
    cloud = rt.finetune_users(local, test, **(kw | {"epochs": 0}))
    moved = np.abs(got.scores - cloud.scores)
    assert moved.max() > 1e-2  # fine-tuning changed the scores
    assert got.seconds.shape == got.users.shape and (got.seconds > 0).all()
    if correction == "offset":  # a user with local share 0 or 1 has an infinite offset
        tails = (got.local_share == 0) | (got.local_share == 1)
        assert tails.any()
        for u in got.users[tails]:
            assert moved[got.user == u].max() == 0.0  # no update


def test_minibatches_in_the_same_order(runtimes, data):
    _, local, test, g = data
    rt = runtimes["din"]
    kw = dict(global_share=g, correction="random", epochs=3, lr=LR, batch_size=4, seed=5,
              chunk_rows=60)  # fmt: skip
    got = rt.finetune_users(local, test, **kw)
    ref = finetune_users(rt.torch_twin(), local, test, layers="dense", **kw)
    np.testing.assert_allclose(got.scores, ref.scores, atol=ATOL, rtol=0)
    other = rt.finetune_users(local, test, **(kw | {"seed": 6}))
    assert np.abs(other.scores - got.scores).max() > 1e-3  # the order matters


@pytest.mark.parametrize("batch_size, correction", [(None, "offset"), (5, "flip")])
def test_extra_weighted_rows_as_in_torch(runtimes, data, batch_size, correction):
    """CoDA's augmented rows: weighted extra rows per device, same loss and order."""
    ctr, local, test, g = data
    valid = ctr.split.valid
    extra = valid.take(
        np.flatnonzero(np.isin(valid.categorical["user"], local.categorical["user"]))
    )
    weights = np.random.default_rng(0).uniform(0.0, 1.5, extra.num_rows).astype(np.float32)
    weights[::4] = 0.0  # dropped rows
    rt = runtimes["din"]
    kw = dict(global_share=g, correction=correction, epochs=4, lr=LR, batch_size=batch_size,
              extra=extra, extra_weights=weights, seed=4)  # fmt: skip
    got = rt.finetune_users(local, test, **kw)
    ref = finetune_users(rt.torch_twin(), local, test, layers="dense", **kw)
    np.testing.assert_allclose(got.scores, ref.scores, atol=ATOL, rtol=0)
    alone = rt.finetune_users(local, test, **(kw | {"extra": None, "extra_weights": None}))
    assert np.abs(alone.scores - got.scores).max() > 1e-3  # the extra rows count


@pytest.mark.parametrize("name", CTR_MODELS.names())
def test_parameters_equal_torch_sgd_after_20_steps(runtimes, data, name):
    """One device, rule D: MNN's parameters equal torch SGD on the same parameters."""
    _, local, test, g = data
    rt = runtimes[name]
    codes = local.categorical["user"]
    user = next(u for u in np.unique(codes) if 0 < local.labels[codes == u].mean() < 1)
    rows = np.flatnonzero(codes == user)
    batch = rt.model.features.batch(local, rows)
    y = torch.as_tensor(local.labels[rows], dtype=torch.float32)
    c = correct_labels(y, g, "offset")
    assert c.offset != 0.0
    tuner = rt._tuner(LR)
    twin = copy.deepcopy(rt.torch_twin())
    params = dict(twin.named_parameters())
    trained = [params[n] for n in rt.tuned]
    opt = torch.optim.SGD(trained, lr=LR)
    for _ in range(STEPS):
        tuner.step(batch, c.labels, offset=c.offset)
        opt.zero_grad()
        F.binary_cross_entropy_with_logits(twin(batch) + c.offset, c.labels.float()).backward()
        opt.step()
    assert tuner.steps == STEPS
    for n, value, p in zip(rt.tuned, tuner.parameters, trained):
        np.testing.assert_allclose(value.reshape(-1), p.detach().numpy().reshape(-1),
                                   atol=ATOL, rtol=0, err_msg=n)  # fmt: skip
    moved = [np.abs(v.reshape(-1) - p.detach().numpy().reshape(-1)).max()
             for v, p in zip(match_values(rt), trained)]  # fmt: skip
    assert max(moved) > 1e-3  # the parameters moved away from the cloud model's
    test_batch = rt.model.features.batch(test, np.flatnonzero(test.categorical["user"] == user))
    with torch.no_grad():
        np.testing.assert_allclose(tuner.predict(test_batch), twin(test_batch).numpy(),
                                   atol=ATOL, rtol=0)  # fmt: skip


def match_values(rt: MNNRuntime) -> list[np.ndarray]:
    """The cloud model's values of the parameters MNN trains."""
    params = dict(rt.model.named_parameters())
    return [params[n].detach().numpy() for n in rt.tuned]


def test_run_finetune_in_mnn_equals_torch_for_lr(runtimes, data):
    """LR: MNN trains exactly finetune_users' dense set (the bias), so run_finetune's results
    in both runtimes agree."""
    ctr, local, _, _ = data
    cut = OnDeviceData(ctr, local, train_recipe("synthetic"))
    config = FineTuneConfig("dense", 3, LR, None)
    model = runtimes["lr"].model
    mnn = run_finetune(model, cut, correction="offset", config=config, runtime="mnn")
    ref = run_finetune(model, cut, correction="offset", config=config)
    assert (mnn["runtime"], ref["runtime"]) == ("mnn", "torch")
    assert mnn["users"] == ref["users"] == 6
    for method in ("cloud", "naive", "offset"):
        for metric in ("gauc", "auc", "logloss"):
            got, want = mnn["methods"][method][metric], ref["methods"][method][metric]
            assert got == pytest.approx(want, abs=1e-6), (method, metric)
    with pytest.raises(ConfigError, match="layers must be 'dense'"):
        run_finetune(model, cut, config=FineTuneConfig("all", 1, LR, None), runtime="mnn")
    with pytest.raises(ConfigError, match="runtime must be one of"):
        run_finetune(model, cut, config=config, runtime="tflite")


def test_cli_runtime_mnn(export_extra, capsys):
    argv = ["ondevice", "finetune", "--dataset", "synthetic", "--model", "lr", "--epochs", "0",
            "--runtime", "mnn", "--threads", "1", "--json"]  # fmt: skip
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["runtime"] == "mnn" and out["config"]["layers"] == "dense"
    assert set(out["methods"]) == {"cloud", "naive"} and out["users"] == 400


def test_quiet_stdout_drops_native_output(capfd):
    """``import MNN`` prints the CPU's features on file descriptor 1; require_extra imports
    under quiet_stdout so that ``--json`` output stays JSON."""
    with quiet_stdout():
        os.write(1, b"native\n")
    os.write(1, b"after\n")
    assert capfd.readouterr().out == "after\n"


def test_cli_runtime_mnn_refuses_all_layers(capsys):
    argv = ["ondevice", "finetune", "--dataset", "synthetic", "--model", "lr", "--runtime", "mnn",
            "--layers", "all"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--layers must be dense" in err


def test_missing_export_extra_is_one_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "MNN", None)  # import MNN raises ImportError
    with pytest.raises(MissingExtraError, match="'export' extra"):
        MNNRuntime(None, None)
    argv = ["ondevice", "finetune", "--dataset", "synthetic", "--model", "lr", "--runtime", "mnn"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'export' extra" in err and "--runtime mnn" in err


def test_run_coda_in_mnn_equals_torch(export_extra):
    """CoDA's four methods fine-tuned in MNN score as in torch on the same parameters (LR:
    MNN trains its dense part, the bias, as torch's ``layers="dense"`` does)."""
    from dataclasses import replace

    from graphrec.ondevice.coda import CODA_DEFAULTS, run_coda
    from graphrec.ondevice.synthetic import drift_ctr

    data = drift_ctr(num_users=12, num_items=40, seed=0)
    cloud = build_ctr_model("lr", data.ctr, seed=0).eval()
    config = replace(CODA_DEFAULTS, k_factor=2.0, steps=30, key="fields")
    finetune = FineTuneConfig(layers="dense", epochs=3, lr=LR)
    out = {rt: run_coda(cloud, data, config=config, finetune=finetune, runtime=rt)
           for rt in ("torch", "mnn")}  # fmt: skip
    for name in ("cloud", "local", "unfiltered", "coda"):
        torch_m, mnn_m = out["torch"]["methods"][name], out["mnn"]["methods"][name]
        assert mnn_m["logloss"] == pytest.approx(torch_m["logloss"], abs=1e-5)
        assert mnn_m["auc"] == pytest.approx(torch_m["auc"], abs=1e-4)
    tuned = out["torch"]["methods"]
    assert tuned["local"]["logloss"] != tuned["cloud"]["logloss"]
    with pytest.raises(ConfigError, match="dense"):
        run_coda(cloud, data, config=config, finetune=replace(finetune, layers="all"),
                 runtime="mnn")  # fmt: skip
