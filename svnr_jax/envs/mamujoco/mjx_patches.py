"""Scoped replacements of MJX functions where MJX 3.17 differs from MuJoCo 4.0 C (the reference): the
plane-capsule collider and the RK4 integrator.

Plane-capsule contact frame. Both simulators make two contacts per capsule-floor pair (one per cap sphere),
with the floor normal ``n`` as the frame's first axis. The pyramidal friction cone's edges lie along the
frame's two tangents, so the tangent's direction is part of the dynamics, not a convention:

* MuJoCo C (``mjc_PlaneCapsule`` + ``mju_makeFrame``): first tangent = the capsule axis with its normal
  component removed, normalized, at any steepness (only an exactly vertical capsule falls back to x);
* MJX 3.17 (``collision_primitive.plane_capsule``): the same while that projection is longer than 0.5,
  otherwise world y (capsule steeper than 60 degrees).

The Ant's ankles are often steeper than 60 degrees: there the two friction pyramids are rotated against
each other and ``qacc`` differs by up to 75 % (79 of 206 random Ant contact states, measured in
``tests/test_mamujoco.py``). :func:`plane_capsule` takes C's tangent; with it those steps agree with C as
other contact steps do (Ant one env step from 64 random reference states: max |Δqvel| 0.82 -> 1.3e-3,
max |Δqpos| 1.6e-2 -> 1.5e-4; with the RK4 below as well: 1.4e-5 / 3.3e-7, float32 rounding).

:func:`reference_functions` installs both (MJX's collision table entry, ``forward.rungekutta4``) for the
duration of a ``with`` block: every MJX call traced inside (our env's ``mjx.forward`` / ``mjx.step``) uses
them, everything traced outside is untouched (not thread-safe while tracing). Both are private MJX API;
``mujoco-mjx`` is pinned (pyproject.toml) and a missing entry raises instead of silently simulating MJX's
own functions.

RK4 on rotations. MuJoCo 4.0's ``mj_RungeKutta`` is a Runge-Kutta-Munthe-Kaas scheme for the rotational
degrees of freedom of free and ball joints, MJX 3.17's ``rungekutta4`` the textbook RK4 of earlier MuJoCo
versions (identical for hinge and slide joints). Found by recording MuJoCo 4.0's RK stages (``mjcb_control``
at each stage's ``mj_forward``) and fitting them: with a stage's rotation ``θ = a_i h u_{i-1}`` (its
position is ``q0 ⊗ exp(θ)``) and its local angular velocity ``ω_i``, the next stage and the final update
use ``u_i = ω_i + ½ θ × ω_i + 1/12 θ × (θ × ω_i)`` (the inverse of the exponential map's differential,
truncated after the third term) instead of ``ω_i``; the final rotation is ``q0 ⊗ exp(h Σ b_i u_i)``.
This reproduces C's stage and final quaternions to 1e-12 in float64, where the textbook rule is off by
1e-6 per stage and 2e-4 in the step's rotation at angular velocities ~2 rad/s (the source of the Ant's
remaining contact-step differences, whose stiff contacts amplify it). :func:`rungekutta4` implements it on
MJX's own ``forward`` / position integration / ``_advance``; :func:`reference_functions` also installs it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from svnr_jax.envs.mamujoco._mjx_import import import_mjx

import_mjx()  # load mujoco.mjx quietly (its warp-backend messages) before importing its submodules

from mujoco.mjx._src import collision_driver, collision_primitive, scan  # noqa: E402
from mujoco.mjx._src import forward as mjx_forward  # noqa: E402
from mujoco.mjx._src.types import GeomType, JointType  # noqa: E402

_PLANE_CAPSULE = (GeomType.PLANE, GeomType.CAPSULE)
#: below this projected-axis length the capsule counts as exactly vertical (C: ``mjMINVAL`` in float64;
#: float32 rounding of a unit axis leaves ~1e-7)
_VERTICAL = 1e-6


def _tangent(n: jax.Array, axis: jax.Array) -> jax.Array:
    """C's first tangent: ``axis`` minus its ``n`` component, normalized; x for an exactly vertical capsule."""
    t = axis - n * jnp.dot(n, axis)
    norm = jnp.linalg.norm(t)
    x = jnp.array([1.0, 0.0, 0.0], t.dtype)
    return jnp.where(norm < _VERTICAL, x, t / jnp.maximum(norm, _VERTICAL))


