"""Collaborative filtering: bipartite graphs, MF / LightGCN, BPR / InfoNCE / HDCCF, sampler."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.nn.models import LightGCN as PyGLightGCN

from graphrec.graphs import BipartiteGraph, build_bipartite, split_per_user, to_binary_csr
from graphrec.io import Interactions
from graphrec.models.cf import (
    MF,
    CFConfig,
    CFTrainer,
    HDCCFLoss,
    InteractionSampler,
    LightGCN,
    bpr_loss,
    debiased_negative_mean,
    info_nce_loss,
    known_mask,
    l2_regularization,
    log_debiased_negative_mean,
    setwise_contrastive_loss,
    top_k,
)

torch.set_num_threads(1)


def _random_csr(n_users: int, n_items: int, density: float, seed: int) -> sp.csr_array:
    rng = np.random.default_rng(seed)
    dense = rng.random((n_users, n_items)) < density
    dense[np.arange(n_users), rng.integers(0, n_items, n_users)] = True  # no empty user
    return sp.csr_array(dense.astype(np.float32))


def _log(users, items, ratings=None) -> Interactions:
    users, items = np.asarray(users), np.asarray(items)
    return Interactions(
        users,
        items,
        None if ratings is None else np.asarray(ratings, dtype=np.float32),
        None,
        np.arange(users.max() + 1),
        np.arange(items.max() + 1),
    )


# ----------------------------------------------------------------------------- bipartite graph


def test_to_binary_csr_deduplicates_and_filters_ratings():
    log = _log([0, 0, 1, 1, 2], [0, 0, 1, 2, 2], [5, 4, 3, 4, 1])
    assert to_binary_csr(log).toarray().tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]
    assert to_binary_csr(log, min_rating=4).toarray().tolist() == [[1, 0, 0], [0, 0, 1], [0, 0, 0]]
    with pytest.raises(ValueError, match="ratings"):
        to_binary_csr(_log([0], [0]), min_rating=4)
    with pytest.raises(TypeError):
        to_binary_csr([[1, 0]])


def _check_partition(whole: sp.csr_array, parts: list[sp.csr_array]) -> None:
    total = sum(p.nnz for p in parts)
    assert total == whole.nnz
    union = sum((p.toarray() for p in parts), np.zeros(whole.shape))
    assert union.max() == 1  # pairwise disjoint
    assert np.array_equal(union, whole.toarray())


def test_split_per_user_invariants():
    m = _random_csr(60, 40, 0.15, seed=1)
    kept, out = split_per_user(m, 0.3, seed=5)
    _check_partition(m, [kept, out])
    n = np.diff(m.indptr)
    n_out = np.diff(out.indptr)
    expected = np.minimum(np.floor(0.3 * n + 0.5), n - 1)
    assert np.array_equal(n_out, expected)
    assert (np.diff(kept.indptr) >= 1).all()  # every user keeps a training item
    again, _ = split_per_user(m, 0.3, seed=5)
    other, _ = split_per_user(m, 0.3, seed=6)
    assert (again != kept).nnz == 0
    assert (other != kept).nnz > 0
    with pytest.raises(ValueError, match="fraction"):
        split_per_user(m, 1.0)


def test_split_per_user_keeps_single_item_users():
    m = sp.csr_array(np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0]], dtype=np.float32))
    kept, out = split_per_user(m, 0.9, seed=0)
    assert np.diff(kept.indptr).tolist() == [1, 1, 0]
    assert np.diff(out.indptr).tolist() == [0, 1, 0]


def test_build_bipartite_with_official_test_drops_overlap():
    train = _random_csr(30, 20, 0.3, seed=2)
    test = _random_csr(30, 20, 0.1, seed=3)
    overlap = int(train.multiply(test).nnz)
    assert overlap > 0
    g = build_bipartite(train, test, valid_fraction=0.2, seed=1)
    assert g.dropped_test == overlap
    _check_partition(train, [g.train, g.valid])
    assert g.train.multiply(g.test).nnz == 0 and g.valid.multiply(g.test).nnz == 0
    assert (g.test + train.multiply(test) - test).nnz == 0  # test = official test minus overlap
    assert (g.user_degree() >= 1).all()
    assert g.num_nodes == 50 and "valid" in g.summary()


def test_build_bipartite_carves_test_and_validation_from_a_log():
    rng = np.random.default_rng(0)
    users = rng.integers(0, 25, 600)
    items = rng.integers(0, 40, 600)
    log = _log(users, items, rng.integers(1, 6, 600))
    g = build_bipartite(log, valid_fraction=0.1, test_fraction=0.2, min_rating=3, seed=4)
    whole = to_binary_csr(log, min_rating=3)
    _check_partition(whole, [g.train, g.valid, g.test])
    assert (np.diff(g.train.indptr)[np.diff(whole.indptr) > 0] >= 1).all()
    assert g.user_ids is not None and len(g.item_ids) == g.num_items
    g2 = build_bipartite(log, valid_fraction=0.1, test_fraction=0.2, min_rating=3, seed=4)
    assert (g2.test != g.test).nnz == 0 and (g2.valid != g.valid).nnz == 0


def test_bipartite_edges_and_normalisation():
    train = sp.csr_array(np.array([[1, 1, 0], [0, 1, 1]], dtype=np.float32))
    g = BipartiteGraph(train, sp.csr_array((2, 3)), sp.csr_array((2, 3)))
    ei = g.edge_index()
    assert ei.tolist() == [[0, 0, 1, 1, 2, 3, 3, 4], [2, 3, 3, 4, 0, 0, 1, 1]]
    ei2, w = g.normalized_edges()
    ref_ei, ref_w = gcn_norm(ei, None, 5, add_self_loops=False)
    assert torch.equal(ei2, ref_ei)
    torch.testing.assert_close(w, ref_w)
    a = np.zeros((5, 5))
    a[:2, 2:] = train.toarray()
    a = a + a.T
    d = a.sum(1) ** -0.5
    torch.testing.assert_close(
        g.normalized_adjacency().to_dense(),
        torch.tensor(d[:, None] * a * d[None], dtype=torch.float),
    )
    data = g.to_data()
    assert data.num_users == 2 and data.num_items == 3 and data.edge_weight.shape == (8,)


def test_movielens_fold_split(shared_data):
    from graphrec.datasets import load_movielens100k

    ml = load_movielens100k(shared_data / "movielens" / "ml-100k", fold=1)
    g = build_bipartite(ml.train, ml.test, min_rating=4, valid_fraction=0.1, seed=0)
    assert (g.num_users, g.num_items) == (943, 1682)
    whole = to_binary_csr(ml.train, min_rating=4)
    _check_partition(whole, [g.train, g.valid])
    assert g.train.multiply(g.test).nnz == 0 and g.dropped_test == 0
    assert (g.user_degree()[np.diff(whole.indptr) > 0] >= 1).all()


def test_gowalla_split(shared_data):
    from graphrec.datasets import load_gowalla

    gw = load_gowalla(shared_data / "lightgcn" / "gowalla")
    g = build_bipartite(gw.train, gw.test, valid_fraction=0.1, seed=0)
    assert g.train.nnz + g.valid.nnz == 810_128 and g.test.nnz == 217_242
    assert g.train.multiply(g.valid).nnz == 0 and g.train.multiply(g.test).nnz == 0
    assert g.user_degree().min() >= 1


# ----------------------------------------------------------------------------- backbones


def _tiny_graph() -> BipartiteGraph:
    train = sp.csr_array(np.array([[1, 1, 0, 0], [0, 1, 1, 0], [1, 0, 0, 1]], dtype=np.float32))
    empty = sp.csr_array((3, 4), dtype=np.float32)
    return BipartiteGraph(train, empty, empty)


def test_mf_interface():
    torch.manual_seed(0)
    mf = MF(5, 7, embedding_dim=4)
    u, i = mf()
    assert u.shape == (5, 4) and i.shape == (7, 4)
    assert mf.ego_embeddings()[0] is u
    torch.testing.assert_close(mf.scores(torch.tensor([1, 3])), u[[1, 3]] @ i.t())
    assert abs(float(mf.user_embedding.weight.detach().std()) - 0.1) < 0.05
    with pytest.raises(ValueError, match="init"):
        MF(2, 2, init="zeros")


@pytest.mark.parametrize("form", ["sparse", "edges"])
def test_lightgcn_equals_dense_propagation(form):
    g = _tiny_graph()
    torch.manual_seed(0)
    if form == "sparse":
        model = LightGCN.from_graph(g, embedding_dim=3, num_layers=2)
    else:
        model = LightGCN(3, 4, g.normalized_edges(), embedding_dim=3, num_layers=2)
    x0 = model.lightgcn.embedding.weight.detach().double()
    a = np.zeros((7, 7))
    a[:3, 3:] = g.train.toarray()
    a = a + a.T
    d = a.sum(1) ** -0.5
    norm = torch.tensor(d[:, None] * a * d[None])
    x1 = norm @ x0
    x2 = norm @ x1
    expected = (x0 + x1 + x2) / 3
    u, i = model()
    torch.testing.assert_close(u.double(), expected[:3], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(i.double(), expected[3:], rtol=1e-5, atol=1e-6)
    ego_u, ego_i = model.ego_embeddings()
    assert torch.equal(ego_u, model.lightgcn.embedding.weight[:3])
    (u.sum() + i.sum()).backward()
    assert model.lightgcn.embedding.weight.grad.abs().sum() > 0


def test_lightgcn_matches_pyg_lightgcn_on_raw_edges():
    g = _tiny_graph()
    torch.manual_seed(1)
    ours = LightGCN.from_graph(g, embedding_dim=5, num_layers=3)
    peer = PyGLightGCN(7, 5, 3)  # normalises per call with gcn_norm
    peer.embedding.weight.data.copy_(ours.lightgcn.embedding.weight.data)
    u, i = ours()
    expected = peer.get_embedding(g.edge_index())
    torch.testing.assert_close(torch.cat([u, i]), expected)
    # The scipy products' backward equals autograd through PyG's LGConv layers.
    weights = torch.randn(expected.shape)
    (torch.cat([u, i]) * weights).sum().backward()
    (expected * weights).sum().backward()
    torch.testing.assert_close(ours.lightgcn.embedding.weight.grad, peer.embedding.weight.grad)
    with pytest.raises(ValueError, match="adjacency"):
        LightGCN(3, 3, g.normalized_adjacency())


# ----------------------------------------------------------------------------- losses


def test_bpr_hand_computed():
    pos = torch.tensor([2.0, 0.0])
    neg = torch.tensor([1.0, 1.0])
    expected = (math.log(1 + math.exp(-1.0)) + math.log(1 + math.exp(1.0))) / 2
    assert bpr_loss(pos, neg).item() == pytest.approx(expected, rel=1e-6)
    # [B, N] negatives: one mean over all B * N triples (no double division).
    neg2 = torch.tensor([[1.0, 2.0], [1.0, 0.0]])
    expected2 = (
        sum(math.log(1 + math.exp(n - p)) for p, row in zip([2, 0], [[1, 2], [1, 0]]) for n in row)
        / 4
    )
    assert bpr_loss(pos, neg2).item() == pytest.approx(expected2, rel=1e-6)
    # Gradient of the mean: d/ds_pos = -sigmoid(s_neg - s_pos) / B.
    p = pos.clone().requires_grad_()
    bpr_loss(p, neg).backward()
    torch.testing.assert_close(p.grad, -torch.sigmoid(neg - pos) / 2)


def test_bpr_and_l2_versus_installed_pyg_recommendation_loss():
    """Pins PyG 2.8.1's BPRLoss (pyg-team #7196): its BPR term is a single mean (as ours);
    its L2 term is ``lambda * ||params||^2 / B`` -- twice :func:`l2_regularization`, over all
    embeddings unless ``node_id`` is passed."""
    from torch_geometric.nn.models.lightgcn import BPRLoss

    gen = torch.Generator().manual_seed(0)
    pos, neg = torch.randn(8, generator=gen), torch.randn(8, generator=gen)
    params = torch.randn(16, 4, generator=gen)
    torch.testing.assert_close(BPRLoss(0.0)(pos, neg), bpr_loss(pos, neg))
    pyg = BPRLoss(1e-2)(pos, neg, params) - bpr_loss(pos, neg)
    torch.testing.assert_close(pyg, 2 * 1e-2 * l2_regularization(params, batch_size=8))


def test_l2_regularization():
    a = torch.tensor([[1.0, 2.0], [0.0, 1.0]])
    b = torch.tensor([[3.0, 0.0], [0.0, 0.0]])
    assert l2_regularization(a, b).item() == pytest.approx((6 + 9) / 4)
    assert l2_regularization(a, batch_size=3).item() == pytest.approx(6 / 6)


def test_info_nce_hand_computed():
    u = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    i = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    s = (u @ i.t()).double()  # [[2, 1], [0, 2]]
    row = [-s[0, 0] + torch.logsumexp(s[0], 0), -s[1, 1] + torch.logsumexp(s[1], 0)]
    col = [-s[0, 0] + torch.logsumexp(s[:, 0], 0), -s[1, 1] + torch.logsumexp(s[:, 1], 0)]
    loss = info_nce_loss(u, i, temperature=1.0, similarity="dot", symmetric=False)
    assert loss.item() == pytest.approx(float(sum(row) / 2), rel=1e-6)
    both = info_nce_loss(u, i, temperature=1.0, similarity="dot")
    assert both.item() == pytest.approx(float((sum(row) + sum(col)) / 2), rel=1e-6)
    # A known positive off the diagonal is not a negative: user 0's row has only itself left.
    known = torch.tensor([[True, True], [False, True]])
    masked = info_nce_loss(u, i, temperature=1.0, similarity="dot", known=known, symmetric=False)
    assert masked.item() == pytest.approx(float(row[1] / 2), rel=1e-6)


def _batch_tensors(b=12, f=6, m=1, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn(b, f, generator=gen, dtype=dtype)
    i = torch.randn(b, f, generator=gen, dtype=dtype)
    known = torch.rand(b, b, generator=gen) < 0.2
    pos_i = torch.cat([i[:, None], torch.randn(b, m - 1, f, generator=gen, dtype=dtype)], 1)
    pos_u = torch.cat([u[:, None], torch.randn(b, m - 1, f, generator=gen, dtype=dtype)], 1)
    return u, i, known, pos_i, pos_u


@pytest.mark.parametrize("similarity", ["cosine", "dot"])
@pytest.mark.parametrize("temperature", [0.05, 0.2, 1.0])
def test_hdccf_with_zero_prior_is_infonce(similarity, temperature):
    u, i, known, _, _ = _batch_tensors()
    if similarity == "dot":
        u, i = u / 3, i / 3
    expected = info_nce_loss(u, i, temperature=temperature, known=known, similarity=similarity)
    loss = HDCCFLoss(temperature, tau_plus=0.0, beta=0.0, similarity=similarity)
    got = loss(u, i, known=known)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    one_side = HDCCFLoss(temperature, tau_plus=0.0, similarity=similarity, item_side=False)
    expected_u = info_nce_loss(
        u, i, temperature=temperature, known=known, similarity=similarity, symmetric=False
    )
    torch.testing.assert_close(one_side(u, i, known=known), expected_u, rtol=1e-12, atol=1e-12)
    # float32 too (the training dtype), to float32 accuracy.
    got32 = loss(u.float(), i.float(), known=known)
    torch.testing.assert_close(got32, expected.float())


def test_hdccf_gradients_match_infonce_at_zero_prior():
    u, i, known, _, _ = _batch_tensors(seed=3)
    u1, i1 = u.clone().requires_grad_(), i.clone().requires_grad_()
    u2, i2 = u.clone().requires_grad_(), i.clone().requires_grad_()
    HDCCFLoss(0.1, tau_plus=0.0)(u1, i1, known=known).backward()
    info_nce_loss(u2, i2, temperature=0.1, known=known).backward()
    torch.testing.assert_close(u1.grad, u2.grad)
    torch.testing.assert_close(i1.grad, i2.grad)


def test_debiased_term_is_unbiased_monte_carlo():
    """E[g] over draws from p = tau+ p+ + (1 - tau+) p- equals E_{p-}[e^s] (DCL, no clip)."""
    gen = torch.Generator().manual_seed(0)
    n_items, n_pos = 40, 8
    logits = torch.linspace(-1.0, 2.0, n_items, dtype=torch.float64)  # positives score high
    is_pos = torch.zeros(n_items, dtype=torch.bool)
    is_pos[-n_pos:] = True
    p_pos = is_pos.double() / n_pos
    p_neg = (~is_pos).double() * torch.linspace(1.0, 3.0, n_items, dtype=torch.float64)
    p_neg = p_neg / p_neg.sum()  # non-uniform true-negative distribution
    tau_plus = 0.2
    p_data = tau_plus * p_pos + (1 - tau_plus) * p_neg
    target = float((p_neg * logits.exp()).sum())

    reps, n, m = 40_000, 16, 4
    cand = torch.multinomial(p_data, reps * n, replacement=True, generator=gen).view(reps, n)
    pos = torch.multinomial(p_pos, reps * m, replacement=True, generator=gen).view(reps, m)
    g = debiased_negative_mean(logits[cand], logits[pos], tau_plus=tau_plus)
    se = float(g.std()) / math.sqrt(reps)
    assert abs(float(g.mean()) - target) < 4 * se
    naive = logits[cand].exp().mean(-1)  # the biased estimate that ignores false negatives
    assert abs(float(naive.mean()) - target) > 20 * se
    # The loss's log-space version agrees wherever g > 0.
    ok = g > 0
    log_g = log_debiased_negative_mean(logits[cand], logits[pos], tau_plus=tau_plus)
    torch.testing.assert_close(log_g[ok], g[ok].log())


def test_logq_weights_recover_the_uniform_mean():
    """Candidates drawn proportionally to q, re-weighted by 1/q (self-normalised): hand value
    on one row, and the estimate converges to the catalogue's uniform mean of e^s."""
    s = torch.tensor([[0.0, 1.0, 2.0]], dtype=torch.float64)
    q = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64)
    g = debiased_negative_mean(s, s[:, :1], tau_plus=0.0, log_weight=-q.log())
    expected = float((s.exp() / q).sum() / (1 / q).sum())
    assert float(g) == pytest.approx(expected)
    log_g = log_debiased_negative_mean(s, s[:, :1], tau_plus=0.0, log_weight=-q.log())
    assert float(log_g) == pytest.approx(math.log(expected))

    gen = torch.Generator().manual_seed(0)
    n_items = 50
    logits = torch.linspace(-1.0, 1.5, n_items, dtype=torch.float64)
    freq = torch.linspace(1.0, 20.0, n_items, dtype=torch.float64)  # popular items score high
    cand = torch.multinomial(freq / freq.sum(), 4000 * 64, replacement=True, generator=gen)
    cand = cand.view(4000, 64)
    w = -freq.log()[cand]
    corrected = debiased_negative_mean(logits[cand], logits[:1, None], tau_plus=0.0, log_weight=w)
    plain = debiased_negative_mean(logits[cand], logits[:1, None], tau_plus=0.0)
    uniform = float(logits.exp().mean())
    assert abs(float(corrected.mean()) - uniform) < 0.025 * uniform  # self-normalised: O(1/N)
    assert float(plain.mean()) > 1.1 * uniform  # frequency-aware draws overweight popular items


