"""MaMuJoCo ``impl`` option: MJX's JAX implementation (default, unchanged) or its Warp implementation (opt-in).

Runs everywhere: the default is the JAX implementation bit for bit, the errors of ``impl="warp"`` (unknown impl,
warp-lang missing, a JAX device Warp cannot use, the JAX-only patches where they would change the physics), and
``impl`` reaching the env from the CLI / ``TrainConfig.env_config``. The Warp physics check (Warp against JAX)
needs warp-lang and a CUDA GPU; ``SVNR_WARP_CPU=1`` also runs it on Warp's CPU device (slow: minutes of kernel
compilation the first time).
"""

import dataclasses
import os
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from svnr_jax.envs import env_defaults, make
from svnr_jax.envs.mamujoco import env as env_module
from svnr_jax.envs.mamujoco._mjx_import import import_mjx
from svnr_jax.envs.mamujoco.env import MaMuJoCo, load_model
from svnr_jax.envs.mamujoco.tasks import TASKS

mjx = import_mjx()
import mujoco.mjx.warp as mjxw  # noqa: E402


def _cuda() -> bool:
    try:
        return bool(jax.devices("cuda"))
    except RuntimeError:
        return False


WARP = mjxw.WARP_INSTALLED and mjxw.mujoco_warp is not None
WARP_RUNS = WARP and (_cuda() or os.environ.get("SVNR_WARP_CPU") == "1")
#: the MJX-side patches Warp does not have, off (on both sides of a Warp/JAX comparison)
MJX_OWN = {"capsule_frame": "mjx", "rk4_rotations": "mjx"}


def _fixed_state(env, seed=0):
    rng = np.random.default_rng(seed)
    m = env.mj_model
    qpos = m.qpos0 + 0.05 * rng.standard_normal(m.nq)
    qvel = 0.1 * rng.standard_normal(m.nv)
    actions = rng.uniform(-1, 1, (env.spec.num_agents, max(env.spec.action_sizes)))
    return jnp.asarray(qpos, jnp.float32), jnp.asarray(qvel, jnp.float32), jnp.asarray(actions, jnp.float32)


# ------------------------------------------------------------------ default: the JAX implementation, unchanged
def test_default_impl_is_jax_and_step_is_unchanged():
    default = make("HalfCheetah-2x3")
    explicit = make("HalfCheetah-2x3", impl="jax")
    assert MaMuJoCo.default_config()["impl"] == "jax" and env_defaults("HalfCheetah-2x3")["impl"] == "jax"
    assert default.impl == "jax" and default.mjx_model.impl == mjx.Impl.JAX and default.model_changes == []
    leaves = jax.tree.leaves(default.mjx_model), jax.tree.leaves(explicit.mjx_model)
    assert len(leaves[0]) == len(leaves[1]) and all(np.array_equal(a, b) for a, b in zip(*leaves, strict=True))

    qpos, qvel, actions = _fixed_state(default)

    @jax.jit
    def env_step(qpos, qvel, actions):
        return default.step(default.state_from_physics(qpos, qvel), actions)

    @jax.jit
    def by_hand(qpos, qvel, actions):  # the pre-``impl`` code path: MJX's JAX implementation with our patches
        m = mjx.put_model(default.mj_model)
        d = mjx.make_data(m).replace(qpos=qpos, qvel=qvel)
        with default.mjx_functions():
            d = mjx.forward(m, d)
            ctrl = jnp.reshape(actions, (-1,))[default.action_gather]
            d = jax.lax.fori_loop(0, default.task.frame_skip, lambda _, x: mjx.step(m, x), d.replace(ctrl=ctrl))
        return default.observe(d)

    out = env_step(qpos, qvel, actions)
    obs, gstate = by_hand(qpos, qvel, actions)
    np.testing.assert_array_equal(out.obs, obs)
    np.testing.assert_array_equal(out.global_state, gstate)
    assert np.isfinite(float(out.reward))


# ------------------------------------------------------------------ errors
def test_unknown_impl_is_named():
    with pytest.raises(ValueError, match=r"impl must be one of \('jax', 'warp'\), got 'cuda'"):
        make("HalfCheetah-2x3", impl="cuda")


@pytest.mark.skipif(WARP, reason="warp-lang is installed here")
def test_warp_without_warp_lang_names_the_package_and_extra():
    with pytest.raises(ValueError, match=r"warp-lang.*svnr-jax\[warp\].*mujoco-mjx\[warp\]"):
        make("Swimmer-2x1", impl="warp")


def _fake_device(platform):
    return types.SimpleNamespace(platform=platform, __str__=lambda self: f"{platform}:0")


