"""ONNX -> MNN conversion in a subprocess, and running a converted model from Python.

:func:`export_mnn` (1) runs :func:`graphrec.export.preflight_mnn` on the ONNX file and refuses
operators MNN runs wrongly, (2) applies the exact rewrites of
:func:`graphrec.export.rewrite_for_mnn` to a temporary copy, (3) runs MNN's in-process converter
``_tools.mnnconvert`` in a child Python process (``_mnn_convert_child.py``; never MNN's console
script or its Python wrapper package, which install and call a telemetry uploader), and
(4) accepts the result only if the child exited 0, printed "Converted Success" and wrote a
non-empty file -- MNN's converter exits 0 without output on unsupported nodes.

A converted model still has to pass :func:`graphrec.export.check_parity` in MNN itself: a
successful conversion says nothing about correctness.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from graphrec.errors import ConfigError
from graphrec.export.onnx import ExportError, read_metadata
from graphrec.export.preflight import preflight_mnn, rewrite_for_mnn

__all__ = [
    "CONVERTER_CHILD",
    "MNNConversionError",
    "MNNModel",
    "export_mnn",
    "load_mnn",
    "to_mnn_var",
]

#: The script the converter runs in (executed by path, never imported).
CONVERTER_CHILD = Path(__file__).with_name("_mnn_convert_child.py")


class MNNConversionError(ExportError):
    """MNN's converter crashed, failed or wrote no model; ``output`` holds what it printed."""

    def __init__(self, message: str, returncode: int | None = None, output: str = "") -> None:
        self.returncode = returncode
        self.output = output
        super().__init__(f"{message}\n--- converter output ---\n{output.strip() or '(none)'}")


def export_mnn(
    onnx_path: str | os.PathLike,
    mnn_path: str | os.PathLike,
    *,
    overwrite: bool = False,
    fp16: bool = False,
    for_training: bool = False,
    keep_input_format: bool = True,
    extra_args: Sequence[str] = (),
    biz_code: str = "graphrec",
    timeout: float = 600.0,
) -> Path:
    """Convert an ONNX file (from :func:`graphrec.export.export_onnx`) to an ``.mnn`` file.

    Args:
        onnx_path: the ONNX model.
        mnn_path: the ``.mnn`` file to write.
        overwrite: replace an existing ``mnn_path``.
        fp16: store weights as float16 (``--fp16``; parity is then not float32 parity).
        for_training: keep BatchNorm/Dropout for on-device training (``--forTraining``).
        keep_input_format: keep the inputs' layout (``--keepInputFormat``). Without it MNN
            3.6.1 inserts layout conversions that made a CSR-mode FastCover graph wrong by
            up to 4e+06 (deterministic per file; exact with the flag).
        extra_args: further converter flags (e.g. ``["--optimizeLevel", "1"]``).
        biz_code: the converter's ``--bizCode`` tag (stored in the model).
        timeout: seconds before the converter process is killed.

    Returns:
        ``mnn_path``.

    Raises:
        FileExistsError: ``mnn_path`` exists and ``overwrite`` is False.
        UnsafeOperatorError: the graph holds operators MNN runs wrongly (see the pre-flight).
        MNNConversionError: the converter crashed, reported failure or wrote nothing.
    """
    import onnx

    onnx_path, mnn_path = Path(onnx_path), Path(mnn_path)
    if mnn_path.exists() and not overwrite:
        raise FileExistsError(f"{mnn_path} exists; pass overwrite=True to replace it")
    model = onnx.load(str(onnx_path))
    preflight_mnn(model, name=str(onnx_path))
    model = rewrite_for_mnn(model)
    with tempfile.TemporaryDirectory(prefix="graphrec-mnn-") as tmp:
        src, out = Path(tmp) / "model.onnx", Path(tmp) / "model.mnn"
        onnx.save(model, str(src))
        args = ["-f", "ONNX", "--modelFile", str(src), "--MNNModel", str(out)]
        args += ["--bizCode", biz_code]
        if fp16:
            args.append("--fp16")
        if for_training:
            args.append("--forTraining")
        if keep_input_format:
            args.append("--keepInputFormat")
        args += [str(a) for a in extra_args]
        cmd = [sys.executable, str(CONVERTER_CHILD), *args]
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout, cwd=tmp, check=False
            )
        except subprocess.TimeoutExpired as exc:
            output = (exc.stdout or "") + (exc.stderr or "")
            if isinstance(output, bytes):
                output = output.decode(errors="replace")
            raise MNNConversionError(
                f"MNN converter timed out after {timeout:g} s on {onnx_path}", None, output
            ) from exc
        output = proc.stdout + proc.stderr
        if proc.returncode != 0:
            how = (
                f"was killed by signal {-proc.returncode}"
                if proc.returncode < 0
                else f"exited with status {proc.returncode}"
            )
            raise MNNConversionError(f"MNN converter {how} on {onnx_path}", proc.returncode, output)
        size = out.stat().st_size if out.exists() else 0
        if "Converted Success" not in output or size == 0:
            what = "wrote no model" if size == 0 else "did not report success"
            raise MNNConversionError(
                f"MNN converter {what} for {onnx_path} (it exits 0 even when it fails)",
                proc.returncode,
                output,
            )
        mnn_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(out), str(mnn_path))
    return mnn_path


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def to_mnn_var(name: str, value: Any) -> Any:
    """An MNN constant for an input: integers as int32 (MNN's index type), floats as float32.

    Raises:
        ValueError: integer values outside int32.
    """
    import MNN

    F = MNN.expr
    a = _to_numpy(value)
    if a.dtype == np.bool_:
        raise TypeError(f"input {name!r}: bool inputs are not supported; pass 0/1 integers")
    if np.issubdtype(a.dtype, np.integer):
        if a.size and (a.min() < np.iinfo(np.int32).min or a.max() > np.iinfo(np.int32).max):
            raise ConfigError(f"input {name!r} has values outside int32, MNN's index type")
        a = np.ascontiguousarray(a, dtype=np.int32)
        return F.const(a, list(a.shape), F.NCHW, F.int)
    a = np.ascontiguousarray(a, dtype=np.float32)
    return F.const(a, list(a.shape), F.NCHW, F.float)


