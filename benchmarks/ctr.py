"""CTR: the five base models with and without HIEN, on MovieLens-100K and the synthetic set.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ctr.py [--datasets ml-100k,synthetic]
[--models lr,widedeep,deepfm,dcn,din] [--seeds 5] [--no-md] [--retime ml-100k] [--scale]
[--plug add]``

For every (dataset, model, HIEN or not, seed) cell: build the model with
:func:`graphrec.models.ctr.experiment.build_ctr_model` (seed = weights, batch order), train it
with :func:`train_ctr` (Adam, early stopping on validation AUC, the dataset's recipe
:func:`graphrec.models.ctr.defaults.train_recipe`, the defaults of ``graphrec ctr train``) and
evaluate it on the test split: AUC, GAUC (per user), logloss. Each finished cell is written to
``benchmarks/results/ctr_cells/`` and skipped when the script runs again, so an interrupted run
loses at most one cell. On the synthetic set, HIEN's across-type attention ``beta`` is
averaged per test user and the share of users whose top type is the planted one is reported.

Throughput is measured apart from the accuracy runs: per (dataset, model), one training epoch
(training steps only, no evaluation) of the base model and of HIEN, alternating, ``--repeat``
times each; the best epoch of each is kept, which makes the ratio robust to other jobs on the
machine. Data: MovieLens-100K from ``$GRAPHREC_TEST_DATA`` or ``../shared/data``; the synthetic
set is :func:`graphrec.datasets.synthetic_ctr` with seed 0 (the same data for every model seed).
The timings are kept in ``ctr_cells/DATASET_timing.json``; ``--retime DATASET`` measures them
again (e.g. after a speed-up) without rerunning the accuracy cells.

With ``--retime ml-100k`` (and DIN among the models) HIEN's cost bounds are derived from the
ml-100k epoch timings at batch 1024: HIEN + DIN / DIN per epoch, and per base model HIEN's
added time per 1,024 samples against one DIN training step (``results/ctr_bounds.json``, the
``ctr-bounds`` section of BENCHMARKS.md).

``--scale`` only times one full training step (batch 1,024, Adam step included) of DIN and
HIEN + DIN on ``synthetic_ctr(value_skew=1.1)`` with 10^2, 10^4 and 10^6 values per attribute
type and histories of 50 and 500 items, in thread CPU time, ``--repeat`` alternating pairs
(HIEN's added time: the median of the paired differences, and its flatness, also against
the 10^2 rows rerun with the small-table shortcut off; HIEN's user-intent bags are counted
once per table, their one-off cost reported apart), and trains
HIEN + DIN (the synthetic set's recipe) at 10^2 and 10^6 values for the planted-type share
(``results/ctr_scale.json``, ``results/hien_scale.png``, section ``ctr-scale``).

``--plug add`` only runs the accuracy cells of HIEN with ``plug="add"`` (intents added to the
user and item fields) and compares them with the default's cells, paired by seed (section
``ctr-plug``).

``--breakdown`` only times one training step of each model with HIEN's parts removed one after
another (user intent, item intent, tree refinement), to show where HIEN's cost goes; it writes
``results/ctr_breakdown.json`` and the ``ctr-breakdown`` section of BENCHMARKS.md.

Writes ``benchmarks/results/ctr.json`` and the ``ctr`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict
from functools import partial
from pathlib import Path
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as bench  # noqa: E402

from graphrec.datasets.synthetic_ctr import SYNTHETIC_TREES, synthetic_ctr  # noqa: E402
from graphrec.graphs.attribute_tree import tree_from_table  # noqa: E402
from graphrec.models import hien as hien_module  # noqa: E402
from graphrec.models.ctr import CTRFeatures, evaluate_ctr, train_ctr, train_recipe  # noqa: E402
from graphrec.models.ctr.data import CTRSplit  # noqa: E402
from graphrec.models.ctr.defaults import HIEN_DEFAULTS  # noqa: E402
from graphrec.models.ctr.experiment import (  # noqa: E402
    CTRDataset,
    build_ctr_model,
    load_ctr_dataset,
)
from graphrec.models.ctr.train import adam  # noqa: E402
from graphrec.models.hien import HIEN, PLUGS  # noqa: E402
from graphrec.nn.hier_attention import IntentOutput  # noqa: E402

MODELS = ["lr", "widedeep", "deepfm", "dcn", "din"]
#: Training settings per dataset (the same for base models and HIEN): the validated recipes.
SETTINGS = {ds: asdict(train_recipe(ds)) for ds in ("ml-100k", "synthetic")}
CELLS = bench.RESULTS / "ctr_cells"
#: A second batch size for the throughput (HIEN's official setting): per-step costs amortise.
LARGE_BATCH = 4096


def load(name: str) -> CTRDataset:
    return load_ctr_dataset(name, bench.data_root() if name == "ml-100k" else None, seed=0)


def planted_share(model, data: CTRDataset, planted: str) -> float:
    """Share of test users whose mean ``beta`` is highest on the planted attribute type."""
    model.eval()
    batch = data.features.batch(data.split.test)
    beta = model.attention_weights(batch)["beta"]
    users = batch[data.user]
    per_user = torch.zeros(int(users.max()) + 1, beta.shape[1]).index_add(0, users, beta)
    seen = torch.bincount(users, minlength=per_user.shape[0]) > 0
    top = per_user[seen].argmax(dim=1)
    return (top == model.types.index(planted)).float().mean().item()


def run_cell(
    data: CTRDataset, dataset: str, model_name: str, hien: bool, seed: int, plug: str = "append"
) -> dict:
    variant = ("hien" if plug == "append" else f"hien-{plug}") if hien else "base"
    path = CELLS / f"{dataset}_{model_name}_{variant}_{seed}.json"
    if path.exists():
        return json.loads(path.read_text())
    model = build_ctr_model(model_name, data, hien=hien, seed=seed, plug=plug)
    t0 = time.perf_counter()
    res = train_ctr(model, data.split.train, data.split.valid, seed=seed, **SETTINGS[dataset])
    cell = {
        "dataset": dataset,
        "model": model_name,
        "hien": hien,
        "seed": seed,
        "test": evaluate_ctr(model, data.split.test),
        "valid": res.best,
        "best_epoch": res.best_epoch,
        "epochs_run": len(res.history),
        "train_s": [h["train_s"] for h in res.history],
        "wall_s": time.perf_counter() - t0,
    }
    if hien:
        model.eval()
        beta = model.attention_weights(data.features.batch(data.split.test))["beta"].mean(0)
        cell["beta"] = dict(zip(model.types, beta.tolist()))
        if dataset == "synthetic":
            cell["planted_share"] = planted_share(model, data, "cate")
    bench.write_json(path, cell)
    return cell


def epoch_seconds(model, data: CTRDataset, batch_size: int, seed: int = 0) -> float:
    """Seconds of one training epoch (Adam steps over every training row, no evaluation), with
    the model's own batches as :func:`train_ctr` builds them (HIEN's carry its user bags,
    counted once per table: in the warm-up epoch, not in the timed ones)."""
    train = data.split.train
    opt = adam(model.parameters(), lr=1e-3)  # as train_ctr
    order = np.random.default_rng(seed).permutation(train.num_rows)
    model.train()
    t0 = time.perf_counter()
    for start in range(0, train.num_rows, batch_size):
        rows = order[start : start + batch_size]
        batch = model.features.batch(train, rows)
        opt.zero_grad()
        F.binary_cross_entropy_with_logits(
            model(batch), data.features.labels(train, rows)
        ).backward()
        opt.step()
    return time.perf_counter() - t0


def throughput(data: CTRDataset, model_name: str, bs: int, repeat: int) -> dict:
    models = {h: build_ctr_model(model_name, data, hien=h) for h in (False, True)}
    epochs = {h: partial(epoch_seconds, m, data, bs) for h, m in models.items()}
    best = bench.alternating_best(epochs, repeat, warmup=1)
    rows = data.split.train.num_rows
    return {
        "load_average_1min": bench.load_average(),  # other jobs on the machine make it noisy
        "base_epoch_s": best[False],
        "hien_epoch_s": best[True],
        "base_samples_per_s": rows / best[False],
        "hien_samples_per_s": rows / best[True],
        "ratio": best[True] / best[False],
    }


def _skip_intent(layer, batch_arg: int):
    """A stand-in ``forward`` for an intent layer: all-zero intents, no work (for timing)."""

    def forward(*args, **kwargs):
        x = args[batch_arg]
        zeros = x.new_zeros(x.shape[0], layer.channels)
        return IntentOutput(zeros, x.new_zeros(x.shape[0], 1, 1), x.new_zeros(x.shape[0], 1), None)

    return forward


def step_breakdown(data: CTRDataset, model_name: str, bs: int, repeat: int) -> dict:
    """Milliseconds of one training step (forward + backward, one fixed batch) of the base
    model, of HIEN, and of HIEN with its parts removed one after another: the user intent,
    then the item intent (both replaced by zero fields), then the tree refinement (constant
    tables). What is left over is the base model reading HIEN's two extra fields."""
    rows = np.arange(min(bs, data.split.train.num_rows))
    batch = data.features.batch(data.split.train, rows)
    labels = data.features.labels(data.split.train, rows)

    def step(model) -> None:
        F.binary_cross_entropy_with_logits(model(batch), labels).backward()

    def ms(model, n: int = 30) -> float:
        step(model)
        t0 = time.perf_counter()
        for _ in range(n):
            step(model)
        return (time.perf_counter() - t0) / n * 1e3

    def stripped(removed: int) -> torch.nn.Module:
        """HIEN without its first ``removed`` parts (user intent, item intent, tree)."""
        model = build_ctr_model(model_name, data, hien=True)
        if removed >= 1:
            model.user_attention.forward_weighted = _skip_intent(model.user_attention, 2)
        if removed >= 2:
            model.item_attention.forward = _skip_intent(model.item_attention, 0)
        if removed >= 3:
            model.freeze_tables()
        return model

    models = {"base": build_ctr_model(model_name, data), "hien": stripped(0)}
    for removed, name in enumerate(
        ["without user intent", "without user and item intents", "without intents and tree"], 1
    ):
        models[name] = stripped(removed)
    return bench.alternating_best(
        {name: partial(ms, model) for name, model in models.items()}, repeat
    )


