"""CoDA: cloud-coordinated data augmentation for on-device fine-tuning.

A device with few local samples asks the cloud for similar samples of other users and keeps
those its own classifier accepts:

1. **Key** (device -> cloud): the centroid of the local samples' embeddings under the cloud
   model (:data:`KEYS`: ``"penultimate"``, the input of the model's last linear layer, or
   ``"fields"``, the concatenated field embeddings with sequences mean-pooled).
2. **Coarse matching** (cloud, :func:`coarse_match`): cosine similarity of the key to every
   sample of the global pool (the cloud's training rows of the *other* users), brute force in
   chunks of users; the top ``K = ceil(c |D_u|)``, cut to the longest prefix whose shipped
   bytes (:func:`row_bytes`) fit the device's byte budget, are the candidates ``C_u``.
3. **Fine filtering** (device, :class:`SampleClassifiers`): a logistic regression or
   one-hidden-layer MLP ``h_u`` on the same (standardised) embeddings, the local samples as
   class 1 and a random pool slice disjoint from ``C_u`` (:func:`disjoint_negatives`) as
   class 0, classes weighted equally; a candidate is kept when ``h_u >= tau`` (or the top
   ``alpha |D_u|`` by ``h_u``). ``h_u`` never trains on a candidate.
4. **Training**: the cloud model fine-tuned on ``D_u`` (weight 1) plus the kept candidates
   (weight ``lambda`` or ``h_u``) by :func:`graphrec.ondevice.finetune_users`, tested on the
   user's later samples.

A shipped candidate carries its label and every feature column but the user's (the device
writes its own user code in it). :func:`run_coda` compares the cloud model, local-only
fine-tuning, unfiltered augmentation (every candidate, weight ``lambda``; equal to
``tau = 0`` with constant weights) and CoDA, and reports the devices' overheads.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from graphrec.errors import ConfigError
from graphrec.io import CTRTable
from graphrec.models.ctr.base import CTRModel
from graphrec.ondevice.experiment import OnDeviceData
from graphrec.ondevice.protocol import (
    FINETUNE_DEFAULTS,
    FineTuneConfig,
    _rows_by_user,
    finetune_users,
    user_metrics,
)
from graphrec.ondevice.runtime import RUNTIMES, MNNRuntime

__all__ = [
    "CLASSIFIERS",
    "CODA_DEFAULTS",
    "CodaConfig",
    "KEYS",
    "SampleClassifiers",
    "WEIGHTINGS",
    "coarse_match",
    "disjoint_negatives",
    "row_bytes",
    "run_coda",
    "sample_embeddings",
]

#: Sample embeddings a device key and the classifier are built from.
KEYS = ("penultimate", "fields")
#: On-device sample classifiers: logistic regression or a one-hidden-layer MLP.
CLASSIFIERS = ("lr", "mlp")
#: Weight of a kept candidate: the constant ``weight`` or ``weight * h_u``.
WEIGHTINGS = ("constant", "score")


@dataclass(frozen=True)
class CodaConfig:
    """Settings of :func:`run_coda`.

    Attributes:
        key: sample embedding of the key and the classifier, one of :data:`KEYS`.
        k_factor: ``c``: candidates per device ``K = ceil(c |D_u|)`` before the budget.
        budget_bytes: bytes of candidates one device receives at most (None: no cap).
        negatives_factor: random pool negatives per device, ``ceil(factor |D_u|)``.
        classifier: one of :data:`CLASSIFIERS`.
        hidden: hidden units of the ``"mlp"`` classifier.
        steps, lr, l2: full-batch Adam steps, step size and L2 penalty of the classifier.
        tau: keep candidates with ``h_u >= tau`` (0 keeps all); used when ``top_factor`` is
            None.
        top_factor: ``alpha``: keep the top ``ceil(alpha |D_u|)`` by ``h_u`` instead.
        weight: ``lambda``, the loss weight of a kept candidate (local samples weigh 1).
        weighting: one of :data:`WEIGHTINGS`.
        chunk_users: devices matched and classified together.

    The defaults were chosen on validation data, not on the test rows: DIN on amazon-users,
    seed 0, each device fine-tuned on its first 80% of samples and scored on the next 10%
    (the rows the cloud model used for early stopping), over ``k_factor`` in {1, 2, 5},
    ``tau`` in {0, 0.6, 0.75}, ``top_factor`` in {1, 2} and ``weight`` in {0.25, 0.5, 1}: the
    best filtered setting. Every setting there was within 0.001 GAUC of the cloud model.
    """

    key: str = "penultimate"
    k_factor: float = 5.0
    budget_bytes: int | None = 1 << 20
    negatives_factor: float = 2.0
    classifier: str = "lr"
    hidden: int = 16
    steps: int = 100
    lr: float = 0.05
    l2: float = 1e-3
    tau: float = 0.5
    top_factor: float | None = 2.0
    weight: float = 1.0
    weighting: str = "constant"
    chunk_users: int = 256

    def __post_init__(self) -> None:
        choices = (("key", KEYS), ("classifier", CLASSIFIERS), ("weighting", WEIGHTINGS))
        for name, options in choices:
            if getattr(self, name) not in options:
                raise ConfigError(
                    f"{name} must be one of {', '.join(options)}; got {getattr(self, name)!r}"
                )
        positive = ("k_factor", "negatives_factor", "hidden", "steps", "lr", "chunk_users")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0; got {getattr(self, name)}")
        if self.budget_bytes is not None and self.budget_bytes < 0:
            raise ConfigError(f"budget_bytes must be >= 0 or None; got {self.budget_bytes}")
        if self.l2 < 0:
            raise ConfigError(f"l2 must be >= 0; got {self.l2}")
        if not 0.0 <= self.tau <= 1.0:
            raise ConfigError(f"tau must be in [0, 1]; got {self.tau}")
        if self.top_factor is not None and not self.top_factor > 0:
            raise ConfigError(f"top_factor must be > 0 or None; got {self.top_factor}")
        if not self.weight >= 0:
            raise ConfigError(f"weight must be >= 0; got {self.weight}")


#: Default CoDA settings.
CODA_DEFAULTS = CodaConfig()


@torch.no_grad()
def sample_embeddings(
    model: CTRModel, table: CTRTable, *, key: str = "penultimate", batch_size: int = 4096
) -> Tensor:
    """``float32 [table.num_rows, d]`` embeddings of the rows of ``table`` under ``model``
    (in ``eval()`` mode): ``"penultimate"`` is the input of the model's last
    ``torch.nn.Linear`` (the dense part's last hidden layer), ``"fields"`` the flattened
    field embeddings (sequences mean-pooled).

    Raises:
        ConfigError: an unknown ``key``, or ``"penultimate"`` on a model without a linear
            layer (e.g. LR).
    """
    if key not in KEYS:
        raise ConfigError(f"key must be one of {', '.join(KEYS)}; got {key!r}")
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    if key == "penultimate" and not linears:
        raise ConfigError(f"key 'penultimate' needs a model with a linear layer; "
                          f"{type(model).__name__} has none (use key='fields')")  # fmt: skip
    seen: list[Tensor] = []
    hook = None
    if key == "penultimate":
        hook = linears[-1].register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    was_training = model.training
    model.eval()
    parts = []
    try:
        for start in range(0, table.num_rows, batch_size):
            batch = model.features.batch(table, np.arange(start, min(start + batch_size,
                                                                     table.num_rows)))  # fmt: skip
            if key == "penultimate":
                model(batch)
                parts.append(seen.pop())
            else:
                parts.append(model.embed(batch).all_fields().flatten(1))
    finally:
        model.train(was_training)
        if hook is not None:
            hook.remove()
    return torch.cat(parts).to(torch.float32)


def row_bytes(table: CTRTable, *, skip: tuple[str, ...] = ("user",)) -> np.ndarray:
    """``int64 [num_rows]`` bytes of each row as shipped: the label, every categorical and
    numeric value but the ``skip`` columns, and each sequence's elements (its actual length,
    not the padding) plus its length."""
    n = np.full(table.num_rows, table.labels.itemsize, dtype=np.int64)
    for name, values in (table.categorical | table.numeric).items():
        if name not in skip:
            n += values.itemsize
    for name, values in table.sequence.items():
        lengths = table.sequence_lengths[name]
        n += lengths * values.itemsize + lengths.itemsize
    return n


def coarse_match(
    keys: Tensor,
    pool: Tensor,
    k: np.ndarray,
    *,
    owners: np.ndarray | None = None,
    pool_owner: np.ndarray | None = None,
    pool_bytes: np.ndarray | None = None,
    budget_bytes: int | None = None,
    chunk_users: int = 256,
) -> list[np.ndarray]:
    """Candidates per device: pool rows by decreasing cosine similarity to the device's key.

    Device ``u`` gets its ``k[u]`` most similar pool rows (ties: lower row first), skipping
    rows with ``pool_owner == owners[u]`` (its own), then the longest prefix whose
    ``pool_bytes`` sum to at most ``budget_bytes``. Similarities are one ``[C, M]`` matrix
    product per chunk of ``chunk_users`` devices.

    Args:
        keys: ``[U, d]`` device keys.
        pool: ``[M, d]`` pool embeddings.
        k: ``int [U]`` candidates wanted per device.
        owners, pool_owner: ``int [U]`` device and ``int [M]`` pool-row user codes.
        pool_bytes: ``int [M]`` bytes of each pool row (needed with ``budget_bytes``).

    Returns:
        ``U`` arrays of pool row indices, most similar first.
    """
    k = np.asarray(k, dtype=np.int64)
    if keys.dim() != 2 or pool.dim() != 2 or keys.shape[1] != pool.shape[1]:
        raise ConfigError(f"keys [U, d] and pool [M, d] must share d; got {tuple(keys.shape)} "
                          f"and {tuple(pool.shape)}")  # fmt: skip
    if k.shape != (len(keys),) or (k < 0).any():
        raise ConfigError(f"k must hold {len(keys)} counts >= 0; got shape {k.shape}")
    if (owners is None) != (pool_owner is None):
        raise ConfigError("owners and pool_owner must be given together")
    if budget_bytes is not None and pool_bytes is None:
        raise ConfigError("budget_bytes needs pool_bytes")
    q, p = F.normalize(keys, dim=1), F.normalize(pool, dim=1)
    out = []
    for start in range(0, len(keys), chunk_users):
        stop = min(start + chunk_users, len(keys))
        sim = q[start:stop] @ p.T
        if owners is not None:
            own = (
                torch.as_tensor(pool_owner)[None, :] == torch.as_tensor(owners[start:stop])[:, None]
            )
            sim = sim.masked_fill(own, -math.inf)
        width = min(int(k[start:stop].max(initial=0)), p.shape[0])
        # a stable descending sort, so that equal similarities keep the lower row first
        order = torch.sort(sim, dim=1, descending=True, stable=True).indices[:, :width]
        values = sim.gather(1, order)
        for i in range(stop - start):
            rows = order[i, : k[start + i]][torch.isfinite(values[i, : k[start + i]])].numpy()
            if budget_bytes is not None:
                rows = rows[np.cumsum(pool_bytes[rows]) <= budget_bytes]
            out.append(rows)
    return out


def disjoint_negatives(
    pool_size: int,
    counts: np.ndarray,
    exclude: list[np.ndarray],
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """Per device, ``counts[u]`` distinct random pool rows outside ``exclude[u]`` (its
    candidates and own rows), fewer when the pool runs out.

    Raises:
        AssertionError: a negative is an excluded row (never, by construction: checked).
    """
    out = []
    for n, skip in zip(counts, exclude):
        allowed = np.ones(pool_size, dtype=bool)
        allowed[skip] = False
        free = np.flatnonzero(allowed)
        rows = np.sort(rng.choice(free, size=min(int(n), len(free)), replace=False))
        _assert_disjoint(rows, skip)
        out.append(rows)
    return out


def _assert_disjoint(negatives: np.ndarray, candidates: np.ndarray) -> None:
    if np.isin(negatives, candidates).any():
        raise AssertionError("a candidate would train its device's classifier as a negative")


class SampleClassifiers:
    r"""One on-device sample classifier per device, fitted together (batched):

    .. math::
        h_u(\mathbf{x}) = \sigma(\mathbf{w}_u^\top \mathbf{x} + b_u) \quad \text{(lr)},
        \qquad
        h_u(\mathbf{x}) = \sigma(\mathbf{v}_u^\top \mathrm{ReLU}(\mathbf{W}_u^\top
        \mathbf{x} + \mathbf{c}_u) + b_u) \quad \text{(mlp)}

    fitted by full-batch Adam on the class-balanced log loss (each class half of the weight)
    plus ``l2`` times the squared weights, local samples = class 1, pool negatives = class 0.
    Adam is element-wise, so one optimizer over the stacked parameters of all devices gives
    each device the updates it would get alone.

    Args:
        positives, negatives: per device ``[n_u, d]`` and ``[m_u, d]`` features.
        kind: ``"lr"`` or ``"mlp"``.
        hidden, steps, lr, l2: MLP width and the optimizer's settings.
        generator: initialises the MLP (LR starts at 0).

    Shapes:
        - :meth:`score` input: ``U`` tensors ``[N_u, d]``; output: ``U`` tensors ``[N_u]``.
    """

    def __init__(
        self,
        positives: list[Tensor],
        negatives: list[Tensor],
        *,
        kind: str = "lr",
        hidden: int = 16,
        steps: int = 100,
        lr: float = 0.05,
        l2: float = 1e-3,
        generator: torch.Generator | None = None,
    ) -> None:
        if kind not in CLASSIFIERS:
            raise ConfigError(f"classifier must be one of {', '.join(CLASSIFIERS)}; got {kind!r}")
        if len(positives) != len(negatives):
            raise ConfigError("positives and negatives must list the same devices")
        self.kind = kind
        n_dev, d = len(positives), positives[0].shape[1]
        x, pos_mask = _stack(positives)
        xn, neg_mask = _stack(negatives, d)
        x, y = torch.cat([x, xn], dim=1), torch.cat([pos_mask, torch.zeros_like(neg_mask)], 1)
        w = torch.cat([pos_mask / pos_mask.sum(1, keepdim=True).clamp(min=1),
                       neg_mask / neg_mask.sum(1, keepdim=True).clamp(min=1)], 1) / 2  # fmt: skip
        y = y.to(torch.float32)
        if kind == "lr":
            self.params = {"w": torch.zeros(n_dev, d), "b": torch.zeros(n_dev)}
        else:
            bound = 1 / math.sqrt(d)
            self.params = {
                "W": (torch.rand(n_dev, d, hidden, generator=generator) * 2 - 1) * bound,
                "c": torch.zeros(n_dev, hidden),
                "w": (torch.rand(n_dev, hidden, generator=generator) * 2 - 1) / math.sqrt(hidden),
                "b": torch.zeros(n_dev),
            }
        for p in self.params.values():
            p.requires_grad_(True)
        opt = torch.optim.Adam(self.params.values(), lr=lr)
        penalised = [p for n, p in self.params.items() if n in ("w", "W")]
        for _ in range(steps):
            opt.zero_grad()
            z = self._logits(x)
            loss = (F.binary_cross_entropy_with_logits(z, y, reduction="none") * w).sum()
            loss = loss + l2 * sum((p**2).sum() for p in penalised)
            loss.backward()
            opt.step()
        for p in self.params.values():
            p.requires_grad_(False)

    def _logits(self, x: Tensor) -> Tensor:
        p = self.params
        if self.kind == "lr":
            return torch.einsum("und,ud->un", x, p["w"]) + p["b"][:, None]
        h = torch.relu(torch.einsum("und,udh->unh", x, p["W"]) + p["c"][:, None])
        return torch.einsum("unh,uh->un", h, p["w"]) + p["b"][:, None]

    @torch.no_grad()
    def score(self, samples: list[Tensor]) -> list[Tensor]:
        """``h_u`` of each device's ``samples`` (probabilities of "local")."""
        x, _ = _stack(samples, self.params["w"].shape[1] if self.kind == "lr" else
                      self.params["W"].shape[1])  # fmt: skip
        h = torch.sigmoid(self._logits(x))
        return [h[u, : len(s)] for u, s in enumerate(samples)]

    def num_bytes(self) -> int:
        """Bytes of one device's classifier parameters."""
        return sum(p[0].numel() * p.element_size() for p in self.params.values())


