"""SVNR through the training loop and the host runner: smoke, determinism, learning, checkpoint→resume, sharding,
signals. (Every registered algorithm gets the registry-parametrised checks of test_algorithms.py.)"""

import dataclasses
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from svnr_jax import checkpoint, runner, training
from svnr_jax.config import make_config, preset

TINY = dict(env="max_of_two", num_envs=8, iterations=40, eval_every=20, chunk_iterations=20, batch_size=16,
            buffer_size=512, warmup_iterations=2, eval_episodes=8, num_seeds=2,
            algo_config=dict(num_particles=8, policy_hidden=(16, 16), critic_hidden=(16, 16), value_samples=8,
                             alpha_schedule="exponential", alpha_init=5.0, alpha_min=1.0, gamma=0.9))


def tiny(**over):
    d = dict(TINY)
    algo = {**d.pop("algo_config"), **over.pop("algo_config", {})}
    return make_config("svnr", algo, **{**d, **over})


@pytest.fixture(scope="session")
def tiny_run():
    """Two vmapped seeds of the tiny config, trained twice with the same keys (compiled once)."""
    cfg = tiny()
    train = jax.jit(jax.vmap(training.make_train(cfg)))
    first = jax.device_get(train(training.seed_keys(cfg)))
    return cfg, first, jax.device_get(train(training.seed_keys(cfg)))  # fresh (equal) keys: no key reuse


def test_smoke_metrics_finite_and_shaped(tiny_run):
    cfg, out, _ = tiny_run
    for k in ("critic_loss", "policy_loss", "q_mean", "svgd_norm", "alpha"):
        assert out.metrics[k].shape == (2, cfg.iterations), k
        assert np.all(np.isfinite(out.metrics[k])), k
    assert out.eval["eval_shared_seed"].shape == (2, cfg.iterations // cfg.eval_every)
    np.testing.assert_array_equal(out.eval["eval_iteration"][0], [20, 40])
    assert np.all(out.state.iteration == cfg.iterations)
    assert np.all(out.state.env_steps == (cfg.iterations + cfg.warmup_iterations) * cfg.num_envs)
    # the temperature schedule went from alpha_init towards alpha_min
    assert out.metrics["alpha"][0, 0] == pytest.approx(5.0) and out.metrics["alpha"][0, -1] < 1.3


def test_same_seed_same_result_different_seeds_differ(tiny_run):
    _, a, b = tiny_run
    jax.tree.map(np.testing.assert_array_equal, a.state.learner.policy_params, b.state.learner.policy_params)
    p = jax.tree.leaves(a.state.learner.policy_params)[0]
    assert not np.allclose(p[0], p[1])
    assert not np.allclose(a.metrics["critic_loss"][0], a.metrics["critic_loss"][1])


def test_learns_global_peak_of_max_of_two():
    """Most of 3 vmapped seeds reach the narrow global peak (10 at (5,5)) rather than the wide local one."""
    cfg = preset("max_of_two", num_envs=16, iterations=800, chunk_iterations=800, eval_every=400, batch_size=32,
                 eval_episodes=64, num_seeds=3, algo_config=dict(num_particles=16, alpha_init=30.0))
    out = jax.device_get(jax.jit(jax.vmap(training.make_train(cfg)))(training.seed_keys(cfg)))
    final = out.eval["eval_deterministic"][:, -1]
    assert np.sum(final > 8.0) >= 2, final


def test_checkpoint_resume_equals_uninterrupted(tmp_path):
    cfg = tiny(iterations=60, seed=1)
    full = runner.run(cfg, str(tmp_path / "full"), progress=False)
    part = runner.run(cfg, str(tmp_path / "part"), max_chunks=1, progress=False)
    assert part.status == "interrupted" and part.chunks_done == 1
    resumed = runner.run(cfg, str(tmp_path / "part"), resume=True, progress=False)
    assert full.status == resumed.status == "finished" and resumed.chunks_done == 3
    jax.tree.map(np.testing.assert_array_equal, checkpoint.to_saveable(full.state),
                 checkpoint.to_saveable(resumed.state))
    # metrics files hold each iteration exactly once
    import csv

    with open(tmp_path / "part" / "metrics.csv") as f:
        its = sorted({int(r["iteration"]) for r in csv.DictReader(f)})
    assert its == list(range(60))
    ev = runner.evaluate_run(str(tmp_path / "part"), episodes=4, modes=("shared_seed", "deterministic"))
    assert set(ev["returns"]) == {"shared_seed", "deterministic"}


def test_nonfinite_loss_stops_and_keeps_last_checkpoint(tmp_path, capsys):
    cfg = tiny(seed=2, num_seeds=1, algo_config=dict(reward_scale=1e30))
    res = runner.run(cfg, str(tmp_path), progress=False)
    assert res.status == "nonfinite"
    assert "non-finite" in res.message and "no checkpoint" in res.message
    # the returned state is the last good one (before: "Array has been deleted"), here the initial state
    assert int(np.asarray(res.state.iteration)[0]) == 0 and np.all(np.isfinite(np.asarray(
        jax.tree.leaves(res.state.learner.policy_params)[0])))


def test_seeds_sharded_over_two_host_devices():
    code = textwrap.dedent("""
        import jax, numpy as np
        from svnr_jax import training
        from svnr_jax.config import make_config
        assert len(jax.devices()) == 2
        cfg = make_config(env="max_of_two", num_envs=4, iterations=20, eval_every=20, chunk_iterations=20,
                          batch_size=8, buffer_size=256, warmup_iterations=1, eval_episodes=4, num_seeds=2,
                          algo_config=dict(num_particles=4, policy_hidden=(8,), critic_hidden=(8,), gamma=0.0))
        tr = training.make_trainer(cfg)
        assert tr.sharding is not None
        st, (m, e) = tr.chunk(tr.init(training.seed_keys(cfg)))
        leaf = jax.tree.leaves(st.learner.policy_params)[0]
        assert len(leaf.sharding.device_set) == 2, leaf.sharding
        assert np.all(np.isfinite(np.asarray(m["critic_loss"])))
        print("OK")
    """)
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                         cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-2000:]


