"""``svnr render``: a GIF of one episode of a MaMuJoCo run; a clear error for other envs.

Rendering needs an OpenGL backend: the render step runs in a subprocess with ``MUJOCO_GL=egl`` (mujoco
reads it at first import) and is skipped, saying why, where no backend is available.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import tiny_train_args

from svnr_jax import cli

GL_ERRORS = ("OpenGL", "EGL", "glGetError", "gl_context", "MUJOCO_GL", "OSMesa")


def test_render_rejects_non_mamujoco_run(tmp_path, capsys):
    run_dir = str(tmp_path / "run")
    args = tiny_train_args("max_of_two", run_dir, envs=2, iterations=2, batch=4, buffer=16, episodes=1, hidden=4)
    assert cli.main(args) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        cli.main(["render", run_dir, "--steps", "5"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "'max_of_two'" in err and "render needs a MaMuJoCo task" in err
    assert not os.path.exists(os.path.join(run_dir, "render.gif"))


def test_render_rejects_missing_run_dir(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["render", str(tmp_path / "nope")])
    assert e.value.code == 2 and "not a run folder" in capsys.readouterr().err


@pytest.mark.slow
def test_render_halfcheetah_run(tmp_path):
    run_dir = str(tmp_path / "hc")
    args = ["train", "--env", "HalfCheetah-2x3", "--run-dir", run_dir, "--num-envs", "2", "--iterations", "4",
            "--warmup-iterations", "2", "--updates-per-iteration", "1", "--batch-size", "16", "--buffer-size",
            "256", "--eval-every", "2", "--eval-episodes", "1", "--chunk-iterations", "2", "--seeds", "1",
            "--num-particles", "4", "--value-samples", "4", "--no-progress"]
    assert cli.main(args) == 0
    out = tmp_path / "cheetah.gif"
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    proc = subprocess.run(
        [sys.executable, "-W", "ignore", "-m", "svnr_jax.cli", "render", run_dir, "--steps", "5", "--out", str(out),
         "--height", "48", "--width", "64"],
        env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 and any(e in proc.stderr for e in GL_ERRORS):
        pytest.skip(f"no headless OpenGL backend (MUJOCO_GL={env['MUJOCO_GL']}): {proc.stderr.strip()[-300:]}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == str(out)
    from PIL import Image

    with Image.open(out) as gif:
        assert gif.n_frames == 5
        assert gif.size == (64, 48)
