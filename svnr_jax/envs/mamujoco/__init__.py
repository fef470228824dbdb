"""Multi-agent MuJoCo (Gymnasium-Robotics ``mamujoco_v1``) on MJX.

Registered tasks (``svnr_jax.envs.make(name, **config)``): HalfCheetah-2x3, CoupledHalfCheetah-1p1,
Ant-2x4, Walker2d-2x3, HalfCheetah-6x1, Hopper-3x1, Ant-4x2, Swimmer-2x1, Humanoid-9|8.
Config keys: ``agent_obsk`` (default 1), the speed options of :class:`MaMuJoCo` (defaults faithful to the
reference), ``reference_obs_quirks`` and the MJX-side fixes ``tendon_invweight_floor``, ``capsule_frame``,
``rk4_rotations`` (defaults: on; see :mod:`svnr_jax.envs.mamujoco.env` and :mod:`.mjx_patches`). Model files
come from the installed ``gymnasium`` / ``gymnasium-robotics`` packages.
"""

from functools import partial

from svnr_jax.envs.mamujoco.env import MaMuJoCo, MaMuJoCoState
from svnr_jax.envs.mamujoco.tasks import TASKS
from svnr_jax.envs.registry import register

for _name in TASKS:
    register(_name, partial(MaMuJoCo, _name), MaMuJoCo.default_config())

__all__ = ["TASKS", "MaMuJoCo", "MaMuJoCoState"]
