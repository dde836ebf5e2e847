"""On-device fine-tuning of a converted ``.mnn`` CTR model with MNN's training API.

The path on-device personalisation uses: the converted model is loaded as a *trainable* MNN
module, trained with MNN's SGD on a binary log loss, then re-traced in eval mode and saved as a
new ``.mnn`` file that :class:`graphrec.export.MNNModel` (or an app) loads.

MNN facts this relies on (MNN 3.6.1, checked by the tests):

* Only Convolution/MatMul weights and their biases of a converted model become trainable --
  in a CTR model, the MLP (``Linear``) layers; embedding tables (Gather on constants) and free
  parameters (a wide part's bias) stay frozen unless named in ``trainable`` (a constant of the
  graph marked with ``fix_as_trainable()`` before the module is built). Parameters the
  converter folds into an operator (PReLU slopes) cannot be trained.
  :func:`match_torch_parameters` names the torch parameters MNN trains, for a torch run on the
  same parameters.
* Gradients need ``MNN.expr.lazy_eval(True)``; in eager mode ``step()`` returns False and
  changes nothing. :class:`MNNFineTuner` switches lazy evaluation on (a process-wide MNN
  setting) and always asserts ``step()`` is True.
* MNN prints a line per step for every Gather off the trainable path that it cannot
  differentiate (``axis != 0``); :meth:`MNNFineTuner.step` sends MNN's standard output to
  ``os.devnull`` while it steps.
* ``MNN.expr.sigmoid`` has no gradient (``step()`` is False) and losses built from
  ``reduce_mean``/``log`` give none either; the binary log loss is therefore
  ``MNN.nn.loss.cross_entropy(softmax([0, z]), one_hot(y))``, equal to
  ``BCE(sigmoid(z), y)`` because ``softmax([0, z]) = [1 - sigmoid(z), sigmoid(z)]``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from graphrec.errors import ConfigError
from graphrec.export.mnn import to_mnn_var
from graphrec.export.onnx import ExportError, quiet_stdout, read_metadata

__all__ = ["MNNFineTuner", "MNNTrainingError", "match_torch_parameters", "torch_bce_loss"]


class MNNTrainingError(ExportError):
    """MNN's optimizer reported that a step did not update anything."""


def torch_bce_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The torch twin of MNN's loss: mean ``-log softmax([0, z])[y]`` = BCE with logits."""
    two = torch.stack([torch.zeros_like(logits), logits], dim=-1)
    return -torch.log_softmax(two, dim=-1).gather(-1, labels.long().unsqueeze(-1)).mean()


