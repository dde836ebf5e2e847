"""Evaluation metrics for click-through prediction and top-K recommendation.

Classification (scores of single impressions):

* :func:`auc` - pooled ROC AUC.
* :func:`gauc` - impression-weighted per-user ("group") AUC.
* :func:`multi_auc` - AUC for graded labels (e.g. ratings 1..5), averaged over grade pairs.
* :func:`graded_ndcg` - per-group NDCG of scored rows with graded relevance (e.g. the
  multi-task grade ``2 y_A + y_B``).

The AUCs are rank based (Mann-Whitney U statistic), O(n log n), and count a tie between a
positive and a negative score as 1/2, like :func:`sklearn.metrics.roc_auc_score`.

Top-K recommendation over full item rankings:

* :func:`ranking_metrics` - Recall@K, NDCG@K and Precision@K for several K at once, training
  items masked, scores computed in user batches.
* :func:`recall_at_k`, :func:`ndcg_at_k` - single-metric shortcuts.
* :func:`metric_ks` - the cut-offs a run evaluates: its list plus its selection metric's K.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from graphrec.errors import ConfigError

__all__ = [
    "auc",
    "gauc",
    "multi_auc",
    "graded_ndcg",
    "metric_ks",
    "ranking_metrics",
    "recall_at_k",
    "ndcg_at_k",
]

#: What :func:`ranking_metrics` accepts as scores: a dense ``[U, I]`` array or tensor, a pair
#: ``(user_emb [U, F], item_emb [I, F])`` scored by dot product, or a callable mapping a 1-D
#: ``LongTensor`` of user indices to a ``[len(users), I]`` score tensor.
ScoreSource = np.ndarray | torch.Tensor | tuple[Any, Any] | Callable[[torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------- AUC family


def _to_numpy(x: Any, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim == 0:
        raise ConfigError(f"{name} must be an array, got a scalar")
    return arr


def _check_scores(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    y = _to_numpy(labels, "labels")
    s = _to_numpy(scores, "scores")
    if y.shape != s.shape:
        raise ConfigError(f"labels and scores differ in shape: {y.shape} vs {s.shape}")
    y, s = y.ravel(), s.ravel().astype(np.float64, copy=False)
    if y.size == 0:
        raise ConfigError("labels and scores are empty")
    if np.isnan(s).any():
        raise ConfigError(f"scores contains {int(np.isnan(s).sum())} NaN value(s)")
    return y, s


def _binary(y: np.ndarray) -> np.ndarray:
    if y.dtype == np.bool_:
        return y
    bad = (y != 0) & (y != 1)
    if bad.any():
        raise ConfigError(
            f"labels must be binary (0/1 or bool); found {y[bad][0].item()!r} "
            f"({int(bad.sum())} value(s) outside {{0, 1}})"
        )
    return y == 1


def _sorted_auc(
    s: np.ndarray, pos: np.ndarray, g: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-group Mann-Whitney AUC of rows already sorted by (group, score).

    Returns ``(auc, n_pos, n_neg)`` per group (one group when ``g`` is None); ``auc`` is NaN
    where a group lacks a class. Tied scores get the average of their ranks.
    """
    n = s.size
    new_group = np.zeros(n, dtype=bool)
    new_group[0] = True
    if g is not None:
        new_group[1:] = g[1:] != g[:-1]
    new_run = new_group.copy()
    new_run[1:] |= s[1:] != s[:-1]
    run_start = np.flatnonzero(new_run)
    run_end = np.append(run_start[1:], n)  # exclusive
    run_id = np.cumsum(new_run) - 1
    group_id = np.cumsum(new_group) - 1
    group_start = np.flatnonzero(new_group)
    # 1-based rank inside the group, averaged over each run of tied scores.
    rank = ((run_start + run_end + 1) / 2.0)[run_id] - group_start[group_id]
    n_groups = group_start.size
    n_pos = np.bincount(group_id, weights=pos, minlength=n_groups)
    size = np.diff(np.append(group_start, n)).astype(np.float64)
    n_neg = size - n_pos
    rank_sum = np.bincount(group_id, weights=np.where(pos, rank, 0.0), minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    return value, n_pos, n_neg


def auc(labels: Any, scores: Any) -> float:
    """Pooled ROC AUC: the probability that a random positive outscores a random negative.

    Args:
        labels: binary labels (0/1 or bool), any shape.
        scores: real scores of the same shape; higher means "more positive".

    Raises:
        ValueError: shapes differ, ``scores`` has NaN, ``labels`` is not binary or contains
            only one class.
    """
    y, s = _check_scores(labels, scores)
    pos = _binary(y)
    n_pos = int(pos.sum())
    if n_pos in (0, pos.size):
        raise ConfigError(
            f"labels contains only one class ({'1' if n_pos else '0'}); AUC is undefined"
        )
    order = np.argsort(s, kind="stable")
    value, _, _ = _sorted_auc(s[order], pos[order])
    return float(value[0])


def gauc(
    labels: Any, scores: Any, groups: Any, *, return_counts: bool = False
) -> float | tuple[float, int]:
    """Group AUC (GAUC): per-group AUC averaged with impression weights.

    ``GAUC = sum_u n_u * AUC_u / sum_u n_u`` over the groups (usually users) having both a
    positive and a negative row, where ``n_u`` is the group's number of rows; groups with a
    single class are skipped (Zhou et al., "Deep Interest Network", KDD 2018). Vectorised:
    one lexicographic sort, no loop over groups.

    Args:
        labels: binary labels (0/1 or bool).
        scores: real scores, same shape as ``labels``.
        groups: group key per row (ints or strings), same shape.
        return_counts: also return the number of groups that were used.

    Raises:
        ValueError: shapes differ, NaN scores, non-binary labels, or no group has both classes.
    """
    y, s = _check_scores(labels, scores)
    g = _to_numpy(groups, "groups").ravel()
    if g.size != y.size:
        raise ConfigError(f"groups has {g.size} entries, labels and scores have {y.size}")
    pos = _binary(y)
    order = np.lexsort((s, g))
    value, n_pos, n_neg = _sorted_auc(s[order], pos[order], g[order])
    used = (n_pos > 0) & (n_neg > 0)
    n_used = int(used.sum())
    if n_used == 0:
        raise ConfigError("no group in groups has both a positive and a negative label")
    weight = (n_pos + n_neg)[used]
    result = float(np.dot(weight, value[used]) / weight.sum())
    return (result, n_used) if return_counts else result


def multi_auc(labels: Any, scores: Any, *, weighted: bool = False) -> float:
    """AUC for graded (ordinal) labels such as ratings 1..5.

    For every pair of distinct grades ``a < b`` present in ``labels``, ``AUC(a, b)`` is the
    probability that a row of grade ``b`` outscores a row of grade ``a`` (ties 1/2), computed
    on the rows of those two grades only. The result averages ``AUC(a, b)`` over all pairs:

    * ``weighted=False`` (default): plain mean over the ``K(K-1)/2`` grade pairs. This is Hand &
      Till's M-measure (Machine Learning 45, 2001) specialised to a single score: their
      ``A(i, j) = (A(i|j) + A(j|i)) / 2`` reduces to the one pairwise AUC when one score ranks
      all classes.
    * ``weighted=True``: weights ``n_a * n_b``, i.e. the fraction of concordant pairs among all
      pairs of rows with different grades (Harrell's C-index for an ordinal outcome).

    A score that increases with the grade gives 1.0, a constant score 0.5.

    Raises:
        ValueError: shapes differ, NaN in ``scores`` or ``labels``, fewer than two grades.
    """
    y, s = _check_scores(labels, scores)
    if y.dtype.kind == "f" and np.isnan(y).any():
        raise ConfigError("labels contains NaN")
    grades, y_code = np.unique(y, return_inverse=True)
    if grades.size < 2:
        raise ConfigError(
            f"labels contains a single grade ({grades[0].item()!r}); need at least two"
        )
    order = np.argsort(s, kind="stable")
    s_sorted, code_sorted = s[order], y_code[order]
    counts = np.bincount(y_code, minlength=grades.size).astype(np.float64)
    total = weight_sum = 0.0
    for a in range(grades.size - 1):
        for b in range(a + 1, grades.size):
            keep = (code_sorted == a) | (code_sorted == b)
            value, _, _ = _sorted_auc(s_sorted[keep], code_sorted[keep] == b)
            w = counts[a] * counts[b] if weighted else 1.0
            total += w * float(value[0])
            weight_sum += w
    return total / weight_sum


def graded_ndcg(relevance: Any, scores: Any, groups: Any = None, *, k: int | None = None) -> float:
    """Mean per-group NDCG of rows ranked by score, with graded relevance as the gain.

    Within a group (usually a user's rows), rows are ranked by decreasing score;
    ``DCG = sum_i rel_i / log2(i + 1)`` over ranks ``i = 1..k`` and NDCG = DCG / the DCG of
    the rows ranked by relevance. Tied scores share the mean gain of their run (as
    :func:`sklearn.metrics.ndcg_score` with ``ignore_ties=False``; the gain is the relevance
    itself, as there). Groups with fewer than two rows or no positive relevance are skipped;
    the result is the unweighted mean over the other groups. Vectorised: two sorts, no loop
    over groups.

    Args:
        relevance: non-negative relevance per row (e.g. ``2 * y_a + y_b``).
        scores: real scores, same shape.
        groups: group key per row; None = one group.
        k: cut-off (None = every row of the group).

    Raises:
        ValueError: shapes differ, NaN scores, negative relevance, ``k < 1``, or no group
            qualifies.
    """
    rel, s = _check_scores(relevance, scores)
    rel = rel.astype(np.float64)
    if np.isnan(rel).any() or (rel < 0).any():
        raise ConfigError("relevance must be non-negative numbers")
    if k is not None and k < 1:
        raise ConfigError(f"k must be >= 1 or None; got {k}")
    g = np.zeros(rel.size, np.int64) if groups is None else _to_numpy(groups, "groups").ravel()
    if g.size != rel.size:
        raise ConfigError(f"groups has {g.size} entries, relevance and scores have {rel.size}")
    n = rel.size
    by_score = np.lexsort((-s, g))
    g_sorted, s_sorted = g[by_score], s[by_score]
    new_group = np.r_[True, g_sorted[1:] != g_sorted[:-1]]
    group_id = np.cumsum(new_group) - 1
    group_start = np.flatnonzero(new_group)
    rank = np.arange(n) - group_start[group_id]  # 0-based, the same in both orders
    discount = 1.0 / np.log2(rank + 2.0)
    if k is not None:
        discount[rank >= k] = 0.0
    run_id = np.cumsum(new_group | np.r_[True, s_sorted[1:] != s_sorted[:-1]]) - 1
    run_gain = np.bincount(run_id, weights=rel[by_score]) / np.bincount(run_id)
    n_groups = group_start.size
    dcg = np.bincount(group_id, weights=run_gain[run_id] * discount, minlength=n_groups)
    ideal = np.bincount(group_id, weights=rel[np.lexsort((-rel, g))] * discount,
                        minlength=n_groups)  # fmt: skip
    used = (np.diff(np.r_[group_start, n]) >= 2) & (ideal > 0)
    if not used.any():
        raise ConfigError("no group has two or more rows and a positive relevance")
    return float(np.mean(dcg[used] / ideal[used]))


# --------------------------------------------------------------------------- top-K ranking


def _as_csr(matrix: Any, name: str) -> sp.csr_matrix:
    if not sp.issparse(matrix):
        raise TypeError(f"{name} must be a scipy.sparse matrix (users x items), got {type(matrix)}")
    csr = sp.csr_matrix(matrix, copy=True)
    csr.sum_duplicates()
    csr.eliminate_zeros()
    return csr


def _row_scorer(
    scores: ScoreSource, shape: tuple[int, int]
) -> Callable[[np.ndarray], torch.Tensor]:
    """Return ``f(user_indices) -> fresh [B, I] float tensor`` for any accepted score source."""
    n_users, n_items = shape
    if isinstance(scores, (tuple, list)):
        if len(scores) != 2:
            raise ConfigError("scores as a sequence must be (user_emb, item_emb)")
        user_emb, item_emb = (torch.as_tensor(e) for e in scores)
        if user_emb.dim() != 2 or item_emb.dim() != 2 or user_emb.shape[1] != item_emb.shape[1]:
            raise ConfigError(
                "user_emb and item_emb must be [U, F] and [I, F]; got "
                f"{tuple(user_emb.shape)} and {tuple(item_emb.shape)}"
            )
        if user_emb.shape[0] != n_users or item_emb.shape[0] != n_items:
            raise ConfigError(
                f"embeddings cover {user_emb.shape[0]} users x {item_emb.shape[0]} items; "
                f"test is {n_users} x {n_items}"
            )
        item_t = item_emb.t()
        return lambda u: user_emb[torch.as_tensor(u, device=user_emb.device)] @ item_t
    if callable(scores):
        fn = scores

        def call(u: np.ndarray) -> torch.Tensor:
            out = torch.as_tensor(fn(torch.as_tensor(u)))
            if out.shape != (len(u), n_items):
                raise ConfigError(
                    f"score function returned shape {tuple(out.shape)} for {len(u)} users; "
                    f"expected ({len(u)}, {n_items})"
                )
            return out.clone()

        return call
    matrix = torch.as_tensor(scores)
    if tuple(matrix.shape) != (n_users, n_items):
        raise ConfigError(
            f"score matrix has shape {tuple(matrix.shape)}; test is {n_users} x {n_items}"
        )
    return lambda u: matrix[torch.as_tensor(u, device=matrix.device)]


def metric_ks(metric: str, ks: Sequence[int]) -> tuple[int, ...]:
    """The cut-offs to evaluate: ``ks`` plus the K of the selection metric ``metric``
    (``"recall@20"``, ``"ndcg@K"`` or ``"precision@K"``), which must name one of
    :func:`ranking_metrics`'s metrics."""
    ks = tuple(int(k) for k in ks)
    name, _, k = metric.partition("@")
    if name not in ("recall", "ndcg", "precision") or not k.isdigit():
        raise ConfigError(f"metric must look like 'recall@20'; got {metric!r}")
    return ks if int(k) in ks else tuple(sorted({*ks, int(k)}))


def ranking_metrics(
    scores: ScoreSource,
    test: sp.spmatrix,
    train: sp.spmatrix | None = None,
    *,
    ks: Iterable[int] = (20,),
    batch_size: int = 1024,
) -> dict[str, float]:
    """Full-ranking Recall@K, NDCG@K and Precision@K with training items masked.

    Every item is ranked for every user that has at least one test item (users without test
    items are excluded from all averages); items in the user's ``train`` row get score
    ``-inf`` first, so they cannot occupy a top-K slot. Conventions follow LightGCN
    (He et al., SIGIR 2020) and NGCF:

    * ``recall@K = hits@K / |test_u|`` (not ``min(|test_u|, K)``);
    * ``precision@K = hits@K / K``;
    * ``ndcg@K = DCG@K / IDCG@K`` with binary gains, ``DCG = sum_{j<K} hit_j / log2(j + 2)``,
      and the ideal DCG placing ``min(|test_u|, K)`` hits at the top.

    An item scored ``-inf`` (masked, or so scored by the caller) never counts as a hit, even
    when ``K`` exceeds the number of other items.

    Scores are produced ``batch_size`` users at a time, so peak memory is about
    ``batch_size x I`` scores (30k x 40k users x items never materialises).

    Args:
        scores: dense ``[U, I]`` array/tensor, ``(user_emb [U, F], item_emb [I, F])`` (dot
            product on the embeddings' device), or ``f(users: LongTensor) -> [B, I]`` tensor.
        test: binary ``U x I`` scipy sparse matrix of held-out interactions (nonzero = relevant).
        train: ``U x I`` sparse matrix of interactions to mask, or None. A test item that is
            also in ``train`` is masked and therefore never retrieved.
        ks: cut-offs; keys of the result are ``"recall@K"``, ``"ndcg@K"``, ``"precision@K"``.
        batch_size: users scored per batch.

    Returns:
        Mean of each metric over the evaluated users.
    """
    test = _as_csr(test, "test")
    n_users, n_items = test.shape
    if train is not None:
        train = _as_csr(train, "train")
        if train.shape != test.shape:
            raise ConfigError(f"train has shape {train.shape}, test has shape {test.shape}")
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ConfigError(f"ks must be positive integers, got {ks}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be positive, got {batch_size}")
    score_rows = _row_scorer(scores, (n_users, n_items))

    users = np.flatnonzero(np.diff(test.indptr))
    if users.size == 0:
        raise ConfigError("test has no interactions; no user can be evaluated")
    k_max = ks[-1]
    k_top = min(k_max, n_items)
    discount = 1.0 / np.log2(np.arange(2, k_max + 2))
    ideal = np.cumsum(discount)  # ideal[n - 1] = IDCG with n hits at the top
    sums = {f"{m}@{k}": 0.0 for k in ks for m in ("recall", "ndcg", "precision")}

    with torch.no_grad():
        for start in range(0, users.size, batch_size):
            batch = users[start : start + batch_size]
            s = score_rows(batch)
            if not s.is_floating_point():
                s = s.double()
            if train is not None:
                rows = train[batch]
                r = np.repeat(np.arange(batch.size), np.diff(rows.indptr))
                masked = (torch.as_tensor(r), torch.as_tensor(rows.indices))
                s[tuple(m.to(s.device) for m in masked)] = -torch.inf
            top_scores, top = torch.topk(s, k_top, dim=1)
            if torch.isnan(top_scores).any():  # topk ranks NaN above every number
                raise ConfigError("scores contain NaN")
            rows = test[batch]
            n_test = np.diff(rows.indptr)
            test_keys = np.repeat(np.arange(batch.size), n_test) * n_items + rows.indices
            top_keys = torch.arange(batch.size, device=top.device)[:, None] * n_items + top
            hits = torch.isin(top_keys, torch.as_tensor(test_keys, device=top.device))
            hits &= top_scores != -torch.inf  # masked slots (when K > unmasked items)
            hits = hits.cpu().numpy().astype(np.float64)
            for k in ks:
                h = hits[:, :k]
                n_hit = h.sum(axis=1)
                dcg = h @ discount[: h.shape[1]]
                idcg = ideal[np.minimum(n_test, k) - 1]
                sums[f"recall@{k}"] += float((n_hit / n_test).sum())
                sums[f"precision@{k}"] += float(n_hit.sum() / k)
                sums[f"ndcg@{k}"] += float((dcg / idcg).sum())
    return {key: value / users.size for key, value in sums.items()}


def recall_at_k(
    scores: ScoreSource,
    test: sp.spmatrix,
    train: sp.spmatrix | None = None,
    *,
    k: int = 20,
    batch_size: int = 1024,
) -> float:
    """Recall@K over full rankings (see :func:`ranking_metrics` for the convention)."""
    return ranking_metrics(scores, test, train, ks=(k,), batch_size=batch_size)[f"recall@{k}"]


def ndcg_at_k(
    scores: ScoreSource,
    test: sp.spmatrix,
    train: sp.spmatrix | None = None,
    *,
    k: int = 20,
    batch_size: int = 1024,
) -> float:
    """NDCG@K over full rankings (see :func:`ranking_metrics` for the convention)."""
    return ranking_metrics(scores, test, train, ks=(k,), batch_size=batch_size)[f"ndcg@{k}"]
