"""Pre-flight for MNN: reject ONNX operators that MNN converts without error but runs wrongly.

MNN 3.6's ONNX converter accepts ScatterElements/ScatterND and gets them wrong at run time
without a warning: ``reduction`` is dropped when ``axis`` comes first, ``max``/``min`` become a
plain overwrite, ScatterND ignores ``reduction``, and even ``ScatterElements(reduction='add')``
from the dynamo exporter gave results off by up to 7e+28 in one file and exact in another
(``docs/mobile-export-findings.md``). Other nodes make the converter fail (it then exits 0
without writing a model). So :func:`preflight_mnn` rejects them before conversion, naming the
operator, the node and, where the exporter recorded it, the torch source line.

A few unsupported operators have an exact MNN-safe equivalent; :func:`rewrite_for_mnn`
replaces them (``IsNaN(x)`` -> ``Not(LessOrEqual(x, +inf))``, used by every CTR model with a
dense feature to map missing values to 0; ``MatMul(A, v)`` with a 1-D ``v`` and a 3-D or
larger ``A``, which MNN 3.6.1 squeezes on the wrong axis ->
``Squeeze(MatMul(A, Unsqueeze(v, -1)), -1)``)
and :func:`graphrec.export.export_mnn` applies it to the copy it converts.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from graphrec.export.onnx import ExportError

__all__ = [
    "REWRITES",
    "UNSAFE_OPS",
    "Finding",
    "UnsafeOperatorError",
    "find_unsafe_ops",
    "preflight_mnn",
    "rewrite_for_mnn",
]

_SCATTER_FIX = (
    "use an aggregation without scatter (a dense one-hot incidence matmul, or CSR + cumsum "
    "segment sums) instead of scatter_add / scatter_reduce / index_add / index_put"
)

#: ONNX op type -> why MNN cannot be trusted with it (checked in every (sub)graph).
UNSAFE_OPS: dict[str, str] = {
    "ScatterElements": (
        "MNN silently mis-runs ScatterElements: max/min reductions become a plain overwrite, "
        "the reduction is dropped when 'axis' precedes it, and reduction='add' is unreliable "
        "(wrong by up to 7e+28 in some files)"
    ),
    "Scatter": "deprecated alias of ScatterElements, with the same silent errors in MNN",
    "ScatterND": "MNN lowers ScatterND to a masked overwrite and ignores its reduction",
}

#: ONNX op type -> the exact MNN-safe replacement :func:`rewrite_for_mnn` applies.
REWRITES: dict[str, str] = {
    "IsNaN": "not supported by the MNN converter; rewritten exactly as Not(LessOrEqual(x, +inf))",
    "MatMul": (
        "a 1-D right operand: MNN squeezes the wrong axis of a 3-D product ('Compute Shape "
        "Error'); rewritten exactly as Squeeze(MatMul(A, Unsqueeze(v, -1)), -1)"
    ),
}


@dataclass(frozen=True)
class Finding:
    """One problematic node: where it is, why, and (if recorded) the torch code behind it."""

    op_type: str
    node: str
    graph: str
    reason: str
    source: str = ""
    attributes: str = ""

    def __str__(self) -> str:
        where = f"node {self.node!r}" + (f" in subgraph {self.graph!r}" if self.graph else "")
        text = f"{self.op_type}{self.attributes} ({where}): {self.reason}"
        if self.source:
            text += f"\n    torch source: {self.source}"
        return text


class UnsafeOperatorError(ExportError, ValueError):
    """The ONNX graph holds operators MNN would run wrongly (or cannot convert)."""

    def __init__(self, findings: list[Finding], path: str = "") -> None:
        self.findings = findings
        ops = sorted({f.op_type for f in findings})
        head = (
            f"refusing to convert {path or 'the model'} to MNN: {len(findings)} unsafe ONNX "
            f"node(s) ({', '.join(ops)})"
        )
        lines = [head, *(f"  - {f}" for f in findings)]
        if any(f.op_type in ("ScatterElements", "Scatter", "ScatterND") for f in findings):
            lines.append(f"  fix: {_SCATTER_FIX}")
        super().__init__("\n".join(lines))


def _load(model_or_path: Any) -> Any:
    import onnx

    if isinstance(model_or_path, (str, os.PathLike)):
        return onnx.load(str(model_or_path))
    return model_or_path


def _graphs(graph: Any, name: str = "") -> Iterator[tuple[str, Any]]:
    """``graph`` and every subgraph (If/Loop/Scan bodies), with a path-like name."""
    import onnx

    yield name, graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _graphs(attr.g, f"{name}/{node.name}.{attr.name}".lstrip("/"))
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for i, g in enumerate(attr.graphs):
                    yield from _graphs(g, f"{name}/{node.name}.{attr.name}[{i}]".lstrip("/"))


def _source(node: Any) -> str:
    """The innermost torch frame the dynamo exporter recorded for ``node`` (or '')."""
    meta = {p.key: p.value for p in node.metadata_props}
    trace = meta.get("pkg.torch.onnx.stack_trace", "")
    if trace:
        lines = [line.strip() for line in trace.strip().splitlines()]
        frames = [i for i, line in enumerate(lines) if line.startswith("File ")]
        if frames:
            i = frames[-1]
            return " ".join(lines[i : i + 2])
    return meta.get("namespace", "").rsplit("/", 1)[-1].strip()


def _attributes(node: Any) -> str:
    import onnx

    parts = []
    for attr in node.attribute:
        value = onnx.helper.get_attribute_value(attr)
        if isinstance(value, bytes):
            value = value.decode(errors="replace")
        if isinstance(value, (int, float, str)):
            parts.append(f"{attr.name}={value}")
    return f"({', '.join(parts)})" if parts else ""


def find_unsafe_ops(model_or_path: Any, *, include_rewritable: bool = True) -> list[Finding]:
    """Every node of an ONNX model (path or ``ModelProto``) that MNN must not get.

    Checks the main graph, every subgraph and every local function. With
    ``include_rewritable``, nodes :func:`rewrite_for_mnn` can replace are listed too.
    """
    model = _load(model_or_path)
    findings = []
    bad = dict(UNSAFE_OPS)
    if include_rewritable:
        bad.update(REWRITES)
    graphs = list(_graphs(model.graph))
    for function in model.functions:
        graphs.append((f"function {function.name}", function))
    for gname, graph in graphs:
        ranks = _ranks(graph)
        for node in graph.node:
            reason = bad.get(node.op_type)
            if node.op_type == "MatMul" and not _matvec_3d(node, ranks):
                reason = None  # only a 1-D right operand of a >= 3-D product needs it
            if reason is None and node.op_type in ("Max", "Min") and len(node.input) == 1:
                reason = f"the MNN converter cannot convert a 1-input {node.op_type}"
            if reason is not None:
                findings.append(
                    Finding(
                        node.op_type, node.name, gname, reason, _source(node), _attributes(node)
                    )
                )
    return findings


def preflight_mnn(model_or_path: Any, *, name: str = "") -> None:
    """Raise :class:`UnsafeOperatorError` if the model holds an operator MNN must not get.

    Operators with an exact rewrite (:data:`REWRITES`) pass: :func:`graphrec.export.export_mnn`
    rewrites them before converting. ``name`` labels the model in the message (default: the
    path, if one is given).

    A graph exported in the ``"csr"`` aggregation mode is refused as a whole
    (:class:`graphrec.export.ExportError`): MNN 3.6.1's converter turns the same CSR GRAT
    graph into a correct model in some runs and a wrong one (max |diff| 0.06 to 1e+35) in
    others, although each of its parts converts correctly on its own; ``"dense"`` is exact.
    """
    from graphrec.export.onnx import read_metadata

    model = _load(model_or_path)
    if not name and isinstance(model_or_path, (str, os.PathLike)):
        name = str(model_or_path)
    mode = read_metadata(model).get("aggregation", {})
    if isinstance(mode, dict) and mode.get("mode") == "csr":
        raise ExportError(
            f"refusing to convert {name or 'the model'} to MNN: it was exported with "
            "aggregation='csr', which MNN 3.6.1 converts non-deterministically (wrong in about "
            "half of the conversions); export with aggregation='dense' for MNN, or use the "
            "ONNX file with onnxruntime"
        )
    findings = find_unsafe_ops(model, include_rewritable=False)
    if findings:
        raise UnsafeOperatorError(findings, name)


def _ranks(graph: Any) -> dict[str, int]:
    """Known ranks of the graph's tensors (initializers, inputs, value_info, outputs)."""
    ranks = {init.name: len(init.dims) for init in getattr(graph, "initializer", [])}
    for info in [*getattr(graph, "input", []), *getattr(graph, "value_info", [])]:
        if info.type.HasField("tensor_type") and info.type.tensor_type.HasField("shape"):
            ranks[info.name] = len(info.type.tensor_type.shape.dim)
    for node in graph.node:  # Constant nodes
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    ranks[node.output[0]] = len(attr.t.dims)
    return ranks


