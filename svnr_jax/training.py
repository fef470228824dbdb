"""SVNR training: one ``lax.scan`` over iterations, evaluation inside the scan, seed sweeps by ``vmap``.

``make_train(config)`` does the Python-side setup (env, learner, sizes; all static) and returns a pure
``train(key) -> TrainOutput``. Inside: ``init`` (parameters, envs, buffer filled by uniform warm-up),
then a scan over evaluation periods; a period is a scan of E iterations of :func:`train_step`
(= :func:`collect` B env steps + :func:`update` U gradient updates) followed by :func:`evaluate`
(no ``lax.cond``: under ``vmap`` a batched predicate would run both branches every iteration).

Seed sweeps::

    train = make_train(cfg)
    out = jax.jit(jax.vmap(train))(seed_keys(cfg))      # every leaf gets a leading [num_seeds]

The host-side runner :func:`run` sees the run in chunks of C iterations (:func:`make_trainer` gives the
jitted ``init`` and ``chunk`` functions), writes metrics (CSV, JSONL, TensorBoard), saves an orbax
checkpoint per chunk, resumes exactly, handles SIGINT/SIGTERM and stops on a non-finite loss. With
several devices the seed axis is sharded over them (``jax.sharding``).
"""

from __future__ import annotations

import csv
import functools
import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from svnr_jax import replay
from svnr_jax.algorithms.svnr import SVNR, LearnerState
from svnr_jax.config import TrainConfig, save_json, validate
from svnr_jax.envs import make
from svnr_jax.envs.base import Env, State
from svnr_jax.envs.wrappers import RescaleActions, wrap_for_training
from svnr_jax.losses import Transition
from svnr_jax.types import Array, PRNGKey

#: Python-side trace counter (retrace guard): incremented each time ``train_step`` is traced.
TRACE_COUNTS: dict[str, int] = {"train_step": 0}

EVAL_MODES_IN_SCAN = ("shared_seed", "deterministic")


@struct.dataclass
class TrainState:
    """Everything a run carries between iterations (a pytree; a seed sweep adds a leading ``[seeds]``).

    Attributes:
      learner: :class:`~svnr_jax.algorithms.svnr.LearnerState`.
      buffer: replay buffer of :class:`~svnr_jax.losses.Transition`.
      env_state: batched env state (leading ``[B]``).
      key: PRNG key of the run.
      iteration: ``[]`` int32 training iterations done (warm-up excluded).
      env_steps: ``[]`` int32 env steps collected (warm-up included).
    """

    learner: LearnerState
    buffer: replay.BufferState
    env_state: State
    key: PRNGKey
    iteration: Array
    env_steps: Array


class TrainOutput(NamedTuple):
    """What ``train(key)`` returns.

    Attributes:
      state: final :class:`TrainState`.
      metrics: per-iteration scalars, each ``[iterations]``.
      eval: per-evaluation scalars, each ``[iterations / eval_every]`` (``eval_<mode>`` mean returns and
        ``eval_iteration``).
    """

    state: TrainState
    metrics: dict
    eval: dict


class Setup(NamedTuple):
    """Static pieces built from a config (closed over by the jitted functions)."""

    config: TrainConfig
    env: Env  # batched training env (Batch(EpisodeStats(AutoReset(RescaleActions(env)))))
    eval_env: Env  # RescaleActions(env), one episode
    agent: SVNR


def build(config: TrainConfig) -> Setup:
    """Validate ``config`` and build the env wrappers and the learner."""
    validate(config)
    base = make(config.env, **config.env_kwargs)
    agent = SVNR(base.spec, config.svnr, config.iterations)
    return Setup(config, wrap_for_training(base, config.num_envs), RescaleActions(base), agent)


# ------------------------------------------------------------------------------------ the pieces


