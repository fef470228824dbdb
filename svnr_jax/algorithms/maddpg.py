"""MADDPG (Lowe et al. 2017) for cooperative continuous control: deterministic per-agent actors, a joint critic.

Reference (facts only): oxwhirl/facmac ``src/learners/maddpg_learner.py`` + ``src/modules/critics/maddpg.py`` (one
critic on global state + all N actions; critic step, then actor i on −Q with u_i = μ_i(o_i) and the other actions
FROM THE BATCH, then Polyak τ on target actors and critic; grad-norm clip), ``src/modules/agents/mlp_agent.py``
(2 ReLU layers, tanh), ``src/controllers/cqmix_controller.py`` (explore μ + N(0, 0.1²), clamped; targets noise-free),
``src/config/algs/maddpg_mamujoco.yaml`` (our defaults); openai/maddpg ``maddpg/trainer/maddpg.py`` (1e-3·mean of
the raw pre-squash output², one optimiser per agent). [ours]: per-agent actors stacked on an agent axis (facmac
shares one net), each with its own clip; the regulariser is pre-tanh (facmac: post-tanh).
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
    is_num,
    per_agent,
    register,
)
from svnr_jax.envs.base import EnvSpec
from svnr_jax.networks import MLP, make_critic
from svnr_jax.replay import Transition
from svnr_jax.types import Array, PRNGKey


@dataclasses.dataclass(frozen=True)
class MADDPGConfig(AlgoConfig):
    """Hyperparameters of MADDPG; defaults are facmac's ``maddpg_mamujoco.yaml`` unless marked."""

    actor_hidden: tuple[int, ...] = (400, 400)
    """Hidden layer sizes of each agent's actor μ_i(o_i) (facmac MaMuJoCo: 400, 400)."""
    critic_hidden: tuple[int, ...] = (400, 400)
    """Hidden layer sizes of the joint critic Q(s, u) (facmac MaMuJoCo: 400, 400)."""
    actor_lr: float = 1e-3
    """Adam learning rate of the actors (facmac MaMuJoCo lr)."""
    critic_lr: float = 1e-3
    """Adam learning rate of the critic (facmac MaMuJoCo critic_lr)."""
    adam_eps: float = 0.01
    """Adam epsilon of both optimisers (facmac MaMuJoCo optimizer_epsilon 0.01; openai/maddpg: 1e-8)."""
    gamma: float = 0.99
    """Discount factor γ."""
    tau: float = 0.001
    """Polyak rate of the target actors and the target critic (facmac target_update_tau)."""
    grad_clip: float = 0.5
    """Global gradient-norm clip of the critic and of each agent's actor (facmac grad_norm_clip); 0 disables it."""
    exploration_noise: float = 0.1
    """Std of the Gaussian noise added to μ(o) when collecting data, in [-1, 1] action units (facmac act_noise)."""
    action_reg: float = 1e-3
    """Weight of the mean squared pre-tanh actor output in each actor's loss (openai/maddpg p_reg 1e-3)."""
    reward_scale: float = 1.0
    """Rewards are multiplied by this in the critic target (reported returns are unscaled)."""

    def check(self) -> None:
        super().check()
        self.positive("actor_lr", "critic_lr", "adam_eps", "reward_scale")
        self.unit_interval("gamma")
        self.unit_interval("tau", low_open=True)
        for name in ("grad_clip", "exploration_noise", "action_reg"):
            v = getattr(self, name)
            self.require(name, is_num(v) and v >= 0, "a finite number >= 0")


@struct.dataclass
class MADDPGState:
    """Parameters and optimiser states of MADDPG (a pytree).

    Attributes:
      actor_params: actors, leading ``[N]`` agent axis. critic_params: the joint critic (leading ``[1]``).
      target_actor_params, target_critic_params: Polyak-averaged copies.
      actor_opt: per-agent optax state (leading ``[N]``). critic_opt: optax state.
      updates: ``[]`` int32 gradient updates done.
    """

    actor_params: dict
    critic_params: dict
    target_actor_params: dict
    target_critic_params: dict
    actor_opt: optax.OptState
    critic_opt: optax.OptState
    updates: Array


