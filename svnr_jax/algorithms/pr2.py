"""PR2-AC (Wen et al., ICLR 2019, probabilistic recursive reasoning, level 1): per agent a soft critic of the joint
action, an opponent-conditional sampler ρ_i(u_−i | o_i, u_i) trained by amortized SVGD towards exp(Q_i(·, u_i, u_−i)/α),
and a deterministic actor μ_i(o_i) that maximises the soft value of Q_i over ρ_i's samples.

Reference (read, not copied): ml3705454/mapr2 (maci) ``maci/learners/mavb_ac.py`` (class ``MAVBAC``, run with k = 0),
``maci/get_agents.py`` (``pr2ac_agent``), ``maci/policies/stochastic_policy.py`` (``StochasticNNConditionalPolicy``),
``maci/policies/deterministic_policy.py``, ``maci/value_functions/sq_value_function.py`` (``NNJointQFunction``),
``maci/misc/kernel.py``, ``experiment/run_baselines.py`` (the differential-game script). What the reference does:

* critic of agent i: ``Q_i(o_i, u_i, u_−i)``; target ``y = r_s·r + γ(1−d)V_i(s')`` with
  ``V_i = α logsumexp_j Q̄_i(o'_i, μ̄_i(o'_i), u^j_−i)/α − log M_v + d_−i log 2``, ``u^j_−i ~ U[−1, 1]^{d_−i}``
  (μ̄_i the target actor, no noise); ½-MSE; Polyak τ on the target critic and the target actor.
* ρ_i: ReLU MLP on (o_i, u_i, ξ), ξ ~ N(0, I_{d_−i}), tanh; trained on the BUFFER action u_i by SQL's amortized SVGD
  (fixed/updated halves, score ∇_{u_−i}[Q_i/α + Σ log(1 − u_−i² + 1e-6)], RBF kernel with median bandwidth).
* actor μ_i(o_i) (deterministic, tanh): loss ``−mean_b [α logsumexp_j Q_i(·, μ_i(o_i), u^j_−i)/α − log M_v + const]``
  with ``u^j_−i ~ ρ_i(· | o_i, u_i from the buffer)``: the gradient reaches μ_i only through the u_i slot of Q_i
  (ρ's samples are conditioned on the buffer action, so they carry no gradient to μ_i; ρ is not trained here).
* all three steps from the same parameters (one ``sess.run``); exploration: μ + noise; ρ_i is never executed.

[ours]: agent i's critic ``Q_i(s, u)`` sees the global state (reference: o_i), critics stacked on an agent axis; the
reference's extra per-agent ``Q_i(o_i, u_i)`` "baseline" is dropped (it does not depend on u_−i, so its gradient in
the SVGD score is zero and nothing else reads it); the actor's Q is evaluated at the current state (the reference
feeds ``next_observations`` there: the same in one-step games); soft values via ``losses.soft_value`` (constants
``α(D log 2 − log M)`` instead of ``D log 2 − log M``: no gradient changes); kernel bandwidth median/log(M_F + 1)
(reference log M_F); the SVGD surrogate is averaged over particles and states (reference: summed; Adam is
scale-free); Gaussian exploration noise (reference: OU, θ 0.15, σ 0.3, scaled by a decaying noise level) with an
optional decay schedule; an optional pre-tanh actor regulariser ``action_reg`` (default 0 = the reference).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, NamedTuple

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
    gaussian_exploration,
    gradient_step,
    is_num,
    per_agent,
    register,
    temperature_schedule,
)
from svnr_jax.envs.base import EnvSpec
from svnr_jax.kernels import svgd_direction, tanh_correction
from svnr_jax.losses import critic_target, sample_proposal, soft_value, surrogate_policy_loss
from svnr_jax.networks import MLP
from svnr_jax.replay import Transition
from svnr_jax.types import Array, PRNGKey


@dataclasses.dataclass(frozen=True)
class PR2Config(AlgoConfig):
    """Hyperparameters of PR2-AC; defaults are the reference's ``MAVBAC.__init__`` defaults (maci/learners/mavb_ac.py)
    unless marked (the differential-game script's values are in the presets)."""

    choices: ClassVar[dict[str, tuple[str, ...]]] = {"alpha_schedule": SCHEDULES, "noise_schedule": SCHEDULES}

    actor_hidden: tuple[int, ...] = (100, 100)
    """Hidden layer sizes of agent i's deterministic actor μ_i(o_i) (reference: hidden_size 100, 2 layers)."""
    conditional_hidden: tuple[int, ...] = (100, 100)
    """Hidden layer sizes of agent i's opponent conditional ρ_i(u_−i | o_i, u_i, ξ) (reference: 100, 2 layers)."""
    critic_hidden: tuple[int, ...] = (100, 100)
    """Hidden layer sizes of agent i's joint soft critic Q_i(s, u) (reference: 100, 2 layers)."""
    num_particles: int = 16
    """M: opponent-action particles per state for ρ_i's amortized SVGD step (reference kernel_n_particles 16;
    the game script: 32)."""
    kernel_update_ratio: float = 0.5
    """Fraction of the M particles that are updated, the rest are the fixed kernel particles (reference 0.5)."""
    value_samples: int = 16
    """M_v: uniform opponent actions for the soft value V_i(s') and ρ_i samples in the actor's objective
    (reference value_n_particles 16)."""
    gamma: float = 0.99
    """Discount factor γ (reference discount 0.99; the game script: 0.95)."""
    tau: float = 0.01
    """Polyak rate of the target critics and the target actors (reference tau 0.01)."""
    target_update_interval: int = 1
    """The Polyak target step is taken every this many updates (reference td_target_update_interval 1)."""
    policy_lr: float = 1e-3
    """Adam learning rate of the actors and of the opponent conditionals (reference policy_lr 1e-3 for both;
    the game script: 1e-2)."""
    critic_lr: float = 1e-3
    """Adam learning rate of the critics (reference qf_lr 1e-3; the game script: 1e-2)."""
    grad_clip: float = 0.0
    """[ours] Global gradient-norm clip of each agent's optimisers; 0 (default, as the reference) disables it."""
    action_reg: float = 0.0
    """[ours] Weight of the mean squared pre-tanh actor output in each actor's loss (MADDPG's p_reg, openai/maddpg
    1e-3); 0 (default) as the reference, whose actor loss has no regulariser."""
    reward_scale: float = 1.0
    """Rewards are multiplied by this in the critic target (reference reward_scale 1; reported returns unscaled)."""
    alpha_init: float = 1.0
    """Temperature α at the start (ρ_i's target ∝ exp(Q_i/α)); reference: passed by the script (``annealing=1.`` by
    default; experiment/run_baselines.py: 0.1 constant)."""
    alpha_min: float = 1.0
    """Temperature α at the end of the schedule."""
    alpha_schedule: str = "constant"
    """[ours] Temperature schedule: constant (alpha_init), linear or exponential from alpha_init to alpha_min."""
    alpha_anneal_fraction: float = 1.0
    """[ours] Fraction of the training iterations over which α reaches alpha_min (then held)."""
    exploration_noise: float = 0.1
    """[ours] Std of the Gaussian noise added to μ(o) when collecting data, in [−1, 1] action units, at the start
    (reference: OU noise, σ 0.3, θ 0.15, times a noise level 0.1 after the warm-up, 0.05, then 0.01)."""
    exploration_noise_min: float = 0.1
    """[ours] Exploration noise std at the end of the noise schedule."""
    noise_schedule: str = "constant"
    """[ours] Noise schedule: constant (exploration_noise), linear or exponential to exploration_noise_min."""
    noise_anneal_fraction: float = 1.0
    """[ours] Fraction of the training iterations over which the noise reaches exploration_noise_min (then held)."""

    def check(self) -> None:
        super().check()
        self.positive("policy_lr", "critic_lr", "reward_scale", "alpha_init", "alpha_min")
        self.positive_int("num_particles", minimum=2)
        self.positive_int("value_samples", "target_update_interval")
        self.unit_interval("gamma")
        self.unit_interval("tau", "alpha_anneal_fraction", "noise_anneal_fraction", low_open=True)
        r, m = self.kernel_update_ratio, self.num_particles
        self.require("kernel_update_ratio", is_num(r) and 0 < r < 1 and 1 <= int(m * r) <= m - 1,
                     f"a number in (0, 1) leaving at least one fixed and one updated particle of {m}")
        self.require("grad_clip", is_num(self.grad_clip) and self.grad_clip >= 0, "a finite number >= 0 (0 = off)")
        self.require("action_reg", is_num(self.action_reg) and self.action_reg >= 0, "a finite number >= 0 (0 = off)")
        self.require("alpha_schedule", self.alpha_schedule in SCHEDULES, f"one of {list(SCHEDULES)}")
        self.require("alpha_min", self.alpha_min <= self.alpha_init, f"a number <= alpha_init={self.alpha_init}")
        self.require("noise_schedule", self.noise_schedule in SCHEDULES, f"one of {list(SCHEDULES)}")
        self.require("exploration_noise", is_num(self.exploration_noise) and self.exploration_noise >= 0,
                     "a finite number >= 0")
        lo, hi = self.exploration_noise_min, self.exploration_noise
        need_pos = self.noise_schedule == "exponential"
        ok = is_num(lo) and (lo > 0 if need_pos else lo >= 0) and (not is_num(hi) or lo <= hi)
        self.require("exploration_noise_min", ok,
                     f"a number {'>' if need_pos else '>='} 0 and <= exploration_noise={hi}"
                     + (" (exponential schedule)" if need_pos else ""))


@struct.dataclass
class PR2State:
    """Parameters and optimiser states of PR2-AC (a pytree; every parameter leaf has a leading ``[N]`` agent axis).

    Attributes:
      actor_params: actors μ_i. conditional_params: opponent conditionals ρ_i. critic_params: critics Q_i.
      target_actor_params, target_critic_params: Polyak-averaged copies.
      actor_opt, conditional_opt, critic_opt: per-agent optax states.
      updates: ``[]`` int32 gradient updates done (critic-only pretraining updates included).
    """

    actor_params: dict
    conditional_params: dict
    critic_params: dict
    target_actor_params: dict
    target_critic_params: dict
    actor_opt: optax.OptState
    conditional_opt: optax.OptState
    critic_opt: optax.OptState
    updates: Array


class CriticFn(NamedTuple):
    """One agent's critic: ``init(key) -> params`` and ``apply(params, state [S], u [N, A]) -> []``."""

    init: callable
    apply: callable


class PR2(Agent):
    """PR2-AC for one env spec (see the module docstring); deterministic execution of μ_i(o_i).

    Opponent actions are held as joint arrays ``[N, A]`` whose row i (agent i's own) and padded entries are 0
    (``opp_mask[i]``); the joint action agent i's critic sees is that array with row i set to u_i
    (:meth:`join`). The SVGD step runs on the flattened ``[N·A]`` vectors: zero coordinates change neither the
    kernel distances nor the direction.

    Args:
      spec: the env's :class:`~svnr_jax.envs.base.EnvSpec` (N >= 2; actions in ``[-1, 1]``).
      config: :class:`PR2Config`. total_iterations: training iterations (for the α and noise schedules).
    """

    modes = ("deterministic",)
    eval_modes = ("deterministic",)
    test_mode = "deterministic"

    def __init__(self, spec: EnvSpec, config: PR2Config, total_iterations: int = 1):
        super().__init__(spec, config, total_iterations)
        c = config
        n, a, o, s = spec.num_agents, spec.action_dim, spec.obs_dim, spec.state_size
        if n < 2:
            raise ValueError(f"pr2 needs at least 2 agents (an opponent to reason about); {spec.name} has {n}")
        self.n, self.a = n, a
        # opp_mask[i] = the real action entries of every agent but i: ρ_i's output and noise live there.
        opp = np.repeat(self.action_mask[None], n, axis=0)
        opp[np.arange(n), np.arange(n)] = 0.0
        self.opp_mask = opp  # [N (agent i), N, A] numpy
        self.opp_dim = opp.reshape(n, -1).sum(-1)  # d_−i [N]
        self.actor_module = MLP(tuple(c.actor_hidden), a)
        self.conditional_module = MLP(tuple(c.conditional_hidden), n * a)
        critic_module = MLP(tuple(c.critic_hidden), 1)
        self.critic = CriticFn(
            init=lambda k: critic_module.init(k, jnp.zeros((s + n * a,), jnp.float32)),
            apply=lambda p, st, u: critic_module.apply(p, jnp.concatenate([st, u.reshape(-1)]))[0])
        self._dummy_obs = jnp.zeros((o,), jnp.float32)
        self._dummy_cond = jnp.zeros((o + a + n * a,), jnp.float32)
        self.actor_tx = per_agent(adam(c.policy_lr, c.grad_clip))
        self.conditional_tx = per_agent(adam(c.policy_lr, c.grad_clip))
        self.critic_tx = per_agent(adam(c.critic_lr, c.grad_clip))
        self.schedule = temperature_schedule(c.alpha_schedule, c.alpha_init, c.alpha_min,
                                             c.alpha_anneal_fraction * self.total_iterations)
        self.noise_sched = (optax.constant_schedule(c.exploration_noise) if c.noise_schedule == "constant" else
                            temperature_schedule(c.noise_schedule, c.exploration_noise, c.exploration_noise_min,
                                                 c.noise_anneal_fraction * self.total_iterations))
        self.num_updated = int(c.num_particles * c.kernel_update_ratio)
        self.num_fixed = c.num_particles - self.num_updated

    # ----------------------------------------------------------------------------------- pieces

    def alpha(self, iteration: Array) -> Array:
        """Temperature ``[]`` at a training iteration."""
        return jnp.asarray(self.schedule(iteration), jnp.float32)

    def noise_std(self, iteration: Array) -> Array:
        """Exploration noise std ``[]`` at a training iteration."""
        return jnp.asarray(self.noise_sched(iteration), jnp.float32)

    def actions(self, actor_params, obs: Array) -> Array:
        """Every agent's μ_i(o_i): ``[N, A]`` in ``[-1, 1]`` (padded entries 0) from ``obs [N, O]``."""
        pre = jax.vmap(self.actor_module.apply)(actor_params, obs)
        return jnp.tanh(pre) * self.action_mask

    def actor_one(self, actor_params_i, i: Array, obs_i: Array) -> Array:
        """Agent i's μ_i(o_i) ``[A]`` from its own parameter slice."""
        return jnp.tanh(self.actor_pre(actor_params_i, i, obs_i))

    def actor_pre(self, actor_params_i, i: Array, obs_i: Array) -> Array:
        """Agent i's pre-tanh actor output ``[A]`` (padded entries 0)."""
        return self.actor_module.apply(actor_params_i, obs_i) * jnp.asarray(self.action_mask)[i]

    def join(self, i: Array, own: Array, opp: Array) -> Array:
        """Joint action ``[N, A]``: the opponent array ``opp [N, A]`` (row i zero) with row i set to ``own [A]``."""
        return opp + jax.nn.one_hot(i, self.n, dtype=opp.dtype)[:, None] * own[None, :]

    def opponent_noise(self, key: PRNGKey, i: Array, num: int) -> Array:
        """ρ_i's noise ``[num, N, A]`` ~ N(0, I) on the opponents' real entries (0 elsewhere)."""
        return jax.random.normal(key, (num, self.n, self.a)) * jnp.asarray(self.opp_mask)[i]

    def conditional(self, cond_params_i, i: Array, obs_i: Array, own: Array, noise: Array) -> Array:
        """ρ_i's opponent samples ``[M, N, A]`` (row i and padded entries 0) given ``o_i [O]``, agent i's action
        ``own [A]`` and noise ``[M, N, A]``: ``tanh(MLP([o_i, u_i, ξ]))``."""
        m = noise.shape[0]
        x = jnp.concatenate([jnp.broadcast_to(obs_i, (m, obs_i.shape[0])), jnp.broadcast_to(own, (m, own.shape[0])),
                             noise.reshape(m, -1)], axis=-1)
        pre = jax.vmap(self.conditional_module.apply, (None, 0))(cond_params_i, x).reshape(m, self.n, self.a)
        return jnp.tanh(pre) * jnp.asarray(self.opp_mask)[i]

    def q(self, critic_params_i, state: Array, u: Array) -> Array:
        """Agent i's ``Q_i(s, u)`` ``[]`` (its parameter slice, one state ``[S]``, joint action ``[N, A]``)."""
        return self.critic.apply(critic_params_i, state, u)

    # ----------------------------------------------------------------------------------- critic

    def target_one(self, target_critic_i, target_actor_i, i: Array, next_obs_i: Array, next_state: Array,
                   key: PRNGKey, alpha: Array) -> Array:
        """Soft value ``V_i(s')`` ``[]`` of agent i at one next state:
        ``α log mean_j exp(Q̄_i(s', u^j)/α) + α d_−i log 2`` where ``u^j`` has row i = μ̄_i(o'_i) and uniform
        opponents (``sample_proposal(key, value_samples, action_mask)`` with row i zeroed)."""
        u, _ = sample_proposal(key, self.config.value_samples, self.action_mask)
        u = u * jnp.asarray(self.opp_mask)[i]
        own = self.actor_one(target_actor_i, i, next_obs_i)
        q = jax.vmap(lambda x: self.q(target_critic_i, next_state, self.join(i, own, x)))(u)
        log_q = -jnp.asarray(self.opp_dim, jnp.float32)[i] * jnp.log(2.0)  # uniform density on [−1, 1]^{d_−i}
        return soft_value(q, log_q, alpha)

    def target(self, ls: PR2State, batch: Transition, key: PRNGKey, alpha: Array) -> tuple[Array, Array]:
        """Critic targets ``y_i = r_s·r + γ(1−d) V_i(s')`` and soft values ``V_i(s')``, both ``[N, B]``.

        Agent i, example b uses ``jax.random.split(jax.random.split(key, N)[i], B)[b]``."""
        c = self.config
        b = batch.reward.shape[0]

        def agent(tc, ta, i, next_obs_i, k):
            keys = jax.random.split(k, b)
            return jax.vmap(self.target_one, (None, None, None, 0, 0, 0, None))(
                tc, ta, i, next_obs_i, batch.next_state, keys, alpha)

        v = jax.vmap(agent, (0, 0, 0, 1, 0))(ls.target_critic_params, ls.target_actor_params, jnp.arange(self.n),
                                             batch.next_obs, jax.random.split(key, self.n))
        return critic_target(c.reward_scale * batch.reward[None], batch.terminal[None], v, c.gamma), v

    def critic_loss(self, critic_params, ls: PR2State, batch: Transition, key: PRNGKey, alpha: Array
                    ) -> tuple[Array, dict]:
        """``Σ_i ½ mean_b (y_ib − Q_i(s_b, u_b))²`` (targets from ``ls``'s target nets) and its metrics."""
        y, v = self.target(ls, batch, key, alpha)
        q = jax.vmap(lambda p: jax.vmap(self.q, (None, 0, 0))(p, batch.state, batch.action))(critic_params)  # [N, B]
        per = 0.5 * jnp.mean((y - q) ** 2, axis=1)
        return per.sum(), {"critic_loss": per.mean(), "q_mean": q.mean(), "target_mean": y.mean(),
                           "soft_value_mean": v.mean()}

    # ----------------------------------------------------------------------------------- opponent conditional

    def svgd_step(self, cond_params_i, critic_params_i, i: Array, obs_i: Array, own: Array, state: Array,
                  key: PRNGKey, alpha: Array) -> tuple[Array, Array, Array, Array]:
        """ρ_i's amortized SVGD step at one state for agent i's (buffer) action ``own [A]``.

        M particles ``u_−i = ρ_i(o_i, own, ξ)`` (:meth:`opponent_noise` with ``key``); the first ``num_fixed`` are the
        fixed kernel particles (stop-gradient), the rest are updated. Score at the fixed ones:
        ``∇_{u_−i} [Q_i(s, join(own, u_−i))/α + Σ log(1 − u_−i² + 1e-6)]`` on the opponents' real entries. Direction
        ``Δ`` at the updated ones: :func:`svnr_jax.kernels.svgd_direction` on the flattened ``[N·A]`` vectors.

        Returns:
          ``(fixed [M_F, N, A], scores [M_F, N, A], updated [M_U, N, A] (differentiable), Δ [M_U, N, A])``.
        """
        mask = jnp.asarray(self.opp_mask)[i]
        u = self.conditional(cond_params_i, i, obs_i, own, self.opponent_noise(key, i, self.config.num_particles))
        fixed, updated = jax.lax.stop_gradient(u[:self.num_fixed]), u[self.num_fixed:]

        def log_p(x):
            return self.q(critic_params_i, state, self.join(i, own, x)) / alpha + tanh_correction(x * mask)

        scores = jax.vmap(jax.grad(log_p))(fixed) * mask
        flat = lambda x: x.reshape(x.shape[0], -1)  # noqa: E731
        delta = svgd_direction(flat(fixed), flat(scores), queries=flat(jax.lax.stop_gradient(updated)))
        delta = jax.lax.stop_gradient(delta.reshape(updated.shape)) * mask
        return fixed, scores, updated, delta

    def conditional_loss(self, cond_params, critic_params, batch: Transition, key: PRNGKey, alpha: Array
                         ) -> tuple[Array, dict]:
        """Sum over agents of ρ_i's surrogate ``−mean_b (1/M_U) Σ_m ⟨stop_grad(Δ^m), u^m_−i⟩`` (conditioned on the
        buffer's u_i); its gradient pulls the SVGD direction back through ρ_i. Agent i, example b uses
        ``split(split(key, N)[i], B)[b]``."""
        b = batch.reward.shape[0]

        def agent(cp, qp, i, obs_i, own_i, k):
            def one(o, a, s, kk):
                _, _, updated, delta = self.svgd_step(cp, qp, i, o, a, s, kk, alpha)
                return surrogate_policy_loss(delta, updated), jnp.mean(
                    jnp.linalg.norm(delta.reshape(delta.shape[0], -1), axis=-1))

            losses, norms = jax.vmap(one)(obs_i, own_i, batch.state, jax.random.split(k, b))
            return losses.mean(), norms.mean()

        per, norms = jax.vmap(agent, (0, 0, 0, 1, 1, 0))(cond_params, critic_params, jnp.arange(self.n), batch.obs,
                                                        batch.action, jax.random.split(key, self.n))
        return per.sum(), {"conditional_loss": per.mean(), "svgd_norm": norms.mean()}

    # ----------------------------------------------------------------------------------- actor

    def actor_objective(self, actor_params_i, cond_params_i, critic_params_i, i: Array, obs_i: Array, own: Array,
                        state: Array, key: PRNGKey, alpha: Array) -> Array:
        """Agent i's soft objective at one state: ``α log mean_j exp(Q_i(s, join(μ_i(o_i), u^j_−i))/α)`` with
        ``u^j_−i ~ ρ_i(· | o_i, own)`` (``value_samples`` of them, noise from ``key``; ``own`` = the buffer's u_i,
        so the samples are constants for μ_i: the gradient flows through u_i into Q_i only)."""
        noise = self.opponent_noise(key, i, self.config.value_samples)
        opp = jax.lax.stop_gradient(self.conditional(cond_params_i, i, obs_i, own, noise))
        mine = self.actor_one(actor_params_i, i, obs_i)
        q = jax.vmap(lambda x: self.q(critic_params_i, state, self.join(i, mine, x)))(opp)
        return soft_value(q, jnp.zeros(()), alpha)

    def actor_loss(self, actor_params, cond_params, critic_params, batch: Transition, key: PRNGKey, alpha: Array
                   ) -> tuple[Array, dict]:
        """``Σ_i [−mean_b`` :meth:`actor_objective` ``+ action_reg · mean_{b, real a} pre-tanh²]`` (agent i, example b
        uses ``split(split(key, N)[i], B)[b]``)."""
        b = batch.reward.shape[0]

        mask = jnp.asarray(self.action_mask)

        def agent(ap, cp, qp, i, obs_i, own_i, k):
            obj = jax.vmap(self.actor_objective, (None, None, None, None, 0, 0, 0, 0, None))(
                ap, cp, qp, i, obs_i, own_i, batch.state, jax.random.split(k, b), alpha)
            pre = jax.vmap(self.actor_pre, (None, None, 0))(ap, i, obs_i)  # [B, A]
            reg = jnp.sum(pre**2) / (b * jnp.maximum(mask[i].sum(), 1.0))
            return -obj.mean() + self.config.action_reg * reg, (obj.mean(), reg)

        per, (obj, reg) = jax.vmap(agent, (0, 0, 0, 0, 1, 1, 0))(
            actor_params, cond_params, critic_params, jnp.arange(self.n), batch.obs, batch.action,
            jax.random.split(key, self.n))
        return per.sum(), {"policy_loss": per.mean(), "policy_q": obj.mean(), "action_reg_term": reg.mean()}

    # ----------------------------------------------------------------------------------- learning

    def init(self, key: PRNGKey) -> PR2State:
        """Fresh parameters; the targets start as copies."""
        k_a, k_r, k_q = jax.random.split(key, 3)
        n = self.n
        ap = jax.vmap(lambda k: self.actor_module.init(k, self._dummy_obs))(jax.random.split(k_a, n))
        rp = jax.vmap(lambda k: self.conditional_module.init(k, self._dummy_cond))(jax.random.split(k_r, n))
        qp = jax.vmap(self.critic.init)(jax.random.split(k_q, n))
        return PR2State(ap, rp, qp, ap, qp, self.actor_tx.init(ap), self.conditional_tx.init(rp),
                        self.critic_tx.init(qp), jnp.zeros((), jnp.int32))

    def _polyak(self, new, old, updates: Array):
        """``τ·new + (1−τ)·old`` when ``updates`` is a multiple of ``target_update_interval``, else ``old``."""
        c = self.config
        due = updates % c.target_update_interval == 0
        moved = optax.incremental_update(new, old, c.tau)
        return jax.tree.map(lambda m, o: jnp.where(due, m, o), moved, old)

    def _critic_step(self, ls: PR2State, batch: Transition, key: PRNGKey, alpha: Array) -> tuple[PR2State, dict]:
        """Critic step (targets from ``ls``'s target nets), the update counter, and the target-critic Polyak step."""
        qp, qopt, aux = gradient_step(self.critic_loss, ls.critic_params, ls.critic_opt, self.critic_tx, ls, batch,
                                      key, alpha)
        updates = ls.updates + 1
        ls = ls.replace(critic_params=qp, critic_opt=qopt, updates=updates,
                        target_critic_params=self._polyak(qp, ls.target_critic_params, updates))
        return ls, aux

    def update(self, ls: PR2State, batch: Transition, key: PRNGKey, iteration: Array) -> tuple[PR2State, dict]:
        """One update at α(iteration): the critic, ρ's SVGD and the actor steps, all computed from the parameters
        before this update (the reference runs them in one ``sess.run``), then the Polyak target steps."""
        alpha = self.alpha(iteration)
        k_q, k_r, k_a = jax.random.split(key, 3)
        qp = jax.lax.stop_gradient(ls.critic_params)
        rp, ropt, r_aux = gradient_step(self.conditional_loss, ls.conditional_params, ls.conditional_opt,
                                        self.conditional_tx, qp, batch, k_r, alpha)
        ap, aopt, a_aux = gradient_step(self.actor_loss, ls.actor_params, ls.actor_opt, self.actor_tx,
                                        jax.lax.stop_gradient(ls.conditional_params), qp, batch, k_a, alpha)
        ls, q_aux = self._critic_step(ls, batch, k_q, alpha)
        ls = ls.replace(conditional_params=rp, conditional_opt=ropt, actor_params=ap, actor_opt=aopt,
                        target_actor_params=self._polyak(ap, ls.target_actor_params, ls.updates))
        return ls, {**q_aux, **r_aux, **a_aux, "alpha": alpha, "exploration_noise": self.noise_std(iteration)}

    def pretrain(self, ls: PR2State, batch: Transition, key: PRNGKey) -> tuple[PR2State, dict]:
        """One critic-only update (and target-critic step) at α(0); actors, conditionals and target actors unchanged."""
        alpha = self.alpha(0)
        ls, aux = self._critic_step(ls, batch, key, alpha)
        return ls, {**aux, "alpha": alpha}

    # ----------------------------------------------------------------------------------- execution

    def act(self, ls: PR2State, obs: Array, state: Array, key: PRNGKey, t: Array, iteration: Array,
            mode: str = EXPLORE) -> Array:
        """Joint action ``[N, A]``: ``μ_i(o_i)`` per agent (deterministic) or, in :data:`EXPLORE`,
        ``μ(o) + σ(iteration)·N(0, I)`` with the step noise drawn from ``fold_in(key, t)``, clipped to ``[-1, 1]``;
        padded entries 0. ``state`` unused; ρ is never executed."""
        del state
        self.check_mode(mode)
        u = self.actions(ls.actor_params, obs)
        if mode != EXPLORE:
            return u
        return gaussian_exploration(u, key, t, self.noise_std(iteration), self.action_mask)


register("pr2", PR2Config, PR2)

__all__ = ["PR2", "PR2Config", "PR2State"]