def breakdown_markdown(results: dict, cmd: str) -> str:
    """The ``ctr-breakdown`` section of BENCHMARKS.md."""
    names = list(next(iter(results.values())))
    lines = [
        "## CTR: where HIEN's training time goes",
        "",
        f"Command: `{cmd}` ({bench.machine()}, torch threads 1). One training step (forward + "
        "backward, no optimizer) on a fixed batch of the training batch size, ms, best of the "
        "repeats; HIEN with its parts removed one after another (intents replaced by zero "
        "fields, refined tables by constants). The last column is what remains of HIEN's cost "
        "without any of its parts: the base model's dense part reading two extra fields.",
        "",
    ]
    rows = [
        [key, f"{row['base']:.2f}"]
        + [f"{row[n]:.2f} ({bench.ratio(row[n], row['base'])})" for n in names[1:]]
        for key, row in results.items()
    ]
    return "\n".join(lines) + "\n" + bench.md_table(["dataset / model", *names], rows)


def compare_plug(
    datasets: list[str], models: list[str], seeds: int, plug: str, cmd: str, md: bool
) -> None:
    """Test AUC of HIEN with ``plug`` against the default plug, paired by seed (section
    ``ctr-plug``)."""
    default = HIEN_DEFAULTS.plug
    rows, results = [], {}
    for ds in datasets:
        data = load(ds)
        for m in models:
            auc = {
                p: [run_cell(data, ds, m, True, s, p)["test"]["auc"] for s in range(seeds)]
                for p in (default, plug)
            }
            diff = [b - a for a, b in zip(auc[default], auc[plug])]
            p_value = stats.ttest_rel(auc[plug], auc[default]).pvalue if seeds > 1 else None
            results[f"{ds}/{m}"] = {"auc": auc, "diff": diff, "p_value": p_value}
            rows.append([f"{ds} / {m}"] + [f"{statistics.fmean(auc[p]):.4f}" for p in auc]
                        + [f"{statistics.fmean(diff):+.4f} ± {statistics.stdev(diff):.4f}",
                           f"{p_value:.2f}" if p_value is not None else ""])  # fmt: skip
    print(f"wrote {bench.write_results('ctr_plug', {'command': cmd, 'results': results})}")
    text = "\n".join([
        "## CTR: how HIEN's intents reach the base model",
        "",
        f"Command: `{cmd}`. Test AUC, mean over seeds 0..{seeds - 1} (the same weights "
        f"initialisation and batch order for both); `{default}` (the default): the intents as "
        f"extra fields; `{plug}`: added to the user and target item fields. Paired difference "
        "± std over seeds and the paired t-test's p-value.",
        "",
        bench.md_table(["dataset / model", default, plug, f"{plug} - {default}", "p"], rows),
    ])  # fmt: skip
    bench.publish("ctr-plug", text, update_md=md)