def test_hdccf_logq_option():
    torch.manual_seed(0)
    u, i = torch.randn(6, 4), torch.randn(6, 4)
    log_q = torch.randn(6)
    plain = HDCCFLoss(0.2, 0.05)(u, i)
    # logq = 0 ignores the frequencies; equal frequencies make the correction a no-op.
    assert torch.equal(HDCCFLoss(0.2, 0.05)(u, i, item_log_q=log_q, user_log_q=log_q), plain)
    same = torch.full((6,), 1.7)
    loss = HDCCFLoss(0.2, 0.05, logq=1.0)(u, i, item_log_q=same, user_log_q=same)
    torch.testing.assert_close(loss, plain)
    # Down-weighting a candidate item (high frequency) lowers every user's negative term.
    hot = torch.zeros(6)
    hot[2] = 5.0
    user_side = HDCCFLoss(0.2, 0.0, logq=1.0, item_side=False)
    base = HDCCFLoss(0.2, 0.0, item_side=False)
    assert user_side(u, i, item_log_q=hot) != base(u, i)
    with pytest.raises(ValueError, match="item_log_q"):
        HDCCFLoss(logq=1.0)(u, i)


def test_debiased_term_clip_and_log_space():
    neg = torch.tensor([[-9.0, -9.5], [1.0, 2.0]], dtype=torch.float64)
    pos = torch.tensor([[3.0], [0.5]], dtype=torch.float64)
    clip = math.exp(-10.0)
    g = debiased_negative_mean(neg, pos, tau_plus=0.1, clip=clip)
    assert g[0].item() == pytest.approx(clip)  # the estimate is negative -> clipped
    unclipped = (math.exp(1) / 2 + math.exp(2) / 2 - 0.1 * math.exp(0.5)) / 0.9
    assert g[1].item() == pytest.approx(unclipped)
    log_g = log_debiased_negative_mean(neg, pos, tau_plus=0.1, log_clip=-10.0)
    torch.testing.assert_close(log_g, g.log())
    # Clip at the cosine bound -1/t with large-magnitude logits stays finite in float32.
    t = 0.02
    neg32 = torch.full((1, 4), -1 / t)
    pos32 = torch.full((1, 1), 1 / t, requires_grad=True)
    loss = setwise_contrastive_loss(pos32, neg32, tau_plus=0.1, log_clip=-1 / t)
    loss.sum().backward()
    assert torch.isfinite(loss).all() and torch.isfinite(pos32.grad).all()
    with pytest.raises(ValueError, match="tau_plus"):
        debiased_negative_mean(neg, pos, tau_plus=1.0)


