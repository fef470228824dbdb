"""MMQ (MaxMax Q-learning; Zhu, Jin, Houssineau, Montana 2024, arXiv 2411.11099): independent learners that bootstrap
optimistically from the best of K model-sampled next states.

Sources. No code is public. Of the paper only the abstract could be read here (arXiv 2411.11099v1 page and
openreview.net/forum?id=oAkSRhl3qU): "independent (decentralised) learners; an iterative process of sampling and
evaluating potential next states, selecting those with maximal Q-values for learning", to approximate the *ideal*
transitions (those under the optimal teammates). The method section (model class, quantile levels, K, continuous-action
variant, hyperparameters) was not available, so everything below beyond that sentence and our spec
("a learned model of next states (an ensemble/quantile model); for each transition sample K candidate next states
and bootstrap from the one with the highest value, max over next states, then max over actions") is [ours].

Update, for each agent i separately (no joint critic, no teammate action or observation anywhere) [ours where not
stated above]:

* Next-state model [ours: quantile model]: ``f_i(o_i, u_i) -> (q_lo, q_hi)``, the τ and 1−τ quantiles of agent i's
  next observation o'_i (parametrised as o_i + Δ), fitted with the pinball (quantile) loss on the buffer's (o_i, u_i,
  o'_i). Teammates' actions are not inputs, so the spread between the quantiles is the spread of o'_i that the
  teammates' behaviour causes: the set of plausible next states.
* K candidates [ours: uniform in the quantile box, entry by entry]: ``o'_k = q_lo + U_k ⊙ (q_hi − q_lo)``,
  U_k ~ U[0, 1]^O (padded entries 0); optionally the observed o'_i is added as one more candidate.
* Optimistic target (max over next states of the max over actions; the max over actions is the target actor's action
  at that state, DDPG-style): ``y_i = r_s·r + γ(1 − d) max_k Q̄_i(o'_k, μ̄_i(o'_k))``.
* Critic: ``mean_b (Q_i(o_i, u_i) − y_i)²`` with u_i agent i's own buffer action. Actor: ``−mean_b Q_i(o_i, μ_i(o_i))
  + action_reg · mean pre-tanh²``. Polyak τ on target actors and critics (the model has no target copy).
* [ours] Everything reads agent i's own observation o_i (actor, critic, model): fully decentralised learners, as the
  paper's setting. With o_i constant (the one-step games) and d = 1 there is no bootstrap: MMQ then reduces to
  independent DDPG, and its optimism has nothing to act on.
* [ours] The rest of the stack (network sizes, Adam ε, lr, τ, gradient clip, exploration noise, pre-tanh regulariser)
  follows our MADDPG (facmac ``maddpg_mamujoco.yaml``), so that a comparison isolates the learning rule.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from svnr_jax.algorithms.base import (
    AlgoConfig,
    DeterministicActorAgent,
    gradient_step,
    is_num,
    per_agent,
    register,
)
from svnr_jax.envs.base import EnvSpec
from svnr_jax.networks import MLP
from svnr_jax.replay import Transition
from svnr_jax.types import Array, PRNGKey


@dataclasses.dataclass(frozen=True)
class MMQConfig(AlgoConfig):
    """Hyperparameters of MMQ. The paper's values are not public: the actor-critic fields are our MADDPG's (facmac
    ``src/config/algs/maddpg_mamujoco.yaml``); the model fields are [ours]."""

    actor_hidden: tuple[int, ...] = (400, 400)
    """Hidden layer sizes of each agent's actor μ_i(o_i) (facmac MaMuJoCo: 400, 400)."""
    critic_hidden: tuple[int, ...] = (400, 400)
    """Hidden layer sizes of each agent's critic Q_i(o_i, u_i) (facmac MaMuJoCo: 400, 400) [ours: per agent]."""
    model_hidden: tuple[int, ...] = (400, 400)
    """[ours] Hidden layer sizes of each agent's next-observation quantile model f_i(o_i, u_i)."""
    actor_lr: float = 1e-3
    """Adam learning rate of the actors (facmac MaMuJoCo lr)."""
    critic_lr: float = 1e-3
    """Adam learning rate of the critics (facmac MaMuJoCo critic_lr)."""
    model_lr: float = 1e-3
    """[ours] Adam learning rate of the next-observation models."""
    adam_eps: float = 0.01
    """Adam epsilon of every optimiser (facmac MaMuJoCo optimizer_epsilon 0.01)."""
    gamma: float = 0.99
    """Discount factor γ."""
    tau: float = 0.001
    """Polyak rate of the target actors and target critics (facmac target_update_tau)."""
    grad_clip: float = 0.5
    """Global gradient-norm clip, per agent, of critics, actors and models (facmac grad_norm_clip); 0 disables it."""
    exploration_noise: float = 0.1
    """Std of the Gaussian noise added to μ(o) when collecting data, in [-1, 1] action units (facmac act_noise)."""
    action_reg: float = 1e-3
    """Weight of the mean squared pre-tanh actor output in each actor's loss (openai/maddpg p_reg 1e-3)."""
    reward_scale: float = 1.0
    """Rewards are multiplied by this in the critic target (reported returns are unscaled)."""
    next_state_samples: int = 10
    """[ours] K: candidate next observations drawn from each agent's model per transition."""
    quantile: float = 0.05
    """[ours] τ: the model predicts the τ and 1 − τ quantiles of the next observation; candidates lie between them.
    Must be in (0, 0.5)."""
    include_observed_next: bool = False
    """[ours] Add the buffer's observed next observation as one more candidate (then the target is never below the
    plain one-sample target)."""

    def check(self) -> None:
        super().check()
        self.positive("actor_lr", "critic_lr", "model_lr", "adam_eps", "reward_scale")
        self.unit_interval("gamma")
        self.unit_interval("tau", low_open=True)
        self.positive_int("next_state_samples")
        self.require("quantile", is_num(self.quantile) and 0 < self.quantile < 0.5, "a number in (0, 0.5)")
        for name in ("grad_clip", "exploration_noise", "action_reg"):
            v = getattr(self, name)
            self.require(name, is_num(v) and v >= 0, "a finite number >= 0")


