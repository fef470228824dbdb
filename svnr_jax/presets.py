"""Presets keyed by (algorithm, env): one run budget per env shared by every algorithm, plus each
algorithm's own hyperparameters per env.

``preset(env, algo, algo_config={...}, **run_overrides)`` merges, in order: the dataclass defaults, the
env's :data:`RUN_PRESETS` entry (env steps, batch sizes, evaluation: the same for every algorithm, so a
comparison runs every method at one budget), the (algo, env) entry of :data:`ALGO_PRESETS` (algorithm
fields, with the source of each published value in a comment), then the overrides. The result is
validated. Choices that are ours are marked [ours].
"""

from __future__ import annotations

from typing import Any

from svnr_jax.envs.mamujoco.tasks import TASKS

# ----------------------------------------------------------------------------------- run budgets [ours]

_GAME_BASE = dict(num_envs=16, batch_size=64, warmup_iterations=16, eval_every=100, eval_episodes=256,
                  chunk_iterations=500, buffer_size=20_000)
#: Names of the MaMuJoCo tasks (one source: the task table of :mod:`svnr_jax.envs.mamujoco.tasks`).
MAMUJOCO_TASKS: tuple[str, ...] = tuple(TASKS)

RUN_PRESETS: dict[str, dict[str, Any]] = {
    "max_of_two": dict(_GAME_BASE, iterations=1000),
    # the RO-free sanity game: every algorithm must reach reward >= 8 within this budget (tests/test_algorithms.py)
    "single_peak": dict(_GAME_BASE, iterations=500, eval_every=250),
    # PRO test: many uniform warm-up samples so the critic knows both peaks.
    "two_modalities": dict(_GAME_BASE, iterations=2000, batch_size=32, warmup_iterations=64),
    "max_of_three": dict(_GAME_BASE, iterations=2000, batch_size=32),
    # climbing: an accurate critic (8 updates per iteration, critic fitted before the policies move).
    "climbing": dict(_GAME_BASE, iterations=1000, batch_size=32, warmup_iterations=64, updates_per_iteration=8,
                     critic_warmup_updates=1000),
    "penalty": dict(_GAME_BASE, iterations=1000),
    # particle_gather [ours]: landmark radius 0.4 and relative landmark features in the critic's state. With the env's
    # default radius 0.2 uniform exploration has every agent inside on 0.09 % of steps (-5: 5.6 %): critics never see
    # +10 and learn the landmark as a -5 hazard (SVNR fled it, or waited just outside with the features; 0/3 seeds in
    # every variant tried, docs/particle_gather.md); with 0.4, 1.2 % of the 2000 warm-up steps. For every algorithm.
    "particle_gather": dict(env_config=dict(relative_state=True, rho=0.4), num_envs=8, updates_per_iteration=4,
                            batch_size=64, iterations=1500, warmup_iterations=250, eval_every=250, eval_episodes=32,
                            chunk_iterations=500, buffer_size=100_000),
}

# MaMuJoCo (docs/environments.md, §8) [ours]: full-scale GPU budget near FACMAC's (2M env steps, buffer 1e6): 16 envs ×
# 125k iterations = 2M env steps; 16 updates per iteration = one gradient update per env step; 10k uniform
# warm-up steps. Evaluation every 5000 iterations (80k env steps) with 4 full 1000-step episodes per mode.
_MAMUJOCO_RUN = dict(num_envs=16, iterations=125_000, updates_per_iteration=16, batch_size=256,
                     buffer_size=1_000_000, warmup_iterations=625, eval_every=5_000, eval_episodes=4,
                     chunk_iterations=5_000)
RUN_PRESETS.update({task: dict(_MAMUJOCO_RUN) for task in MAMUJOCO_TASKS})

# ----------------------------------------------------------------------------------- SVNR [ours]

