"""CoDA: matching by hand, never-own negatives, tau=0 == unfiltered, budget, weights, end to end."""

import copy
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from graphrec.cli import main
from graphrec.errors import ConfigError
from graphrec.models.ctr.experiment import build_ctr_model
from graphrec.ondevice import coda, finetune_users
from graphrec.ondevice.coda import (
    CODA_DEFAULTS,
    CodaConfig,
    SampleClassifiers,
    coarse_match,
    disjoint_negatives,
    row_bytes,
    run_coda,
    sample_embeddings,
)
from graphrec.ondevice.synthetic import drift_ctr

SMALL = replace(CODA_DEFAULTS, k_factor=2.0, steps=30, top_factor=None)


@pytest.fixture(scope="module")
def data():
    return drift_ctr(num_users=40, num_items=60, seed=0)


@pytest.fixture(scope="module")
def cloud(data):
    return build_ctr_model("din", data.ctr, seed=0)


def test_coarse_match_by_hand():
    keys = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    pool = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0], [0.5, 0.5], [3.0, 0.0]])
    # cosine to key 0: 1, .994, 0, -1, .707, 1 (rows 0 and 5 tie: lower row first)
    got = coarse_match(keys, pool, np.array([3, 2]))
    assert got[0].tolist() == [0, 5, 1] and got[1].tolist() == [2, 4]
    # a device never gets its own rows; k beyond the others' rows gives what is left
    owner = np.array([7, 8, 8, 8, 8, 7])
    got = coarse_match(keys, pool, np.array([6, 6]), owners=np.array([7, 8]), pool_owner=owner)
    assert got[0].tolist() == [1, 4, 2, 3] and got[1].tolist() == [0, 5]
    # budget: the longest prefix whose bytes fit
    size = np.array([10, 10, 10, 10, 10, 30])
    got = coarse_match(keys, pool, np.array([3, 3]), pool_bytes=size, budget_bytes=39)
    assert got[0].tolist() == [0] and got[1].tolist() == [2, 4, 1]
    assert coarse_match(keys, pool, np.array([3, 3]), pool_bytes=size, budget_bytes=0)[0].size == 0


def test_coarse_match_chunks_agree():
    gen = torch.Generator().manual_seed(0)
    keys, pool = torch.randn(9, 4, generator=gen), torch.randn(50, 4, generator=gen)
    k = np.arange(9)
    one = coarse_match(keys, pool, k)
    for a, b in zip(one, coarse_match(keys, pool, k, chunk_users=2)):
        np.testing.assert_array_equal(a, b)


def test_row_bytes(data):
    t = data.local
    n = row_bytes(t)
    lengths = t.sequence_lengths["history"]
    expected = 4 + 8 * 2 + 8 * lengths + 8  # label, item and cate codes, history and length
    np.testing.assert_array_equal(n, expected)
    np.testing.assert_array_equal(row_bytes(t, skip=()), expected + 8)


def test_negatives_never_candidates():
    rng = np.random.default_rng(0)
    exclude = [rng.choice(100, size=s, replace=False) for s in (0, 10, 60, 99)]
    negs = disjoint_negatives(100, np.array([5, 50, 50, 5]), exclude, rng)
    for n, e, want in zip(negs, exclude, (5, 50, 40, 1)):
        assert len(n) == want == len(np.unique(n))
        assert not np.isin(n, e).any()


def test_run_coda_asserts_candidates_are_not_negatives(data, cloud, monkeypatch):
    def overlapping(pool_size, counts, exclude, rng):
        return [e[:1] for e in exclude]  # a candidate (or own row) handed in as a negative

    monkeypatch.setattr(coda, "disjoint_negatives", overlapping)
    with pytest.raises(AssertionError, match="negative"):
        run_coda(cloud, data, config=SMALL, finetune=replace(coda.FINETUNE_DEFAULTS, epochs=1))


def test_sample_classifiers_separate():
    gen = torch.Generator().manual_seed(0)
    pos = [torch.randn(20, 3, generator=gen) + 2, torch.randn(5, 3, generator=gen) - 2]
    neg = [torch.randn(30, 3, generator=gen) - 2, torch.randn(40, 3, generator=gen) + 2]
    for kind in ("lr", "mlp"):
        h = SampleClassifiers(pos, neg, kind=kind, steps=200, generator=gen)
        s = h.score([torch.full((1, 3), 2.0), torch.full((1, 3), 2.0)])
        assert s[0].item() > 0.9 and s[1].item() < 0.1
    # devices are independent: fitting device 0 alone gives the same LR
    alone = SampleClassifiers(pos[:1], neg[:1], steps=50)
    both = SampleClassifiers(pos, neg, steps=50)
    torch.testing.assert_close(alone.params["w"][0], both.params["w"][0])


def test_sample_embeddings(data, cloud):
    pen = sample_embeddings(cloud, data.local, batch_size=7)
    assert pen.shape == (data.local.num_rows, cloud.mlp.linears()[-1].in_features)
    fields = sample_embeddings(cloud, data.local, key="fields")
    assert fields.shape == (data.local.num_rows, cloud.num_fields * cloud.embedding_dim)
    lr = build_ctr_model("lr", data.ctr, seed=0)
    with pytest.raises(ConfigError, match="penultimate"):
        sample_embeddings(lr, data.local)


