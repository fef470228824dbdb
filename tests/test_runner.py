"""The host runner keeps run folders, metric files and checkpoints consistent (each test reproduces a case that
lost or mixed data before): a folder holding a run is never replaced silently, bad input is refused before
anything is written, and a resumed run's metric files equal an uninterrupted run's byte for byte — also after a
kill between the metric write and the checkpoint, or in the middle of a line."""

import os
import shutil

import pytest
from conftest import tiny_algo_config

from svnr_jax import cli, runner
from svnr_jax.config import make_config

RUN = dict(env="max_of_two", num_envs=4, iterations=60, eval_every=20, chunk_iterations=20, batch_size=8,
           buffer_size=256, warmup_iterations=2, eval_episodes=4, num_seeds=2, seed=5)
FILES = ("metrics.csv", "metrics.jsonl", "eval.csv")


def tiny(**over):
    return make_config("maddpg", tiny_algo_config("maddpg"), **{**RUN, **over})


def _bytes(run_dir):
    return {n: open(os.path.join(run_dir, n), "rb").read() for n in FILES}


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("full") / "run")
    assert runner.run(tiny(), d, progress=False).status == "finished"
    return d


def _one_chunk(tmp_path):
    d = str(tmp_path / "run")
    assert runner.run(tiny(), d, max_chunks=1, progress=False).status == "interrupted"
    return d


def test_resume_reproduces_every_metric_file_byte_for_byte(full, tmp_path):
    """Before: eval.csv lost the evaluation at the resume point on every resume."""
    d = _one_chunk(tmp_path)
    assert runner.run(tiny(), d, resume=True, progress=False).status == "finished"
    assert _bytes(d) == _bytes(full)


def test_rows_beyond_the_checkpoint_and_partial_lines_are_cut_on_resume(full, tmp_path):
    """A kill after the metrics of chunk 2 were written but before its checkpoint, with a half-written last line
    (before: JSONDecodeError on resume, and the partial CSV row survived)."""
    d = _one_chunk(tmp_path)
    for n in FILES:  # the metrics of later chunks written, then killed mid-line
        whole = open(os.path.join(full, n), "rb").read()
        with open(os.path.join(d, n), "wb") as f:
            f.write(whole + whole.splitlines(keepends=True)[-1][:7])
    assert runner.run(tiny(), d, resume=True, progress=False).status == "finished"
    assert _bytes(d) == _bytes(full)
    assert not [n for n in os.listdir(d) if n.endswith(".tmp")]


def test_folder_holding_a_run_is_refused_without_resume_or_overwrite(full, tmp_path, capsys):
    d = str(tmp_path / "run")
    shutil.copytree(full, d)
    before = {n: open(os.path.join(d, n), "rb").read() for n in ("config.json", *FILES)}
    args = ["train", "--algo", "maddpg", "--env", "max_of_two", "--run-dir", d, "--iterations", "20",
            "--chunk-iterations", "20", "--eval-every", "20", "--no-progress"]
    with pytest.raises(SystemExit) as e:
        cli.main(args)
    err = capsys.readouterr().err
    assert e.value.code == 2 and "already holds a run" in err and "--overwrite" in err
    assert {n: open(os.path.join(d, n), "rb").read() for n in before} == before
    # a bad env config on an existing run: refused before config.json is touched
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--env", "max_of_two", "--run-dir", d, "--env-config", "num_agents=1", "--overwrite"])
    assert e.value.code == 2 and open(os.path.join(d, "config.json"), "rb").read() == before["config.json"]
    # --overwrite replaces the old run completely (no old checkpoints left beside the new ones)
    res = runner.run(tiny(iterations=20), d, overwrite=True, progress=False)
    assert res.status == "finished" and sorted(os.listdir(os.path.join(d, "checkpoints"))) == ["1"]


def test_resume_needs_a_run_and_the_same_config(full, tmp_path):
    with pytest.raises(runner.RunDirError, match="nothing to resume"):
        runner.run(tiny(), str(tmp_path / "missing"), resume=True, progress=False)
    d = str(tmp_path / "run")
    shutil.copytree(full, d)
    os.remove(os.path.join(d, "config.json"))  # before: the old checkpoint continued under new hyperparameters
    with pytest.raises(runner.RunDirError, match=r"another config \(differs in \['algo_config'\]\)"):
        runner.run(make_config("maddpg", dict(tiny_algo_config("maddpg"), tau=0.5), **RUN), d, resume=True,
                   progress=False)


