"""One-step cooperative games with continuous actions (docs/environments.md): differential games and matrix games.

Every game here is a one-step episode: ``reset`` gives a constant observation (ones ``[N, 1]``), one
``step`` pays the team reward of the joint action and ends the episode with ``terminated=True``,
``truncated=False``. The state carries nothing, so the key is unused.

Differential games (native actions in ``[-10, 10]``, one action entry per agent; actions outside are
clipped). With ``a = actions[:, 0]`` (``[N]``) and the sums running over agents:

* ``max_of_two`` [ref PR2 §5.2, two agents]:
  ``f1 = 0.8 · (-((a1+5)/3)² - ((a2+5)/3)²)``, ``f2 = -((a1-5)/1)² - ((a2-5)/1)² + 10``,
  ``r = max(f1, f2)``. Local max 0 at (-5,-5), global max 10 at (5,5).
* ``two_modalities`` [ours]: ``fA = 10 - Σ_i (a_i - 5)²``, ``fB = 10 - Σ_i (a_i + 5)²``,
  ``r = max(fA, fB)``. Two global maxima of 10 at ±5·1; mismatched corners (one agent at +5, another
  at -5) are deep traps (-90 for two agents).
* ``max_of_three`` [ours]: ``r = max(fA, fB, fC)`` with ``fC = 2 - 0.5 · Σ_i (a_i / 4)²``, a broad low
  bump at the origin (reward 2, a local maximum: the ERO trap).
* ``single_peak`` [ours, a sanity game without relative overgeneralisation]:
  ``r = 10 - Σ_i (a_i - c_i)² / 4`` with ``c_i = 3`` for even ``i`` and ``c_i = -2`` for odd ``i``
  (0-based), i.e. ``c = (3, -2, 3, -2, ...)``. One concave peak 10 at ``c``, no other local maximum and no
  trap: any learner that climbs the reward should reach it (a learning test for the baselines).

The N-agent versions of ``two_modalities`` and ``max_of_three`` (config ``num_agents``) sum the squared
terms over every agent, so the peaks sit at ``+5·1`` and ``-5·1`` (every agent must agree) and keep
height 10; the origin bump keeps height 2. ``single_peak`` takes ``num_agents`` too (peak at ``c``, height 10).

Matrix games as continuous-action games [ours] (native actions in ``[-1, 1]``, clipped): each agent's
action is mapped to a bin ``b = (a >= -1/3) + (a >= 1/3)``, i.e. bin 0 = ``[-1, -1/3)``,
bin 1 = ``[-1/3, 1/3)``, bin 2 = ``[1/3, 1]`` — half-open on the right, with the edges the float32
values of ∓1/3 (an action exactly equal to an edge falls in the upper bin). Agent 1's bin is the row,
agent 2's the column of the payoff matrix:

* ``climbing``: ``[[11, -30, 0], [-30, 7, 6], [0, 0, 5]]``. Optimum (0, 0) → 11.
* ``penalty`` (config ``k <= 0``, default -100): ``[[10, 0, k], [0, 2, 0], [k, 0, 10]]``.
  Optima (0, 0) and (2, 2) → 10.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import struct

from svnr_jax.envs.base import Array, Env, EnvSpec, State
from svnr_jax.envs.registry import register

#: The one-step games registered by this module (each has a 2-agent default config).
GAME_NAMES: tuple[str, ...] = ("max_of_two", "two_modalities", "max_of_three", "single_peak", "climbing", "penalty")

#: Bin edges of the matrix games (float32, so that comparisons with float32 actions are exact).
BIN_EDGES: tuple[float, float] = (float(np.float32(-1.0 / 3.0)), float(np.float32(1.0 / 3.0)))


@struct.dataclass
class GameState:
    """One-step games keep no internal state (an empty pytree)."""


def _check_num_agents(name: str, num_agents: Any) -> int:
    if isinstance(num_agents, bool) or not isinstance(num_agents, int | np.integer) or num_agents < 2:
        raise ValueError(f"{name}: num_agents must be an integer >= 2, got {num_agents!r}")
    return int(num_agents)


class OneStepGame(Env):
    """Base of the one-step games: constant observation, one step, ``terminated=True``.

    Subclasses set ``self.spec`` and implement :meth:`reward`.
    """

    def reward(self, actions: Array) -> Array:
        """Team reward of a joint action.

        Args:
          actions: ``[N, 1]`` joint action in native bounds (clipped to them).

        Returns:
          ``[]`` float32 reward.
        """
        raise NotImplementedError

    def special_points(self) -> dict[str, list[tuple[float, ...]]]:
        """Notable joint actions (native bounds) for the two-agent game, for plots and tests:
        ``{"global": [...], "local": [...], "trap": [...]}``. Each entry is a tuple ``(a1, .., aN)``."""
        return {"global": [], "local": [], "trap": []}

    def _obs(self) -> Array:
        return jnp.ones((self.spec.num_agents, 1), jnp.float32)

    def reset(self, key: Array) -> State:
        """Start the (one-step) episode. The key is unused: the start state is constant.

        Returns:
          State with ``obs`` ones ``[N, 1]``, ``global_state`` ones ``[1]``, reward 0.
        """
        del key
        return State(
            env_state=GameState(),
            obs=self._obs(),
            global_state=jnp.ones((1,), jnp.float32),
            reward=jnp.zeros((), jnp.float32),
            terminated=jnp.zeros((), bool),
            truncated=jnp.zeros((), bool),
            time=jnp.zeros((), jnp.int32),
            info={},
        )

    def step(self, state: State, actions: Array, key: Array) -> State:
        """Pay the team reward of ``actions`` ``[N, 1]`` and end the episode (``terminated=True``).

        The key is unused (the game is deterministic); ``state.info`` is passed through.
        """
        del key
        actions, bad = self.check_actions(actions)
        return state.replace(
            obs=self._obs(),
            global_state=jnp.ones((1,), jnp.float32),
            reward=jnp.where(bad, jnp.nan, self.reward(actions)),
            terminated=jnp.ones((), bool),
            truncated=jnp.zeros((), bool),
            time=state.time + 1,
        )

    def _clip(self, actions: Array) -> Array:
        """``[N, 1]`` → ``[N]`` float32 actions clipped to the native bounds."""
        a = jnp.asarray(actions, jnp.float32)[:, 0]
        return jnp.clip(a, self.spec.action_low, self.spec.action_high)


def _game_spec(name: str, num_agents: int, low: float, high: float, best: float) -> EnvSpec:
    return EnvSpec(
        name=name,
        num_agents=num_agents,
        obs_sizes=(1,) * num_agents,
        action_sizes=(1,) * num_agents,
        state_size=1,
        action_low=low,
        action_high=high,
        episode_length=1,
        best_team_reward=best,
        best_return=best,
    )


def _peak(a: Array, centre: float, width: float = 1.0) -> Array:
    """``10 - Σ_i ((a_i - centre) / width)²`` for ``a`` ``[N]``."""
    return 10.0 - jnp.sum(((a - centre) / width) ** 2)


class MaxOfTwo(OneStepGame):
    """``max_of_two`` [ref PR2 §5.2]: a wide local peak 0 at (-5,-5), a narrow global peak 10 at (5,5)."""

    def __init__(self):
        self.spec = _game_spec("max_of_two", 2, -10.0, 10.0, 10.0)

    def reward(self, actions: Array) -> Array:
        a = self._clip(actions)
        f1 = 0.8 * -jnp.sum(((a + 5.0) / 3.0) ** 2)
        f2 = _peak(a, 5.0)
        return jnp.maximum(f1, f2)

    def special_points(self):
        return {"global": [(5.0, 5.0)], "local": [(-5.0, -5.0)], "trap": []}


class TwoModalities(OneStepGame):
    """``two_modalities`` [ours]: equal peaks 10 at ``±5·1``; mismatched corners are traps."""

    def __init__(self, num_agents: int = 2):
        n = _check_num_agents("two_modalities", num_agents)
        self.spec = _game_spec("two_modalities", n, -10.0, 10.0, 10.0)

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return {"num_agents": 2}

    def reward(self, actions: Array) -> Array:
        a = self._clip(actions)
        return jnp.maximum(_peak(a, 5.0), _peak(a, -5.0))

    def special_points(self):
        return {"global": [(5.0, 5.0), (-5.0, -5.0)], "local": [], "trap": [(5.0, -5.0), (-5.0, 5.0)]}


class MaxOfThree(OneStepGame):
    """``max_of_three`` [ours]: peaks 10 at ``±5·1`` plus a broad bump 2 at the origin (the ERO trap)."""

    def __init__(self, num_agents: int = 2):
        n = _check_num_agents("max_of_three", num_agents)
        self.spec = _game_spec("max_of_three", n, -10.0, 10.0, 10.0)

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return {"num_agents": 2}

    def reward(self, actions: Array) -> Array:
        a = self._clip(actions)
        f_c = 2.0 - 0.5 * jnp.sum((a / 4.0) ** 2)
        return jnp.maximum(jnp.maximum(_peak(a, 5.0), _peak(a, -5.0)), f_c)

    def special_points(self):
        return {"global": [(5.0, 5.0), (-5.0, -5.0)], "local": [(0.0, 0.0)], "trap": [(5.0, -5.0), (-5.0, 5.0)]}


def single_peak_centre(num_agents: int) -> np.ndarray:
    """The ``single_peak`` optimum ``c`` ``[N]`` float32: 3 for even (0-based) agents, -2 for odd ones."""
    return np.where(np.arange(num_agents) % 2 == 0, 3.0, -2.0).astype(np.float32)


class SinglePeak(OneStepGame):
    """``single_peak`` [ours]: ``r = 10 - Σ_i (a_i - c_i)² / 4``, ``c = (3, -2, 3, -2, ...)``; one concave
    peak 10 at ``c``, no trap (a relative-overgeneralisation-free sanity game)."""

    def __init__(self, num_agents: int = 2):
        n = _check_num_agents("single_peak", num_agents)
        self.spec = _game_spec("single_peak", n, -10.0, 10.0, 10.0)
        self.centre = single_peak_centre(n)

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return {"num_agents": 2}

    def reward(self, actions: Array) -> Array:
        a = self._clip(actions)
        return 10.0 - jnp.sum((a - jnp.asarray(self.centre)) ** 2) / 4.0

    def special_points(self):
        return {"global": [tuple(float(c) for c in self.centre)], "local": [], "trap": []}


def action_bin(actions: Array) -> Array:
    """Matrix-game bin of continuous actions: 0 for ``[-1, -1/3)``, 1 for ``[-1/3, 1/3)``, 2 for
    ``[1/3, 1]`` (edges are the float32 values of ∓1/3; an action on an edge goes to the upper bin).

    Args:
      actions: any shape, float32 (values outside ``[-1, 1]`` fall in the end bins).

    Returns:
      int32 bin indices, same shape.
    """
    a = jnp.asarray(actions, jnp.float32)
    return (a >= BIN_EDGES[0]).astype(jnp.int32) + (a >= BIN_EDGES[1]).astype(jnp.int32)


def bin_centre(index: int) -> float:
    """Centre of a matrix-game bin (-2/3, 0, 2/3)."""
    return (-2.0 / 3.0, 0.0, 2.0 / 3.0)[index]


class MatrixGame(OneStepGame):
    """A two-agent 3×3 matrix game played with continuous actions in ``[-1, 1]`` (three equal bins).

    Args:
      name: registry name.
      payoff: ``[3, 3]`` team payoff, row = agent 1's bin, column = agent 2's bin.
    """

    def __init__(self, name: str, payoff: np.ndarray):
        self.payoff = np.asarray(payoff, np.float32)
        if self.payoff.shape != (3, 3):
            raise ValueError(f"{name}: payoff must be 3x3, got shape {self.payoff.shape}")
        self.spec = _game_spec(name, 2, -1.0, 1.0, float(self.payoff.max()))

    def reward(self, actions: Array) -> Array:
        bins = action_bin(self._clip(actions))
        return jnp.asarray(self.payoff)[bins[0], bins[1]]

    def special_points(self):
        """Bin centres of the best cells ("global"), the other pure Nash equilibria ("local"), and the
        cells with the lowest payoff ("trap")."""
        p = self.payoff
        cells = [(i, j) for i in range(3) for j in range(3)]
        best = [c for c in cells if p[c] == p.max()]
        nash = [c for c in cells if p[c] == p[:, c[1]].max() and p[c] == p[c[0], :].max() and c not in best]
        worst = [c for c in cells if p[c] == p.min() and p.min() < 0]
        centre = lambda c: (bin_centre(c[0]), bin_centre(c[1]))
        return {"global": [centre(c) for c in best], "local": [centre(c) for c in nash],
                "trap": [centre(c) for c in worst]}


CLIMBING_PAYOFF = np.array([[11, -30, 0], [-30, 7, 6], [0, 0, 5]], np.float32)


def penalty_payoff(k: float) -> np.ndarray:
    """``[[10, 0, k], [0, 2, 0], [k, 0, 10]]``."""
    return np.array([[10, 0, k], [0, 2, 0], [k, 0, 10]], np.float32)


class Climbing(MatrixGame):
    """``climbing``: payoff ``[[11, -30, 0], [-30, 7, 6], [0, 0, 5]]``; optimum (0, 0) → 11."""

    def __init__(self):
        super().__init__("climbing", CLIMBING_PAYOFF)


class Penalty(MatrixGame):
    """``penalty``: payoff ``[[10, 0, k], [0, 2, 0], [k, 0, 10]]`` with ``k <= 0``; optima → 10."""

    def __init__(self, k: float = -100.0):
        if isinstance(k, bool) or not isinstance(k, int | float | np.number) or not np.isfinite(k) or k > 0:
            raise ValueError(f"penalty: k must be a finite number <= 0, got {k!r}")
        self.k = float(k)
        super().__init__("penalty", penalty_payoff(self.k))

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return {"k": -100.0}


register("max_of_two", MaxOfTwo)
register("two_modalities", TwoModalities)
register("max_of_three", MaxOfThree)
register("single_peak", SinglePeak)
register("climbing", Climbing)
register("penalty", Penalty)

__all__ = [
    "BIN_EDGES",
    "GAME_NAMES",
    "Climbing",
    "GameState",
    "MatrixGame",
    "MaxOfThree",
    "MaxOfTwo",
    "OneStepGame",
    "Penalty",
    "SinglePeak",
    "TwoModalities",
    "action_bin",
    "bin_centre",
    "penalty_payoff",
    "single_peak_centre",
]
