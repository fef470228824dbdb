"""The MaMuJoCo task definitions: model file, agent graph, reward, termination and reset noise.

Each task reproduces one Gymnasium-Robotics ``mamujoco_v1`` scenario/partition on top of the Gymnasium
v5 single-agent task it wraps (defaults of ``gymnasium.make("<Task>-v5")``):

============================  ============  ==========  ============================================
task                          model          frame skip  reward / termination (Gymnasium v5)
============================  ============  ==========  ============================================
HalfCheetah-2x3, -6x1         half_cheetah   5           x-vel − 0.1‖a‖²; never terminates
CoupledHalfCheetah-1p1        coupled (GR)   5           mean x-vel of both − mean of 0.1‖a_i‖²
Ant-2x4, -4x2                 ant            5           x-vel(torso xpos) + 1·healthy − 0.5‖a‖²
                                                         − 5e-4‖clip(cfrc_ext, ±1)‖²; unhealthy ends
Walker2d-2x3                  walker2d_v5    4           x-vel + 1·healthy − 1e-3‖a‖²
Hopper-3x1                    hopper         4           x-vel + 1·healthy − 1e-3‖a‖²
Swimmer-2x1                   swimmer        4           x-vel − 1e-4‖a‖²; never terminates
Humanoid-9|8                  humanoid       5           1.25·com x-vel + 5·healthy − 0.1‖ctrl‖²
                                                         − min(5e-7‖cfrc_ext‖², 10)
============================  ============  ==========  ============================================

The graphs (nodes = actuated joints named as in the MJCF, hyperedges, partitions, bodies, global nodes,
observation categories, and the Gymnasium-Robotics quirks such as Swimmer's joint velocities and Hopper's
clipped velocities) carry the same information as Gymnasium-Robotics' ``get_parts_and_edges``; every
index is resolved from the compiled model by name.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from collections.abc import Callable

import jax.numpy as jnp
import mujoco
import numpy as np

from svnr_jax.envs.mamujoco.graph import AgentGraph, Entry, Node

#: Local categories (per graph distance) as Gymnasium-Robotics generates them by default.
_CATS_DEFAULT = (("qpos", "qvel"), ("qpos",))
_CATS_ANT = (("qpos", "qvel", "cfrc_ext"), ("qpos",))
_CATS_HUMANOID = (("qpos", "qvel", "cinert", "cvel", "qfrc_actuator", "cfrc_ext"), ("qpos",))
_CATS_COUPLED = (("qpos", "qvel", "ten_J", "ten_length", "ten_velocity"), ("qpos",))

_NO_QPOS = {"qpos": ()}  # Gymnasium-Robotics hides the x position of the root from the observations


def asset_path(package: str, *parts: str) -> str:
    """Path of an asset shipped inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"package {package!r} is needed for its MuJoCo model files; install gymnasium and "
            "gymnasium-robotics (see pyproject.toml)"
        )
    path = os.path.join(list(spec.submodule_search_locations)[0], *parts)
    if not os.path.exists(path):
        raise FileNotFoundError(f"model file {path} not found in the installed {package!r}")
    return path


def _gym_asset(name: str) -> Callable[[], str]:
    return lambda: asset_path("gymnasium", "envs", "mujoco", "assets", name)


def _robotics_asset(name: str) -> Callable[[], str]:
    return lambda: asset_path("gymnasium_robotics", "envs", "multiagent_mujoco", "assets", name)


# ----------------------------------------------------------------------------- global-state entries
def _range(source: str, start: int, stop: int) -> list[Entry]:
    return [Entry(source, (i,)) for i in range(start, stop)]


def _bodies_flat(model: mujoco.MjModel, source: str, first_body: int) -> list[Entry]:
    width = {"cinert": 10, "cvel": 6, "cfrc_ext": 6}[source.split("_clip")[0]]
    return [
        Entry(source, (mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, b) or f"joint:{_first_joint(model, b)}", c))
        for b in range(first_body, model.nbody)
        for c in range(width)
    ]


def _first_joint(model: mujoco.MjModel, body: int) -> str:
    return mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, int(model.body_jntadr[body]))


# ----------------------------------------------------------------------------- rewards
# A reward function maps (data before, data after, ctrl [nu], dt) to (reward [], terminated [] bool).
# ``ctrl`` is the raw action (MuJoCo clamps it to ctrlrange internally; Gymnasium's costs use it unclamped).