def test_setwise_loss_hand_computed_and_masking():
    pos = torch.tensor([[1.0, 0.5, -0.2]], dtype=torch.float64)
    neg = torch.tensor([[0.3, 2.0, -1.0, 0.1]], dtype=torch.float64)
    sp_ = pos.exp().sum()
    expected = -torch.log(sp_ / (sp_ + neg.exp().sum()))
    torch.testing.assert_close(setwise_contrastive_loss(pos, neg)[0], expected)
    # A masked candidate is as if it were absent.
    valid = torch.tensor([[True, False, True, True]])
    dropped = setwise_contrastive_loss(pos, neg[:, [0, 2, 3]], tau_plus=0.05, beta=0.5)
    torch.testing.assert_close(
        setwise_contrastive_loss(pos, neg, valid=valid, tau_plus=0.05, beta=0.5), dropped
    )
    # A row without candidates costs 0 and yields finite gradients.
    p = pos.clone().requires_grad_()
    n = neg.clone().requires_grad_()
    none = torch.zeros_like(valid)
    out = setwise_contrastive_loss(p, n, valid=none, tau_plus=0.05, beta=1.0, log_clip=-10.0)
    out.sum().backward()
    assert out.item() == 0.0
    assert torch.isfinite(p.grad).all() and torch.isfinite(n.grad).all()


