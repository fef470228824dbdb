"""FACMAC (Peng et al. 2021): deterministic per-agent actors, per-agent critics mixed by a monotonic QMIX mixer,
and the centralised policy gradient through the mixed critic.

* Critic: ``Q_i(o_i, u_i)`` per agent (on the agent's own observation and action, not the state), mixed by a
  monotonic QMIX mixer on the global state: ``Q_tot(s, u) = Mix_ψ(s, Q_1(o_1, u_1), …, Q_N(o_N, u_N))`` (hypernet
  weights |·|, ELU hidden layer, state value V(s) as the final bias). Target
  ``y = r_s·r + γ(1−d) Q̄_tot(s', μ̄_1(o'_1), …, μ̄_N(o'_N))`` with target actors (noise-free), target critics and
  target mixer; loss = mean squared TD error; critics and mixer share one optimiser and one gradient-norm clip.
* Actors: ``−mean_b Q_tot(s, μ_1(o_1), …, μ_N(o_N)) + action_reg · mean(μ²)``: EVERY agent's CURRENT action
  goes through the mixer (the centralised policy gradient; MADDPG instead takes teammates' actions from the
  buffer): the buffer's actions never enter the actor loss. The regulariser is on the post-tanh actions, as the
  reference (``pi = mac_out`` = tanh outputs); one optimiser and one global clip over all actors.
* Exploration: ``μ(o) + N(0, σ²)`` clipped to ``[-1, 1]`` (uniform warm-up is the training loop's).
* Soft (Polyak τ) updates of target actors, critics and mixer after every update.

Reference (facts only): oxwhirl/facmac ``src/learners/facmac_learner.py`` (critic step on critic + mixer
parameters, actor step through critic and mixer with current actions of all agents, ``pg_loss =
−Q_tot.mean() + 1e-3·(pi²).mean()``, soft targets), ``src/modules/critics/facmac.py`` (Q(o_i, u_i): 2 ReLU
layers of ``rnn_hidden_dim``; ``recurrent_critic: False``), ``src/modules/mixers/qmix.py`` (QMixer with V(s): the
mixer of :func:`svnr_jax.algorithms.qmix.make_mixer`, shared with COMIX),
``src/modules/agents/mlp_agent.py`` (2 ReLU layers, tanh), ``src/controllers/cqmix_controller.py`` (Gaussian
``act_noise``, clamp; target actions with ``test_mode=True``: noise-free), ``src/config/algs/facmac_mamujoco.yaml``
(our defaults).

[ours]: actors and critics are separate per agent, stacked on a leading agent axis (the reference shares one actor
and one critic network among agents; ``share_parameters=True`` does that here); actor and critic inits are our
``MLP``'s (the reference: PyTorch's defaults; the mixer's init is PyTorch's, as the reference).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from flax import struct

from svnr_jax.algorithms.base import (
    AlgoConfig,
    DeterministicActorAgent,
    gradient_step,
    is_int,
    is_num,
    register,
)
from svnr_jax.algorithms.qmix import make_mixer
from svnr_jax.envs.base import EnvSpec
from svnr_jax.networks import MLP
from svnr_jax.replay import Transition
from svnr_jax.types import Array, PRNGKey


@dataclasses.dataclass(frozen=True)
class FACMACConfig(AlgoConfig):
    """Hyperparameters of FACMAC; defaults are facmac's ``src/config/algs/facmac_mamujoco.yaml`` unless marked."""

    actor_hidden: tuple[int, ...] = (400, 400)
    """Hidden layer sizes of each agent's actor μ_i(o_i) (facmac MaMuJoCo: rnn_hidden_dim 400, 2 layers)."""
    critic_hidden: tuple[int, ...] = (400, 400)
    """Hidden layer sizes of each agent's critic Q_i(o_i, u_i) (facmac MaMuJoCo: rnn_hidden_dim 400, 2 layers)."""
    mixing_embed: int = 64
    """Width of the mixer's hidden layer (facmac mixing_embed_dim 64)."""
    hypernet_layers: int = 2
    """Layers of the hypernetworks giving the mixer's weights: 1 (linear) or 2 (facmac MaMuJoCo: 2)."""
    hypernet_embed: int = 64
    """Hidden width of the 2-layer hypernetworks (facmac hypernet_embed 64)."""
    share_parameters: bool = False
    """One actor and one critic network shared by all agents, as the reference; False: one per agent [ours]."""
    actor_lr: float = 1e-3
    """Adam learning rate of the actors (facmac MaMuJoCo lr)."""
    critic_lr: float = 1e-3
    """Adam learning rate of the critics and the mixer (facmac MaMuJoCo critic_lr)."""
    adam_eps: float = 0.01
    """Adam epsilon of both optimisers (facmac MaMuJoCo optimizer_epsilon 0.01)."""
    gamma: float = 0.99
    """Discount factor γ (facmac MaMuJoCo)."""
    tau: float = 0.001
    """Polyak rate of the target actors, critics and mixer, every update (facmac target_update_tau)."""
    grad_clip: float = 0.5
    """Global gradient-norm clip of all actors together and of critics + mixer together (facmac grad_norm_clip);
    0 disables it."""
    exploration_noise: float = 0.1
    """Std of the Gaussian noise added to μ(o) when collecting data, in [-1, 1] action units (facmac act_noise)."""
    action_reg: float = 1e-3
    """Weight of the mean squared post-tanh action in the actor loss (facmac_learner.py: 1e-3·(pi²).mean())."""
    reward_scale: float = 1.0
    """Rewards are multiplied by this in the critic target (reported returns are unscaled) [ours; facmac: 1]."""

    def check(self) -> None:
        super().check()
        self.positive_int("mixing_embed", "hypernet_embed")
        self.require("hypernet_layers", is_int(self.hypernet_layers) and self.hypernet_layers in (1, 2), "1 or 2")
        self.positive("actor_lr", "critic_lr", "adam_eps", "reward_scale")
        self.unit_interval("gamma")
        self.unit_interval("tau", low_open=True)
        for name in ("grad_clip", "exploration_noise", "action_reg"):
            v = getattr(self, name)
            self.require(name, is_num(v) and v >= 0, "a finite number >= 0")