def test_warp_on_a_device_warp_cannot_use_is_refused(monkeypatch):
    monkeypatch.setattr(mjxw, "WARP_INSTALLED", True)
    monkeypatch.setattr(mjxw, "mujoco_warp", object())
    monkeypatch.setattr(jax, "devices", lambda *a: [_fake_device("tpu")])
    with pytest.raises(ValueError, match=r"impl='warp' runs on an NVIDIA GPU \(CUDA\) or the CPU.*'tpu'"):
        env_module.warp_device()


def test_warp_on_the_cpu_is_allowed_when_warp_is_there(monkeypatch):
    monkeypatch.setattr(mjxw, "WARP_INSTALLED", True)
    monkeypatch.setattr(mjxw, "mujoco_warp", object())
    assert env_module.warp_device().platform == "cpu"


def _validate(task, monkeypatch, **config):
    monkeypatch.setattr(env_module, "warp_device", lambda: "warp-device")
    full = {**MaMuJoCo.default_config(), **config}
    model = load_model(TASKS[task]())
    env_module.apply_speed_options(model, full)
    return env_module._validate_impl(full, model)


@pytest.mark.filterwarnings("ignore:MuJoCo")
def test_warp_refuses_the_jax_only_patches_where_they_change_the_physics(monkeypatch):
    with pytest.raises(ValueError, match=r"capsule_frame='reference'.*plane-capsule.*pass capsule_frame=mjx") as e:
        _validate("HalfCheetah-2x3", monkeypatch, impl="warp")
    assert "rk4_rotations" not in str(e.value)  # HalfCheetah: Euler, hinges only
    with pytest.raises(ValueError, match=r"capsule_frame=mjx rk4_rotations=mjx"):
        _validate("Ant-2x4", monkeypatch, impl="warp")
    with pytest.raises(ValueError, match=r"rk4_rotations='reference'.*free/ball"):
        _validate("Ant-2x4", monkeypatch, impl="warp", capsule_frame="mjx")
    assert _validate("Ant-2x4", monkeypatch, impl="warp", **MJX_OWN) == "warp-device"
    assert _validate("HalfCheetah-2x3", monkeypatch, impl="warp", capsule_frame="mjx") == "warp-device"
    assert _validate("Swimmer-2x1", monkeypatch, impl="warp") == "warp-device"  # no floor contact, hinges only
    assert _validate("Ant-2x4", monkeypatch, impl="jax") is None  # the JAX implementation keeps the patches


# ------------------------------------------------------------------ config plumbing
def test_impl_reaches_the_env_from_the_cli_and_train_config():
    from svnr_jax.cli import build_parser, config_from_args
    from svnr_jax.config import validate

    args = build_parser("svnr").parse_args(
        ["train", "--env", "HalfCheetah-2x3", "--env-config", "impl=warp", "--env-config", "capsule_frame=mjx"])
    args.algo_given = False
    config = validate(config_from_args(args))
    assert config.env_kwargs == {"impl": "warp", "capsule_frame": "mjx"}
    seen = {}
    real = env_module.MaMuJoCo.__init__

    def spy(self, task, **kw):
        seen.update(kw)
        raise RuntimeError("stop")

    try:
        env_module.MaMuJoCo.__init__ = spy
        with pytest.raises(RuntimeError, match="stop"):
            make(config.env, **config.env_kwargs)
    finally:
        env_module.MaMuJoCo.__init__ = real
    assert seen["impl"] == "warp" and seen["capsule_frame"] == "mjx"  # (the registry adds the other defaults)


# ------------------------------------------------------------------ Warp physics (NVIDIA GPU; SVNR_WARP_CPU=1: CPU)
@pytest.mark.skipif(not WARP_RUNS, reason="needs warp-lang (pip install 'svnr-jax[warp]') and a CUDA GPU "
                                          "(or SVNR_WARP_CPU=1 for Warp's CPU device)")
