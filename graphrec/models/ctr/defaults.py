"""One source of the CTR defaults: model hyper-parameters and per-dataset training recipes.

The model constructors (:class:`~graphrec.models.ctr.DIN` and the others,
:class:`~graphrec.models.hien.HIEN`, :func:`~graphrec.models.hien.item_clickers`),
:func:`~graphrec.models.ctr.train_ctr`, :func:`~graphrec.models.ctr.experiment.build_ctr_model`,
``graphrec ctr train`` and ``benchmarks/ctr.py`` read their defaults here, so ``DIN(features)``
in Python is the model the command line trains. Each model registers its config class with
:data:`graphrec.registry.CTR_MODELS` (``CTR_MODELS.config("din") is DINConfig``). The values are
the validated settings behind the README's CTR table (``benchmarks/ctr.py``, five seeds).

Example:
    >>> DIN_DEFAULTS.hidden_channels, DIN_DEFAULTS.attention_hidden, DIN_DEFAULTS.softmax
    ((64, 32), (32,), True)
    >>> train_recipe("synthetic")
    TrainRecipe(epochs=25, batch_size=256, lr=0.01, weight_decay=0.0, patience=5)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DCNV2_DEFAULTS",
    "DEEPFM_DEFAULTS",
    "DIN_DEFAULTS",
    "HIEN_DEFAULTS",
    "LR_DEFAULTS",
    "TRAIN_DEFAULTS",
    "TRAIN_RECIPES",
    "WIDEDEEP_DEFAULTS",
    "DCNv2Config",
    "DINConfig",
    "DeepFMConfig",
    "HIENConfig",
    "LRConfig",
    "TrainRecipe",
    "WideDeepConfig",
    "train_recipe",
]


@dataclass(frozen=True)
class LRConfig:
    """:class:`~graphrec.models.ctr.LR`: one scalar weight per id (``graphrec ctr train`` keeps
    ``embedding_dim`` at 1)."""

    embedding_dim: int = 1


@dataclass(frozen=True)
class WideDeepConfig:
    """:class:`~graphrec.models.ctr.WideDeep` defaults."""

    embedding_dim: int = 16
    hidden_channels: tuple[int, ...] = (64, 32)
    dropout: float = 0.0


@dataclass(frozen=True)
class DeepFMConfig(WideDeepConfig):
    """:class:`~graphrec.models.ctr.DeepFM` defaults (those of Wide & Deep)."""


@dataclass(frozen=True)
class DCNv2Config:
    """:class:`~graphrec.models.ctr.DCNv2` defaults."""

    embedding_dim: int = 16
    num_cross_layers: int = 2
    hidden_channels: tuple[int, ...] = (64, 32)
    structure: str = "parallel"
    low_rank: int | None = None
    dropout: float = 0.0


@dataclass(frozen=True)
class DINConfig:
    """:class:`~graphrec.models.ctr.DIN` defaults (softmax-normalised attention)."""

    embedding_dim: int = 16
    hidden_channels: tuple[int, ...] = (64, 32)
    attention_hidden: tuple[int, ...] = (32,)
    softmax: bool = True
    dropout: float = 0.0


@dataclass(frozen=True)
class HIENConfig:
    """:class:`~graphrec.models.hien.HIEN` defaults: tree aggregator, clickers per item
    (:func:`~graphrec.models.hien.item_clickers`), attention hidden size (None = ``d``) and how
    the intents reach the base model (``"append"``: extra fields); the user intent reads at most
    ``max_values`` values per attribute type and user (the most frequent in the history, weighted
    by their counts); LR under HIEN gets per-id weights of ``lr_embedding_dim`` (summed: still
    linear in the ids) so the attention has room."""

    aggregator: str = "gcn"
    max_clickers: int = 10
    attention_hidden: int | None = None
    plug: str = "append"
    max_values: int = 64
    lr_embedding_dim: int = 16


@dataclass(frozen=True)
class TrainRecipe:
    """Settings of :func:`~graphrec.models.ctr.train_ctr`: Adam, early stopping on validation
    AUC after ``patience`` epochs without gain, at most ``epochs`` epochs. The defaults (those
    of ml-100k and amazon-users) are the recipe of datasets without their own
    (:data:`TRAIN_RECIPES`)."""

    epochs: int = 10
    batch_size: int = 1024
    lr: float = 2e-3
    weight_decay: float = 0.0
    patience: int = 2


LR_DEFAULTS = LRConfig()
WIDEDEEP_DEFAULTS = WideDeepConfig()
DEEPFM_DEFAULTS = DeepFMConfig()
DCNV2_DEFAULTS = DCNv2Config()
DIN_DEFAULTS = DINConfig()
HIEN_DEFAULTS = HIENConfig()
TRAIN_DEFAULTS = TrainRecipe()

#: Validated training recipe per named dataset (the same for base models and HIEN): ml-100k
#: and synthetic by ``benchmarks/ctr.py`` (five models, five seeds), amazon-users by the five
#: base models (test AUC 0.709-0.713, seed 0). The small synthetic set needs more, larger steps.
TRAIN_RECIPES = {
    "ml-100k": TrainRecipe(epochs=10, batch_size=1024, lr=2e-3, patience=2),
    "amazon-users": TrainRecipe(epochs=10, batch_size=1024, lr=2e-3, patience=2),
    "synthetic": TrainRecipe(epochs=25, batch_size=256, lr=1e-2, patience=5),
}


def train_recipe(dataset: str) -> TrainRecipe:
    """The training recipe of ``dataset`` (a name; anything else gets :data:`TRAIN_DEFAULTS`)."""
    return TRAIN_RECIPES.get(str(dataset), TRAIN_DEFAULTS)