class MNNModel:
    """A converted model loaded with MNN's Module API (``MNN.nn.load_module_from_file``).

    Integer inputs are passed as int32 (MNN's index type; values outside int32 are an error),
    floating inputs as float32.

    Args:
        path: the ``.mnn`` file.
        input_names, output_names: the graph's input and output names, in call order; default:
            those recorded by :func:`graphrec.export.export_onnx` in ``onnx_path``.
        onnx_path: the ONNX file the model was converted from (for the names).
        threads: CPU threads.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        input_names: Sequence[str] | None = None,
        output_names: Sequence[str] | None = None,
        *,
        onnx_path: str | os.PathLike | None = None,
        threads: int = 1,
    ) -> None:
        import MNN  # optional dependency (runtime only)

        if input_names is None or output_names is None:
            if onnx_path is None:
                raise ConfigError("give input_names and output_names, or onnx_path")
            meta = read_metadata(onnx_path)
            if not meta:
                import onnx

                graph = onnx.load(str(onnx_path), load_external_data=False).graph
                meta = {
                    "inputs": [i.name for i in graph.input],
                    "outputs": [o.name for o in graph.output],
                }
            input_names = meta["inputs"] if input_names is None else input_names
            output_names = meta["outputs"] if output_names is None else output_names
        self.path = Path(path)
        self.input_names = list(input_names)
        self.output_names = list(output_names)
        self.module = MNN.nn.load_module_from_file(
            str(path), self.input_names, self.output_names, thread_num=threads
        )

    def __call__(self, inputs: Mapping[str, Any] | Sequence[Any]) -> list[np.ndarray]:
        """Outputs (numpy) for inputs by name (a mapping) or in ``input_names`` order."""
        if isinstance(inputs, Mapping):
            missing = [n for n in self.input_names if n not in inputs]
            if missing:
                raise KeyError(f"missing MNN inputs {missing}")
            values = [inputs[n] for n in self.input_names]
        else:
            values = list(inputs)
            if len(values) != len(self.input_names):
                raise ConfigError(f"{len(values)} inputs for {len(self.input_names)} model inputs")
        outs = self.module.forward([to_mnn_var(n, v) for n, v in zip(self.input_names, values)])
        if not isinstance(outs, (list, tuple)):
            outs = [outs]
        return [np.array(o.read(), copy=True) for o in outs]


def load_mnn(path: str | os.PathLike, **kwargs: Any) -> MNNModel:
    """:class:`MNNModel` (same arguments)."""
    return MNNModel(path, **kwargs)
