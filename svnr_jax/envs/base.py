"""The multi-agent environment API shared by every environment and algorithm in svnr-jax.

Conventions (one env API for games, Particle Gather and the MJX MaMuJoCo tasks):

* Pure functions with explicit keys: ``env.reset(key) -> State`` and
  ``env.step(state, actions, key) -> State``. Both are jittable and vmappable; the env object is
  static Python configuration (closed over, never traced).
* Agents are the leading array axis: ``obs [N, O]``, ``actions [N, A]``, one scalar team ``reward``.
  Heterogeneous agents are zero-padded to the largest size; ``spec.obs_mask [N, O]`` and
  ``spec.action_mask [N, A]`` say which entries are real. Padded action entries are ignored by the env,
  padded observation entries are zero.
* ``global_state [S]`` is the centralised state for critics.
* Raw envs take actions in their native bounds ``[spec.action_low, spec.action_high]``; wrap with
  :class:`svnr_jax.envs.wrappers.RescaleActions` to act in ``[-1, 1]`` (what tanh policies emit).
* ``terminated`` (a true terminal state: no bootstrapping) and ``truncated`` (time limit: bootstrap)
  are separate flags. After an automatic reset (``AutoReset`` wrapper) the observation and global state
  of the step that ended the episode stay available in ``state.info["final_obs"]`` and
  ``state.info["final_global_state"]``.
* ``step`` checks its actions with :meth:`Env.check_actions`: a wrong shape is a ``ValueError``; a non-finite
  action entry is taken as 0 and the step pays a NaN reward (never a good-looking one).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np
from flax import struct

Array = jax.Array


@struct.dataclass
class State:
    """One environment's state (a pytree). Batched envs carry a leading ``[B]`` axis on every leaf.

    Attributes:
      env_state: env-specific internals (positions, MJX data, ...).
      obs: ``[N, O]`` per-agent observations (zero-padded).
      global_state: ``[S]`` centralised state.
      reward: ``[]`` team reward of the last transition (0 after reset).
      terminated: ``[]`` bool, the last transition reached a terminal state.
      truncated: ``[]`` bool, the episode hit its time limit without terminating.
      time: ``[]`` int32, steps taken in the current episode.
      info: dict of extra arrays (wrappers add ``final_obs``, episode statistics, ...).
    """

    env_state: Any
    obs: Array
    global_state: Array
    reward: Array
    terminated: Array
    truncated: Array
    time: Array
    info: dict = struct.field(default_factory=dict)

    @property
    def done(self) -> Array:
        """Episode ended (terminated or truncated)."""
        return self.terminated | self.truncated


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """Static metadata of an environment.

    Attributes:
      name: registry name.
      num_agents: N.
      obs_sizes: per-agent observation sizes (before padding).
      action_sizes: per-agent action sizes (before padding).
      state_size: size of the global state S.
      action_low, action_high: native action bounds (scalars, the same for every entry).
      episode_length: time limit in steps (truncation).
      best_team_reward: best achievable per-step team reward where known (else ``None``).
      best_return: best achievable episode return where known (else ``None``).
    """

    name: str
    num_agents: int
    obs_sizes: tuple[int, ...]
    action_sizes: tuple[int, ...]
    state_size: int
    action_low: float
    action_high: float
    episode_length: int
    best_team_reward: float | None = None
    best_return: float | None = None

    def __post_init__(self):
        if len(self.obs_sizes) != self.num_agents or len(self.action_sizes) != self.num_agents:
            raise ValueError(
                f"EnvSpec {self.name!r}: obs_sizes {self.obs_sizes} and action_sizes {self.action_sizes} "
                f"must have num_agents={self.num_agents} entries"
            )

    @property
    def obs_dim(self) -> int:
        """Padded observation size O."""
        return max(self.obs_sizes)

    @property
    def action_dim(self) -> int:
        """Padded action size A."""
        return max(self.action_sizes)

    @property
    def obs_mask(self) -> np.ndarray:
        """``[N, O]`` bool, True where an observation entry is real."""
        return np.arange(self.obs_dim)[None, :] < np.asarray(self.obs_sizes)[:, None]

    @property
    def action_mask(self) -> np.ndarray:
        """``[N, A]`` bool, True where an action entry is real."""
        return np.arange(self.action_dim)[None, :] < np.asarray(self.action_sizes)[:, None]

    @property
    def joint_action_dim(self) -> int:
        """D = total number of real action entries (used by the soft value's D·log 2 term)."""
        return int(sum(self.action_sizes))


class Env:
    """Base class of a multi-agent environment. Subclasses set ``self.spec`` and implement
    ``reset`` and ``step``. Instances are immutable configuration; all state lives in :class:`State`.
    """

    spec: EnvSpec
    #: ``reset`` costs about as much as a step (physics envs: MaMuJoCo's ``make_data`` + ``forward``).
    #: :func:`~svnr_jax.envs.wrappers.wrap_for_training` then resets from a pool refilled by a few resets per batch
    #: step (:class:`~svnr_jax.envs.wrappers.PooledAutoReset`) instead of computing a reset for every env at every
    #: step (:class:`~svnr_jax.envs.wrappers.AutoReset`, kept for cheap resets: the games end every step).
    expensive_reset: bool = False

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        """The config keys ``make(name, **config)`` accepts, with their defaults."""
        return {}

    def reset(self, key: Array) -> State:
        raise NotImplementedError

    def step(self, state: State, actions: Array, key: Array) -> State:
        raise NotImplementedError

    def check_actions(self, actions: Array) -> tuple[Array, Array]:
        """What every env's ``step`` does first with ``actions``.

        The shape must be ``[N, A]`` (checked when traced: shapes are static) — anything else is a
        ``ValueError`` naming the expected and the given shape. A non-finite real entry (NaN, ±inf) never looks
        like a good action: the step is taken with that entry set to 0 (the state stays finite) and the step's
        reward is NaN, which the training runner reports and stops on.

        Returns:
          ``(finite actions [N, A] (float, the input's precision), bad [] bool)``.
        """
        import jax.numpy as jnp

        want = (self.spec.num_agents, self.spec.action_dim)
        shape = tuple(getattr(actions, "shape", ()))
        if shape != want:
            raise ValueError(f"{self.spec.name}: actions must have shape [N, A] = {list(want)}, got {list(shape)}")
        a = jnp.asarray(actions)
        a = a if jnp.issubdtype(a.dtype, jnp.floating) else a.astype(jnp.float32)
        finite = jnp.isfinite(a)
        bad = jnp.any(~finite & jnp.asarray(self.spec.action_mask))
        return jnp.where(finite, a, 0.0), bad

    @property
    def unwrapped(self) -> Env:
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec.name})"


def pad_rows(rows: list[Array], width: int) -> Array:
    """Stack 1-D arrays of different lengths into ``[len(rows), width]``, zero-padded."""
    import jax.numpy as jnp

    return jnp.stack([jnp.pad(r, (0, width - r.shape[0])) for r in rows])
