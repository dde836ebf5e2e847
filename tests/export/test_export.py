"""Mobile export: ONNX (dynamo) and MNN, the MNN pre-flight, the converter guard, parity."""

from __future__ import annotations

import ast
import copy
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from graphrec.export import (
    GRAPH_INPUT_NAMES,
    CFScorer,
    ExportError,
    GraphScorer,
    MNNConversionError,
    MNNFineTuner,
    MNNModel,
    ParityError,
    UnsafeOperatorError,
    check_parity,
    export_mnn,
    export_onnx,
    find_unsafe_ops,
    graph_dynamic_shapes,
    graph_inputs,
    match_torch_parameters,
    preflight_mnn,
    read_metadata,
    rewrite_for_mnn,
    torch_bce_loss,
)
from graphrec.export.mnn import CONVERTER_CHILD
from graphrec.export.parity import run_onnxruntime, top_k_overlap

pytestmark = pytest.mark.usefixtures("export_extra")

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_BATCH = 8
PARITY_BATCHES = (3, 17, 10 * EXAMPLE_BATCH)  # other sizes than the example, one 10x
ATOL = 1e-5

_DIN = {"embedding_dim": 8, "hidden_channels": (32, 16), "attention_hidden": (16,)}
CASES = {  # test id -> (model name in graphrec.registry.CTR_MODELS, constructor arguments)
    "lr": ("lr", {}),
    "widedeep": ("widedeep", {"embedding_dim": 8, "hidden_channels": (32, 16)}),
    "deepfm": ("deepfm", {"embedding_dim": 8, "hidden_channels": (32, 16)}),
    "dcn": ("dcn", {"embedding_dim": 8, "num_cross_layers": 2, "hidden_channels": (32, 16)}),
    "din": ("din", _DIN),
    "din_softmax": ("din", {**_DIN, "softmax": True}),
}


@pytest.fixture(scope="module")
def taobao(shared_data):
    from graphrec.datasets import load_taobao_tiny
    from graphrec.models.ctr import CTRFeatures

    data = load_taobao_tiny(shared_data / "ctr" / "fuxictr_tiny_taobao")
    features = CTRFeatures.from_table(data.train)
    return features, features.batch(data.train), CTRFeatures.labels(data.train)


def _rows(batch: dict, size: int, seed: int) -> dict:
    """``size`` random rows; every 4th dense value missing (NaN), as the reader encodes it."""
    n = next(iter(batch.values())).shape[0]
    rows = np.random.default_rng(seed).integers(0, n, size)
    out = {k: v[rows].clone() for k, v in batch.items()}
    for v in out.values():
        if v.is_floating_point():
            v[::4] = float("nan")
    return out


def _ctr_model(case: str, features):
    from graphrec.registry import CTR_MODELS

    torch.manual_seed(0)
    name, kwargs = CASES[case]
    model = CTR_MODELS.get(name)(features, **kwargs)
    with torch.no_grad():  # trained-like scale (the default init_std=0.01 hides differences)
        for pname, p in model.named_parameters():
            if pname.startswith("embedding."):
                p.normal_(0.0, 0.2)
            elif p.dim() >= 2:
                p.mul_(2.0)
    return model.eval()


class _Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 2)

    def forward(self, batch: dict) -> torch.Tensor:
        return self.lin(batch["x"]) * batch["w"].unsqueeze(-1)


