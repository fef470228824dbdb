"""A uniform replay buffer held in device memory, pure ``init / add / sample`` over a pytree state.

Used inside the training ``lax.scan`` (fixed shapes: the capacity is static). We do not use flashbax:
it is not in our tested dependency set (it pins its own jax/chex ranges and would add a dependency for
~40 lines of code), and a flat circular buffer with uniform sampling is all the off-policy algorithms need.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
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


__all__ = ["BufferState", "Transition", "add", "init", "sample"]