def bounds(timing: dict, rows: int, models: list[str]) -> dict:
    """The HIEN cost bounds from the ml-100k epoch timings at batch 1024: HIEN + DIN / DIN per
    epoch (<= 1.5), and per base model HIEN's added time per 1,024 samples against one DIN
    training step (epoch time per 1,024 samples, <= 1)."""
    per_1024 = 1024 / rows
    din_step = timing["din@1024"]["base_epoch_s"] * per_1024
    added = {
        m: (timing[f"{m}@1024"]["hien_epoch_s"] - timing[f"{m}@1024"]["base_epoch_s"]) * per_1024
        for m in models
    }
    return {
        "din_epoch_ratio": timing["din@1024"]["ratio"],
        "din_step_ms": din_step * 1e3,
        "added_ms_per_1024": {m: a * 1e3 for m, a in added.items()},
        "added_over_din_step": {m: a / din_step for m, a in added.items()},
        "load_average_1min": [timing[f"{m}@1024"]["load_average_1min"] for m in models],
    }


def bounds_markdown(b: dict, cmd: str) -> str:
    """The ``ctr-bounds`` section of BENCHMARKS.md."""
    ok = "met" if b["din_epoch_ratio"] <= 1.5 else "NOT met"
    rows = [
        [m, f"{b['added_ms_per_1024'][m]:.2f}", f"{b['added_over_din_step'][m]:.2f}",
         "met" if b["added_over_din_step"][m] <= 1 else "NOT met"]
        for m in b["added_ms_per_1024"]
    ]  # fmt: skip
    loads = b["load_average_1min"]
    return "\n".join([
        "## CTR: HIEN's cost bounds on ml-100k",
        "",
        f"Command: `{cmd}` ({bench.machine()}, torch threads 1; 1-min load average "
        f"{min(loads):.1f} to {max(loads):.1f}: timings are upper bounds). From the training "
        "epochs at batch 1024 (best of the repeats, base and HIEN alternating in one process). "
        f"HIEN + DIN / DIN per epoch: **{b['din_epoch_ratio']:.2f}×** (bound 1.5×: {ok}). "
        f"HIEN's added time per 1,024 samples against one DIN training step "
        f"({b['din_step_ms']:.1f} ms, bound 1×):",
        "",
        bench.md_table(["base model", "added ms / 1,024", "/ DIN step", "bound"], rows),
    ])  # fmt: skip