def collect(setup: Setup, ts: TrainState, key: PRNGKey, *, random: bool = False) -> tuple[TrainState, dict]:
    """One step of each of the B envs with shared-seed sampled actions (or uniform ones when ``random``),
    transitions added to the buffer.

    Returns:
      ``(ts, {"train_return": [], "train_episodes": []})`` — mean return of episodes that ended this step.
    """
    agent, env, b = setup.agent, setup.env, setup.config.num_envs
    es = ts.env_state
    k_act, k_env = jax.random.split(key)
    if random:
        actions = jax.random.uniform(k_act, (b, *agent.action_mask.shape), minval=-1.0, maxval=1.0)
        actions = actions * agent.action_mask
    else:
        alpha = agent.alpha(ts.iteration)
        shared = jax.random.split(k_act, b)
        actions = jax.vmap(lambda o, s, k, t: agent.act(ts.learner, o, s, k, t, alpha))(
            es.obs, es.global_state, shared, es.time)
    nxt = env.step(es, actions, k_env)
    tr = Transition(obs=es.obs, state=es.global_state, action=actions, reward=nxt.reward,
                    next_obs=nxt.info["final_obs"], next_state=nxt.info["final_global_state"],
                    terminal=nxt.terminated.astype(jnp.float32))
    buffer = replay.add(ts.buffer, tr)
    ended = nxt.info["returned_episode"].astype(jnp.float32)
    count = jnp.sum(ended)
    ret = jnp.sum(ended * nxt.info["returned_episode_return"]) / jnp.maximum(count, 1.0)
    ts = ts.replace(buffer=buffer, env_state=nxt, env_steps=ts.env_steps + b)
    return ts, {"train_return": jnp.where(count > 0, ret, jnp.nan), "train_episodes": count}


def _scan_updates(setup: Setup, ts: TrainState, key: PRNGKey, update_fn, alpha, length: int):
    """``length`` calls of ``update_fn(learner, batch, key, alpha)`` on fresh buffer batches (a ``lax.scan``
    carrying the key); returns the new learner state and the stacked metrics."""

    def one(carry, _):
        learner, k = carry
        k, k_sample, k_update = jax.random.split(k, 3)
        batch = replay.sample(ts.buffer, k_sample, setup.config.batch_size)
        learner, metrics = update_fn(learner, batch, k_update, alpha)
        return (learner, k), metrics

    (learner, _), metrics = jax.lax.scan(one, (ts.learner, key), None, length=length)
    return learner, metrics


def update(setup: Setup, ts: TrainState, key: PRNGKey) -> tuple[TrainState, dict]:
    """U gradient updates on batches sampled from the buffer (a ``lax.scan``); metrics averaged over U."""
    cfg, agent = setup.config, setup.agent
    learner, metrics = _scan_updates(setup, ts, key, agent.update, agent.alpha(ts.iteration),
                                     cfg.updates_per_iteration)
    return ts.replace(learner=learner), jax.tree.map(jnp.mean, metrics)


def train_step(setup: Setup, ts: TrainState) -> tuple[TrainState, dict]:
    """One training iteration: :func:`collect` then :func:`update`."""
    TRACE_COUNTS["train_step"] += 1
    key, k_collect, k_update = jax.random.split(ts.key, 3)
    ts, c_metrics = collect(setup, ts.replace(key=key), k_collect)
    ts, u_metrics = update(setup, ts, k_update)
    ts = ts.replace(iteration=ts.iteration + 1)
    return ts, {**c_metrics, **u_metrics}


def rollout(setup: Setup, learner: LearnerState, key: PRNGKey, alpha: Array, mode: str, num_episodes: int
            ) -> tuple[Array, Array]:
    """Play ``num_episodes`` full episodes under an execution mode (no learning).

    Episode e uses the shared key ``fold_in(key, e)``; step t's noise is ``fold_in(shared, t)``.

    Returns:
      ``(returns [E], first_actions [E, N, A])`` — first joint action of each episode in ``[-1, 1]``.
    """
    env, agent = setup.eval_env, setup.agent
    horizon = env.spec.episode_length

    def episode(e):
        shared = jax.random.fold_in(key, e)
        state = env.reset(jax.random.fold_in(shared, 2**30))

        def step(carry, _):
            st, ret, alive, first = carry
            act = agent.act(learner, st.obs, st.global_state, shared, st.time, alpha, mode)
            first = jnp.where(st.time == 0, act, first)
            nxt = env.step(st, act, jax.random.fold_in(shared, st.time + 2**20))
            ret = ret + alive * nxt.reward
            alive = alive * (1.0 - nxt.done.astype(jnp.float32))
            return (nxt, ret, alive, first), None

        init = (state, jnp.zeros(()), jnp.ones(()), jnp.zeros(agent.action_mask.shape))
        (_, ret, _, first), _ = jax.lax.scan(step, init, None, length=horizon)
        return ret, first

    return jax.vmap(episode)(jnp.arange(num_episodes))


