"""Typed, frozen configuration of SVNR training (algorithm + run), validation and per-env presets.

Two frozen dataclasses, both hashable (usable as static arguments and closed over by ``make_train``):

* :class:`SVNRConfig` — the algorithm (networks, SVGD, soft critic, temperature, optimisers).
* :class:`TrainConfig` — the run (env, batch sizes, iteration budget, evaluation, seeds, logging) and
  the algorithm config in its ``svnr`` field.

Every field has a docstring (the attribute docstring right below it); the CLI's ``--help`` is generated
from them. :func:`validate` checks every value in Python and raises ``ValueError`` naming the bad field,
its value and what is allowed — before anything is traced or compiled. :func:`preset` returns the
per-env defaults. Choices that SPEC marks as ours are marked ``[ours]`` here.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import math
from typing import Any

TOPOLOGIES = ("nested", "full", "independent", "ring")
SCHEDULES = ("constant", "linear", "exponential")
PROPOSALS = ("uniform", "mixture")
EXEC_MODES = ("shared_seed", "deterministic", "negotiate")


@dataclasses.dataclass(frozen=True)
class SVNRConfig:
    """Hyperparameters of the SVNR learner (SPEC §4–5)."""

    topology: str = "nested"
    """Negotiation sets C_i: nested (C_i = {1..i}, default), full, independent or ring."""
    num_particles: int = 32
    """M: joint-action particles drawn per state for the amortized SVGD update (split half fixed, half updated)."""
    bandwidth: float = 0.0
    """RBF kernel bandwidth h; 0 selects the per-agent median heuristic (SPEC §2)."""
    policy_hidden: tuple[int, ...] = (64, 64)
    """Hidden layer sizes of each agent's generator g_ψi(o_i, ξ_{C_i})."""
    critic_hidden: tuple[int, ...] = (64, 64)
    """Hidden layer sizes of the joint soft critic Q(s, u)."""
    noise_dim: int = 0
    """Size of each agent's noise ξ_j; 0 means the padded per-agent action size."""
    policy_init_scale: float = 1.0
    """[ours] Gain of the generator's first-layer init: larger spreads the initial particles over more of [-1, 1]."""
    output_init_scale: float = 1.0
    """[ours] Gain of the generator's output-layer init (pre-tanh); larger = wider initial action spread."""
    noise_skip: float = 0.0
    """[ours] Init gain of a learnable linear path from agent i's own noise ξ_i to its pre-tanh action (0 = off):
    the initial policy ≈ tanh(noise_skip·ξ_i), centred and spread whatever the observation."""
    twin_critic: bool = False
    """[ours] Two critics; the soft value and the policy score use their minimum."""
    value_samples: int = 64
    """M_v: action samples for the importance-sampled soft value V(s')."""
    value_proposal: str = "uniform"
    """Soft-value proposal: uniform on [-1,1]^D (SQL), or mixture: uniform + KDE of policy particles [ours]."""
    mixture_weight: float = 0.5
    """[ours] Weight of the uniform component in the mixture proposal, in (0, 1]."""
    mixture_std: float = 0.1
    """[ours] Standard deviation of the Gaussian kernels around the policy's particles in the mixture proposal."""
    gamma: float = 0.99
    """Discount factor γ."""
    tau: float = 0.005
    """Polyak rate of the target critic."""
    policy_lr: float = 1e-3
    """Adam learning rate of the generators."""
    leader_lr_scale: float = 1.0
    """[ours] Agent i's policy step is scaled by leader_lr_scale^((N-1-i)/(N-1)): < 1 makes the nested leaders
    (small C_i) learn slower than the followers, which must track their conditionals (time-scale separation)."""
    critic_lr: float = 1e-3
    """Adam learning rate of the critic."""
    grad_clip: float = 10.0
    """Global gradient-norm clip for both optimisers; 0 disables it."""
    alpha_init: float = 1.0
    """Temperature α at the start (the target policy is ∝ exp(Q/α))."""
    alpha_min: float = 1.0
    """Temperature α at the end of the schedule."""
    alpha_schedule: str = "constant"
    """Temperature schedule: constant (alpha_init), linear or exponential from alpha_init to alpha_min."""
    alpha_anneal_fraction: float = 1.0
    """Fraction of the training iterations over which α reaches alpha_min (then held)."""
    reward_scale: float = 1.0
    """Rewards are multiplied by this before entering the critic (reported returns are unscaled)."""
    negotiation_rounds: int = 10
    """K: rounds of explicit negotiation in execution mode 'negotiate'."""
    negotiation_step: float = 3e-3
    """ε: step size of explicit negotiation in execution mode 'negotiate' (scaled by α [ours])."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run (or a vmapped sweep of seeds) of SVNR on one registered env."""

    env: str = "max_of_two"
    """Registered env name (svnr_jax.envs.list_envs())."""
    env_config: tuple[tuple[str, Any], ...] = ()
    """Env config overrides as (key, value) pairs, e.g. (("num_agents", 3),)."""
    num_envs: int = 16
    """B: parallel envs; each iteration collects B env steps."""
    iterations: int = 400
    """Training iterations after warm-up (each: collect B steps, then U gradient updates)."""
    updates_per_iteration: int = 1
    """U: gradient updates per iteration."""
    batch_size: int = 64
    """Transitions per gradient update."""
    buffer_size: int = 100_000
    """Replay capacity in transitions (device memory)."""
    warmup_iterations: int = 8
    """Iterations of uniformly random actions that fill the buffer before learning."""
    critic_warmup_updates: int = 0
    """[ours] Critic-only gradient updates on the warm-up data before the policy starts learning."""
    eval_every: int = 50
    """E: evaluate every E iterations (inside the scan); must divide chunk_iterations."""
    eval_episodes: int = 64
    """Episodes per execution mode at each evaluation."""
    chunk_iterations: int = 100
    """C: iterations per jitted host call (progress, metrics, checkpoint); must divide iterations."""
    seed: int = 0
    """Base seed; seed s of a sweep uses fold_in(key(seed), s)."""
    num_seeds: int = 1
    """Seeds trained together with vmap (sharded over devices when there are several)."""
    svnr: SVNRConfig = SVNRConfig()
    """Algorithm hyperparameters."""

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


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def validate(config: TrainConfig) -> TrainConfig:
    """Check every value of ``config`` (and that the env exists and accepts ``env_config``).

    Returns:
      ``config`` unchanged.
    Raises:
      ValueError: naming the first bad field, its value and the allowed values.
    """
    from svnr_jax.envs import env_defaults, list_envs

    def bad(name: str, value: Any, allowed: str) -> None:
        raise ValueError(f"invalid config value {name}={value!r}; allowed: {allowed}")

    c, a = config, config.svnr
    if not isinstance(c.env, str) or c.env not in list_envs():
        bad("env", c.env, f"one of {list_envs()}")
    allowed_keys = env_defaults(c.env)
    for item in c.env_config:
        if not (isinstance(item, tuple) and len(item) == 2 and item[0] in allowed_keys):
            bad("env_config", c.env_config, f"(key, value) pairs with keys from {sorted(allowed_keys)}")
    for name in ("num_envs", "iterations", "updates_per_iteration", "batch_size", "buffer_size", "eval_every",
                 "eval_episodes", "chunk_iterations", "num_seeds"):
        v = getattr(c, name)
        if not _is_int(v) or v < 1:
            bad(name, v, "an integer >= 1")
    if not _is_int(c.warmup_iterations) or c.warmup_iterations < 0:
        bad("warmup_iterations", c.warmup_iterations, "an integer >= 0")
    if not _is_int(c.critic_warmup_updates) or c.critic_warmup_updates < 0:
        bad("critic_warmup_updates", c.critic_warmup_updates, "an integer >= 0")
    if not _is_int(c.seed) or c.seed < 0:
        bad("seed", c.seed, "an integer >= 0")
    if c.chunk_iterations % c.eval_every:
        bad("chunk_iterations", c.chunk_iterations, f"a multiple of eval_every={c.eval_every}")
    if c.iterations % c.chunk_iterations:
        bad("iterations", c.iterations, f"a multiple of chunk_iterations={c.chunk_iterations}")
    if c.buffer_size < c.num_envs:
        bad("buffer_size", c.buffer_size, f"at least num_envs={c.num_envs}")
    if c.warmup_iterations * c.num_envs < 1:
        bad("warmup_iterations", c.warmup_iterations, "at least 1 (the buffer must hold data before the first update)")
    if a.topology not in TOPOLOGIES:
        bad("svnr.topology", a.topology, f"one of {list(TOPOLOGIES)}")
    if not _is_int(a.num_particles) or a.num_particles < 4 or a.num_particles % 2:
        bad("svnr.num_particles", a.num_particles, "an even integer >= 4 (half fixed, half updated)")
    if not _is_num(a.bandwidth) or a.bandwidth < 0:
        bad("svnr.bandwidth", a.bandwidth, "a number >= 0 (0 = median heuristic)")
    for name in ("policy_hidden", "critic_hidden"):
        v = getattr(a, name)
        if not isinstance(v, tuple) or not v or not all(_is_int(h) and h >= 1 for h in v):
            bad(f"svnr.{name}", v, "a non-empty tuple of integers >= 1")
    if not _is_int(a.noise_dim) or a.noise_dim < 0:
        bad("svnr.noise_dim", a.noise_dim, "an integer >= 0 (0 = action size)")
    if not _is_num(a.leader_lr_scale) or not 0 < a.leader_lr_scale <= 1:
        bad("svnr.leader_lr_scale", a.leader_lr_scale, "a number in (0, 1]")
    if not _is_num(a.noise_skip) or a.noise_skip < 0:
        bad("svnr.noise_skip", a.noise_skip, "a number >= 0 (0 = off)")
    for name in ("policy_init_scale", "output_init_scale", "mixture_std", "policy_lr", "critic_lr", "alpha_init",
                 "alpha_min", "reward_scale", "negotiation_step"):
        v = getattr(a, name)
        if not _is_num(v) or v <= 0:
            bad(f"svnr.{name}", v, "a finite number > 0")
    if not isinstance(a.twin_critic, bool):
        bad("svnr.twin_critic", a.twin_critic, "true or false")
    if not _is_int(a.value_samples) or a.value_samples < 1:
        bad("svnr.value_samples", a.value_samples, "an integer >= 1")
    if a.value_proposal not in PROPOSALS:
        bad("svnr.value_proposal", a.value_proposal, f"one of {list(PROPOSALS)}")
    if not _is_num(a.mixture_weight) or not 0 < a.mixture_weight <= 1:
        bad("svnr.mixture_weight", a.mixture_weight, "a number in (0, 1]")
    if not _is_num(a.gamma) or not 0 <= a.gamma <= 1:
        bad("svnr.gamma", a.gamma, "a number in [0, 1]")
    if not _is_num(a.tau) or not 0 < a.tau <= 1:
        bad("svnr.tau", a.tau, "a number in (0, 1]")
    if not _is_num(a.grad_clip) or a.grad_clip < 0:
        bad("svnr.grad_clip", a.grad_clip, "a number >= 0 (0 = no clipping)")
    if a.alpha_schedule not in SCHEDULES:
        bad("svnr.alpha_schedule", a.alpha_schedule, f"one of {list(SCHEDULES)}")
    if a.alpha_min > a.alpha_init:
        bad("svnr.alpha_min", a.alpha_min, f"a number <= alpha_init={a.alpha_init}")
    if not _is_num(a.alpha_anneal_fraction) or not 0 < a.alpha_anneal_fraction <= 1:
        bad("svnr.alpha_anneal_fraction", a.alpha_anneal_fraction, "a number in (0, 1]")
    if not _is_int(a.negotiation_rounds) or a.negotiation_rounds < 1:
        bad("svnr.negotiation_rounds", a.negotiation_rounds, "an integer >= 1")
    return config


