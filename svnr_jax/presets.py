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

# ----------------------------------------------------------------------------------- HASAC
# Class defaults: HARL's tuned HalfCheetah-2x3 values (PKU-MARL/HARL tuned_configs/mamujoco/HalfCheetah-v2-2x3/hasac/
# config.json: 256-256, lr 1e-3, critic lr 1e-3, automatic α from 1 with α lr 3e-4, target entropy −dim A_i, γ 0.99,
# polyak 0.005). The per-task HARL values below: n_step, fixed or automatic α, learning rates; batch size (1000, Ant-2x4
# 2200) and update frequency (50 updates per 1000 env steps) are run fields: HASAC runs the env's shared budget, as
# every algorithm. replay_stride (the n-step layout) is set from the run's num_envs by preset(). One-step games
# [ours: nothing published]: γ 0, n_step 1 and 100-100 networks (the width of the other algorithms' game presets).
# Particle Gather: HARL's tuned simple_spread_v2-continuous (pettingzoo_mpe: n_step 20, lr 5e-4, critic lr 5e-4,
# automatic α) with our env's γ 0.95 [ours, as every algorithm].
ALGO_PRESETS.update({("hasac", env): dict(gamma=0.0, n_step=1, actor_hidden=(100, 100), critic_hidden=(100, 100))
                     for env in _SVNR_GAMES if env != "particle_gather"})
ALGO_PRESETS[("hasac", "particle_gather")] = dict(gamma=0.95, n_step=20, actor_lr=5e-4, critic_lr=5e-4)
_HASAC_HC = dict(n_step=10)  # HalfCheetah-v2-2x3 and -6x1 (identical tuned values)
_HASAC_ANT = dict(n_step=5, auto_alpha=False, alpha=0.2, actor_lr=1e-3, critic_lr=3e-4)  # Ant-v2-2x4 and -4x2
_HASAC_WALKER = dict(n_step=20, auto_alpha=False, alpha=0.2, actor_lr=5e-4, critic_lr=1e-3)  # Walker2d-v2-2x3, -6x1
_HASAC_MAMUJOCO = {
    "HalfCheetah-2x3": _HASAC_HC, "HalfCheetah-6x1": _HASAC_HC, "Ant-2x4": _HASAC_ANT, "Ant-4x2": _HASAC_ANT,
    "Walker2d-2x3": _HASAC_WALKER,
    # no HARL HASAC config for these [ours: the nearest tuned task]: Hopper (the other 2-D walker with early
    # termination) as Walker2d-2x3; CoupledHalfCheetah as HalfCheetah-2x3; Swimmer as manyagent_swimmer-10x2 and
    # Humanoid as HumanoidStandup-17x1 (both: n_step 10, automatic α, lr 1e-3 = the class defaults)
    "Hopper-3x1": _HASAC_WALKER, "CoupledHalfCheetah-1p1": _HASAC_HC, "Swimmer-2x1": dict(n_step=10),
    "Humanoid-9|8": dict(n_step=10),
}
ALGO_PRESETS.update({("hasac", task): dict(_HASAC_MAMUJOCO[task]) for task in MAMUJOCO_TASKS})

# ----------------------------------------------------------------------------------- MAPPO (on-policy)
# Class defaults: HARL's tuned HalfCheetah-2x3 MAPPO (PKU-MARL/HARL tuned_configs/mamujoco/HalfCheetah-v2-2x3/mappo/
# config.json: clip 0.05, 15 actor and critic epochs, 1 minibatch, entropy 0.01, lr and critic lr 5e-4, 128-128-128,
# γ 0.99, λ 0.95, Huber δ 10, grad clip 10, ValueNorm). preset() converts the env's shared budget into rollouts
# (presets.on_policy_run): MAPPO gets the same env steps and evaluation points as every algorithm.
# Rollout length [ours]: HARL collects episode_length 200 steps (Humanoid 100) of 20 envs per update; ours is 125 steps
# of the shared 16 envs, which divides the MaMuJoCo budget (125k iterations, evaluation and chunk every 5000) and the
# experiments' CPU budget (evaluation every 10k env steps) into whole rollouts. Per task, HARL's tuned values; tasks
# without a HARL MAPPO config take the nearest tuned task [ours]: HalfCheetah-6x1 and CoupledHalfCheetah as
# HalfCheetah-2x3, Ant-2x4 as Ant-4x2, Humanoid-9|8 as Humanoid-17x1, Swimmer-2x1 HARL's mappo.yaml defaults
# (clip 0.2, 5 epochs, 128-128).
_MAPPO_MAMUJOCO_HARL = {
    "HalfCheetah-2x3": {},  # = the class defaults
    "Hopper-3x1": dict(clip=0.05, ppo_epochs=10, critic_epochs=10, entropy_coef=0.0, linear_lr_decay=True),
    "Walker2d-2x3": dict(clip=0.05, ppo_epochs=5, critic_epochs=5, actor_minibatches=2, critic_minibatches=2,
                         entropy_coef=0.0, actor_lr=1e-3, critic_lr=1e-3, linear_lr_decay=True),
    "Ant-4x2": dict(clip=0.1, ppo_epochs=5, critic_epochs=5, entropy_coef=0.0),
    "Humanoid-17x1": dict(clip=0.1, ppo_epochs=5, critic_epochs=5, entropy_coef=0.0, linear_lr_decay=True),
    "default": dict(clip=0.2, ppo_epochs=5, critic_epochs=5, actor_hidden=(128, 128), critic_hidden=(128, 128)),
}
_MAPPO_NEAREST = {"HalfCheetah-6x1": "HalfCheetah-2x3", "CoupledHalfCheetah-1p1": "HalfCheetah-2x3",
                  "Ant-2x4": "Ant-4x2", "Humanoid-9|8": "Humanoid-17x1", "Swimmer-2x1": "default"}
