"""Train a FastCover model for one hop count d without labels: :func:`train_fastcover`.

Loop (as the official code): full-graph steps on each training graph in a fixed order,
``steps_per_graph`` per graph and epoch, early stopping with ``patience`` on a validation score,
the best epoch kept. Validation score = mean over the validation graphs and budgets ``ks`` of
top-k coverage / greedy coverage; unlike the official code (which selects on its training graphs)
the validation graphs are neither trained on nor benchmark test graphs.

graphrec defaults (:class:`TrainConfig`), each switchable back to the official choice:

- ``loss="budget"`` (:func:`~combinatorial.gnn.loss.budget_loss`: expected uncovered nodes
  under a soft top-k selection, averaged over ``train_ks``) instead of ``"official"``
  (:func:`~combinatorial.gnn.loss.fastcover_loss`, ``penalty``, ``c``): the official loss fixes
  one selection size and, trained to convergence, ranks worse on validation graphs than its own
  initialisation at d = 2.
- ``init="monotone"`` (:func:`monotone_init_`) instead of ``"default"`` (PyTorch's).
- ``features="degree"`` instead of ``"ones"``; AdamW (lr 3e-4, weight decay 1e-2, gradient
  clipping) instead of SGD lr 5e-4.
- Graphs whose d-closure has more than ``max_entries`` entries are trained on a fresh uniform
  sample of targets each epoch (an unbiased estimate of the loss, see
  :func:`~combinatorial.gnn.loss.cover_index`); no n x n matrix is ever built.

Opt-in, off in the shipped recipe: ``residual=p`` makes a share ``p`` of the steps residual steps
(:func:`residual_targets`: the nodes covered by a prefix of greedy's seeds get target weight 0
and leave the loss), so that the model learns to re-score as ``fastcover_seeds(rounds=R)`` asks
it to; ``residual_input`` also gives the model that weight as an input column; ``val_rounds=R``
selects the best epoch on the validation score with ``R`` re-scoring rounds instead of one pass.

Output folder (created if needed; an existing model is replaced only with ``force``)::

    fastcover_d{d}.pt     the best model's state_dict; load_pretrained(d, weights_dir=folder)
    weights.json          manifest: this model's entry (SHA-256, config, command, data, scores,
                          times) beside the folder's other entries and blocks, which are kept
    fastcover_d{d}.ckpt   checkpoint after every epoch while training; removed when done

Every file is written to a temporary file in the folder, synced and renamed. The same config
(``seed`` and ``threads`` included: the thread count changes float reductions, hence the
weights) gives the same model bytes with the same torch build, and a run interrupted and run
again with the same config continues from its checkpoint to the same result.

Command line: ``graphrec fastcover train --d 2 --out DIR``
(:mod:`graphrec.commands.fastcover_train`; ``python -m combinatorial.gnn.train`` is the same).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from combinatorial.baselines import greedy
from combinatorial.coverage import coverage, covered_mask
from combinatorial.gnn.inference import fastcover_seeds, scores, sha256_file, top_k
from combinatorial.gnn.loss import (
    PENALTIES,
    budget_loss,
    cover_index,
    fastcover_loss,
    imitation_loss,
)
from combinatorial.gnn.model import FEATURES, FastCover, feature_dim
from combinatorial.graph import adjacency
from graphrec.datasets import DATA_ENV, dataset_folder
from graphrec.errors import ConfigError, GraphrecError
from graphrec.io import read_edgelist
from graphrec.io.atomic import atomic_write_text
from graphrec.io.checkpoint import CheckpointError, check_same_run, load_checkpoint
from graphrec.training import Trainer, run_epochs

TRAIN_GRAPHS = (
    "fastcover/directed/soc-wiki-elec.txt.gz",
    "fastcover/directed/soc-anybeat.txt.gz",
    "fastcover/directed/soc-advogato.txt.gz",
    "fastcover/directed/soc-sign-bitcoinotc.txt.gz",
)
VAL_GRAPHS = (
    "fastcover/undirected/soc-hamsterster.txt",
    "fastcover/undirected/fb-pages-company.txt.gz",
    "fastcover/undirected/Nethept.txt.gz",
    "fastcover/undirected/as-caida20071105.txt.gz",
    "fastcover/undirected/soc-gemsec-RO.txt.gz",
)
INITS = ("default", "monotone")
OPTIMIZERS = ("adamw", "sgd")
LOSSES = ("budget", "official")
#: The benchmark's test graphs: refused for training and validation.
TEST_GRAPHS = (
    "soc-gplus",
    "soc-epinions",
    "soc-brightkite",
    "soc-loc-brightkite",
    "soc-slashdot",
    "soc-douban",
)


@dataclass
class Graph:
    """A graph ready for training or validation."""

    name: str
    edge_index: Tensor
    num_nodes: int
    adj: sp.csr_array
    closure_entries: float
    greedy_cover: dict[int, int] | None = None
    full_index: Tensor | None = None
    greedy_order: Tensor | None = None


#: Files in the output folder (``{d}`` = hop count).
MODEL_FILE = "fastcover_d{d}.pt"
CHECKPOINT_FILE = "fastcover_d{d}.ckpt"
MANIFEST_FILE = "weights.json"
ABOUT = (
    "FastCover (GRAT3) weights written by graphrec fastcover train, one state_dict per hop count "
    "d; load with combinatorial.gnn.load_pretrained(d, weights_dir=<this folder>). 'validation' "
    "= mean over the validation graphs and k in ks of top-k coverage / exact greedy coverage "
    "(one forward pass); 'validation_untrained' = the same for the model at initialisation. "
    "Times: wall seconds."
)

#: Options every recorded command lists, default or not.
_ALWAYS = ("seed", "threads")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained model; one ``graphrec fastcover train`` option each.

    Sequences are stored as tuples; graph paths are relative to the data root. The defaults are
    the recipe of the shipped weights (see the module docstring for the choices).
    """

    d: int
    graphs: tuple[str, ...] = TRAIN_GRAPHS
    val_graphs: tuple[str, ...] = VAL_GRAPHS
    ks: tuple[int, ...] = (1, 8, 32, 128, 1024)
    max_epochs: int = 80
    steps_per_graph: int = 2
    patience: int = 20
    optimizer: str = "adamw"
    lr: float = 3e-4
    weight_decay: float = 1e-2
    clip: float = 1.0
    features: str = "degree"
    hidden: int = 32
    init: str = "monotone"
    loss: str = "budget"
    penalty: str = "linear"
    c: float = 1.0
    k_train: int = 32
    train_ks: tuple[int, ...] = (1, 8, 32, 128, 1024)
    temperature: float = 1.0
    imitation: float = 0.0
    residual: float = 0.0
    residual_input: bool = False
    val_rounds: int = 1
    max_entries: int = 2_000_000
    seed: int = 42
    threads: int = 1

    def __post_init__(self) -> None:
        for name in ("graphs", "val_graphs", "ks", "train_ks"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value))
            if not getattr(self, name):
                raise ConfigError(f"{name} must not be empty")
        positive = ("d", "max_epochs", "steps_per_graph", "patience", "hidden", "k_train")
        positive += ("val_rounds",)
        for name in (*positive, "max_entries", "threads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if min(self.ks + self.train_ks) < 1:
            raise ConfigError("ks and train_ks must be >= 1")
        if self.imitation < 0:
            raise ConfigError(f"imitation must be >= 0, got {self.imitation}")
        if not 0.0 <= self.residual <= 1.0:
            raise ConfigError(f"residual must be a probability in [0, 1], got {self.residual}")
        if self.residual_input and self.residual == 0:
            raise ConfigError("residual_input needs residual > 0 (else the input is always 1)")
        choices = {
            "optimizer": OPTIMIZERS,
            "features": FEATURES,
            "init": INITS,
            "loss": LOSSES,
            "penalty": PENALTIES,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for path in self.graphs + self.val_graphs:
            _check_not_test(path)

    def as_dict(self) -> dict[str, Any]:
        """The fields as JSON types (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def command(self, out_dir: str | Path) -> str:
        """The ``graphrec fastcover train`` command line of this config and ``out_dir``.

        Lists ``--seed``, ``--threads`` and the options that differ from their defaults (a
        switched-on boolean as its bare flag).
        """
        parts = ["graphrec", "fastcover", "train", "--d", str(self.d), "--out", str(out_dir)]
        default = TrainConfig(self.d)
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "d" or (value == getattr(default, f.name) and f.name not in _ALWAYS):
                continue
            flag = "--" + f.name.replace("_", "-")
            if isinstance(value, bool):
                parts += [flag] if value else []
                continue
            values = value if isinstance(value, tuple) else (value,)
            parts += [flag, *map(str, values)]
        return shlex.join(parts)


def _check_not_test(path: str) -> None:
    stem = Path(path).name.split(".")[0]
    if stem in TEST_GRAPHS or stem == "douban":
        raise ConfigError(
            f"{path} is a benchmark test graph; it may not be used to train or select"
        )


def closure_entries(adj: sp.csr_array, d: int, samples: int = 512, seed: int = 0) -> float:
    """Estimated nnz of ``M = A_d + I``: n times the mean reverse d-ball of sampled targets."""
    n = adj.shape[0]
    targets = np.random.default_rng(seed).choice(n, size=min(n, samples), replace=False)
    return cover_index(adj, d, targets).shape[1] * n / len(targets)


def load_graph(path: Path, d: int) -> Graph:
    """Read an edge list (as directed, self-loops and duplicates kept) and size its d-closure."""
    _check_not_test(str(path))
    g = read_edgelist(path)
    adj = adjacency(g.data.edge_index, g.num_nodes)
    entries = closure_entries(adj, d)
    return Graph(path.name.split(".")[0], g.data.edge_index, g.num_nodes, adj, entries)


def greedy_reference(graph: Graph, d: int, ks: list[int]) -> dict[int, int]:
    """Greedy coverage at every budget in ``ks`` (<= n), from the prefixes of one greedy run."""
    ks = [k for k in ks if k <= graph.num_nodes]
    seeds = greedy(graph.adj, max(ks), d, max_bytes=None).seeds
    return {k: coverage(graph.adj, seeds[:k], d) for k in ks}


def validate(model: FastCover, graphs: list[Graph], d: int, rounds: int = 1) -> dict[str, float]:
    """Mean top-k coverage / greedy coverage per graph (over its budgets) and overall.

    With ``rounds > 1`` the seeds of every budget come from ``rounds`` re-scoring passes
    (:func:`~combinatorial.gnn.inference.fastcover_seeds`, residual ``"mask"``).
    """
    out, ratios = {}, []
    for g in graphs:
        if rounds == 1:
            order = top_k(scores(model, g.edge_index, g.num_nodes), max(g.greedy_cover))
            r = [coverage(g.adj, order[:k].numpy(), d) / c for k, c in g.greedy_cover.items()]
        else:
            r = [
                coverage(g.adj, fastcover_seeds(g.edge_index, g.num_nodes, k, d, model=model,
                                                 rounds=rounds, adj=g.adj), d) / c
                for k, c in g.greedy_cover.items()
            ]  # fmt: skip
        out[g.name] = float(np.mean(r))
        ratios += r
    out["mean"] = float(np.mean(ratios))
    return out


def epoch_targets(
    graph: Graph, d: int, max_entries: int, rng: np.random.Generator
) -> tuple[Tensor, int, np.ndarray | None]:
    """``(cover_index, num_targets, targets)`` of one epoch: all nodes (``targets`` None), or
    a uniform sample of them (``targets[t]`` = the node of target slot ``t``)."""
    n = graph.num_nodes
    if graph.closure_entries <= max_entries:
        if graph.full_index is None:
            graph.full_index = cover_index(graph.adj, d)
        return graph.full_index, n, None
    size = max(1, min(n, int(n * max_entries / graph.closure_entries)))
    targets = np.sort(rng.choice(n, size=size, replace=False))
    return cover_index(graph.adj, d, targets), size, targets


def residual_targets(
    graph: Graph, index: Tensor, targets: np.ndarray | None, d: int, rng: np.random.Generator
) -> tuple[Tensor, Tensor]:
    """A random residual of ``graph`` for one training step.

    The nodes within ``d`` hops of greedy's first ``j`` seeds (``graph.greedy_order``, ``j``
    log-uniform in ``[1, K)``) count as covered. Returns the model's target weights ``[n]``
    (0 on covered nodes, 1 elsewhere) and ``index`` without the columns of covered target slots:
    those slots then add a constant to the loss, so its gradient is the one of the residual
    objective (the uncovered targets only).

    Args:
        graph: a training graph with ``greedy_order`` set.
        index: the epoch's ``[2, nnz]`` cover index (:func:`epoch_targets`).
        targets: node of each target slot, None when the slots are all nodes.
        d: hop count.
        rng: the training generator.
    """
    order = graph.greedy_order.numpy()
    j = int(np.exp(rng.uniform(0.0, np.log(len(order)))))
    covered = covered_mask(graph.adj, order[:j], d)
    slot_covered = covered if targets is None else covered[targets]
    keep = torch.from_numpy(~slot_covered)[index[1]]
    return torch.from_numpy(~covered).float(), index[:, keep]


def objective(logits: Tensor, index: Tensor, num_targets: int, config: TrainConfig) -> Tensor:
    """The training loss of one graph, per node (see ``TrainConfig.loss``)."""
    n = logits.numel()
    if config.loss == "budget":
        return budget_loss(
            logits,
            index,
            list(config.train_ks),
            num_targets,
            target_scale=n / num_targets,
            temperature=config.temperature,
        )
    loss = fastcover_loss(
        logits,
        index,
        num_targets,
        target_scale=n / num_targets,
        penalty=config.penalty,
        c=config.c,
        k=config.k_train,
    )
    return loss / n


def _graph_loss(
    model: FastCover,
    graph: Graph,
    index: Tensor,
    num_targets: int,
    config: TrainConfig,
    target_weight: Tensor | None = None,
) -> Tensor:
    """:func:`objective` of ``model`` (given ``target_weight``) on the full ``graph``, plus
    ``config.imitation`` times :func:`~combinatorial.gnn.loss.imitation_loss` of greedy's order
    when that weight is > 0."""
    logits = model(graph.edge_index, graph.num_nodes, target_weight)
    loss = objective(logits, index, num_targets, config)
    if config.imitation > 0:
        loss = loss + config.imitation * imitation_loss(logits, graph.greedy_order)
    return loss


def greedy_order(graph: Graph, d: int, k: int) -> Tensor:
    """Greedy's first ``min(k, n - 1)`` seeds on ``graph`` (imitation target, residuals)."""
    k = min(k, graph.num_nodes - 1)
    return torch.from_numpy(greedy(graph.adj, k, d, max_bytes=None).seeds.astype(np.int64))


def monotone_init_(model: FastCover, d: int) -> None:
    """Start from a d-hop soft-coverage-like ranking (a graphrec design choice).

    The first ``L - d`` layers output a constant (``W = 0``, ``b = 1``), so the untrained model
    only sees the last ``d`` hops; the others get ``|W|`` and zero biases, so the logit grows with
    the credit a node collects over those hops. Attention starts at ``a = [0 || 1 / sqrt(F_in)]``,
    ``c = 0``: a shared target gives more credit to the coverer with the larger features, as
    greedy gives it to the first (largest) seed. For d = 1 the untrained logit is then the soft
    coverage. Input columns past the three degree features (the ball-size estimates of
    ``features="sketch"``, the covered flag of ``residual_input``) start with zero weight, so such
    a model starts as one without them and learns how much to use them. Sets
    ``model.mask_layer = L - d``. The official code uses PyTorch's default init, which starts
    from a random, often inverted ranking.
    """
    constant = max(0, len(model.convs) - d)
    model.mask_layer = constant  # credit is counted from this layer on: re-scoring masks here
    with torch.no_grad():
        for i, conv in enumerate(model.convs):
            if i < constant:
                conv.lin.weight.zero_()
                conv.lin.bias.fill_(1.0)
                conv.att.zero_()
            else:
                # extra input columns (the ball estimates of "sketch", the covered flag of
                # residual_input) start at 0
                base = "degree" if model.features == "sketch" else model.features
                seen = feature_dim(base, model.in_channels) if i == 0 else conv.in_channels
                conv.lin.weight.abs_()
                conv.lin.weight[:, seen:] = 0.0
                conv.lin.bias.zero_()
                conv.att.zero_()
                conv.att[conv.in_channels : conv.in_channels + seen] = seen**-0.5
            conv.att_bias.zero_()


def fastcover_data_root(data_root: str | Path | None = None) -> Path:
    """The data root holding ``fastcover/``: ``data_root`` (the root itself or its
    ``fastcover`` folder) or ``$GRAPHREC_DATA``, as :func:`graphrec.datasets.dataset_folder`.
    """
    root = dataset_folder("fastcover", data_root)
    return root.parent if root.name == "fastcover" and not (root / "fastcover").is_dir() else root


def _graph_paths(root: Path, names: tuple[str, ...]) -> list[Path]:
    paths = [root / name for name in names]
    missing = [name for name, path in zip(names, paths) if not path.is_file()]
    if missing:
        raise GraphrecError(
            f"FastCover training data not found under {root}: {', '.join(missing)} (pass "
            f"--data-root DIR, the folder holding fastcover/, or set ${DATA_ENV})"
        )
    return paths


def _save_atomic(obj: object, path: Path) -> None:
    """``torch.save(obj, path)`` through a temporary file in the same folder, fsync, rename.

    Unlike :func:`graphrec.io.atomic.atomic_open`, the temporary file has the final name (in a
    temporary subfolder): ``torch.save`` names the records of its archive after the file, so
    the bytes equal those of a direct save.
    """
    tmp_dir = Path(tempfile.mkdtemp(prefix=".tmp-", dir=path.parent))
    try:
        tmp = tmp_dir / path.name
        torch.save(obj, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    if os.name == "posix":  # make the rename durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _read_manifest(path: Path) -> dict:
    if not path.is_file():
        return {"about": ABOUT, "models": {}}
    try:
        manifest = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GraphrecError(f"{path} is not a weights manifest (invalid JSON: {exc})") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("models"), dict):
        raise GraphrecError(f"{path} is not a weights manifest (no 'models' object)")
    return manifest


def _resume_state(path: Path, config: TrainConfig, force: bool) -> dict | None:
    """The checkpoint at ``path`` if it was written with ``config``; ``None`` to start over
    (with ``force``, a checkpoint of another config or an unreadable one).

    Raises:
        GraphrecError: the checkpoint is unreadable or has another config (the differences
            listed), and not ``force``.
    """
    try:
        ckpt = load_checkpoint(
            path, keys=("config",), records=("config",), what="FastCover training checkpoint"
        )
        check_same_run(path, ckpt["config"], config.as_dict())
    except CheckpointError as exc:
        if force:
            return None
        raise GraphrecError(
            f"{exc}: use the same options to resume it, or --force (force=True) to start over"
        ) from None
    return ckpt


@contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def train_fastcover(
    d: int,
    out_dir: str | Path,
    *,
    data_root: str | Path | None = None,
    seed: int = 42,
    threads: int = 1,
    force: bool = False,
    resume: bool = True,
    progress: bool = True,
    **options: Any,
) -> dict:
    """Train the FastCover model for hop count ``d`` into the folder ``out_dir``.

    With the defaults this is the recipe of the shipped weights: ``graphrec fastcover train
    --d 1 --out DIR`` writes ``DIR/fastcover_d1.pt`` with the SHA-256 recorded in
    ``combinatorial/weights/weights.json`` (same torch build). The global torch RNG and thread
    count are restored afterwards.

    Args:
        d: hop count (one model per d).
        out_dir: output folder (see the module docstring), created if needed.
        data_root: folder holding ``fastcover/`` (or that folder); default ``$GRAPHREC_DATA``.
        seed: seed of the initialisation and of the target samples.
        threads: torch CPU threads; part of the config (another count gives other weights).
        force: replace an existing model; start over from a checkpoint of another config.
        resume: continue from the folder's checkpoint of the same config (else start over).
        progress: show a tqdm bar over the epochs (on stderr).
        **options: the other :class:`TrainConfig` fields (``max_epochs``, ``lr``, ...).

    Returns:
        The model's ``weights.json`` entry.

    Raises:
        GraphrecError: the model exists (without ``force``), data is missing, ``out_dir`` is a
            file, or the manifest or checkpoint in the folder is unusable.
        ValueError: an invalid option, or a benchmark test graph among the graphs.
    """
    config = TrainConfig(d=d, seed=seed, threads=threads, **options)
    out_dir = Path(out_dir).expanduser()
    model_path = out_dir / MODEL_FILE.format(d=d)
    ckpt_path = out_dir / CHECKPOINT_FILE.format(d=d)
    manifest_path = out_dir / MANIFEST_FILE
    if out_dir.exists() and not out_dir.is_dir():
        raise GraphrecError(f"--out {out_dir} is a file; expected a folder")
    if model_path.exists() and not force:
        raise GraphrecError(f"{model_path} exists; pass --force (force=True) to replace it")
    root = fastcover_data_root(data_root)
    paths = _graph_paths(root, config.graphs + config.val_graphs)  # one error lists all missing
    train_paths, val_paths = paths[: len(config.graphs)], paths[len(config.graphs) :]
    _read_manifest(manifest_path)  # fail before training, not after
    ckpt = _resume_state(ckpt_path, config, force) if resume and ckpt_path.is_file() else None
    out_dir.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]), _torch_threads(config.threads):
        state, record = _train(config, train_paths, val_paths, ckpt, ckpt_path, progress)
    _save_atomic(state, model_path)
    record = {
        "file": model_path.name,
        "d": d,
        "sha256": sha256_file(model_path),
        "config": record.pop("config"),
        "parameters": record.pop("parameters"),
        "command": config.command(out_dir),
        **record,
    }
    manifest = _read_manifest(manifest_path)
    models = dict(manifest["models"])
    models[str(d)] = {**models.get(str(d), {}), **record}  # keeps e.g. 'alternatives'
    manifest = {**manifest, "models": dict(sorted(models.items()))}
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2) + "\n")
    ckpt_path.unlink(missing_ok=True)
    return models[str(d)]


