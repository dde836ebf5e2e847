"""Walle triggers: tasks register event-id sequences, one automaton matches them all in one
pass, and each match hands a window of events to the task's extractor, which emits CTR rows.

**Matching.** A trigger is a non-empty sequence of event ids ``(e_1, ..., e_k)``. It matches at
accepted event ``i`` when accepted events ``i-k+1 .. i`` have exactly these ids: a contiguous
run of the validated stream (dropped events are not part of it), possibly spanning page
visits. Every match of every trigger is reported at its last event, overlapping matches and
triggers that are suffixes or prefixes of others included, ordered by position and then by
trigger. :class:`TriggerTrie` is the Aho-Corasick automaton of all triggers: one transition per
event whatever the number of triggers.

**Window.** On a match at event ``i`` the task's extractor gets the current page visit up to
``i``: the events from the last ``page_enter`` at or before ``i`` (or the start of the stream)
through ``i``; of a visit longer than the task's ``window`` (default: the pipeline's
``max_window``) events, the last ``window``.

**Extractors** (:data:`EXTRACTORS`; rows in the :data:`WALLE_CTR_SCHEMA` columns):

* ``samples``: one labelled row per exposure with an ``item`` in the window; the label is 1
  when a click on the same item follows the exposure in the window, else 0. Meant for a
  trigger that ends at ``page_exit``, whose window is the whole visit.
* ``features``: one row for inference, of the last exposure in the window (none if there is
  none); its label is 0 (unknown).
* ``none``: matches are only counted.

Row features: ``user`` (the stream's), ``item``, ``page`` (of the ``page_enter`` opening the
window; missing when the window does not start with one), ``position`` (exposures before it in
the window), ``scrolls`` (scrolls before it in the window), ``seconds`` (since the window's
first event) and ``history``: the items the user clicked before the exposure, anywhere in the
stream (the last ``max_history``, oldest first), sharing the ``item`` vocabulary.
:meth:`Pipeline.table` encodes them as a :class:`~graphrec.io.CTRTable` that
:class:`graphrec.models.ctr.CTRFeatures` reads; :func:`write_samples` writes the CSV that
:func:`graphrec.io.read_ctr_table` reads back with :data:`WALLE_CTR_SCHEMA`.

**Task files** (:func:`load_tasks`, :func:`parse_tasks`): JSON ``{"events": {"add_to_cart":
100}, "tasks": [{"name": "ctr_samples", "triggers": [["page_exit"]], "extract": "samples"}]}``;
``events`` (optional) declares user-defined ids, triggers list event names or ids, a task's
``window`` is optional. The one trigger format: a task package stores the same object in its
``task.json`` (:mod:`graphrec.ondevice.walle.package`).
"""

from __future__ import annotations

import bisect
import csv
import json
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from graphrec.errors import ConfigError, InputFormatError
from graphrec.io import CTRSchema, CTRTable, encode_ctr_table
from graphrec.io._text import PathLike, read_text_bytes
from graphrec.io.atomic import atomic_open
from graphrec.ondevice.walle.events import (
    CLICK,
    EXPOSURE,
    PAGE_ENTER,
    PAGE_EXIT,
    SCROLL,
    EventBatch,
    EventCatalog,
    EventValidator,
)

__all__ = [
    "DEFAULT_TASKS",
    "EXTRACTORS",
    "WALLE_CTR_SCHEMA",
    "Pipeline",
    "Task",
    "TriggerTrie",
    "Window",
    "ctr_table",
    "load_tasks",
    "parse_tasks",
    "write_samples",
]

#: Column roles of the rows the extractors emit (``history`` shares the ``item`` vocabulary).
WALLE_CTR_SCHEMA = CTRSchema(
    label="label",
    categorical=["user", "item", "page"],
    numeric=["position", "scrolls", "seconds"],
    sequence={"history": ","},
    shared_vocab={"history": "item"},
)


