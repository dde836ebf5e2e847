"""FastCover: GRAT network scoring seeds for budgeted d-hop coverage (k-dDSP), unsupervised.

- :class:`FastCover` (``model``): GRAT layers -> one logit per node.
- :func:`fastcover_loss`, :func:`budget_loss`, :func:`cover_index` (``loss``): training losses in
  sparse log-space form.
- :func:`load_pretrained`, :func:`scores`, :func:`fastcover_seeds`, :func:`fastcover_solution`,
  :func:`one_pass_solution` (``inference``): shipped weights for d = 1, 2, 3 and top-k seeds,
  optionally re-scored, as an uncertified solution with an upper bound.
- :func:`combinatorial.gnn.train.train_fastcover` (``graphrec fastcover train``): training into
  a folder, reproducing the shipped weights; ``python -m combinatorial.gnn.evaluate``: the
  benchmark table.
"""

from combinatorial.gnn.inference import (
    fastcover_seeds,
    fastcover_solution,
    load_pretrained,
    one_pass_solution,
    scores,
)
from combinatorial.gnn.loss import budget_loss, cover_index, fastcover_loss
from combinatorial.gnn.model import FastCover, node_features

__all__ = [
    "FastCover",
    "budget_loss",
    "cover_index",
    "fastcover_loss",
    "fastcover_seeds",
    "fastcover_solution",
    "load_pretrained",
    "node_features",
    "one_pass_solution",
    "scores",
]
