"""The SVNR learner (SPEC §4–5): init, one gradient update, temperature schedule, execution modes.

``SVNR(spec, config, total_iterations)`` is static configuration (closed over by the training loop);
every method is a pure function of explicit pytree state and keys.

Execution modes (SPEC §4):

* ``"shared_seed"`` (a, the default stochastic execution): the noise of step t is
  ``ξ = N(0, I)`` drawn from ``fold_in(shared_key, t)``; every agent regenerates the same ξ from the
  shared key and reads only ξ_{C_i} (:meth:`SVNR.agent_action` is what one agent computes alone).
* ``"deterministic"`` (b): ξ = 0.
* ``"negotiate"`` (c): M particles from the network (the first one from the shared-seed noise) refined by
  :func:`svnr_jax.negotiate` for K rounds on ``Q(s, u)/α`` (with the tanh correction); particle 0 is
  executed. It needs communication and the critic: it measures the amortization gap.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from svnr_jax.config import EXEC_MODES, SVNRConfig
from svnr_jax.envs.base import EnvSpec
from svnr_jax.losses import Transition, critic_loss, policy_loss
from svnr_jax.negotiation import negotiate, topology_mask
from svnr_jax.networks import make_critic, make_policy
from svnr_jax.types import Array, PRNGKey

ACTION_CLIP = 1.0 - 1e-4


@struct.dataclass
class LearnerState:
    """Parameters and optimiser states of SVNR (a pytree).

    Attributes:
      policy_params: generators, leading ``[N]`` agent axis.
      critic_params: critics, leading ``[n_critics]`` axis.
      target_params: Polyak-averaged copy of ``critic_params``.
      policy_opt, critic_opt: optax states.
      updates: ``[]`` int32 gradient updates done.
    """

    policy_params: dict
    critic_params: dict
    target_params: dict
    policy_opt: optax.OptState
    critic_opt: optax.OptState
    updates: Array


def temperature(config: SVNRConfig, iteration: Array, total_iterations: int) -> Array:
    """α at ``iteration`` (SPEC §5): constant, linear or exponential from ``alpha_init`` to ``alpha_min``.

    The schedule reaches ``alpha_min`` after ``alpha_anneal_fraction · total_iterations`` iterations and
    stays there.

    Args:
      iteration: ``[]`` (int or float) training iteration.
    Returns:
      ``[]`` float32 temperature.
    """
    a0, a1 = config.alpha_init, config.alpha_min
    if config.alpha_schedule == "constant":
        return jnp.asarray(a0, jnp.float32)
    horizon = max(config.alpha_anneal_fraction * total_iterations, 1.0)
    p = jnp.clip(jnp.asarray(iteration, jnp.float32) / horizon, 0.0, 1.0)
    if config.alpha_schedule == "linear":
        return a0 + (a1 - a0) * p
    return a0 * (a1 / a0) ** p


class SVNR:
    """SVNR for one env spec.

    Args:
      spec: the env's :class:`~svnr_jax.envs.base.EnvSpec` (policies act in ``[-1, 1]``).
      config: :class:`~svnr_jax.config.SVNRConfig`.
      total_iterations: training iterations (for the temperature schedule).
    """

    def __init__(self, spec: EnvSpec, config: SVNRConfig, total_iterations: int = 1):
        self.spec, self.config, self.total_iterations = spec, config, int(total_iterations)
        n, a = spec.num_agents, spec.action_dim
        self.mask_np = topology_mask(config.topology, n)
        self.mask = self.mask_np  # numpy: a compile-time constant
        self.action_mask = np.asarray(spec.action_mask, np.float32)  # numpy: static
        self.policy = make_policy(n, spec.obs_dim, a, self.mask_np, hidden=config.policy_hidden,
                                  noise_dim=config.noise_dim, first_scale=config.policy_init_scale,
                                  out_scale=config.output_init_scale, noise_skip=config.noise_skip,
                                  action_mask=spec.action_mask)
        self.critic = make_critic(spec.state_size, n, a, hidden=config.critic_hidden, twin=config.twin_critic)
        clip = [optax.clip_by_global_norm(config.grad_clip)] if config.grad_clip > 0 else []
        self.policy_tx = optax.chain(*clip, optax.adam(config.policy_lr))
        self.critic_tx = optax.chain(*clip, optax.adam(config.critic_lr))
        self.bandwidth = None if config.bandwidth == 0 else config.bandwidth
        # [ours] agent i's policy step is scaled by leader_lr_scale^((N-1-i)/(N-1)): with nested sets the
        # leaders (small C_i) move slower than the followers, who must track their conditionals.
        expo = (n - 1 - np.arange(n)) / max(n - 1, 1)
        self.agent_lr = np.asarray(config.leader_lr_scale ** expo, np.float32)

    # ------------------------------------------------------------------------------------ learning

    def init(self, key: PRNGKey) -> LearnerState:
        """Fresh parameters and optimiser states."""
        k_pol, k_crit = jax.random.split(key)
        pp = self.policy.init(k_pol)
        cp = self.critic.init(k_crit)
        return LearnerState(pp, cp, cp, self.policy_tx.init(pp), self.critic_tx.init(cp),
                            jnp.zeros((), jnp.int32))

    def alpha(self, iteration: Array) -> Array:
        """Temperature at a training iteration (see :func:`temperature`)."""
        return temperature(self.config, iteration, self.total_iterations)

    def update(self, ls: LearnerState, batch: Transition, key: PRNGKey, alpha: Array) -> tuple[LearnerState, dict]:
        """One gradient update: critic (soft Bellman) + Polyak target, then policy (amortized MP-SVGD).

        Args:
          ls: learner state. batch: :class:`Transition` with leading ``[B]``. key. alpha: ``[]``.
        Returns:
          ``(new state, metrics dict of scalars)``.
        """
        c = self.config
        k_critic, k_policy = jax.random.split(key)
        ls, c_aux = self.update_critic(ls, batch, k_critic, alpha)
        critic_params, critic_opt, target = ls.critic_params, ls.critic_opt, ls.target_params
        (_, p_aux), p_grads = jax.value_and_grad(policy_loss, has_aux=True)(
            ls.policy_params, critic_params, batch.obs, batch.state, k_policy, alpha,
            policy=self.policy, critic=self.critic, mask=self.mask, action_mask=self.action_mask,
            num_particles=c.num_particles, bandwidth=self.bandwidth)
        p_upd, policy_opt = self.policy_tx.update(p_grads, ls.policy_opt, ls.policy_params)
        if c.leader_lr_scale != 1.0:  # per-agent step sizes (agent axis leads every leaf)
            p_upd = jax.tree.map(lambda u: u * self.agent_lr[(...,) + (None,) * (u.ndim - 1)], p_upd)
        policy_params = optax.apply_updates(ls.policy_params, p_upd)
        new = LearnerState(policy_params, critic_params, target, policy_opt, critic_opt, ls.updates)
        return new, {**c_aux, **p_aux, "alpha": alpha}

    def update_critic(self, ls: LearnerState, batch: Transition, key: PRNGKey, alpha: Array
                      ) -> tuple[LearnerState, dict]:
        """One critic step (soft Bellman loss) and the Polyak target update; the policy is unchanged."""
        c = self.config
        (_, c_aux), c_grads = jax.value_and_grad(critic_loss, has_aux=True)(
            ls.critic_params, ls.target_params, ls.policy_params, batch, key, alpha,
            policy=self.policy, critic=self.critic, action_mask=self.action_mask, gamma=c.gamma,
            reward_scale=c.reward_scale, value_samples=c.value_samples, proposal=c.value_proposal,
            mixture_weight=c.mixture_weight, mixture_std=c.mixture_std)
        c_upd, critic_opt = self.critic_tx.update(c_grads, ls.critic_opt, ls.critic_params)
        critic_params = optax.apply_updates(ls.critic_params, c_upd)
        target = optax.incremental_update(critic_params, ls.target_params, c.tau)
        return ls.replace(critic_params=critic_params, target_params=target, critic_opt=critic_opt,
                          updates=ls.updates + 1), c_aux

    # ----------------------------------------------------------------------------------- execution

    def noise(self, shared_key: PRNGKey, t: Array) -> Array:
        """The step-t noise ``[N, dξ]`` every agent regenerates from the shared key (mode a)."""
        return jax.random.normal(jax.random.fold_in(shared_key, t), (self.spec.num_agents, self.policy.noise_dim))

    def agent_action(self, policy_params, i: int, obs_i: Array, shared_key: PRNGKey, t: Array) -> Array:
        """What agent ``i`` computes on its own in mode (a): regenerate ξ, read ξ_{C_i}, act. ``[A]``."""
        own = jax.tree.map(lambda p: p[i], policy_params)
        return self.policy.apply_agent(own, i, obs_i, self.noise(shared_key, t))

    def sample_joint(self, policy_params, obs: Array, key: PRNGKey, num: int) -> Array:
        """``num`` joint actions ``[num, N, A]`` from the amortized policy at one observation ``[N, O]``."""
        noise = jax.random.normal(key, (num, self.spec.num_agents, self.policy.noise_dim))
        return jax.vmap(self.policy.apply, (None, None, 0))(policy_params, obs, noise)

    def act(self, ls: LearnerState, obs: Array, state: Array, shared_key: PRNGKey, t: Array, alpha: Array,
            mode: str = "shared_seed") -> Array:
        """Joint action ``[N, A]`` in ``[-1, 1]`` for one env under an execution mode.

        Args:
          ls: learner state. obs: ``[N, O]``. state: ``[S]`` (only mode c uses it, with the critic).
          shared_key: the key all agents share. t: ``[]`` step index. alpha: ``[]`` (mode c).
          mode: ``"shared_seed"``, ``"deterministic"`` or ``"negotiate"``.
        """
        if mode not in EXEC_MODES:
            raise ValueError(f"unknown execution mode {mode!r}; allowed: {list(EXEC_MODES)}")
        if mode == "deterministic":
            return self.policy.apply(ls.policy_params, obs, jnp.zeros((self.spec.num_agents, self.policy.noise_dim)))
        xi = self.noise(shared_key, t)
        if mode == "shared_seed":
            return self.policy.apply(ls.policy_params, obs, xi)
        c = self.config
        others = jax.random.normal(jax.random.fold_in(jax.random.fold_in(shared_key, t), 1),
                                   (c.num_particles - 1, *xi.shape))
        noise = jnp.concatenate([xi[None], others])
        parts = jax.vmap(self.policy.apply, (None, None, 0))(ls.policy_params, obs, noise)
        parts = jnp.clip(parts, -ACTION_CLIP, ACTION_CLIP)
        amask = self.action_mask

        def log_p(u, s, params):
            return self.critic.apply(params, s, jnp.clip(u, -ACTION_CLIP, ACTION_CLIP) * amask).min() / alpha

        # [ours] ε is scaled by α: the drive ε α ∇(Q/α) = ε ∇Q keeps its size as α anneals towards 0.
        res = negotiate(log_p, parts, topology=self.mask_np, num_rounds=c.negotiation_rounds,
                        step_size=c.negotiation_step * alpha, bandwidth=self.bandwidth, tol=0.0,
                        squash_correction=True, args=(state, ls.critic_params))
        return jnp.clip(res.particles[0], -ACTION_CLIP, ACTION_CLIP) * amask


def param_count(tree) -> int:
    """Number of scalars in a pytree."""
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))


__all__ = ["LearnerState", "SVNR", "param_count", "temperature"]
