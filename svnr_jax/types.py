"""Shared type aliases and the axis order used throughout svnr-jax.

Axis order, written once: ``[T, B, N, M, D]`` — time, env batch, agent, particle, action dim.
Particle sets used by SVGD/negotiation are stored particle-major: ``[M, N, d]`` (M particles of a
joint action of N agents with d action entries each).
"""

from __future__ import annotations

import jax

Array = jax.Array
PRNGKey = jax.Array