@pytest.mark.filterwarnings("ignore:MuJoCo")
@pytest.mark.parametrize("task", ["HalfCheetah-2x3", "Ant-2x4", "CoupledHalfCheetah-1p1"])
def test_warp_matches_jax(task):
    """Warp and JAX simulate the same model (MJX's own functions on both sides): reset and the first steps of 16
    vmapped envs agree to float32 / solver tolerance."""
    batch, steps = 16, 3
    envs = {impl: make(task, impl=impl, warp_batch=batch, **MJX_OWN) for impl in ("jax", "warp")}
    assert envs["warp"].mjx_model.impl == mjx.Impl.WARP
    spec = envs["jax"].spec
    keys = jax.random.split(jax.random.PRNGKey(0), batch)
    actions = jax.random.uniform(jax.random.PRNGKey(1), (steps, batch, spec.num_agents, max(spec.action_sizes)),
                                 minval=spec.action_low, maxval=spec.action_high)
    out = {}
    for impl, env in envs.items():
        state = jax.jit(jax.vmap(env.reset))(keys)
        step = jax.jit(jax.vmap(env.step))
        obs, rew, gs = [state.obs], [], [state.global_state]
        for t in range(steps):
            state = step(state, actions[t])
            obs.append(state.obs)
            rew.append(state.reward)
            gs.append(state.global_state)
        out[impl] = [np.stack(x) for x in (obs, rew, gs)]
    (obs_j, rew_j, gs_j), (obs_w, rew_w, gs_w) = out["jax"], out["warp"]
    np.testing.assert_allclose(obs_w[0], obs_j[0], atol=1e-5, rtol=1e-5)  # reset: forward only
    np.testing.assert_allclose(gs_w[:2], gs_j[:2], atol=2e-3, rtol=2e-3)  # one step
    np.testing.assert_allclose(rew_w[0], rew_j[0], atol=2e-3, rtol=2e-3)
    assert np.isfinite(obs_w).all() and np.isfinite(rew_w).all()
    np.testing.assert_allclose(rew_w, rew_j, atol=0.05, rtol=0.05)  # a few steps: chaotic contacts drift apart


@pytest.mark.skipif(not WARP_RUNS, reason="needs warp-lang (pip install 'svnr-jax[warp]') and a CUDA GPU "
                                          "(or SVNR_WARP_CPU=1 for Warp's CPU device)")
@pytest.mark.filterwarnings("ignore:MuJoCo")
def test_warp_runs_under_the_training_wrappers_as_jax():
    """The env state of impl='warp' holds only Warp's per-env fields (``WarpPhysics``; the shared contact buffers are
    rebuilt inside each step), so the training wrappers (pooled auto-reset, episode statistics, rescaled actions)
    batch it like the JAX one: the same keys and actions give the same observations through a reset."""
    from svnr_jax.envs.wrappers import wrap_for_training

    batch, steps = 4, 6
    out = {}
    for impl in ("jax", "warp"):
        env = make("HalfCheetah-2x3", impl=impl, warp_batch=batch, **MJX_OWN)
        env.spec = dataclasses.replace(env.spec, episode_length=3)  # every env resets (from the pool) within the run
        wrapped = wrap_for_training(env, batch)
        state = jax.jit(wrapped.reset)(jax.random.key(0))
        if impl == "warp":
            assert isinstance(state.env_state.env_state.data, env_module.WarpPhysics)
            assert all(x.shape[0] == batch for x in jax.tree.leaves(state.env_state.env_state))
        step = jax.jit(wrapped.step)
        acts = jax.random.uniform(jax.random.key(1), (steps, batch, 2, 3), minval=-1, maxval=1)
        obs, done = [state.obs], []
        for t in range(steps):
            state = step(state, acts[t], jax.random.key(10 + t))
            obs.append(state.obs)
            done.append(state.done)
        out[impl] = np.stack(obs), np.stack(done)
    assert out["warp"][1].any() and np.array_equal(out["warp"][1], out["jax"][1])
    np.testing.assert_allclose(out["warp"][0], out["jax"][0], atol=2e-3, rtol=2e-3)


@pytest.mark.skipif(not WARP_RUNS, reason="needs warp-lang (pip install 'svnr-jax[warp]') and a CUDA GPU "
                                          "(or SVNR_WARP_CPU=1 for Warp's CPU device)")
@pytest.mark.filterwarnings("ignore:MuJoCo")
def test_a_batch_larger_than_warp_batch_pays_nan_not_dropped_contacts():
    """Warp's contact buffer holds ``warp_batch`` envs' contacts; 8 Ants with their legs on the floor overflow a
    buffer for 1 and Warp drops contacts: every reward of that step is NaN (the runner stops on it), never a wrong
    physics step. With room for 8 the same step is finite."""
    batch = 8
    rewards = {}
    for warp_batch in (1, batch):
        env = make("Ant-2x4", impl="warp", warp_batch=warp_batch, **MJX_OWN)
        qpos = np.tile(env.mj_model.qpos0, (batch, 1)).astype(np.float32)
        qpos[:, 2] = 0.3  # torso low: the legs touch the floor (from a reset they are still in the air)
        state = jax.jit(jax.vmap(env.state_from_physics))(jnp.asarray(qpos), jnp.zeros((batch, env.mj_model.nv)))
        nxt = jax.jit(jax.vmap(env.step))(state, jnp.zeros((batch, 2, 4)))
        assert np.isfinite(np.asarray(nxt.obs)).all()  # the state itself stays finite
        rewards[warp_batch] = np.asarray(nxt.reward)
    assert np.isnan(rewards[1]).all() and np.isfinite(rewards[batch]).all()


