"""The fast kernel paths (counting median, agent-major layout, shared kernels of equal negotiation sets)
against a plain NumPy float64 reference on random inputs, and the median's exactness against ``np.median``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from svnr_jax import kernels
from svnr_jax.negotiation import topology_mask


def _reference_median_bandwidth(sq: np.ndarray, m: int) -> float:
    return max(float(np.median(sq.reshape(-1))) / np.log(m + 1.0), kernels.BANDWIDTH_FLOOR)


def _reference_masked(y, s, mask, u=None, bandwidth=None):
    """φ_i(u) = 1/M Σ_m [k_i(y^m, u) s^m_i + 2 (u_i - y^m_i)/h_i k_i(y^m, u)], vectorised NumPy in float64."""
    y, s = np.asarray(y, np.float64), np.asarray(s, np.float64)
    u = y if u is None else np.asarray(u, np.float64)
    m, n, _ = y.shape
    h_given = None if bandwidth is None else np.broadcast_to(np.asarray(bandwidth, np.float64), (n,))
    out = np.zeros_like(u)
    for i in range(n):
        cols = np.flatnonzero(mask[i])
        diff = u[None, :, cols, :] - y[:, None, cols, :]  # [M, L, |C_i|, d]
        sq = np.sum(diff**2, axis=(2, 3))  # [M, L]
        h = _reference_median_bandwidth(sq, m) if h_given is None else h_given[i]
        k = np.exp(-sq / h)
        out[:, i] = (k.T @ s[:, i] + 2.0 / h * (k.sum(0)[:, None] * u[:, i] - k.T @ y[:, i])) / m
    return out


def _mask(rng, topology, n):
    if topology == "random":
        mask = rng.random((n, n)) < 0.5
        np.fill_diagonal(mask, True)
        return mask
    return topology_mask(topology, n)


@pytest.mark.parametrize("topology", ["nested", "full", "independent", "ring", "random"])
@pytest.mark.parametrize(("m", "n", "d"), [(16, 3, 1), (33, 4, 3), (64, 6, 3), (7, 2, 10)])
def test_masked_direction_matches_numpy_float64(topology, m, n, d):
    rng = np.random.default_rng(m * 100 + n * 10 + d)
    mask = _mask(rng, topology, n)
    y = rng.normal(size=(m, n, d)).astype(np.float32)
    s = rng.normal(size=(m, n, d)).astype(np.float32)
    got = jax.jit(lambda y, s: kernels.masked_svgd_direction(y, s, mask))(y, s)
    np.testing.assert_allclose(got, _reference_masked(y, s, mask), rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("topology", ["nested", "full", "random"])
@pytest.mark.parametrize("bandwidth", [None, 0.8, "per_agent"])
def test_masked_direction_with_queries_matches_numpy_float64(topology, bandwidth):
    """The amortized update's call: fixed half as particles, updated half as queries (M_F·M_U median)."""
    rng = np.random.default_rng(7)
    m, num_queries, n, d = 12, 9, 4, 2
    mask = _mask(rng, topology, n)
    bw = rng.uniform(0.5, 2.0, size=n).astype(np.float32) if bandwidth == "per_agent" else bandwidth
    y = rng.normal(size=(m, n, d)).astype(np.float32)
    s = rng.normal(size=(m, n, d)).astype(np.float32)
    u = rng.normal(size=(num_queries, n, d)).astype(np.float32)
    got = jax.jit(lambda y, s, u: kernels.masked_svgd_direction(y, s, mask, bandwidth=bw, queries=u))(y, s, u)
    np.testing.assert_allclose(got, _reference_masked(y, s, mask, u, bw), rtol=2e-4, atol=2e-5)


def test_traced_mask_agent_subsets_and_vmap_agree():
    rng = np.random.default_rng(3)
    m, n, d, b = 20, 5, 2, 3
    mask = topology_mask("ring", n)
    y = rng.normal(size=(b, m, n, d)).astype(np.float32)
    s = rng.normal(size=(b, m, n, d)).astype(np.float32)
    want = np.stack([_reference_masked(y[i], s[i], mask) for i in range(b)])
    static = jax.jit(jax.vmap(lambda y, s: kernels.masked_svgd_direction(y, s, mask)))(y, s)
    traced = jax.jit(jax.vmap(lambda y, s, mk: kernels.masked_svgd_direction(y, s, mk), (0, 0, None)))(y, s, mask)
    np.testing.assert_allclose(static, want, rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(traced, want, rtol=2e-4, atol=2e-5)
    for agents in [(0,), (4,), (1, 3), (2, 3, 4)]:
        part = kernels.masked_svgd_direction(y[0], s[0], mask, agents=agents)
        np.testing.assert_allclose(part, want[0][:, list(agents)], rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("n", [1, 2, 3, 31, 32, 33, 64, 120, 495, 496, 2016, 4096])
def test_order_statistics_are_exact(n):
    """The counting selection returns exactly the values a sort gives, ties and zeros included."""
    rng = np.random.default_rng(n)
    values = np.stack([
        (rng.random(n) ** 3 * 50).astype(np.float32),  # spread over many binades
        rng.integers(0, 4, n).astype(np.float32),  # heavy ties, zeros
        np.zeros(n, np.float32),
        np.exp(rng.normal(0, 8, n)).astype(np.float32),  # tiny and huge values
    ])
    for k in sorted({0, (n - 1) // 2, max(n - 2, 0)}):
        first, second = jax.jit(lambda x, k=k: kernels._two_order_stats_nonneg(x, k))(values)
        srt = np.sort(values, axis=-1)
        np.testing.assert_array_equal(first, srt[:, k])
        if k + 1 < n:
            np.testing.assert_array_equal(second, srt[:, k + 1])
    med = jax.jit(kernels._median_nonneg)(values)
    np.testing.assert_array_equal(med, np.median(values, axis=-1).astype(np.float32))


@pytest.mark.parametrize("m", [1, 2, 3, 4, 5, 16, 17, 64])
def test_median_bandwidth_equals_numpy_median(m):
    """Both paths (all M·L entries; the symmetric upper triangle) give np.median's value, to float32 rounding."""
    rng = np.random.default_rng(m)
    x = rng.normal(size=(3, m, 4)).astype(np.float32)
    x[1, : m // 2] = x[1, 0]  # duplicate particles: zero distances off the diagonal, ties
    sq = np.asarray(jax.vmap(lambda a: kernels.pairwise_sq_dists(a, a))(x))
    want = np.array([_reference_median_bandwidth(q, m) for q in sq], np.float32)
    full = jax.jit(lambda q: kernels.median_bandwidth(q, m))(sq)
    sym = jax.jit(lambda q: kernels.median_bandwidth(q, m, symmetric=True))(sq)
    np.testing.assert_allclose(full, want, rtol=1e-6)
    np.testing.assert_allclose(sym, want, rtol=1e-6)
    rect = sq[:, :, : max(m - 1, 1)]  # non-square: the general path only
    want_rect = np.array([_reference_median_bandwidth(q, m) for q in rect], np.float32)
    np.testing.assert_allclose(jax.jit(lambda q: kernels.median_bandwidth(q, m))(rect), want_rect, rtol=1e-6)


def test_median_bandwidth_has_no_gradient_and_jits_under_grad():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(40, 3)), jnp.float32)
    g = jax.jit(jax.grad(lambda z: kernels.median_bandwidth(kernels.pairwise_sq_dists(z, z), 40, symmetric=True)))(x)
    assert np.all(np.asarray(g) == 0.0)
