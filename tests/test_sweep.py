"""Hyperparameter sweeps as one program (svnr_jax/sweep.py, `svnr sweep`)."""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from svnr_jax import cli, sweep, training
from svnr_jax.algorithms.base import temperature_schedule
from svnr_jax.presets import preset


def tiny(**over):
    return preset("single_peak", "maddpg", algo_config=dict(actor_hidden=(8,), critic_hidden=(8,)),
                  **{**dict(num_envs=4, iterations=20, eval_every=10, chunk_iterations=10, batch_size=8,
                            buffer_size=128, warmup_iterations=2, eval_episodes=8, num_seeds=2), **over})


def test_parse_grid_and_points():
    grid = sweep.parse_grid(["actor_lr=1e-3,1e-2", "tau=0.1"])
    assert grid == {"actor_lr": (1e-3, 1e-2), "tau": (0.1,)}
    assert sweep.grid_points(grid) == [{"actor_lr": 1e-3, "tau": 0.1}, {"actor_lr": 1e-2, "tau": 0.1}]
    for bad, msg in ((["actor_lr"], "expected name=value"), (["actor_lr=a,b"], "numbers"),
                     (["tau=1", "tau=2"], "twice"), ([], "empty grid")):
        with pytest.raises(ValueError, match=msg):
            sweep.parse_grid(bad)


@pytest.mark.parametrize("item, msg", [
    ("actor_hidden=8,16", "not a field|of type tuple"), ("nope=1", "not a field of maddpg"),
    ("grad_clip=0.5,1", "used in Python by the algorithm"), ("actor_lr=-1,1e-3", r"grid point \{'actor_lr': -1.0\}")])
def test_grid_refuses_what_cannot_be_one_program(item, msg):
    with pytest.raises(ValueError, match=msg):
        sweep.check_grid(tiny(), sweep.parse_grid([item]))


def test_int_fields_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="num_particles=32 is of type int: it changes shapes"):
        sweep.check_grid(preset("max_of_three", "svnr"), {"num_particles": (8.0, 16.0)})


def test_one_program_equals_separate_runs_and_uses_the_values(tmp_path):
    cfg = tiny()
    res = sweep.run_sweep(cfg, {"actor_lr": (1e-5, 1e-2)}, out_dir=str(tmp_path), progress=False)
    got = {r["point"]["actor_lr"]: np.array(r["per_seed"]) for r in res["points"]}
    for lr in (1e-5, 1e-2):  # the same point as an ordinary program (constants instead of traced values)
        c = dataclasses.replace(cfg, algo_config=dataclasses.replace(cfg.algo_config, actor_lr=lr))
        ref = jax.jit(jax.vmap(training.make_train(c)))(training.seed_keys(c))
        np.testing.assert_allclose(got[lr], np.asarray(ref.eval["eval_deterministic"][:, -1]), rtol=1e-3, atol=1e-3)
    assert not np.allclose(got[1e-5], got[1e-2])  # the traced value reaches the optimiser
    stored = json.loads((tmp_path / "sweep.json").read_text())
    assert [p["point"] for p in stored["points"]] == [{"actor_lr": 1e-5}, {"actor_lr": 1e-2}]
    assert (tmp_path / "sweep.png").stat().st_size > 1000 and "| 1e-05 |" in (tmp_path / "sweep.md").read_text()


@pytest.mark.parametrize("kind", ["constant", "linear", "exponential"])
def test_traced_temperature_schedule_equals_optax(kind):
    counts = np.arange(0, 130, 7, dtype=np.float32)
    ref = np.array([temperature_schedule(kind, 3.0, 0.1, 100.0)(c) for c in counts])
    traced = jax.jit(lambda a, b, n: jax.vmap(temperature_schedule(kind, a, b, n))(counts))(3.0, 0.1, 100.0)
    np.testing.assert_allclose(np.asarray(traced), ref, rtol=1e-6)


