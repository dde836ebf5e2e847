"""Vertical federated learning on the party graph (:class:`graphrec.graphs.PartyGraph`).

Parties hold different features of the same customers; one of them holds the labels. The
package aligns their rows by private set intersection (:func:`align_ids`, the ``vfl`` extra)
and routes every message between parties through one :class:`MessageLog`.
"""

from graphrec.federated.vertical.log import Message, MessageLog, payload_bytes
from graphrec.federated.vertical.psi import Alignment, align_ids

__all__ = ["Alignment", "Message", "MessageLog", "align_ids", "payload_bytes"]
