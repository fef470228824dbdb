"""ROMMEO-AC (Tian et al., IJCAI 2019, arXiv 1905.08087): a Regularized Opponent Model with Maximum Entropy Objective.

Every agent i learns, from its own observation o_i,

* an opponent model ρ_i(u_-i | o_i) (what it expects its teammates to do),
* a learned opponent prior P_i(u_-i | o_i), fitted by maximum likelihood to the teammates' actions in the buffer,
* a conditional policy π_i(u_i | o_i, u_-i) (its action given the teammates' actions),
* a soft critic Q_i(s, u_i, u_-i) with a Polyak target Q̄_i.

All three distributions are tanh-squashed diagonal Gaussians (``u = tanh(x)``, ``x ~ N(μ, σ²)``, σ = exp(clip(log σ,
−20, 2)) + 0.01, density with the log|det| tanh correction Σ log(1 − tanh(x)² + 1e-6)). One update, all four steps from
the parameters before it (the reference runs them in one ``sess.run``), then the Polyak step of the target critic:

* prior:    ``L_P = −mean log P(u_-i^buffer | o_i) + 1.0 · reg(P)``
* opponent: ``L_ρ = mean[log ρ(u_-i|o_i) − log P(u_-i|o_i) − Q(s, u_i, u_-i) + α log π(u_i|o_i, u_-i)] + 1e-3 · reg(ρ)``
  with ``u_-i ~ ρ`` and ``u_i ~ π(·|o_i, u_-i)`` reparameterised (P, π, Q held fixed),
* policy:   ``L_π = mean[α log π(u_i|o_i, u_-i) − Q(s, u_i, u_-i)] + 1e-3 · reg(π)``, ``u_-i ~ ρ`` (ρ fixed),
* critic:   ``½ mean (y − Q(s, u^buffer))²``, ``y = r_s·r + γ(1−d)[Q̄(s', u'_i, u'_-i) − α log π(u'_i|o'_i, u'_-i)
  − log ρ(u'_-i|o'_i) + log P(u'_-i|o'_i)]`` with ``u'_-i ~ ρ``, ``u'_i ~ π`` (current ρ, π, P);

``reg(·) = ½ mean log σ² + ½ mean μ²`` over the batch and the real action entries.
Execution (decentralised, o_i only, as the reference): agent i samples u_-i ~ ρ_i(·|o_i), then u_i ~ π_i(·|o_i, u_-i)
and executes u_i.

Reference (read for facts, not copied): ml3705454/mapr2 (maci) ``maci/learners/rommeo_ac.py`` (the four losses, the
target, Polyak τ every ``td_target_update_interval`` updates), ``maci/get_agents.py`` ``rom_agent`` (networks and the
values used for the paper's games: hidden 100-100, lr 1e-2, γ 0.95, τ 0.01, reward scale 1),
``maci/policies/gaussian_policy.py`` (``GaussianPolicy`` = ρ, ``GaussianConditionalPolicy`` = π on [o_i, u_-i], both
tanh-squashed, reg 1e-3), ``maci/distributions/normal.py`` (log σ clip [−20, 2], σ + 0.01, the regulariser),
``experiment/run_rommeo.py`` (α = 0.1 + 500 e^{−0.1 (step − 10)}, batch 512, one update per env step; the prior is
fitted to the most recent ``batch_size`` transitions), ``maci/misc/sampler.py`` (execution: sampled ρ, then sampled π).

[ours]: the critic sees the global state s (reference: agent i's own o_i); the prior is fitted on the update's uniform
batch (reference: the last ``batch_size`` transitions; our agent contract hands ``update`` one uniform batch); ρ and P
are over all N−1 teammates' (padded) actions (reference: one opponent of the agent's own action size); log P of a
ρ-sample is evaluated at its pre-tanh value (reference: atanh(tanh(x)), the same value unless tanh saturates); the
buffer's teammate actions are clipped to ±(1 − 1e-6) before atanh (reference: none); the target critic starts as a copy
(reference: one Polyak step from an independent init); every loss is a batch mean (reference: the opponent loss is
summed over the batch because one term is not reduced — the same direction under Adam); mode ``mean`` (not in the
reference).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import ClassVar, NamedTuple

import flax.linen as nn
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
    per_agent,
    register,
    temperature_schedule,
)
from svnr_jax.envs.base import EnvSpec
from svnr_jax.networks import MLP, make_critic
from svnr_jax.replay import Transition
from svnr_jax.types import Array, PRNGKey

#: Clip of the networks' log σ output (reference maci/distributions/normal.py LOG_SIG_CAP_MIN/MAX).
LOG_SIG_MIN, LOG_SIG_MAX = -20.0, 2.0
#: Added to exp(log σ) (reference normal.py: ``scale_diag=tf.exp(log_sig) + 0.01``).
MIN_SCALE = 0.01
#: ε inside the tanh correction log(1 − tanh(x)² + ε) (reference EPS = 1e-6).
TANH_EPS = 1e-6
#: Buffer actions are clipped to ±(1 − this) before atanh [ours].
ATANH_CLIP = 1e-6


# ------------------------------------------------------------------------------------------ tanh-Gaussian


def gaussian_scale(log_sig: Array) -> Array:
    """σ = exp(clip(log σ, −20, 2)) + 0.01 (the reference's parameterisation)."""
    return jnp.exp(jnp.clip(log_sig, LOG_SIG_MIN, LOG_SIG_MAX)) + MIN_SCALE


def tanh_gaussian_log_prob(raw: Array, mu: Array, scale: Array, mask: Array) -> Array:
    """Log-density ``[...]`` of ``u = tanh(raw)`` under a tanh-squashed diagonal Gaussian, summed over the last axis.

    ``log p(u) = Σ_d mask_d [log N(raw_d; μ_d, σ_d²) − log(1 − tanh(raw_d)² + 1e-6)]`` (change of variables
    ``u = tanh(x)``: ``|du/dx| = 1 − tanh(x)²``; the ε as in the reference). Entries with ``mask = 0`` (padded actions)
    do not count.

    Args:
      raw: pre-tanh values x ``[..., D]``. mu, scale: the Gaussian's mean and std ``[..., D]``. mask: ``[D]`` or
        broadcastable, 1 for real entries.
    """
    z = (raw - mu) / scale
    log_normal = -0.5 * z * z - jnp.log(scale) - 0.5 * jnp.log(2.0 * jnp.pi)
    correction = jnp.log(1.0 - jnp.tanh(raw) ** 2 + TANH_EPS)
    return jnp.sum(mask * (log_normal - correction), axis=-1)


def tanh_gaussian_sample(mu: Array, scale: Array, noise: Array, mask: Array) -> tuple[Array, Array, Array]:
    """Reparameterised sample ``x = μ + σ·noise``, ``u = tanh(x)·mask`` and its log-density.

    Returns:
      ``(u [..., D] (padded entries 0), x [..., D], log p(u) [...])``.
    """
    raw = mu + scale * noise
    return jnp.tanh(raw) * mask, raw, tanh_gaussian_log_prob(raw, mu, scale, mask)


def atanh_clipped(u: Array) -> Array:
    """``atanh(clip(u, −1 + 1e-6, 1 − 1e-6))``: the pre-tanh value of a buffer action [ours: the clip]."""
    return jnp.arctanh(jnp.clip(u, -1.0 + ATANH_CLIP, 1.0 - ATANH_CLIP))


def gaussian_reg(mu: Array, log_sig: Array, mask: Array) -> Array:
    """``½ mean log σ² + ½ mean μ²`` over every leading axis and the real entries (reference normal.py ``reg_loss_t``
    without its weight; log σ as clipped)."""
    mask = jnp.broadcast_to(mask, mu.shape)
    count = jnp.maximum(jnp.sum(mask), 1.0)
    ls = jnp.clip(log_sig, LOG_SIG_MIN, LOG_SIG_MAX)
    return 0.5 * jnp.sum(mask * ls**2) / count + 0.5 * jnp.sum(mask * mu**2) / count


class GaussianNet(NamedTuple):
    """Per-agent Gaussian heads stacked on a leading agent axis.

    Attributes:
      init: ``key -> params`` (every leaf with a leading ``[N]`` axis).
      apply: ``(agent_params, x [in]) -> (μ [out], log σ [out])`` (log σ unclipped; :func:`gaussian_scale` clips).
    """

    init: callable
    apply: callable


def make_gaussian_net(num_agents: int, in_dim: int, out_dim: int, hidden: tuple[int, ...],
                      last_hidden_activation: Callable[[Array], Array] = nn.relu) -> GaussianNet:
    """N ReLU MLPs ``x -> (μ, log σ)`` (reference: ``Normal`` with an MLP of ``hidden`` and 2·out outputs);
    ``last_hidden_activation`` replaces the last hidden layer's ReLU (HASAC: tanh, as HARL)."""
    module = MLP(tuple(hidden), 2 * out_dim, last_hidden_activation=last_hidden_activation)

    def init(key: PRNGKey):
        return jax.vmap(lambda k: module.init(k, jnp.zeros((in_dim,), jnp.float32)))(jax.random.split(key, num_agents))

    def apply(params, x: Array) -> tuple[Array, Array]:
        out = module.apply(params, x)
        return out[:out_dim], out[out_dim:]

    return GaussianNet(init, apply)


# ------------------------------------------------------------------------------------------ config


@dataclasses.dataclass(frozen=True)
class ROMMEOConfig(AlgoConfig):
    """Hyperparameters of ROMMEO-AC; defaults are those of the reference's ``rom_agent`` (maci/get_agents.py) and
    ``experiment/run_rommeo.py`` (ml3705454/mapr2), the values of the paper's differential game, unless marked."""

    choices: ClassVar[dict[str, tuple[str, ...]]] = {"alpha_schedule": SCHEDULES}

    policy_hidden: tuple[int, ...] = (100, 100)
    """Hidden sizes of each agent's conditional policy π_i(u_i | o_i, u_-i) (reference: hidden_size M = 100, 2
    layers)."""
    opponent_hidden: tuple[int, ...] = (100, 100)
    """Hidden sizes of each agent's opponent model ρ_i(u_-i | o_i) and of its prior P_i (reference: 100, 100)."""
    critic_hidden: tuple[int, ...] = (100, 100)
    """Hidden sizes of each agent's critic Q_i(s, u_i, u_-i) (reference: 100, 100)."""
    gamma: float = 0.95
    """Discount factor γ (reference rom_agent discount 0.95; the differential game ends after one step)."""
    tau: float = 0.01
    """Polyak rate of the target critics (reference tau 0.01)."""
    target_update_interval: int = 1
    """The Polyak step is taken every this many updates (reference td_target_update_interval 1)."""
    policy_lr: float = 1e-2
    """Adam learning rate of π_i, ρ_i and the prior P_i (reference rom_agent policy_lr 1e-2; class default 1e-3)."""
    critic_lr: float = 1e-2
    """Adam learning rate of the critics (reference rom_agent qf_lr 1e-2; class default 1e-3)."""
    grad_clip: float = 0.0
    """[ours] Per-agent global gradient-norm clip of every optimiser; 0 (default, as the reference) disables it."""
    reward_scale: float = 1.0
    """Rewards are multiplied by this in the critic target (reference rom_agent reward_scale 1)."""
    policy_reg: float = 1e-3
    """Weight of ½(mean log σ² + mean μ²) of π_i and ρ_i in their losses (reference GaussianPolicy reg 1e-3)."""
    prior_reg: float = 1.0
    """Weight of the same regulariser of the prior P_i in its likelihood loss (reference: ``Normal(reg=True)``, = 1)."""
    alpha_init: float = 500.0
    """Temperature α (weight of log π; the KL(ρ‖P) weight is 1) at the start (reference run_rommeo.py: 0.1 + 500)."""
    alpha_min: float = 0.1
    """Temperature α at the end of the schedule (reference run_rommeo.py: 0.1)."""
    alpha_schedule: str = "exponential"
    """Temperature schedule: constant (alpha_init), linear or exponential from alpha_init to alpha_min (reference:
    0.1 + 500 e^{−0.1 t}, near 0.1 after ~100 of its 10,000 updates)."""
    alpha_anneal_fraction: float = 0.01
    """Fraction of the training iterations over which α reaches alpha_min, then held ([ours]: the reference's first
    ~1 %)."""

    def check(self) -> None:
        super().check()
        self.positive("policy_lr", "critic_lr", "reward_scale", "alpha_init", "alpha_min")
        self.positive_int("target_update_interval")
        self.unit_interval("gamma")
        self.unit_interval("tau", low_open=True)
        self.unit_interval("alpha_anneal_fraction", low_open=True)
        for name in ("grad_clip", "policy_reg", "prior_reg"):
            v = getattr(self, name)
            self.require(name, is_num(v) and v >= 0, "a finite number >= 0")
        self.require("alpha_schedule", self.alpha_schedule in SCHEDULES, f"one of {list(SCHEDULES)}")
        self.require("alpha_min", self.alpha_min <= self.alpha_init, f"a number <= alpha_init={self.alpha_init}")


@struct.dataclass
class ROMMEOState:
    """Parameters and optimiser states of ROMMEO (a pytree; every parameter leaf has a leading ``[N]`` agent axis).

    Attributes:
      pi_params: π_i. rho_params: ρ_i. prior_params: P_i. critic_params: Q_i (then ``[1]``). target_params: Q̄_i.
      pi_opt, rho_opt, prior_opt, critic_opt: per-agent optax states.
      updates: ``[]`` int32 gradient updates done (critic-only pretraining updates included).
    """

    pi_params: dict
    rho_params: dict
    prior_params: dict
    critic_params: dict
    target_params: dict
    pi_opt: optax.OptState
    rho_opt: optax.OptState
    prior_opt: optax.OptState
    critic_opt: optax.OptState
    updates: Array


class ROMMEO(Agent):
    """ROMMEO-AC for one env spec (see the module docstring).

    Execution modes (agent i computes its action from o_i, the episode key and t alone; its noise comes from
    ``fold_in(fold_in(key, t), i)``):

    * ``"sample"`` (the reference's execution, also :data:`EXPLORE`): u_-i ~ ρ_i(·|o_i), then u_i ~ π_i(·|o_i, u_-i).
    * ``"mean"`` [ours]: u_-i = tanh(μ_ρ(o_i)), u_i = tanh(μ_π(o_i, u_-i)).

    Args:
      spec: the env's :class:`~svnr_jax.envs.base.EnvSpec` (N >= 2; actions in ``[-1, 1]``).
      config: :class:`ROMMEOConfig`. total_iterations: training iterations (for the temperature schedule).
    """

    modes = ("sample", "mean")
    eval_modes = ("sample", "mean")
    test_mode = "sample"

    def __init__(self, spec: EnvSpec, config: ROMMEOConfig, total_iterations: int = 1):
        super().__init__(spec, config, total_iterations)
        c = config
        n, a, o = spec.num_agents, spec.action_dim, spec.obs_dim
        if n < 2:
            raise ValueError(f"rommeo models the teammates of each agent: it needs >= 2 agents, got {n}")
        self.others = np.array([[j for j in range(n) if j != i] for i in range(n)], np.int32)  # [N, N-1]
        self.opp_dim = (n - 1) * a
        self.opp_mask = self.action_mask[self.others].reshape(n, self.opp_dim)  # [N, (N-1)·A]
        self.pi_net = make_gaussian_net(n, o + self.opp_dim, a, c.policy_hidden)
        self.rho_net = make_gaussian_net(n, o, self.opp_dim, c.opponent_hidden)
        self.prior_net = make_gaussian_net(n, o, self.opp_dim, c.opponent_hidden)
        self.critic = make_critic(spec.state_size, n, a, hidden=c.critic_hidden)
        self.policy_tx = per_agent(adam(c.policy_lr, c.grad_clip))
        self.critic_tx = per_agent(adam(c.critic_lr, c.grad_clip))
        self.schedule = temperature_schedule(c.alpha_schedule, c.alpha_init, c.alpha_min,
                                             c.alpha_anneal_fraction * self.total_iterations)

    # ----------------------------------------------------------------------------------- pieces

    def alpha(self, iteration: Array) -> Array:
        """Temperature ``[]`` at a training iteration."""
        return jnp.asarray(self.schedule(iteration), jnp.float32)

    def joint(self, i: Array, u_i: Array, u_opp: Array) -> Array:
        """Joint action ``[N, A]`` from agent i's ``u_i [A]`` and its teammates' ``u_opp [(N-1)·A]`` (agent order)."""
        n, a = self.spec.num_agents, self.spec.action_dim
        others = jnp.asarray(self.others)[i]
        return jnp.zeros((n, a), u_i.dtype).at[others].set(u_opp.reshape(n - 1, a)).at[i].set(u_i)

    def teammates(self, i: Array, u: Array) -> Array:
        """Teammates' actions ``[..., (N-1)·A]`` of agent i from joint actions ``u [..., N, A]``."""
        return jnp.take(u, jnp.asarray(self.others)[i], axis=-2).reshape(*u.shape[:-2], self.opp_dim)

    def q(self, critic_params_i, state: Array, u: Array) -> Array:
        """Agent i's critic ``Q_i(s, u)`` ``[]`` (``critic_params_i``: its slice)."""
        return self.critic.apply(critic_params_i, state, u)[0]

    def opponent_sample(self, rho_i, i: Array, obs_i: Array, noise: Array) -> tuple[Array, Array, Array]:
        """``u_-i ~ ρ_i(·|o_i)`` for one example: ``(u_opp [(N-1)·A], pre-tanh x, log ρ)`` (noise ``[(N-1)·A]``)."""
        mu, log_sig = self.rho_net.apply(rho_i, obs_i)
        return tanh_gaussian_sample(mu, gaussian_scale(log_sig), noise, jnp.asarray(self.opp_mask)[i])

    def prior_log_prob(self, prior_i, i: Array, obs_i: Array, raw_opp: Array) -> Array:
        """``log P_i(tanh(raw_opp) | o_i)`` ``[]`` for one example (``raw_opp``: pre-tanh teammates' actions)."""
        mu, log_sig = self.prior_net.apply(prior_i, obs_i)
        return tanh_gaussian_log_prob(raw_opp, mu, gaussian_scale(log_sig), jnp.asarray(self.opp_mask)[i])

    def own_sample(self, pi_i, i: Array, obs_i: Array, u_opp: Array, noise: Array) -> tuple[Array, Array, Array]:
        """``u_i ~ π_i(·|o_i, u_-i)`` for one example: ``(u_i [A], pre-tanh x, log π)`` (noise ``[A]``)."""
        mu, log_sig = self.pi_net.apply(pi_i, jnp.concatenate([obs_i, u_opp]))
        return tanh_gaussian_sample(mu, gaussian_scale(log_sig), noise, jnp.asarray(self.action_mask)[i])

    def noises(self, key: PRNGKey, lead: tuple[int, ...]) -> tuple[Array, Array]:
        """Standard normal noises of ρ ``[*lead, N, (N-1)·A]`` and π ``[*lead, N, A]`` (0 on padded entries)."""
        k_rho, k_pi = jax.random.split(key)
        n, a = self.spec.num_agents, self.spec.action_dim
        eps_rho = jax.random.normal(k_rho, (*lead, n, self.opp_dim)) * self.opp_mask
        eps_pi = jax.random.normal(k_pi, (*lead, n, a)) * self.action_mask
        return eps_rho, eps_pi

    # ----------------------------------------------------------------------------------- losses (one agent)

    def prior_loss_i(self, prior_i, i: Array, obs_i: Array, action: Array) -> tuple[Array, dict]:
        """Maximum likelihood of the teammates' buffer actions: ``−mean_b log P_i(u_-i^b | o_i^b) + prior_reg·reg``.

        Args: obs_i ``[B, O]``; action ``[B, N, A]`` (the buffer's joint actions).
        """
        raw = atanh_clipped(self.teammates(i, action))  # [B, (N-1)·A]
        mu, log_sig = jax.vmap(self.prior_net.apply, (None, 0))(prior_i, obs_i)
        mask = jnp.asarray(self.opp_mask)[i]
        log_p = tanh_gaussian_log_prob(raw, mu, gaussian_scale(log_sig), mask)
        loss = -jnp.mean(log_p) + self.config.prior_reg * gaussian_reg(mu, log_sig, mask)
        return loss, {"prior_log_prob": jnp.mean(log_p)}

    def opponent_loss_i(self, rho_i, pi_i, prior_i, critic_i, i: Array, obs_i: Array, state: Array,
                        eps_rho: Array, eps_pi: Array, alpha: Array) -> tuple[Array, dict]:
        """``mean_b[log ρ − log P − Q(s, u_i, u_-i) + α log π(u_i|o_i, u_-i)] + policy_reg·reg(ρ)``, u_-i ~ ρ and
        u_i ~ π(·|o_i, u_-i) reparameterised by ``eps_rho [B, (N-1)·A]``, ``eps_pi [B, A]`` (P, π, Q fixed: only the
        gradient with respect to ``rho_i`` is used).

        Args: obs_i ``[B, O]``; state ``[B, S]``; alpha ``[]``.
        """
        def one(o, s, er, ep):
            mu, log_sig = self.rho_net.apply(rho_i, o)
            u_opp, raw_opp, log_rho = tanh_gaussian_sample(mu, gaussian_scale(log_sig), er,
                                                           jnp.asarray(self.opp_mask)[i])
            log_p = self.prior_log_prob(prior_i, i, o, raw_opp)
            u_i, _, log_pi = self.own_sample(pi_i, i, o, u_opp, ep)
            q = self.q(critic_i, s, self.joint(i, u_i, u_opp))
            return log_rho, log_p, log_pi, q, mu, log_sig

        log_rho, log_p, log_pi, q, mu, log_sig = jax.vmap(one)(obs_i, state, eps_rho, eps_pi)
        loss = jnp.mean(log_rho - log_p - q + alpha * log_pi)
        loss = loss + self.config.policy_reg * gaussian_reg(mu, log_sig, jnp.asarray(self.opp_mask)[i])
        return loss, {"log_rho": jnp.mean(log_rho), "log_prior": jnp.mean(log_p),
                      "kl_rho_prior": jnp.mean(log_rho - log_p)}

    def policy_loss_i(self, pi_i, rho_i, critic_i, i: Array, obs_i: Array, state: Array, eps_rho: Array,
                      eps_pi: Array, alpha: Array) -> tuple[Array, dict]:
        """``mean_b[α log π(u_i|o_i, u_-i) − Q(s, u_i, u_-i)] + policy_reg·reg(π)`` with u_-i ~ ρ (fixed) and
        u_i ~ π reparameterised (same noise layout as :meth:`opponent_loss_i`)."""
        def one(o, s, er, ep):
            u_opp, _, _ = self.opponent_sample(rho_i, i, o, er)
            u_opp = jax.lax.stop_gradient(u_opp)
            mu, log_sig = self.pi_net.apply(pi_i, jnp.concatenate([o, u_opp]))
            u_i, _, log_pi = tanh_gaussian_sample(mu, gaussian_scale(log_sig), ep, jnp.asarray(self.action_mask)[i])
            return log_pi, self.q(critic_i, s, self.joint(i, u_i, u_opp)), mu, log_sig

        log_pi, q, mu, log_sig = jax.vmap(one)(obs_i, state, eps_rho, eps_pi)
        loss = jnp.mean(alpha * log_pi - q)
        loss = loss + self.config.policy_reg * gaussian_reg(mu, log_sig, jnp.asarray(self.action_mask)[i])
        return loss, {"log_pi": jnp.mean(log_pi), "policy_q": jnp.mean(q)}

    def target_i(self, target_i, rho_i, pi_i, prior_i, i: Array, batch: Transition, eps_rho: Array, eps_pi: Array,
                 alpha: Array) -> tuple[Array, Array]:
        """Agent i's critic targets ``y [B]`` and soft next values ``[B]``:
        ``y = r_s·r + γ(1−d)[Q̄_i(s', u'_i, u'_-i) − α log π(u'_i|o'_i, u'_-i) − log ρ(u'_-i|o'_i) + log P(u'_-i|o'_i)]``
        with u'_-i ~ ρ_i(·|o'_i) by ``eps_rho [B, (N-1)·A]`` and u'_i ~ π_i by ``eps_pi [B, A]``."""
        c = self.config

        def one(o, s, er, ep):
            u_opp, raw_opp, log_rho = self.opponent_sample(rho_i, i, o, er)
            log_p = self.prior_log_prob(prior_i, i, o, raw_opp)
            u_i, _, log_pi = self.own_sample(pi_i, i, o, u_opp, ep)
            return self.q(target_i, s, self.joint(i, u_i, u_opp)) - alpha * log_pi - log_rho + log_p

        soft = jax.vmap(one)(batch.next_obs[:, i], batch.next_state, eps_rho, eps_pi)
        y = c.reward_scale * batch.reward + c.gamma * (1.0 - batch.terminal) * soft
        return jax.lax.stop_gradient(y), soft

    def critic_loss_i(self, critic_i, target_i, rho_i, pi_i, prior_i, i: Array, batch: Transition, eps_rho: Array,
                      eps_pi: Array, alpha: Array) -> tuple[Array, dict]:
        """``½ mean_b (y_b − Q_i(s_b, u_b))²`` with the buffer's joint action ``u_b``."""
        y, soft = self.target_i(target_i, rho_i, pi_i, prior_i, i, batch, eps_rho, eps_pi, alpha)
        q = jax.vmap(lambda s, u: self.q(critic_i, s, u))(batch.state, batch.action)
        loss = 0.5 * jnp.mean((y - q) ** 2)
        return loss, {"q_mean": jnp.mean(q), "target_mean": jnp.mean(y), "soft_value_mean": jnp.mean(soft)}

    # ----------------------------------------------------------------------------------- learning

    def init(self, key: PRNGKey) -> ROMMEOState:
        """Fresh parameters; the target critics start as copies of the critics."""
        k_pi, k_rho, k_prior, k_crit = jax.random.split(key, 4)
        n = self.spec.num_agents
        pp, rp, pr = self.pi_net.init(k_pi), self.rho_net.init(k_rho), self.prior_net.init(k_prior)
        cp = jax.vmap(self.critic.init)(jax.random.split(k_crit, n))
        return ROMMEOState(pp, rp, pr, cp, cp, self.policy_tx.init(pp), self.policy_tx.init(rp),
                           self.policy_tx.init(pr), self.critic_tx.init(cp), jnp.zeros((), jnp.int32))

    def _all_agents(self, loss_i, argnum_axes: tuple) -> callable:
        """``params -> (Σ_i loss_i, aux averaged over agents)`` vmapped over the agent axis (each agent's parameters
        reach only its own loss, so the gradient of the sum is every agent's own gradient)."""
        def total(*args):
            losses, aux = jax.vmap(loss_i, argnum_axes)(*args)
            return jnp.sum(losses), {k: jnp.mean(v) for k, v in aux.items()} | {"_per_agent": losses}
        return total

    def _critic_step(self, ls: ROMMEOState, batch: Transition, key: PRNGKey, alpha: Array,
                     sg: ROMMEOState) -> tuple[ROMMEOState, dict]:
        """Critic step (targets from ``sg``'s ρ, π, P), then the Polyak target step every ``target_update_interval``."""
        c = self.config
        n, b = self.spec.num_agents, batch.reward.shape[0]
        eps_rho, eps_pi = self.noises(key, (b,))
        agents = jnp.arange(n)
        loss = self._all_agents(self.critic_loss_i, (0, 0, 0, 0, 0, 0, None, 1, 1, None))
        cp, copt, aux = gradient_step(loss, ls.critic_params, ls.critic_opt, self.critic_tx, ls.target_params,
                                      sg.rho_params, sg.pi_params, sg.prior_params, agents, batch, eps_rho, eps_pi,
                                      alpha)
        updates = ls.updates + 1
        polyak = optax.incremental_update(cp, ls.target_params, c.tau)
        due = updates % c.target_update_interval == 0
        target = jax.tree.map(lambda new, old: jnp.where(due, new, old), polyak, ls.target_params)
        aux = {k: v for k, v in aux.items() if not k.startswith("_")} | {"critic_loss": jnp.sum(aux["_per_agent"])}
        return ls.replace(critic_params=cp, critic_opt=copt, target_params=target, updates=updates), aux

    def update(self, ls: ROMMEOState, batch: Transition, key: PRNGKey, iteration: Array
               ) -> tuple[ROMMEOState, dict]:
        """One update at α(iteration): prior, opponent-model, policy and critic steps, every one computed from the
        parameters before this update (the reference runs the four ops in one ``sess.run``), then the target step.

        Keys: ``split(key, 3)`` = (critic, opponent model, policy); each draws its noises with :meth:`noises`.
        Metrics: the four losses (summed over agents), log-densities, Q means and α.
        """
        alpha = self.alpha(iteration)
        k_critic, k_opp, k_pol = jax.random.split(key, 3)
        n, b = self.spec.num_agents, batch.reward.shape[0]
        agents = jnp.arange(n)
        sg = jax.lax.stop_gradient(ls)
        obs_t = jnp.swapaxes(batch.obs, 0, 1)  # [N, B, O]

        prior_loss = self._all_agents(self.prior_loss_i, (0, 0, 0, None))
        pr, pr_opt, pr_aux = gradient_step(prior_loss, ls.prior_params, ls.prior_opt, self.policy_tx, agents, obs_t,
                                           batch.action)

        eps_rho, eps_pi = self.noises(k_opp, (b,))
        opp_loss = self._all_agents(self.opponent_loss_i, (0, 0, 0, 0, 0, 0, None, 1, 1, None))
        rp, rp_opt, rp_aux = gradient_step(opp_loss, ls.rho_params, ls.rho_opt, self.policy_tx, sg.pi_params,
                                           sg.prior_params, sg.critic_params, agents, obs_t, batch.state, eps_rho,
                                           eps_pi, alpha)

        eps_rho, eps_pi = self.noises(k_pol, (b,))
        pol_loss = self._all_agents(self.policy_loss_i, (0, 0, 0, 0, 0, None, 1, 1, None))
        pp, pp_opt, pp_aux = gradient_step(pol_loss, ls.pi_params, ls.pi_opt, self.policy_tx, sg.rho_params,
                                           sg.critic_params, agents, obs_t, batch.state, eps_rho, eps_pi, alpha)

        new, c_aux = self._critic_step(ls, batch, k_critic, alpha, sg)
        new = new.replace(pi_params=pp, pi_opt=pp_opt, rho_params=rp, rho_opt=rp_opt, prior_params=pr,
                          prior_opt=pr_opt)
        metrics = {**c_aux, "prior_loss": jnp.sum(pr_aux["_per_agent"]), "opponent_loss": jnp.sum(rp_aux["_per_agent"]),
                   "policy_loss": jnp.sum(pp_aux["_per_agent"]), "alpha": alpha}
        for aux in (pr_aux, rp_aux, pp_aux):
            metrics.update({k: v for k, v in aux.items() if not k.startswith("_")})
        return new, metrics

    def pretrain(self, ls: ROMMEOState, batch: Transition, key: PRNGKey) -> tuple[ROMMEOState, dict]:
        """One critic-only update (and target step) at α(0); π, ρ and P are unchanged."""
        alpha = self.alpha(0)
        ls, aux = self._critic_step(ls, batch, key, alpha, jax.lax.stop_gradient(ls))
        return ls, {**aux, "alpha": alpha}

    # ----------------------------------------------------------------------------------- execution

    def agent_action(self, ls: ROMMEOState, i, obs_i: Array, key: PRNGKey, t: Array, mode: str) -> Array:
        """What agent ``i`` computes on its own: ``[A]`` from o_i, the episode key and t (its noise:
        ``fold_in(fold_in(key, t), i)``, split into the ρ and π noises; ``mean``: both noises 0)."""
        take = lambda tree: jax.tree.map(lambda p: p[i], tree)  # noqa: E731
        k_rho, k_pi = jax.random.split(jax.random.fold_in(jax.random.fold_in(key, t), i))
        a = self.spec.action_dim
        if mode == "mean":
            eps_rho, eps_pi = jnp.zeros((self.opp_dim,)), jnp.zeros((a,))
        else:  # sample / explore
            eps_rho = jax.random.normal(k_rho, (self.opp_dim,)) * jnp.asarray(self.opp_mask)[i]
            eps_pi = jax.random.normal(k_pi, (a,)) * jnp.asarray(self.action_mask)[i]
        u_opp, _, _ = self.opponent_sample(take(ls.rho_params), i, obs_i, eps_rho)
        u_i, _, _ = self.own_sample(take(ls.pi_params), i, obs_i, u_opp, eps_pi)
        return u_i

    def act(self, ls: ROMMEOState, obs: Array, state: Array, key: PRNGKey, t: Array, iteration: Array,
            mode: str = EXPLORE) -> Array:
        """Joint action ``[N, A]`` in ``[-1, 1]`` (padded entries 0) for one env; ``state`` and ``iteration`` unused
        (decentralised: agent i uses only o_i)."""
        del state, iteration
        self.check_mode(mode)
        n = self.spec.num_agents
        return jax.vmap(lambda i, o: self.agent_action(ls, i, o, key, t, mode))(jnp.arange(n), obs)


register("rommeo", ROMMEOConfig, ROMMEO)

__all__ = ["GaussianNet", "ROMMEO", "ROMMEOConfig", "ROMMEOState", "atanh_clipped", "gaussian_reg", "gaussian_scale",
           "make_gaussian_net", "tanh_gaussian_log_prob", "tanh_gaussian_sample"]
