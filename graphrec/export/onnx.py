"""Export a graphrec model to ONNX with the dynamo exporter (opset 20).

Models whose ``forward`` takes a batch ``dict[str, Tensor]`` (every CTR model) are wrapped in a
small module that takes the dict's tensors positionally, in the dict's order; the ONNX inputs
are named after the dict keys. Models that take tensors positionally are exported as they are.

The exporter is ``torch.onnx.export(..., dynamo=True)`` (it needs ``onnxscript``), never the
legacy TorchScript exporter, which silently mis-exports ``index_add``/``index_put`` with
duplicate indices (see ``docs/mobile-export-findings.md``).

The file records how it was made in its ``metadata_props`` (input names, whether the model
takes a dict, the example shapes), which :func:`graphrec.export.check_parity` reads.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from graphrec.errors import ConfigError, GraphrecError, MissingExtraError

__all__ = [
    "DEFAULT_OPSET",
    "EXTRA_MODULES",
    "ExportError",
    "FlatInputs",
    "export_onnx",
    "flatten_inputs",
    "quiet_stdout",
    "read_metadata",
    "require_extra",
]

DEFAULT_OPSET = 20
_META_KEY = "graphrec.export"


#: The modules of the ``export`` extra: the exporter needs onnx and onnxscript, the parity
#: check onnxruntime, MNN conversion and runs MNN (imported top-level only, never MNN.tools).
EXTRA_MODULES = ("onnx", "onnxscript", "onnxruntime", "MNN")


class ExportError(GraphrecError, RuntimeError):
    """An export step failed (the message says which and why)."""


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Send what is written to file descriptor 1 (native code included) to ``os.devnull``."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def require_extra(feature: str, modules: Sequence[str] = EXTRA_MODULES) -> None:
    """Import ``modules`` of the ``export`` extra, or raise one-line
    :class:`~graphrec.errors.MissingExtraError` saying that ``feature`` needs the extra.

    Native output to the standard output is dropped meanwhile: ``import MNN`` prints the
    CPU's features there, which would corrupt a command's ``--json`` output."""
    for name in modules:
        try:
            with quiet_stdout():
                importlib.import_module(name)
        except ImportError as exc:
            raise MissingExtraError(feature, "export") from exc


Inputs = Mapping[str, Tensor] | Tensor | Sequence[Tensor]


def flatten_inputs(
    inputs: Inputs, input_names: Sequence[str] | None = None
) -> tuple[list[str], list[Tensor], bool]:
    """``(names, tensors, takes_dict)`` for a dict, a single tensor or a sequence of tensors.

    Dict inputs keep the dict's order and are named by their keys; positional inputs are named
    ``input_names`` or ``input_0, input_1, ...``.
    """
    if isinstance(inputs, Mapping):
        names, tensors = [str(k) for k in inputs], list(inputs.values())
        if input_names is not None and list(input_names) != names:
            raise ConfigError(
                f"input_names {list(input_names)} must equal the dict keys {names} (in order)"
            )
        takes_dict = True
    else:
        tensors = [inputs] if isinstance(inputs, Tensor) else list(inputs)
        names = (
            [f"input_{i}" for i in range(len(tensors))]
            if input_names is None
            else [str(n) for n in input_names]
        )
        if len(names) != len(tensors):
            raise ConfigError(f"{len(names)} input_names for {len(tensors)} inputs")
        takes_dict = False
    for name, t in zip(names, tensors):
        if not isinstance(t, Tensor):
            raise TypeError(f"input {name!r} must be a Tensor; got {type(t).__name__}")
    if len(set(names)) != len(names):
        raise ConfigError(f"input names must be unique; got {names}")
    return names, tensors, takes_dict


class FlatInputs(torch.nn.Module):
    """``forward(*tensors)`` for a model whose ``forward`` takes a ``dict[str, Tensor]``.

    Args:
        model: the wrapped model.
        names: the dict keys, in the order of the positional tensors.
        takes_dict: False to pass the tensors on positionally (a plain pass-through).
    """

    def __init__(self, model: torch.nn.Module, names: Sequence[str], takes_dict: bool) -> None:
        super().__init__()
        self.model = model
        self.names = list(names)
        self.takes_dict = takes_dict

    def forward(self, *tensors: Tensor) -> Any:
        if self.takes_dict:
            return self.model(dict(zip(self.names, tensors)))
        return self.model(*tensors)


def _dynamic_shapes(
    names: Sequence[str],
    tensors: Sequence[Tensor],
    dynamic: bool,
    dynamic_shapes: Mapping[str, Mapping[int, Any]] | None,
) -> tuple[tuple[dict[int, Any], ...]] | None:
    """torch.export's structure for ``forward(*tensors)``: one tuple for the var-positional."""
    spec: dict[str, dict[int, Any]] = {}
    if dynamic:
        spec = {n: {0: "batch"} for n, t in zip(names, tensors) if t.dim() > 0}
    if dynamic_shapes is not None:
        unknown = set(dynamic_shapes) - set(names)
        if unknown:
            raise ConfigError(
                f"dynamic_shapes names unknown inputs {sorted(unknown)}; inputs: {names}"
            )
        for name, axes in dynamic_shapes.items():
            spec[name] = dict(axes)
    if not spec:
        return None
    dims: dict[str, torch.export.Dim] = {}
    out = []
    for name, t in zip(names, tensors):
        axes: dict[int, Any] = {}
        for axis, dim in spec.get(name, {}).items():
            if not -t.dim() <= axis < t.dim():
                raise ConfigError(f"input {name!r} has {t.dim()} dims; no axis {axis}")
            if isinstance(dim, str):
                if dim == "N":  # sympy's N: Dim("N") + 1 raises TypeError
                    raise ConfigError("do not name a dynamic dimension 'N' (clashes with sympy.N)")
                if t.shape[axis] < 2:
                    raise ConfigError(
                        f"input {name!r} axis {axis} is dynamic but has size {t.shape[axis]} in "
                        "the example: torch.export specialises sizes 0 and 1; use an example "
                        "of size >= 2"
                    )
                dim = dims.setdefault(dim, torch.export.Dim(dim, min=1))
            axes[axis % t.dim()] = dim
        out.append(axes)
    return (tuple(out),)