_SVNR_GAMES: dict[str, dict[str, Any]] = {
    "single_peak": dict(alpha_schedule="exponential", alpha_init=10.0, alpha_min=0.1, alpha_anneal_fraction=0.8,
                        gamma=0.0),
    "max_of_two": dict(alpha_schedule="exponential", alpha_init=30.0, alpha_min=0.3, alpha_anneal_fraction=0.8,
                       gamma=0.0),
    # PRO test: start hot (α=100: the target is nearly flat), a centred initial policy ≈ tanh(ξ_i) spread over
    # both peaks (noise skip path, small output init); judged at α=3 (still bimodal).
    "two_modalities": dict(alpha_schedule="exponential", alpha_init=100.0, alpha_min=3.0, alpha_anneal_fraction=0.6,
                           gamma=0.0, output_init_scale=0.1, noise_skip=1.0),
    "max_of_three": dict(alpha_schedule="exponential", alpha_init=30.0, alpha_min=0.1, alpha_anneal_fraction=0.5,
                         policy_lr=3e-3, gamma=0.0),
    # climbing: a centred, spread initial policy; SVNR still settles on (1,1) = 7 (see experiments/stress_tests.py).
    "climbing": dict(alpha_schedule="exponential", alpha_init=3.0, alpha_min=0.1, alpha_anneal_fraction=0.5,
                     policy_lr=3e-3, critic_lr=3e-3, gamma=0.0, output_init_scale=0.1, noise_skip=1.0),
    "penalty": dict(alpha_schedule="exponential", alpha_init=10.0, alpha_min=0.1, alpha_anneal_fraction=0.8,
                    gamma=0.0),
    "particle_gather": dict(alpha_schedule="exponential", alpha_init=1.0, alpha_min=0.05, alpha_anneal_fraction=0.8,
                            gamma=0.95, num_particles=16, value_samples=32),
}

# MaMuJoCo: SAC/SQL-style continuous-control values: 256-256 networks, twin critic, Adam 3e-4, γ 0.99.
# Temperature convention (SQL's): α is in units of the *scaled* reward, rewards scaled per robot as in SQL's
# MuJoCo experiments (softqlearning examples/mujoco_all_sql.py: HalfCheetah, Hopper, Swimmer 30, Walker2d 10,
# Ant 300, Humanoid 100). α starts at SQL's 1 and is annealed exponentially to 0.1 over the first half of the
# run, then held (docs/algorithms.md: towards 0). CPU check on HalfCheetah-2x3 at 40k env steps (128-128 nets,
# experiments/results/mamujoco/anneal_check): annealing 1 → 0.1 over 20k steps kept the constant-α return
# (deterministic execution) and raised the shared-seed one.
_SVNR_MAMUJOCO = dict(policy_hidden=(256, 256), critic_hidden=(256, 256), num_particles=32, twin_critic=True,
                      gamma=0.99, tau=0.005, policy_lr=3e-4, critic_lr=3e-4, alpha_schedule="exponential",
                      alpha_init=1.0, alpha_min=0.1, alpha_anneal_fraction=0.5)
#: SQL's reward scale per robot (the task name's prefix).
MAMUJOCO_REWARD_SCALE = {"HalfCheetah": 30.0, "CoupledHalfCheetah": 30.0, "Hopper": 30.0, "Swimmer": 30.0,
                         "Walker2d": 10.0, "Ant": 300.0, "Humanoid": 100.0}

ALGO_PRESETS: dict[tuple[str, str], dict[str, Any]] = {("svnr", env): v for env, v in _SVNR_GAMES.items()}
ALGO_PRESETS.update({("svnr", task): dict(_SVNR_MAMUJOCO, reward_scale=MAMUJOCO_REWARD_SCALE[task.split("-")[0]])
                     for task in MAMUJOCO_TASKS})

# ----------------------------------------------------------------------------------- MASQL
# The class defaults are the reference's MASQL defaults (maci/learners/masql.py: lr 1e-3, τ 0.01, 16 kernel and
# 16 value particles, update ratio 0.5, reward scale 0.1). On the games [ours]: reward scale 1 (maci/get_agents.py's
# masql_agent) and SVNR's temperature schedule of the game, so α means the same for both. The reference's own
# script values (α 0.1 constant, lr 3e-4, 32 particles, target interval 10; experiment/run_baselines.py) reached
# only the local peak of max_of_two within our budget (one seed: -0.1; -0.38 with the annealed α), while the class
# defaults with the annealed α reached 9.6: we give MASQL the settings under which it learns.
_MASQL_SAME_ALPHA = ("alpha_schedule", "alpha_init", "alpha_min", "alpha_anneal_fraction", "gamma")
ALGO_PRESETS.update({("masql", env): dict({k: v[k] for k in _MASQL_SAME_ALPHA if k in v}, reward_scale=1.0)
                     for env, v in _SVNR_GAMES.items()})
ALGO_PRESETS[("masql", "particle_gather")].update(num_particles=16, value_samples=32)

