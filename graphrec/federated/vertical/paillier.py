r"""Vertical logistic regression with Paillier-encrypted residuals (``phe``, the ``vfl`` extra).

Party :math:`m` holds features :math:`X^{(m)}` and weights :math:`\mathbf{w}_m`; the label owner
holds the labels :math:`y \in \{0, 1\}`, a bias :math:`b` and the Paillier key pair. The model is

.. math::
    p = \sigma\Big(b + \sum_m X^{(m)} \mathbf{w}_m\Big), \qquad
    \nabla_{\mathbf{w}_m} L = \frac{1}{B} X^{(m)\top}_B (p - y) + \lambda \mathbf{w}_m

for the mean cross-entropy :math:`L` of a batch :math:`B` plus :math:`\frac{\lambda}{2}\lVert
\mathbf{w}\rVert^2`. One step (two-party protocol without a coordinator, as in Yang et al.,
"Parallel Distributed Logistic Regression for Vertical Federated Learning without Third-Party
Coordinator", arXiv 1911.09824, with the exact sigmoid instead of its Taylor expansion):

1. the label owner sends the batch positions to every party;
2. each party sends its scores :math:`\mathbf{u}_m = X^{(m)}_B \mathbf{w}_m` (plaintext);
3. the label owner computes the residuals :math:`\mathbf{d} = p - y` and sends them encrypted,
   :math:`[\![\mathbf{d}]\!]`, under its public key;
4. each party computes :math:`[\![\mathbf{g}_m]\!] = \frac{1}{B} X^{(m)\top}_B [\![\mathbf{d}]\!]`
   homomorphically, adds a fresh random mask :math:`\mathbf{r}_m` and sends
   :math:`[\![\mathbf{g}_m + \mathbf{r}_m]\!]`;
5. the label owner decrypts and returns :math:`\mathbf{g}_m + \mathbf{r}_m`; the party removes
   the mask and updates :math:`\mathbf{w}_m` by gradient descent.

**Threat model: semi-honest**, non-colluding. A party sees only ciphertexts of the residuals, so
nothing of the labels; the label owner sees the parties' scores :math:`\mathbf{u}_m` (as split
learning sees embeddings) and masked gradients. The mask is real-valued noise of scale
``mask_scale``: it hides the gradient's value to that scale, not in the information-theoretic
sense of a mask drawn uniformly modulo the key. Ciphertexts travel as fixed-width big-endian
integers (``2 * key_bits / 8`` bytes each) plus one int32 exponent, and every message goes
through the :class:`~graphrec.federated.vertical.log.MessageLog`. With ``encrypted=False`` the
same protocol runs on plaintext (the reference the encrypted path equals up to Paillier's
fixed-point encoding, well below ``1e-6``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from graphrec.errors import ConfigError, MissingExtraError
from graphrec.federated.vertical.log import MessageLog
from graphrec.federated.vertical.nodes import check_finite
from graphrec.federated.vertical.psi import Alignment
from graphrec.federated.vertical.split import _rows
from graphrec.training import minibatches

__all__ = ["DEFAULT_KEY_BITS", "PaillierLogisticRegression"]

#: Key size for real use: 2048-bit moduli (about 112-bit security, NIST SP 800-57).
DEFAULT_KEY_BITS = 2048


def _phe() -> Any:
    try:
        import phe
    except ImportError as exc:
        raise MissingExtraError("Paillier encryption", "vfl") from exc
    return phe


def _pack(values: list[Any], key_bits: int) -> tuple[bytes, np.ndarray]:
    """Ciphertexts as sent: fixed-width integers and their exponents."""
    width = 2 * key_bits // 8
    data = b"".join(v.ciphertext().to_bytes(width, "big") for v in values)
    return data, np.array([v.exponent for v in values], dtype=np.int32)


def _unpack(public_key: Any, payload: tuple[bytes, np.ndarray]) -> list[Any]:
    phe = _phe()
    data, exponents = payload
    width = len(data) // len(exponents)
    return [
        phe.EncryptedNumber(
            public_key, int.from_bytes(data[i * width : (i + 1) * width], "big"), int(e)
        )
        for i, e in enumerate(exponents)
    ]


class PaillierLogisticRegression:
    """Vertical logistic regression, the label owner's residuals Paillier-encrypted.

    Args:
        features: party -> float ``[N_m, F_m]`` (the label owner may hold features too), rows in
            the party's local order.
        labels: the label owner's 0/1 labels ``[N_owner]``, its local order.
        label_owner: the party holding labels, bias and key pair.
        alignment: from :func:`~graphrec.federated.vertical.psi.align_ids`; None when every
            table lists the same ids in the same order.
        lr: gradient-descent step size (> 0).
        l2: weight decay :math:`\\lambda \\ge 0` (not on the bias).
        key_bits: Paillier modulus size (:data:`DEFAULT_KEY_BITS` for real use; small keys only
            in tests).
        mask_scale: standard deviation of the parties' gradient masks (> 0).
        encrypted: False runs the same protocol in plaintext.
        log: the message log (a fresh one when None).
        seed: seeds the masks (each party draws its own from it).

    Attributes:
        weights: party -> ``[F_m]`` float64 weights (zeros at the start).
        bias: the label owner's bias.
    """

    def __init__(
        self,
        features: Mapping[str, Tensor | np.ndarray],
        labels: Tensor | np.ndarray,
        label_owner: str,
        alignment: Alignment | None = None,
        *,
        lr: float = 0.1,
        l2: float = 0.0,
        key_bits: int = DEFAULT_KEY_BITS,
        mask_scale: float = 1.0,
        encrypted: bool = True,
        log: MessageLog | None = None,
        seed: int = 0,
    ) -> None:
        if not lr > 0:
            raise ConfigError(f"lr must be > 0; got {lr}")
        if not l2 >= 0:
            raise ConfigError(f"l2 must be >= 0; got {l2}")
        if not mask_scale > 0:
            raise ConfigError(f"mask_scale must be > 0; got {mask_scale}")
        if key_bits < 128 or key_bits % 8:
            raise ConfigError(f"key_bits must be a multiple of 8, at least 128; got {key_bits}")
        if not features:
            raise ConfigError("features must hold at least one party's table")
        self.features: dict[str, np.ndarray] = {}
        for party, x in features.items():
            x = torch.as_tensor(x, dtype=torch.float64)
            if x.ndim != 2:
                raise ConfigError(f"features[{party!r}] must be [N, F]; got {list(x.shape)}")
            check_finite(f"features[{party!r}]", x)
            self.features[party] = x.numpy()
        labels = torch.as_tensor(labels, dtype=torch.float64).reshape(-1)
        check_finite("labels", labels)
        if not bool(((labels == 0) | (labels == 1)).all()):
            raise ConfigError("labels must be 0 or 1")
        self.labels = labels.numpy()
        self.owner = label_owner
        sizes = {p: x.shape[0] for p, x in self.features.items()}
        if sizes.setdefault(label_owner, len(self.labels)) != len(self.labels):
            raise ConfigError(
                f"labels has {len(self.labels)} rows; the label owner {label_owner!r} has "
                f"{sizes[label_owner]}"
            )
        self.rows = _rows(sizes, alignment)
        self.parties = [p for p in self.features if p != label_owner]
        if not self.parties:
            raise ConfigError(
                f"features must hold a party other than the label owner {label_owner!r}"
            )
        self.lr, self.l2, self.mask_scale, self.encrypted = lr, l2, mask_scale, encrypted
        self.key_bits = key_bits
        self.log = MessageLog() if log is None else log
        self.weights = {p: np.zeros(x.shape[1]) for p, x in self.features.items()}
        self.bias = 0.0
        seeds = np.random.SeedSequence(seed).spawn(len(self.parties))
        self._masks = {
            p: np.random.default_rng(s) for p, s in zip(self.parties, seeds, strict=True)
        }
        self._public_key = self._private_key = None
        if encrypted:
            self._public_key, self._private_key = _phe().generate_paillier_keypair(
                n_length=key_bits
            )
            n = self._public_key.n.to_bytes(key_bits // 8, "big")
            for party in self.parties:
                self.log.send(self.owner, party, "public_key", n)

    @property
    def num_rows(self) -> int:
        """Number of aligned rows."""
        return len(self.rows[self.owner])

    def _x(self, party: str, positions: np.ndarray) -> np.ndarray:
        return self.features[party][self.rows[party][positions]]

    def _scores(self, batch: np.ndarray) -> np.ndarray:
        """The label owner's logits of ``batch``, the parties' scores received through the log."""
        z = np.full(len(batch), self.bias)
        if self.owner in self.features:
            z = z + self._x(self.owner, batch) @ self.weights[self.owner]
        for party in self.parties:
            positions = self.log.send(self.owner, party, "batch", batch)
            z = z + self.log.send(
                party, self.owner, "score", self._x(party, positions) @ self.weights[party]
            )
        return z

    def _party_gradient(self, party: str, positions: np.ndarray, residual: Any) -> np.ndarray:
        """Steps 3-5 for one party: its gradient of the mean loss (without weight decay)."""
        x = self._x(party, positions)
        mask = self._masks[party].normal(0.0, self.mask_scale, x.shape[1])
        if not self.encrypted:
            masked = self.log.send(
                party, self.owner, "masked_gradient", x.T @ residual / len(x) + mask
            )
            return self.log.send(self.owner, party, "gradient", masked) - mask
        enc = _unpack(self._public_key, residual)
        sums = [sum((d * float(v) for d, v in zip(enc, col, strict=True)), 0) for col in x.T]
        sent = [s * (1.0 / len(x)) + float(m) for s, m in zip(sums, mask, strict=True)]
        received = _unpack(
            self._public_key,
            self.log.send(party, self.owner, "masked_gradient", _pack(sent, self.key_bits)),
        )
        masked = np.array([self._private_key.decrypt(v) for v in received])
        return self.log.send(self.owner, party, "gradient", masked) - mask

    def step(self, batch: Tensor | np.ndarray) -> float:
        """One gradient-descent update on ``batch`` (aligned positions); returns the batch loss
        before the update."""
        batch = np.asarray(batch, dtype=np.int64).reshape(-1)
        if batch.size == 0 or batch.min() < 0 or batch.max() >= self.num_rows:
            raise ConfigError(f"batch must hold positions in 0..{self.num_rows - 1}")
        z = self._scores(batch)
        y = self.labels[self.rows[self.owner][batch]]
        loss = float(np.mean(np.logaddexp(0.0, z) - y * z))
        residual = 1.0 / (1.0 + np.exp(-z)) - y
        grads = {}
        if self.owner in self.features:
            grads[self.owner] = self._x(self.owner, batch).T @ residual / len(batch)
        for party in self.parties:
            if self.encrypted:
                enc = [self._public_key.encrypt(float(d)) for d in residual]
                payload = _pack(enc, self.key_bits)
            else:
                payload = residual
            received = self.log.send(self.owner, party, "residual", payload)
            grads[party] = self._party_gradient(party, batch, received)
        self.bias -= self.lr * float(residual.mean())
        for party, grad in grads.items():
            self.weights[party] = self.weights[party] - self.lr * (
                grad + self.l2 * self.weights[party]
            )
        return loss

    def fit(self, steps: int, batch_size: int, *, seed: int = 0) -> list[float]:
        """``steps`` updates on shuffled mini-batches; returns the loss of each."""
        gen = torch.Generator().manual_seed(seed)
        batches = minibatches(
            self.num_rows, batch_size, lambda n: torch.randperm(n, generator=gen), steps=steps
        )
        return [self.step(batch.numpy()) for batch in batches]

    def decision_function(self, batch: Tensor | np.ndarray) -> np.ndarray:
        """Logits of aligned positions ``batch`` at the label owner (scores up, nothing down)."""
        return self._scores(np.asarray(batch, dtype=np.int64).reshape(-1))
