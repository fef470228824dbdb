"""QMIX for continuous actions = COMIX (de Witt et al. 2020; the FACMAC paper's "COMIX"): per-agent utilities
Q_i(o_i, u_i), a monotonic mixing network Q_tot = Mix_ψ(s, Q_1..Q_N), each agent's greedy action by the cross-entropy
method (CEM) on its own Q_i.

Reference (facts only, nothing copied): oxwhirl/facmac

* ``src/modules/mixers/qmix.py`` (``QMixer``): hypernetworks on the global state s give
  ``W1 = |hyper_w1(s)|`` ``[N, E]``, ``b1 = hyper_b1(s)`` ``[E]`` (one linear layer), ``W2 = |hyper_w2(s)|`` ``[E, 1]``
  and the final bias ``V(s)`` (Linear(S, E) → ReLU → Linear(E, 1)); ``Q_tot = elu(q·W1 + b1)·W2 + V(s)``. With
  ``hypernet_layers = 2`` (every facmac config) hyper_w1 and hyper_w2 are Linear(S, 64) → ReLU → Linear(64, ·);
  embedding E = ``mixing_embed_dim`` 64, hypernet width ``hypernet_embed`` 64; no skip connection, no gate; PyTorch's
  default Linear init (``hyper_initialization_nonzeros: 0``). :func:`make_mixer` here is that network, reused by FACMAC.
* ``src/controllers/cqmix_controller.py`` (``cem_sampling``): per agent and state, a Gaussian over the PRE-tanh action,
  mean 0, std 1; 2 iterations of: draw N = 64 samples x, evaluate Q_i(o_i, tanh x), keep the top Ne = 6, refit mean
  and (unbiased) std of their pre-tanh values; the action returned is tanh of the best sample of the LAST iteration
  (the last refit is unused). tanh keeps every CEM action inside (-1, 1). Exploration (``exploration_mode:
  gaussian``): the CEM action + N(0, act_noise²), act_noise 0.1, then clamped to the action box; uniform actions for
  the first ``start_steps`` (our ``warmup_iterations``). Test mode: the same CEM, no noise (no ε-greedy).
* ``src/learners/cq_learner.py``: Q_i at the buffer's actions, mixed with the state; targets
  ``y = r + γ(1−d) Q̄_tot(s', ū')`` with ū' the CEM actions of the TARGET agent nets (test mode: no noise) evaluated
  by the target agents and the target mixer; loss mean (y − Q_tot)²; ONE Adam optimiser over agents + mixer
  (``optimizer_epsilon`` 0.01), global grad-norm clip (``grad_norm_clip`` 0.5 over all parameters), soft target
  updates ``target_update_tau`` 0.001 (``target_update_mode: soft``). With one agent there is no mixer (Q_tot = Q_1).
  ``weight_decay: True`` in the yaml is not applied by the cq learner (its Adam has no weight decay): none here.
* ``src/modules/agents/comix_agent.py`` (``CEMAgent``): Q_i = Linear → ReLU → Linear → ReLU → Linear(1) on
  ``[o_i, u_i]`` (``rnn_hidden_dim`` wide); ``src/config/algs/comix_pp.yaml``: the only COMIX config published (our
  defaults).

[ours]: one utility network per agent, stacked on an agent axis (facmac shares one network between agents with a
one-hot agent id); feed-forward utilities (comix_pp uses the GRU ``cemrnn`` agent; ``CEMAgent`` is facmac's
feed-forward one) without the last action in the input (our Agent contract gives observations only); padded action
entries are 0 in every CEM sample; a ``reward_scale`` (1 = none), as our other baselines.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from svnr_jax.algorithms.base import EXPLORE, Agent, AlgoConfig, gradient_step, is_int, is_num, register
from svnr_jax.envs.base import EnvSpec
from svnr_jax.networks import MLP
from svnr_jax.replay import Transition
from svnr_jax.types import Array, PRNGKey

# ------------------------------------------------------------------------------------------ mixer


class Mixer(NamedTuple):
    """The QMIX monotonic mixing network (pure functions).

    Attributes:
      init: ``key -> params`` (a dict of ``{"kernel": [in, out], "bias": [out]}`` layers, see :func:`make_mixer`).
      apply: ``(params, q_agents [N], state [S]) -> q_tot []``; monotone non-decreasing in every ``q_agents[i]``.
    """

    init: Callable[[PRNGKey], dict]
    apply: Callable[[dict, Array, Array], Array]


def _torch_linear_init(key: PRNGKey, fan_in: int, fan_out: int) -> dict:
    """PyTorch's default ``nn.Linear`` init: kernel and bias ~ U(−1/√fan_in, 1/√fan_in)."""
    bound = 1.0 / math.sqrt(fan_in)
    kk, kb = jax.random.split(key)
    return {"kernel": jax.random.uniform(kk, (fan_in, fan_out), minval=-bound, maxval=bound),
            "bias": jax.random.uniform(kb, (fan_out,), minval=-bound, maxval=bound)}


