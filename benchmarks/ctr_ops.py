"""CTR building blocks: each choice made for speed against the torch default it replaced.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ctr_ops.py [--no-md]``

One thread, forward + backward (the optimizer: one step), milliseconds, best of ``--repeat``
rounds of ``--calls`` calls, both variants alternating in the same run:

* row lookup of a [1024, 50] history into a 1,611 x 16 table (ml-100k's item table):
  ``F.embedding`` against ``index_select`` (:func:`graphrec.models.ctr.features._lookup`);
* Adam step over the parameters of HIEN + Wide&Deep on ml-100k: ``foreach=True`` against
  ``fused=True`` (:func:`graphrec.models.ctr.train.adam`);
* level-1 bag attention weights on [1024, 73] scores (ml-100k's year type): ``exp(clamp)``
  against ``exp(s - max)`` (:meth:`graphrec.nn.hier_attention.HierarchicalIntentAttention
  .forward_weighted`);
* softmax over a short last dimension ([1024, 3] types, [1024, 10] clickers): over the last
  dimension against the transposed copy (``graphrec.nn.hier_attention._softmax_short``).

Writes ``benchmarks/results/ctr_ops.json`` and the ``ctr-ops`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as bench  # noqa: E402

from graphrec.models.ctr.experiment import build_ctr_model, load_ctr_dataset  # noqa: E402
from graphrec.models.ctr.features import _lookup  # noqa: E402
from graphrec.models.ctr.train import adam  # noqa: E402
from graphrec.nn.hier_attention import _softmax_short  # noqa: E402


def backward_of(fn: Callable[[], torch.Tensor]) -> Callable[[], None]:
    return lambda: fn().sum().backward()


def cases() -> list[tuple[str, str, Callable[[], None], Callable[[], None]]]:
    """``(operation, "default / ours", torch default, our choice)`` per case."""
    g = torch.Generator().manual_seed(0)
    table = torch.randn(1611, 16, generator=g, requires_grad=True)
    history = torch.randint(0, 1611, (1024, 50), generator=g)
    scores = torch.randn(1024, 73, generator=g, requires_grad=True)
    types = torch.randn(1024, 3, generator=g, requires_grad=True)
    clickers = torch.randn(1024, 10, generator=g, requires_grad=True)
    data = load_ctr_dataset("ml-100k", bench.data_root() / "movielens" / "ml-100k", seed=0)
    params = list(build_ctr_model("widedeep", data, hien=True).parameters())
    for p in params:
        p.grad = torch.randn_like(p)
    foreach = torch.optim.Adam(params, lr=1e-3, foreach=True)
    fused = adam(params, lr=1e-3)
    return [
        (
            "lookup [1024, 50] into 1,611 x 16",
            "F.embedding / index_select",
            backward_of(lambda: F.embedding(history, table)),
            backward_of(lambda: _lookup(history, table)),
        ),
        (
            f"Adam step, HIEN + Wide&Deep ({len(params)} tensors)",
            "foreach / fused",
            foreach.step,
            fused.step,
        ),
        (
            "bag weights, [1024, 73]",
            "exp(clamp) / exp(s - max)",
            backward_of(lambda: torch.exp(scores.clamp(-30.0, 30.0))),
            backward_of(lambda: torch.exp(scores - scores.detach().amax(-1, keepdim=True))),
        ),
        (
            "softmax over 3 types, [1024, 3]",
            "last dim / transposed",
            backward_of(lambda: torch.softmax(types, -1).square()),
            backward_of(lambda: _softmax_short(types).square()),
        ),
        (
            "softmax over 10 clickers, [1024, 10]",
            "last dim / transposed",
            backward_of(lambda: torch.softmax(clickers, -1).square()),
            backward_of(lambda: _softmax_short(clickers).square()),
        ),
    ]


def ms(fn: Callable[[], None], calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--no-md", action="store_true", help="leave BENCHMARKS.md alone")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cmd = bench.command_line("OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ctr_ops.py")
    rows = {}
    for name, variants, default, ours in cases():
        default(), ours()  # warm-up
        best = bench.alternating_best(
            {"default": partial(ms, default, args.calls), "ours": partial(ms, ours, args.calls)},
            args.repeat,
        )
        default_ms, ours_ms = best["default"], best["ours"]
        rows[name] = {"variants": variants, "default_ms": default_ms, "ours_ms": ours_ms,
                      "speedup": default_ms / ours_ms}  # fmt: skip
        speedup = bench.ratio(default_ms, ours_ms)
        print(f"{name:45s} {default_ms:7.3f} ms -> {ours_ms:7.3f} ms ({speedup})")
    load = bench.load_average()
    print(f"wrote {bench.write_results('ctr_ops', {'command': cmd, 'load': load, 'rows': rows})}")
    table = bench.md_table(
        ["operation", "torch default", "ours", "speed-up"],
        [
            [f"{name} ({r['variants']})", f"{r['default_ms']:.3f}", f"{r['ours_ms']:.3f}",
             bench.ratio(r["default_ms"], r["ours_ms"])]
            for name, r in rows.items()
        ],
    )  # fmt: skip
    text = "\n".join(
        [
            "## CTR building blocks: our choice against the torch default",
            "",
            f"Command: `{cmd}` ({bench.machine()}, torch threads 1, 1-min load average at the "
            f"end {load:.1f}). Forward + backward (Adam: one step), ms, best of {args.repeat} "
            f"rounds of {args.calls} calls, the two variants alternating.",
            "",
            table,
        ]
    )
    bench.publish("ctr-ops", text, update_md=not args.no_md)


if __name__ == "__main__":
    main()