def _stack(rows: list[Tensor], d: int | None = None) -> tuple[Tensor, Tensor]:
    """``[U, N, d]`` zero-padded and the ``[U, N]`` float mask of the real rows."""
    d = rows[0].shape[1] if d is None else d
    n = max(max(len(r) for r in rows), 1)
    x = torch.zeros(len(rows), n, d)
    mask = torch.zeros(len(rows), n)
    for u, r in enumerate(rows):
        x[u, : len(r)] = r
        mask[u, : len(r)] = 1.0
    return x, mask


def _augmented(pool: CTRTable, rows: list[np.ndarray], devices: np.ndarray, user: str):
    """The pool rows shipped to each device, with the device's code in the ``user`` column."""
    index = np.concatenate(rows).astype(np.int64)
    table = pool.take(index)
    table.categorical[user] = np.repeat(devices, [len(r) for r in rows]).astype(
        pool.categorical[user].dtype
    )
    return table


def _select(h: Tensor, n_local: int, config: CodaConfig) -> np.ndarray:
    """Positions of the kept candidates (ranked order preserved)."""
    if config.top_factor is None:
        return np.flatnonzero((h >= config.tau).numpy())
    m = math.ceil(config.top_factor * n_local)
    return np.sort(torch.sort(h, descending=True, stable=True).indices[:m].numpy())


