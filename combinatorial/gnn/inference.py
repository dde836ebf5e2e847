"""FastCover inference: pretrained weights, node scores and top-k seeds (with optional re-scoring).

Seeds are the top-k logits of one forward pass on the original graph; no d-closure is built. With
``rounds=R`` the budget is split over R passes: after each pass the nodes covered by the seeds so
far stop counting as targets (``residual``) and the remaining nodes are scored again.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor
from tqdm import tqdm

from combinatorial.coverage import covered_mask
from combinatorial.gnn.model import FastCover
from combinatorial.graph import adjacency, check_d, check_k
from combinatorial.pruned import upper_bound
from combinatorial.solution import Solution
from graphrec.errors import ConfigError, GraphrecError

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
MAX_PRETRAINED_D = 3
RESIDUAL = ("mask", "drop")
#: Edges per chunk of a chunked forward pass (:func:`scores`).
CHUNK_EDGES = 1 << 21


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_pretrained(d: int, *, weights_dir: str | Path | None = None) -> FastCover:
    """The shipped FastCover model for hop count ``d``, in eval mode.

    Weights exist for d = 1, 2, 3 (one model per d). For d > 3 the d = 3 model is returned with a
    warning: three GRAT layers see three hops, so no deeper model exists to fall back on.
    The file's SHA-256 is checked against ``weights.json`` and it is loaded with
    ``torch.load(..., weights_only=True)``.

    Args:
        d: hop count (>= 1).
        weights_dir: folder with ``weights.json`` and the ``.pt`` files (default: the package's).

    Raises:
        GraphrecError: the manifest or weight file is missing, or the checksum does not match.
    """
    d = check_d(d)
    if d > MAX_PRETRAINED_D:
        warnings.warn(
            f"no pretrained FastCover model for d={d}; using the d={MAX_PRETRAINED_D} model",
            stacklevel=2,
        )
        d = MAX_PRETRAINED_D
    root = WEIGHTS_DIR if weights_dir is None else Path(weights_dir)
    manifest = root / "weights.json"
    if not manifest.is_file():
        raise GraphrecError(f"FastCover weights manifest not found: {manifest}")
    entry = json.loads(manifest.read_text())["models"].get(str(d))
    if entry is None:
        raise GraphrecError(f"{manifest} has no FastCover model for d={d}")
    path = root / entry["file"]
    if not path.is_file():
        raise GraphrecError(f"FastCover weight file not found: {path}")
    digest = sha256_file(path)
    if digest != entry["sha256"]:
        raise GraphrecError(
            f"{path}: SHA-256 {digest} does not match {entry['sha256']} recorded in {manifest}; "
            "the file is corrupt or was replaced"
        )
    model = FastCover(**entry["config"])
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()


class _Ticking(list):
    """A list of chunks that advances a progress bar by one each time a chunk is visited."""

    def __init__(self, chunks: list, bar: tqdm) -> None:
        super().__init__(chunks)
        self.bar = bar

    def __iter__(self) -> Iterator:
        for chunk in super().__iter__():
            yield chunk
            self.bar.update()


def scores(
    model: FastCover,
    edge_index: Tensor,
    num_nodes: int,
    *,
    target_weight: Tensor | None = None,
    chunk_edges: int | None = CHUNK_EDGES,
    progress: bool = False,
) -> Tensor:
    """Seed logits ``[n]`` of every node (higher = better seed), without gradients.

    A graph with more than ``chunk_edges`` edges is scored ``chunk_edges`` edges at a time, in
    edge order, with the same logits (bit for bit on the CPU, whose ``scatter_add_`` sums in
    edge order): memory O(m + n F + chunk_edges F) instead of O(m F) for F hidden channels.

    Args:
        model: a :class:`FastCover` model (e.g. from :func:`load_pretrained`).
        edge_index: ``[2, m]`` int64, row 0 covers row 1 (the file's direction).
        num_nodes: number of nodes ``n``.
        target_weight: optional ``[n]`` weight of each node as a target (0 = already covered).
        chunk_edges: edges per chunk (>= 1); None = never chunk.
        progress: a tqdm bar (stderr) over the chunks of every layer (chunked runs only).
    """
    if chunk_edges is not None and (
        isinstance(chunk_edges, bool) or not isinstance(chunk_edges, int) or chunk_edges < 1
    ):
        raise ConfigError(f"chunk_edges must be an integer >= 1 or None, got {chunk_edges!r}")
    with torch.inference_mode():
        if chunk_edges is None or edge_index.size(1) <= chunk_edges:
            return model(edge_index, num_nodes, target_weight)
        m = edge_index.size(1)
        chunks = [slice(a, a + chunk_edges) for a in range(0, m, chunk_edges)]
        total = 3 * len(chunks) * len(model.convs)  # three passes per layer
        with tqdm(
            total=total, desc="scoring", unit="chunk", leave=False, disable=not progress
        ) as bar:
            return model(edge_index, num_nodes, target_weight, chunks=_Ticking(chunks, bar))


def top_k(score: Tensor, k: int, exclude: Tensor | None = None) -> Tensor:
    """Indices of the ``k`` highest scores, ties to the smallest id; ``exclude`` masks nodes out."""
    if exclude is not None:
        score = score.masked_fill(exclude, -math.inf)
    return torch.sort(score, descending=True, stable=True).indices[:k]


def fastcover_seeds(
    edge_index: Tensor,
    num_nodes: int,
    k: int,
    d: int,
    *,
    model: FastCover | None = None,
    rounds: int = 1,
    residual: str = "mask",
    adj: sp.sparray | sp.spmatrix | None = None,
) -> np.ndarray:
    """FastCover seeds: top-k of the model's logits, in ``rounds`` scoring passes.

    ``rounds=1`` is the official method (one forward pass). With ``rounds=R``, round r takes the
    next ``ceil(k / R)`` best nodes not chosen yet; between rounds the nodes within ``d`` hops of
    the seeds so far (:func:`combinatorial.coverage.covered_mask`) stop counting as targets:

    - ``residual="mask"``: their weight as targets in the credit of layer ``model.mask_layer``
      (the layer where the model starts counting targets) becomes 0, so they add nothing to any
      coverer's score, while paths through them still carry the credit of the nodes behind them;
    - ``residual="drop"``: their in-edges are deleted for all layers (the official, unused
      ``get_x_top`` deletes the covered nodes' edges), which also cuts those paths.

    Args:
        edge_index: ``[2, m]`` int64, row 0 covers row 1.
        num_nodes: number of nodes ``n``.
        k: budget (>= 1, capped at n with a warning).
        d: hop count (>= 1); also selects the pretrained model when ``model`` is None.
        model: scoring model (default: :func:`load_pretrained` ``(d)``).
        rounds: number of scoring passes (1 = one pass).
        residual: ``"mask"`` or ``"drop"`` (only used when ``rounds > 1``).
        adj: binary adjacency of the graph for the coverage between rounds (built if None).

    Returns:
        ``int64`` array of ``min(k, n)`` node ids in pick order.

    Cost: ``rounds`` forward passes, O(m F + n F^2) each, plus ``rounds - 1`` d-hop BFS from the
    seeds; no closure.
    """
    k = check_k(k, num_nodes)
    d = check_d(d)
    if not isinstance(rounds, int) or rounds < 1:
        raise ConfigError(f"rounds must be an integer >= 1, got {rounds!r}")
    if residual not in RESIDUAL:
        raise ConfigError(f"residual must be one of {RESIDUAL}, got {residual!r}")
    model = load_pretrained(d) if model is None else model.eval()
    per_round = math.ceil(k / rounds)
    device = edge_index.device
    chosen = torch.zeros(num_nodes, dtype=torch.bool, device=device)
    seeds: list[Tensor] = []
    graph, weight, taken = edge_index, None, 0
    while True:
        logits = scores(model, graph, num_nodes, target_weight=weight)
        pick = top_k(logits, min(per_round, k - taken), chosen)
        seeds.append(pick)
        chosen[pick] = True
        taken += len(pick)
        if taken == k:
            break
        if adj is None:
            adj = adjacency(edge_index, num_nodes)
        covered = covered_mask(adj, torch.cat(seeds).cpu().numpy(), d)
        covered = torch.from_numpy(covered).to(device)
        if residual == "mask":
            weight = (~covered).float()
        else:
            graph = edge_index[:, ~covered[edge_index[1]]]
    return torch.cat(seeds).cpu().numpy().astype(np.int64)


def one_pass_solution(
    pick: Callable[[], np.ndarray],
    adj: sp.sparray | sp.spmatrix,
    k: int,
    d: int,
    *,
    info: dict[str, Any] | None = None,
) -> Solution:
    """The uncertified :class:`Solution` of the top-k seeds that ``pick()`` returns.

    ``timings["score"]`` is ``pick()`` (the scoring and top-k), ``timings["evaluate"]`` the exact
    d-hop coverage of the seeds; ``info`` adds ``strategy="one pass"``, ``certified=False`` and
    ``upper_bound`` (>= the optimum, :func:`combinatorial.pruned.upper_bound`).
    """
    t0 = time.perf_counter()
    seeds = pick()
    t1 = time.perf_counter()
    covered = int(covered_mask(adj, seeds, d).sum())
    t2 = time.perf_counter()
    bound = upper_bound(adj, seeds, d, k)
    return Solution(
        seeds=seeds,
        covered=covered,
        n=adj.shape[0],
        d=d,
        method="fastcover",
        timings={"score": t1 - t0, "evaluate": t2 - t1},
        info={**(info or {}), "strategy": "one pass", "certified": False, "upper_bound": bound},
    )


def fastcover_solution(
    edge_index: Tensor,
    num_nodes: int,
    k: int,
    d: int,
    *,
    model: FastCover | None = None,
    rounds: int = 1,
    residual: str = "mask",
    adj: sp.sparray | sp.spmatrix | None = None,
) -> Solution:
    """:func:`fastcover_seeds` as a :func:`one_pass_solution` (exact coverage, upper bound).

    ``timings["score"]`` is the seed selection (forward passes + top-k, model loading excluded);
    ``timings["evaluate"]`` the exact d-hop coverage of the seeds; ``info`` has ``rounds`` and
    ``residual``.
    """
    model = load_pretrained(d) if model is None else model
    adj = adjacency(edge_index, num_nodes) if adj is None else adj

    def pick() -> np.ndarray:
        return fastcover_seeds(
            edge_index, num_nodes, k, d, model=model, rounds=rounds, residual=residual, adj=adj
        )

    return one_pass_solution(pick, adj, k, d, info={"rounds": rounds, "residual": residual})
