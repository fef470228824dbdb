"""Kernel and SVGD direction: vectorised code against explicit double loops (NumPy)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from svnr_jax import kernels
from svnr_jax.negotiation import topology_mask


def _loop_bandwidth(sq: np.ndarray, m: int) -> float:
    return max(float(np.median(sq.reshape(-1))) / np.log(m + 1.0), 1e-3)


def _loop_svgd(x, s, q, h=None):
    """φ(q_l) = 1/M Σ_j [k(x_j, q_l) s_j + ∇_{x_j} k(x_j, q_l)] with explicit loops."""
    m, nq = x.shape[0], q.shape[0]
    sq = np.array([[np.sum((x[j] - q[i]) ** 2) for i in range(nq)] for j in range(m)])
    h = _loop_bandwidth(sq, m) if h is None else h
    out = np.zeros_like(q)
    for i in range(nq):
        for j in range(m):
            k = np.exp(-sq[j, i] / h)
            grad_k = -2.0 * (x[j] - q[i]) / h * k  # d/dx_j of exp(-|x_j - q|^2 / h)
            out[i] += k * s[j] + grad_k
    return out / m


def _loop_masked(y, s, mask, u, h=None):
    m, n, _ = y.shape
    out = np.zeros_like(u)
    for i in range(n):
        cols = np.flatnonzero(mask[i])
        sq = np.array([[np.sum((y[a][cols] - u[b][cols]) ** 2) for b in range(u.shape[0])] for a in range(m)])
        hi = _loop_bandwidth(sq, m) if h is None else h
        for b in range(u.shape[0]):
            for a in range(m):
                k = np.exp(-sq[a, b] / hi)
                out[b, i] += k * s[a, i] + (-2.0 * (y[a, i] - u[b, i]) / hi) * k
    return out / m


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(0)


def test_rbf_kernel_matches_loop_and_is_symmetric(rng):
    x = rng.normal(size=(7, 3)).astype(np.float32)
    k, h = jax.jit(kernels.rbf_kernel)(x, x)
    sq = np.array([[np.sum((a - b) ** 2) for b in x] for a in x])
    np.testing.assert_allclose(h, _loop_bandwidth(sq, 7), rtol=1e-5)
    np.testing.assert_allclose(k, np.exp(-sq / float(h)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(k, np.asarray(k).T, atol=1e-7)
    np.testing.assert_allclose(np.diag(k), 1.0)


def test_bandwidth_floor_and_no_gradient():
    x = jnp.zeros((5, 2))  # all distances zero -> floor
    _, h = kernels.rbf_kernel(x, x)
    assert float(h) == pytest.approx(1e-3)
    g = jax.grad(lambda z: kernels.median_bandwidth(kernels.pairwise_sq_dists(z, z), 5))(jnp.arange(10.0).reshape(5, 2))
    assert np.all(np.asarray(g) == 0.0)


@pytest.mark.parametrize("bandwidth", [None, 0.7])
@pytest.mark.parametrize("with_queries", [False, True])
def test_svgd_direction_matches_double_loop(rng, bandwidth, with_queries):
    x = rng.normal(size=(9, 4)).astype(np.float32)
    s = rng.normal(size=(9, 4)).astype(np.float32)
    q = rng.normal(size=(5, 4)).astype(np.float32) if with_queries else None
    fn = jax.jit(lambda x, s, q: kernels.svgd_direction(x, s, bandwidth=bandwidth, queries=q))
    got = fn(x, s, q)
    want = _loop_svgd(x.astype(np.float64), s, x if q is None else q, bandwidth)
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("topology", ["nested", "independent", "ring", "random"])
@pytest.mark.parametrize("bandwidth", [None, 0.5])
def test_masked_direction_matches_double_loop(rng, topology, bandwidth):
    m, n, d = 8, 4, 2
    if topology == "random":
        mask = rng.random((n, n)) < 0.5
        np.fill_diagonal(mask, True)
    else:
        mask = topology_mask(topology, n)
    y = rng.normal(size=(m, n, d)).astype(np.float32)
    s = rng.normal(size=(m, n, d)).astype(np.float32)
    u = rng.normal(size=(5, n, d)).astype(np.float32)
    fn = jax.jit(lambda y, s, u: kernels.masked_svgd_direction(y, s, mask, bandwidth=bandwidth, queries=u))
    np.testing.assert_allclose(fn(y, s, u), _loop_masked(y.astype(np.float64), s, mask, u, bandwidth),
                               rtol=2e-4, atol=2e-5)


def test_full_mask_is_plain_svgd_on_the_joint(rng):
    m, n, d = 10, 3, 2
    y = rng.normal(size=(m, n, d)).astype(np.float32)
    s = rng.normal(size=(m, n, d)).astype(np.float32)
    per_agent = kernels.masked_svgd_direction(y, s, np.ones((n, n), bool))
    joint = kernels.svgd_direction(y.reshape(m, -1), s.reshape(m, -1)).reshape(m, n, d)
    np.testing.assert_allclose(per_agent, joint, rtol=1e-4, atol=1e-5)


def test_direction_points_towards_target():
    """With a standard normal target, particles far to the right are pushed left."""
    x = jnp.linspace(3.0, 4.0, 6)[:, None]
    phi = kernels.svgd_direction(x, -x)
    assert np.all(np.asarray(phi) < 0)


def test_tanh_correction_values():
    u = jnp.array([0.0, 0.5])
    np.testing.assert_allclose(kernels.tanh_correction(u), np.log(1 + 1e-6) + np.log(0.75 + 1e-6), rtol=1e-6)
    assert np.isfinite(float(kernels.tanh_correction(jnp.array([1.0, -1.2]))))


def test_symmetric_median_equals_full_median(rng):
    for m in (2, 3, 8, 9):
        x = rng.normal(size=(m, 3)).astype(np.float32)
        sq = kernels.pairwise_sq_dists(x, x)
        full = jax.jit(lambda s: kernels.median_bandwidth(s, m))(sq)
        sym = jax.jit(lambda s: kernels.median_bandwidth(s, m, symmetric=True))(sq)
        want = max(np.median(np.asarray(sq)) / np.log(m + 1), 1e-3)
        np.testing.assert_allclose(full, want, rtol=1e-6)
        np.testing.assert_allclose(sym, want, rtol=1e-6)


def test_agent_subset_matches_full_direction(rng):
    y = rng.normal(size=(6, 3, 2)).astype(np.float32)
    s = rng.normal(size=(6, 3, 2)).astype(np.float32)
    mask = topology_mask("nested", 3)
    full = kernels.masked_svgd_direction(y, s, mask)
    for i in range(3):
        np.testing.assert_allclose(kernels.masked_svgd_direction(y, s, mask, agents=(i,))[:, 0], full[:, i],
                                   rtol=1e-5, atol=1e-6)
