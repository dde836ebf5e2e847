"""Vertical federated learning on the party graph (:class:`graphrec.graphs.PartyGraph`).

Parties hold different features of the same customers; one of them holds the labels. The
package aligns their rows by private set intersection (:func:`align_ids`, the ``vfl`` extra)
and trains a split model (:class:`SplitNN`: bottom models at the parties, the top model at the
label owner) with :class:`SplitLearner`, every message between parties through one
:class:`MessageLog`; :class:`GaussianDP` clips and noises what is sent, and
:class:`PrivacyAccountant` (Opacus's RDP accountant, the ``vfl`` extra) reports epsilon.
:class:`PaillierLogisticRegression` trains a vertical logistic regression on Paillier-encrypted
residuals (``phe``, the ``vfl`` extra). :class:`Compression` quantizes or sparsifies the
embeddings and gradients split learning sends, with error feedback; :func:`norm_scores` and
:func:`direction_scores` attack the labels from the gradients a party receives.
:class:`Stragglers` lets the label owner use cached embeddings of late parties up to a staleness
bound, and ``SplitLearner(local_steps=Q)`` adds FedBCD local updates. :class:`EmbeddingBottom`
is a party's bottom model over id and dense columns (the CTR feature embedding, then an MLP).
"""

from graphrec.federated.vertical.attack import direction_scores, norm_scores, received_gradients
from graphrec.federated.vertical.bottoms import EmbeddingBottom
from graphrec.federated.vertical.compress import (
    Compression,
    Compressor,
    ErrorFeedback,
    Quantize,
    TopK,
    compressor,
)
from graphrec.federated.vertical.dp import GaussianDP, PrivacyAccountant, clip_rows
from graphrec.federated.vertical.log import Message, MessageLog, payload_bytes
from graphrec.federated.vertical.paillier import PaillierLogisticRegression
from graphrec.federated.vertical.psi import Alignment, align_ids
from graphrec.federated.vertical.split import SplitLearner, SplitNN
from graphrec.federated.vertical.stale import EmbeddingCache, Stragglers

__all__ = [
    "Alignment",
    "Compression",
    "Compressor",
    "EmbeddingBottom",
    "EmbeddingCache",
    "ErrorFeedback",
    "GaussianDP",
    "Message",
    "MessageLog",
    "PaillierLogisticRegression",
    "PrivacyAccountant",
    "Quantize",
    "SplitLearner",
    "SplitNN",
    "Stragglers",
    "TopK",
    "align_ids",
    "clip_rows",
    "compressor",
    "direction_scores",
    "norm_scores",
    "payload_bytes",
    "received_gradients",
]