def test_seeds_that_do_not_divide_the_devices_are_padded(tmp_path):
    """3 seeds on 2 devices (before: silently one device): padded to 4, sharded over both; metrics, checkpoints
    and results hold the 3 real seeds, equal to the same seeds trained unsharded; resume continues exactly."""
    code = textwrap.dedent(f"""
        import csv, jax, numpy as np
        from svnr_jax import runner, training
        from svnr_jax.config import make_config
        assert len(jax.devices()) == 2
        cfg = make_config("maddpg", dict(actor_hidden=(8,), critic_hidden=(8,), gamma=0.0), env="max_of_two",
                          num_envs=4, iterations=20, eval_every=10, chunk_iterations=10, batch_size=8,
                          buffer_size=256, warmup_iterations=1, eval_episodes=4, num_seeds=3)
        tr = training.make_trainer(cfg)
        assert (tr.num_seeds, tr.padded) == (3, 4)
        st = tr.init(training.seed_keys(cfg))
        leaf = jax.tree.leaves(st.learner.actor_params)[0]
        assert leaf.shape[0] == 4 and len(leaf.sharding.device_set) == 2, leaf.sharding
        d = r"{tmp_path}/run"
        part = runner.run(cfg, d, max_chunks=1, progress=False)
        res = runner.run(cfg, d, resume=True, progress=False)
        assert res.status == "finished" and jax.tree.leaves(res.state)[0].shape[0] == 3
        rows = list(csv.DictReader(open(d + "/eval.csv")))
        assert sorted({{int(r["seed"]) for r in rows}}) == [0, 1, 2] and len(rows) == 6
        ref = jax.jit(jax.vmap(training.make_train(cfg)))(training.seed_keys(cfg))  # unsharded, no padding
        got = np.array([[float(r["eval_deterministic"]) for r in rows if int(r["iteration"]) == i] for i in (10, 20)])
        np.testing.assert_allclose(got, np.asarray(ref.eval["eval_deterministic"]).T, rtol=1e-5, atol=1e-5)
        _, _, loaded, step = runner.load_run(d)
        assert step == 2 and jax.tree.leaves(loaded)[0].shape[0] == 3
        print("OK")
    """)
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                         cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]


