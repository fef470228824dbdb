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
from svnr_jax.envs.wrappers import PooledAutoReset


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


# ------------------------------------------------------------------ PooledAutoReset (envs with an expensive reset)


def _pool_oracle(raw_env, reset_key_data, step_key_data, actions, num_envs):
    """Explicit loop of PooledAutoReset's documented semantics (its docstring), by keys: per step, step every env,
    refill every used slot if fewer slots are fresh than episodes ended, hand the fresh slots (lowest index first) to
    the ended envs in env order; EpisodeStats by hand. Returns per-step arrays and the keys of every episode start."""
    raw_step, raw_reset = jax.jit(raw_env.step), jax.jit(raw_env.reset)
    low, high = raw_env.spec.action_low, raw_env.spec.action_high
    wrap, data = jax.random.wrap_key_data, jax.random.key_data

    def split(kd, n=2):  # raw key data -> n raw key data
        return np.asarray(data(jax.random.split(wrap(kd), n)))

    b = num_envs
    k_envs, k_pool = split(reset_key_data)
    states = [raw_reset(wrap(k)) for k in split(k_envs, b)]
    pool_keys, fresh = list(split(k_pool, b)), [True] * b
    starts = [tuple(k) for k in split(k_envs, b)]  # keys every episode started from (initial ones included)
    ret, length, last_ret, last_len = np.zeros(b), np.zeros(b, int), np.zeros(b), np.zeros(b, int)
    out = {k: [] for k in ["obs", "reward", "done", "terminated", "time", "final_obs", "ret", "len", "ret_ret",
                           "ret_len", "pool_keys", "refilled"]}
    for t in range(actions.shape[0]):
        step_key, pool_key = split(step_key_data[t])
        nxt = [raw_step(states[i], low + 0.5 * (np.clip(actions[t, i], -1, 1) + 1) * (high - low), wrap(k))
               for i, k in enumerate(split(step_key, b))]
        done = [bool(s.terminated) or bool(s.truncated) for s in nxt]
        refilled = sum(fresh) < sum(done)
        if refilled:
            new = split(split(pool_key)[1], b)
            pool_keys = [pool_keys[i] if fresh[i] else new[i] for i in range(b)]
            fresh = [True] * b
        free = [i for i in range(b) if fresh[i]]
        final_obs = [np.asarray(s.obs) for s in nxt]
        reward, terminated = [float(s.reward) for s in nxt], [bool(s.terminated) for s in nxt]
        for i in range(b):
            ret[i] += float(nxt[i].reward)
            length[i] += 1
            if done[i]:
                slot = free.pop(0)
                fresh[slot] = False
                starts.append(tuple(pool_keys[slot]))
                last_ret[i], last_len[i], ret[i], length[i] = ret[i], length[i], 0.0, 0
                nxt[i] = raw_reset(wrap(pool_keys[slot]))
        states = nxt
        for name, value in [("obs", [np.asarray(s.obs) for s in nxt]), ("time", [int(s.time) for s in nxt]),
                            ("reward", reward), ("terminated", terminated), ("done", done),
                            ("final_obs", final_obs), ("ret", ret.copy()), ("len", length.copy()),
                            ("ret_ret", last_ret.copy()), ("ret_len", last_len.copy()),
                            ("pool_keys", np.stack(pool_keys)), ("refilled", refilled)]:
            out[name].append(np.asarray(value))
    return {k: np.stack(v) for k, v in out.items()}, starts


@pytest.mark.parametrize("make_env", [ToyEnv, functools.partial(make, "particle_gather", episode_length=3)],
                         ids=["toy", "particle_gather"])
