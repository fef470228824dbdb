"""Wrappers: action rescaling, automatic reset (final obs, truncation vs termination), episode
statistics over several episodes of a batched env (against an explicit Python loop), batching."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from svnr_jax.envs import (
    AutoReset,
    Batch,
    Env,
    EnvSpec,
    EpisodeStats,
    RescaleActions,
    State,
    make,
    wrap_for_training,
)


@pytest.fixture(autouse=True)
def _key_reuse_checks():
    with jax.debug_key_reuse(True):
        yield


@struct.dataclass
class _ToyState:
    counter: jax.Array


class ToyEnv(Env):
    """Two agents, actions in [0, 4]. Reward = sum of actions + time. Terminates when agent 0's action
    exceeds 3, truncates after 5 steps. The reset draws a random observation (so reset keys matter)."""

    def __init__(self):
        self.spec = EnvSpec("toy", 2, (3, 2), (1, 1), 2, 0.0, 4.0, 5)

    def _obs(self, value):
        return jnp.stack([jnp.array([value, 1.0, 2.0]), jnp.array([value, -1.0, 0.0])])

    def reset(self, key):
        value = jax.random.uniform(key)
        return State(_ToyState(jnp.zeros(())), self._obs(value), jnp.array([value, 0.0]), jnp.zeros(()),
                     jnp.zeros((), bool), jnp.zeros((), bool), jnp.zeros((), jnp.int32), {})

    def step(self, state, actions, key):
        del key
        counter = state.env_state.counter + 1
        time = state.time + 1
        return state.replace(
            env_state=_ToyState(counter), obs=self._obs(counter), global_state=jnp.array([counter, 1.0]),
            reward=jnp.sum(actions) + time, terminated=actions[0, 0] > 3.0,
            truncated=time >= self.spec.episode_length, time=time)


def test_rescale_actions_maps_unit_box_to_native_bounds():
    env = RescaleActions(ToyEnv())
    step = jax.jit(env.step)
    state = env.reset(jax.random.key(0))
    # (a0, a1) in [-1, 1] -> native [0, 4]: -1 -> 0, 0 -> 2, 0.5 -> 3, 1 -> 4, out of range clipped.
    for actions, native_sum in [((-1, -1), 0.0), ((0, 0.5), 5.0), ((1, 7), 8.0), ((-3, 0), 2.0)]:
        a = jnp.asarray(actions, jnp.float32)[:, None]
        nxt = step(state, a, jax.random.key(1))
        np.testing.assert_allclose(nxt.reward, native_sum + 1, rtol=1e-6)
    assert env.spec is env.unwrapped.spec and isinstance(env.unwrapped, ToyEnv)


def test_rescale_actions_on_max_of_three():
    env = RescaleActions(make("max_of_three"))
    state = env.reset(jax.random.key(0))
    step = jax.jit(env.step)
    for a, r in [(0.5, 10.0), (-0.5, 10.0), (0.0, 2.0)]:
        assert float(step(state, jnp.full((2, 1), a), jax.random.key(1)).reward) == r


def test_auto_reset_keeps_final_obs_and_truncation():
    env = make("particle_gather", episode_length=3)
    auto = AutoReset(env)
    step, raw_step, raw_reset = jax.jit(auto.step), jax.jit(env.step), jax.jit(env.reset)
    key = jax.random.key(2)
    k0, *ks = jax.random.split(key, 4)
    state = auto.reset(k0)
    np.testing.assert_array_equal(state.info["final_obs"], state.obs)
    raw = raw_reset(jax.random.clone(k0))
    actions = jnp.array([[1.0, 0.5], [-0.3, 0.2]])
    for t, k in enumerate(ks, start=1):
        k_step, k_reset = jax.random.split(jax.random.clone(k))
        state = step(state, actions, k)
        raw = raw_step(raw, actions, k_step)
        np.testing.assert_array_equal(state.info["final_obs"], raw.obs)
        np.testing.assert_array_equal(state.info["final_global_state"], raw.global_state)
        np.testing.assert_array_equal(state.reward, raw.reward)
        assert not bool(state.terminated)
        if t < 3:
            assert not bool(state.truncated) and int(state.time) == t
            np.testing.assert_array_equal(state.obs, raw.obs)
        else:
            # Truncated (time limit), not terminated; the state is already the next episode's start.
            assert bool(state.truncated) and int(state.time) == 0
            fresh = raw_reset(k_reset)
            np.testing.assert_array_equal(state.obs, fresh.obs)
            np.testing.assert_array_equal(state.env_state.positions, fresh.env_state.positions)
            assert not np.array_equal(state.obs, state.info["final_obs"])


def test_auto_reset_one_step_game_terminates_every_step():
    env = AutoReset(make("climbing"))
    state = env.reset(jax.random.key(3))
    step = jax.jit(env.step)
    for k in jax.random.split(jax.random.key(4), 3):
        state = step(state, jnp.full((2, 1), -1.0), k)
        assert bool(state.terminated) and not bool(state.truncated)
        assert float(state.reward) == 11.0 and int(state.time) == 0


def _scan_rollout(env, num_steps):
    """Jitted rollout of a batched env with given actions ``[T, B, N, A]`` and keys."""

    def body(state, xs):
        actions, key = xs
        state = env.step(state, actions, key)
        return state, state

    return jax.jit(lambda state, actions, keys: jax.lax.scan(body, state, (actions, keys))[1])


def _python_oracle(raw_env, reset_key, keys, actions, num_envs):
    """Explicit loop: per env, step the raw env, reset by hand when done, count returns/lengths."""
    raw_step, raw_reset = jax.jit(raw_env.step), jax.jit(raw_env.reset)
    low, high = raw_env.spec.action_low, raw_env.spec.action_high
    out = {k: np.zeros(actions.shape[:2]) for k in
           ["reward", "done", "terminated", "ret", "len", "ret_ret", "ret_len", "returned", "final_obs0"]}
    # What Batch then AutoReset do with each step's key: split into B, then into (step, reset).
    split_data = np.asarray(jax.random.key_data(
        jax.vmap(jax.vmap(jax.random.split))(jax.vmap(lambda k: jax.random.split(k, num_envs))(keys))))
    for b, k_env in enumerate(jax.random.split(reset_key, num_envs)):
        state = raw_reset(k_env)
        ret, length, last_ret, last_len = 0.0, 0, 0.0, 0
        for t in range(actions.shape[0]):
            k_step, k_reset = (jax.random.wrap_key_data(d) for d in split_data[t, b])
            native = low + 0.5 * (np.clip(actions[t, b], -1, 1) + 1) * (high - low)
            state = raw_step(state, native, k_step)
            ret, length = ret + float(state.reward), length + 1
            done = bool(state.terminated) or bool(state.truncated)
            out["final_obs0"][t, b] = float(state.obs[0, 0])
            out["reward"][t, b], out["done"][t, b] = float(state.reward), done
            out["terminated"][t, b] = bool(state.terminated)
            if done:
                last_ret, last_len, ret, length = ret, length, 0.0, 0
                state = raw_reset(k_reset)
            out["ret"][t, b], out["len"][t, b] = ret, length
            out["ret_ret"][t, b], out["ret_len"][t, b], out["returned"][t, b] = last_ret, last_len, done
    return out


@pytest.mark.parametrize("make_env", [ToyEnv, functools.partial(make, "particle_gather", episode_length=4)],
                         ids=["toy", "particle_gather"])
def test_episode_stats_match_python_loop_over_several_episodes(make_env):
    raw_env, num_envs, num_steps = make_env(), 3, 13
    env = wrap_for_training(raw_env, num_envs)
    spec = raw_env.spec
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1.2, 1.2, (num_steps, num_envs, spec.num_agents, spec.action_dim)).astype(np.float32)

    def keys():  # the same keys, fresh for each consumer (key-reuse checks are on)
        k_reset, k_run = jax.random.split(jax.random.key(5))
        return k_reset, jax.random.split(k_run, num_steps)

    k_reset, k_steps = keys()
    traj = _scan_rollout(env, num_steps)(env.reset(k_reset), jnp.asarray(actions), k_steps)
    expected = _python_oracle(raw_env, *keys(), actions, num_envs)

    assert expected["done"].sum() >= 2 * num_envs  # several episodes per env
    info = traj.info
    np.testing.assert_allclose(traj.reward, expected["reward"], rtol=1e-5)
    np.testing.assert_array_equal(traj.done, expected["done"])
    np.testing.assert_array_equal(traj.terminated, expected["terminated"])
    np.testing.assert_allclose(info["final_obs"][..., 0, 0], expected["final_obs0"], rtol=1e-6)
    np.testing.assert_allclose(info["episode_return"], expected["ret"], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(info["episode_length"], expected["len"])
    np.testing.assert_allclose(info["returned_episode_return"], expected["ret_ret"], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(info["returned_episode_length"], expected["ret_len"])
    np.testing.assert_array_equal(info["returned_episode"], expected["returned"])
    assert info["episode_length"].dtype == jnp.int32 and info["returned_episode"].dtype == jnp.bool_


def test_episode_stats_reset_and_one_step_games():
    env = wrap_for_training(make("max_of_two"))
    state = env.reset(jax.random.key(6))
    assert set(state.info) == {"final_obs", "final_global_state", "episode_return", "episode_length",
                               "returned_episode_return", "returned_episode_length", "returned_episode"}
    assert float(state.info["returned_episode_return"]) == 0.0 and not bool(state.info["returned_episode"])
    state = jax.jit(env.step)(state, jnp.full((2, 1), 0.5), jax.random.key(7))
    assert float(state.info["returned_episode_return"]) == 10.0
    assert int(state.info["returned_episode_length"]) == 1 and bool(state.info["returned_episode"])
    assert int(state.info["episode_length"]) == 0


def test_batch_shapes_and_independent_copies():
    env = Batch(make("particle_gather", num_agents=3), 4)
    state = jax.jit(env.reset)(jax.random.key(8))
    assert state.obs.shape == (4, 3, 10) and state.reward.shape == (4,) and state.time.shape == (4,)
    assert len(np.unique(np.asarray(state.env_state.landmark[:, 0]))) == 4
    nxt = jax.jit(env.step)(state, jnp.zeros((4, 3, 2)), jax.random.key(9))
    assert nxt.global_state.shape == (4, env.spec.state_size)
    np.testing.assert_array_equal(nxt.time, 1)
    with pytest.raises(ValueError, match=r"num_envs=4, got shape \(3, 3, 2\)"):
        env.step(state, jnp.zeros((3, 3, 2)), jax.random.key(10))
    with pytest.raises(ValueError, match="num_envs must be an integer >= 1, got 0"):
        Batch(make("climbing"), 0)


def test_wrapper_stack_exposes_spec_and_unwrapped():
    raw = make("penalty", k=-3)
    env = wrap_for_training(raw, 2)
    assert env.spec is raw.spec and env.unwrapped is raw and env.num_envs == 2
    assert repr(env) == "Batch(EpisodeStats(AutoReset(RescaleActions(Penalty(penalty)))), num_envs=2)"
    assert isinstance(env.env, EpisodeStats) and isinstance(env.env.env, AutoReset)


def test_wrapped_step_traces_once():
    """The state a step returns has the same pytree structure and dtypes as the reset state."""
    env = wrap_for_training(make("climbing"), 3)
    traces = []

    def step(state, actions, key):
        traces.append(1)
        return env.step(state, actions, key)

    step = jax.jit(step)
    state = env.reset(jax.random.key(11))
    for k in jax.random.split(jax.random.key(12), 3):
        state = step(state, jnp.zeros((3, 2, 1)), k)
    assert len(traces) == 1
