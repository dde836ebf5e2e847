"""Every graph layer of graphrec.nn gives the same outputs in the scatter, dense and csr
aggregation modes, and exports to ONNX (onnxruntime parity) and, in the dense mode, to MNN.

Tolerance: float32, ``|diff| <= 1e-5 + 1e-5 |ref|`` between modes (only the summation order
differs) and 1e-5 absolute for the exported files (``graphrec.export.PARITY_ATOL``).

MNN: only the ``"dense"`` mode is converted. ``"csr"`` graphs are refused by
``graphrec.export.preflight_mnn`` (MNN 3.6.1 converts CSR graphs non-deterministically, wrong in
about half of the conversions) and ``"scatter"`` graphs hold ScatterElements, which MNN runs
wrongly (docs/mobile-export-findings.md).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor

from graphrec.nn import GRATConv, LGConv, RowAggregation, TreeAggregation, aggregation_mode
from graphrec.nn.segment import EdgeSegments, Segments

torch.set_num_threads(1)

MODES = ("scatter", "dense", "csr")
F_IN = 4


class _Grat(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = GRATConv(F_IN, 3)

    def forward(self, x: Tensor, edge_index: Tensor, *csr: Tensor) -> Tensor:
        segments = EdgeSegments(Segments(*csr[:2]), Segments(*csr[2:])) if csr else None
        return self.conv(x, edge_index, segments=segments)


class _Tree(torch.nn.Module):
    def __init__(self, mode: str) -> None:
        super().__init__()
        self.layer = TreeAggregation(F_IN, mode)

    def forward(
        self, x_child: Tensor, x_parent: Tensor, edge_index: Tensor, *csr: Tensor
    ) -> Tensor:
        return self.layer(x_child, x_parent, edge_index, segments=Segments(*csr) if csr else None)


class _LG(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = LGConv()  # normalize=True: the degree is a segment sum too

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor, *csr: Tensor) -> Tensor:
        return self.conv(x, edge_index, edge_weight, segments=Segments(*csr) if csr else None)


class _Rows(torch.nn.Module):
    """One FedAvg-style step: ``table + sum_i w_i Delta_ij``, plus the weight sums and counts."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = RowAggregation()

    def forward(
        self, table: Tensor, deltas: Tensor, edge_index: Tensor, weight: Tensor, *csr: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        segments = Segments(*csr) if csr else None
        agg = self.layer(deltas, edge_index, weight, table.shape[0], segments)
        return table + agg.total, agg.weight, agg.count


def _edges(g: torch.Generator, n_src: int, n_dst: int, m: int) -> Tensor:
    # targets drawn from the first 80%: the last nodes have no incoming edge (empty segments)
    dst = torch.randint(0, max(1, (4 * n_dst) // 5), (m,), generator=g)
    return torch.stack([torch.randint(0, n_src, (m,), generator=g), dst])


def _grat_inputs(g: torch.Generator, n: int, m: int) -> dict[str, Tensor]:
    return {"x": torch.randn(n, F_IN, generator=g), "edge_index": _edges(g, n, n, m)}


def _tree_inputs(g: torch.Generator, n: int, m: int) -> dict[str, Tensor]:
    n_parent = max(2, n // 3)
    return {
        "x_child": torch.randn(n, F_IN, generator=g),
        "x_parent": torch.randn(n_parent, F_IN, generator=g),
        "edge_index": torch.stack(
            [torch.arange(n), torch.randint(0, max(1, (4 * n_parent) // 5), (n,), generator=g)]
        ),
    }


def _lg_inputs(g: torch.Generator, n: int, m: int) -> dict[str, Tensor]:
    return {
        "x": torch.randn(n, F_IN, generator=g),
        "edge_index": _edges(g, n, n, m),
        "edge_weight": torch.rand(m, generator=g) + 0.5,
    }


def _row_inputs(g: torch.Generator, n: int, m: int) -> dict[str, Tensor]:
    devices = max(2, n // 4)
    return {
        "table": torch.randn(n, F_IN, generator=g),
        "deltas": torch.randn(m, F_IN, generator=g),
        "edge_index": _edges(g, devices, n, m),
        "weight": torch.rand(devices, generator=g),
    }


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[], torch.nn.Module]
    inputs: Callable[[torch.Generator, int, int], dict[str, Tensor]]
    outputs: tuple[str, ...] = ("out",)
    #: the input whose rows are the segments (``ptr`` has one more entry)
    nodes: str = "x"
    two_segments: bool = False  # GRATConv groups by both edge rows


CASES = [
    Case("grat", _Grat, _grat_inputs, two_segments=True),
    *[
        Case(f"tree-{m}", lambda m=m: _Tree(m), _tree_inputs, nodes="x_parent")
        for m in ("gcn", "ngcf", "lightgcn", "cp")
    ],
    Case("lgconv", _LG, _lg_inputs),
    Case("rows", _Rows, _row_inputs, ("new_table", "weight_sum", "count"), nodes="table"),
]
#: exported: every layer; of the tree aggregators the two whose operators cover the others'
EXPORT_CASES = [c for c in CASES if c.name not in ("tree-gcn", "tree-lightgcn")]
SIZES = ((12, 40), (57, 300))  # (nodes, edges) for the parity checks
EXAMPLE = (20, 64)  # the export example


def _with_csr(case: Case, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
    """The inputs plus the host-computed CSR layouts of the aggregation index."""
    n = inputs[case.nodes].shape[0]
    edge_index = inputs["edge_index"]
    if case.two_segments:
        (perm_row, ptr_row), (perm_col, ptr_col) = EdgeSegments.from_edge_index(edge_index, n)
        return {
            **inputs,
            "perm_row": perm_row,
            "ptr_row": ptr_row,
            "perm_col": perm_col,
            "ptr_col": ptr_col,
        }
    perm, ptr = Segments.from_index(edge_index[1], n)
    return {**inputs, "perm": perm, "ptr": ptr}


def _model(case: Case) -> torch.nn.Module:
    torch.manual_seed(0)
    return case.make().eval()


def _run(model: torch.nn.Module, inputs: dict[str, Tensor]) -> list[Tensor]:
    with torch.no_grad():
        out = model(*inputs.values())
    return list(out) if isinstance(out, tuple) else [out]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_modes_agree(case):
    model = _model(case)
    for seed, (n, m) in enumerate(SIZES):
        inputs = _with_csr(case, case.inputs(torch.Generator().manual_seed(seed), n, m))
        with aggregation_mode("scatter"):
            ref = _run(model, inputs)  # the CSR inputs are ignored outside "csr" mode
        assert max(float(r.abs().max()) for r in ref) > 0.1  # not a vacuous check
        for mode in ("dense", "csr"):
            with aggregation_mode(mode):
                got = _run(model, inputs)
            for r, o in zip(ref, got, strict=True):
                torch.testing.assert_close(o, r, rtol=1e-5, atol=1e-5, msg=f"{case.name} {mode}")


def test_lgconv_and_tree_degree_equal_pyg():
    # graphrec's LGConv normalises through segment_sum: in "scatter" mode bit for bit PyG's
    from torch_geometric.nn.conv import LGConv as PyGLGConv

    inputs = _lg_inputs(torch.Generator().manual_seed(3), 30, 120)
    args = (inputs["x"], inputs["edge_index"], inputs["edge_weight"])
    assert torch.equal(LGConv()(*args), PyGLGConv()(*args))
    tree = _tree_inputs(torch.Generator().manual_seed(4), 30, 0)
    layer = TreeAggregation(F_IN, "gcn")
    deg = TreeAggregation.degree(tree["edge_index"], tree["x_parent"].shape[0])
    assert torch.equal(layer(*tree.values()), layer(*tree.values(), deg=deg))


# ----------------------------------------------------------------------------------- export


def _dynamic_shapes(case: Case, names: list[str]) -> dict:
    """Every node and edge count dynamic."""
    from torch.export import Dim

    nodes, edges = Dim("nodes", min=2), Dim("edges", min=2)
    other = Dim("other", min=2)  # children (tree) or devices (rows)
    shapes: dict[str, dict[int, object]] = {}
    for name in names:
        if name == case.nodes:
            shapes[name] = {0: nodes}
        elif name == "edge_index":
            shapes[name] = {1: edges}
        elif name in ("edge_weight", "deltas") or name.startswith("perm"):
            shapes[name] = {0: edges}
        elif name.startswith("ptr"):
            shapes[name] = {0: nodes + 1}
        elif name in ("x_child", "weight"):
            shapes[name] = {0: other}
    if case.name.startswith("tree"):  # one edge per child
        shapes["x_child"] = {0: edges}
    return shapes


needs_export = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("onnx", "onnxruntime", "onnxscript")),
    reason="the export extra is not installed (pip install -e '.[export]')",
)
HAS_MNN = importlib.util.find_spec("MNN") is not None  # looked up, never imported here


@needs_export
@pytest.mark.parametrize("mode", ["dense", "csr"])
@pytest.mark.parametrize("case", EXPORT_CASES, ids=lambda c: c.name)
def test_exports_with_parity(case, mode, tmp_path):
    from graphrec.export import (
        ExportError,
        check_parity,
        export_mnn,
        export_onnx,
        find_unsafe_ops,
    )

    model = _model(case)

    def inputs(seed: int, n: int, m: int) -> dict[str, Tensor]:
        raw = case.inputs(torch.Generator().manual_seed(seed), n, m)
        return _with_csr(case, raw) if mode == "csr" else raw

    example = inputs(0, *EXAMPLE)
    names = list(example)
    onnx_path = export_onnx(
        model,
        tuple(example.values()),
        tmp_path / f"{case.name}.onnx",
        input_names=names,
        output_names=list(case.outputs),
        dynamic=False,
        dynamic_shapes=_dynamic_shapes(case, names),
        aggregation=mode,
    )
    assert find_unsafe_ops(onnx_path) == []  # no scatter in the exported graph
    checks = [tuple(inputs(seed, n, m).values()) for seed, (n, m) in enumerate(SIZES, 1)]
    exported = {"onnx": onnx_path}
    if mode == "csr":
        with pytest.raises(ExportError, match="aggregation='dense'"):
            export_mnn(onnx_path, tmp_path / f"{case.name}.mnn")
    elif HAS_MNN:
        exported["mnn"] = export_mnn(onnx_path, tmp_path / f"{case.name}.mnn")
    report = check_parity(model, exported, checks)
    print(report)
    report.raise_for_failures()
    assert len(report.results) == len(exported) * len(SIZES)
    assert min(r.max_abs_reference for r in report.results) > 0.1