@pytest.mark.skipif(not WARP_RUNS, reason="needs warp-lang (pip install 'svnr-jax[warp]') and a CUDA GPU "
                                          "(or SVNR_WARP_CPU=1 for Warp's CPU device)")
@pytest.mark.filterwarnings("ignore:MuJoCo")
def test_a_short_run_trains_on_warp(tmp_path):
    """``svnr train --env-config impl=warp`` end to end (runner, scan loop, replay, evaluation): finite losses and
    returns."""
    import csv

    from svnr_jax import runner
    from svnr_jax.config import make_config

    cfg = make_config("masql", {"policy_hidden": (8,), "critic_hidden": (8,), "num_particles": 4},
                      env="HalfCheetah-2x3", env_config={"impl": "warp", "warp_batch": 4, **MJX_OWN}, num_envs=2,
                      iterations=4, chunk_iterations=2, eval_every=2, eval_episodes=1, warmup_iterations=2,
                      updates_per_iteration=1, batch_size=16, buffer_size=256, num_seeds=1)
    res = runner.run(cfg, str(tmp_path / "run"), progress=False)
    assert res.status == "finished", res.message
    with open(tmp_path / "run" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    checked = [k for k in rows[0] if k.endswith("loss") or k.startswith("eval_")]
    assert checked and all(np.isfinite(float(r[k])) for r in rows for k in checked if r[k])


@pytest.mark.skipif(not WARP_RUNS, reason="needs warp-lang (pip install 'svnr-jax[warp]') and a CUDA GPU "
                                          "(or SVNR_WARP_CPU=1 for Warp's CPU device)")
@pytest.mark.filterwarnings("ignore:MuJoCo")
def test_a_warp_env_prints_nothing(tmp_path):
    """Warp prints its banner and each module load on stdout at log level INFO; making and stepping a Warp env (in
    a fresh process, where Warp initialises) prints nothing there."""
    code = ("import jax, jax.numpy as jnp\nfrom svnr_jax.envs import make\n"
            "env = make('HalfCheetah-2x3', impl='warp', capsule_frame='mjx', warp_batch=2)\n"
            "ts = jax.jit(env.reset)(jax.random.key(0))\n"
            "jax.block_until_ready(jax.jit(env.step)(ts, jnp.zeros((2, 3))).obs)\n")
    stdout = _stdout_of_a_fresh_process(code, tmp_path)
    assert stdout == "", stdout[:500]


def _stdout_of_a_fresh_process(code: str, cwd) -> str:
    """What ``python -c code`` prints on stdout in a fresh process (where Warp initialises); it must succeed."""
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=cwd,
                         env={**os.environ, "PYTHONPATH": root})
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@pytest.mark.skipif(not WARP_RUNS, reason="needs warp-lang (pip install 'svnr-jax[warp]') and a CUDA GPU "
                                          "(or SVNR_WARP_CPU=1 for Warp's CPU device)")
@pytest.mark.filterwarnings("ignore:MuJoCo")
def test_capped_solver_iterations_do_not_print_warp_warnings(tmp_path):
    """A capped solver (the speed options solver_iterations / ls_iterations, e.g. the CPU budget's) reaches its limit
    on purpose; Warp's kernels would print "solver iterations limit reached" at every such step (on stdout, in a
    fresh process): they print nothing."""
    code = ("import jax, jax.numpy as jnp, numpy as np\nfrom svnr_jax.envs import make\n"
            "env = make('Ant-2x4', impl='warp', warp_batch=4, capsule_frame='mjx', rk4_rotations='mjx', "
            "solver_iterations=1, ls_iterations=1)\n"
            "qpos = np.tile(env.mj_model.qpos0, (4, 1)).astype(np.float32); qpos[:, 2] = 0.3\n"
            "s = jax.jit(jax.vmap(env.state_from_physics))(jnp.asarray(qpos), jnp.zeros((4, env.mj_model.nv)))\n"
            "step = jax.jit(jax.vmap(env.step))\n"
            "for _ in range(3):\n    s = step(s, jnp.ones((4, 2, 4)))\n"
            "jax.block_until_ready(s.obs)\n")
    stdout = _stdout_of_a_fresh_process(code, tmp_path)
    assert "iterations" not in stdout, stdout[:500]