ALGO_PRESETS.update({("mappo", task): dict(_MAPPO_MAMUJOCO_HARL[_MAPPO_NEAREST.get(task, task)])
                     for task in MAMUJOCO_TASKS})
# One-step games [ours: nothing published]: HARL's continuous MPE MAPPO values (tuned_configs/pettingzoo_mpe/
# simple_spread_v2-continuous/mappo/config.json: clip 0.2, 5 epochs, 1 minibatch, entropy 0.01, lr 5e-4, 128-128)
# with γ 0 and a rollout of 1 step of the 16 envs (16 one-step episodes per update; the games' budgets are then the
# other algorithms' iterations unchanged). Particle Gather: the same MPE values with our env's γ 0.95 (as every
# algorithm) and a rollout of one 25-step episode of the 8 envs [ours] (HARL: 200 steps of 20 envs).
_MAPPO_MPE = dict(clip=0.2, ppo_epochs=5, critic_epochs=5, entropy_coef=0.01, actor_lr=5e-4, critic_lr=5e-4,
                  actor_hidden=(128, 128), critic_hidden=(128, 128))
ALGO_PRESETS.update({("mappo", env): dict(_MAPPO_MPE, gamma=0.0, rollout_length=1)
                     for env in _SVNR_GAMES if env != "particle_gather"})
ALGO_PRESETS[("mappo", "particle_gather")] = dict(_MAPPO_MPE, gamma=0.95, rollout_length=25)


#: Run fields that only off-policy algorithms use (on-policy presets drop them; the warm-up becomes 0).
OFF_POLICY_FIELDS = ("buffer_size", "batch_size", "updates_per_iteration", "warmup_iterations", "critic_warmup_updates",
                     "checkpoint_buffer")
#: Run fields counted in iterations: an on-policy preset divides them by the rollout length T.
ITERATION_FIELDS = ("iterations", "eval_every", "chunk_iterations")


def on_policy_run(run: dict[str, Any], rollout_length: int, env: str = "?") -> dict[str, Any]:
    """An env's run preset (in off-policy iterations of ``num_envs`` env steps) for an on-policy algorithm whose
    iteration is a rollout of ``rollout_length`` (T) steps of the same ``num_envs`` envs: ``iterations``,
    ``eval_every`` and ``chunk_iterations`` divided by T (the same env steps and evaluation points in env steps as
    every other algorithm), the off-policy fields dropped and no warm-up.

    Raises:
      ValueError: T does not divide one of them (the message names the field).
    """
    out = {k: v for k, v in run.items() if k not in OFF_POLICY_FIELDS}
    for k in ITERATION_FIELDS:
        if k in out:
            if out[k] % rollout_length:
                raise ValueError(f"the {env} run preset's {k}={out[k]} (iterations of num_envs env steps) is not a "
                                 f"multiple of the on-policy rollout length rollout_length={rollout_length}; choose a "
                                 "rollout length that divides it")
            out[k] //= rollout_length
    return {**out, "warmup_iterations": 0}


def preset(name: str, algo: str = "svnr", algo_config: dict[str, Any] | None = None, **overrides: Any):
    """The preset :class:`~svnr_jax.config.TrainConfig` of (``algo``, ``name``), with overrides.

    On-policy algorithms get the env's budget converted by :func:`on_policy_run` (iteration counts divided by
    their rollout length, replay fields dropped); ``overrides`` are taken as given (in the algorithm's iterations).

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
    from svnr_jax.config import make_algo_config, make_config

    _, agent_cls = get_algorithm(algo)
    run = dict(RUN_PRESETS.get(name, {}))
    if agent_cls.pretrain is None:  # the critic warm-up exists only for algorithms with a critic-only update
        run.pop("critic_warmup_updates", None)
    if "env" in overrides:  # another env: the preset's env config belongs to the preset's env
        run.pop("env_config", None)
    algo_fields = {**ALGO_PRESETS.get((algo, name), {}), **(algo_config or {})}
    if "replay_stride" in get_algorithm(algo)[0].__dataclass_fields__ and "replay_stride" not in (algo_config or {}):
        # an algorithm that reads the buffer's layout (HASAC's n-step returns) gets the run's num_envs: an env's next
        # transition is num_envs entries later (config.validate checks that the two agree)
        from svnr_jax.config import TrainConfig

        algo_fields["replay_stride"] = overrides.get("num_envs", run.get("num_envs", TrainConfig.num_envs))
    if agent_cls.on_policy:
        algo_cfg = make_algo_config(algo, algo_fields)
        algo_cfg.check()  # a bad rollout length is named before it divides anything
        run = on_policy_run(run, agent_cls.rollout_length_of(algo_cfg), name)
    return make_config(algo, algo_fields, **{"env": name, **run, **overrides})


def has_preset(env: str, algo: str) -> bool:
    """Whether (``algo``, ``env``) has algorithm settings of its own (else the algorithm's defaults are used)."""
    return (algo, env) in ALGO_PRESETS


__all__ = ["ALGO_PRESETS", "ITERATION_FIELDS", "MAMUJOCO_REWARD_SCALE", "MAMUJOCO_TASKS", "OFF_POLICY_FIELDS",
           "RUN_PRESETS", "has_preset", "on_policy_run", "preset"]
