"""Walle event streams: the event model, its columnar form, two file formats and validation.

**Events.** An event is ``(id, t, payload)``: an event id (``int32``), a time in integer
milliseconds and a payload (a JSON object). The built-in ids are :data:`BUILTIN_EVENTS`
(``page_enter`` 1, ``page_exit`` 2, ``exposure`` 3, ``click`` 4, ``scroll`` 5); an
:class:`EventCatalog` adds user-defined ids by name. The CTR extractors read the payload keys
``page`` (of ``page_enter``) and ``item`` (of ``exposure`` and ``click``).

**Columnar form.** :class:`EventBatch` holds ``ids`` (``int32 [n]``), ``times`` (``int64 [n]``),
``payload`` (``uint8 [m]``: the compact UTF-8 JSON of every payload, concatenated; an empty one
means ``{}``), ``offsets`` (``int64 [n + 1]``: event ``i``'s payload is
``payload[offsets[i]:offsets[i + 1]]``) and ``lines`` (``int64 [n]``: the line or record of
the source, for messages).

**File formats** (:func:`read_events`, :func:`write_events`):

* JSON lines (any name not ending in ``.npz``; ``.gz`` is undone): one event per line,
  ``{"id": 3, "t": 1700000000123, "p": {"item": 42}}``. ``id`` is an integer or an event name,
  ``t`` an integer (milliseconds), ``p`` an optional object. Blank lines are skipped. An
  optional first line ``{"walle_events": 1, "user": "u7"}`` names the device's user.
* Columnar ``.npz`` (:func:`numpy.savez`): the arrays ``ids``, ``times``, ``offsets`` and
  ``payload`` above, and optionally a 0-d string array ``user``. Members are read in chunks.

Both readers hold at most ``chunk_events`` events (and one line) in memory at a time.

**Validation.** A bad event is dropped and counted under its reason in :class:`Drops`, and the
stream goes on; with ``strict=True`` the first one raises
:class:`~graphrec.errors.InputFormatError` naming the line instead. Reasons:

* ``malformed``: not a JSON object, ``id`` not an integer or name, ``t`` not an integer,
  ``p`` not an object, an ``id`` outside ``int32``; in ``.npz`` a payload that is not a JSON
  object;
* ``unknown_id``: an id or name the catalog does not hold;
* ``oversized_payload``: a payload whose compact JSON is longer than ``max_payload_bytes``; a
  line longer than ``max_payload_bytes + 1024`` bytes is dropped so without being parsed;
* ``out_of_order``: ``t`` earlier than the time of the last accepted event (equal is fine).

Reasons are checked in this order; an event is counted once, under its first reason.
"""

from __future__ import annotations

import gzip
import json
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from graphrec.errors import ConfigError, InputFormatError
from graphrec.io._text import PathLike, check_input_file, iter_blocks
from graphrec.io.atomic import atomic_open

__all__ = [
    "BUILTIN_EVENTS",
    "CLICK",
    "DROP_REASONS",
    "Drops",
    "EXPOSURE",
    "EventBatch",
    "EventCatalog",
    "EventStream",
    "EventValidator",
    "PAGE_ENTER",
    "PAGE_EXIT",
    "SCROLL",
    "read_events",
    "synthetic_events",
    "write_events",
]

PAGE_ENTER, PAGE_EXIT, EXPOSURE, CLICK, SCROLL = 1, 2, 3, 4, 5
#: Event name -> id of the events every catalog holds.
BUILTIN_EVENTS: Mapping[str, int] = {
    "page_enter": PAGE_ENTER,
    "page_exit": PAGE_EXIT,
    "exposure": EXPOSURE,
    "click": CLICK,
    "scroll": SCROLL,
}
DROP_REASONS = ("malformed", "unknown_id", "oversized_payload", "out_of_order")
_INT32 = (-(2**31), 2**31 - 1)
_LINE_SLACK = 1024  # bytes of a line beyond its payload (id, t, keys)