@struct.dataclass
class MMQState:
    """Parameters and optimiser states of MMQ (a pytree; every parameter leaf has a leading ``[N]`` agent axis).

    Attributes:
      actor_params, critic_params, model_params: per-agent actors, critics and next-observation models.
      target_actor_params, target_critic_params: Polyak-averaged copies.
      actor_opt, critic_opt, model_opt: per-agent optax states.
      updates: ``[]`` int32 gradient updates done.
    """

    actor_params: dict
    critic_params: dict
    model_params: dict
    target_actor_params: dict
    target_critic_params: dict
    actor_opt: optax.OptState
    critic_opt: optax.OptState
    model_opt: optax.OptState
    updates: Array


# ------------------------------------------------------------------------------------------ pure pieces


def pinball_loss(pred: Array, target: Array, tau: float | Array, mask: Array) -> Array:
    """Quantile (pinball) loss ``mean over rows and real entries of max(τ e, (τ − 1) e)``, ``e = target − pred``.

    Args:
      pred, target: ``[..., D]``. tau: quantile level. mask: ``[D]`` (or broadcastable), 1 for real entries.
    Returns:
      ``[]``: the sum over real entries divided by (rows × real entries).
    """
    e = target - pred
    rho = jnp.maximum(tau * e, (tau - 1.0) * e) * mask
    rows = np.prod(pred.shape[:-1]) if pred.ndim > 1 else 1
    return rho.sum() / (rows * jnp.maximum(jnp.sum(jnp.broadcast_to(mask, pred.shape[-1:])), 1.0))


def sample_candidates(lo: Array, hi: Array, key: PRNGKey, num: int, mask: Array) -> Array:
    """``num`` points drawn uniformly, entry by entry, between ``lo`` and ``hi`` ([ours]).

    Args:
      lo, hi: ``[..., D]`` bounds (their order per entry does not matter). key: PRNG key. num: K.
      mask: ``[..., D]`` (broadcastable) 1 for real entries (padded entries come out 0).
    Returns:
      ``[..., K, D]``.
    """
    u = jax.random.uniform(key, (*lo.shape[:-1], num, lo.shape[-1]))
    return (lo[..., None, :] + u * (hi - lo)[..., None, :]) * jnp.expand_dims(mask, -2)


