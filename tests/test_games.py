"""Exact rewards of the one-step games and the rules of Particle Gather (docs/environments.md), all under jit."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from svnr_jax.envs import make
from svnr_jax.envs.games import BIN_EDGES, action_bin
from svnr_jax.envs.particle_gather import ParticleGatherState


@pytest.fixture(autouse=True)
def _key_reuse_checks():
    with jax.debug_key_reuse(True):
        yield


@functools.cache
def _episode_fn(name: str, **config):
    """Jitted ``actions [K, N, 1] -> (reward [K], State)``: reset then one step, vmapped over K."""
    env = make(name, **config)

    def one(actions, key):
        k_reset, k_step = jax.random.split(key)
        return env.step(env.reset(k_reset), actions, k_step)

    return jax.jit(jax.vmap(one))


def rewards(name, joint_actions, **config):
    """Team rewards of joint actions ``[K, N]`` (one action entry per agent), through reset+step."""
    a = jnp.asarray(joint_actions, jnp.float32)[:, :, None]
    keys = jax.random.split(jax.random.key(0), a.shape[0])
    return np.asarray(_episode_fn(name, **config)(a, keys).reward)


# ---------------------------------------------------------------- differential games


def test_max_of_two_exact_values():
    r = rewards("max_of_two", [[5, 5], [-5, -5], [0, 0], [5, -5], [15, 5], [-10, -10]])
    f1_origin = 0.8 * -(2 * (5 / 3) ** 2)  # -4.44.. beats f2 = -40
    f1_corner = 0.8 * -((10 / 3) ** 2)  # (5,-5): f1 = -8.89, f2 = -90
    # (15, 5) is clipped to (10, 5): f2 = 10 - 25 = -15 beats f1 = -28.9.
    # (-10, -10): f1 = 0.8 * -(2 * (5/3)²) = -4.44.
    np.testing.assert_allclose(r, [10.0, 0.0, f1_origin, f1_corner, -15.0, f1_origin], rtol=1e-6)


def test_max_of_two_optima_are_local_maxima():
    eps = 0.05
    for peak, value in [((5, 5), 10.0), ((-5, -5), 0.0)]:
        around = [(peak[0] + dx, peak[1] + dy) for dx in (-eps, eps) for dy in (-eps, 0, eps)]
        assert np.all(rewards("max_of_two", around) < value)


def test_two_modalities_peaks_and_bad_corners():
    r = rewards("two_modalities", [[5, 5], [-5, -5], [5, -5], [-5, 5], [0, 0], [4, 5]])
    np.testing.assert_allclose(r, [10.0, 10.0, -90.0, -90.0, -40.0, 9.0], rtol=1e-6)


def test_two_modalities_n_agents():
    r = rewards("two_modalities", [[5] * 3, [-5] * 3, [5, 5, -5], [-5, 5, 5], [0] * 3], num_agents=3)
    np.testing.assert_allclose(r, [10.0, 10.0, -90.0, -90.0, -65.0], rtol=1e-6)


def test_max_of_three_peaks_origin_trap_and_corners():
    r = rewards("max_of_three", [[5, 5], [-5, -5], [0, 0], [5, -5], [-5, 5], [0.5, 0], [0, -0.5]])
    bump = 2.0 - 0.5 * (0.5 / 4) ** 2
    np.testing.assert_allclose(r, [10.0, 10.0, 2.0, 0.4375, 0.4375, bump, bump], rtol=1e-6)


def test_max_of_three_n_agents():
    r = rewards("max_of_three", [[5] * 4, [-5] * 4, [0] * 4, [5, 5, -5, -5]], num_agents=4)
    np.testing.assert_allclose(r, [10.0, 10.0, 2.0, 2.0 - 0.5 * 4 * (5 / 4) ** 2], rtol=1e-6)


@pytest.mark.parametrize("name", ["max_of_two", "two_modalities", "max_of_three"])
def test_differential_gradient_vanishes_at_optimum(name):
    env = make(name)
    grad = jax.jit(jax.grad(env.reward))(jnp.full((2, 1), 5.0))
    np.testing.assert_allclose(grad, 0.0, atol=1e-6)


# ---------------------------------------------------------------- matrix games


def _nextdown(x):
    return np.nextafter(np.float32(x), np.float32(-np.inf))


def test_bin_edges_are_float32_thirds():
    assert BIN_EDGES == (float(np.float32(-1 / 3)), float(np.float32(1 / 3)))


def test_action_bins_including_edges():
    e0, e1 = BIN_EDGES
    a = np.array([-2.0, -1.0, _nextdown(e0), e0, 0.0, _nextdown(e1), e1, 1.0, 2.0], np.float32)
    bins = jax.jit(action_bin)(a)
    np.testing.assert_array_equal(bins, [0, 0, 0, 1, 1, 1, 2, 2, 2])


def test_climbing_every_cell():
    payoff = np.array([[11, -30, 0], [-30, 7, 6], [0, 0, 5]], np.float32)
    centres = [-2 / 3, 0.0, 2 / 3]
    joint = [[centres[i], centres[j]] for i in range(3) for j in range(3)]
    np.testing.assert_array_equal(rewards("climbing", joint), payoff.reshape(-1))


def test_climbing_edges_select_cells():
    e0, e1 = BIN_EDGES
    joint = [[-1, -1], [e0, _nextdown(e0)], [_nextdown(e0), e0], [e0, e0], [e1, e1], [1, _nextdown(e1)]]
    # (0,0)=11, (1,0)=-30, (0,1)=-30, (1,1)=7, (2,2)=5, (2,1)=0
    np.testing.assert_array_equal(rewards("climbing", joint), [11, -30, -30, 7, 5, 0])


@pytest.mark.parametrize("k", [-100.0, -7.5, 0.0])
def test_penalty_every_cell(k):
    payoff = np.array([[10, 0, k], [0, 2, 0], [k, 0, 10]], np.float32)
    centres = [-2 / 3, 0.0, 2 / 3]
    joint = [[centres[i], centres[j]] for i in range(3) for j in range(3)]
    np.testing.assert_array_equal(rewards("penalty", joint, k=k), payoff.reshape(-1))


def test_penalty_default_k():
    assert make("penalty").k == -100.0
    np.testing.assert_array_equal(rewards("penalty", [[-1, 1], [1, 1]]), [-100.0, 10.0])


@pytest.mark.parametrize("bad", [0.5, 1, float("nan"), float("inf"), "a", True])
def test_penalty_rejects_bad_k(bad):
    with pytest.raises(ValueError, match=r"k must be a finite number <= 0, got " + re.escape(repr(bad))):
        make("penalty", k=bad)


@pytest.mark.parametrize("name", ["max_of_two", "two_modalities", "max_of_three", "climbing", "penalty"])
def test_games_are_one_step_episodes(name):
    env = make(name)
    state = jax.jit(env.reset)(jax.random.key(1))
    n = env.spec.num_agents
    np.testing.assert_array_equal(state.obs, np.ones((n, 1)))
    assert float(state.reward) == 0.0 and not bool(state.done) and int(state.time) == 0
    nxt = _episode_fn(name)(jnp.zeros((1, n, 1)), jax.random.split(jax.random.key(2), 1))
    assert bool(nxt.terminated[0]) and not bool(nxt.truncated[0]) and int(nxt.time[0]) == 1
    np.testing.assert_array_equal(nxt.obs[0], np.ones((n, 1)))
    assert env.spec.episode_length == 1 and env.spec.action_sizes == (1,) * n


def test_game_metadata():
    expected = {"max_of_two": (10, -10, 10), "two_modalities": (10, -10, 10), "max_of_three": (10, -10, 10),
                "climbing": (11, -1, 1), "penalty": (10, -1, 1)}
    for name, (best, low, high) in expected.items():
        spec = make(name).spec
        assert (spec.best_team_reward, spec.best_return, spec.action_low, spec.action_high) == (
            best, best, low, high), name


def test_special_points_have_the_stated_rewards():
    """The markers the plots draw: global optima reach best_team_reward, the rest are below it."""
    for name in ["max_of_two", "two_modalities", "max_of_three", "climbing", "penalty"]:
        env = make(name)
        points = env.special_points()
        best = rewards(name, points["global"])
        np.testing.assert_array_equal(best, env.spec.best_team_reward)
        others = points["local"] + points["trap"]
        if others:
            assert np.all(rewards(name, others) < env.spec.best_team_reward)
    assert make("max_of_three").special_points()["local"] == [(0.0, 0.0)]


# ---------------------------------------------------------------- particle gather


@functools.cache
def _pg(**config):
    env = make("particle_gather", **config)
    return env, jax.jit(env.step), jax.jit(env.reset)


def _pg_state(env, positions, landmark, time=0):
    """A Particle Gather state at given positions (zero velocities)."""
    positions = jnp.asarray(positions, jnp.float32)
    es = ParticleGatherState(positions, jnp.zeros_like(positions), jnp.asarray(landmark, jnp.float32))
    state = env.reset(jax.random.key(0))
    t = jnp.asarray(time, jnp.int32)
    return state.replace(env_state=es, obs=env.observe(es), global_state=env.global_state(es, t), time=t)


def test_particle_gather_reward_cases():
    env, step, _ = _pg(rho=0.5)
    still = jnp.zeros((2, 2))
    cases = [
        ([[0.1, 0.0], [0.0, -0.2]], 10.0),  # all inside
        ([[0.5, 0.0], [0.0, 0.5]], 10.0),  # exactly on the rim counts as inside
        ([[0.1, 0.0], [0.0, 0.9]], -5.0),  # some inside
        ([[0.6, 0.0], [0.0, -1.0]], -0.1 * (0.6 + 1.0) / 2),  # none inside
    ]
    for positions, expected in cases:
        nxt = step(_pg_state(env, positions, [0.0, 0.0]), still, jax.random.key(3))
        np.testing.assert_allclose(nxt.reward, expected, rtol=1e-6, err_msg=str(positions))


def test_particle_gather_reward_three_agents():
    env, step, _ = _pg(num_agents=3, rho=0.15)
    positions = [[0.5, 0.5], [0.6, 0.5], [0.5, 0.6]]
    nxt = step(_pg_state(env, positions, [0.5, 0.5]), jnp.zeros((3, 2)), jax.random.key(4))
    assert float(nxt.reward) == 10.0
    moved = step(_pg_state(env, positions, [0.5, 0.5]), jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]]),
                 jax.random.key(5))
    np.testing.assert_allclose(moved.env_state.positions[1], [0.7, 0.5], rtol=1e-6)
    assert float(moved.reward) == -5.0


def test_particle_gather_dynamics_clip_and_bounds():
    env, step, _ = _pg(max_speed=0.25)
    state = _pg_state(env, [[0.9, -0.5], [0.0, 0.0]], [0.0, 0.0])
    nxt = step(state, jnp.array([[3.0, -0.4], [-1.0, 1.0]]), jax.random.key(6))  # action 3 is clipped to 1
    np.testing.assert_allclose(nxt.env_state.positions, [[1.0, -0.6], [-0.25, 0.25]], rtol=1e-6)
    np.testing.assert_allclose(nxt.env_state.velocities, [[0.1, -0.1], [-0.25, 0.25]], rtol=1e-5)
    # Pushing against the wall: the position stays at the wall, the effective velocity is zero.
    again = step(nxt, jnp.array([[1.0, 0.0], [0.0, 0.0]]), jax.random.key(7))
    np.testing.assert_allclose(again.env_state.positions[0], [1.0, -0.6], rtol=1e-6)
    np.testing.assert_allclose(again.env_state.velocities[0], [0.0, 0.0], atol=1e-7)


def test_particle_gather_episode_and_observation_layout():
    env, _, reset = _pg(num_agents=3)
    n, length = 3, env.spec.episode_length
    assert length == 25 and env.spec.obs_sizes == (2 * n + 4,) * n and env.spec.state_size == 2 * n + 3

    def body(state, key):
        k_act, k_step = jax.random.split(key)
        actions = jax.random.uniform(k_act, (n, 2), minval=-1.0, maxval=1.0)
        state = env.step(state, actions, k_step)
        return state, state

    k_reset, k_run = jax.random.split(jax.random.key(8))
    first = reset(k_reset)
    _, traj = jax.jit(lambda s, ks: jax.lax.scan(body, s, ks))(first, jax.random.split(k_run, length))
    pos = np.asarray(traj.env_state.positions)
    assert np.all(np.abs(pos) <= 1.0)
    np.testing.assert_array_equal(traj.time, np.arange(1, length + 1))
    assert not np.any(traj.terminated)
    np.testing.assert_array_equal(traj.truncated, np.arange(1, length + 1) == length)

    # Observation layout of agent 1 at the last step: own pos, own vel, landmark - own, others - own.
    p, v, lm = pos[-1], np.asarray(traj.env_state.velocities[-1]), np.asarray(traj.env_state.landmark[-1])
    expected = np.concatenate([p[1], v[1], lm - p[1], p[0] - p[1], p[2] - p[1]])
    np.testing.assert_allclose(traj.obs[-1, 1], expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(traj.global_state[-1], np.concatenate([p.reshape(-1), lm, [1.0]]), rtol=1e-6)


def test_particle_gather_reset_from_key():
    env, _, reset = _pg()
    a, b, c = (reset(jax.random.key(i)) for i in (10, 10, 11))
    np.testing.assert_array_equal(a.env_state.positions, b.env_state.positions)
    assert not np.allclose(a.env_state.positions, c.env_state.positions)
    assert not np.allclose(a.env_state.landmark, c.env_state.landmark)
    for s in (a, c):
        assert np.all(np.abs(s.env_state.positions) <= 1) and np.all(np.abs(s.env_state.landmark) <= 1)
        np.testing.assert_array_equal(s.env_state.velocities, 0.0)
        assert int(s.time) == 0 and float(s.reward) == 0.0 and not bool(s.done)
    spec = env.spec
    assert spec.best_team_reward == 10.0 and spec.best_return is None
    assert (spec.action_low, spec.action_high) == (-1.0, 1.0)


# ---------------------------------------------------------------- pictures


def test_plot_reward_landscape_and_cli(tmp_path, capsys):
    from experiments.plot_game import main
    from svnr_jax.plotting import plot_reward_landscape, reward_grid

    xs, z = reward_grid(make("max_of_three"), 5)  # xs = -10, -5, 0, 5, 10; z[j, i] = r(xs[i], xs[j])
    np.testing.assert_array_equal(xs, [-10, -5, 0, 5, 10])
    assert z[3, 3] == 10.0 and z[2, 2] == 2.0 and z[1, 3] == 0.4375
    ax = plot_reward_landscape("climbing", path=tmp_path / "c.png", resolution=16)
    assert (tmp_path / "c.png").stat().st_size > 0 and ax.get_xlim() == (-1.0, 1.0)
    with pytest.raises(ValueError, match="two-agent one-step game"):
        plot_reward_landscape("max_of_three", num_agents=3)
    assert main(["penalty", "--out", str(tmp_path), "--resolution", "8"]) == [str(tmp_path / "penalty.png")]
    assert capsys.readouterr().out.strip() == str(tmp_path / "penalty.png")


# ---------------------------------------------------------------- single_peak (RO-free sanity game)


def test_single_peak_exact_values_two_agents():
    # r = 10 - Σ_i (a_i - c_i)² / 4 with c = (3, -2).
    r = rewards("single_peak", [[3, -2], [0, 0], [3, 2], [-1, -2], [5, -2], [3, -3]])
    np.testing.assert_allclose(r, [10.0, 10 - (9 + 4) / 4, 6.0, 6.0, 9.0, 9.75], rtol=1e-6)


def test_single_peak_n_agents():
    # c = (3, -2, 3) for three agents, (3, -2, 3, -2) for four.
    r3 = rewards("single_peak", [[3, -2, 3], [0, 0, 0], [3, -2, 1], [-2, 3, -2]], num_agents=3)
    np.testing.assert_allclose(r3, [10.0, 10 - (9 + 4 + 9) / 4, 9.0, 10 - 75 / 4], rtol=1e-6)
    r4 = rewards("single_peak", [[3, -2, 3, -2], [-2, 3, -2, 3]], num_agents=4)
    np.testing.assert_allclose(r4, [10.0, -15.0], rtol=1e-6)


def test_single_peak_clips_actions():
    # (15, -2) -> (10, -2): 10 - 49/4; (3, -20) -> (3, -10): 10 - 64/4; (-11, 12) -> (-10, 10): 10 - (169 + 144)/4.
    r = rewards("single_peak", [[15, -2], [3, -20], [-11, 12], [10, -2]])
    np.testing.assert_allclose(r, [-2.25, -6.0, -68.25, -2.25], rtol=1e-6)


def test_single_peak_is_one_concave_peak():
    env = make("single_peak", num_agents=3)
    peak = jnp.array([[3.0], [-2.0], [3.0]])
    grad = jax.jit(jax.grad(env.reward))(peak)
    np.testing.assert_allclose(grad, 0.0, atol=1e-6)
    hess = jax.jit(jax.hessian(env.reward))(peak).reshape(3, 3)
    np.testing.assert_allclose(hess, -0.5 * np.eye(3), atol=1e-6)  # negative definite everywhere in the box
    assert make("single_peak").special_points() == {"global": [(3.0, -2.0)], "local": [], "trap": []}
    assert env.special_points()["global"] == [(3.0, -2.0, 3.0)]


@pytest.mark.parametrize("num_agents", [2, 3])
def test_single_peak_spec_and_one_step_episode(num_agents):
    env = make("single_peak", num_agents=num_agents)
    spec = env.spec
    assert (spec.name, spec.num_agents, spec.episode_length) == ("single_peak", num_agents, 1)
    assert (spec.best_team_reward, spec.best_return, spec.action_low, spec.action_high) == (10, 10, -10, 10)
    assert spec.obs_sizes == spec.action_sizes == (1,) * num_agents and spec.state_size == 1
    first = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.key(1), 2))
    np.testing.assert_array_equal(first.obs, np.ones((2, num_agents, 1)))
    assert not np.any(first.terminated) and np.all(first.time == 0)
    peak = np.where(np.arange(num_agents) % 2 == 0, 3.0, -2.0)[:, None]
    actions = jnp.stack([jnp.asarray(peak, jnp.float32), jnp.zeros((num_agents, 1))])
    nxt = jax.jit(jax.vmap(env.step))(first, actions, jax.random.split(jax.random.key(2), 2))
    expected_zero = 10 - np.sum(peak**2) / 4
    np.testing.assert_allclose(nxt.reward, [10.0, expected_zero], rtol=1e-6)
    assert np.all(nxt.terminated) and not np.any(nxt.truncated) and np.all(nxt.time == 1)


def test_single_peak_is_listed():
    from svnr_jax.envs.games import GAME_NAMES

    assert "single_peak" in GAME_NAMES
    assert make("single_peak").spec.num_agents == 2


@pytest.mark.parametrize("bad", [1, 0, -2, 2.5, True, "3", None])
def test_single_peak_rejects_bad_num_agents(bad):
    match = r"single_peak: num_agents must be an integer >= 2, got " + re.escape(repr(bad))
    with pytest.raises(ValueError, match=match):
        make("single_peak", num_agents=bad)


def test_plot_reward_landscape_single_peak(tmp_path):
    from svnr_jax.plotting import plot_reward_landscape, reward_grid

    xs, z = reward_grid(make("single_peak"), 5)  # xs = -10, -5, 0, 5, 10; z[j, i] = r(xs[i], xs[j])
    assert z[2, 2] == 6.75 and z[2, 3] == 10 - (4 + 4) / 4  # (0, 0) and (5, 0)
    ax = plot_reward_landscape("single_peak", path=tmp_path / "s.png", resolution=16)
    assert (tmp_path / "s.png").stat().st_size > 0 and ax.get_xlim() == (-10.0, 10.0)


def test_particle_gather_relative_state_layout():
    """relative_state appends landmark - position and distance - ρ per agent (negative = inside) to the state."""
    env, step, _ = _pg(num_agents=3, rho=0.3, relative_state=True)
    n = 3
    assert env.spec.state_size == 5 * n + 3 and _pg(num_agents=3)[0].spec.state_size == 2 * n + 3
    p, lm = np.array([[0.1, 0.0], [0.5, 0.5], [-1.0, 0.2]], np.float32), np.array([0.2, 0.1], np.float32)
    nxt = step(_pg_state(env, p, lm, time=4), jnp.zeros((n, 2)), jax.random.key(0))
    rel = lm - p
    expected = np.concatenate([p.reshape(-1), lm, rel.reshape(-1), np.linalg.norm(rel, axis=-1) - 0.3, [5 / 25]])
    np.testing.assert_allclose(nxt.global_state, expected, rtol=1e-5, atol=1e-6)
    assert np.sum(nxt.global_state[2 * n + 2 + 2 * n:-1] <= 0) == 1  # only agent 0 is inside
    with pytest.raises(ValueError, match="relative_state must be true or false"):
        make("particle_gather", relative_state=1)
