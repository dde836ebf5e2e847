"""CTR models: a shared embedding part (:class:`FeatureEmbedding`) and five base models.

=====================  =================================================================
:class:`LR`            logistic regression
:class:`WideDeep`      Wide & Deep (Cheng et al., 2016)
:class:`DeepFM`        DeepFM (Guo et al., 2017)
:class:`DCNv2`         DCN-V2 (Wang et al., 2021)
:class:`DIN`           Deep Interest Network (Zhou et al., 2018), target attention
=====================  =================================================================

Data and training: :func:`movielens_ctr` and :func:`amazon_ctr` build train / validation /
test :class:`graphrec.io.CTRTable` splits (per-user, time-ordered); :func:`train_ctr` trains
with early stopping on validation AUC, seeds and checkpoint/resume; :func:`evaluate_ctr` gives
AUC, GAUC and logloss. :mod:`graphrec.models.ctr.experiment` loads the named CTR datasets
(``ml-100k``, ``amazon-users``, ``synthetic``, a Taobao folder) and builds every model with or
without HIEN. :mod:`graphrec.models.ctr.defaults` is the one source of the defaults: model
hyper-parameters (``DIN(features)`` is the model ``graphrec ctr train --model din`` trains) and
the validated training recipe per dataset (:func:`train_recipe`), read by the constructors,
:func:`train_ctr`, the CLI and ``benchmarks/ctr.py``. Each model registers its name and config
in :data:`graphrec.registry.CTR_MODELS`, where the CLI finds its ``--model`` choices.

Every model maps a batch ``dict[str, Tensor]`` (from :meth:`CTRFeatures.batch`) to logits
``[B]`` through ``interact(embed(batch))``.

Example:
    >>> from graphrec.datasets import load_taobao_tiny
    >>> from graphrec.models.ctr import CTRFeatures, DIN
    >>> data = load_taobao_tiny("shared/data/ctr/fuxictr_tiny_taobao")  # doctest: +SKIP
    >>> features = CTRFeatures.from_table(data.train)  # doctest: +SKIP
    >>> logits = DIN(features)(features.batch(data.test))  # doctest: +SKIP
"""

from graphrec.models.ctr.base import MLP, CTRModel
from graphrec.models.ctr.data import (
    AMAZON_CTR_SCHEMA,
    MOVIELENS_CTR_SCHEMA,
    CTRSplit,
    amazon_ctr,
    movielens_ctr,
)
from graphrec.models.ctr.dcn import DCNv2
from graphrec.models.ctr.deepfm import DeepFM
from graphrec.models.ctr.defaults import TRAIN_RECIPES, TrainRecipe, train_recipe
from graphrec.models.ctr.din import DIN
from graphrec.models.ctr.features import (
    CTRFeatures,
    EmbeddedFeatures,
    FeatureEmbedding,
    FeatureSpec,
    masked_mean,
)
from graphrec.models.ctr.lr import LR
from graphrec.models.ctr.train import TrainResult, evaluate_ctr, train_ctr
from graphrec.models.ctr.widedeep import WideDeep

__all__ = [
    "AMAZON_CTR_SCHEMA",
    "MOVIELENS_CTR_SCHEMA",
    "CTRFeatures",
    "CTRSplit",
    "CTRModel",
    "DCNv2",
    "DIN",
    "DeepFM",
    "EmbeddedFeatures",
    "FeatureEmbedding",
    "FeatureSpec",
    "LR",
    "MLP",
    "TRAIN_RECIPES",
    "TrainRecipe",
    "TrainResult",
    "WideDeep",
    "amazon_ctr",
    "evaluate_ctr",
    "masked_mean",
    "movielens_ctr",
    "train_ctr",
    "train_recipe",
]
