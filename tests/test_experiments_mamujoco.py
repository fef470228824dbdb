"""experiments/mamujoco.py: one env-step budget for every algorithm, the table, and skip/resume of a sweep."""

import json
import os

import pytest

from experiments import mamujoco as exp
from svnr_jax.algorithms import list_algorithms
from svnr_jax.presets import ALGO_PRESETS, MAMUJOCO_TASKS, preset
from svnr_jax.training import env_steps_per_iteration


def test_presets_cover_every_task_with_sql_reward_scales():
    scales = {t: ALGO_PRESETS[("svnr", t)]["reward_scale"] for t in MAMUJOCO_TASKS}
    assert scales["HalfCheetah-2x3"] == 30.0 and scales["Walker2d-2x3"] == 10.0
    assert scales["Ant-2x4"] == scales["Ant-4x2"] == 300.0 and scales["Humanoid-9|8"] == 100.0


@pytest.mark.parametrize("algo", list_algorithms())
def test_every_algorithm_gets_the_same_env_steps_and_evaluation_points(algo):
    paper = exp.budget_config("Ant-2x4", algo, "paper", 5, None)
    spi = env_steps_per_iteration(paper)
    assert paper.iterations * spi == 2_000_000 and paper.num_seeds == 5
    assert paper.eval_every * spi == 80_000
    cpu = exp.budget_config("Walker2d-2x3", algo, "cpu", 3, None)
    spi = env_steps_per_iteration(cpu)
    assert cpu.iterations * spi == exp.CPU_STEPS and cpu.eval_every * spi == exp.CPU_EVAL_STEPS
    assert cpu.env_kwargs["solver_iterations"] == 4 and cpu.env_kwargs["ls_iterations"] == 8
    assert cpu.num_envs == 16
    # the algorithm's own MaMuJoCo settings are kept
    assert cpu.algo_config == preset("Walker2d-2x3", algo).algo_config


def test_cpu_budget_cuts_the_update_ratio_for_off_policy_algorithms():
    cfg = exp.budget_config("HalfCheetah-2x3", "svnr", "cpu", 3, None)
    assert cfg.updates_per_iteration == 2 and cfg.batch_size == 64 and cfg.warmup_iterations * cfg.num_envs == 2000
    full = exp.budget_config("HalfCheetah-2x3", "svnr", "paper", 5, None)
    assert full.updates_per_iteration == full.num_envs  # one update per env step at the paper's scale


def test_a_budget_that_does_not_divide_is_refused_naming_the_multiple():
    with pytest.raises(ValueError, match="multiple of 4000"):
        exp.budget_config("HalfCheetah-2x3", "svnr", "cpu", 3, 10_001)


def _fake(algo, task, values):
    import numpy as np

    from svnr_jax.stats import summarize

    return {"algo": algo, "task": task, "summary": summarize(np.array(values)), "per_seed": values,
            "curve": {"env_steps": [4000, 8000], "returns": [[v - 1 for v in values], values]}, "env_steps": 8000,
            "train_seconds": 12.0, "env_steps_per_second": 3000.0, "test_episodes": 5, "device": "cpu:0"}


@pytest.mark.parametrize("budget", ["cpu", "paper"])
def test_env_config_is_added_to_the_budgets(budget):
    """``--env-config`` (e.g. impl=warp) reaches every run's env, on top of the budget's own env options."""
    base = exp.budget_config("HalfCheetah-2x3", "maddpg", budget, 1, None)
    cfg = exp.budget_config("HalfCheetah-2x3", "maddpg", budget, 1, None, env_config={"capsule_frame": "mjx"})
    assert cfg.env_kwargs == {**base.env_kwargs, "capsule_frame": "mjx"}
    assert cfg.iterations == base.iterations and cfg.num_envs == base.num_envs
    assert exp.parse_env_config("warp_batch=64") == ("warp_batch", 64)  # the CLI's KEY=VALUE (JSON values)