def export_onnx(
    model: torch.nn.Module,
    example_inputs: Inputs,
    path: str | os.PathLike,
    *,
    dynamic: bool = True,
    dynamic_shapes: Mapping[str, Mapping[int, Any]] | None = None,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    opset: int = DEFAULT_OPSET,
    overwrite: bool = False,
    aggregation: str = "dense",
    max_segment: int | None = None,
) -> Path:
    """Export ``model`` (in eval mode) to an ONNX file with the dynamo exporter.

    Graph layers of :mod:`graphrec.nn` are traced in the export-safe ``aggregation`` mode
    (:func:`graphrec.nn.segment.aggregation_mode`): ``"dense"`` (one-hot incidence matmul,
    small graphs) or ``"csr"`` (host-sorted segments, large graphs); ``"scatter"`` keeps the
    training path's scatter operators, which onnxruntime runs but MNN does not.

    Args:
        model: a ``torch.nn.Module``; its ``forward`` takes either one ``dict[str, Tensor]``
            (pass such a dict as ``example_inputs``) or tensors positionally.
        example_inputs: example input: a dict, a tensor or a sequence of tensors.
        path: the ``.onnx`` file to write.
        dynamic: make dimension 0 (the batch) of every input dynamic, as one shared dimension
            named ``batch``; the example's batch must then be at least 2.
        dynamic_shapes: per input name, ``{axis: dimension name}`` (or a ``torch.export.Dim``);
            these replace the ``dynamic`` default for the inputs they name. Equal names are one
            dimension. Never use the name ``"N"``.
        input_names: names of positional inputs (dict inputs are named by their keys).
        output_names: ONNX output names; default ``output_0, ...``.
        opset: the ONNX opset (20 is the tested one).
        overwrite: replace an existing ``path``; by default an existing file is an error.
        aggregation: the aggregation mode of graph layers in the exported graph.
        max_segment: in ``"csr"`` mode, the longest segment (in-degree) the exported graph
            handles (default :data:`graphrec.nn.segment.MAX_SEGMENT`); see
            :func:`graphrec.nn.segment.aggregation_mode`.

    Returns:
        ``path``.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        ExportError: the exporter or the ONNX checker failed (its message is included).
    """
    import onnx  # optional dependency: the ``export`` extra

    from graphrec.nn.segment import AGGREGATION_MODES, MAX_SEGMENT, aggregation_mode

    if aggregation not in AGGREGATION_MODES:
        raise ConfigError(f"aggregation must be one of {AGGREGATION_MODES}; got {aggregation!r}")
    max_segment = MAX_SEGMENT if max_segment is None else max_segment
    mode = {"mode": aggregation, "max_segment": max_segment}
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    names, tensors, takes_dict = flatten_inputs(example_inputs, input_names)
    wrapper = FlatInputs(model, names, takes_dict)
    was_training = model.training
    wrapper.eval()
    try:
        with torch.no_grad(), aggregation_mode(aggregation, max_segment=max_segment):
            outputs = wrapper(*tensors)
        n_out = len(outputs) if isinstance(outputs, (tuple, list)) else 1
        out_names = [f"output_{i}" for i in range(n_out)] if output_names is None else output_names
        if len(out_names) != n_out:
            raise ConfigError(f"{len(out_names)} output_names for {n_out} outputs")
        shapes = _dynamic_shapes(names, tensors, dynamic, dynamic_shapes)
        try:
            with aggregation_mode(aggregation, max_segment=max_segment):
                program = torch.onnx.export(
                    wrapper,
                    tuple(tensors),
                    dynamo=True,
                    opset_version=opset,
                    dynamic_shapes=shapes,
                    input_names=names,
                    output_names=list(out_names),
                    optimize=True,
                    verbose=False,
                )
        except Exception as exc:  # the exporter raises many types; keep its message
            raise ExportError(f"torch.onnx.export (dynamo) failed: {exc}") from exc
    finally:
        model.train(was_training)
    proto = program.model_proto
    meta = {
        "inputs": names,
        "outputs": list(out_names),
        "takes_dict": takes_dict,
        "example_shapes": {n: list(t.shape) for n, t in zip(names, tensors)},
        "opset": opset,
        "model": type(model).__name__,
        "aggregation": mode,
    }
    for i in reversed(range(len(proto.metadata_props))):
        if proto.metadata_props[i].key == _META_KEY:
            del proto.metadata_props[i]
    proto.metadata_props.add(key=_META_KEY, value=json.dumps(meta))
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:
        raise ExportError(f"the exported graph fails onnx.checker: {exc}") from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=path.parent)
    os.close(fd)
    try:
        onnx.save(proto, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_metadata(path_or_model: str | os.PathLike | Any) -> dict[str, Any]:
    """The metadata :func:`export_onnx` stored in an ONNX file (empty dict if none)."""
    import onnx

    proto = (
        onnx.load(str(path_or_model), load_external_data=False)
        if isinstance(path_or_model, (str, os.PathLike))
        else path_or_model
    )
    for prop in proto.metadata_props:
        if prop.key == _META_KEY:
            return json.loads(prop.value)
    return {}
