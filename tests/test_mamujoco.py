"""MaMuJoCo on MJX vs the reference, Gymnasium-Robotics ``mamujoco_v1`` (1.4.2) on MuJoCo C (CPU).

Every comparison puts the same qpos/qvel into both simulators (states taken from reference rollouts with
random actions, so they include ground contacts), applies the same actions and compares per-agent
observations, the global state, reward, terminated and truncated. The MJX side runs in float32, the
reference in float64.

Tolerances (measured on this machine, jax 0.12.0.1, mujoco 4.0.0, mujoco-mjx 3.17.0):
* observations from identical physics data: float32 rounding only (rtol 1e-5, atol 1e-5);
* one env step (frame_skip physics steps) from identical states: measured ≤ 1e-4 abs on velocities of
  order 10 (float32 solver/integration rounding) → rtol 1e-4, atol 5e-4; reward atol 1e-4·scale;
* 50-step trajectories (HalfCheetah, Walker2d, CoupledHalfCheetah; random actions): the float32
  difference grows as fast as the dynamics amplify it. Measured max |state| error after 1/10/20/50 steps:
  HalfCheetah 4e-5 / 4e-3 / 0.2 / 2 (chaotic contacts), CoupledHalfCheetah 7e-6 / 2e-2 / 0.1 / 8,
  Walker2d 2e-5 / 9e-5 / 8e-5 / 7e-4. The C reference merely rounded to float32 after each step diverges
  from itself at the same rate, so the test bounds the error by 1000x that measured chaos envelope + 1e-3
  (see ``_trajectory``);
* Ant: one step only (PLATFORM.md). Its geoms carry ``margin=0.01``, and for contacts inside that margin
  band MJX 3.17 and MuJoCo 4.0 C compute different constraint forces — also in float64 (checked with
  ``jax_enable_x64``), so this is not rounding: contact rows, efc_pos, efc_margin and efc_D agree but
  the pyramid rows' reference acceleration ``efc_aref`` differs (e.g. 9.04 in C vs 7.32 in MJX).
  Contact-free Ant states are compared
  tightly; states with margin-band contacts only get a loose bound on positions.
* Humanoid: humanoid.xml asks for PGS, which MJX lacks (Newton here): one-step tolerance 2e-2 (measured
  up to 4e-3 on entries of order 1); its one-step test is marked slow (compile ~4 min on 2 busy cores).
* CoupledHalfCheetah: the reference crashes on MuJoCo 4 (sparse ``ten_J``); see
  ``tests/mamujoco_reference.py`` for how its own observation code is fed a dense tendon Jacobian.
"""

from __future__ import annotations

import functools
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import mujoco  # noqa: E402
from mamujoco_reference import Reference  # noqa: E402
from mujoco import mjx  # noqa: E402

from svnr_jax.envs import make  # noqa: E402
from svnr_jax.envs.base import State  # noqa: E402
from svnr_jax.envs.mamujoco import TASKS, MaMuJoCo  # noqa: E402
from svnr_jax.envs.mamujoco.env import MaMuJoCoState  # noqa: E402
from svnr_jax.envs.mamujoco.graph import entry_index  # noqa: E402
from svnr_jax.envs.mamujoco.tasks import REFERENCE_ARGS  # noqa: E402

MAIN = ["HalfCheetah-2x3", "CoupledHalfCheetah-1p1", "Ant-2x4", "Walker2d-2x3"]
OTHER = ["HalfCheetah-6x1", "Hopper-3x1", "Ant-4x2", "Swimmer-2x1", "Humanoid-9|8"]
#: Per-agent observation sizes and global state size at agent_obsk=1 (SPEC / issue 5 / measured reference).
SIZES = {
    "HalfCheetah-2x3": ((12, 12), 17),
    "CoupledHalfCheetah-1p1": ((28, 28), 40),
    "Ant-2x4": ((63, 63), 105),
    "Walker2d-2x3": ((12, 12), 17),
    "HalfCheetah-6x1": ((9, 9, 8, 9, 9, 8), 17),
    "Hopper-3x1": ((8, 9, 8), 11),
    "Ant-4x2": ((42, 42, 42, 42), 105),
    "Swimmer-2x1": ((6, 6), 8),
    "Humanoid-9|8": ((242, 170), 348),
}
BATCH = 8  # states per compiled call (one shape per task, so one compile)
ALL = [*MAIN, *OTHER]
SLOW_OTHER = [pytest.param(t, marks=pytest.mark.slow) for t in OTHER]