def _stats(values) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "max": float(v.max())}


def run_coda(
    cloud: CTRModel,
    data: OnDeviceData,
    *,
    config: CodaConfig = CODA_DEFAULTS,
    finetune: FineTuneConfig = FINETUNE_DEFAULTS,
    seed: int = 0,
    user: str = "user",
    progress: bool = False,
    runtime: str = "torch",
) -> dict:
    """Cloud only, local-only fine-tuning, unfiltered augmentation and CoDA on ``data``.

    The pool is the cloud's training table (``data.ctr.split.train``), a device never gets
    its own rows. Every method fine-tunes with ``finetune`` (CoDA and unfiltered add the
    candidates as extra weighted rows) and the same ``seed``. ``runtime`` ``"mnn"`` fine-tunes
    in MNN (:class:`~graphrec.ondevice.runtime.MNNRuntime`; ``finetune.layers`` must be
    ``"dense"``).

    Returns a JSON-ready dict: ``dataset``, ``users``, ``config``, ``finetune``, ``methods``
    (``cloud``, ``local``, ``unfiltered``, ``coda`` -> the metrics of
    :func:`~graphrec.ondevice.user_metrics` plus ``seconds``), ``candidates`` (mean per
    device: ``matched``, ``kept``, ``kept_share``) and ``overhead``: per device ``mean`` and
    ``max`` of

    * ``classifier_s``: fitting and applying ``h_u`` (batched over a chunk of devices, the
      chunk's time divided by its devices);
    * ``finetune_s``: CoDA fine-tuning and scoring (amortised the same way);
    * ``peak_bytes``: counted, not sampled: the bytes of the tensors a device holds while it
      fine-tunes: the model's parameters, a gradient of each tuned one, its local rows and
      the shipped rows (as :func:`row_bytes` counts them) and the classifier's inputs
      (``float32`` embeddings of local, candidate and negative rows) and parameters;
      activations are not counted;
    * ``bytes_down``: candidates shipped (:func:`row_bytes`); ``bytes_down_negatives``: the
      negative rows shipped for the classifier; ``bytes_up``: the key (``float32 [d]``).
    """
    if not isinstance(config, CodaConfig):
        raise ConfigError(f"config must be a CodaConfig; got {type(config).__name__}")
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime must be one of {', '.join(RUNTIMES)}; got {runtime!r}")
    if runtime == "mnn" and finetune.layers != "dense":
        raise ConfigError(f"runtime 'mnn' tunes the dense layers: layers must be 'dense'; "
                          f"got {finetune.layers!r}")  # fmt: skip
    pool, local, test = data.ctr.split.train, data.local, data.test
    g = data.global_share
    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)

    start = time.perf_counter()
    local_rows, test_rows = _rows_by_user(local, user), _rows_by_user(test, user)
    devices = np.array(sorted(set(local_rows) & set(test_rows)), dtype=np.int64)
    if len(devices) == 0:
        raise ConfigError(f"no {user!r} has both local and test rows")
    n_local = np.array([len(local_rows[u]) for u in devices])
    emb_pool = sample_embeddings(cloud, pool, key=config.key)
    emb_local = sample_embeddings(cloud, local, key=config.key)
    keys = torch.stack([emb_local[local_rows[u]].mean(0) for u in devices])
    pool_bytes = row_bytes(pool, skip=(user,))
    candidates = coarse_match(
        keys, emb_pool, np.ceil(config.k_factor * n_local).astype(np.int64),
        owners=devices, pool_owner=pool.categorical[user], pool_bytes=pool_bytes,
        budget_bytes=config.budget_bytes, chunk_users=config.chunk_users,
    )  # fmt: skip
    own = _rows_by_user(pool, user)
    negatives = disjoint_negatives(
        pool.num_rows, np.ceil(config.negatives_factor * n_local).astype(np.int64),
        [np.concatenate([c, own.get(u, np.zeros(0, np.int64))]) for u, c in
         zip(devices, candidates)], rng,
    )  # fmt: skip
    matching_s = time.perf_counter() - start

    # standardised embeddings for the classifier (pool statistics, shipped with the model)
    mean, std = emb_pool.mean(0), emb_pool.std(0).clamp(min=1e-6)
    z_pool, z_local = (emb_pool - mean) / std, (emb_local - mean) / std
    kept, classifier_s, cls_bytes = [], np.zeros(len(devices)), 0
    weights = []
    bar = tqdm(total=len(devices), desc="classifiers", unit="device", disable=not progress)
    for lo in range(0, len(devices), config.chunk_users):
        hi = min(lo + config.chunk_users, len(devices))
        tick = time.perf_counter()
        for u in range(lo, hi):
            _assert_disjoint(negatives[u], candidates[u])
        h_u = SampleClassifiers(
            [z_local[local_rows[u]] for u in devices[lo:hi]],
            [z_pool[negatives[u]] for u in range(lo, hi)],
            kind=config.classifier, hidden=config.hidden, steps=config.steps, lr=config.lr,
            l2=config.l2, generator=generator,
        )  # fmt: skip
        scores = h_u.score([z_pool[candidates[u]] for u in range(lo, hi)])
        for u, h in zip(range(lo, hi), scores):
            keep = _select(h, n_local[u], config)
            kept.append(candidates[u][keep])
            weights.append(np.full(len(keep), config.weight, np.float32)
                           if config.weighting == "constant"
                           else config.weight * h[keep].numpy())  # fmt: skip
        classifier_s[lo:hi] = (time.perf_counter() - tick) / (hi - lo)
        cls_bytes = h_u.num_bytes()
        bar.update(hi - lo)
    bar.close()

    settings = asdict(finetune)
    unfiltered_w = [np.full(len(c), config.weight, np.float32) for c in candidates]
    runs = {
        "cloud": dict(settings, epochs=0),
        "local": settings,
        "unfiltered": dict(settings, extra=_augmented(pool, candidates, devices, user),
                           extra_weights=np.concatenate(unfiltered_w)),
        "coda": dict(settings, extra=_augmented(pool, kept, devices, user),
                     extra_weights=np.concatenate(weights)),
    }  # fmt: skip
    tune = (MNNRuntime(cloud, local).finetune_users if runtime == "mnn"
            else partial(finetune_users, cloud))  # fmt: skip
    methods, scores = {}, {}
    for name, options in runs.items():
        tick = time.perf_counter()
        scores[name] = tune(local, test, global_share=g, seed=seed, user=user,
                            progress=progress, **options)  # fmt: skip
        methods[name] = user_metrics(scores[name]) | {"seconds": time.perf_counter() - tick}
    methods["unfiltered"]["seconds"] += matching_s
    methods["coda"]["seconds"] += matching_s + float(classifier_s.sum())

    d = emb_pool.shape[1]
    tuned = [p for n, p in cloud.named_parameters()
             if finetune.layers == "all" or not n.startswith("embedding.")]  # fmt: skip
    model_bytes = sum(p.numel() * p.element_size() for p in cloud.parameters())
    model_bytes += sum(p.numel() * p.element_size() for p in tuned)
    local_bytes = row_bytes(local, skip=())
    down = np.array([pool_bytes[c].sum() for c in candidates])
    down_neg = np.array([pool_bytes[n].sum() for n in negatives])
    n_cand = np.array([len(c) for c in candidates])
    n_neg = np.array([len(n) for n in negatives])
    peak = (model_bytes + np.array([local_bytes[local_rows[u]].sum() for u in devices])
            + down + down_neg + 4 * d * (n_local + n_cand + n_neg) + cls_bytes)  # fmt: skip
    n_kept = np.array([len(k) for k in kept])
    tuned_s = scores["coda"].seconds
    return {
        "dataset": data.name,
        "global_share": g,
        "users": len(devices),
        "config": asdict(config),
        "finetune": settings,
        "methods": methods,
        "candidates": {
            "matched": float(n_cand.mean()),
            "kept": float(n_kept.mean()),
            "kept_share": float(n_kept.sum() / max(n_cand.sum(), 1)),
        },
        "overhead": {
            "classifier_s": _stats(classifier_s),
            "finetune_s": _stats(tuned_s),
            "peak_bytes": _stats(peak),
            "bytes_down": _stats(down),
            "bytes_down_negatives": _stats(down_neg),
            "bytes_up": _stats(np.full(len(devices), 4 * d)),
        },
    }
