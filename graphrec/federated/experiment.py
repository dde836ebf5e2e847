"""Named federated set-ups shared by the ``graphrec fl`` command line and ``benchmarks/fl.py``.

* :func:`federated_task` - a :class:`~graphrec.federated.simulator.FederatedTask` by dataset
  and model name: ``amazon-users`` (one device per user; ``din``: DIN as in the official
  FedSubAvg code, embedding 18, MLP 200-80; ``tiny``: :class:`TinyCTR`), ``ml-100k`` (one
  device per user, ``tiny``), ``synthetic`` (Synthetic(1, 1), softmax regression).
* :func:`build_strategy` - a strategy of :data:`graphrec.registry.FL_STRATEGIES` by name.
* :func:`stream_data` - per-device streams and held-out data for ODE: ``synthetic``
  (Synthetic(1, 1), 1,000 samples per device: 800 stream, 200 test), ``leaf-synthetic``
  (LEAF-style, one shared labelling model, lognormal device sizes averaging about 5,000 as in
  the ODE paper's synthetic task) and ``uci-heart`` (UCI Heart Disease, one device per centre,
  disease yes/no).
* :data:`ODE_PRESETS` - named ODE settings (``paper-synthetic``: the ODE authors' synthetic
  task) and :func:`paper_velocity` (their per-device stream speed).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from graphrec.datasets._files import dataset_folder
from graphrec.errors import ConfigError
from graphrec.federated.data import load_uci_heart_per_centre
from graphrec.federated.partition import natural_partition, synthetic_leaf, synthetic_shared
from graphrec.federated.simulator import FederatedTask
from graphrec.federated.strategies import Strategy
from graphrec.federated.stream import StreamTask
from graphrec.federated.tasks import CTRModelTask, EmbeddingCTRTask, SoftmaxRegressionTask
from graphrec.graphs.device_cloud import DeviceCloudGraph
from graphrec.registry import FL_STRATEGIES

__all__ = [
    "DATASETS",
    "MODELS",
    "build_strategy",
    "federated_task",
    "StreamData",
    "stream_data",
    "stream_task",
    "ODE_PRESETS",
    "paper_velocity",
]

#: dataset -> models available for it
DATASETS = {"amazon-users": ("din", "tiny"), "ml-100k": ("tiny",), "synthetic": ("softmax",)}
MODELS = sorted({m for ms in DATASETS.values() for m in ms})


def build_strategy(name: str, graph: DeviceCloudGraph, **options: Any) -> Strategy:
    """The strategy registered as ``name`` in :data:`graphrec.registry.FL_STRATEGIES`, with its
    registered options updated by ``options``; one whose constructor takes ``graph`` gets it.

    Example:
        >>> build_strategy("fedprox", None, mu=0.1).mu
        0.1
    """
    args = (graph,) if "graph" in inspect.signature(FL_STRATEGIES.get(name)).parameters else ()
    return FL_STRATEGIES.build(name, *args, **options)


def federated_task(
    dataset: str,
    model: str,
    *,
    root: str | Path | None = None,
    devices: int | None = None,
    seed: int = 0,
) -> FederatedTask:
    """The task ``dataset`` x ``model`` (see the module docstring); ``devices`` keeps the first
    users (``amazon-users``, ``ml-100k``) or sets the number of synthetic devices (default
    200)."""
    if dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {dataset!r}; expected one of {sorted(DATASETS)}")
    if model not in DATASETS[dataset]:
        raise ConfigError(
            f"model {model!r} is not available for {dataset}; choose {DATASETS[dataset]}"
        )
    if dataset == "amazon-users":
        from graphrec.datasets import load_amazon_electronics_users

        data = load_amazon_electronics_users(dataset_folder(dataset, root))
        if model == "tiny":
            return EmbeddingCTRTask.from_amazon(data, num_users=devices)
        from graphrec.models.ctr import DIN, CTRFeatures, amazon_ctr

        split = amazon_ctr(data, valid_fraction=0.0, test_fraction=0.2)
        features = CTRFeatures.from_table(split.train)
        users = split.train.categorical["user"]
        test_users = split.test.categorical["user"]
        keep = np.ones(users.size, bool) if devices is None else users <= devices
        test_rows = None if devices is None else np.flatnonzero(test_users <= devices)
        parts = natural_partition(users[keep])
        return CTRModelTask(
            lambda f: DIN(f, 18, (200, 80), attention_hidden=(64, 32), softmax=False),
            features,
            split.train,
            parts,
            split.test,
            test_rows=test_rows,
        )
    if dataset == "ml-100k":
        from graphrec.datasets import load_movielens100k

        ml = load_movielens100k(dataset_folder(dataset, root))
        return EmbeddingCTRTask.from_movielens(ml, num_users=devices)
    syn = synthetic_leaf(1.0, 1.0, devices or 200, seed=seed)
    train, test = holdout(syn.parts, 0.2, seed)
    return SoftmaxRegressionTask(syn.x, syn.y, train, test)


def holdout(
    parts: list[np.ndarray], fraction: float, seed: int
) -> tuple[list[np.ndarray], np.ndarray]:
    """Per device, a seeded random ``fraction`` held out; returns (rest per device, held out)."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for p in parts:
        p = rng.permutation(p)
        k = int(round(fraction * p.size))
        test.append(p[:k])
        train.append(np.sort(p[k:]))
    return train, np.concatenate(test)


