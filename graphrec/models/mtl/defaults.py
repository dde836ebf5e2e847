"""One source of the multi-task defaults: backbone hyper-parameters and training recipes.

The backbone constructors (:class:`~graphrec.models.mtl.SharedBottom`,
:class:`~graphrec.models.mtl.MMoE`, :class:`~graphrec.models.mtl.PLE`),
:func:`~graphrec.models.mtl.train_mtl` and ``graphrec mtl train`` read their defaults here; each
backbone registers its config class with :data:`graphrec.registry.MTL_MODELS`.

Example:
    >>> MMOE_DEFAULTS.num_experts, MMOE_DEFAULTS.expert_channels
    (4, (64,))
    >>> mtl_recipe("synthetic").lr
    0.01
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "MMOE_DEFAULTS",
    "MMoEConfig",
    "MTL_RECIPES",
    "MTL_TRAIN_DEFAULTS",
    "MTLRecipe",
    "PLEConfig",
    "PLE_DEFAULTS",
    "SHARED_BOTTOM_DEFAULTS",
    "SharedBottomConfig",
    "DISTILL_RECIPES",
    "distill_recipe",
    "mtl_recipe",
]


@dataclass(frozen=True)
class SharedBottomConfig:
    """:class:`~graphrec.models.mtl.SharedBottom` defaults."""

    embedding_dim: int = 16
    bottom_channels: tuple[int, ...] = (64,)
    tower_channels: tuple[int, ...] = (32,)
    dropout: float = 0.0


@dataclass(frozen=True)
class MMoEConfig:
    """:class:`~graphrec.models.mtl.MMoE` defaults."""

    embedding_dim: int = 16
    num_experts: int = 4
    expert_channels: tuple[int, ...] = (64,)
    tower_channels: tuple[int, ...] = (32,)
    dropout: float = 0.0


@dataclass(frozen=True)
class PLEConfig:
    """:class:`~graphrec.models.mtl.PLE` defaults: ``num_levels`` extraction levels, each with
    ``num_shared_experts`` shared and ``num_task_experts`` experts per task."""

    embedding_dim: int = 16
    num_levels: int = 2
    num_shared_experts: int = 2
    num_task_experts: int = 2
    expert_channels: tuple[int, ...] = (64,)
    tower_channels: tuple[int, ...] = (32,)
    dropout: float = 0.0


@dataclass(frozen=True)
class MTLRecipe:
    """Settings of :func:`~graphrec.models.mtl.train_mtl`: Adam on the sum of the task losses,
    early stopping on the validation ``select`` metric (``"mean_auc"``, the mean of the task
    AUCs, or ``"multi_auc"``) after ``patience`` epochs without gain."""

    epochs: int = 10
    batch_size: int = 1024
    lr: float = 2e-3
    weight_decay: float = 0.0
    patience: int = 2
    select: str = "mean_auc"


SHARED_BOTTOM_DEFAULTS = SharedBottomConfig()
MMOE_DEFAULTS = MMoEConfig()
PLE_DEFAULTS = PLEConfig()
MTL_TRAIN_DEFAULTS = MTLRecipe()

#: Training recipe per named dataset (anything else gets :data:`MTL_TRAIN_DEFAULTS`).
MTL_RECIPES = {
    "ml-100k": MTLRecipe(epochs=10, batch_size=1024, lr=5e-3, patience=2),
    "synthetic": MTLRecipe(epochs=15, batch_size=1024, lr=1e-2, patience=3),
    "taobao": MTLRecipe(epochs=5, batch_size=256, lr=5e-3, patience=2),
}


#: Distillation settings per (dataset, mode) that differ from the
#: :class:`~graphrec.models.mtl.crossdistil.CrossDistilConfig` defaults, chosen on validation
#: Multi-AUC (seed 0, MMoE, ``benchmarks/mtl.py --part tune``; the same grid for both modes).
DISTILL_RECIPES: dict[tuple[str, str], dict] = {
    ("ml-100k", "kd"): {"detach_backbone": True},
    ("ml-100k", "crossdistil"): {"pairs": "all"},
    ("synthetic", "crossdistil"): {"alpha": 0.1},
}


def mtl_recipe(dataset: str) -> MTLRecipe:
    """The training recipe of ``dataset`` (a name; anything else gets the defaults)."""
    return MTL_RECIPES.get(str(dataset), MTL_TRAIN_DEFAULTS)


def distill_recipe(dataset: str, mode: str) -> dict:
    """The validated distillation options of ``dataset`` and ``mode`` (``"kd"`` or
    ``"crossdistil"``); empty where the config defaults apply."""
    return dict(DISTILL_RECIPES.get((str(dataset), mode), {}))
