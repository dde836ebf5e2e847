"""Named, configurable building blocks: one registry per kind, filled where each thing is defined.

A :class:`Registry` maps a name (the one the command line shows) to a callable (a model class, a
strategy class, a solver function) and, optionally, a frozen config dataclass whose field
defaults are the validated defaults. The defining module registers with a decorator, so adding a
model, strategy or solver is one file (plus its test); the command line builds its ``choices``
and defaults from the registry, and Python callers build the same objects with
:meth:`Registry.build`.

This module imports none of the things it registers: each registry names the modules that fill
it, imported on the first lookup.

=========================  ====================================================================
:data:`CTR_MODELS`         CTR models of :mod:`graphrec.models.ctr` (``lr`` ... ``din``)
:data:`MTL_MODELS`         multi-task backbones of :mod:`graphrec.models.mtl` (``shared`` ...)
:data:`HIEN_AGGREGATORS`   HIEN tree aggregators (modes of ``TreeAggregation``)
:data:`CF_BACKBONES`       CF backbones (``mf``, ``lightgcn``)
:data:`CF_LOSSES`          CF losses (``bpr``, ``infonce``, ``hdccf``)
:data:`FL_STRATEGIES`      federated aggregation strategies (``fedavg`` ... ``fedsubavg-paper``)
:data:`SOLVERS`            k-dDSP solvers of :func:`combinatorial.solve` (``fastcover`` ...)
:data:`COMPRESSORS`        vertical-FL message compressors (``q8``, ``q4``, ``topk``)
=========================  ====================================================================

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class ScaleConfig:
    ...     factor: float = 2.0
    >>> LAYERS = Registry("layer")
    >>> @LAYERS.register("scale", config=ScaleConfig)
    ... def scale(x, *, factor):
    ...     return factor * x
    >>> LAYERS.names(), LAYERS.defaults("scale")
    (['scale'], {'factor': 2.0})
    >>> LAYERS.build("scale", 3.0), LAYERS.build("scale", 3.0, factor=10.0)
    (6.0, 30.0)
    >>> LAYERS.get("shift")
    Traceback (most recent call last):
    ...
    graphrec.errors.ConfigError: unknown layer 'shift'; choose one of: scale
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from graphrec.errors import ConfigError

__all__ = [
    "CF_BACKBONES",
    "CF_LOSSES",
    "COMPRESSORS",
    "CTR_MODELS",
    "FL_STRATEGIES",
    "HIEN_AGGREGATORS",
    "MTL_MODELS",
    "SOLVERS",
    "Registry",
]

T = TypeVar("T")


class Registry(Generic[T]):
    """Names -> ``(callable, config dataclass)`` of one kind of building block.

    Args:
        kind: what is registered, for messages (``"CTR model"``).
        modules: modules whose import registers the entries (imported on the first lookup).
    """

    def __init__(self, kind: str, modules: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self._modules = modules
        self._entries: dict[str, tuple[T, type | None]] = {}

    def register(
        self, name: str, obj: T | None = None, *, config: type | None = None
    ) -> Callable[[T], T]:
        """Register ``obj`` as ``name`` (as a decorator when ``obj`` is omitted).

        Args:
            name: the name the command line and :meth:`get` use.
            obj: what is registered; None to use the return value as a decorator.
            config: a dataclass whose fields are ``obj``'s keyword arguments and whose defaults
                are the validated defaults (None: no options).

        Raises:
            ConfigError: ``name`` is taken (by another object or config), or ``config`` is no
                dataclass.
        """
        if config is not None and not dataclasses.is_dataclass(config):
            raise ConfigError(f"config of {self.kind} {name!r} must be a dataclass, got {config!r}")

        def add(target: T) -> T:
            known = self._entries.get(name)
            if known is not None and known != (target, config):
                raise ConfigError(f"{self.kind} {name!r} is already registered ({known[0]!r})")
            self._entries[name] = (target, config)
            return target

        if obj is not None:
            add(obj)
        return add

    def unregister(self, name: str) -> None:
        """Remove ``name`` (for tests that register a temporary entry)."""
        self._load()
        self._entry(name)
        del self._entries[name]

    def _load(self) -> None:
        for module in self._modules:
            importlib.import_module(module)

    def _entry(self, name: str) -> tuple[T, type | None]:
        self._load()
        if name not in self._entries:
            raise ConfigError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self._entries)}"
            )
        return self._entries[name]

    def get(self, name: str) -> T:
        """The object registered as ``name`` (:class:`ConfigError` listing the choices if none)."""
        return self._entry(name)[0]

    def config(self, name: str) -> type | None:
        """The config dataclass of ``name`` (None: it takes no options)."""
        return self._entry(name)[1]

    def defaults(self, name: str) -> dict[str, Any]:
        """``name``'s options with their default values (empty without a config)."""
        config = self.config(name)
        return {} if config is None else dataclasses.asdict(config())

    def options(self, name: str, **overrides: Any) -> dict[str, Any]:
        """``name``'s options: the defaults updated by ``overrides``, checked by the config.

        Raises:
            ConfigError: an override that is no field of the config.
        """
        config = self.config(name)
        fields = () if config is None else {f.name for f in dataclasses.fields(config)}
        unknown = sorted(set(overrides) - set(fields))
        if unknown:
            raise ConfigError(
                f"{self.kind} {name!r} has no option {', '.join(unknown)}; "
                f"its options: {', '.join(sorted(fields)) or 'none'}"
            )
        return {} if config is None else dataclasses.asdict(config(**overrides))

    def build(self, name: str, *args: Any, **overrides: Any) -> Any:
        """Call ``name``'s object with ``args`` and its :meth:`options` as keyword arguments."""
        return self.get(name)(*args, **self.options(name, **overrides))

    def names(self) -> list[str]:
        """The registered names, in registration order."""
        self._load()
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


#: CTR models: ``cls(features, **options)`` is a :class:`graphrec.models.ctr.CTRModel`.
CTR_MODELS: Registry[type] = Registry("CTR model", ("graphrec.models.ctr",))
#: Multi-task backbones: ``cls(features, num_tasks, **options)`` is a
#: :class:`graphrec.models.mtl.MTLModel`.
MTL_MODELS: Registry[type] = Registry("backbone", ("graphrec.models.mtl",))
#: HIEN tree aggregators: ``agg(channels)`` is a
#: :class:`graphrec.nn.tree_aggregation.TreeAggregation` in that mode.
HIEN_AGGREGATORS: Registry[Callable] = Registry("aggregator", ("graphrec.nn.tree_aggregation",))
#: CF backbones (:class:`graphrec.models.cf.CFBackbone` classes).
CF_BACKBONES: Registry[type] = Registry("CF backbone", ("graphrec.models.cf",))
#: CF losses.
CF_LOSSES: Registry[Callable] = Registry("CF loss", ("graphrec.models.cf",))
#: Federated strategies: ``cls(**options)`` or, for those that read it, ``cls(graph, **options)``
#: (:class:`graphrec.federated.strategies.Strategy`).
FL_STRATEGIES: Registry[type] = Registry("strategy", ("graphrec.federated.strategies",))
#: k-dDSP solvers: ``solver(adj, k, d, **options)`` returns a :class:`combinatorial.Solution`.
SOLVERS: Registry[Callable] = Registry("method", ("combinatorial",))
#: Vertical-FL compressors: ``obj(**options)`` is a
#: :class:`graphrec.federated.vertical.compress.Compressor`.
COMPRESSORS: Registry[Callable] = Registry("compressor", ("graphrec.federated.vertical.compress",))
