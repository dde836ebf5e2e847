r"""Split learning on the party graph: bottom models at the parties, the top model at the label
owner, embeddings up and gradients down every batch.

Party :math:`m` holds features :math:`X^{(m)}` and a bottom model :math:`f_m`; the label owner
holds the labels and the top model :math:`g`:

.. math::
    \mathbf{h}_m = f_m\big(X^{(m)}_B; \theta_m\big), \qquad
    \hat{\mathbf{y}} = g\big(\mathbf{h}_1 \oplus \dots \oplus \mathbf{h}_M; \phi\big)

with :math:`\oplus` concatenation or sum. One step on a batch :math:`B` of aligned positions:
the label owner sends :math:`B` to every party; each party sends :math:`\mathbf{h}_m` up; the
label owner computes the loss, back-propagates to :math:`\phi` and to each received
:math:`\mathbf{h}_m` and sends :math:`\partial L / \partial \mathbf{h}_m` down; each party
back-propagates it into :math:`\theta_m`. Without noise or compression the parameter gradients
are those of the centralized model :class:`SplitNN` (same parameters). With a
:class:`~graphrec.federated.vertical.dp.GaussianDP` the parties clip and noise their embeddings
before sending them and/or the label owner clips and noises the gradients it returns, and a
:class:`~graphrec.federated.vertical.dp.PrivacyAccountant` records every noisy release (one per
target and batch, for all parties at once: each party's embeddings protect its own features).
With a :class:`~graphrec.federated.vertical.compress.Compression` the embeddings and/or gradients
travel compressed (after the DP noise), optionally with error feedback at the sender; the
receiver decodes them and the log counts the compressed bytes. With ``local_steps = Q > 1``
every exchange is followed by :math:`Q - 1` local updates on stale information (FedBCD, Liu et
al., "FedBCD: A Communication-Efficient Collaborative Learning Framework for Distributed
Features", IEEE TSP 2022): each party back-propagates the gradient it received through its
fresh bottom output, the label owner updates on the embeddings it received; nothing is sent.
With :class:`~graphrec.federated.vertical.stale.Stragglers` the label owner uses its cached
embeddings, up to a staleness bound, of a party that does not answer in time
(:class:`~graphrec.federated.vertical.stale.EmbeddingCache`). Every message goes through
the learner's :class:`~graphrec.federated.vertical.log.MessageLog`; features, labels and the
id-to-row maps never leave their party.

Reference: Vepakomma et al., "Split learning for health: Distributed deep learning without
sharing raw patient data", arXiv 1812.00564; Wei et al., "Vertical Federated Learning:
Challenges, Methodologies and Experiments", arXiv 2202.04309.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from graphrec.errors import ConfigError, InputFormatError
from graphrec.federated.vertical.compress import Compression, ErrorFeedback
from graphrec.federated.vertical.dp import GaussianDP, PrivacyAccountant
from graphrec.federated.vertical.log import MessageLog
from graphrec.federated.vertical.psi import Alignment
from graphrec.federated.vertical.stale import EmbeddingCache, Stragglers
from graphrec.graphs.party import PartyGraph
from graphrec.nn.mlp import MLP
from graphrec.training import minibatches

__all__ = ["SplitLearner", "SplitNN"]


def _bce(logits: Tensor, labels: Tensor) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits.reshape(labels.shape), labels.float())


class SplitNN(torch.nn.Module):
    r"""The split model: one bottom model per party and a top model.

    Args:
        graph: the parties, their feature and embedding widths, the combination.
        bottoms: party -> its bottom model (``[B, F_m] -> [B, d_m]``); a party left out gets
            ``MLP(F_m, hidden_channels, d_m)``.
        top: the top model (``[B, graph.top_in_channels] -> [B, out_channels]``); default
            ``MLP(graph.top_in_channels, top_hidden_channels, out_channels)``.
        hidden_channels: hidden sizes of the default bottom models.
        top_hidden_channels: hidden sizes of the default top model.
        out_channels: outputs of the default top model.

    Shapes:
        - **input:** party -> ``[B, F_m]`` (rows aligned across parties)
        - **output:** ``[B, out_channels]``
    """

    def __init__(
        self,
        graph: PartyGraph,
        bottoms: Mapping[str, torch.nn.Module] | None = None,
        top: torch.nn.Module | None = None,
        *,
        hidden_channels: Sequence[int] = (16,),
        top_hidden_channels: Sequence[int] = (),
        out_channels: int = 1,
    ) -> None:
        super().__init__()
        bottoms = dict(bottoms or {})
        unknown = sorted(set(bottoms) - set(graph.parties))
        if unknown:
            raise ConfigError(f"bottoms names unknown parties {unknown}; parties: {graph.parties}")
        self.graph = graph
        for name in graph.parties:
            if name not in bottoms:
                width = graph.num_features[name]
                bottoms[name] = MLP(width, hidden_channels, graph.embedding_dim[name])
        self.bottoms = torch.nn.ModuleDict({name: bottoms[name] for name in graph.parties})
        if top is None:
            top = MLP(graph.top_in_channels, top_hidden_channels, out_channels)
        self.top = top

    def reset_parameters(self) -> None:
        """Re-initialise every bottom model and the top model that can."""
        for module in [*self.bottoms.values(), self.top]:
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()

    def combine(self, embeddings: Sequence[Tensor]) -> Tensor:
        """``h_1 ⊕ ... ⊕ h_M`` in party order: ``[B, sum d_m]`` (concat) or ``[B, d]`` (sum)."""
        if self.graph.combine == "concat":
            return torch.cat(list(embeddings), dim=-1)
        return torch.stack(list(embeddings)).sum(0)

    def forward(self, features: Mapping[str, Tensor]) -> Tensor:
        """The centralized model on aligned rows (every party's features in one place)."""
        return self.top(self.combine([self.bottoms[p](features[p]) for p in self.graph.parties]))


class SplitLearner:
    """Runs split learning between the parties in one process, every message through a log.

    Each party keeps its features (in its own row order), its bottom model and its optimizer;
    the label owner keeps the labels, the top model and its optimizer. Rows are addressed by
    their position in the aligned order of ``alignment``.

    Args:
        model: the split model (its bottoms sit at the parties, its top at the label owner).
        features: party -> float ``[N_m, F_m]``, rows in the party's local order.
        labels: the label owner's labels, ``[N_owner]`` or ``[N_owner, out]``, its local order.
        alignment: from :func:`~graphrec.federated.vertical.psi.align_ids`; None when every
            table already lists the same ids in the same order.
        loss_fn: ``(logits [B, out], labels) -> scalar``; default binary cross-entropy on logits.
        optimizer: builds each party's optimizer from its parameters (default Adam, lr 1e-3;
            the label owner's covers the top model and its own bottom model).
        log: the message log (a fresh one when None).
        dp: clipping and Gaussian noise on the embeddings and/or gradients sent (None: none).
        seed: seeds the DP noise.
        compression: compressors of the embeddings and/or gradients sent (None: none).
        local_steps: updates per exchange (``>= 1``; more are FedBCD local updates).
        stragglers: which parties answer when, and the staleness bound of cached embeddings
            (None: every party answers every step).

    Attributes:
        accountant: the :class:`~graphrec.federated.vertical.dp.PrivacyAccountant` of the run
            (None without ``dp``).
        cache: the label owner's :class:`~graphrec.federated.vertical.stale.EmbeddingCache`
            (None without ``stragglers``).
        step_count: training steps (exchanges) so far.

    Raises:
        ConfigError: features for other parties than the graph's, wrong widths, or rows
            that do not match the alignment.
        InputFormatError: a NaN or infinite feature or label (naming the party, row and column).
    """

    def __init__(
        self,
        model: SplitNN,
        features: Mapping[str, Tensor],
        labels: Tensor,
        alignment: Alignment | None = None,
        *,
        loss_fn: Callable[[Tensor, Tensor], Tensor] = _bce,
        optimizer: Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer] = (
            lambda params: torch.optim.Adam(params, lr=1e-3)
        ),
        log: MessageLog | None = None,
        dp: GaussianDP | None = None,
        seed: int = 0,
        compression: Compression | None = None,
        local_steps: int = 1,
        stragglers: Stragglers | None = None,
    ) -> None:
        graph = model.graph
        self.model, self.graph, self.owner = model, graph, graph.label_owner
        self.loss_fn = loss_fn
        self.log = MessageLog() if log is None else log
        self.dp = dp
        self.accountant = None if dp is None else PrivacyAccountant()
        self.compression = compression
        self._feedback: dict[tuple[str, str, str], ErrorFeedback] = {}
        if not isinstance(local_steps, int) or local_steps < 1:
            raise ConfigError(f"local_steps must be an integer >= 1; got {local_steps!r}")
        self.local_steps, self.stragglers = local_steps, stragglers
        self.step_count = 0
        self._stale_embeddings: dict[str, Tensor] = {}
        self._stale_gradients: dict[str, Tensor] = {}
        self._noise = torch.Generator().manual_seed(seed)
        if sorted(features) != sorted(graph.parties):
            raise ConfigError(
                f"features must hold one table per party {graph.parties}; got {sorted(features)}"
            )
        for party in graph.parties:
            x = features[party]
            if x.ndim != 2 or x.shape[1] != graph.num_features[party] or not x.is_floating_point():
                raise ConfigError(
                    f"features[{party!r}] must be a float [N, {graph.num_features[party]}] tensor;"
                    f" got {x.dtype} {list(x.shape)}"
                )
            _check_finite(f"features[{party!r}]", x)
        _check_finite("labels", labels)
        sizes = {p: features[p].shape[0] for p in graph.parties}
        sizes.setdefault(self.owner, labels.shape[0])
        if sizes[self.owner] != labels.shape[0]:
            raise ConfigError(
                f"labels has {labels.shape[0]} rows; the label owner {self.owner!r} has "
                f"{sizes[self.owner]}"
            )
        self.rows = _rows(sizes, alignment)
        self.cache = None if stragglers is None else EmbeddingCache(self.num_rows)
        self.features = dict(features)
        self.labels = labels
        self.optimizers = {
            p: optimizer(model.bottoms[p].parameters()) for p in graph.parties if p != self.owner
        }
        owner_params = list(model.top.parameters())
        if self.owner in graph.parties:
            owner_params += list(model.bottoms[self.owner].parameters())
        self.optimizers[self.owner] = optimizer(owner_params)

    @property
    def num_rows(self) -> int:
        """Number of aligned rows."""
        return len(self.rows[self.owner])

    def _check_batch(self, batch: Tensor) -> Tensor:
        batch = torch.as_tensor(batch, dtype=torch.long).reshape(-1)
        if batch.numel() == 0 or batch.min() < 0 or batch.max() >= self.num_rows:
            raise ConfigError(
                f"batch must hold positions in 0..{self.num_rows - 1} of the aligned rows"
            )
        return batch

    def _forward(self, batch: Tensor) -> tuple[Tensor, dict[str, tuple[Tensor, Tensor]]]:
        """Logits at the label owner and, per remote party, (sent, received) embeddings."""
        sent: dict[str, tuple[Tensor, Tensor]] = {}
        embeddings = []
        training = torch.is_grad_enabled()
        self._stale_embeddings = {}
        for party in self.graph.parties:
            if party == self.owner:
                embeddings.append(self._bottom(party, batch))
                continue
            cached = self._cached(party, batch) if training else None
            if cached is not None:
                embeddings.append(self._stale_embeddings.setdefault(party, cached))
                continue
            positions = self.log.send(self.owner, party, "batch", batch)
            h = self._protect("embedding", self._bottom(party, positions))
            received = self._send(party, self.owner, "embedding", h, positions)
            if training and self.cache is not None:
                self.cache.store(party, batch, received, self.step_count)
            self._stale_embeddings[party] = received
            received.requires_grad_(training)
            sent[party] = (h, received)
            embeddings.append(received)
        self._account("embedding", batch, bool(sent))
        return self.model.top(self.model.combine(embeddings)), sent

    def _cached(self, party: str, batch: Tensor) -> Tensor | None:
        """The cached embeddings the label owner uses for a party that does not answer at this
        step (None: the party answers, or is waited for)."""
        if self.stragglers is None or self.stragglers.available(self.step_count, party):
            return None
        cached = self.cache.lookup(party, batch, self.step_count, self.stragglers.staleness)
        if cached is None:
            self.cache.waits += 1
        return cached

    def _protect(self, target: str, x: Tensor) -> Tensor:
        """``x`` as released under the DP option for ``target`` (unchanged without it)."""
        if self.dp is None or target not in self.dp.targets:
            return x
        return self.dp(x, self._noise)

    def _send(self, sender: str, receiver: str, kind: str, x: Tensor, positions: Tensor) -> Tensor:
        """Send ``x`` (rows at aligned ``positions``) compressed as configured for ``kind``;
        returns what the receiver decodes."""
        comp = None if self.compression is None else getattr(self.compression, kind)
        if comp is None:
            return self.log.send(sender, receiver, kind, x)
        if self.compression.error_feedback and torch.is_grad_enabled():
            key = (sender, receiver, kind)
            feedback = self._feedback.get(key)
            if feedback is None:
                feedback = self._feedback[key] = ErrorFeedback(comp, self.num_rows)
            payload = feedback.encode(x, positions)
        else:
            payload = comp.encode(x)
        received = self.log.send(sender, receiver, kind, payload)
        return comp.decode(received, x.shape).to(x.dtype)

    def _account(self, target: str, batch: Tensor, released: bool) -> None:
        if released and self.dp is not None and target in self.dp.targets:
            self.accountant.record(self.dp.noise_multiplier, len(batch) / self.num_rows)

    def _bottom(self, party: str, positions: Tensor) -> Tensor:
        rows = torch.from_numpy(self.rows[party])[positions]
        return self.model.bottoms[party](self.features[party][rows])

    def forward_backward(self, batch: Tensor) -> float:
        """Forward and backward of one batch (every party's gradients set, nothing updated);
        returns the loss."""
        for opt in self.optimizers.values():
            opt.zero_grad()
        batch = self._check_batch(batch)
        logits, sent = self._forward(batch)
        rows = torch.from_numpy(self.rows[self.owner])[batch]
        loss = self.loss_fn(logits, self.labels[rows])
        loss.backward()
        self._stale_gradients = {}
        for party, (h, received) in sent.items():
            grad = self._protect("gradient", received.grad)
            self._stale_gradients[party] = self._send(self.owner, party, "gradient", grad, batch)
            h.backward(self._stale_gradients[party])
        self._account("gradient", batch, bool(sent))
        return loss.item()

    def step(self, batch: Tensor) -> float:
        """One split-learning update on ``batch`` (positions in the aligned order)."""
        loss = self.forward_backward(batch)
        for opt in self.optimizers.values():
            opt.step()
        batch = self._check_batch(batch)
        for _ in range(self.local_steps - 1):
            self._local_update(batch)
        self.step_count += 1
        return loss

    def _local_update(self, batch: Tensor) -> None:
        """One FedBCD local update on the last exchange's embeddings and gradients."""
        for opt in self.optimizers.values():
            opt.zero_grad()
        embeddings = [
            self._bottom(p, batch) if p == self.owner else self._stale_embeddings[p].detach()
            for p in self.graph.parties
        ]
        rows = torch.from_numpy(self.rows[self.owner])[batch]
        self.loss_fn(self.model.top(self.model.combine(embeddings)), self.labels[rows]).backward()
        self.optimizers[self.owner].step()
        for party, grad in self._stale_gradients.items():
            self._bottom(party, batch).backward(grad)
            self.optimizers[party].step()

    def fit(self, steps: int, batch_size: int, *, seed: int = 0) -> list[float]:
        """``steps`` updates on shuffled mini-batches; returns the loss of each."""
        gen = torch.Generator().manual_seed(seed)
        batches = minibatches(
            self.num_rows, batch_size, lambda n: torch.randperm(n, generator=gen), steps=steps
        )
        return [self.step(batch) for batch in batches]

    def epsilon(self) -> float:
        """:math:`\varepsilon` at ``dp.delta`` of the releases so far (infinite without DP)."""
        return float("inf") if self.accountant is None else self.accountant.epsilon(self.dp.delta)

    @torch.no_grad()
    def predict(self, batch: Tensor) -> Tensor:
        """Logits ``[B, out]`` of aligned positions ``batch`` (embeddings up, nothing down)."""
        return self._forward(self._check_batch(batch))[0]


