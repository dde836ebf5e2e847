"""Baselines for the k-dDSP: exact greedy, hop-bounded RIS, one-shot heuristics, exact ILP."""

from combinatorial.baselines.greedy import greedy
from combinatorial.baselines.heuristics import (
    degree_discount,
    heu,
    out_degree,
    soft_coverage_scores,
    top_ball_size,
    top_degree,
    top_soft_coverage,
)
from combinatorial.baselines.ilp import ILP_MAX_NODES, ilp
from combinatorial.baselines.ris import ris_greedy

__all__ = [
    "ILP_MAX_NODES",
    "degree_discount",
    "greedy",
    "heu",
    "ilp",
    "out_degree",
    "ris_greedy",
    "soft_coverage_scores",
    "top_ball_size",
    "top_degree",
    "top_soft_coverage",
]