def evaluate(setup: Setup, ts: TrainState, key: PRNGKey, modes=EVAL_MODES_IN_SCAN) -> dict:
    """Mean episode return per execution mode (``eval_<mode>``) at the current parameters."""
    alpha = setup.agent.alpha(ts.iteration)
    out = {}
    for i, mode in enumerate(modes):
        rets, _ = rollout(setup, ts.learner, jax.random.fold_in(key, i), alpha, mode, setup.config.eval_episodes)
        out[f"eval_{mode}"] = jnp.mean(rets)
    out["eval_iteration"] = ts.iteration
    return out


def init(setup: Setup, key: PRNGKey) -> TrainState:
    """Fresh run: parameters, B envs reset, buffer filled by ``warmup_iterations`` of uniform actions, then
    ``critic_warmup_updates`` critic-only updates on that data."""
    cfg, agent = setup.config, setup.agent
    k_learner, k_env, k_warm, k_fit, k_run = jax.random.split(key, 5)
    learner = agent.init(k_learner)
    env_state = setup.env.reset(k_env)
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
        learner, _ = _scan_updates(setup, ts, k_fit, agent.update_critic, agent.alpha(0), cfg.critic_warmup_updates)
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


def seed_keys(config: TrainConfig) -> Array:
    """``[num_seeds]`` keys: seed s of the sweep uses ``fold_in(key(config.seed), s)``."""
    base = jax.random.key(config.seed)
    return jax.vmap(lambda s: jax.random.fold_in(base, s))(jnp.arange(config.num_seeds))


def seed_sharding(num_seeds: int):
    """A ``NamedSharding`` splitting the leading seed axis over all devices, or ``None`` with one device
    (or when the seeds do not divide evenly)."""
    devices = jax.devices()
    if len(devices) < 2 or num_seeds % len(devices):
        return None
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    mesh = Mesh(np.array(devices), ("seeds",))
    return NamedSharding(mesh, PartitionSpec("seeds"))


class Trainer(NamedTuple):
    """Jitted, seed-vmapped entry points of a run (what the host runner and benchmarks call).

    Attributes:
      setup: static :class:`Setup`.
      init: ``keys [seeds] -> TrainState`` (leading ``[seeds]``).
      chunk: ``TrainState -> (TrainState, (metrics [seeds, C], eval [seeds, C/E]))``.
      sharding: the seed sharding or ``None``.
    """

    setup: Setup
    init: Callable
    chunk: Callable
    sharding: Any


@functools.lru_cache(maxsize=8)
def make_trainer(config: TrainConfig) -> Trainer:
    """Jitted ``vmap`` of :func:`init` and :func:`chunk` over seeds, sharded over devices when several.

    Cached per (hashable, frozen) config, so a resumed or re-evaluated run in the same process reuses the
    compiled functions."""
    setup = build(config)
    sharding = seed_sharding(config.num_seeds)
    v_init = jax.vmap(lambda k: init(setup, k))
    v_chunk = jax.vmap(lambda ts: chunk(setup, ts))
    if sharding is None:
        return Trainer(setup, jax.jit(v_init), jax.jit(v_chunk, donate_argnums=0), None)
    return Trainer(setup, jax.jit(v_init, in_shardings=sharding, out_shardings=sharding),
                   jax.jit(v_chunk, in_shardings=sharding, out_shardings=sharding, donate_argnums=0), sharding)


# ------------------------------------------------------------------------------------ checkpoints


def _is_key(x) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def to_saveable(tree) -> dict:
    """A pytree → the flat dict orbax stores: typed PRNG keys become their raw ``uint32`` data, and
    zero-size leaves (e.g. MJX ``Data.act`` of a model without activations, which orbax refuses to
    save) are left out; :func:`from_saveable` rebuilds them from the template."""
    leaves = jax.tree.leaves(tree)
    return {f"{i:05d}": (jax.random.key_data(x) if _is_key(x) else x)
            for i, x in enumerate(leaves) if getattr(x, "size", 1) > 0}