def test_zero_weights_are_local_only_and_weights_count(data, cloud):
    local, test, g = data.local, data.test, data.global_share
    base = finetune_users(cloud, local, test, global_share=g, epochs=2, lr=0.5)
    extra = data.ctr.split.train.take(np.arange(0, 300))
    zero = finetune_users(cloud, local, test, global_share=g, epochs=2, lr=0.5, extra=extra,
                          extra_weights=np.zeros(300))  # fmt: skip
    np.testing.assert_array_equal(base.scores, zero.scores)
    # weighted rows: equal to one model copy per user with the weighted mean log loss
    w = np.random.default_rng(0).uniform(0.0, 1.0, 300).astype(np.float32)
    got = finetune_users(cloud, local, test, global_share=g, epochs=2, lr=0.5, extra=extra,
                         extra_weights=w)  # fmt: skip
    assert np.abs(got.scores - base.scores).max() > 1e-4
    for u in got.users[:6]:
        m = copy.deepcopy(cloud).eval()
        rows = np.flatnonzero(local.categorical["user"] == u)
        xrows = np.flatnonzero(extra.categorical["user"] == u)
        batches = [m.features.batch(local, rows), m.features.batch(extra, xrows)]
        y = torch.cat([m.features.labels(local, rows), m.features.labels(extra, xrows)])
        wu = torch.cat([torch.ones(len(rows)), torch.as_tensor(w[xrows])])
        opt = torch.optim.SGD(m.parameters(), lr=0.5)
        for _ in range(2):
            opt.zero_grad()
            z = torch.cat([m(b) for b in batches])
            loss = (F.binary_cross_entropy_with_logits(z, y, reduction="none") * wu).sum()
            (loss / wu.sum()).backward()
            opt.step()
        with torch.no_grad():
            ref = m(m.features.batch(test, np.flatnonzero(test.categorical["user"] == u)))
        np.testing.assert_allclose(got.scores[got.user == u], ref.numpy(), atol=2e-5)
    with pytest.raises(ConfigError, match="extra_weights"):
        finetune_users(cloud, local, test, global_share=g, extra=extra, extra_weights=-w)


@pytest.fixture(scope="module")
def trained(data):
    from graphrec.ondevice import train_cloud

    return train_cloud("din", data, seed=0)


def test_tau_zero_is_unfiltered_and_budget_holds(data, trained):
    ft = replace(coda.FINETUNE_DEFAULTS, epochs=2)
    out = run_coda(trained, data, config=replace(SMALL, tau=0.0, budget_bytes=2000), finetune=ft)
    m = out["methods"]
    for name in ("gauc", "auc", "logloss", "mean_user_auc"):
        assert m["coda"][name] == m["unfiltered"][name]
    assert out["candidates"]["kept_share"] == 1.0
    assert 0 < out["overhead"]["bytes_down"]["max"] <= 2000
    assert m["local"]["gauc"] != m["unfiltered"]["gauc"]


def test_run_coda_end_to_end(data, trained):
    ft = replace(coda.FINETUNE_DEFAULTS, epochs=2)
    config = replace(SMALL, classifier="mlp", weighting="score", top_factor=1.0)
    out = run_coda(trained, data, config=config, finetune=ft, seed=1)
    json.dumps(out)
    assert set(out["methods"]) == {"cloud", "local", "unfiltered", "coda"}
    assert out["users"] == 40
    n_local = data.local.num_rows / 40  # 20 per user: top 20 of 40 candidates
    assert out["candidates"]["matched"] == 2 * n_local and out["candidates"]["kept"] == n_local
    for m in out["methods"].values():
        assert 0.0 <= m["gauc"] <= 1.0 and m["seconds"] >= 0
    o = out["overhead"]
    assert o["bytes_up"]["max"] == 4 * trained.mlp.linears()[-1].in_features
    assert o["peak_bytes"]["mean"] > o["bytes_down"]["mean"] + o["bytes_down_negatives"]["mean"]
    assert o["classifier_s"]["max"] > 0 and o["finetune_s"]["max"] > 0


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(key="x"), "key"), (dict(tau=1.5), "tau"), (dict(k_factor=0), "k_factor"),
     (dict(weight=-1.0), "weight"), (dict(classifier="svm"), "classifier")],
)  # fmt: skip
def test_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        CodaConfig(**kwargs)


def test_cli_json(capsys):
    argv = ["ondevice", "coda", "--dataset", "synthetic", "--model", "lr", "--key", "fields",
            "--epochs", "1", "--k-factor", "1", "--top-factor", "0", "--tau", "0.3", "--json",
            "--threads", "1"]  # fmt: skip
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["methods"]) == {"cloud", "local", "unfiltered", "coda"}
    assert out["config"]["tau"] == 0.3 and out["config"]["top_factor"] is None
    assert out["config"]["key"] == "fields"
    assert out["finetune"]["epochs"] == 1 and out["users"] == 400
