"""Multi-agent MuJoCo (Gymnasium-Robotics ``mamujoco_v1``) on MJX.

Registered tasks (``svnr_jax.envs.make(name, **config)``): HalfCheetah-2x3, CoupledHalfCheetah-1p1,
Ant-2x4, Walker2d-2x3, HalfCheetah-6x1, Hopper-3x1, Ant-4x2, Swimmer-2x1, Humanoid-9|8.
Config keys: ``agent_obsk`` (default 1), the speed options of :class:`MaMuJoCo` (defaults faithful to the
reference), ``reference_obs_quirks`` and the MJX-side fixes ``tendon_invweight_floor``, ``capsule_frame``,
``rk4_rotations`` (defaults: on; see :mod:`svnr_jax.envs.mamujoco.env` and :mod:`.mjx_patches`). Model files
come from the installed ``gymnasium`` / ``gymnasium-robotics`` packages.

Importing this package registers the task names only: ``mujoco.mjx`` and the env module load when a task is
made (or its config defaults are asked for), or when ``MaMuJoCo`` / ``MaMuJoCoState`` is first accessed here, so
making another env never pays for MJX.
"""

from __future__ import annotations

from typing import Any

from svnr_jax.envs.mamujoco.tasks import TASKS
from svnr_jax.envs.registry import register


def _make(task: str, **config: Any):
    from svnr_jax.envs.mamujoco.env import MaMuJoCo

    return MaMuJoCo(task, **config)


def _defaults() -> dict[str, Any]:
    from svnr_jax.envs.mamujoco.env import MaMuJoCo

    return MaMuJoCo.default_config()


class _Task:
    """Constructor of one task registered without importing MJX (the registry's ``make`` calls it)."""

    def __init__(self, task: str):
        self.task = task

    def __call__(self, **config: Any):
        return _make(self.task, **config)

    def __repr__(self) -> str:
        return f"MaMuJoCo task {self.task!r}"


for _name in TASKS:
    register(_name, _Task(_name), _defaults)


def __getattr__(name: str) -> Any:
    if name in ("MaMuJoCo", "MaMuJoCoState"):
        from svnr_jax.envs.mamujoco import env

        return getattr(env, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["TASKS", "MaMuJoCo", "MaMuJoCoState"]
