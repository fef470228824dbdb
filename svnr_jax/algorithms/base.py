"""What every algorithm implements (off-policy and on-policy), the registry of algorithms, and helpers they share.

An algorithm is one module: a frozen config dataclass (subclass of :class:`AlgoConfig`) and an agent
class (subclass of :class:`Agent`), registered by name with :func:`register`. The training loop
(:mod:`svnr_jax.training`), acting (:mod:`svnr_jax.acting`), checkpoints, the runner and the CLI only
use this interface, so adding an algorithm needs no change there.

Agent contract (every method a pure function of explicit pytree state and keys; the agent object is
static configuration, closed over by the jitted loop):

* ``init(key) -> learner state`` (any pytree; parameters and optimiser states).
* ``act(ls, obs [N, O], state [S], key, t, iteration, mode) -> actions [N, A]`` in ``[-1, 1]`` (padded
  entries 0) for one env. ``key`` is the key of the episode (shared by every agent, the same at every
  step): an agent that needs step noise folds in ``t`` itself (``fold_in(key, t)``). ``mode`` is one of
  :attr:`Agent.modes` or :data:`EXPLORE` (what data collection executes: exploration noise included).
* ``update(ls, batch, key, iteration) -> (ls, metrics)``: one gradient update on a
  :class:`~svnr_jax.replay.Transition` batch (leading ``[B]``); ``metrics`` a dict of ``[]`` scalars with
  the same keys at every call. Keys ending in ``loss`` are watched by the runner (a non-finite value
  stops the run).
* ``sample_batch(buffer, key, batch_size)``: what ``update`` and ``pretrain`` get from the replay buffer
  (default: uniform transitions).
* ``pretrain(ls, batch, key) -> (ls, metrics)`` (optional, ``None`` if absent): one critic-only update,
  used ``TrainConfig.critic_warmup_updates`` times on the uniform warm-up data before learning starts.
* ``modes``: execution modes ``act`` accepts; ``eval_modes``: the subset evaluated inside the training
  scan; ``test_mode``: the mode the algorithm executes at test time (pass criteria and tables use it).

On-policy agents (``on_policy = True``, e.g. MAPPO) learn from their own fresh rollouts instead of a replay
buffer: one training iteration is T = :meth:`Agent.rollout_length_of` steps of the B training envs under
``explore_act`` (= ``act(..., EXPLORE)`` plus per-step ``extras`` the agent wants stored, e.g. its pre-tanh
sample), then ONE ``update(ls, trajectory, key, iteration)`` on the whole trajectory (leading ``[T, B]``,
:class:`svnr_jax.training.Trajectory`), which runs its own epochs and minibatches. There is no buffer, no
uniform warm-up and no ``sample_batch``/``pretrain``; the replay fields of the run config are ignored.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import math
from collections.abc import Callable
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax

from svnr_jax.envs.base import EnvSpec
from svnr_jax.types import Array, PRNGKey

#: The execution mode of data collection (every agent accepts it in ``act``).
EXPLORE = "explore"

SCHEDULES = ("constant", "linear", "exponential")


# ------------------------------------------------------------------------------------------ config


def bad_value(name: str, value: Any, allowed: str) -> ValueError:
    """The one error message for a bad config value: names the field, its value and what is allowed."""
    return ValueError(f"invalid config value {name}={value!r}; allowed: {allowed}")


def is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def is_num(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


@dataclasses.dataclass(frozen=True)
class AlgoConfig:
    """Base of every algorithm's config: a frozen (hashable) dataclass whose fields carry attribute
    docstrings (the CLI's help). Subclasses override :meth:`check` (call ``super().check()``) and may list
    the allowed strings of a field in ``choices`` (the CLI offers them)."""

    choices: ClassVar[dict[str, tuple[str, ...]]] = {}

    def check(self) -> None:
        """Raise ``ValueError`` (via :func:`bad_value`, prefixing names with ``algo_config.``) on a bad value.

        The default checks the types the fields declare: tuples of ints are non-empty and >= 1.
        """
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(f.default, bool) and not isinstance(v, bool):
                raise bad_value(f"algo_config.{f.name}", v, "true or false")
            if isinstance(f.default, tuple) and (not isinstance(v, tuple) or not v
                                                 or not all(is_int(h) and h >= 1 for h in v)):
                raise bad_value(f"algo_config.{f.name}", v, "a non-empty tuple of integers >= 1")

    def require(self, name: str, ok: bool, allowed: str) -> None:
        """Raise the standard message for field ``name`` unless ``ok``."""
        if not ok:
            raise bad_value(f"algo_config.{name}", getattr(self, name), allowed)

    def positive(self, *names: str) -> None:
        """Each named field is a finite number > 0."""
        for n in names:
            v = getattr(self, n)
            self.require(n, is_num(v) and v > 0, "a finite number > 0")

    def positive_int(self, *names: str, minimum: int = 1) -> None:
        """Each named field is an integer >= ``minimum``."""
        for n in names:
            v = getattr(self, n)
            self.require(n, is_int(v) and v >= minimum, f"an integer >= {minimum}")

    def unit_interval(self, *names: str, low_open: bool = False) -> None:
        """Each named field is a number in [0, 1] (or (0, 1] with ``low_open``)."""
        for n in names:
            v = getattr(self, n)
            ok = is_num(v) and (0 < v if low_open else 0 <= v) and v <= 1
            self.require(n, ok, "a number in (0, 1]" if low_open else "a number in [0, 1]")


# ------------------------------------------------------------------------------------------ agent


class Agent:
    """Base class of the agents (see the module docstring for the contract; off-policy unless ``on_policy``).

    Args:
      spec: the env's :class:`~svnr_jax.envs.base.EnvSpec` (agents act in ``[-1, 1]``).
      config: the algorithm's config (validated by the caller).
      total_iterations: training iterations of the run (for schedules).
    """

    name: ClassVar[str] = ""
    modes: ClassVar[tuple[str, ...]] = ()
    eval_modes: ClassVar[tuple[str, ...]] = ()
    test_mode: ClassVar[str] = ""
    #: critic-only update used by ``critic_warmup_updates`` (``None``: the algorithm has none).
    pretrain: Callable | None = None
    #: On-policy: each iteration collects a fresh ``[T, B]`` trajectory and calls ``update`` once on it (no replay
    #: buffer, no uniform warm-up); see the module docstring.
    on_policy: ClassVar[bool] = False

    def __init__(self, spec: EnvSpec, config: AlgoConfig, total_iterations: int = 1):
        self.spec, self.config, self.total_iterations = spec, config, int(total_iterations)
        self.action_mask = np.asarray(spec.action_mask, np.float32)  # numpy: a compile-time constant

    @classmethod
    def rollout_length_of(cls, config: AlgoConfig) -> int:
        """T: env steps each of the B training envs takes per training iteration under ``config`` (1 for
        off-policy agents; an on-policy agent returns its rollout length). A classmethod so that presets and
        budgets (:func:`svnr_jax.training.env_steps_per_iteration`) need no env."""
        return 1

    @property
    def rollout_length(self) -> int:
        """T of this agent (:meth:`rollout_length_of` of its config)."""
        return type(self).rollout_length_of(self.config)

    def init(self, key: PRNGKey) -> Any:
        raise NotImplementedError

    def explore_act(self, ls: Any, obs: Array, state: Array, key: PRNGKey, t: Array, iteration: Array
                    ) -> tuple[Array, Any]:
        """What data collection executes: ``(act(..., EXPLORE) [N, A], extras)``, where ``extras`` is a pytree
        stored with each step of an on-policy trajectory (e.g. the pre-tanh sample, for exact log-probs in
        ``update``). Default: no extras, ``()``."""
        return self.act(ls, obs, state, key, t, iteration, EXPLORE), ()

    def act(self, ls: Any, obs: Array, state: Array, key: PRNGKey, t: Array, iteration: Array,
            mode: str = EXPLORE) -> Array:
        raise NotImplementedError

    def update(self, ls: Any, batch: Any, key: PRNGKey, iteration: Array) -> tuple[Any, dict]:
        """Off-policy: one gradient update on a replay batch (leading ``[batch]``). On-policy: the whole update
        (epochs, minibatches) on one trajectory (leading ``[T, B]``)."""
        raise NotImplementedError

    def sample_batch(self, buffer: Any, key: PRNGKey, batch_size: int) -> Any:
        """The batch one ``update`` receives, drawn from the replay buffer (default: ``batch_size`` uniform
        transitions; an algorithm that learns from n-step returns overrides this)."""
        from svnr_jax import replay

        return replay.sample(buffer, key, batch_size)

    def check_mode(self, mode: str) -> None:
        """``ValueError`` naming the allowed modes unless ``mode`` is one of them (or :data:`EXPLORE`)."""
        if mode != EXPLORE and mode not in self.modes:
            raise ValueError(f"unknown execution mode {mode!r} for {self.name}; allowed: {list(self.modes)}")


class DeterministicActorAgent(Agent):
    """Base of agents that execute deterministic actors (MADDPG, FACMAC, MMQ): mode ``"deterministic"`` runs
    ``μ(o)``; data collection adds Gaussian noise (:func:`gaussian_exploration`, std ``config.exploration_noise``).
    Subclasses define ``actor_apply(actor_params, obs [N, O]) -> (u [N, A], pre-tanh [N, A])`` and keep their
    actors in ``ls.actor_params``."""

    modes = ("deterministic",)
    eval_modes = ("deterministic",)
    test_mode = "deterministic"

    def act(self, ls: Any, obs: Array, state: Array, key: PRNGKey, t: Array, iteration: Array,
            mode: str = EXPLORE) -> Array:
        """Joint action ``[N, A]``: ``μ(o)``, or in :data:`EXPLORE` ``μ(o) + N(0, σ²)`` (step noise from
        ``fold_in(key, t)``) clipped to ``[-1, 1]``; padded entries 0."""
        self.check_mode(mode)
        u, _ = self.actor_apply(ls.actor_params, obs)
        if mode != EXPLORE:
            return u
        return gaussian_exploration(u, key, t, self.config.exploration_noise, self.action_mask)


# ------------------------------------------------------------------------------------------ helpers


def gradient_step(loss_fn: Callable, params: Any, opt_state: Any, tx: optax.GradientTransformation, *args,
                  scale: Callable[[Any], Any] | None = None, **kwargs) -> tuple[Any, Any, Any]:
    """One optimiser step on ``loss_fn(params, *args, **kwargs) -> (loss, aux)``.

    Args:
      scale: optional map applied to the optimiser's updates before they are applied (e.g. per-agent
        step sizes).
    Returns:
      ``(new params, new opt state, aux)``.
    """
    (_, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, *args, **kwargs)
    updates, opt_state = tx.update(grads, opt_state, params)
    if scale is not None:
        updates = scale(updates)
    return optax.apply_updates(params, updates), opt_state, aux


def adam(lr: float, grad_clip: float = 0.0) -> optax.GradientTransformation:
    """Adam with an optional global-norm gradient clip (``grad_clip = 0``: none)."""
    clip = [optax.clip_by_global_norm(grad_clip)] if grad_clip > 0 else []
    return optax.chain(*clip, optax.adam(lr))


def gaussian_exploration(u: Array, key: PRNGKey, t: Array, std: float | Array, action_mask) -> Array:
    """``clip(u + std · N(0, I), -1, 1)`` with padded entries 0: the exploration of deterministic actors
    (MADDPG, FACMAC, MMQ, PR2). The step noise comes from ``fold_in(key, t)`` (``key``: the episode key)."""
    noise = jax.random.normal(jax.random.fold_in(key, t), u.shape)
    return jnp.clip(u + std * noise, -1.0, 1.0) * action_mask


def per_agent(tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """``tx`` applied independently to each agent's slice of parameters stacked on a leading agent axis (each
    agent has its own optimiser state and gradient clip, as openai/maddpg's one optimiser per agent)."""
    return optax.GradientTransformation(jax.vmap(tx.init), jax.vmap(tx.update))