# Per-env presets [ours]. Values not listed keep the dataclass defaults.
_GAME_BASE = dict(num_envs=16, batch_size=64, warmup_iterations=16, eval_every=100, eval_episodes=256,
                  chunk_iterations=500, buffer_size=20_000)
PRESETS: dict[str, dict[str, Any]] = {
    "max_of_two": dict(_GAME_BASE, iterations=1000, svnr=dict(
        alpha_schedule="exponential", alpha_init=30.0, alpha_min=0.3, alpha_anneal_fraction=0.8, gamma=0.0)),
    # PRO test: start hot (α=100: the target is nearly flat), a centred initial policy ≈ tanh(ξ_i) spread over
    # both peaks (noise skip path, small output init), many uniform warm-up samples so the critic knows both
    # peaks; judged at α=3 (still bimodal).
    "two_modalities": dict(_GAME_BASE, iterations=2000, batch_size=32, warmup_iterations=64, svnr=dict(
        alpha_schedule="exponential", alpha_init=100.0, alpha_min=3.0, alpha_anneal_fraction=0.6, gamma=0.0,
        output_init_scale=0.1, noise_skip=1.0)),
    "max_of_three": dict(_GAME_BASE, iterations=2000, batch_size=32, svnr=dict(
        alpha_schedule="exponential", alpha_init=30.0, alpha_min=0.1, alpha_anneal_fraction=0.5, policy_lr=3e-3,
        gamma=0.0)),
    # climbing: an accurate critic (8 updates per iteration, critic fitted before the policy moves) and a centred,
    # spread initial policy; SVNR still settles on (1,1) = 7 (see experiments/stress_tests.py).
    "climbing": dict(_GAME_BASE, iterations=1000, batch_size=32, warmup_iterations=64, updates_per_iteration=8,
                     critic_warmup_updates=1000, svnr=dict(
        alpha_schedule="exponential", alpha_init=3.0, alpha_min=0.1, alpha_anneal_fraction=0.5, policy_lr=3e-3,
        critic_lr=3e-3, gamma=0.0, output_init_scale=0.1, noise_skip=1.0)),
    "penalty": dict(_GAME_BASE, iterations=1000, svnr=dict(
        alpha_schedule="exponential", alpha_init=10.0, alpha_min=0.1, alpha_anneal_fraction=0.8, gamma=0.0)),
    "particle_gather": dict(num_envs=8, updates_per_iteration=4, batch_size=64, iterations=1500,
                            warmup_iterations=50, eval_every=250,
                            eval_episodes=32, chunk_iterations=500, buffer_size=100_000, svnr=dict(
                                alpha_schedule="exponential", alpha_init=1.0, alpha_min=0.05,
                                alpha_anneal_fraction=0.8, gamma=0.95, num_particles=16, value_samples=32)),
}

