"""Message-passing and interaction layers shared by the graphrec models (one layer per file)."""

from graphrec.nn.cross import CrossLayerV2
from graphrec.nn.fm import FMInteraction
from graphrec.nn.grat_conv import GRATConv
from graphrec.nn.hier_attention import HierarchicalIntentAttention
from graphrec.nn.mlp import MLP
from graphrec.nn.segment import (
    EdgeSegments,
    Segments,
    aggregation_mode,
    segment_max,
    segment_softmax,
    segment_sum,
)
from graphrec.nn.target_attention import TargetAttention
from graphrec.nn.tree_aggregation import TreeAggregation

__all__ = [
    "CrossLayerV2",
    "EdgeSegments",
    "FMInteraction",
    "GRATConv",
    "HierarchicalIntentAttention",
    "MLP",
    "Segments",
    "TargetAttention",
    "TreeAggregation",
    "aggregation_mode",
    "segment_max",
    "segment_softmax",
    "segment_sum",
]
