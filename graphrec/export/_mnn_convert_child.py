"""Subprocess entry that runs MNN's in-process ONNX converter (``_tools.mnnconvert``).

Run as a script (``python _mnn_convert_child.py -f ONNX --modelFile ... --MNNModel ...``) by
:func:`graphrec.export.export_mnn`, never imported: the converter can crash the process
(SIGSEGV) or exit without writing a model, so it runs apart from the caller. It deliberately
avoids MNN's console script and its Python wrapper package, whose logger ``pip install``s a
telemetry SDK and uploads conversion metadata (``shared/specs/ondevice.md`` section 4.1). It
imports nothing from graphrec, torch or ``MNN`` itself: only the converter extension.
"""

import sys


def main(argv: list[str]) -> int:
    try:
        import _tools  # the MNN wheel's converter extension (a top-level module)
    except ImportError as exc:
        print(f"graphrec: cannot import MNN's converter extension '_tools': {exc}", file=sys.stderr)
        return 3
    sys.stdout.flush()
    _tools.mnnconvert(["mnnconvert", *argv])  # returns True even when conversion failed
    sys.stdout.flush()
    loaded = [m for m in sys.modules if m == "MNN.tools" or m.startswith("MNN.tools.")]
    if loaded:
        print(f"graphrec: MNN.tools was imported ({loaded}); refusing the result", file=sys.stderr)
        return 4
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