#: The scale grid: attribute vocabulary sizes (each of the four types) and history lengths.
SCALE_VOCABS = (10**2, 10**4, 10**6)
SCALE_HISTORIES = (50, 500)


def _recipe(dataset: str) -> str:
    """The training settings of ``dataset`` in words."""
    r = SETTINGS[dataset]
    return (f"batch {r['batch_size']}, lr {r['lr']:g}, ≤ {r['epochs']} epochs, early stopping "
            f"on validation AUC with patience {r['patience']}")  # fmt: skip


def scale_data(vocab: int, history: int) -> CTRDataset:
    """The synthetic set with ``vocab`` values per attribute type (Zipf-like, planted type
    ``cate``), 20,000 items, 1,000 users and full histories of ``history`` clicks."""
    syn = synthetic_ctr(
        num_users=1000, num_items=20_000, num_campaigns=vocab, num_customers=vocab,
        num_cates=vocab, num_brands=vocab, value_skew=1.1, warmup_clicks=history,
        max_history=history, seed=0,
    )  # fmt: skip
    split = CTRSplit(syn.train, syn.valid, syn.test)
    tables = [split.train, split.valid, split.test]
    trees = [tree_from_table(tables, list(levels)) for levels in SYNTHETIC_TREES]
    return CTRDataset("synthetic-scale", split, CTRFeatures.from_table(split.train),
                      {"item": trees, "user": []}, "item", "user", "history")  # fmt: skip


def step_ms(model, opt: torch.optim.Optimizer, batch: dict, labels: torch.Tensor) -> float:
    """CPU milliseconds of this thread for one full training step (gradients freed, forward,
    backward, Adam step): other processes on the machine do not enter the count."""
    model.train()
    t0 = time.thread_time()
    model.zero_grad(set_to_none=True)
    F.binary_cross_entropy_with_logits(model(batch), labels).backward()
    opt.step()
    return (time.thread_time() - t0) * 1e3


def part_ms(model, batch: dict) -> float:
    """CPU milliseconds of this thread for the forward and backward pass of the embedding part
    alone (HIEN with its tree refinement and intents, or the base model's embedding), without
    the base model's dense part, whose cost dominates long histories."""
    model.train()
    t0 = time.thread_time()
    model.zero_grad(set_to_none=True)
    emb = model._run(batch, weights=False)[0] if isinstance(model, HIEN) else model.embed(batch)
    out = [emb.fields, *emb.sequences.values(), *([] if emb.extra is None else [emb.extra])]
    sum(x.sum() for x in out).backward()
    return (time.thread_time() - t0) * 1e3


