"""experiments/mamujoco.py: the configs it runs (presets, the CPU budget, step budgets) and its curve plot."""

import pytest

from experiments import mamujoco as exp
from svnr_jax.presets import ALGO_PRESETS, MAMUJOCO_TASKS


def test_presets_cover_every_task_with_sql_reward_scales():
    scales = {t: ALGO_PRESETS[("svnr", t)]["reward_scale"] for t in MAMUJOCO_TASKS}
    assert scales["HalfCheetah-2x3"] == 30.0 and scales["Walker2d-2x3"] == 10.0
    assert scales["Ant-2x4"] == scales["Ant-4x2"] == 300.0 and scales["Humanoid-9|8"] == 100.0
    full = exp.task_config("Ant-2x4", 3, small=False, steps=None)
    assert full.iterations * full.num_envs == 2_000_000 and full.seed == 3
    assert full.updates_per_iteration == full.num_envs  # one gradient update per env step


def test_small_budget_is_the_cpu_config():
    cfg = exp.task_config("HalfCheetah-2x3", 0, small=True, steps=None)
    assert cfg.iterations * cfg.num_envs == 60_000
    assert cfg.updates_per_iteration == cfg.num_envs
    a = cfg.algo_config
    assert (a.policy_hidden, a.critic_hidden, a.num_particles, a.value_samples) == ((128, 128), (128, 128), 16, 16)
    assert a.alpha_schedule == "constant" and a.alpha_init == 1.0 and not a.twin_critic
    assert a.reward_scale == 30.0  # the task's preset value survives the small overrides
    assert exp.task_config("Walker2d-2x3", 0, small=True, steps=None).algo_config.reward_scale == 10.0


@pytest.mark.parametrize("steps, iterations, chunk", [(8000, 1000, 500), (4000, 500, 500), (100, 12, 12)])
def test_step_budget_sets_whole_chunks(steps, iterations, chunk):
    cfg = exp.task_config("HalfCheetah-2x3", 0, small=True, steps=steps)
    assert (cfg.iterations, cfg.chunk_iterations) == (iterations, chunk)
    assert cfg.iterations % cfg.chunk_iterations == 0 and cfg.chunk_iterations % cfg.eval_every == 0


def test_plot_curves_writes_png(tmp_path):
    curve = [{"iteration": i, "seed": 0, "eval_deterministic": float(i), "eval_shared_seed": -float(i)}
             for i in (500, 1000)]
    rows = [{"task": "HalfCheetah-2x3", "seed": 0, "config": {"num_envs": 8}, "eval_curve": curve}]
    path = tmp_path / "c.png"
    exp.plot_curves(rows, "HalfCheetah-2x3", str(path))
    assert path.stat().st_size > 1000