# ----------------------------------------------------------------------------- shared fixtures
@functools.cache
def env_of(task: str) -> MaMuJoCo:
    return MaMuJoCo(task)


@functools.cache
def ref_of(task: str) -> Reference:
    return Reference(*REFERENCE_ARGS[task])


@functools.cache
def observe_fn(task: str):
    return jax.jit(jax.vmap(env_of(task).observe))


_COMPILED_STEP: dict[str, object] = {}


def step_fn(task: str):
    """Batched env step, compiled ahead of time once per task. (Plain ``jit`` retraced when fed its own
    outputs — states built by ``mjx.put_data`` hash differently — costing a second 15-60 s compile.)"""

    def call(state, actions, keys):
        if task not in _COMPILED_STEP:
            _COMPILED_STEP[task] = jax.jit(jax.vmap(env_of(task).step)).lower(state, actions, keys).compile()
        return _COMPILED_STEP[task](state, actions, keys)

    return call


@functools.cache
def sample_states(task: str, n: int = BATCH, seed: int = 0):
    """``n`` (qpos, qvel) from reference rollouts (random actions, 0-30 steps after a reset)."""
    env, ref = env_of(task), ref_of(task)
    rng = np.random.default_rng(seed)
    qs, vs = [], []
    for i in range(n):
        ref.env.reset(seed=1000 * seed + i)
        for _ in range(int(rng.integers(0, 30))):
            ref.step(random_actions(env, rng))
        q, v = ref.qpos_qvel()
        qs.append(q)
        vs.append(v)
    return np.stack(qs), np.stack(vs)


def random_actions(env: MaMuJoCo, rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.uniform(env.spec.action_low, env.spec.action_high, n) for n in env.spec.action_sizes]


def pad_actions(env: MaMuJoCo, per_env: list[list[np.ndarray]]) -> jax.Array:
    out = np.zeros((len(per_env), env.spec.num_agents, env.spec.action_dim), np.float32)
    for b, acts in enumerate(per_env):
        for i, a in enumerate(acts):
            out[b, i, : len(a)] = a
    return jnp.asarray(out)


def states_at(task: str, qpos: np.ndarray, qvel: np.ndarray, time: int = 0) -> State:
    """Batched env states at given physics states: C ``mj_forward`` + ``mjx.put_data`` (no MJX compile)."""
    env = env_of(task)
    datas = []
    for q, v in zip(qpos, qvel, strict=True):
        d = mujoco.MjData(env.mj_model)
        d.qpos[:], d.qvel[:] = q, v
        mujoco.mj_forward(env.mj_model, d)
        datas.append(mjx.put_data(env.mj_model, d))
    data = jax.tree.map(lambda *x: jnp.stack(x), *datas)
    obs, gstate = observe_fn(task)(data)
    b = len(qpos)
    return State(
        env_state=MaMuJoCoState(data=data),
        obs=obs,
        global_state=gstate,
        reward=jnp.zeros((b,), jnp.float32),
        terminated=jnp.zeros((b,), bool),
        truncated=jnp.zeros((b,), bool),
        time=jnp.full((b,), time, jnp.int32),
    )