def test_seed_batch_runs_groups_of_seeds_with_the_vmapped_results():
    """seed_batch k: the seeds run k at a time (lax.map) in one program; the same numbers as all seeds vmapped."""
    base = tiny(num_seeds=3, iterations=20, chunk_iterations=20)
    outs = {}
    for k in (0, 2):
        tr = training.make_trainer(dataclasses.replace(base, seed_batch=k))
        st, (m, e) = tr.chunk(tr.init(training.seed_keys(base)))
        outs[k] = jax.device_get((st.learner.policy_params, m["critic_loss"], e["eval_deterministic"]))
        assert np.asarray(outs[k][1]).shape == (3, 20)
    for a, b in zip(jax.tree.leaves(outs[0]), jax.tree.leaves(outs[2]), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)
    with pytest.raises(ValueError, match="seed_batch"):
        tiny(seed_batch=-1)


def test_seed_batch_over_two_host_devices_and_changed_on_resume(tmp_path):
    """3 seeds padded to 4 on 2 devices, each device mapping over its 2 seeds one at a time (shard_map + lax.map):
    equal to the unsharded vmapped run; a resume may change seed_batch (it changes execution, not results)."""
    code = textwrap.dedent(f"""
        import csv, dataclasses, jax, numpy as np
        from svnr_jax import runner, training
        from svnr_jax.config import make_config
        assert len(jax.devices()) == 2
        cfg = make_config("maddpg", dict(actor_hidden=(8,), critic_hidden=(8,), gamma=0.0), env="max_of_two",
                          num_envs=4, iterations=20, eval_every=10, chunk_iterations=10, batch_size=8,
                          buffer_size=256, warmup_iterations=1, eval_episodes=4, num_seeds=3, seed_batch=1)
        tr = training.make_trainer(cfg)
        assert (tr.num_seeds, tr.padded) == (3, 4)
        d = r"{tmp_path}/run"
        runner.run(cfg, d, max_chunks=1, progress=False)
        res = runner.run(dataclasses.replace(cfg, seed_batch=0), d, resume=True, progress=False)
        assert res.status == "finished", res.message
        rows = list(csv.DictReader(open(d + "/eval.csv")))
        ref = jax.jit(jax.vmap(training.make_train(cfg)))(training.seed_keys(cfg))  # unsharded, vmapped
        got = np.array([[float(r["eval_deterministic"]) for r in rows if int(r["iteration"]) == i] for i in (10, 20)])
        np.testing.assert_allclose(got, np.asarray(ref.eval["eval_deterministic"]).T, rtol=1e-4, atol=1e-4)
        try:
            runner.run(dataclasses.replace(cfg, batch_size=4, iterations=40), d, resume=True, progress=False)
            raise SystemExit("a resume with another batch_size was accepted")
        except runner.RunDirError as e:
            assert "batch_size" in str(e), e
        print("OK")
    """)
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                         cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]


def test_sigterm_saves_and_exits_cleanly(tmp_path):
    import signal
    import time

    run_dir = str(tmp_path / "run")
    args = [sys.executable, "-m", "svnr_jax.cli", "train", "--env", "max_of_two", "--run-dir", run_dir,
            "--num-envs", "4", "--iterations", "2000", "--chunk-iterations", "20", "--eval-every", "20",
            "--batch-size", "8", "--buffer-size", "128", "--warmup-iterations", "1", "--eval-episodes", "4",
            "--num-particles", "4", "--policy-hidden", "8", "--critic-hidden", "8"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.dirname(__file__)))
    lines = []
    t0 = time.time()
    while time.time() - t0 < 240:  # wait for the first chunk's progress line
        line = proc.stderr.readline()
        lines.append(line)
        if line.startswith("["):
            break
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, "".join(lines) + err
    assert err.count("exited cleanly") == 1 and "Traceback" not in err  # said once (before: twice)
    saved = sorted(int(d) for d in os.listdir(os.path.join(run_dir, "checkpoints")) if d.isdigit())
    assert saved and saved[-1] < 100


