"""The training loop, for any registered algorithm (off-policy or on-policy): one ``lax.scan`` over
iterations, evaluation inside the scan, seed sweeps by ``vmap``.

``make_train(config)`` does the Python-side setup (env, agent of ``config.algo``, sizes; all static) and
returns a pure ``train(key) -> TrainOutput``. Inside: ``init`` (parameters, envs, buffer filled by uniform
warm-up, optional critic warm-up), then a scan over evaluation periods; a period is a scan of E iterations
of :func:`train_step` followed by :func:`evaluate` (no ``lax.cond``: under ``vmap`` a batched predicate
would run both branches every iteration). The loop knows only the agent contract of
:mod:`svnr_jax.algorithms.base`.

One iteration of :func:`train_step`:

* off-policy agents: :func:`collect` (one step of the B envs into the replay buffer) then :func:`update`
  (U gradient updates on sampled batches);
* on-policy agents (``agent.on_policy``): :func:`rollout` (a scan of T = ``agent.rollout_length`` steps of
  the B envs, the same per-step code as :func:`collect`, giving a :class:`Trajectory` ``[T, B]``) then ONE
  ``agent.update(learner, trajectory, key, iteration)``. No buffer (``TrainState.buffer`` is ``None``), no
  uniform warm-up: the replay fields of the config (``buffer_size``, ``batch_size``,
  ``updates_per_iteration``, ``warmup_iterations``, ``checkpoint_buffer``) are ignored.

An iteration is :func:`env_steps_per_iteration` env steps (B off-policy, T·B on-policy); ``iterations``,
``eval_every`` and ``chunk_iterations`` count iterations (:func:`svnr_jax.presets.preset` converts the shared
budgets for on-policy agents).

Seed sweeps::

    train = make_train(cfg)
    out = jax.jit(jax.vmap(train))(seed_keys(cfg))      # every leaf gets a leading [num_seeds]

:func:`make_trainer` gives the jitted, seed-vmapped (and sharded) ``init`` and ``chunk`` functions that
the host-side runner (:mod:`svnr_jax.runner`) calls chunk by chunk.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from svnr_jax import acting, replay
from svnr_jax.algorithms.base import Agent, get_algorithm, make_agent
from svnr_jax.config import TrainConfig, validate
from svnr_jax.envs import make
from svnr_jax.envs.base import Env, State
from svnr_jax.envs.wrappers import RescaleActions, wrap_for_training
from svnr_jax.replay import Transition
from svnr_jax.types import Array, PRNGKey


@struct.dataclass
class TrainState:
    """Everything a run carries between iterations (a pytree; a seed sweep adds a leading ``[seeds]``).

    Attributes:
      learner: the agent's learner state (parameters, optimiser states).
      buffer: replay buffer of :class:`~svnr_jax.replay.Transition` (``None`` for on-policy agents).
      env_state: batched env state (leading ``[B]``).
      key: PRNG key of the run.
      iteration: ``[]`` int32 training iterations done (warm-up excluded).
      env_steps: ``[]`` int32 env steps collected (warm-up included).
    """

    learner: Any
    buffer: replay.BufferState | None
    env_state: State
    key: PRNGKey
    iteration: Array
    env_steps: Array


class TrainOutput(NamedTuple):
    """What ``train(key)`` returns.

    Attributes:
      state: final :class:`TrainState`.
      metrics: per-iteration scalars, each ``[iterations]`` (the agent's update metrics, ``train_return``,
        ``train_episodes``).
      eval: per-evaluation scalars, each ``[iterations / eval_every]`` (``eval_<mode>`` mean returns for the
        agent's ``eval_modes``, and ``eval_iteration``).
    """

    state: TrainState
    metrics: dict
    eval: dict


class Trajectory(NamedTuple):
    """What an on-policy agent's ``update`` receives: T steps of the B training envs, every field with a leading
    ``[T, B]`` (step t of env b), the fields of :class:`~svnr_jax.replay.Transition` plus:

    Attributes:
      obs ``[T, B, N, O]``, state ``[T, B, S]``, action ``[T, B, N, A]`` (executed, in ``[-1, 1]``), reward
      ``[T, B]``: as in a Transition.
      next_obs ``[T, B, N, O]``, next_state ``[T, B, S]``: the state the step reached, also when the episode ended
        there (the env's final obs/state, before the automatic reset): bootstrap through truncations from it.
      terminal: ``[T, B]`` float, 1 = the step reached a terminal state (no bootstrap).
      done: ``[T, B]`` float, 1 = the episode ended at this step (terminated OR truncated): step t + 1 of env b
        starts a new episode, so returns and GAE must not run across it.
      extras: the agent's per-step pytree from ``explore_act`` (leading ``[T, B]``; ``()`` if none).
    """

    obs: Array
    state: Array
    action: Array
    reward: Array
    next_obs: Array
    next_state: Array
    terminal: Array
    done: Array
    extras: Any


class Setup(NamedTuple):
    """Static pieces built from a config (closed over by the jitted functions)."""

    config: TrainConfig
    env: Env  # batched training env (wrappers.wrap_for_training: auto-reset, or pooled resets for MaMuJoCo)
    eval_env: Env  # RescaleActions(env), one episode
    agent: Agent


def build(config: TrainConfig) -> Setup:
    """Validate ``config`` and build the env wrappers and the agent of ``config.algo``."""
    validate(config)
    base = make(config.env, **config.env_kwargs)
    agent = make_agent(config.algo, base.spec, config.algo_config, config.iterations)
    return Setup(config, wrap_for_training(base, config.num_envs), RescaleActions(base), agent)


# ------------------------------------------------------------------------------------ the pieces


def env_step(setup: Setup, ts: TrainState, key: PRNGKey, *, random: bool = False
             ) -> tuple[TrainState, Trajectory, dict]:
    """One step of each of the B envs with the agent's exploration actions (``explore_act``, i.e.
    ``act(..., mode="explore")``; uniform actions when ``random``): the per-step code shared by :func:`collect`
    (off-policy) and :func:`rollout` (on-policy). Nothing is stored.

    Returns:
      ``(ts, step [B] (a Trajectory without the T axis), sums)`` with ``sums`` = ``{"return_sum": [],
      "train_episodes": [], "nonfinite_steps": []}``: the summed return and the number of episodes that ended
      this step, and the number of env steps with a non-finite reward, observation or state.
    """
    agent, env, b = setup.agent, setup.env, setup.config.num_envs
    es = ts.env_state
    k_act, k_env = jax.random.split(key)
    if random:
        actions = jax.random.uniform(k_act, (b, *agent.action_mask.shape), minval=-1.0, maxval=1.0)
        actions, extras = actions * agent.action_mask, ()
    else:
        keys = jax.random.split(k_act, b)
        actions, extras = jax.vmap(lambda o, s, k, t: agent.explore_act(ts.learner, o, s, k, t, ts.iteration))(
            es.obs, es.global_state, keys, es.time)
    chex.assert_shape(actions, (b, *agent.action_mask.shape), custom_message=f"{agent.name}.act must return [N, A]")
    nxt = env.step(es, actions, k_env)
    step = Trajectory(obs=es.obs, state=es.global_state, action=actions, reward=nxt.reward,
                      next_obs=nxt.info["final_obs"], next_state=nxt.info["final_global_state"],
                      terminal=nxt.terminated.astype(jnp.float32), done=nxt.done.astype(jnp.float32),
                      extras=extras)
    ended = nxt.info["returned_episode"].astype(jnp.float32)
    ts = ts.replace(env_state=nxt, env_steps=ts.env_steps + b)
    # a non-finite action makes the env pay a NaN reward (Env.check_actions); a non-finite observation or state
    # is an env defect: both are counted, and the runner stops on them
    bad = ~jnp.isfinite(nxt.reward) | jnp.any(~jnp.isfinite(nxt.obs.reshape(b, -1)), axis=-1) | jnp.any(
        ~jnp.isfinite(nxt.global_state), axis=-1)
    return ts, step, {"return_sum": jnp.sum(ended * nxt.info["returned_episode_return"]),
                      "train_episodes": jnp.sum(ended), "nonfinite_steps": jnp.sum(bad.astype(jnp.float32))}


def _collect_metrics(sums: dict) -> dict:
    """``{"train_return", "train_episodes", "nonfinite_steps"}`` from :func:`env_step`'s sums (summed over the
    steps of an iteration): the mean return of the episodes that ended (NaN if none ended)."""
    count = sums["train_episodes"]
    ret = sums["return_sum"] / jnp.maximum(count, 1.0)
    return {"train_return": jnp.where(count > 0, ret, jnp.nan), "train_episodes": count,
            "nonfinite_steps": sums["nonfinite_steps"]}


def collect(setup: Setup, ts: TrainState, key: PRNGKey, *, random: bool = False) -> tuple[TrainState, dict]:
    """Off-policy: one :func:`env_step` of each of the B envs, its transitions added to the buffer.

    Returns:
      ``(ts, {"train_return": [], "train_episodes": [], "nonfinite_steps": []})`` — mean return of episodes that
      ended this step, and the number of env steps with a non-finite reward, observation or state.
    """
    ts, step, sums = env_step(setup, ts, key, random=random)
    tr = Transition(*step[:len(Transition._fields)])
    return ts.replace(buffer=replay.add(ts.buffer, tr)), _collect_metrics(sums)


def rollout(setup: Setup, ts: TrainState, key: PRNGKey) -> tuple[TrainState, Trajectory, dict]:
    """On-policy: T = ``agent.rollout_length`` :func:`env_step` s of the B envs (a ``lax.scan``; episodes that end
    are reset and continue), the learner fixed.

    Returns:
      ``(ts, trajectory [T, B], metrics)``: the collection metrics of :func:`collect` over the T steps.
    """

    def one(carry, _):
        ts, k = carry
        k, k_step = jax.random.split(k)
        ts, step, sums = env_step(setup, ts, k_step)
        return (ts, k), (step, sums)

    (ts, _), (traj, sums) = jax.lax.scan(one, (ts, key), None, length=setup.agent.rollout_length)
    return ts, traj, _collect_metrics(jax.tree.map(jnp.sum, sums))


def _scan_updates(setup: Setup, ts: TrainState, key: PRNGKey, update_fn: Callable, length: int):
    """``length`` calls of ``update_fn(learner, batch, key)`` on fresh buffer batches (a ``lax.scan``
    carrying the key); returns the new learner state and the stacked metrics."""

    def one(carry, _):
        learner, k = carry
        k, k_sample, k_update = jax.random.split(k, 3)
        batch = setup.agent.sample_batch(ts.buffer, k_sample, setup.config.batch_size)
        learner, metrics = update_fn(learner, batch, k_update)
        return (learner, k), metrics

    (learner, _), metrics = jax.lax.scan(one, (ts.learner, key), None, length=length)
    return learner, metrics


def update(setup: Setup, ts: TrainState, key: PRNGKey) -> tuple[TrainState, dict]:
    """U gradient updates on batches sampled from the buffer (a ``lax.scan``); metrics averaged over U."""
    agent = setup.agent
    learner, metrics = _scan_updates(setup, ts, key, lambda ls, b, k: agent.update(ls, b, k, ts.iteration),
                                     setup.config.updates_per_iteration)
    return ts.replace(learner=learner), jax.tree.map(jnp.mean, metrics)


def train_step(setup: Setup, ts: TrainState) -> tuple[TrainState, dict]:
    """One training iteration: :func:`collect` then :func:`update` (off-policy), or :func:`rollout` then one
    ``agent.update`` on the trajectory (on-policy)."""
    key, k_collect, k_update = jax.random.split(ts.key, 3)
    if setup.agent.on_policy:
        ts, traj, c_metrics = rollout(setup, ts.replace(key=key), k_collect)
        learner, u_metrics = setup.agent.update(ts.learner, traj, k_update, ts.iteration)
        ts = ts.replace(learner=learner)
    else:
        ts, c_metrics = collect(setup, ts.replace(key=key), k_collect)
        ts, u_metrics = update(setup, ts, k_update)
    ts = ts.replace(iteration=ts.iteration + 1)
    return ts, {**c_metrics, **u_metrics}


def evaluate(setup: Setup, ts: TrainState, key: PRNGKey, modes: tuple[str, ...] | None = None) -> dict:
    """Mean episode return per execution mode (``eval_<mode>``; default: the agent's ``eval_modes``) at the
    current parameters, plus ``eval_iteration``."""
    agent = setup.agent
    modes = agent.eval_modes if modes is None else modes
    out = acting.evaluate(agent, setup.eval_env, ts.learner, ts.iteration, key, modes, setup.config.eval_episodes)
    out["eval_iteration"] = ts.iteration
    return out


def init(setup: Setup, key: PRNGKey) -> TrainState:
    """Fresh run: parameters, B envs reset, buffer filled by ``warmup_iterations`` of uniform actions, then
    ``critic_warmup_updates`` critic-only updates (the agent's ``pretrain``) on that data. On-policy agents: no
    buffer (``None``) and no warm-up."""
    cfg, agent = setup.config, setup.agent
    k_learner, k_env, k_warm, k_fit, k_run = jax.random.split(key, 5)
    learner = agent.init(k_learner)
    env_state = setup.env.reset(k_env)
    if agent.on_policy:
        return TrainState(learner, None, env_state, k_run, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))
    n, o, a, s = agent.spec.num_agents, agent.spec.obs_dim, agent.spec.action_dim, agent.spec.state_size
    example = Transition(jnp.zeros((n, o)), jnp.zeros((s,)), jnp.zeros((n, a)), jnp.zeros(()),
                         jnp.zeros((n, o)), jnp.zeros((s,)), jnp.zeros(()))
    ts = TrainState(learner, replay.init(example, cfg.buffer_size), env_state, k_warm,
                    jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))

    def warm(ts, _):
        key, k = jax.random.split(ts.key)
        ts, _ = collect(setup, ts.replace(key=key), k, random=True)
        return ts, None

    # Keys are carried and split inside scans (not scanned over as xs: under vmap the key-reuse checker
    # flags a scan over batched key xs). Episodes cut by the warm-up continue under the learned policy.
    ts, _ = jax.lax.scan(warm, ts, None, length=cfg.warmup_iterations)
    if cfg.critic_warmup_updates:
        # [ours] Fit the critic to the uniform warm-up data before the policy moves: an early, blurred critic
        # favours the "safe" average joint action (relative over-generalisation).
        learner, _ = _scan_updates(setup, ts, k_fit, agent.pretrain, cfg.critic_warmup_updates)
        ts = ts.replace(learner=learner)
    return ts.replace(key=k_run)


def period(setup: Setup, ts: TrainState) -> tuple[TrainState, tuple[dict, dict]]:
    """E iterations of :func:`train_step` then one :func:`evaluate`. Metrics ``([E] each, [] each)``."""
    ts, metrics = jax.lax.scan(lambda t, _: train_step(setup, t), ts, None, length=setup.config.eval_every)
    key, k_eval = jax.random.split(ts.key)
    ts = ts.replace(key=key)
    return ts, (metrics, evaluate(setup, ts, k_eval))


def chunk(setup: Setup, ts: TrainState) -> tuple[TrainState, tuple[dict, dict]]:
    """``chunk_iterations`` iterations (C / E periods). Metrics ``([C] each, [C/E] each)``."""
    n_periods = setup.config.chunk_iterations // setup.config.eval_every
    ts, (metrics, evals) = jax.lax.scan(lambda t, _: period(setup, t), ts, None, length=n_periods)
    return ts, (jax.tree.map(lambda x: x.reshape(-1), metrics), evals)


def make_train(config: TrainConfig) -> Callable[[PRNGKey], TrainOutput]:
    """Build a pure ``train(key) -> TrainOutput`` for ``config`` (validated first).

    ``jax.jit(jax.vmap(make_train(cfg)))(keys)`` trains ``len(keys)`` seeds at once.
    """
    setup = build(config)
    n_periods = config.iterations // config.eval_every

    def train(key: PRNGKey) -> TrainOutput:
        ts = init(setup, key)
        ts, (metrics, evals) = jax.lax.scan(lambda t, _: period(setup, t), ts, None, length=n_periods)
        return TrainOutput(ts, jax.tree.map(lambda x: x.reshape(-1), metrics), evals)

    return train


def env_steps_per_iteration(config: TrainConfig) -> int:
    """Env steps one training iteration of ``config`` collects (per seed): ``num_envs`` off-policy,
    ``num_envs × rollout_length`` on-policy (warm-up excluded). Needs no env: budgets convert with it."""
    _, agent_cls = get_algorithm(config.algo)
    return config.num_envs * agent_cls.rollout_length_of(config.algo_config)


def seed_keys(config: TrainConfig) -> Array:
    """``[num_seeds]`` keys: seed s of the sweep uses ``fold_in(key(config.seed), s)``."""
    base = jax.random.key(config.seed)
    return jax.vmap(lambda s: jax.random.fold_in(base, s))(jnp.arange(config.num_seeds))


def seed_sharding(num_seeds: int):
    """A ``NamedSharding`` splitting the leading seed axis over all devices, or ``None`` with one device. With
    several devices the seed axis is padded to a multiple of the device count (:func:`padded_seeds`).

    After :func:`svnr_jax.distributed.initialize` the devices are every process's (``jax.devices()`` is global), in
    process order: process k holds a contiguous block of seeds."""
    devices = jax.devices()
    if len(devices) < 2:
        return None
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    mesh = Mesh(np.array(devices), ("seeds",))
    return NamedSharding(mesh, PartitionSpec("seeds"))


def padded_seeds(num_seeds: int, num_devices: int | None = None) -> int:
    """Seeds actually run: ``num_seeds`` rounded up to a multiple of the device count (of all processes), so that
    every device gets the same number (the padding seeds repeat the last real seed and are dropped from metrics and
    checkpoints)."""
    d = len(jax.devices()) if num_devices is None else num_devices
    return num_seeds if d < 2 else -(-num_seeds // d) * d


def _pad_rows(tree: Any, extra: int) -> Any:
    """``tree`` with its last leading row repeated ``extra`` times."""
    if not extra:
        return tree
    return jax.tree.map(lambda x: jnp.concatenate([x, jnp.repeat(x[-1:], extra, axis=0)]), tree)


class Trainer(NamedTuple):
    """Jitted, seed-vmapped entry points of a run (what the host runner and benchmarks call).

    The state the trainer works on has a leading axis of :attr:`padded` seeds (= ``num_seeds`` on one device; with
    several, rounded up to a multiple of the device count and sharded over them); :meth:`real` drops the padding
    (metrics, checkpoints, results), :meth:`pad` restores it (after a checkpoint is read). With several processes
    the state is made of global arrays (each process holds its devices' seeds) and every process calls the same
    functions in the same order.

    Attributes:
      setup: static :class:`Setup`.
      init: ``keys [num_seeds] -> TrainState`` (leading ``[padded]``, placed on the seed sharding).
      chunk: ``TrainState -> (TrainState, (metrics [padded, C], eval [padded, C/E]))``.
      sharding: the seed sharding or ``None``.
      num_seeds: the run's seeds. padded: seeds run.
    """

    setup: Setup
    init: Callable
    chunk: Callable
    sharding: Any
    num_seeds: int
    padded: int

    def real(self, tree: Any) -> Any:
        """``tree`` (leading ``[padded]``) without the padding seeds: leading ``[num_seeds]``."""
        if self.padded == self.num_seeds:
            return tree
        return jax.tree.map(lambda x: x[:self.num_seeds], tree)

    def pad(self, tree: Any) -> Any:
        """``tree`` (leading ``[num_seeds]``) padded to ``[padded]`` by repeating the last seed and placed on the
        seed sharding. Several processes: ``tree`` holds host values equal on every process (e.g. the seed keys) or
        global arrays (a restored checkpoint); every process must call it."""
        extra = self.padded - self.num_seeds
        if jax.process_count() > 1:  # global arrays: host values placed shard by shard, then padded under jit
            from jax.sharding import NamedSharding, PartitionSpec

            from svnr_jax import distributed

            everywhere = NamedSharding(self.sharding.mesh, PartitionSpec())
            tree = jax.tree.map(lambda x: x if distributed.is_global(x) else distributed.to_global(x, everywhere),
                                tree)
            return jax.jit(_pad_rows, static_argnums=1, out_shardings=self.sharding)(tree, extra)
        tree = _pad_rows(tree, extra)
        return tree if self.sharding is None else jax.device_put(tree, self.sharding)


def over_seeds(f: Callable, seed_batch: int = 0, sharding: Any = None) -> Callable:
    """``f`` (one seed's arguments -> outputs) over a leading seed axis of every argument and output.

    ``seed_batch`` 0: ``jax.vmap(f)`` (all seeds vectorised together; the partitioner splits the seed axis over the
    devices of ``sharding``). ``k >= 1``: each device's seeds run k at a time, one group after another
    (``lax.map(..., batch_size=k)`` inside a ``shard_map`` over the seed axis): the same results up to float
    rounding, a k-seed working set. On CPU, vectorising many seeds of small networks overflows the caches and costs
    more per seed than running them one after another (docs/benchmarks.md); on accelerators vectorise (0)."""
    if not seed_batch:
        return jax.vmap(f)

    def grouped(*xs):
        return jax.lax.map(lambda a: f(*a), xs, batch_size=seed_batch)

    if sharding is None:
        return grouped
    from jax.sharding import PartitionSpec

    # every device works on its own seeds alone (no collectives): no replication checking of the scans' carries
    return jax.shard_map(grouped, mesh=sharding.mesh, in_specs=PartitionSpec("seeds"),
                         out_specs=PartitionSpec("seeds"), check_vma=False)


@functools.lru_cache(maxsize=8)
def make_trainer(config: TrainConfig) -> Trainer:
    """Jitted ``vmap`` of :func:`init` and :func:`chunk` over seeds, sharded over devices when several (the seeds
    padded to a multiple of the device count).

    Cached per (hashable, frozen) config, so a resumed or re-evaluated run in the same process reuses the
    compiled functions."""
    setup = build(config)
    sharding = seed_sharding(config.num_seeds)
    padded = padded_seeds(config.num_seeds)
    v_init = over_seeds(lambda k: init(setup, k), config.seed_batch, sharding)
    v_chunk = over_seeds(lambda ts: chunk(setup, ts), config.seed_batch, sharding)
    if sharding is None:
        return Trainer(setup, jax.jit(v_init), jax.jit(v_chunk, donate_argnums=0), None, config.num_seeds, padded)
    j_init = jax.jit(v_init, in_shardings=sharding, out_shardings=sharding)
    j_chunk = jax.jit(v_chunk, in_shardings=sharding, out_shardings=sharding, donate_argnums=0)
    trainer = Trainer(setup, None, j_chunk, sharding, config.num_seeds, padded)

    def init_padded(keys):
        return j_init(trainer.pad(keys))

    return trainer._replace(init=init_padded)


__all__ = ["Setup", "TrainOutput", "TrainState", "Trainer", "Trajectory", "build", "chunk", "collect", "env_step",
           "env_steps_per_iteration", "evaluate", "init", "make_train", "make_trainer", "over_seeds", "padded_seeds",
           "period",
           "rollout", "seed_keys", "seed_sharding", "train_step", "update"]
