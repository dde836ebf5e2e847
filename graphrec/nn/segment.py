"""Segment reductions (sum, max, softmax) with an export-safe aggregation mode.

A message-passing layer reduces per-edge values into per-node segments. Training uses scatter
operations (PyG's ``scatter`` / ``softmax``); exported to ONNX they become ScatterElements /
ScatterND, which MNN 3.6 runs wrongly (reductions ignored; the export tests check it). The
same layer therefore reduces through the functions below, whose implementation depends on the
**aggregation mode** chosen at export time with :func:`aggregation_mode`:

``"scatter"`` (default, training)
    PyG's scatter reductions, as in any PyG layer.
``"dense"`` (small graphs)
    An ``[N, E]`` one-hot incidence matrix built in the graph (Equal + Cast):
    sums are ``incidence @ values`` (MatMul), maxima a masked ReduceMax. Exact;
    memory ``O(N E)``.
``"csr"`` (large graphs)
    The host passes the CSR layout of each grouping (:class:`Segments`: the stable sort
    permutation and the segment pointers). Sums are differences of a cumulative sum at the
    segment bounds, **compensated** for float32 cancellation: the rounding error of every
    running-sum step is recovered exactly (TwoSum) and summed in a second cumulative sum, so
    the error no longer grows with the magnitude of the running total. Maxima use a segmented
    doubling scan, exact, unrolled for segments of at most ``max_segment`` items
    (``ceil(log2(max_segment))`` elementwise max steps; :func:`segment_max` returns NaN for a
    longer segment instead of a wrong value). Memory ``O(E)``. Exact in onnxruntime; MNN
    3.6.1 converts CSR GRAT graphs non-deterministically (wrong in about half of the
    conversions), so :func:`graphrec.export.preflight_mnn` refuses this mode.

Every mode uses only Gather, MatMul, CumSum, Where, Equal and elementwise operators, which
onnxruntime and MNN run correctly. :func:`segment_softmax` subtracts the exact per-segment
maximum in every mode, so it is stable for any logits.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import NamedTuple

import torch
from torch import Tensor
from torch_geometric.utils import scatter

from graphrec.errors import ConfigError

__all__ = [
    "AGGREGATION_MODES",
    "EdgeSegments",
    "Segments",
    "aggregation_mode",
    "get_aggregation_mode",
    "segment_max",
    "segment_softmax",
    "segment_sum",
]

#: The aggregation modes, see the module docstring.
AGGREGATION_MODES = ("scatter", "dense", "csr")

#: Default longest segment (e.g. in-degree) a ``"csr"`` segment max handles.
MAX_SEGMENT = 1 << 20

_MODE: ContextVar[tuple[str, int]] = ContextVar(
    "graphrec_aggregation_mode", default=("scatter", MAX_SEGMENT)
)


def get_aggregation_mode() -> str:
    """The current aggregation mode (``"scatter"`` unless inside :func:`aggregation_mode`)."""
    return _MODE.get()[0]


@contextlib.contextmanager
def aggregation_mode(mode: str, *, max_segment: int = MAX_SEGMENT) -> Iterator[None]:
    """Use ``mode`` (``"scatter"``, ``"dense"`` or ``"csr"``) for every segment reduction run
    (or traced for export) inside the ``with`` block.

    Args:
        mode: the aggregation mode.
        max_segment: the longest segment a ``"csr"`` segment max (softmax) must handle; the
            exported graph has ``ceil(log2(max_segment))`` scan steps and returns NaN for a
            graph with a longer segment.
    """
    if mode not in AGGREGATION_MODES:
        raise ConfigError(f"aggregation mode must be one of {AGGREGATION_MODES}; got {mode!r}")
    if max_segment < 1:
        raise ConfigError(f"max_segment must be >= 1; got {max_segment}")
    token = _MODE.set((mode, max_segment))
    try:
        yield
    finally:
        _MODE.reset(token)


class Segments(NamedTuple):
    """CSR layout of a grouping of ``E`` items into ``N`` segments (computed on the host).

    Attributes:
        perm: ``[E]`` int64, the items ordered by segment (a stable sort of the index).
        ptr: ``[N + 1]`` int64, segment ``k`` is ``perm[ptr[k]:ptr[k + 1]]``.
    """

    perm: Tensor
    ptr: Tensor

    @classmethod
    def from_index(cls, index: Tensor, num_segments: int) -> Segments:
        """The layout of ``index`` (``[E]``, values in ``[0, num_segments)``)."""
        if index.dim() != 1:
            raise ConfigError(f"index must be 1-D; got shape {tuple(index.shape)}")
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= num_segments):
            raise ConfigError(f"index values must lie in [0, {num_segments})")
        perm = torch.sort(index, stable=True).indices
        counts = torch.bincount(index, minlength=num_segments)
        ptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
        return cls(perm, ptr)


class EdgeSegments(NamedTuple):
    """The :class:`Segments` of an edge list grouped by its first and by its second row."""

    row: Segments
    col: Segments

    @classmethod
    def from_edge_index(cls, edge_index: Tensor, num_nodes: int) -> EdgeSegments:
        """Both layouts of ``edge_index`` (``[2, E]``)."""
        return cls(
            Segments.from_index(edge_index[0], num_nodes),
            Segments.from_index(edge_index[1], num_nodes),
        )


def _as_2d(src: Tensor) -> tuple[Tensor, bool]:
    return (src.unsqueeze(-1), True) if src.dim() == 1 else (src.flatten(1), False)


def _incidence(index: Tensor, num_segments: int, dtype: torch.dtype) -> Tensor:
    """``[N, E]`` with a 1 where item ``e`` belongs to segment ``k``."""
    nodes = torch.arange(num_segments, device=index.device, dtype=index.dtype)
    return (nodes.unsqueeze(1) == index.unsqueeze(0)).to(dtype)


def _check_segments(segments: Segments | None, what: str) -> Segments:
    if segments is None:
        raise ConfigError(
            f"{what} in 'csr' aggregation mode needs the host-computed Segments "
            "(graphrec.nn.segment.Segments.from_index / EdgeSegments.from_edge_index)"
        )
    return segments


def _exclusive_cumsum(x: Tensor) -> Tensor:
    """``[E + 1, F]``: 0 followed by the running sums of ``x``."""
    return torch.cat([x.new_zeros(1, x.shape[1]), torch.cumsum(x, dim=0)], dim=0)


def _csr_sum(x: Tensor, ptr: Tensor) -> Tensor:
    """Sums of the sorted rows ``x[ptr[k]:ptr[k+1]]``, cumsum differences with compensation.

    With ``c`` the running sums, ``x_e = (c_e - c_{e-1}) + d_e`` where ``d_e`` is the rounding
    error of step ``e``; TwoSum gives ``d_e`` exactly, so the segment sum is
    ``(c_end - c_start) + (D_end - D_start)`` with ``D`` the running sums of ``d``, whose
    terms are ``~eps |c|`` instead of ``|c|``.
    """
    c = _exclusive_cumsum(x)
    prev, cur = c[:-1], c[1:]
    s = prev + x
    b = s - prev
    err = (prev - (s - b)) + (x - b)  # TwoSum: prev + x = s + err exactly
    d = (s - cur) + err  # the runtime's cumsum may round differently from s
    dc = _exclusive_cumsum(d)
    start, end = ptr[:-1], ptr[1:]
    return (c[end] - c[start]) + (dc[end] - dc[start])


def _csr_max(v: Tensor, seg: Tensor, ptr: Tensor, strict: bool = True) -> Tensor:
    """Per-segment maxima of the sorted rows ``v`` (``seg`` = their segment ids) by a
    segmented inclusive max-scan (Hillis-Steele doubling); -inf for empty segments.

    A segment longer than the current ``max_segment`` gets the maximum of its last
    ``max_segment`` items; with ``strict`` the whole result is NaN instead."""
    max_segment = _MODE.get()[1]
    pos = torch.arange(v.shape[0], device=v.device)
    for step in range((max_segment - 1).bit_length()):
        j = pos - (1 << step)
        jc = j.clamp(min=0)
        same = ((j >= 0) & (seg[jc] == seg)).unsqueeze(-1)
        v = torch.where(same, torch.maximum(v, v[jc]), v)
    last = (ptr[1:] - 1).clamp(min=0)
    lengths = ptr[1:] - ptr[:-1]
    out = torch.where(
        (lengths == 0).unsqueeze(-1), torch.full_like(v[last], float("-inf")), v[last]
    )
    if not strict:
        return out
    too_long = lengths.max() > max_segment
    return torch.where(too_long, torch.full_like(out, float("nan")), out)


def segment_sum(
    src: Tensor, index: Tensor, num_segments: int, segments: Segments | None = None
) -> Tensor:
    r"""``out[k] = sum_{e: index[e] = k} src[e]`` in the current aggregation mode.

    Args:
        src: ``[E]`` or ``[E, *]`` values.
        index: ``[E]`` segment of each value.
        num_segments: ``N``.
        segments: the CSR layout of ``index`` (needed in ``"csr"`` mode only).

    Returns:
        ``[N]`` or ``[N, *]``; empty segments are 0.
    """
    mode = get_aggregation_mode()
    if mode == "scatter":
        return scatter(src, index, dim=0, dim_size=num_segments, reduce="sum")
    x, flat = _as_2d(src)
    if mode == "dense":
        out = _incidence(index, num_segments, x.dtype) @ x
    else:
        segments = _check_segments(segments, "segment_sum")
        out = _csr_sum(x[segments.perm], segments.ptr)
    return out.squeeze(-1) if flat else out.view(num_segments, *src.shape[1:])


def segment_max(
    src: Tensor,
    index: Tensor,
    num_segments: int,
    segments: Segments | None = None,
    *,
    strict: bool = True,
) -> Tensor:
    r"""``out[k] = max_{e: index[e] = k} src[e]`` in the current aggregation mode.

    Empty segments are 0 in ``"scatter"`` mode (PyG's convention) and -inf otherwise; a
    softmax only reads the segments of its items. In ``"csr"`` mode a segment longer than
    ``max_segment`` (:func:`aggregation_mode`) makes the result NaN, or with
    ``strict=False`` gets the maximum of its last ``max_segment`` items.
    """
    mode = get_aggregation_mode()
    if mode == "scatter":
        return scatter(src, index, dim=0, dim_size=num_segments, reduce="max")
    x, flat = _as_2d(src)
    if mode == "dense":
        mask = _incidence(index, num_segments, torch.bool).unsqueeze(-1)  # [N, E, 1]
        neg = torch.full_like(x, float("-inf")).unsqueeze(0)
        out = torch.where(mask, x.unsqueeze(0), neg).amax(dim=1)
    else:
        segments = _check_segments(segments, "segment_max")
        out = _csr_max(x[segments.perm], index[segments.perm], segments.ptr, strict)
    return out.squeeze(-1) if flat else out.view(num_segments, *src.shape[1:])


def segment_softmax(
    src: Tensor, index: Tensor, num_segments: int, segments: Segments | None = None
) -> Tensor:
    r"""Softmax of ``src`` within each segment of ``index``:

    .. math::
        \alpha_e = \frac{\exp(s_e - m_{k})}{\sum_{e': \mathrm{index}[e'] = k}
        \exp(s_{e'} - m_{k}) + 10^{-16}}, \qquad k = \mathrm{index}[e],\;
        m_k = \max_{e': \mathrm{index}[e'] = k} s_{e'}

    (the formula of :func:`torch_geometric.utils.softmax`, which ``"scatter"`` mode calls).
    The result does not depend on the shift :math:`m_k`; in ``"csr"`` mode a segment longer
    than ``max_segment`` is shifted by the maximum of its last ``max_segment`` logits, which
    keeps the denominator >= 1 and is exact unless a logit exceeds that maximum by more than
    ~88 (float32 ``exp`` overflow).

    Args:
        src: ``[E]`` or ``[E, H]`` logits.
        index: ``[E]`` segment of each logit.
        num_segments: ``N``.
        segments: the CSR layout of ``index`` (needed in ``"csr"`` mode only).
    """
    if get_aggregation_mode() == "scatter":
        from torch_geometric.utils import softmax

        return softmax(src, index, num_nodes=num_segments)
    shift = segment_max(src.detach(), index, num_segments, segments, strict=False)
    shifted = (src - shift[index]).exp()
    total = segment_sum(shifted, index, num_segments, segments) + 1e-16
    return shifted / total[index]
