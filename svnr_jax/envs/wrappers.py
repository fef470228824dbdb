"""Environment wrappers: action rescaling, automatic reset, episode statistics, batching.

Every wrapper is an :class:`~svnr_jax.envs.base.Env` with the same pure ``reset(key)`` /
``step(state, actions, key)`` API, the wrapped env's ``.spec`` and ``.unwrapped``.

Order (innermost first), what :func:`wrap_for_training` builds::

    Batch(EpisodeStats(AutoReset(RescaleActions(env))), num_envs)

* ``RescaleActions`` innermost, so every outer layer and the policy speak ``[-1, 1]``.
* ``AutoReset`` inside ``EpisodeStats``: the statistics see the reward and ``done`` of the step that
  ended an episode (``AutoReset`` keeps them) and restart counting for the new episode.
* ``Batch`` outermost: one ``vmap`` over the whole per-env stack, every leaf gets a leading ``[B]``.

``State.info`` keys added here (per env; ``[B]`` in front under ``Batch``):

* ``AutoReset``: ``final_obs [N, O]``, ``final_global_state [S]`` — obs / global state reached by the
  last step (before any reset); equal to ``obs`` / ``global_state`` when the episode did not end, and
  after ``reset``.
* ``EpisodeStats``: ``episode_return [] f32`` and ``episode_length [] i32`` of the running episode
  (including the last step; both 0 right after a step that ended an episode, as the state already
  belongs to the next one); ``returned_episode_return [] f32``, ``returned_episode_length [] i32``:
  the totals of the last finished episode (0 before any finished); ``returned_episode [] bool``: the
  last step finished an episode.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from svnr_jax.envs.base import Array, Env, EnvSpec, State


class Wrapper(Env):
    """Base wrapper: delegates ``reset``, ``step``, ``spec`` and ``unwrapped`` to ``env``."""

    def __init__(self, env: Env):
        self.env = env

    @property
    def spec(self) -> EnvSpec:
        return self.env.spec

    @property
    def unwrapped(self) -> Env:
        return self.env.unwrapped

    def reset(self, key: Array) -> State:
        return self.env.reset(key)

    def step(self, state: State, actions: Array, key: Array) -> State:
        return self.env.step(state, actions, key)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.env!r})"


class RescaleActions(Wrapper):
    """Act in ``[-1, 1]``: actions are clipped to ``[-1, 1]`` and mapped affinely onto
    ``[spec.action_low, spec.action_high]`` (-1 → low, 1 → high)."""

    def step(self, state: State, actions: Array, key: Array) -> State:
        """Args: actions ``[N, A]`` in ``[-1, 1]`` (clipped). Returns the wrapped env's next state."""
        low, high = self.spec.action_low, self.spec.action_high
        a = jnp.clip(jnp.asarray(actions, jnp.float32), -1.0, 1.0)
        return self.env.step(state, low + 0.5 * (a + 1.0) * (high - low), key)


def _select(pred: Array, on_true, on_false):
    """``where(pred, on_true, on_false)`` leaf by leaf (``pred`` is a scalar)."""
    return jax.tree.map(lambda t, f: jnp.where(pred, t, f), on_true, on_false)