# ----------------------------------------------------------------------------------- MADDPG
# One-step games: the MADDPG settings the PR2 authors published for the max-of-two differential game
# (ml3705454/mapr2 experiment/run_baselines.py, maci/get_agents.py): 100-100 networks, Adam lr 1e-2 (ε 1e-8),
# τ 0.01, gradient clip 0.5, no action regulariser there (we keep MADDPG's own 1e-3: negligible at |pre-tanh| ≲ 1);
# PR2 decays its exploration noise 0.1 → 0.01, ours stays at 0.1. The same settings on the other one-step games
# [ours: nothing published]. Particle Gather: the MADDPG paper's particle-env settings (openai/maddpg
# experiments/train.py: lr 1e-2, γ 0.95, 64-64, τ 0.01). MaMuJoCo: the class defaults = facmac's
# maddpg_mamujoco.yaml.
_MADDPG_GAMES = dict(actor_hidden=(100, 100), critic_hidden=(100, 100), actor_lr=1e-2, critic_lr=1e-2, adam_eps=1e-8,
                     tau=0.01, grad_clip=0.5, exploration_noise=0.1, gamma=0.0)
ALGO_PRESETS.update({("maddpg", env): dict(_MADDPG_GAMES) for env in _SVNR_GAMES if env != "particle_gather"})
ALGO_PRESETS[("maddpg", "particle_gather")] = dict(actor_hidden=(64, 64), critic_hidden=(64, 64), actor_lr=1e-2,
                                                   critic_lr=1e-2, adam_eps=1e-8, tau=0.01, gamma=0.95)

# ----------------------------------------------------------------------------------- MMQ
# No code and only the abstract of the paper (arXiv 2411.11099) were available: MMQ's learner is independent DDPG
# with an optimistic next-state target (svnr_jax/algorithms/mmq.py, [ours] where the paper is silent). Games and
# Particle Gather: MADDPG's settings above (the same actor-critic), the next-state model sized like the critic [ours].
# On one-step games nothing is bootstrapped, so MMQ is independent DDPG there.
ALGO_PRESETS.update({("mmq", env): dict(v, model_hidden=v["critic_hidden"], model_lr=v["critic_lr"])
                     for (algo, env), v in list(ALGO_PRESETS.items()) if algo == "maddpg"})

# ----------------------------------------------------------------------------------- QMIX (COMIX) and FACMAC
# Class defaults: COMIX = facmac's comix_pp.yaml + the CEM constants of cqmix_controller.py (64 samples, 6 elites,
# 2 iterations); FACMAC = facmac_mamujoco.yaml. Nothing is published for the one-step games [ours]: γ = 0, COMIX at
# its defaults, FACMAC with 100-100 networks (the width of the MADDPG game preset); FACMAC with MADDPG's lr 1e-2
# saturated an actor on single_peak (its post-tanh regulariser does not pull back from saturation), so its games
# keep facmac's lr 1e-3. Particle Gather: comix_pp / facmac_pp (lr 1e-2, 64-wide, 1-layer hypernetworks for FACMAC)
# with our env's γ 0.95 (theirs 0.85, tuned for predator-prey). MaMuJoCo: COMIX has no public MaMuJoCo config:
# FACMAC's MaMuJoCo values [ours]; FACMAC: its class defaults.
ALGO_PRESETS.update({("qmix", env): dict(gamma=0.0) for env in _SVNR_GAMES if env != "particle_gather"})
ALGO_PRESETS[("qmix", "particle_gather")] = dict(gamma=0.95)
ALGO_PRESETS.update({("qmix", task): dict(agent_hidden=(400, 400), lr=1e-3, gamma=0.99, tau=0.001, grad_clip=0.5,
                                          adam_eps=0.01, exploration_noise=0.1) for task in MAMUJOCO_TASKS})
ALGO_PRESETS.update({("facmac", env): dict(actor_hidden=(100, 100), critic_hidden=(100, 100), gamma=0.0)
                     for env in _SVNR_GAMES if env != "particle_gather"})
ALGO_PRESETS[("facmac", "particle_gather")] = dict(actor_hidden=(64, 64), critic_hidden=(64, 64), actor_lr=1e-2,
                                                   critic_lr=1e-2, hypernet_layers=1, gamma=0.95)

