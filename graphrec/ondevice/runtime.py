"""Per-user fine-tuning through MNN's training path: the device side of
:func:`graphrec.ondevice.finetune_users` with ``layers="dense"``.

:class:`MNNRuntime` exports the cloud model once (:mod:`graphrec.export`: ONNX, then ``.mnn``,
accepted only if MNN's scores equal torch's on local rows of other batch sizes). Each user then
loads the ``.mnn`` file as a trainable module (:class:`graphrec.export.MNNFineTuner`), runs the
protocol of :func:`~graphrec.ondevice.finetune_users` -- the same epochs, learning rate and
minibatch order (same ``seed`` and chunking), the same label corrections (``flip`` ordered by
the cloud model's MNN scores, ``offset`` added to the training logits, no update where the
offset is infinite) -- and scores its test rows in MNN.

Which parameters: MNN trains the MatMul/Conv weights and biases of a converted model, and
:class:`MNNRuntime` marks the model's other free dense parameters trainable as well (the scalar
bias of LR, WideDeep and DeepFM). Parameters the converter folds into an operator stay frozen:
the PReLU slopes of DIN. :attr:`MNNRuntime.tuned` names the torch parameters MNN trains and
:meth:`MNNRuntime.torch_twin` is a copy of the cloud model in which only those (and the
embeddings) are parameters, so ``finetune_users(twin, ..., layers="dense")`` tunes the same set
as MNN (the torch reference for parity).

Example:
    >>> runtime = MNNRuntime(cloud, data.local)  # doctest: +SKIP
    >>> scores = runtime.finetune_users(data.local, data.test, global_share=g)  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from graphrec.errors import ConfigError
from graphrec.io import CTRTable
from graphrec.models.ctr.base import CTRModel
from graphrec.ondevice.correction import correct_labels
from graphrec.ondevice.protocol import (
    FINETUNE_DEFAULTS,
    UserScores,
    _chunks,
    _extra_rows,
    _rows_by_user,
    check_finetune_args,
)

__all__ = ["MNNRuntime", "RUNTIMES"]

#: Where per-user fine-tuning runs: torch (vectorised across users) or MNN (one user at a time).
RUNTIMES = ("torch", "mnn")


class MNNRuntime:
    """The cloud model exported for MNN, and per-user fine-tuning in MNN.

    Args:
        model: the cloud CTR model (evaluated in ``eval()`` mode; not modified).
        table: rows for the export example and the parity check (e.g. the local samples).
        folder: where ``cloud.onnx`` and ``cloud.mnn`` are written (default: a temporary
            folder removed with this object).
        atol: parity tolerance of MNN's scores against torch's.

    Raises:
        MissingExtraError: the ``export`` extra is not installed.
        ParityError: MNN's scores differ from torch's by more than ``atol``.
    """

    def __init__(
        self,
        model: CTRModel,
        table: CTRTable,
        folder: str | os.PathLike | None = None,
        *,
        atol: float = 1e-5,
    ) -> None:
        from graphrec.export.onnx import require_extra

        require_extra("on-device fine-tuning in MNN (runtime 'mnn')")
        import MNN

        from graphrec.export import (
            ExportError,
            MNNModel,
            check_parity,
            export_mnn,
            export_onnx,
            match_torch_parameters,
        )
        from graphrec.export.checkpoint import plan_ctr

        if folder is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="graphrec-ondevice-")
            folder = self._tmp.name
        folder = Path(folder)
        was_training = model.training
        try:
            plan = plan_ctr(model, table)
            self.onnx_path = export_onnx(plan.module, plan.example, folder / "cloud.onnx",
                                         overwrite=True, **plan.export_kwargs)  # fmt: skip
            self.mnn_path = export_mnn(self.onnx_path, folder / "cloud.mnn", overwrite=True)
            check_parity(model, {"mnn": self.mnn_path}, plan.parity_inputs,
                         onnx_path=self.onnx_path, atol=atol).raise_for_failures()  # fmt: skip
        finally:
            model.train(was_training)
        self.model = model
        graph = MNN.expr.load_as_dict(str(self.mnn_path))
        #: graph constants made trainable: free dense parameters (``model.`` + torch name)
        self.constants = [
            f"model.{n}"
            for n, _ in model.named_parameters()
            if not n.startswith("embedding.") and f"model.{n}" in graph
        ]
        matched = [n for n, _ in match_torch_parameters(self._tuner(lr=1.0), model)]
        if len(set(matched)) != len(matched):
            raise ExportError(f"MNN trains a torch parameter twice: {matched}")
        #: torch names of the parameters MNN trains, in MNN's order
        self.tuned = matched
        self._cloud = MNNModel(self.mnn_path, onnx_path=self.onnx_path)

    def _tuner(self, lr: float):
        from graphrec.export import MNNFineTuner

        return MNNFineTuner(self.mnn_path, onnx_path=self.onnx_path, lr=lr,
                            trainable=self.constants)  # fmt: skip

    def torch_twin(self) -> CTRModel:
        """A copy of the cloud model whose dense parameters outside :attr:`tuned` are buffers:
        ``finetune_users(twin, ..., layers="dense")`` tunes what MNN tunes."""
        twin = copy.deepcopy(self.model)
        for name, p in list(twin.named_parameters()):
            if not name.startswith("embedding.") and name not in self.tuned:
                path, _, attr = name.rpartition(".")
                module = twin.get_submodule(path)
                delattr(module, attr)
                module.register_buffer(attr, p.detach().clone())
        return twin

    def finetune_users(
        self,
        local: CTRTable,
        test: CTRTable,
        *,
        global_share: float,
        correction: str = "none",
        layers: str = "dense",
        epochs: int = FINETUNE_DEFAULTS.epochs,
        lr: float = FINETUNE_DEFAULTS.lr,
        batch_size: int | None = FINETUNE_DEFAULTS.batch_size,
        user: str = "user",
        seed: int = 0,
        chunk_rows: int = 4096,
        extra: CTRTable | None = None,
        extra_weights: np.ndarray | None = None,
        progress: bool = False,
    ) -> UserScores:
        """:func:`~graphrec.ondevice.finetune_users` in MNN, one user after the other.

        Arguments as there, ``extra`` rows and their weights included; ``chunk_rows`` only
        fixes the minibatch order (the same random draws as the vectorised run);
        ``progress`` shows a tqdm bar over the users. The
        ``seconds`` of the result are each user's own time (loading, training, scoring).

        Raises:
            ConfigError: an invalid argument, ``layers`` other than ``"dense"``, or
                non-finite scores.
            MNNTrainingError: an MNN step updated nothing.
        """
        if layers != "dense":
            raise ConfigError(f"layers must be 'dense' in MNN (it trains the dense part); "
                              f"got {layers!r}")  # fmt: skip
        check_finetune_args(local, test, global_share=global_share, correction=correction,
                            epochs=epochs, lr=lr, batch_size=batch_size, user=user,
                            chunk_rows=chunk_rows)  # fmt: skip
        features = self.model.features
        local_rows, test_rows = _rows_by_user(local, user), _rows_by_user(test, user)
        users = np.array(sorted(set(local_rows) & set(test_rows)), dtype=np.int64)
        if len(users) == 0:
            raise ConfigError(f"no {user!r} has both local and test rows")
        extra_rows, extra_w = _extra_rows(extra, extra_weights, user)
        none = np.zeros(0, np.int64)
        sizes = np.array([len(local_rows[u]) + len(extra_rows.get(u, none)) for u in users])
        by_size = np.argsort(sizes, kind="stable")
        users, sizes = users[by_size], sizes[by_size]  # the chunks of finetune_users
        generator = torch.Generator().manual_seed(seed)
        scores: dict[int, np.ndarray] = {}
        seconds: dict[int, float] = {}
        with tqdm(total=len(users), desc="fine-tuning (MNN)", unit="user",
                  disable=not progress) as bar:  # fmt: skip
            for chunk in _chunks(users, sizes.tolist(), chunk_rows):
                start = time.perf_counter()
                n_local = [len(local_rows[u]) for u in chunk]
                n_extra = [len(extra_rows.get(u, none)) for u in chunk]
                batches, targets, weights, offsets = [], [], [], []
                for u in chunk:
                    batch = features.batch(local, local_rows[u])
                    y = torch.as_tensor(local.labels[local_rows[u]], dtype=torch.float32)
                    offset = 0.0
                    if correction != "none":
                        initial = None  # flip: the cloud model's scores, in MNN
                        if correction == "flip":
                            initial = torch.as_tensor(self._cloud(batch)[0].reshape(-1))
                        c = correct_labels(y, global_share, correction, scores=initial,
                                           generator=generator)  # fmt: skip
                        y, offset = c.labels.to(torch.float32), c.offset
                    rows = extra_rows.get(u, none)
                    w = np.r_[np.ones(len(y), np.float32), extra_w[rows] if len(rows) else []]
                    if len(rows):
                        batch = _cat_rows(batch, features.batch(extra, rows))
                    batches.append(batch)
                    targets.append(np.r_[y.numpy(), extra.labels[rows] if len(rows) else []])
                    weights.append(w.astype(np.float32))
                    offsets.append(offset)
                steps = _minibatches(n_local, n_extra, epochs, batch_size, generator)
                shared = (time.perf_counter() - start) / len(chunk)  # corrections, orders
                for i, (u, batch) in enumerate(zip(chunk, batches)):
                    start = time.perf_counter()
                    test_batch = features.batch(test, test_rows[u])
                    if epochs == 0 or not np.isfinite(offsets[i]):
                        scores[u] = self._cloud(test_batch)[0].reshape(-1)
                    else:
                        tuner = self._tuner(lr)
                        for idx in steps[i]:
                            w = weights[i][idx]  # finetune_users' loss: sum w l / max(sum w, 1)
                            scale = None if extra is None else w * len(idx) / max(w.sum(), 1.0)
                            tuner.step({k: v[idx] for k, v in batch.items()}, targets[i][idx],
                                       offset=offsets[i], weights=scale)  # fmt: skip
                        scores[u] = tuner.predict(test_batch)
                    seconds[u] = shared + time.perf_counter() - start
                    bar.update(1)
        out = np.sort(users)
        s = np.concatenate([scores[u] for u in out]).astype(np.float32)
        if not bool(np.isfinite(s).all()):
            raise ConfigError(f"fine-tuning diverged (non-finite scores) at lr={lr}: lower lr")
        return UserScores(
            users=out,
            local_size=np.array([len(local_rows[u]) for u in out]),
            local_share=np.array([float(local.labels[local_rows[u]].mean()) for u in out]),
            user=np.concatenate([np.full(len(test_rows[u]), u) for u in out]),
            labels=np.concatenate([test.labels[test_rows[u]] for u in out]),
            scores=s,
            seconds=np.array([seconds[u] for u in out]),
        )


def _cat_rows(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Batches ``[N_a, ...]`` and ``[N_b, ...]`` joined (sequences 0-padded to the wider)."""
    out = {}
    for k, x in a.items():
        y = b[k]
        if x.dim() == 2 and x.shape[1] != y.shape[1]:
            width = max(x.shape[1], y.shape[1])
            x, y = (torch.nn.functional.pad(t, (0, width - t.shape[1])) for t in (x, y))
        out[k] = torch.cat([x, y])
    return out