_decode = json.JSONDecoder().decode


def _compact(payload: Mapping) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class EventCatalog:
    """The event ids a stream may contain: the built-in ones plus user-defined ``custom``.

    Args:
        custom: name -> id of user-defined events; names and ids must not repeat the built-in
            ones (:data:`BUILTIN_EVENTS`), ids must fit ``int32`` and be >= 0.
    """

    def __init__(self, custom: Mapping[str, int] | None = None) -> None:
        names = dict(BUILTIN_EVENTS)
        for name, value in (custom or {}).items():
            if not isinstance(name, str) or not name:
                raise ConfigError(f"event names must be non-empty strings; got {name!r}")
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"event {name!r}: id must be an integer; got {value!r}")
            if not 0 <= value <= _INT32[1]:
                raise ConfigError(f"event {name!r}: id must be in 0..{_INT32[1]}; got {value}")
            if name in names or value in names.values():
                raise ConfigError(f"event {name!r} = {value} repeats a name or id already taken")
            names[name] = value
        self.names: dict[str, int] = names
        self.ids = np.array(sorted(names.values()), dtype=np.int32)
        self._by_id = {v: k for k, v in names.items()}

    def resolve(self, event: int | str) -> int:
        """The id of ``event`` (a name or an id of this catalog); ConfigError otherwise."""
        if isinstance(event, str):
            if event in self.names:
                return self.names[event]
        elif isinstance(event, (int, np.integer)) and not isinstance(event, bool):
            if int(event) in self._by_id:
                return int(event)
        raise ConfigError(f"unknown event {event!r}; known: {', '.join(self.names)}")

    def name(self, event_id: int) -> str:
        """The name of ``event_id`` (its decimal form when unknown)."""
        return self._by_id.get(int(event_id), str(event_id))

    def custom(self) -> dict[str, int]:
        """The user-defined events (name -> id)."""
        return {k: v for k, v in self.names.items() if k not in BUILTIN_EVENTS}


@dataclass(eq=False)
class EventBatch:
    """Consecutive events in columnar form (see the module docstring for the fields)."""

    ids: np.ndarray
    times: np.ndarray
    payload: np.ndarray
    offsets: np.ndarray
    lines: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.ids)
        if len(self.times) != n or len(self.offsets) != n + 1 or len(self.lines) != n:
            raise ConfigError(
                f"EventBatch: ids, times, lines need one entry per event and offsets one more; "
                f"got {n}, {len(self.times)}, {len(self.lines)} and {len(self.offsets)}"
            )

    @classmethod
    def from_events(
        cls,
        ids: Sequence[int],
        times: Sequence[int],
        payloads: Sequence[Mapping | None] | None = None,
        lines: Sequence[int] | None = None,
    ) -> EventBatch:
        """A batch from per-event lists (payloads are dicts or None; lines default 1..n)."""
        n = len(ids)
        blobs = [_compact(p) if p else b"" for p in payloads] if payloads is not None else []
        return cls._pack(
            np.asarray(ids, dtype=np.int32),
            np.asarray(times, dtype=np.int64),
            blobs or [b""] * n,
            np.arange(1, n + 1) if lines is None else np.asarray(lines, dtype=np.int64),
        )

    @classmethod
    def _pack(
        cls, ids: np.ndarray, times: np.ndarray, blobs: list[bytes], lines: np.ndarray
    ) -> EventBatch:
        offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in blobs], out=offsets[1:])
        payload = np.frombuffer(b"".join(blobs), dtype=np.uint8)
        return cls(ids, times, payload, offsets, np.asarray(lines, dtype=np.int64))

    @classmethod
    def empty(cls) -> EventBatch:
        return cls._pack(np.zeros(0, np.int32), np.zeros(0, np.int64), [], np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.ids)

    def payload_of(self, i: int) -> dict:
        """The decoded payload of event ``i`` (``{}`` when empty)."""
        start, stop = self.offsets[i], self.offsets[i + 1]
        return _decode(self.payload[start:stop].tobytes().decode()) if stop > start else {}

    def payload_sizes(self) -> np.ndarray:
        """Bytes of each event's compact JSON payload (0 for ``{}``)."""
        return np.diff(self.offsets)

    def take(self, keep: np.ndarray) -> EventBatch:
        """The events where the boolean mask ``keep`` is True, payloads repacked."""
        sizes = self.payload_sizes()[keep]
        offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        shift = np.repeat(self.offsets[:-1][keep] - offsets[:-1], sizes)
        payload = self.payload[np.arange(offsets[-1]) + shift]
        return EventBatch(self.ids[keep], self.times[keep], payload, offsets, self.lines[keep])

    def slice(self, start: int, stop: int) -> EventBatch:
        """Events ``start..stop-1`` (the payload is shared, offsets keep their base)."""
        offsets = self.offsets[start : stop + 1]
        base = offsets[0] if len(offsets) else 0
        return EventBatch(
            self.ids[start:stop],
            self.times[start:stop],
            self.payload[base : offsets[-1] if len(offsets) else 0],
            offsets - base,
            self.lines[start:stop],
        )

    @staticmethod
    def concat(first: EventBatch, second: EventBatch) -> EventBatch:
        """``first`` followed by ``second``."""
        if not len(first):
            return second
        return EventBatch(
            np.concatenate([first.ids, second.ids]),
            np.concatenate([first.times, second.times]),
            np.concatenate([first.payload, second.payload]),
            np.concatenate([first.offsets, second.offsets[1:] + first.offsets[-1]]),
            np.concatenate([first.lines, second.lines]),
        )


