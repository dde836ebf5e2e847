"""ODE in its own setting (issue 22): the LEAF-style generator, the paper preset and the
official-behaviour options of StreamTask."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from graphrec.cli import main as cli_main
from graphrec.federated import LocalConfig, stream_simulator
from graphrec.federated.experiment import ODE_PRESETS, paper_velocity, stream_task
from graphrec.federated.ode import per_sample_gradients, sample_values
from graphrec.federated.partition import lognormal_sizes, synthetic_leaf, synthetic_shared
from graphrec.federated.stream import StreamDevice, StreamTask, make_store


def _linear_accuracy(data, across_devices: bool) -> float:
    """Held-out accuracy of one softmax-regression model fitted (L-BFGS) on half the rows, or
    on the first half of the devices and tested on the others (``across_devices``)."""
    x, y = torch.as_tensor(data.x), torch.as_tensor(data.y)
    if across_devices:
        half = len(data.parts) // 2
        fit = torch.as_tensor(np.concatenate(data.parts[:half]))
        held = torch.as_tensor(np.concatenate(data.parts[half:]))
    else:
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
        fit, held = order[: len(y) // 2], order[len(y) // 2 :]
    model = torch.nn.Linear(x.shape[1], int(y.max()) + 1)
    opt = torch.optim.LBFGS(model.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(model(x[fit]), y[fit])
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float((model(x[held]).argmax(1) == y[held]).float().mean())


# --------------------------------------------------------------------------- generator


def test_shared_labelling_model_is_learnable_by_one_linear_model():
    shared = synthetic_shared(60, size_mu=5, size_sigma=0.5, seed=0)
    assert np.bincount(shared.y, minlength=10).min() > 0
    assert _linear_accuracy(shared, across_devices=False) > 0.92
    # one model carries over to unseen devices only when they share the labelling model
    noisy = synthetic_shared(60, size_mu=5, size_sigma=0.5, model_noise=3.0, seed=0)
    fedprox = synthetic_leaf(1.0, 1.0, 60, samples_per_device=150, seed=0)
    across = _linear_accuracy(shared, across_devices=True)
    assert across > 0.6
    assert _linear_accuracy(noisy, across_devices=True) < across - 0.3
    assert _linear_accuracy(fedprox, across_devices=True) < across - 0.3


def test_device_sizes_follow_the_lognormal_parameters():
    sizes = lognormal_sizes(
        np.random.default_rng(3), 20_000, 6.0, 0.5, min_samples=1, max_samples=10**9
    )
    logs = np.log(sizes - 1 + 0.5)  # int() floors: +0.5 recentres
    assert logs.mean() == pytest.approx(6.0, abs=0.02)
    assert logs.std() == pytest.approx(0.5, abs=0.02)
    capped = lognormal_sizes(np.random.default_rng(3), 500, 3.0, 2.0, min_samples=5, max_samples=80)
    assert capped.min() >= 5 and capped.max() == 80
    # the generator's device sizes are these draws (first use of its seeded generator)
    syn = synthetic_shared(40, size_mu=3.0, size_sigma=1.0, min_samples=5, max_samples=200, seed=7)
    expected = lognormal_sizes(
        np.random.default_rng(7), 40, 3.0, 1.0, min_samples=5, max_samples=200
    )
    assert [p.size for p in syn.parts] == expected.tolist()
    assert np.concatenate(syn.parts).tolist() == list(range(syn.y.size))
    with pytest.raises(ValueError, match="min_samples"):
        lognormal_sizes(np.random.default_rng(0), 3, 1.0, 1.0, min_samples=10, max_samples=5)


def test_generator_is_seeded():
    a = synthetic_shared(10, size_mu=3, size_sigma=1, seed=4)
    b = synthetic_shared(10, size_mu=3, size_sigma=1, seed=4)
    c = synthetic_shared(10, size_mu=3, size_sigma=1, seed=5)
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    assert not np.array_equal(a.y[: c.y.size], c.y[: a.y.size])
    with pytest.raises(ValueError, match="model_noise"):
        synthetic_shared(3, model_noise=-1.0)


def test_paper_velocity():
    parts = [np.arange(n) for n in (100, 600, 4000, 4100)]
    assert paper_velocity(parts).tolist() == [1, 2, 10, 10]
    assert paper_velocity(parts, divisor=100).tolist() == [1, 6, 40, 41]


# --------------------------------------------------------------------------- options


@pytest.fixture
def make_task(split_streams) -> Callable[..., StreamTask]:
    """``make_task(selector, **options)``: 6 devices streaming 30 samples each, |B| = 6."""

    def make(selector: str, **options: str) -> StreamTask:
        data = synthetic_shared(6, dim=5, num_classes=3, size_mu=3.5, min_samples=40, seed=2)
        return stream_task(split_streams(data, 30), selector, buffer_size=6, velocity=3, **options)

    return make


def test_options_are_checked(make_task):
    with pytest.raises(ValueError, match="loss_norm must be one of"):
        make_task("ode", loss_norm="sum")
    with pytest.raises(ValueError, match="estimate_timing"):
        make_task("ode", estimate_timing="late")


def test_gamma_normalised_loss_rescales_the_one_step_update(make_task):
    """One full-store step: sum(gamma l) / sum(gamma) = mean(gamma l) * n / sum(gamma)."""
    local = LocalConfig(lr=0.5, lr_decay=1.0, local_steps=1, batch_size=1000, clip_norm=None)
    deltas = {}
    for norm in ("mean", "gamma"):
        task = make_task("ode", loss_norm=norm)
        sim = stream_simulator(task, clients_per_round=2, local=local, seed=0)
        config = sim.strategy.configure(1, local.for_round(0))
        update = sim.client_update(2, config, 1)
        deltas[norm] = update.dense["weight"]
        dev = sim.client_state[2]["device"]
        labels = dev.y[torch.as_tensor(dev.store.samples())]
        gamma = torch.as_tensor(task.assignment.gamma, dtype=torch.float32)[labels]
    assert gamma.numel() > 1 and not torch.allclose(gamma.sum(), torch.tensor(gamma.numel() * 1.0))
    torch.testing.assert_close(deltas["gamma"], deltas["mean"] * gamma.numel() / gamma.sum())


@pytest.mark.parametrize("timing", ["before", "after"])
def test_estimate_timing(timing, make_task):
    """'after': a device that trained in round 1 values its later arrivals (and re-values its
    store) with g_hat^1, which is its own round-1 upload when it was the only participant."""
    local = LocalConfig(lr=0.5, lr_decay=1.0, local_steps=1, batch_size=1000, clip_norm=None)
    task = make_task("ode", estimate_timing=timing)
    sim = stream_simulator(task, clients_per_round=1, local=local, seed=0)
    state0 = {k: v.clone() for k, v in sim.state.items()}
    g0 = sim.strategy.estimator.estimate.float().clone()
    config = sim.strategy.configure(0, {**local.for_round(0), "round": 0})
    first = sim.client_update(4, config, 0)
    sim.state = sim.strategy.aggregate(sim.state, [first])
    g1 = sim.strategy.estimator.estimate.float().clone()
    dev = sim.client_state[4]["device"]
    idx = torch.as_tensor(dev.arrivals(1))
    upload = per_sample_gradients(task.model, F.cross_entropy, dev.x[idx], dev.y[idx], state=state0)
    torch.testing.assert_close(g1, upload.mean(0).double().float())  # replacement, one report
    config = sim.strategy.configure(1, {**local.for_round(1), "round": 1})
    other = sim.client_update(0, config, 1)  # another device in round 2
    sim.state = sim.strategy.aggregate(sim.state, [other])
    config = sim.strategy.configure(2, {**local.for_round(2), "round": 2})
    sim.client_update(4, config, 2)  # device 4 again in round 3
    if timing == "after":  # values at (w^0, g_hat^1): the model it trained from, g after it
        pair_state, pair_grad = state0, g1
        assert torch.equal(dev.global_grad, g1)
    else:  # values at (w^2, g_hat^2), received at the start of round 3
        pair_state, pair_grad = sim.state, config["global_grad"]
        assert not torch.equal(dev.global_grad, g1)
    entries = dev.store.buffer.entries()
    positions = torch.as_tensor([s for s, _, _ in entries])
    with torch.no_grad():
        for k, v in pair_state.items():
            dict(task.model.named_parameters())[k].copy_(v)
    expected = sample_values(
        task.model, F.cross_entropy, dev.x[positions], dev.y[positions], pair_grad
    )
    got = torch.tensor([v for _, _, v in entries], dtype=expected.dtype)
    torch.testing.assert_close(got, expected)
    assert dev.global_grad is not None and not torch.equal(g0, g1)


@pytest.mark.parametrize("every_round", [False, True])
def test_exact_revalue_every_round(every_round):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    x, y = torch.randn(12, 4), torch.tensor([0, 1] * 6)
    states = {t: {k: torch.randn_like(v) for k, v in model.named_parameters()} for t in (1, 2, 3)}
    grads = {t: torch.randn(10) for t in (1, 2, 3)}
    dev = StreamDevice(
        x,
        y,
        2,
        make_store("ode-exact", 6, slots={0: 3, 1: 3}),
        model,
        F.cross_entropy,
        needs=frozenset({"value"}),
        oracle=lambda t: (states[t], grads[t]),
        revalue_each_round=every_round,
    )
    dev.catch_up(3)
    entries = dev.store.buffer.entries()
    assert len(entries) == 6
    for sample, _, value in entries:
        arrived = sample // 2 + 1  # velocity 2: positions 0-1 in round 1, ...
        t = 3 if every_round else arrived
        g = per_sample_gradients(model, F.cross_entropy, x[[sample]], y[[sample]], state=states[t])
        assert value == pytest.approx(float(g[0] @ grads[t]), rel=1e-5, abs=1e-6)


def test_reservoir_counter_restart(make_task):
    store = make_store("rs", 3, rng=np.random.default_rng(0))
    for s in range(10):
        store.offer(s, 0, {})
    assert store.seen == 10 and set(store.samples()) <= set(range(10))
    store.restart()
    store.offer(10, 0, {})
    store.offer(11, 0, {})
    assert store.samples()[:2] == [10, 11]
    store.offer(12, 0, {})
    assert store.samples() == [10, 11, 12]
    # in a task: the counter restarts at each participation
    local = LocalConfig(lr=0.1, lr_decay=1.0, local_steps=1, batch_size=1000, clip_norm=None)
    for counter, expected in (("cumulative", 9), ("restart", 0)):
        task = make_task("rs", rs_counter=counter)
        sim = stream_simulator(task, clients_per_round=1, local=local, seed=0)
        config = sim.strategy.configure(2, {**local.for_round(2), "round": 2})
        sim.client_update(1, config, 2)
        assert sim.client_state[1]["device"].store.seen == expected


# --------------------------------------------------------------------------- preset


def test_paper_preset_from_the_cli(tmp_path, capsys):
    preset = ODE_PRESETS["paper-synthetic"]
    assert (preset["lr"], preset["epochs"], preset["buffer"]) == (1e-4, 5, 10)
    assert (preset["devices"], preset["clients_per_round"], preset["rounds"]) == (200, 10, 1000)
    out = tmp_path / "ode.json"
    code = cli_main(
        ["fl", "ode", "--preset", "paper-synthetic", "--devices", "12", "--clients-per-round",
         "3", "--rounds", "4", "--eval-every", "2", "--selector", "rs", "ode", "--quiet",
         "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    capsys.readouterr()
    payload = json.loads(out.read_text())
    args = payload["args"]
    assert (args["lr"], args["epochs"], args["buffer"], args["dataset"]) == (
        1e-4, 5, 10, "leaf-synthetic"
    )  # fmt: skip
    assert (args["devices"], args["rounds"], args["eval_every"]) == (12, 4, 2)  # overridden
    assert args["loss_norm"] == "gamma" and args["estimate_timing"] == "after"
    assert args["exact_revalue"] == "every-round" and args["rs_counter"] == "restart"
    assert args["velocity"] is None and payload["clients_per_round"] == 3
    for selector in ("rs", "ode"):
        assert [r for r, _ in payload["results"][selector]["curve"]] == [0, 2, 4]