def _alternate(fns: dict, pairs: int) -> tuple[dict, list[float]]:
    """``pairs`` rounds of one call of each (base, HIEN) function, their order alternating (two
    untimed rounds first): the times per side and the paired differences HIEN - base."""
    for _ in range(2):
        for fn in fns.values():
            fn()
    ms: dict[bool, list[float]] = {False: [], True: []}
    for i in range(pairs):
        for h in (False, True) if i % 2 == 0 else (True, False):
            ms[h].append(fns[h]())
    return ms, [b - a for a, b in zip(ms[False], ms[True])]


def paired_steps(models: dict, batch: dict, labels: torch.Tensor, pairs: int) -> dict:
    """HIEN's added time per step as the median of paired differences: ``pairs`` rounds, each
    one step of the base model and one of HIEN on the same batch, their order alternating
    (two untimed rounds first). Returns the medians, the added time's median and quartiles,
    and the same for the embedding parts alone (:func:`part_ms`: HIEN's added work without
    the noise of the dense part's long-history steps)."""
    steps = {h: partial(step_ms, m, adam(m.parameters(), lr=1e-3), batch, labels)
             for h, m in models.items()}  # fmt: skip
    ms, added = _alternate(steps, pairs)
    _, part = _alternate({h: partial(part_ms, m, batch) for h, m in models.items()}, pairs)
    q1, _, q3 = statistics.quantiles(added, n=4)
    p1, _, p3 = statistics.quantiles(part, n=4)
    return {"base_ms": statistics.median(ms[False]), "hien_ms": statistics.median(ms[True]),
            "added_ms": statistics.median(added), "added_q1": q1, "added_q3": q3,
            "part_added_ms": statistics.median(part), "part_q1": p1, "part_q3": p3,
            "pairs": pairs}  # fmt: skip