# MaMuJoCo (SPEC §6, §8) [ours]: full-scale GPU presets near FACMAC's budget (2M env steps, buffer 1e6,
# γ 0.99) with SAC/SQL-style continuous-control values. 16 envs × 125k iterations = 2M env steps; 16 updates
# per iteration = one gradient update per env step; 10k uniform warm-up steps; 256-256 networks, twin critic,
# Adam 3e-4. Temperature convention (SQL's): α is in units of the *scaled* reward, rewards scaled per robot as
# in SQL's MuJoCo experiments (softqlearning examples/mujoco_all_sql.py: HalfCheetah, Hopper, Swimmer 30,
# Walker2d 10, Ant 300, Humanoid 100). α starts at SQL's 1 and is annealed exponentially to 0.1 over the first
# half of the run, then held (SPEC §5: towards 0). CPU check on HalfCheetah-2x3 at 40k env steps (128-128 nets,
# experiments/results/mamujoco/anneal_check): annealing 1 → 0.1 over 20k steps kept the constant-α return
# (deterministic execution) and raised the shared-seed one.
# Evaluation every 5000 iterations (80k env steps) with 4 full 1000-step episodes per mode.
_MAMUJOCO = dict(num_envs=16, iterations=125_000, updates_per_iteration=16, batch_size=256, buffer_size=1_000_000,
                 warmup_iterations=625, eval_every=5_000, eval_episodes=4, chunk_iterations=5_000, svnr=dict(
                     policy_hidden=(256, 256), critic_hidden=(256, 256), num_particles=32, twin_critic=True,
                     gamma=0.99, tau=0.005, policy_lr=3e-4, critic_lr=3e-4, reward_scale=30.0,
                     alpha_schedule="exponential", alpha_init=1.0, alpha_min=0.1, alpha_anneal_fraction=0.5))
