"""Typed, frozen configuration of a training run: the run, the algorithm's name and its config; JSON I/O.

:class:`TrainConfig` (frozen, hashable: closed over by ``make_train`` and usable as a cache key) holds the
run (env, batch sizes, iteration budget, evaluation, seeds), ``algo`` (a registered algorithm name,
:func:`svnr_jax.algorithms.list_algorithms`) and ``algo_config`` (that algorithm's own frozen config
dataclass, which validates itself). Every field has an attribute docstring (the string literal right
below it); the CLI's ``--help`` is generated from them. :func:`validate` checks every value in Python and
raises ``ValueError`` naming the bad field, its value and what is allowed — before anything is traced.
Presets per (algorithm, env) live in :mod:`svnr_jax.presets`.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import os
from typing import Any

from svnr_jax.algorithms.base import AlgoConfig, bad_value, get_algorithm, is_int
from svnr_jax.algorithms.svnr import SVNRConfig


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run (or a vmapped sweep of seeds) of one algorithm on one registered env."""

    env: str = "max_of_two"
    """Registered env name (svnr_jax.envs.list_envs()), or a user env as 'package.module:factory'."""
    algo: str = "svnr"
    """Registered algorithm name (svnr_jax.algorithms.list_algorithms())."""
    env_config: tuple[tuple[str, Any], ...] = ()
    """Env config overrides as (key, value) pairs, e.g. (("num_agents", 3),)."""
    num_envs: int = 16
    """B: parallel envs; each iteration collects B env steps (on-policy algorithms: T·B, T their rollout length)."""
    iterations: int = 400
    """Training iterations after warm-up (off-policy: collect B steps, then U gradient updates; on-policy: a
    rollout of T steps of the B envs, then one update on it)."""
    updates_per_iteration: int = 1
    """U: gradient updates per iteration (off-policy only; on-policy algorithms ignore it)."""
    batch_size: int = 64
    """Transitions per gradient update (off-policy only; on-policy algorithms ignore it)."""
    buffer_size: int = 100_000
    """Replay capacity in transitions, device memory (off-policy only; on-policy algorithms ignore it)."""
    warmup_iterations: int = 8
    """Iterations of uniformly random actions that fill the buffer before learning (off-policy only; on-policy
    algorithms ignore it: no warm-up)."""
    critic_warmup_updates: int = 0
    """[ours] Critic-only gradient updates on the warm-up data before the policy starts learning."""
    eval_every: int = 50
    """E: evaluate every E iterations (inside the scan); must divide chunk_iterations."""
    eval_episodes: int = 64
    """Episodes per execution mode at each evaluation."""
    chunk_iterations: int = 100
    """C: iterations per jitted host call (progress, metrics, checkpoint); must divide iterations."""
    keep_checkpoints: int = 2
    """Checkpoints kept in the run folder (the newest; an older one is the fallback when the newest is damaged)."""
    checkpoint_buffer: bool = True
    """Store the replay buffer in checkpoints (exact resume). false: much smaller checkpoints, but a resume restarts
    the buffer from the uniform warm-up data (not exact). On-policy algorithms have no buffer (ignored)."""
    seed: int = 0
    """Base seed; seed s of a sweep uses fold_in(key(seed), s)."""
    num_seeds: int = 1
    """Seeds trained together with vmap (sharded over devices when there are several)."""
    seed_batch: int = 0
    """Seeds vectorised together on a device: 0 = all of them (vmap; for accelerators); k = k at a time, the groups
    one after another in the same program (CPU: a smaller working set is faster per seed; results equal up to
    float rounding)."""
    algo_config: AlgoConfig = SVNRConfig()
    """The algorithm's hyperparameters (an instance of its config class)."""

    @property
    def env_kwargs(self) -> dict[str, Any]:
        """``env_config`` as a dict."""
        return dict(self.env_config)


