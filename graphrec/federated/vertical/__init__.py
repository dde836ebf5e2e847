"""Vertical federated learning on the party graph (:class:`graphrec.graphs.PartyGraph`).

Parties hold different features of the same customers; one of them holds the labels. The
package aligns their rows by private set intersection (:func:`align_ids`, the ``vfl`` extra)
and trains a split model (:class:`SplitNN`: bottom models at the parties, the top model at the
label owner) with :class:`SplitLearner`, every message between parties through one
:class:`MessageLog`.
"""

from graphrec.federated.vertical.log import Message, MessageLog, payload_bytes
from graphrec.federated.vertical.psi import Alignment, align_ids
from graphrec.federated.vertical.split import SplitLearner, SplitNN

__all__ = [
    "Alignment",
    "Message",
    "MessageLog",
    "SplitLearner",
    "SplitNN",
    "align_ids",
    "payload_bytes",
]
