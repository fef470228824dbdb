"""Multi-agent MuJoCo on MJX: one :class:`MaMuJoCo` env class, configured by a :class:`TaskDef`.

At construction (Python, numpy) the MJCF model is loaded from the installed package, the optional speed
settings are applied to the compiled ``MjModel`` (documented below), and the agent graph is turned into
three static index tables (observations ``[N, O]``, global state ``[S]``, actions → actuators ``[nu]``).
The jitted ``step`` then runs ``frame_skip`` ``mjx.step`` calls, builds one flat feature vector from the
MJX data and gathers observations and state from it. The MJX model is closed over (a constant inside
jit), never passed as an argument.

Speed options (defaults = the reference's settings; each changes the dynamics, so the equivalence tests
measure them and they are never silent):

* ``solver``: ``"newton"`` or ``"cg"`` (MJX has no PGS: Humanoid's PGS becomes Newton by default);
* ``solver_iterations`` / ``ls_iterations``: ``model.opt.iterations`` / ``model.opt.ls_iterations``;
* ``integrator``: ``"euler"``, ``"rk4"`` or ``"implicitfast"`` (``model.opt.integrator``);
* ``contact_geoms``: names of the geoms that may collide with anything; every other non-world geom gets
  ``contype = conaffinity = 0`` (contact pruning: MJX evaluates every candidate pair every step).

MJX-side changes (the C model ``mj_model`` stays the reference's):

* ``capsule_frame`` (default ``"reference"``): plane-capsule contacts get MuJoCo C's contact frame (first
  tangent along the projected capsule axis at any steepness) instead of MJX 3.17's (world y once the capsule
  is steeper than 60 degrees), which rotates the pyramidal friction cone of steep capsules (the Ant's ankles):
  :mod:`svnr_jax.envs.mamujoco.mjx_patches`. ``"mjx"`` keeps MJX's own collision function.
* ``rk4_rotations`` (default ``"reference"``; models integrated with RK4: Ant, Humanoid): the rotations of
  free and ball joints are integrated as MuJoCo 4.0 does (Runge-Kutta-Munthe-Kaas, ``mjx_patches``);
  ``"mjx"`` keeps MJX 3.17's textbook RK4 (the rotation of one 0.01 s substep off by up to ~1e-4).
* ``tendon_invweight_floor`` (default :data:`TENDON_INVWEIGHT_FLOOR` = 1e-4; ``None`` = no change): raises the
  ``tendon_invweight0`` of limited tendons to at least this value in the model MJX simulates. CoupledHalfCheetah's
  shipped value is 0 (its tendon's Jacobian vanishes at ``qpos0``), which makes the limit a hard constraint
  (R = 1e-15) that float32 MJX cannot resolve (it applied no limit force); MuJoCo C converges to one hard-limit
  solution for any value in [1e-8, 1e-3], and with 1e-4 MJX matches it. Measurements: ``docs/mamujoco.md``.

Implementation (``impl``, default ``"jax"``): ``"warp"`` simulates with MJX's Warp implementation (MuJoCo Warp,
vendored in ``mujoco-mjx`` 3.17; needs the ``warp-lang`` package: ``pip install 'svnr-jax[warp]'``) behind the same
reset/step API, observations and rewards. MJX runs it on an NVIDIA GPU (CUDA) or on Warp's CPU device (slow: for
checks); other JAX backends (ROCm, TPU, Metal) are refused. MuJoCo Warp 3.17 has neither MJX-side patch: where
``capsule_frame="reference"`` / ``rk4_rotations="reference"`` would change this model's physics (plane-capsule
contacts; RK4 with free/ball joints) ``impl="warp"`` raises and asks for ``"mjx"`` (config = physics, never
silently different). ``tendon_invweight_floor`` and the speed options are model changes and apply to both.
``cfrc_ext`` (Ant, Humanoid) comes from Warp's ``run_rne_postconstraint`` option. ``warp_batch`` (default 8192): the
most envs in one vmapped call (Warp's contact buffer is shared by the vmapped envs and sized for that many;
under the training loop: seeds × envs); a step whose batch overflows it pays a NaN reward (the runner stops and
says so) instead of silently dropping contacts. The env state holds only Warp's per-env fields
(:class:`WarpPhysics`), so the training wrappers batch it as the JAX one. Unverified on a GPU in this repo:
``docs/mamujoco.md`` ("Warp backend").

``reference_obs_quirks`` (default True) reproduces Gymnasium-Robotics' observation indexing exactly,
including its index bugs: CoupledHalfCheetah (both agents' joint entries read the second cheetah's
joints) and Humanoid (nodes abdomen_y / abdomen_z read each other's qpos, qvel, qfrc_actuator). False
gives every node its own joint's entries. Other reference quirks (Swimmer nodes observing the root
slide velocities, Hopper's clipped velocities) are the reference's definition and always kept.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import inspect
import math
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from flax import struct

from svnr_jax.envs.base import Env, EnvSpec, State
from svnr_jax.envs.mamujoco import mjx_patches
from svnr_jax.envs.mamujoco._mjx_import import import_mjx
from svnr_jax.envs.mamujoco.graph import FeatureLayout
from svnr_jax.envs.mamujoco.tasks import TASKS, TaskDef

mjx = import_mjx()  # mujoco.mjx, without its messages about the optional warp backend on stdout

Array = jax.Array

_INTEGRATORS = {
    "euler": mujoco.mjtIntegrator.mjINT_EULER,
    "rk4": mujoco.mjtIntegrator.mjINT_RK4,
    "implicitfast": mujoco.mjtIntegrator.mjINT_IMPLICITFAST,
}
_SOLVERS = {"newton": mujoco.mjtSolver.mjSOL_NEWTON, "cg": mujoco.mjtSolver.mjSOL_CG}
_MJX_CHOICES = ("reference", "mjx")
#: ``impl`` values: MJX's JAX implementation (default) or its Warp implementation (MuJoCo Warp)
IMPLS = ("jax", "warp")
#: how to install what ``impl="warp"`` needs (the ``mujoco-mjx[warp]`` extra: ``warp-lang``)
WARP_INSTALL = "pip install 'svnr-jax[warp]' (or: pip install 'mujoco-mjx[warp]==3.17.0', which adds warp-lang)"

EPISODE_LENGTH = 1000
#: MJX-only lower bound on limited tendons' ``tendon_invweight0`` (module docstring).
TENDON_INVWEIGHT_FLOOR = 1e-4


@struct.dataclass
class WarpPhysics:
    """The per-env part of Warp's MJX data that the next step needs (``impl="warp"``): the integration state (qpos,
    qvel, act, ctrl, qacc_warmstart, time) and what the rewards read from the state before a step (xpos, xipos).
    Everything else Warp recomputes in each step's forward; its contact buffers are shared by all vmapped envs, so
    they are rebuilt from the env's initial data inside each step instead of being carried (the training wrappers
    select and gather env states leaf by leaf as ``[B, ...]``)."""

    qpos: Array
    qvel: Array
    act: Array
    ctrl: Array
    qacc_warmstart: Array
    time: Array
    xpos: Array
    xipos: Array


def _warp_fields(source: mjx.Data | WarpPhysics) -> dict[str, Array]:
    """The :class:`WarpPhysics` fields of ``source`` by name."""
    return {f.name: getattr(source, f.name) for f in dataclasses.fields(WarpPhysics)}


@struct.dataclass
class MaMuJoCoState:
    """Env internals: the MJX physics data (``Data`` leaves; batched envs add ``[B]`` in front); with
    ``impl="warp"`` its per-env part (:class:`WarpPhysics`; :meth:`MaMuJoCo.physics_data` rebuilds the ``Data``)."""

    data: mjx.Data | WarpPhysics


def load_model(task: TaskDef) -> mujoco.MjModel:
    """The task's compiled ``MjModel`` from the installed package.

    MuJoCo's compiler warnings (coupled_half_cheetah.xml's deprecated ``settotalmass``) are turned into
    Python warnings instead of stderr lines plus a ``MUJOCO_LOG.TXT`` in the working directory.
    """
    previous = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(lambda msg: warnings.warn(f"MuJoCo: {msg}", stacklevel=2))
    try:
        return mujoco.MjModel.from_xml_path(task.xml())
    finally:
        mujoco.set_mju_user_warning(previous)


def _validate(name: str, config: dict[str, Any], model: mujoco.MjModel) -> None:
    k = config["agent_obsk"]
    if not isinstance(k, int | np.integer) or isinstance(k, bool) or k < 0:
        raise ValueError(f"agent_obsk must be an int >= 0, got {k!r}")
    for key in ("solver_iterations", "ls_iterations"):
        v = config[key]
        if v is not None and (not isinstance(v, int | np.integer) or isinstance(v, bool) or v < 1):
            raise ValueError(f"{key} must be None (the model's value) or an int >= 1, got {v!r}")
    if config["integrator"] is not None and config["integrator"] not in _INTEGRATORS:
        raise ValueError(f"integrator must be None or one of {sorted(_INTEGRATORS)}, got {config['integrator']!r}")
    if config["solver"] is not None and config["solver"] not in _SOLVERS:
        raise ValueError(f"solver must be None or one of {sorted(_SOLVERS)}, got {config['solver']!r}")
    floor = config["tendon_invweight_floor"]
    if floor is not None and (
        not isinstance(floor, float | int | np.floating | np.integer) or isinstance(floor, bool)
        or not math.isfinite(floor) or floor <= 0
    ):
        raise ValueError(f"tendon_invweight_floor must be None or a finite float > 0, got {floor!r}")
    for key in ("capsule_frame", "rk4_rotations"):
        if config[key] not in _MJX_CHOICES:
            raise ValueError(f"{key} must be one of {_MJX_CHOICES}, got {config[key]!r}")
    geoms = config["contact_geoms"]
    if geoms is not None:
        if isinstance(geoms, str) or not all(isinstance(g, str) for g in geoms):
            raise ValueError(f"contact_geoms must be None or a tuple of geom names, got {geoms!r}")
        names = {model.geom(i).name for i in range(model.ngeom)}
        unknown = sorted(set(geoms) - names)
        if unknown:
            raise ValueError(f"contact_geoms: unknown geom(s) {unknown} in {name}; geoms: {sorted(names - {''})}")


def has_plane_capsule_contacts(model: mujoco.MjModel) -> bool:
    """Whether MJX collides a plane with a capsule in ``model`` (where ``capsule_frame`` changes the physics)."""
    from mujoco.mjx._src import collision_driver
    from mujoco.mjx._src.types import GeomType

    plane, capsule = int(GeomType.PLANE), int(GeomType.CAPSULE)
    return any((int(model.geom_type[g1]), int(model.geom_type[g2])) == (plane, capsule)
               for g1, g2, _ in collision_driver.geom_pairs(model))


def has_rk4_rotations(model: mujoco.MjModel) -> bool:
    """Whether ``model`` integrates free/ball-joint rotations with RK4 (where ``rk4_rotations`` changes the physics)."""
    return (model.opt.integrator == mujoco.mjtIntegrator.mjINT_RK4
            and mjx_patches.rotational_dofs(model.jnt_type, model.jnt_dofadr).size > 0)


def warp_device() -> jax.Device:
    """The device ``impl="warp"`` simulates on: JAX's default device if it is a CUDA GPU or the CPU (Warp's CPU
    device). Raises ValueError (naming the package and the pip extra, or the device) where Warp cannot run."""
    import mujoco.mjx.warp as mjxw
    from jax.extend import backend

    if not mjxw.WARP_INSTALLED:
        raise ValueError(f"impl='warp' needs the warp-lang package, which is not importable here; install it: "
                         f"{WARP_INSTALL}")
    if mjxw.mujoco_warp is None:
        raise ValueError("impl='warp': mujoco.mjx.third_party.mujoco_warp (vendored in mujoco-mjx) did not import; "
                         f"warp-lang is installed, check its version against mujoco-mjx 3.17.0's ({WARP_INSTALL})")
    device = jax.devices()[0]
    cuda = device.platform == "gpu" and "cuda" in backend.backends() and device in jax.devices("cuda")
    if not (cuda or device.platform == "cpu"):
        raise ValueError(f"impl='warp' runs on an NVIDIA GPU (CUDA) or the CPU; JAX's default device is {device} "
                         f"(platform {device.platform!r}): use impl='jax' there")
    return device


def _validate_impl(config: dict[str, Any], model: mujoco.MjModel) -> jax.Device | None:
    """Check ``impl`` against the machine and the other options (``model`` after the speed options); returns the
    Warp device for ``impl="warp"``, else None."""
    impl = config["impl"]
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    wb = config["warp_batch"]
    if not isinstance(wb, int | np.integer) or isinstance(wb, bool) or wb < 1:
        raise ValueError(f"warp_batch must be an int >= 1 (the most envs stepped in one vmapped call with "
                         f"impl='warp'), got {wb!r}")
    if impl == "jax":
        return None
    device = warp_device()
    unsupported = [
        f"{key}='reference' ({why})"
        for key, why, applies in (
            ("capsule_frame", "this model has plane-capsule contacts", has_plane_capsule_contacts),
            ("rk4_rotations", "this model integrates free/ball joints with RK4", has_rk4_rotations),
        )
        if config[key] == "reference" and applies(model)
    ]
    if unsupported:
        keys = " ".join(f"{u.split('=')[0]}=mjx" for u in unsupported)
        raise ValueError(
            f"impl='warp' cannot simulate {', '.join(unsupported)}: that option patches MJX's JAX implementation "
            f"and MuJoCo Warp 3.17 has MJX's own function; pass {keys} to simulate MJX's own physics with Warp, "
            f"or impl='jax'"
        )
    return device


def apply_speed_options(model: mujoco.MjModel, config: dict[str, Any]) -> list[str]:
    """Apply the speed options to ``model`` in place; returns the list of changes made (for logs).

    MJX cannot run PGS; a model asking for it (Humanoid) gets Newton unless ``solver`` says otherwise.
    """
    changes = []
    if config["solver"] is not None:
        model.opt.solver = _SOLVERS[config["solver"]]
        changes.append(f"solver={config['solver']}")
    elif model.opt.solver == mujoco.mjtSolver.mjSOL_PGS:
        model.opt.solver = mujoco.mjtSolver.mjSOL_NEWTON
        changes.append("solver=newton (PGS unsupported by MJX)")
    if config["solver_iterations"] is not None:
        model.opt.iterations = int(config["solver_iterations"])
        changes.append(f"iterations={config['solver_iterations']}")
    if config["ls_iterations"] is not None:
        model.opt.ls_iterations = int(config["ls_iterations"])
        changes.append(f"ls_iterations={config['ls_iterations']}")
    if config["integrator"] is not None:
        model.opt.integrator = _INTEGRATORS[config["integrator"]]
        changes.append(f"integrator={config['integrator']}")
    if config["contact_geoms"] is not None:
        keep = set(config["contact_geoms"])
        for g in range(model.ngeom):
            if model.geom_bodyid[g] != 0 and model.geom(g).name not in keep:
                model.geom_contype[g] = 0
                model.geom_conaffinity[g] = 0
        changes.append(f"contact_geoms={tuple(sorted(keep))}")
    return changes


def tendons_below_floor(model: mujoco.MjModel, floor: float) -> np.ndarray:
    """Ids of the limited tendons whose ``tendon_invweight0`` is below ``floor`` (the ones
    ``tendon_invweight_floor`` raises; module docstring)."""
    return np.flatnonzero(model.tendon_limited.astype(bool) & (model.tendon_invweight0 < floor))


def mjx_only_changes(model: mujoco.MjModel, config: dict[str, Any]) -> tuple[mujoco.MjModel, list[str]]:
    """The model MJX simulates: ``model`` itself, or a copy with the MJX-only changes (module docstring);
    returns it and the list of changes made. ``model`` is not modified."""
    floor = config["tendon_invweight_floor"]
    raise_ = np.empty(0, int) if floor is None else tendons_below_floor(model, floor)
    if not raise_.size:
        return model, []
    source = copy.deepcopy(model)
    source.tendon_invweight0[raise_] = floor
    changes = [f"MJX only: tendon_invweight0[{model.tendon(int(t)).name!r}] {model.tendon_invweight0[t]:g} -> {floor:g}"
               for t in raise_]
    return source, changes


class MaMuJoCo(Env):
    """A Gymnasium-Robotics ``mamujoco_v1`` task on MJX (see :mod:`svnr_jax.envs.mamujoco`).

    Observations ``[N, O]`` (zero-padded per agent), global state ``[S]`` (the single-agent v5
    observation, ``state()`` in the reference), actions ``[N, A]`` in the model's native ``ctrlrange``
    (passed to ``data.ctrl`` unclipped: MuJoCo clamps internally and the control costs use the raw action,
    as Gymnasium does). ``terminated`` = unhealthy (tasks with healthy ranges); ``truncated`` = 1000
    steps reached without terminating.
    """

    #: a reset is MJX ``make_data`` + ``forward``: training resets from a pool (``wrappers.PooledAutoReset``)
    expensive_reset = True

    def __init__(
        self,
        task: str,
        *,
        agent_obsk: int = 1,
        solver: str | None = None,
        solver_iterations: int | None = None,
        ls_iterations: int | None = None,
        integrator: str | None = None,
        contact_geoms: tuple[str, ...] | None = None,
        reference_obs_quirks: bool = True,
        tendon_invweight_floor: float | None = TENDON_INVWEIGHT_FLOOR,
        capsule_frame: str = "reference",
        rk4_rotations: str = "reference",
        impl: str = "jax",
        warp_batch: int = 8192,
    ):
        if task not in TASKS:
            raise ValueError(f"unknown MaMuJoCo task {task!r}; tasks: {sorted(TASKS)}")
        if not isinstance(reference_obs_quirks, bool):
            raise ValueError(f"reference_obs_quirks must be a bool, got {reference_obs_quirks!r}")
        self.task = TASKS[task](reference_obs_quirks=reference_obs_quirks)
        self.config = {
            "agent_obsk": agent_obsk,
            "solver": solver,
            "solver_iterations": solver_iterations,
            "ls_iterations": ls_iterations,
            "integrator": integrator,
            "contact_geoms": None if contact_geoms is None else tuple(contact_geoms),
            "reference_obs_quirks": reference_obs_quirks,
            "tendon_invweight_floor": tendon_invweight_floor,
            "capsule_frame": capsule_frame,
            "rk4_rotations": rk4_rotations,
            "impl": impl,
            "warp_batch": warp_batch,
        }
        model = load_model(self.task)
        _validate(task, self.config, model)
        self.model_changes = apply_speed_options(model, self.config)
        self.mj_model = model
        warp_device = _validate_impl(self.config, model)
        mjx_source, mjx_changes = mjx_only_changes(model, self.config)
        self.model_changes += mjx_changes
        self._warp = None
        if warp_device is None:
            self.mjx_model = mjx.put_model(mjx_source)
        else:
            self.mjx_model, self._warp = self._put_warp(mjx_source, warp_device)
            self.model_changes.append(f"impl=warp on {warp_device}")
        self.dt = float(model.opt.timestep) * self.task.frame_skip

        graph = self.task.graph
        n_agents = len(graph.partition)
        obs_entries = [graph.agent_entries(a, int(agent_obsk)) for a in range(n_agents)]
        state_entries = self.task.state_entries(model)
        self.layout = FeatureLayout.build(model, [*obs_entries, state_entries])
        obs_sizes = tuple(len(e) for e in obs_entries)
        self.obs_table = self.layout.table(model, obs_entries, max(obs_sizes))
        self.state_index = self.layout.indices(model, state_entries)
        self.obs_entries = obs_entries  # kept for inspection (tests check the ordering by name)
        self._needs_cfrc_ext = self.task.needs_cfrc_ext or "cfrc_ext" in " ".join(self.layout.sources)
        if self._warp is not None and self._needs_cfrc_ext:
            # Warp has no separate rne_postconstraint in MJX: its forward (each substep's) computes cfrc_ext. The
            # contact part of cfrc_ext depends only on that forward's contacts and forces, which are the ones the
            # JAX path's rne_postconstraint after the last substep reads: same values.
            self.mjx_model = self.mjx_model.tree_replace({"opt._impl.run_rne_postconstraint": True})

        # Actions: agent a's entry i drives the actuator whose joint is partition[a][i].joint.
        action_sizes = tuple(len(p) for p in graph.partition)
        width = max(action_sizes)
        act_of_joint = {
            int(model.actuator_trnid[u, 0]): u
            for u in range(model.nu)
            if model.actuator_trntype[u] == mujoco.mjtTrn.mjTRN_JOINT
        }
        gather = np.full(model.nu, -1, dtype=np.int32)
        for a, part in enumerate(graph.partition):
            for i, node in enumerate(part):
                u = act_of_joint[model.joint(node.joint).id]
                if gather[u] != -1:
                    raise ValueError(f"{task}: actuator {u} is driven by two agents")
                gather[u] = a * width + i
        if (gather < 0).any():
            raise ValueError(f"{task}: actuators {np.flatnonzero(gather < 0).tolist()} have no agent")
        self.action_gather = gather

        low, high = model.actuator_ctrlrange[:, 0], model.actuator_ctrlrange[:, 1]
        if not (np.all(low == low[0]) and np.all(high == high[0])):
            raise ValueError(f"{task}: actuators have different ctrlranges {model.actuator_ctrlrange.tolist()}")
        self.spec = EnvSpec(
            name=task,
            num_agents=n_agents,
            obs_sizes=obs_sizes,
            action_sizes=action_sizes,
            state_size=len(state_entries),
            action_low=float(low[0]),
            action_high=float(high[0]),
            episode_length=EPISODE_LENGTH,
        )
        self._reward = self.task.reward(model)
        self._qpos0 = np.asarray(model.qpos0, dtype=np.float32)

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        """The config keys ``make`` accepts and their defaults: the constructor's keyword arguments."""
        params = inspect.signature(cls.__init__).parameters.values()
        return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}

    def _put_warp(self, source: mujoco.MjModel, device: jax.Device) -> tuple[mjx.Model, dict[str, Any]]:
        """The Warp-implementation MJX model of ``source`` and what the pure functions need for it: the initial
        data (MJX's ``make_data`` for Warp takes an ``MjModel``; built once) and ``ten_J``'s sparse layout. Raises
        Warp's log level to warnings (set ``warp.config.log_level = warp.LOG_INFO`` after ``make`` for its messages)."""
        import warp
        from mujoco.mjx._src import collision_driver, constraint
        from mujoco.mjx._src.types import Impl

        # Warp prints its banner and every module load on stdout (log level INFO); we print nothing
        if hasattr(warp.config, "log_level") and hasattr(warp, "LOG_WARNING"):
            warp.config.log_level = max(warp.config.log_level, warp.LOG_WARNING)
        else:  # older warp-lang
            warp.config.quiet = True

        model = mjx.put_model(source, impl="warp", device=device)
        # Warp prints "solver iterations limit reached" from its kernels whenever a step stops at the iteration limit;
        # a capped solver_iterations / ls_iterations (speed options) is deliberate, so those two warnings are turned
        # off then (the JAX implementation stops there silently too); other overflow warnings stay on
        from mujoco.mjx.third_party.mujoco_warp._src.types import OverflowType

        quiet = (OverflowType.ITERATIONS if self.config["solver_iterations"] is not None else 0) | (
            OverflowType.LS_ITERATIONS if self.config["ls_iterations"] is not None else 0)
        if quiet:
            model = model.tree_replace({"opt._impl.warn_overflow": int(model.opt._impl.warn_overflow) & ~int(quiet)})
        # Capacities as the JAX implementation's (every candidate contact, every constraint row: nothing dropped).
        # Warp's constraint rows are per world (njmax), its contacts one buffer shared by all vmapped worlds
        # (naconmax = warp_batch worlds x contacts per world).
        condim = collision_driver.make_condim(source, impl=Impl.JAX)
        nefc = sum(constraint.counts(constraint.make_efc_type(source, condim)))
        naconmax = max(condim.size, 1) * int(self.config["warp_batch"])
        data0 = mjx.make_data(source, impl="warp", device=device, naconmax=naconmax, njmax=max(nefc, 1))
        # Warp keeps ten_J sparse ([nJten], MuJoCo's ten_J_rowadr / ten_J_colind layout); features() scatters it
        # into the JAX implementation's dense [ntendon, nv] (the feature layout's indexing)
        rows = np.repeat(np.arange(source.ntendon), source.ten_J_rownnz)
        ten_j_index = (rows * source.nv + np.asarray(source.ten_J_colind)[: rows.size]).astype(np.int32)
        if data0._impl.ten_J.shape[-1] != ten_j_index.size:
            raise RuntimeError(f"impl='warp': ten_J has {data0._impl.ten_J.shape[-1]} entries, the model's sparse "
                               f"layout {ten_j_index.size}: this mujoco-mjx differs from the pinned 3.17.0")
        return model, {"data0": data0, "naconmax": naconmax, "ten_j_index": ten_j_index,
                       "shape": (source.ntendon, source.nv)}

    @property
    def impl(self) -> str:
        """``"jax"`` or ``"warp"``: the MJX implementation simulating this env."""
        return self.config["impl"]

    # ------------------------------------------------------------------ pure functions
    def features(self, data: mjx.Data) -> Array:
        """``[F]`` flat feature vector (used sources concatenated, then a 0 padding slot)."""
        impl = data._impl
        parts = []
        for source in self.layout.sources:
            base, _, clip = source.partition("_clip")
            if base in ("qpos", "qvel", "qfrc_actuator"):
                x = getattr(data, base)
            elif base in ("cvel",):
                x = data.cvel
            elif base == "ten_J" and self._warp is not None:  # Warp: sparse [nJten] -> dense [ntendon, nv]
                dense = jnp.zeros(math.prod(self._warp["shape"]), impl.ten_J.dtype)
                x = dense.at[self._warp["ten_j_index"]].set(impl.ten_J)
            else:  # cinert, cfrc_ext, ten_J, ten_velocity live in the implementation's data
                x = getattr(impl, base) if base != "ten_length" else data.ten_length
            x = x.reshape(-1)
            if clip:
                x = jnp.clip(x, -float(clip), float(clip))
            parts.append(x)
        parts.append(jnp.zeros((1,), parts[0].dtype))
        return jnp.concatenate(parts)

    def observe(self, data: mjx.Data) -> tuple[Array, Array]:
        """``(obs [N, O], global_state [S])`` from MJX data (one gather each)."""
        f = self.features(data)
        return f[self.obs_table], f[self.state_index]

    def mjx_functions(self) -> contextlib.AbstractContextManager:
        """Context manager: MJX calls traced inside it use this env's MJX functions (``capsule_frame``,
        ``rk4_rotations``: module docstring), e.g. ``with env.mjx_functions(): mjx.step(env.mjx_model, d)``."""
        frame, rk4 = (self.config[k] == "reference" for k in ("capsule_frame", "rk4_rotations"))
        if self._warp is None and (frame or rk4):  # Warp: MJX dispatches to MuJoCo Warp before these functions
            return mjx_patches.reference_functions(capsule_frame=frame, rk4=rk4)
        return contextlib.nullcontext()

    def physics_data(self, env_state: MaMuJoCoState) -> mjx.Data:
        """The MJX ``Data`` of an env state: the state's own (JAX implementation), or (Warp) the env's initial data
        with the state's per-env fields (:class:`WarpPhysics`)."""
        if self._warp is None:
            return env_state.data
        return self._warp["data0"].replace(**_warp_fields(env_state.data))

    def _env_state(self, data: mjx.Data) -> MaMuJoCoState:
        return MaMuJoCoState(data=data if self._warp is None else WarpPhysics(**_warp_fields(data)))

    def state_from_physics(self, qpos: Array, qvel: Array) -> State:
        """The env state at ``qpos [nq]``, ``qvel [nv]`` (``mj_forward`` applied, time 0), as after a reset."""
        data = mjx.make_data(self.mjx_model) if self._warp is None else self._warp["data0"]
        data = data.replace(qpos=jnp.asarray(qpos, jnp.float32), qvel=jnp.asarray(qvel, jnp.float32))
        with self.mjx_functions():
            data = mjx.forward(self.mjx_model, data)
        # qpos as given, as MuJoCo C's mj_forward leaves it: MJX's JAX forward returns free/ball-joint quaternions
        # normalised, while Gymnasium's reset noise makes them non-unit and its reset observation shows them so (the
        # first step's integration normalises them in both)
        data = data.replace(qpos=jnp.asarray(qpos, jnp.float32))
        if self._warp is not None and self._needs_cfrc_ext:  # as the JAX path: no rne_postconstraint at a reset
            data = data.tree_replace({"_impl.cfrc_ext": jnp.zeros_like(data._impl.cfrc_ext)})
        obs, gstate = self.observe(data)
        return State(
            env_state=self._env_state(data),
            obs=obs,
            global_state=gstate,
            reward=jnp.zeros((), jnp.float32),
            terminated=jnp.zeros((), bool),
            truncated=jnp.zeros((), bool),
            time=jnp.zeros((), jnp.int32),
        )

    def reset(self, key: Array) -> State:
        """Reset with the v5 task's noise: ``qpos0 + noise``, ``0 + noise`` (uniform ±s or normal·s)."""
        key_qpos, key_qvel = jax.random.split(key)
        nq, nv = self.mj_model.nq, self.mj_model.nv

        def noise(k, kind_scale, n):
            kind, scale = kind_scale
            if kind == "uniform":
                return jax.random.uniform(k, (n,), minval=-scale, maxval=scale)
            return scale * jax.random.normal(k, (n,))

        qpos = jnp.asarray(self._qpos0) + noise(key_qpos, self.task.qpos_noise, nq)
        qvel = noise(key_qvel, self.task.qvel_noise, nv)
        return self.state_from_physics(qpos, qvel)

    def physics_step(self, data: mjx.Data, ctrl: Array) -> mjx.Data:
        """``frame_skip`` MJX steps with ``ctrl [nu]`` (then ``rne_postconstraint`` where the task reads
        ``cfrc_ext``, as Gymnasium's ``do_simulation`` does)."""
        return self._physics_step(data, ctrl)[0]

    def _physics_step(self, data: mjx.Data, ctrl: Array) -> tuple[mjx.Data, Array]:
        """:meth:`physics_step` and whether Warp's shared contact buffer overflowed in any substep (more candidate
        contacts in the vmapped batch than ``warp_batch`` envs hold: Warp then drops contacts); False for JAX."""
        model = self.mjx_model
        data = data.replace(ctrl=ctrl)

        def substep(_, carry):
            d, overflow = mjx.step(model, carry[0]), carry[1]
            if self._warp is not None:
                cap = self._warp["naconmax"]
                overflow = overflow | jnp.any(d._impl.nacon > cap) | jnp.any(d._impl.ncollision > cap)
            return d, overflow

        with self.mjx_functions():
            data, overflow = jax.lax.fori_loop(0, self.task.frame_skip, substep, (data, jnp.zeros((), bool)))
        if self._needs_cfrc_ext and self._warp is None:  # Warp: in its forward (run_rne_postconstraint)
            data = mjx.rne_postconstraint(model, data)
        return data, overflow

    def step(self, state: State, actions: Array, key: Array | None = None) -> State:
        """One env step. ``actions [N, A]`` (padded entries ignored); ``key`` unused (deterministic)."""
        del key
        data0 = self.physics_data(state.env_state)
        actions, bad = self.check_actions(actions)
        ctrl = jnp.reshape(actions, (-1,))[self.action_gather].astype(data0.ctrl.dtype)
        data1, overflow = self._physics_step(data0, ctrl)
        reward, terminated = self._reward(data0, data1, ctrl, self.dt)
        # a non-finite action, or (Warp) contacts dropped by an overflowing buffer: a NaN reward, which the runner
        # stops on (never silently wrong physics)
        reward = jnp.where(bad | overflow, jnp.nan, reward)
        obs, gstate = self.observe(data1)
        time = state.time + 1
        return State(
            env_state=self._env_state(data1),
            obs=obs,
            global_state=gstate,
            reward=reward.astype(jnp.float32),
            terminated=terminated,
            truncated=(time >= self.spec.episode_length) & ~terminated,
            time=time,
            info=state.info,
        )
