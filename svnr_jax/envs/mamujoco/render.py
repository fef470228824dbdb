"""Frames of MaMuJoCo rollouts with ``mujoco.Renderer`` (host side, numpy).

Headless rendering needs an OpenGL backend: set ``MUJOCO_GL=egl`` (GPU / libEGL) or ``MUJOCO_GL=osmesa``
(software, libOSMesa) before ``mujoco`` is first imported. :func:`render_trajectory` turns recorded
``qpos [T, nq]`` / ``qvel [T, nv]`` (one env of a batch; ``[T, B, ...]`` with ``env_index``) into
``[T, H, W, 3]`` uint8 frames; :func:`save_video` writes them as GIF or MP4 (``imageio``).
"""

from __future__ import annotations

import mujoco
import numpy as np


def render_trajectory(
    model: mujoco.MjModel,
    qpos: np.ndarray,
    qvel: np.ndarray | None = None,
    *,
    env_index: int | None = None,
    height: int = 240,
    width: int = 320,
    camera: int | str = -1,
    renderer: mujoco.Renderer | None = None,
) -> np.ndarray:
    """Render one trajectory.

    Args:
      model: the env's ``MjModel`` (``env.mj_model``).
      qpos: ``[T, nq]`` (or ``[T, B, nq]`` with ``env_index``) positions.
      qvel: optional ``[T, nv]`` / ``[T, B, nv]`` velocities (only affect velocity-dependent visuals).
      env_index: which env of a batched trajectory.
      height, width: frame size in pixels.
      camera: camera id or name (-1 = the free camera, tracking nothing).
      renderer: an existing renderer to reuse (must match height/width).

    Returns:
      ``[T, height, width, 3]`` uint8 frames.
    """
    qpos = np.asarray(qpos, np.float64)
    qvel = None if qvel is None else np.asarray(qvel, np.float64)
    if env_index is not None:
        qpos = qpos[:, env_index]
        qvel = None if qvel is None else qvel[:, env_index]
    if qpos.ndim != 2 or qpos.shape[1] != model.nq:
        raise ValueError(f"qpos must be [T, nq={model.nq}] (after env_index), got {qpos.shape}")
    data = mujoco.MjData(model)
    own = renderer is None
    renderer = renderer or mujoco.Renderer(model, height=height, width=width)
    frames = np.empty((qpos.shape[0], renderer.height, renderer.width, 3), np.uint8)
    try:
        for t in range(qpos.shape[0]):
            data.qpos[:] = qpos[t]
            if qvel is not None:
                data.qvel[:] = qvel[t]
            mujoco.mj_forward(model, data)
            renderer.update_scene(data, camera=camera)
            frames[t] = renderer.render()
    finally:
        if own:
            renderer.close()
    return frames


def save_video(frames: np.ndarray, path: str, fps: float = 30.0) -> str:
    """Write ``[T, H, W, 3]`` uint8 frames to ``path`` (``.gif``, or ``.mp4`` where imageio-ffmpeg exists)."""
    import imageio.v2 as imageio

    if path.endswith(".gif"):
        imageio.mimsave(path, list(frames), duration=1.0 / fps, loop=0)
    else:
        imageio.mimsave(path, list(frames), fps=fps)
    return path
