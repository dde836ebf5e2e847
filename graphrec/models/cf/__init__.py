"""Collaborative filtering on the user-item graph: MF / LightGCN backbones, BPR, InfoNCE, HDCCF.

Example:
    >>> from graphrec.graphs import build_bipartite
    >>> from graphrec.models.cf import HDCCFLoss, InteractionSampler, LightGCN
    >>> graph = build_bipartite(train_matrix, test_matrix)  # doctest: +SKIP
    >>> model = LightGCN.from_graph(graph, embedding_dim=64, num_layers=3)  # doctest: +SKIP
    >>> loss_fn = HDCCFLoss(temperature=0.2, tau_plus=0.05)  # doctest: +SKIP
    >>> for batch in InteractionSampler(graph.train, 2048).epoch(0):  # doctest: +SKIP
    ...     users, items = model()
    ...     loss = loss_fn(users[batch.users], items[batch.items], known=batch.known)

    Or the whole loop with early stopping and checkpoints:

    >>> graph = load_cf_graph("ml-100k", root="shared/data")  # doctest: +SKIP
    >>> cfg = CFConfig(backbone="mf", loss="hdccf", temperature=0.2, logq=1.0)  # doctest: +SKIP
    >>> trainer = CFTrainer(graph, cfg)  # doctest: +SKIP
    >>> trainer.fit(checkpoint="run.pt").evaluate("test")  # doctest: +SKIP

Backbones and losses are looked up by name in :data:`graphrec.registry.CF_BACKBONES` (each
builds itself with ``from_config(graph, config)``) and :data:`graphrec.registry.CF_LOSSES`
(:class:`CFObjective` subclasses), so a new one is a registered class in one file.
"""

from graphrec.models.cf.backbones import MF, CFBackbone, LightGCN
from graphrec.models.cf.data import load_cf_graph
from graphrec.models.cf.graph_filter import (
    FILTER_METHODS,
    GraphFilterCF,
    GraphFilterConfig,
    tune_graph_filter,
)
from graphrec.models.cf.losses import (
    CFLossInput,
    CFObjective,
    HDCCFLoss,
    bpr_loss,
    debiased_negative_mean,
    info_nce_loss,
    l2_regularization,
    log_debiased_negative_mean,
    pairwise_similarity,
    setwise_contrastive_loss,
)
from graphrec.models.cf.sampler import CFBatch, InteractionSampler, known_mask
from graphrec.models.cf.trainer import CFConfig, CFTrainer, build_backbone, top_k

__all__ = [
    "CFBackbone",
    "CFBatch",
    "CFConfig",
    "CFLossInput",
    "CFObjective",
    "CFTrainer",
    "FILTER_METHODS",
    "GraphFilterCF",
    "GraphFilterConfig",
    "HDCCFLoss",
    "InteractionSampler",
    "LightGCN",
    "MF",
    "bpr_loss",
    "build_backbone",
    "debiased_negative_mean",
    "info_nce_loss",
    "known_mask",
    "l2_regularization",
    "load_cf_graph",
    "log_debiased_negative_mean",
    "pairwise_similarity",
    "setwise_contrastive_loss",
    "top_k",
    "tune_graph_filter",
]
