"""Tests of graphrec.metrics against scikit-learn, brute force and hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.metrics import roc_auc_score

from graphrec.metrics import auc, gauc, multi_auc, ndcg_at_k, ranking_metrics, recall_at_k

# ----------------------------------------------------------------------------- auc / gauc


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 5000)
    s = rng.integers(0, 20, 5000).astype(np.float32)  # many ties
    assert auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_auc_accepts_tensors_bool_and_2d():
    rng = np.random.default_rng(3)
    y = rng.random((40, 5)) < 0.3
    s = rng.normal(size=(40, 5))
    expected = roc_auc_score(y.ravel(), s.ravel())
    assert auc(torch.from_numpy(y), torch.from_numpy(s)) == pytest.approx(expected)
    assert auc(y.astype(np.float32), s) == pytest.approx(expected)


def test_auc_extremes():
    assert auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert auc([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4]) == 0.0
    assert auc([0, 1, 0, 1], [1.0, 1.0, 1.0, 1.0]) == 0.5


def test_auc_errors():
    with pytest.raises(ValueError, match="only one class"):
        auc([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"labels and scores differ in shape: \(3,\) vs \(2,\)"):
        auc([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="scores contains 1 NaN"):
        auc([0, 1, 1], [0.1, np.nan, 0.3])
    with pytest.raises(ValueError, match="labels must be binary.*found 2"):
        auc([0, 1, 2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="empty"):
        auc([], [])


def test_gauc_matches_per_user_sklearn_loop():
    rng = np.random.default_rng(4)
    n = 4000
    groups = rng.integers(0, 150, n)
    y = rng.integers(0, 2, n)
    y[groups < 10] = 0  # single-class users, must be skipped
    y[(groups >= 10) & (groups < 15)] = 1
    s = np.round(rng.normal(size=n), 1)  # ties inside users
    num = den = 0.0
    used = 0
    for u in np.unique(groups):
        m = groups == u
        if y[m].min() == y[m].max():
            continue
        num += m.sum() * roc_auc_score(y[m], s[m])
        den += m.sum()
        used += 1
    value, n_used = gauc(y, s, groups, return_counts=True)
    assert n_used == used == len(np.unique(groups)) - 15
    assert value == pytest.approx(num / den, abs=1e-12)
    assert gauc(y, s, groups.astype(str)) == pytest.approx(num / den, abs=1e-12)


def test_gauc_single_group_equals_auc():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 300)
    s = rng.normal(size=300)
    assert gauc(y, s, np.zeros(300)) == pytest.approx(auc(y, s))


def test_gauc_errors():
    with pytest.raises(ValueError, match="no group .* has both"):
        gauc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4], [0, 0, 1, 1])
    with pytest.raises(ValueError, match="groups has 3 entries, labels and scores have 2"):
        gauc([0, 1], [0.1, 0.2], [0, 0, 0])


# ----------------------------------------------------------------------------- multi_auc


def _multi_auc_brute(y, s, weighted):
    grades = np.unique(y)
    num = den = 0.0
    for i, a in enumerate(grades):
        for b in grades[i + 1 :]:
            lo, hi = s[y == a], s[y == b]
            conc = (hi[:, None] > lo[None, :]).sum() + 0.5 * (hi[:, None] == lo[None, :]).sum()
            w = lo.size * hi.size if weighted else 1.0
            num += w * conc / (lo.size * hi.size)
            den += w
    return num / den


@pytest.mark.parametrize("weighted", [False, True])
def test_multi_auc_brute_force(weighted):
    rng = np.random.default_rng(7)
    y = rng.choice([1, 2, 3, 4, 5], size=400, p=[0.05, 0.1, 0.25, 0.35, 0.25])
    s = np.round(y * 0.3 + rng.normal(size=400), 1)
    expected = _multi_auc_brute(y, s, weighted)
    assert multi_auc(y, s, weighted=weighted) == pytest.approx(expected, abs=1e-12)


def test_multi_auc_reduces_to_auc_for_two_grades_and_extremes():
    rng = np.random.default_rng(8)
    y = rng.integers(0, 2, 200)
    s = rng.normal(size=200)
    assert multi_auc(y, s) == pytest.approx(auc(y, s))
    grades = np.array([0, 1, 2, 3, 4, 4, 3])
    assert multi_auc(grades, grades * 2.0) == 1.0
    assert multi_auc(grades, np.ones(7)) == 0.5


def test_multi_auc_errors():
    with pytest.raises(ValueError, match=r"single grade \(3\)"):
        multi_auc([3, 3, 3], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="differ in shape"):
        multi_auc([1, 2, 3], [0.1, 0.2])


# ----------------------------------------------------------------------------- ranking


def _hand_case():
    """4 users x 5 items; user 3 has no test item and is excluded from every mean."""
    scores = np.array(
        [
            [0.9, 0.8, 0.7, 0.6, 0.5],
            [0.1, 0.2, 0.3, 0.4, 0.5],
            [0.5, 0.4, 0.3, 0.2, 0.1],
            [0.3, 0.1, 0.2, 0.5, 0.4],
        ]
    )
    test = sp.csr_matrix(
        (np.ones(4), ([0, 0, 1, 2], [2, 4, 4, 3])), shape=(4, 5)
    )  # u0 {2, 4}, u1 {4}, u2 {3}
    train = sp.csr_matrix((np.ones(3), ([0, 2, 2], [0, 0, 1])), shape=(4, 5))  # u0 {0}, u2 {0, 1}
    return scores, test, train


def test_ranking_metrics_hand_computed():
    scores, test, train = _hand_case()
    # Rankings after masking: u0 -> 1 2 3 4 | u1 -> 4 3 2 1 0 | u2 -> 2 3 4.
    # K=1: hits u0 [0], u1 [1], u2 [0].
    # K=2: hits u0 [0 1], u1 [1 0], u2 [0 1]; recall = (1/2 + 1 + 1) / 3,
    #   ndcg = ((1/log2 3) / (1 + 1/log2 3) + 1 + 1/log2 3) / 3 = (0.386853 + 1 + 0.630930) / 3.
    # K=5: u0 hits at ranks 2 and 4 -> dcg 0.630930 + 0.430677, idcg 1.630930 -> 0.650921.
    got = ranking_metrics(scores, test, train, ks=(1, 2, 5))
    expected = {
        "recall@1": 1 / 3,
        "ndcg@1": 1 / 3,
        "precision@1": 1 / 3,
        "recall@2": 0.8333333333,
        "ndcg@2": 0.6725942,
        "precision@2": 0.5,
        "recall@5": 1.0,
        "ndcg@5": 0.7606171,
        "precision@5": 4 / 15,
    }
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-6), key
    inv = 1 / math.log2(3)
    assert got["ndcg@2"] == pytest.approx((inv / (1 + inv) + 1 + inv) / 3)
    assert recall_at_k(scores, test, train, k=2) == pytest.approx(got["recall@2"])
    assert ndcg_at_k(scores, test, train, k=5) == pytest.approx(got["ndcg@5"])


def test_ranking_metrics_train_masking():
    scores, test, train = _hand_case()
    # Unmasked, user 0's top-2 is {0, 1}: no hit; user 2's is {0, 1}: no hit.
    assert recall_at_k(scores, test, None, k=2) == pytest.approx(1 / 3)
    # A test item that is also a training item is masked and can never be retrieved.
    assert recall_at_k(scores, test, test, k=5) == 0.0
    # The caller's matrix is not modified by masking.
    assert np.isfinite(scores).all()


def test_ranking_metrics_k_larger_than_items():
    scores, test, train = _hand_case()
    got = ranking_metrics(scores, test, train, ks=(10,))
    assert got["recall@10"] == 1.0
    assert got["precision@10"] == pytest.approx(4 / 30)


def _brute_ranking(scores, test, train, k):
    recalls, ndcgs = [], []
    for u in range(scores.shape[0]):
        rel = set(test[u].indices)
        if not rel:
            continue
        s = scores[u].copy()
        s[train[u].indices] = -np.inf
        top = np.argsort(-s, kind="stable")[:k]
        gains = [1.0 if i in rel else 0.0 for i in top]
        dcg = sum(g / math.log2(j + 2) for j, g in enumerate(gains))
        idcg = sum(1 / math.log2(j + 2) for j in range(min(len(rel), k)))
        recalls.append(sum(gains) / len(rel))
        ndcgs.append(dcg / idcg)
    return np.mean(recalls), np.mean(ndcgs)


def _random_problem(seed, n_users=60, n_items=45, dim=8):
    rng = np.random.default_rng(seed)
    user_emb = rng.normal(size=(n_users, dim))
    item_emb = rng.normal(size=(n_items, dim))
    inter = sp.random(n_users, n_items, density=0.2, random_state=seed, format="csr")
    inter.data[:] = 1
    split = rng.random(inter.nnz) < 0.7
    coo = inter.tocoo()
    train = sp.csr_matrix((coo.data[split], (coo.row[split], coo.col[split])), inter.shape)
    test = sp.csr_matrix((coo.data[~split], (coo.row[~split], coo.col[~split])), inter.shape)
    return user_emb, item_emb, train, test


def test_ranking_metrics_matches_brute_force():
    user_emb, item_emb, train, test = _random_problem(9)
    got = ranking_metrics((user_emb, item_emb), test, train, ks=(5, 10))
    for k in (5, 10):
        recall, ndcg = _brute_ranking(user_emb @ item_emb.T, test, train, k)
        assert got[f"recall@{k}"] == pytest.approx(recall, abs=1e-12)
        assert got[f"ndcg@{k}"] == pytest.approx(ndcg, abs=1e-12)


def test_ranking_metrics_sources_and_batch_size_agree():
    user_emb, item_emb, train, test = _random_problem(10)
    ue, ie = torch.from_numpy(user_emb), torch.from_numpy(item_emb)
    reference = ranking_metrics(ue @ ie.T, test, train, ks=(3, 20), batch_size=1024)
    variants = [
        ((ue, ie), 1),
        ((ue, ie), 7),
        ((user_emb, item_emb), 1000),
        (user_emb @ item_emb.T, 13),
        (lambda users: ue[users] @ ie.T, 16),
    ]
    for source, batch_size in variants:
        got = ranking_metrics(source, test, train, ks=(3, 20), batch_size=batch_size)
        assert got == pytest.approx(reference, abs=1e-12)


def test_ranking_metrics_errors():
    scores, test, train = _hand_case()
    with pytest.raises(ValueError, match=r"score matrix has shape \(4, 4\); test is 4 x 5"):
        ranking_metrics(scores[:, :4], test)
    with pytest.raises(ValueError, match="train has shape"):
        ranking_metrics(scores, test, train[:, :4])
    with pytest.raises(ValueError, match="embeddings cover 4 users x 3 items"):
        ranking_metrics((np.ones((4, 2)), np.ones((3, 2))), test)
    with pytest.raises(TypeError, match="scipy.sparse"):
        ranking_metrics(scores, test.toarray())
    with pytest.raises(ValueError, match="no interactions"):
        ranking_metrics(scores, sp.csr_matrix((4, 5)))
    with pytest.raises(ValueError, match="ks must be positive"):
        ranking_metrics(scores, test, ks=(0,))
    with pytest.raises(ValueError, match="NaN"):
        ranking_metrics(np.full((4, 5), np.nan), test)


def test_metric_ks_adds_the_selection_cutoff_and_refuses_bad_names():
    from graphrec.errors import ConfigError
    from graphrec.metrics import metric_ks

    assert metric_ks("recall@20", (10, 20)) == (10, 20)
    assert metric_ks("ndcg@5", [20, 10]) == (5, 10, 20)
    assert metric_ks("precision@3", ()) == (3,)
    for bad in ("auc@20", "recall", "recall@k"):
        with pytest.raises(ConfigError, match="metric must look like 'recall@20'"):
            metric_ks(bad, (20,))