MAMUJOCO_TASKS = ("HalfCheetah-2x3", "CoupledHalfCheetah-1p1", "Ant-2x4", "Walker2d-2x3", "HalfCheetah-6x1",
                  "Hopper-3x1", "Ant-4x2", "Swimmer-2x1", "Humanoid-9|8")
#: SQL's reward scale per robot (the task name's prefix).
MAMUJOCO_REWARD_SCALE = {"HalfCheetah": 30.0, "CoupledHalfCheetah": 30.0, "Hopper": 30.0, "Swimmer": 30.0,
                         "Walker2d": 10.0, "Ant": 300.0, "Humanoid": 100.0}
PRESETS.update({task: dict(_MAMUJOCO, svnr=dict(_MAMUJOCO["svnr"],
                                                reward_scale=MAMUJOCO_REWARD_SCALE[task.split("-")[0]]))
                for task in MAMUJOCO_TASKS})


def preset(env: str, **overrides: Any) -> TrainConfig:
    """The preset :class:`TrainConfig` of ``env`` (dataclass defaults if none), with ``overrides``.

    ``overrides`` may hold TrainConfig fields and, under key ``svnr``, a dict of SVNRConfig fields.
    Unknown fields raise ``ValueError``. The result is validated.
    """
    base = dict(PRESETS.get(env, {}))
    svnr = {**base.pop("svnr", {}), **overrides.pop("svnr", {})}
    return make_config(env=env, **{**base, **overrides}, svnr=svnr)


