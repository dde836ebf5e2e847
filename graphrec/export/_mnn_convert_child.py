"""Subprocess entry that runs MNN's in-process ONNX converter (``_tools.mnnconvert``).

Run as a script (``python _mnn_convert_child.py -f ONNX --modelFile ... --MNNModel ...``) by
:func:`graphrec.export.export_mnn`, never imported: the converter can crash the process
(SIGSEGV) or exit without writing a model, so it runs apart from the caller. It deliberately
avoids MNN's console script and its Python wrapper package, whose logger ``pip install``s a
telemetry SDK and uploads conversion metadata (``docs/mobile-export-findings.md``), and
it blocks that package's import before loading the converter. It imports nothing from graphrec,
torch or ``MNN`` itself: only the converter extension.
"""

import sys


def main(argv: list[str]) -> int:
    # a None entry makes any import of MNN's wrapper package fail at once: should a future
    # wheel's extension try to load it, the conversion fails before its logger can run pip
    sys.modules["MNN.tools"] = None
    try:
        import _tools  # the MNN wheel's converter extension (a top-level module)
    except ImportError as exc:
        print(f"graphrec: cannot import MNN's converter extension '_tools': {exc}", file=sys.stderr)
        return 3
    sys.stdout.flush()
    _tools.mnnconvert(["mnnconvert", *argv])  # returns True even when conversion failed
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