class TriggerTrie:
    """The Aho-Corasick automaton of a list of triggers (event-id sequences).

    Event ids are mapped to symbols ``1..A`` (the ids used by some trigger) and ``0`` (any
    other id); the automaton is complete (``delta[state, symbol]`` is defined everywhere), so
    matching costs one table lookup per event. Each state lists the triggers that end there,
    its own and those reached by failure links, so every overlapping match is reported.

    Building costs ``O(S * (A + 1))`` for ``S`` states (at most the total trigger length + 1).

    Args:
        triggers: the sequences; trigger ``k`` is reported as ``k``.

    Example:
        >>> trie = TriggerTrie([(3, 4), (4,), (3, 4, 4)])
        >>> ends, which, _ = trie.match(np.array([3, 4, 4, 5]))
        >>> list(zip(ends.tolist(), which.tolist()))
        [(1, 0), (1, 1), (2, 1), (2, 2)]
    """

    def __init__(self, triggers: Sequence[Sequence[int]]) -> None:
        triggers = [tuple(int(e) for e in t) for t in triggers]
        if not triggers or any(not t for t in triggers):
            raise ConfigError("triggers must be a non-empty list of non-empty id sequences")
        self.triggers = triggers
        self.alphabet = np.array(sorted({e for t in triggers for e in t}), dtype=np.int64)
        symbol = {e: s + 1 for s, e in enumerate(self.alphabet.tolist())}
        width = len(self.alphabet) + 1
        goto: list[dict[int, int]] = [{}]
        ends: list[list[int]] = [[]]
        for k, trigger in enumerate(triggers):
            state = 0
            for e in trigger:
                state = goto[state].setdefault(symbol[e], len(goto))
                if state == len(goto):
                    goto.append({})
                    ends.append([])
            ends[state].append(k)
        delta = np.zeros((len(goto), width), dtype=np.int64)
        fail = [0] * len(goto)
        queue = deque(goto[0].values())
        delta[0, list(goto[0])] = list(goto[0].values())
        while queue:  # breadth first: a state's failure target is done before it
            state = queue.popleft()
            ends[state] = sorted(ends[state] + ends[fail[state]])
            delta[state] = delta[fail[state]]
            for c, nxt in goto[state].items():
                fail[nxt] = int(delta[fail[state], c])
                delta[state, c] = nxt
                queue.append(nxt)
        self.delta = delta
        self.outputs = [tuple(e) for e in ends]
        self._width = width
        self._flat = (delta * width).ravel().tolist()  # states premultiplied by the width
        self._out = [()] * (len(goto) * width)
        for state, out in enumerate(self.outputs):
            self._out[state * width] = out

    @property
    def num_states(self) -> int:
        return len(self.outputs)

    def symbols(self, ids: np.ndarray) -> np.ndarray:
        """The symbol of each event id (0 for ids in no trigger)."""
        ids = np.asarray(ids, dtype=np.int64)
        pos = np.searchsorted(self.alphabet, ids)
        hit = pos < len(self.alphabet)
        hit[hit] = self.alphabet[pos[hit]] == ids[hit]
        return np.where(hit, pos + 1, 0)

    def match(self, ids: np.ndarray, state: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
        """Every match in ``ids``, starting from automaton ``state`` (0 = nothing seen).

        Returns:
            ``(ends, which, state)``: ``int64`` positions in ``ids`` of the matches' last events,
            the trigger of each (sorted by position, then trigger), and the state after the
            last event (pass it to the next call to continue the stream).
        """
        flat, out, width = self._flat, self._out, self._width
        s = state * width
        ends: list[int] = []
        which: list[int] = []
        for i, c in enumerate(self.symbols(ids).tolist()):
            s = flat[s + c]
            if out[s]:
                for k in out[s]:
                    ends.append(i)
                    which.append(k)
        return np.array(ends, dtype=np.int64), np.array(which, dtype=np.int64), s // width


class Window:
    """What a match hands to its task's extractor.

    Attributes:
        events: the window's events (the current page visit up to the matched event).
        items: the payload ``item`` of each event as text (None when absent; read only for
            exposures and clicks).
        user: the stream's user ("" when unknown).
        history: ``history(i)`` -> the items clicked before window event ``i`` (oldest first).
    """

    def __init__(
        self,
        events: EventBatch,
        items: list[str | None],
        user: str,
        history: Callable[[int], list[str]],
    ) -> None:
        self.events, self.items, self.user, self.history = events, items, user, history
        self._scrolls: np.ndarray | None = None

    def positions(self, kind: int) -> list[int]:
        """Window positions of the events with id ``kind``."""
        return np.flatnonzero(self.events.ids == kind).tolist()

    def row(self, j: int, item: str, label: float, position: int) -> dict:
        """The CTR row of exposure ``j`` (window position) of ``item``."""
        ev = self.events
        if self._scrolls is None:
            self._scrolls = np.cumsum(ev.ids == SCROLL)
            self._page = str(ev.payload_of(0).get("page", "")) if ev.ids[0] == PAGE_ENTER else ""
        return {
            "label": label,
            "user": self.user,
            "item": item,
            "page": self._page,
            "position": float(position),
            "scrolls": float(self._scrolls[j]),  # j is an exposure: no scroll at j itself
            "seconds": float(ev.times[j] - ev.times[0]) / 1000.0,
            "history": self.history(j),
        }


def exposure_samples(window: Window) -> list[dict]:
    """One labelled row per exposure: 1 when a click on its item follows in the window."""
    last_click = {window.items[k]: k for k in window.positions(CLICK)}
    rows = []
    for rank, j in enumerate(window.positions(EXPOSURE)):
        item = window.items[j]
        if item is not None:
            rows.append(window.row(j, item, float(last_click.get(item, -1) > j), rank))
    return rows


def exposure_features(window: Window) -> list[dict]:
    """One unlabelled row (label 0): the last exposure with an item in the window."""
    exposures = window.positions(EXPOSURE)
    for rank in range(len(exposures) - 1, -1, -1):
        item = window.items[exposures[rank]]
        if item is not None:
            return [window.row(exposures[rank], item, 0.0, rank)]
    return []


#: Extractor name -> function of a :class:`Window` returning rows (``none``: count only).
EXTRACTORS: dict[str, Callable[[Window], list[dict]] | None] = {
    "samples": exposure_samples,
    "features": exposure_features,
    "none": None,
}


@dataclass(frozen=True)
class Task:
    """A task's triggers (event-id sequences), what runs on a match (:data:`EXTRACTORS`) and
    the most events its extractor gets (``window``; None: the pipeline's ``max_window``)."""

    name: str
    triggers: tuple[tuple[int, ...], ...]
    extract: str = "samples"
    window: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"task name must be a non-empty string; got {self.name!r}")
        if self.extract not in EXTRACTORS:
            raise ConfigError(
                f"task {self.name!r}: extract must be one of {', '.join(EXTRACTORS)}; "
                f"got {self.extract!r}"
            )
        if self.window is not None and (
            isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 1
        ):
            raise ConfigError(f"task {self.name!r}: window must be an integer >= 1 or None; "
                              f"got {self.window!r}")  # fmt: skip
        triggers = tuple(tuple(t) for t in self.triggers)
        if not triggers or any(not t for t in triggers):
            raise ConfigError(f"task {self.name!r}: triggers must be non-empty id sequences")
        object.__setattr__(self, "triggers", triggers)


