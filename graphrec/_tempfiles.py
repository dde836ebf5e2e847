"""Remove the ``propagate`` modules PyTorch Geometric writes to the temp folder.

PyG renders a ``<module>_<Layer>_propagate_XXXX.py`` file (about 12 KB) into the system temp
folder for every ``MessagePassing`` class it instantiates in a process and never deletes it
(``torch_geometric.template.module_from_template``). graphrec removes the ones its process
created when the interpreter exits; the loaded modules keep working until then.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import tempfile

_SUFFIXES = ("_propagate", "_edge_updater")


def remove_pyg_templates() -> list[str]:
    """Delete this process's PyG template files from the temp folder; returns their paths."""
    tmp = os.path.realpath(tempfile.gettempdir())
    removed = []
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if (
            path
            and name.endswith(_SUFFIXES)
            and os.path.dirname(os.path.realpath(path)) == tmp
            and os.path.basename(path).startswith(name + "_")
        ):
            with contextlib.suppress(OSError):
                os.remove(path)
                removed.append(path)
    return removed


atexit.register(remove_pyg_templates)