def _train(
    config: TrainConfig,
    train_paths: list[Path],
    val_paths: list[Path],
    ckpt: dict | None,
    ckpt_path: Path,
    progress: bool,
) -> tuple[dict[str, Tensor], dict]:
    """The training loop; returns the best ``state_dict`` and the manifest fields of the run."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    t_start = time.perf_counter()
    train_graphs = [load_graph(p, config.d) for p in train_paths]
    val_graphs = [load_graph(p, config.d) for p in val_paths]
    for g in val_graphs:
        g.greedy_cover = greedy_reference(g, config.d, list(config.ks))
    if config.imitation > 0 or config.residual > 0:
        for g in train_graphs:
            g.greedy_order = greedy_order(g, config.d, max(config.train_ks))
    model = FastCover(
        features=config.features,
        hidden_channels=config.hidden,
        residual_input=config.residual_input,
    )
    if config.init == "monotone":
        monotone_init_(model, config.d)
    optim_cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.SGD
    optimizer = optim_cls(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    if ckpt is None:
        epoch, history, train_s, stop = 0, [], 0.0, False
        untrained = validate(model, val_graphs, config.d, config.val_rounds)
        best = {"epoch": -1, "val": untrained, "state": _state(model)}
    else:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        epoch, history, best = ckpt["epoch"] + 1, ckpt["history"], ckpt["best"]
        untrained, train_s, stop = ckpt["untrained"], ckpt["train_s"], ckpt["stop"]
        torch.set_rng_state(ckpt["torch_rng"])
        rng.bit_generator.state = ckpt["numpy_rng"]
    prep_s = time.perf_counter() - t_start
    trainer = Trainer(optimizer, clip_norm=config.clip if config.clip > 0 else None)

    def epoch_fn(epoch: int) -> tuple[bool, dict[str, str]]:
        nonlocal best, train_s
        t_epoch = time.perf_counter()
        model.train()
        losses = []
        for g in train_graphs:
            index, num_targets, targets = epoch_targets(g, config.d, config.max_entries, rng)
            for _ in range(config.steps_per_graph):
                weight, step_index = None, index
                if config.residual > 0 and rng.random() < config.residual:
                    weight, step_index = residual_targets(g, index, targets, config.d, rng)
                loss_fn = partial(_graph_loss, model, g, step_index, num_targets, config, weight)
                losses.append(trainer.step(loss_fn))
        val = validate(model, val_graphs, config.d, config.val_rounds)
        history.append({"epoch": epoch, "loss": float(np.mean(losses)), "val": val["mean"]})
        if val["mean"] > best["val"]["mean"]:
            best = {"epoch": epoch, "val": val, "state": _state(model)}
        stop = epoch - best["epoch"] >= config.patience
        train_s += time.perf_counter() - t_epoch
        postfix = {
            "loss": f"{np.mean(losses):.4f}",
            "val": f"{val['mean']:.4f}",
            "best": f"{best['val']['mean']:.4f}@{best['epoch']}",
        }
        return stop, postfix

    def save(epoch: int, stop: bool) -> None:
        checkpoint = {
            "config": config.as_dict(),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "epoch": epoch,
            "stop": stop,
            "history": history,
            "best": best,
            "untrained": untrained,
            "train_s": train_s,
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": rng.bit_generator.state,
        }
        _save_atomic(checkpoint, ckpt_path)

    run_epochs(
        epoch_fn,
        epochs=config.max_epochs,
        start=epoch,
        done=stop,
        checkpoint=save,
        progress=progress,
        desc=f"FastCover d={config.d}",
    )
    record = {
        "config": model.config(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_graphs": {g.name: _graph_info(g, config) for g in train_graphs},
        "val_graphs": {g.name: g.num_nodes for g in val_graphs},
        "ks": list(config.ks),
        "optimizer": {
            "name": config.optimizer,
            "lr": config.lr,
            "weight_decay": config.weight_decay,
            "clip": config.clip,
        },
        "init": config.init,
        "loss": _loss_info(config),
        "epochs_run": len(history),
        "best_epoch": best["epoch"],
        "validation": best["val"],
        "validation_untrained": untrained,
        **({"validation_rounds": config.val_rounds} if config.val_rounds > 1 else {}),
        "prepare_s": round(prep_s, 1),
        "train_s": round(train_s, 1),
        "seed": config.seed,
        "threads": config.threads,
        "torch": torch.__version__,
    }
    return best["state"], record


def _state(obj: torch.nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in obj.state_dict().items()}


def _loss_info(config: TrainConfig) -> dict:
    if config.loss == "budget":
        info = {"name": "budget", "ks": list(config.train_ks), "temperature": config.temperature}
    else:
        info = {"name": "official", "penalty": config.penalty, "c": config.c}
        info["k_train"] = config.k_train
    if config.imitation > 0:  # absent at 0, as in the manifests written before the option
        k = max(config.train_ks)
        info["imitation"] = {"weight": config.imitation, "order": "greedy", "k": k}
    if config.residual > 0:  # absent at 0, as imitation
        info["residual"] = {
            "probability": config.residual,
            "covered_by": f"greedy prefix, length log-uniform in [1, {max(config.train_ks)})",
            "input": config.residual_input,
        }
    return info


def _graph_info(g: Graph, config: TrainConfig) -> dict:
    sampled = g.closure_entries > config.max_entries
    return {"n": g.num_nodes, "closure_entries_est": int(g.closure_entries), "sampled": sampled}


if __name__ == "__main__":  # the same as ``graphrec fastcover train``
    from graphrec.cli import main

    sys.exit(main(["fastcover", "train", *sys.argv[1:]]))
