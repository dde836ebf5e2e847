"""Train a FastCover model for one hop count d without labels.

Loop (as the official code): full-graph steps on each training graph in a fixed order,
``--steps-per-graph`` per graph and epoch, early stopping with ``--patience`` on a validation
score, the best epoch kept. Validation score = mean over the validation graphs and budgets
``--ks`` of top-k coverage / greedy coverage; unlike the official code (which selects on its
training graphs) the validation graphs are neither trained on nor benchmark test graphs.

graphrec defaults, each switchable back to the official choice (recorded in ``weights.json``):

- ``--loss budget`` (:func:`~combinatorial.gnn.loss.budget_loss`: expected uncovered
  nodes under a soft top-k selection, averaged over ``--train-ks``) instead of ``official``
  (:func:`~combinatorial.gnn.loss.fastcover_loss`, ``--penalty``, ``--c``): the official
  loss fixes one selection size and, trained to convergence, ranks worse on validation graphs
  than its own initialisation at d = 2.
- ``--init monotone`` (:func:`monotone_init_`) instead of ``default`` (PyTorch's).
- ``--features degree`` instead of ``ones``; AdamW (lr 3e-4, weight decay 1e-2, gradient
  clipping) instead of SGD lr 5e-4.
- Graphs whose d-closure has more than ``--max-entries`` entries are trained on a fresh uniform
  sample of targets each epoch (an unbiased estimate of the loss, see
  :func:`~combinatorial.gnn.loss.cover_index`); no n x n matrix is ever built.

A checkpoint (model, optimiser, best model, history, RNG states) is written after every epoch
(``--checkpoint``, default ``<out>.ckpt``); ``--resume`` continues from one. The best model's
``state_dict`` goes to ``--out`` and, with ``--manifest``, its entry (SHA-256, config, command,
data, validation scores, times) to ``weights.json``.

Example::

    python -m combinatorial.gnn.train --d 2 --out fastcover_d2.pt --data-root ../shared/data
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor
from tqdm import tqdm

from combinatorial.baselines import greedy
from combinatorial.coverage import coverage
from combinatorial.gnn.inference import scores, sha256_file, top_k
from combinatorial.gnn.loss import PENALTIES, budget_loss, cover_index, fastcover_loss
from combinatorial.gnn.model import FEATURES, FastCover
from combinatorial.graph import adjacency
from graphrec.io import read_edgelist

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


def _check_not_test(path: str) -> None:
    stem = Path(path).name.split(".")[0]
    if stem in TEST_GRAPHS or stem == "douban":
        raise ValueError(f"{path} is a benchmark test graph; it may not be used to train or select")


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


def validate(model: FastCover, graphs: list[Graph], d: int) -> dict[str, float]:
    """Mean top-k coverage / greedy coverage per graph (over its budgets) and overall."""
    out, ratios = {}, []
    for g in graphs:
        order = top_k(scores(model, g.edge_index, g.num_nodes), max(g.greedy_cover))
        r = [coverage(g.adj, order[:k].numpy(), d) / c for k, c in g.greedy_cover.items()]
        out[g.name] = float(np.mean(r))
        ratios += r
    out["mean"] = float(np.mean(ratios))
    return out


def epoch_targets(
    graph: Graph, d: int, max_entries: int, rng: np.random.Generator
) -> tuple[Tensor, int]:
    """``(cover_index, num_targets)`` of one epoch: all nodes, or a uniform sample of them."""
    n = graph.num_nodes
    if graph.closure_entries <= max_entries:
        if graph.full_index is None:
            graph.full_index = cover_index(graph.adj, d)
        return graph.full_index, n
    size = max(1, min(n, int(n * max_entries / graph.closure_entries)))
    targets = np.sort(rng.choice(n, size=size, replace=False))
    return cover_index(graph.adj, d, targets), size


def objective(logits: Tensor, index: Tensor, num_targets: int, args) -> Tensor:
    """The training loss of one graph, per node (see ``--loss``)."""
    n = logits.numel()
    if args.loss == "budget":
        return budget_loss(
            logits,
            index,
            args.train_ks,
            num_targets,
            target_scale=n / num_targets,
            temperature=args.temperature,
        )
    loss = fastcover_loss(
        logits,
        index,
        num_targets,
        target_scale=n / num_targets,
        penalty=args.penalty,
        c=args.c,
        k=args.k_train,
    )
    return loss / n


def monotone_init_(model: FastCover, d: int) -> None:
    """Start from a d-hop soft-coverage-like ranking (a graphrec design choice).

    The first ``L - d`` layers output a constant (``W = 0``, ``b = 1``), so the untrained model
    only sees the last ``d`` hops; the others get ``|W|`` and zero biases, so the logit grows with
    the credit a node collects over those hops. Attention starts at ``a = [0 || 1 / sqrt(F_in)]``,
    ``c = 0``: a shared target gives more credit to the coverer with the larger features, as
    greedy gives it to the first (largest) seed. For d = 1 the untrained logit is then the soft
    coverage. Sets ``model.mask_layer = L - d``. The official code uses PyTorch's default init,
    which starts from a random, often inverted ranking.
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
                conv.lin.weight.abs_()
                conv.lin.bias.zero_()
                conv.att[: conv.in_channels] = 0.0
                conv.att[conv.in_channels :] = conv.in_channels**-0.5
            conv.att_bias.zero_()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m combinatorial.gnn.train",
        description="Train FastCover (GRAT3) for one hop count d with the unsupervised loss.",
    )
    p.add_argument("--d", type=int, required=True, help="hop count (one model per d)")
    p.add_argument("--out", type=Path, required=True, help="output state_dict (.pt)")
    p.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    p.add_argument("--graphs", nargs="+", default=list(TRAIN_GRAPHS), help="under --data-root")
    p.add_argument("--val-graphs", nargs="+", default=list(VAL_GRAPHS), help="under --data-root")
    p.add_argument("--ks", type=int, nargs="+", default=[1, 8, 32, 128, 1024])
    p.add_argument("--epochs", type=int, default=80)
    p.add_argument("--steps-per-graph", type=int, default=2)
    p.add_argument("--optimizer", choices=("adamw", "sgd"), default="adamw")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--weight-decay", type=float, default=1e-2, help="decoupled for adamw")
    p.add_argument("--clip", type=float, default=1.0, help="gradient-norm clip (0 = off)")
    p.add_argument("--patience", type=int, default=20, help="epochs without validation gain")
    p.add_argument("--features", choices=FEATURES, default="degree")
    p.add_argument("--hidden", type=int, default=32, help="hidden width")
    p.add_argument("--init", choices=INITS, default="monotone")
    p.add_argument("--loss", choices=("official", "budget"), default="budget")
    p.add_argument("--penalty", choices=PENALTIES, default="linear", help="official loss")
    p.add_argument("--c", type=float, default=1.0, help="official loss: penalty weight C")
    p.add_argument("--k-train", type=int, default=32, help="official loss: hinge_k budget")
    p.add_argument(
        "--train-ks",
        type=int,
        nargs="+",
        default=[1, 8, 32, 128, 1024],
        help="budget loss: budgets",
    )
    p.add_argument("--temperature", type=float, default=1.0, help="budget loss: T")
    p.add_argument("--max-entries", type=int, default=2_000_000, help="closure entries per step")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--checkpoint", type=Path, help="per-epoch checkpoint (default <out>.ckpt)")
    p.add_argument("--resume", type=Path, help="checkpoint to continue from")
    p.add_argument("--manifest", type=Path, help="weights.json to record the model in")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv)
    args.argv = argv  # recorded in the manifest
    return args