class AutoReset(Wrapper):
    """Reset automatically when a step ends the episode (``terminated | truncated``).

    ``step`` splits its key into ``step_key, reset_key = jax.random.split(key)``: the wrapped env steps
    with ``step_key``; if the episode ended, the returned state is ``env.reset(reset_key)`` except that
    ``reward``, ``terminated`` and ``truncated`` are the ending step's, and ``info["final_obs"]`` /
    ``info["final_global_state"]`` hold the ending step's obs / global state. (The reset is computed on
    every step and selected with ``where``: shapes stay static.)
    """

    def reset(self, key: Array) -> State:
        state = self.env.reset(key)
        return state.replace(
            info={**state.info, "final_obs": state.obs, "final_global_state": state.global_state}
        )

    def step(self, state: State, actions: Array, key: Array) -> State:
        step_key, reset_key = jax.random.split(key)
        nxt = self.env.step(state, actions, step_key)
        fresh = self.env.reset(reset_key)
        done = nxt.done
        # Info keys the reset also produces are reset; others (set by outer wrappers) pass through.
        info = dict(nxt.info)
        for name in fresh.info.keys() & info.keys():
            info[name] = _select(done, fresh.info[name], info[name])
        info["final_obs"] = nxt.obs
        info["final_global_state"] = nxt.global_state
        return nxt.replace(
            env_state=_select(done, fresh.env_state, nxt.env_state),
            obs=jnp.where(done, fresh.obs, nxt.obs),
            global_state=jnp.where(done, fresh.global_state, nxt.global_state),
            time=jnp.where(done, fresh.time, nxt.time),
            info=info,
        )


class EpisodeStats(Wrapper):
    """Track per-episode return and length in ``state.info`` (keys in the module docstring).

    Apply outside :class:`AutoReset` so that several episodes are counted correctly.
    """

    def reset(self, key: Array) -> State:
        state = self.env.reset(key)
        zf, zi = jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32)
        return state.replace(
            info={
                **state.info,
                "episode_return": zf,
                "episode_length": zi,
                "returned_episode_return": zf,
                "returned_episode_length": zi,
                "returned_episode": jnp.zeros((), bool),
            }
        )

    def step(self, state: State, actions: Array, key: Array) -> State:
        nxt = self.env.step(state, actions, key)
        done = nxt.done
        ret = state.info["episode_return"] + nxt.reward.astype(jnp.float32)
        length = state.info["episode_length"] + 1
        info = {
            **nxt.info,
            "episode_return": jnp.where(done, 0.0, ret).astype(jnp.float32),
            "episode_length": jnp.where(done, 0, length).astype(jnp.int32),
            "returned_episode_return": jnp.where(done, ret, state.info["returned_episode_return"]),
            "returned_episode_length": jnp.where(done, length, state.info["returned_episode_length"]),
            "returned_episode": done,
        }
        return nxt.replace(info=info)


class Batch(Wrapper):
    """``num_envs`` independent copies of ``env`` (``vmap``); every state leaf gets a leading ``[B]``.

    ``reset(key)`` splits ``key`` into ``B`` keys; ``step(state, actions [B, N, A], key)`` splits ``key``
    into ``B`` keys, one per copy.
    """

    def __init__(self, env: Env, num_envs: int):
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"Batch: num_envs must be an integer >= 1, got {num_envs!r}")
        super().__init__(env)
        self.num_envs = num_envs

    def reset(self, key: Array) -> State:
        """Returns a State with ``obs [B, N, O]``, ``reward [B]``, ..."""
        return jax.vmap(self.env.reset)(jax.random.split(key, self.num_envs))

    def step(self, state: State, actions: Array, key: Array) -> State:
        """Args: ``actions [B, N, A]``. Returns the batched next state."""
        if jnp.shape(actions)[:1] != (self.num_envs,):
            raise ValueError(f"Batch: actions must have leading size num_envs={self.num_envs}, "
                             f"got shape {jnp.shape(actions)}")
        return jax.vmap(self.env.step)(state, actions, jax.random.split(key, self.num_envs))

    def __repr__(self) -> str:
        return f"Batch({self.env!r}, num_envs={self.num_envs})"


def wrap_for_training(env: Env, num_envs: int | None = None) -> Env:
    """``EpisodeStats(AutoReset(RescaleActions(env)))``, batched with :class:`Batch` if ``num_envs``
    is given. Policies then act in ``[-1, 1]``."""
    wrapped = EpisodeStats(AutoReset(RescaleActions(env)))
    return wrapped if num_envs is None else Batch(wrapped, num_envs)


__all__ = ["AutoReset", "Batch", "EpisodeStats", "RescaleActions", "Wrapper", "wrap_for_training"]
