"""What to export for each kind of graphrec model, and how to rebuild one from a checkpoint.

An :class:`ExportPlan` holds the torch reference model, the module that is exported (the
on-device form: :class:`~graphrec.export.CFScorer`, :class:`~graphrec.export.GraphScorer`,
:class:`~graphrec.models.hien.HIEN` with frozen tables (``freeze_tables``, on a copy) or the
CTR model itself), an example input and parity inputs of other sizes (one ten times the
example). :func:`plan_ctr`, :func:`plan_cf` and :func:`plan_fastcover` build plans for models
in memory; :func:`load_checkpoint` rebuilds one from the files the trainers write
(``graphrec export`` uses it):

=======================  ===========================================================
checkpoint               written by
=======================  ===========================================================
folder (or its           ``graphrec ctr train --out DIR``: ``model.pt`` (state dict)
``model.pt``)            and ``config.json`` (dataset, model, HIEN flags, seed); the
                         dataset is reloaded to rebuild the features
``FILE.pt``              ``graphrec cf train --out FILE.pt``: a dict with ``config``,
                         ``data`` and ``model``; the interaction graph is reloaded
``fastcover_*.pt``       FastCover weights (``combinatorial/weights`` or
                         ``graphrec fastcover train --out DIR``):
                         a state dict whose configuration and SHA-256 are in
                         ``weights.json`` next to it (checked by
                         :func:`combinatorial.gnn.load_pretrained`)
=======================  ===========================================================

Every file is read with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from graphrec.errors import ConfigError, GraphrecError
from graphrec.export.models import (
    GRAPH_INPUT_NAMES,
    CFScorer,
    GraphScorer,
    graph_dynamic_shapes,
    graph_inputs,
)
from graphrec.io.checkpoint import load_checkpoint as load_torch_file

__all__ = [
    "EXAMPLE_BATCH",
    "ExportPlan",
    "load_checkpoint",
    "load_ctr_checkpoint",
    "plan_cf",
    "plan_ctr",
    "plan_fastcover",
]

#: Batch of the export example; parity runs on 3, 17 and 10x this.
EXAMPLE_BATCH = 8
PARITY_BATCHES = (3, 17, 10 * EXAMPLE_BATCH)
#: FastCover example graph (nodes, edges) and parity graphs (the last is 10x the example).
EXAMPLE_GRAPH = (30, 120)
PARITY_GRAPHS = ((12, 40), (57, 390), (300, 1200))
#: FastCover parity tolerance relative to the largest logit (see :func:`plan_fastcover`).
FASTCOVER_RTOL = 5e-6


@dataclass
class ExportPlan:
    """Everything :func:`graphrec.export.export_onnx` and the parity gate need for a model.

    Attributes:
        kind: ``"ctr"``, ``"hien"``, ``"cf"`` or ``"fastcover"``.
        name: a short label (file stem in the CLI, row in the benchmark).
        reference: the torch model scores are compared against (the training module).
        module: the module that is exported (its on-device form).
        example: the export example (a dict or a tuple of tensors).
        parity_inputs: input sets of other sizes than the example.
        export_kwargs: further arguments of :func:`graphrec.export.export_onnx`.
        rtol: parity tolerance relative to the output magnitude (see ``check_parity``).
        make_inputs: ``make_inputs(size, seed)`` -> an input set of ``size`` rows (or nodes).
    """

    kind: str
    name: str
    reference: torch.nn.Module
    module: torch.nn.Module
    example: Any
    parity_inputs: list[Any]
    export_kwargs: dict[str, Any] = field(default_factory=dict)
    rtol: float = 0.0
    make_inputs: Callable[[int, int], Any] | None = None


def plan_ctr(model: torch.nn.Module, table: Any, name: str = "") -> ExportPlan:
    """A CTR model (LR, WideDeep, DeepFM, DCNv2, DIN, or HIEN on one of them) on rows of
    ``table`` (a :class:`graphrec.io.CTRTable` with the model's features)."""
    from graphrec.models.hien import HIEN

    model = model.eval()
    features = model.features
    n = table.num_rows

    def make_inputs(size: int, seed: int) -> dict[str, torch.Tensor]:
        rows = np.random.default_rng(seed).integers(0, n, size)
        return features.batch(table, rows)

    is_hien = isinstance(model, HIEN)
    module = copy.deepcopy(model).freeze_tables() if is_hien else model
    label = name or (f"hien_{type(model.base).__name__}" if is_hien else type(model).__name__)
    return ExportPlan(
        kind="hien" if is_hien else "ctr",
        name=label.lower(),
        reference=model,
        module=module,
        example=make_inputs(EXAMPLE_BATCH, 0),
        parity_inputs=[make_inputs(b, s) for s, b in enumerate(PARITY_BATCHES, 1)],
        export_kwargs={"output_names": ["logit"]},
        make_inputs=make_inputs,
    )


def plan_cf(backbone: torch.nn.Module, name: str = "") -> ExportPlan:
    """An MF / LightGCN backbone, exported as :class:`CFScorer` (precomputed tables)."""
    scorer = CFScorer.from_backbone(backbone)
    num_users = scorer.user_embedding.shape[0]

    def make_inputs(size: int, seed: int) -> tuple[torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        return (torch.randint(0, num_users, (size,), generator=g),)

    return ExportPlan(
        kind="cf",
        name=(name or type(backbone).__name__).lower(),
        reference=scorer,
        module=scorer,
        example=make_inputs(EXAMPLE_BATCH, 0),
        parity_inputs=[make_inputs(b, s) for s, b in enumerate(PARITY_BATCHES, 1)],
        export_kwargs={"input_names": ["users"], "output_names": ["scores"]},
        make_inputs=make_inputs,
    )


def plan_fastcover(
    model: torch.nn.Module,
    *,
    aggregation: str = "dense",
    max_segment: int | None = None,
    rtol: float = FASTCOVER_RTOL,
    name: str = "fastcover",
) -> ExportPlan:
    """A FastCover (GRAT) model as :class:`GraphScorer`, on random graphs.

    ``rtol`` allows for float32 resolution: trained FastCover logits reach ~500, where float32
    numbers are 3e-5 apart. torch's own float32 result is up to 1.5e-6 x max|logit| from the
    float64 one (6.3e-4 at 411 on the 57-node parity graph of the 2-hop weights), and two
    float32 implementations (torch, onnxruntime, MNN) can each be that far on either side:
    measured 1.4e-3 between onnxruntime and torch there, 8.1e-4 of it onnxruntime's own error.
    """
    if aggregation not in ("dense", "csr"):
        raise ConfigError(
            f"FastCover exports with aggregation 'dense' or 'csr'; got {aggregation!r}"
        )
    csr = aggregation == "csr"
    scorer = GraphScorer(model.eval())

    def make_inputs(num_nodes: int, seed: int, num_edges: int | None = None) -> tuple:
        g = torch.Generator().manual_seed(seed)
        edges = 4 * num_nodes if num_edges is None else num_edges
        edge_index = torch.randint(0, num_nodes, (2, edges), generator=g)
        return tuple(graph_inputs(edge_index, num_nodes, csr=csr).values())

    names = list(GRAPH_INPUT_NAMES if csr else GRAPH_INPUT_NAMES[:2])
    return ExportPlan(
        kind="fastcover",
        name=name,
        reference=scorer,
        module=scorer,
        example=make_inputs(EXAMPLE_GRAPH[0], 0, EXAMPLE_GRAPH[1]),
        parity_inputs=[make_inputs(n, s, m) for s, (n, m) in enumerate(PARITY_GRAPHS, 1)],
        export_kwargs={
            "input_names": names,
            "output_names": ["score"],
            "dynamic": False,
            "dynamic_shapes": graph_dynamic_shapes(csr),
            "aggregation": aggregation,
            "max_segment": max_segment,
        },
        rtol=rtol,
        make_inputs=make_inputs,
    )


def _torch_load(path: Path) -> dict:
    """A weights-only load (:func:`graphrec.io.checkpoint.load_checkpoint`): one error line for
    a file that is not a torch checkpoint."""
    return load_torch_file(path, keys=(), what="torch checkpoint (a dict of tensors)")


def _data_folder(
    name: str, named: bool, data_root: str | os.PathLike | None, recorded: str | None
) -> str | os.PathLike | None:
    """Where to reload dataset ``name`` from: ``data_root`` if given, else the folder recorded
    at training; a named dataset whose recorded folder is gone falls back to
    ``$GRAPHREC_DATA`` (see :func:`graphrec.datasets.dataset_folder`)."""
    from graphrec.datasets import DATA_ENV, dataset_folder

    if not named:
        return data_root if data_root is not None else recorded
    if data_root is None and recorded is not None:
        if Path(recorded).is_dir():
            data_root = recorded
        elif not os.environ.get(DATA_ENV):
            raise GraphrecError(
                f"dataset {name!r}: {recorded}, the folder recorded at training, does not "
                "exist; pass --data-root DIR (the data root, e.g. shared/data, or the "
                f"dataset's own folder) or set ${DATA_ENV}"
            )
    return dataset_folder(name, data_root)


def load_ctr_checkpoint(
    folder: str | os.PathLike, data_root: str | os.PathLike | None = None
) -> tuple[torch.nn.Module, Any, dict[str, Any]]:
    """``(model, dataset, config)`` of a ``graphrec ctr train --out`` folder: the dataset
    (a :class:`~graphrec.models.ctr.experiment.CTRDataset`) reloaded as recorded in
    ``config.json`` (or from ``data_root``), the model rebuilt and its ``model.pt`` loaded."""
    from graphrec.models.ctr.experiment import CTR_DATASETS, build_ctr_model, load_ctr_dataset

    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    missing = {"dataset", "model", "hien", "embedding_dim", "seed"} - config.keys()
    if missing:
        raise GraphrecError(f"{folder / 'config.json'} lacks {sorted(missing)}")
    name = config["dataset"]
    named = name in CTR_DATASETS and name != "synthetic"  # read from a data folder
    root = _data_folder(name, named, data_root, config.get("root"))
    data = load_ctr_dataset(name, root, seed=config["seed"])
    model = build_ctr_model(
        config["model"],
        data,
        hien=config["hien"],
        embedding_dim=config["embedding_dim"],
        aggregator=config.get("aggregator") or "gcn",
        seed=config["seed"],
    )
    model.load_state_dict(_torch_load(folder / "model.pt"))
    return model, data, config


def _load_ctr(folder: Path, data_root: str | os.PathLike | None) -> ExportPlan:
    model, data, config = load_ctr_checkpoint(folder, data_root)
    name = f"hien_{config['model']}" if config["hien"] else config["model"]
    return plan_ctr(model, data.split.test, name)


def _load_cf(path: Path, state: dict, data_root: str | os.PathLike | None) -> ExportPlan:
    from graphrec.models.cf import CFConfig, build_backbone
    from graphrec.models.cf.data import DATASETS, load_cf_graph

    data = state["data"]
    name = data["dataset"]
    graph = load_cf_graph(
        name,
        root=_data_folder(name, name in DATASETS, data_root, data["root"]),
        test=data["test"],
        min_rating=data["min_rating"],
        valid_fraction=data["valid_fraction"],
        fold=data["fold"],
        seed=data["split_seed"],
    )
    saved = dict(state["config"])
    if "method" in saved:  # a `graphrec cf train --method gf-cf|bspm` file
        raise GraphrecError(
            f"{path}: a {saved['method']} graph-filter model is training-free and has no network "
            "to export (it is refitted from the interactions; `graphrec cf recommend` serves it); "
            "export takes MF / LightGCN model files"
        )
    config = CFConfig.from_dict({**saved, "ks": tuple(saved["ks"])})
    model = build_backbone(graph, config)
    model.load_state_dict(state["model"])
    return plan_cf(model.eval(), config.backbone)


def _load_fastcover(path: Path, aggregation: str, max_segment: int | None) -> ExportPlan:
    """FastCover weights, SHA-256-checked and loaded by ``load_pretrained`` from their folder."""
    from combinatorial.gnn.inference import MAX_PRETRAINED_D, load_pretrained

    manifest = path.parent / "weights.json"
    models = json.loads(manifest.read_text()).get("models", {})
    d = next((key for key, m in models.items() if m.get("file") == path.name), None)
    if d is None:
        raise GraphrecError(f"{manifest} has no entry for {path.name}")
    if not d.isdigit() or not 1 <= int(d) <= MAX_PRETRAINED_D:
        raise GraphrecError(
            f"{manifest}: {path.name} is recorded under {d!r}; only FastCover weights for "
            f"d = 1..{MAX_PRETRAINED_D} can be checked against their SHA-256 and exported"
        )
    model = load_pretrained(int(d), weights_dir=path.parent)
    return plan_fastcover(model, aggregation=aggregation, max_segment=max_segment, name=path.stem)


def load_checkpoint(
    path: str | os.PathLike,
    *,
    data_root: str | os.PathLike | None = None,
    aggregation: str = "dense",
    max_segment: int | None = None,
) -> ExportPlan:
    """Rebuild the model of a checkpoint (see the module docstring) and plan its export.

    Args:
        path: a ``graphrec ctr train`` output folder (or its ``model.pt``), a
            ``graphrec cf train`` model file, or FastCover weights with ``weights.json``.
        data_root: the data root (e.g. ``shared/data``) or the dataset's own folder, if not
            the one recorded at training (CTR and CF checkpoints rebuild their features /
            graph from the data; see :func:`graphrec.datasets.dataset_folder`).
        aggregation, max_segment: FastCover's export mode (``"dense"`` or ``"csr"``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        GraphrecError: ``path`` is none of the accepted checkpoints, or FastCover weights do
            not match the SHA-256 recorded in ``weights.json``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    folder = path if path.is_dir() else path.parent
    if (folder / "config.json").is_file() and (folder / "model.pt").is_file():
        if path.is_dir() or path.name == "model.pt":
            return _load_ctr(folder, data_root)
    if path.is_file():
        if (path.parent / "weights.json").is_file():
            return _load_fastcover(path, aggregation, max_segment)
        state = _torch_load(path)
        if isinstance(state, dict) and {"config", "data", "model"} <= state.keys():
            return _load_cf(path, state, data_root)
    raise GraphrecError(
        f"{path} is not a graphrec checkpoint: expected a 'graphrec ctr train --out' folder "
        "(model.pt + config.json), a 'graphrec cf train' model file, or FastCover weights "
        "with weights.json next to them"
    )