def optimistic_target(reward: Array, terminal: Array, values: Array, gamma: float, reward_scale: float) -> Array:
    """The MaxMax target ``y = r_s·r + γ(1 − d) max_k V_k``.

    Args:
      reward, terminal: ``[B]``. values: ``[B, N, K]`` value of each agent's K candidate next states.
    Returns:
      ``[B, N]``.
    """
    best = values.max(axis=-1)
    return reward_scale * reward[:, None] + gamma * (1.0 - terminal[:, None]) * best


# ------------------------------------------------------------------------------------------ agent


class MMQ(DeterministicActorAgent):
    """MMQ for one env spec (see the module docstring); deterministic execution.

    Args:
      spec: the env's :class:`~svnr_jax.envs.base.EnvSpec` (actors act in ``[-1, 1]``).
      config: :class:`MMQConfig`. total_iterations: unused (no schedules).
    """

    def __init__(self, spec: EnvSpec, config: MMQConfig, total_iterations: int = 1):
        super().__init__(spec, config, total_iterations)
        c = config
        o, a = spec.obs_dim, spec.action_dim
        self.obs_mask_np = np.asarray(spec.obs_mask, np.float32)  # [N, O]
        self.actor_module = MLP(tuple(c.actor_hidden), a)
        self.critic_module = MLP(tuple(c.critic_hidden), 1)
        self.model_module = MLP(tuple(c.model_hidden), 2 * o)

        def tx(lr: float) -> optax.GradientTransformation:
            clip = [optax.clip_by_global_norm(c.grad_clip)] if c.grad_clip > 0 else []
            return per_agent(optax.chain(*clip, optax.adam(lr, eps=c.adam_eps)))

        self.actor_tx, self.critic_tx, self.model_tx = tx(c.actor_lr), tx(c.critic_lr), tx(c.model_lr)

    # ----------------------------------------------------------------------------------- networks (one agent)

    def actor_one(self, p, obs_i: Array, amask_i: Array) -> tuple[Array, Array]:
        """Agent i's action ``[A]`` (tanh, padded 0) and pre-tanh output from its own ``obs_i [O]``."""
        pre = self.actor_module.apply(p, obs_i)
        return jnp.tanh(pre) * amask_i, pre

    def q_one(self, p, obs_i: Array, u_i: Array) -> Array:
        """Agent i's ``Q_i(o_i, u_i)`` ``[]``: its own observation and its own action only."""
        return self.critic_module.apply(p, jnp.concatenate([obs_i, u_i]))[0]

    def model_one(self, p, obs_i: Array, u_i: Array, omask_i: Array) -> tuple[Array, Array]:
        """Agent i's next-observation quantiles ``(q_lo, q_hi)``, each ``[O]`` (padded entries 0)."""
        d = self.model_module.apply(p, jnp.concatenate([obs_i, u_i]))
        o = obs_i.shape[-1]
        return (obs_i + d[:o]) * omask_i, (obs_i + d[o:]) * omask_i

    # ----------------------------------------------------------------------------------- all agents

    def actor_apply(self, actor_params, obs: Array) -> tuple[Array, Array]:
        """All agents' actions and pre-tanh outputs ``[N, A]`` from ``obs [N, O]``."""
        return jax.vmap(self.actor_one)(actor_params, obs, self.action_mask)

    def q(self, critic_params, obs: Array, u: Array) -> Array:
        """Every agent's ``Q_i(o_i, u_i)`` ``[N]`` from ``obs [N, O]`` and ``u [N, A]``."""
        return jax.vmap(self.q_one)(critic_params, obs, u)

    def model_bounds(self, model_params, obs: Array, u: Array) -> tuple[Array, Array]:
        """Every agent's next-observation quantiles ``[N, O]`` each."""
        return jax.vmap(self.model_one)(model_params, obs, u, self.obs_mask_np)

    def candidates(self, ls: MMQState, batch: Transition, key: PRNGKey) -> Array:
        """K candidate next observations per transition and agent ``[B, N, K(+1), O]``: uniform between the model's
        quantiles (plus the observed one if ``include_observed_next``)."""
        lo, hi = jax.vmap(self.model_bounds, (None, 0, 0))(ls.model_params, batch.obs, batch.action)  # [B, N, O]
        cand = sample_candidates(lo, hi, key, self.config.next_state_samples, self.obs_mask_np[None])
        if self.config.include_observed_next:
            cand = jnp.concatenate([cand, batch.next_obs[:, :, None, :]], axis=2)
        return cand

    def next_values(self, ls: MMQState, cand: Array) -> Array:
        """``V_i(o') = Q̄_i(o', μ̄_i(o'))`` (target nets) of each agent's candidates ``[B, N, K, O]`` -> ``[B, N, K]``."""

        def one(ap, cp, x, amask):  # one agent, x [O]
            u, _ = self.actor_one(ap, x, amask)
            return self.q_one(cp, x, u)

        per_agent_fn = jax.vmap(one)  # over agents: x [N, O]
        over_k = jax.vmap(per_agent_fn, (None, None, 1, None), 1)  # x [N, K, O] -> [N, K]
        over_b = jax.vmap(over_k, (None, None, 0, None))  # [B, N, K, O] -> [B, N, K]
        return over_b(ls.target_actor_params, ls.target_critic_params, cand, self.action_mask)

    def target(self, ls: MMQState, batch: Transition, key: PRNGKey) -> tuple[Array, dict]:
        """Optimistic critic targets ``[B, N]`` ``y_i = r_s·r + γ(1−d) max_k Q̄_i(o'_k, μ̄_i(o'_k))`` and diagnostics."""
        c = self.config
        cand = self.candidates(ls, batch, key)
        v = self.next_values(ls, cand)
        y = optimistic_target(batch.reward, batch.terminal, v, c.gamma, c.reward_scale)
        live = 1.0 - batch.terminal[:, None]
        aux = {"candidate_value_max": v.max(-1).mean(), "candidate_value_mean": v.mean(),
               "optimism_gain": (c.gamma * live * (v.max(-1) - v.mean(-1))).mean()}
        return y, aux

    # ----------------------------------------------------------------------------------- losses

    def model_loss(self, model_params, batch: Transition) -> tuple[Array, dict]:
        """Σ_i of agent i's pinball losses of its τ and 1 − τ quantiles of o'_i (means over batch and real entries)."""
        tau = self.config.quantile
        lo, hi = jax.vmap(self.model_bounds, (None, 0, 0))(model_params, batch.obs, batch.action)  # [B, N, O]

        def agent_loss(lo_i, hi_i, nxt_i, m_i):
            return pinball_loss(lo_i, nxt_i, tau, m_i) + pinball_loss(hi_i, nxt_i, 1.0 - tau, m_i)

        per = jax.vmap(agent_loss, (1, 1, 1, 0))(lo, hi, batch.next_obs, self.obs_mask_np)  # [N]
        width = (jnp.abs(hi - lo) * self.obs_mask_np).sum() / (lo.shape[0] * max(self.obs_mask_np.sum(), 1.0))
        return per.sum(), {"model_loss": per.mean(), "model_width": width}

    def critic_loss(self, critic_params, batch: Transition, y: Array) -> tuple[Array, dict]:
        """Σ_i mean_b (Q_i(o_i, u_i) − y_i)² with agent i's own buffer action."""
        q = jax.vmap(self.q, (None, 0, 0))(critic_params, batch.obs, batch.action)  # [B, N]
        per = jnp.mean((q - y) ** 2, axis=0)
        return per.sum(), {"critic_loss": per.mean(), "q_mean": q.mean(), "target_mean": y.mean()}

    def actor_loss(self, actor_params, critic_params, obs: Array) -> tuple[Array, dict]:
        """Σ_i [−mean_b Q_i(o_i, μ_i(o_i)) + action_reg · mean_{b, real a} pre²]."""
        u, pre = jax.vmap(self.actor_apply, (None, 0))(actor_params, obs)  # [B, N, A]
        q = jax.vmap(self.q, (None, 0, 0))(critic_params, obs, u)  # [B, N]
        reg = (pre**2 * self.action_mask).sum(axis=(0, 2)) / (pre.shape[0] * np.maximum(self.action_mask.sum(-1), 1.0))
        per = -q.mean(axis=0) + self.config.action_reg * reg
        return per.sum(), {"policy_loss": per.mean(), "policy_q": q.mean(), "action_reg_term": reg.mean()}

    # ----------------------------------------------------------------------------------- learning

    def init(self, key: PRNGKey) -> MMQState:
        """Fresh parameters (one set per agent); the targets start as copies."""
        n, o, a = self.spec.num_agents, self.spec.obs_dim, self.spec.action_dim
        k_actor, k_critic, k_model = jax.random.split(key, 3)
        ap = jax.vmap(lambda k: self.actor_module.init(k, jnp.zeros((o,))))(jax.random.split(k_actor, n))
        cp = jax.vmap(lambda k: self.critic_module.init(k, jnp.zeros((o + a,))))(jax.random.split(k_critic, n))
        mp = jax.vmap(lambda k: self.model_module.init(k, jnp.zeros((o + a,))))(jax.random.split(k_model, n))
        return MMQState(ap, cp, mp, ap, cp, self.actor_tx.init(ap), self.critic_tx.init(cp), self.model_tx.init(mp),
                        jnp.zeros((), jnp.int32))

    def _model_critic_step(self, ls: MMQState, batch: Transition, key: PRNGKey) -> tuple[MMQState, dict]:
        """Model step, then the critic step on targets drawn from the updated model; Polyak on the target critics."""
        mp, mopt, m_aux = gradient_step(self.model_loss, ls.model_params, ls.model_opt, self.model_tx, batch)
        ls = ls.replace(model_params=mp, model_opt=mopt)
        y, t_aux = self.target(ls, batch, key)
        y = jax.lax.stop_gradient(y)
        cp, copt, c_aux = gradient_step(self.critic_loss, ls.critic_params, ls.critic_opt, self.critic_tx, batch, y)
        t_critic = optax.incremental_update(cp, ls.target_critic_params, self.config.tau)
        ls = ls.replace(critic_params=cp, critic_opt=copt, target_critic_params=t_critic)
        return ls, {**m_aux, **t_aux, **c_aux}

    def update(self, ls: MMQState, batch: Transition, key: PRNGKey, iteration: Array) -> tuple[MMQState, dict]:
        """Model step, critic step (optimistic targets), actor step (on the updated critics), Polyak targets.

        ``key`` draws the candidate next observations; ``iteration`` is unused."""
        del iteration
        ls, mc_aux = self._model_critic_step(ls, batch, key)
        critic_params = jax.lax.stop_gradient(ls.critic_params)
        ap, aopt, p_aux = gradient_step(self.actor_loss, ls.actor_params, ls.actor_opt, self.actor_tx, critic_params,
                                        batch.obs)
        t_actor = optax.incremental_update(ap, ls.target_actor_params, self.config.tau)
        ls = ls.replace(actor_params=ap, actor_opt=aopt, target_actor_params=t_actor, updates=ls.updates + 1)
        return ls, {**mc_aux, **p_aux}

    def pretrain(self, ls: MMQState, batch: Transition, key: PRNGKey) -> tuple[MMQState, dict]:
        """Model and critic update (with the critics' Polyak targets); actors and target actors unchanged."""
        ls, aux = self._model_critic_step(ls, batch, key)
        return ls.replace(updates=ls.updates + 1), aux

    # ----------------------------------------------------------------------------------- execution


register("mmq", MMQConfig, MMQ)

__all__ = ["MMQ", "MMQConfig", "MMQState", "optimistic_target", "pinball_loss", "sample_candidates"]