def actor_loss(actor_params, obs: Array, state: Array, action: Array, *, actor_apply: Callable,
               q_fn: Callable[[Array, Array], Array], action_mask: Array, action_reg: float) -> tuple[Array, dict]:
    """Sum over agents of agent i's MADDPG actor loss (all N at once).

    ``L_i = −mean_b Q(s_b, u^(i)_b) + action_reg · mean_{b, real a} pre_{b,i,a}²`` where ``u^(i)`` is the buffer's
    joint action with row i replaced by ``μ_i(o_i)``: the other agents' actions come from the buffer, not from
    their current actors, and agent i's parameters reach ``L_i`` only through its own row.

    Args:
      actor_params: stacked actor parameters. obs: ``[B, N, O]``. state: ``[B, S]``. action: ``[B, N, A]`` (buffer).
      actor_apply: ``(actor_params, obs [N, O]) -> (u [N, A] masked, pre-tanh [N, A])``.
      q_fn: ``(state [S], u [N, A]) -> []`` the critic (not differentiated w.r.t. its own parameters here).
      action_mask: ``[N, A]`` 1 for real action entries. action_reg: regulariser weight.
    Returns:
      ``(Σ_i L_i, aux)`` with ``per_agent [N]`` losses, ``q [N, B]`` and ``reg [N]``.
    """
    u, pre = jax.vmap(actor_apply, (None, 0))(actor_params, obs)  # [B, N, A]
    n = u.shape[1]
    buffer = jax.lax.stop_gradient(action)
    joint = jax.vmap(lambda sel: jnp.where(sel[None, :, None], u, buffer))(jnp.eye(n, dtype=bool))  # [N, B, N, A]
    q = jax.vmap(jax.vmap(q_fn), (None, 0))(state, joint)  # [N, B]
    mask = jnp.asarray(action_mask, jnp.float32)
    reg = (pre**2 * mask).sum(axis=(0, 2)) / (pre.shape[0] * jnp.maximum(mask.sum(-1), 1.0))  # [N]
    per = -q.mean(axis=1) + action_reg * reg
    return per.sum(), {"per_agent": per, "q": q, "reg": reg}


