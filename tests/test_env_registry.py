"""Every registered env: reset/step under jit and vmap, shapes as the spec says, finite values, zero
padding; and clear errors for unknown names, unknown config keys and bad values.

Envs whose name contains '-' (the MJX MaMuJoCo tasks, slow to compile) get one jitted, vmapped
(batch 2) reset+step; the cheap envs get a few more checks."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from svnr_jax.envs import env_defaults, list_envs, make, wrap_for_training

OUR_ENVS = {"max_of_two", "two_modalities", "max_of_three", "single_peak", "climbing", "penalty", "particle_gather"}


@pytest.fixture(autouse=True)
def _key_reuse_checks():
    with jax.debug_key_reuse(True):
        yield


def _random_actions(spec, key, batch):
    """``[batch, N, A]`` uniform in the native bounds, zero on padded entries."""
    shape = (batch, spec.num_agents, spec.action_dim)
    a = jax.random.uniform(key, shape, minval=spec.action_low, maxval=spec.action_high)
    return a * spec.action_mask


@functools.cache
def _reset_step_batch2(name):
    """One compiled function per env: vmapped (batch 2) reset then one random step."""
    env = make(name)

    def run(key):
        k_reset, k_act, k_step = jax.random.split(key, 3)
        first = jax.vmap(env.reset)(jax.random.split(k_reset, 2))
        actions = _random_actions(env.spec, k_act, 2)
        return first, jax.vmap(env.step)(first, actions, jax.random.split(k_step, 2))

    return env, jax.jit(run)


def _check_state(spec, state, batch):
    n, o, s = spec.num_agents, spec.obs_dim, spec.state_size
    assert state.obs.shape == (batch, n, o)
    assert state.global_state.shape == (batch, s)
    for field in ("reward", "terminated", "truncated", "time"):
        assert getattr(state, field).shape == (batch,), field
    assert state.terminated.dtype == jnp.bool_ and state.truncated.dtype == jnp.bool_
    assert state.time.dtype == jnp.int32
    for leaf in jax.tree.leaves(state):
        if jnp.issubdtype(leaf.dtype, jnp.inexact):
            assert np.all(np.isfinite(leaf))
    padded = ~np.asarray(spec.obs_mask)
    np.testing.assert_array_equal(np.asarray(state.obs)[:, padded], 0.0)


def test_our_envs_are_registered():
    assert OUR_ENVS <= set(list_envs())
    assert list_envs() == sorted(list_envs())


def _registry_params():
    """Every registered env. The MJX MaMuJoCo tasks (names with '-') take 1-3 min each to compile on 2
    cores and have their own reference tests (tests/test_mamujoco.py); here one of them runs by default
    and the others are marked slow (``make test-all`` runs them)."""
    return [n if "-" not in n or n == "HalfCheetah-2x3" else pytest.param(n, marks=pytest.mark.slow)
            for n in list_envs()]


@pytest.mark.parametrize("name", _registry_params())
def test_reset_step_jit_vmap_shapes(name):
    env, run = _reset_step_batch2(name)
    spec = env.spec
    assert spec.name == name and spec.num_agents >= 1
    assert len(spec.obs_sizes) == len(spec.action_sizes) == spec.num_agents
    assert spec.action_low < spec.action_high and spec.episode_length >= 1
    first, nxt = run(jax.random.key(0))
    _check_state(spec, first, 2)
    _check_state(spec, nxt, 2)
    np.testing.assert_array_equal(first.reward, 0.0)
    np.testing.assert_array_equal(first.time, 0)
    np.testing.assert_array_equal(nxt.time, 1)
    assert not np.any(first.terminated | first.truncated)
    if spec.best_team_reward is not None:
        assert np.all(np.asarray(nxt.reward) <= spec.best_team_reward + 1e-4)


@pytest.mark.parametrize("name", [n for n in list_envs() if "-" not in n])
def test_cheap_envs_are_deterministic_and_train_wrappable(name):
    env, run = _reset_step_batch2(name)
    a, b = run(jax.random.key(1)), run(jax.random.key(1))
    jax.tree.map(np.testing.assert_array_equal, a, b)

    batched = wrap_for_training(make(name), 2)
    keys = jax.random.split(jax.random.key(2), 4)
    state = jax.jit(batched.reset)(keys[0])
    step = jax.jit(batched.step)
    for k in keys[1:]:
        state = step(state, jnp.full((2, env.spec.num_agents, env.spec.action_dim), 0.3), k)
    _check_state(env.spec, state, 2)
    assert state.info["final_obs"].shape == state.obs.shape


@pytest.mark.parametrize("name", sorted(OUR_ENVS))
def test_make_uses_defaults(name):
    defaults = env_defaults(name)
    assert defaults == type(make(name)).default_config()
    assert make(name, **defaults).spec == make(name).spec


def test_unknown_name_lists_registered_envs():
    with pytest.raises(ValueError, match=r"unknown env name 'max_of_thre'.*did you mean.*'max_of_three'"):
        make("max_of_thre")
    with pytest.raises(ValueError, match=r"registered envs: \[.*'particle_gather'"):
        make("no_such_env")


@pytest.mark.parametrize(
    "name, config",
    [("max_of_two", {"num_agents": 3}), ("climbing", {"k": -1}), ("particle_gather", {"radius": 0.1}),
     ("penalty", {"K": -1})],
)
def test_unknown_config_key(name, config):
    key = next(iter(config))
    with pytest.raises(ValueError, match=rf"unknown config key\(s\) \['{key}'\] for env '{name}'"):
        make(name, **config)


@pytest.mark.parametrize(
    "name, config, match",
    [
        ("two_modalities", {"num_agents": 1}, "num_agents must be an integer >= 2, got 1"),
        ("max_of_three", {"num_agents": 2.5}, "num_agents must be an integer >= 2, got 2.5"),
        ("max_of_three", {"num_agents": True}, "num_agents must be an integer >= 2, got True"),
        ("penalty", {"k": 3}, "k must be a finite number <= 0, got 3"),
        ("particle_gather", {"num_agents": 1}, "num_agents must be an integer >= 2, got 1"),
        ("particle_gather", {"rho": 0.0}, r"rho must be a number in \(0, 2\*sqrt\(2\)\), got 0.0"),
        ("particle_gather", {"rho": -0.5}, "got -0.5"),
        ("particle_gather", {"rho": 3.0}, "got 3.0"),
        ("particle_gather", {"max_speed": 0}, "max_speed must be a number > 0, got 0"),
        ("particle_gather", {"episode_length": 0}, "episode_length must be an integer >= 1, got 0"),
    ],
)
def test_bad_config_values(name, config, match):
    with pytest.raises(ValueError, match=match):
        make(name, **config)
