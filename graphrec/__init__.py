"""graphrec: graph learning for recommendation, federated learning and influence maximization."""

__version__ = "0.1.0"
