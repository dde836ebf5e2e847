"""Parity gate: the same inputs through torch, onnxruntime and MNN, max |difference| per run.

A converted model is only trusted after :func:`check_parity` passes in the target runtime
itself, on inputs of *other* sizes than the export example (a dynamic dimension that was
specialised, or a runtime that is only right for one shape, shows up there). onnxruntime runs
at its default optimisation level, the level a deployment gets (its FusedMatMul bug with a 1-D
right operand appears only there).

An input set passes when ``max |diff| <= atol + rtol * max |torch output|`` and, for scoring
models (``top_k`` given), when the runtime ranks like torch: for every query (a row of a 2-D
score matrix, e.g. one user's item scores; the whole output if it is 1-D, e.g. the rows of a
CTR batch or the nodes of a graph) :func:`top_k_overlap` is at least ``min_overlap``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from graphrec.errors import ConfigError
from graphrec.export.onnx import ExportError, FlatInputs, Inputs, flatten_inputs, read_metadata

__all__ = [
    "MIN_TOP_K_OVERLAP",
    "PARITY_ATOL",
    "ParityError",
    "ParityReport",
    "ParityResult",
    "check_parity",
    "run_onnxruntime",
    "top_k_overlap",
]

#: Default absolute tolerance of float32 parity.
PARITY_ATOL = 1e-5
#: Default least share of a query's top k that must be in torch's top k.
MIN_TOP_K_OVERLAP = 0.9


class ParityError(ExportError, AssertionError):
    """An exported model disagrees with torch beyond the tolerance (or failed to run)."""


@dataclass(frozen=True)
class ParityResult:
    """One runtime on one input set.

    ``allowed`` is the largest max |diff| the set may have (``atol + rtol * max |torch|``),
    ``top_k_overlap`` the lowest :func:`top_k_overlap` of its queries (None: not checked) and
    ``error`` why it failed.
    """

    runtime: str
    shapes: dict[str, tuple[int, ...]]
    max_abs_diff: float
    max_abs_reference: float
    ok: bool
    error: str = ""
    allowed: float = float("nan")
    top_k_overlap: float | None = None

    @property
    def batch(self) -> int:
        """Size of dimension 0 of the first input."""
        first = next(iter(self.shapes.values()), ())
        return first[0] if first else 1


@dataclass
class ParityReport:
    """Results of :func:`check_parity`; ``str(report)`` is a table."""

    model: str
    atol: float
    rtol: float = 0.0
    top_k: int | None = None
    min_overlap: float = MIN_TOP_K_OVERLAP
    results: list[ParityResult] = field(default_factory=list)
    example_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.results) and all(r.ok for r in self.results)

    @property
    def runtimes(self) -> list[str]:
        return list(dict.fromkeys(r.runtime for r in self.results))

    def max_abs_diff(self, runtime: str | None = None) -> float:
        """The largest difference over all input sets (of one runtime, or of all)."""
        diffs = [r.max_abs_diff for r in self.results if runtime in (None, r.runtime)]
        return max(diffs) if diffs else float("nan")

    def min_top_k_overlap(self, runtime: str | None = None) -> float | None:
        """The lowest top-k overlap of any query (of one runtime, or of all); None unchecked."""
        values = [
            r.top_k_overlap
            for r in self.results
            if runtime in (None, r.runtime) and r.top_k_overlap is not None
        ]
        return min(values) if values else None

    def failures(self) -> list[ParityResult]:
        return [r for r in self.results if not r.ok]

    def raise_for_failures(self) -> ParityReport:
        """Raise :class:`ParityError` (with the table) unless every result passed."""
        if not self.ok:
            raise ParityError(f"parity failed:\n{self}")
        return self

    def criteria(self) -> str:
        """What an input set must meet, in words."""
        bound = f"{self.atol:g}" + (f" + {self.rtol:g} x max|torch|" if self.rtol else "")
        text = f"max|diff| <= {bound}"
        if self.top_k is not None:
            text += f"; top-{self.top_k} overlap >= {self.min_overlap:g} for every query"
        return text

    def __str__(self) -> str:
        ranked = self.top_k is not None
        lines = [
            f"parity of {self.model} vs torch (float32), per input set: {self.criteria()}",
            f"{'runtime':<12} {'batch':>6} {'max|diff|':>11} {'allowed':>9} {'max|ref|':>10}"
            + (f" {f'top-{self.top_k}':>7}" if ranked else "")
            + "  ok",
        ]
        for r in self.results:
            overlap = f" {_fmt_overlap(r.top_k_overlap):>7}" if ranked else ""
            tail = "yes" if r.ok else f"NO: {r.error}" if r.error else "NO"
            lines.append(
                f"{r.runtime:<12} {r.batch:>6} {r.max_abs_diff:>11.3g} {r.allowed:>9.3g} "
                f"{r.max_abs_reference:>10.3g}{overlap}  {tail}"
            )
        return "\n".join(lines)


def _fmt_overlap(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _outputs(value: Any) -> list[np.ndarray]:
    if isinstance(value, (tuple, list)):
        return [o for v in value for o in _outputs(v)]
    if isinstance(value, torch.Tensor):
        return [value.detach().cpu().numpy()]
    return [np.asarray(value)]


def _compare(ref: list[np.ndarray], got: list[np.ndarray]) -> tuple[float, str]:
    """(max |diff| over all outputs, error text); equal infinities and NaN where torch has NaN
    count as equal, any other NaN as an infinite difference."""
    if len(ref) != len(got):
        return float("inf"), f"{len(got)} outputs, torch has {len(ref)}"
    worst = 0.0
    for i, (r, g) in enumerate(zip(ref, got)):
        g = np.asarray(g)
        if r.shape != g.shape:
            return float("inf"), f"output {i} has shape {g.shape}, torch {r.shape}"
        r64, g64 = r.astype(np.float64), g.astype(np.float64)
        same = (r64 == g64) | (np.isnan(r64) & np.isnan(g64))  # equal infinities, both NaN
        with np.errstate(invalid="ignore"):
            diff = np.where(same, 0.0, np.abs(r64 - g64))
        if diff.size:
            worst = max(worst, float("inf") if np.isnan(diff).any() else float(diff.max()))
    return worst, ""


def _queries(a: np.ndarray) -> np.ndarray:
    """``[queries, candidates]`` float64 view of one output; NaN ranks last."""
    a = np.asarray(a, dtype=np.float64)
    a = a.reshape(1, -1) if a.ndim < 2 or a.shape[-1] == 1 else a.reshape(-1, a.shape[-1])
    return np.where(np.isnan(a), -np.inf, a)


def top_k_overlap(reference: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """Per query, the share of the top ``k`` of ``scores`` that is in the top ``k`` of
    ``reference`` (1.0: the same top-k set).

    A query is a row of a 2-D output ``[queries, candidates]`` (e.g. one user's item scores);
    a 1-D or ``[n, 1]`` output is one query over its ``n`` entries (the rows of a CTR batch,
    the nodes of a graph). ``k`` is capped at the number of candidates. A candidate tied with
    the reference's k-th score counts as in its top k (exact ties have no order).
    """
    ref, got = _queries(reference), _queries(scores)
    if ref.shape != got.shape:
        raise ConfigError(f"scores have shape {got.shape}, reference {ref.shape}")
    k = min(k, ref.shape[1])
    if k < 1:
        return np.ones(ref.shape[0])
    top = np.argpartition(-got, k - 1, axis=1)[:, :k]
    kth = -np.partition(-ref, k - 1, axis=1)[:, k - 1]
    return (np.take_along_axis(ref, top, axis=1) >= kth[:, None]).mean(axis=1)


def _ranking(ref: list[np.ndarray], got: list[np.ndarray], k: int) -> tuple[float, int]:
    """(lowest top-k overlap over the queries of every output, index of that query)."""
    overlaps = np.concatenate([top_k_overlap(r, g, k) for r, g in zip(ref, got)])
    worst = int(np.argmin(overlaps)) if overlaps.size else 0
    return (float(overlaps[worst]) if overlaps.size else 1.0), worst


def run_onnxruntime(session: Any, inputs: Mapping[str, Any]) -> list[np.ndarray]:
    """Run an ``onnxruntime.InferenceSession`` on numpy-convertible inputs by name."""
    feeds = {}
    for meta in session.get_inputs():
        value = inputs[meta.name]
        a = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
        feeds[meta.name] = a
    return session.run(None, feeds)


def _ort_session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _exported(exported: Any) -> dict[str, Path]:
    if isinstance(exported, Mapping):
        out = {str(k): Path(v) for k, v in exported.items()}
    else:
        paths = [exported] if isinstance(exported, (str, os.PathLike)) else list(exported)
        out = {}
        for p in map(Path, paths):
            kind = {".onnx": "onnxruntime", ".mnn": "mnn"}.get(p.suffix.lower())
            if kind is None:
                raise ConfigError(f"cannot tell the runtime of {p} (expected .onnx or .mnn)")
            out[kind] = p
    aliases = {"onnx": "onnxruntime", "ort": "onnxruntime"}
    out = {aliases.get(k, k): v for k, v in out.items()}
    unknown = set(out) - {"onnxruntime", "mnn"}
    if unknown:
        raise ConfigError(f"unknown runtimes {sorted(unknown)}; use 'onnx' and/or 'mnn'")
    return out


def check_parity(
    model: torch.nn.Module,
    exported: Mapping[str, str | os.PathLike] | Sequence[str | os.PathLike] | str | os.PathLike,
    inputs_list: Sequence[Inputs],
    *,
    atol: float = PARITY_ATOL,
    rtol: float = 0.0,
    top_k: int | None = None,
    min_overlap: float = MIN_TOP_K_OVERLAP,
    onnx_path: str | os.PathLike | None = None,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    require_other_sizes: bool = True,
    threads: int = 1,
) -> ParityReport:
    """Compare ``model`` (torch, eval mode, no grad) with its exported files on every input set.

    Args:
        model: the torch model that was exported.
        exported: ``{"onnx": path, "mnn": path}`` (either key optional) or paths ending in
            ``.onnx`` / ``.mnn``.
        inputs_list: input sets, each in the form given to :func:`export_onnx` (a dict, a tensor
            or a sequence of tensors).
        atol: tolerance on the max absolute difference (float32 parity: 1e-5).
        rtol: added tolerance relative to the input set's largest output magnitude, for
            outputs so large that 1e-5 is below float32 resolution (the spacing of float32
            numbers in [256, 512) is 3e-5).
        top_k: for scoring models, also require every query's top ``top_k`` to share at least
            ``min_overlap`` with torch's (see :func:`top_k_overlap`); None: values only.
        min_overlap: the least top-k overlap a query may have.
        onnx_path: the ONNX file whose recorded names and example shapes to use when
            ``exported`` has only an MNN file.
        input_names, output_names: the exported names, if not recorded in an ONNX file.
        require_other_sizes: raise ConfigError unless at least one input set differs in shape
            from the export example (as recorded in the ONNX file).
        threads: CPU threads for onnxruntime and MNN.

    Returns:
        A :class:`ParityReport` (call :meth:`ParityReport.raise_for_failures` to assert). A
        runtime that raises on an input set is recorded as a failure with its error message.
    """
    from graphrec.export.mnn import MNNModel

    paths = _exported(exported)
    if not paths:
        raise ConfigError("nothing to compare: give an ONNX and/or an MNN file")
    if not inputs_list:
        raise ConfigError("inputs_list is empty")
    meta_source = paths.get("onnxruntime", onnx_path)
    meta = read_metadata(meta_source) if meta_source is not None else {}
    example = {k: tuple(v) for k, v in meta.get("example_shapes", {}).items()}
    names_out = list(output_names) if output_names is not None else meta.get("outputs")
    names_in = list(input_names) if input_names is not None else meta.get("inputs")

    flat = []
    for inputs in inputs_list:
        names, tensors, takes_dict = flatten_inputs(
            inputs, None if isinstance(inputs, Mapping) else names_in
        )
        flat.append((names, tensors, takes_dict))
    if require_other_sizes:
        if not example:
            raise ConfigError(
                "cannot tell the export example's shapes (no graphrec metadata); pass "
                "require_other_sizes=False or an ONNX file from export_onnx"
            )
        if all(
            {n: tuple(t.shape) for n, t in zip(names, tensors)} == example
            for names, tensors, _ in flat
        ):
            raise ConfigError(
                "every input set has the export example's shapes: check parity on other sizes"
            )

    runners: dict[str, Any] = {}
    if "onnxruntime" in paths:
        session = _ort_session(paths["onnxruntime"], threads)
        runners["onnxruntime"] = lambda feeds, s=session: run_onnxruntime(s, feeds)
    if "mnn" in paths:
        if names_out is None:
            raise ConfigError("MNN needs output names: pass output_names or an ONNX file")
        first_names = flat[0][0]
        mnn = MNNModel(paths["mnn"], names_in or first_names, names_out, threads=threads)
        runners["mnn"] = mnn

    if top_k is not None and top_k < 1:
        raise ConfigError(f"top_k must be >= 1, got {top_k}")
    report = ParityReport(
        type(model).__name__, atol, rtol, top_k, min_overlap, example_shapes=example
    )
    was_training = model.training
    model.eval()
    try:
        for names, tensors, takes_dict in flat:
            with torch.no_grad():
                ref = _outputs(FlatInputs(model, names, takes_dict)(*tensors))
            scale = max((float(np.nanmax(np.abs(r))) for r in ref if r.size), default=0.0)
            allowed = atol + (rtol * scale if rtol else 0.0)  # 0 * inf is NaN
            shapes = {n: tuple(t.shape) for n, t in zip(names, tensors)}
            feeds = dict(zip(names, tensors))
            for runtime, run in runners.items():
                try:
                    got = run(feeds)
                except Exception as exc:  # report the runtime's error, keep checking
                    failed = ParityResult(
                        runtime, shapes, float("inf"), scale, False, repr(exc), allowed
                    )
                    report.results.append(failed)
                    continue
                diff, error = _compare(ref, got)
                problems = [error] if error else []
                if not error and not diff <= allowed:
                    problems.append("max|diff| above allowed")
                overlap = None
                if top_k is not None and not error:
                    overlap, query = _ranking(ref, got, top_k)
                    if overlap < min_overlap:
                        problems.append(
                            f"top-{top_k} overlap {overlap:.2f} < {min_overlap:g} (query {query})"
                        )
                result = ParityResult(runtime, shapes, diff, scale, not problems,
                                      "; ".join(problems), allowed, overlap)  # fmt: skip
                report.results.append(result)
    finally:
        model.train(was_training)
    return report
