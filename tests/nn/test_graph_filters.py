"""graphrec.nn graph filters (linear, ideal low-pass, GF-CF, BSPM) against dense numpy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from graphrec.errors import ConfigError
from graphrec.nn import (
    BSPMFilter,
    GFCFFilter,
    IdealLowPassFilter,
    LinearItemFilter,
    normalize_interactions,
)
from graphrec.nn.bspm import sharpening_polynomial


@pytest.fixture
def dense():
    """30 users x 20 items, every user has an item; item 19 has none, user 29 has none."""
    rng = np.random.default_rng(0)
    r = (rng.random((30, 20)) < 0.3).astype(np.float64)
    r[np.arange(29), np.arange(29) % 19] = 1.0
    r[:, 19] = 0.0
    r[29] = 0.0
    return r


def _normalized(r: np.ndarray) -> np.ndarray:
    du, di = r.sum(1), r.sum(0)
    inv_u = np.where(du > 0, 1 / np.sqrt(np.maximum(du, 1)), 0.0)
    inv_i = np.where(di > 0, 1 / np.sqrt(np.maximum(di, 1)), 0.0)
    return inv_u[:, None] * r * inv_i[None, :]


def _top_right_vectors(r: np.ndarray, k: int) -> np.ndarray:
    _, _, vt = np.linalg.svd(_normalized(r))
    return vt[:k].T


def test_normalize_interactions_hand_case():
    # user 0: items 0, 1; user 1: item 1 -> D_U = [2, 1], D_I = [1, 2, 0]
    r = sp.csr_array(np.array([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0]]))
    normed, item_scale = normalize_interactions(r)
    expected = [[1 / np.sqrt(2), 1 / 2, 0.0], [0.0, 1 / np.sqrt(2), 0.0]]
    np.testing.assert_allclose(normed.toarray(), expected, rtol=1e-6)
    np.testing.assert_allclose(item_scale, [1.0, 1 / np.sqrt(2), 0.0], rtol=1e-6)


def test_linear_filter_equals_dense(dense):
    layer = LinearItemFilter(sp.csr_array(dense))
    rt = _normalized(dense)
    x = dense[:7]
    expected = x @ rt.T @ rt
    for signal in (sp.csr_array(x), x, torch.from_numpy(x)):
        out = layer(signal)
        assert out.dtype == torch.float32 and out.shape == (7, 20)
        np.testing.assert_allclose(out.numpy(), expected, atol=1e-6)
    assert torch.all(layer(dense)[:, 19] == 0)  # an item nobody interacted with
    # item-major layout: the same products on x^T, bit for bit
    x_t = torch.from_numpy(np.ascontiguousarray(x.T, dtype=np.float32))
    assert torch.equal(layer.propagate_t(x_t).T, layer(x))


def test_ideal_low_pass_equals_exact_svd(dense):
    layer = IdealLowPassFilter(sp.csr_array(dense), k=6, seed=3)
    values = np.linalg.svd(_normalized(dense), compute_uv=False)
    np.testing.assert_allclose(layer.singular_values.numpy(), values[:6], rtol=1e-4)
    x = dense[:5]
    for k in (6, 2):
        v = _top_right_vectors(dense, k)
        np.testing.assert_allclose(layer(x, k=k).numpy(), x @ v @ v.T, atol=1e-5)
    again = IdealLowPassFilter(sp.csr_array(dense), k=6, seed=3)
    assert torch.equal(again.basis, layer.basis)  # seeded start vector: deterministic


def test_gf_cf_equals_dense_formula(dense):
    alpha, k = 0.3, 5
    layer = GFCFFilter(sp.csr_array(dense), k=k, alpha=alpha)
    rt, v = _normalized(dense), _top_right_vectors(dense, k)
    di = dense.sum(0)
    inv = np.where(di > 0, 1 / np.sqrt(np.maximum(di, 1)), 0.0)
    x = dense[:6]
    expected = x @ rt.T @ rt + alpha * ((x * inv) @ v @ v.T) * np.sqrt(di)
    np.testing.assert_allclose(layer(x).numpy(), expected, atol=1e-5)
    linear_only = GFCFFilter(sp.csr_array(dense), k=k, alpha=0.0)
    np.testing.assert_allclose(linear_only(x).numpy(), x @ rt.T @ rt, atol=1e-6)


def test_bspm_equals_euler_steps(dense):
    r = sp.csr_array(dense)
    x = dense[:6]
    gf_cf = GFCFFilter(r, k=5, alpha=0.2)(x).numpy()
    torch.testing.assert_close(
        BSPMFilter(r, k=5, beta=0.2, sharpen_time=0.0)(x), torch.from_numpy(gf_cf)
    )
    rt = _normalized(dense)
    p = rt.T @ rt
    s = gf_cf.astype(np.float64)
    for _ in range(3):
        s = s - (1.5 / 3) * s @ p
    out = BSPMFilter(r, k=5, beta=0.2, sharpen_time=1.5, sharpen_steps=3)(x)
    np.testing.assert_allclose(out.numpy(), s, atol=1e-5)


def _rk4_dense(s: np.ndarray, p: np.ndarray, time: float, steps: int) -> np.ndarray:
    """Classical RK4 on dS/dt = -S P in float64 (textbook stages)."""
    h = time / steps
    for _ in range(steps):
        k1 = -s @ p
        k2 = -(s + h / 2 * k1) @ p
        k3 = -(s + h / 2 * k2) @ p
        k4 = -(s + h * k3) @ p
        s = s + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return s


def test_bspm_rk4_early_and_late_merge_equal_dense(dense):
    r = sp.csr_array(dense)
    x = dense[:6]
    rt, v = _normalized(dense), _top_right_vectors(dense, 5)
    p = rt.T @ rt
    di = dense.sum(0)
    inv = np.where(di > 0, 1 / np.sqrt(np.maximum(di, 1)), 0.0)
    low = 0.2 * ((x * inv) @ v @ v.T) * np.sqrt(di)
    early = _rk4_dense(x @ p + low, p, 2.5, 2)
    late = _rk4_dense(x @ p, p, 2.5, 2) + low
    for merge, expected in (("early", early), ("late", late)):
        layer = BSPMFilter(r, 5, 0.2, 2.5, 2, "rk4", merge)
        np.testing.assert_allclose(layer(x).numpy(), expected, atol=1e-5)
    euler_late = BSPMFilter(r, 5, 0.2, 1.0, 1, "euler", "late")(x).numpy()
    np.testing.assert_allclose(euler_late, x @ p - x @ p @ p + low, atol=1e-5)


def test_sharpening_polynomial_equals_the_solver(dense):
    rt = _normalized(dense)
    p = rt.T @ rt
    s0 = dense[:4] @ p
    for solver, time, steps in (("rk4", 2.5, 1), ("rk4", 1.2, 3), ("euler", 1.5, 3)):
        c = sharpening_polynomial(time, steps, solver)
        assert len(c) == (4 if solver == "rk4" else 1) * steps + 1
        poly = sum(c[j] * s0 @ np.linalg.matrix_power(p, j) for j in range(len(c)))
        layer = BSPMFilter(sp.csr_array(dense), 3, 0.0, time, steps, solver)
        np.testing.assert_allclose(layer.sharpen(s0.astype(np.float32)), poly, atol=1e-5)
    np.testing.assert_allclose(sharpening_polynomial(1.5, 3, "euler"), [1, -1.5, 0.75, -0.125])
    # RK4 is the degree-4 Taylor polynomial of exp(-h x) per step
    np.testing.assert_allclose(sharpening_polynomial(2.0, 1, "rk4"), [1, -2, 2, -4 / 3, 2 / 3])


def test_invalid_arguments(dense):
    r = sp.csr_array(dense)
    with pytest.raises(ConfigError, match="k must be in"):
        IdealLowPassFilter(r, k=20)
    with pytest.raises(ConfigError, match="k must be in"):
        IdealLowPassFilter(r, k=3)(dense, k=4)
    with pytest.raises(ConfigError, match="alpha"):
        GFCFFilter(r, k=3, alpha=-1.0)
    with pytest.raises(ConfigError, match="sharpen_steps"):
        BSPMFilter(r, k=3, sharpen_steps=0)
    with pytest.raises(ConfigError, match="sharpen_time"):
        BSPMFilter(r, k=3, sharpen_time=-0.5)
    with pytest.raises(ConfigError, match="solver must be one of"):
        BSPMFilter(r, k=3, solver="dopri5")
    with pytest.raises(ConfigError, match="merge must be one of"):
        BSPMFilter(r, k=3, merge="middle")
    with pytest.raises(ConfigError, match="solver must be one of"):
        sharpening_polynomial(1.0, 1, "rk2")
    with pytest.raises(ConfigError, match=r"x must be \[B, 20\]"):
        LinearItemFilter(r)(dense[:, :5])
    with pytest.raises(ConfigError, match="scipy sparse"):
        LinearItemFilter(dense)
    with pytest.raises(ConfigError, match="non-negative"):
        LinearItemFilter(sp.csr_array(-dense))
