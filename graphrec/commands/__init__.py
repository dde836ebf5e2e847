"""Subcommands of the ``graphrec`` command line, one module each.

Each module has ``register(sub)``, which adds its parser(s) to the top-level subparsers and sets
``func`` (a callable taking the parsed namespace and returning the exit status) as a default.
"""

from __future__ import annotations

import argparse
import importlib

#: Subcommand modules, in the order ``graphrec --help`` lists them.
MODULES = [
    "data",
    "fastcover",
    "fastcover_train",
    "cf",
    "ctr",
    "mtl",
    "fl",
    "vfl",
    "ondevice",
    "walle",
    "export",
]


def register_all(sub: argparse._SubParsersAction) -> None:
    """Register every subcommand module that exists in this installation."""
    for name in MODULES:
        try:
            module = importlib.import_module(f"graphrec.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"graphrec.commands.{name}":
                raise
            continue
        module.register(sub)
