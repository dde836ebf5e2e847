"""graphrec.training (the loop shared by CTR, CF, FastCover and FL) and FedProx on every FL task."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from graphrec.errors import ConfigError
from graphrec.federated import (
    CTRModelTask,
    EmbeddingCTRTask,
    LocalConfig,
    SoftmaxRegressionTask,
    StreamTask,
)
from graphrec.federated.partition import synthetic_leaf
from graphrec.io import CTRSchema, CTRTable
from graphrec.models.ctr import CTRFeatures, WideDeep
from graphrec.training import Trainer, fit_best, minibatches, run_epochs

torch.set_num_threads(1)


# --------------------------------------------------------------------------- Trainer


def test_proximal_gradient_hand_checked():
    """One SGD step on <x, w> + mu/2 |w - w0|^2: w' = w - lr (x + mu (w - w0))."""
    w = torch.tensor([1.0, -2.0, 0.5], requires_grad=True)
    w0 = torch.tensor([0.0, 1.0, 0.5])
    x = torch.tensor([0.25, 0.5, -1.0])
    trainer = Trainer(torch.optim.SGD([w], lr=0.1), prox_mu=2.0, anchor=[w0])
    loss = trainer.step(lambda: (x * w).sum())
    assert loss == pytest.approx(0.25 - 1.0 - 0.5)  # the data loss, without the proximal term
    # by hand: grad = x + 2 (w - w0) = [0.25 + 2, 0.5 - 6, -1 + 0] = [2.25, -5.5, -1]
    torch.testing.assert_close(w.detach(), torch.tensor([0.775, -1.45, 0.6]))
    assert trainer.proximal_term().item() == pytest.approx(0.775**2 + 2.45**2 + 0.1**2)


def test_clipping_scales_the_global_norm():
    w = torch.zeros(2, requires_grad=True)
    trainer = Trainer(torch.optim.SGD([w], lr=1.0), clip_norm=1.0)
    trainer.step(lambda: (torch.tensor([3.0, 4.0]) * w).sum())  # gradient norm 5 -> 1
    torch.testing.assert_close(w.detach(), torch.tensor([-0.6, -0.8]))
    assert trainer.seconds > 0 and trainer.cpu_seconds >= 0


@pytest.mark.parametrize(
    "kwargs",
    [{"clip_norm": 0.0}, {"prox_mu": -1.0}, {"prox_mu": 0.1}, {"prox_mu": 0.1, "anchor": []}],
)
def test_trainer_validates(kwargs):
    w = torch.zeros(2, requires_grad=True)
    with pytest.raises(ConfigError):
        Trainer(torch.optim.SGD([w], lr=1.0), **kwargs)


# --------------------------------------------------------------------------- minibatches


def _counting_permutation():
    calls = []

    def permutation(n: int) -> np.ndarray:
        calls.append(n)
        return np.arange(n)[::-1].copy()

    return permutation, calls


def test_minibatches_one_epoch_and_cycling_steps():
    perm, calls = _counting_permutation()
    batches = [b.tolist() for b in minibatches(5, 2, perm)]
    assert batches == [[4, 3], [2, 1], [0]] and calls == [5]
    perm, calls = _counting_permutation()
    batches = [b.tolist() for b in minibatches(5, 2, perm, steps=5)]
    assert batches == [[4, 3], [2, 1], [0], [4, 3], [2, 1]] and calls == [5, 5]
    perm, calls = _counting_permutation()
    batches = [b.tolist() for b in minibatches(3, 10, perm, steps=2)]  # full batch: one per step
    assert batches == [[2, 1, 0], [2, 1, 0]] and calls == [3, 3]
    with pytest.raises(ConfigError, match="batch_size"):
        minibatches(5, 0, perm)


# --------------------------------------------------------------------------- run_epochs


def test_run_epochs_stops_checkpoints_and_resumes():
    ran, saved = [], []

    def epoch_fn(epoch: int):
        ran.append(epoch)
        return epoch == 3, {"epoch": epoch}

    def checkpoint(epoch: int, stop: bool) -> None:
        saved.append((epoch, stop))

    assert run_epochs(epoch_fn, epochs=10, checkpoint=checkpoint) == 4
    assert ran == [0, 1, 2, 3] and saved == [(0, False), (1, False), (2, False), (3, True)]
    ran.clear()
    assert run_epochs(epoch_fn, epochs=6, start=4) == 6 and ran == [4, 5]
    ran.clear()
    assert run_epochs(epoch_fn, epochs=6, start=2, done=True) == 2 and ran == []


@dataclass
class _Result:
    best_epoch: int
    best: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False


