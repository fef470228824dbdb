"""Runs over several processes (svnr_jax/distributed.py): two CPU processes on localhost (gloo collectives), each
with two host devices, against one process of the same sweep and run."""

import csv
import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from svnr_jax import cli, distributed, sweep

ROOT = os.path.dirname(os.path.dirname(__file__))
# Compiling dominates these runs: a low backend optimisation level makes it ~2-3x faster, the same for the two
# processes and the single-process reference (so their results still agree to float tolerance).
FLAGS = "--xla_backend_optimization_level=0"

SWEEP = """preset("single_peak", "maddpg", algo_config=dict(actor_hidden=(8,), critic_hidden=(8,)), num_envs=4,
                   iterations=20, eval_every=10, chunk_iterations=10, batch_size=8, buffer_size=128,
                   warmup_iterations=2, eval_episodes=8, num_seeds=2), {"tau": (0.01, 0.03, 0.05)}"""
CONFIG = """make_config("maddpg", dict(actor_hidden=(8,), critic_hidden=(8,), gamma=0.0), env="max_of_two", num_envs=4,
                        iterations=20, eval_every=10, chunk_iterations=10, batch_size=8, buffer_size=256,
                        warmup_iterations=1, eval_episodes=4, num_seeds=4)"""

# process k of 2: a sweep interrupted after its first chunk's checkpoint and resumed, then 1 of the 2 chunks of a
# run, then `svnr train --resume` for the rest
WORKER = textwrap.dedent(f"""
    import sys
    import jax
    from svnr_jax import cli, distributed, runner, sweep
    from svnr_jax.config import make_config
    from svnr_jax.presets import preset
    addr, k, d = sys.argv[1], sys.argv[2], sys.argv[3]
    distributed.initialize(addr, 2, int(k))
    assert distributed.process_count() == 2 and len(jax.devices()) == 4
    save = sweep.checkpoint.save
    def save_then_stop(*a, **kw):
        save(*a, **kw)
        raise KeyboardInterrupt
    sweep.checkpoint.save = save_then_stop
    try:
        sweep.run_sweep({SWEEP}, out_dir=d + "/sweep", progress=False)
        raise AssertionError("not interrupted")
    except KeyboardInterrupt:
        pass
    sweep.checkpoint.save = save
    sweep.run_sweep({SWEEP}, out_dir=d + "/sweep", progress=False, resume=True)
    part = runner.run({CONFIG}, d + "/run", max_chunks=1, progress=False)
    assert part.status == "interrupted" and part.chunks_done == 1, part
    flags = ["--coordinator", addr, "--num-processes", "2", "--process-id", k]  # as initialised: nothing changes
    assert cli.main(["train", "--run-dir", d + "/run", "--resume", "--no-progress"] + flags) == 0
    print("OK", k)
""")

