"""graphrec: graph learning for recommendation, federated learning and influence maximization."""

from graphrec import _tempfiles  # noqa: F401  (removes PyG's propagate templates at exit)

__version__ = "0.1.0"