def _minibatches(
    n_local: list[int],
    n_extra: list[int],
    epochs: int,
    batch_size: int | None,
    generator: torch.Generator,
) -> list[list[np.ndarray]]:
    """Per user of a chunk, the rows (local, then extra) of each SGD step, drawn as
    :func:`~graphrec.ondevice.finetune_users` draws them for the chunk: one random key per
    padded row and epoch over the padded local rows followed by the padded extra rows (if any
    user of the chunk has extra rows); padding sorts last and is dropped, empty steps too."""
    local_width, extra_width = max(n_local), max(n_extra)
    width = local_width + extra_width
    size = width if batch_size is None else min(batch_size, width)
    pos = np.arange(width)[None, :]
    n, m = np.array(n_local)[:, None], np.array(n_extra)[:, None]
    mask = (pos < n) | ((pos >= local_width) & (pos < local_width + m))
    row = np.where(pos < local_width, pos, pos - local_width + n)  # position -> user's row
    out: list[list[np.ndarray]] = [[] for _ in n_local]
    for _ in range(epochs):
        if size < width:
            keys = torch.rand(len(n_local), width, generator=generator)
            order = keys.masked_fill(~torch.as_tensor(mask), 2.0).argsort(dim=1).numpy()
        else:
            order = np.broadcast_to(np.arange(width), mask.shape)
        for start in range(0, width, size):
            for u in range(len(n_local)):
                idx = order[u, start : start + size]
                idx = row[u, idx[mask[u, idx]]]
                if len(idx):
                    out[u].append(idx)
    return out