def assert_obs(env, ours_obs, ours_state, ref_obs, ref_state, rtol, atol, what):
    for i, o in enumerate(ref_obs):
        np.testing.assert_array_equal(np.asarray(ours_obs[i, len(o):]), 0.0, err_msg=f"{what}: padding agent {i}")
        np.testing.assert_allclose(
            np.asarray(ours_obs[i, : len(o)]), o, rtol=rtol, atol=atol, err_msg=f"{what}: agent {i}"
        )
    np.testing.assert_allclose(np.asarray(ours_state), ref_state, rtol=rtol, atol=atol, err_msg=f"{what}: state")


# ----------------------------------------------------------------------------- structure
@pytest.mark.parametrize("task", ALL)
def test_sizes_match_reference(task):
    env, ref = env_of(task), ref_of(task)
    obs_sizes, state_size = SIZES[task]
    assert env.spec.obs_sizes == obs_sizes
    assert env.spec.state_size == state_size
    assert env.spec.obs_sizes == tuple(ref.env.observation_space(a).shape[0] for a in ref.agents)
    assert env.spec.action_sizes == tuple(ref.env.action_space(a).shape[0] for a in ref.agents)
    assert env.spec.state_size == ref.u.observation_space.shape[0]
    assert env.spec.action_low == ref.env.action_space(ref.agents[0]).low[0]
    assert env.spec.action_high == ref.env.action_space(ref.agents[0]).high[0]
    assert env.spec.episode_length == 1000 == ref.env.single_agent_env._max_episode_steps  # TimeLimit
    assert env.dt == pytest.approx(ref.u.dt)


@pytest.mark.parametrize("task", [t for t in ALL if t != "CoupledHalfCheetah-1p1"])
def test_observation_ordering_matches_reference(task):
    """Which global-state entry (joint, category, body row) each observation entry is, by index structure:
    the reference's ``observation_factorization`` maps every local entry to a single-agent obs index; ours
    is derived from our named entries. (CoupledHalfCheetah has no factorization in the reference; its
    ordering is checked by value below.)"""
    env, ref = env_of(task), ref_of(task)
    state_pos = {}
    for j, e in enumerate(env.task.state_entries(env.mj_model)):
        source, idx = entry_index(env.mj_model, e)
        state_pos.setdefault((source.split("_clip")[0], idx), j)
    for a, agent in enumerate(ref.agents):
        indices = (entry_index(env.mj_model, e) for e in env.obs_entries[a])
        ours = [state_pos[(s.split("_clip")[0], i)] for s, i in indices]
        np.testing.assert_array_equal(ours, ref.env.observation_factorization[agent], err_msg=f"agent {a}")


def test_action_mapping_matches_reference():
    for task in ALL:
        env, ref = env_of(task), ref_of(task)
        per_agent = [np.arange(n, dtype=float) + 10 * i for i, n in enumerate(env.spec.action_sizes)]
        expected = ref.env.map_local_actions_to_global_action(dict(zip(ref.agents, per_agent, strict=True)))
        flat = np.asarray(pad_actions(env, [per_agent])[0]).reshape(-1)
        np.testing.assert_array_equal(flat[env.action_gather], expected, err_msg=task)


@pytest.mark.parametrize("task", ALL)
def test_observations_match_reference(task):
    """Observations and global state from identical physics data, at many states (no physics step)."""
    env, ref = env_of(task), ref_of(task)
    qpos, qvel = sample_states(task, 16, seed=1)
    states = states_at(task, qpos, qvel)
    for b in range(len(qpos)):
        ref.set(qpos[b], qvel[b])
        ref_obs, ref_state = ref.observe()
        assert_obs(env, states.obs[b], states.global_state[b], ref_obs, ref_state, 1e-5, 1e-5, f"{task} state {b}")


# ----------------------------------------------------------------------------- dynamics
def _ant_contact_free(env: MaMuJoCo, qpos, qvel, ctrl) -> bool:
    """No contact at any substep of one env step (C)."""
    d = mujoco.MjData(env.mj_model)
    d.qpos[:], d.qvel[:], d.ctrl[:] = qpos, qvel, ctrl
    mujoco.mj_forward(env.mj_model, d)
    for _ in range(env.task.frame_skip):
        if d.ncon:
            return False
        mujoco.mj_step(env.mj_model, d)
    return d.ncon == 0


