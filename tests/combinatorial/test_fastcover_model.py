"""FastCover: model size, sparse loss vs. dense loss, pretrained weights, seeds."""

from __future__ import annotations

import json
import shutil
import tarfile

import numpy as np
import pytest
import torch

from combinatorial.baselines import greedy
from combinatorial.closure import d_closure
from combinatorial.coverage import coverage
from combinatorial.gnn.inference import (
    fastcover_seeds,
    fastcover_solution,
    load_pretrained,
    scores,
)
from combinatorial.gnn.loss import budget_loss, cover_index, fastcover_loss
from combinatorial.gnn.model import FastCover, node_features
from combinatorial.gnn.train import monotone_init_
from combinatorial.graph import adjacency
from graphrec.errors import GraphrecError
from graphrec.io import read_edgelist


@pytest.fixture(scope="module")
def er1000(shared_data, tmp_path_factory):
    """ER-1000 instance 0 (directed, n = 1000) as ``(edge_index, n, adj)``."""
    archive = shared_data / "fastcover" / "er-graphs-1000" / "er_1000_x20.tar.gz"
    out = tmp_path_factory.mktemp("er1000")
    with tarfile.open(archive) as tar:
        tar.extract("0.txt", out, filter="data")
    g = read_edgelist(out / "0.txt")
    return g.data.edge_index, g.num_nodes, adjacency(g.data.edge_index, g.num_nodes)


def test_paper_config_has_2340_parameters():
    model = FastCover(features="ones")
    assert sum(p.numel() for p in model.parameters()) == 2340
    assert [(c.in_channels, c.out_channels) for c in model.convs] == [(32, 32), (32, 32), (32, 1)]
    assert FastCover(features="degree").convs[0].in_channels == 3


def test_forward_shapes_and_features():
    edge_index = torch.tensor([[0, 0, 1, 1], [1, 2, 2, 2]])
    x = node_features(edge_index, 4, "degree")
    assert torch.allclose(x[:, 1], torch.tensor([0.0, 1.0, 3.0, 0.0]).log1p())
    assert torch.allclose(x[:, 2], torch.tensor([2.0, 2.0, 0.0, 0.0]).log1p())
    assert node_features(edge_index, 4, "ones", 5).shape == (4, 5)
    with pytest.raises(ValueError, match="features"):
        FastCover(features="onehot")
    with pytest.raises(ValueError, match="mask_layer"):
        FastCover(mask_layer=3)
    config = FastCover(features="degree", hidden_channels=8, mask_layer=1).config()
    assert FastCover(**config).config() == config
    torch.manual_seed(0)
    out = FastCover()(edge_index, 4)
    assert out.shape == (4,)
    # Target weights act on layer mask_layer only: all-zero there leaves only its bias.
    model = FastCover(mask_layer=2)
    out = model(edge_index, 4, target_weight=torch.zeros(4))
    assert torch.allclose(out, model.convs[2].lin.bias.expand(4))


@pytest.mark.parametrize("d", [1, 2])
def test_cover_index_is_the_closure(er1000, d):
    _, n, adj = er1000
    M = d_closure(adj, d).tocoo()
    expected = set(zip(M.row.tolist(), M.col.tolist()))
    u, v = cover_index(adj, d).numpy()
    assert set(zip(u.tolist(), v.tolist())) == expected and len(u) == len(expected)
    targets = np.array([3, 500, 999])
    u, t = cover_index(adj, d, targets).numpy()
    assert set(zip(u.tolist(), targets[t].tolist())) == {e for e in expected if e[1] in targets}


def _dense_loss(logits, M, penalty, c, k, eps):
    p = torch.sigmoid(logits).clamp(max=1 - eps)
    uncovered = torch.prod(
        torch.where(M, (1 - p).unsqueeze(1), torch.ones_like(M, dtype=p.dtype)), 0
    )
    pen = p.sum() if penalty == "linear" else torch.relu(p.sum() - k)
    return uncovered.sum() + c * pen


@pytest.mark.parametrize("penalty", ["linear", "hinge_k"])
def test_sparse_loss_equals_dense_loss_and_gradient(er1000, penalty):
    _, n, adj = er1000
    d, c, k, eps = 2, 1.5, 32, 1e-6
    M = torch.from_numpy(d_closure(adj, d).toarray())
    index = cover_index(adj, d)
    gen = torch.Generator().manual_seed(0)
    # Scale so that a few p are clamped, products are small but not zero.
    base = torch.randn(n, generator=gen, dtype=torch.float64) * 3 - 3
    base[:5] = 20.0
    grads = []
    values = []
    for fn in (
        lambda s: fastcover_loss(s, index, penalty=penalty, c=c, k=k, eps=eps),
        lambda s: _dense_loss(s, M, penalty, c, k, eps),
    ):
        s = base.clone().requires_grad_()
        loss = fn(s)
        loss.backward()
        values.append(loss.detach())
        grads.append(s.grad)
    assert torch.allclose(values[0], values[1], rtol=1e-10)
    assert torch.allclose(grads[0], grads[1], rtol=1e-8, atol=1e-12)
    assert grads[0][:5].abs().max() == 0  # clamped at 1 - eps: no gradient


def test_sampled_targets_estimate_is_unbiased_in_expectation(er1000):
    _, n, adj = er1000
    torch.manual_seed(0)
    logits = torch.randn(n, dtype=torch.float64) - 2
    full = fastcover_loss(logits, cover_index(adj, 1), c=0.0)
    rng = np.random.default_rng(0)
    estimates = []
    for _ in range(100):
        t = rng.choice(n, 100, replace=False)
        estimates.append(
            fastcover_loss(logits, cover_index(adj, 1, t), 100, target_scale=n / 100, c=0)
        )
    assert abs(float(torch.stack(estimates).mean() / full) - 1) < 0.03