def _dense(layer: dict, x: Array) -> Array:
    return x @ layer["kernel"] + layer["bias"]


def make_mixer(num_agents: int, state_dim: int, *, embed_dim: int = 64, hypernet_embed: int = 64,
               hypernet_layers: int = 2) -> Mixer:
    """QMIX's monotonic mixer (facmac ``src/modules/mixers/qmix.py``, skip connections and gate off).

    ``Q_tot = elu(q · W1(s) + b1(s)) · W2(s) + V(s)`` with ``W1 = |hyper_w1(s)|`` ``[N, E]``, ``b1 = hyper_b1(s)``
    ``[E]``, ``W2 = |hyper_w2(s)|`` ``[E]`` and ``V(s) = v_1(relu(v_0(s)))``. With ``hypernet_layers = 2`` the weight
    hypernetworks are ``Linear(S, H) → ReLU → Linear(H, ·)`` (layers ``w1_0, w1_1`` and ``w2_0, w2_1``); with 1 they
    are one linear layer (``w1_0``, ``w2_0``). ``b1`` is always one linear layer, ``V`` always two. Every layer is a
    dict ``{"kernel": [in, out], "bias": [out]}`` initialised as PyTorch's ``nn.Linear``.

    Args:
      num_agents: N. state_dim: S. embed_dim: E (facmac ``mixing_embed_dim`` 64).
      hypernet_embed: H (facmac ``hypernet_embed`` 64). hypernet_layers: 1 or 2 (facmac configs: 2).
    Returns:
      :class:`Mixer` with ``apply(params, q_agents [N], state [S]) -> []`` (vmap it over a batch).
    """
    if hypernet_layers not in (1, 2):
        raise ValueError(f"hypernet_layers must be 1 or 2, got {hypernet_layers!r}")
    n, s, e, h = int(num_agents), int(state_dim), int(embed_dim), int(hypernet_embed)
    shapes = {"b1": (s, e), "v_0": (s, e), "v_1": (e, 1)}
    if hypernet_layers == 2:
        shapes.update({"w1_0": (s, h), "w1_1": (h, n * e), "w2_0": (s, h), "w2_1": (h, e)})
    else:
        shapes.update({"w1_0": (s, n * e), "w2_0": (s, e)})

    def init(key: PRNGKey) -> dict:
        keys = jax.random.split(key, len(shapes))
        return {name: _torch_linear_init(k, *shape) for k, (name, shape) in zip(keys, sorted(shapes.items()),
                                                                                  strict=True)}

    def hyper(params: dict, prefix: str, x: Array) -> Array:
        if hypernet_layers == 2:
            return _dense(params[f"{prefix}_1"], jax.nn.relu(_dense(params[f"{prefix}_0"], x)))
        return _dense(params[f"{prefix}_0"], x)

    def apply(params: dict, q_agents: Array, state: Array) -> Array:
        w1 = jnp.abs(hyper(params, "w1", state)).reshape(n, e)
        b1 = _dense(params["b1"], state)
        hidden = jax.nn.elu(q_agents @ w1 + b1)  # [E]
        w2 = jnp.abs(hyper(params, "w2", state))  # [E]
        v = _dense(params["v_1"], jax.nn.relu(_dense(params["v_0"], state)))[0]
        return hidden @ w2 + v

    return Mixer(init, apply)


# ------------------------------------------------------------------------------------------ CEM