def test_table_has_the_papers_form_iqm_wall_times_and_the_papers_numbers(tmp_path):
    res = {"svnr/HalfCheetah-2x3": _fake("svnr", "HalfCheetah-2x3", [100.0, 200.0, 300.0]),
           "maddpg/HalfCheetah-2x3": _fake("maddpg", "HalfCheetah-2x3", [10.0, 10.0, 10.0])}
    text = exp.table(res, ["svnr", "maddpg", "hasac"], ["HalfCheetah-2x3", "Ant-2x4"])
    assert "| svnr | 200 ± 100 |" in text and "| maddpg | 10 ± 0 |" in text and "| hasac | – |" in text
    assert "Ant-2x4" not in text  # no run of that task
    assert "8853 ± 212" in text and "12 · 3000" in text
    exp.plot_curves(res, ["svnr", "maddpg"], "HalfCheetah-2x3", str(tmp_path / "c.png"))
    assert (tmp_path / "c.png").stat().st_size > 1000


def test_sweep_skips_finished_runs_and_resumes_interrupted_ones(tmp_path, monkeypatch):
    """The sweep logic on a fast stand-in task (single_peak, tiny nets): results, table and curves written; a
    second call skips the finished runs (never calls run); an interrupted run is stored as partial and resumed."""
    from conftest import tiny_algo_config

    def tiny(task, algo, budget, seeds, env_steps, seed=0, env_config=None):
        return preset("single_peak", algo, algo_config=tiny_algo_config(algo), num_seeds=seeds, num_envs=4,
                      iterations=8, eval_every=4, chunk_iterations=4, eval_episodes=2, warmup_iterations=2,
                      batch_size=8, buffer_size=64, seed=seed)

    monkeypatch.setattr(exp, "budget_config", tiny)
    monkeypatch.setattr(exp, "MAMUJOCO_TASKS", ("single_peak",))
    monkeypatch.setattr(exp, "TASKS", ("single_peak",))
    out, runs = tmp_path / "out", tmp_path / "runs"
    argv = ["--algos", "svnr", "maddpg", "--tasks", "single_peak", "--seeds", "2", "--test-episodes", "2",
            "--out", str(out), "--runs-dir", str(runs), "--no-progress"]

    real_run = exp.run
    calls = []

    def interrupted_once(cfg, run_dir, **kw):  # maddpg stops after its first chunk the first time
        calls.append((cfg.algo, kw.get("resume")))
        if cfg.algo == "maddpg" and len([c for c in calls if c[0] == "maddpg"]) == 1:
            kw["max_chunks"] = 1
        return real_run(cfg, run_dir, **kw)

    monkeypatch.setattr(exp, "run", interrupted_once)
    assert exp.main(argv) == 130
    res = json.loads((out / "results.json").read_text())
    assert not res["svnr/single_peak"].get("partial") and res["maddpg/single_peak"]["partial"]
    assert len(res["svnr/single_peak"]["per_seed"]) == 2
    assert exp.main(argv) == 0  # svnr skipped, maddpg resumed from its checkpoint
    assert calls == [("svnr", False), ("maddpg", False), ("maddpg", True)]
    res = json.loads((out / "results.json").read_text())
    m = res["maddpg/single_peak"]
    assert not m.get("partial") and m["resumed"] and m["curve"]["env_steps"] == [16, 32]
    assert (out / "table.md").exists() and (out / "curves_single_peak.png").exists()
    assert os.path.exists(runs / "cpu" / "single_peak" / "maddpg" / "checkpoints")
    assert exp.main(argv) == 0 and len(calls) == 3  # everything finished: nothing trained
    # a call for some algorithms still writes the table of every stored one (results of others are kept)
    assert exp.main(argv[:1] + ["svnr"] + argv[3:]) == 0 and len(calls) == 3
    assert "| maddpg |" in (out / "table.md").read_text()
