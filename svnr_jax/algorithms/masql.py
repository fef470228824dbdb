"""MASQL (Wei et al. 2018, multi-agent soft Q-learning): a joint soft critic and one amortized-SVGD sampler of the
JOINT action, executed agent by agent (each agent keeps its own component: the product of the marginals).

Reference (read, not copied): ml3705454/mapr2 (maci) ``maci/learners/masql.py`` (uniform value samples, y = r_s·r +
γ(1−d)V, ½-MSE; SVGD on the joint, full RBF kernel ``maci/misc/kernel.py``, fixed/updated split, score ∇Q/α + tanh
correction; Polyak τ every ``td_target_update_interval`` updates; both steps in one ``sess.run``: same parameters),
``maci/policies/stochastic_policy.py`` (agent i's sampler: ReLU MLP on its own o_i and ξ ~ N(0, I_D) → tanh → the joint
action), ``maci/misc/sampler.py`` (train and test: agent i draws its own noise, executes ``action[0:action_dim]``).
[ours]: one critic Q(s, u) on the global state (reference: Q_i(o_i, u) per agent) and one joint sampler of N heads
g_i(o_i, ξ) (reference: N joint samplers whose teammate components are discarded); V = ``losses.soft_value`` =
α[log mean exp(Q̄/α) + D log 2] (reference: α logsumexp(Q̄/α) − log M_v + D log 2, the same up to a constant); kernel
bandwidth median/log(M_F + 1) (reference log M_F); mode ``shared_seed`` (not in the reference).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from svnr_jax.algorithms.base import (
    EXPLORE,
    SCHEDULES,
    Agent,
    AlgoConfig,
    adam,
    gradient_step,
    is_num,
    register,
    temperature_schedule,
)
from svnr_jax.envs.base import EnvSpec
from svnr_jax.kernels import tanh_correction
from svnr_jax.losses import critic_target, sample_proposal, soft_value, surrogate_policy_loss, svgd_policy_direction
from svnr_jax.networks import make_critic, make_policy
from svnr_jax.replay import Transition
from svnr_jax.types import Array, PRNGKey


@dataclasses.dataclass(frozen=True)
class MASQLConfig(AlgoConfig):
    """Hyperparameters of MASQL; defaults are the reference's ``MASQL.__init__`` defaults (maci/learners/masql.py)
    unless marked."""

    choices: ClassVar[dict[str, tuple[str, ...]]] = {"alpha_schedule": SCHEDULES}

    policy_hidden: tuple[int, ...] = (100, 100)
    """Hidden layer sizes of agent i's head g_i(o_i, ξ) of the joint sampler (reference: hidden_size 100, 2 layers)."""
    critic_hidden: tuple[int, ...] = (100, 100)
    """Hidden layer sizes of the joint soft critic Q(s, u) (reference: hidden_size 100, 2 layers)."""
    twin_critic: bool = False
    """[ours] Two critics; the soft value and the SVGD score use their minimum (reference: one critic)."""
    num_particles: int = 16
    """M: joint-action particles per state for the amortized SVGD step (reference kernel_n_particles 16)."""
    kernel_update_ratio: float = 0.5
    """Fraction of the M particles that are updated, the rest are the fixed kernel particles (reference 0.5)."""
    value_samples: int = 16
    """M_v: uniform joint actions for the soft value V(s') (reference value_n_particles 16)."""
    gamma: float = 0.99
    """Discount factor γ (reference discount 0.99)."""
    tau: float = 0.01
    """Polyak rate of the target critic (reference tau 0.01)."""
    target_update_interval: int = 1
    """The Polyak target step is taken every this many updates (reference td_target_update_interval 1)."""
    policy_lr: float = 1e-3
    """Adam learning rate of the joint sampler (reference policy_lr 1e-3)."""
    critic_lr: float = 1e-3
    """Adam learning rate of the critic (reference qf_lr 1e-3)."""
    grad_clip: float = 0.0
    """[ours] Global gradient-norm clip of both optimisers; 0 (default, as the reference) disables it."""
    reward_scale: float = 0.1
    """Rewards are multiplied by this in the critic target (reference reward_scale 0.1; reported returns unscaled)."""
    alpha_init: float = 1.0
    """Temperature α at the start (target ∝ exp(Q/α)); reference: given by the script (``annealing=1.`` by default,
    experiment/run_baselines.py: 0.1 constant)."""
    alpha_min: float = 1.0
    """Temperature α at the end of the schedule."""
    alpha_schedule: str = "constant"
    """[ours] Temperature schedule: constant (alpha_init), linear or exponential from alpha_init to alpha_min."""
    alpha_anneal_fraction: float = 1.0
    """[ours] Fraction of the training iterations over which α reaches alpha_min (then held)."""

    def check(self) -> None:
        super().check()
        self.positive("policy_lr", "critic_lr", "reward_scale", "alpha_init", "alpha_min")
        self.positive_int("num_particles", minimum=2)
        self.positive_int("value_samples", "target_update_interval")
        self.unit_interval("gamma")
        self.unit_interval("tau", low_open=True)
        self.unit_interval("alpha_anneal_fraction", low_open=True)
        r, m = self.kernel_update_ratio, self.num_particles
        self.require("kernel_update_ratio", is_num(r) and 0 < r < 1 and 1 <= int(m * r) <= m - 1,
                     f"a number in (0, 1) leaving at least one fixed and one updated particle of {m}")
        self.require("grad_clip", is_num(self.grad_clip) and self.grad_clip >= 0, "a finite number >= 0 (0 = off)")
        self.require("alpha_schedule", self.alpha_schedule in SCHEDULES, f"one of {list(SCHEDULES)}")
        self.require("alpha_min", self.alpha_min <= self.alpha_init, f"a number <= alpha_init={self.alpha_init}")


