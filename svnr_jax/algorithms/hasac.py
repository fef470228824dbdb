"""HASAC (Liu et al., ICLR 2024, "Maximum Entropy Heterogeneous-Agent Reinforcement Learning"; PKU-MARL/HARL).

Per-agent tanh-Gaussian actors π_i(u_i | o_i) on local observations (decentralised execution), twin centralised
critics Q_k(s, u) on the global state and the joint action with Polyak targets Q̄_k, automatic temperatures.
One update (HARL's order), from an n-step batch (``r = Σ_{k<m} γ^k r_k``, bootstrap ``γ^m``, m ≤ n; see
:func:`svnr_jax.replay.sample_nstep`):

* critic: ``Σ_k mean (Q_k(s, u) − y)²``, ``y = r + γ^m (1 − d)(min_k Q̄_k(s', u') − α_c Σ_i log π_i(u'_i|o'_i))``,
  ``u'_i ~ π_i(·|o'_i)`` (current actors, reparameterised);
* actors, one after another in a random permutation i_1..i_N drawn from the key (``fixed_order``: 0..N−1): agent
  i_m minimises ``mean[α_i log π_i(u_i|o_i) − min_k Q_k(s, u)]`` (the critics just updated) with its own
  ``u_i ~ π_i`` reparameterised and the others' actions in u: for agents updated earlier in this permutation a
  sample of their NEW actors, for later ones a sample of their current (not yet updated) actors — never the
  buffer's actions (HARL off_policy_ha_runner.py: all actions sampled from the actors first, each agent's entry
  re-sampled from its actor right after its step);
* temperature of agent i_m right after its step: ``L(log α_i) = −mean[log α_i (log π_i + H̄_i)]`` with the log π_i
  of its loss's sample and ``H̄_i = target_entropy × (agent i's action dimensions)`` (HARL: −dim A_i); the critic's
  joint temperature α_c likewise on ``Σ_i log π_i`` with target ``Σ_i H̄_i`` (HARL's critic.update_alpha);
* Polyak step of both target critics.

Reference (facts only, not copied): PKU-MARL/HARL ``harl/runners/off_policy_ha_runner.py`` (the update above),
``harl/runners/off_policy_base_runner.py`` (per-agent log α from 0, target entropy −dim A_i, Adam on log α;
data collection samples, evaluation uses the mean), ``harl/algorithms/critics/soft_twin_continuous_q_critic.py``
(target, joint α_c, the two MSE losses summed), ``twin_continuous_q_critic.py`` (one Adam over both critics,
Polyak), ``harl/models/policy_models/squashed_gaussian_policy.py`` (a PlainMLP with ReLU hidden layers but a tanh
last hidden layer, ``final_activation_func: tanh``, no input normalisation; log σ clipped to [−20, 2], σ = exp(log
σ), tanh squashing), ``harl/common/buffers/off_policy_buffer_ep.py`` (n-step returns), ``harl/configs/algos_cfgs/
hasac.yaml`` and ``tuned_configs/mamujoco/*/hasac/config.json`` (values; our class defaults are the HalfCheetah-2x3
ones). Mava's ``ff_hasac.py`` is the same scheme in JAX.

[ours]: the tanh correction log(1 − tanh² + 1e-6) of our shared helpers (HARL: the exact softplus form; they differ
only where tanh saturates); the initialisation of our shared MLPs (truncated-normal variance scaling, He for hidden
layers; HARL's PlainMLP keeps PyTorch's default ``U(±1/√fan_in)``); per-agent noise streams ``fold_in(fold_in(key,
t), i)`` in execution; start indices of n-step chains exclude the newest (n − 1)·B entries (HARL starts anywhere and
cuts the chain at the write frontier); sampling with replacement (HARL: without); n_step 1 by default (n > 1 needs
``replay_stride``, set by :func:`svnr_jax.presets.preset`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from svnr_jax import replay
from svnr_jax.algorithms.base import EXPLORE, Agent, AlgoConfig, is_int, is_num, per_agent, register
from svnr_jax.algorithms.rommeo import (
    LOG_SIG_MAX,
    LOG_SIG_MIN,
    make_gaussian_net,
    tanh_gaussian_sample,
)
from svnr_jax.envs.base import EnvSpec
from svnr_jax.networks import make_critic
from svnr_jax.replay import NStepTransition
from svnr_jax.types import Array, PRNGKey

# ------------------------------------------------------------------------------------------ config


@dataclasses.dataclass(frozen=True)
class HASACConfig(AlgoConfig):
    """Hyperparameters of HASAC; defaults are HARL's tuned HalfCheetah-2x3 values
    (PKU-MARL/HARL tuned_configs/mamujoco/HalfCheetah-v2-2x3/hasac/config.json) unless marked."""

    actor_hidden: tuple[int, ...] = (256, 256)
    """Hidden sizes of each agent's actor π_i(u_i | o_i) (HARL hidden_sizes 256, 256)."""
    critic_hidden: tuple[int, ...] = (256, 256)
    """Hidden sizes of each of the twin critics Q_k(s, u) (HARL: 256, 256)."""
    actor_lr: float = 1e-3
    """Adam learning rate of each actor (HARL lr 1e-3)."""
    critic_lr: float = 1e-3
    """Adam learning rate of the twin critics, one optimiser over both (HARL critic_lr 1e-3)."""
    alpha_lr: float = 3e-4
    """Adam learning rate of each log α_i and of the critic's log α_c (HARL alpha_lr 3e-4)."""
    auto_alpha: bool = True
    """Learn the temperatures towards the target entropy (HARL auto_alpha true); false: every α = alpha."""
    alpha: float = 0.2
    """The fixed temperature when auto_alpha is false (HARL alpha 0.2)."""
    alpha_init: float = 1.0
    """The learned temperatures' initial value (HARL: log α = 0)."""
    target_entropy: float = -1.0
    """Target entropy per action dimension: agent i's target is this × its action dimensions (HARL: −dim A_i); the
    critic's joint α_c targets the sum over agents."""
    gamma: float = 0.99
    """Discount factor γ (HARL gamma 0.99)."""
    tau: float = 0.005
    """Polyak rate of the target critics, every update (HARL polyak 0.005)."""
    n_step: int = 1
    """Steps m ≤ n of the critic's return (stops at an episode end). [ours] default 1; presets set HARL's (10 on
    HalfCheetah-2x3). n > 1 needs replay_stride."""
    replay_stride: int = 0
    """Entries between one env's consecutive transitions in the replay buffer = the run's num_envs (needed when
    n_step > 1). presets.preset sets it from the run; 0: not set (only with n_step 1)."""
    fixed_order: bool = False
    """Update the actors in the order 0..N−1 instead of a random permutation per update (HARL fixed_order false)."""

    def check(self) -> None:
        super().check()
        self.positive("actor_lr", "critic_lr", "alpha_lr", "alpha", "alpha_init")
        self.unit_interval("gamma")
        self.unit_interval("tau", low_open=True)
        self.require("target_entropy", is_num(self.target_entropy), "a finite number")
        self.positive_int("n_step")
        self.positive_int("replay_stride", minimum=0)
        if self.n_step > 1:
            self.require("replay_stride", is_int(self.replay_stride) and self.replay_stride >= 1,
                         f"the run's num_envs (an integer >= 1) when n_step={self.n_step} > 1 (presets.preset sets it)")


