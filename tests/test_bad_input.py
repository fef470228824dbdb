"""Bad input never passes silently: action shapes checked when traced, non-finite actions never look like good
ones (every env pays a NaN reward and keeps a finite state), and the runner stops on them with a message."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_algo_config

from svnr_jax import runner
from svnr_jax.algorithms import base
from svnr_jax.algorithms.maddpg import MADDPG, MADDPGConfig
from svnr_jax.config import make_config
from svnr_jax.envs import make

GAMES = ("max_of_two", "two_modalities", "max_of_three", "single_peak", "climbing", "penalty", "particle_gather")


@pytest.mark.parametrize("name", GAMES)
def test_wrong_action_shapes_are_a_clear_error(name):
    env = make(name)
    n, a = env.spec.num_agents, env.spec.action_dim
    st = env.reset(jax.random.key(0))
    for bad in ((n + 1, a), (n, a + 1), (n,), ()):
        with pytest.raises(ValueError, match=rf"actions must have shape \[N, A\] = \[{n}, {a}\], got"):
            jax.jit(env.step)(st, jnp.zeros(bad), jax.random.key(1))


@pytest.mark.parametrize("name", GAMES)
def test_nan_actions_pay_nan_and_keep_the_state_finite(name):
    """Before: NaN actions on climbing and penalty paid the best cell (11 and 10)."""
    env = make(name)
    n, a = env.spec.num_agents, env.spec.action_dim
    st = env.reset(jax.random.key(0))
    for value in (jnp.nan, jnp.inf):
        u = jnp.zeros((n, a)).at[0, 0].set(value)
        nxt = jax.jit(env.step)(st, u, jax.random.key(1))
        assert np.isnan(float(nxt.reward)), (name, value)
        assert np.all(np.isfinite(np.asarray(nxt.obs))) and np.all(np.isfinite(np.asarray(nxt.global_state)))
    ok = jax.jit(env.step)(st, jnp.zeros((n, a)), jax.random.key(1))
    assert np.isfinite(float(ok.reward))


@pytest.mark.slow
def test_mamujoco_shapes_and_nan_actions():
    """HalfCheetah-2x3 (agents with 3 actions): [2, 2] refused; a NaN action pays NaN, the MJX state stays finite
    (before: NaN filled the state until reset)."""
    env = make("HalfCheetah-2x3")
    st = env.reset(jax.random.key(0))
    with pytest.raises(ValueError, match=r"\[N, A\] = \[2, 3\], got \[2, 2\]"):
        env.step(st, jnp.zeros((2, 2)))
    nxt = jax.jit(env.step)(st, jnp.zeros((2, 3)).at[1, 2].set(jnp.nan))
    assert np.isnan(float(nxt.reward))
    assert all(np.all(np.isfinite(np.asarray(x))) for x in (nxt.obs, nxt.env_state.data.qpos, nxt.env_state.data.qvel))


class _NaNActor(MADDPG):
    """MADDPG whose exploration emits NaN: what a diverged policy does."""

    def act(self, ls, obs, state, key, t, iteration, mode=base.EXPLORE):
        u = super().act(ls, obs, state, key, t, iteration, mode)
        return u * jnp.nan if mode == base.EXPLORE else u


def test_runner_stops_on_nan_actions(tmp_path):
    base.register("nan_actor", MADDPGConfig, _NaNActor)
    try:
        cfg = make_config("nan_actor", tiny_algo_config("maddpg"), env="climbing", num_envs=4, iterations=20,
                          eval_every=20, chunk_iterations=20, batch_size=8, buffer_size=256, warmup_iterations=2,
                          eval_episodes=4, num_seeds=1)
        res = runner.run(cfg, str(tmp_path / "run"), progress=False)
    finally:
        base._REGISTRY.pop("nan_actor")
    assert res.status == "nonfinite"
    assert "non-finite env step" in res.message and "at iteration 1 " in res.message, res.message


class _LateNaNActor(MADDPG):
    """MADDPG whose exploration turns NaN from iteration 5 on."""

    def act(self, ls, obs, state, key, t, iteration, mode=base.EXPLORE):
        u = super().act(ls, obs, state, key, t, iteration, mode)
        return jnp.where(iteration >= 5, jnp.nan, u) if mode == base.EXPLORE else u


def test_nonfinite_stop_keeps_the_failing_chunks_good_rows(tmp_path):
    """The rows of the failing chunk before its first non-finite iteration are written (before: lost)."""
    import csv

    base.register("late_nan_actor", MADDPGConfig, _LateNaNActor)
    try:
        cfg = make_config("late_nan_actor", tiny_algo_config("maddpg"), env="climbing", num_envs=4, iterations=40,
                          eval_every=20, chunk_iterations=20, batch_size=8, buffer_size=256, warmup_iterations=2,
                          eval_episodes=4, num_seeds=1)
        res = runner.run(cfg, str(tmp_path / "run"), progress=False)
    finally:
        base._REGISTRY.pop("late_nan_actor")
    assert res.status == "nonfinite" and "at iteration 6 " in res.message, res.message
    with open(tmp_path / "run" / "metrics.csv") as f:
        assert [int(r["iteration"]) for r in csv.DictReader(f)] == [0, 1, 2, 3, 4]