def _reward_forward_x(qpos_index: int, forward_w: float, ctrl_w: float):
    def reward(d0, d1, ctrl, dt):
        x_vel = (d1.qpos[qpos_index] - d0.qpos[qpos_index]) / dt
        return forward_w * x_vel - ctrl_w * jnp.sum(ctrl**2), jnp.asarray(False)

    return reward


def _reward_coupled_cheetah(second_x: int, ctrl_w: float = 0.1):
    def reward(d0, d1, ctrl, dt):
        v1 = (d1.qpos[0] - d0.qpos[0]) / dt
        v2 = (d1.qpos[second_x] - d0.qpos[second_x]) / dt
        half = ctrl.shape[0] // 2
        c1 = ctrl_w * jnp.sum(ctrl[:half] ** 2)
        c2 = ctrl_w * jnp.sum(ctrl[half:] ** 2)
        return (v1 + v2) / 2.0 - (c1 + c2) / 2.0, jnp.asarray(False)

    return reward


def _reward_ant(main_body: int = 1):
    def reward(d0, d1, ctrl, dt):
        x_vel = (d1.xpos[main_body, 0] - d0.xpos[main_body, 0]) / dt
        state = jnp.concatenate([d1.qpos, d1.qvel])
        healthy = jnp.all(jnp.isfinite(state)) & (d1.qpos[2] >= 0.2) & (d1.qpos[2] <= 1.0)
        contact = 5e-4 * jnp.sum(jnp.clip(d1._impl.cfrc_ext, -1.0, 1.0) ** 2)
        r = x_vel + healthy.astype(x_vel.dtype) - 0.5 * jnp.sum(ctrl**2) - contact
        return r, ~healthy

    return reward


def _reward_walker():
    def reward(d0, d1, ctrl, dt):
        x_vel = (d1.qpos[0] - d0.qpos[0]) / dt
        z, angle = d1.qpos[1], d1.qpos[2]
        healthy = (z > 0.8) & (z < 2.0) & (angle > -1.0) & (angle < 1.0)
        r = x_vel + healthy.astype(x_vel.dtype) - 1e-3 * jnp.sum(ctrl**2)
        return r, ~healthy

    return reward


def _reward_hopper():
    def reward(d0, d1, ctrl, dt):
        x_vel = (d1.qpos[0] - d0.qpos[0]) / dt
        z, angle = d1.qpos[1], d1.qpos[2]
        state = jnp.concatenate([d1.qpos, d1.qvel])[2:]
        healthy = jnp.all((state > -100.0) & (state < 100.0)) & (z > 0.7) & (angle > -0.2) & (angle < 0.2)
        r = x_vel + healthy.astype(x_vel.dtype) - 1e-3 * jnp.sum(ctrl**2)
        return r, ~healthy

    return reward


def _reward_humanoid(body_mass: np.ndarray):
    mass = jnp.asarray(body_mass / body_mass.sum(), dtype=jnp.float32)

    def reward(d0, d1, ctrl, dt):
        x0 = jnp.einsum("b,b->", mass, d0.xipos[:, 0])
        x1 = jnp.einsum("b,b->", mass, d1.xipos[:, 0])
        x_vel = (x1 - x0) / dt
        healthy = (d1.qpos[2] > 1.0) & (d1.qpos[2] < 2.0)
        contact = jnp.minimum(5e-7 * jnp.sum(d1._impl.cfrc_ext**2), 10.0)
        r = 1.25 * x_vel + 5.0 * healthy.astype(x_vel.dtype) - 0.1 * jnp.sum(ctrl**2) - contact
        return r, ~healthy

    return reward


# ----------------------------------------------------------------------------- task definitions
@dataclasses.dataclass(frozen=True)
class TaskDef:
    """Everything that defines one MaMuJoCo task (static; see the module table).

    Attributes:
      name: registry name.
      xml: returns the model file path (inside an installed package).
      frame_skip: physics steps per env step.
      graph: the agent graph.
      state_entries: model → the global state's entries (the single-agent v5 observation).
      reward: model → reward function (see the section above).
      qpos_noise, qvel_noise: ``("uniform" | "normal", scale)`` reset noise around ``qpos0`` / 0.
      needs_cfrc_ext: run ``rne_postconstraint`` after the physics steps (Gymnasium does after every step).
      notes: deviations or quirks worth knowing.
    """

    name: str
    xml: Callable[[], str]
    frame_skip: int
    graph: AgentGraph
    state_entries: Callable[[mujoco.MjModel], list[Entry]]
    reward: Callable[[mujoco.MjModel], Callable]
    qpos_noise: tuple[str, float]
    qvel_noise: tuple[str, float]
    needs_cfrc_ext: bool = False
    notes: str = ""