# ------------------------------------------------------------------------------------------ pure pieces


def soft_target(reward: Array, discount: Array, terminal: Array, q_next: Array, logp_next: Array,
                alpha_c: Array) -> Array:
    """Critic targets ``y = r + γ^m (1 − d)(min_k Q̄_k(s', u') − α_c Σ_i log π_i(u'_i|o'_i))`` ``[B]``.

    Args:
      reward, discount (γ^m), terminal: ``[B]``. q_next: ``[B, K]`` the K target critics at (s', u').
      logp_next: ``[B, N]`` each agent's log-density of its u'_i. alpha_c: ``[]`` the critic's temperature.
    """
    soft = jnp.min(q_next, axis=-1) - alpha_c * jnp.sum(logp_next, axis=-1)
    return reward + discount * (1.0 - terminal) * soft


def temperature_loss(log_alpha: Array, logp: Array, target: Array) -> Array:
    """``−mean[log α · (log π + H̄)]`` (SAC's automatic temperature, as HARL): its gradient raises log α while the
    entropy estimate −log π is below the target H̄, and lowers it above. ``logp`` is held fixed."""
    return -jnp.mean(log_alpha * (jax.lax.stop_gradient(logp) + target))


def _take(tree, i):
    return jax.tree.map(lambda x: x[i], tree)


