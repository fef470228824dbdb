"""The SVNR agent (docs/algorithms.md): its config, init, one gradient update, temperature schedule, execution modes.

``SVNR(spec, config, total_iterations)`` is static configuration (closed over by the training loop);
every method is a pure function of explicit pytree state and keys (the contract of
:mod:`svnr_jax.algorithms.base`). Data collection (``mode="explore"``) executes mode (a).

Execution modes (docs/algorithms.md):

* ``"shared_seed"`` (a, the default stochastic execution): the noise of step t is
  ``ξ = N(0, I)`` drawn from ``fold_in(shared_key, t)``; every agent regenerates the same ξ from the
  shared key and reads only ξ_{C_i} (:meth:`SVNR.agent_action` is what one agent computes alone).
* ``"deterministic"`` (b): ξ = 0.
* ``"negotiate"`` (c): M particles from the network (the first one from the shared-seed noise) refined by
  :func:`svnr_jax.negotiate` for K rounds on ``Q(s, u)/α`` (with the tanh correction); particle 0 is
  executed. It needs communication and the critic: it measures the amortization gap.
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
    is_int,
    is_num,
    register,
    temperature_schedule,
)
from svnr_jax.envs.base import EnvSpec
from svnr_jax.losses import critic_loss, policy_loss
from svnr_jax.negotiation import TOPOLOGIES, negotiate, topology_mask
from svnr_jax.networks import make_critic, make_policy
from svnr_jax.replay import Transition
from svnr_jax.types import Array, PRNGKey

ACTION_CLIP = 1.0 - 1e-4
PROPOSALS = ("uniform", "mixture")
EXEC_MODES = ("shared_seed", "deterministic", "negotiate")


@dataclasses.dataclass(frozen=True)
class SVNRConfig(AlgoConfig):
    """Hyperparameters of the SVNR learner (docs/algorithms.md)."""

    choices: ClassVar[dict[str, tuple[str, ...]]] = {"alpha_schedule": SCHEDULES, "value_proposal": PROPOSALS}

    topology: str | tuple[tuple[int, ...], ...] = "nested"
    """Negotiation sets C_i: nested (C_i = {1..i}, default), full, independent, ring, or a custom [N, N] 0/1 mask
    (row i = C_i, diagonal 1; on the command line rows separated by ';', e.g. 1,0;1,1)."""
    num_particles: int = 32
    """M: joint-action particles drawn per state for the amortized SVGD update (split half fixed, half updated)."""
    bandwidth: float = 0.0
    """RBF kernel bandwidth h; 0 selects the per-agent median heuristic (docs/algorithms.md)."""
    policy_hidden: tuple[int, ...] = (64, 64)
    """Hidden layer sizes of each agent's generator g_ψi(o_i, ξ_{C_i})."""
    critic_hidden: tuple[int, ...] = (64, 64)
    """Hidden layer sizes of the joint soft critic Q(s, u)."""
    noise_dim: int = 0
    """Size of each agent's noise ξ_j; 0 means the padded per-agent action size."""
    policy_init_scale: float = 1.0
    """[ours] Gain of the generator's first-layer init: larger spreads the initial particles over more of [-1, 1]."""
    output_init_scale: float = 1.0
    """[ours] Gain of the generator's output-layer init (pre-tanh); larger = wider initial action spread."""
    noise_skip: float = 0.0
    """[ours] Init gain of a learnable linear path from agent i's own noise ξ_i to its pre-tanh action (0 = off):
    the initial policy ≈ tanh(noise_skip·ξ_i), centred and spread whatever the observation."""
    twin_critic: bool = False
    """[ours] Two critics; the soft value and the policy score use their minimum."""
    value_samples: int = 64
    """M_v: action samples for the importance-sampled soft value V(s')."""
    value_proposal: str = "uniform"
    """Soft-value proposal: uniform on [-1,1]^D (SQL), or mixture: uniform + KDE of policy particles [ours]."""
    mixture_weight: float = 0.5
    """[ours] Weight of the uniform component in the mixture proposal, in (0, 1]."""
    mixture_std: float = 0.1
    """[ours] Standard deviation of the Gaussian kernels around the policy's particles in the mixture proposal."""
    gamma: float = 0.99
    """Discount factor γ."""
    tau: float = 0.005
    """Polyak rate of the target critic."""
    policy_lr: float = 1e-3
    """Adam learning rate of the generators."""
    leader_lr_scale: float = 1.0
    """[ours] Agent i's policy step is scaled by leader_lr_scale^((N-1-i)/(N-1)): < 1 makes the nested leaders
    (small C_i) learn slower than the followers, which must track their conditionals (time-scale separation)."""
    critic_lr: float = 1e-3
    """Adam learning rate of the critic."""
    grad_clip: float = 10.0
    """Global gradient-norm clip for both optimisers; 0 disables it."""
    alpha_init: float = 1.0
    """Temperature α at the start (the target policy is ∝ exp(Q/α))."""
    alpha_min: float = 1.0
    """Temperature α at the end of the schedule."""
    alpha_schedule: str = "constant"
    """Temperature schedule: constant (alpha_init), linear or exponential from alpha_init to alpha_min."""
    alpha_anneal_fraction: float = 1.0
    """Fraction of the training iterations over which α reaches alpha_min (then held)."""
    reward_scale: float = 1.0
    """Rewards are multiplied by this before entering the critic (reported returns are unscaled)."""
    negotiation_rounds: int = 10
    """K: rounds of explicit negotiation in execution mode 'negotiate'."""
    negotiation_step: float = 3e-3
    """ε: step size of explicit negotiation in execution mode 'negotiate' (scaled by α [ours])."""

    def check(self) -> None:
        """Validate every field (``ValueError`` naming ``algo_config.<field>``)."""
        super().check()
        if isinstance(self.topology, str):
            self.require("topology", self.topology in TOPOLOGIES, f"one of {list(TOPOLOGIES)} or an [N, N] 0/1 mask")
        else:
            rows = self.topology
            ok = (isinstance(rows, tuple) and rows and all(isinstance(r, tuple) and len(r) == len(rows) for r in rows)
                  and all(v in (0, 1) and not isinstance(v, float) for r in rows for v in r)
                  and all(rows[i][i] == 1 for i in range(len(rows))))
            self.require("topology", bool(ok), f"one of {list(TOPOLOGIES)} or a square 0/1 mask with a diagonal of 1")
        self.require("num_particles", is_int(self.num_particles) and self.num_particles >= 4
                     and self.num_particles % 2 == 0, "an even integer >= 4 (half fixed, half updated)")
        self.require("bandwidth", is_num(self.bandwidth) and self.bandwidth >= 0,
                     "a number >= 0 (0 = median heuristic)")
        self.require("noise_dim", is_int(self.noise_dim) and self.noise_dim >= 0, "an integer >= 0 (0 = action size)")
        self.require("leader_lr_scale", is_num(self.leader_lr_scale) and 0 < self.leader_lr_scale <= 1,
                     "a number in (0, 1]")
        self.require("noise_skip", is_num(self.noise_skip) and self.noise_skip >= 0, "a number >= 0 (0 = off)")
        self.positive("policy_init_scale", "output_init_scale", "mixture_std", "policy_lr", "critic_lr", "alpha_init",
                      "alpha_min", "reward_scale", "negotiation_step")
        self.positive_int("value_samples", "negotiation_rounds")
        self.require("value_proposal", self.value_proposal in PROPOSALS, f"one of {list(PROPOSALS)}")
        self.unit_interval("mixture_weight", low_open=True)
        self.unit_interval("gamma")
        self.unit_interval("tau", low_open=True)
        self.require("grad_clip", is_num(self.grad_clip) and self.grad_clip >= 0, "a number >= 0 (0 = no clipping)")
        self.require("alpha_schedule", self.alpha_schedule in SCHEDULES, f"one of {list(SCHEDULES)}")
        self.require("alpha_min", self.alpha_min <= self.alpha_init, f"a number <= alpha_init={self.alpha_init}")
        self.unit_interval("alpha_anneal_fraction", low_open=True)




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
    """α at ``iteration`` (docs/algorithms.md): constant, linear or exponential from ``alpha_init`` to ``alpha_min``
    (an optax schedule), reaching ``alpha_min`` after ``alpha_anneal_fraction · total_iterations`` iterations.

    Args:
      iteration: ``[]`` (int or float) training iteration.
    Returns:
      ``[]`` float32 temperature.
    """
    schedule = temperature_schedule(config.alpha_schedule, config.alpha_init, config.alpha_min,
                                    config.alpha_anneal_fraction * total_iterations)
    return jnp.asarray(schedule(jnp.asarray(iteration, jnp.float32)), jnp.float32)