# ------------------------------------------------------------------------------------------ state


@struct.dataclass
class FACMACState:
    """Parameters and optimiser states of FACMAC (a pytree).

    Attributes:
      actor_params: actors, leading ``[N]`` agent axis (``[1]`` when shared).
      critic_params: ``{"agents": per-agent critics (leading [N] or [1]), "mixer": mixer}``.
      target_actor_params, target_critic_params: Polyak-averaged copies.
      actor_opt, critic_opt: optax states (one optimiser for all actors; one for critics + mixer).
      updates: ``[]`` int32 gradient updates done.
    """

    actor_params: dict
    critic_params: dict
    target_actor_params: dict
    target_critic_params: dict
    actor_opt: optax.OptState
    critic_opt: optax.OptState
    updates: Array


# ------------------------------------------------------------------------------------------ losses


def actor_loss(actor_params, obs: Array, state: Array, *, actor_apply: Callable,
               q_tot_fn: Callable[[Array, Array, Array], Array], action_mask: Array,
               action_reg: float) -> tuple[Array, dict]:
    """FACMAC's actor loss (all agents at once): the centralised policy gradient through the mixed critic.

    ``L = −mean_b Q_tot(o_b, s_b, μ(o_b)) + action_reg · mean_{b, i, real a} μ_{b,i,a}²`` where ``μ(o_b)`` is the
    joint action of ALL agents' current actors; no replay action enters it.

    Args:
      actor_params: actor parameters. obs: ``[B, N, O]``. state: ``[B, S]``.
      actor_apply: ``(actor_params, obs [N, O]) -> (u [N, A] masked, pre-tanh [N, A])``.
      q_tot_fn: ``(obs [N, O], state [S], u [N, A]) -> []`` the mixed critic (its own parameters closed over).
      action_mask: ``[N, A]`` 1 for real action entries. action_reg: regulariser weight.
    Returns:
      ``(L, aux)`` with ``q [B]`` (Q_tot of the current joint actions) and ``reg []`` (mean μ²).
    """
    u, _ = jax.vmap(actor_apply, (None, 0))(actor_params, obs)  # [B, N, A]
    q = jax.vmap(q_tot_fn)(obs, state, u)  # [B]
    mask = jnp.asarray(action_mask, jnp.float32)
    reg = (u**2 * mask).sum() / (u.shape[0] * jnp.maximum(mask.sum(), 1.0))
    return -q.mean() + action_reg * reg, {"q": q, "reg": reg}