def test_pooled_auto_reset_matches_its_definition(make_env):
    """Every output of the pooled stack (obs, reward, done, final_obs, time, episode statistics, pool keys) equals an
    explicit loop of the documented semantics, over several episodes and pool refills; every episode starts from
    ``env.reset(k)`` of its own key: no key starts two episodes."""
    raw_env, num_envs, num_steps = make_env(), 4, 14
    env = wrap_for_training(raw_env, num_envs, reset_pool=True)
    assert repr(env) == f"EpisodeStats(PooledAutoReset(RescaleActions({raw_env!r}), num_envs=4))"
    spec = raw_env.spec
    rng = np.random.default_rng(1)
    actions = rng.uniform(-1.2, 1.0, (num_steps, num_envs, spec.num_agents, spec.action_dim)).astype(np.float32)
    reset_kd = np.asarray(jax.random.key_data(jax.random.key(5)))
    step_kd = np.asarray(jax.random.key_data(jax.random.split(jax.random.key(6), num_steps)))

    state = env.reset(jax.random.wrap_key_data(reset_kd))
    traj = _scan_rollout(env, num_steps)(state, jnp.asarray(actions), jax.random.wrap_key_data(step_kd))
    want, starts = _pool_oracle(raw_env, reset_kd, step_kd, actions, num_envs)

    ends = want["done"].sum()
    assert ends >= 2 * num_envs and want["refilled"].sum() >= 2  # several episodes per env, several refills
    assert len(set(starts)) == len(starts) == num_envs + ends  # no key (hence no start state) used twice
    info = traj.info
    np.testing.assert_array_equal(traj.done, want["done"])
    np.testing.assert_array_equal(traj.terminated, want["terminated"])
    np.testing.assert_array_equal(traj.time, want["time"])
    np.testing.assert_allclose(traj.obs, want["obs"], rtol=1e-6)
    np.testing.assert_allclose(traj.reward, want["reward"], rtol=1e-5)
    np.testing.assert_allclose(info["final_obs"], want["final_obs"], rtol=1e-6)
    np.testing.assert_allclose(info["episode_return"], want["ret"], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(info["episode_length"], want["len"])
    np.testing.assert_allclose(info["returned_episode_return"], want["ret_ret"], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(info["returned_episode_length"], want["ret_len"])
    np.testing.assert_array_equal(info["returned_episode"], want["done"])
    np.testing.assert_array_equal(traj.env_state.pool_keys, want["pool_keys"])
    assert set(info) == {"final_obs", "final_global_state", "episode_return", "episode_length",
                         "returned_episode_return", "returned_episode_length", "returned_episode"}
    # the pool itself: every slot holds env.reset(its key)
    last = jax.tree.map(lambda x: x[-1], traj.env_state.pool)
    for i, kd in enumerate(np.asarray(traj.env_state.pool_keys[-1])):
        fresh = jax.jit(raw_env.reset)(jax.random.wrap_key_data(kd))
        np.testing.assert_array_equal(last.obs[i], fresh.obs)
        np.testing.assert_array_equal(last.global_state[i], fresh.global_state)


class _CountingEnv(ToyEnv):
    """ToyEnv whose reset counts, at run time, how many resets XLA executes (a callback sees the whole batch of a
    vmapped reset: one count per row). Episodes: 5 steps (truncation), or terminated by agent 0's action > 3."""

    def __init__(self):
        super().__init__()
        self.resets = 0

    def _count(self, value):
        self.resets += int(np.size(value))
        return value

    def reset(self, key):
        state = super().reset(key)
        value = jax.pure_callback(self._count, jax.ShapeDtypeStruct((), jnp.float32), state.global_state[0],
                                  vmap_method="broadcast_all")
        return state.replace(global_state=state.global_state.at[0].set(value))


@pytest.mark.parametrize("seeds", [None, 2])
def test_pooled_auto_reset_cost_counts_resets(seeds):
    """The resets XLA executes: B per refill (refills only when the pool runs out), against B per step for the
    AutoReset stack; under a seed vmap the refill runs for every seed when one needs it."""
    b, steps = 4, 20
    counts = {}
    for pooled in (True, False):
        raw = _CountingEnv()
        env = wrap_for_training(raw, b, reset_pool=pooled)
        k_reset, k_run = jax.random.split(jax.random.key(0))
        # truncation only (actions -1 -> 0 < 3): the 4 envs end together at steps 5, 10, 15, 20
        actions = jnp.full((steps, b, 2, 1), -1.0)
        if seeds is None:
            state = jax.jit(env.reset)(k_reset)
            run = _scan_rollout(env, steps)
            keys = jax.random.split(k_run, steps)
        else:
            state = jax.jit(jax.vmap(env.reset))(jax.random.split(k_reset, seeds))
            run = jax.jit(jax.vmap(_scan_rollout(env, steps), in_axes=(0, None, 1)))
            keys = jax.random.split(k_run, (steps, seeds))
        raw.resets = 0
        traj = jax.block_until_ready(run(state, actions, keys))
        assert int(np.asarray(traj.done).sum()) == (seeds or 1) * b * 4
        counts[pooled] = raw.resets
    n = seeds or 1
    # the first burst (step 5) empties the pool of B; the bursts at 10, 15 and 20 each refill it: 3 x B resets
    assert counts[True] == 3 * b * n, counts
    assert counts[False] == steps * b * n, counts


def test_pooled_auto_reset_refills_at_staggered_ends():
    """Episodes ending at different steps (terminations): a refill only when fewer states are fresh than episodes
    end; between refills no reset runs at all."""
    b, steps = 4, 12
    raw = _CountingEnv()
    env = wrap_for_training(raw, b, reset_pool=True)
    # env i terminates at the steps where agent 0 acts 1.0 (native 4 > 3): env 0 every 2nd step, env 1 every 3rd
    act = np.full((steps, b, 2, 1), -1.0, np.float32)
    act[1::2, 0, 0, 0] = 1.0
    act[2::3, 1, 0, 0] = 1.0
    state = jax.jit(env.reset)(jax.random.key(1))
    raw.resets = 0
    traj = _scan_rollout(env, steps)(state, jnp.asarray(act), jax.random.split(jax.random.key(2), steps))
    done = np.asarray(traj.done)
    fresh, refills = b, 0
    for t in range(steps):  # the pool's fresh count by hand
        if fresh < done[t].sum():
            fresh, refills = b, refills + 1
        fresh -= done[t].sum()
    assert refills >= 2 and raw.resets == refills * b < b * steps  # AutoReset: b * steps
    np.testing.assert_array_equal(np.asarray(traj.env_state.pool_fresh).sum(-1)[-1], fresh)


def test_pooled_state_is_batched_checkpointable_and_traces_once():
    """Every leaf of the pooled stack's state has a leading [B] (keys as raw uint32 data), the checkpoint
    representation round-trips, and a jitted step traces once."""
    from svnr_jax import checkpoint

    env = wrap_for_training(make("particle_gather", episode_length=2), 3, reset_pool=True)
    assert env.num_envs == 3 and isinstance(env.env, PooledAutoReset) and env.unwrapped.spec.name == "particle_gather"
    traces = []

    def step(state, actions, key):
        traces.append(1)
        return env.step(state, actions, key)

    step = jax.jit(step)
    state = jax.jit(env.reset)(jax.random.key(3))
    for k in jax.random.split(jax.random.key(4), 5):
        state = step(state, jnp.zeros((3, 2, 2)), k)
    assert len(traces) == 1
    assert all(x.shape[0] == 3 for x in jax.tree.leaves(state))
    assert state.env_state.pool_keys.dtype == jnp.uint32
    back = checkpoint.from_saveable(jax.device_get(checkpoint.to_saveable(state)), state)
    jax.tree.map(np.testing.assert_array_equal, back, state)


def test_wrap_for_training_chooses_the_pool_for_expensive_resets():
    """``expensive_reset`` (MaMuJoCo) selects PooledAutoReset; games keep AutoReset; ``reset_pool`` overrides."""
    from svnr_jax.envs.mamujoco import MaMuJoCo

    assert MaMuJoCo.expensive_reset and not make("climbing").expensive_reset
    mj = make("HalfCheetah-2x3")
    assert repr(wrap_for_training(mj, 2)) == \
        "EpisodeStats(PooledAutoReset(RescaleActions(MaMuJoCo(HalfCheetah-2x3)), num_envs=2))"
    assert repr(wrap_for_training(mj, 2, reset_pool=False)).startswith("Batch(EpisodeStats(AutoReset(")
    assert repr(wrap_for_training(mj)).startswith("EpisodeStats(AutoReset(")  # unbatched: no pool
    assert isinstance(wrap_for_training(make("climbing"), 2, reset_pool=True).env, PooledAutoReset)


@pytest.mark.slow
def test_pooled_auto_reset_on_mamujoco_truncation():
    """HalfCheetah-2x3 (the pooled stack training builds): an env at its time limit is truncated and restarts from
    ``env.reset(k)`` of a fresh pool key (obs, global state, qpos, qvel); ``final_obs`` is the raw step's; the
    other envs step on."""
    raw = make("HalfCheetah-2x3")
    env = wrap_for_training(raw, 3)
    state = jax.jit(env.reset)(jax.random.key(0))
    state = state.replace(time=state.time.at[1].set(raw.spec.episode_length - 1))
    actions = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (3, 2, 3)), jnp.float32)
    nxt = jax.jit(env.step)(state, actions, jax.random.key(1))
    assert np.asarray(nxt.truncated).tolist() == [False, True, False] and not np.asarray(nxt.terminated).any()
    assert np.asarray(nxt.time).tolist() == [1, 0, 1]
    assert np.asarray(nxt.info["returned_episode"]).tolist() == [False, True, False]
    # the raw step of each env (RescaleActions is the identity here: ctrlrange [-1, 1])
    raw_step = jax.jit(jax.vmap(raw.step))
    inner = state.replace(env_state=state.env_state.env_state, info={})
    want = raw_step(inner, actions, jax.random.split(jax.random.key(2), 3))
    np.testing.assert_allclose(nxt.info["final_obs"], want.obs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(nxt.obs)[[0, 2]], np.asarray(want.obs)[[0, 2]], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(nxt.reward[1]), float(want.reward[1]), rtol=1e-5)
    # env 1 took the first fresh slot (slot 0) of the untouched pool
    assert np.asarray(nxt.env_state.pool_fresh).tolist() == [False, True, True]
    kd = np.asarray(state.env_state.pool_keys[0])
    np.testing.assert_array_equal(nxt.env_state.pool_keys[0], kd)
    fresh = jax.jit(raw.reset)(jax.random.wrap_key_data(kd))
    np.testing.assert_array_equal(nxt.obs[1], fresh.obs)
    np.testing.assert_array_equal(nxt.global_state[1], fresh.global_state)
    np.testing.assert_array_equal(nxt.env_state.env_state.data.qpos[1], fresh.env_state.data.qpos)
    np.testing.assert_array_equal(nxt.env_state.env_state.data.qvel[1], fresh.env_state.data.qvel)
