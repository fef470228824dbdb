"""Losses of SVNR: the soft critic (docs/algorithms.md) and the amortized MP-SVGD policy surrogate (docs/algorithms.md).

Small pure functions on one example (``soft_value``, ``critic_target``, ``surrogate_policy_loss``,
``svgd_policy_direction``) that the tests check against hand-computed values, and the batched losses
(``critic_loss``, ``policy_loss``) that the learner differentiates.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from svnr_jax.kernels import masked_svgd_direction, tanh_correction
from svnr_jax.networks import CriticNet, PolicyNet
from svnr_jax.replay import Transition
from svnr_jax.types import Array, PRNGKey

# ----------------------------------------------------------------------------------------- soft value


def uniform_log_density(joint_dim: int) -> float:
    """``log q(a) = -D log 2``: uniform proposal on ``[-1, 1]^D``."""
    return -joint_dim * math.log(2.0)


def soft_value(q_values: Array, log_proposal: Array, alpha: Array) -> Array:
    """Importance-sampled soft value ``V = α log( (1/M_v) Σ_j exp(Q_j/α) / q(a_j) )`` (docs/algorithms.md, SQL eq. 10).

    With the uniform proposal ``log q = -D log 2`` this is
    ``α [logsumexp_j(Q_j/α) - log M_v + D log 2]``.

    Args:
      q_values: ``[M_v]`` target-critic values ``Q̄(s', a_j)``.
      log_proposal: ``[M_v]`` (or scalar) ``log q(a_j)``.
      alpha: ``[]`` temperature.
    Returns:
      ``[]`` soft value.
    """
    m = q_values.shape[-1]
    return alpha * (jax.nn.logsumexp(q_values / alpha - log_proposal, axis=-1) - jnp.log(m))


def critic_target(reward: Array, terminal: Array, next_value: Array, gamma: float | Array) -> Array:
    """``y = r + γ (1 - terminal) V(s')`` (stop-gradient)."""
    return jax.lax.stop_gradient(reward + gamma * (1.0 - terminal) * next_value)


def mixture_log_density(a: Array, centres: Array, *, weight: float, std: float, joint_dim: int) -> Array:
    """Log-density of the mixture proposal [ours]: ``w·U[-1,1]^D + (1-w)·(1/P) Σ_k N(a; c_k, σ² I)``.

    The Gaussian components are not truncated to the box (their samples are clipped), so the density is an
    approximation near the box edges; importance weights stay positive and finite.

    Args:
      a: ``[D]`` point; centres: ``[P, D]`` policy particles; weight: w; std: σ; joint_dim: D.
    Returns:
      ``[]`` log q(a).
    """
    sq = jnp.sum((a[None, :] - centres) ** 2, axis=-1)  # [P]
    log_gauss = -0.5 * sq / std**2 - 0.5 * joint_dim * jnp.log(2 * jnp.pi * std**2)
    log_kde = jax.nn.logsumexp(log_gauss) - jnp.log(centres.shape[0])
    log_uni = uniform_log_density(joint_dim)
    if weight >= 1.0:
        return jnp.asarray(log_uni)
    return jnp.logaddexp(jnp.log(weight) + log_uni, jnp.log1p(-weight) + log_kde)


def sample_proposal(
    key: PRNGKey, num: int, action_mask: Array, *, centres: Array | None = None, weight: float = 1.0,
    std: float = 0.1,
) -> tuple[Array, Array]:
    """Draw ``num`` joint actions from the proposal and their log-densities.

    Args:
      key: PRNG key. num: M_v. action_mask: ``[N, A]`` numpy (static) real entries (padded entries are 0).
      centres: ``[P, N, A]`` policy particles for the mixture (``None`` = uniform proposal).
      weight: uniform weight of the mixture. std: KDE std.
    Returns:
      ``(a [M_v, N, A], log_q [M_v])``.
    """
    n, ad = action_mask.shape
    joint_dim = int(np.sum(action_mask))
    k_uni, k_pick, k_comp, k_eps = jax.random.split(key, 4)
    uni = jax.random.uniform(k_uni, (num, n, ad), minval=-1.0, maxval=1.0) * action_mask
    if centres is None:
        return uni, jnp.full((num,), uniform_log_density(joint_dim))
    p = centres.shape[0]
    comp = jax.random.randint(k_comp, (num,), 0, p)
    gauss = jnp.clip(centres[comp] + std * jax.random.normal(k_eps, (num, n, ad)), -1.0, 1.0) * action_mask
    use_uni = jax.random.uniform(k_pick, (num,)) < weight
    a = jnp.where(use_uni[:, None, None], uni, gauss)
    flat_c = (centres * action_mask).reshape(p, -1)
    log_q = jax.vmap(lambda x: mixture_log_density(x.reshape(-1), flat_c, weight=weight, std=std,
                                                   joint_dim=joint_dim))(a)
    return a, log_q


def critic_loss(
    critic_params,
    target_params,
    policy_params,
    batch: Transition,
    key: PRNGKey,
    alpha: Array,
    *,
    policy: PolicyNet,
    critic: CriticNet,
    action_mask: Array,
    gamma: float,
    reward_scale: float,
    value_samples: int,
    proposal: str = "uniform",
    mixture_weight: float = 0.5,
    mixture_std: float = 0.1,
) -> tuple[Array, dict]:
    """Soft Bellman loss ``½ Σ_k (y - Q_k(s, u))²`` averaged over the batch (docs/algorithms.md).

    ``y = scale·r + γ (1 - terminal) V(s')`` with ``V`` the importance-sampled soft value of the target
    critic (minimum over twin critics) at ``M_v`` proposal actions.

    Args:
      batch: :class:`Transition` with leading ``[B]``. key: PRNG key. alpha: ``[]`` temperature.
    Returns:
      ``(loss [], aux dict)``.
    """
    b = batch.reward.shape[0]
    keys = jax.random.split(key, b)

    def value_one(k, next_obs, next_state):
        if proposal == "mixture":
            k_pol, k_prop = jax.random.split(k)
            noise = jax.random.normal(k_pol, (value_samples, *_noise_shape(action_mask, policy)))
            centres = jax.vmap(policy.apply, (None, None, 0))(policy_params, next_obs, noise)
            centres = jax.lax.stop_gradient(centres)
            a, log_q = sample_proposal(k_prop, value_samples, action_mask, centres=centres,
                                       weight=mixture_weight, std=mixture_std)
        else:
            a, log_q = sample_proposal(k, value_samples, action_mask)
        q = jax.vmap(critic.apply, (None, None, 0))(target_params, next_state, a).min(-1)  # [M_v]
        return soft_value(q, log_q, alpha)

    v_next = jax.vmap(value_one)(keys, batch.next_obs, batch.next_state)  # [B]
    y = critic_target(reward_scale * batch.reward, batch.terminal, v_next, gamma)
    q = jax.vmap(critic.apply, (None, 0, 0))(critic_params, batch.state, batch.action)  # [B, n_critics]
    loss = 0.5 * jnp.mean(jnp.sum((y[:, None] - q) ** 2, axis=-1))
    return loss, {"critic_loss": loss, "q_mean": jnp.mean(q), "target_mean": jnp.mean(y),
                  "soft_value_mean": jnp.mean(v_next)}


def _noise_shape(action_mask: Array, policy: PolicyNet) -> tuple[int, int]:
    return (action_mask.shape[0], policy.noise_dim)


# ------------------------------------------------------------------------------------ policy update


def svgd_policy_direction(
    fixed: Array, scores: Array, updated: Array, mask: Array, *, bandwidth: float | None = None
) -> Array:
    """Δ_i(u) for every updated particle (docs/algorithms.md): per-agent MP-SVGD directions over the fixed half.

    A thin name for :func:`svnr_jax.kernels.masked_svgd_direction` with the fixed half as the particle
    set and the updated half as queries (no second SVGD implementation).

    Args:
      fixed: ``[M_F, N, A]``; scores: ``[M_F, N, A]`` ``∇_u log π*(u)`` at the fixed half;
      updated: ``[M_U, N, A]``; mask: ``[N, N]``; bandwidth: h or ``None`` (median heuristic).
    Returns:
      ``[M_U, N, A]`` (stop-gradient).
    """
    d = masked_svgd_direction(fixed, scores, mask, bandwidth=bandwidth, queries=updated)
    return jax.lax.stop_gradient(d)


def surrogate_policy_loss(direction: Array, updated: Array) -> Array:
    """``-(1/M_U) Σ_m Σ_i ⟨stop_grad(Δ_i(u^m)), u^m_i⟩``: its gradient w.r.t. agent i's parameters is
    minus the SVGD direction pulled back through agent i's generator (SQL's amortized SVGD).

    Args:
      direction: ``[M_U, N, A]`` Δ. updated: ``[M_U, N, A]`` particles produced by the generators.
    Returns:
      ``[]``.
    """
    return -jnp.sum(jax.lax.stop_gradient(direction) * updated) / updated.shape[0]


def policy_loss(
    policy_params,
    critic_params,
    obs: Array,
    state: Array,
    key: PRNGKey,
    alpha: Array,
    *,
    policy: PolicyNet,
    critic: CriticNet,
    mask: Array,
    action_mask: Array,
    num_particles: int,
    bandwidth: float | None = None,
) -> tuple[Array, dict]:
    """Amortized MP-SVGD surrogate loss averaged over a batch of states (docs/algorithms.md).

    Per state: M noise tuples → M joint particles ``u = π_ψ(o, ξ)``; fixed half F (stop-gradient),
    updated half U. Score ``∇_u [min_k Q_k(s, u)/α + Σ log(1 - u² + 1e-6)]`` at F (tanh correction);
    ``Δ = masked_svgd_direction(F, scores, mask, queries=U)``; loss ``-⟨Δ, U⟩``.

    Args:
      obs: ``[B, N, O]``; state: ``[B, S]``; key; alpha ``[]``; mask ``[N, N]``; action_mask ``[N, A]``.
    Returns:
      ``(loss [], aux dict)``.
    """
    b, n = obs.shape[0], obs.shape[1]
    half = num_particles // 2
    keys = jax.random.split(key, b)

    def one(k, o, s):
        noise = jax.random.normal(k, (num_particles, n, policy.noise_dim))
        u = jax.vmap(policy.apply, (None, None, 0))(policy_params, o, noise)  # [M, N, A]
        fixed, updated = jax.lax.stop_gradient(u[:half]), u[half:]

        def log_p(x):
            return critic.apply(critic_params, s, x).min() / alpha + tanh_correction(x * action_mask)

        scores = jax.vmap(jax.grad(log_p))(fixed) * action_mask
        delta = svgd_policy_direction(fixed, scores, jax.lax.stop_gradient(updated), mask, bandwidth=bandwidth)
        delta = delta * action_mask
        return surrogate_policy_loss(delta, updated), jnp.mean(jnp.linalg.norm(delta, axis=-1))

    losses, norms = jax.vmap(one)(keys, obs, state)
    loss = jnp.mean(losses)
    return loss, {"policy_loss": loss, "svgd_norm": jnp.mean(norms)}


__all__ = ["Transition", "critic_loss", "critic_target", "mixture_log_density", "policy_loss", "sample_proposal",
           "soft_value", "surrogate_policy_loss", "svgd_policy_direction", "uniform_log_density"]