class MNNFineTuner:
    """SGD fine-tuning of a converted ``.mnn`` model that outputs one logit per sample.

    Args:
        path: the ``.mnn`` file (from :func:`graphrec.export.export_mnn`).
        input_names, output_name: the graph's inputs (call order) and logit output; default:
            recorded by :func:`graphrec.export.export_onnx` in ``onnx_path``.
        onnx_path: the ONNX file the model was converted from (for the names).
        lr: SGD learning rate (no momentum, no weight decay, as plain ``torch.optim.SGD``).
        trainable: names of constants of the graph to train as well (e.g. a scalar bias,
            ``"model.bias"`` in a :func:`graphrec.export.export_onnx` file).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        input_names: Sequence[str] | None = None,
        output_name: str | None = None,
        *,
        onnx_path: str | os.PathLike | None = None,
        lr: float = 0.01,
        trainable: Sequence[str] = (),
    ) -> None:
        import MNN  # runtime only

        if input_names is None or output_name is None:
            if onnx_path is None:
                raise ConfigError("give input_names and output_name, or onnx_path")
            meta = read_metadata(onnx_path)
            input_names = meta["inputs"] if input_names is None else input_names
            if output_name is None:
                if len(meta["outputs"]) != 1:
                    raise ConfigError(f"pick output_name among {meta['outputs']}")
                output_name = meta["outputs"][0]
        self._F, self._nn = MNN.expr, MNN.nn
        self._F.lazy_eval(True)  # gradients need lazy evaluation
        self.path = Path(path)
        self.input_names = list(input_names)
        self.output_name = output_name
        graph = self._F.load_as_dict(str(path))
        missing = [n for n in [*self.input_names, output_name, *trainable] if n not in graph]
        if missing:
            raise KeyError(f"{path} has no variables {missing}")
        for name in trainable:
            graph[name].fix_as_trainable()
        self.module = self._nn.load_module(
            [graph[n] for n in self.input_names], [graph[output_name]], True
        )
        self.lr = lr
        self.optimizer = MNN.optim.SGD(self.module, lr, 0.0, 0.0)
        self.steps = 0

    @property
    def parameters(self) -> list[np.ndarray]:
        """Copies of the trainable parameters (MNN's shapes, e.g. ``[out, in, 1, 1]``)."""
        return [np.array(p.read(), copy=True) for p in self.module.parameters]

    def _inputs(self, inputs: Mapping[str, Any]) -> list[Any]:
        return [to_mnn_var(n, inputs[n]) for n in self.input_names]

    def _logits(self, inputs: Mapping[str, Any]) -> Any:
        out = self.module.forward(self._inputs(inputs))
        out = out[0] if isinstance(out, (list, tuple)) else out
        return self._F.reshape(out, [-1, 1])

    def predict(self, inputs: Mapping[str, Any]) -> np.ndarray:
        """``float32 [B]`` logits of the current parameters (eval mode)."""
        self.module.train(False)
        return np.array(self._logits(inputs).read(), dtype=np.float32, copy=True).reshape(-1)

    def step(
        self, inputs: Mapping[str, Any], labels: Any, *, offset: float = 0.0, weights: Any = None
    ) -> float:
        """One SGD step on a batch; returns the loss before the step.

        ``labels`` may be soft (in ``[0, 1]``); ``offset`` is added to every logit in the loss
        (a prior shift, e.g. label correction's logit offset); ``weights`` (one per sample)
        scale each sample's term of the mean loss.

        Raises:
            MNNTrainingError: MNN's ``step()`` returned False (no gradient reached a parameter).
        """
        F = self._F
        self.module.train(True)
        y = np.asarray(labels.detach().cpu().numpy() if hasattr(labels, "detach") else labels)
        y = y.astype(np.float32).reshape(-1)
        logits = self._logits(inputs)
        if offset:
            logits = logits + F.const(np.full((y.size, 1), offset, np.float32), [y.size, 1], F.NCHW)
        zeros = F.const(np.zeros((y.size, 1), np.float32), [y.size, 1], F.NCHW)
        probs = F.softmax(F.concat([zeros, logits], 1), 1)
        target = np.stack([1.0 - y, y], 1)
        if weights is not None:  # the loss is linear in the target
            target = target * np.asarray(weights, np.float32).reshape(-1, 1)
        target = F.const(target.astype(np.float32), [y.size, 2], F.NCHW)
        loss = self._nn.loss.cross_entropy(probs, target)
        value = float(np.asarray(loss.read()).reshape(-1)[0])
        with quiet_stdout():  # MNN prints a line per Gather it cannot differentiate
            updated = self.optimizer.step(loss)
        if not updated:
            raise MNNTrainingError(
                f"MNN's SGD step {self.steps + 1} returned False: no gradient reached the "
                "trainable parameters"
            )
        self.steps += 1
        return value

    def save(self, path: str | os.PathLike, example_inputs: Mapping[str, Any]) -> Path:
        """Re-trace in eval mode on placeholders shaped like ``example_inputs`` and save.

        The saved model keeps the input and output names and accepts other batch sizes.
        """
        F = self._F
        self.module.train(False)
        placeholders = []
        for name in self.input_names:
            a = np.asarray(example_inputs[name])
            dtype = F.int if np.issubdtype(a.dtype, np.integer) else F.float
            ph = F.placeholder(list(a.shape), F.NCHW, dtype)
            ph.name = name
            placeholders.append(ph)
        out = self.module.forward(placeholders)
        out = out[0] if isinstance(out, (list, tuple)) else out
        out.name = self.output_name
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        F.save([out], str(path))
        return path


def match_torch_parameters(
    tuner: MNNFineTuner, model: torch.nn.Module
) -> list[tuple[str, torch.nn.Parameter]]:
    """The torch parameters MNN trains, in MNN's order (matched by value, up to reshape).

    Raises:
        ExportError: an MNN parameter matches no torch parameter, or several.
    """
    named = list(model.named_parameters())
    out = []
    for i, value in enumerate(tuner.parameters):
        hits = [
            (n, p)
            for n, p in named
            if p.numel() == value.size
            and np.array_equal(p.detach().cpu().numpy().reshape(-1), value.reshape(-1))
        ]
        if len(hits) != 1:
            names = [n for n, _ in hits]
            raise ExportError(f"MNN parameter {i} {value.shape} matches torch parameters {names}")
        out.append(hits[0])
    return out