def _one_step(task: str, seed: int, batches: int = 1):
    env, ref = env_of(task), ref_of(task)
    rng = np.random.default_rng(100 + seed)
    for k in range(batches):
        qpos, qvel = sample_states(task, BATCH, seed=seed + k)
        acts = [random_actions(env, rng) for _ in range(BATCH)]
        keys = jax.random.split(jax.random.key(0), BATCH)
        nxt = step_fn(task)(states_at(task, qpos, qvel), pad_actions(env, acts), keys)
        for b in range(BATCH):
            ref.set(qpos[b], qvel[b])
            ctrl = ref.env.map_local_actions_to_global_action(dict(zip(ref.agents, acts[b], strict=True)))
            r_obs, r_state, r_rew, r_term, r_trunc = ref.step(acts[b])
            what = f"{task} state {k}/{b}"
            if task.startswith("Ant") and not _ant_contact_free(env, qpos[b], qvel[b], ctrl):
                # margin-band contacts: MJX and MuJoCo C constraint forces differ (module docstring)
                q_ref = ref.qpos_qvel()[0]
                assert np.abs(np.asarray(nxt.env_state.data.qpos[b]) - q_ref).max() < 0.1, what
                continue
            # Humanoid: the reference's PGS solver does not exist in MJX (Newton here), so contact and
            # limit forces differ at the solver's tolerance, not float32 rounding.
            tol = 2e-2 if task.startswith("Humanoid") else 5e-4
            assert_obs(env, nxt.obs[b], nxt.global_state[b], r_obs, r_state, tol / 5, tol, what)
            assert float(nxt.reward[b]) == pytest.approx(r_rew, rel=tol / 5, abs=tol / 5), what
            assert bool(nxt.terminated[b]) == r_term, what
            assert bool(nxt.truncated[b]) == r_trunc, what
            assert int(nxt.time[b]) == 1