def field_docs(cls: type) -> dict[str, str]:
    """The attribute docstrings of a dataclass's fields (the string literal right after each field)."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body
    docs: dict[str, str] = {}
    for prev, node in zip(body, body[1:], strict=False):
        if (isinstance(prev, ast.AnnAssign) and isinstance(prev.target, ast.Name) and isinstance(node, ast.Expr)
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            docs[prev.target.id] = node.value.value.strip()
    return docs


def validate(config: TrainConfig) -> TrainConfig:
    """Check every value of ``config``: the run's fields, that the env exists and accepts ``env_config``, that
    the algorithm is registered, and its config (the algorithm's own ``check``).

    Returns:
      ``config`` unchanged.
    Raises:
      ValueError: naming the first bad field, its value and the allowed values.
    """
    from svnr_jax.envs import env_defaults, list_envs
    from svnr_jax.envs.registry import is_user_env

    def bad(name: str, value: Any, allowed: str) -> None:
        raise bad_value(name, value, allowed)

    c = config
    if not isinstance(c.env, str) or not (c.env in list_envs() or is_user_env(c.env)):
        bad("env", c.env, f"one of {list_envs()} or a user env 'package.module:factory'")
    config_cls, agent_cls = get_algorithm(c.algo)
    if not isinstance(c.algo_config, config_cls):
        bad("algo_config", type(c.algo_config).__name__, f"a {config_cls.__name__} (the config of algo={c.algo!r})")
    allowed_keys = env_defaults(c.env)  # a user env without default_config() takes any keys
    for item in c.env_config:
        if not (isinstance(item, tuple) and len(item) == 2 and (item[0] in allowed_keys or (
                is_user_env(c.env) and not allowed_keys))):
            bad("env_config", c.env_config, f"(key, value) pairs with keys from {sorted(allowed_keys)}")
    for name in ("num_envs", "iterations", "updates_per_iteration", "batch_size", "buffer_size", "eval_every",
                 "eval_episodes", "chunk_iterations", "num_seeds"):
        v = getattr(c, name)
        if not is_int(v) or v < 1:
            bad(name, v, "an integer >= 1")
    if not is_int(c.warmup_iterations) or c.warmup_iterations < 0:
        bad("warmup_iterations", c.warmup_iterations, "an integer >= 0")
    if not is_int(c.critic_warmup_updates) or c.critic_warmup_updates < 0:
        bad("critic_warmup_updates", c.critic_warmup_updates, "an integer >= 0")
    if c.critic_warmup_updates and agent_cls.pretrain is None:
        bad("critic_warmup_updates", c.critic_warmup_updates, f"0 (algorithm {c.algo!r} has no critic-only update)")
    if not is_int(c.keep_checkpoints) or c.keep_checkpoints < 1:
        bad("keep_checkpoints", c.keep_checkpoints, "an integer >= 1")
    if not isinstance(c.checkpoint_buffer, bool):
        bad("checkpoint_buffer", c.checkpoint_buffer, "true or false")
    if not is_int(c.seed_batch) or c.seed_batch < 0:
        bad("seed_batch", c.seed_batch, "an integer >= 0 (0: all seeds vectorised together)")
    if not is_int(c.seed) or c.seed < 0:
        bad("seed", c.seed, "an integer >= 0")
    if c.chunk_iterations % c.eval_every:
        bad("chunk_iterations", c.chunk_iterations, f"a multiple of eval_every={c.eval_every}")
    if c.iterations % c.chunk_iterations:
        bad("iterations", c.iterations, f"a multiple of chunk_iterations={c.chunk_iterations}")
    # on-policy algorithms have no replay buffer and no warm-up: the replay fields are ignored (documented above)
    if not agent_cls.on_policy and c.buffer_size < c.num_envs:
        bad("buffer_size", c.buffer_size, f"at least num_envs={c.num_envs}")
    if not agent_cls.on_policy and c.warmup_iterations * c.num_envs < 1:
        bad("warmup_iterations", c.warmup_iterations, "at least 1 (the buffer must hold data before the first update)")
    c.algo_config.check()
    stride = getattr(c.algo_config, "replay_stride", 0)  # an algorithm reading the buffer's layout (HASAC n-step)
    if stride and stride != c.num_envs:
        bad("algo_config.replay_stride", stride, f"0 or the run's num_envs={c.num_envs} (presets.preset sets it)")
    return config


def preset(name: str, algo: str = "svnr", **overrides: Any) -> TrainConfig:
    """The preset :class:`TrainConfig` of (``algo``, ``name``) with ``overrides`` (see :mod:`svnr_jax.presets`)."""
    from svnr_jax.presets import preset as _preset

    return _preset(name, algo, **overrides)


def _tuples(x: Any) -> Any:
    """Lists (from JSON or the CLI) → tuples, recursively (configs are hashable)."""
    return tuple(_tuples(v) for v in x) if isinstance(x, list | tuple) else x


def make_algo_config(algo: str, values: dict[str, Any] | AlgoConfig | None = None) -> AlgoConfig:
    """The config of algorithm ``algo`` from a dict of its fields (or an instance, returned as is).

    Raises:
      ValueError: unknown algorithm, or unknown field (the message lists the allowed ones).
    """
    config_cls, _ = get_algorithm(algo)
    if isinstance(values, AlgoConfig):
        return values
    values = dict(values or {})
    names = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown {algo} config field(s) {unknown}; allowed: {sorted(names)}")
    return config_cls(**{k: _tuples(v) for k, v in values.items()})


def make_config(algo: str = "svnr", algo_config: dict[str, Any] | AlgoConfig | None = None, **fields: Any
                ) -> TrainConfig:
    """Build and validate a :class:`TrainConfig` from keyword values.

    Args:
      algo: registered algorithm name.
      algo_config: a dict of that algorithm's config fields, or its config instance.
      fields: :class:`TrainConfig` run fields.
    Raises:
      ValueError: an unknown field or a bad value (named in the message).
    """
    tnames = {f.name for f in dataclasses.fields(TrainConfig)} - {"algo", "algo_config"}
    unknown = sorted(set(fields) - tnames)
    if unknown:
        raise ValueError(f"unknown config field(s) {unknown}; allowed: {sorted(tnames | {'algo', 'algo_config'})}")
    if "env_config" in fields and isinstance(fields["env_config"], dict):
        fields["env_config"] = tuple(sorted(fields["env_config"].items()))
    elif "env_config" in fields:
        fields["env_config"] = tuple(tuple(p) for p in fields["env_config"])
    return validate(TrainConfig(algo=algo, algo_config=make_algo_config(algo, algo_config), **fields))


def to_dict(config: TrainConfig) -> dict[str, Any]:
    """A JSON-serialisable dict of ``config`` (inverse: :func:`from_dict`)."""
    d = dataclasses.asdict(config)
    d["env_config"] = [list(p) for p in config.env_config]
    return d


def from_dict(d: dict[str, Any]) -> TrainConfig:
    """Rebuild (and validate) a config written by :func:`to_dict` (also reads the older layout, where the
    SVNR config sat under ``svnr``)."""
    d = dict(d)
    if "svnr" in d:  # written before algorithms were pluggable
        d.setdefault("algo", "svnr")
        d["algo_config"] = d.pop("svnr")
    algo = d.pop("algo", "svnr")
    return make_config(algo, d.pop("algo_config", {}), **d)


#: Fields that change how a run executes, not what it computes (up to float rounding): a resume or a finished-run
#: check may differ in them.
EXECUTION_FIELDS = ("seed_batch", "keep_checkpoints")


def training_differences(a: TrainConfig | dict, b: TrainConfig | dict) -> list[str]:
    """Top-level fields in which two configs (or :func:`to_dict` dicts, e.g. read back from JSON; fields added
    since take their defaults) differ, :data:`EXECUTION_FIELDS` left out."""
    da, db = (json.loads(json.dumps(to_dict(from_dict(x) if isinstance(x, dict) else x))) for x in (a, b))
    return sorted(k for k in set(da) | set(db) if k not in EXECUTION_FIELDS and da.get(k) != db.get(k))


def save_json(config: TrainConfig, path: str) -> None:
    """Write ``config`` as JSON, atomically (a temporary file renamed over ``path``)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(to_dict(config), f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_json(path: str) -> TrainConfig:
    """Read a config written by :func:`save_json`."""
    with open(path) as f:
        return from_dict(json.load(f))


__all__ = ["EXECUTION_FIELDS", "TrainConfig", "field_docs", "from_dict", "load_json", "make_algo_config", "make_config",
           "preset",
           "save_json", "to_dict", "training_differences", "validate"]