class _ScatterMax(torch.nn.Module):
    """A GNN-style max aggregation over incoming edges (``scatter_reduce(amax)``)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, x: torch.Tensor, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
        msg = self.lin(x)[src]
        index = dst.unsqueeze(-1).expand_as(msg)
        return torch.zeros_like(x).scatter_reduce(0, index, msg, reduce="amax", include_self=False)


def _graph(num_nodes: int, num_edges: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(num_nodes, 4, generator=g)
    return x, *torch.randint(0, num_nodes, (2, num_edges), generator=g)


# --- ONNX export -------------------------------------------------------------------------


def test_export_onnx_dict_inputs_and_no_overwrite(tmp_path):
    import onnx

    model = _Tiny().eval()
    example = {"x": torch.randn(4, 4), "w": torch.rand(4)}
    path = export_onnx(model, example, tmp_path / "tiny.onnx", output_names=["y"])
    graph = onnx.load(path).graph
    assert [i.name for i in graph.input] == ["x", "w"]
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch
    meta = read_metadata(path)
    assert meta["takes_dict"] and meta["example_shapes"] == {"x": [4, 4], "w": [4]}
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_onnx(model, example, path)
    assert path.read_bytes() == before
    export_onnx(model, example, path, overwrite=True)
    with pytest.raises(ValueError, match="'N'"):
        export_onnx(model, example, tmp_path / "n.onnx", dynamic_shapes={"x": {0: "N"}})


# --- pre-flight -----------------------------------------------------------------------------


def test_preflight_rejects_scatter_max(tmp_path):
    import onnxruntime as ort

    model = _ScatterMax().eval()
    path = export_onnx(
        model,
        _graph(6, 12, 0),
        tmp_path / "smax.onnx",
        input_names=["x", "src", "dst"],
        dynamic_shapes={"x": {0: "nodes"}, "src": {0: "edges"}, "dst": {0: "edges"}},
    )
    # onnxruntime runs it correctly: only the pre-flight stands between it and a wrong MNN model
    x, src, dst = _graph(9, 30, 1)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": x.numpy(), "src": src.numpy(), "dst": dst.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x, src, dst).numpy(), atol=1e-6)

    with pytest.raises(UnsafeOperatorError) as info:
        preflight_mnn(path)
    message = str(info.value)
    assert "ScatterElements(reduction=max" in message
    assert "node 'node_" in message  # the ONNX node's name
    assert "scatter_reduce" in message and "test_export.py" in message  # the torch source line
    assert "fix:" in message and str(path) in message
    assert {f.op_type for f in info.value.findings} == {"ScatterElements"}

    with pytest.raises(UnsafeOperatorError, match="ScatterElements"):
        export_mnn(path, tmp_path / "smax.mnn")
    assert not (tmp_path / "smax.mnn").exists()


def test_isnan_is_rewritten_exactly(tmp_path):
    """Every CTR model with a dense feature has an IsNaN, which MNN's converter lacks. (The
    obvious Not(Equal(x, x)) is wrong there: MNN's Equal(x, x) is true for NaN.)"""

    class WithNaN(torch.nn.Module):
        def forward(self, x):
            return torch.where(torch.isnan(x), torch.zeros_like(x), x) * 2.0

    path = export_onnx(WithNaN(), torch.randn(4, 3), tmp_path / "nan.onnx")
    assert [f.op_type for f in find_unsafe_ops(path)] == ["IsNaN"]
    preflight_mnn(path)  # rewritable: not an error
    rewritten = rewrite_for_mnn(path)
    assert "IsNaN" not in {n.op_type for n in rewritten.graph.node}
    mnn = export_mnn(path, tmp_path / "nan.mnn")
    x = torch.tensor([[1.0, float("nan"), -2.0], [float("nan"), 3.0, float("inf")]] * 2)
    report = check_parity(WithNaN(), {"onnx": path, "mnn": mnn}, [x, x[:3]])
    assert report.ok, str(report)