def test_fit_best_keeps_the_best_weights_stops_on_patience_and_resumes(tmp_path):
    """Scripted validation AUCs 0.5, 0.7, 0.6, 0.65 with patience 2: epoch 2 is the best, the
    run stops after epoch 4 and epoch 2's weights come back; a run cut after epoch 3 and resumed
    from its checkpoint ends the same."""
    aucs = [0.5, 0.7, 0.6, 0.65, 0.9, 0.9]

    def run(epochs: int, checkpoint):
        module = torch.nn.Linear(1, 1, bias=False)
        opt = torch.optim.SGD(module.parameters(), lr=0.1)
        result = _Result(best_epoch=0, best={"auc": -np.inf})

        def epoch_fn(epoch: int):
            with torch.no_grad():
                module.weight.fill_(float(epoch))  # the weights of epoch e are e
            result.history.append({"epoch": epoch, "loss": 1.0 / epoch})
            return 1.0 / epoch, {"auc": aucs[epoch - 1]}

        rng = np.random.default_rng(0)
        fit_best(epoch_fn, module, opt, rng, result, select="auc", epochs=epochs, patience=2,
                 checkpoint=checkpoint, key="m", what="test")  # fmt: skip
        return result, module.weight.item()

    result, weight = run(6, None)
    assert (result.best_epoch, result.best, weight) == (2, {"auc": 0.7}, 2.0)
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4] and result.stopped_early
    ckpt = tmp_path / "fit.pt"
    cut, _ = run(3, ckpt)
    assert len(cut.history) == 3 and not cut.stopped_early
    assert run(6, ckpt) == (result, weight)
    assert run(6, ckpt) == (result, weight)  # a finished run resumes to itself


# --------------------------------------------------------------------------- FL tasks


def _ctr_table(n: int, seed: int) -> CTRTable:
    rng = np.random.default_rng(seed)
    schema = CTRSchema("label", categorical=["user", "item"], numeric=["x"])
    return CTRTable(
        labels=(rng.random(n) < 0.5).astype(np.float32),
        categorical={"user": rng.integers(1, 9, n), "item": rng.integers(1, 13, n)},
        numeric={"x": rng.normal(size=n).astype(np.float32)},
        sequence={},
        sequence_lengths={},
        vocab={
            "user": {str(i): i for i in range(1, 9)},
            "item": {str(i): i for i in range(1, 13)},
        },
        schema=schema,
    )


def _tasks() -> dict[str, object]:
    rng = np.random.default_rng(0)
    n = 60
    user, item = rng.integers(0, 6, n), rng.integers(1, 10, n)
    history = np.where(rng.random((n, 3)) < 0.6, rng.integers(1, 10, (n, 3)), 0)
    labels = (rng.random(n) < 0.5).astype(np.float32)
    parts = [np.arange(0, 30), np.arange(30, 50)]
    syn = synthetic_leaf(0.5, 0.5, 3, samples_per_device=40, dim=6, num_classes=3, seed=1)
    train, test = _ctr_table(80, 1), _ctr_table(30, 2)
    features = CTRFeatures.from_table(train)
    return {
        "embedding_ctr": EmbeddingCTRTask(
            user, item, history, labels, parts, np.arange(50, 60), num_users=6, num_items=10
        ),
        "ctr_model": CTRModelTask(
            lambda f: WideDeep(f, embedding_dim=4, hidden_channels=(8,)),
            features,
            train,
            [np.arange(0, 40), np.arange(40, 80)],
            test,
        ),
        "softmax": SoftmaxRegressionTask(syn.x, syn.y, [p[:30] for p in syn.parts], np.arange(90)),
        "stream": StreamTask(
            torch.nn.Linear(6, 3),
            syn.x,
            syn.y,
            [p[:30] for p in syn.parts],
            np.arange(90),
            selector="rs",
            buffer_size=8,
            velocity=4,
        ),
    }


def _local(task, mu: float, state: dict, local_steps: int = 4) -> dict[str, torch.Tensor]:
    config = LocalConfig(lr=0.5, local_steps=local_steps, batch_size=3, prox_mu=mu).for_round(2)
    gen = torch.Generator().manual_seed(3)
    new, _ = task.local_train(0, state, config, {}, gen)
    return new


@pytest.mark.parametrize("name", ["embedding_ctr", "ctr_model", "softmax", "stream"])
def test_fedprox_changes_local_training_on_every_task(name):
    task = _tasks()[name]
    state = task.init_state(0)
    plain, prox = _local(task, 0.0, state), _local(task, 1.0, state)
    again = _local(task, 1.0, state)
    assert all(torch.equal(prox[k], again[k]) for k in prox)  # seeded
    assert any(not torch.equal(plain[k], prox[k]) for k in plain)

    def distance(new):
        return sum(((new[k] - state[k]) ** 2).sum() for k in new)

    assert distance(prox) < distance(plain)  # pulled towards the global model


def test_stream_local_steps_are_sgd_steps():
    """``local_steps`` counts SGD steps on StreamTask as on every task (not epochs)."""
    task = _tasks()["stream"]
    state = task.init_state(0)
    calls = []
    loss_fn = task.loss_fn

    def counting(out, y):
        calls.append(len(y))
        return loss_fn(out, y)

    task.loss_fn = counting
    config = LocalConfig(lr=0.5, local_steps=5, batch_size=3).for_round(1)  # store: 8 samples
    task.local_train(0, state, config, {}, torch.Generator().manual_seed(0))
    assert calls == [3, 3, 2, 3, 3]
