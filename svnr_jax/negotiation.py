"""Negotiation: message-passing SVGD over negotiation sets (docs/algorithms.md).

``negotiate`` moves M joint-action particles ``[M, N, d]`` for K rounds; in each round agent i moves
its own coordinates along ``φ_i``, the SVGD direction whose kernel only sees the coordinates of its
negotiation set C_i. With strictly nested sets (``C_i = {1..i}``, the default) the agreement equals the
target joint density (the SVNR paper's Theorem); ``independent`` sets (``C_i = {i}``) do not reason
about teammates and lose the correlation between agents.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from svnr_jax.kernels import masked_svgd_direction, tanh_correction
from svnr_jax.types import Array

TOPOLOGIES = ("nested", "full", "independent", "ring")
ORDERS = ("jacobi", "gauss_seidel")


class NegotiationResult(NamedTuple):
    """Output of :func:`negotiate`.

    Attributes:
      particles: ``[M, N, d]`` final joint-action particles.
      mean_phi_norm: ``[K]`` per round, mean over particles and agents of ``||φ_i||``.
      max_phi_norm: ``[K]`` per round, max over particles and agents of ``||φ_i||``.
      rounds_used: ``[]`` int32, rounds whose update was applied (stops counting at agreement).
      converged: ``[]`` bool, agreement (``max ||φ|| < tol`` at the start of a round) was observed
        within K rounds. φ is not re-evaluated after the last round (that would cost one more score
        and direction pass), so an agreement reached by the very last update is reported as False.
      nonfinite_scores: ``[K]`` int32, per round, particles whose score was non-finite (NaN/inf): such a
        score contributes no drive (it is taken as 0, the particle still repels the others), so one bad
        particle cannot turn every particle NaN through the kernel.
    """

    particles: Array
    mean_phi_norm: Array
    max_phi_norm: Array
    rounds_used: Array
    converged: Array
    nonfinite_scores: Array | None = None


def topology_mask(topology: str | Any, num_agents: int) -> np.ndarray:
    """The ``[N, N]`` bool negotiation-set mask (row i = C_i) of a named topology or a user mask.

    Names: ``nested`` (C_i = {1..i}), ``full`` (C_i = all agents), ``independent`` (C_i = {i}),
    ``ring`` (C_i = {i-1, i}, wrapping around: C_1 = {N, 1}).

    Raises:
      ValueError: unknown name, or a mask of the wrong shape or with a false diagonal entry.
    """
    n = num_agents
    if isinstance(topology, str):
        if topology == "nested":
            return np.tril(np.ones((n, n), dtype=bool))
        if topology == "full":
            return np.ones((n, n), dtype=bool)
        if topology == "independent":
            return np.eye(n, dtype=bool)
        if topology == "ring":
            return np.eye(n, dtype=bool) | np.roll(np.eye(n, dtype=bool), -1, axis=1)
        raise ValueError(f"unknown topology {topology!r}; allowed: {list(TOPOLOGIES)} or a boolean [N, N] mask")
    try:
        mask = np.asarray(topology)
    except Exception as e:  # a tracer or something unconvertible
        raise ValueError(f"topology mask must be a concrete boolean [N, N] array, got {type(topology)}") from e
    if mask.shape != (n, n):
        raise ValueError(f"topology mask has shape {mask.shape}; expected (N, N) = ({n}, {n})")
    if mask.dtype != bool and not np.isin(mask, (0, 1)).all():
        raise ValueError("topology mask must be boolean (or 0/1)")
    mask = mask.astype(bool)
    if not mask.diagonal().all():
        missing = np.flatnonzero(~mask.diagonal()).tolist()
        raise ValueError(f"topology mask diagonal must be True (i ∈ C_i); false for agents {missing}")
    return mask


def negotiate(
    log_prob_fn: Callable[..., Array],
    particles: Array,
    *,
    topology: str | Any = "nested",
    num_rounds: int = 10,
    step_size: float | Array = 0.1,
    bandwidth: float | Array | None = None,
    tol: float | Array = 1e-3,
    order: str = "jacobi",
    squash_correction: bool = False,
    args: tuple = (),
) -> NegotiationResult:
    """Run K negotiation rounds of message-passing SVGD on joint-action particles (docs/algorithms.md).

    One round (``order="jacobi"``): every agent at once, ``u_i ← u_i + ε φ_i(u)`` with
    ``φ_i(u) = (1/M) Σ_m [k_i(y^m, u) ∇_{y^m_i} log p(y^m) + ∇_{y^m_i} k_i(y^m, u)]`` and k_i the RBF
    kernel on the coordinates of C_i. ``order="gauss_seidel"`` moves agents one after another in index
    order, each seeing its predecessors' new actions (N score evaluations per round). Rounds after
    agreement (``max ||φ|| < tol``) leave the particles unchanged.

    Jittable: call it inside your own ``jax.jit``/``jax.vmap`` (the topology, sizes, K, order and
    ``log_prob_fn`` are static; ε, tol, bandwidth, particles and ``args`` may be traced). Called
    eagerly it uses a compiled cache keyed on the static configuration, so calling it again with new
    values of the same shapes does not retrace. Batched over states::

        def negotiate_one(state, parts):
            return negotiate(lambda u: q_fn(state, u) / alpha, parts, num_rounds=10)
        results = jax.jit(jax.vmap(negotiate_one))(states, particles)   # particles [B, M, N, d]

    or, avoiding a closure, ``negotiate(q_over_alpha, parts, args=(state,))`` with
    ``q_over_alpha(u, state)``.

    Args:
      log_prob_fn: maps ONE joint action ``[N, d]`` (and ``*args``) to a scalar log-density, e.g.
        ``Q(s, u) / α``. Scores are ``jax.grad`` of it, vmapped over particles.
      particles: ``[M, N, d]`` initial particles, M ≥ 2.
      topology: ``"nested"`` (default), ``"full"``, ``"independent"``, ``"ring"``, or a boolean
        ``[N, N]`` mask whose row i is C_i (diagonal true).
      num_rounds: K ≥ 1.
      step_size: ε > 0.
      bandwidth: kernel bandwidth h (float or ``[N]``), ``None`` = per-agent median heuristic.
      tol: agreement threshold on ``max ||φ_i||``.
      order: ``"jacobi"`` (all agents at once) or ``"gauss_seidel"`` (agent by agent).
      squash_correction: add ``Σ log(1 - u² + 1e-6)`` to the log-density (particles in tanh space).
      args: extra (traceable) arguments passed to ``log_prob_fn(u, *args)``.
    Returns:
      :class:`NegotiationResult`.
    Raises:
      ValueError: particles not rank 3 or fewer than 2 particles, unknown topology / bad mask,
        non-positive step size, non-positive or non-integer rounds, unknown order, negative tol,
        non-finite initial particles (checked when the particles are concrete, i.e. outside jit).
    """
    particles = jnp.asarray(particles) if not isinstance(particles, jax.Array) else particles
    if particles.ndim != 3:
        raise ValueError(f"particles must have rank 3 [M, N, d]; got shape {tuple(particles.shape)}")
    if not jnp.issubdtype(particles.dtype, jnp.floating):
        raise ValueError(f"particles must be floating point; got dtype {particles.dtype} (e.g. use .astype(float))")
    m, n, d = particles.shape
    if m < 2:
        raise ValueError(f"negotiation needs at least 2 particles (M >= 2); got M = {m}")
    if n < 1 or d < 1:
        raise ValueError(f"particles need at least one agent and one action entry; got N = {n}, d = {d}")
    for name, value in (("step_size", step_size), ("tol", tol)):
        if np.ndim(value) != 0:
            raise ValueError(f"{name} must be a scalar; got shape {np.shape(value)}")

    if isinstance(num_rounds, bool) or not isinstance(num_rounds, int | np.integer) or num_rounds < 1:
        raise ValueError(f"num_rounds must be a positive int; got {num_rounds!r}")
    if order not in ORDERS:
        raise ValueError(f"unknown order {order!r}; allowed: {list(ORDERS)}")
    _check_positive_scalar("step_size", step_size, allow_zero=False)
    _check_positive_scalar("tol", tol, allow_zero=True)
    if bandwidth is not None:
        _check_positive_scalar("bandwidth", bandwidth, allow_zero=False)
    if not isinstance(particles, jax.core.Tracer) and not np.all(np.isfinite(np.asarray(particles))):
        bad = int(np.sum(~np.isfinite(np.asarray(particles))))
        raise ValueError(f"initial particles contain {bad} non-finite value(s) (NaN or inf)")
    mask = topology_mask(topology, n)
    mask_key = tuple(map(tuple, mask.tolist()))
    return _negotiate_jit(
        log_prob_fn,
        mask_key,
        int(num_rounds),
        order,
        bool(squash_correction),
        bandwidth is None,
        particles,
        jnp.asarray(step_size, particles.dtype),
        jnp.asarray(tol, particles.dtype),
        jnp.asarray(0.0 if bandwidth is None else bandwidth, particles.dtype),
        tuple(args),
    )


def _check_positive_scalar(name: str, value: Any, *, allow_zero: bool) -> None:
    if isinstance(value, jax.core.Tracer):
        return
    arr = np.asarray(value, dtype=float)
    ok = np.all(np.isfinite(arr)) and (np.all(arr >= 0) if allow_zero else np.all(arr > 0))
    if not ok:
        rule = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be finite and {rule}; got {value!r}")


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4, 5))
def _negotiate_jit(
    log_prob_fn, mask_key, num_rounds, order, squash, auto_bandwidth, particles, step_size, tol, bw, args
):
    mask = np.array(mask_key, dtype=bool)  # concrete: the kernel sums each negotiation set's blocks statically
    n = mask.shape[0]
    bandwidth = None if auto_bandwidth else bw

    def log_p(u):
        lp = log_prob_fn(u, *args)
        if jnp.shape(lp) != ():  # checked when traced
            raise ValueError(f"log_prob_fn must map one joint action [N, d] = {list(u.shape)} to a scalar; it "
                             f"returned shape {jnp.shape(lp)}")
        return lp + tanh_correction(u) if squash else lp

    score_fn = jax.vmap(jax.grad(log_p))

    def direction(u, agents=None):
        scores = score_fn(u)
        ok = jnp.all(jnp.isfinite(scores), axis=(1, 2))  # [M]: a non-finite score gives no drive
        scores = jnp.where(ok[:, None, None], scores, 0.0)
        return masked_svgd_direction(u, scores, mask, bandwidth=bandwidth, agents=agents), jnp.sum(~ok)

    def one_round(carry, _):
        u, done, used = carry
        if order == "jacobi":
            phi, bad = direction(u)
            new_u = u + step_size * phi
        else:  # gauss_seidel: agent i moves after agents < i have moved (only φ_i is computed for it).
            new_u = u
            phis, bad = [], jnp.zeros((), jnp.int32)
            for i in range(n):
                phi_i, bad_i = direction(new_u, agents=(i,))
                phi_i = phi_i[:, 0]
                phis.append(phi_i)
                bad = jnp.maximum(bad, bad_i)
                new_u = new_u.at[:, i].add(step_size * phi_i)
            phi = jnp.stack(phis, axis=1)
        norms = jnp.linalg.norm(phi, axis=-1)  # [M, N]
        max_norm = jnp.max(norms)
        stop = done | (max_norm < tol)  # agreement: φ at the current particles is below tol
        u = jnp.where(stop, u, new_u)
        used = used + jnp.where(stop, 0, 1).astype(jnp.int32)
        return (u, stop, used), (jnp.mean(norms), max_norm, bad.astype(jnp.int32))

    init = (particles, jnp.asarray(False), jnp.asarray(0, jnp.int32))
    (final, converged, used), (mean_norms, max_norms, bad) = jax.lax.scan(one_round, init, None, length=num_rounds)
    return NegotiationResult(final, mean_norms, max_norms, used, converged, bad)


def init_particles(key: Array, num_particles: int, num_agents: int, action_dim: int, *, scale: float = 1.0) -> Array:
    """Gaussian initial particles ``[M, N, d]`` with standard deviation ``scale``."""
    return scale * jax.random.normal(key, (num_particles, num_agents, action_dim))


__all__ = ["NegotiationResult", "TOPOLOGIES", "init_particles", "negotiate", "topology_mask"]