# the same in one process with one device
REFERENCE = textwrap.dedent(f"""
    import sys
    from svnr_jax import runner, sweep
    from svnr_jax.config import make_config
    from svnr_jax.presets import preset
    d = sys.argv[1]
    sweep.run_sweep({SWEEP}, out_dir=d + "/sweep", progress=False)
    assert runner.run({CONFIG}, d + "/run", progress=False).status == "finished"
    print("OK")
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _launch(code: str, args: list[str], log: str, devices: int) -> tuple[subprocess.Popen, object]:
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices} {FLAGS}"}
    out = open(log, "w")
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, stdout=out, stderr=subprocess.STDOUT,
                            cwd=ROOT), out


def _run_all(jobs: list[tuple[str, list[str], str, int]], timeout: float) -> list[str]:
    """Start every job, wait for all (killing all of them past ``timeout`` or when one fails); their logs."""
    procs = [_launch(*job) for job in jobs]
    deadline = time.time() + timeout
    try:
        while any(p.poll() is None for p, _ in procs):
            if time.time() > deadline or any(p.poll() not in (None, 0) for p, _ in procs):
                break
            time.sleep(0.2)
    finally:
        for p, f in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
            f.close()
    logs = []
    for _, _, log, _ in jobs:
        with open(log) as f:
            logs.append(f.read())
    failed = [i for i, (p, _) in enumerate(procs) if p.returncode != 0]
    assert not failed, "\n\n".join(f"job {i} (exit {procs[i][0].returncode}):\n{logs[i][-3000:]}" for i in failed)
    return logs


def _rows(path: str) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _seed_chunks(store) -> set[int]:
    """The seed indices (first chunk coordinate) of the array chunks in one process's orbax OCDBT store."""
    import tensorstore as ts

    kv = ts.KvStore.open({"driver": "ocdbt", "base": f"file://{store}/"}).result()
    chunks = [key.decode().rsplit("/", 1)[-1] for key in kv.list().result()]
    return {int(c.split(".")[0]) for c in chunks if c[:1].isdigit()}


def test_two_processes_equal_one(tmp_path):
    """A sweep (interrupted after its first chunk, then resumed) and a run (one chunk, then `svnr train --resume`)
    over 2 processes x 2 devices: each process writes only its rows of the sweep (padded to the devices) and its
    shards of each checkpoint; the merged table, the metric files and the checkpointed state equal one process of the
    same sweep and run."""
    multi, single = tmp_path / "multi", tmp_path / "single"
    addr = f"localhost:{_free_port()}"
    _run_all([(WORKER, [addr, "0", str(multi)], str(tmp_path / "p0.log"), 2),
              (WORKER, [addr, "1", str(multi)], str(tmp_path / "p1.log"), 2),
              (REFERENCE, [str(single)], str(tmp_path / "ref.log"), 1)], timeout=240)

    # the sweep: 3 points x 2 seeds = 6 rows padded to 8 over the 4 devices; each process writes the real rows it
    # holds, process 0 merges them
    slices = [json.loads((multi / "sweep" / f"sweep.p{k}.json").read_text()) for k in (0, 1)]
    assert [sorted(int(r) for r in s["rows"]) for s in slices] == [[0, 1, 2, 3], [4, 5]]
    got, ref = (json.loads((d / "sweep" / "sweep.json").read_text()) for d in (multi, single))
    assert got["num_processes"] == 2 and got["num_devices"] == 4 and ref["num_devices"] == 1
    assert [p["point"] for p in got["points"]] == [p["point"] for p in ref["points"]]
    for g, r in zip(got["points"], ref["points"], strict=True):
        np.testing.assert_allclose(g["per_seed"], r["per_seed"], rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(g["curve"]["mean"], r["curve"]["mean"], rtol=1e-3, atol=1e-3)
        assert g["curve"]["iteration"] == r["curve"]["iteration"]
        for key in r["summary"]:
            np.testing.assert_allclose(g["summary"][key], r["summary"][key], rtol=1e-3, atol=1e-3)
    assert (multi / "sweep" / "sweep.md").read_text() == sweep.table(got) + "\n"
    assert "4 device(s) of 2 processes" in sweep.table(got)
    assert (multi / "sweep" / "sweep.png").stat().st_size > 1000

    # the run: metric files written once (by process 0), equal to the single-process run's
    for name, n in (("metrics.csv", 20 * 4), ("eval.csv", 2 * 4)):
        g, r = _rows(str(multi / "run" / name)), _rows(str(single / "run" / name))
        assert len(g) == len(r) == n and list(g[0]) == list(r[0])
        assert [(x["iteration"], x["seed"]) for x in g] == [(x["iteration"], x["seed"]) for x in r]
        for col in r[0]:
            np.testing.assert_allclose([float(x[col]) for x in g], [float(x[col]) for x in r], rtol=1e-4, atol=1e-5,
                                       err_msg=f"{name}:{col}")
    # each process wrote its own shards (2 seeds each) of the checkpoint, about half of it; it restores in one
    # process, equal to the reference's
    # (which seeds' chunks each process's store holds, read through tensorstore: file sizes depend on how orbax
    # batches and compresses its writes and made an earlier size-ratio check flaky under load)
    state_dir = multi / "run" / "checkpoints" / "2" / "state"
    for k in (0, 1):
        assert _seed_chunks(state_dir / f"ocdbt.process_{k}") == {2 * k, 2 * k + 1}, k
    import jax

    from svnr_jax import runner

    _, _, got_state, step = runner.load_run(str(multi / "run"))
    _, _, ref_state, _ = runner.load_run(str(single / "run"))
    assert step == 2 and int(got_state.iteration[0]) == 20
    jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64),
                                                         rtol=1e-4, atol=1e-5),
                 runner.checkpoint.to_saveable(got_state), runner.checkpoint.to_saveable(ref_state))


def test_bad_launches_are_refused_by_name(tmp_path, capsys):
    with pytest.raises(distributed.DistributedError, match=r"missing \['process_id'\]"):
        distributed.check_launch("localhost:1234", 2, None)
    for args, msg in ((("host", 2, 0), "not HOST:PORT"), (("h:70000", 2, 0), "not HOST:PORT"),
                      (("h:1", 0, 0), "num_processes must be an int >= 1"),
                      (("h:1", 2, 2), r"process_id must be an int in \[0, num_processes=2\)")):
        with pytest.raises(distributed.DistributedError, match=msg):
            distributed.check_launch(*args)
    sweep_argv = ["sweep", "--algo", "maddpg", "--env", "single_peak", "--grid", "tau=0.01,0.05"]
    for argv, msg in ((sweep_argv + ["--out", str(tmp_path), "--coordinator", "localhost:1"], "missing"),
                      (sweep_argv + ["--distributed"], "needs --out"),
                      (["train", "--env", "max_of_two", "--distributed"], "needs --run-dir")):
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        assert e.value.code == 2 and msg in capsys.readouterr().err


def test_merge_names_a_missing_or_foreign_slice(tmp_path):
    head = {"algo": "maddpg", "env": "single_peak", "fields": ["tau"], "seeds": 1, "test_mode": "deterministic",
            "iterations": 10, "wall_seconds": 1.0, "device": "cpu", "num_devices": 2, "rows_padded": 2}
    points = [{"tau": 0.1}, {"tau": 0.2}]
    for k in (0, 1):
        body = {"process": k, "num_processes": 2, "sweep": head, "points": points, "dtype": "float32",
                "rows": {str(k): {"iteration": [10], "ret": [float(k)]}}}
        (tmp_path / f"sweep.p{k}.json").write_text(json.dumps(body))
    res = sweep.merge_slices(str(tmp_path))
    assert [p["per_seed"] for p in res["points"]] == [[0.0], [1.0]] and res["num_processes"] == 2
    os.remove(tmp_path / "sweep.p1.json")
    with pytest.raises(FileNotFoundError, match="slice of process 1 .* shared file system"):
        sweep.merge_slices(str(tmp_path))
