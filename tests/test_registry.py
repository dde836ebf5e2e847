"""graphrec.registry: one source of names and defaults for Python and the command line.

Every registered name's command-line defaults equal its config dataclass; the examples of
docs/architecture.md ("Where to add a model / strategy / solver") register a new CTR model, FL
strategy and k-dDSP solver that the command line then lists and runs.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
from pathlib import Path

import pytest
import torch

from graphrec.cli import _build_parser, main
from graphrec.errors import ConfigError, GraphrecError
from graphrec.registry import (
    CF_BACKBONES,
    CF_LOSSES,
    COMPRESSORS,
    CTR_MODELS,
    FL_STRATEGIES,
    HIEN_AGGREGATORS,
    SOLVERS,
    Registry,
)

torch.set_num_threads(1)

DOCS = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def _parse(*argv: str):
    return _build_parser().parse_args(list(argv))


def _choices(parser, *path: str) -> list[str]:
    """The ``choices`` of option ``path[-1]`` of the subcommand ``path[:-1]``."""
    for word in path[:-1]:
        sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
        parser = sub.choices[word]
    return list(next(a for a in parser._actions if path[-1] in a.option_strings).choices)


@dataclasses.dataclass(frozen=True)
class _ScaleConfig:
    factor: float = 2.0


def test_registry_register_get_build_and_errors():
    reg = Registry("thing")

    @reg.register("scale", config=_ScaleConfig)
    def scale(x, *, factor):
        return factor * x

    reg.register("plain", abs)
    assert reg.names() == ["scale", "plain"] and "scale" in reg and list(reg) == reg.names()
    assert reg.get("scale") is scale and reg.config("scale") is _ScaleConfig
    assert reg.config("plain") is None and reg.defaults("plain") == {}
    assert reg.defaults("scale") == {"factor": 2.0}
    assert reg.build("scale", 3.0) == 6.0 and reg.build("scale", 3.0, factor=-1.0) == -3.0
    assert reg.build("plain", -4) == 4
    reg.register("scale", scale, config=_ScaleConfig)  # the same entry again: a no-op
    with pytest.raises(ConfigError, match=r"unknown thing 'nope'; choose one of: scale, plain"):
        reg.get("nope")
    for obj, config in ((abs, _ScaleConfig), (scale, None)):
        with pytest.raises(ConfigError, match="'scale' is already registered"):
            reg.register("scale", obj, config=config)
    with pytest.raises(ConfigError, match="has no option power; its options: factor"):
        reg.build("scale", 3.0, power=2)
    with pytest.raises(ConfigError, match="must be a dataclass"):
        reg.register("bad", abs, config=dict)
    reg.unregister("plain")
    assert reg.names() == ["scale"]


def test_registries_hold_the_package_names():
    from graphrec.federated.stream import SELECTORS
    from graphrec.models.cf import CFBackbone, CFObjective
    from graphrec.nn.tree_aggregation import TREE_AGGREGATORS

    assert CTR_MODELS.names() == ["dcn", "deepfm", "din", "lr", "widedeep"]
    assert FL_STRATEGIES.names() == [
        "fedavg",
        "fedprox",
        "involved",
        "fedsubavg",
        "fedsubavg-paper",
    ]
    assert SOLVERS.names() == ["fastcover", "greedy", "degree", "soft", "heu", "ilp", "ris"]
    assert HIEN_AGGREGATORS.names() == list(TREE_AGGREGATORS)
    # CFConfig and CFTrainer validate and dispatch through these registries only
    assert CF_BACKBONES.names() == ["mf", "lightgcn"]
    assert CF_LOSSES.names() == ["bpr", "infonce", "hdccf"]
    assert all(issubclass(CF_BACKBONES.get(name), CFBackbone) for name in CF_BACKBONES)
    assert all(issubclass(CF_LOSSES.get(name), CFObjective) for name in CF_LOSSES)
    parser = _build_parser()
    assert _choices(parser, "ctr", "train", "--model") == CTR_MODELS.names()
    assert _choices(parser, "ctr", "train", "--aggregator") == HIEN_AGGREGATORS.names()
    assert _choices(parser, "fl", "run", "--strategy") == FL_STRATEGIES.names()
    assert _choices(parser, "fl", "ode", "--selector") == list(SELECTORS)
    assert _choices(parser, "fastcover", "--method") == SOLVERS.names()
    assert _choices(parser, "cf", "train", "--backbone") == CF_BACKBONES.names()
    assert _choices(parser, "cf", "train", "--loss") == CF_LOSSES.names()
    for mode in HIEN_AGGREGATORS:
        assert HIEN_AGGREGATORS.build(mode, 4).mode == mode


def test_ctr_cli_defaults_are_the_registered_configs():
    from graphrec.commands.ctr import _config
    from graphrec.models.ctr.defaults import HIEN_DEFAULTS
    from graphrec.models.ctr.experiment import build_ctr_model, load_ctr_dataset

    data = load_ctr_dataset("synthetic", seed=0)
    for name in CTR_MODELS:
        args = _parse("ctr", "train", "--dataset", "synthetic", "--model", name)
        assert _config(args)["embedding_dim"] == CTR_MODELS.defaults(name)["embedding_dim"]
        assert args.aggregator == HIEN_DEFAULTS.aggregator
        # the constructor's own defaults are the config's: build() == cls(features)
        torch.manual_seed(0)
        python = CTR_MODELS.get(name)(data.features)
        torch.manual_seed(0)
        built = CTR_MODELS.build(name, data.features)
        assert repr(python) == repr(built) == repr(build_ctr_model(name, data))
        assert all(torch.equal(a, b) for a, b in zip(python.parameters(), built.parameters()))


def test_fl_cli_defaults_are_the_registered_configs():
    from graphrec.commands.fl import strategy_options
    from graphrec.federated.experiment import build_strategy, federated_task

    graph = federated_task("synthetic", "softmax", devices=10).graph
    for name in FL_STRATEGIES:
        args = _parse("fl", "run", "--dataset", "synthetic", "--strategy", name)
        options = strategy_options(args)
        assert options == FL_STRATEGIES.defaults(name)
        strategy = build_strategy(name, graph)
        assert {k: getattr(strategy, k) for k in options} == options
    # the Python constructor's defaults are the CLI's: FedSubAvg(graph) is `--strategy fedsubavg`
    from graphrec.federated.strategies import FedSubAvg

    assert FedSubAvg(graph).form == FL_STRATEGIES.defaults("fedsubavg")["form"] == "code"
    fedprox = _parse("fl", "run", "--dataset", "synthetic", "--strategy", "fedprox")
    assert strategy_options(fedprox) == {"mu": 0.01} and fedprox.prox_mu == 0.01
    from graphrec.federated import FedProx

    assert FedProx().mu == FL_STRATEGIES.defaults("fedprox")["mu"]
    with pytest.raises(GraphrecError, match="--prox-mu applies to --strategy fedprox only"):
        strategy_options(_parse("fl", "run", "--dataset", "synthetic", "--prox-mu", "0.1"))
    with pytest.raises(
        GraphrecError, match="--coef-clip applies to --strategy fedsubavg or fedsubavg-paper only"
    ):
        strategy_options(
            _parse(
                "fl", "run", "--dataset", "synthetic", "--strategy", "fedavg", "--coef-clip", "2"
            )
        )


def test_solver_and_cf_cli_defaults_are_the_registered_configs():
    from combinatorial import solve
    from graphrec.models.cf import CFConfig

    params = inspect.signature(solve).parameters
    for name in SOLVERS:
        args = _parse("fastcover", "--method", name)
        for option, value in SOLVERS.defaults("fastcover").items():
            assert getattr(args, option) == value == params[option].default
        ilp = SOLVERS.defaults("ilp")
        assert (args.ilp_time_limit, args.ilp_any_size) == (ilp["time_limit"], ilp["force"])
    args = _parse("cf", "train", "--dataset", "ml-100k", "--out", "m.pt")
    cli = {"embedding_dim": args.dim, **vars(args)}
    for field in dataclasses.fields(CFConfig):
        if cli.get(field.name) is not None:  # the options left unset take CFConfig's default
            assert cli[field.name] == field.default, field.name


def _example(title: str) -> str:
    """The python block of docs/architecture.md that follows the paragraph starting ``title``."""
    text = DOCS.read_text()
    section = text[text.index("## Where to add a model / strategy / solver") :]
    after = section[section.index(title) :]
    return re.search(r"```python\n(.*?)```", after, re.S).group(1)


@pytest.fixture
def example():
    """Run a docs example; unregister what it registered afterwards."""
    added = []

    def run(title: str, registry: Registry) -> dict:
        before = set(registry.names())
        namespace: dict = {"__name__": "docs_example"}
        exec(compile(_example(title), f"{DOCS}: {title}", "exec", dont_inherit=True), namespace)
        added.extend((registry, name) for name in set(registry.names()) - before)
        return namespace

    yield run
    for registry, name in added:
        registry.unregister(name)


def _run_cli(capsys, *argv: str) -> dict:
    rc = main([*argv, "--json"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    return json.loads(cap.out)


def test_docs_ctr_model_example_trains_from_the_cli(example, capsys):
    ns = example("A CTR model", CTR_MODELS)
    assert "mean" in _choices(_build_parser(), "ctr", "train", "--model")
    res = _run_cli(capsys, "ctr", "train", "--dataset", "synthetic", "--model", "mean",
                   "--epochs", "1", "--threads", "1")  # fmt: skip
    assert res["config"]["embedding_dim"] == ns["MeanFieldConfig"].embedding_dim == 8
    assert res["epochs_run"] == 1 and 0.0 < res["test"]["auc"] < 1.0


def test_docs_strategy_example_runs_from_the_cli(example, capsys):
    example("A federated strategy", FL_STRATEGIES)
    assert "half" in _choices(_build_parser(), "fl", "run", "--strategy")
    argv = ("fl", "run", "--dataset", "synthetic", "--devices", "10", "--rounds", "2",
            "--clients-per-round", "3", "--eval-every", "1", "--quiet")  # fmt: skip
    half = _run_cli(capsys, *argv, "--strategy", "half")
    fedavg = _run_cli(capsys, *argv, "--strategy", "fedavg")
    assert [r for r, _ in half["curve"]] == [0, 1, 2]  # round 0: the common initial model
    assert half["curve"][0] == fedavg["curve"][0]
    assert half["final"] != fedavg["final"], (half["final"], fedavg["final"])
    assert FL_STRATEGIES.build("half").server_lr == 0.5


def test_docs_solver_example_runs_from_the_cli(example, capsys, tmp_path):
    example("A k-dDSP solver", SOLVERS)
    assert "first" in _choices(_build_parser(), "fastcover", "--method")
    path = tmp_path / "star.txt"
    path.write_text("a b\na c\nb d\n")  # a covers b, c; b covers d
    res = _run_cli(capsys, "fastcover", str(path), "-k", "1", "-d", "1", "--method", "first")
    assert res["method"] == "first" and res["seeds"] == ["a"] and res["covered"] == 3
    from combinatorial import solve

    sol = solve(path, 1, 2, method="first", options={"offset": 1})
    assert sol.seed_ids == ["b"] and sol.covered == 2


def test_user_compressor_from_python_and_the_cli(capsys):
    from graphrec.federated.vertical import Quantize, compressor

    @dataclasses.dataclass(frozen=True)
    class CoarseConfig:
        bits: int = 4

    @COMPRESSORS.register("coarse", config=CoarseConfig)
    def coarse(*, bits: int) -> Quantize:
        return Quantize(bits, entropy_coding=False)

    try:
        assert COMPRESSORS.names() == ["q8", "q4", "topk", "coarse"]
        assert compressor("coarse") == Quantize(4, entropy_coding=False)
        assert compressor("coarse:8") == compressor("coarse:bits=8") == Quantize(8, False)
        res = _run_cli(capsys, "vfl", "train", "--dataset", "breast-cancer", "--epochs", "1",
                       "--compress", "coarse", "--seed", "0")  # fmt: skip
        q4 = _run_cli(capsys, "vfl", "train", "--dataset", "breast-cancer", "--epochs", "1",
                      "--compress", "q4:entropy_coding=false", "--seed", "0")  # fmt: skip
        assert res["config"]["compress"] == "coarse" and res["test_auc"] == q4["test_auc"]
        assert res["train_bytes_by_kind"] == q4["train_bytes_by_kind"]
    finally:
        COMPRESSORS.unregister("coarse")
    with pytest.raises(ConfigError, match="unknown compressor 'coarse'; choose one of: q8, q4,"):
        compressor("coarse")
