"""A straightforward NumPy reference of ``svnr_jax.negotiate`` (Jacobi order) with an MLP critic.

Used by ``benchmarks/negotiate.py`` as the baseline of its speed ratio, and by the tests as an oracle.
It implements the same algorithm as ``svnr_jax.negotiate`` (docs/algorithms.md), written directly with
broadcasting and a hand-written MLP forward/backward instead of ``jax.grad``:

* score ``∇_u Q(s, u) / α`` of a tanh MLP critic ``Q(s, u) = W3ᵀ tanh(W2ᵀ tanh(W1ᵀ [s, u] + b1) + b2) + b3``;
* per-agent masked SVGD directions, agent i's kernel on the coordinates of its negotiation set C_i,
  bandwidth ``h_i = max(median(sq dists) / log(M + 1), 1e-3)`` (median over all M² pairs);
* K Jacobi rounds ``u_i ← u_i + ε φ_i(u)``; rounds after agreement (``max ||φ|| < tol``) are skipped.

Everything is vectorised over a leading batch of states ``B``; shapes are ``[B, M, N, d]``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

BANDWIDTH_FLOOR = 1e-3


class MLPParams(NamedTuple):
    """Weights of the critic ``Q(s, u)``: three dense layers, tanh between them."""

    w1: np.ndarray  # [S + N*d, H]
    b1: np.ndarray  # [H]
    w2: np.ndarray  # [H, H]
    b2: np.ndarray  # [H]
    w3: np.ndarray  # [H, 1]
    b3: np.ndarray  # [1]


def init_mlp(rng: np.random.Generator, in_dim: int, hidden: int, dtype=np.float32) -> MLPParams:
    """Random critic weights (LeCun-normal scale, small random biases)."""

    def dense(fan_in, fan_out):
        w = rng.normal(size=(fan_in, fan_out)) / np.sqrt(fan_in)
        b = 0.1 * rng.normal(size=(fan_out,))
        return w.astype(dtype), b.astype(dtype)

    w1, b1 = dense(in_dim, hidden)
    w2, b2 = dense(hidden, hidden)
    w3, b3 = dense(hidden, 1)
    return MLPParams(w1, b1, w2, b2, w3, b3)


def critic_scores(params: MLPParams, states: np.ndarray, u: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """``∇_u Q(s, u) / α`` by a hand-written forward/backward pass.

    Args:
      params: critic weights.
      states: ``[B, S]``.
      u: ``[B, M, N, d]`` joint-action particles.
    Returns:
      ``[B, M, N, d]`` scores.
    """
    b, m = u.shape[:2]
    s = np.broadcast_to(states[:, None, :], (b, m, states.shape[-1]))
    x = np.concatenate([s, u.reshape(b, m, -1)], axis=-1)  # [B, M, S + N*d]
    h1 = np.tanh(x @ params.w1 + params.b1)
    h2 = np.tanh(h1 @ params.w2 + params.b2)
    # Backward from dQ = 1: dQ/dh2 = w3[:, 0].
    dz2 = params.w3[:, 0] * (1.0 - h2 * h2)
    dz1 = (dz2 @ params.w2.T) * (1.0 - h1 * h1)
    dx = dz1 @ params.w1.T  # [B, M, S + N*d]
    return (dx[..., states.shape[-1] :] / alpha).reshape(u.shape)


def critic_values(params: MLPParams, states: np.ndarray, u: np.ndarray) -> np.ndarray:
    """``Q(s, u)`` ``[B, M]`` (forward pass only; used to check the backward pass)."""
    b, m = u.shape[:2]
    s = np.broadcast_to(states[:, None, :], (b, m, states.shape[-1]))
    x = np.concatenate([s, u.reshape(b, m, -1)], axis=-1)
    h1 = np.tanh(x @ params.w1 + params.b1)
    h2 = np.tanh(h1 @ params.w2 + params.b2)
    return (h2 @ params.w3 + params.b3)[..., 0]


def masked_directions(u: np.ndarray, scores: np.ndarray, mask: np.ndarray, bandwidth=None) -> np.ndarray:
    """Per-agent SVGD directions φ_i at every particle (docs/algorithms.md), batched over states.

    Args:
      u: ``[B, M, N, d]`` particles; scores: ``[B, M, N, d]``; mask: ``[N, N]`` bool, row i = C_i.
      bandwidth: ``None`` (median heuristic per state and agent) or a float.
    Returns:
      ``[B, M, N, d]`` directions.
    """
    m = u.shape[1]
    diff = u[:, None, :, :, :] - u[:, :, None, :, :]  # [B, M(y^m), L(u), N, d] = u_l - y_m
    per_agent_sq = np.sum(diff * diff, axis=-1)  # [B, M, L, N]
    sq = per_agent_sq @ mask.T.astype(u.dtype)  # [B, M, L, N(agent i)] = Σ_{j ∈ C_i} ||u_j - y_j||²
    if bandwidth is None:
        h = np.median(sq, axis=(1, 2)) / float(np.log(m + 1.0))  # [B, N]
        h = np.maximum(h, BANDWIDTH_FLOOR)
    else:
        h = np.full((u.shape[0], mask.shape[0]), bandwidth, dtype=u.dtype)
    k = np.exp(-sq / h[:, None, None, :])  # [B, M, L, N]
    drive = np.einsum("bmli,bmid->blid", k, scores)
    repulse = 2.0 / h[:, None, :, None] * np.einsum("bmli,bmlid->blid", k, diff)
    return (drive + repulse) / m


class NumpyNegotiationResult(NamedTuple):
    particles: np.ndarray  # [B, M, N, d]
    mean_phi_norm: np.ndarray  # [B, K]
    max_phi_norm: np.ndarray  # [B, K]
    rounds_used: np.ndarray  # [B]
    converged: np.ndarray  # [B]


def negotiate_numpy(
    params: MLPParams,
    states: np.ndarray,
    particles: np.ndarray,
    mask: np.ndarray,
    *,
    num_rounds: int,
    step_size: float,
    alpha: float = 1.0,
    bandwidth=None,
    tol: float = 1e-3,
) -> NumpyNegotiationResult:
    """K Jacobi negotiation rounds for a batch of states, log-density ``Q(s, u) / α``.

    Same semantics as ``jax.vmap`` of ``svnr_jax.negotiate(..., order="jacobi")``: a state stops moving
    once its ``max ||φ||`` (at the start of a round) drops below ``tol``, and that is ``converged``.

    Args:
      params: critic weights; states: ``[B, S]``; particles: ``[B, M, N, d]``; mask: ``[N, N]`` bool.
    Returns:
      :class:`NumpyNegotiationResult`.
    """
    u = np.array(particles, copy=True)
    b = u.shape[0]
    done = np.zeros(b, dtype=bool)
    used = np.zeros(b, dtype=np.int32)
    means, maxes = [], []
    for _ in range(num_rounds):
        phi = masked_directions(u, critic_scores(params, states, u, alpha), mask, bandwidth)
        norms = np.linalg.norm(phi, axis=-1)  # [B, M, N]
        max_norm = norms.max(axis=(1, 2))
        done = done | (max_norm < tol)
        u = np.where(done[:, None, None, None], u, u + step_size * phi)
        used += (~done).astype(np.int32)
        means.append(norms.mean(axis=(1, 2)))
        maxes.append(max_norm)
    return NumpyNegotiationResult(u, np.stack(means, 1), np.stack(maxes, 1), used, done)
