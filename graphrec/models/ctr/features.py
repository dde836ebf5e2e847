"""The embedding part of every CTR model: feature specs from a CTR table, batches, embeddings.

A CTR model is split in two parts:

* the **embedding part**, :class:`FeatureEmbedding`: one embedding table per vocabulary (so the
  target item and the items of a behaviour history share one table), a learned vector per
  dense feature, and optionally the first-order (linear) weights;
* the **dense part**: the model's interaction layers over the :class:`EmbeddedFeatures`.

Batches are plain ``dict[str, Tensor]`` keyed by column name: categorical columns ``int64 [B]``,
numeric columns ``float32 [B]`` (NaN = missing), sequence columns ``int64 [B, L]`` padded with
0 on the right. Code 0 of a categorical column is the out-of-vocabulary / missing bucket (it
has its own learned embedding); code 0 in a sequence is padding and is masked. The
:class:`graphrec.io` reader also encodes an unknown sequence element as 0, so unknown history
items are masked like padding.

Example:
    >>> from graphrec.datasets import load_taobao_tiny
    >>> data = load_taobao_tiny("shared/data/ctr/fuxictr_tiny_taobao")  # doctest: +SKIP
    >>> features = CTRFeatures.from_table(data.train, exclude=["userid"])  # doctest: +SKIP
    >>> batch = features.batch(data.train)  # doctest: +SKIP
    >>> emb = FeatureEmbedding(features, 16)(batch)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from weakref import WeakKeyDictionary

import numpy as np
import torch
from torch import Tensor

from graphrec.errors import ConfigError
from graphrec.io import CTRTable

__all__ = [
    "FeatureSpec",
    "CTRFeatures",
    "DerivedFeatures",
    "FeatureEmbedding",
    "EmbeddedFeatures",
]

_KINDS = ("sparse", "sequence", "dense")


@dataclass(frozen=True)
class FeatureSpec:
    """One input feature.

    Attributes:
        name: column name (the key in a batch).
        kind: ``"sparse"`` (one id), ``"sequence"`` (padded ids, e.g. a behaviour history or a
            multi-valued attribute) or ``"dense"`` (a float).
        table: embedding table (vocabulary) of a sparse or sequence feature; features with the
            same table share embeddings.
        vocab_size: number of codes including 0 (sparse and sequence features).
    """

    name: str
    kind: str
    table: str | None = None
    vocab_size: int = 0

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ConfigError(f"kind must be one of {_KINDS}; got {self.kind!r}")
        if self.kind != "dense" and (not self.table or self.vocab_size < 1):
            raise ConfigError(
                f"{self.kind} feature {self.name!r} needs a table and vocab_size >= 1"
            )


class CTRFeatures:
    """The features a CTR model reads, plus the training statistics of the dense ones.

    Build it with :meth:`from_table` on the training table; :meth:`batch` turns any table encoded
    with the same vocabulary into model input.

    Args:
        specs: the features, in the order their fields appear.
        dense_mean, dense_std: per dense feature (in order), used to standardise the values;
            default 0 and 1.
    """

    def __init__(
        self,
        specs: Sequence[FeatureSpec],
        dense_mean: Sequence[float] | None = None,
        dense_std: Sequence[float] | None = None,
    ) -> None:
        self.specs = list(specs)
        names = [s.name for s in self.specs]
        if len(set(names)) != len(names):
            raise ConfigError(f"feature names must be unique; got {names}")
        sizes: dict[str, int] = {}
        for s in self.specs:
            if s.kind == "dense":
                continue
            if sizes.setdefault(s.table, s.vocab_size) != s.vocab_size:
                raise ConfigError(
                    f"features sharing table {s.table!r} disagree on its size "
                    f"({sizes[s.table]} vs {s.vocab_size} for {s.name!r})"
                )
        self.tables = sizes
        n_dense = len(self.dense)
        self.dense_mean = [0.0] * n_dense if dense_mean is None else [float(v) for v in dense_mean]
        self.dense_std = [1.0] * n_dense if dense_std is None else [float(v) for v in dense_std]
        if len(self.dense_mean) != n_dense or len(self.dense_std) != n_dense:
            raise ConfigError(f"dense_mean and dense_std need {n_dense} values each")

    @property
    def sparse(self) -> list[FeatureSpec]:
        return [s for s in self.specs if s.kind == "sparse"]

    @property
    def sequence(self) -> list[FeatureSpec]:
        return [s for s in self.specs if s.kind == "sequence"]

    @property
    def dense(self) -> list[FeatureSpec]:
        return [s for s in self.specs if s.kind == "dense"]

    @property
    def num_fields(self) -> int:
        """Fields seen by field-interaction models: one per feature (sequences pooled)."""
        return len(self.specs)

    def __getitem__(self, name: str) -> FeatureSpec:
        for s in self.specs:
            if s.name == name:
                return s
        raise KeyError(f"no feature {name!r}; features: {', '.join(s.name for s in self.specs)}")

    @classmethod
    def from_table(cls, table: CTRTable, *, exclude: Iterable[str] = ()) -> CTRFeatures:
        """Every feature of ``table`` (categorical, then numeric, then sequence) except ``exclude``.

        Tables are named after the vocabulary owner (``schema.vocab_owner``), so a sequence
        declared in ``schema.shared_vocab`` shares its owner's embeddings. Dense statistics
        (mean and standard deviation, NaN ignored) come from ``table``: pass the training table.
        """
        exclude = set(exclude)
        unknown = exclude - set(table.categorical) - set(table.numeric) - set(table.sequence)
        if unknown:
            raise ConfigError(f"exclude names unknown column(s): {', '.join(sorted(unknown))}")
        owner = table.schema.vocab_owner
        specs = [
            FeatureSpec(c, "sparse", owner(c), table.vocab_size(c))
            for c in table.categorical
            if c not in exclude
        ]
        mean, std = [], []
        for c, values in table.numeric.items():
            if c in exclude:
                continue
            specs.append(FeatureSpec(c, "dense"))
            finite = values[~np.isnan(values)].astype(np.float64)
            mean.append(float(finite.mean()) if finite.size else 0.0)
            sd = float(finite.std()) if finite.size else 0.0
            std.append(sd if sd > 0 else 1.0)
        specs += [
            FeatureSpec(c, "sequence", owner(c), table.vocab_size(c))
            for c in table.sequence
            if c not in exclude
        ]
        return cls(specs, mean, std)

    def batch(
        self,
        table: CTRTable,
        rows: np.ndarray | Tensor | None = None,
        *,
        max_len: int | None = None,
    ) -> dict[str, Tensor]:
        """Model input for ``rows`` of ``table`` (default: all rows).

        Args:
            table: a table encoded with the vocabulary these features were built from.
            rows: row indices.
            max_len: pad or cut every sequence to exactly this length (elements after position
                ``max_len`` are dropped); default: the table's own width.

        Raises:
            ValueError: a feature is missing from ``table`` or has codes outside its vocabulary.
        """
        if isinstance(rows, Tensor):
            rows = rows.cpu().numpy()
        take = (lambda a: a) if rows is None else (lambda a: a[rows])
        out: dict[str, Tensor] = {}
        for s in self.specs:
            source = {"sparse": table.categorical, "dense": table.numeric}.get(
                s.kind, table.sequence
            )
            if s.name not in source:
                raise ConfigError(f"table {table.path!r} has no {s.kind} column {s.name!r}")
            values = take(source[s.name])
            if s.kind == "dense":
                out[s.name] = torch.as_tensor(np.asarray(values, dtype=np.float32))
                continue
            if values.size and (values.min() < 0 or values.max() >= s.vocab_size):
                raise ConfigError(
                    f"column {s.name!r} has codes {values.min()}..{values.max()} outside "
                    f"0..{s.vocab_size - 1}: encode the table with the training vocabulary"
                )
            if s.kind == "sequence" and max_len is not None:
                values = values[:, :max_len]
                if values.shape[1] < max_len:
                    pad = np.zeros((len(values), max_len - values.shape[1]), dtype=np.int64)
                    values = np.concatenate([values, pad], axis=1)
            out[s.name] = torch.as_tensor(np.ascontiguousarray(values, dtype=np.int64))
        return out

    @staticmethod
    def labels(table: CTRTable, rows: np.ndarray | Tensor | None = None) -> Tensor:
        """The 0/1 labels of ``rows`` as float32."""
        if isinstance(rows, Tensor):
            rows = rows.cpu().numpy()
        labels = table.labels if rows is None else table.labels[rows]
        return torch.as_tensor(np.asarray(labels, dtype=np.float32))

    def to_dict(self) -> dict:
        """A JSON-serialisable description; :meth:`from_dict` rebuilds the same features."""
        return {
            "specs": [[s.name, s.kind, s.table, s.vocab_size] for s in self.specs],
            "dense_mean": self.dense_mean,
            "dense_std": self.dense_std,
        }

    @classmethod
    def from_dict(cls, data: dict) -> CTRFeatures:
        specs = [FeatureSpec(*spec) for spec in data["specs"]]
        return cls(specs, data["dense_mean"], data["dense_std"])

    def __repr__(self) -> str:
        return (
            f"CTRFeatures(sparse={len(self.sparse)}, dense={len(self.dense)}, "
            f"sequence={len(self.sequence)}, tables={len(self.tables)})"
        )


class DerivedFeatures(CTRFeatures):
    """:class:`CTRFeatures` whose batches also hold columns derived from the others, e.g. an
    input module's per-sample preprocessing: computed once per table (and ``max_len``) over
    all its rows, kept while the table lives, then taken by rows, so the work stays out of
    the training steps.

    Args:
        features: the features read from the tables (their specs and dense statistics).
        derive: ``batch -> {name: tensor [N, ...]}`` for a batch of ``N`` rows; a row of its
            output must depend on that row of the batch only.
    """

    def __init__(
        self, features: CTRFeatures, derive: Callable[[dict[str, Tensor]], dict[str, Tensor]]
    ) -> None:
        super().__init__(features.specs, features.dense_mean, features.dense_std)
        self.derive = derive
        self._derived: WeakKeyDictionary[CTRTable, dict[int | None, dict[str, Tensor]]]
        self._derived = WeakKeyDictionary()

    def batch(
        self,
        table: CTRTable,
        rows: np.ndarray | Tensor | None = None,
        *,
        max_len: int | None = None,
    ) -> dict[str, Tensor]:
        """:meth:`CTRFeatures.batch` plus the derived columns of ``rows``."""
        out = super().batch(table, rows, max_len=max_len)
        by_len = self._derived.setdefault(table, {})
        if max_len not in by_len:
            by_len[max_len] = self.derive(super().batch(table, max_len=max_len))
        derived = by_len[max_len]
        if rows is not None:
            at = torch.as_tensor(rows.cpu().numpy() if isinstance(rows, Tensor) else rows)
            derived = {name: column[at] for name, column in derived.items()}
        return {**out, **derived}


@dataclass
class EmbeddedFeatures:
    """Output of the embedding part, input of the dense part.

    Attributes:
        fields: ``[B, F0, d]`` one embedding per sparse feature, then one per dense feature
            (standardised value times a learned vector), in :class:`CTRFeatures` order.
        sequences: sequence name -> ``[B, L, d]`` element embeddings.
        masks: sequence name -> ``[B, L]`` bool, True at real elements (code != 0).
        linear: ``[B, F]`` first-order weights per feature (sequences mean-pooled), or None when
            the embedding was built without ``linear``.
        extra: ``[B, E, d]`` fields appended by an input module (e.g. HIEN's intents), or None.
    """

    fields: Tensor
    sequences: dict[str, Tensor] = field(default_factory=dict)
    masks: dict[str, Tensor] = field(default_factory=dict)
    linear: Tensor | None = None
    extra: Tensor | None = None

    def pooled(self, name: str) -> Tensor:
        """Masked mean of sequence ``name``: ``[B, d]`` (zero for an empty sequence)."""
        return masked_mean(self.sequences[name], self.masks[name])

    def all_fields(self, replace: dict[str, Tensor] | None = None) -> Tensor:
        """``[B, F, d]``: the fields, every sequence pooled (mean, or ``replace[name]`` if
        given), then the extra fields."""
        replace = replace or {}
        parts = [self.fields]
        parts += [replace[n] if n in replace else self.pooled(n) for n in self.sequences]
        out = torch.cat([parts[0], *(p.unsqueeze(1) for p in parts[1:])], dim=1)
        if self.extra is not None:
            out = torch.cat([out, self.extra], dim=1)
        return out


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values [B, L, d]`` over positions where ``mask [B, L]`` is True."""
    m = mask.unsqueeze(-1).to(values.dtype)
    return (values * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)


def _key(name: str) -> str:
    return name.replace(".", "_")


def _lookup(codes: Tensor, weight: Tensor) -> Tensor:
    """``weight[codes]``, ``[*codes.shape, d]``: the same values as ``F.embedding``, but its
    backward (an ``index_add``) is faster on CPU than embedding's, which sorts the codes
    (BENCHMARKS.md, "CTR building blocks")."""
    return weight.index_select(0, codes.reshape(-1)).view(*codes.shape, weight.shape[1])


class FeatureEmbedding(torch.nn.Module):
    r"""Embedding part of a CTR model: tables per vocabulary, dense-feature vectors.

    For a sparse feature with code :math:`c`, the field is :math:`\mathbf{E}_t[c]` of its table
    :math:`t` (code 0 = out-of-vocabulary bucket, learned). A dense feature :math:`x` becomes
    :math:`\tilde{x}\,\mathbf{v}` with :math:`\tilde{x} = (x - \mu) / \sigma` (training
    statistics, stored as buffers; a missing value gives :math:`\tilde{x} = 0`). A sequence
    becomes its element embeddings and a mask (code 0 = padding). With ``linear=True`` it also
    returns first-order weights :math:`w_t[c]`, :math:`\tilde{x}\,w` per feature (a sequence's
    weight is the masked mean of its elements' weights), the "wide" part of LR, Wide&Deep and
    DeepFM.

    The forward pass has no data-dependent Python control flow (only loops over the fixed
    feature list), so it traces and exports.

    Args:
        features: the :class:`CTRFeatures`.
        embedding_dim: size :math:`d` of every embedding.
        linear: also hold first-order weights.
        init_std: standard deviation of the normal initialisation.

    Shapes:
        - **input:** a batch ``dict[str, Tensor]`` (see the module docstring)
        - **output:** :class:`EmbeddedFeatures`
    """

    def __init__(
        self,
        features: CTRFeatures,
        embedding_dim: int,
        *,
        linear: bool = False,
        init_std: float = 0.01,
    ) -> None:
        super().__init__()
        if embedding_dim < 1:
            raise ConfigError(f"embedding_dim must be >= 1; got {embedding_dim}")
        keys = [_key(t) for t in features.tables]
        if len(set(keys)) != len(keys):
            raise ConfigError(f"table names collide after replacing '.': {list(features.tables)}")
        self.features = features
        self.embedding_dim = embedding_dim
        self.has_linear = linear
        self.init_std = init_std
        self.tables = torch.nn.ModuleDict(
            {_key(t): torch.nn.Embedding(n, embedding_dim) for t, n in features.tables.items()}
        )
        n_dense = len(features.dense)
        self.dense_weight = torch.nn.Parameter(torch.empty(n_dense, embedding_dim))
        self.register_buffer("dense_mean", torch.tensor(features.dense_mean, dtype=torch.float32))
        self.register_buffer("dense_std", torch.tensor(features.dense_std, dtype=torch.float32))
        if linear:
            self.linear_tables = torch.nn.ModuleDict(
                {_key(t): torch.nn.Embedding(n, 1) for t, n in features.tables.items()}
            )
            self.dense_linear = torch.nn.Parameter(torch.empty(n_dense))
        self._sparse = [(s.name, _key(s.table)) for s in features.sparse]
        self._sequence = [(s.name, _key(s.table)) for s in features.sequence]
        self._dense = [s.name for s in features.dense]
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for table in self.tables.values():
            torch.nn.init.normal_(table.weight, std=self.init_std)
        torch.nn.init.normal_(self.dense_weight, std=self.init_std)
        if self.has_linear:
            for table in self.linear_tables.values():
                torch.nn.init.normal_(table.weight, std=self.init_std)
            torch.nn.init.normal_(self.dense_linear, std=self.init_std)

    def table(self, name: str) -> torch.nn.Embedding:
        """The embedding table of vocabulary ``name``."""
        return self.tables[_key(name)]

    def dense_values(self, batch: dict[str, Tensor]) -> Tensor:
        """Standardised dense features ``[B, n_dense]`` (missing -> 0)."""
        x = torch.stack([batch[n].to(torch.float32) for n in self._dense], dim=1)
        x = (x - self.dense_mean) / self.dense_std
        return torch.where(torch.isnan(x), torch.zeros_like(x), x)

    def forward(
        self, batch: dict[str, Tensor], tables: dict[str, Tensor] | None = None
    ) -> EmbeddedFeatures:
        """Embed ``batch``.

        Args:
            batch: the model input.
            tables: optional replacement weights ``[vocab_size, d]`` by table name, e.g. the
                tables refined by an input module such as HIEN; the others are looked up in
                the module's own tables. First-order weights are never replaced.
        """
        weights = {k: emb.weight for k, emb in self.tables.items()}
        if tables is not None:
            unknown = [name for name in tables if _key(name) not in weights]
            if unknown:
                raise KeyError(f"no embedding table {unknown}; tables: {list(self.tables)}")
            weights.update({_key(name): w for name, w in tables.items()})
        parts = [_lookup(batch[n], weights[t]).unsqueeze(1) for n, t in self._sparse]
        x = None
        if self._dense:
            x = self.dense_values(batch)
            parts.append(x.unsqueeze(-1) * self.dense_weight)
        fields = torch.cat(parts, dim=1) if parts else self._empty(batch)
        sequences = {n: _lookup(batch[n], weights[t]) for n, t in self._sequence}
        masks = {n: batch[n] != 0 for n, _ in self._sequence}
        linear = None
        if self.has_linear:
            lin = [_lookup(batch[n], self.linear_tables[t].weight) for n, t in self._sparse]
            if x is not None:
                lin.append(x * self.dense_linear)
            lin += [
                masked_mean(_lookup(batch[n], self.linear_tables[t].weight), masks[n])
                for n, t in self._sequence
            ]
            linear = torch.cat(lin, dim=1)
        return EmbeddedFeatures(fields, sequences, masks, linear)

    def _empty(self, batch: dict[str, Tensor]) -> Tensor:
        any_input = next(iter(batch.values()))
        return self.dense_weight.new_zeros(any_input.shape[0], 0, self.embedding_dim)

    def extra_repr(self) -> str:
        return f"{self.features!r}, embedding_dim={self.embedding_dim}, linear={self.has_linear}"