def plane_capsule(plane, cap) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Two contacts between a plane and a capsule (one per cap sphere), frames as MuJoCo C makes them.

    ``plane`` / ``cap``: MJX ``GeomInfo`` (``pos [3]``, ``mat [3, 3]``, ``size [3]``). Returns ``dist [2]``
    (signed gap), ``pos [2, 3]`` (midway between the surfaces) and ``frame [2, 3, 3]`` (rows: normal,
    tangent, normal × tangent)."""
    n, axis = plane.mat[:, 2], cap.mat[:, 2]
    t = _tangent(n, axis)
    frame = jnp.stack([n, t, jnp.cross(n, t)])
    radius, half = cap.size[0], cap.size[1]
    dists, poss = [], []
    for sign in (1.0, -1.0):
        center = cap.pos + sign * half * axis
        dist = jnp.dot(center - plane.pos, n) - radius  # signed gap between the sphere and the plane
        dists.append(dist)
        poss.append(center - n * (radius + 0.5 * dist))  # midway between the two surfaces
    return jnp.stack(dists), jnp.stack(poss), jnp.stack([frame, frame])


#: :func:`plane_capsule` as an MJX collision function (batched over geom pairs by MJX's ``collider``)
plane_capsule_reference_frame = collision_primitive.collider(ncon=2)(plane_capsule)


#: RK4 tableau (diagonal A, weights B, stage times C), as in MuJoCo's ``mj_RungeKutta``
_RK4_A = (0.5, 0.5, 1.0)
_RK4_B = (1.0 / 6.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 6.0)


def rotational_dofs(jnt_type, jnt_dofadr) -> np.ndarray:
    """``[k, 3]`` dof indices of the local angular velocities of the model's free and ball joints."""
    rows = []
    for typ, adr in zip(np.asarray(jnt_type), np.asarray(jnt_dofadr), strict=True):
        if typ == JointType.FREE:
            rows.append(np.arange(adr + 3, adr + 6))
        elif typ == JointType.BALL:
            rows.append(np.arange(adr, adr + 3))
    return np.asarray(rows, dtype=np.int32).reshape(-1, 3)


def dexp_inv(theta: jax.Array, omega: jax.Array) -> jax.Array:
    """``ω + ½ θ × ω + 1/12 θ × (θ × ω)``: the rotation-vector rate of ``q0 ⊗ exp(θ)`` whose body angular
    velocity is ``ω`` (third-order series, as MuJoCo 4.0; ``[..., 3]``)."""
    t_w = jnp.cross(theta, omega)
    return omega + 0.5 * t_w + jnp.cross(theta, t_w) / 12.0


def rungekutta4(m, d):
    """One RK4 step of MJX data ``d`` (``forward`` already applied) as MuJoCo 4.0 C takes it (module
    docstring): MJX's ``rungekutta4`` with the free/ball-joint rotations integrated on the rotation group."""
    h = m.opt.timestep
    rot = rotational_dofs(m.jnt_type, m.jnt_dofadr)
    d0 = d

    def integrate(qvel):
        fn = lambda *args: mjx_forward._integrate_pos(*args, dt=h)  # noqa: E731
        return scan.flat(m, fn, "jqv", "q", m.jnt_type, d0.qpos, qvel)

    def stage(carry, x):
        u, qacc, act_dot, u_sum, qacc_sum, act_dot_sum, d = carry
        a, b, t = x
        dq = a * u  # this stage's position: q0 (+) h·a·u_prev
        kqvel = d0.qvel + a * h * qacc
        kact = d0.act + a * h * act_dot
        d = mjx_forward.forward(m, d.replace(qpos=integrate(dq), qvel=kqvel, act=kact, time=t))
        u = kqvel
        if rot.size:
            u = u.at[rot].set(dexp_inv(h * dq[rot], kqvel[rot]))
        carry = (u, d.qacc, d.act_dot, u_sum + b * u, qacc_sum + b * d.qacc, act_dot_sum + b * d.act_dot, d)
        return carry, None

    b0 = _RK4_B[0]
    init = (d0.qvel, d0.qacc, d0.act_dot, b0 * d0.qvel, b0 * d0.qacc, b0 * d0.act_dot, d0)
    xs = (jnp.asarray(_RK4_A), jnp.asarray(_RK4_B[1:]), d0.time + h * jnp.asarray(_RK4_A))
    (_, _, _, u_sum, qacc_sum, act_dot_sum, d1), _ = jax.lax.scan(stage, init, xs, unroll=3)
    d = d1.replace(qpos=d0.qpos, qvel=d0.qvel, act=d0.act, time=d0.time)
    return mjx_forward._advance(m, d, act_dot_sum, qacc_sum, u_sum)


@contextlib.contextmanager
def reference_functions(capsule_frame: bool = True, rk4: bool = True) -> Iterator[None]:
    """Within the block, MJX collides planes with capsules by :func:`plane_capsule_reference_frame`
    (``capsule_frame``) and integrates RK4 models by :func:`rungekutta4` (``rk4``)."""
    table = getattr(collision_driver, "_COLLISION_FUNC", None)
    if table is None or _PLANE_CAPSULE not in table or not hasattr(mjx_forward, "rungekutta4"):
        raise RuntimeError(
            "mujoco.mjx._src: collision_driver._COLLISION_FUNC[(PLANE, CAPSULE)] or forward.rungekutta4 not "
            "found: this mujoco-mjx differs from the pinned 3.17.0; pass capsule_frame='mjx' and "
            "rk4_rotations='mjx' to simulate with MJX's own functions"
        )
    previous = table[_PLANE_CAPSULE], mjx_forward.rungekutta4
    if capsule_frame:
        table[_PLANE_CAPSULE] = plane_capsule_reference_frame
    if rk4:
        mjx_forward.rungekutta4 = rungekutta4
    try:
        yield
    finally:
        table[_PLANE_CAPSULE], mjx_forward.rungekutta4 = previous