def test_a_run_folder_in_use_by_another_process_is_refused(full, tmp_path):
    """Two processes training into one folder interleaved metric rows and checkpoints (before: nothing stopped a
    second `--resume` while the first still ran). The lock is an flock: a killed holder releases it."""
    import fcntl

    d = str(tmp_path / "run")
    shutil.copytree(full, d)
    with open(os.path.join(d, ".lock"), "w") as holder:  # another open file description = another process's lock
        holder.write("4242")
        holder.flush()
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        before = _bytes(d)
        for kw in (dict(resume=True), dict(overwrite=True)):
            with pytest.raises(runner.RunDirError, match=r"in use by another process \(pid 4242\)"):
                runner.run(tiny(), d, progress=False, **kw)
        assert _bytes(d) == before  # nothing touched
    assert runner.run(tiny(), d, resume=True, progress=False).status == "finished"  # released: usable again


def test_unusable_run_folder_is_a_one_line_error(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    for d in (f, f / "inside"):
        with pytest.raises(SystemExit) as e:
            cli.main(["train", "--env", "max_of_two", "--run-dir", str(d), "--iterations", "20",
                      "--chunk-iterations", "20", "--eval-every", "20", "--no-progress"])
        err = capsys.readouterr().err
        assert e.value.code == 2 and "Traceback" not in err and str(d) in err


def test_eval_of_a_run_without_checkpoint_is_a_one_line_error(full, tmp_path, capsys):
    d = str(tmp_path / "run")
    shutil.copytree(full, d)
    shutil.rmtree(os.path.join(d, "checkpoints"))
    with pytest.raises(SystemExit) as e:
        cli.main(["eval", d])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "no checkpoint" in err and "Traceback" not in err


def _largest_file(folder):
    files = [os.path.join(r, f) for r, _, fs in os.walk(folder) for f in fs]
    return max(files, key=os.path.getsize)


@pytest.mark.parametrize("damage", ["overwrite 4 bytes", "truncate"])
def test_damaged_latest_checkpoint_falls_back_to_the_previous_one(damage, tmp_path, capsys):
    """Before: 4 changed bytes were restored silently (training went on from wrong weights); a truncated
    checkpoint was a 147-line traceback. Now a checksum is verified and the previous checkpoint is used, with a
    warning that names the skipped one."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from svnr_jax import checkpoint

    tree = {"w": jnp.arange(4096.0).reshape(64, 64), "step": jnp.zeros((), jnp.int32)}
    mgr = checkpoint.manager(str(tmp_path))
    checkpoint.save(mgr, 1, tree, algo="svnr")
    checkpoint.save(mgr, 2, {**tree, "w": tree["w"] + 1.0}, algo="svnr")
    path = _largest_file(os.path.join(str(tmp_path), "checkpoints", "2", "state"))
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        if damage == "truncate":
            f.truncate(size // 2)
        else:
            f.seek(size // 2)
            f.write(b"\xde\xad\xbe\xef")
    warnings = []
    restored, step = checkpoint.restore(mgr, tree, algo="svnr", warn=warnings.append)
    assert step == 1 and len(warnings) == 1 and "checkpoints/2" in warnings[0], warnings
    np.testing.assert_array_equal(jax.device_get(restored["w"]), jax.device_get(tree["w"]))
    with pytest.raises(checkpoint.CorruptCheckpoint):
        checkpoint.restore_step(mgr, tree, algo="svnr", step=2)


def test_checkpoints_without_the_replay_buffer(tmp_path, capsys):
    """checkpoint_buffer=False: smaller checkpoints (size shown at the start), the learner restored exactly and the
    buffer restarted from the warm-up data; keep_checkpoints sets how many stay."""
    import jax
    import numpy as np

    from svnr_jax import checkpoint

    cfg = tiny(checkpoint_buffer=False, keep_checkpoints=1)
    d = str(tmp_path / "run")
    res = runner.run(cfg, d, max_chunks=2)
    err = capsys.readouterr().err
    assert "MiB per seed (without the replay buffer" in err
    assert sorted(os.listdir(os.path.join(d, "checkpoints"))) == ["2"]
    with_buffer = runner.run(tiny(buffer_size=65536), str(tmp_path / "b"), max_chunks=1)
    import re

    per_seed, buffer = map(float, re.search(r"checkpoint: ([\d.]+) MiB per seed \(replay buffer ([\d.]+) MiB",
                                            capsys.readouterr().err).groups())
    assert buffer <= per_seed  # the buffer's share per seed (before: all seeds' buffers against one seed's total)
    small = checkpoint.size_bytes(res.state, ("buffer.",))
    assert small < checkpoint.size_bytes(with_buffer.state) / 2
    _, _, state, step = runner.load_run(d)
    assert step == 2
    jax.tree.map(np.testing.assert_array_equal, checkpoint.to_saveable(state.learner),
                 checkpoint.to_saveable(res.state.learner))
    assert runner.run(cfg, d, resume=True, progress=False).status == "finished"
