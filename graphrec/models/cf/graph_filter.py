"""Training-free CF with graph filters (GF-CF, BSPM): fit = one truncated SVD, no epochs.

::

    graph = load_cf_graph("gowalla", root="shared/data")
    best, table = tune_graph_filter(graph, "gf-cf")      # k, alpha on validation (carved)
    model = GraphFilterCF(best).fit(graph, include_valid=True)
    print(model.evaluate("test"))                        # {"recall@20": ..., ...}
    items, scores = model.recommend([0, 5], k=10)

The filter's input is each user's row of the fitted interactions (``graph.train``, plus
``graph.valid`` with ``include_valid``: the validation pairs are training data the filter may
use once its hyper-parameters are chosen); scores of known items are ``-inf``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from itertools import product
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor
from tqdm import tqdm

from graphrec.errors import ConfigError
from graphrec.graphs.bipartite import BipartiteGraph
from graphrec.metrics import metric_ks, ranking_metrics
from graphrec.nn.bspm import MERGES, SOLVERS, BSPMFilter, sharpening_polynomial
from graphrec.nn.gf_cf import GFCFFilter

__all__ = [
    "FILTER_METHODS",
    "GraphFilterCF",
    "GraphFilterConfig",
    "tune_graph_filter",
]

#: Training-free methods: GF-CF (:class:`~graphrec.nn.GFCFFilter`) and BSPM
#: (:class:`~graphrec.nn.BSPMFilter`).
FILTER_METHODS = ("gf-cf", "bspm")

#: Defaults per method: the best validation Recall@20 on the set carved from Gowalla's
#: training split (5000 users; filter fitted on the rest of train). GF-CF over :data:`GRID`:
#: 0.2043 at k 256, alpha 0.2 (0.2010 at the paper's alpha 0.3). BSPM with one RK4
#: sharpening step over k 256/448, alpha 0.1/0.2/0.3/0.4, sharpening time
#: 0/1/1.5/2/2.5/3, early/late merge: 0.2139 at k 448, alpha 0.2, time 2.5, early merge (the
#: BSPM paper's Gowalla setting; next 0.2136 at alpha 0.1; late merge 0.2134); the best
#: Euler step over a similar grid: 0.2085 (k 448, alpha 0.3, time 0.75).
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "gf-cf": {"k": 256, "alpha": 0.2, "sharpen_time": 0.0, "solver": "euler", "merge": "early"},
    "bspm": {"k": 448, "alpha": 0.2, "sharpen_time": 2.5, "solver": "rk4", "merge": "early"},
}

#: Default validation grids of :func:`tune_graph_filter` (``sharpen_time`` and ``merge`` for
#: BSPM only).
GRID: dict[str, tuple] = {
    "k": (128, 256),
    "alpha": (0.1, 0.2, 0.3, 0.5, 1.0),
    "sharpen_time": (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0),
    "merge": ("early", "late"),
}


@dataclass
class GraphFilterConfig:
    """Settings of a :class:`GraphFilterCF`.

    Attributes:
        method: ``"gf-cf"`` or ``"bspm"``.
        k: singular vectors of the ideal low-pass part (capped at ``min(U, I) - 1`` by
            :meth:`GraphFilterCF.fit`).
        alpha: weight of the low-pass part (GF-CF's ``alpha``, BSPM's ``beta``).
        sharpen_time, sharpen_steps: BSPM's sharpening time and solver steps.
        solver, merge: BSPM's sharpening solver (``"euler"`` or ``"rk4"``) and where the
            low-pass part joins (``"early"``: before the sharpening, ``"late"``: after);
            GF-CF ignores the BSPM settings.
        seed: seed of the SVD's start vector.
        batch_size: users scored per batch (small batches keep the dense ``[I, B]`` signals
            of the filter's sparse products in the CPU cache, which makes them faster than
            large ones; the scores do not depend on it).
        metric, ks: the selection metric of :func:`tune_graph_filter` and the cut-offs.

    Settings left None take the method's :data:`METHOD_DEFAULTS`.
    """

    method: str = "gf-cf"
    k: int | None = None
    alpha: float | None = None
    sharpen_time: float | None = None
    sharpen_steps: int = 1
    solver: str | None = None
    merge: str | None = None
    seed: int = 0
    batch_size: int = 64
    metric: str = "recall@20"
    ks: tuple[int, ...] = (20,)

    def __post_init__(self) -> None:
        if self.method not in FILTER_METHODS:
            raise ConfigError(f"method must be one of {FILTER_METHODS}; got {self.method!r}")
        for name, value in METHOD_DEFAULTS[self.method].items():
            if getattr(self, name) is None:
                setattr(self, name, type(value)(value))
        for name in ("k", "sharpen_steps", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1; got {value!r}")
        for name in ("alpha", "sharpen_time"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name} must be >= 0; got {getattr(self, name)!r}")
        if self.solver not in SOLVERS:
            raise ConfigError(f"solver must be one of {SOLVERS}; got {self.solver!r}")
        if self.merge not in MERGES:
            raise ConfigError(f"merge must be one of {MERGES}; got {self.merge!r}")
        self.ks = metric_ks(self.metric, self.ks)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GraphFilterConfig:
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown GraphFilterConfig fields: {sorted(unknown)}")
        # model files written before solver/merge existed used Euler and early merge
        legacy = {"solver": "euler", "merge": "early"} if "solver" not in values else {}
        return cls(**{**legacy, **values, "ks": tuple(values.get("ks", (20,)))})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _build_filter(
    interactions: sp.csr_array, config: GraphFilterConfig, progress: bool
) -> GFCFFilter | BSPMFilter:
    k = min(config.k, min(interactions.shape) - 1)
    if config.method == "gf-cf":
        return GFCFFilter(interactions, k, config.alpha, seed=config.seed, progress=progress)
    return BSPMFilter(
        interactions, k, config.alpha, config.sharpen_time, config.sharpen_steps,
        config.solver, config.merge, seed=config.seed, progress=progress,
    )  # fmt: skip


class GraphFilterCF:
    """A training-free recommender: item scores = a graph filter of the user's known items.

    Memory O(nnz + k I + batch_size I): the filter never forms an items x items matrix.

    Args:
        config: a :class:`GraphFilterConfig` (default settings if None).
        progress: tqdm progress on the SVD and the scoring (on stderr).
    """

    def __init__(self, config: GraphFilterConfig | None = None, *, progress: bool = False):
        self.config = GraphFilterConfig() if config is None else config
        self.progress = progress
        self.graph: BipartiteGraph | None = None
        self.include_valid = False

    def fit(self, graph: BipartiteGraph, *, include_valid: bool = False) -> GraphFilterCF:
        """Build the filter from ``graph.train`` (plus ``graph.valid`` if ``include_valid``)."""
        self.graph, self.include_valid = graph, include_valid
        known = graph.train + graph.valid if include_valid else graph.train
        self.known = sp.csr_array(known, dtype=np.float32)
        self.filter = _build_filter(self.known, self.config, self.progress)
        return self

    @property
    def gf_cf(self) -> GFCFFilter:
        """The fitted GF-CF filter (BSPM's blurring part)."""
        self._fitted()
        return self.filter if isinstance(self.filter, GFCFFilter) else self.filter.blur

    @property
    def k(self) -> int:
        """Singular vectors of the fitted filter (``config.k`` capped at ``min(U, I) - 1``)."""
        return self.gf_cf.low_pass.k

    def _fitted(self) -> BipartiteGraph:
        if self.graph is None:
            raise ConfigError("call fit(graph) first")
        return self.graph

    def raw_scores(self, users: Sequence[int] | np.ndarray | Tensor) -> Tensor:
        """Filter scores ``[n, I]`` of ``users`` (one batch, known items not masked)."""
        self._fitted()
        users = np.asarray(users, dtype=np.int64)
        if users.size and (users.min() < 0 or users.max() >= self.known.shape[0]):
            raise ConfigError(f"users must be in [0, {self.known.shape[0] - 1}]")
        return self.filter(self.known[users])

    def scores(
        self, users: Sequence[int] | np.ndarray | Tensor, *, exclude_known: bool = True
    ) -> Tensor:
        """Scores ``[n, I]`` of ``users`` in batches of ``config.batch_size``; the fitted
        interactions (and, when fitted without them, the validation pairs) are ``-inf``."""
        users = np.asarray(users, dtype=np.int64)
        size = self.config.batch_size
        parts = [self.raw_scores(users[s : s + size]) for s in range(0, len(users), size)]
        out = torch.cat(parts) if parts else torch.empty(0, self._fitted().num_items)
        if exclude_known:
            rows = self._known_eval()[users]
            r = np.repeat(np.arange(len(users)), np.diff(rows.indptr))
            out[torch.as_tensor(r), torch.as_tensor(rows.indices.astype(np.int64))] = -math.inf
        return out

    def _known_eval(self) -> sp.csr_array:
        graph = self._fitted()
        return sp.csr_array(graph.train + graph.valid)

    def evaluate(self, split: str = "test") -> dict[str, float]:
        """Full-ranking metrics on ``"valid"`` (train masked; needs a fit without the
        validation pairs) or ``"test"`` (train and validation masked), as
        :meth:`graphrec.models.cf.CFTrainer.evaluate`."""
        graph = self._fitted()
        if split == "valid":
            if self.include_valid:
                raise ConfigError("evaluate('valid') needs a fit with include_valid=False")
            target, known = graph.valid, graph.train
        elif split == "test":
            target, known = graph.test, self._known_eval()
        else:
            raise ConfigError(f"split must be 'valid' or 'test'; got {split!r}")
        users = int((np.diff(sp.csr_array(target).indptr) > 0).sum())
        total = math.ceil(users / self.config.batch_size)
        with tqdm(total=total, desc=f"scoring {split}", disable=not self.progress) as bar:

            def score(batch: Tensor) -> Tensor:
                bar.update(1)
                return self.raw_scores(batch.numpy())

            return ranking_metrics(
                score, target, known, ks=self.config.ks, batch_size=self.config.batch_size
            )

    def recommend(
        self, users: Sequence[int] | np.ndarray, k: int = 20, *, exclude_known: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` ``(items [n, k], scores [n, k])``; known items excluded unless
        ``exclude_known`` is False; slots beyond the unmasked items hold ``-1`` / ``-inf``."""
        if k < 1:
            raise ConfigError(f"k must be >= 1; got {k}")
        scores = self.scores(users, exclude_known=exclude_known)
        values, index = torch.topk(scores, min(k, scores.shape[1]), dim=1)
        items, values = index.numpy().astype(np.int64), values.numpy()
        items[np.isneginf(values)] = -1
        pad = k - items.shape[1]
        items = np.pad(items, ((0, 0), (0, pad)), constant_values=-1)
        return items, np.pad(values, ((0, 0), (0, pad)), constant_values=-np.inf)


def tune_graph_filter(
    graph: BipartiteGraph,
    method: str = "gf-cf",
    *,
    grid: dict[str, Sequence[Any]] | None = None,
    max_users: int | None = 5000,
    config: GraphFilterConfig | None = None,
    progress: bool = False,
) -> tuple[GraphFilterConfig, list[dict[str, Any]]]:
    """Choose ``k``, ``alpha`` (and BSPM's ``sharpen_time`` and ``merge``, one solver step of
    ``config.solver``) on validation.

    The filter is fitted on ``graph.train`` once with the largest ``k``; every grid point is
    scored on the same validation users (at most ``max_users``, drawn with ``config.seed``)
    from shared parts, using that the scores are linear in them: with ``L = x P~``, ``P_k``
    the low-pass part and ``c_j`` the coefficients of :func:`~graphrec.nn.bspm.
    sharpening_polynomial`, GF-CF is ``L + a P_k`` and BSPM ``sum_j c_j (L + b P_k) P~^j``
    (early merge) or ``sum_j c_j L P~^j + b P_k`` (late merge).

    Returns:
        The best configuration (by ``config.metric``) and one record per grid point
        (``k``, ``alpha``, ``sharpen_time``, ``merge`` and the validation metrics).
    """
    base = replace(config or GraphFilterConfig(method), method=method, sharpen_steps=1)
    grid = {**GRID, **(grid or {})}
    limit = min(graph.num_users, graph.num_items) - 1
    ks = sorted({min(int(k), limit) for k in grid["k"]})
    bspm = method == "bspm"
    times = tuple(grid["sharpen_time"]) if bspm else (0.0,)
    merges = tuple(grid["merge"]) if bspm else ("early",)
    if not set(merges) <= set(MERGES):
        raise ConfigError(f"grid merge values must be in {MERGES}; got {merges}")
    points = list(product(ks, grid["alpha"], times, merges))
    coefficients = {t: sharpening_polynomial(t, 1, base.solver) for t in times}
    degree = max(len(c) for c in coefficients.values()) - 1
    valid = sp.csr_array(graph.valid)
    users = np.flatnonzero(np.diff(valid.indptr))
    if not users.size:
        raise ConfigError("graph has no validation interactions; carve some (valid_fraction)")
    if max_users is not None and users.size > max_users:
        rng = np.random.default_rng(base.seed)
        users = np.sort(rng.choice(users, max_users, replace=False))
    model = GraphFilterCF(replace(base, k=ks[-1], alpha=1.0), progress=progress).fit(graph)
    gfcf = model.gf_cf

    def powers(signal: np.ndarray) -> list[np.ndarray]:
        out = [signal]  # signal P~^j, j = 0..degree
        for _ in range(degree):
            out.append(gfcf.linear.propagate(out[-1]))
        return out

    def combine(parts: list[np.ndarray], c: np.ndarray) -> np.ndarray:
        return sum((c[j] * parts[j] for j in range(1, len(c))), c[0] * parts[0])

    sums = [dict.fromkeys((f"{m}@{k}" for k in base.ks for m in ("recall", "ndcg")), 0.0)
            for _ in points]  # fmt: skip
    size = base.batch_size
    for start in tqdm(range(0, users.size, size), desc="tuning", disable=not progress):
        batch = users[start : start + size]
        x = model.known[batch]
        linear = powers(gfcf.linear.propagate(x))
        for k in ks:  # one k's low-pass powers in memory at a time
            low = gfcf.low_pass_part(x, k)
            low_parts = powers(low) if "early" in merges else [low]
            for n, (k_n, alpha, time, merge) in enumerate(points):
                if k_n != k:
                    continue
                c = coefficients[time]
                prior = combine(low_parts, c) if merge == "early" else low
                s = combine(linear, c) + alpha * prior
                metrics = ranking_metrics(s, valid[batch], graph.train[batch], ks=base.ks)
                for key in sums[n]:
                    sums[n][key] += metrics[key] * batch.size
    table = [
        {
            "k": k, "alpha": alpha, "sharpen_time": time, "merge": merge,
            **{m: v / users.size for m, v in total.items()},
        }
        for (k, alpha, time, merge), total in zip(points, sums)
    ]  # fmt: skip
    best = max(table, key=lambda row: row[base.metric])
    chosen = replace(
        base, k=best["k"], alpha=best["alpha"], sharpen_time=best["sharpen_time"],
        merge=best["merge"],
    )  # fmt: skip
    return chosen, table
