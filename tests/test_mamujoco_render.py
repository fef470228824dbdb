"""Frame producer of MaMuJoCo rollouts (``svnr_jax.envs.mamujoco.render``).

Rendering needs an OpenGL backend; the test runs it in a subprocess with ``MUJOCO_GL=egl`` (works
headless here through Mesa's EGL) and skips, saying why, where no backend is available.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    from svnr_jax.envs.mamujoco.env import load_model
    from svnr_jax.envs.mamujoco.render import render_trajectory, save_video
    from svnr_jax.envs.mamujoco.tasks import TASKS

    m = load_model(TASKS["HalfCheetah-2x3"]())
    qpos = np.tile(m.qpos0, (4, 2, 1))          # [T, B, nq]
    qpos[:, 1, 3] = np.linspace(-0.5, 1.0, 4)   # env 1 swings its back thigh
    frames = render_trajectory(m, qpos, env_index=1, height=48, width=64, camera="track")
    assert frames.shape == (4, 48, 64, 3) and frames.dtype == np.uint8, frames.shape
    assert frames.std() > 0 and not np.array_equal(frames[0], frames[-1])
    path = save_video(frames, sys.argv[1])
    print("OK", path)
    """
)


def test_render_trajectory_frames(tmp_path):
    out = tmp_path / "rollout.gif"
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    proc = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", SCRIPT, str(out)], env=env, capture_output=True, text=True, timeout=300
    )
    gl_errors = ("OpenGL", "EGL", "glGetError", "gl_context", "MUJOCO_GL", "OSMesa")
    if proc.returncode != 0 and any(e in proc.stderr for e in gl_errors):
        pytest.skip(f"no headless OpenGL backend (MUJOCO_GL={env['MUJOCO_GL']}): {proc.stderr.strip()[-300:]}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "OK" in proc.stdout and out.stat().st_size > 0
