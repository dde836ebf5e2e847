"""Multi-task backbones (Shared-Bottom, MMoE, PLE), their data and the joint trainer."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from graphrec.errors import ConfigError
from graphrec.metrics import auc
from graphrec.models.ctr import CTRFeatures, FeatureEmbedding
from graphrec.models.mtl import (
    PLE,
    CrossDistil,
    CrossDistilConfig,
    MMoE,
    SharedBottom,
    build_mtl,
    distill_recipe,
    gated_mixture,
    load_mtl_dataset,
    predict_mtl,
    synthetic_mtl,
    train_mtl,
)
from graphrec.registry import MTL_MODELS

torch.set_num_threads(1)
SMALL = {"embedding_dim": 8}


@pytest.fixture(scope="module")
def syn():
    return load_mtl_dataset("synthetic", seed=0)


def _tiny(table, per_group=8):
    """``per_group`` rows of each (y_A, y_B) group."""
    y = table.labels
    rows = [np.flatnonzero((y[:, 0] == a) & (y[:, 1] == b))[:per_group]
            for a in (0, 1) for b in (0, 1)]  # fmt: skip
    return table.take(np.concatenate(rows))


def test_registry_and_shapes(syn):
    assert MTL_MODELS.names() == ["mmoe", "ple", "shared"]
    batch = syn.features.batch(syn.split.valid.table, np.arange(5))
    for name in MTL_MODELS:
        for tasks in (2, 3):
            model = MTL_MODELS.build(name, syn.features, tasks, **SMALL)
            assert isinstance(model.embedding, FeatureEmbedding)  # the CTR embedding part
            inputs, logits = model.forward_towers(batch)
            assert logits.shape == (5, tasks) and len(inputs) == tasks
            assert all(h.shape == (5, model.tower_in_channels) for h in inputs)
            assert torch.equal(model(batch), logits)
        # defaults of the registered config are the constructor's
        built = MTL_MODELS.build(name, syn.features, 2)
        cls = MTL_MODELS.get(name)
        assert sum(p.numel() for p in built.parameters()) == sum(
            p.numel() for p in cls(syn.features).parameters()
        )


def test_gated_mixture_hand_case():
    gate = torch.log(torch.tensor([[1.0, 3.0]]))  # softmax -> 0.25, 0.75
    experts = torch.tensor([[[4.0, 0.0], [0.0, 8.0]]])
    assert torch.allclose(gated_mixture(gate, experts), torch.tensor([[1.0, 6.0]]))


def test_mmoe_gates_sum_to_one_and_ple_one_level_is_cgc(syn):
    batch = syn.features.batch(syn.split.valid.table, np.arange(7))
    w = MMoE(syn.features, num_experts=3, **SMALL).gate_weights(batch)
    assert w.shape == (7, 2, 3) and torch.allclose(w.sum(-1), torch.ones(7, 2))
    ple = PLE(syn.features, num_levels=1, **SMALL)
    assert len(ple.levels) == 1 and ple.levels[0].shared_gate is None
    ple2 = PLE(syn.features, num_levels=2, **SMALL)
    assert ple2.levels[0].shared_gate.out_features == 2 * 2 + 2


def test_shared_bottom_towers_read_one_representation(syn):
    model = SharedBottom(syn.features, **SMALL)
    inputs, _ = model.forward_towers(syn.features.batch(syn.split.valid.table, np.arange(3)))
    assert inputs[0] is inputs[1]


@pytest.mark.parametrize("name", ["shared", "mmoe", "ple"])
def test_every_backbone_overfits_a_tiny_batch(syn, name):
    tiny = _tiny(syn.split.train)
    torch.manual_seed(0)
    model = MTL_MODELS.build(name, syn.features, 2, **SMALL)
    batch = syn.features.batch(tiny.table)
    y = torch.as_tensor(tiny.labels)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(150):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(batch), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.02
    logits = model(batch).detach()
    assert auc(y[:, 0], logits[:, 0]) == 1.0 and auc(y[:, 1], logits[:, 1]) == 1.0


def test_validated_distillation_defaults():
    assert distill_recipe("synthetic", "crossdistil") == {"alpha": 0.1}
    assert distill_recipe("synthetic", "kd") == {} == distill_recipe("PATH", "crossdistil")
    model, module = build_mtl("mmoe", load_mtl_dataset("synthetic").features, distill="kd",
                              distill_options=distill_recipe("ml-100k", "kd"))  # fmt: skip
    assert module.config.mode == "kd" and module.config.detach_backbone
    assert module.teachers[0][0].in_features == model.tower_in_channels
    with pytest.raises(ConfigError, match="distill"):
        build_mtl("mmoe", model.features, distill="dml")


def test_invalid_arguments(syn):
    with pytest.raises(ConfigError, match="num_tasks"):
        SharedBottom(syn.features, 1)
    with pytest.raises(ConfigError, match="num_experts"):
        MMoE(syn.features, num_experts=0)
    with pytest.raises(ConfigError, match="num_levels"):
        PLE(syn.features, num_levels=0)
    with pytest.raises(ConfigError, match="select"):
        train_mtl(SharedBottom(syn.features), syn.split.train, syn.split.valid, select="auc")


def test_saved_model_reloads_and_predicts_the_same(syn):
    torch.manual_seed(1)
    model = PLE(syn.features, **SMALL)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    again = PLE(CTRFeatures.from_dict(syn.features.to_dict()), **SMALL)
    again.load_state_dict(torch.load(buf, weights_only=True))
    assert torch.equal(predict_mtl(model, syn.split.test), predict_mtl(again, syn.split.test))


def test_synthetic_generator_seeded_correlated_rare_b():
    a, b = synthetic_mtl(seed=3), synthetic_mtl(seed=3)
    assert np.array_equal(a.train.labels, b.train.labels)
    assert not np.array_equal(a.train.labels, synthetic_mtl(seed=4).train.labels)
    assert 0.01 <= a.train.labels[:, 1].mean() <= 0.05
    for part in (a.train, a.valid, a.test):
        assert min(part.group_counts().values()) > 0  # all four groups planted

    def phi(split):
        y = split.train.labels
        return np.corrcoef(y[:, 0], y[:, 1])[0, 1]

    assert phi(synthetic_mtl(correlation=0.9)) > phi(synthetic_mtl(correlation=0.0)) + 0.05
    assert abs(phi(synthetic_mtl(correlation=0.0))) < 0.05
    with pytest.raises(ConfigError, match="correlation"):
        synthetic_mtl(correlation=1.5)
    with pytest.raises(ConfigError, match="lacks a"):
        synthetic_mtl(num_users=3, impressions_per_user=10, rate_b=0.01)


def test_movielens_two_tasks_on_the_real_file(shared_data):
    data = load_mtl_dataset("ml-100k", shared_data)
    s = data.split
    assert (s.train.num_rows, s.valid.num_rows, s.test.num_rows) == (79122, 10439, 10439)
    assert data.tasks == ("like", "love")
    from graphrec.datasets import load_movielens100k

    ratings = load_movielens100k(shared_data / "movielens" / "ml-100k").ratings.rating
    total = sum(t.labels.sum(axis=0) for t in (s.train, s.valid, s.test))
    assert total.tolist() == [float((ratings >= 4).sum()), float((ratings == 5).sum())]
    for t in (s.train, s.valid, s.test):
        assert np.array_equal(t.labels[:, 0], t.table.labels)  # the CTR loader's rows
        assert t.group_counts()["-+"] == 0  # rating 5 implies rating >= 4


def test_taobao_behavior_pairs_on_the_real_file(shared_data):
    data = load_mtl_dataset("taobao", shared_data)
    path = shared_data / "ctr" / "taobao_userbehavior_sample" / "UserBehavior_head4321.csv"
    events = [line.split(",") for line in path.read_text().split()]
    pairs = {(e[0], e[1]) for e in events}
    cart_fav = {(e[0], e[1]) for e in events if e[3] in ("cart", "fav")}
    buy = {(e[0], e[1]) for e in events if e[3] == "buy"}
    s = data.split
    assert s.train.num_rows + s.valid.num_rows + s.test.num_rows == len(pairs) == 3329
    total = sum(t.labels.sum(axis=0) for t in (s.train, s.valid, s.test))
    assert total.tolist() == [len(cart_fav), len(buy)]
    assert data.tasks == ("cart_fav", "buy") and len(set(e[0] for e in events)) == 43
    assert data.split.train.group_counts() == {"++": 11, "+-": 211, "-+": 48, "--": 2351}


def test_trainer_resumes_to_the_same_result_with_distillation(syn, tmp_path):
    def run(epochs, ckpt):
        torch.manual_seed(0)
        model = MMoE(syn.features, **SMALL)
        distill = CrossDistil(model.tower_in_channels, CrossDistilConfig())
        res = train_mtl(model, syn.split.train.take(np.arange(3000)), syn.split.valid,
                        distill=distill, epochs=epochs, batch_size=512, patience=5,
                        checkpoint=ckpt, select="multi_auc")  # fmt: skip
        return res, predict_mtl(model, syn.split.test)

    full, logits = run(3, None)
    ckpt = tmp_path / "c.pt"
    run(2, ckpt)
    resumed, logits2 = run(3, ckpt)

    def strip(history):
        return [{k: v for k, v in h.items() if k != "train_s"} for h in history]

    assert strip(resumed.history) == strip(full.history) and torch.equal(logits, logits2)
    assert resumed.steps == full.steps == 18
    # the distillation parts are logged, the metrics of evaluate_mtl recorded
    assert {"teacher_a", "kd_b", "cal_a", "alpha"} <= set(full.history[0])
    assert {"auc_a", "gauc_b", "logloss_a", "multi_auc", "multi_auc_b", "ndcg"} <= set(full.best)
