"""The official initial store of the ODE code (issue 22): stores start full with the last
samples of each device's stream (ODE: per label), valued at the initial model."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from graphrec.federated import LocalConfig, stream_simulator
from graphrec.federated.experiment import ODE_PRESETS, stream_task
from graphrec.federated.ode import per_sample_losses, sample_values
from graphrec.federated.partition import synthetic_shared
from graphrec.federated.stream import INITIAL_VALUE, StreamTask, make_store

LOCAL = LocalConfig(lr=0.1, lr_decay=1.0, local_steps=1, batch_size=1000, clip_norm=None)


@pytest.fixture
def make_task(split_streams) -> Callable[[str, str], StreamTask]:
    """``make_task(selector, initial_store)``: 5 devices streaming 30 samples each, |B| = 6."""

    def make(selector: str, initial_store: str) -> StreamTask:
        data = synthetic_shared(5, dim=5, num_classes=3, size_mu=3.5, min_samples=40, seed=4)
        data = split_streams(data, 30)
        return stream_task(data, selector, buffer_size=6, velocity=3, initial_store=initial_store)

    return make


def _fresh_device(task: StreamTask, client: int):
    sim = stream_simulator(task, clients_per_round=1, local=LOCAL, seed=0)
    return sim, task.device(client)


def test_option_is_checked_and_official_in_the_preset(make_task):
    with pytest.raises(ValueError, match="initial_store must be one of"):
        make_task("rs", "first")
    assert ODE_PRESETS["paper-synthetic"]["initial_store"] == "last"


@pytest.mark.parametrize("selector", ["rs", "fifo"])
def test_reservoir_and_fifo_start_with_the_last_samples(selector, make_task):
    _, dev = _fresh_device(make_task(selector, "last"), 1)
    n = len(dev.y)
    assert sorted(dev.store.samples()) == list(range(n - 6, n))
    if selector == "rs":
        assert dev.store.seen == 6  # counted as seen, as the official counter does
    _, empty = _fresh_device(make_task(selector, "empty"), 1)
    assert empty.store.samples() == []


def test_ode_store_holds_the_last_samples_of_each_assigned_label_valued_at_the_start(make_task):
    task = make_task("ode", "last")
    sim, dev = _fresh_device(task, 2)
    slots = task.assignment.slots[2]
    labels = dev.y.numpy()
    expected = sorted(
        int(p) for y, k in enumerate(slots) if k > 0 for p in np.flatnonzero(labels == y)[-k:]
    )
    assert len(expected) > 3 and sorted(dev.store.samples()) == expected
    # valued at the initial model with the initial global gradient (not INITIAL_VALUE)
    entries = dev.store.buffer.entries()
    pos = torch.as_tensor([s for s, _, _ in entries])
    model = task.model
    with torch.no_grad():
        for k, v in task.initial_state.items():
            dict(model.named_parameters())[k].copy_(v)
    want = sample_values(model, F.cross_entropy, dev.x[pos], dev.y[pos], task.initial_grad)
    got = torch.tensor([v for _, _, v in entries], dtype=want.dtype)
    torch.testing.assert_close(got, want)
    assert all(v > INITIAL_VALUE for _, _, v in entries)
    # the first arrivals compete with these values: the store stays full and per label
    dev.catch_up(2)
    assert len(dev.store.samples()) == len(expected)
    stored = np.bincount(labels[dev.store.samples()], minlength=3)
    assert stored.tolist() == [min(k, int((labels == y).sum())) for y, k in enumerate(slots)]


def test_high_loss_store_values_its_initial_samples_by_loss(make_task):
    task = make_task("hl", "last")
    _, dev = _fresh_device(task, 0)
    entries = dev.store.buffer.entries()
    pos = torch.as_tensor([s for s, _, _ in entries])
    n = len(dev.y)
    assert sorted(pos.tolist()) == list(range(n - 6, n))
    want = per_sample_losses(
        task.model, F.cross_entropy, dev.x[pos], dev.y[pos], state=task.initial_state
    )
    torch.testing.assert_close(torch.tensor([v for _, _, v in entries]), want)


def test_preload_bypasses_admission_and_fd_is_unchanged(make_task):
    store = make_store("sld", 3, rng=np.random.default_rng(0))
    store.preload([7, 8], [0, 1])
    assert store.samples() == [7, 8] and store.admit.count == 0
    _, dev = _fresh_device(make_task("fd", "last"), 0)
    assert dev.store.samples() == []


def test_a_round_runs_with_every_selector(make_task):
    for selector in ("rs", "ode", "ode-exact"):
        task = make_task(selector, "last")
        sim = stream_simulator(task, clients_per_round=2, local=LOCAL, seed=0)
        history = sim.run(2)
        assert "accuracy" in history[-1]
        for state in sim.client_state.values():
            assert len(state["device"].store.samples()) > 0