class MADDPG(DeterministicActorAgent):
    """MADDPG for one env spec (see the module docstring); deterministic execution.

    Args:
      spec: the env's :class:`~svnr_jax.envs.base.EnvSpec` (actors act in ``[-1, 1]``).
      config: :class:`MADDPGConfig`. total_iterations: unused (no schedules).
    """

    def __init__(self, spec: EnvSpec, config: MADDPGConfig, total_iterations: int = 1):
        super().__init__(spec, config, total_iterations)
        c = config
        n, a = spec.num_agents, spec.action_dim
        self.actor_module = MLP(tuple(c.actor_hidden), a)
        self.critic = make_critic(spec.state_size, n, a, hidden=c.critic_hidden)

        def tx(lr: float) -> optax.GradientTransformation:
            clip = [optax.clip_by_global_norm(c.grad_clip)] if c.grad_clip > 0 else []
            return optax.chain(*clip, optax.adam(lr, eps=c.adam_eps))

        self.actor_tx = per_agent(tx(c.actor_lr))
        self.critic_tx = tx(c.critic_lr)

    # ----------------------------------------------------------------------------------- networks

    def actor_apply(self, actor_params, obs: Array) -> tuple[Array, Array]:
        """All agents' actions ``[N, A]`` (tanh, padded entries 0) and pre-tanh outputs from ``obs [N, O]``."""
        pre = jax.vmap(self.actor_module.apply)(actor_params, obs)
        return jnp.tanh(pre) * self.action_mask, pre

    def q(self, critic_params, state: Array, u: Array) -> Array:
        """``Q(s, u)`` ``[]`` for one state ``[S]`` and joint action ``[N, A]``."""
        return self.critic.apply(critic_params, state, u)[0]

    def target(self, ls: MADDPGState, batch: Transition) -> Array:
        """Critic targets ``y = r_s·r + γ(1−d) Q̄(s', μ̄(o'))`` ``[B]`` (target actors, no noise)."""
        c = self.config
        u_next = jax.vmap(lambda o: self.actor_apply(ls.target_actor_params, o)[0])(batch.next_obs)
        q_next = jax.vmap(self.q, (None, 0, 0))(ls.target_critic_params, batch.next_state, u_next)
        return c.reward_scale * batch.reward + c.gamma * (1.0 - batch.terminal) * q_next

    # ----------------------------------------------------------------------------------- learning

    def init(self, key: PRNGKey) -> MADDPGState:
        """Fresh parameters; the targets start as copies (facmac deep-copies them)."""
        k_actor, k_critic = jax.random.split(key)
        dummy = jnp.zeros((self.spec.obs_dim,), jnp.float32)
        ap = jax.vmap(lambda k: self.actor_module.init(k, dummy))(jax.random.split(k_actor, self.spec.num_agents))
        cp = self.critic.init(k_critic)
        return MADDPGState(ap, cp, ap, cp, self.actor_tx.init(ap), self.critic_tx.init(cp), jnp.zeros((), jnp.int32))

    def _critic_loss(self, critic_params, batch: Transition, y: Array) -> tuple[Array, dict]:
        q = jax.vmap(self.q, (None, 0, 0))(critic_params, batch.state, batch.action)
        loss = jnp.mean((q - y) ** 2)
        return loss, {"critic_loss": loss, "q_mean": q.mean(), "target_mean": y.mean()}

    def _critic_step(self, ls: MADDPGState, batch: Transition) -> tuple[MADDPGState, dict]:
        y = jax.lax.stop_gradient(self.target(ls, batch))
        cp, copt, aux = gradient_step(self._critic_loss, ls.critic_params, ls.critic_opt, self.critic_tx, batch, y)
        return ls.replace(critic_params=cp, critic_opt=copt), aux

    def update(self, ls: MADDPGState, batch: Transition, key: PRNGKey, iteration: Array) -> tuple[MADDPGState, dict]:
        """Critic step, actor step (on the updated critic, teammates' actions from the buffer), Polyak targets.

        ``key`` and ``iteration`` are unused (the update is deterministic)."""
        del key, iteration
        c = self.config
        ls, c_aux = self._critic_step(ls, batch)
        critic_params = jax.lax.stop_gradient(ls.critic_params)

        def loss(ap):
            total, aux = actor_loss(ap, batch.obs, batch.state, batch.action, actor_apply=self.actor_apply,
                                    q_fn=lambda s, u: self.q(critic_params, s, u), action_mask=self.action_mask,
                                    action_reg=c.action_reg)
            return total, aux

        ap, aopt, p_aux = gradient_step(loss, ls.actor_params, ls.actor_opt, self.actor_tx)
        t_actor = optax.incremental_update(ap, ls.target_actor_params, c.tau)
        t_critic = optax.incremental_update(ls.critic_params, ls.target_critic_params, c.tau)
        ls = ls.replace(actor_params=ap, actor_opt=aopt, target_actor_params=t_actor, target_critic_params=t_critic,
                        updates=ls.updates + 1)
        metrics = {**c_aux, "policy_loss": p_aux["per_agent"].mean(), "policy_q": p_aux["q"].mean(),
                   "action_reg_term": p_aux["reg"].mean()}
        return ls, metrics

    def pretrain(self, ls: MADDPGState, batch: Transition, key: PRNGKey) -> tuple[MADDPGState, dict]:
        """Critic-only update (critic step and its Polyak target; actors and target actors unchanged)."""
        del key
        ls, aux = self._critic_step(ls, batch)
        t_critic = optax.incremental_update(ls.critic_params, ls.target_critic_params, self.config.tau)
        return ls.replace(target_critic_params=t_critic, updates=ls.updates + 1), aux

    # ----------------------------------------------------------------------------------- execution


register("maddpg", MADDPGConfig, MADDPG)

__all__ = ["MADDPG", "MADDPGConfig", "MADDPGState", "actor_loss", "per_agent"]