@pytest.mark.parametrize("task", [*MAIN, *SLOW_OTHER])
def test_one_step_matches_reference(task):
    _one_step(task, seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("task", MAIN)
def test_one_step_matches_reference_many_states(task):
    _one_step(task, seed=10, batches=6)


def _reference_rollout(ref: Reference, start, actions, round_to_float32: bool = False):
    f32 = lambda x: x.astype(np.float32).astype(np.float64)  # noqa: E731
    ref.set(*((f32(start[0]), f32(start[1])) if round_to_float32 else start))
    out = []
    for a in actions:
        out.append(ref.step(a))
        if round_to_float32:
            q, v = ref.qpos_qvel()
            ref.u.set_state(f32(q), f32(v))
    return out


def _trajectory(task: str, n_steps: int, seed: int):
    """50-step trajectories vs the reference, within a chaos envelope measured on the reference itself.

    With random actions the cheetahs' ground contacts make the dynamics sensitive: the C reference whose
    state is merely rounded to float32 after every env step drifts from the exact C run by 1e-6 after
    1 step, 5e-5 after 10, 2e-3 after 20 and O(1) after 30 (HalfCheetah; CoupledHalfCheetah alike). MJX
    rounds at every substep and solver iteration; its difference to C measured 20-100x that envelope
    early on (single trajectories up to ~500x) and ~1-4x once both are O(1). So at each step the MJX-vs-C
    difference (observations, state,
    reward) must stay below ``1000 x`` the running maximum of the float32-rounded-C-vs-C difference plus
    1e-3: float32 rounding may grow as fast as the physics amplifies it, while a wrong index, sign or
    term (O(1) from the first steps, when the tolerance is ~1e-3) fails. Once that tolerance exceeds 0.1
    the trajectory has left its float32 predictability horizon (no float32 simulator, C included, could
    follow it) and the comparison stops; every trajectory must be followed >= 5 steps, the median >= 10.
    """
    env, ref = env_of(task), ref_of(task)
    rng = np.random.default_rng(200 + seed)
    starts = []
    for b in range(BATCH):
        ref.env.reset(seed=10_000 + 100 * seed + b)
        starts.append(ref.qpos_qvel())
    state = states_at(task, np.stack([s[0] for s in starts]), np.stack([s[1] for s in starts]))
    actions = [[random_actions(env, rng) for _ in range(BATCH)] for _ in range(n_steps)]
    ours = []
    keys = jax.random.split(jax.random.key(1), BATCH)
    for t in range(n_steps):
        state = step_fn(task)(state, pad_actions(env, actions[t]), keys)
        ours.append(jax.device_get((state.obs, state.global_state, state.reward, state.terminated)))
    horizons = []
    for b in range(BATCH):
        acts = [actions[t][b] for t in range(n_steps)]
        exact = _reference_rollout(ref, starts[b], acts)
        q0, v0 = starts[b]
        rounded = _reference_rollout(ref, (q0, v0), acts, round_to_float32=True)
        envelope = 0.0
        for t in range(n_steps):
            r_obs, r_state, r_rew, r_term, _ = exact[t]
            envelope = max(envelope, np.abs(rounded[t][1] - r_state).max(), abs(rounded[t][2] - r_rew))
            tol = 1000 * envelope + 1e-3
            if tol > 0.1:  # beyond the float32 predictability horizon of this trajectory: stop comparing
                horizons.append(t)
                break
            obs, gstate, rew, term = (x[b] for x in ours[t])
            what = f"{task} trajectory {b} step {t} (tolerance {tol:.1e})"
            assert_obs(env, obs, gstate, r_obs, r_state, 0.0, tol, what)
            assert abs(float(rew) - r_rew) <= tol, what
            if envelope < 1e-4:
                assert bool(term) == r_term, what
        else:
            horizons.append(n_steps)
    # measured horizons (steps compared): cheetahs 8-33 (median ~17), Walker2d 50
    assert min(horizons) >= 5 and np.median(horizons) >= 10, horizons


@pytest.mark.parametrize("task", ["HalfCheetah-2x3", "Walker2d-2x3", "CoupledHalfCheetah-1p1"])
def test_trajectory_matches_reference(task):
    _trajectory(task, 50, seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["HalfCheetah-2x3", "Walker2d-2x3", "CoupledHalfCheetah-1p1", "HalfCheetah-6x1",
                                  "Hopper-3x1", "Swimmer-2x1"])
def test_trajectory_matches_reference_more(task):
    _trajectory(task, 50, seed=1)


def test_truncation_is_not_termination():
    task = "HalfCheetah-2x3"
    env = env_of(task)
    qpos, qvel = sample_states(task)
    for time, expect in ((998, False), (999, True)):
        nxt = step_fn(task)(
            states_at(task, qpos, qvel, time=time),
            jnp.zeros((BATCH, env.spec.num_agents, env.spec.action_dim)),
            jax.random.split(jax.random.key(0), BATCH),
        )
        assert np.all(np.asarray(nxt.truncated) == expect)
        assert not np.any(np.asarray(nxt.terminated))
        assert np.all(np.asarray(nxt.time) == time + 1)


def test_walker_termination_not_truncation():
    """An unhealthy Walker2d state terminates (and is then not truncated, even at the time limit)."""
    task = "Walker2d-2x3"
    env = env_of(task)
    qpos, qvel = sample_states(task)
    qpos = qpos.copy()
    qpos[:, 1] = 0.5  # torso below the healthy z range
    nxt = step_fn(task)(
        states_at(task, qpos, qvel, time=999),
        jnp.zeros((BATCH, env.spec.num_agents, env.spec.action_dim)),
        jax.random.split(jax.random.key(0), BATCH),
    )
    assert np.all(np.asarray(nxt.terminated))
    assert not np.any(np.asarray(nxt.truncated))


# ----------------------------------------------------------------------------- reset, registry, config
@pytest.mark.parametrize("task", ["HalfCheetah-2x3", pytest.param("Walker2d-2x3", marks=pytest.mark.slow)])
def test_reset_noise_and_observation(task):
    env, ref = env_of(task), ref_of(task)
    keys = jax.random.split(jax.random.key(3), BATCH)
    s = jax.jit(jax.vmap(env.reset))(keys)
    qpos, qvel = np.asarray(s.env_state.data.qpos), np.asarray(s.env_state.data.qvel)
    kind, scale = env.task.qpos_noise
    assert np.all(np.abs(qpos - env.mj_model.qpos0) <= scale + 1e-6)
    assert np.unique(qpos[:, 0]).size == BATCH  # different keys, different states
    if env.task.qvel_noise[0] == "uniform":
        assert np.all(np.abs(qvel) <= env.task.qvel_noise[1] + 1e-6)
    assert np.all(np.asarray(s.time) == 0) and not np.any(np.asarray(s.terminated | s.truncated))
    for b in range(BATCH):
        ref.set(qpos[b], qvel[b])
        ref_obs, ref_state = ref.observe()
        assert_obs(env, s.obs[b], s.global_state[b], ref_obs, ref_state, 1e-5, 1e-5, f"{task} reset {b}")


def test_registry_names_and_config_validation():
    from svnr_jax.envs import list_envs

    assert set(TASKS) <= set(list_envs())
    env = make("HalfCheetah-2x3", agent_obsk=0)
    assert env.spec.obs_sizes == (11, 11)  # own 3 joints × (qpos, qvel) + 5 global entries
    assert make("HalfCheetah-2x3", agent_obsk=2).spec.obs_sizes == (13, 13)
    for key, bad in [
        ("agent_obsk", -1),
        ("solver_iterations", 0),
        ("ls_iterations", 1.5),
        ("integrator", "verlet"),
        ("solver", "pgs"),
        ("contact_geoms", ("no_such_geom",)),
        ("reference_obs_quirks", "yes"),
    ]:
        with pytest.raises(ValueError, match=key):
            make("HalfCheetah-2x3", **{key: bad})
    with pytest.raises(ValueError, match="allowed keys"):
        make("HalfCheetah-2x3", frame_skip=2)


def test_speed_options_change_the_model():
    env = make("Ant-2x4", solver_iterations=4, ls_iterations=8, integrator="euler", contact_geoms=("left_ankle_geom",))
    m = env.mj_model
    assert (m.opt.iterations, m.opt.ls_iterations, m.opt.integrator) == (4, 8, mujoco.mjtIntegrator.mjINT_EULER)
    colliding = [m.geom(g).name for g in range(m.ngeom) if m.geom_contype[g] or m.geom_conaffinity[g]]
    assert colliding == ["floor", "left_ankle_geom"]
    assert make("Humanoid-9|8").mj_model.opt.solver == mujoco.mjtSolver.mjSOL_NEWTON  # PGS → Newton


def test_coupled_cheetah_own_joints_option():
    """``reference_obs_quirks=False`` gives agent 0 its own cheetah's joints (the reference reads cheetah 1's)."""
    quirky, fixed = env_of("CoupledHalfCheetah-1p1"), MaMuJoCo("CoupledHalfCheetah-1p1", reference_obs_quirks=False)
    names = lambda env, a: [e.ref[0] for e in env.obs_entries[a] if e.source in ("qpos", "qvel")][:6]  # noqa: E731
    assert names(quirky, 0) == names(quirky, 1) == ["bfoot1", "bfoot1", "bshin1", "bshin1", "bthigh1", "bthigh1"]
    assert names(fixed, 0) == ["bfoot0", "bfoot0", "bshin0", "bshin0", "bthigh0", "bthigh0"]
    assert fixed.spec.obs_sizes == quirky.spec.obs_sizes
