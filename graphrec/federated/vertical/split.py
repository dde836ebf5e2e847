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
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from graphrec.errors import ConfigError
from graphrec.federated.vertical.compress import Compression, ErrorFeedback
from graphrec.federated.vertical.dp import GaussianDP, PrivacyAccountant
from graphrec.federated.vertical.log import MessageLog
from graphrec.federated.vertical.nodes import PartyNode, check_finite, node_generator
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
    """Runs split learning as the label owner, every message to and from the parties through a log.

    The label owner keeps the labels, the top model (and its own bottom model, if it holds
    features) and their optimizer; every other party is a
    :class:`~graphrec.federated.vertical.nodes.PartyNode` that keeps its features (in its own
    row order), its bottom model and its optimizer. Rows are addressed by their position in the
    aligned order of ``alignment``. In training the parties derive each step's batch from a
    schedule the label owner announces (:meth:`announce`: a seed and a counter, 16 bytes per
    party), so batch positions travel only with ``send_batch=True`` and in :meth:`predict`.

    Args:
        model: the split model (its bottoms sit at the parties, its top at the label owner).
        features: party -> float ``[N_m, F_m]``, rows in the party's local order (every party
            but those in ``parties``).
        labels: the label owner's labels, ``[N_owner]`` or ``[N_owner, out]``, its local order.
        alignment: from :func:`~graphrec.federated.vertical.psi.align_ids`; None when every
            table already lists the same ids in the same order.
        loss_fn: ``(logits [B, out], labels) -> scalar``; default binary cross-entropy on logits.
        optimizer: builds each party's optimizer from its parameters (default Adam, lr 1e-3;
            the label owner's covers the top model and its own bottom model).
        log: the message log (a fresh one when None).
        dp: clipping and Gaussian noise on the embeddings and/or gradients sent (None: none).
        seed: seeds the DP noise (each node draws from its own generator).
        compression: compressors of the embeddings and/or gradients sent (None: none).
        local_steps: updates per exchange (``>= 1``; more are FedBCD local updates).
        stragglers: which parties answer when, and the staleness bound of cached embeddings
            (None: every party answers every step).
        parties: party -> a node running elsewhere with the interface of
            :class:`~graphrec.federated.vertical.nodes.PartyNode` (``embed``, ``backward``,
            ``update``, ``local_update``); these parties need no entry in ``features``. Such a
            node may also have ``schedule(values)`` (gets what :meth:`announce` sends) and
            ``prefetch(batch, train=)`` (told before a step which parties will be asked).

    Attributes:
        parties: remote party -> its node.
        accountant: the :class:`~graphrec.federated.vertical.dp.PrivacyAccountant` of the run
            (None without ``dp``).
        cache: the label owner's :class:`~graphrec.federated.vertical.stale.EmbeddingCache`
            (None without ``stragglers``).
        feedback: remote party -> the error feedback of the gradients returned to it (with
            gradient compression and error feedback).
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
        parties: Mapping[str, PartyNode] | None = None,
    ) -> None:
        graph = model.graph
        self.model, self.graph, self.owner = model, graph, graph.label_owner
        self.loss_fn = loss_fn
        self.log = MessageLog() if log is None else log
        self.dp = dp
        self.accountant = None if dp is None else PrivacyAccountant()
        self.compression = compression or Compression(error_feedback=False)
        if not isinstance(local_steps, int) or local_steps < 1:
            raise ConfigError(f"local_steps must be an integer >= 1; got {local_steps!r}")
        self.local_steps, self.stragglers = local_steps, stragglers
        self.step_count = 0
        remote = dict(parties or {})
        unknown = sorted((set(remote) - set(graph.parties)) | ({self.owner} & set(remote)))
        if unknown:
            raise ConfigError(f"parties names no remote party of the graph: {unknown}")
        local = [p for p in graph.parties if p not in remote]
        if sorted(features) != sorted(local):
            raise ConfigError(
                f"features must hold one table per party {local}; got {sorted(features)}"
            )
        for party in local:
            x = features[party]
            if x.ndim != 2 or x.shape[1] != graph.num_features[party] or not x.is_floating_point():
                raise ConfigError(
                    f"features[{party!r}] must be a float [N, {graph.num_features[party]}] tensor;"
                    f" got {x.dtype} {list(x.shape)}"
                )
            check_finite(f"features[{party!r}]", x)
        check_finite("labels", labels)
        sizes = {p: features[p].shape[0] for p in local}
        sizes.setdefault(self.owner, labels.shape[0])
        if sizes[self.owner] != labels.shape[0]:
            raise ConfigError(
                f"labels has {labels.shape[0]} rows; the label owner {self.owner!r} has "
                f"{sizes[self.owner]}"
            )
        rows = _rows(sizes, alignment)
        self.rows = torch.from_numpy(rows[self.owner])
        self.cache = None if stragglers is None else EmbeddingCache(self.num_rows)
        self.features = features.get(self.owner)
        self.labels = labels
        index = {p: i for i, p in enumerate(graph.parties)}
        self.parties: dict[str, PartyNode] = {}
        for party in graph.parties:
            if party == self.owner:
                continue
            self.parties[party] = remote.get(party) or PartyNode(
                party,
                model.bottoms[party],
                features[party],
                rows[party],
                optimizer,
                dp=dp,
                generator=node_generator(seed, index[party]),
                compressor=self.compression.embedding,
                error_feedback=self.compression.error_feedback,
                gradient_compressor=self.compression.gradient,
            )
        self._noise = node_generator(seed, index.get(self.owner, len(graph.parties)))
        self.feedback: dict[str, ErrorFeedback] = {}
        owner_params = list(model.top.parameters())
        if self.owner in graph.parties:
            owner_params += list(model.bottoms[self.owner].parameters())
        self.optimizer = optimizer(owner_params)
        self._received: dict[str, Tensor] = {}
        self._answered: list[str] = []

    @property
    def num_rows(self) -> int:
        """Number of aligned rows."""
        return len(self.rows)

    def _check_batch(self, batch: Tensor) -> Tensor:
        batch = torch.as_tensor(batch, dtype=torch.long).reshape(-1)
        if batch.numel() == 0 or batch.min() < 0 or batch.max() >= self.num_rows:
            raise ConfigError(
                f"batch must hold positions in 0..{self.num_rows - 1} of the aligned rows"
            )
        return batch

    def announce(self, *values: int) -> None:
        """Send every remote party the integers (a seed, a counter) from which it derives the
        batches of the steps that follow (taken with ``send_batch=False``)."""
        for party, node in self.parties.items():
            schedule = torch.tensor(values, dtype=torch.long)
            schedule = self.log.send(self.owner, party, "schedule", schedule)
            if hasattr(node, "schedule"):  # a node in another process (it is sent there)
                node.schedule(schedule)

    def _prefetch(self, batch: Tensor, training: bool) -> None:
        """Tell every remote node with a ``prefetch`` method (a node in another process) that
        it will be asked for the embeddings of ``batch`` at this step, before any party is, so
        that one round trip asks them all. Only parties that answer are told (in training,
        those ``stragglers.available`` lists)."""
        for party, node in self.parties.items():
            if hasattr(node, "prefetch") and (
                not training
                or self.stragglers is None
                or self.stragglers.available(self.step_count, party)
            ):
                node.prefetch(batch, train=training)

    def _forward(self, batch: Tensor, send_batch: bool) -> tuple[Tensor, dict[str, Tensor]]:
        """Logits at the label owner and, per party that answered, its received embeddings."""
        fresh: dict[str, Tensor] = {}
        embeddings = []
        training = torch.is_grad_enabled()
        self._received = {}
        self._prefetch(batch, training)
        for party in self.graph.parties:
            if party == self.owner:
                embeddings.append(self._own_embedding(batch))
                continue
            cached = self._cached(party, batch) if training else None
            if cached is not None:
                embeddings.append(self._received.setdefault(party, cached))
                continue
            positions = self.log.send(self.owner, party, "batch", batch) if send_batch else batch
            payload = self.parties[party].embed(positions, train=training)
            received = self.log.send(party, self.owner, "embedding", payload, batch)
            comp = self.compression.embedding
            if comp is not None:
                shape = torch.Size([len(batch), self.graph.embedding_dim[party]])
                received = comp.decode(received, shape)
            if training and self.cache is not None:
                self.cache.store(party, batch, received, self.step_count)
            self._received[party] = received
            received.requires_grad_(training)
            fresh[party] = received
            embeddings.append(received)
        self._account("embedding", batch, bool(fresh))
        return self.model.top(self.model.combine(embeddings)), fresh

    def _own_embedding(self, batch: Tensor) -> Tensor:
        return self.model.bottoms[self.owner](self.features[self.rows[batch]])

    def _cached(self, party: str, batch: Tensor) -> Tensor | None:
        """The cached embeddings the label owner uses for a party that does not answer at this
        step (None: the party answers, or is waited for)."""
        if self.stragglers is None or self.stragglers.available(self.step_count, party):
            return None
        cached = self.cache.lookup(party, batch, self.step_count, self.stragglers.staleness)
        if cached is None:
            self.cache.waits += 1
        return cached

    def _gradient_payload(self, party: str, grad: Tensor, batch: Tensor) -> Any:
        """The gradient returned to ``party``: clipped and noised under DP, then compressed."""
        if self.dp is not None and "gradient" in self.dp.targets:
            grad = self.dp(grad, self._noise)
        comp = self.compression.gradient
        if comp is None:
            return grad
        if not self.compression.error_feedback:
            return comp.encode(grad)
        if party not in self.feedback:
            self.feedback[party] = ErrorFeedback(comp, self.num_rows)
        return self.feedback[party].encode(grad, batch)

    def _account(self, target: str, batch: Tensor, released: bool) -> None:
        if released and self.dp is not None and target in self.dp.targets:
            self.accountant.record(self.dp.noise_multiplier, len(batch) / self.num_rows)

    def forward_backward(self, batch: Tensor, *, send_batch: bool = True) -> float:
        """Forward and backward of one batch (the gradients of the label owner and of every
        party that answered set, nothing updated); returns the loss. ``send_batch=False``: the
        parties know the batch from the announced schedule."""
        self.optimizer.zero_grad()
        batch = self._check_batch(batch)
        logits, fresh = self._forward(batch, send_batch)
        loss = self.loss_fn(logits, self.labels[self.rows[batch]])
        loss.backward()
        for party, received in fresh.items():
            payload = self._gradient_payload(party, received.grad, batch)
            received_payload = self.log.send(self.owner, party, "gradient", payload, batch)
            self.parties[party].backward(received_payload, batch)
        self._account("gradient", batch, bool(fresh))
        self._answered = list(fresh)
        return loss.item()

    def step(self, batch: Tensor, *, send_batch: bool = True) -> float:
        """One split-learning update on ``batch`` (positions in the aligned order)."""
        batch = self._check_batch(batch)
        loss = self.forward_backward(batch, send_batch=send_batch)
        self.optimizer.step()
        for party in self._answered:
            self.parties[party].update()
        for _ in range(self.local_steps - 1):
            self._local_update(batch)
        self.step_count += 1
        return loss

    def _local_update(self, batch: Tensor) -> None:
        """One FedBCD local update on the last exchange's embeddings and gradients."""
        self.optimizer.zero_grad()
        embeddings = [
            self._own_embedding(batch) if p == self.owner else self._received[p].detach()
            for p in self.graph.parties
        ]
        logits = self.model.top(self.model.combine(embeddings))
        self.loss_fn(logits, self.labels[self.rows[batch]]).backward()
        self.optimizer.step()
        for party in self._answered:
            self.parties[party].local_update(batch)

    def fit(self, steps: int, batch_size: int, *, seed: int = 0) -> list[float]:
        """``steps`` updates on shuffled mini-batches; returns the loss of each. The parties
        derive the batches from the announced ``(seed, batch_size)``."""
        self.announce(seed, batch_size)
        gen = torch.Generator().manual_seed(seed)
        batches = minibatches(
            self.num_rows, batch_size, lambda n: torch.randperm(n, generator=gen), steps=steps
        )
        return [self.step(batch, send_batch=False) for batch in batches]

    def epsilon(self) -> float:
        r""":math:`\varepsilon` at ``dp.delta`` of the releases so far (infinite without DP)."""
        return float("inf") if self.accountant is None else self.accountant.epsilon(self.dp.delta)

    @torch.no_grad()
    def predict(self, batch: Tensor) -> Tensor:
        """Logits ``[B, out]`` of aligned positions ``batch`` (batch down, embeddings up)."""
        return self._forward(self._check_batch(batch), True)[0]

    def state_dict(self) -> dict[str, Any]:
        """The training state of the label owner and of the parties in this process (weights,
        optimizers, noise generators, error feedback, embedding cache, privacy accountant, the
        message log and the step count): :meth:`load_state_dict` on a learner built the same
        way continues the run with the same numbers."""
        owner = [self.model.top] + (
            [self.model.bottoms[self.owner]] if self.owner in self.graph.parties else []
        )
        return {
            "owner": [module.state_dict() for module in owner],
            "optimizer": self.optimizer.state_dict(),
            "generator": self._noise.get_state(),
            "feedback": {p: fb.residual for p, fb in self.feedback.items()},
            "parties": {
                p: node.state_dict()
                for p, node in self.parties.items()
                if hasattr(node, "state_dict")
            },
            "cache": None if self.cache is None else self.cache.state_dict(),
            "accountant": None if self.accountant is None else self.accountant.state_dict(),
            "log": self.log.state_dict(),
            "step_count": self.step_count,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        owner = [self.model.top] + (
            [self.model.bottoms[self.owner]] if self.owner in self.graph.parties else []
        )
        for module, saved in zip(owner, state["owner"], strict=True):
            module.load_state_dict(saved)
        self.optimizer.load_state_dict(state["optimizer"])
        self._noise.set_state(state["generator"])
        self.feedback = {}
        for party, residual in state["feedback"].items():
            self.feedback[party] = ErrorFeedback(self.compression.gradient, self.num_rows)
            self.feedback[party].residual = residual
        for party, saved in state["parties"].items():
            self.parties[party].load_state_dict(saved)
        if self.cache is not None:
            self.cache.load_state_dict(state["cache"])
        if self.accountant is not None:
            self.accountant.load_state_dict(state["accountant"])
        self.log.load_state_dict(state["log"])
        self.step_count = state["step_count"]


def _rows(sizes: dict[str, int], alignment: Alignment | None) -> dict[str, np.ndarray]:
    """Each node's local row of every aligned position, checked against its table size."""
    if alignment is None:
        if len(set(sizes.values())) > 1:
            raise ConfigError(
                f"the parties' tables differ in rows {sizes}; pass the alignment from align_ids"
            )
        n = next(iter(sizes.values()))
        return {p: np.arange(n, dtype=np.int64) for p in sizes}
    if not set(sizes) <= set(alignment.rows):
        raise ConfigError(
            f"alignment must map the rows of the parties {sorted(sizes)}; "
            f"got {sorted(alignment.rows)}"
        )
    for party in sizes:
        rows = alignment.rows[party]
        if len(rows) != len(alignment) or (
            len(rows) and (rows.min() < 0 or rows.max() >= sizes[party])
        ):
            raise ConfigError(
                f"alignment.rows[{party!r}] does not match the party's {sizes[party]} rows; "
                "align the ids of these tables again"
            )
    return {p: np.asarray(alignment.rows[p], dtype=np.int64) for p in sizes}