def _state(obj) -> dict:
    return {k: v.detach().clone() for k, v in obj.state_dict().items()}


def train(args: argparse.Namespace) -> dict:
    """Run the training loop of ``args`` (see :func:`parse_args`); returns the training record."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    t_start = time.perf_counter()
    train_graphs = [load_graph(args.data_root / p, args.d) for p in args.graphs]
    val_graphs = [load_graph(args.data_root / p, args.d) for p in args.val_graphs]
    for g in val_graphs:
        g.greedy_cover = greedy_reference(g, args.d, args.ks)
    model = FastCover(features=args.features, hidden_channels=args.hidden)
    if args.init == "monotone":
        monotone_init_(model, args.d)
    optim_cls = torch.optim.AdamW if args.optimizer == "adamw" else torch.optim.SGD
    optimizer = optim_cls(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    ckpt_path = args.checkpoint or args.out.with_suffix(".ckpt")
    if args.resume is None:
        start, history = 0, []
        untrained = validate(model, val_graphs, args.d)
        best = {"epoch": -1, "val": untrained, "state": _state(model)}
    else:
        ckpt = torch.load(args.resume, weights_only=True)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start, history, best = ckpt["epoch"] + 1, ckpt["history"], ckpt["best"]
        untrained = ckpt["untrained"]
        torch.set_rng_state(ckpt["torch_rng"])
        rng.bit_generator.state = ckpt["numpy_rng"]
    prep_s = time.perf_counter() - t_start
    bar = tqdm(range(start, args.epochs), desc=f"FastCover d={args.d}", unit="epoch")
    for epoch in bar:
        model.train()
        losses = []
        for g in train_graphs:
            index, num_targets = epoch_targets(g, args.d, args.max_entries, rng)
            for _ in range(args.steps_per_graph):
                optimizer.zero_grad()
                loss = objective(model(g.edge_index, g.num_nodes), index, num_targets, args)
                loss.backward()
                if args.clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
                optimizer.step()
                losses.append(loss.item())
        val = validate(model, val_graphs, args.d)
        history.append({"epoch": epoch, "loss": float(np.mean(losses)), "val": val["mean"]})
        if val["mean"] > best["val"]["mean"]:
            best = {"epoch": epoch, "val": val, "state": _state(model)}
        bar.set_postfix(
            loss=f"{np.mean(losses):.4f}",
            val=f"{val['mean']:.4f}",
            best=f"{best['val']['mean']:.4f}@{best['epoch']}",
        )
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "epoch": epoch,
                "history": history,
                "best": best,
                "untrained": untrained,
                "torch_rng": torch.get_rng_state(),
                "numpy_rng": rng.bit_generator.state,
                "args": {a: str(v) if isinstance(v, Path) else v for a, v in vars(args).items()},
            },
            ckpt_path,
        )
        if epoch - best["epoch"] >= args.patience:
            break
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(best["state"], args.out)
    record = {
        "file": args.out.name,
        "d": args.d,
        "sha256": sha256_file(args.out),
        "config": model.config(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "command": "python -m combinatorial.gnn.train " + shlex.join(args.argv),
        "train_graphs": {g.name: _graph_info(g, args) for g in train_graphs},
        "val_graphs": {g.name: g.num_nodes for g in val_graphs},
        "ks": args.ks,
        "optimizer": {
            "name": args.optimizer,
            "lr": args.lr,
            "weight_decay": args.weight_decay,
            "clip": args.clip,
        },
        "init": args.init,
        "loss": _loss_info(args),
        "epochs_run": len(history),
        "best_epoch": best["epoch"],
        "validation": best["val"],
        "validation_untrained": untrained,
        "prepare_s": round(prep_s, 1),
        "train_s": round(time.perf_counter() - t_start - prep_s, 1),
        "seed": args.seed,
        "threads": args.threads,
        "torch": torch.__version__,
    }
    if args.manifest is not None:
        update_manifest(args.manifest, record)
    return record


def _loss_info(args: argparse.Namespace) -> dict:
    if args.loss == "budget":
        return {"name": "budget", "ks": args.train_ks, "temperature": args.temperature}
    return {"name": "official", "penalty": args.penalty, "c": args.c, "k_train": args.k_train}


def _graph_info(g: Graph, args: argparse.Namespace) -> dict:
    sampled = g.closure_entries > args.max_entries
    return {"n": g.num_nodes, "closure_entries_est": int(g.closure_entries), "sampled": sampled}


def update_manifest(path: Path, record: dict) -> None:
    """Insert or replace the entry of ``record["d"]`` in a ``weights.json`` manifest."""
    manifest = json.loads(path.read_text()) if path.is_file() else {"models": {}}
    manifest["models"][str(record["d"])] = record
    manifest["models"] = dict(sorted(manifest["models"].items()))
    path.write_text(json.dumps(manifest, indent=2) + "\n")


def main(argv: list[str] | None = None) -> None:
    record = train(parse_args(argv))
    print(json.dumps({k: record[k] for k in ("file", "sha256", "best_epoch", "validation")}))


if __name__ == "__main__":
    main()