@dataclass
class Drops:
    """Dropped events per reason, with the first occurrence of each (line, problem)."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    first: dict[str, tuple[int, str]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def add(self, reason: str, count: int, line: int, problem: str) -> None:
        self.counts[reason] += count
        self.first.setdefault(reason, (line, problem))


class EventValidator:
    """Checks events against a catalog; drops bad ones under a reason (see the module doc).

    Args:
        catalog: the known events.
        max_payload_bytes: longest compact JSON payload accepted.
        strict: raise :class:`InputFormatError` at the first bad event instead of dropping it.
        source: the file name used in messages.
    """

    def __init__(
        self,
        catalog: EventCatalog | None = None,
        *,
        max_payload_bytes: int = 4096,
        strict: bool = False,
        source: str = "<events>",
    ) -> None:
        if isinstance(max_payload_bytes, bool) or not isinstance(max_payload_bytes, int):
            raise ConfigError(f"max_payload_bytes must be an integer; got {max_payload_bytes!r}")
        if max_payload_bytes < 0:
            raise ConfigError(f"max_payload_bytes must be >= 0; got {max_payload_bytes}")
        self.catalog = catalog or EventCatalog()
        self.max_payload_bytes = max_payload_bytes
        self.strict = strict
        self.source = source
        self.drops = Drops()
        self.last_time = np.iinfo(np.int64).min

    def drop(self, reason: str, line: int, problem: str, count: int = 1) -> None:
        """Count ``count`` events dropped for ``reason`` (or raise under ``strict``)."""
        if self.strict:
            raise InputFormatError(problem, path=self.source, line=line)
        self.drops.add(reason, count, line, problem)

    def check(self, batch: EventBatch) -> EventBatch:
        """The accepted events of ``batch``, in order; the others are counted as drops."""
        if not len(batch):
            return batch
        known = np.isin(batch.ids, self.catalog.ids)
        fits = batch.payload_sizes() <= self.max_payload_bytes
        ok = known & fits
        floor = np.maximum.accumulate(
            np.r_[self.last_time, np.where(ok, batch.times, np.iinfo(np.int64).min)]
        )
        in_order = batch.times >= floor[:-1]
        keep = ok & in_order
        if ok.any():
            self.last_time = int(floor[-1])
        if keep.all():
            return batch
        sizes = batch.payload_sizes()
        problems = {
            "unknown_id": (~known, lambda i: f"unknown event id {int(batch.ids[i])}"),
            "oversized_payload": (
                known & ~fits,
                lambda i: (
                    f"payload of {int(sizes[i])} bytes is longer than max_payload_bytes "
                    f"= {self.max_payload_bytes}"
                ),
            ),
            "out_of_order": (
                ok & ~in_order,
                lambda i: (
                    f"time {int(batch.times[i])} is earlier than the last accepted "
                    f"event's ({int(floor[i])})"
                ),
            ),
        }
        if self.strict:
            i = int(np.flatnonzero(~keep)[0])
            reason = next(r for r, (bad, _) in problems.items() if bad[i])
            self.drop(reason, int(batch.lines[i]), problems[reason][1](i))
        for reason, (bad, problem) in problems.items():
            where = np.flatnonzero(bad)
            if len(where):
                i = int(where[0])
                self.drop(reason, int(batch.lines[i]), problem(i), len(where))
        return batch.take(keep)


class EventStream:
    """The events of a file, in batches of at most ``chunk_events`` (see :func:`read_events`).

    Attributes:
        path: the file.
        user: the device's user named by the file, or None.
    """

    def __init__(self, path: PathLike, validator: EventValidator, chunk_events: int) -> None:
        if isinstance(chunk_events, bool) or not isinstance(chunk_events, int) or chunk_events < 1:
            raise ConfigError(f"chunk_events must be an integer >= 1; got {chunk_events!r}")
        self.path = str(path)
        self.validator = validator
        self.chunk_events = chunk_events
        self.npz = self.path.lower().endswith(".npz")
        self.user = self._npz_user() if self.npz else self._jsonl_user()

    def __iter__(self) -> Iterator[EventBatch]:
        return self._npz() if self.npz else self._jsonl()

    # -- JSON lines

    def _lines(self) -> Iterator[tuple[int, bytes | None]]:
        """``(lineno, line)``; ``line`` is None for a line too long to parse (not held)."""
        limit = self.validator.max_payload_bytes + _LINE_SLACK
        carry, lineno, skipping = b"", 1, False
        for block in iter_blocks(self.path):
            start = 0
            while True:
                end = block.find(b"\n", start)
                if end < 0:
                    if not skipping:
                        carry += block[start:]
                        if len(carry) > limit:
                            carry, skipping = b"", True
                    break
                if skipping:
                    yield lineno, None
                    skipping = False
                else:
                    line = carry + block[start:end] if carry else block[start:end]
                    carry = b""
                    yield lineno, (None if len(line) > limit else line)
                lineno += 1
                start = end + 1
        if skipping or carry:
            yield lineno, None if skipping else carry

    def _jsonl_user(self) -> str | None:
        for _, line in self._lines():
            if line is None or not line.strip():
                return None
            header = _header(line)
            return None if header is None else header.get("user")
        return None

    def _jsonl(self) -> Iterator[EventBatch]:
        v = self.validator
        ids: list[int] = []
        times: list[int] = []
        blobs: list[bytes] = []
        lines: list[int] = []
        first = True
        for lineno, line in self._lines():
            if line is None:
                v.drop("oversized_payload", lineno, "line is longer than max_payload_bytes + "
                       f"{_LINE_SLACK} = {v.max_payload_bytes + _LINE_SLACK} bytes")  # fmt: skip
                continue
            if not line.strip():
                continue
            if first:
                first = False
                if _header(line) is not None:
                    continue
            try:
                event, t, blob = _parse_line(line, v.catalog)
            except _Bad as bad:
                v.drop(bad.reason, lineno, bad.problem)
                continue
            ids.append(event)
            times.append(t)
            blobs.append(blob)
            lines.append(lineno)
            if len(ids) >= self.chunk_events:
                yield EventBatch._pack(np.array(ids, np.int32), np.array(times, np.int64),
                                       blobs, np.array(lines))  # fmt: skip
                ids, times, blobs, lines = [], [], [], []
        if ids:
            yield EventBatch._pack(np.array(ids, np.int32), np.array(times, np.int64), blobs,
                                   np.array(lines))  # fmt: skip

    # -- columnar .npz

    def _npz_user(self) -> str | None:
        with self._zip() as z:
            if "user.npy" not in z.namelist():
                return None
            with z.open("user.npy") as f:
                return str(np.lib.format.read_array(f, allow_pickle=False))

    def _zip(self) -> zipfile.ZipFile:
        check_input_file(self.path)
        try:
            return zipfile.ZipFile(self.path)
        except zipfile.BadZipFile:
            raise InputFormatError(
                "is not a valid .npz file", path=self.path, expected="a file of numpy.savez"
            ) from None

    def _npz(self) -> Iterator[EventBatch]:
        with self._zip() as z:
            missing = [f"{k}.npy" for k in ("ids", "times", "offsets", "payload")
                       if f"{k}.npy" not in z.namelist()]  # fmt: skip
            if missing:
                raise InputFormatError(
                    f"has no member(s) {', '.join(missing)}", path=self.path,
                    expected="the arrays ids, times, offsets and payload",
                )  # fmt: skip
            with (
                z.open("ids.npy") as fi,
                z.open("times.npy") as ft,
                z.open("offsets.npy") as fo,
                z.open("payload.npy") as fp,
            ):
                n, ids = self._member(fi, "ids", "iu")
                _, times = self._member(ft, "times", "iu", n)
                _, offs = self._member(fo, "offsets", "iu", n + 1)
                m, pay = self._member(fp, "payload", "u", None, itemsize=1)
                done, prev = 0, int(offs(1)[0])
                if prev != 0:
                    raise self._bad("offsets[0] must be 0")
                while done < n:
                    k = min(self.chunk_events, n - done)
                    chunk_ids, chunk_t = ids(k), times(k).astype(np.int64)
                    ends = offs(k).astype(np.int64)
                    bounds = np.r_[prev, ends]
                    if (np.diff(bounds) < 0).any() or bounds[-1] > m:
                        raise self._bad(f"offsets of events {done}..{done + k - 1} decrease or "
                                        f"pass the payload's {m} bytes")  # fmt: skip
                    raw = pay(int(bounds[-1] - prev)).tobytes()
                    yield self._npz_batch(chunk_ids, chunk_t, raw, bounds - prev, done)
                    prev, done = int(bounds[-1]), done + k

    def _npz_batch(
        self, ids: np.ndarray, times: np.ndarray, raw: bytes, bounds: np.ndarray, done: int
    ) -> EventBatch:
        v = self.validator
        ok = (ids >= _INT32[0]) & (ids <= _INT32[1])
        for i in np.flatnonzero(bounds[1:] > bounds[:-1]).tolist():
            blob = raw[bounds[i] : bounds[i + 1]]
            if len(blob) > v.max_payload_bytes:
                continue  # the validator counts it
            try:
                ok[i] &= isinstance(json.loads(blob), dict)
            except (ValueError, RecursionError):
                ok[i] = False
        lines = np.arange(done + 1, done + len(ids) + 1)
        batch = EventBatch(ids.astype(np.int32), times,
                           np.frombuffer(raw, dtype=np.uint8), bounds, lines)  # fmt: skip
        if ok.all():
            return batch
        bad = np.flatnonzero(~ok)
        v.drop("malformed", int(lines[bad[0]]), "id outside int32 or payload not a JSON object",
               len(bad))  # fmt: skip
        return batch.take(ok)

    def _bad(self, problem: str) -> InputFormatError:
        return InputFormatError(problem, path=self.path, expected="a file of write_events")

    def _member(self, f, name: str, kinds: str, length: int | None = None, itemsize: int = 0):
        """The length of a 1-D ``.npy`` member and a function reading its next ``k`` values."""
        try:
            version = np.lib.format.read_magic(f)
            header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                      else np.lib.format.read_array_header_2_0)  # fmt: skip
            shape, _, dtype = header(f)
        except ValueError as exc:
            raise self._bad(f"member {name}.npy is not a numpy array ({exc})") from None
        if len(shape) != 1 or dtype.kind not in kinds or (itemsize and dtype.itemsize != itemsize):
            raise self._bad(f"{name} must be a 1-D integer array; got {dtype} {shape}")
        if length is not None and shape[0] != length:
            raise self._bad(f"{name} has {shape[0]} entries; expected {length}")

        def read(k: int) -> np.ndarray:
            data = f.read(k * dtype.itemsize)
            if len(data) != k * dtype.itemsize:
                raise self._bad(f"member {name}.npy is truncated")
            return np.frombuffer(data, dtype=dtype)

        return shape[0], read


def _header(line: bytes) -> dict | None:
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) and "walle_events" in obj else None


class _Bad(Exception):
    def __init__(self, reason: str, problem: str) -> None:
        self.reason, self.problem = reason, problem


def _parse_line(line: bytes, catalog: EventCatalog) -> tuple[int, int, bytes]:
    """``(id, t, payload bytes)`` of an event line; raises :class:`_Bad`."""
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):  # RecursionError: nested too deep
        raise _Bad("malformed", "not valid JSON") from None
    if not isinstance(obj, dict):
        raise _Bad("malformed", "not a JSON object")
    event, t, payload = obj.get("id"), obj.get("t"), obj.get("p", {})
    if isinstance(event, str):
        if event not in catalog.names:
            raise _Bad("unknown_id", f"unknown event name {event!r}")
        event = catalog.names[event]
    elif isinstance(event, bool) or not isinstance(event, int):
        raise _Bad("malformed", f"id {event!r} is not an integer or an event name")
    elif not _INT32[0] <= event <= _INT32[1]:
        raise _Bad("malformed", f"id {event} is outside int32")
    if isinstance(t, bool) or not isinstance(t, int) or not -(2**63) <= t < 2**63:
        raise _Bad("malformed", f"t {t!r} is not an integer (milliseconds)")
    if not isinstance(payload, dict):
        raise _Bad("malformed", "p is not a JSON object")
    return event, t, _compact(payload) if payload else b""


def read_events(
    path: PathLike,
    validator: EventValidator | None = None,
    *,
    chunk_events: int = 65536,
) -> EventStream:
    """The events of a JSON-lines or ``.npz`` file (see the module docstring), in batches.

    Lines or records that cannot be parsed are counted in ``validator.drops`` (or raise under
    ``validator.strict``); the batches still need :meth:`EventValidator.check` (the
    :class:`~graphrec.ondevice.walle.triggers.Pipeline` does it), which drops unknown ids,
    oversized payloads and out-of-order times.

    Raises:
        FileNotFoundError, InputFormatError: the file is missing, not a regular file, corrupt
            gzip, or an ``.npz`` without the four arrays.
    """
    return EventStream(path, validator or EventValidator(), chunk_events)


def write_events(path: PathLike, batch: EventBatch, *, user: str | None = None) -> None:
    """Write ``batch`` as ``.npz`` (by the suffix) or JSON lines (``.gz``: compressed)."""
    path = Path(path)
    if path.suffix.lower() == ".npz":
        arrays = {"ids": batch.ids, "times": batch.times, "offsets": batch.offsets,
                  "payload": batch.payload}  # fmt: skip
        if user is not None:
            arrays["user"] = np.array(user)
        with atomic_open(path, "wb") as f:
            np.savez(f, **arrays)
        return
    with atomic_open(path, "wb") as f:
        out = gzip.GzipFile(fileobj=f, mode="wb", mtime=0) if path.suffix == ".gz" else f
        if user is not None:
            out.write(_compact({"walle_events": 1, "user": user}) + b"\n")
        for i, (e, t) in enumerate(zip(batch.ids.tolist(), batch.times.tolist())):
            raw = batch.payload[batch.offsets[i] : batch.offsets[i + 1]].tobytes()
            tail = b',"p":' + raw if raw else b""
            out.write(b'{"id":%d,"t":%d%s}\n' % (e, t, tail))
        if out is not f:
            out.close()


def synthetic_events(
    num_events: int,
    *,
    seed: int = 0,
    num_items: int = 500,
    num_pages: int = 8,
    click_rate: float = 0.05,
    liked_click_rate: float = 0.35,
    start_ms: int = 1_700_000_000_000,
) -> EventBatch:
    """A seeded stream of app events: sessions of page visits with exposures, clicks, scrolls.

    Each visit is ``page_enter {"page": "p<k>"}`` (pages Zipf-distributed), screens of 3-6
    ``exposure {"item": i}`` separated by ``scroll {"dy": pixels}``, and ``page_exit``. Each
    page shows its own slice of the items (popular ones more often). A click on an exposed item
    follows with probability ``liked_click_rate`` for the items the user likes (a planted 10%)
    and ``click_rate`` otherwise. Gaps between events are exponential (mean 0.8 s in a visit,
    30 s between visits). The stream stops after exactly ``num_events`` events, so the last
    visit may be cut.
    """
    for name, value in (("num_events", num_events), ("num_items", num_items),
                        ("num_pages", num_pages)):  # fmt: skip
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be an integer >= 1; got {value!r}")
    for name, rate in (("click_rate", click_rate), ("liked_click_rate", liked_click_rate)):
        if not 0.0 <= rate <= 1.0:
            raise ConfigError(f"{name} must be in [0, 1]; got {rate}")
    rng = np.random.default_rng(seed)
    liked = rng.random(num_items) < 0.1
    page_cdf = np.cumsum(1.0 / np.arange(1, num_pages + 1))
    slice_size = max(num_items // num_pages, 1)
    item_cdf = np.cumsum(1.0 / np.arange(1, slice_size + 1) ** 0.8)
    ids: list[int] = []
    gaps: list[np.ndarray] = []
    payloads: list[dict | None] = []
    while len(ids) < num_events:
        page = int(np.searchsorted(page_cdf, rng.random() * page_cdf[-1], side="right"))
        sizes = rng.integers(3, 7, size=int(rng.geometric(0.4)))
        shown = np.searchsorted(item_cdf, rng.random(int(sizes.sum())) * item_cdf[-1], "right")
        items = ((page * slice_size + shown) % num_items).tolist()
        rate = np.where(liked[items], liked_click_rate, click_rate)
        clicked = (rng.random(len(items)) < rate).tolist()
        visit = [(PAGE_ENTER, {"page": f"p{page}"})]
        start = 0
        for screen, size in enumerate(sizes.tolist()):
            if screen:
                visit.append((SCROLL, {"dy": int(rng.integers(200, 1200))}))
            screen_items = items[start : start + size]
            visit += [(EXPOSURE, {"item": item}) for item in screen_items]
            visit += [(CLICK, {"item": item}) for item, c in
                      zip(screen_items, clicked[start : start + size]) if c]  # fmt: skip
            start += size
        visit.append((PAGE_EXIT, {"page": f"p{page}"}))
        mean = np.array([30_000.0] + [_GAP_MS[e] for e, _ in visit[1:]])
        gaps.append(rng.exponential(mean).astype(np.int64))
        ids += [e for e, _ in visit]
        payloads += [p for _, p in visit]
    times = start_ms + np.cumsum(np.concatenate(gaps))
    n = num_events
    return EventBatch.from_events(ids[:n], times[:n], payloads[:n])


#: Mean gap (ms) before an event of each kind within a visit.
_GAP_MS = {EXPOSURE: 300.0, CLICK: 2_000.0, SCROLL: 800.0, PAGE_EXIT: 800.0}
