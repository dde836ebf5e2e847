"""k-dDSP (budgeted d-hop dominating set): coverage evaluation, closure, baselines, FastCover."""

from combinatorial.api import fastcover, solve
from combinatorial.baselines import (
    ILP_MAX_NODES,
    degree_discount,
    greedy,
    heu,
    ilp,
    out_degree,
    ris_greedy,
    soft_coverage_scores,
    top_ball_size,
    top_degree,
    top_soft_coverage,
)
from combinatorial.closure import ball_sizes, d_closure, estimate_closure_bytes
from combinatorial.coverage import coverage, covered_mask
from combinatorial.graph import adjacency
from combinatorial.solution import Solution

__all__ = [
    "ILP_MAX_NODES",
    "Solution",
    "adjacency",
    "ball_sizes",
    "coverage",
    "covered_mask",
    "d_closure",
    "degree_discount",
    "estimate_closure_bytes",
    "fastcover",
    "greedy",
    "heu",
    "ilp",
    "out_degree",
    "ris_greedy",
    "solve",
    "soft_coverage_scores",
    "top_ball_size",
    "top_degree",
    "top_soft_coverage",
]