def _put(tree, i, value):
    return jax.tree.map(lambda x, v: x.at[i].set(v), tree, value)


class ActorNoise(NamedTuple):
    """Standard normal noises ``[B, N, A]`` (0 on padded entries) of one actor phase: ``current`` (every agent's
    action from its current actor, before any step), ``own`` (agent i's reparameterised sample in its loss) and
    ``new`` (agent i's action re-sampled from its updated actor)."""

    current: Array
    own: Array
    new: Array


@struct.dataclass
class HASACState:
    """Parameters and optimiser states of HASAC (a pytree).

    Attributes:
      actor_params: π_i, leading ``[N]``. critic_params, target_params: the twin critics, leading ``[2]``.
      log_alpha: ``[N]`` log α_i. critic_log_alpha: ``[]`` log α_c.
      actor_opt, alpha_opt: per-agent Adam states (leading ``[N]``). critic_opt, critic_alpha_opt: Adam states.
      updates: ``[]`` int32 gradient updates done (critic-only pretraining included).
    """

    actor_params: dict
    critic_params: dict
    target_params: dict
    log_alpha: Array
    critic_log_alpha: Array
    actor_opt: optax.OptState
    critic_opt: optax.OptState
    alpha_opt: optax.OptState
    critic_alpha_opt: optax.OptState
    updates: Array


# ------------------------------------------------------------------------------------------ agent