def _matvec_3d(node: Any, ranks: dict[str, int]) -> bool:
    """``MatMul(A, v)`` with a 1-D ``v`` and an ``A`` of rank >= 3 (or unknown rank).

    The 2-D case runs correctly in MNN, and rewriting it made a CSR-mode FastCover graph
    wrong there (MNN 3.6.1), so it is left alone."""
    return ranks.get(node.input[1]) == 1 and ranks.get(node.input[0], 3) >= 3


def _elem_types(graph: Any) -> dict[str, int]:
    types = {}
    for info in [*graph.input, *graph.value_info, *graph.output]:
        if info.type.HasField("tensor_type"):
            types[info.name] = info.type.tensor_type.elem_type
    return types


def rewrite_for_mnn(model_or_path: Any) -> Any:
    """A copy of the model with every :data:`REWRITES` operator replaced by its MNN-safe form.

    ``IsNaN(x)`` becomes ``Not(LessOrEqual(x, +inf))``: exact in IEEE arithmetic (only NaN is
    unordered) and in MNN 3.6. The obvious ``Not(Equal(x, x))`` is *wrong* in MNN, whose
    ``Equal(x, x)`` is true for NaN. Applied to the main graph (the dynamo exporter inlines
    functions); only float32 ``IsNaN`` inputs are rewritten. ``MatMul(A, v)`` with a 1-D
    ``v`` and an ``A`` of rank >= 3 becomes ``Squeeze(MatMul(A, Unsqueeze(v, -1)), -1)``
    (the same product).

    Raises:
        ExportError: an ``IsNaN`` input is not float32.
    """
    import onnx
    from onnx import TensorProto, helper

    model = onnx.ModelProto()
    model.CopyFrom(_load(model_or_path))
    types = _elem_types(model.graph)
    ranks = _ranks(model.graph)
    nodes = []
    for node in model.graph.node:
        if node.op_type == "MatMul" and _matvec_3d(node, ranks):
            (a, v), out = node.input, node.output[0]
            axes, col, prod = (f"{out}__graphrec_{t}" for t in ("axes", "col", "prod"))
            value = helper.make_tensor(axes, TensorProto.INT64, [1], [-1])
            nodes += [
                helper.make_node("Constant", [], [axes], name=f"{node.name}__axes", value=value),
                helper.make_node("Unsqueeze", [v, axes], [col], name=f"{node.name}__unsqueeze"),
                helper.make_node("MatMul", [a, col], [prod], name=node.name),
                helper.make_node("Squeeze", [prod, axes], [out], name=f"{node.name}__squeeze"),
            ]
        elif node.op_type == "IsNaN":
            x, out = node.input[0], node.output[0]
            if types.get(x, TensorProto.FLOAT) != TensorProto.FLOAT:
                raise ExportError(f"IsNaN node {node.name!r}: only float32 inputs are rewritten")
            inf, ordered = f"{out}__graphrec_inf", f"{out}__graphrec_ordered"
            value = helper.make_tensor(inf, TensorProto.FLOAT, [], [float("inf")])
            nodes.append(
                helper.make_node("Constant", [], [inf], name=f"{node.name}__inf", value=value)
            )
            nodes.append(
                helper.make_node("LessOrEqual", [x, inf], [ordered], name=f"{node.name}__le")
            )
            nodes.append(helper.make_node("Not", [ordered], [out], name=f"{node.name}__not"))
        else:
            nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.checker.check_model(model)
    return model
