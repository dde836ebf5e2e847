"""Named on-device data sets, the cloud model and one fine-tuning run with its baselines.

:func:`load_ondevice_data` gives four tables per data set: the cloud's training and
validation data (all users' earlier samples), each device's local samples and each user's later
test samples. :func:`train_cloud` trains a registered CTR model with the data set's validated
recipe; :func:`run_finetune` compares the cloud model, naive fine-tuning and a correction rule.

Example:
    >>> data = load_ondevice_data("synthetic", seed=0)
    >>> cloud = train_cloud("lr", data, seed=0)  # doctest: +SKIP
    >>> report = run_finetune(cloud, data, correction="soft")  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np

from graphrec.errors import ConfigError
from graphrec.io import CTRTable
from graphrec.models.ctr.base import CTRModel
from graphrec.models.ctr.defaults import TrainRecipe, train_recipe
from graphrec.models.ctr.experiment import CTRDataset, build_ctr_model, load_ctr_dataset
from graphrec.models.ctr.train import train_ctr
from graphrec.ondevice.protocol import (
    FINETUNE_DEFAULTS,
    FineTuneConfig,
    UserScores,
    drift_buckets,
    finetune_users,
    user_metrics,
)
from graphrec.ondevice.runtime import RUNTIMES, MNNRuntime

__all__ = [
    "ONDEVICE_DATASETS",
    "OnDeviceData",
    "load_ondevice_data",
    "run_finetune",
    "train_cloud",
]

#: Data set names of :func:`load_ondevice_data`.
ONDEVICE_DATASETS = ("amazon-users", "ml-100k", "synthetic")


@dataclass(repr=False)
class OnDeviceData:
    """Tables of one on-device experiment (one vocabulary).

    Attributes:
        ctr: the cloud's :class:`~graphrec.models.ctr.experiment.CTRDataset` (its ``split``:
            cloud training, cloud validation and the test rows).
        local: every device's local samples (fine-tuning data).
        recipe: the cloud model's training recipe.
    """

    ctr: CTRDataset
    local: CTRTable
    recipe: TrainRecipe

    @property
    def name(self) -> str:
        return self.ctr.name

    @property
    def test(self) -> CTRTable:
        return self.ctr.split.test

    @property
    def global_share(self) -> float:
        """Share of positives of the cloud training data (shipped with the model)."""
        return float(np.mean(self.ctr.split.train.labels, dtype=np.float64))

    def __repr__(self) -> str:
        s = self.ctr.split
        return (
            f"OnDeviceData({self.name!r}, cloud={s.train.num_rows}+{s.valid.num_rows}, "
            f"local={self.local.num_rows}, test={s.test.num_rows})"
        )


def load_ondevice_data(
    dataset: str, root: str | Path | None = None, *, seed: int = 0
) -> OnDeviceData:
    """The tables of ``dataset``.

    * ``amazon-users`` / ``ml-100k``: each user's samples in time order
      (:func:`graphrec.models.ctr.load_ctr_dataset`): the cloud trains on the first 80% of
      every user's samples, with early stopping on the next 10%; the device fine-tunes on both
      (everything it holds before the test period) and is tested on the last 10%.
    * ``synthetic``: :func:`graphrec.ondevice.synthetic.drift_ctr` with ``seed``; the local
      samples are new to the cloud.

    Raises:
        ConfigError: an unknown name.
    """
    if dataset == "synthetic":
        from graphrec.ondevice.synthetic import drift_ctr

        return drift_ctr(seed=seed)
    if dataset not in ONDEVICE_DATASETS:
        raise ConfigError(f"dataset must be one of {', '.join(ONDEVICE_DATASETS)}; got {dataset!r}")
    ctr = load_ctr_dataset(dataset, root, seed=seed)
    return OnDeviceData(ctr, _concat(ctr.split.train, ctr.split.valid), train_recipe(dataset))


def _concat(a: CTRTable, b: CTRTable) -> CTRTable:
    """Rows of ``a`` then ``b`` (one vocabulary; sequences padded to the wider)."""

    def pad(x: np.ndarray, width: int) -> np.ndarray:
        return np.pad(x, ((0, 0), (0, width - x.shape[1])))

    width = {c: max(a.sequence[c].shape[1], b.sequence[c].shape[1]) for c in a.sequence}
    return CTRTable(
        labels=np.concatenate([a.labels, b.labels]),
        categorical={c: np.concatenate([v, b.categorical[c]]) for c, v in a.categorical.items()},
        numeric={c: np.concatenate([v, b.numeric[c]]) for c, v in a.numeric.items()},
        sequence={
            c: np.concatenate([pad(v, width[c]), pad(b.sequence[c], width[c])])
            for c, v in a.sequence.items()
        },  # fmt: skip
        sequence_lengths={
            c: np.concatenate([v, b.sequence_lengths[c]]) for c, v in a.sequence_lengths.items()
        },
        vocab=a.vocab,
        schema=a.schema,
        path=a.path,
    )


def train_cloud(model: str, data: OnDeviceData, *, seed: int = 0) -> CTRModel:
    """The cloud model: ``model`` built and trained on the cloud tables with the recipe."""
    net = build_ctr_model(model, data.ctr, seed=seed)
    split = data.ctr.split
    train_ctr(net, split.train, split.valid, seed=seed, **asdict(data.recipe))
    return net


def run_finetune(
    cloud: CTRModel,
    data: OnDeviceData,
    *,
    correction: str | Sequence[str] = "none",
    config: FineTuneConfig = FINETUNE_DEFAULTS,
    seed: int = 0,
    edges: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 1.0),
    cache: MutableMapping[str, tuple[UserScores, float]] | None = None,
    runtime: str = "torch",
    progress: bool = False,
) -> dict:
    """Cloud only, naive fine-tuning and ``correction`` (one rule or several) on every user
    of ``data``.

    ``cache`` (method name -> scores and seconds) holds finished methods: a method found there
    is not run again, a method run is stored there (e.g. a run folder that a rerun resumes).
    Every method fine-tunes with the same ``seed``, so it does not depend on the others.
    ``runtime`` ``"mnn"`` fine-tunes in MNN (:class:`~graphrec.ondevice.runtime.MNNRuntime`,
    ``config.layers`` must be ``"dense"``); ``progress`` shows a tqdm bar over the users.

    Returns a JSON-ready dict: ``global_share``, ``config``, ``methods`` (name -> the
    metrics of :func:`~graphrec.ondevice.user_metrics` plus ``seconds``), ``buckets``
    (name -> :func:`~graphrec.ondevice.drift_buckets` against the cloud model) and ``users``.
    """
    g = data.global_share
    runs = {"cloud": dict(epochs=0), "naive": dict(correction="none")}
    for rule in [correction] if isinstance(correction, str) else correction:
        if rule != "none":
            runs[rule] = dict(correction=rule)
    settings = asdict(config)
    cache = {} if cache is None else cache
    tune = partial(finetune_users, cloud)
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime must be one of {', '.join(RUNTIMES)}; got {runtime!r}")
    if runtime == "mnn":
        if config.layers != "dense":
            raise ConfigError(f"runtime 'mnn' tunes the dense layers: layers must be 'dense'; "
                              f"got {config.layers!r}")  # fmt: skip
        if any(name not in cache for name in runs):
            tune = MNNRuntime(cloud, data.local).finetune_users
    scores, methods = {}, {}
    for name, options in runs.items():
        if name not in cache:
            start = time.perf_counter()
            tuned = tune(data.local, data.test, global_share=g, seed=seed, progress=progress,
                         **(settings | options))  # fmt: skip
            cache[name] = (tuned, time.perf_counter() - start)
        scores[name], seconds = cache[name]
        methods[name] = user_metrics(scores[name]) | {"seconds": seconds}
    buckets = {n: drift_buckets(scores["cloud"], s, g, edges) for n, s in scores.items()
               if n != "cloud"}  # fmt: skip
    return {
        "dataset": data.name,
        "global_share": g,
        "users": len(scores["cloud"].users),
        "runtime": runtime,
        "config": settings,
        "methods": methods,
        "buckets": buckets,
    }