def _check_finite(name: str, x: Tensor) -> None:
    if x.is_floating_point() and not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).nonzero()[0].tolist()
        where = f"row {bad[0]}" + (f", column {bad[1]}" if len(bad) > 1 else "")
        raise InputFormatError(
            f"{name}, {where}: {x[tuple(bad)].item()}", expected="finite values (no NaN or inf)"
        )


def _rows(sizes: dict[str, int], alignment: Alignment | None) -> dict[str, np.ndarray]:
    """Each node's local row of every aligned position, checked against its table size."""
    if alignment is None:
        if len(set(sizes.values())) > 1:
            raise ConfigError(
                f"the parties' tables differ in rows {sizes}; pass the alignment from align_ids"
            )
        n = next(iter(sizes.values()))
        return {p: np.arange(n, dtype=np.int64) for p in sizes}
    if sorted(alignment.rows) != sorted(sizes):
        raise ConfigError(
            f"alignment must map the rows of the parties {sorted(sizes)}; "
            f"got {sorted(alignment.rows)}"
        )
    for party, rows in alignment.rows.items():
        if len(rows) != len(alignment) or (
            len(rows) and (rows.min() < 0 or rows.max() >= sizes[party])
        ):
            raise ConfigError(
                f"alignment.rows[{party!r}] does not match the party's {sizes[party]} rows; "
                "align the ids of these tables again"
            )
    return {p: np.asarray(alignment.rows[p], dtype=np.int64) for p in sizes}