#: The tasks used without a task file: labelled samples at every page exit, features when an
#: exposure follows a page enter or a scroll, and a count of exposures clicked at once.
DEFAULT_TASKS = (
    Task("ctr_samples", ((PAGE_EXIT,),), "samples"),
    Task("ctr_score", ((PAGE_ENTER, EXPOSURE), (SCROLL, EXPOSURE)), "features"),
    Task("quick_click", ((EXPOSURE, CLICK),), "none"),
)


class Pipeline:
    """Validates a stream, matches every task's triggers in one pass and runs the extractors.

    Args:
        tasks: the tasks (unique names).
        validator: checks the events (default: built-in events, 4096-byte payloads, drop).
        user: the user written into the rows.
        max_window: most events handed to an extractor, for tasks without a ``window``.
        max_history: longest click history in a row.

    Example:
        >>> from graphrec.ondevice.walle.events import synthetic_events
        >>> pipeline = Pipeline(DEFAULT_TASKS).run([synthetic_events(2000, seed=0)])
        >>> pipeline.table("ctr_samples").num_rows > 0
        True
    """

    def __init__(
        self,
        tasks: Sequence[Task] = DEFAULT_TASKS,
        validator: EventValidator | None = None,
        *,
        user: str | None = None,
        max_window: int = 1024,
        max_history: int = 50,
    ) -> None:
        names = [t.name for t in tasks]
        if not names or len(set(names)) != len(names):
            raise ConfigError(f"tasks must be a non-empty list with unique names; got {names}")
        for name, value in (("max_window", max_window), ("max_history", max_history)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1; got {value!r}")
        self.tasks = list(tasks)
        self.validator = validator or EventValidator()
        for task in self.tasks:
            for trigger in task.triggers:
                for e in trigger:
                    self.validator.catalog.resolve(e)
        self.user = "" if user is None else str(user)
        self.max_window, self.max_history = max_window, max_history
        self.windows = [t.window or max_window for t in self.tasks]
        self.trie = TriggerTrie([t for task in self.tasks for t in task.triggers])
        self.owner = np.repeat(np.arange(len(self.tasks)), [len(t.triggers) for t in self.tasks])
        self.extractors = [EXTRACTORS[t.extract] for t in self.tasks]
        self.matches = np.zeros(len(self.owner), dtype=np.int64)
        self.rows: dict[str, list[dict]] = {t.name: [] for t in self.tasks}
        self.accepted = 0
        self.check_seconds = 0.0  # time spent validating
        self.match_seconds = 0.0  # time spent in the automaton
        self._state = 0
        self._visit = EventBatch.empty()  # the current visit before the next batch (< windows)
        self._visit_items: list[str | None] = []
        self._click_pos: list[int] = []  # stream positions of the recent clicks
        self._click_items: list[str] = []

    def run(self, batches: Iterable[EventBatch]) -> Pipeline:
        """:meth:`push` every batch; returns ``self``."""
        for batch in batches:
            self.push(batch)
        return self

    def push(self, batch: EventBatch) -> None:
        """Validate, match and extract the next events of the stream."""
        t0 = time.perf_counter()
        batch = self.validator.check(batch)
        t1 = time.perf_counter()
        self.check_seconds += t1 - t0
        if not len(batch):
            return
        ends, which, self._state = self.trie.match(batch.ids, self._state)
        self.match_seconds += time.perf_counter() - t1
        self.matches += np.bincount(which, minlength=len(self.owner))
        base = self.accepted  # stream position of batch[0]
        self.accepted += len(batch)
        if all(e is None for e in self.extractors):
            return
        events = EventBatch.concat(self._visit, batch)
        first = base - len(self._visit)  # stream position of events[0]
        new_items = _items(batch)
        self._add_clicks(batch, new_items, base)
        items = self._visit_items + new_items
        enters = np.flatnonzero(events.ids == PAGE_ENTER)
        for end, trigger in zip((ends + len(self._visit)).tolist(), which.tolist()):
            task = int(self.owner[trigger])
            extractor = self.extractors[task]
            if extractor is None:
                continue
            k = np.searchsorted(enters, end, side="right") - 1
            start = max(int(enters[k]) if k >= 0 else 0, end - self.windows[task] + 1)
            window = Window(
                events.slice(start, end + 1),
                items[start : end + 1],
                self.user,
                lambda j, at=first + start: self._history(at + j),
            )
            self.rows[self.tasks[task].name].extend(extractor(window))
        longest = max(self.windows)
        keep = max(int(enters[-1]) if len(enters) else 0, len(events) - longest + 1)
        self._visit, self._visit_items = events.slice(keep, len(events)), items[keep:]
        self._trim_clicks(first + keep)

    def _add_clicks(self, batch: EventBatch, items: list[str | None], base: int) -> None:
        """Record the clicks (with an item) of ``batch``, whose first event is at ``base``."""
        where = [i for i in np.flatnonzero(batch.ids == CLICK).tolist() if items[i] is not None]
        self._click_pos += [base + i for i in where]
        self._click_items += [items[i] for i in where]

    def _trim_clicks(self, visit_start: int) -> None:
        """Keep the clicks a later window can see: the visit's and ``max_history`` before."""
        cut = max(bisect.bisect_left(self._click_pos, visit_start) - self.max_history, 0)
        del self._click_pos[:cut]
        del self._click_items[:cut]

    def _history(self, position: int) -> list[str]:
        k = bisect.bisect_left(self._click_pos, position)
        return self._click_items[max(k - self.max_history, 0) : k]

    def table(self, task: str, vocab: dict[str, dict[str, int]] | None = None) -> CTRTable:
        """The rows of ``task`` as a :class:`CTRTable` (:func:`ctr_table`).

        Args:
            task: a task name.
            vocab: the vocabularies of the model that will read the table (unseen values ->
                0); default: built from these rows.
        """
        if task not in self.rows:
            raise ConfigError(f"no task {task!r}; tasks: {', '.join(self.rows)}")
        return ctr_table(self.rows[task], vocab, source=f"walle task {task}")

    def report(self) -> dict:
        """Events read (accepted + dropped), accepted, drops by reason, matches per trigger and
        rows per task."""
        catalog = self.validator.catalog
        triggers = []
        for trigger, task, count in zip(self.trie.triggers, self.owner.tolist(),
                                        self.matches.tolist()):  # fmt: skip
            names = [catalog.name(e) for e in trigger]
            triggers.append({"task": self.tasks[task].name, "trigger": names, "matches": count})
        drops = self.validator.drops
        return {
            "events": self.accepted + drops.total,
            "accepted": self.accepted,
            "dropped": drops.total,
            "drops": dict(drops.counts),
            "first_drop": {r: {"line": line, "problem": p} for r, (line, p) in drops.first.items()},
            "triggers": triggers,
            "rows": {t.name: len(self.rows[t.name]) for t in self.tasks if t.extract != "none"},
        }


def ctr_table(
    rows: Sequence[dict], vocab: dict[str, dict[str, int]] | None = None, *, source: str = "rows"
) -> CTRTable:
    """Extracted rows as a :class:`CTRTable` of :data:`WALLE_CTR_SCHEMA` (``vocab``: the
    vocabularies to encode with, unseen values -> 0; default: built from the rows)."""
    table = encode_ctr_table(
        np.array([r["label"] for r in rows], dtype=np.float32),
        {c: [r[c] for r in rows] for c in WALLE_CTR_SCHEMA.categorical},
        {c: np.array([r[c] for r in rows], dtype=np.float32) for c in WALLE_CTR_SCHEMA.numeric},
        {"history": [r["history"] for r in rows]},
        WALLE_CTR_SCHEMA,
        vocab=vocab,
        path=source,
    )
    if table.sequence["history"].shape[1] == 0:  # no history at all: one padding column
        table.sequence["history"] = np.zeros((table.num_rows, 1), dtype=np.int64)
    return table


def _items(batch: EventBatch) -> list[str | None]:
    """The payload ``item`` (as text) of each exposure and click of ``batch``; None elsewhere."""
    out: list[str | None] = [None] * len(batch)
    for i in np.flatnonzero((batch.ids == EXPOSURE) | (batch.ids == CLICK)).tolist():
        value = batch.payload_of(i).get("item")
        out[i] = None if value is None else str(value)
    return out


def parse_tasks(spec: Any) -> tuple[EventCatalog, list[Task]]:
    """The catalog and tasks of a task file's content (see the module docstring): the one
    trigger format, read by :func:`load_tasks` and stored in a task package's ``task.json``.

    Raises:
        ConfigError: not of that shape, an unknown event name, a repeated id, a bad task.
    """
    expected = '{"events": {name: id}, "tasks": [{"name", "triggers", "extract", "window"}]}'
    if not isinstance(spec, dict) or not isinstance(spec.get("tasks"), list):
        raise ConfigError(f"a task file needs a list 'tasks'; expected {expected}")
    unknown = set(spec) - {"events", "tasks"}
    if unknown:
        raise ConfigError(f"a task file has unknown keys {sorted(unknown)}; expected {expected}")
    catalog = EventCatalog(spec.get("events") or {})
    tasks = []
    for i, task in enumerate(spec["tasks"]):
        if not isinstance(task, dict) or set(task) - {"name", "triggers", "extract", "window"}:
            raise ConfigError(f"task {i} is not an object with keys name, triggers, extract, "
                              f"window; expected {expected}")  # fmt: skip
        triggers = task.get("triggers")
        if not isinstance(triggers, list) or not all(isinstance(t, list) for t in triggers):
            raise ConfigError(f"task {i}: triggers must be a list of lists of events")
        tasks.append(Task(
            task.get("name"),
            tuple(tuple(catalog.resolve(e) for e in t) for t in triggers),
            task.get("extract", "samples"),
            task.get("window"),
        ))  # fmt: skip
    return catalog, tasks


def load_tasks(path: PathLike) -> tuple[EventCatalog, list[Task]]:
    """The catalog and tasks of a JSON task file (:func:`parse_tasks`).

    Raises:
        InputFormatError: the file is not JSON.
        ConfigError: as :func:`parse_tasks`.
    """
    try:
        spec = json.loads(read_text_bytes(path))
    except ValueError as exc:
        raise InputFormatError(f"is not valid JSON ({exc})", path=path) from None
    try:
        return parse_tasks(spec)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def write_samples(path: PathLike, rows: list[dict]) -> None:
    """Write rows as CSV (``history`` joined by commas) for :func:`graphrec.io.read_ctr_table`
    with :data:`WALLE_CTR_SCHEMA`."""
    columns = WALLE_CTR_SCHEMA.columns
    with atomic_open(Path(path), "w") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(columns)
        for r in rows:
            writer.writerow(
                [f"{r['label']:g}", *(r[c] for c in WALLE_CTR_SCHEMA.categorical),
                 *(repr(r[c]) for c in WALLE_CTR_SCHEMA.numeric), ",".join(r["history"])]
            )  # fmt: skip