@struct.dataclass
class MASQLState:
    """Parameters and optimiser states of MASQL (a pytree).

    Attributes:
      policy_params: the N heads of the joint sampler, leading ``[N]`` agent axis.
      critic_params: critic(s), leading ``[n_critics]``. target_params: Polyak-averaged copy.
      policy_opt, critic_opt: optax states.
      updates: ``[]`` int32 gradient updates done (critic-only pretraining updates included).
    """

    policy_params: dict
    critic_params: dict
    target_params: dict
    policy_opt: optax.OptState
    critic_opt: optax.OptState
    updates: Array


class MASQL(Agent):
    """MASQL for one env spec (see the module docstring).

    Execution modes (``key`` is the episode key; the step-t key is ``fold_in(key, t)``):

    * ``"independent"`` (the reference's execution, also :data:`EXPLORE`): agent i draws its own joint noise from
      ``fold_in(fold_in(key, t), i)`` and executes its own head's output: a product of the marginals.
    * ``"shared_seed"``: every agent regenerates the same joint noise from ``fold_in(key, t)``: a sample of the
      learned joint.
    * ``"deterministic"``: ξ = 0.

    Args:
      spec: the env's :class:`~svnr_jax.envs.base.EnvSpec` (actions in ``[-1, 1]``).
      config: :class:`MASQLConfig`. total_iterations: training iterations (for the temperature schedule).
    """

    modes = ("independent", "shared_seed", "deterministic")
    eval_modes = ("independent", "shared_seed")
    test_mode = "independent"

    def __init__(self, spec: EnvSpec, config: MASQLConfig, total_iterations: int = 1):
        super().__init__(spec, config, total_iterations)
        c = config
        n, a = spec.num_agents, spec.action_dim
        self.full_mask = np.ones((n, n), bool)  # every head sees the whole joint noise; the kernel is the full one
        self.policy = make_policy(n, spec.obs_dim, a, self.full_mask, hidden=c.policy_hidden,
                                  action_mask=spec.action_mask)
        self.critic = make_critic(spec.state_size, n, a, hidden=c.critic_hidden, twin=c.twin_critic)
        self.policy_tx = adam(c.policy_lr, c.grad_clip)
        self.critic_tx = adam(c.critic_lr, c.grad_clip)
        self.schedule = temperature_schedule(c.alpha_schedule, c.alpha_init, c.alpha_min,
                                             c.alpha_anneal_fraction * self.total_iterations)
        self.num_updated = int(c.num_particles * c.kernel_update_ratio)
        self.num_fixed = c.num_particles - self.num_updated

    # ----------------------------------------------------------------------------------- pieces

    def alpha(self, iteration: Array) -> Array:
        """Temperature ``[]`` at a training iteration."""
        return jnp.asarray(self.schedule(iteration), jnp.float32)

    def noise(self, key: PRNGKey, lead: tuple[int, ...] = ()) -> Array:
        """Joint noise ``[*lead, N, A]`` ~ N(0, I) on the real action entries (0 on padded ones)."""
        shape = (*lead, self.spec.num_agents, self.policy.noise_dim)
        return jax.random.normal(key, shape) * self.action_mask

    def joint_particles(self, policy_params, obs: Array, key: PRNGKey, num: int) -> Array:
        """``num`` joint actions ``[num, N, A]`` of the learned joint at one observation ``obs [N, O]``."""
        return jax.vmap(self.policy.apply, (None, None, 0))(policy_params, obs, self.noise(key, (num,)))

    def q(self, critic_params, state: Array, u: Array) -> Array:
        """``min_k Q_k(s, u)`` ``[]`` for one state ``[S]`` and joint action ``[N, A]``."""
        return self.critic.apply(critic_params, state, u).min()

    def target(self, target_params, batch: Transition, key: PRNGKey, alpha: Array) -> tuple[Array, Array]:
        """Critic targets ``y = r_s·r + γ(1−d)V(s')`` ``[B]`` and soft values ``V(s')`` ``[B]``.

        ``V(s') = α log mean_j exp(Q̄(s', u_j)/α) + D log 2`` with ``u_j`` uniform on ``[-1, 1]^D``: example b uses
        ``sample_proposal(jax.random.split(key, B)[b], value_samples, action_mask)``.
        """
        c = self.config
        keys = jax.random.split(key, batch.reward.shape[0])

        def value_one(k, next_state):
            u, log_q = sample_proposal(k, c.value_samples, self.action_mask)
            return soft_value(jax.vmap(self.q, (None, None, 0))(target_params, next_state, u), log_q, alpha)

        v = jax.vmap(value_one)(keys, batch.next_state)
        return critic_target(c.reward_scale * batch.reward, batch.terminal, v, c.gamma), v

    def critic_loss(self, critic_params, target_params, batch: Transition, key: PRNGKey, alpha: Array
                    ) -> tuple[Array, dict]:
        """Soft Bellman loss ``½ mean_b Σ_k (y_b − Q_k(s_b, u_b))²`` and its metrics."""
        y, v = self.target(target_params, batch, key, alpha)
        q = jax.vmap(self.critic.apply, (None, 0, 0))(critic_params, batch.state, batch.action)  # [B, n_critics]
        loss = 0.5 * jnp.mean(jnp.sum((y[:, None] - q) ** 2, axis=-1))
        return loss, {"critic_loss": loss, "q_mean": jnp.mean(q), "target_mean": jnp.mean(y),
                      "soft_value_mean": jnp.mean(v)}

    def svgd_step(self, policy_params, critic_params, obs: Array, state: Array, key: PRNGKey, alpha: Array
                  ) -> tuple[Array, Array, Array, Array]:
        """The amortized SVGD step at one state, on the JOINT action with the full kernel.

        M particles ``u = π(o, ξ)`` (one joint noise each, :meth:`joint_particles` with ``key``); the first
        ``num_fixed`` are the fixed kernel particles (stop-gradient), the rest are updated. Score at the fixed ones:
        ``∇_u [min_k Q_k(s, u)/α + Σ log(1 − u² + 1e-6)]``. Direction ``Δ`` at the updated ones: the SVGD direction
        over the flattened joint (``svgd_policy_direction`` with an all-true mask).

        Args:
          obs: ``[N, O]``; state: ``[S]``; key; alpha ``[]``.
        Returns:
          ``(fixed [M_F, N, A], scores [M_F, N, A], updated [M_U, N, A] (differentiable), Δ [M_U, N, A])``.
        """
        u = self.joint_particles(policy_params, obs, key, self.config.num_particles)
        fixed, updated = jax.lax.stop_gradient(u[:self.num_fixed]), u[self.num_fixed:]

        def log_p(x):
            return self.q(critic_params, state, x) / alpha + tanh_correction(x * self.action_mask)

        scores = jax.vmap(jax.grad(log_p))(fixed) * self.action_mask
        delta = svgd_policy_direction(fixed, scores, jax.lax.stop_gradient(updated), self.full_mask) * self.action_mask
        return fixed, scores, updated, delta

    def policy_loss(self, policy_params, critic_params, obs: Array, state: Array, key: PRNGKey, alpha: Array
                    ) -> tuple[Array, dict]:
        """Surrogate ``−mean_b (1/M_U) Σ_m ⟨stop_grad(Δ^m), u^m⟩`` over a batch (``obs [B, N, O]``, ``state [B, S]``):
        its gradient pulls the SVGD direction back through the sampler (SQL's amortized SVGD)."""
        keys = jax.random.split(key, obs.shape[0])

        def one(k, o, s):
            _, _, updated, delta = self.svgd_step(policy_params, critic_params, o, s, k, alpha)
            return surrogate_policy_loss(delta, updated), jnp.mean(jnp.linalg.norm(delta.reshape(delta.shape[0], -1),
                                                                                   axis=-1))

        losses, norms = jax.vmap(one)(keys, obs, state)
        loss = jnp.mean(losses)
        return loss, {"policy_loss": loss, "svgd_norm": jnp.mean(norms)}

    # ----------------------------------------------------------------------------------- learning

    def init(self, key: PRNGKey) -> MASQLState:
        """Fresh parameters; the target critic starts as a copy of the critic."""
        k_pol, k_crit = jax.random.split(key)
        pp, cp = self.policy.init(k_pol), self.critic.init(k_crit)
        return MASQLState(pp, cp, cp, self.policy_tx.init(pp), self.critic_tx.init(cp), jnp.zeros((), jnp.int32))

    def _critic_step(self, ls: MASQLState, batch: Transition, key: PRNGKey, alpha: Array) -> tuple[MASQLState, dict]:
        """Critic step, then the Polyak target step every ``target_update_interval`` updates."""
        c = self.config
        cp, copt, aux = gradient_step(self.critic_loss, ls.critic_params, ls.critic_opt, self.critic_tx,
                                      ls.target_params, batch, key, alpha)
        updates = ls.updates + 1
        polyak = optax.incremental_update(cp, ls.target_params, c.tau)
        due = updates % c.target_update_interval == 0
        target = jax.tree.map(lambda new, old: jnp.where(due, new, old), polyak, ls.target_params)
        return ls.replace(critic_params=cp, critic_opt=copt, target_params=target, updates=updates), aux

    def update(self, ls: MASQLState, batch: Transition, key: PRNGKey, iteration: Array) -> tuple[MASQLState, dict]:
        """One update at α(iteration): critic step + target step and the amortized SVGD step of the sampler, both
        computed from the parameters before this update (the reference runs both ops in one ``sess.run``)."""
        alpha = self.alpha(iteration)
        k_critic, k_policy = jax.random.split(key)
        critic_before = jax.lax.stop_gradient(ls.critic_params)
        pp, popt, p_aux = gradient_step(self.policy_loss, ls.policy_params, ls.policy_opt, self.policy_tx,
                                        critic_before, batch.obs, batch.state, k_policy, alpha)
        ls, c_aux = self._critic_step(ls, batch, k_critic, alpha)
        return ls.replace(policy_params=pp, policy_opt=popt), {**c_aux, **p_aux, "alpha": alpha}

    def pretrain(self, ls: MASQLState, batch: Transition, key: PRNGKey) -> tuple[MASQLState, dict]:
        """One critic-only update (and target step) at α(0); the sampler is unchanged."""
        alpha = self.alpha(0)
        ls, aux = self._critic_step(ls, batch, key, alpha)
        return ls, {**aux, "alpha": alpha}

    # ----------------------------------------------------------------------------------- execution

    def agent_action(self, policy_params, i: int, obs_i: Array, key: PRNGKey, t: Array, mode: str) -> Array:
        """What agent ``i`` computes on its own: its action ``[A]`` from its observation, the episode key and t."""
        own = jax.tree.map(lambda p: p[i], policy_params)
        step = jax.random.fold_in(key, t)
        if mode == "deterministic":
            xi = jnp.zeros((self.spec.num_agents, self.policy.noise_dim))
        elif mode == "shared_seed":
            xi = self.noise(step)
        else:  # independent / explore: agent i's own draw
            xi = self.noise(jax.random.fold_in(step, i))
        return self.policy.apply_agent(own, i, obs_i, xi)

    def act(self, ls: MASQLState, obs: Array, state: Array, key: PRNGKey, t: Array, iteration: Array,
            mode: str = EXPLORE) -> Array:
        """Joint action ``[N, A]`` in ``[-1, 1]`` (padded entries 0) for one env; ``state`` and ``iteration`` unused."""
        del state, iteration
        self.check_mode(mode)
        n = self.spec.num_agents
        if mode == "deterministic":
            return self.policy.apply(ls.policy_params, obs, jnp.zeros((n, self.policy.noise_dim)))
        step = jax.random.fold_in(key, t)
        if mode == "shared_seed":
            return self.policy.apply(ls.policy_params, obs, self.noise(step))
        # independent (the reference's execution, also used for data collection): agent i's own joint noise.
        xi = jax.vmap(lambda i: self.noise(jax.random.fold_in(step, i)))(jnp.arange(n))  # [N (agent), N, A]
        return jax.vmap(self.policy.apply_agent)(ls.policy_params, jnp.arange(n), obs, xi)


register("masql", MASQLConfig, MASQL)

__all__ = ["MASQL", "MASQLConfig", "MASQLState"]
