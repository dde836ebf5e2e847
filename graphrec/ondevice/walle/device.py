"""Walle end to end on one simulated device: app events -> triggers -> samples and requests ->
predictions by a task package's model in MNN -> fine-tuning in MNN -> the updated model serves.

:class:`Device` holds one task package (:mod:`graphrec.ondevice.walle.package`) whose
``task.json`` carries its trigger tasks (the task-file format of
:mod:`graphrec.ondevice.walle.triggers`) and whose model reads :data:`WALLE_CTR_SCHEMA` rows
(a package built on :func:`walle_ctr_dataset`, e.g. ``graphrec walle package build --dataset
walle-synthetic``). Events arrive a few at a time (``arrival``); for each arrival:

1. **ingest**: validation into the columnar stream (plus parsing when read from a file);
2. **trigger match**: the Aho-Corasick automaton of the package's triggers;
3. **extraction**: tasks with ``extract: features`` emit inference rows, tasks with
   ``extract: samples`` labelled rows;
4. **pre-process** and **inference**: each batch of inference rows is a request to the
   package's task (its pre-processing, the model in MNN, its post-processing);
5. every ``finetune_every`` new labelled samples, a **fine-tuning** round: ``epochs`` passes of
   SGD (:class:`graphrec.export.MNNFineTuner`; every step asserted to update) over those
   samples in arrival order, minibatches of ``batch_size``, on the dense layers (MNN trains
   the MatMul weights and biases; embeddings stay frozen) of the model in service;
6. **model swap**: the tuned model is saved as a new ``.mnn`` file and loaded by the task,
   which serves it from the next request on.

Every labelled sample is scored when it arrives, before it is trained on, by the model in
service and by the package's original model: :meth:`Device.report` compares their log loss and
AUC on the samples that arrived after the first update. Each stage is timed per call.

Example:
    >>> device = Device("walle-din.tar", finetune_every=64)  # doctest: +SKIP
    >>> device.run([synthetic_events(20_000, seed=0)]).report()["evaluation"]  # doctest: +SKIP
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from graphrec.errors import ConfigError
from graphrec.ondevice.walle.events import PAGE_EXIT, EventBatch, EventValidator, synthetic_events
from graphrec.ondevice.walle.package import Task, TaskPackage, load_package
from graphrec.ondevice.walle.triggers import Pipeline, ctr_table
from graphrec.ondevice.walle.triggers import Task as TriggerTask

__all__ = ["STAGES", "Device", "torch_replay", "walle_ctr_dataset"]

#: The timed stages, in the order an event goes through them.
STAGES = ("ingest", "match", "extract", "preprocess", "inference", "finetune_step", "swap")


def walle_ctr_dataset(
    users: int = 16, events: int = 20_000, *, seed: int = 0, max_history: int = 20
) -> Any:
    """A cloud's CTR training data from many devices: the labelled samples (a ``page_exit``
    trigger, ``samples`` extractor) of ``users`` synthetic event streams
    (:func:`~graphrec.ondevice.walle.events.synthetic_events` with seeds ``seed + 1`` ..
    ``seed + users``, each its own liked items; user ``u<k>``), split 80/10/10 at random.

    Returns:
        A :class:`graphrec.models.ctr.experiment.CTRDataset` named ``walle-synthetic``
        (:data:`~graphrec.ondevice.walle.triggers.WALLE_CTR_SCHEMA`, one vocabulary).
    """
    from graphrec.models.ctr import CTRFeatures
    from graphrec.models.ctr.data import CTRSplit
    from graphrec.models.ctr.experiment import CTRDataset

    for name, value in (("users", users), ("events", events), ("max_history", max_history)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be an integer >= 1; got {value!r}")
    tasks = [TriggerTask("samples", ((PAGE_EXIT,),), "samples")]
    rows: list[dict] = []
    for k in range(users):
        pipeline = Pipeline(tasks, user=f"u{k}", max_history=max_history)
        rows += pipeline.run([synthetic_events(events, seed=seed + 1 + k)]).rows["samples"]
    order = np.random.default_rng(seed).permutation(len(rows))
    cut = [int(0.8 * len(rows)), int(0.9 * len(rows))]
    parts = [[rows[i] for i in part] for part in np.split(order, cut)]
    train = ctr_table(parts[0], source="walle-synthetic train")
    valid, test = (ctr_table(p, train.vocab, source="walle-synthetic") for p in parts[1:])
    split = CTRSplit(train, valid, test)
    return CTRDataset("walle-synthetic", split, CTRFeatures.from_table(train), None, "item",
                      "user", "history")  # fmt: skip


def torch_replay(model: Any, device: Device) -> tuple[Any, list[str]]:
    """The torch reference of a device's fine-tuning: a copy of ``model`` (the torch model its
    package was built from) after the device's rounds replayed with ``torch.optim.SGD`` on the
    parameters MNN trains (:func:`graphrec.export.match_torch_parameters`), the same loss
    (:func:`graphrec.export.torch_bce_loss`), minibatches and order.

    Returns:
        ``(model copy, names)``: ``names[i]`` is the torch parameter of MNN's ``i``-th
        (``device.tuner.parameters[i]``).
    """
    import copy

    import torch

    from graphrec.export import MNNFineTuner, match_torch_parameters, torch_bce_loss

    if device.tuner is None:
        raise ConfigError("the device has not fine-tuned yet")
    fresh = MNNFineTuner(device.folder / "model-0.mnn", device.tuner.input_names,
                         device.tuner.output_name)  # fmt: skip
    twin = copy.deepcopy(model).eval()
    names = [n for n, _ in match_torch_parameters(fresh, twin)]
    params = dict(twin.named_parameters())
    opt = torch.optim.SGD([params[n] for n in names], lr=device.lr)
    for inputs, labels in device.rounds:
        size = device.batch_size or len(labels)
        for _ in range(device.epochs):
            for s in range(0, len(labels), size):
                x = {k: torch.as_tensor(v[s : s + size]) for k, v in inputs.items()}
                opt.zero_grad()
                loss = torch_bce_loss(twin(x).reshape(-1), torch.as_tensor(labels[s : s + size]))
                loss.backward()
                opt.step()
    return twin, names


def _log_loss(labels: np.ndarray, logits: np.ndarray) -> float:
    """Mean binary log loss of logits."""
    return float(np.mean(np.logaddexp(0.0, logits) - labels * logits))


class Device:
    """One simulated device running a task package end to end (see the module docstring).

    Args:
        package: a :class:`~graphrec.ondevice.walle.package.TaskPackage` or its path; its
            trigger tasks need one with ``extract: samples`` for fine-tuning and one with
            ``extract: features`` for requests.
        finetune_every: labelled samples per fine-tuning round (None: never fine-tune).
        lr: SGD learning rate of the rounds.
        epochs: passes over a round's samples.
        batch_size: samples per SGD step (default: the whole round, one step per epoch).
        user: the device's user (a value the package's vocabulary may not know).
        max_window: most events handed to an extractor, for tasks without a ``window``.
        folder: where the fine-tuned ``.mnn`` files go (default: a temporary folder).
        threads: CPU threads of MNN.

    Raises:
        ConfigError: an invalid argument, or a package without the needed trigger tasks.
        MissingExtraError: MNN (the ``export`` extra) is not installed.
    """

    def __init__(
        self,
        package: TaskPackage | str | os.PathLike,
        *,
        finetune_every: int | None = 64,
        lr: float = 0.05,
        epochs: int = 1,
        batch_size: int | None = None,
        user: str = "device",
        max_window: int = 1024,
        folder: str | os.PathLike | None = None,
        threads: int = 1,
    ) -> None:
        from graphrec.export.onnx import require_extra

        require_extra("a Walle device (MNN runtime)", ["MNN"])
        for name, value in (("finetune_every", finetune_every), ("batch_size", batch_size)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):  # fmt: skip
                raise ConfigError(f"{name} must be an integer >= 1 or None; got {value!r}")
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ConfigError(f"epochs must be an integer >= 1; got {epochs!r}")
        if not (isinstance(lr, (int, float)) and 0 < lr < float("inf")):
            raise ConfigError(f"lr must be a number > 0; got {lr!r}")
        self.package = package if isinstance(package, TaskPackage) else load_package(package)
        catalog, tasks = self.package.trigger_tasks()
        self.samples_tasks = [t.name for t in tasks if t.extract == "samples"]
        self.request_tasks = [t.name for t in tasks if t.extract == "features"]
        if not self.request_tasks or (finetune_every is not None and not self.samples_tasks):
            raise ConfigError(
                f"package {self.package.name}: its triggers need a task with extract 'features' "
                "(requests) and, to fine-tune, one with extract 'samples'; got "
                f"{[(t.name, t.extract) for t in tasks]}"
            )
        history = [s["length"] for s in self.package.features if s["name"] == "history"]
        self.validator = EventValidator(catalog)
        self.pipeline = Pipeline(tasks, self.validator, user=user, max_window=max_window,
                                 max_history=history[0] if history else 50)  # fmt: skip
        self.finetune_every, self.lr, self.epochs = finetune_every, lr, epochs
        self.batch_size, self.threads = batch_size, threads
        if folder is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="graphrec-walle-device-")
            folder = self._tmp.name
        self.folder = Path(folder)
        self.task = Task(self.package, "mnn", threads)  # serves; its model is swapped
        self.original = Task(self.package, "mnn", threads)  # the package's model, for scoring
        self.tuner: Any = None
        #: ``(inputs, labels)`` of every fine-tuning round, in order (what MNN trained on)
        self.rounds: list[tuple[dict[str, np.ndarray], np.ndarray]] = []
        self.times: dict[str, list[float]] = {s: [] for s in STAGES}  # milliseconds per call
        self.samples = self.requests = 0
        self.scores: list[np.ndarray] = []  # scores served, one array per request
        self._pending: list[dict] = []
        # per labelled sample at arrival: label, logit in service, original logit, updates
        self._eval: list[tuple[np.ndarray, np.ndarray, np.ndarray, int]] = []

    def run(self, batches: Iterable[EventBatch], arrival: int = 1) -> Device:
        """Feed a stream (batches, e.g. a :func:`~graphrec.ondevice.walle.events.read_events`
        stream) ``arrival`` events at a time; reading the stream counts as ingest."""
        if isinstance(arrival, bool) or not isinstance(arrival, int) or arrival < 1:
            raise ConfigError(f"arrival must be an integer >= 1; got {arrival!r}")
        iterator = iter(batches)
        while True:
            t0 = time.perf_counter()
            batch = next(iterator, None)
            read_ms = (time.perf_counter() - t0) * 1e3
            if batch is None:
                return self
            for start in range(0, len(batch), arrival):
                self.push(batch.slice(start, min(start + arrival, len(batch))), read_ms)
                read_ms = 0.0

    def push(self, batch: EventBatch, read_ms: float = 0.0) -> None:
        """Events arriving at once: match, extract, serve the requests, fine-tune when due."""
        pipe = self.pipeline
        check, match = pipe.check_seconds, pipe.match_seconds
        t0 = time.perf_counter()
        pipe.push(batch)
        total = time.perf_counter() - t0
        check, match = pipe.check_seconds - check, pipe.match_seconds - match
        self.times["ingest"].append(read_ms + check * 1e3)
        self.times["match"].append(match * 1e3)
        self.times["extract"].append((total - check - match) * 1e3)
        for name in self.request_tasks:
            rows = pipe.rows[name]
            if rows:
                self._serve(rows)
                rows.clear()
        for name in self.samples_tasks:
            rows = pipe.rows[name]
            if rows:
                self._arrive(rows)
                rows.clear()
        while self.finetune_every is not None and len(self._pending) >= self.finetune_every:
            self._finetune(self._pending[: self.finetune_every])
            del self._pending[: self.finetune_every]

    def _serve(self, rows: list[dict]) -> None:
        outcome = self.task.run(rows)
        if not outcome.ok:
            raise ConfigError(f"task {self.task.name} failed on a request: {outcome.error}")
        self.times["preprocess"].append(outcome.latency_ms["pre"])
        self.times["inference"].append(outcome.latency_ms["model"] + outcome.latency_ms["post"])
        self.scores.append(outcome.output["score"])
        self.requests += 1

    def _arrive(self, rows: list[dict]) -> None:
        """Score labelled samples with the model in service and the original, then queue."""
        inputs = self.task.preprocess(rows)
        labels = np.array([r["label"] for r in rows], dtype=np.float64)
        self._eval.append((labels, self.task.infer(inputs), self.original.infer(inputs),
                           len(self.rounds)))  # fmt: skip
        self._pending += rows
        self.samples += len(rows)

    def _finetune(self, rows: list[dict]) -> None:
        from graphrec.export import MNNFineTuner

        inputs = self.task.preprocess(rows)
        labels = np.array([r["label"] for r in rows], dtype=np.float32)
        if self.tuner is None:
            first = self.folder / "model-0.mnn"
            first.write_bytes(self.package.files["model.mnn"])
            model = self.package.manifest["model"]
            self.tuner = MNNFineTuner(first, model["inputs"], self.package.task["output"],
                                      lr=self.lr)  # fmt: skip
        size = self.batch_size or len(rows)
        for _ in range(self.epochs):
            for start in range(0, len(rows), size):
                step = {k: v[start : start + size] for k, v in inputs.items()}
                t0 = time.perf_counter()
                self.tuner.step(step, labels[start : start + size])  # raises unless updated
                self.times["finetune_step"].append((time.perf_counter() - t0) * 1e3)
        self.rounds.append((inputs, labels))
        t0 = time.perf_counter()
        path = self.tuner.save(self.folder / f"model-{len(self.rounds)}.mnn", inputs)
        self.task.swap_model(path)
        self.times["swap"].append((time.perf_counter() - t0) * 1e3)

    def evaluation(self) -> dict[str, Any]:
        """Log loss and AUC, on the labelled samples that arrived after the first update, of
        the model in service when each arrived (``finetuned``) and of the package's model
        (``original``); all samples' counts."""
        from graphrec.metrics import auc

        later = [e for e in self._eval if e[3] > 0]
        out: dict[str, Any] = {"samples": int(sum(len(e[0]) for e in later))}
        if not later:
            return out
        y = np.concatenate([e[0] for e in later])
        for key, k in (("finetuned", 1), ("original", 2)):
            z = np.concatenate([e[k] for e in later]).astype(np.float64)
            both = 0 < y.mean() < 1
            out[key] = {"log_loss": _log_loss(y, z), "auc": auc(y, z) if both else None}
        return out

    def report(self) -> dict[str, Any]:
        """Events, matches, samples, requests, rounds, per-stage latency and evaluation."""
        base = self.pipeline.report()
        stages = {}
        for stage, ms in self.times.items():
            a = np.array(ms, dtype=np.float64)
            stages[stage] = {
                "calls": len(a),
                "mean_ms": float(a.mean()) if len(a) else None,
                "p50_ms": float(np.percentile(a, 50)) if len(a) else None,
                "p99_ms": float(np.percentile(a, 99)) if len(a) else None,
                "total_s": float(a.sum() / 1e3),
            }
        return {
            "package": f"{self.package.name} {self.package.version}",
            "model": self.package.manifest["model"]["class"],
            "events": base["events"],
            "accepted": base["accepted"],
            "dropped": base["dropped"],
            "drops": base["drops"],
            "triggers": base["triggers"],
            "samples": self.samples,
            "requests": self.requests,
            "rounds": len(self.rounds),
            "steps": self.tuner.steps if self.tuner is not None else 0,
            "stages": stages,
            "evaluation": self.evaluation(),
        }

    def close(self) -> None:
        """Stop the tasks' worker threads."""
        self.task.close()
        self.original.close()

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
