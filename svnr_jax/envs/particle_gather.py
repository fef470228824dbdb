"""Particle Gather (docs/environments.md; the paper describes it, the rules here are ours).

``N`` point agents move in the box ``[-1, 1]²`` towards one landmark of radius ``ρ``.

Dynamics (kinematic, ``dt = 1`` step): an agent's action ``u ∈ [-1, 1]²`` (clipped) is a velocity command;
its position becomes ``clip(p + max_speed · u, -1, 1)`` (default ``max_speed = 0.1`` box units per
step, so an agent crosses the box side in 20 steps). The velocity reported in the observation is the
effective one, ``p_new - p_old`` (zero along a wall the agent pushes against).

Reward per step (after moving), with ``d_i`` agent i's distance to the landmark centre and "inside"
meaning ``d_i <= ρ``: ``+10`` if every agent is inside, ``-5`` if some but not all are, otherwise
``-0.1 · mean_i d_i``. The relative-overgeneralization trap is to wait together just outside the
landmark: an agent entering alone is punished by -5.

Episodes last ``episode_length`` steps (default 25): ``truncated`` at the limit, never ``terminated``.
The landmark centre and the start positions are drawn uniformly in the box from the reset key (agents
may start inside the landmark). Start velocities are zero.

Observation of agent i (size ``2N + 4``): own position (2), own velocity (2), landmark centre minus own
position (2), then every other agent's position minus own position (2 each, other agents in index
order). Global state (size ``2N + 3``): all positions ``[N·2]`` (agent-major), the landmark centre (2),
and the elapsed fraction ``time / episode_length`` (1) so a critic can tell how much of the episode is
left. With ``relative_state=True`` [ours] (size ``5N + 3``) the landmark centre minus each position
``[N·2]`` and each agent's distance to the landmark minus ``ρ`` ``[N]`` (negative = inside) come before the
time fraction: the reward is a threshold on these distances, which a small critic MLP does not recover
from raw coordinates with the data of a short run (a 64-64 MLP regressing the reward on 12k uniform
transitions predicts 0.0 where the truth is -5 and 1.3 where it is +10; with these features -3.0 and 7.7).

``best_team_reward = 10``. ``best_return`` is ``None``: it depends on the start (at most
``10 · episode_length`` when every agent starts inside).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from svnr_jax.envs.base import Array, Env, EnvSpec, State
from svnr_jax.envs.registry import register


@struct.dataclass
class ParticleGatherState:
    """Internals of Particle Gather.

    Attributes:
      positions: ``[N, 2]`` agent positions in ``[-1, 1]²``.
      velocities: ``[N, 2]`` effective velocities of the last step (zero after reset).
      landmark: ``[2]`` landmark centre.
    """

    positions: Array
    velocities: Array
    landmark: Array


def _is_number(x: Any) -> bool:
    return not isinstance(x, bool) and isinstance(x, int | float | np.number) and bool(np.isfinite(x))


class ParticleGather(Env):
    """Particle Gather: ``N`` agents must all enter a landmark of radius ``rho`` at once.

    Args:
      num_agents: N >= 2.
      rho: landmark radius, in ``(0, 2√2)`` (the box diagonal).
      max_speed: distance moved per step at full action, > 0.
      episode_length: time limit in steps, >= 1.
      relative_state: append landmark-minus-position and distance-minus-rho features to the global state.
    """

    def __init__(self, num_agents: int = 2, rho: float = 0.2, max_speed: float = 0.1, episode_length: int = 25,
                 relative_state: bool = False):
        if isinstance(num_agents, bool) or not isinstance(num_agents, int | np.integer) or num_agents < 2:
            raise ValueError(f"particle_gather: num_agents must be an integer >= 2, got {num_agents!r}")
        if not _is_number(rho) or not 0.0 < rho < 2.0 * np.sqrt(2.0):
            raise ValueError(f"particle_gather: rho must be a number in (0, 2*sqrt(2)), got {rho!r}")
        if not _is_number(max_speed) or max_speed <= 0:
            raise ValueError(f"particle_gather: max_speed must be a number > 0, got {max_speed!r}")
        if isinstance(episode_length, bool) or not isinstance(episode_length, int | np.integer) \
                or episode_length < 1:
            raise ValueError(f"particle_gather: episode_length must be an integer >= 1, got {episode_length!r}")
        if not isinstance(relative_state, bool):
            raise ValueError(f"particle_gather: relative_state must be true or false, got {relative_state!r}")
        n = int(num_agents)
        self.relative_state = relative_state
        self.rho = float(rho)
        self.max_speed = float(max_speed)
        self.spec = EnvSpec(
            name="particle_gather",
            num_agents=n,
            obs_sizes=(2 * n + 4,) * n,
            action_sizes=(2,) * n,
            state_size=(5 if relative_state else 2) * n + 3,
            action_low=-1.0,
            action_high=1.0,
            episode_length=int(episode_length),
            best_team_reward=10.0,
            best_return=None,
        )

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return {"num_agents": 2, "rho": 0.2, "max_speed": 0.1, "episode_length": 25, "relative_state": False}

    def reward(self, positions: Array, landmark: Array) -> Array:
        """Team reward of a configuration.

        Args:
          positions: ``[N, 2]``.
          landmark: ``[2]``.

        Returns:
          ``[]`` float32: 10 if all inside, -5 if some, else ``-0.1 · mean distance``.
        """
        dist = jnp.linalg.norm(positions - landmark, axis=-1)
        inside = dist <= self.rho
        return jnp.where(
            jnp.all(inside), 10.0, jnp.where(jnp.any(inside), -5.0, -0.1 * jnp.mean(dist))
        ).astype(jnp.float32)

    def observe(self, es: ParticleGatherState) -> Array:
        """``[N, 2N + 4]`` per-agent observations (layout in the module docstring)."""
        n = self.spec.num_agents
        rel = es.positions[None, :, :] - es.positions[:, None, :]  # [i, j] = p_j - p_i
        # Drop the diagonal: agent i's row lists the agents j != i in index order.
        others = np.array([[j for j in range(n) if j != i] for i in range(n)], np.int32)  # [N, N-1]
        rel_others = jnp.take_along_axis(rel, others[:, :, None], axis=1).reshape(n, 2 * (n - 1))
        return jnp.concatenate(
            [es.positions, es.velocities, es.landmark[None, :] - es.positions, rel_others], axis=-1
        )

    def global_state(self, es: ParticleGatherState, time: Array) -> Array:
        """``[2N + 3]``: positions (agent-major), landmark, ``time / episode_length``; with ``relative_state``
        ``[5N + 3]``: positions, landmark, landmark minus each position (agent-major), each agent's distance
        to the landmark minus ``ρ`` (negative = inside), ``time / episode_length``."""
        frac = (time / self.spec.episode_length).astype(jnp.float32)
        if not self.relative_state:
            return jnp.concatenate([es.positions.reshape(-1), es.landmark, frac[None]])
        rel = es.landmark[None, :] - es.positions
        margin = jnp.linalg.norm(rel, axis=-1) - self.rho
        return jnp.concatenate([es.positions.reshape(-1), es.landmark, rel.reshape(-1), margin, frac[None]])

    def reset(self, key: Array) -> State:
        """Draw the landmark centre and start positions uniformly in ``[-1, 1]²``."""
        n = self.spec.num_agents
        k_land, k_pos = jax.random.split(key)
        landmark = jax.random.uniform(k_land, (2,), jnp.float32, -1.0, 1.0)
        positions = jax.random.uniform(k_pos, (n, 2), jnp.float32, -1.0, 1.0)
        es = ParticleGatherState(positions, jnp.zeros((n, 2), jnp.float32), landmark)
        time = jnp.zeros((), jnp.int32)
        return State(
            env_state=es,
            obs=self.observe(es),
            global_state=self.global_state(es, time),
            reward=jnp.zeros((), jnp.float32),
            terminated=jnp.zeros((), bool),
            truncated=jnp.zeros((), bool),
            time=time,
            info={},
        )

    def step(self, state: State, actions: Array, key: Array) -> State:
        """Move every agent by ``max_speed · clip(actions)``, clip to the box, pay the team reward.

        Args:
          state: current state.
          actions: ``[N, 2]`` velocity commands in ``[-1, 1]`` (clipped).
          key: unused (the dynamics are deterministic).

        Returns:
          Next state; ``truncated`` once ``time == episode_length``; ``info`` passed through.
        """
        del key
        es = state.env_state
        actions, bad = self.check_actions(actions)
        u = jnp.clip(actions, -1.0, 1.0)
        positions = jnp.clip(es.positions + self.max_speed * u, -1.0, 1.0)
        es = es.replace(positions=positions, velocities=positions - es.positions)
        time = state.time + 1
        return state.replace(
            env_state=es,
            obs=self.observe(es),
            global_state=self.global_state(es, time),
            reward=jnp.where(bad, jnp.nan, self.reward(positions, es.landmark)),
            terminated=jnp.zeros((), bool),
            truncated=time >= self.spec.episode_length,
            time=time,
        )


register("particle_gather", ParticleGather)

__all__ = ["ParticleGather", "ParticleGatherState"]