def temperature_schedule(kind: str, init: float, end: float, anneal_iterations: float) -> optax.Schedule:
    """An optax schedule of the temperature α over training iterations: ``constant`` (``init``),
    ``linear`` or ``exponential`` from ``init`` to ``end``, reached after ``anneal_iterations`` and held.

    ``init``, ``end`` and ``anneal_iterations`` may be traced scalars (a hyperparameter sweep as one program,
    :mod:`svnr_jax.sweep`): then the same formulas are written out without optax's Python-side checks."""
    if kind not in SCHEDULES:
        raise ValueError(f"unknown temperature schedule {kind!r}; allowed: {list(SCHEDULES)}")
    if not all(isinstance(v, int | float) for v in (init, end, anneal_iterations)):
        return _traced_schedule(kind, init, end, anneal_iterations)
    steps = max(anneal_iterations, 1.0)
    if kind != "constant" and not (init > 0 and end > 0):
        raise ValueError(f"temperature schedule {kind!r} needs init and end > 0, got {init!r} and {end!r}")
    if kind == "constant":
        return optax.constant_schedule(init)
    if kind == "linear":
        return optax.linear_schedule(init, end, steps)
    return optax.exponential_decay(init, steps, end / init, end_value=end)


def _traced_schedule(kind: str, init: Any, end: Any, anneal_iterations: Any) -> optax.Schedule:
    """:func:`temperature_schedule` for traced values (the values were checked concretely beforehand)."""
    steps = jnp.maximum(anneal_iterations, 1.0)
    if kind == "constant":
        return lambda count: init * jnp.ones_like(jnp.asarray(count, jnp.float32))
    if kind == "linear":
        return lambda count: (init - end) * (1.0 - jnp.clip(count, 0.0, steps) / steps) + end
    rate = end / init

    def exponential(count):
        decayed = jnp.where(count <= 0, init, init * jnp.power(rate, count / steps))
        return jnp.where(rate < 1.0, jnp.maximum(decayed, end), jnp.minimum(decayed, end))

    return exponential


