"""MAPPO (Yu et al. 2022, "The Surprising Effectiveness of PPO in Cooperative Multi-Agent Games"): the first on-policy
algorithm of svnr-jax, continuous actions, as HARL (PKU-MARL/HARL) runs it on MaMuJoCo.

* Actors: per agent a tanh-squashed diagonal Gaussian on the agent's own observation, ``u_i = tanh(x_i)``,
  ``x_i ~ N(μ_i(o_i), σ_i²)`` with a state-independent ``σ_i = std_y_coef · sigmoid(p_i / std_x_coef)`` (HARL's
  DiagGaussian; ``p_i`` learned, initialised to ``std_x_coef``). Per-agent networks by default; ``share_actor``: one
  network for all agents, its input ``[o_i, one-hot(i)]``.
* Critic: a centralised ``V(s)`` on the global state, trained on normalised returns (``value_norm``: HARL's ValueNorm,
  running mean and mean-square of the returns with debiasing, kept in the learner state).
* One update on a rollout ``[T, B]`` (:class:`svnr_jax.training.Trajectory`): values ``V(s_t)``, ``V(s'_t)`` and the old
  log-probs at the parameters that collected it (fixed during the rollout, so recomputing them is exact; the pre-tanh
  samples ``x`` are stored as the rollout's extras, so no ``atanh`` of saturated actions); :func:`gae` advantages and
  returns ``R = A + V``; the value normaliser updated with ``R``; advantages normalised over the batch; then
  ``ppo_epochs`` epochs × ``actor_minibatches`` shuffled minibatches of the clipped surrogate
  (:func:`surrogate_loss`) with an entropy bonus, and ``critic_epochs`` × ``critic_minibatches`` of the clipped Huber
  value loss (:func:`clipped_value_loss`); Adam with a global-norm gradient clip per network.

Reference (read for facts, not copied): PKU-MARL/HARL ``harl/algorithms/actors/mappo.py`` (ratio = product over
action dimensions, ``min(r A, clip(r, 1 ± ε) A)``, entropy bonus, grad-norm clip, advantages normalised with
``(A − mean) / (std + 1e-5)``), ``harl/algorithms/critics/v_critic.py`` (value clipping with the same ε around the old
prediction, Huber δ, ``max`` of clipped and unclipped losses, normaliser updated before normalising the returns),
``harl/common/valuenorm.py`` (β 0.99999, ε 1e-5, variance floor 1e-2), ``harl/models/base/distributions.py``
(DiagGaussian), ``harl/models/base/mlp.py`` (LayerNorm on the input and after every ReLU layer, orthogonal init,
output gain 0.01), ``harl/common/buffers/on_policy_critic_buffer_ep.py`` (GAE), ``harl/configs/algos_cfgs/mappo.yaml``
and ``tuned_configs/mamujoco/*/mappo/config.json`` (defaults: HalfCheetah-v2-2x3).

[ours]: the tanh squashing (HARL: an unbounded Gaussian, the env clips); the entropy bonus is the pre-tanh Gaussian's
(the squashed one has no closed form); at a truncation GAE bootstraps from V of the env's final state (HARL zeroes the
advantage of that step); per-agent actors on local observations by default (HARL's MaMuJoCo configs share one actor,
but its MaMuJoCo observations are the full state plus a one-hot agent id); the value normaliser is updated once per
update with all returns (HARL: once per critic minibatch with that minibatch's returns — the same running averages
when every update has the same number of minibatches); the rollout length (HARL episode_length 200) is chosen per env
in the presets so that it divides the shared budget.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from svnr_jax.algorithms.base import EXPLORE, Agent, AlgoConfig, is_num, per_agent, register
from svnr_jax.envs.base import EnvSpec
from svnr_jax.types import Array, PRNGKey

#: ε of the advantage normalisation (HARL: ``(A − mean) / (std + 1e-5)``).
ADV_EPS = 1e-5
#: ValueNorm's ε of the debiasing term and variance floor (harl/common/valuenorm.py).
VN_EPS, VN_MIN_VAR = 1e-5, 1e-2


# ------------------------------------------------------------------------------------------ pure pieces


def gae(rewards: Array, values: Array, next_values: Array, terminals: Array, dones: Array, gamma: float,
        lam: float) -> Array:
    """Generalised advantage estimates ``[T, ...]`` of a rollout (a backward ``lax.scan``).

    ``δ_t = r_t + γ (1 − terminal_t) V(s'_t) − V(s_t)`` and ``A_t = δ_t + γ λ (1 − done_t) A_{t+1}``, ``A_T = 0``:
    the bootstrap ``V(s'_t)`` is the value of the state step t reached (the env's final state when the episode ended
    there), cut only at terminations; the recursion is cut at every episode end (``done``: terminated or truncated),
    since step t + 1 then belongs to the next episode; the last step bootstraps from ``V(s'_{T-1})``.

    Args:
      rewards, values, next_values, terminals, dones: ``[T, ...]`` (float; terminals and dones 0/1).
      gamma: discount γ. lam: GAE λ.
    Returns:
      advantages ``[T, ...]``; the returns (value targets) are ``advantages + values``.
    """
    deltas = rewards + gamma * (1.0 - terminals) * next_values - values

    def back(carry, xs):
        delta, done = xs
        a = delta + gamma * lam * (1.0 - done) * carry
        return a, a

    _, adv = jax.lax.scan(back, jnp.zeros_like(deltas[0]), (deltas, dones), reverse=True)
    return adv


def surrogate_loss(log_prob: Array, old_log_prob: Array, advantages: Array, clip: float) -> tuple[Array, dict]:
    """PPO's clipped surrogate, ``−mean min(r A, clip(r, 1 − ε, 1 + ε) A)`` with ``r = exp(log π − log π_old)``.

    Args:
      log_prob, old_log_prob: ``[...]`` log-probabilities of the taken actions (summed over action dimensions: the
        ratio is the product of the per-dimension ratios, HARL's ``action_aggregation: prod``). advantages: ``[...]``.
      clip: ε.
    Returns:
      ``(loss [], {"ratio": mean r, "clip_fraction": fraction with |r − 1| > ε, "approx_kl": mean(log π_old −
      log π)})``.
    """
    ratio = jnp.exp(log_prob - old_log_prob)
    surr = jnp.minimum(ratio * advantages, jnp.clip(ratio, 1.0 - clip, 1.0 + clip) * advantages)
    aux = {"ratio": ratio.mean(), "clip_fraction": jnp.mean((jnp.abs(ratio - 1.0) > clip).astype(jnp.float32)),
           "approx_kl": jnp.mean(old_log_prob - log_prob)}
    return -surr.mean(), aux


def huber(error: Array, delta: float) -> Array:
    """``e²/2`` for ``|e| ≤ δ``, ``δ (|e| − δ/2)`` beyond (elementwise; HARL's huber_loss)."""
    a = jnp.abs(error)
    return jnp.where(a <= delta, 0.5 * error**2, delta * (a - 0.5 * delta))


def clipped_value_loss(values: Array, old_values: Array, targets: Array, clip: float, delta: float) -> Array:
    """``mean max(H(y − v), H(y − v_clip))`` with ``v_clip = v_old + clip(v − v_old, −ε, ε)`` and ``H`` the Huber loss
    (δ): the value may not profit from moving more than ε from the prediction that collected the data (HARL
    v_critic.cal_value_loss). All in the critic's (normalised) units; ``[...]`` → ``[]``."""
    clipped = old_values + jnp.clip(values - old_values, -clip, clip)
    return jnp.mean(jnp.maximum(huber(targets - values, delta), huber(targets - clipped, delta)))


# --- tanh-squashed diagonal Gaussian (our own: no distrax)


def gaussian_log_prob(x: Array, mu: Array, std: Array, mask: Array) -> Array:
    """``Σ_d mask_d log N(x_d; μ_d, σ_d²)`` over the last axis (padded action entries, ``mask = 0``, do not count)."""
    z = (x - mu) / std
    return jnp.sum(mask * (-0.5 * z * z - jnp.log(std) - 0.5 * math.log(2.0 * math.pi)), axis=-1)


def tanh_log_det(x: Array, mask: Array) -> Array:
    """``Σ_d mask_d log(1 − tanh(x_d)²)`` computed stably as ``2 (log 2 − x − softplus(−2x))`` (no ε needed)."""
    return jnp.sum(mask * 2.0 * (math.log(2.0) - x - jax.nn.softplus(-2.0 * x)), axis=-1)


def tanh_gaussian_log_prob(x: Array, mu: Array, std: Array, mask: Array) -> Array:
    """Log-density of ``u = tanh(x)`` (at the pre-tanh value ``x``) under the squashed Gaussian: ``log N(x) −
    Σ log(1 − tanh(x)²)`` (change of variables, ``du/dx = 1 − tanh²x``). The PPO ratio needs only the Gaussian part:
    the correction is the same under both policies (same ``x``) and cancels."""
    return gaussian_log_prob(x, mu, std, mask) - tanh_log_det(x, mask)


def gaussian_entropy(std: Array, mask: Array) -> Array:
    """Entropy ``Σ_d mask_d (½ log(2πe) + log σ_d)`` of the pre-tanh Gaussian (the bonus; HARL's FixedNormal
    entropy, summed over dimensions)."""
    return jnp.sum(mask * (0.5 * math.log(2.0 * math.pi * math.e) + jnp.log(std)), axis=-1)


# --- value normalisation (PopArt-lite, HARL's ValueNorm)


class ValueNormState(NamedTuple):
    """Running statistics of the returns: exponential averages (weight ``β`` on the past) of the batch mean and
    mean square, and the debiasing term (the sum of the weights, starts at 0). All ``[]`` float32."""

    mean: Array
    mean_sq: Array
    debias: Array


def value_norm_init() -> ValueNormState:
    z = jnp.zeros((), jnp.float32)
    return ValueNormState(z, z, z)


def value_norm_update(vn: ValueNormState, x: Array, beta: float) -> ValueNormState:
    """One update with a batch ``x`` (any shape): ``m ← β m + (1 − β) mean(x)``, the same for ``mean(x²)`` and for the
    debiasing term with 1."""
    w = 1.0 - beta
    return ValueNormState(beta * vn.mean + w * jnp.mean(x), beta * vn.mean_sq + w * jnp.mean(x**2),
                          beta * vn.debias + w)


def value_norm_stats(vn: ValueNormState) -> tuple[Array, Array]:
    """Debiased ``(mean, variance)``: ``m / max(d, 1e-5)`` and ``max(m² / max(d, 1e-5) − mean², 1e-2)``."""
    d = jnp.maximum(vn.debias, VN_EPS)
    mean = vn.mean / d
    return mean, jnp.maximum(vn.mean_sq / d - mean**2, VN_MIN_VAR)


def value_norm_normalize(vn: ValueNormState, x: Array) -> Array:
    mean, var = value_norm_stats(vn)
    return (x - mean) / jnp.sqrt(var)


def value_norm_denormalize(vn: ValueNormState, x: Array) -> Array:
    mean, var = value_norm_stats(vn)
    return x * jnp.sqrt(var) + mean


# ------------------------------------------------------------------------------------------ networks


class Torso(nn.Module):
    """HARL's MLPBase: optional LayerNorm of the input, then ``Dense → ReLU → (LayerNorm)`` per hidden layer
    (orthogonal init, gain √2, zero biases)."""

    hidden: Sequence[int]
    layer_norm: bool = True

    @nn.compact
    def __call__(self, x: Array) -> Array:
        if self.layer_norm:
            x = nn.LayerNorm()(x)
        for width in self.hidden:
            x = nn.relu(nn.Dense(width, kernel_init=nn.initializers.orthogonal(math.sqrt(2.0)))(x))
            if self.layer_norm:
                x = nn.LayerNorm()(x)
        return x


class GaussianActor(nn.Module):
    """``obs [I] -> (μ [A], σ [A])``: a :class:`Torso`, a linear mean (orthogonal init, gain 0.01) and a
    state-independent ``σ = y · sigmoid(p / x)`` with ``p`` initialised to ``x`` (HARL DiagGaussian, std_x_coef,
    std_y_coef)."""

    hidden: Sequence[int]
    action_dim: int
    layer_norm: bool = True
    std_x_coef: float = 1.0
    std_y_coef: float = 0.5

    @nn.compact
    def __call__(self, obs: Array) -> tuple[Array, Array]:
        h = Torso(self.hidden, self.layer_norm)(obs)
        mu = nn.Dense(self.action_dim, kernel_init=nn.initializers.orthogonal(0.01))(h)
        p = self.param("log_std", nn.initializers.constant(self.std_x_coef), (self.action_dim,))
        std = self.std_y_coef * jax.nn.sigmoid(p / self.std_x_coef)
        return mu, jnp.broadcast_to(std, mu.shape)


class ValueNet(nn.Module):
    """``state [S] -> V []``: a :class:`Torso` and a linear output (orthogonal init, gain 1; HARL VNet)."""

    hidden: Sequence[int]
    layer_norm: bool = True

    @nn.compact
    def __call__(self, state: Array) -> Array:
        h = Torso(self.hidden, self.layer_norm)(state)
        return nn.Dense(1, kernel_init=nn.initializers.orthogonal(1.0))(h)[0]


# ------------------------------------------------------------------------------------------ config


@dataclasses.dataclass(frozen=True)
class MAPPOConfig(AlgoConfig):
    """Hyperparameters of MAPPO; defaults are HARL's tuned MaMuJoCo HalfCheetah-v2-2x3 MAPPO config
    (PKU-MARL/HARL tuned_configs/mamujoco/HalfCheetah-v2-2x3/mappo/config.json) unless marked."""

    actor_hidden: tuple[int, ...] = (128, 128, 128)
    """Hidden sizes of each agent's actor (HARL MaMuJoCo hidden_sizes 128-128-128)."""
    critic_hidden: tuple[int, ...] = (128, 128, 128)
    """Hidden sizes of the centralised value network V(s) (HARL: the same hidden_sizes)."""
    layer_norm: bool = True
    """LayerNorm on the network input and after every hidden layer (HARL use_feature_normalization and MLPLayer)."""
    share_actor: bool = False
    """One actor network for all agents, input [o_i, one-hot(i)] ([ours] default false: per-agent actors on local
    observations; HARL's MaMuJoCo configs share, with the full state plus an agent id as every agent's observation)."""
    actor_lr: float = 5e-4
    """Adam learning rate of the actors (HARL lr 5e-4)."""
    critic_lr: float = 5e-4
    """Adam learning rate of the critic (HARL critic_lr 5e-4)."""
    adam_eps: float = 1e-5
    """Adam epsilon (HARL opti_eps 1e-5)."""
    linear_lr_decay: bool = False
    """Both learning rates decay linearly to 0 over the run's iterations (HARL use_linear_lr_decay; false on
    HalfCheetah-2x3)."""
    rollout_length: int = 125
    """T: env steps of each of the B envs per iteration, one update per rollout ([ours]: HARL episode_length 200; 125
    divides the shared MaMuJoCo budget and its evaluation period into whole rollouts of 16 envs)."""
    gamma: float = 0.99
    """Discount factor γ (HARL gamma 0.99)."""
    gae_lambda: float = 0.95
    """GAE λ (HARL gae_lambda 0.95)."""
    ppo_epochs: int = 15
    """Epochs of actor updates per rollout (HARL ppo_epoch 15 on HalfCheetah-2x3)."""
    critic_epochs: int = 15
    """Epochs of critic updates per rollout (HARL critic_epoch 15 on HalfCheetah-2x3)."""
    actor_minibatches: int = 1
    """Shuffled minibatches per actor epoch (HARL actor_num_mini_batch 1)."""
    critic_minibatches: int = 1
    """Shuffled minibatches per critic epoch (HARL critic_num_mini_batch 1)."""
    clip: float = 0.05
    """ε of the ratio clip and of the value clip (HARL clip_param 0.05 on HalfCheetah-2x3; its default 0.2)."""
    entropy_coef: float = 0.01
    """Weight of the entropy bonus (HARL entropy_coef 0.01 on HalfCheetah-2x3)."""
    value_loss_coef: float = 1.0
    """Weight of the value loss (HARL value_loss_coef 1)."""
    huber_delta: float = 10.0
    """δ of the Huber value loss (HARL huber_delta 10)."""
    max_grad_norm: float = 10.0
    """Global gradient-norm clip of each actor and of the critic (HARL max_grad_norm 10); 0 disables it."""
    value_norm: bool = True
    """Train V on returns normalised by running statistics (HARL use_valuenorm)."""
    value_norm_beta: float = 0.99999
    """Weight of the past in the running return statistics (HARL ValueNorm beta 0.99999)."""
    std_x_coef: float = 1.0
    """σ = std_y_coef · sigmoid(p / std_x_coef), p initialised to std_x_coef (HARL std_x_coef 1)."""
    std_y_coef: float = 0.5
    """Upper bound of the pre-tanh σ; the initial σ is 0.5 · sigmoid(1) ≈ 0.37 (HARL std_y_coef 0.5)."""

    def check(self) -> None:
        super().check()
        self.positive("actor_lr", "critic_lr", "adam_eps", "value_loss_coef", "huber_delta", "std_x_coef", "std_y_coef")
        self.positive_int("rollout_length", "ppo_epochs", "critic_epochs", "actor_minibatches", "critic_minibatches")
        self.unit_interval("gamma", "gae_lambda")
        self.unit_interval("clip", low_open=True)
        for name in ("entropy_coef", "max_grad_norm"):
            v = getattr(self, name)
            self.require(name, is_num(v) and v >= 0, "a finite number >= 0")
        b = self.value_norm_beta
        self.require("value_norm_beta", is_num(b) and 0 < b < 1, "a number in (0, 1)")


@struct.dataclass
class MAPPOState:
    """Learner state of MAPPO (a pytree).

    Attributes:
      actor_params: per-agent actors stacked on a leading ``[N]`` axis (``share_actor``: one network, no agent axis).
      critic_params: V(s). actor_opt, critic_opt: optax states (per agent for separate actors).
      value_norm: :class:`ValueNormState` of the returns. updates: ``[]`` int32 updates (rollouts) done.
    """

    actor_params: Any
    critic_params: Any
    actor_opt: optax.OptState
    critic_opt: optax.OptState
    value_norm: ValueNormState
    updates: Array


# ------------------------------------------------------------------------------------------ agent


def _step(loss_fn: Callable, params, opt_state, tx: optax.GradientTransformation, *args):
    """One optimiser step on ``loss_fn(params, *args) -> (loss, aux)``; returns ``(params, opt, aux, grads)``."""
    (_, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, *args)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, aux, grads


def _epochs(step_fn: Callable, params, opt_state, key: PRNGKey, data: Any, epochs: int, minibatches: int):
    """``epochs`` passes over ``data`` (leaves with a leading ``[M]``), each in ``minibatches`` shuffled minibatches of
    ``M // minibatches`` samples (the remainder left out, as HARL), ``step_fn(params, opt, batch) -> (params, opt,
    aux)``; returns the new params and opt state and the aux averaged over all steps."""
    m = jax.tree.leaves(data)[0].shape[0]
    size = m // minibatches

    def epoch(carry, _):
        params, opt_state, k = carry
        k, k_perm = jax.random.split(k)
        idx = jax.random.permutation(k_perm, m)[:minibatches * size].reshape(minibatches, size)

        def minibatch(c, i):
            p, o = c
            p, o, aux = step_fn(p, o, jax.tree.map(lambda d: d[i], data))
            return (p, o), aux

        (params, opt_state), aux = jax.lax.scan(minibatch, (params, opt_state), idx)
        return (params, opt_state, k), aux

    (params, opt_state, _), aux = jax.lax.scan(epoch, (params, opt_state, key), None, length=epochs)
    return params, opt_state, jax.tree.map(jnp.mean, aux)


class MAPPO(Agent):
    """MAPPO for one env spec (see the module docstring). On-policy: the training loop collects a rollout of
    ``config.rollout_length`` steps of the B envs and calls :meth:`update` once on it.

    Args:
      spec: the env's :class:`~svnr_jax.envs.base.EnvSpec` (actors act in ``[-1, 1]``).
      config: :class:`MAPPOConfig`. total_iterations: iterations of the run (for ``linear_lr_decay``).
    """

    on_policy = True
    modes = ("deterministic", "sample")
    eval_modes = ("deterministic", "sample")
    test_mode = "deterministic"

    @classmethod
    def rollout_length_of(cls, config: MAPPOConfig) -> int:
        return int(config.rollout_length)

    def __init__(self, spec: EnvSpec, config: MAPPOConfig, total_iterations: int = 1):
        super().__init__(spec, config, total_iterations)
        c = config
        n, a = spec.num_agents, spec.action_dim
        self.actor_module = GaussianActor(tuple(c.actor_hidden), a, c.layer_norm, c.std_x_coef, c.std_y_coef)
        self.critic_module = ValueNet(tuple(c.critic_hidden), c.layer_norm)
        self.agent_ids = np.eye(n, dtype=np.float32)

        def tx(lr: float, steps_per_update: int) -> optax.GradientTransformation:
            if c.linear_lr_decay:  # HARL update_linear_schedule: lr·(1 − update / updates), fixed within an update
                total = max(self.total_iterations, 1)
                lr = lambda count, lr0=lr: lr0 * (1.0 - (count // steps_per_update) / total)
            clip = [optax.clip_by_global_norm(c.max_grad_norm)] if c.max_grad_norm > 0 else []
            return optax.chain(*clip, optax.adam(lr, eps=c.adam_eps))

        actor_tx = tx(c.actor_lr, c.ppo_epochs * c.actor_minibatches)
        self.actor_tx = actor_tx if c.share_actor else per_agent(actor_tx)
        self.critic_tx = tx(c.critic_lr, c.critic_epochs * c.critic_minibatches)

    # ----------------------------------------------------------------------------------- networks

    def policy(self, actor_params, obs: Array) -> tuple[Array, Array]:
        """Every agent's pre-tanh Gaussian ``(μ [N, A], σ [N, A])`` from ``obs [N, O]``."""
        if self.config.share_actor:
            x = jnp.concatenate([obs, jnp.asarray(self.agent_ids)], axis=-1)
            return jax.vmap(self.actor_module.apply, (None, 0))(actor_params, x)
        return jax.vmap(self.actor_module.apply)(actor_params, obs)

    def value(self, critic_params, state: Array) -> Array:
        """``V(s)`` ``[]`` in the critic's units (normalised with ``value_norm``) for one state ``[S]``."""
        return self.critic_module.apply(critic_params, state)

    def _denormalize(self, vn: ValueNormState, v: Array) -> Array:
        return value_norm_denormalize(vn, v) if self.config.value_norm else v

    def _normalize(self, vn: ValueNormState, v: Array) -> Array:
        return value_norm_normalize(vn, v) if self.config.value_norm else v

    # ----------------------------------------------------------------------------------- acting

    def _sample(self, ls: MAPPOState, obs: Array, key: PRNGKey, t: Array) -> tuple[Array, Array]:
        mu, std = self.policy(ls.actor_params, obs)
        x = mu + std * jax.random.normal(jax.random.fold_in(key, t), mu.shape)
        return jnp.tanh(x) * self.action_mask, x

    def act(self, ls: MAPPOState, obs: Array, state: Array, key: PRNGKey, t: Array, iteration: Array,
            mode: str = EXPLORE) -> Array:
        """Joint action ``[N, A]``: ``deterministic`` = ``tanh(μ_i(o_i))`` (HARL evaluates the mean); ``sample`` and
        :data:`EXPLORE` = ``tanh(x)``, ``x ~ N(μ, σ²)`` with the step noise from ``fold_in(key, t)`` (each agent its
        own slice). Padded entries 0."""
        self.check_mode(mode)
        if mode == "deterministic":
            mu, _ = self.policy(ls.actor_params, obs)
            return jnp.tanh(mu) * self.action_mask
        return self._sample(ls, obs, key, t)[0]

    def explore_act(self, ls: MAPPOState, obs: Array, state: Array, key: PRNGKey, t: Array, iteration: Array
                    ) -> tuple[Array, Array]:
        """``act(..., EXPLORE)`` and its pre-tanh sample ``x [N, A]`` (stored with the rollout: exact log-probs)."""
        return self._sample(ls, obs, key, t)

    # ----------------------------------------------------------------------------------- learning

    def init(self, key: PRNGKey) -> MAPPOState:
        """Fresh actors (per agent, or one shared), critic, optimiser states and value normaliser."""
        k_actor, k_critic = jax.random.split(key)
        n, o = self.spec.num_agents, self.spec.obs_dim
        if self.config.share_actor:
            ap = self.actor_module.init(k_actor, jnp.zeros((o + n,), jnp.float32))
        else:
            dummy = jnp.zeros((o,), jnp.float32)
            ap = jax.vmap(lambda k: self.actor_module.init(k, dummy))(jax.random.split(k_actor, n))
        cp = self.critic_module.init(k_critic, jnp.zeros((self.spec.state_size,), jnp.float32))
        return MAPPOState(ap, cp, self.actor_tx.init(ap), self.critic_tx.init(cp), value_norm_init(),
                          jnp.zeros((), jnp.int32))

    def _actor_loss(self, actor_params, batch: dict) -> tuple[Array, dict]:
        """Clipped surrogate + entropy bonus per agent, on a minibatch ``[M]`` of ``obs [M, N, O]``, pre-tanh ``x [M,
        N, A]``, ``old_log_prob [M, N]`` and normalised ``adv [M]``. Separate actors: the sum of the agents' losses
        (each agent's parameters get its own gradient); a shared actor: their mean (HARL concatenates the agents'
        samples)."""
        c, mask = self.config, jnp.asarray(self.action_mask)
        mu, std = jax.vmap(self.policy, (None, 0))(actor_params, batch["obs"])  # [M, N, A]
        log_prob = gaussian_log_prob(batch["x"], mu, std, mask)  # [M, N]
        per_agent_loss, aux = jax.vmap(surrogate_loss, (1, 1, None, None))(log_prob, batch["old_log_prob"],
                                                                           batch["adv"], c.clip)
        entropy = gaussian_entropy(std, mask).mean(axis=0)  # [N]
        per = per_agent_loss - c.entropy_coef * entropy
        total = per.mean() if c.share_actor else per.sum()
        return total, {"policy_loss": per_agent_loss.mean(), "entropy": entropy.mean(),
                       **jax.tree.map(jnp.mean, aux)}

    def _critic_loss(self, critic_params, batch: dict) -> tuple[Array, dict]:
        """``value_loss_coef ·`` :func:`clipped_value_loss` on a minibatch of ``state [M, S]``, ``old_value [M]`` and
        ``target [M]`` (normalised returns)."""
        c = self.config
        v = jax.vmap(self.value, (None, 0))(critic_params, batch["state"])
        loss = clipped_value_loss(v, batch["old_value"], batch["target"], c.clip, c.huber_delta)
        return c.value_loss_coef * loss, {"value_loss": loss}

    def update(self, ls: MAPPOState, traj: Any, key: PRNGKey, iteration: Array) -> tuple[MAPPOState, dict]:
        """One MAPPO update on a rollout ``traj`` (:class:`svnr_jax.training.Trajectory`, leading ``[T, B]``, extras =
        the pre-tanh samples ``[T, B, N, A]``): GAE at the collecting parameters, value-normaliser update, then the
        actor and critic epochs (see the module docstring). ``iteration`` is unused (the lr decay counts steps)."""
        del iteration
        c, mask = self.config, jnp.asarray(self.action_mask)
        t, b = traj.reward.shape
        m = t * b
        for name, count in (("actor_minibatches", c.actor_minibatches), ("critic_minibatches", c.critic_minibatches)):
            if count > m:
                raise ValueError(f"invalid config value algo_config.{name}={count}; allowed: at most the "
                                 f"rollout_length × num_envs = {m} samples of one update")
        flat = lambda x: x.reshape(m, *x.shape[2:])
        v_fn = jax.vmap(self.value, (None, 0))
        old_value = v_fn(ls.critic_params, flat(traj.state))  # normalised units, the data's predictions
        next_value = v_fn(ls.critic_params, flat(traj.next_state))
        values = self._denormalize(ls.value_norm, old_value).reshape(t, b)
        next_values = self._denormalize(ls.value_norm, next_value).reshape(t, b)
        adv = gae(traj.reward, values, next_values, traj.terminal, traj.done, c.gamma, c.gae_lambda)
        returns = adv + values
        vn = value_norm_update(ls.value_norm, returns, c.value_norm_beta) if c.value_norm else ls.value_norm

        obs, x = flat(traj.obs), flat(traj.extras)
        mu, std = jax.vmap(self.policy, (None, 0))(ls.actor_params, obs)
        old_log_prob = gaussian_log_prob(x, mu, std, mask)  # [M, N] at the collecting parameters (exact)
        adv_flat = flat(adv)
        adv_norm = (adv_flat - adv_flat.mean()) / (adv_flat.std() + ADV_EPS)

        k_actor, k_critic = jax.random.split(key)

        def actor_step(p, o, batch):
            p, o, aux, g = _step(self._actor_loss, p, o, self.actor_tx, batch)
            gn = (jax.vmap(optax.tree.norm)(g).mean() if not c.share_actor else optax.tree.norm(g))
            return p, o, {**aux, "actor_grad_norm": gn}

        def critic_step(p, o, batch):
            p, o, aux, g = _step(self._critic_loss, p, o, self.critic_tx, batch)
            return p, o, {**aux, "critic_grad_norm": optax.tree.norm(g)}

        actor_data = {"obs": obs, "x": x, "old_log_prob": old_log_prob, "adv": adv_norm}
        ap, aopt, a_aux = _epochs(actor_step, ls.actor_params, ls.actor_opt, k_actor, actor_data, c.ppo_epochs,
                                  c.actor_minibatches)
        critic_data = {"state": flat(traj.state), "old_value": old_value, "target": self._normalize(vn, flat(returns))}
        cp, copt, c_aux = _epochs(critic_step, ls.critic_params, ls.critic_opt, k_critic, critic_data,
                                  c.critic_epochs, c.critic_minibatches)
        ls = MAPPOState(ap, cp, aopt, copt, vn, ls.updates + 1)
        metrics = {**a_aux, **c_aux, "advantage_mean": adv.mean(), "return_mean": returns.mean(),
                   "value_mean": values.mean(), "policy_std": jnp.sum(std * mask) / (m * jnp.sum(mask))}
        return ls, metrics


register("mappo", MAPPOConfig, MAPPO)

__all__ = ["MAPPO", "MAPPOConfig", "MAPPOState", "ValueNormState", "clipped_value_loss", "gae", "gaussian_entropy",
           "gaussian_log_prob", "huber", "surrogate_loss", "tanh_gaussian_log_prob", "tanh_log_det", "value_norm_init",
           "value_norm_normalize", "value_norm_denormalize", "value_norm_stats", "value_norm_update"]