def test_cli_sweep(tmp_path, capsys):
    out = str(tmp_path / "sw")
    assert cli.main(["sweep", "--algo", "maddpg", "--env", "single_peak", "--grid", "tau=0.01,0.05", "--seeds", "2",
                     "--iterations", "10", "--out", out, "--no-progress"]) == 0
    assert "| 0.05 |" in capsys.readouterr().out and os.path.exists(os.path.join(out, "sweep.json"))
    argv = ["sweep", "--algo", "maddpg", "--env", "single_peak", "--grid", "tau=0.01,0.05", "--seeds", "2",
            "--iterations", "10", "--out", out, "--no-progress"]
    assert cli.main(argv) == 2 and "continue it with --resume" in capsys.readouterr().err  # nothing overwritten
    assert cli.main(argv + ["--resume"]) == 0 and "| 0.05 |" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        cli.main(argv[:-3] + ["--resume"])
    assert e.value.code == 2 and "--resume needs --out" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli.main(["sweep", "--env", "max_of_three", "--grid", "value_samples=8,16"])
    assert e.value.code == 2 and "changes shapes" in capsys.readouterr().err


def test_grid_points_that_do_not_divide_the_devices_are_padded(tmp_path):
    code = textwrap.dedent("""
        import jax
        from svnr_jax import sweep
        from svnr_jax.presets import preset
        assert len(jax.devices()) == 2
        cfg = preset("single_peak", "maddpg", algo_config=dict(actor_hidden=(8,), critic_hidden=(8,)), num_envs=4,
                     iterations=10, eval_every=10, chunk_iterations=10, batch_size=8, buffer_size=128,
                     warmup_iterations=2, eval_episodes=4, num_seeds=1)
        res = sweep.run_sweep(cfg, {"tau": (0.01, 0.02, 0.03)}, progress=False)
        assert res["rows_padded"] == 4 and len(res["points"]) == 3
        assert all(len(p["per_seed"]) == 1 for p in res["points"])
        print("OK")
    """)
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                       cwd=os.path.dirname(os.path.dirname(__file__)))
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr[-3000:]


