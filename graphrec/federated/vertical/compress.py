r"""Compression of the tensors split learning sends: quantization and top-k sparsification, with
error feedback.

A compressor turns a float tensor :math:`X` (``[B, d]``: embeddings going up or gradients coming
down) into the payload that is sent, and the receiver decodes it into :math:`\hat{X}`:

- :class:`Quantize` (``q8``, ``q4``): :math:`b`-bit codes on one affine grid per tensor,
  :math:`\hat{X} = m + s\,\mathrm{round}((X - m) / s)` with :math:`m = \min X`,
  :math:`s = (\max X - m) / (2^b - 1)`, so :math:`|X - \hat{X}| \le s / 2`; the payload is the
  codes (two 4-bit codes per byte) and :math:`(m, s)` as float32, ``ceil(B d b / 8) + 8`` bytes.
- :class:`TopK` (``topk:R``): the :math:`k = \lceil R B d \rceil` entries of largest magnitude as
  float32 values and int32 flat indices, the rest zero; ``8 k`` bytes.

:class:`ErrorFeedback` keeps, at the sender, what compression dropped from each aligned row and
adds it to the row's next message (Seide et al., "1-bit stochastic gradient descent and its
application to data-parallel distributed training of speech DNNs", Interspeech 2014; Karimireddy
et al., "Error Feedback Fixes SignSGD and other Gradient Compression Schemes", ICML 2019):

.. math::
    P = \mathcal{C}(X + E_B), \qquad E_B \leftarrow X + E_B - \mathcal{D}(P)

where :math:`E_B` are the residual rows of the batch's positions. The message log counts the
payload, i.e. the compressed bytes.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor

from graphrec.errors import ConfigError

__all__ = ["Compression", "Compressor", "ErrorFeedback", "Quantize", "TopK", "compressor"]

Payload = tuple[Tensor, ...]


class Compressor(ABC):
    """Encodes a float tensor into the payload sent and decodes it at the receiver."""

    @abstractmethod
    def encode(self, x: Tensor) -> Payload:
        """The payload for ``x`` (``[B, d]``)."""

    @abstractmethod
    def decode(self, payload: Payload, shape: torch.Size) -> Tensor:
        """The float32 tensor of ``shape`` the receiver reconstructs."""

    def __call__(self, x: Tensor) -> Tensor:
        """``decode(encode(x))``: what the receiver gets."""
        return self.decode(self.encode(x), x.shape)


@dataclass(frozen=True)
class Quantize(Compressor):
    """Uniform ``bits``-bit quantization (8 or 4) on one affine grid per tensor."""

    bits: int = 8

    def __post_init__(self) -> None:
        if self.bits not in (4, 8):
            raise ConfigError(f"bits must be 4 or 8; got {self.bits}")

    def encode(self, x: Tensor) -> Payload:
        x = x.detach().float()
        lo, hi = x.min(), x.max()
        scale = (hi - lo) / (2**self.bits - 1)
        codes = torch.round((x - lo) / scale) if scale > 0 else torch.zeros_like(x)
        codes = codes.to(torch.uint8).reshape(-1)
        if self.bits == 4:
            codes = torch.cat([codes, codes.new_zeros(codes.numel() % 2)])
            codes = codes[0::2] | (codes[1::2] << 4)
        return codes, torch.stack([lo, scale])

    def decode(self, payload: Payload, shape: torch.Size) -> Tensor:
        codes, (lo, scale) = payload
        if self.bits == 4:
            codes = torch.stack([codes & 15, codes >> 4], dim=1).reshape(-1)
        return lo + scale * codes[: math.prod(shape)].float().reshape(shape)


@dataclass(frozen=True)
class TopK(Compressor):
    """The ``ceil(ratio * numel)`` entries of largest magnitude (``0 < ratio <= 1``)."""

    ratio: float

    def __post_init__(self) -> None:
        if not 0 < self.ratio <= 1:
            raise ConfigError(f"ratio must be in (0, 1]; got {self.ratio}")

    def encode(self, x: Tensor) -> Payload:
        flat = x.detach().float().reshape(-1)
        k = math.ceil(self.ratio * flat.numel())
        index = flat.abs().topk(k, sorted=False).indices
        return flat[index], index.to(torch.int32)

    def decode(self, payload: Payload, shape: torch.Size) -> Tensor:
        values, index = payload
        out = torch.zeros(math.prod(shape))
        out[index.long()] = values
        return out.reshape(shape)


def compressor(spec: str) -> Compressor:
    """The compressor named by ``spec``: ``"q8"``, ``"q4"`` or ``"topk:R"`` (``0 < R <= 1``)."""
    if spec in ("q8", "q4"):
        return Quantize(int(spec[1]))
    if spec.startswith("topk:"):
        try:
            ratio = float(spec[5:])
        except ValueError:
            ratio = float("nan")
        return TopK(ratio)
    raise ConfigError(f"compression must be 'q8', 'q4' or 'topk:R' with 0 < R <= 1; got {spec!r}")


class ErrorFeedback:
    """A compressor with a residual memory per aligned row, kept at the sender.

    Args:
        compressor: the compressor.
        num_rows: number of aligned rows (positions ``0..num_rows-1``).

    Attributes:
        residual: ``[num_rows, d]``, what compression has dropped from each row so far (created
            by the first message).
    """

    def __init__(self, compressor: Compressor, num_rows: int) -> None:
        self.compressor = compressor
        self.num_rows = num_rows
        self.residual: Tensor | None = None

    def encode(self, x: Tensor, rows: Tensor) -> Payload:
        """The payload for ``x`` (``[B, d]``, the rows at positions ``rows``) plus their
        residuals; the residuals become what this payload drops."""
        x = x.detach().float()
        if self.residual is None:
            self.residual = torch.zeros(self.num_rows, *x.shape[1:])
        corrected = x + self.residual[rows]
        payload = self.compressor.encode(corrected)
        self.residual[rows] = corrected - self.compressor.decode(payload, x.shape)
        return payload


@dataclass(frozen=True)
class Compression:
    """What split learning compresses: the embeddings going up and/or the gradients coming down.

    Args:
        embedding: compressor of every party's embeddings (None: sent as they are).
        gradient: compressor of the gradients the label owner returns (None: sent as they are).
        error_feedback: keep each sender's residual per aligned row (:class:`ErrorFeedback`)
            during training; predictions use the compressors without it.
    """

    embedding: Compressor | None = None
    gradient: Compressor | None = None
    error_feedback: bool = True
