"""The SVGD kernel machinery (SPEC §2–3): RBF kernel, median-heuristic bandwidth, SVGD directions.

Everything here is a pure function on one particle set; batch over states with ``jax.vmap``.

References: Liu & Wang (2016), "Stein Variational Gradient Descent"; Haarnoja et al. (2017) soft
Q-learning (amortized SVGD); Zhuo et al. (2018) message-passing SVGD.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from svnr_jax.types import Array

BANDWIDTH_FLOOR = 1e-3
TANH_EPS = 1e-6


def pairwise_sq_dists(x: Array, y: Array) -> Array:
    """Squared Euclidean distances ``[M, L]`` between rows of ``x [M, D]`` and ``y [L, D]``."""
    diff = x[:, None, :] - y[None, :, :]
    return jnp.sum(diff * diff, axis=-1)


def median_bandwidth(sq_dists: Array, num_particles: int) -> Array:
    """Median heuristic of SPEC §2: ``h = median(sq_dists) / log(M + 1)``, floored at 1e-3.

    The median runs over every entry of ``sq_dists`` (all M·L pairs, i = j included, as in soft
    Q-learning's kernel). The result is wrapped in ``stop_gradient``: the bandwidth is a constant of
    each SVGD step, not something to differentiate through.

    Args:
      sq_dists: ``[..., M, L]`` pairwise squared distances; the median is over the last two axes.
      num_particles: M in the ``log(M + 1)`` denominator.
    Returns:
      ``[...]`` bandwidths.
    """
    flat = sq_dists.reshape(*sq_dists.shape[:-2], -1)
    h = jnp.median(flat, axis=-1) / jnp.log(num_particles + 1.0)
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
    """SVGD direction (SPEC §2) at every query point.

    ``φ(x) = (1/M) Σ_j [ k(x_j, x) s_j + ∇_{x_j} k(x_j, x) ]`` with ``k(x, y) = exp(-||x - y||²/h)``,
    so ``∇_{x_j} k(x_j, x) = 2 (x - x_j) / h · k(x_j, x)``.

    Args:
      particles: ``[M, D]`` the particle set x_j that defines the empirical measure.
      scores: ``[M, D]`` ``∇ log p(x_j)``.
      bandwidth: h (float); ``None`` = median heuristic on the particle–query distances.
      queries: ``[L, D]`` points at which to evaluate φ (default: the particles themselves). The
        amortized update of SPEC §4 evaluates φ at the "updated" half using the "fixed" half.
    Returns:
      ``[L, D]`` directions.
    """
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
) -> Array:
    """Per-agent message-passing SVGD directions over negotiation sets (SPEC §3).

    Agent i's kernel sees only the coordinates of its negotiation set C_i (row i of ``mask``):
    ``k_i(y, u) = exp(-Σ_{j∈C_i} ||y_j - u_j||² / h_i)``, with its own median-heuristic bandwidth h_i,
    and ``φ_i(u) = (1/M) Σ_m [ k_i(y^m, u) s^m_i + ∇_{y^m_i} k_i(y^m, u) ]`` where ``s^m_i`` is agent i's
    block of the joint score at particle m.

    Args:
      particles: ``[M, N, d]`` joint-action particles y^m.
      scores: ``[M, N, d]`` joint scores ``∇_y log π*(y^m)``.
      mask: ``[N, N]`` bool/0-1, row i = C_i (must include i).
      bandwidth: a float for every agent, ``[N]`` per agent, or ``None`` (median heuristic per agent).
      queries: ``[L, N, d]`` points u at which to evaluate (default: the particles).
    Returns:
      ``[L, N, d]`` directions φ_i(u) for every agent.
    """
    queries = particles if queries is None else queries
    m = particles.shape[0]
    diff = queries[None, :, :, :] - particles[:, None, :, :]  # [M, L, N, d]  u - y^m
    per_agent_sq = jnp.sum(diff * diff, axis=-1)  # [M, L, N]
    sq = jnp.einsum("mlj,ij->mli", per_agent_sq, mask.astype(per_agent_sq.dtype))  # [M, L, N(agent i)]
    if bandwidth is None:
        h = median_bandwidth(jnp.moveaxis(sq, -1, 0), m)  # [N]
    else:
        h = jnp.broadcast_to(jnp.asarray(bandwidth, sq.dtype), (mask.shape[0],))
    k = jnp.exp(-sq / h)  # [M, L, N]
    drive = jnp.einsum("mli,mid->lid", k, scores)
    repulse = 2.0 / h[None, :, None] * jnp.einsum("mli,mlid->lid", k, diff)
    return (drive + repulse) / m


def tanh_correction(u: Array) -> Array:
    """Log-Jacobian term ``Σ log(1 - u² + 1e-6)`` for densities over tanh-squashed actions (SQL)."""
    return jnp.sum(jnp.log(jnp.clip(1.0 - u * u, 0.0, None) + TANH_EPS))