@pytest.mark.parametrize("tau_plus", [0.0, 0.05])
def test_harder_negatives_receive_larger_gradient(tau_plus):
    neg_values = torch.linspace(-2.0, 2.0, 9, dtype=torch.float64)
    ratios = []
    for beta in (0.0, 1.0, 3.0):
        neg = neg_values[None].clone().requires_grad_()
        pos = torch.tensor([[2.5]], dtype=torch.float64)
        setwise_contrastive_loss(pos, neg, tau_plus=tau_plus, beta=beta).sum().backward()
        grad = neg.grad[0]
        assert (grad > 0).all()  # the loss pushes every negative down
        assert (grad[1:] > grad[:-1]).all()  # and the harder ones more strongly
        ratios.append(float(grad[-1] / grad[0]))
    assert ratios[0] < ratios[1] < ratios[2]  # beta sharpens the hardness weighting
    # HCL's variant (gradient through the weights): same value, easy negatives pulled up.
    neg = neg_values[None].clone().requires_grad_()
    pos = torch.tensor([[2.5]], dtype=torch.float64)
    kw = dict(tau_plus=tau_plus, beta=3.0)
    through = setwise_contrastive_loss(pos, neg, detach_hardness=False, **kw)
    torch.testing.assert_close(through, setwise_contrastive_loss(pos, neg, **kw))
    through.sum().backward()
    assert neg.grad[0, 0] < 0 < neg.grad[0, -1]