def make_config(svnr: dict[str, Any] | SVNRConfig | None = None, **fields: Any) -> TrainConfig:
    """Build and validate a :class:`TrainConfig` from keyword values (``svnr`` a dict or SVNRConfig)."""
    tnames = {f.name for f in dataclasses.fields(TrainConfig)} - {"svnr"}
    anames = {f.name for f in dataclasses.fields(SVNRConfig)}
    unknown = sorted(set(fields) - tnames)
    if unknown:
        raise ValueError(f"unknown config field(s) {unknown}; allowed: {sorted(tnames | {'svnr'})}")
    if isinstance(svnr, SVNRConfig):
        algo = svnr
    else:
        svnr = dict(svnr or {})
        unknown = sorted(set(svnr) - anames)
        if unknown:
            raise ValueError(f"unknown svnr config field(s) {unknown}; allowed: {sorted(anames)}")
        for k in ("policy_hidden", "critic_hidden"):
            if k in svnr and isinstance(svnr[k], list):
                svnr[k] = tuple(svnr[k])
        algo = SVNRConfig(**svnr)
    if "env_config" in fields and isinstance(fields["env_config"], dict):
        fields["env_config"] = tuple(sorted(fields["env_config"].items()))
    elif "env_config" in fields:
        fields["env_config"] = tuple(tuple(p) for p in fields["env_config"])
    return validate(TrainConfig(svnr=algo, **fields))


def to_dict(config: TrainConfig) -> dict[str, Any]:
    """A JSON-serialisable dict of ``config`` (inverse: :func:`from_dict`)."""
    d = dataclasses.asdict(config)
    d["env_config"] = [list(p) for p in config.env_config]
    return d


def from_dict(d: dict[str, Any]) -> TrainConfig:
    """Rebuild (and validate) a config written by :func:`to_dict`."""
    d = dict(d)
    return make_config(svnr=d.pop("svnr", {}), **d)


def save_json(config: TrainConfig, path: str) -> None:
    """Write ``config`` as JSON."""
    with open(path, "w") as f:
        json.dump(to_dict(config), f, indent=2)


def load_json(path: str) -> TrainConfig:
    """Read a config written by :func:`save_json`."""
    with open(path) as f:
        return from_dict(json.load(f))


__all__ = ["EXEC_MODES", "MAMUJOCO_TASKS", "PRESETS", "SVNRConfig", "TrainConfig", "field_docs", "from_dict",
           "load_json", "make_config", "preset", "save_json", "to_dict", "validate"]
