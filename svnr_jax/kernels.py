"""The SVGD kernel machinery (docs/algorithms.md): RBF kernel, median-heuristic bandwidth, SVGD directions.

Everything here is a pure function on one particle set; batch over states with ``jax.vmap``.

References: Liu & Wang (2016), "Stein Variational Gradient Descent"; Haarnoja et al. (2017) soft
Q-learning (amortized SVGD); Zhuo et al. (2018) message-passing SVGD.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from svnr_jax.types import Array

BANDWIDTH_FLOOR = 1e-3
TANH_EPS = 1e-6


def pairwise_sq_dists(x: Array, y: Array) -> Array:
    """Squared Euclidean distances ``[M, L]`` between rows of ``x [M, D]`` and ``y [L, D]``."""
    diff = x[:, None, :] - y[None, :, :]
    return jnp.sum(diff * diff, axis=-1)


def _sorted_nonneg(x: Array) -> Array:
    """Sort non-negative floats along the last axis via their int32 bit patterns (same order as the
    floats, bit-identical result; XLA's integer sort is several times faster on CPU than its NaN-aware
    float sort)."""
    bits = jax.lax.bitcast_convert_type(jnp.maximum(x, 0.0).astype(jnp.float32), jnp.int32)
    return jax.lax.bitcast_convert_type(jnp.sort(bits, axis=-1), jnp.float32).astype(x.dtype)


def _median_nonneg(flat: Array) -> Array:
    """Median over the last axis of non-negative values (mean of the two middle values when even)."""
    n = flat.shape[-1]
    srt = _sorted_nonneg(flat)
    return 0.5 * (srt[..., (n - 1) // 2] + srt[..., n // 2])


def median_bandwidth(sq_dists: Array, num_particles: int, *, symmetric: bool = False) -> Array:
    """Median heuristic of docs/algorithms.md: ``h = median(sq_dists) / log(M + 1)``, floored at 1e-3.

    The median runs over every entry of ``sq_dists`` (all M·L pairs, i = j included, as in soft
    Q-learning's kernel). The result is wrapped in ``stop_gradient``: the bandwidth is a constant of
    each SVGD step, not something to differentiate through.

    Args:
      sq_dists: ``[..., M, L]`` pairwise squared distances; the median is over the last two axes.
      num_particles: M in the ``log(M + 1)`` denominator.
      symmetric: promise that ``sq_dists`` is a symmetric ``[M, M]`` matrix with a zero diagonal
        (particles against themselves). The same median is then read off the sorted upper triangle
        alone (M(M-1)/2 entries instead of M²): the full sorted list is M zeros followed by every
        upper-triangle value twice.
    Returns:
      ``[...]`` bandwidths.
    """
    sq_dists = jax.lax.stop_gradient(sq_dists)
    if symmetric:
        m = sq_dists.shape[-1]
        rows, cols = np.triu_indices(m, k=1)
        upper = _sorted_nonneg(sq_dists[..., rows, cols])  # [..., M(M-1)/2]
        total = m * m

        def order_stat(p: int) -> Array:  # p-th smallest (0-based) of all M² entries
            return jnp.zeros(upper.shape[:-1], upper.dtype) if p < m else upper[..., (p - m) // 2]

        med = 0.5 * (order_stat((total - 1) // 2) + order_stat(total // 2))
    else:
        med = _median_nonneg(sq_dists.reshape(*sq_dists.shape[:-2], -1))
    h = med / jnp.log(num_particles + 1.0)
    return jax.lax.stop_gradient(jnp.maximum(h, BANDWIDTH_FLOOR))


def rbf_kernel(x: Array, y: Array, *, bandwidth: float | Array | None = None) -> tuple[Array, Array]:
    """RBF kernel matrix ``K[j, l] = exp(-||x_j - y_l||² / h)``.

    Args:
      x: ``[M, D]``, y: ``[L, D]``.
      bandwidth: h; ``None`` selects the median heuristic over the ``[M, L]`` distances.
    Returns:
      ``(K [M, L], h [])``.
    """
    sq = pairwise_sq_dists(x, y)
    h = median_bandwidth(sq, x.shape[0]) if bandwidth is None else jnp.asarray(bandwidth, sq.dtype)
    return jnp.exp(-sq / h), h


def svgd_direction(
    particles: Array,
    scores: Array,
    *,
    bandwidth: float | Array | None = None,
    queries: Array | None = None,
) -> Array:
    """SVGD direction (docs/algorithms.md) at every query point.

    ``φ(x) = (1/M) Σ_j [ k(x_j, x) s_j + ∇_{x_j} k(x_j, x) ]`` with ``k(x, y) = exp(-||x - y||²/h)``,
    so ``∇_{x_j} k(x_j, x) = 2 (x - x_j) / h · k(x_j, x)``.

    Args:
      particles: ``[M, D]`` the particle set x_j that defines the empirical measure.
      scores: ``[M, D]`` ``∇ log p(x_j)``.
      bandwidth: h (float); ``None`` = median heuristic on the particle–query distances.
      queries: ``[L, D]`` points at which to evaluate φ (default: the particles themselves). The
        amortized update of docs/algorithms.md evaluates φ at the "updated" half using the "fixed" half.
    Returns:
      ``[L, D]`` directions.
    """
    if bandwidth is None and queries is None:
        sq = pairwise_sq_dists(particles, particles)
        bandwidth = median_bandwidth(sq, particles.shape[0], symmetric=True)
    queries = particles if queries is None else queries
    k, h = rbf_kernel(particles, queries, bandwidth=bandwidth)  # [M, L]
    m = particles.shape[0]
    drive = k.T @ scores  # [L, D]  Σ_j k(x_j, x_l) s_j
    repulse = 2.0 / h * (jnp.sum(k, axis=0)[:, None] * queries - k.T @ particles)
    return (drive + repulse) / m


def masked_svgd_direction(
    particles: Array,
    scores: Array,
    mask: Array,
    *,
    bandwidth: float | Array | None = None,
    queries: Array | None = None,
    agents: tuple[int, ...] | None = None,
) -> Array:
    """Per-agent message-passing SVGD directions over negotiation sets (docs/algorithms.md).

    Agent i's kernel sees only the coordinates of its negotiation set C_i (row i of ``mask``):
    ``k_i(y, u) = exp(-Σ_{j∈C_i} ||y_j - u_j||² / h_i)``, with its own median-heuristic bandwidth h_i,
    and ``φ_i(u) = (1/M) Σ_m [ k_i(y^m, u) s^m_i + ∇_{y^m_i} k_i(y^m, u) ]`` where ``s^m_i`` is agent i's
    block of the joint score at particle m. Since ``∇_{y^m_i} k_i(y^m, u) = 2 (u_i - y^m_i)/h_i · k_i``,
    both terms are one contraction of the kernel: ``φ_i(u) = (1/M) [Σ_m k_i (s^m_i - 2 y^m_i/h_i)
    + 2 u_i/h_i Σ_m k_i]``.

    Args:
      particles: ``[M, N, d]`` joint-action particles y^m.
      scores: ``[M, N, d]`` joint scores ``∇_y log π*(y^m)``.
      mask: ``[N, N]`` bool/0-1, row i = C_i (must include i). Must be concrete (not traced).
      bandwidth: a float for every agent, ``[N]`` per agent, or ``None`` (median heuristic per agent).
      queries: ``[L, N, d]`` points u at which to evaluate (default: the particles).
      agents: compute only these agents' directions (static tuple; default all N).
    Returns:
      ``[L, N, d]`` directions φ_i(u) for every agent (``[L, len(agents), d]`` with ``agents``).
    """
    symmetric = queries is None
    queries = particles if queries is None else queries
    m, n = particles.shape[0], particles.shape[1]
    agents = tuple(range(n)) if agents is None else tuple(agents)
    rows = jnp.asarray(mask, particles.dtype)[jnp.asarray(agents)]  # [R, N]
    # ||u_j - y_j||² = ||u_j||² + ||y_j||² - 2 u_j·y_j per agent j, without materialising [M, L, N, d].
    cross = jnp.einsum("lnd,mnd->mln", queries, particles)
    per_agent_sq = jnp.sum(queries**2, -1)[None] + jnp.sum(particles**2, -1)[:, None] - 2.0 * cross  # [M, L, N]
    per_agent_sq = jnp.maximum(per_agent_sq, 0.0)
    if symmetric:  # exact zeros on the diagonal (round-off would otherwise leave tiny positive values)
        per_agent_sq = per_agent_sq * (1.0 - jnp.eye(m, dtype=per_agent_sq.dtype))[:, :, None]
    sq = jnp.einsum("mlj,rj->mlr", per_agent_sq, rows)  # [M, L, R]  agent r's kernel distances
    if bandwidth is None:
        h = median_bandwidth(jnp.moveaxis(sq, -1, 0), m, symmetric=symmetric)  # [R]
    else:
        h = jnp.broadcast_to(jnp.asarray(bandwidth, sq.dtype), (n,))[jnp.asarray(agents)]
    k = jnp.exp(-sq / h)  # [M, L, R]
    idx = jnp.asarray(agents)
    y_r, s_r, u_r = particles[:, idx], scores[:, idx], queries[:, idx]  # [M|L, R, d]
    coef = (2.0 / h)[None, :, None]
    out = jnp.einsum("mlr,mrd->lrd", k, s_r - coef * y_r) + coef * jnp.sum(k, axis=0)[:, :, None] * u_r
    return out / m


def tanh_correction(u: Array) -> Array:
    """Log-Jacobian term ``Σ log(1 - u² + 1e-6)`` for densities over tanh-squashed actions (SQL)."""
    return jnp.sum(jnp.log(jnp.clip(1.0 - u * u, 0.0, None) + TANH_EPS))