def from_saveable(saved: dict, template):
    """Inverse of :func:`to_saveable`, using ``template`` for the structure, the key leaves and the
    zero-size leaves."""
    leaves, treedef = jax.tree.flatten(template)
    out = []
    for i, t in enumerate(leaves):
        x = saved.get(f"{i:05d}")
        if x is None:  # a zero-size leaf
            out.append(jnp.zeros(t.shape, t.dtype))
        else:
            out.append(jax.random.wrap_key_data(x) if _is_key(t) else x)
    return jax.tree.unflatten(treedef, out)


def _checkpoint_manager(run_dir: str):
    import orbax.checkpoint as ocp

    return ocp.CheckpointManager(os.path.abspath(os.path.join(run_dir, "checkpoints")),
                                 options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True))


def save_checkpoint(manager, step: int, ts: TrainState) -> None:
    """Save ``ts`` at chunk ``step`` (blocking)."""
    import orbax.checkpoint as ocp

    manager.save(step, args=ocp.args.StandardSave(to_saveable(ts)))
    manager.wait_until_finished()


def restore_checkpoint(manager, template: TrainState, step: int | None = None) -> tuple[TrainState, int]:
    """Restore the latest (or a given) checkpoint with ``template``'s structure and sharding."""
    import orbax.checkpoint as ocp

    step = manager.latest_step() if step is None else step
    if step is None:
        raise FileNotFoundError("no checkpoint to restore")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, to_saveable(template))
    raw = manager.restore(step, args=ocp.args.StandardRestore(abstract))
    return from_saveable(raw, template), step


# ------------------------------------------------------------------------------------ host runner


class RunResult(NamedTuple):
    """What :func:`run` returns.

    Attributes:
      status: ``"finished"``, ``"interrupted"`` (signal or ``max_chunks``) or ``"nonfinite"``.
      state: the last good :class:`TrainState` (seed-batched).
      chunks_done: chunks completed (and checkpointed).
      message: human-readable summary.
    """

    status: str
    state: Any
    chunks_done: int
    message: str