def test_hdccf_positives_and_explicit_negatives():
    u, i, known, pos_i, pos_u = _batch_tensors(b=6, m=3, seed=2)
    t = 0.2
    loss = HDCCFLoss(t, tau_plus=0.05, beta=0.5)
    total = loss(u, i, pos_item_emb=pos_i, pos_user_emb=pos_u, known=known)
    cos = F.normalize(u, dim=-1) @ F.normalize(i, dim=-1).t() / t
    masked = known | torch.eye(6, dtype=torch.bool)
    pu = torch.einsum("bf,bmf->bm", F.normalize(u, dim=-1), F.normalize(pos_i, dim=-1)) / t
    pi = torch.einsum("bf,bmf->bm", F.normalize(i, dim=-1), F.normalize(pos_u, dim=-1)) / t
    kw = dict(tau_plus=0.05, beta=0.5, log_clip=-1 / t)
    expected = setwise_contrastive_loss(pu, cos, valid=~masked, **kw).mean()
    expected = expected + setwise_contrastive_loss(pi, cos.t(), valid=~masked.t(), **kw).mean()
    torch.testing.assert_close(total, expected)
    # Explicit negatives replace the in-batch items on the user side.
    gen = torch.Generator().manual_seed(9)
    neg = torch.randn(6, 5, 6, generator=gen, dtype=torch.float64)
    valid = torch.rand(6, 5, generator=gen) < 0.8
    user_only = HDCCFLoss(t, tau_plus=0.05, beta=0.5, item_side=False)
    got = user_only(u, i, pos_item_emb=pos_i, neg_item_emb=neg, neg_item_valid=valid)
    nl = torch.einsum("bf,bnf->bn", F.normalize(u, dim=-1), F.normalize(neg, dim=-1)) / t
    torch.testing.assert_close(got, setwise_contrastive_loss(pu, nl, valid=valid, **kw).mean())
    with pytest.raises(ValueError):
        HDCCFLoss(user_side=False, item_side=False)


