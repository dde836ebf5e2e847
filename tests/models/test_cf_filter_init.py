"""MF initialised from GF-CF's ideal low-pass filter (``CFConfig(init="gf-cf")``,
``graphrec cf train --init gf-cf``): its initial scores are the filter's."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from graphrec.cli import main
from graphrec.errors import ConfigError
from graphrec.graphs.bipartite import build_bipartite
from graphrec.models.cf import CFConfig, CFTrainer
from graphrec.models.cf.backbones import MF
from graphrec.nn.gf_cf import GFCFFilter


def interactions(users: int = 30, items: int = 24, seed: int = 0) -> sp.csr_array:
    rng = np.random.default_rng(seed)
    r = (rng.random((users, items)) < 0.25).astype(np.float32)
    r[np.arange(users), rng.integers(0, items, users)] = 1.0  # every user has an item
    return sp.csr_array(r)


def low_pass_numpy(r: np.ndarray, k: int) -> np.ndarray:
    """x D_I^{-1/2} V_k V_k^T D_I^{1/2} from a dense SVD of D_U^{-1/2} R D_I^{-1/2}."""
    du, di = r.sum(1), r.sum(0)
    su = np.where(du > 0, du, 1.0) ** -0.5
    si = np.where(di > 0, di, 1.0) ** -0.5
    _, _, vt = np.linalg.svd(su[:, None] * r * si[None, :])
    v = vt[:k].T
    return (r * si) @ v @ v.T * np.where(di > 0, di, 0.0) ** 0.5


def scores(model: MF) -> np.ndarray:
    user_emb, item_emb = model()
    return (user_emb @ item_emb.T).detach().numpy()


def test_initial_scores_are_the_low_pass_filters():
    r = interactions()
    model = MF.from_low_pass(r, 6, seed=0)
    expected = low_pass_numpy(r.toarray().astype(np.float64), 6)
    np.testing.assert_allclose(scores(model), expected, atol=1e-5)
    gfcf = GFCFFilter(r, 6, alpha=1.0, seed=0)
    np.testing.assert_allclose(scores(model), gfcf.low_pass_part(r), atol=1e-6)
    norms = [np.linalg.norm(t.detach().numpy(), axis=1) for t in model()]
    assert np.sqrt((norms[0] ** 2).mean()) == pytest.approx(np.sqrt((norms[1] ** 2).mean()))


def test_trainer_starts_from_the_filter_of_the_training_split():
    graph = build_bipartite(interactions(), valid_fraction=0.2, test_fraction=0.2, seed=0)
    trainer = CFTrainer(graph, CFConfig(backbone="mf", init="gf-cf", embedding_dim=5))
    expected = GFCFFilter(graph.train, 5, alpha=1.0, seed=0).low_pass_part(graph.train)
    np.testing.assert_allclose(scores(trainer.model), expected, atol=1e-6)


def test_invalid_settings_refused():
    with pytest.raises(ConfigError, match="backbone 'mf'"):
        CFConfig(backbone="lightgcn", init="gf-cf")
    with pytest.raises(ConfigError, match="embedding_dim"):
        MF.from_low_pass(interactions(), 24)


@pytest.fixture
def folder(tmp_path):
    r = interactions(20, 16, seed=1).toarray()
    rng = np.random.default_rng(2)
    lines = {"train.txt": [], "test.txt": []}
    for u, row in enumerate(r):
        items = np.flatnonzero(row)
        test = rng.choice(np.setdiff1d(np.arange(16), items), 1)
        lines["train.txt"].append(" ".join(map(str, [u, *items])))
        lines["test.txt"].append(" ".join(map(str, [u, *test])))
    for name, rows in lines.items():
        (tmp_path / name).write_text("\n".join(rows) + "\n")
    return tmp_path


def test_cli_init_gf_cf(capsys, folder, tmp_path):
    out = tmp_path / "m.pt"
    args = ["cf", "train", "--dataset", str(folder), "--backbone", "mf", "--init", "gf-cf",
            "--dim", "4", "--epochs", "2", "--out", str(out), "--quiet"]  # fmt: skip
    assert main([*args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["epochs"] == 2
    assert main(["cf", "recommend", str(out), "--users", "0,3", "-k", "3", "--json"]) == 0
    assert capsys.readouterr().out.strip()
    assert main([*args[:-3], "--backbone", "lightgcn", "--out", str(out), "--force"]) != 0
    assert "--init gf-cf needs --backbone mf" in capsys.readouterr().err