def test_matvec_with_1d_operand_is_rewritten_for_mnn(tmp_path):
    """MNN 3.6.1 squeezes the wrong axis of ``[B, K, h] @ [h]`` ('Compute Shape Error')."""

    class Score(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.v = torch.nn.Parameter(torch.randn(5))

        def forward(self, x):
            return torch.softmax(torch.tanh(x) @ self.v, dim=-1)

    torch.manual_seed(0)
    model = Score()
    path = export_onnx(model, torch.randn(4, 3, 5), tmp_path / "mv.onnx")
    assert [f.op_type for f in find_unsafe_ops(path)] == ["MatMul"]
    rewritten = rewrite_for_mnn(path)
    assert find_unsafe_ops(rewritten) == []
    mnn = export_mnn(path, tmp_path / "mv.mnn")
    inputs = [torch.randn(b, 3, 5) for b in (2, 9, 40)]
    check_parity(model, {"onnx": path, "mnn": mnn}, inputs).raise_for_failures()


def test_converter_failure_is_an_error(tmp_path):
    class WithIsInf(torch.nn.Module):  # MNN 3.6's converter has no IsInf: exits 0, no file
        def forward(self, x):
            return torch.isinf(x).to(torch.float32) + x

    path = export_onnx(WithIsInf(), torch.randn(4, 3), tmp_path / "isinf.onnx")
    with pytest.raises(MNNConversionError, match="IsInf") as info:
        export_mnn(path, tmp_path / "isinf.mnn")
    assert info.value.returncode == 0  # the converter's own status says success
    assert "wrote no model" in str(info.value)
    assert not (tmp_path / "isinf.mnn").exists()


# --- parity ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_ctr_parity_onnxruntime_and_mnn(name, taobao, tmp_path):
    features, batch, _ = taobao
    model = _ctr_model(name, features)
    onnx_path = export_onnx(
        model, _rows(batch, EXAMPLE_BATCH, 0), tmp_path / f"{name}.onnx", output_names=["logit"]
    )
    mnn_path = export_mnn(onnx_path, tmp_path / f"{name}.mnn")
    inputs = [_rows(batch, size, seed) for seed, size in enumerate(PARITY_BATCHES, 1)]
    report = check_parity(model, {"onnx": onnx_path, "mnn": mnn_path}, inputs, atol=ATOL)
    print(report)
    assert report.runtimes == ["onnxruntime", "mnn"]
    assert sorted({r.batch for r in report.results}) == sorted(PARITY_BATCHES)
    report.raise_for_failures()
    assert report.max_abs_diff() <= ATOL


def test_hien_with_frozen_tables_parity(tmp_path):
    """HIEN + DIN with frozen tables: the device gets the tree-aggregated tables and attribute
    bags as constants; the scores equal the training module's."""
    import onnx

    from graphrec.datasets.synthetic_ctr import SYNTHETIC_TREES, synthetic_ctr
    from graphrec.graphs.attribute_tree import tree_from_table
    from graphrec.models.ctr import DIN, CTRFeatures
    from graphrec.models.hien import HIEN, item_clickers

    data = synthetic_ctr(num_users=30, num_items=40, num_campaigns=10, num_customers=4,
                         num_cates=5, num_brands=6, impressions_per_user=10, seed=3)  # fmt: skip
    tables = [data.train, data.valid, data.test]
    trees = [tree_from_table(tables, list(levels)) for levels in SYNTHETIC_TREES]
    features = CTRFeatures.from_table(data.train)
    clickers = item_clickers(data.train, item="item", user="user", max_clickers=4)
    torch.manual_seed(0)
    base = DIN(features, 8, (16,), attention_hidden=(8,), extra_fields=2)
    hien = HIEN(base, trees, item="item", user="user", clickers=clickers).eval()
    with torch.no_grad():  # trained-like scale
        for name, p in hien.named_parameters():
            p.normal_(0.0, 0.3) if "embedding" in name or "own_tables" in name else p.mul_(2.0)
    device_model = copy.deepcopy(hien).freeze_tables()
    batch = features.batch(data.train)
    with torch.no_grad():
        torch.testing.assert_close(device_model(batch), hien(batch), atol=1e-6, rtol=0)

    onnx_path = export_onnx(device_model, _rows(batch, EXAMPLE_BATCH, 0), tmp_path / "hien.onnx")
    ops = {node.op_type for node in onnx.load(onnx_path).graph.node}
    assert not [op for op in ops if "Scatter" in op]  # no tree aggregation in the graph
    assert {f.op_type for f in find_unsafe_ops(onnx_path)} <= {"MatMul"}  # rewritable only
    mnn_path = export_mnn(onnx_path, tmp_path / "hien.mnn")
    inputs = [_rows(batch, size, seed) for seed, size in enumerate(PARITY_BATCHES, 1)]
    report = check_parity(hien, {"onnx": onnx_path, "mnn": mnn_path}, inputs, atol=ATOL)
    print(report)
    report.raise_for_failures()
    assert len(report.results) == 6


def _lightgcn(num_users: int, num_items: int):
    from graphrec.models.cf import LightGCN

    g = torch.Generator().manual_seed(0)
    users = torch.randint(0, num_users, (60,), generator=g)
    items = torch.randint(0, num_items, (60,), generator=g) + num_users
    edge_index = torch.cat([torch.stack([users, items]), torch.stack([items, users])], dim=1)
    deg = torch.zeros(num_users + num_items).index_add_(0, edge_index[0], torch.ones(120))
    weight = (deg[edge_index[0]] * deg[edge_index[1]]).rsqrt()
    return LightGCN(num_users, num_items, (edge_index, weight), embedding_dim=16, num_layers=2)


@pytest.mark.parametrize("backbone", ["mf", "lightgcn"])
def test_cf_scoring_parity(backbone, tmp_path):
    from graphrec.models.cf import MF

    torch.manual_seed(0)
    model = MF(40, 30, 16) if backbone == "mf" else _lightgcn(40, 30)
    scorer = CFScorer.from_backbone(model)
    users = torch.arange(40)
    with torch.no_grad():
        torch.testing.assert_close(scorer(users), model.scores(users))
    example = torch.randint(0, 40, (EXAMPLE_BATCH,))
    onnx_path = export_onnx(scorer, example, tmp_path / "cf.onnx", input_names=["users"])
    mnn_path = export_mnn(onnx_path, tmp_path / "cf.mnn")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_mnn(onnx_path, mnn_path)
    inputs = [torch.randint(0, 40, (size,)) for size in PARITY_BATCHES]
    report = check_parity(scorer, [onnx_path, mnn_path], inputs, top_k=10)
    print(report)
    report.raise_for_failures()
    assert len(report.results) == 6
    assert report.min_top_k_overlap() == 1.0 and "top-10 overlap >= 0.9" in str(report)


def _fastcover_graph(num_nodes: int, num_edges: int, seed: int, csr: bool) -> tuple:
    g = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(0, num_nodes, (2, num_edges), generator=g)
    weight = (torch.rand(num_nodes, generator=g) > 0.2).float()  # some nodes already covered
    return tuple(graph_inputs(edge_index, num_nodes, csr=csr, target_weight=weight).values())


FASTCOVER_EXAMPLE = (30, 120)  # nodes, edges
FASTCOVER_SIZES = ((12, 40), (57, 390), (300, 1200))  # the last is 10x the example


def _fastcover():
    from combinatorial.gnn.model import FastCover

    torch.manual_seed(0)  # degree features, re-scoring mask on layer 1, as the d=2 weights
    return GraphScorer(FastCover(features="degree", mask_layer=1).eval())


def _export_fastcover(scorer, tmp_path: Path, mode: str, **kwargs) -> tuple[Path, Path]:
    csr = mode == "csr"
    onnx_path = export_onnx(
        scorer,
        _fastcover_graph(*FASTCOVER_EXAMPLE, 0, csr),
        tmp_path / f"fastcover_{mode}.onnx",
        input_names=[n for n in GRAPH_INPUT_NAMES if csr or not n.startswith(("perm", "ptr"))],
        output_names=["score"],
        dynamic=False,
        dynamic_shapes=graph_dynamic_shapes(csr),
        aggregation=mode,
        overwrite=True,
        **kwargs,
    )
    assert find_unsafe_ops(onnx_path) == []  # no scatter left
    return onnx_path, export_mnn(onnx_path, tmp_path / f"fastcover_{mode}.mnn", overwrite=True)


def test_fastcover_dense_parity(tmp_path):
    scorer = _fastcover()
    onnx_path, mnn_path = _export_fastcover(scorer, tmp_path, "dense")
    inputs = [_fastcover_graph(n, m, seed, False) for seed, (n, m) in enumerate(FASTCOVER_SIZES, 1)]
    report = check_parity(scorer, {"onnx": onnx_path, "mnn": mnn_path}, inputs, atol=ATOL)
    print(report)
    report.raise_for_failures()
    assert len(report.results) == 6
    assert min(r.max_abs_reference for r in report.results) > 0.1  # not a vacuous check

    # (the shipped weights: tests/test_cli_export.py)
    # the training path's scatter is what the export-safe mode replaces
    scatter = export_onnx(
        scorer,
        _fastcover_graph(*FASTCOVER_EXAMPLE, 0, False),
        tmp_path / "fastcover_scatter.onnx",
        input_names=["target_weight", "edge_index"],
        dynamic=False,
        dynamic_shapes=graph_dynamic_shapes(False),
        aggregation="scatter",
    )
    with pytest.raises(UnsafeOperatorError, match="ScatterElements"):
        preflight_mnn(scatter)


def test_fastcover_csr_parity_and_segment_limit(tmp_path):
    scorer = _fastcover()
    onnx_path = export_onnx(
        scorer,
        _fastcover_graph(*FASTCOVER_EXAMPLE, 0, True),
        tmp_path / "fastcover_csr.onnx",
        input_names=list(GRAPH_INPUT_NAMES),
        dynamic=False,
        dynamic_shapes=graph_dynamic_shapes(True),
        aggregation="csr",
        max_segment=8,  # 3 scan steps: many nodes have more coverers (exact all the same)
    )
    assert find_unsafe_ops(onnx_path) == []  # no scatter
    sizes = (*FASTCOVER_SIZES, (3000, 30000))  # CSR is the mode for large graphs
    inputs = [_fastcover_graph(n, m, seed, True) for seed, (n, m) in enumerate(sizes, 1)]
    report = check_parity(scorer, [onnx_path], inputs, atol=ATOL)
    print(report)
    report.raise_for_failures()
    assert len(report.results) == 4
    # MNN converts this graph non-deterministically: the pre-flight refuses it
    with pytest.raises(ExportError, match="aggregation='dense'"):
        export_mnn(onnx_path, tmp_path / "fastcover_csr.mnn")
    assert not (tmp_path / "fastcover_csr.mnn").exists()

    # a node covered by far more nodes than the exported scan length: the softmax only
    # needs a shift within ~88 of the maximum, so the scores stay exact
    star = torch.cat(
        [torch.stack([torch.arange(1, 101), torch.zeros(100, dtype=torch.long)])] * 2, 1
    )
    star = torch.cat([star, torch.randint(0, 101, (2, 300))], 1)
    report = check_parity(
        scorer,
        [onnx_path],
        [tuple(graph_inputs(star, 101, csr=True).values())],
        atol=ATOL,
    )
    report.raise_for_failures()


def _ort(path: Path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


class _SegmentSum(torch.nn.Module):
    def forward(self, x, index, perm, ptr):
        from graphrec.nn import Segments, segment_sum

        return segment_sum(x, index, ptr.shape[0] - 1, Segments(perm, ptr))


def test_csr_segment_sum_has_no_cancellation_in_onnxruntime(tmp_path):
    from graphrec.nn import Segments

    def case(n, m, seed, scale):
        g = torch.Generator().manual_seed(seed)
        index = torch.randint(0, n, (m,), generator=g)
        return (torch.rand(m, 2, generator=g) * scale, index, *Segments.from_index(index, n))

    edges, nodes = torch.export.Dim("edges", min=2), torch.export.Dim("nodes", min=2)
    onnx_path = export_onnx(
        _SegmentSum(),
        case(10, 40, 0, 1.0),
        tmp_path / "segsum.onnx",
        input_names=["x", "index", "perm", "ptr"],
        dynamic=False,
        dynamic_shapes={
            "x": {0: edges},
            "index": {0: edges},
            "perm": {0: edges},
            "ptr": {0: nodes},
        },
        aggregation="csr",
    )
    x, index, perm, ptr = big = case(500, 200_000, 1, 1000.0)  # running total up to 1e8
    truth = torch.zeros(500, 2, dtype=torch.float64).index_add_(0, index, x.double()).numpy()
    feeds = dict(zip(["x", "index", "perm", "ptr"], big))
    got = run_onnxruntime(_ort(onnx_path), feeds)[0]
    tolerance = 4 * np.finfo(np.float32).eps * np.abs(truth).max()  # a few ulps of the output
    assert np.abs(got - truth).max() < tolerance


class _TransposedMatVec(torch.nn.Module):
    """``D^T @ v``: with a 1-D ``v`` onnxruntime 1.32 fuses it into a wrong FusedMatMul."""

    def __init__(self, two_d: bool) -> None:
        super().__init__()
        self.two_d = two_d

    def forward(self, d: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.two_d:  # the workaround: keep the right operand 2-D
            return (d.t() @ v.unsqueeze(-1)).squeeze(-1)
        return d.t() @ v


@pytest.mark.parametrize("two_d", [False, True])
def test_parity_gate_sees_onnxruntime_fused_matmul_bug(two_d, tmp_path):
    g = torch.Generator().manual_seed(0)
    model = _TransposedMatVec(two_d)
    example = (torch.randn(6, 4, generator=g), torch.randn(6, generator=g))
    path = export_onnx(
        model,
        example,
        tmp_path / "matvec.onnx",
        input_names=["d", "v"],
        dynamic_shapes={"d": {0: "edges", 1: "nodes"}, "v": {0: "edges"}},
    )
    sizes = [(10, 5), (30, 7), (40, 6)]
    inputs = [(torch.randn(e, n, generator=g), torch.randn(e, generator=g)) for e, n in sizes]
    report = check_parity(model, [path], inputs)
    if two_d:
        report.raise_for_failures()
    else:  # if this starts passing, onnxruntime fixed the bug: drop the workaround note
        assert not report.ok and report.max_abs_diff() > 0.1


def test_parity_catches_a_wrong_model_and_needs_other_sizes(tmp_path):
    scorer = CFScorer(torch.randn(20, 8), torch.randn(15, 8))
    example = torch.randint(0, 20, (EXAMPLE_BATCH,))
    onnx_path = export_onnx(scorer, example, tmp_path / "s.onnx")
    mnn_path = export_mnn(onnx_path, tmp_path / "s.mnn")
    exported = {"onnx": onnx_path, "mnn": mnn_path}
    with pytest.raises(ValueError, match="other sizes"):
        check_parity(scorer, exported, [example])
    other = CFScorer(scorer.user_embedding + 1e-3, scorer.item_embedding_t.t())
    report = check_parity(other, exported, [torch.arange(20), example])
    assert not report.ok and len(report.failures()) == 4
    assert 1e-4 < report.max_abs_diff("mnn") < 1.0
    with pytest.raises(ParityError, match="parity failed"):
        report.raise_for_failures()


def test_top_k_overlap_per_query_with_ties():
    ref = np.array([[5.0, 4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0, 5.0]])
    np.testing.assert_array_equal(top_k_overlap(ref, ref + 1e-7, 2), [1.0, 1.0])
    swapped = ref.copy()
    swapped[0, [1, 2]] = swapped[0, [2, 1]]  # 2nd and 3rd of the first user change places
    np.testing.assert_array_equal(top_k_overlap(ref, swapped, 2), [0.5, 1.0])
    np.testing.assert_array_equal(top_k_overlap(ref, swapped, 3), [1.0, 1.0])  # same set
    np.testing.assert_array_equal(top_k_overlap(ref, swapped, 10), [1.0, 1.0])  # k capped
    # exact ties in torch have no order: any of the tied candidates counts as in the top k
    tied = np.array([1.0, 1.0, 1.0, 0.0])
    assert top_k_overlap(tied, np.array([0.9, 1.0, 1.1, 0.0]), 2).tolist() == [1.0]
    assert top_k_overlap(tied, np.array([0.9, 1.0, 0.8, 1.1]), 2).tolist() == [0.5]
    # a 1-D (or [n, 1]) output is one query over its entries; NaN ranks last
    column = np.arange(6.0).reshape(6, 1)
    assert top_k_overlap(column, column[::-1], 3).tolist() == [0.0]
    assert top_k_overlap(column, np.where(column == 5, np.nan, column), 3).tolist() == [2 / 3]


def test_parity_top_k_fails_where_values_pass(tmp_path):
    """A loose value tolerance alone would pass a model that ranks differently."""
    torch.manual_seed(0)
    scorer = CFScorer(torch.randn(20, 8), torch.randn(50, 8))
    onnx_path = export_onnx(scorer, torch.randint(0, 20, (EXAMPLE_BATCH,)), tmp_path / "s.onnx")
    inputs = [torch.arange(20), torch.arange(3)]
    report = check_parity(scorer, [onnx_path], inputs, top_k=10, min_overlap=1.0)
    report.raise_for_failures()
    assert report.min_top_k_overlap() == 1.0

    items = scorer.item_embedding_t.t()
    other = CFScorer(scorer.user_embedding, items + 0.5 * torch.randn_like(items))
    report = check_parity(other, [onnx_path], inputs, rtol=10.0, top_k=10)
    print(report)
    assert all(r.max_abs_diff <= r.allowed for r in report.results)  # the values "pass"
    assert not report.ok and report.min_top_k_overlap() < 0.9
    failure = report.failures()[0]
    assert "max|diff|" not in failure.error
    assert f"top-10 overlap {failure.top_k_overlap:.2f} < 0.9 (query " in failure.error
    with pytest.raises(ParityError, match=r"top-10 overlap 0\.\d\d < 0\.9 \(query \d+\)"):
        report.raise_for_failures()


# --- on-device fine-tuning -----------------------------------------------------------------


def test_mnn_finetuning_matches_torch_sgd(taobao, tmp_path):
    features, batch, labels = taobao
    model = _ctr_model("widedeep", features)
    onnx_path = export_onnx(
        model, _rows(batch, EXAMPLE_BATCH, 0), tmp_path / "wd.onnx", output_names=["logit"]
    )
    mnn_path = export_mnn(onnx_path, tmp_path / "wd.mnn")
    tuner = MNNFineTuner(mnn_path, onnx_path=onnx_path, lr=0.1)
    reference = copy.deepcopy(model)
    trained = match_torch_parameters(tuner, reference)
    # MNN trains the MLP (Linear weights and biases) only: the dense layers
    assert [n for n, _ in trained] and all(n.startswith("mlp.") for n, _ in trained)
    assert {n for n, _ in trained} == {n for n, _ in reference.mlp.named_parameters(prefix="mlp")}
    optimizer = torch.optim.SGD([p for _, p in trained], lr=0.1)

    rng = np.random.default_rng(0)
    mnn_losses, torch_losses = [], []
    for _ in range(20):
        rows = rng.integers(0, len(labels), 32)
        inputs = {k: v[rows] for k, v in batch.items()}
        mnn_losses.append(tuner.step(inputs, labels[rows]))  # raises unless step() is True
        loss = torch_bce_loss(reference(inputs), labels[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        torch_losses.append(loss.item())
    assert tuner.steps == 20
    np.testing.assert_allclose(mnn_losses, torch_losses, atol=1e-5)
    assert torch_losses[-1] < torch_losses[0]
    for value, (name, param) in zip(tuner.parameters, trained):
        got = value.reshape(-1)
        np.testing.assert_allclose(got, param.detach().numpy().reshape(-1), atol=1e-5, err_msg=name)

    saved = tuner.save(tmp_path / "wd_tuned.mnn", _rows(batch, EXAMPLE_BATCH, 0))
    inputs = [_rows(batch, size, seed) for seed, size in enumerate(PARITY_BATCHES, 1)]
    report = check_parity(reference.eval(), {"mnn": saved}, inputs, onnx_path=onnx_path)
    print(report)
    report.raise_for_failures()
    # and it really changed: the untuned model is far from the tuned one
    before = MNNModel(mnn_path, onnx_path=onnx_path)(inputs[0])[0]
    after = MNNModel(saved, onnx_path=onnx_path)(inputs[0])[0]
    assert np.abs(before - after).max() > 1e-3


# --- no MNN.tools, no pip -------------------------------------------------------------------

_AUDIT_HOOK = """
import json, os, re, sys

_LOG = os.environ["GRAPHREC_AUDIT_LOG"]
_PIP = re.compile(r"(^|[\\\\/\\s'\\"])(pip[0-9.]*|ensurepip)([\\s'\\",]|$)")


def _record(kind, detail):
    with open(_LOG, "a") as f:
        f.write(json.dumps([os.getpid(), kind, detail]) + "\\n")


def _hook(event, args):
    if event == "import":
        name = args[0]
        if name.split(".")[0] == "pip" or name == "MNN.tools" or name.startswith("MNN.tools."):
            _record("import", name)
            raise ImportError("blocked by the test's audit hook: " + name)
    elif event in ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn"):
        text = repr(args)
        _record("spawn", text)
        if _PIP.search(text):
            _record("pip", text)
            raise RuntimeError("blocked by the test's audit hook: " + text)


_record("start", sys.argv)
sys.addaudithook(_hook)
"""

_EXPORT_SCRIPT = """
import sys, torch
torch.set_num_threads(1)
from graphrec.export import CFScorer, check_parity, export_mnn, export_onnx
scorer = CFScorer(torch.randn(12, 4), torch.randn(9, 4))
onnx_path = export_onnx(scorer, torch.arange(4), sys.argv[1] + "/m.onnx")
mnn_path = export_mnn(onnx_path, sys.argv[1] + "/m.mnn")
check_parity(scorer, [onnx_path, mnn_path], [torch.arange(12)]).raise_for_failures()
bad = sorted(m for m in sys.modules if m.startswith("MNN.tools") or m.split(".")[0] == "pip")
print("LOADED", bad)
"""

_CONTROL_SCRIPT = """
import subprocess, sys
try:  # raise the import audit event by hand: the wrapper itself is never imported, even here
    sys.audit("import", "MNN" + ".tools", None, sys.path, sys.meta_path, None)
except (ImportError, RuntimeError) as exc:
    print("import blocked:", exc)
try:
    subprocess.run([sys.executable, "-m", "pip", "--version"], check=False)
except RuntimeError as exc:
    print("pip blocked:", exc)
"""


def _audited(script: str, tmp_path: Path, tag: str) -> tuple[subprocess.CompletedProcess, list]:
    hook_dir = tmp_path / "hook"
    hook_dir.mkdir(exist_ok=True)
    (hook_dir / "sitecustomize.py").write_text(_AUDIT_HOOK)
    log = tmp_path / f"{tag}.log"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(hook_dir), str(REPO), env.get("PYTHONPATH", "")])
    env["GRAPHREC_AUDIT_LOG"] = str(log)
    work = tmp_path / tag
    work.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), str(work)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return proc, records


def test_export_never_imports_mnn_tools_nor_starts_pip(tmp_path):
    # control: the hook does see (and block) both things in a process that tries them
    proc, records = _audited(_CONTROL_SCRIPT, tmp_path, "control")
    assert proc.returncode == 0, proc.stderr
    kinds = [(r[1], r[2]) for r in records]
    assert ("import", "MNN.tools") in kinds
    assert any(kind == "pip" for kind, _ in kinds)

    proc, records = _audited(_EXPORT_SCRIPT, tmp_path, "export")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "LOADED []" in proc.stdout
    pids = {r[0] for r in records if r[1] == "start"}
    child = [r for r in records if r[1] == "start" and str(CONVERTER_CHILD) in r[2]]
    assert len(pids) == 2 and len(child) == 1  # the hook also ran in the converter process
    spawns = [r[2] for r in records if r[1] == "spawn"]
    assert len(spawns) == 1 and str(CONVERTER_CHILD) in spawns[0]  # only the converter
    assert [r for r in records if r[1] in ("import", "pip")] == []


def test_converter_child_blocks_the_wrapper_package(tmp_path):
    # a stand-in converter extension that tries to load MNN's wrapper package, next to a
    # harmless stand-in MNN package (so that even a regression never runs the real wrapper):
    # the child must stop the import before any of the package's code runs
    (tmp_path / "_tools.py").write_text("import MNN.tools\n")
    (tmp_path / "MNN" / "tools").mkdir(parents=True)
    (tmp_path / "MNN" / "__init__.py").write_text("")
    marker = tmp_path / "wrapper_ran"
    (tmp_path / "MNN" / "tools" / "__init__.py").write_text(f"open({str(marker)!r}, 'w')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, str(CONVERTER_CHILD), "-f", "ONNX"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert not marker.exists()
    assert proc.returncode == 3 and "halted; None in sys.modules" in proc.stderr


def test_export_sources_never_reference_mnn_tools():
    """No ``MNN.tools`` import anywhere; the converter name only in the child's extension call."""
    for path in (REPO / "graphrec" / "export").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                if node.value in ("mnnconvert", "mnnquant"):
                    assert path == CONVERTER_CHILD, (path, node.value)
                continue
            else:
                continue
            assert not any(n.startswith("MNN.tools") for n in names), (path, names)