class SVNR(Agent):
    """SVNR for one env spec.

    Args:
      spec: the env's :class:`~svnr_jax.envs.base.EnvSpec` (policies act in ``[-1, 1]``).
      config: :class:`SVNRConfig`.
      total_iterations: training iterations (for the temperature schedule).
    """

    modes = EXEC_MODES
    eval_modes = ("shared_seed", "deterministic")
    test_mode = "shared_seed"

    def __init__(self, spec: EnvSpec, config: SVNRConfig, total_iterations: int = 1):
        super().__init__(spec, config, total_iterations)
        n, a = spec.num_agents, spec.action_dim
        self.mask_np = topology_mask(config.topology, n)
        self.mask = self.mask_np  # numpy: a compile-time constant
        self.action_mask = np.asarray(spec.action_mask, np.float32)  # numpy: static
        self.policy = make_policy(n, spec.obs_dim, a, self.mask_np, hidden=config.policy_hidden,
                                  noise_dim=config.noise_dim, first_scale=config.policy_init_scale,
                                  out_scale=config.output_init_scale, noise_skip=config.noise_skip,
                                  action_mask=spec.action_mask)
        self.critic = make_critic(spec.state_size, n, a, hidden=config.critic_hidden, twin=config.twin_critic)
        self.policy_tx = adam(config.policy_lr, config.grad_clip)
        self.critic_tx = adam(config.critic_lr, config.grad_clip)
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

    def update(self, ls: LearnerState, batch: Transition, key: PRNGKey, iteration: Array
               ) -> tuple[LearnerState, dict]:
        """One gradient update at α(iteration): critic (soft Bellman) + Polyak target, then policy (amortized
        MP-SVGD).

        Args:
          ls: learner state. batch: :class:`~svnr_jax.replay.Transition` with leading ``[B]``. key.
          iteration: ``[]`` training iteration (temperature schedule).
        Returns:
          ``(new state, metrics dict of scalars)``.
        """
        c = self.config
        alpha = self.alpha(iteration)
        k_critic, k_policy = jax.random.split(key)
        ls, c_aux = self._update_critic(ls, batch, k_critic, alpha)
        scale = None
        if c.leader_lr_scale != 1.0:  # per-agent step sizes (agent axis leads every leaf)
            scale = lambda upd: jax.tree.map(lambda u: u * self.agent_lr[(...,) + (None,) * (u.ndim - 1)], upd)
        policy_params, policy_opt, p_aux = gradient_step(
            policy_loss, ls.policy_params, ls.policy_opt, self.policy_tx, ls.critic_params, batch.obs, batch.state,
            k_policy, alpha, scale=scale, policy=self.policy, critic=self.critic, mask=self.mask,
            action_mask=self.action_mask, num_particles=c.num_particles, bandwidth=self.bandwidth)
        return ls.replace(policy_params=policy_params, policy_opt=policy_opt), {**c_aux, **p_aux, "alpha": alpha}

    def pretrain(self, ls: LearnerState, batch: Transition, key: PRNGKey) -> tuple[LearnerState, dict]:
        """One critic-only update at the initial temperature (the critic warm-up)."""
        return self._update_critic(ls, batch, key, self.alpha(0))

    def _update_critic(self, ls: LearnerState, batch: Transition, key: PRNGKey, alpha: Array
                       ) -> tuple[LearnerState, dict]:
        """One critic step (soft Bellman loss) and the Polyak target update; the policy is unchanged."""
        c = self.config
        critic_params, critic_opt, c_aux = gradient_step(
            critic_loss, ls.critic_params, ls.critic_opt, self.critic_tx, ls.target_params, ls.policy_params, batch,
            key, alpha, policy=self.policy, critic=self.critic, action_mask=self.action_mask, gamma=c.gamma,
            reward_scale=c.reward_scale, value_samples=c.value_samples, proposal=c.value_proposal,
            mixture_weight=c.mixture_weight, mixture_std=c.mixture_std)
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

    def act(self, ls: LearnerState, obs: Array, state: Array, key: PRNGKey, t: Array, iteration: Array,
            mode: str = EXPLORE) -> Array:
        """Joint action ``[N, A]`` in ``[-1, 1]`` for one env under an execution mode.

        Args:
          ls: learner state. obs: ``[N, O]``. state: ``[S]`` (only mode c uses it, with the critic).
          key: the key all agents share (the episode's). t: ``[]`` step index. iteration: ``[]`` (α for mode c).
          mode: ``"shared_seed"`` (= ``"explore"``), ``"deterministic"`` or ``"negotiate"``.
        """
        self.check_mode(mode)
        if mode == "deterministic":
            return self.policy.apply(ls.policy_params, obs, jnp.zeros((self.spec.num_agents, self.policy.noise_dim)))
        xi = self.noise(key, t)
        if mode in ("shared_seed", EXPLORE):
            return self.policy.apply(ls.policy_params, obs, xi)
        c = self.config
        alpha = self.alpha(iteration)
        others = jax.random.normal(jax.random.fold_in(jax.random.fold_in(key, t), 1),
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


register("svnr", SVNRConfig, SVNR)

__all__ = ["EXEC_MODES", "PROPOSALS", "LearnerState", "SVNR", "SVNRConfig", "param_count", "temperature"]
