"""A uniform replay buffer held in device memory, pure ``init / add / sample`` over a pytree state.

Used inside the training ``lax.scan`` (fixed shapes: the capacity is static). We do not use flashbax:
it is not in our tested dependency set (it pins its own jax/chex ranges and would add a dependency for
~40 lines of code), and a flat circular buffer with uniform sampling is all the off-policy algorithms need.
:func:`sample_nstep` draws n-step transitions from the same buffer (HASAC), using the loop's layout: each
iteration adds the B envs' transitions contiguously, so an env's next transition is B entries later.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from svnr_jax.types import Array, PRNGKey


class Transition(NamedTuple):
    """One transition of the team (a batch carries a leading ``[B]`` axis on every field).

    Attributes:
      obs: ``[N, O]``. state: ``[S]`` global state. action: ``[N, A]`` in ``[-1, 1]``. reward: ``[]``
      (unscaled). next_obs: ``[N, O]``. next_state: ``[S]``. terminal: ``[]`` float, 1 = no bootstrap.
    """

    obs: Array
    state: Array
    action: Array
    reward: Array
    next_obs: Array
    next_state: Array
    terminal: Array


@struct.dataclass
class BufferState:
    """Circular buffer.

    Attributes:
      data: pytree whose leaves have a leading ``[capacity]`` axis.
      position: ``[]`` int32 next write index.
      size: ``[]`` int32 number of valid items (≤ capacity).
    """

    data: Any
    position: Array
    size: Array

    @property
    def capacity(self) -> int:
        return jax.tree.leaves(self.data)[0].shape[0]


def init(example: Any, capacity: int) -> BufferState:
    """An empty buffer for items shaped like ``example`` (a pytree of arrays without the capacity axis)."""
    data = jax.tree.map(lambda x: jnp.zeros((capacity, *jnp.shape(x)), jnp.asarray(x).dtype), example)
    return BufferState(data, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))


def add(buffer: BufferState, items: Any) -> BufferState:
    """Write a batch of items (leaves ``[B, ...]``, B ≤ capacity) at the write position, wrapping around."""
    cap = buffer.capacity
    b = jax.tree.leaves(items)[0].shape[0]
    idx = (buffer.position + jnp.arange(b)) % cap
    data = jax.tree.map(lambda d, x: d.at[idx].set(x.astype(d.dtype)), buffer.data, items)
    return BufferState(data, (buffer.position + b) % cap, jnp.minimum(buffer.size + b, cap))


def sample(buffer: BufferState, key: PRNGKey, batch_size: int) -> Any:
    """``batch_size`` items drawn uniformly with replacement from the valid part (buffer must be non-empty)."""
    idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(buffer.size, 1))
    return jax.tree.map(lambda d: d[idx], buffer.data)


class NStepTransition(NamedTuple):
    """An n-step transition (a batch carries a leading ``[B]`` axis on every field).

    The first six fields read as in :class:`Transition`, over m ≤ n consecutive steps of one env:

    Attributes:
      obs, state, action: of the first step. reward: ``Σ_{k<m} γ^k r_k``. next_obs, next_state: reached after
      step m. terminal: of step m (1 = no bootstrap). discount: ``γ^m``, the bootstrap factor of the target
      ``reward + discount · (1 − terminal) · V(next)``. steps: m ``[]`` int32.
    """

    obs: Array
    state: Array
    action: Array
    reward: Array
    next_obs: Array
    next_state: Array
    terminal: Array
    discount: Array
    steps: Array


def nstep_at(buffer: BufferState, idx: Array, n: int, gamma: float, num_envs: int) -> NStepTransition:
    """The n-step transitions that start at buffer indices ``idx [K]``.

    Layout assumed (the training loop's): each iteration adds the B = ``num_envs`` envs' transitions
    contiguously, so an env's next transition sits ``num_envs`` entries (circularly) after its current one.
    The chain from ``idx`` follows that stride and stops after m ≤ n steps, at the first step that

    * terminated (``terminal = 1``), or
    * is followed by a reset (a truncation): the env's next entry does not start where this one ended, i.e. its
      ``obs`` / ``state`` are not bit-equal to this entry's ``next_obs`` / ``next_state``. A non-ending step stores
      the very arrays the next step starts from (``AutoReset`` selects them with ``where``), so this test is
      exact. A reset to bit-identical obs and state cannot be told apart from a continuation; for a Markov
      (obs, state) the continuation from it is then distributed the same, so the return stays unbiased. A
      ``num_envs`` that does not match the data makes (almost) every link fail: the chain shrinks to m = 1
      instead of mixing envs (``steps`` shows it), or
    * has no written successor (only when the buffer holds ≤ (n − 1)·B entries; :func:`sample_nstep` otherwise
      starts chains only where all n − 1 successors are written).

    Args:
      buffer: buffer of :class:`Transition`. idx: ``[K]`` int start indices (valid entries).
      n: steps at most (static, >= 1). gamma: discount γ (static). num_envs: B (static, >= 1).
    Returns:
      :class:`NStepTransition` with leading ``[K]``.
    """
    d: Transition = buffer.data
    cap = buffer.capacity
    k = idx.shape[0]
    steps = jnp.arange(n)
    chain = (idx[:, None] + steps[None, :] * num_envs) % cap  # [K, n]: the env's entries
    oldest = (buffer.position - buffer.size) % cap
    age = (idx - oldest) % cap  # 0 = oldest valid entry
    written = age[:, None] + steps[None, :] * num_envs <= buffer.size - 1  # [K, n]
    if n > 1:
        cur, nxt = chain[:, :-1], chain[:, 1:]

        def same(a: Array, b: Array) -> Array:  # bit-equal per link, over every non-link axis
            return jnp.all((a == b).reshape(*a.shape[:2], -1), axis=-1)

        link = (same(d.obs[nxt], d.next_obs[cur]) & same(d.state[nxt], d.next_state[cur])
                & (d.terminal[cur] == 0) & written[:, 1:])  # [K, n-1]: step j+1 continues step j
        alive = jnp.concatenate([jnp.ones((k, 1), bool), jnp.cumprod(link, axis=1).astype(bool)], axis=1)
    else:
        alive = jnp.ones((k, 1), bool)
    m = jnp.sum(alive, axis=1).astype(jnp.int32)  # [K] in [1, n]
    powers = jnp.asarray(np.float32(gamma) ** np.arange(n + 1, dtype=np.float32))  # γ^0..γ^n (0^0 = 1)
    reward = jnp.sum(jnp.where(alive, powers[:n] * d.reward[chain], 0.0), axis=1)
    last = chain[jnp.arange(k), m - 1]
    return NStepTransition(obs=d.obs[idx], state=d.state[idx], action=d.action[idx], reward=reward,
                           next_obs=d.next_obs[last], next_state=d.next_state[last], terminal=d.terminal[last],
                           discount=powers[m], steps=m)


def nstep_starts(buffer: BufferState, u: Array, n: int, num_envs: int) -> Array:
    """Map ``u`` in ``[0, count)`` one-to-one onto the start indices whose n − 1 successors are written, where
    ``count = size − (n − 1)·B`` (all entries but the newest (n − 1)·B); the identity when n = 1 or the buffer is not
    full. If ``count < 1`` (too little data), ``u`` in ``[0, size)`` maps onto every valid entry.

    The excluded newest entries occupy the circular range ``[position − E, position)`` (E = (n − 1)·B, or 0 in the
    fallback); the valid part of the buffer is ``[0, size)`` until it is full (then ``position = size``)."""
    e = (n - 1) * num_envs
    e = jnp.where(buffer.size - e >= 1, e, 0)
    p = buffer.position
    return jnp.where(u < p - e, u, u + jnp.minimum(e, p))


def sample_nstep(buffer: BufferState, key: PRNGKey, batch_size: int, n: int, gamma: float,
                 num_envs: int) -> NStepTransition:
    """``batch_size`` n-step transitions (:func:`nstep_at`) whose start is drawn uniformly, with replacement,
    among the entries that have their n − 1 successors of the same env written after them (so no chain is cut
    by the write frontier; chains are cut only by episode ends).

    With n = 1 this is :func:`sample` exactly (the same indices for the same key, ``reward`` and ``next_*``
    of the one step, ``discount = γ``, ``steps = 1``).

    Args:
      buffer: non-empty buffer of :class:`Transition` written B = ``num_envs`` entries per iteration.
      key: PRNG key. batch_size, n, gamma, num_envs: static.
    """
    count = buffer.size - (n - 1) * num_envs
    hi = jnp.where(count >= 1, count, buffer.size)
    u = jax.random.randint(key, (batch_size,), 0, jnp.maximum(hi, 1))
    return nstep_at(buffer, nstep_starts(buffer, u, n, num_envs), n, gamma, num_envs)


__all__ = ["BufferState", "NStepTransition", "Transition", "add", "init", "nstep_at", "nstep_starts", "sample",
           "sample_nstep"]