@dataclass
class StreamData:
    """Features, labels, per-device streams and the central test rows of an ODE task."""

    x: np.ndarray
    y: np.ndarray
    parts: list[np.ndarray]
    test: np.ndarray
    about: str

    @property
    def num_features(self) -> int:
        return int(self.x.shape[1])

    @property
    def num_classes(self) -> int:
        return int(self.y.max()) + 1


#: ``graphrec fl ode --preset NAME``: option -> value. ``paper-synthetic`` is the ODE authors'
#: synthetic setting (paper Table 1 and their code): LEAF-style data on 200 devices, 10 per
#: round, ``|B| = 10``, stream speed :func:`paper_velocity`, SGD lr 1e-4, 5 local epochs of one
#: full-store step, 1,000 rounds, evaluation every 20, and the official behaviour of the
#: :class:`~graphrec.federated.stream.StreamTask` options.
ODE_PRESETS: dict[str, dict[str, Any]] = {
    "paper-synthetic": {
        "dataset": "leaf-synthetic",
        "devices": 200,
        "clients_per_round": 10,
        "buffer": 10,
        "velocity": None,
        "lr": 1e-4,
        "epochs": 5,
        "rounds": 1000,
        "eval_every": 20,
        "loss_norm": "gamma",
        "estimate_timing": "after",
        "exact_revalue": "every-round",
        "rs_counter": "restart",
        "initial_store": "last",
    }
}


def paper_velocity(parts: list[np.ndarray], divisor: int = 400) -> np.ndarray:
    """Arrivals per round of each device: its stream size / ``divisor`` rounded, at least 1
    (the ODE code's synthetic speed, ``num_train_samples / 400``, in whole samples)."""
    if divisor < 1:
        raise ConfigError(f"divisor must be positive, got {divisor}")
    sizes = np.array([p.size for p in parts], dtype=np.float64)
    return np.maximum(1, np.rint(sizes / divisor)).astype(np.int64)


def stream_data(
    dataset: str, *, root: str | Path | None = None, devices: int = 200, seed: int = 0
) -> StreamData:
    """``synthetic``, ``leaf-synthetic`` or ``uci-heart`` (see the module docstring); 20% of
    each device held out."""
    if dataset == "synthetic":
        syn = synthetic_leaf(1.0, 1.0, devices, samples_per_device=1000, seed=seed)
        train, test = holdout(syn.parts, 0.2, seed)
        about = (
            f"Synthetic(1, 1), {devices} devices x 1,000 samples (800 stream, 200 test), "
            "dim 60, 10 labels"
        )
        return StreamData(syn.x, syn.y, train, test, about)
    if dataset == "leaf-synthetic":
        syn = synthetic_shared(
            devices, size_mu=8.4, size_sigma=0.5, min_samples=50, max_samples=50_000, seed=seed
        )
        train, test = holdout(syn.parts, 0.2, seed)
        about = (
            "LEAF-style synthetic (shared labelling model, model and logit noise 0.1), "
            f"{devices} devices, {syn.y.size:,} samples (sizes 50 + lognormal(8.4, 0.5); "
            "80% stream, 20% test), dim 60, 10 labels"
        )
        return StreamData(syn.x, syn.y, train, test, about)
    if dataset == "uci-heart":
        heart = load_uci_heart_per_centre(dataset_folder(dataset, root))
        x = heart.x.copy()
        mean, std = np.nanmean(x, 0), np.nanstd(x, 0) + 1e-8
        x = np.nan_to_num((x - mean) / std)  # standardised; missing -> the mean
        train, test = holdout(heart.parts, 0.2, seed)
        about = (
            "UCI Heart Disease, 3 centres (one device each; 80% stream, 20% test), disease yes/no"
        )
        return StreamData(x, (heart.y > 0).astype(np.int64), train, test, about)
    raise ConfigError(
        f"unknown stream dataset {dataset!r}; expected synthetic, leaf-synthetic or uci-heart"
    )


def stream_task(
    data: StreamData,
    selector: str,
    *,
    buffer_size: int,
    velocity: int | np.ndarray,
    seed: int = 0,
    layers: int | None = None,
    **options: str,
) -> StreamTask:
    """A :class:`StreamTask` with a softmax-regression model on ``data``; ``options``: the
    official-behaviour options of :class:`StreamTask` (``loss_norm``, ...)."""
    model = torch.nn.Linear(data.num_features, data.num_classes)
    return StreamTask(
        model,
        data.x,
        data.y,
        data.parts,
        data.test,
        selector=selector,
        buffer_size=buffer_size,
        velocity=velocity,
        layers=layers,
        seed=seed,
        **options,
    )