def cem_argmax(q_fn: Callable[[Array], Array], key: PRNGKey, action_dim: int, *, num_samples: int = 64,
               num_elites: int = 6, iterations: int = 2, init_std: float = 1.0,
               action_mask: Array | None = None) -> tuple[Array, Array]:
    """The cross-entropy method of facmac's ``cqmix_controller.cem_sampling`` for ONE agent and ONE input.

    A diagonal Gaussian over the pre-tanh action starts at mean 0, std ``init_std``; each iteration draws
    ``num_samples`` samples x, scores ``q_fn(tanh x)``, keeps the ``num_elites`` best and refits the mean and the
    unbiased std of their pre-tanh values. The result is tanh of the best sample of the last iteration (the last refit
    is not used, as in the reference), so it lies in (-1, 1).

    Args:
      q_fn: ``u [K, A] -> [K]`` the utility of K candidate actions (padded entries of u are 0).
      key: PRNG key. action_dim: A.
      num_samples, num_elites, iterations: facmac: 64, 6, 2. init_std: facmac 1.
      action_mask: ``[A]`` 1 for real entries (padded ones are 0 in every sample); ``None``: all real.
    Returns:
      ``(u [A], q [])``: the chosen action and its utility.
    """
    mask = jnp.ones((action_dim,)) if action_mask is None else jnp.asarray(action_mask, jnp.float32)
    mu = jnp.zeros((action_dim,))
    std = jnp.full((action_dim,), init_std, jnp.float32)
    keys = jax.random.split(key, iterations)
    u = q = None
    for it in range(iterations):  # a Python loop: iterations is small and static
        x = mu + std * jax.random.normal(keys[it], (num_samples, action_dim))
        u = jnp.tanh(x) * mask
        q = q_fn(u)
        _, idx = jax.lax.top_k(q, num_elites)
        elite = x[idx]
        mu, std = elite.mean(axis=0), elite.std(axis=0, ddof=1)
    best = jnp.argmax(q)
    return u[best], q[best]


# ------------------------------------------------------------------------------------------ config


@dataclasses.dataclass(frozen=True)
class QMIXConfig(AlgoConfig):
    """Hyperparameters of COMIX; defaults are facmac's ``src/config/algs/comix_pp.yaml`` (the one COMIX config it
    publishes) and the CEM constants hard-coded in ``src/controllers/cqmix_controller.py``, unless marked."""

    agent_hidden: tuple[int, ...] = (64, 64)
    """Hidden layer sizes of each agent's utility Q_i(o_i, u_i) (comix_pp rnn_hidden_dim 64; facmac CEMAgent: two
    hidden layers)."""
    mixing_embed_dim: int = 64
    """E: width of the mixer's hidden layer (facmac mixing_embed_dim)."""
    hypernet_embed: int = 64
    """Hidden width of the two-layer hypernetworks producing W1 and W2 (facmac hypernet_embed)."""
    hypernet_layers: int = 2
    """Layers of the hypernetworks producing W1 and W2: 1 or 2 (facmac hypernet_layers)."""
    lr: float = 0.01
    """Adam learning rate of the utilities and the mixer (one optimiser; comix_pp lr)."""
    adam_eps: float = 0.01
    """Adam epsilon (facmac optimizer_epsilon)."""
    gamma: float = 0.85
    """Discount factor γ (comix_pp, continuous predator-prey)."""
    tau: float = 0.001
    """Polyak rate of the target utilities and target mixer, every update (facmac target_update_tau, mode soft)."""
    grad_clip: float = 0.5
    """Global gradient-norm clip over utilities and mixer (facmac grad_norm_clip); 0 disables it."""
    exploration_noise: float = 0.1
    """Std of the Gaussian noise added to the CEM action when collecting data, in [-1, 1] units (facmac act_noise)."""
    cem_samples: int = 64
    """Candidate actions per CEM iteration (facmac cem_sampling N = 64)."""
    cem_elite_samples: int = 6
    """Elite samples the CEM refits its Gaussian to (facmac cem_sampling Ne = 6); at least 2, at most cem_samples."""
    cem_iterations: int = 2
    """CEM iterations (facmac cem_sampling maxits = 2)."""
    cem_init_std: float = 1.0
    """Initial std of the CEM's pre-tanh Gaussian, mean 0 (facmac: 1)."""
    reward_scale: float = 1.0
    """[ours] Rewards are multiplied by this in the target (reported returns are unscaled); 1 = as facmac."""

    def check(self) -> None:
        super().check()
        self.positive("lr", "adam_eps", "cem_init_std", "reward_scale")
        self.positive_int("mixing_embed_dim", "hypernet_embed", "cem_samples", "cem_iterations")
        self.positive_int("cem_elite_samples", minimum=2)
        self.require("cem_elite_samples", is_int(self.cem_samples) and self.cem_elite_samples <= self.cem_samples,
                     f"an integer in [2, cem_samples={self.cem_samples}]")
        self.require("hypernet_layers", is_int(self.hypernet_layers) and self.hypernet_layers in (1, 2), "1 or 2")
        self.unit_interval("gamma")
        self.unit_interval("tau", low_open=True)
        for name in ("grad_clip", "exploration_noise"):
            v = getattr(self, name)
            self.require(name, is_num(v) and v >= 0, "a finite number >= 0")


