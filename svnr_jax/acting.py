"""Acting: play whole episodes with a fixed policy (no learning) — the one rollout used by the in-scan
evaluation, ``svnr eval``, ``svnr render`` and the experiments.

Key scheme (so every caller sees the same episodes for the same key): episode ``e`` uses the episode key
``k_e = fold_in(key, e)``, shared by every agent and passed to the acting function at every step (an agent
folds in the step index itself); the env's reset key is ``fold_in(k_e, 2**30)`` and step t's env key
``fold_in(k_e, t + 2**20)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp

from svnr_jax.envs.base import Env, State
from svnr_jax.types import Array, PRNGKey

#: ``act(obs [N, O], global_state [S], episode_key, t []) -> actions [N, A]`` in ``[-1, 1]``.
ActFn = Callable[[Array, Array, PRNGKey, Array], Array]


class Rollout(NamedTuple):
    """What :func:`rollout` returns (leading ``[E]`` episodes).

    Attributes:
      returns: ``[E]`` undiscounted episode returns (steps after the episode ended do not count).
      first_actions: ``[E, N, A]`` the first joint action of each episode.
      records: ``record(state, next_state)`` stacked ``[E, T, ...]`` (``None`` without ``record``).
    """

    returns: Array
    first_actions: Array
    records: Any


def rollout(env: Env, act: ActFn, key: PRNGKey, num_episodes: int, *, horizon: int | None = None,
            record: Callable[[State, State], Any] | None = None) -> Rollout:
    """Play ``num_episodes`` episodes of ``horizon`` steps (default: the env's episode length) with ``act``.

    Args:
      env: an env acting in ``[-1, 1]`` (e.g. ``RescaleActions(make(name))``), not auto-resetting.
      act: the acting function (see :data:`ActFn`).
      key: evaluation key. num_episodes: E (vmapped).
      record: optional ``(state, next_state) -> pytree`` stored at every step.
    """
    horizon = env.spec.episode_length if horizon is None else horizon
    n, a = env.spec.num_agents, env.spec.action_dim

    def episode(e):
        shared = jax.random.fold_in(key, e)
        state = env.reset(jax.random.fold_in(shared, 2**30))

        def step(carry, _):
            st, ret, alive, first = carry
            action = act(st.obs, st.global_state, shared, st.time)
            chex.assert_shape(action, (n, a), custom_message="the acting function must return actions [N, A]")
            first = jnp.where(st.time == 0, action, first)
            nxt = env.step(st, action, jax.random.fold_in(shared, st.time + 2**20))
            ret = ret + alive * nxt.reward
            alive = alive * (1.0 - nxt.done.astype(jnp.float32))
            return (nxt, ret, alive, first), (None if record is None else record(st, nxt))

        init = (state, jnp.zeros(()), jnp.ones(()), jnp.zeros((n, a)))
        (_, ret, _, first), recs = jax.lax.scan(step, init, None, length=horizon)
        return ret, first, recs

    returns, first, recs = jax.vmap(episode)(jnp.arange(num_episodes))
    return Rollout(returns, first, recs)


def agent_policy(agent, learner: Any, iteration: Array, mode: str) -> ActFn:
    """The acting function of an agent (:class:`svnr_jax.algorithms.base.Agent`) in an execution mode."""
    agent.check_mode(mode)
    return lambda obs, state, key, t: agent.act(learner, obs, state, key, t, iteration, mode)


def evaluate(agent, env: Env, learner: Any, iteration: Array, key: PRNGKey, modes: tuple[str, ...],
             num_episodes: int) -> dict[str, Array]:
    """Mean episode return per execution mode, ``{"eval_<mode>": []}``; mode i uses ``fold_in(key, i)``."""
    return {f"eval_{m}": jnp.mean(rollout(env, agent_policy(agent, learner, iteration, m),
                                          jax.random.fold_in(key, i), num_episodes).returns)
            for i, m in enumerate(modes)}


__all__ = ["ActFn", "Rollout", "agent_policy", "evaluate", "rollout"]