def scale(repeat: int, cmd: str, md: bool) -> None:
    """HIEN's added time per 1,024 samples (DIN base) over the scale grid, its flatness, and
    the planted-type share at the largest vocabulary (section ``ctr-scale``)."""
    grid = [(v, SCALE_HISTORIES[0]) for v in SCALE_VOCABS]
    grid += [(v, SCALE_HISTORIES[-1]) for v in (SCALE_VOCABS[0], SCALE_VOCABS[-1])]
    cells, shares = [], {}
    for vocab, history in tqdm(grid, desc="scale", unit="cell"):
        data = scale_data(vocab, history)
        rows = np.arange(1024)
        models = {h: build_ctr_model("din", data, hien=h) for h in (False, True)}
        # HIEN's user-intent bags, counted once per table (outside the steps): their one-off cost
        t0 = time.thread_time()
        batch = models[True].features.batch(data.split.train, rows)  # DIN ignores the bags
        bags_ms = (time.thread_time() - t0) * 1e3 * 1024 / len(data.split.train.labels)
        labels = data.features.labels(data.split.train, rows)
        cells.append({"vocab": vocab, "history": history,
                      **paired_steps(models, batch, labels, repeat), "bags_ms": bags_ms,
                      "load_average_1min": bench.load_average()})  # fmt: skip
        if vocab == SCALE_VOCABS[0]:  # the small-table shortcut off: the per-key path
            with mock.patch.object(hien_module, "_BAG_ROWS_PER_KEY", 0):
                per_key = paired_steps(models, batch, labels, repeat)
            cells[-1]["per_key"] = {k: per_key[k] for k in ("added_ms", "part_added_ms")}
        print(cells[-1])
        if history == SCALE_HISTORIES[0] and vocab in (SCALE_VOCABS[0], SCALE_VOCABS[-1]):
            del models
            model = build_ctr_model("din", data, hien=True)
            train_ctr(model, data.split.train, data.split.valid, seed=0, **SETTINGS["synthetic"])
            shares[vocab] = planted_share(model, data, "cate")
            print(f"planted share at {vocab}: {shares[vocab]:.3f}")
        del data
    ref = cells[0]["added_ms"]
    flat = max(c["added_ms"] for c in cells) / ref
    # the same ratio over the embedding parts, and both against the per-key path at 1e2
    part_flat = max(c["part_added_ms"] for c in cells) / cells[0]["part_added_ms"]
    key_flat = max(c["added_ms"] for c in cells) / cells[0]["per_key"]["added_ms"]
    key_part_flat = (max(c["part_added_ms"] for c in cells)
                     / cells[0]["per_key"]["part_added_ms"])  # fmt: skip
    payload = {"command": cmd, "cells": cells, "flatness": flat, "part_flatness": part_flat,
               "per_key_flatness": key_flat, "per_key_part_flatness": key_part_flat,
               "planted_share": shares}  # fmt: skip
    print(f"wrote {bench.write_results('ctr_scale', payload)}")
    _plot_scale(cells)
    loads = [c["load_average_1min"] for c in cells]
    rows = [[f"{c['vocab']:.0e}", c["history"], f"{c['base_ms']:.1f}", f"{c['hien_ms']:.1f}",
             f"{c['added_ms']:.1f}", f"{c['added_q1']:.1f} to {c['added_q3']:.1f}",
             f"{c['added_ms'] / ref:.2f}×",
             f"{c['part_added_ms']:.1f} ({c['part_q1']:.1f} to {c['part_q3']:.1f})",
             f"{c['bags_ms']:.1f}",
             (f"{c['per_key']['added_ms']:.1f} / {c['per_key']['part_added_ms']:.1f}"
              if "per_key" in c else "same")] for c in cells]  # fmt: skip
    text = "\n".join([
        "## CTR: HIEN's added time as vocabularies and histories grow",
        "",
        f"Command: `{cmd}` ({bench.machine()}, torch threads 1; 1-min load average "
        f"{min(loads):.1f} to {max(loads):.1f}: timings are upper bounds). Synthetic data "
        "(`synthetic_ctr(value_skew=1.1)`: 20,000 items, 1,000 users, every attribute type "
        "with the given number of values, full histories; HIEN reads at most "
        f"{HIEN_DEFAULTS.max_values} values per type and user, the most frequent). One full "
        "training step (forward, backward, Adam step over all tables) of DIN and of HIEN + DIN "
        "on a fixed batch of 1,024, in CPU ms of the process's thread (`time.thread_time`: "
        f"other processes do not count), {cells[0]['pairs']} rounds of one step each, their "
        "order alternating; added = median of the paired differences HIEN + DIN - DIN "
        "(interquartile range beside it), DIN and HIEN + DIN: medians. HIEN's user intent "
        "reads each sample's bags (per type, each distinct value of the history once, weighted "
        "by its count; at most the cap, the most frequent), counted once per table when the "
        "first batch is built, not in the step: that one-off cost (building the whole "
        "training table's batch with the bags, thread CPU ms per 1,024 samples) is a column. "
        "Embedding part: the same "
        "paired rounds over the forward and backward pass of the embedding part alone (HIEN "
        "with its tree refinement and intents against DIN's embedding, summed outputs as the "
        "loss; no dense part, no Adam step): HIEN's own work without the noise of DIN's "
        "long-history steps. Flatness (largest "
        f"added time / the first row's, bound 1.2×): **{flat:.2f}×** (embedding parts: "
        f"{part_flat:.2f}×). At 10^2 values a type's whole refined table has fewer rows than "
        f"{hien_module._BAG_ROWS_PER_KEY}× a sample's keys, so HIEN scores it as one shared "
        "table (dense products over the bag) instead of key by key; the last column reruns "
        "those rows with that shortcut off (full step / embedding part, ms): against the "
        f"per-key path at 10^2 the flatness is {key_flat:.2f}× (embedding parts "
        f"{key_part_flat:.2f}×). Planted-type share "
        "(test users whose mean β is "
        "highest on `cate`; HIEN + DIN trained with the synthetic set's recipe: "
        f"{_recipe('synthetic')}): "
        + ", ".join(f"{v:.0e} values {s:.2f}" for v, s in shares.items())
        + ". Plot: `benchmarks/results/hien_scale.png`.",
        "",
        bench.md_table(["values per type", "history", "DIN ms", "HIEN + DIN ms", "added ms",
                        "added IQR", "added / first", "embedding part added ms (IQR)",
                        "bags once, ms / 1,024", "per-key path added ms"],
                      rows),  # fmt: skip
    ])  # fmt: skip
    bench.publish("ctr-scale", text, update_md=md)


