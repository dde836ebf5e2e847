r"""Compression of the tensors split learning sends: quantization and top-k sparsification, with
error feedback and lossless entropy coding.

A compressor turns a float tensor :math:`X` (``[B, d]``: embeddings going up or gradients coming
down) into the payload that is sent, and the receiver decodes it into :math:`\hat{X}`:

- :class:`Quantize` (``q8``, ``q4``): :math:`b`-bit codes on one affine grid per tensor,
  :math:`\hat{X} = m + s\,\mathrm{round}((X - m) / s)` with :math:`m = \min X`,
  :math:`s = (\max X - m) / (2^b - 1)`, so :math:`|X - \hat{X}| \le s / 2`; the payload is the
  codes (two 4-bit codes per byte, ``ceil(B d b / 8)`` bytes) and :math:`(m, s)` as float32
  (8 bytes).
- :class:`TopK` (``topk:R``): the :math:`k = \lceil R B d \rceil` entries of largest magnitude as
  float32 values and their positions, the rest zero; the positions are int32 flat indices
  (``8 k`` bytes in all) or, entropy-coded, a bitmap of the ``B d`` entries.

With ``entropy_coding`` the integer part of the payload (the codes, the position bitmap) is sent
as a byte string: one tag byte, then the shortest of the bytes as they are, raw-deflated
(:func:`zlib.compress`, RFC 1951), or (codes only) coded by asymmetric numeral systems under a
discretized Laplace model of the codes whose location and scale travel as two float16 numbers
(Duda, "Asymmetric numeral systems", arXiv 1311.2540; the ``constriction`` library, Bamler,
NeurIPS 2022). It is lossless: the receiver decodes exactly the tensor it would decode without
it, and the message log counts the byte string's length. Deflate's Huffman tables pay off on
skewed codes (heavy-tailed gradients) and on larger tensors; on a few hundred codes of a smooth
distribution (a small batch's embeddings) they cost about what they save, while the two-number
Laplace model still codes them below their bit width.

:class:`ErrorFeedback` keeps, at the sender, what compression dropped from each aligned row and
adds it to the row's next message (Seide et al., "1-bit stochastic gradient descent and its
application to data-parallel distributed training of speech DNNs", Interspeech 2014; Karimireddy
et al., "Error Feedback Fixes SignSGD and other Gradient Compression Schemes", ICML 2019):

.. math::
    P = \mathcal{C}(X + E_B), \qquad E_B \leftarrow X + E_B - \mathcal{D}(P)

where :math:`E_B` are the residual rows of the batch's positions. The message log counts the
payload, i.e. the compressed bytes.

Compressors are registered in :data:`graphrec.registry.COMPRESSORS`; :func:`compressor` builds
one from a spec such as ``"q8"`` or ``"topk:0.1"``.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch import Tensor

from graphrec.errors import ConfigError, MissingExtraError
from graphrec.registry import COMPRESSORS

__all__ = [
    "Compression",
    "Compressor",
    "ErrorFeedback",
    "Quantize",
    "QuantizeConfig",
    "TopK",
    "TopKConfig",
    "compressor",
]

Payload = tuple[Tensor | bytes, ...]

_STORED, _DEFLATED, _LAPLACE = 0, 1, 2


def _deflate(data: bytes, strategy: int = zlib.Z_DEFAULT_STRATEGY) -> bytes:
    """``data`` behind a tag byte: raw-deflated (level 6, ``strategy``) where that is shorter,
    else as it is."""
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15, 8, strategy)
    packed = deflate.compress(data) + deflate.flush()
    if len(packed) < len(data):
        return bytes([_DEFLATED]) + packed
    return bytes([_STORED]) + data


def _inflate(blob: bytes) -> np.ndarray:
    """The bytes :func:`_deflate` encoded in ``blob``, as uint8."""
    data = zlib.decompress(blob[1:], wbits=-15) if blob[0] == _DEFLATED else blob[1:]
    return np.frombuffer(data, dtype=np.uint8)


def _laplace(bits: int) -> tuple[object, object]:
    """constriction's ANS coder class and the discretized Laplace family on ``0..2^bits - 1``."""
    try:
        import constriction
    except ImportError as exc:
        raise MissingExtraError("entropy coding of quantized codes (constriction)", "vfl") from exc
    family = constriction.stream.model.QuantizedLaplace(0, 2**bits - 1)
    return constriction.stream.stack.AnsCoder, family


