"""Settings and model access shared by the parts of ``benchmarks/fastcover.py``.

Nothing here imports torch: the FastCover subpackage is imported on first use (:func:`gnn`), so
the baselines' processes of part (b) do not pay for it in their peak memory.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import _common as bench

#: The FastCover subpackage - the one line to change if it is renamed. Imported lazily (it pulls
#: in torch, ~300 MiB of RSS that must not count in the baselines' peak memory in part (b)).
GNN = "combinatorial.gnn"

THREADS = 2  # torch threads (--threads; set by fastcover.main)
KS = (1, 8, 32, 128, 1024)
DS = (1, 2, 3)
GIB, MIB = 2**30, 2**20
LOADS = bench.LoadLog()  # 1-min load average after each grid cell / scaling run
#: The six held-out directed test graphs of the spec (section 7).
TEST_GRAPHS = (
    "soc-gplus",
    "soc-epinions",
    "soc-brightkite",
    "soc-loc-brightkite",
    "soc-slashdot",
    "soc-douban",
)
METHODS = (
    "greedy",
    "fastcover",
    "fastcover_r8",
    "ris",
    "top_degree",
    "top_soft_coverage",
    "top_ball_size",
    "degree_discount",
    "heu",
)
LABELS = {"fastcover": "fastcover (1 pass)", "fastcover_r8": "fastcover (rounds=8)"}


def gnn(module: str = "inference") -> ModuleType:
    """A module of the FastCover subpackage (imports torch on first use; ``THREADS`` threads)."""
    torch = importlib.import_module("torch")
    if torch.get_num_threads() != THREADS:
        torch.set_num_threads(THREADS)
    return importlib.import_module(f"{GNN}.{module}")


def load_model(d: int, weights_dir: str | None) -> Any:
    """The pretrained model for ``d`` from ``weights_dir``; None: a fresh one (seed 0)."""
    if weights_dir is None:
        torch = importlib.import_module("torch")
        torch.manual_seed(0)
        return gnn("model").FastCover().eval()
    return gnn().load_pretrained(d, weights_dir=weights_dir)


def load_note() -> str:
    """The machine's load during the run (other jobs share the cores), then reset."""
    return LOADS.note(THREADS)


def command() -> str:
    """The command line of this run."""
    return bench.command_line(".venv/bin/python benchmarks/fastcover.py")


def publish(section: str, heading: str, text: str, tables: str, tag: str) -> None:
    """Print a part's notes and tables; a full run (empty ``tag``) also writes its section."""
    print("\n" + text + "\n\n" + tables + "\n")
    if tag:
        print(f"({tag[1:]} run: BENCHMARKS.md not updated)")
    else:
        bench.update_benchmarks_md(section, heading + "\n\n" + text + "\n\n" + tables)
