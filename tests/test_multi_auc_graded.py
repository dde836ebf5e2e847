"""Multi-AUC over the multi-task grade 2 y_A + y_B and graded NDCG: hand cases, brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.metrics import ndcg_score

from graphrec.errors import ConfigError
from graphrec.metrics import graded_ndcg, multi_auc


def _brute_multi_auc(grade, score):
    """Mean over grade pairs g > g' of the share of (row of g, row of g') pairs ordered right,
    ties 1/2, by explicit pair counting."""
    values = []
    for lo, hi in itertools.combinations(sorted(set(grade.tolist())), 2):
        wins = [1.0 if si > sj else 0.5 if si == sj else 0.0
                for si, gi in zip(score, grade) if gi == hi
                for sj, gj in zip(score, grade) if gj == lo]  # fmt: skip
        values.append(np.mean(wins))
    return np.mean(values)


def test_multi_auc_hand_case_on_the_four_groups():
    # groups ++ (grade 3), +- (2), -+ (1), -- (0); one inversion: the -+ row above the +- row
    y_a = np.array([1, 1, 0, 0])
    y_b = np.array([1, 0, 1, 0])
    score = np.array([0.9, 0.4, 0.5, 0.1])
    # six grade pairs, all ordered right except (2, 1): mean = 5/6
    assert multi_auc(2 * y_a + y_b, score) == pytest.approx(5 / 6)


def test_multi_auc_equals_brute_force_pair_counts():
    rng = np.random.default_rng(0)
    for trial in range(30):
        n = int(rng.integers(6, 40))
        y_a, y_b = rng.integers(0, 2, n), (rng.random(n) < 0.3).astype(int)
        grade = 2 * y_a + y_b
        if len(set(grade.tolist())) < 2:
            continue
        score = rng.integers(0, 4, n).astype(float) if trial % 2 else rng.normal(size=n)
        assert multi_auc(grade, score) == pytest.approx(_brute_multi_auc(grade, score), abs=1e-12)


def test_graded_ndcg_hand_case():
    # one user: relevances 3, 0, 2 scored 0.2, 0.9, 0.5 -> ranked 0, 2, 3
    dcg = 0 / np.log2(2) + 2 / np.log2(3) + 3 / np.log2(4)
    ideal = 3 / np.log2(2) + 2 / np.log2(3) + 0 / np.log2(4)
    rel, score = np.array([3, 0, 2]), np.array([0.2, 0.9, 0.5])
    assert graded_ndcg(rel, score) == pytest.approx(dcg / ideal)
    # @2: the third rank no longer counts
    assert graded_ndcg(rel, score, k=2) == pytest.approx((2 / np.log2(3)) / (3 + 2 / np.log2(3)))
    # a tie between the two top scores shares their gains: (3 + 0) / 2 at ranks 1 and 2
    tied = np.array([0.9, 0.9, 0.5])
    expected = (1.5 / np.log2(2) + 1.5 / np.log2(3) + 2 / np.log2(4)) / ideal
    assert graded_ndcg(rel, tied) == pytest.approx(expected)


def test_graded_ndcg_per_user_equals_sklearn_mean():
    rng = np.random.default_rng(1)
    for trial in range(40):
        n = int(rng.integers(4, 50))
        rel = (2 * rng.integers(0, 2, n) + (rng.random(n) < 0.3)).astype(float)
        score = rng.integers(0, 5, n).astype(float) if trial % 2 else rng.normal(size=n)
        users = rng.integers(0, 4, n)
        k = None if trial % 3 else int(rng.integers(1, 6))
        per_user = [ndcg_score(rel[users == u][None], score[users == u][None], k=k)
                    for u in np.unique(users)
                    if (users == u).sum() >= 2 and rel[users == u].sum() > 0]  # fmt: skip
        if per_user:
            assert graded_ndcg(rel, score, users, k=k) == pytest.approx(np.mean(per_user))


def test_graded_ndcg_errors():
    with pytest.raises(ConfigError, match="non-negative"):
        graded_ndcg([1, -1], [0.1, 0.2])
    with pytest.raises(ConfigError, match="k must be"):
        graded_ndcg([1, 0], [0.1, 0.2], k=0)
    with pytest.raises(ConfigError, match="no group"):
        graded_ndcg([0, 0, 1], [0.1, 0.2, 0.3], [0, 0, 1])  # user 0 all zero, user 1 one row