# ------------------------------------------------------------------------------------------ agent


@struct.dataclass
class QMIXState:
    """Parameters and optimiser state of COMIX (a pytree).

    Attributes:
      params: ``{"agents": utilities stacked on a leading [N] axis, "mixer": mixer params}``.
      target_params: Polyak-averaged copy of ``params``.
      opt: optax state of the one optimiser over ``params``.
      updates: ``[]`` int32 gradient updates done.
    """

    params: dict
    target_params: dict
    opt: optax.OptState
    updates: Array


class QMIX(Agent):
    """COMIX for one env spec (see the module docstring). Execution is the CEM argmax of each agent's own utility
    (mode ``greedy``; the CEM draws its samples from ``fold_in(key, t)``, so it is reproducible per episode key).

    Args:
      spec: the env's :class:`~svnr_jax.envs.base.EnvSpec` (agents act in ``[-1, 1]``).
      config: :class:`QMIXConfig`. total_iterations: unused (no schedules).
    """

    modes = ("greedy",)
    eval_modes = ("greedy",)
    test_mode = "greedy"

    def __init__(self, spec: EnvSpec, config: QMIXConfig, total_iterations: int = 1):
        super().__init__(spec, config, total_iterations)
        c = config
        self.mask_np = np.asarray(spec.action_mask, np.float32)
        self.utility = MLP(tuple(c.agent_hidden), 1)
        self.mixer = make_mixer(spec.num_agents, spec.state_size, embed_dim=c.mixing_embed_dim,
                                hypernet_embed=c.hypernet_embed, hypernet_layers=c.hypernet_layers)
        self.use_mixer = spec.num_agents > 1  # facmac cq_learner: no mixer for a single agent
        clip = [optax.clip_by_global_norm(c.grad_clip)] if c.grad_clip > 0 else []
        self.tx = optax.chain(*clip, optax.adam(c.lr, eps=c.adam_eps))

    # ----------------------------------------------------------------------------------- networks

    def agent_q(self, agent_params, obs: Array, u: Array) -> Array:
        """Utilities ``Q_i(o_i, u_i)`` ``[N]`` of all agents (``obs [N, O]``, ``u [N, A]``)."""
        x = jnp.concatenate([obs, u], axis=-1)
        return jax.vmap(self.utility.apply)(agent_params, x)[:, 0]

    def mix(self, mixer_params, q_agents: Array, state: Array) -> Array:
        """``Q_tot`` ``[]`` from the utilities ``[N]`` and the global state ``[S]``."""
        if not self.use_mixer:
            return q_agents.sum()
        return self.mixer.apply(mixer_params, q_agents, state)

    def q_tot(self, params, obs: Array, state: Array, u: Array) -> Array:
        """``Q_tot(s, u)`` ``[]`` for one transition (``obs [N, O]``, ``state [S]``, ``u [N, A]``)."""
        return self.mix(params["mixer"], self.agent_q(params["agents"], obs, u), state)

    def cem_actions(self, agent_params, obs: Array, key: PRNGKey) -> tuple[Array, Array]:
        """Every agent's CEM action on its own utility: ``(u [N, A], Q_i(o_i, u_i) [N])`` (padded entries 0)."""
        c = self.config
        n, a = self.mask_np.shape

        def one(p_i, o_i, mask_i, k):
            def q_fn(u):  # [K, A] -> [K]
                x = jnp.concatenate([jnp.broadcast_to(o_i, (u.shape[0], o_i.shape[0])), u], axis=-1)
                return self.utility.apply(p_i, x)[:, 0]

            return cem_argmax(q_fn, k, a, num_samples=c.cem_samples, num_elites=c.cem_elite_samples,
                              iterations=c.cem_iterations, init_std=c.cem_init_std, action_mask=mask_i)

        return jax.vmap(one)(agent_params, obs, jnp.asarray(self.mask_np), jax.random.split(key, n))

    def target(self, ls: QMIXState, batch: Transition, key: PRNGKey) -> Array:
        """Targets ``y = r_s·r + γ(1−d) Q̄_tot(s', ū')`` ``[B]``, ū' the CEM actions of the target utilities."""
        c = self.config
        tp = ls.target_params
        keys = jax.random.split(key, batch.reward.shape[0])

        def q_next(obs, state, k):
            _, q = self.cem_actions(tp["agents"], obs, k)
            return self.mix(tp["mixer"], q, state)

        qn = jax.vmap(q_next)(batch.next_obs, batch.next_state, keys)
        return c.reward_scale * batch.reward + c.gamma * (1.0 - batch.terminal) * qn

    # ----------------------------------------------------------------------------------- learning

    def init(self, key: PRNGKey) -> QMIXState:
        """Fresh parameters; the targets start as copies (facmac deep-copies them)."""
        k_agents, k_mixer = jax.random.split(key)
        dummy = jnp.zeros((self.spec.obs_dim + self.spec.action_dim,), jnp.float32)
        agents = jax.vmap(lambda k: self.utility.init(k, dummy))(jax.random.split(k_agents, self.spec.num_agents))
        params = {"agents": agents, "mixer": self.mixer.init(k_mixer)}
        return QMIXState(params, params, self.tx.init(params), jnp.zeros((), jnp.int32))

    def _loss(self, params, batch: Transition, y: Array) -> tuple[Array, dict]:
        q = jax.vmap(self.q_tot, (None, 0, 0, 0))(params, batch.obs, batch.state, batch.action * self.mask_np)
        loss = jnp.mean((q - y) ** 2)
        return loss, {"critic_loss": loss, "q_taken_mean": q.mean(), "target_mean": y.mean()}

    def update(self, ls: QMIXState, batch: Transition, key: PRNGKey, iteration: Array) -> tuple[QMIXState, dict]:
        """One TD step of the utilities and the mixer on ``y`` (CEM target actions drawn with ``key``), then Polyak
        targets. ``iteration`` is unused."""
        del iteration
        y = jax.lax.stop_gradient(self.target(ls, batch, key))
        params, opt, aux = gradient_step(self._loss, ls.params, ls.opt, self.tx, batch, y)
        tp = optax.incremental_update(params, ls.target_params, self.config.tau)
        return ls.replace(params=params, target_params=tp, opt=opt, updates=ls.updates + 1), aux

    def pretrain(self, ls: QMIXState, batch: Transition, key: PRNGKey) -> tuple[QMIXState, dict]:
        """Critic-only update: COMIX has only a critic, so this is :meth:`update`."""
        return self.update(ls, batch, key, jnp.zeros((), jnp.int32))

    # ----------------------------------------------------------------------------------- execution

    def act(self, ls: QMIXState, obs: Array, state: Array, key: PRNGKey, t: Array, iteration: Array,
            mode: str = EXPLORE) -> Array:
        """Joint action ``[N, A]``: each agent's CEM argmax of its own utility (samples from ``fold_in(key, t)``);
        in :data:`EXPLORE` plus ``N(0, σ²)`` noise, clipped to ``[-1, 1]``; padded entries 0. ``state`` is unused
        (decentralised execution)."""
        self.check_mode(mode)
        del state, iteration
        k_cem, k_noise = jax.random.split(jax.random.fold_in(key, t))
        u, _ = self.cem_actions(ls.params["agents"], obs, k_cem)
        if mode != EXPLORE:
            return u
        noise = jax.random.normal(k_noise, u.shape)
        return jnp.clip(u + self.config.exploration_noise * noise, -1.0, 1.0) * self.mask_np


register("qmix", QMIXConfig, QMIX)

__all__ = ["QMIX", "Mixer", "QMIXConfig", "QMIXState", "cem_argmax", "make_mixer"]
