"""CTR models: feature embedding, FM / cross / target-attention layers, five base models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from graphrec.io import CTRSchema, CTRTable
from graphrec.metrics import auc
from graphrec.models.ctr import (
    DIN,
    LR,
    CTRFeatures,
    DCNv2,
    DeepFM,
    FeatureEmbedding,
    FeatureSpec,
)
from graphrec.nn.cross import CrossLayerV2
from graphrec.nn.fm import FMInteraction
from graphrec.nn.target_attention import TargetAttention
from graphrec.registry import CTR_MODELS

torch.set_num_threads(1)

SMALL = {
    "lr": {},
    "widedeep": {"embedding_dim": 8, "hidden_channels": (32, 16)},
    "deepfm": {"embedding_dim": 8, "hidden_channels": (32, 16)},
    "dcn": {"embedding_dim": 8, "num_cross_layers": 2, "hidden_channels": (32, 16)},
    "din": {"embedding_dim": 8, "hidden_channels": (32, 16), "attention_hidden": (16,)},
}


def _table(n: int = 64, seed: int = 0) -> CTRTable:
    """A synthetic table: unique request id, user, item, a dense value, an item history."""
    rng = np.random.default_rng(seed)
    schema = CTRSchema(
        "label",
        categorical=["req", "user", "item"],
        numeric=["x"],
        sequence={"hist": ","},
        shared_vocab={"hist": "item"},
    )
    n_item = 20
    lengths = rng.integers(0, 6, size=n)
    hist = np.zeros((n, 5), dtype=np.int64)
    for r, k in enumerate(lengths):
        hist[r, :k] = rng.integers(1, n_item + 1, size=k)
    x = rng.normal(5.0, 2.0, size=n).astype(np.float32)
    x[::7] = np.nan
    vocab = {
        "req": {str(i): i for i in range(1, n + 1)},
        "user": {str(i): i for i in range(1, 17)},
        "item": {str(i): i for i in range(1, n_item + 1)},
    }
    labels = np.zeros(n, dtype=np.float32)
    labels[rng.permutation(n)[: n // 2]] = 1.0
    return CTRTable(
        labels=labels,
        categorical={
            "req": np.arange(1, n + 1),
            "user": rng.integers(0, 17, size=n),  # 0 = OOV bucket
            "item": rng.integers(1, n_item + 1, size=n),
        },
        numeric={"x": x},
        sequence={"hist": hist},
        sequence_lengths={"hist": lengths},
        vocab=vocab,
        schema=schema,
    )


def _train(model, batch, labels, steps: int, lr: float = 0.05) -> list[float]:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(batch), labels)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


# --------------------------------------------------------------------------- features


def test_features_from_table_share_item_table():
    table = _table()
    features = CTRFeatures.from_table(table)
    assert [s.name for s in features.specs] == ["req", "user", "item", "x", "hist"]
    assert features["hist"].table == "item" and features["hist"].vocab_size == 21
    assert features.tables == {"req": 65, "user": 17, "item": 21}
    emb = FeatureEmbedding(features, 4)
    assert set(emb.tables) == {"req", "user", "item"}  # no separate table for the history
    out = emb(features.batch(table))
    assert out.fields.shape == (64, 4, 4)  # req, user, item, x
    assert out.sequences["hist"].shape == (64, 5, 4)
    assert torch.equal(out.masks["hist"], torch.as_tensor(table.sequence["hist"] != 0))
    # the target item and the history item with the same code get the same vector
    r = int(np.flatnonzero(table.sequence_lengths["hist"] > 0)[0])
    code = int(table.sequence["hist"][r, 0])
    assert torch.equal(out.sequences["hist"][r, 0], emb.table("item").weight[code])
    # one gradient reaches the shared table from both uses
    out.sequences["hist"].sum().backward()
    assert emb.table("item").weight.grad.abs().sum() > 0


def test_features_dense_standardised_and_missing_is_zero():
    table = _table()
    features = CTRFeatures.from_table(table)
    x = table.numeric["x"]
    assert features.dense_mean[0] == pytest.approx(float(np.nanmean(x)), rel=1e-5)
    emb = FeatureEmbedding(features, 3)
    values = emb.dense_values(features.batch(table))[:, 0]
    assert torch.all(values[::7] == 0)  # NaN rows
    finite = ~np.isnan(x)
    assert values[finite].mean().item() == pytest.approx(0.0, abs=1e-5)
    assert values[finite].std(unbiased=False).item() == pytest.approx(1.0, abs=1e-4)


def test_features_oov_bucket_is_learned():
    table = _table()
    features = CTRFeatures.from_table(table)
    emb = FeatureEmbedding(features, 4)
    assert emb.table("user").weight[0].abs().sum() > 0  # code 0 has its own vector
    out = emb(features.batch(table))
    oov = np.flatnonzero(table.categorical["user"] == 0)
    assert len(oov) and torch.equal(out.fields[oov[0], 1], emb.table("user").weight[0])


def test_features_batch_rows_max_len_and_errors():
    table = _table()
    features = CTRFeatures.from_table(table, exclude=["req"])
    assert "req" not in [s.name for s in features.specs]
    batch = features.batch(table, rows=np.array([3, 1]), max_len=8)
    assert batch["hist"].shape == (2, 8) and torch.all(batch["hist"][:, 5:] == 0)
    assert torch.equal(batch["hist"][0, :5], torch.as_tensor(table.sequence["hist"][3]))
    assert features.batch(table, max_len=2)["hist"].shape == (64, 2)
    assert torch.equal(features.labels(table, torch.tensor([0, 1])), torch.tensor(table.labels[:2]))
    with pytest.raises(ValueError, match="exclude"):
        CTRFeatures.from_table(table, exclude=["nope"])
    table.categorical["item"] = table.categorical["item"] + 100
    with pytest.raises(ValueError, match="outside"):
        features.batch(table)
    with pytest.raises(ValueError, match="disagree"):
        CTRFeatures([FeatureSpec("a", "sparse", "t", 3), FeatureSpec("b", "sequence", "t", 4)])
    with pytest.raises(ValueError, match="kind"):
        FeatureSpec("a", "wide")
    again = CTRFeatures.from_dict(features.to_dict())
    assert again.specs == features.specs and again.dense_std == features.dense_std


def test_linear_terms_pool_sequences():
    table = _table()
    features = CTRFeatures.from_table(table)
    emb = FeatureEmbedding(features, 2, linear=True)
    batch = features.batch(table)
    out = emb(batch)
    assert out.linear.shape == (64, 5)
    w = emb.linear_tables["item"].weight[:, 0]
    ids = batch["hist"][2]
    real = ids[ids != 0]
    expected = w[real].mean() if len(real) else torch.tensor(0.0)
    assert out.linear[2, 4].item() == pytest.approx(expected.item(), abs=1e-7)


# --------------------------------------------------------------------------- layers


def test_fm_second_order_hand_computed():
    fields = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]])
    # <v1,v2> + <v1,v3> + <v2,v3> = 11 + 17 + 39
    assert FMInteraction()(fields).tolist() == [67.0]
    x = torch.randn(4, 5, 3)
    brute = sum((x[:, i] * x[:, j]).sum(-1) for i in range(5) for j in range(i + 1, 5))
    assert torch.allclose(FMInteraction()(x), brute, atol=1e-5)


def test_cross_layer_v2_hand_computed():
    layer = CrossLayerV2(2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 2.0], [0.0, 1.0]]))
        layer.bias.copy_(torch.tensor([1.0, -1.0]))
    x0, xl = torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 1.0]])
    # W xl + b = [5, 1] + [1, -1] = [6, 0];  x0 * [6, 0] + xl = [9, 1]
    assert layer(x0, xl).tolist() == [[9.0, 1.0]]
    low = CrossLayerV2(4, low_rank=2)
    full = CrossLayerV2(4)
    with torch.no_grad():
        full.weight.copy_(low.u @ low.v.t())
        full.bias.copy_(low.bias)
    a, b = torch.randn(3, 4), torch.randn(3, 4)
    assert torch.allclose(low(a, b), full(a, b), atol=1e-6)
    with pytest.raises(ValueError):
        CrossLayerV2(4, low_rank=5)


def _dot_attention(softmax: bool) -> TargetAttention:
    """Scoring MLP reduced to one linear layer with s_j = <e_j, v> (the e * v block)."""
    att = TargetAttention(2, hidden_channels=(), softmax=softmax)
    with torch.no_grad():
        att.mlp[0].weight.zero_()
        att.mlp[0].weight[0, 6:8] = 1.0
        att.mlp[0].bias.zero_()
    return att


@pytest.mark.parametrize("softmax", [False, True])
def test_target_attention_hand_check_and_padding_zero(softmax):
    att = _dot_attention(softmax)
    query = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    keys = torch.tensor(
        [
            [[2.0, 5.0], [1.0, 1.0], [9.0, 9.0]],  # third position is padding
            [[3.0, 3.0], [7.0, 7.0], [7.0, 7.0]],  # all padding
        ]
    )
    mask = torch.tensor([[True, True, False], [False, False, False]])
    pooled, weights = att(query, keys, mask)
    scores = torch.tensor([2.0, 1.0])  # <e_j, v> for the real positions of row 0
    w = torch.softmax(scores, 0) if softmax else scores
    assert torch.allclose(weights[0, :2], w)
    assert weights[0, 2].item() == 0.0 and torch.all(weights[1] == 0.0)
    assert torch.allclose(pooled[0], w[0] * keys[0, 0] + w[1] * keys[0, 1])
    assert torch.equal(pooled[1], torch.zeros(2)) and not torch.isnan(pooled).any()
    # values at padded positions never matter
    keys2 = keys.clone()
    keys2[0, 2] = -100.0
    assert torch.equal(att(query, keys2, mask)[0], pooled)


def test_din_padded_history_gets_zero_attention():
    torch.manual_seed(0)
    table = _table()
    features = CTRFeatures.from_table(table)
    for softmax in (False, True):
        model = DIN(features, **SMALL["din"], softmax=softmax).eval()
        batch = features.batch(table)
        weights = model.attention_weights(batch)["hist"]
        pad = batch["hist"] == 0
        assert pad.any() and torch.all(weights[pad] == 0.0)
        assert torch.all(weights[~pad] != 0.0)
        if softmax:
            sums = weights.sum(1)
            has = (~pad).any(1)
            assert torch.allclose(sums[has], torch.ones(int(has.sum())), atol=1e-6)
        # extra padding columns change nothing
        wide = features.batch(table, max_len=9)
        assert torch.allclose(model(wide), model(batch), atol=1e-6)


def test_din_behaviour_pairs_validated():
    features = CTRFeatures.from_table(_table())
    assert DIN(features).behaviours == [("hist", "item")]
    with pytest.raises(ValueError, match="same table"):
        DIN(features, behaviours=[("hist", "user")])


# --------------------------------------------------------------------------- models


@pytest.mark.parametrize("name", CTR_MODELS.names())
def test_model_overfits_tiny_batch(name):
    torch.manual_seed(0)
    table = _table()
    features = CTRFeatures.from_table(table)
    model = CTR_MODELS.get(name)(features, **SMALL[name])
    batch, labels = features.batch(table), features.labels(table)
    losses = _train(model, batch, labels, steps=150)
    assert losses[-1] < 0.5 * losses[0]
    model.eval()
    assert auc(labels, model(batch).detach()) > 0.99


@pytest.mark.parametrize("name", CTR_MODELS.names())
def test_serialization_round_trip(name, tmp_path):
    torch.manual_seed(1)
    table = _table()
    features = CTRFeatures.from_table(table)
    model = CTR_MODELS.get(name)(features, **SMALL[name])
    batch = features.batch(table)
    _train(model, batch, features.labels(table), steps=5)
    torch.save(model.state_dict(), tmp_path / "model.pt")
    (tmp_path / "features.json").write_text(json.dumps(features.to_dict()))

    rebuilt = CTRFeatures.from_dict(json.loads((tmp_path / "features.json").read_text()))
    torch.manual_seed(2)
    clone = CTR_MODELS.get(name)(rebuilt, **SMALL[name])
    clone.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True))
    model.eval()
    clone.eval()
    assert torch.equal(model(batch), clone(batch))


@pytest.mark.parametrize("name", CTR_MODELS.names())
def test_forward_exports_without_data_dependent_control_flow(name):
    table = _table()
    features = CTRFeatures.from_table(table)
    model = CTR_MODELS.get(name)(features, **SMALL[name]).eval()
    batch = features.batch(table, max_len=5)
    program = torch.export.export(model, (batch,), strict=False)
    other = features.batch(_table(seed=3), max_len=5)
    assert torch.allclose(program.module()(other), model(other), atol=1e-6)


def test_extra_fields_widen_the_dense_part():
    table = _table()
    features = CTRFeatures.from_table(table)
    model = DeepFM(features, embedding_dim=4, extra_fields=2)
    emb = model.embed(features.batch(table))
    emb.extra = torch.randn(64, 2, 4)
    assert model.interact(emb).shape == (64,)
    assert LR(features).embedding.embedding_dim == 1


@pytest.mark.parametrize("structure", ["parallel", "stacked"])
def test_dcn_extra_fields_feed_the_deep_part_only(structure):
    table = _table()
    features = CTRFeatures.from_table(table)
    model = DCNv2(features, embedding_dim=4, num_cross_layers=1, hidden_channels=(8,),
                  structure=structure, extra_fields=2)  # fmt: skip
    n_raw = features.num_fields
    assert model.num_fields == n_raw + 2
    assert model.cross[0].weight.shape == (4 * n_raw, 4 * n_raw)  # the cross sees raw fields
    assert model.mlp[0].in_features == 4 * (n_raw + 2)
    emb = model.embed(features.batch(table))
    emb.extra = torch.zeros(64, 2, 4)
    without = model.interact(emb)
    emb.extra = torch.randn(64, 2, 4)
    assert not torch.allclose(model.interact(emb), without)  # the extras reach the logit


@pytest.mark.parametrize("name", CTR_MODELS.names())
def test_smoke_train_taobao_tiny(name, shared_data):
    from graphrec.datasets import load_taobao_tiny

    torch.manual_seed(0)
    data = load_taobao_tiny(shared_data / "ctr" / "fuxictr_tiny_taobao")
    features = CTRFeatures.from_table(data.train)
    model = CTR_MODELS.get(name)(features, **SMALL[name])
    if name == "din":
        assert model.behaviours == [("click_sequence", "adgroup_id")]
    batch, labels = features.batch(data.train), features.labels(data.train)
    losses = _train(model, batch, labels, steps=30, lr=0.01)
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    model.eval()
    assert auc(labels, model(batch).detach()) > 0.9
    prob = model.predict_proba(features.batch(data.test))
    assert prob.shape == (data.test.num_rows,)
    assert torch.all((prob > 0) & (prob < 1))


# --------------------------------------------------------------------------- trainer, ML-100K


def _metrics(history):
    """The history without the timings (which vary from run to run)."""
    return [{k: v for k, v in h.items() if k != "train_s"} for h in history]


def test_train_ctr_seeded_and_restores_best(shared_data):
    from graphrec.datasets import load_taobao_tiny
    from graphrec.models.ctr.train import evaluate_ctr, train_ctr

    data = load_taobao_tiny(shared_data / "ctr" / "fuxictr_tiny_taobao")
    features = CTRFeatures.from_table(data.train)
    runs = []
    for _ in range(2):
        torch.manual_seed(7)  # the trainer seeds training; the initialisation is the caller's
        model = DeepFM(features, embedding_dim=4, hidden_channels=(8,))
        result = train_ctr(
            model, data.train, data.test, epochs=6, batch_size=32, lr=0.01, patience=2, seed=7
        )
        runs.append((result, model))
    (a, model), (b, _) = runs
    assert _metrics(a.history) == _metrics(b.history)  # same seed, same run
    aucs = [h["auc"] for h in a.history]
    assert a.best_epoch == 1 + int(np.argmax(aucs)) and a.best["auc"] == max(aucs)
    assert len(a.history) == 6 or a.stopped_early
    assert evaluate_ctr(model, data.test)["auc"] == pytest.approx(a.best["auc"])
    with pytest.raises(ValueError):
        train_ctr(model, data.train, data.test, epochs=0)


def test_movielens_ctr_split_and_training(shared_data):
    from graphrec.datasets import load_movielens100k
    from graphrec.models.ctr.data import movielens_ctr
    from graphrec.models.ctr.train import train_ctr

    ml = load_movielens100k(shared_data / "movielens" / "ml-100k")
    split = movielens_ctr(ml, max_history=20)
    total = split.train.num_rows + split.valid.num_rows + split.test.num_rows
    assert total == ml.num_ratings == 100_000
    assert split.train.labels.mean() == pytest.approx(0.573, abs=0.01)
    # user 0 (code of raw user index 0): ratings sorted by time, history = earlier positives
    code = split.train.vocab["user"]["0"]
    r = ml.ratings
    mine = np.flatnonzero(r.user == 0)
    mine = mine[np.lexsort((r.item[mine], r.timestamp[mine]))]
    n_test = int(np.ceil(0.1 * len(mine)))
    rows = np.flatnonzero(split.train.categorical["user"] == code)
    assert len(rows) == len(mine) - 2 * n_test
    j = 30
    item_code = split.train.vocab["item"]
    earlier = [item_code[str(i)] for i in r.item[mine[:j]][r.rating[mine[:j]] >= 4]][-20:]
    got = split.train.sequence["history"][rows[j]]
    assert got[: len(earlier)].tolist() == earlier and not got[len(earlier) :].any()
    assert split.train.labels[rows[j]] == float(r.rating[mine[j]] >= 4)
    last_train = r.timestamp[mine[len(rows) - 1]]
    assert r.timestamp[mine[len(rows) :]].min() >= last_train

    torch.manual_seed(0)
    features = CTRFeatures.from_table(split.train)
    model = DeepFM(features, embedding_dim=8, hidden_channels=(32,))
    result = train_ctr(model, split.train, split.valid, epochs=2, batch_size=4096, lr=3e-3)
    assert result.best["auc"] > 0.72 and np.isfinite(result.best["gauc"])


def test_replacement_tables_feed_target_and_history():
    """The hook an input module (HIEN) uses: refined tables replace the raw lookups."""
    table = _table()
    features = CTRFeatures.from_table(table)
    model = DIN(features, **SMALL["din"])
    batch = features.batch(table)
    refined = torch.randn(21, 8, requires_grad=True)
    emb = model.embed(batch, tables={"item": refined})
    assert torch.equal(emb.fields[:, 2], refined[batch["item"]])
    assert torch.equal(emb.sequences["hist"], refined[batch["hist"]])
    assert torch.equal(emb.fields[:, 1], model.embedding.table("user").weight[batch["user"]])
    model.interact(emb).sum().backward()
    assert refined.grad.abs().sum() > 0
    with pytest.raises(KeyError):
        model.embed(batch, tables={"brand": refined})


def test_amazon_ctr_split(shared_data):
    from graphrec.datasets import load_amazon_electronics_users
    from graphrec.models.ctr.data import amazon_ctr

    data = load_amazon_electronics_users(shared_data / "amazon_electronics_users")
    split = amazon_ctr(data, max_history=20)
    train, test = split.train, split.test
    assert train.num_rows + split.valid.num_rows + test.num_rows == data.num_rows
    assert len(np.unique(train.categorical["user"])) == data.num_users
    assert (train.categorical["item"] > 0).all()  # vocabulary built on training rows
    assert (test.categorical["item"] == 0).any()
    # the first test row of user 0 is that user's row at position n - n_test
    rows = data.user_rows(0)
    n = rows.stop - rows.start
    first_test = rows.start + n - int(np.ceil(0.1 * n))
    assert test.categorical["user"][0] == 1
    raw = data.history[data.history_offsets[first_test] : data.history_offsets[first_test + 1]]
    item_code = train.vocab["item"]
    expected = [item_code.get(str(data.item_vocab[i - 1]), 0) for i in raw[-20:]]
    got = test.sequence["history"][0]
    assert got[: len(expected)].tolist() == expected and not got[len(expected) :].any()
    features = CTRFeatures.from_table(train)
    model = DIN(features, **SMALL["din"])
    assert model(features.batch(test, np.arange(256))).shape == (256,)


def test_train_ctr_checkpoint_resume(shared_data, tmp_path):
    from graphrec.datasets import load_taobao_tiny
    from graphrec.models.ctr.train import train_ctr

    data = load_taobao_tiny(shared_data / "ctr" / "fuxictr_tiny_taobao")
    features = CTRFeatures.from_table(data.train)
    kwargs = {"batch_size": 32, "lr": 0.01, "patience": 10, "seed": 3}

    def fresh():
        torch.manual_seed(3)
        return DCNv2(features, embedding_dim=4, num_cross_layers=1, hidden_channels=(8,))

    full_model = fresh()
    full = train_ctr(full_model, data.train, data.test, epochs=4, **kwargs)
    ckpt = tmp_path / "run.pt"
    first = fresh()
    train_ctr(first, data.train, data.test, epochs=2, checkpoint=ckpt, **kwargs)  # "interrupted"
    resumed_model = fresh()
    resumed = train_ctr(resumed_model, data.train, data.test, epochs=4, checkpoint=ckpt, **kwargs)
    assert _metrics(resumed.history) == _metrics(full.history)
    assert resumed.best_epoch == full.best_epoch
    batch = features.batch(data.test)
    resumed_model.eval()
    full_model.eval()
    assert torch.equal(resumed_model(batch), full_model(batch))
    assert set(torch.load(ckpt, weights_only=True)) >= {"model", "optimizer", "result"}