@pytest.mark.slow
def test_sweep_benchmark_quick_writes_json(tmp_path):
    from benchmarks import sweep as bench

    out = tmp_path / "s.json"
    assert bench.main(["--quick", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["grid"]["points"] == 4 and res["grid"]["ratio"] > 0 and res["seeds"]["ratio"] > 0


@pytest.mark.parametrize("how", ["killed", "sigterm"])
def test_an_interrupted_sweep_resumes_to_the_same_result(tmp_path, monkeypatch, how):
    """Killed right after its first chunk's checkpoint, or sent SIGTERM during the first chunk (it then stops after
    that chunk's checkpoint, saying so), the sweep continues from the checkpoint (state and evaluations so far) with
    resume=True and ends with the results of an uninterrupted sweep."""
    import signal

    cfg, grid = tiny(), {"actor_lr": (1e-5, 1e-2)}
    ref = sweep.run_sweep(cfg, grid, out_dir=str(tmp_path / "ref"), progress=False)
    save, chunk = sweep.checkpoint.save, sweep.training.chunk

    def save_then_die(mgr, step, *a, **k):
        save(mgr, step, *a, **k)
        raise KeyboardInterrupt

    def chunk_and_signal(*a):  # traced once, inside the first chunk's compile: the signal arrives mid-chunk
        signal.raise_signal(signal.SIGTERM)
        return chunk(*a)

    if how == "killed":
        monkeypatch.setattr(sweep.checkpoint, "save", save_then_die)
        with pytest.raises(KeyboardInterrupt):
            sweep.run_sweep(cfg, grid, out_dir=str(tmp_path / "cut"), progress=False)
    else:
        monkeypatch.setattr(sweep.training, "chunk", chunk_and_signal)
        before = signal.getsignal(signal.SIGTERM)
        with pytest.raises(sweep.SweepInterrupted, match=r"received SIGTERM; saved checkpoint 1 of 2 in .*--resume"):
            sweep.run_sweep(cfg, grid, out_dir=str(tmp_path / "cut"), progress=False)
        assert signal.getsignal(signal.SIGTERM) is before  # the previous handler is back
    monkeypatch.setattr(sweep.checkpoint, "save", save)
    monkeypatch.setattr(sweep.training, "chunk", chunk)
    assert not (tmp_path / "cut" / "sweep.json").exists()
    # seed_batch is execution only: it may change on resume
    got = sweep.run_sweep(dataclasses.replace(cfg, seed_batch=1), grid, out_dir=str(tmp_path / "cut"),
                          progress=False, resume=True)
    for g, r in zip(got["points"], ref["points"], strict=True):
        np.testing.assert_allclose(g["per_seed"], r["per_seed"], rtol=1e-4, atol=1e-4)
        assert g["curve"]["iteration"] == r["curve"]["iteration"] == [10, 20]
        np.testing.assert_allclose(g["curve"]["mean"], r["curve"]["mean"], rtol=1e-4, atol=1e-4)


def test_sweep_checkpoints_refuse_a_mismatched_resume(tmp_path):
    cfg, out = tiny(iterations=10, chunk_iterations=10), str(tmp_path)
    with pytest.raises(sweep.SweepResumeError, match="nothing to resume"):
        sweep.run_sweep(cfg, {"tau": (0.01, 0.05)}, out_dir=out, resume=True, progress=False)
    with pytest.raises(sweep.SweepResumeError, match="needs out_dir"):
        sweep.run_sweep(cfg, {"tau": (0.01, 0.05)}, resume=True, progress=False)
    first = sweep.run_sweep(cfg, {"tau": (0.01, 0.05)}, out_dir=out, progress=False)
    with pytest.raises(sweep.SweepResumeError, match="already holds a sweep's checkpoints"):
        sweep.run_sweep(cfg, {"tau": (0.01, 0.05)}, out_dir=out, progress=False)
    with pytest.raises(sweep.SweepResumeError, match=r"another grid \(\{'tau': \[0.01, 0.05\]\}\)"):
        sweep.run_sweep(cfg, {"tau": (0.01, 0.1)}, out_dir=out, resume=True, progress=False)
    with pytest.raises(sweep.SweepResumeError, match=r"differs in \['batch_size'\]"):
        sweep.run_sweep(dataclasses.replace(cfg, batch_size=4), {"tau": (0.01, 0.05)}, out_dir=out, resume=True,
                        progress=False)
    again = sweep.run_sweep(cfg, {"tau": (0.01, 0.05)}, out_dir=out, resume=True, progress=False)  # finished: reread
    assert again["points"] == first["points"]


def test_cli_sweep_reports_an_interruption(tmp_path, capsys, monkeypatch):
    def interrupted(*a, **k):
        raise sweep.SweepInterrupted("received SIGTERM; saved checkpoint 1 of 2 in X; continue with --resume")

    monkeypatch.setattr(sweep, "run_sweep", interrupted)
    argv = ["sweep", "--algo", "maddpg", "--env", "single_peak", "--grid", "tau=0.01", "--out", str(tmp_path)]
    assert cli.main(argv) == 130 and "continue with --resume" in capsys.readouterr().err


def test_cli_sweep_can_leave_the_replay_buffers_out_of_its_checkpoints(tmp_path):
    from svnr_jax import checkpoint

    out = str(tmp_path / "sw")
    argv = ["sweep", "--algo", "maddpg", "--env", "single_peak", "--grid", "tau=0.01", "--seeds", "1",
            "--iterations", "10", "--out", out, "--no-progress", "--checkpoint-buffer", "false"]
    assert cli.main(argv) == 0
    mgr = checkpoint.manager(out)
    meta = checkpoint.read_meta(mgr, mgr.latest_step())
    mgr.close()
    assert meta["skip"] == ["buffer."] and meta["sweep"]["config"]["checkpoint_buffer"] is False
