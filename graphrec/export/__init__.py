"""Mobile export: torch -> ONNX (dynamo exporter, opset 20) -> MNN, with a parity gate.

=========================  ==================================================================
:func:`export_onnx`        ONNX file with a dynamic batch; dict-input models are flattened
:func:`preflight_mnn`      reject ONNX operators MNN runs wrongly (scatter with reductions ...)
:func:`export_mnn`         convert with MNN's in-process converter in a subprocess; checks
                           that a non-empty model was written
:func:`check_parity`       torch vs onnxruntime vs MNN on inputs of other sizes: max |diff|
                           and, for scoring models, top-k agreement (:func:`top_k_overlap`)
:class:`MNNModel`          run a ``.mnn`` file from Python (MNN's Module API)
:class:`CFScorer`          the on-device form of MF / LightGCN: precomputed tables + scoring
:class:`GraphScorer`       tensor-only inputs for a graph model (FastCover); the graph layers
                           are exported in a scatter-free aggregation mode (dense or CSR)
:class:`MNNFineTuner`      on-device SGD fine-tuning of a converted CTR model's dense layers
=========================  ==================================================================

Needs the ``export`` extra (onnx, onnxruntime, onnxscript, MNN; :func:`require_extra` raises a
one-line :class:`~graphrec.errors.MissingExtraError` without it). graphrec converts with MNN's
in-process converter extension only, never MNN's console scripts or their Python wrapper package
(they install and call a telemetry uploader); see ``docs/mobile-export-findings.md``.

Example:
    >>> from graphrec.export import check_parity, export_mnn, export_onnx
    >>> onnx_path = export_onnx(model, batch, "din.onnx")  # doctest: +SKIP
    >>> mnn_path = export_mnn(onnx_path, "din.mnn")  # doctest: +SKIP
    >>> exported = {"onnx": onnx_path, "mnn": mnn_path}
    >>> report = check_parity(model, exported, [b3, b17, b80], top_k=10)  # doctest: +SKIP
    >>> report.raise_for_failures()  # doctest: +SKIP
"""

from graphrec.export.finetune import (
    MNNFineTuner,
    MNNTrainingError,
    match_torch_parameters,
    torch_bce_loss,
)
from graphrec.export.mnn import MNNConversionError, MNNModel, export_mnn, load_mnn, to_mnn_var
from graphrec.export.models import (
    GRAPH_INPUT_NAMES,
    CFScorer,
    GraphScorer,
    graph_dynamic_shapes,
    graph_inputs,
)
from graphrec.export.onnx import ExportError, FlatInputs, export_onnx, read_metadata, require_extra
from graphrec.export.parity import (
    ParityError,
    ParityReport,
    ParityResult,
    check_parity,
    top_k_overlap,
)
from graphrec.export.preflight import (
    Finding,
    UnsafeOperatorError,
    find_unsafe_ops,
    preflight_mnn,
    rewrite_for_mnn,
)

__all__ = [
    "GRAPH_INPUT_NAMES",
    "CFScorer",
    "GraphScorer",
    "graph_dynamic_shapes",
    "graph_inputs",
    "ExportError",
    "Finding",
    "FlatInputs",
    "MNNConversionError",
    "MNNFineTuner",
    "MNNModel",
    "MNNTrainingError",
    "ParityError",
    "ParityReport",
    "ParityResult",
    "UnsafeOperatorError",
    "check_parity",
    "export_mnn",
    "export_onnx",
    "find_unsafe_ops",
    "load_mnn",
    "match_torch_parameters",
    "preflight_mnn",
    "read_metadata",
    "require_extra",
    "rewrite_for_mnn",
    "to_mnn_var",
    "top_k_overlap",
    "torch_bce_loss",
]