def _plot_scale(cells: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for history in SCALE_HISTORIES:
        sel = [c for c in cells if c["history"] == history]
        ax.plot([c["vocab"] for c in sel], [c["added_ms"] for c in sel], "o-",
                label=f"history {history}")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("values per attribute type")
    ax.set_ylabel("HIEN added ms / 1,024 samples")
    ax.set_ylim(bottom=0)
    ax.legend()
    fig.tight_layout()
    fig.savefig(bench.RESULTS / "hien_scale.png", dpi=120)


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(cells: list[dict], timing: dict, datasets: list[str], models: list[str]) -> dict:
    summary: dict = {}
    for ds in datasets:
        for m in models:
            row = {}
            for hien in (False, True):
                sel = [c for c in cells if (c["dataset"], c["model"], c["hien"]) == (ds, m, hien)]
                key = "hien" if hien else "base"
                row[key] = {
                    metric: mean_std([c["test"][metric] for c in sel])
                    for metric in ("auc", "gauc", "logloss")
                }
                row[key]["seeds"] = len(sel)
                row[key]["epochs_run"] = statistics.fmean(c["epochs_run"] for c in sel)
                if hien:
                    types = list(sel[0]["beta"])
                    row["beta"] = {t: statistics.fmean(c["beta"][t] for c in sel) for t in types}
                    if ds == "synthetic":
                        row["planted_share"] = mean_std([c["planted_share"] for c in sel])
            row["auc_lift"] = row["hien"]["auc"][0] - row["base"]["auc"][0]
            row["timing"] = timing[f"{ds}/{m}"]
            row["timing_large_batch"] = timing[f"{ds}/{m}@large"]
            summary[f"{ds}/{m}"] = row
    return summary


def markdown(summary: dict, datasets: list[str], models: list[str], seeds: int, cmd: str) -> str:
    names = {"lr": "LR", "widedeep": "Wide&Deep", "deepfm": "DeepFM", "dcn": "DCN-V2",
             "din": "DIN"}  # fmt: skip
    out = [
        "## CTR: five base models with and without HIEN",
        "",
        f"Command: `{cmd}` ({bench.machine()}, torch threads 1). Test metrics, mean ± std over "
        f"{seeds} seeds (weights and batch order; the data split is fixed). Training: Adam, "
        "early stopping on validation AUC; settings per dataset: "
        + "; ".join(
            f"{ds}: batch {SETTINGS[ds]['batch_size']}, lr {SETTINGS[ds]['lr']:g}, "
            f"≤ {SETTINGS[ds]['epochs']} epochs, patience {SETTINGS[ds]['patience']}"
            for ds in datasets
        )
        + ". Embedding size 16 (LR: 1; 16 under HIEN). HIEN: gcn tree aggregator, user intent "
        "over the item attribute types, item intent over ≤ 10 training clickers. samples/s: one "
        "training epoch (steps only), best of the repeats, base and HIEN alternating; cost = "
        "HIEN epoch time / base epoch time. "
        + _load_note([summary[f"{ds}/{m}"] for ds in datasets for m in models]),
        "",
    ]
    for ds in datasets:
        planted = ds == "synthetic"
        header = ["model", "AUC", "GAUC", "logloss", "AUC lift", "samples/s", "cost"]
        rows = []
        for m in models:
            row = summary[f"{ds}/{m}"]
            for key in ("base", "hien"):
                r = row[key]
                hien = key == "hien"
                cells = [names[m] if not hien else f"HIEN + {names[m]}"]
                cells += [f"{r[k][0]:.4f} ± {r[k][1]:.4f}" for k in ("auc", "gauc", "logloss")]
                cells += [
                    f"{row['auc_lift']:+.4f}" if hien else "",
                    f"{row['timing'][f'{key}_samples_per_s']:,.0f}",
                    f"{row['timing']['ratio']:.2f}×" if hien else "",
                ]
                if planted:
                    share = row["planted_share"]
                    cells.append(f"{share[0]:.2f} ± {share[1]:.2f}" if hien else "")
                rows.append(cells)
        out += [
            f"**{ds}**",
            "",
            bench.md_table(header + (["planted top"] if planted else []), rows),
            "",
        ]
        out.append(
            f"Cost at batch {LARGE_BATCH} (same timing protocol): "
            + ", ".join(
                f"{names[m]} {summary[f'{ds}/{m}']['timing_large_batch']['ratio']:.2f}×"
                for m in models
            )
            + "."
        )
        out.append("")
        betas = {m: summary[f"{ds}/{m}"]["beta"] for m in models}
        types = list(next(iter(betas.values())))
        out.append(
            f"Mean across-type attention β of HIEN on {ds} test rows ("
            + ", ".join(types)
            + "): "
            + "; ".join(
                f"{names[m]} " + "/".join(f"{b[t]:.2f}" for t in types) for m, b in betas.items()
            )  # fmt: skip
            + "."
        )
        out.append("")
    return "\n".join(out)


def _load_note(rows: list[dict]) -> str:
    """The machine's 1-min load average during the timing (other jobs make timings noisy)."""
    loads = [row[key]["load_average_1min"] for row in rows
             for key in ("timing", "timing_large_batch")]  # fmt: skip
    return (
        f"1-min load average of the 2-core machine during the timing: {min(loads):.1f} to "
        f"{max(loads):.1f} (the accuracy runs, whose wall times are not reported, may have "
        "run two at a time)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="ml-100k,synthetic")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument(
        "--repeat", type=int, default=3, help="timed epochs per model (--scale: step pairs, >= 2)"
    )
    parser.add_argument("--no-md", action="store_true", help="leave BENCHMARKS.md alone")
    parser.add_argument(
        "--cells-only", action="store_true", help="only the accuracy runs (no timing, no report)"
    )
    parser.add_argument(
        "--retime",
        default="",
        help="comma-separated datasets whose saved timing is measured again (the accuracy "
        "cells stay cached)",
    )
    parser.add_argument(
        "--plug",
        choices=PLUGS,
        help="only the accuracy runs of HIEN with this plug against the default's cells, paired "
        "by seed (section ctr-plug)",
    )
    parser.add_argument(
        "--scale",
        action="store_true",
        help="only HIEN's added step time over vocabularies 1e2..1e6 and histories 50..500, "
        "and the planted-type share at 1e6 values (section ctr-scale)",
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="only time HIEN's parts per training step (section ctr-breakdown)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    datasets, models = args.datasets.split(","), args.models.split(",")
    cmd = bench.command_line("OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ctr.py")
    if args.scale:
        scale(args.repeat, cmd, not args.no_md)
        return
    if args.plug:
        compare_plug(datasets, models, args.seeds, args.plug, cmd, not args.no_md)
        return
    if args.breakdown:
        results = {}
        for ds in datasets:
            data = load(ds)
            for m in tqdm(models, desc=f"{ds} breakdown", unit="model"):
                bs = SETTINGS[ds]["batch_size"]
                results[f"{ds} / {m}"] = step_breakdown(data, m, bs, args.repeat)
        print(f"wrote {bench.write_results('ctr_breakdown', {'command': cmd, 'ms': results})}")
        text = breakdown_markdown(results, cmd)
        bench.publish("ctr-breakdown", text, update_md=not args.no_md)
        return
    cells, timing = [], {}
    for ds in [] if args.cells_only else datasets:  # timing first: it needs no cells
        data = load(ds)
        timing_path = CELLS / f"{ds}_timing.json"
        retime = ds in args.retime.split(",")
        saved = json.loads(timing_path.read_text()) if timing_path.exists() and not retime else {}
        for m in tqdm(models, desc=f"{ds} timing", unit="model"):
            for bs in (SETTINGS[ds]["batch_size"], LARGE_BATCH):
                if f"{m}@{bs}" not in saved:
                    saved[f"{m}@{bs}"] = throughput(data, m, bs, args.repeat)
                    bench.write_json(timing_path, saved)
            timing[f"{ds}/{m}"] = saved[f"{m}@{SETTINGS[ds]['batch_size']}"]
            timing[f"{ds}/{m}@large"] = saved[f"{m}@{LARGE_BATCH}"]
        if ds == "ml-100k" and retime and "din" in models:
            b = bounds(saved, data.split.train.num_rows, models)
            print(f"wrote {bench.write_results('ctr_bounds', {'command': cmd, **b})}")
            bench.publish("ctr-bounds", bounds_markdown(b, cmd), update_md=not args.no_md)
    for ds in datasets:
        data = load(ds)
        jobs = [(m, h, s) for m in models for h in (False, True) for s in range(args.seeds)]
        for m, h, s in tqdm(jobs, desc=ds, unit="run"):
            cells.append(run_cell(data, ds, m, h, s))
    if args.cells_only:
        return
    summary = summarise(cells, timing, datasets, models)
    payload = {"machine": bench.machine(), "command": cmd, "settings": SETTINGS,
               "summary": summary, "cells": cells}  # fmt: skip
    print(f"wrote {bench.write_results('ctr', payload)}")
    text = markdown(summary, datasets, models, args.seeds, cmd)
    bench.publish("ctr", text, update_md=not args.no_md)


if __name__ == "__main__":
    main()