# ------------------------------------------------------------------------------------------ agent


class FACMAC(DeterministicActorAgent):
    """FACMAC for one env spec (see the module docstring); deterministic execution.

    Args:
      spec: the env's :class:`~svnr_jax.envs.base.EnvSpec` (actors act in ``[-1, 1]``).
      config: :class:`FACMACConfig`. total_iterations: unused (no schedules).
    """

    def __init__(self, spec: EnvSpec, config: FACMACConfig, total_iterations: int = 1):
        super().__init__(spec, config, total_iterations)
        c = config
        self.n, self.a = spec.num_agents, spec.action_dim
        self.actor_module = MLP(tuple(c.actor_hidden), self.a)
        self.critic_module = MLP(tuple(c.critic_hidden), 1)
        self.mixer = make_mixer(self.n, spec.state_size, embed_dim=c.mixing_embed, hypernet_embed=c.hypernet_embed,
                                hypernet_layers=c.hypernet_layers)
        self.copies = 1 if c.share_parameters else self.n

        def tx(lr: float) -> optax.GradientTransformation:
            clip = [optax.clip_by_global_norm(c.grad_clip)] if c.grad_clip > 0 else []
            return optax.chain(*clip, optax.adam(lr, eps=c.adam_eps))

        self.actor_tx = tx(c.actor_lr)
        self.critic_tx = tx(c.critic_lr)

    def _per_agent(self, params):
        """Parameters with a leading ``[N]`` axis (shared ones broadcast: their gradients add up)."""
        if self.copies == self.n:
            return params
        return jax.tree.map(lambda x: jnp.broadcast_to(x, (self.n, *x.shape[1:])), params)

    # ----------------------------------------------------------------------------------- networks

    def actor_apply(self, actor_params, obs: Array) -> tuple[Array, Array]:
        """All agents' actions ``[N, A]`` (tanh, padded entries 0) and pre-tanh outputs from ``obs [N, O]``."""
        pre = jax.vmap(self.actor_module.apply)(self._per_agent(actor_params), obs)
        return jnp.tanh(pre) * self.action_mask, pre

    def agent_qs(self, critic_params, obs: Array, u: Array) -> Array:
        """Per-agent ``Q_i(o_i, u_i)`` ``[N]`` from ``obs [N, O]`` and ``u [N, A]``."""
        x = jnp.concatenate([obs, u], axis=-1)
        return jax.vmap(self.critic_module.apply)(self._per_agent(critic_params["agents"]), x)[:, 0]

    def q_tot(self, critic_params, obs: Array, state: Array, u: Array) -> Array:
        """``Q_tot(s, u) = Mix(s, Q_1(o_1, u_1), …, Q_N(o_N, u_N))`` ``[]`` for one step."""
        return self.mixer.apply(critic_params["mixer"], self.agent_qs(critic_params, obs, u), state)

    def target(self, ls: FACMACState, batch: Transition) -> Array:
        """Critic targets ``y = r_s·r + γ(1−d) Q̄_tot(s', μ̄(o'))`` ``[B]`` (target actors (no noise), target critics
        and target mixer)."""
        c = self.config
        u_next = jax.vmap(lambda o: self.actor_apply(ls.target_actor_params, o)[0])(batch.next_obs)
        q_next = jax.vmap(self.q_tot, (None, 0, 0, 0))(ls.target_critic_params, batch.next_obs, batch.next_state,
                                                        u_next)
        return c.reward_scale * batch.reward + c.gamma * (1.0 - batch.terminal) * q_next

    # ----------------------------------------------------------------------------------- learning

    def init(self, key: PRNGKey) -> FACMACState:
        """Fresh parameters; the targets start as copies (facmac deep-copies them)."""
        k_actor, k_critic, k_mixer = jax.random.split(key, 3)
        obs = jnp.zeros((self.spec.obs_dim,), jnp.float32)
        x = jnp.zeros((self.spec.obs_dim + self.a,), jnp.float32)
        ap = jax.vmap(lambda k: self.actor_module.init(k, obs))(jax.random.split(k_actor, self.copies))
        qp = jax.vmap(lambda k: self.critic_module.init(k, x))(jax.random.split(k_critic, self.copies))
        cp = {"agents": qp, "mixer": self.mixer.init(k_mixer)}
        return FACMACState(ap, cp, ap, cp, self.actor_tx.init(ap), self.critic_tx.init(cp), jnp.zeros((), jnp.int32))

    def _critic_loss(self, critic_params, batch: Transition, y: Array) -> tuple[Array, dict]:
        q = jax.vmap(self.q_tot, (None, 0, 0, 0))(critic_params, batch.obs, batch.state, batch.action)
        loss = jnp.mean((q - y) ** 2)
        return loss, {"critic_loss": loss, "q_mean": q.mean(), "target_mean": y.mean()}

    def _critic_step(self, ls: FACMACState, batch: Transition) -> tuple[FACMACState, dict]:
        y = jax.lax.stop_gradient(self.target(ls, batch))
        cp, copt, aux = gradient_step(self._critic_loss, ls.critic_params, ls.critic_opt, self.critic_tx, batch, y)
        return ls.replace(critic_params=cp, critic_opt=copt), aux

    def actor_objective(self, actor_params, critic_params, batch: Transition) -> tuple[Array, dict]:
        """:func:`actor_loss` with this agent's actors and mixed critic on ``batch`` (``batch.action`` unused)."""
        critic_params = jax.lax.stop_gradient(critic_params)
        return actor_loss(actor_params, batch.obs, batch.state, actor_apply=self.actor_apply,
                          q_tot_fn=lambda o, s, u: self.q_tot(critic_params, o, s, u), action_mask=self.action_mask,
                          action_reg=self.config.action_reg)

    def update(self, ls: FACMACState, batch: Transition, key: PRNGKey, iteration: Array) -> tuple[FACMACState, dict]:
        """Critic + mixer step, actor step (on the updated critic and mixer, all agents' current actions), Polyak
        targets. ``key`` and ``iteration`` are unused (the update is deterministic)."""
        del key, iteration
        c = self.config
        ls, c_aux = self._critic_step(ls, batch)
        ap, aopt, p_aux = gradient_step(self.actor_objective, ls.actor_params, ls.actor_opt, self.actor_tx,
                                        ls.critic_params, batch)
        t_actor = optax.incremental_update(ap, ls.target_actor_params, c.tau)
        t_critic = optax.incremental_update(ls.critic_params, ls.target_critic_params, c.tau)
        ls = ls.replace(actor_params=ap, actor_opt=aopt, target_actor_params=t_actor, target_critic_params=t_critic,
                        updates=ls.updates + 1)
        policy_loss = -p_aux["q"].mean() + c.action_reg * p_aux["reg"]
        metrics = {**c_aux, "policy_loss": policy_loss, "policy_q": p_aux["q"].mean(), "action_reg_term": p_aux["reg"]}
        return ls, metrics

    def pretrain(self, ls: FACMACState, batch: Transition, key: PRNGKey) -> tuple[FACMACState, dict]:
        """Critic-only update (critics + mixer and their Polyak targets; actors and target actors unchanged)."""
        del key
        ls, aux = self._critic_step(ls, batch)
        t_critic = optax.incremental_update(ls.critic_params, ls.target_critic_params, self.config.tau)
        return ls.replace(target_critic_params=t_critic, updates=ls.updates + 1), aux

    # ----------------------------------------------------------------------------------- execution


register("facmac", FACMACConfig, FACMAC)

__all__ = ["FACMAC", "FACMACConfig", "FACMACState", "actor_loss"]