# --- HalfCheetah
def _cheetah_nodes(suffix: str = "", tendon_obs: tuple[str, ...] = ()) -> dict[str, Node]:
    names = ("bthigh", "bshin", "bfoot", "fthigh", "fshin", "ffoot")
    nodes = {n: Node(n + suffix, n + suffix) for n in names}
    if tendon_obs:
        t = "tendon0"
        overrides = {
            "ten_J": tuple(Entry("ten_J", (t, j)) for j in tendon_obs),
            "ten_length": (Entry("ten_length", (t,)),),
            "ten_velocity": (Entry("ten_velocity", (t,)),),
        }
        nodes["bthigh"] = Node("bthigh" + suffix, "bthigh" + suffix, overrides=overrides)
    return nodes


def _cheetah_edges(n: dict[str, Node]) -> list[frozenset[str]]:
    chain = [("bfoot", "bshin"), ("bshin", "bthigh"), ("bthigh", "fthigh"), ("fthigh", "fshin"), ("fshin", "ffoot")]
    return [frozenset({n[a].label, n[b].label}) for a, b in chain]


def _planar_globals(suffix: str = "", order: str = "xzy", qvel_source: str | None = None) -> tuple[Node, ...]:
    joints = {"x": f"rootx{suffix}", "z": f"rootz{suffix}", "y": f"rooty{suffix}"}
    out = []
    for axis in order:
        overrides = dict(_NO_QPOS) if axis == "x" else {}
        if qvel_source is not None:
            overrides["qvel"] = (Entry(qvel_source, (joints[axis], 0)),)
        out.append(Node(f"root_{axis}{suffix}", joints[axis], overrides=overrides))
    return tuple(out)


def _half_cheetah(partitioning: str) -> TaskDef:
    n = _cheetah_nodes()
    parts = {
        "2x3": ((n["bthigh"], n["bshin"], n["bfoot"]), (n["fthigh"], n["fshin"], n["ffoot"])),
        "6x1": tuple((n[k],) for k in ("bthigh", "bshin", "bfoot", "fthigh", "fshin", "ffoot")),
    }[partitioning]
    graph = AgentGraph(parts, tuple(_cheetah_edges(n)), _planar_globals(), _CATS_DEFAULT)
    return TaskDef(
        name=f"HalfCheetah-{partitioning}",
        xml=_gym_asset("half_cheetah.xml"),
        frame_skip=5,
        graph=graph,
        state_entries=lambda m: _range("qpos", 1, m.nq) + _range("qvel", 0, m.nv),
        reward=lambda m: _reward_forward_x(0, 1.0, 0.1),
        qpos_noise=("uniform", 0.1),
        qvel_noise=("normal", 0.1),
    )


