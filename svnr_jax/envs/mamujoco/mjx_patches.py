"""Scoped changes to MJX's collision functions where MJX 3.17 differs from MuJoCo C (the reference).

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
max |Δqpos| 1.6e-2 -> 1.5e-4).

:func:`reference_collisions` installs it in MJX's collision table for the duration of a ``with`` block:
every MJX call traced inside (our env's ``mjx.forward`` / ``mjx.step``) uses it, everything traced outside
is untouched. The table is private MJX API; ``mujoco-mjx`` is pinned (pyproject.toml) and a missing entry
raises instead of silently simulating MJX's frame.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import jax
import jax.numpy as jnp
from mujoco.mjx._src import collision_driver, collision_primitive
from mujoco.mjx._src.types import GeomType

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


@contextlib.contextmanager
def reference_collisions() -> Iterator[None]:
    """Within the block, MJX collides planes with capsules by :func:`plane_capsule_reference_frame`."""
    table = getattr(collision_driver, "_COLLISION_FUNC", None)
    if table is None or _PLANE_CAPSULE not in table:
        raise RuntimeError(
            "mujoco.mjx._src.collision_driver._COLLISION_FUNC[(PLANE, CAPSULE)] not found: this mujoco-mjx "
            "differs from the pinned 3.17.0; pass capsule_frame='mjx' to simulate MJX's own contact frame"
        )
    previous = table[_PLANE_CAPSULE]
    table[_PLANE_CAPSULE] = plane_capsule_reference_frame
    try:
        yield
    finally:
        table[_PLANE_CAPSULE] = previous