# ----------------------------------------------------------------------------- sampler


def test_interaction_sampler_covers_epoch_and_masks_known():
    train = _random_csr(20, 30, 0.2, seed=7)
    sampler = InteractionSampler(train, 16, num_positives=3, num_negatives=4, alpha=1.0, seed=3)
    batches = list(sampler.epoch(0))
    assert len(batches) == len(sampler) == -(-train.nnz // 16)
    users = torch.cat([b.users for b in batches]).numpy()
    items = torch.cat([b.items for b in batches]).numpy()
    seen = sp.csr_array((np.ones(len(users)), (users, items)), shape=train.shape)
    assert seen.nnz == train.nnz and (seen != train).nnz == 0  # each pair exactly once
    dense = train.toarray() != 0
    for b in batches:
        u, i = b.users.numpy(), b.items.numpy()
        assert np.array_equal(b.known.numpy(), dense[u][:, i])
        assert b.known.diagonal().all()
        assert torch.equal(b.pos_items[:, 0], b.items) and torch.equal(b.pos_users[:, 0], b.users)
        assert dense[u[:, None], b.pos_items.numpy()].all()
        assert dense[b.pos_users.numpy(), i[:, None]].all()
        negs = b.neg_items.numpy()
        assert not dense[u[:, None], negs][b.neg_valid.numpy()].any()
    again = list(sampler.epoch(0))
    assert all(
        torch.equal(a.users, b.users) and torch.equal(a.neg_items, b.neg_items)
        for a, b in zip(batches, again)
    )
    assert not torch.equal(next(sampler.epoch(1)).users, batches[0].users)
    assert np.array_equal(known_mask(train, u, i), dense[u][:, i])


def test_user_sampler_draws_users_uniformly():
    # one heavy user (20 items) and four light ones (1 item each): by interaction the heavy
    # user anchors 20/24 of the pairs, by user 1/5; every pair is a training pair
    rows = np.r_[np.zeros(20, dtype=int), 1, 2, 3, 4]
    cols = np.r_[np.arange(20), 20, 21, 22, 23]
    train = sp.csr_array((np.ones(24), (rows, cols)), shape=(6, 24))  # user 5: no items
    sampler = InteractionSampler(train, 1000, num_negatives=1, by_user=True, seed=0)
    users, items = [], []
    for epoch in range(400):
        for b in sampler.epoch(epoch):
            users.append(b.users.numpy())
            items.append(b.items.numpy())
    users, items = np.concatenate(users), np.concatenate(items)
    assert len(users) == 400 * train.nnz  # an epoch still has nnz pairs
    assert (train.toarray()[users, items] == 1).all() and not (users == 5).any()
    share = np.bincount(users, minlength=6) / len(users)
    np.testing.assert_allclose(share[:5], 0.2, atol=0.01)
    heavy = np.bincount(items[users == 0], minlength=20)[:20] / (users == 0).sum()
    np.testing.assert_allclose(heavy, 0.05, atol=0.015)  # its items uniformly
    with pytest.raises(ValueError, match="sampling"):
        CFConfig(sampling="item")


# ----------------------------------------------------------------------------- trainer


@pytest.fixture(scope="module")
def ml_tiny(shared_data) -> BipartiteGraph:
    """The first 120 users x 300 items of MovieLens-100K fold 1, ratings >= 4."""
    from graphrec.datasets import load_movielens100k

    ml = load_movielens100k(shared_data / "movielens" / "ml-100k", fold=1)
    train = to_binary_csr(ml.train, min_rating=4)[:120, :300]
    test = to_binary_csr(ml.test, min_rating=4)[:120, :300]
    return build_bipartite(train, test, valid_fraction=0.2, seed=0)


def _same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _strip_times(history: list[dict]) -> list[dict]:
    drop = ("train_seconds", "cpu_seconds")
    return [{k: v for k, v in rec.items() if k not in drop} for rec in history]


@pytest.mark.parametrize(
    "backbone, loss, extra",
    [("lightgcn", "hdccf", {"num_positives": 2, "tau_plus": 0.05}), ("mf", "bpr", {})],
)
def test_resumed_run_equals_uninterrupted(ml_tiny, tmp_path, backbone, loss, extra):
    cfg = dict(
        backbone=backbone, loss=loss, embedding_dim=16, num_layers=2, batch_size=256,
        lr=5e-3, patience=0, seed=3, **extra,
    )  # fmt: skip
    full = CFTrainer(ml_tiny, CFConfig(epochs=4, **cfg)).fit()

    ckpt = tmp_path / "run.pt"
    CFTrainer(ml_tiny, CFConfig(epochs=2, **cfg)).fit(checkpoint=ckpt)
    resumed = CFTrainer(ml_tiny, CFConfig(epochs=4, **cfg))
    resumed.fit(checkpoint=ckpt)
    assert resumed.epoch == full.epoch == 4
    assert _same_state(resumed.model.state_dict(), full.model.state_dict())
    assert _strip_times(resumed.history) == _strip_times(full.history)
    assert resumed.best_epoch == full.best_epoch
    assert resumed.evaluate("test") == full.evaluate("test")
    # Training changed the weights and the validation metric is a real number.
    fresh = CFTrainer(ml_tiny, CFConfig(epochs=0, **cfg))
    assert not _same_state(fresh.model.state_dict(), full.model.state_dict())
    assert 0.0 <= full.best_metric <= 1.0
    # A checkpoint of another configuration is refused.
    other = CFTrainer(ml_tiny, CFConfig(epochs=4, **{**cfg, "lr": 1e-2}))
    with pytest.raises(ValueError, match="lr"):
        other.fit(checkpoint=ckpt)


def test_trainer_early_stopping_and_budget(ml_tiny):
    seen = []
    cfg = CFConfig(
        backbone="mf", loss="infonce", embedding_dim=8, batch_size=512, lr=0.0, reg=0.0,
        epochs=20, patience=2, seed=0,
    )  # fmt: skip
    trainer = CFTrainer(ml_tiny, cfg, progress=seen.append).fit()
    # lr = 0: the metric never improves after the first evaluation -> stop after 1 + 2.
    assert trainer.epoch == 3 and trainer.best_epoch == 1 and len(seen) == 3
    assert set(seen[0]["valid"]) == {"recall@20", "ndcg@20", "precision@20"}
    budget = CFTrainer(ml_tiny, CFConfig(backbone="mf", epochs=50, cpu_budget=1e-9)).fit()
    assert budget.epoch == 1 and len(budget.history) == 1  # stops after the first step
    assert CFTrainer(ml_tiny, CFConfig(backbone="mf", cpu_budget=0.0)).fit().epoch == 0


def test_trainer_recommend_excludes_known(ml_tiny):
    trainer = CFTrainer(ml_tiny, CFConfig(backbone="mf", embedding_dim=8, epochs=0))
    items, scores = trainer.recommend([0, 5], k=10)
    known = (ml_tiny.train + ml_tiny.valid).toarray() != 0
    assert items.shape == scores.shape == (2, 10)
    assert not known[[[0], [5]], items].any()
    assert (np.diff(scores, axis=1) <= 0).all()
    u, i = trainer.embeddings()
    everything = top_k(u, i, [0], k=400)
    assert (everything[0][0, 300:] == -1).all() and np.isneginf(everything[1][0, 300:]).all()
    with pytest.raises(ValueError, match="backbone"):
        CFConfig(backbone="ngcf")
    with pytest.raises(ValueError, match="metric"):
        CFConfig(metric="auc")
    assert CFConfig(metric="ndcg@10").ks == (10, 20)


@pytest.mark.parametrize(
    "backbone, loss, temperature", [("mf", "bpr", 0.1), ("lightgcn", "hdccf", 0.5)]
)
def test_training_improves_test_recall(ml_tiny, backbone, loss, temperature):
    cfg = CFConfig(
        backbone=backbone, loss=loss, embedding_dim=16, num_layers=2, batch_size=256, lr=1e-2,
        epochs=15, patience=0, temperature=temperature, seed=0,
    )  # fmt: skip
    trainer = CFTrainer(ml_tiny, cfg)
    before = trainer.evaluate("test")["recall@20"]
    after = trainer.fit().evaluate("test")["recall@20"]
    assert after > before + 0.05
