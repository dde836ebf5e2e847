"""Message-passing and interaction layers shared by the graphrec models (one layer per file).

The graph layers (:class:`GRATConv`, :class:`TreeAggregation`, :class:`LGConv`,
:class:`RowAggregation`) reduce through :mod:`graphrec.nn.segment`, so each runs in the
``"scatter"``, ``"dense"`` and ``"csr"`` aggregation modes (:func:`aggregation_mode`) and
exports without scatter operators.
"""

from graphrec.nn.bspm import BSPMFilter
from graphrec.nn.cross import CrossLayerV2
from graphrec.nn.fm import FMInteraction
from graphrec.nn.gf_cf import GFCFFilter
from graphrec.nn.grat_conv import GRATConv
from graphrec.nn.hier_attention import HierarchicalIntentAttention
from graphrec.nn.ideal_low_pass import IdealLowPassFilter
from graphrec.nn.lgconv import LGConv, ScipyAdjacency
from graphrec.nn.linear_filter import LinearItemFilter, normalize_interactions
from graphrec.nn.mlp import MLP
from graphrec.nn.row_aggregation import RowAggregate, RowAggregation
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
    "BSPMFilter",
    "CrossLayerV2",
    "EdgeSegments",
    "FMInteraction",
    "GFCFFilter",
    "GRATConv",
    "HierarchicalIntentAttention",
    "IdealLowPassFilter",
    "LGConv",
    "LinearItemFilter",
    "MLP",
    "RowAggregate",
    "RowAggregation",
    "ScipyAdjacency",
    "Segments",
    "TargetAttention",
    "TreeAggregation",
    "aggregation_mode",
    "normalize_interactions",
    "segment_max",
    "segment_softmax",
    "segment_sum",
]