def _code(values: np.ndarray, packed: bytes, bits: int, strategy: int) -> bytes:
    """The shortest tagged byte string of the codes ``values`` (uint8, one per entry; ``packed``
    their bytes as sent without coding): stored, deflated or Laplace-ANS coded."""
    best = _deflate(packed, strategy)
    if values.size:
        coder, family = _laplace(bits)
        c = values.astype(np.int32)
        loc = np.float16(c.mean())
        scale = np.float16(max(float(np.abs(c - float(loc)).mean()), 0.25))
        params = np.array([loc, scale], dtype=np.float16)
        ans = coder()
        n = c.size
        ans.encode_reverse(c, family, np.full(n, float(params[0])), np.full(n, float(params[1])))
        words = ans.get_compressed().astype("<u4").tobytes()
        if 5 + len(words) < len(best):
            best = bytes([_LAPLACE]) + params.tobytes() + words
    return best


def _decode_codes(blob: bytes, count: int, bits: int) -> np.ndarray:
    """The ``count`` codes (uint8, one per entry) :func:`_code` encoded in ``blob``."""
    if blob[0] != _LAPLACE:
        data = _inflate(blob)
        if bits == 4:
            data = np.stack([data & 15, data >> 4], axis=1).reshape(-1)
        return data[:count]
    coder, family = _laplace(bits)
    loc, scale = np.frombuffer(blob[1:5], dtype=np.float16).astype(np.float64)
    ans = coder(np.frombuffer(blob[5:], dtype="<u4").astype(np.uint32))
    values = ans.decode(family, np.full(count, loc), np.full(count, scale))
    return values.astype(np.uint8)


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
class QuantizeConfig:
    """Options of ``q8`` and ``q4``: ``entropy_coding`` deflates the codes (lossless)."""

    entropy_coding: bool = True


@dataclass(frozen=True)
class Quantize(Compressor):
    """Uniform ``bits``-bit quantization (8 or 4) on one affine grid per tensor.

    The payload is ``(codes, [m, s])``: ``codes`` a uint8 tensor, or with ``entropy_coding``
    its bytes as a tagged, raw-deflated byte string (decoded to the same tensor).
    """

    bits: int = 8
    entropy_coding: bool = QuantizeConfig.entropy_coding

    def __post_init__(self) -> None:
        if self.bits not in (4, 8):
            raise ConfigError(f"bits must be 4 or 8; got {self.bits}")

    def encode(self, x: Tensor) -> Payload:
        x = x.detach().float()
        lo, hi = x.min(), x.max()
        scale = (hi - lo) / (2**self.bits - 1)
        codes = torch.round((x - lo) / scale) if scale > 0 else torch.zeros_like(x)
        values = codes.to(torch.uint8).reshape(-1)
        codes = values
        if self.bits == 4:
            codes = torch.cat([codes, codes.new_zeros(codes.numel() % 2)])
            codes = codes[0::2] | (codes[1::2] << 4)
        grid = torch.stack([lo, scale])
        if self.entropy_coding:
            # 8-bit codes seldom repeat in longer strings: run-length matches only, as small as
            # full deflate on split learning's gradients and much faster
            strategy = zlib.Z_RLE if self.bits == 8 else zlib.Z_DEFAULT_STRATEGY
            packed = codes.cpu().numpy().tobytes()
            return _code(values.cpu().numpy(), packed, self.bits, strategy), grid
        return codes, grid

    def decode(self, payload: Payload, shape: torch.Size) -> Tensor:
        codes, (lo, scale) = payload
        count = math.prod(shape)
        if self.entropy_coding:
            values = torch.from_numpy(_decode_codes(codes, count, self.bits).copy())
            return lo + scale * values.to(lo.device).float().reshape(shape)
        if self.bits == 4:
            codes = torch.stack([codes & 15, codes >> 4], dim=1).reshape(-1)
        return lo + scale * codes[:count].float().reshape(shape)


