"""Multi-task recommendation: Shared-Bottom, MMoE and PLE over the CTR feature schema.

=====================  =================================================================
:class:`SharedBottom`  one shared MLP, one tower per task (Caruana, 1997)
:class:`MMoE`          Multi-gate Mixture-of-Experts (Ma et al., KDD 2018)
:class:`PLE`           Progressive Layered Extraction (Tang et al., RecSys 2020)
=====================  =================================================================

Every backbone shares the CTR embedding part (:class:`~graphrec.models.ctr.FeatureEmbedding`),
maps a batch to task logits ``[B, T]`` and exposes the per-task tower inputs
(:meth:`MTLModel.forward_towers`), where CrossDistil's teacher towers attach. Each registers
its name and config in :data:`graphrec.registry.MTL_MODELS` (``graphrec mtl train
--backbone``); :mod:`graphrec.models.mtl.defaults` holds the defaults and training recipes.

Data: :class:`MTLTable` (a CTR table plus a label matrix), :func:`movielens_mtl`,
:func:`taobao_behavior_mtl`, :func:`synthetic_mtl`, :func:`load_mtl_dataset`. Training:
:func:`train_mtl` (joint task losses, optionally with :class:`CrossDistil` or plain
distillation, early stopping on validation, checkpoint/resume); :func:`evaluate_mtl` gives
per-task AUC, GAUC and logloss, Multi-AUC over the graded label ``2 y_A + y_B`` and NDCG with
that grade as relevance.

Example:
    >>> from graphrec.models.mtl import MMoE, load_mtl_dataset
    >>> data = load_mtl_dataset("synthetic", seed=0)
    >>> model = MMoE(data.features, num_tasks=2)
    >>> model(data.features.batch(data.split.valid.table)).shape
    torch.Size([2000, 2])
"""

from graphrec.models.mtl.base import MTLModel, gated_mixture
from graphrec.models.mtl.crossdistil import CrossDistil, CrossDistilConfig
from graphrec.models.mtl.data import (
    MTL_DATASETS,
    MTLDataset,
    MTLSplit,
    MTLTable,
    load_mtl_dataset,
    movielens_mtl,
    synthetic_mtl,
    taobao_behavior_mtl,
)
from graphrec.models.mtl.defaults import (
    DISTILL_RECIPES,
    MTL_RECIPES,
    MTLRecipe,
    distill_recipe,
    mtl_recipe,
)
from graphrec.models.mtl.mmoe import MMoE
from graphrec.models.mtl.ple import PLE
from graphrec.models.mtl.shared_bottom import SharedBottom
from graphrec.models.mtl.train import (
    DISTILL_MODES,
    MTLTrainResult,
    build_mtl,
    evaluate_mtl,
    predict_mtl,
    train_mtl,
)

__all__ = [
    "DISTILL_RECIPES",
    "DISTILL_MODES",
    "CrossDistil",
    "CrossDistilConfig",
    "MMoE",
    "MTLDataset",
    "MTLModel",
    "MTLRecipe",
    "MTLSplit",
    "MTLTrainResult",
    "MTLTable",
    "MTL_DATASETS",
    "MTL_RECIPES",
    "PLE",
    "SharedBottom",
    "build_mtl",
    "distill_recipe",
    "evaluate_mtl",
    "gated_mixture",
    "load_mtl_dataset",
    "movielens_mtl",
    "mtl_recipe",
    "predict_mtl",
    "synthetic_mtl",
    "taobao_behavior_mtl",
    "train_mtl",
]