class HASAC(Agent):
    """HASAC for one env spec (see the module docstring).

    Execution (agent i from o_i alone; its noise ``fold_in(fold_in(key, t), i)``): ``"deterministic"`` =
    ``tanh(μ_i(o_i))`` (HARL's evaluation; the test mode), ``"sample"`` = ``tanh(μ + σ ε)`` (HARL's data
    collection, also :data:`EXPLORE`).

    Args:
      spec: the env's :class:`~svnr_jax.envs.base.EnvSpec`. config: :class:`HASACConfig`. total_iterations: unused.
    """

    modes = ("deterministic", "sample")
    eval_modes = ("deterministic",)
    test_mode = "deterministic"

    def __init__(self, spec: EnvSpec, config: HASACConfig, total_iterations: int = 1):
        super().__init__(spec, config, total_iterations)
        c = config
        n, a = spec.num_agents, spec.action_dim
        self.actor = make_gaussian_net(n, spec.obs_dim, a, c.actor_hidden, last_hidden_activation=jnp.tanh)
        self.critic = make_critic(spec.state_size, n, a, hidden=c.critic_hidden, twin=True)
        self.adam_actor = optax.adam(c.actor_lr)  # one agent's; per_agent(...) for the stacked state
        self.adam_alpha = optax.adam(c.alpha_lr)
        self.critic_tx = optax.adam(c.critic_lr)
        #: H̄_i = target_entropy × real action dimensions of agent i ``[N]``.
        self.target_entropy = np.float32(c.target_entropy) * self.action_mask.sum(axis=1)

    # ----------------------------------------------------------------------------------- networks

    def policy(self, actor_i, i: Array, obs_i: Array, eps_i: Array) -> tuple[Array, Array, Array]:
        """Agent i's reparameterised actions for a batch: ``obs_i [B, O]``, ``eps_i [B, A]`` ->
        ``(u_i [B, A] (padded 0), log π_i [B], tanh(μ) [B, A])`` with σ = exp(clip(log σ, −20, 2)) (HARL)."""
        mu, log_sig = jax.vmap(self.actor.apply, (None, 0))(actor_i, obs_i)
        mask = jnp.asarray(self.action_mask)[i]
        scale = jnp.exp(jnp.clip(log_sig, LOG_SIG_MIN, LOG_SIG_MAX))
        u, _, logp = tanh_gaussian_sample(mu, scale, eps_i, mask)
        return u, logp, jnp.tanh(mu) * mask

    def policy_all(self, actor_params, obs: Array, eps: Array) -> tuple[Array, Array]:
        """Every agent's actions ``[B, N, A]`` and log-densities ``[B, N]`` (``obs [B, N, O]``, ``eps [B, N, A]``)."""
        n = self.spec.num_agents
        u, logp, _ = jax.vmap(self.policy, (0, 0, 1, 1), (1, 1, 1))(actor_params, jnp.arange(n), obs, eps)
        return u, logp

    def q_min(self, critic_params, state: Array, u: Array) -> Array:
        """``min_k Q_k(s, u)`` ``[B]`` for ``state [B, S]``, ``u [B, N, A]``."""
        return jnp.min(jax.vmap(self.critic.apply, (None, 0, 0))(critic_params, state, u), axis=-1)

    def noise(self, key: PRNGKey, b: int) -> Array:
        """``[B, N, A]`` standard normal noise, 0 on padded action entries."""
        return jax.random.normal(key, (b, *self.action_mask.shape)) * self.action_mask

    def actor_noise(self, key: PRNGKey, b: int) -> ActorNoise:
        """The three noises of one actor phase (``split(key, 3)``)."""
        return ActorNoise(*(self.noise(k, b) for k in jax.random.split(key, 3)))

    def order(self, key: PRNGKey) -> Array:
        """The update order ``[N]`` int32: a random permutation of the agents (or 0..N−1 with ``fixed_order``)."""
        n = self.spec.num_agents
        if self.config.fixed_order:
            return jnp.arange(n, dtype=jnp.int32)
        return jax.random.permutation(key, n).astype(jnp.int32)

    def alphas(self, ls: HASACState) -> tuple[Array, Array]:
        """``(α_i [N], α_c [])``: the learned temperatures, or ``config.alpha`` when ``auto_alpha`` is false."""
        if not self.config.auto_alpha:
            n = self.spec.num_agents
            return jnp.full((n,), self.config.alpha, jnp.float32), jnp.asarray(self.config.alpha, jnp.float32)
        return jnp.exp(ls.log_alpha), jnp.exp(ls.critic_log_alpha)

    # ----------------------------------------------------------------------------------- losses

    def actor_loss_i(self, actor_i, i: Array, u_others: Array, obs_i: Array, state: Array, eps_i: Array,
                     alpha_i: Array, critic_params) -> tuple[Array, tuple[Array, Array]]:
        """Agent i's loss ``mean_b[α_i log π_i(u_i|o_i) − min_k Q_k(s, u)]`` where u is ``u_others [B, N, A]`` with
        row i replaced by agent i's reparameterised sample (``eps_i [B, A]``); only ``actor_i`` is differentiated.

        Returns:
          ``(loss, (log π_i [B], min_k Q [B]))``.
        """
        u_i, logp, _ = self.policy(actor_i, i, obs_i, eps_i)
        joint = jax.lax.stop_gradient(u_others).at[:, i].set(u_i)
        q = self.q_min(jax.lax.stop_gradient(critic_params), state, joint)
        return jnp.mean(alpha_i * logp - q), (logp, q)

    def critic_loss(self, critic_params, batch: NStepTransition, y: Array) -> tuple[Array, dict]:
        """``Σ_k mean_b (Q_k(s_b, u_b) − y_b)²`` with the buffer's joint actions (HARL: the two MSEs summed)."""
        q = jax.vmap(self.critic.apply, (None, 0, 0))(critic_params, batch.state, batch.action)  # [B, 2]
        loss = jnp.sum(jnp.mean((q - y[:, None]) ** 2, axis=0))
        return loss, {"critic_loss": loss, "q_mean": jnp.mean(q), "target_mean": jnp.mean(y)}

    # ----------------------------------------------------------------------------------- learning

    def init(self, key: PRNGKey) -> HASACState:
        """Fresh parameters; the target critics start as copies, log α at log(alpha_init) (HARL: 0)."""
        k_actor, k_critic = jax.random.split(key)
        n = self.spec.num_agents
        ap = self.actor.init(k_actor)
        cp = self.critic.init(k_critic)
        log_a = math.log(self.config.alpha_init if self.config.auto_alpha else self.config.alpha)
        la = jnp.full((n,), log_a, jnp.float32)
        lc = jnp.asarray(log_a, jnp.float32)
        return HASACState(ap, cp, cp, la, lc, per_agent(self.adam_actor).init(ap), self.critic_tx.init(cp),
                          per_agent(self.adam_alpha).init(la), self.adam_alpha.init(lc), jnp.zeros((), jnp.int32))

    def sample_batch(self, buffer: replay.BufferState, key: PRNGKey, batch_size: int) -> NStepTransition:
        """``batch_size`` n-step transitions (:func:`svnr_jax.replay.sample_nstep` with n_step, γ and the run's B =
        replay_stride; with n_step = 1 the uniform one-step batch, discount γ)."""
        c = self.config
        return replay.sample_nstep(buffer, key, batch_size, c.n_step, c.gamma, max(c.replay_stride, 1))

    def critic_step(self, ls: HASACState, batch: NStepTransition, key: PRNGKey) -> tuple[HASACState, dict]:
        """One Adam step of the twin critics on :func:`soft_target` (next actions sampled from the current actors
        with ``key``)."""
        b = batch.reward.shape[0]
        _, alpha_c = self.alphas(ls)
        u_next, logp_next = self.policy_all(ls.actor_params, batch.next_obs, self.noise(key, b))
        q_next = jax.vmap(self.critic.apply, (None, 0, 0))(ls.target_params, batch.next_state, u_next)
        y = jax.lax.stop_gradient(soft_target(batch.reward, batch.discount, batch.terminal, q_next, logp_next,
                                              alpha_c))
        (_, aux), grads = jax.value_and_grad(self.critic_loss, has_aux=True)(ls.critic_params, batch, y)
        updates, opt = self.critic_tx.update(grads, ls.critic_opt, ls.critic_params)
        cp = optax.apply_updates(ls.critic_params, updates)
        return ls.replace(critic_params=cp, critic_opt=opt), {**aux, "nstep_length": jnp.mean(batch.steps)}

    def actor_phase(self, ls: HASACState, batch: NStepTransition, order: Array, noise: ActorNoise
                    ) -> tuple[HASACState, dict, Array]:
        """The sequential actor updates (and each agent's temperature step) in ``order [N]`` (a ``lax.scan`` over
        positions; agent i = ``order[m]`` is read and written by dynamic index in the stacked parameters).

        u starts as every agent's sample of its current actor (``noise.current``); at position m agent i minimises
        :meth:`actor_loss_i` against u (so earlier agents' rows hold their new actors' samples, later agents' rows
        their current actors' samples), then its row is re-sampled from its updated actor (``noise.new``).

        Returns:
          ``(ls, metrics, log π [B, N])`` — each agent's log π_i of its loss's sample (for α_c).
        """
        alpha, _ = self.alphas(ls)
        critic = jax.lax.stop_gradient(ls.critic_params)
        u0, _ = self.policy_all(ls.actor_params, batch.obs, noise.current)
        auto = self.config.auto_alpha
        target = jnp.asarray(self.target_entropy)

        def step(carry, i):
            ap, aopt, la, laopt, u = carry
            p_i, o_i = _take(ap, i), _take(aopt, i)
            (loss, (logp, q)), g = jax.value_and_grad(self.actor_loss_i, has_aux=True)(
                p_i, i, u, batch.obs[:, i], batch.state, noise.own[:, i], alpha[i], critic)
            upd, o_i = self.adam_actor.update(g, o_i, p_i)
            p_i = optax.apply_updates(p_i, upd)
            ap, aopt = _put(ap, i, p_i), _put(aopt, i, o_i)
            if auto:
                ga = jax.grad(temperature_loss)(la[i], logp, target[i])
                upd_a, lo_i = self.adam_alpha.update(ga, _take(laopt, i), la[i])
                la, laopt = la.at[i].set(la[i] + upd_a), _put(laopt, i, lo_i)
            u_new, _, _ = self.policy(p_i, i, batch.obs[:, i], noise.new[:, i])
            u = u.at[:, i].set(jax.lax.stop_gradient(u_new))
            return (ap, aopt, la, laopt, u), (loss, logp, q)

        carry = (ls.actor_params, ls.actor_opt, ls.log_alpha, ls.alpha_opt, u0)
        (ap, aopt, la, laopt, _), (losses, logps, qs) = jax.lax.scan(step, carry, order)
        logp = jnp.zeros_like(logps).at[order].set(logps).T  # [B, N] in agent order
        ls = ls.replace(actor_params=ap, actor_opt=aopt, log_alpha=la, alpha_opt=laopt)
        return ls, {"policy_loss": jnp.mean(losses), "policy_q": jnp.mean(qs), "entropy": -jnp.mean(logps)}, logp

    def critic_alpha_step(self, ls: HASACState, logp: Array) -> HASACState:
        """The critic's temperature step on ``Σ_i log π_i`` ``[B]`` with target ``Σ_i H̄_i`` (no-op unless auto)."""
        if not self.config.auto_alpha:
            return ls
        g = jax.grad(temperature_loss)(ls.critic_log_alpha, jnp.sum(logp, axis=-1), self.target_entropy.sum())
        upd, opt = self.adam_alpha.update(g, ls.critic_alpha_opt, ls.critic_log_alpha)
        return ls.replace(critic_log_alpha=ls.critic_log_alpha + upd, critic_alpha_opt=opt)

    def polyak(self, ls: HASACState) -> HASACState:
        """Target critics ← τ critics + (1 − τ) targets; one more update counted."""
        target = optax.incremental_update(ls.critic_params, ls.target_params, self.config.tau)
        return ls.replace(target_params=target, updates=ls.updates + 1)

    def update(self, ls: HASACState, batch: NStepTransition, key: PRNGKey, iteration: Array
               ) -> tuple[HASACState, dict]:
        """One HASAC update (HARL's order): critic step, sequential actor and temperature steps in a random order,
        the critic's temperature step, Polyak targets.

        Keys: ``split(key, 3)`` = (critic's next actions, order, :meth:`actor_noise`). ``iteration`` unused.
        """
        del iteration
        k_critic, k_order, k_noise = jax.random.split(key, 3)
        ls, c_aux = self.critic_step(ls, batch, k_critic)
        ls, a_aux, logp = self.actor_phase(ls, batch, self.order(k_order),
                                           self.actor_noise(k_noise, batch.reward.shape[0]))
        ls = self.polyak(self.critic_alpha_step(ls, logp))
        alpha, alpha_c = self.alphas(ls)
        return ls, {**c_aux, **a_aux, "alpha": jnp.mean(alpha), "critic_alpha": alpha_c}

    def pretrain(self, ls: HASACState, batch: NStepTransition, key: PRNGKey) -> tuple[HASACState, dict]:
        """Critic-only update: critic step and Polyak targets (actors and temperatures unchanged)."""
        ls, aux = self.critic_step(ls, batch, key)
        return self.polyak(ls), aux

    # ----------------------------------------------------------------------------------- execution

    def act(self, ls: HASACState, obs: Array, state: Array, key: PRNGKey, t: Array, iteration: Array,
            mode: str = EXPLORE) -> Array:
        """Joint action ``[N, A]`` in ``[-1, 1]`` (padded entries 0) for one env: agent i from o_i and its own noise
        ``fold_in(fold_in(key, t), i)``; ``state`` and ``iteration`` unused (decentralised)."""
        del state, iteration
        self.check_mode(mode)
        n, a = self.spec.num_agents, self.spec.action_dim
        step_key = jax.random.fold_in(key, t)

        def one(p_i, i, o_i):
            if mode == "deterministic":
                eps = jnp.zeros((1, a))
            else:  # sample / explore
                eps = jax.random.normal(jax.random.fold_in(step_key, i), (1, a))
            u, _, mean = self.policy(p_i, i, o_i[None], eps * jnp.asarray(self.action_mask)[i])
            return (mean if mode == "deterministic" else u)[0]

        return jax.vmap(one)(ls.actor_params, jnp.arange(n), obs)


register("hasac", HASACConfig, HASAC)

__all__ = ["HASAC", "ActorNoise", "HASACConfig", "HASACState", "soft_target", "temperature_loss"]