def test_checkpoint_round_trip_with_zero_size_and_key_leaves(tmp_path):
    """MJX states carry zero-size arrays (``Data.act`` without activations) that orbax refuses to save."""
    tree = {"act": jnp.zeros((2, 0), jnp.float32), "w": jnp.arange(6.0).reshape(2, 3),
            "key": jax.random.split(jax.random.key(3), 2)}
    manager = checkpoint.manager(str(tmp_path))
    checkpoint.save(manager, 1, tree, algo="svnr")
    restored, step = checkpoint.restore(manager, tree, algo="svnr")
    assert step == 1 and restored["act"].shape == (2, 0)
    np.testing.assert_array_equal(restored["w"], tree["w"])
    np.testing.assert_array_equal(jax.random.key_data(restored["key"]), jax.random.key_data(tree["key"]))


def test_critic_warmup_moves_only_the_critic():
    """``critic_warmup_updates`` fits the critic on the warm-up data before training; the policy is untouched."""
    key = jax.random.key(11)
    plain = jax.jit(lambda k: training.init(training.build(tiny()), k))(jax.random.clone(key))
    warmed = jax.jit(lambda k: training.init(training.build(tiny(critic_warmup_updates=5)), k))(key)
    jax.tree.map(np.testing.assert_array_equal, plain.learner.policy_params, warmed.learner.policy_params)
    diffs = jax.tree.leaves(jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))),
                                         plain.learner.critic_params, warmed.learner.critic_params))
    assert max(diffs) > 0.0
    assert int(warmed.learner.updates) == int(plain.learner.updates) + 5


def test_checkpoint_of_a_changed_state_layout_fails_loudly(tmp_path):
    """Stored by tree path with its layout: a renamed leaf or a changed shape is refused with the path named."""
    tree = {"learner": {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}, "step": jnp.zeros((), jnp.int32)}
    manager = checkpoint.manager(str(tmp_path))
    checkpoint.save(manager, 1, tree, algo="svnr")
    with pytest.raises(ValueError, match=r"learner\.w: saved \[\[2, 3\], 'float32'\], expected \[\[4, 3\]"):
        checkpoint.restore(manager, {**tree, "learner": {"w": jnp.ones((4, 3)), "b": jnp.zeros(3)}}, algo="svnr")
    with pytest.raises(ValueError, match=r"missing \['learner\.v'\].*unexpected \['learner\.w'\]"):
        checkpoint.restore(manager, {**tree, "learner": {"v": jnp.ones((2, 3)), "b": jnp.zeros(3)}}, algo="svnr")
    restored, _ = checkpoint.restore(manager, tree, algo="svnr")
    np.testing.assert_array_equal(restored["learner"]["w"], tree["learner"]["w"])


def _train_process(run_dir):
    import subprocess

    args = [sys.executable, "-m", "svnr_jax.cli", "train", "--env", "max_of_two", "--run-dir", run_dir,
            "--num-envs", "4", "--iterations", "2000", "--chunk-iterations", "20", "--eval-every", "20",
            "--batch-size", "8", "--buffer-size", "128", "--warmup-iterations", "1", "--eval-episodes", "4",
            "--num-particles", "4", "--policy-hidden", "8", "--critic-hidden", "8"]
    return subprocess.Popen(args, env={**os.environ, "JAX_PLATFORMS": "cpu"}, stderr=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.dirname(__file__)))


def _wait_for(proc, prefix, lines, timeout=240):
    import time

    t0 = time.time()
    while time.time() - t0 < timeout:
        line = proc.stderr.readline()
        lines.append(line)
        if line.startswith(prefix) or not line:
            return


def test_sigint_while_compiling_exits_cleanly(tmp_path):
    """Before: SIGINT during the start-up compile gave a 50-90 line traceback (the handler came later)."""
    import signal

    proc = _train_process(str(tmp_path / "run"))
    lines = []
    _wait_for(proc, "training ", lines)  # printed once the signals are handled, before set-up and compile
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=240)
    err = "".join(lines) + err
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.count("before chunk 1") == 1, err


def test_second_sigint_quits_at_once_keeping_the_last_checkpoint(tmp_path):
    import signal

    run_dir = str(tmp_path / "run")
    proc = _train_process(run_dir)
    lines = []
    _wait_for(proc, "[", lines)  # the first chunk is checkpointed
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=240)
    err = "".join(lines) + err
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert "interrupted at once" in err or "exited cleanly" in err, err
    saved = [d for d in os.listdir(os.path.join(run_dir, "checkpoints")) if d.isdigit()]
    assert saved, err
