r"""ID alignment for vertical FL by private set intersection (ECDH PSI, ``openmined-psi``).

The parties of a vertical federation hold rows keyed by the same kind of id (customer, user,
device). Before training they agree on the rows they share, in one order, without showing each
other the rest of their ids. :func:`align_ids` runs OpenMined's ECDH-based PSI (Diffie-Hellman
style commutative encryption of hashed ids on an elliptic curve; ``RAW`` encoding, so the
intersection is exact) between the label owner and each other party in turn:

1. the label owner sends the size of its current candidate set;
2. the party (PSI server) encrypts its ids with its secret key and sends them (setup message);
3. the label owner (PSI client) sends its candidates encrypted with its own key (request); the
   party re-encrypts them (response) and the label owner finds which candidates the party holds.
   The candidates shrink to that intersection.

After the last party the label owner sends the intersection, in its own row order, to every
party; each party maps it to its local rows. Every message goes through a
:class:`~graphrec.federated.vertical.log.MessageLog`.

**Threat model: semi-honest** (honest-but-curious) parties that follow the protocol and do not
collude. Each passive party learns the final intersection and the size of the label owner's
candidate set when its turn comes; it sees the other ids only under the label owner's key. The
label owner learns the final intersection, each party's number of ids (the size of its setup
message) and, with more than two parties, the intermediate intersections of the chain (its ids
shared with the first party, with the first two, ...). A
malicious party could put ids it does not own into its set to test membership; PSI alone does not
prevent that. Reference: Angelou et al., "Asymmetric Private Set Intersection with Applications
to Contact Tracing and Private Vertical Federated Machine Learning" (OpenMined, 2020).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from graphrec.errors import ConfigError, MissingExtraError
from graphrec.federated.vertical.log import MessageLog

__all__ = ["Alignment", "align_ids"]


def _psi() -> Any:
    """Import ``openmined-psi`` or explain how to install it."""
    try:
        import private_set_intersection.python as psi
    except ImportError as exc:
        raise MissingExtraError("private set intersection", "vfl") from exc
    return psi


@dataclass(frozen=True)
class Alignment:
    """The shared rows of every party, in one order.

    Attributes:
        ids: the intersection as strings, in the label owner's row order (aligned position
            ``k`` is ``ids[k]``).
        rows: party -> int64 ``[len(ids)]`` local row of each aligned position.
    """

    ids: tuple[str, ...]
    rows: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.ids)


def _keys(party: str, ids: Sequence[Hashable]) -> dict[str, int]:
    """``str(id) -> local row``; duplicates are an error naming the party."""
    keys = [str(i) for i in np.asarray(ids, dtype=object).reshape(-1).tolist()]
    index = {k: row for row, k in enumerate(keys)}
    if len(index) != len(keys):
        dup, times = next((k, c) for k, c in Counter(keys).items() if c > 1)
        raise ConfigError(
            f"party_ids[{party!r}]: id {dup!r} appears {times} times; expected unique ids"
        )
    return index


def align_ids(
    party_ids: Mapping[str, Sequence[Hashable]],
    label_owner: str,
    *,
    log: MessageLog | None = None,
) -> Alignment:
    """Align the parties' rows on the intersection of their ids by ECDH PSI (see the module).

    Args:
        party_ids: party -> its ids, one per local row (ints or strings, compared as ``str``;
            each party's ids unique).
        label_owner: the party that runs the PSI client and fixes the order.
        log: records every message (a fresh log when None).

    Returns:
        :class:`Alignment`: the intersection in the label owner's row order and each party's
        local rows of it.

    Raises:
        ConfigError: unknown ``label_owner``, duplicate ids in a party, or no id shared with a
            party (naming it).
        MissingExtraError: ``openmined-psi`` (the ``vfl`` extra) is not installed.

    Complexity: :math:`O(\\sum_m |S_m|)` elliptic-curve operations and messages of that many
    points.
    """
    if label_owner not in party_ids:
        raise ConfigError(
            f"label_owner must be one of the parties {list(party_ids)}; got {label_owner!r}"
        )
    psi = _psi()
    log = MessageLog() if log is None else log
    index = {party: _keys(party, ids) for party, ids in party_ids.items()}
    candidates = list(index[label_owner])  # the label owner's ids, in its row order
    if not candidates:
        raise ConfigError(f"party_ids[{label_owner!r}] is empty; the label owner needs ids")
    for party in party_ids:
        if party == label_owner:
            continue
        size = log.send(label_owner, party, "psi_size", np.array([len(candidates)], np.int64))
        server = psi.server.CreateWithNewKey(True)
        setup = server.CreateSetupMessage(
            0.0, int(size[0]), list(index[party]), psi.DataStructure.RAW
        )
        setup = log.send(party, label_owner, "psi_setup", setup)
        client = psi.client.CreateWithNewKey(True)
        request = log.send(label_owner, party, "psi_request", client.CreateRequest(candidates))
        response = log.send(party, label_owner, "psi_response", server.ProcessRequest(request))
        shared = sorted(client.GetIntersection(setup, response))
        if not shared:
            whom = f"the label owner {label_owner!r}"
            if len(candidates) < len(index[label_owner]):
                whom = f"the ids {label_owner!r} shares with the parties before it"
            raise ConfigError(f"party_ids[{party!r}] shares no id with {whom}")
        candidates = [candidates[i] for i in shared]
    rows = {label_owner: np.array([index[label_owner][k] for k in candidates], dtype=np.int64)}
    for party in party_ids:
        if party != label_owner:
            received = log.send(
                label_owner, party, "aligned_ids", tuple(k.encode() for k in candidates)
            )
            local = index[party]
            rows[party] = np.array([local[k.decode()] for k in received], dtype=np.int64)
    return Alignment(tuple(candidates), {p: rows[p] for p in party_ids})