def test_budget_loss_prefers_good_rankings_and_is_scale_free(er1000):
    _, n, adj = er1000
    index = cover_index(adj, 1)
    ks = [1, 8, 32, 128]
    greedy_order = torch.from_numpy(greedy(adj, n, 1).seeds)
    good = torch.empty(n, dtype=torch.float64)
    good[greedy_order] = torch.arange(n, 0, -1, dtype=torch.float64)  # greedy rank as score
    loss = budget_loss(good, index, ks)
    assert torch.allclose(loss, budget_loss(3 * good + 5, index, ks))
    assert loss < budget_loss(-good, index, ks)
    assert loss < budget_loss(torch.randn(n, dtype=torch.float64), index, ks)
    s = good.clone().requires_grad_()
    budget_loss(s, index, ks).backward()
    assert torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="budget"):
        budget_loss(good, index, [600])


def test_loss_rejects_bad_penalty():
    index = torch.tensor([[0], [0]])
    with pytest.raises(ValueError, match="penalty"):
        fastcover_loss(torch.zeros(1), index, penalty="quadratic")
    with pytest.raises(ValueError, match="budget"):
        fastcover_loss(torch.zeros(1), index, penalty="hinge_k")


def test_monotone_init_starts_from_soft_coverage():
    torch.manual_seed(0)
    n = 60
    edge_index = torch.randint(0, n, (2, 300))
    indeg = torch.bincount(edge_index[1], minlength=n).float()
    soft = torch.zeros(n).index_add_(0, edge_index[0], 1 / indeg[edge_index[1]])
    model = FastCover(features="degree")
    monotone_init_(model, d=1)
    logits = scores(model, edge_index, n)
    ratio = logits / soft
    assert torch.allclose(ratio[soft > 0], ratio[soft > 0][0].expand(int((soft > 0).sum())))
    assert (logits[soft == 0] == 0).all()


def _soft_coverage_model() -> FastCover:
    """One GRAT layer with W = 1, b = 0 on all-ones input: logit = sum_v 1 / indeg(v)."""
    model = FastCover(features="ones", in_channels=1, num_layers=1)
    with torch.no_grad():
        model.convs[0].lin.weight.fill_(1.0)
        model.convs[0].lin.bias.zero_()
    return model


def test_seeds_ties_and_rounds():
    # Hub 0 covers leaves 1..20, hub 21 covers leaves 1..19, hub 22 covers its own 23..30.
    edges = [(0, v) for v in range(1, 21)] + [(21, v) for v in range(1, 20)]
    edges += [(22, v) for v in range(23, 31)]
    edge_index = torch.tensor(edges).t()
    n, model = 31, _soft_coverage_model()
    assert torch.allclose(scores(model, edge_index, n)[[0, 21, 22]], torch.tensor([10.5, 9.5, 8]))
    one_pass = fastcover_seeds(edge_index, n, 2, 1, model=model)
    assert one_pass.tolist() == [0, 21]
    for residual in ("mask", "drop"):
        rescored = fastcover_seeds(edge_index, n, 2, 1, model=model, rounds=2, residual=residual)
        assert rescored.tolist() == [0, 22]
    # Leaves all score 0: ties go to the smallest id; chosen nodes are never picked twice.
    seeds = fastcover_seeds(edge_index, n, 6, 1, model=model, rounds=3)
    assert seeds.tolist() == [0, 21, 22, 1, 2, 3]
    sol = fastcover_solution(edge_index, n, 2, 1, model=model, rounds=2)
    assert sol.covered == 30 and sol.method == "fastcover" and "score" in sol.timings
    with pytest.raises(ValueError, match="rounds"):
        fastcover_seeds(edge_index, n, 2, 1, model=model, rounds=0)
    with pytest.raises(ValueError, match="residual"):
        fastcover_seeds(edge_index, n, 2, 1, model=model, rounds=2, residual="all")


@pytest.mark.parametrize("d", [1, 2, 3])
def test_pretrained_beats_a_floor_on_er1000(er1000, d):
    edge_index, n, adj = er1000
    model = load_pretrained(d)
    assert not model.training
    seeds = fastcover_seeds(edge_index, n, 8, d, model=model)
    assert len(seeds) == 8 and seeds.dtype == np.int64
    ratio = coverage(adj, seeds, d) / greedy(adj, 8, d).covered
    assert ratio >= 0.9


def test_pretrained_errors(tmp_path):
    from combinatorial.gnn.inference import WEIGHTS_DIR

    with pytest.warns(UserWarning, match="d=3"):
        deep = load_pretrained(4)
    ref = load_pretrained(3)
    for a, b in zip(deep.state_dict().values(), ref.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError):
        load_pretrained(0)
    with pytest.raises(GraphrecError, match="manifest"):
        load_pretrained(1, weights_dir=tmp_path)
    shutil.copytree(WEIGHTS_DIR, tmp_path, dirs_exist_ok=True)
    manifest = json.loads((tmp_path / "weights.json").read_text())
    (tmp_path / manifest["models"]["1"]["file"]).write_bytes(b"tampered")
    with pytest.raises(GraphrecError, match="SHA-256"):
        load_pretrained(1, weights_dir=tmp_path)
    del manifest["models"]["2"]
    (tmp_path / "weights.json").write_text(json.dumps(manifest))
    with pytest.raises(GraphrecError, match="no FastCover model for d=2"):
        load_pretrained(2, weights_dir=tmp_path)
