"""Per-user fine-tuning: the vectorised update equals one model copy per user with SGD."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from graphrec.errors import ConfigError
from graphrec.metrics import gauc
from graphrec.models.ctr.experiment import build_ctr_model, load_ctr_dataset
from graphrec.ondevice import (
    correct_labels,
    drift_buckets,
    finetune_users,
    per_user_auc,
    user_metrics,
)


@pytest.fixture(scope="module")
def data():
    return load_ctr_dataset("synthetic", seed=0)


def loop_reference(model, local, test, g, correction, layers, epochs, lr, users):
    """One deep copy per user, torch.optim.SGD on the full local set each epoch."""
    out = {}
    for u in users:
        m = copy.deepcopy(model).eval()
        rows = np.flatnonzero(local.categorical["user"] == u)
        batch, y = m.features.batch(local, rows), m.features.labels(local, rows)
        with torch.no_grad():
            initial = m(batch)
        c = correct_labels(y, g, correction, scores=initial)
        params = [p for n, p in m.named_parameters()
                  if layers == "all" or not n.startswith("embedding.")]  # fmt: skip
        opt = torch.optim.SGD(params, lr=lr)
        for _ in range(epochs):
            if not np.isfinite(c.offset):
                break
            opt.zero_grad()
            z = m(batch) + c.offset
            F.binary_cross_entropy_with_logits(z, c.labels.float()).backward()
            opt.step()
        test_rows = np.flatnonzero(test.categorical["user"] == u)
        with torch.no_grad():
            out[u] = m(m.features.batch(test, test_rows)).numpy()
    return out


@pytest.mark.parametrize(
    "name, layers, correction",
    [
        ("din", "all", "soft"),
        ("din", "dense", "flip"),
        ("widedeep", "all", "none"),
        ("dcn", "all", "offset"),
        ("deepfm", "dense", "soft"),
    ],  # fmt: skip
)
def test_vectorised_equals_per_user_loop(data, name, layers, correction):
    torch.manual_seed(0)
    model = build_ctr_model(name, data, seed=1)
    local, test = data.split.train, data.split.test
    g = float(local.labels.mean())
    got = finetune_users(model, local, test, global_share=g, correction=correction,
                         layers=layers, epochs=3, lr=0.5, chunk_rows=100)  # fmt: skip
    users = got.users[:12]
    ref = loop_reference(model, local, test, g, correction, layers, 3, 0.5, users)
    for u in users:
        np.testing.assert_allclose(got.scores[got.user == u], ref[u], atol=2e-5)
    # something moved
    cloud = finetune_users(model, local, test, global_share=g, epochs=0)
    assert np.abs(cloud.scores - got.scores).max() > 1e-3


def test_minibatches_cover_each_user_once_per_epoch(data):
    # LR with all layers and lr small: one epoch of minibatches of 1 differs from full batch,
    # but both move; batch_size >= the largest user is the full batch exactly
    model = build_ctr_model("lr", data, seed=0)
    local, test = data.split.train, data.split.test
    g = float(local.labels.mean())
    full = finetune_users(model, local, test, global_share=g, layers="all", epochs=2, lr=0.3)
    big = finetune_users(model, local, test, global_share=g, layers="all", epochs=2, lr=0.3,
                         batch_size=1000)  # fmt: skip
    small = finetune_users(model, local, test, global_share=g, layers="all", epochs=2, lr=0.3,
                           batch_size=3)  # fmt: skip
    np.testing.assert_allclose(full.scores, big.scores, atol=1e-6)
    assert np.abs(full.scores - small.scores).max() > 1e-4


def test_metrics_and_buckets(data):
    model = build_ctr_model("din", data, seed=0)
    local, test = data.split.train, data.split.test
    g = float(local.labels.mean())
    cloud = finetune_users(model, local, test, global_share=g, epochs=0)
    tuned = finetune_users(model, local, test, global_share=g, layers="all", epochs=2, lr=0.5)
    m = user_metrics(tuned)
    assert m["gauc"] == pytest.approx(gauc(tuned.labels, tuned.scores, tuned.user))
    per_user = per_user_auc(tuned)
    assert m["users_with_both"] == int((~np.isnan(per_user)).sum())
    assert m["mean_user_auc"] == pytest.approx(np.nanmean(per_user))
    expected_share = [local.labels[local.categorical["user"] == u].mean() for u in tuned.users]
    np.testing.assert_allclose(tuned.local_share, expected_share)
    buckets = drift_buckets(cloud, tuned, g, edges=(0.0, 0.2, 1.0))
    assert sum(b["users"] for b in buckets) == m["users_with_both"]
    whole = drift_buckets(cloud, tuned, g, edges=(0.0, 1.0))[0]
    assert whole["tuned_gauc"] == pytest.approx(m["gauc"])
    assert whole["base_gauc"] == pytest.approx(user_metrics(cloud)["gauc"])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(correction="x"), "correction"),
        (dict(layers="top"), "layers"),
        (dict(epochs=-1), "epochs"),
        (dict(lr=0.0), "lr"),
        (dict(batch_size=0), "batch_size"),
        (dict(global_share=0.0), "global_share"),
        (dict(user="nobody"), "nobody"),
    ],  # fmt: skip
)
def test_invalid_arguments(data, kwargs, match):
    model = build_ctr_model("lr", data, seed=0)
    args = dict(global_share=0.5) | kwargs
    with pytest.raises(ConfigError, match=match):
        finetune_users(model, data.split.train, data.split.test, **args)