# ------------------------------------------------------------------------------------------ registry

_REGISTRY: dict[str, tuple[type[AlgoConfig], type[Agent]]] = {}
#: Modules whose import registers an algorithm; a new algorithm adds its module here.
_BUILTIN_MODULES = ("svnr_jax.algorithms.svnr", "svnr_jax.algorithms.masql", "svnr_jax.algorithms.maddpg",
                    "svnr_jax.algorithms.mmq", "svnr_jax.algorithms.qmix", "svnr_jax.algorithms.facmac",
                    "svnr_jax.algorithms.rommeo", "svnr_jax.algorithms.pr2", "svnr_jax.algorithms.hasac",
                    "svnr_jax.algorithms.mappo")
_loaded = False


def register(name: str, config_cls: type[AlgoConfig], agent_cls: type[Agent]) -> None:
    """Register an algorithm under ``name`` (re-registering replaces it)."""
    agent_cls.name = name
    _REGISTRY[name] = (config_cls, agent_cls)


def _ensure_builtin() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for m in _BUILTIN_MODULES:
            importlib.import_module(m)


def list_algorithms() -> list[str]:
    """Names of every registered algorithm (registration order)."""
    _ensure_builtin()
    return list(_REGISTRY)


def get_algorithm(name: str) -> tuple[type[AlgoConfig], type[Agent]]:
    """``(Config class, Agent class)`` of a registered algorithm.

    Raises:
      ValueError: unknown name (the message lists the registered ones).
    """
    _ensure_builtin()
    if not isinstance(name, str) or name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=2)
        hint = f" (did you mean {close}?)" if close else ""
        raise ValueError(f"unknown algorithm {name!r}{hint}; registered algorithms: {list(_REGISTRY)}")
    return _REGISTRY[name]


def make_agent(name: str, spec: EnvSpec, config: AlgoConfig, total_iterations: int = 1) -> Agent:
    """Build the agent of algorithm ``name`` for ``spec`` (``config`` checked first)."""
    config_cls, agent_cls = get_algorithm(name)
    if not isinstance(config, config_cls):
        raise ValueError(f"algorithm {name!r} needs a {config_cls.__name__}, got {type(config).__name__}")
    config.check()
    return agent_cls(spec, config, total_iterations)


__all__ = ["EXPLORE", "SCHEDULES", "AlgoConfig", "Agent", "DeterministicActorAgent", "adam", "bad_value",
           "gaussian_exploration", "get_algorithm", "gradient_step", "is_int", "is_num", "list_algorithms",
           "make_agent", "per_agent", "register", "temperature_schedule"]