# ----------------------------------------------------------------------------------- ROMMEO
# Class defaults: the reference's rom_agent (maci/get_agents.py: 100-100, lr 1e-2, γ 0.95, τ 0.01) and its fast α
# decay 500 → 0.1 (experiment/run_rommeo.py). That decay left 4 of 6 seeds of single_peak with saturated tanh-Gaussians
# (|μ| ≫ 1, log σ beyond its clip) within our budget, so on the games and Particle Gather α follows SVNR's schedule
# (as MASQL's) with γ of the game [ours]; MaMuJoCo: SVNR's MaMuJoCo values [ours: nothing published].
ALGO_PRESETS.update({("rommeo", env): {k: v[k] for k in _MASQL_SAME_ALPHA if k in v} for env, v in _SVNR_GAMES.items()})
ALGO_PRESETS.update({("rommeo", task): dict(
    {k: _SVNR_MAMUJOCO[k] for k in _MASQL_SAME_ALPHA + ("tau",)}, policy_lr=3e-4, critic_lr=3e-4,
    policy_hidden=(256, 256), opponent_hidden=(256, 256), critic_hidden=(256, 256),
    reward_scale=MAMUJOCO_REWARD_SCALE[task.split("-")[0]]) for task in MAMUJOCO_TASKS})

# ----------------------------------------------------------------------------------- PR2
# Class defaults: maci/learners/mavb_ac.py (lr 1e-3, τ 0.01, 16 value and 16 kernel particles, α 1); one-step games:
# the differential-game script's values (experiment/run_baselines.py: 100-100, critic lr 1e-2, 32 kernel particles,
# α 0.1 constant) except the actor's lr, kept at the class default 1e-3 [ours]: at the script's 1e-2 our tanh actor
# saturates within ~50 updates (0/6 seeds of single_peak; 6/6 at 1e-3). Particle Gather: the same with SVNR's α
# schedule and γ 0.95 [ours]. MaMuJoCo: SVNR's MaMuJoCo values [ours: nothing published].
_PR2_GAMES = dict(actor_hidden=(100, 100), conditional_hidden=(100, 100), critic_hidden=(100, 100), policy_lr=1e-3,
                  critic_lr=1e-2, num_particles=32, value_samples=16, tau=0.01, gamma=0.0, alpha_init=0.1,
                  alpha_min=0.1)
ALGO_PRESETS.update({("pr2", env): dict(_PR2_GAMES) for env in _SVNR_GAMES if env != "particle_gather"})
ALGO_PRESETS[("pr2", "particle_gather")] = dict(_PR2_GAMES, gamma=0.95, alpha_schedule="exponential", alpha_init=1.0,
                                                alpha_min=0.05, alpha_anneal_fraction=0.8)
ALGO_PRESETS.update({("pr2", task): dict(
    actor_hidden=(256, 256), conditional_hidden=(256, 256), critic_hidden=(256, 256), policy_lr=3e-4, critic_lr=3e-4,
    tau=0.005, gamma=0.99, num_particles=32, value_samples=16, reward_scale=MAMUJOCO_REWARD_SCALE[task.split("-")[0]],
    alpha_schedule="exponential", alpha_init=1.0, alpha_min=0.1, alpha_anneal_fraction=0.5) for task in MAMUJOCO_TASKS})


def preset(name: str, algo: str = "svnr", algo_config: dict[str, Any] | None = None, **overrides: Any):
    """The preset :class:`~svnr_jax.config.TrainConfig` of (``algo``, ``name``), with overrides.

    Args:
      name: the env whose preset is used (envs without a preset get the dataclass defaults); the run's env too,
        unless ``env=...`` is among the overrides (e.g. a game's preset on a user env).
      algo: registered algorithm name.
      algo_config: the algorithm's fields to override (a dict).
      overrides: run fields to override.
    Raises:
      ValueError: unknown env, algorithm or field, or a bad value (named in the message).
    """
    from svnr_jax.algorithms.base import get_algorithm
    from svnr_jax.config import make_config

    _, agent_cls = get_algorithm(algo)
    run = dict(RUN_PRESETS.get(name, {}))
    if agent_cls.pretrain is None:  # the critic warm-up exists only for algorithms with a critic-only update
        run.pop("critic_warmup_updates", None)
    if "env" in overrides:  # another env: the preset's env config belongs to the preset's env
        run.pop("env_config", None)
    algo_fields = {**ALGO_PRESETS.get((algo, name), {}), **(algo_config or {})}
    return make_config(algo, algo_fields, **{"env": name, **run, **overrides})


def has_preset(env: str, algo: str) -> bool:
    """Whether (``algo``, ``env``) has algorithm settings of its own (else the algorithm's defaults are used)."""
    return (algo, env) in ALGO_PRESETS


__all__ = ["ALGO_PRESETS", "MAMUJOCO_REWARD_SCALE", "MAMUJOCO_TASKS", "RUN_PRESETS", "has_preset", "preset"]