def _coupled_half_cheetah(reference_obs_quirks: bool = True) -> TaskDef:
    cols = ("rootx0", "rootz0", "rootx1", "rootz1")  # ten_J[0][:2] and ten_J[0][9:11] in the reference
    n0, n1 = _cheetah_nodes("0", cols), _cheetah_nodes("1", cols)
    if reference_obs_quirks:
        # Gymnasium-Robotics indexes both cheetahs' joint nodes with qpos/qvel ids -6..-1, i.e. the second
        # cheetah's joints: agent 0's joint entries show cheetah 1's joints (its actions drive cheetah 0).
        n0 = {
            k: dataclasses.replace(
                node,
                overrides={
                    **node.overrides,
                    "qpos": (Entry("qpos", (k + "1", 0)),),
                    "qvel": (Entry("qvel", (k + "1", 0)),),
                },
            )
            for k, node in n0.items()
        }
    order = ("bthigh", "bshin", "bfoot", "fthigh", "fshin", "ffoot")
    parts = (tuple(n0[k] for k in order), tuple(n1[k] for k in order))
    globals_ = _planar_globals("0", "xyz") + _planar_globals("1", "xyz")
    graph = AgentGraph(parts, tuple(_cheetah_edges(n0) + _cheetah_edges(n1)), globals_, _CATS_COUPLED)

    def state(m):
        half = m.nq // 2
        ten = [Entry("ten_J", ("tendon0", j)) for j in cols]
        return (
            _range("qpos", 1, half) + _range("qpos", half + 1, m.nq) + _range("qvel", 0, m.nv) + ten
            + [Entry("ten_length", ("tendon0",)), Entry("ten_velocity", ("tendon0",))]
        )

    return TaskDef(
        name="CoupledHalfCheetah-1p1",
        xml=_robotics_asset("coupled_half_cheetah.xml"),
        frame_skip=5,
        graph=graph,
        state_entries=state,
        reward=lambda m: _reward_coupled_cheetah(m.nq // 2),
        qpos_noise=("uniform", 0.1),
        qvel_noise=("normal", 0.1),
        notes="Model from gymnasium-robotics' coupled_half_cheetah.xml (two cheetahs, one spatial tendon).",
    )


# --- Ant
def _ant_nodes() -> dict[str, Node]:
    legs = {1: "front_left_leg", 2: "front_right_leg", 3: "back_leg", 4: "right_back_leg"}
    nodes = {}
    for i, leg in legs.items():
        nodes[f"hip{i}"] = Node(f"hip{i}", f"hip_{i}", bodies=("torso", leg), body_clip=1)
        nodes[f"ankle{i}"] = Node(
            f"ankle{i}", f"ankle_{i}", bodies=(leg, f"aux_{i}", f"joint:ankle_{i}"), body_clip=1
        )
    return nodes


def _ant(partitioning: str) -> TaskDef:
    n = _ant_nodes()
    parts = {
        "2x4": ((n["hip1"], n["ankle1"], n["hip2"], n["ankle2"]), (n["hip3"], n["ankle3"], n["hip4"], n["ankle4"])),
        "4x2": tuple((n[f"hip{i}"], n[f"ankle{i}"]) for i in range(1, 5)),
    }[partitioning]
    edges = [frozenset({f"ankle{i}", f"hip{i}"}) for i in (4, 1, 2, 3)] + [frozenset({"hip1", "hip2", "hip3", "hip4"})]
    root = Node(
        "root",
        "root",
        overrides={
            "qpos": tuple(Entry("qpos", ("root", i)) for i in range(2, 7)),
            "qvel": tuple(Entry("qvel", ("root", i)) for i in range(6)),
        },
    )
    graph = AgentGraph(parts, tuple(edges), (root,), _CATS_ANT)
    return TaskDef(
        name=f"Ant-{partitioning}",
        xml=_gym_asset("ant.xml"),
        frame_skip=5,
        graph=graph,
        state_entries=lambda m: (
            _range("qpos", 2, m.nq) + _range("qvel", 0, m.nv) + _bodies_flat(m, "cfrc_ext_clip1", 1)
        ),
        reward=lambda m: _reward_ant(),
        qpos_noise=("uniform", 0.1),
        qvel_noise=("normal", 0.1),
        needs_cfrc_ext=True,
        notes=("MJX 3.17 differs from MuJoCo 4.0 C in the friction-pyramid frame of steep capsules (> 60 deg) and "
               "in RK4's free-joint rotation; the env's defaults (capsule_frame, rk4_rotations = 'reference') "
               "use C's (mjx_patches): one step matches C to float32 (tests/test_mamujoco.py)."),
    )


# --- Walker2d, Hopper, Swimmer
def _walker2d(partitioning: str) -> TaskDef:
    right = ("foot_joint", "leg_joint", "thigh_joint")
    left = ("foot_left_joint", "leg_left_joint", "thigh_left_joint")
    n = {j: Node(j, j) for j in right + left}
    parts = {"2x3": (tuple(n[j] for j in right), tuple(n[j] for j in left))}[partitioning]
    edges = [
        ("foot_joint", "leg_joint"), ("leg_joint", "thigh_joint"), ("foot_left_joint", "leg_left_joint"),
        ("leg_left_joint", "thigh_left_joint"), ("thigh_joint", "thigh_left_joint"),
    ]
    graph = AgentGraph(parts, tuple(frozenset(e) for e in edges), _planar_globals(), _CATS_DEFAULT)
    return TaskDef(
        name=f"Walker2d-{partitioning}",
        xml=_gym_asset("walker2d_v5.xml"),
        frame_skip=4,
        graph=graph,
        state_entries=lambda m: _range("qpos", 1, m.nq) + _range("qvel_clip10", 0, m.nv),
        reward=lambda m: _reward_walker(),
        qpos_noise=("uniform", 5e-3),
        qvel_noise=("uniform", 5e-3),
    )


def _hopper(partitioning: str) -> TaskDef:
    joints = ("thigh_joint", "leg_joint", "foot_joint")
    n = {j: Node(j, j, overrides={"qvel": (Entry("qvel_clip10", (j, 0)),)}) for j in joints}
    parts = {"3x1": tuple((n[j],) for j in joints)}[partitioning]
    edges = (frozenset({"foot_joint", "leg_joint"}), frozenset({"leg_joint", "thigh_joint"}))
    graph = AgentGraph(parts, edges, _planar_globals(qvel_source="qvel_clip10"), _CATS_DEFAULT)
    return TaskDef(
        name=f"Hopper-{partitioning}",
        xml=_gym_asset("hopper.xml"),
        frame_skip=4,
        graph=graph,
        state_entries=lambda m: _range("qpos", 1, m.nq) + _range("qvel_clip10", 0, m.nv),
        reward=lambda m: _reward_hopper(),
        qpos_noise=("uniform", 5e-3),
        qvel_noise=("uniform", 5e-3),
    )


def _swimmer(partitioning: str) -> TaskDef:
    # Gymnasium-Robotics' Swimmer nodes observe qvel[0]/qvel[1] (the root slides) next to their own joint
    # velocity; kept as the reference defines it.
    rot2 = Node("rot2", "motor1_rot", overrides={"qvel": (Entry("qvel", (0,)), Entry("qvel", ("motor1_rot", 0)))})
    rot3 = Node("rot3", "motor2_rot", overrides={"qvel": (Entry("qvel", (1,)), Entry("qvel", ("motor2_rot", 0)))})
    parts = {"2x1": ((rot2,), (rot3,))}[partitioning]
    graph = AgentGraph(
        parts, (frozenset({"rot2", "rot3"}),), (Node("free_body_rot", "free_body_rot"),), _CATS_DEFAULT
    )
    return TaskDef(
        name=f"Swimmer-{partitioning}",
        xml=_gym_asset("swimmer.xml"),
        frame_skip=4,
        graph=graph,
        state_entries=lambda m: _range("qpos", 2, m.nq) + _range("qvel", 0, m.nv),
        reward=lambda m: _reward_forward_x(0, 1.0, 1e-4),
        qpos_noise=("uniform", 0.1),
        qvel_noise=("uniform", 0.1),
    )


# --- Humanoid
def _humanoid(partitioning: str, reference_obs_quirks: bool = True) -> TaskDef:
    abdomen = ("torso", "lwaist", "pelvis")
    spec = {
        "abdomen_y": abdomen, "abdomen_z": abdomen, "abdomen_x": ("pelvis", "right_thigh", "left_thigh"),
        "right_hip_x": ("right_thigh", "right_shin"), "right_hip_z": ("right_thigh", "right_shin"),
        "right_hip_y": ("right_thigh", "right_shin"), "right_knee": ("right_shin", "right_foot"),
        "left_hip_x": ("left_thigh", "left_shin"), "left_hip_z": ("left_thigh", "left_shin"),
        "left_hip_y": ("left_thigh", "left_shin"), "left_knee": ("left_shin", "left_foot"),
        "right_shoulder1": ("torso", "right_upper_arm", "right_lower_arm"),
        "right_shoulder2": ("torso", "right_upper_arm", "right_lower_arm"),
        "right_elbow": ("right_lower_arm",),
        "left_shoulder1": ("torso", "left_upper_arm", "left_lower_arm"),
        "left_shoulder2": ("torso", "left_upper_arm", "left_lower_arm"),
        "left_elbow": ("left_lower_arm",),
    }
    n = {j: Node(j, j, bodies=b) for j, b in spec.items()}
    if reference_obs_quirks:
        # Gymnasium-Robotics gives node "abdomen_y" qpos/qvel id -17, which is abdomen_z in humanoid.xml
        # (joint order z, y), and "abdomen_z" id -16 (abdomen_y): their joint entries are swapped.
        for label, other in (("abdomen_y", "abdomen_z"), ("abdomen_z", "abdomen_y")):
            n[label] = dataclasses.replace(
                n[label], overrides={c: (Entry(c, (other, 0)),) for c in ("qpos", "qvel", "qfrc_actuator")}
            )
    abd = ("abdomen_x", "abdomen_y", "abdomen_z")
    edges = [
        abd, ("right_hip_x", "right_hip_y", "right_hip_z"), ("left_hip_x", "left_hip_y", "left_hip_z"),
        ("left_elbow", "left_shoulder1", "left_shoulder2"), ("right_elbow", "right_shoulder1", "right_shoulder2"),
        ("left_knee", "left_hip_x", "left_hip_y", "left_hip_z"),
        ("right_knee", "right_hip_x", "right_hip_y", "right_hip_z"),
        ("left_shoulder1", "left_shoulder2", *abd), ("right_shoulder1", "right_shoulder2", *abd),
        (*abd, "left_hip_x", "left_hip_y", "left_hip_z"), (*abd, "right_hip_x", "right_hip_y", "right_hip_z"),
    ]
    upper = (*abd, "right_shoulder1", "right_shoulder2", "right_elbow", "left_shoulder1", "left_shoulder2",
             "left_elbow")
    lower = ("right_hip_x", "right_hip_y", "right_hip_z", "right_knee", "left_hip_x", "left_hip_y", "left_hip_z",
             "left_knee")
    parts = {"9|8": (tuple(n[j] for j in upper), tuple(n[j] for j in lower))}[partitioning]
    root = Node(
        "root",
        None,
        overrides={
            "qpos": tuple(Entry("qpos", ("root", i)) for i in range(2, 7)),
            "qvel": tuple(Entry("qvel", ("root", i)) for i in range(6)),
        },
    )
    graph = AgentGraph(parts, tuple(frozenset(e) for e in edges), (root,), _CATS_HUMANOID)

    def state(m):
        return (
            _range("qpos", 2, m.nq) + _range("qvel", 0, m.nv) + _bodies_flat(m, "cinert", 1)
            + _bodies_flat(m, "cvel", 1) + _range("qfrc_actuator", 6, m.nv) + _bodies_flat(m, "cfrc_ext", 1)
        )

    return TaskDef(
        name=f"Humanoid-{partitioning}",
        xml=_gym_asset("humanoid.xml"),
        frame_skip=5,
        graph=graph,
        state_entries=state,
        reward=lambda m: _reward_humanoid(np.asarray(m.body_mass)),
        qpos_noise=("uniform", 1e-2),
        qvel_noise=("uniform", 1e-2),
        needs_cfrc_ext=True,
        notes=(
            "humanoid.xml asks for the PGS solver, which MJX lacks: the default here is Newton with the "
            "model's 50 iterations (dynamics differ slightly from the reference)."
        ),
    )


#: registry name → TaskDef constructor (keyword ``reference_obs_quirks``: reproduce the reference's
#: observation-index bugs: CoupledHalfCheetah's and Humanoid's differ from the correct graph).
TASKS: dict[str, Callable[..., TaskDef]] = {
    "HalfCheetah-2x3": lambda **kw: _half_cheetah("2x3"),
    "CoupledHalfCheetah-1p1": lambda **kw: _coupled_half_cheetah(**kw),
    "Ant-2x4": lambda **kw: _ant("2x4"),
    "Walker2d-2x3": lambda **kw: _walker2d("2x3"),
    "HalfCheetah-6x1": lambda **kw: _half_cheetah("6x1"),
    "Hopper-3x1": lambda **kw: _hopper("3x1"),
    "Ant-4x2": lambda **kw: _ant("4x2"),
    "Swimmer-2x1": lambda **kw: _swimmer("2x1"),
    "Humanoid-9|8": lambda **kw: _humanoid("9|8", **kw),
}

#: Gymnasium-Robotics ``(scenario, agent_conf)`` of each task (used by the equivalence tests).
REFERENCE_ARGS: dict[str, tuple[str, str]] = {
    "HalfCheetah-2x3": ("HalfCheetah", "2x3"),
    "CoupledHalfCheetah-1p1": ("CoupledHalfCheetah", "1p1"),
    "Ant-2x4": ("Ant", "2x4"),
    "Walker2d-2x3": ("Walker2d", "2x3"),
    "HalfCheetah-6x1": ("HalfCheetah", "6x1"),
    "Hopper-3x1": ("Hopper", "3x1"),
    "Ant-4x2": ("Ant", "4x2"),
    "Swimmer-2x1": ("Swimmer", "2x1"),
    "Humanoid-9|8": ("Humanoid", "9|8"),
}
