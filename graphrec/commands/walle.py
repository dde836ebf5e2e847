"""``graphrec walle``: the Walle device-cloud pipeline (event triggers, task packages, rollout)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``walle`` subcommand group to the top-level parser."""
    group = sub.add_parser(
        "walle", help="Walle on the device: event triggers, task packages, rollout simulation"
    )
    group_sub = group.add_subparsers(dest="walle_command", metavar="ACTION")
    group.set_defaults(func=lambda _: (group.print_help(), 2)[1])
    del group_sub  # the actions register here