COMPRESSORS.register("q8", partial(Quantize, 8), config=QuantizeConfig)
COMPRESSORS.register("q4", partial(Quantize, 4), config=QuantizeConfig)


@dataclass(frozen=True)
class TopKConfig:
    """Options of ``topk``: the fraction of entries kept and whether positions are entropy-coded."""

    ratio: float = 0.1
    entropy_coding: bool = True


@COMPRESSORS.register("topk", config=TopKConfig)
@dataclass(frozen=True)
class TopK(Compressor):
    """The ``ceil(ratio * numel)`` entries of largest magnitude (``0 < ratio <= 1``).

    The payload is ``(values, positions)``: float32 values and their int32 flat indices, or with
    ``entropy_coding`` the values in flat order and a deflated bitmap of the kept entries.
    """

    ratio: float = TopKConfig.ratio
    entropy_coding: bool = TopKConfig.entropy_coding

    def __post_init__(self) -> None:
        if not 0 < self.ratio <= 1:
            raise ConfigError(f"ratio must be in (0, 1]; got {self.ratio}")

    def encode(self, x: Tensor) -> Payload:
        flat = x.detach().float().reshape(-1)
        k = math.ceil(self.ratio * flat.numel())
        index = flat.abs().topk(k, sorted=False).indices
        if self.entropy_coding:
            kept = np.zeros(flat.numel(), dtype=bool)
            kept[index.cpu().numpy()] = True
            values = flat[torch.from_numpy(kept).to(flat.device)]
            return values, _deflate(np.packbits(kept).tobytes())
        return flat[index], index.to(torch.int32)

    def decode(self, payload: Payload, shape: torch.Size) -> Tensor:
        values, positions = payload
        out = torch.zeros(math.prod(shape))
        if self.entropy_coding:
            kept = np.unpackbits(_inflate(positions), count=out.numel()).astype(bool)
            out[torch.from_numpy(kept)] = values
        else:
            out[positions.long()] = values
        return out.reshape(shape)


def _parse(value: str, default: object, name: str, option: str) -> object:
    """``value`` as the type of ``default`` (``bool``: true/false/1/0)."""
    if isinstance(default, bool):
        if value.lower() in ("true", "1", "false", "0"):
            return value.lower() in ("true", "1")
    else:
        try:
            return type(default)(value)
        except (TypeError, ValueError):
            pass
    raise ConfigError(
        f"compressor {name!r} option {option} must be a {type(default).__name__}; got {value!r}"
    )


def compressor(spec: str) -> Compressor:
    """The compressor named by ``spec``: ``NAME[:OPTIONS]``, a name of
    :data:`graphrec.registry.COMPRESSORS` (``q8``, ``q4``, ``topk``) and comma-separated options,
    ``field=value`` or, first, the value of the config's first field (``"topk:0.05"``,
    ``"q8:entropy_coding=false"``); options left out take the config's defaults."""
    name, _, text = spec.partition(":")
    config = COMPRESSORS.config(name)
    fields = [] if config is None else dataclasses.fields(config)
    defaults = COMPRESSORS.defaults(name)
    options = {}
    for i, item in enumerate(filter(None, text.split(","))):
        option, eq, value = item.rpartition("=")
        if not eq:
            if i > 0 or not fields:
                raise ConfigError(
                    f"compressor {name!r}: options after the first must be field=value; "
                    f"got {item!r} in {spec!r}"
                )
            option = fields[0].name
        if option in defaults:  # an unknown option: the registry's error below
            value = _parse(value, defaults[option], name, option)
        options[option] = value
    return COMPRESSORS.build(name, **options)


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