class _Progress:
    """A minimal text progress bar on stderr (one line per chunk; no host sync inside the scan)."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled, self.t0 = total, enabled, time.time()

    def update(self, done: int, info: str) -> None:
        if not self.enabled:
            return
        frac = done / max(self.total, 1)
        bar = "#" * int(30 * frac) + "." * (30 - int(30 * frac))
        print(f"[{bar}] {done}/{self.total} it  {time.time() - self.t0:6.1f}s  {info}", file=sys.stderr, flush=True)


class MetricsWriter:
    """Per-iteration metrics → ``metrics.csv`` / ``metrics.jsonl`` (one row per iteration and seed),
    evaluations → ``eval.csv``, seed means → TensorBoard (``tb/``, if tensorboardX is installed)."""

    def __init__(self, run_dir: str, keep_below: int | None = None):
        self.dir = run_dir
        self.paths = {n: os.path.join(run_dir, n) for n in ("metrics.csv", "metrics.jsonl", "eval.csv")}
        if keep_below is None:
            for p in self.paths.values():
                if os.path.exists(p):
                    os.remove(p)
        else:
            self._truncate(keep_below)
        try:
            from tensorboardX import SummaryWriter

            self.tb = SummaryWriter(os.path.join(run_dir, "tb"), purge_step=keep_below)
        except ImportError:  # pragma: no cover - optional
            self.tb = None

    def _truncate(self, keep_below: int) -> None:
        for name in ("metrics.csv", "eval.csv"):
            p = self.paths[name]
            if not os.path.exists(p):
                continue
            with open(p) as f:
                rows = list(csv.DictReader(f))
            fields = list(rows[0].keys()) if rows else []
            rows = [r for r in rows if int(r["iteration"]) < keep_below]
            with open(p, "w", newline="") as f:
                if fields:
                    w = csv.DictWriter(f, fields)
                    w.writeheader()
                    w.writerows(rows)
        p = self.paths["metrics.jsonl"]
        if os.path.exists(p):
            with open(p) as f:
                lines = [ln for ln in f if ln.strip() and json.loads(ln)["iteration"] < keep_below]
            with open(p, "w") as f:
                f.writelines(lines)

    def _append_csv(self, name: str, rows: list[dict]) -> None:
        p = self.paths[name]
        new = not os.path.exists(p) or os.path.getsize(p) == 0
        with open(p, "a", newline="") as f:
            w = csv.DictWriter(f, list(rows[0].keys()))
            if new:
                w.writeheader()
            w.writerows(rows)

    def write(self, first_iteration: int, metrics: dict, evals: dict) -> None:
        """``metrics`` leaves ``[seeds, C]`` (numpy), ``evals`` leaves ``[seeds, C/E]``."""
        names = sorted(metrics)
        seeds, c = metrics[names[0]].shape
        rows = [{"iteration": first_iteration + t, "seed": s, **{k: float(metrics[k][s, t]) for k in names}}
                for t in range(c) for s in range(seeds)]
        self._append_csv("metrics.csv", rows)
        with open(self.paths["metrics.jsonl"], "a") as f:
            for r in rows:
                f.write(json.dumps({k: (None if isinstance(v, float) and math.isnan(v) else v)
                                    for k, v in r.items()}) + "\n")
        enames = sorted(k for k in evals if k != "eval_iteration")
        erows = [{"iteration": int(evals["eval_iteration"][s, p]), "seed": s,
                  **{k: float(evals[k][s, p]) for k in enames}}
                 for p in range(evals["eval_iteration"].shape[1]) for s in range(seeds)]
        self._append_csv("eval.csv", erows)
        if self.tb is not None:
            for t in range(c):
                for k in names:
                    v = np.nanmean(metrics[k][:, t]) if np.isfinite(metrics[k][:, t]).any() else np.nan
                    if np.isfinite(v):
                        self.tb.add_scalar(f"train/{k}", float(v), first_iteration + t + 1)
            for p in range(evals["eval_iteration"].shape[1]):
                for k in enames:
                    self.tb.add_scalar(f"eval/{k}", float(np.mean(evals[k][:, p])), int(evals["eval_iteration"][0, p]))
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def run(
    config: TrainConfig,
    run_dir: str,
    *,
    resume: bool = False,
    max_chunks: int | None = None,
    progress: bool = True,
    handle_signals: bool = True,
) -> RunResult:
    """Train ``config.num_seeds`` seeds in chunks, logging and checkpointing each chunk.

    Args:
      config: validated here, before anything compiles.
      run_dir: output folder (``config.json``, ``metrics.csv``, ``metrics.jsonl``, ``eval.csv``,
        ``tb/``, ``checkpoints/``).
      resume: continue from the latest checkpoint in ``run_dir`` (the config must match the saved one).
      max_chunks: stop (as if interrupted) after this many chunks in this call — for tests and budgets.
      progress: print a progress line per chunk.
      handle_signals: SIGINT/SIGTERM finish the current chunk, save, and return ``"interrupted"``.
    Returns:
      :class:`RunResult`.
    """
    validate(config)
    os.makedirs(run_dir, exist_ok=True)
    cfg_path = os.path.join(run_dir, "config.json")
    if resume and os.path.exists(cfg_path):
        from svnr_jax.config import load_json

        saved = load_json(cfg_path)
        if saved != config:
            raise ValueError(f"resume: config differs from the one saved in {cfg_path}")
    save_json(config, cfg_path)

    trainer = make_trainer(config)
    keys = seed_keys(config)
    if trainer.sharding is not None:
        keys = jax.device_put(keys, trainer.sharding)
    state = trainer.init(keys)
    manager = _checkpoint_manager(run_dir)
    start_chunk = 0
    if resume and manager.latest_step() is not None:
        state, start_chunk = restore_checkpoint(manager, state)
    total_chunks = config.iterations // config.chunk_iterations
    writer = MetricsWriter(run_dir, keep_below=start_chunk * config.chunk_iterations if resume else None)
    bar = _Progress(config.iterations, progress)

    stop = {"signal": None}
    old_handlers = {}
    if handle_signals:
        def _handler(signum, frame):
            stop["signal"] = signum
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                old_handlers[sig] = signal.signal(sig, _handler)
            except ValueError:  # not in the main thread
                pass

    status, message, done = "finished", "", start_chunk
    try:
        for k in range(start_chunk, total_chunks):
            if max_chunks is not None and k - start_chunk >= max_chunks:
                status, message = "interrupted", f"stopped after max_chunks={max_chunks}"
                break
            t0 = time.time()
            new_state, (metrics, evals) = trainer.chunk(state)
            metrics, evals = jax.device_get((metrics, evals))
            losses = np.stack([metrics["critic_loss"], metrics["policy_loss"]])
            if not np.all(np.isfinite(losses)):
                bad = np.argwhere(~np.isfinite(losses))[0]
                it = k * config.chunk_iterations + int(bad[2]) + 1
                last = manager.latest_step()
                where = (f"last good checkpoint: {os.path.join(run_dir, 'checkpoints', str(last))} "
                         f"(after iteration {last * config.chunk_iterations})" if last is not None
                         else "no checkpoint was saved yet")
                status = "nonfinite"
                message = (f"non-finite {['critic_loss', 'policy_loss'][bad[0]]} at iteration {it} (seed {bad[1]}); "
                           f"stopping. {where}")
                print(message, file=sys.stderr)
                break
            state = new_state
            done = k + 1
            save_checkpoint(manager, done, state)
            writer.write(k * config.chunk_iterations, metrics, evals)
            rate = config.chunk_iterations * config.num_envs * config.num_seeds / (time.time() - t0)
            ev = {m: float(np.mean(evals[f"eval_{m}"][:, -1])) for m in EVAL_MODES_IN_SCAN}
            bar.update(done * config.chunk_iterations,
                       f"{rate:8.0f} env-steps/s  eval " + " ".join(f"{m}={v:.2f}" for m, v in ev.items()))
            if stop["signal"] is not None:
                status = "interrupted"
                message = f"received signal {stop['signal']}; saved checkpoint {done} and exited cleanly"
                print(message, file=sys.stderr)
                break
        else:
            message = f"finished {total_chunks} chunks ({config.iterations} iterations)"
    finally:
        writer.close()
        manager.close()
        for sig, h in old_handlers.items():
            signal.signal(sig, h)
    return RunResult(status, state, done, message)


def load_run(run_dir: str, step: int | None = None) -> tuple[TrainConfig, Trainer, TrainState, int]:
    """Config, trainer and the latest (or given) checkpointed state of a run folder."""
    from svnr_jax.config import load_json

    config = load_json(os.path.join(run_dir, "config.json"))
    trainer = make_trainer(config)
    keys = seed_keys(config)
    if trainer.sharding is not None:
        keys = jax.device_put(keys, trainer.sharding)
    template = jax.eval_shape(trainer.init, keys)
    template = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype) if not _is_key(s) else
                            jax.random.wrap_key_data(jnp.zeros(jax.eval_shape(jax.random.key_data,
                                                                              s).shape, jnp.uint32)),
                            template)
    manager = _checkpoint_manager(run_dir)
    try:
        state, step = restore_checkpoint(manager, template, step)
    finally:
        manager.close()
    return config, trainer, state, step


def evaluate_run(run_dir: str, *, episodes: int | None = None, modes=("shared_seed", "deterministic", "negotiate"),
                 seed: int = 12345) -> dict:
    """Mean ± std over seeds of the episode return per execution mode, from a run's latest checkpoint."""
    config, trainer, state, step = load_run(run_dir)
    setup = trainer.setup
    n_ep = episodes or config.eval_episodes

    @jax.jit
    def eval_all(ts):
        def one(t):
            alpha = setup.agent.alpha(t.iteration)
            return {m: jnp.mean(rollout(setup, t.learner, jax.random.fold_in(jax.random.key(seed), i), alpha, m,
                                        n_ep)[0]) for i, m in enumerate(modes)}
        return jax.vmap(one)(ts)

    res = jax.device_get(eval_all(state))
    return {"env": config.env, "checkpoint": step, "iteration": step * config.chunk_iterations, "episodes": n_ep,
            "returns": {m: {"mean": float(np.mean(v)), "std": float(np.std(v)), "per_seed": [float(x) for x in v]}
                        for m, v in res.items()}}


__all__ = ["EVAL_MODES_IN_SCAN", "MetricsWriter", "RunResult", "Setup", "TrainOutput", "TrainState", "Trainer",
           "build", "chunk", "collect", "evaluate", "evaluate_run", "init", "load_run", "make_train",
           "make_trainer", "period", "restore_checkpoint", "rollout", "run", "save_checkpoint", "seed_keys",
           "seed_sharding", "train_step", "update"]
