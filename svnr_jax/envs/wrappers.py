"""Environment wrappers: action rescaling, automatic reset, episode statistics, batching.

Every wrapper is an :class:`~svnr_jax.envs.base.Env` with the same pure ``reset(key)`` /
``step(state, actions, key)`` API, the wrapped env's ``.spec`` and ``.unwrapped``.

:func:`wrap_for_training` builds one of two stacks (innermost first)::

    Batch(EpisodeStats(AutoReset(RescaleActions(env))), num_envs)                  # cheap resets (games, ...)
    EpisodeStats(PooledAutoReset(RescaleActions(env), num_envs))                   # env.expensive_reset

* ``RescaleActions`` innermost, so every outer layer and the policy speak ``[-1, 1]``.
* ``AutoReset`` / ``PooledAutoReset`` inside ``EpisodeStats``: the statistics see the reward and ``done`` of the
  step that ended an episode (the auto-reset keeps them) and restart counting for the new episode.
* ``Batch`` outermost: one ``vmap`` over the whole per-env stack, every leaf gets a leading ``[B]``.
  ``PooledAutoReset`` batches itself (its pool is shared by the B envs) and ``EpisodeStats`` works on batched
  states as it is (elementwise); every leaf of its state has a leading ``[B]`` too.

``AutoReset`` computes a full ``env.reset`` for every env at every step and selects it with ``where`` (under
``vmap`` there is no cheaper way to reset only the envs that are done). For a physics env (MaMuJoCo: MJX
``make_data`` + ``forward``, 16–20 % of a HalfCheetah env step on CPU) that is waste at almost every step, so such
envs declare
``expensive_reset = True`` and get ``PooledAutoReset``: episodes start from a pool of B pre-sampled reset states,
each used once, refilled (B resets) only when it runs out (exact semantics in its docstring).

``State.info`` keys added here (per env; ``[B]`` in front under ``Batch`` / ``PooledAutoReset``):

* ``AutoReset`` / ``PooledAutoReset``: ``final_obs [N, O]``, ``final_global_state [S]`` — obs / global state
  reached by the last step (before any reset); equal to ``obs`` / ``global_state`` when the episode did not end,
  and after ``reset``.
* ``EpisodeStats``: ``episode_return [] f32`` and ``episode_length [] i32`` of the running episode
  (including the last step; both 0 right after a step that ended an episode, as the state already
  belongs to the next one); ``returned_episode_return [] f32``, ``returned_episode_length [] i32``:
  the totals of the last finished episode (0 before any finished); ``returned_episode [] bool``: the
  last step finished an episode.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

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

    @property
    def num_envs(self) -> int | None:
        """B of the batched layer inside (``None``: not batched)."""
        return getattr(self.env, "num_envs", None)

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
    """``where(pred, on_true, on_false)`` leaf by leaf; ``pred`` is a scalar or ``[B]`` (leaves ``[B, ...]``)."""
    def sel(t, f):
        return jnp.where(jnp.reshape(pred, pred.shape + (1,) * (jnp.ndim(f) - pred.ndim)), t, f)

    return jax.tree.map(sel, on_true, on_false)


def _reset_state(nxt: State, fresh: State, done: Array) -> State:
    """What an auto-reset returns: ``nxt`` where the episode goes on, ``fresh`` (a reset state) where ``done``,
    except that ``reward``, ``terminated`` and ``truncated`` stay ``nxt``'s and ``info["final_obs"]`` /
    ``info["final_global_state"]`` hold ``nxt``'s obs / global state. Info keys the reset also produces are
    reset; others (set by outer wrappers) pass through. ``done`` is ``[]`` or ``[B]``."""
    info = dict(nxt.info)
    for name in fresh.info.keys() & info.keys():
        info[name] = _select(done, fresh.info[name], info[name])
    info["final_obs"] = nxt.obs
    info["final_global_state"] = nxt.global_state
    return nxt.replace(
        env_state=_select(done, fresh.env_state, nxt.env_state),
        obs=_select(done, fresh.obs, nxt.obs),
        global_state=_select(done, fresh.global_state, nxt.global_state),
        time=_select(done, fresh.time, nxt.time),
        info=info,
    )


class AutoReset(Wrapper):
    """Reset automatically when a step ends the episode (``terminated | truncated``), one env (batch it with
    :class:`Batch`; for envs with an expensive reset see :class:`PooledAutoReset`).

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
        return _reset_state(nxt, self.env.reset(reset_key), nxt.done)


class EpisodeStats(Wrapper):
    """Track per-episode return and length in ``state.info`` (keys in the module docstring).

    Apply outside :class:`AutoReset` / :class:`PooledAutoReset` so that several episodes are counted correctly.
    Elementwise: it works on one env's state and on a batched one alike.
    """

    def reset(self, key: Array) -> State:
        state = self.env.reset(key)
        shape = jnp.shape(state.reward)  # [] per env, [B] over a batched env (PooledAutoReset)
        zf, zi = jnp.zeros(shape, jnp.float32), jnp.zeros(shape, jnp.int32)
        return state.replace(
            info={
                **state.info,
                "episode_return": zf,
                "episode_length": zi,
                "returned_episode_return": zf,
                "returned_episode_length": zi,
                "returned_episode": jnp.zeros(shape, bool),
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
        self._num_envs = num_envs

    @property
    def num_envs(self) -> int:
        return self._num_envs

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


@struct.dataclass
class PooledEnvState:
    """:class:`PooledAutoReset`'s ``State.env_state``: the B envs' own state and the pool (every leaf ``[B]``).

    Attributes:
      env_state: the wrapped env's ``env_state`` of the B running envs.
      pool: ``[B]`` reset states (a :class:`State`, as ``env.reset`` returns them).
      pool_keys: ``[B, ...]`` uint32 raw key data: ``pool[i]`` is ``env.reset(jax.random.wrap_key_data(pool_keys[i]))``.
      pool_fresh: ``[B]`` bool, ``pool[i]`` has not started an episode yet.
    """

    env_state: Any
    pool: State
    pool_keys: Array
    pool_fresh: Array


class PooledAutoReset(Batch):
    """``num_envs`` copies of ``env`` (like :class:`Batch`) that reset automatically from a pool of reset states,
    refilled only when it runs out.

    For envs whose ``reset`` costs about a step (``env.expensive_reset``; MaMuJoCo): :class:`AutoReset` under
    ``Batch`` computes B resets at every batch step; this computes B resets once per B episode ends.

    The pool holds B states ``env.reset(k_i)``, each with its own key ``k_i`` (:class:`PooledEnvState`) and a
    ``fresh`` flag (not used yet). ``step(state, actions, key)``:

    1. ``step_key, pool_key = split(key)``; the B envs step as under ``Batch`` with ``step_key``;
    2. if fewer pool states are fresh than episodes ended (``terminated | truncated``) in this step, every used slot
       is refilled: ``env.reset`` of ``split(k, B)`` (``k = split(pool_key)[1]``) is computed and kept where the slot
       is used. This is a ``lax.while_loop`` that runs its body once or never, not a ``lax.cond``: under a ``vmap``
       (the training loop's seed sweep) a ``cond`` with a batched predicate runs both branches at every step, a
       ``while_loop`` runs its body only when some seed's predicate holds (and keeps the other seeds' state);
    3. the envs whose episode ended, in env order, take the fresh pool states in slot order: the returned state is
       that pool state except ``reward``, ``terminated``, ``truncated`` (the ending step's) and
       ``info["final_obs"]`` / ``info["final_global_state"]`` (the ending step's obs / global state), exactly as
       :class:`AutoReset` returns ``env.reset(reset_key)``; those slots are marked used.

    Distribution: every pool state is ``env.reset`` of a key used nowhere else and is used at most once (step 2
    guarantees a fresh state for every episode end), and which slot an env takes depends only on the ``done``
    flags, never on the states' contents. So every episode starts from a state distributed as ``env.reset``'s,
    independent of the other episodes' starts and of everything before — as with :class:`AutoReset`. What differs
    is only which keys: the start states are not ``env.reset(split(key)[1])`` of the step that ended the episode, so
    the same keys give other (equally distributed) episodes than the ``AutoReset`` stack.

    Cost: B resets per refill, i.e. about B resets per B episode ends (B envs with mean episode length L: about one
    refill every L steps) instead of B resets per step. Under a seed ``vmap`` the loop body runs, for every seed,
    whenever one seed needs a refill (the other seeds keep their pool): with S desynchronised seeds up to S times as
    many refills. Per step there remain a sort of B flags, a gather and a select of the env state (``docs/mamujoco.md``,
    Speed, for measurements). ``reset(key)``: ``k_envs, k_pool = split(key)``; the B envs are
    ``Batch.reset(k_envs)``, the pool ``env.reset`` of ``split(k_pool, B)`` (2B resets).
    """

    def _sample(self, key: Array) -> tuple[State, Array]:
        keys = jax.random.split(key, self.num_envs)
        data = jax.random.key_data(keys)
        return jax.vmap(self.env.reset)(keys), data

    def reset(self, key: Array) -> State:
        """The B envs' reset states (``info`` as :class:`AutoReset`'s) and a full pool of fresh states."""
        b = self.num_envs
        k_envs, k_pool = jax.random.split(key)
        state = Batch.reset(self, k_envs)
        pool, pool_keys = self._sample(k_pool)
        info = {**state.info, "final_obs": state.obs, "final_global_state": state.global_state}
        return state.replace(env_state=PooledEnvState(state.env_state, pool, pool_keys, jnp.ones((b,), bool)),
                             info=info)

    def step(self, state: State, actions: Array, key: Array) -> State:
        """Args: ``actions [B, N, A]``. Returns the batched next state (class docstring)."""
        b = self.num_envs
        step_key, pool_key = jax.random.split(key)
        ps: PooledEnvState = state.env_state
        nxt = Batch.step(self, state.replace(env_state=ps.env_state), actions, step_key)
        done = nxt.done
        n_done = jnp.sum(done.astype(jnp.int32))

        def short(carry):  # fewer fresh states than episodes to start
            return jnp.sum(carry[2].astype(jnp.int32)) < n_done

        def refill(carry):  # runs once at most: afterwards all B slots are fresh
            pool, keys, fresh, k = carry
            k, k_new = jax.random.split(k)
            new, new_keys = self._sample(k_new)
            return _select(fresh, pool, new), _select(fresh, keys, new_keys), jnp.ones_like(fresh), k

        pool, pool_keys, fresh, _ = jax.lax.while_loop(short, refill,
                                                       (ps.pool, ps.pool_keys, ps.pool_fresh, pool_key))
        # the r-th env (in env order) whose episode ended takes the r-th slot of `order`: the fresh slots first
        order = jnp.argsort((~fresh).astype(jnp.int32), stable=True)
        rank = jnp.cumsum(done.astype(jnp.int32)) - 1
        start = jax.tree.map(lambda x: x[order[jnp.clip(rank, 0, b - 1)]], pool)
        out = _reset_state(nxt, start, done)
        fresh = fresh.at[order].set(fresh[order] & (jnp.arange(b) >= n_done))  # the first n_done of `order` used
        return out.replace(env_state=PooledEnvState(out.env_state, pool, pool_keys, fresh))

    def __repr__(self) -> str:
        return f"PooledAutoReset({self.env!r}, num_envs={self.num_envs})"


def wrap_for_training(env: Env, num_envs: int | None = None, *, reset_pool: bool | None = None) -> Env:
    """The training stack (module docstring); policies then act in ``[-1, 1]``.

    * ``num_envs`` ``None``: ``EpisodeStats(AutoReset(RescaleActions(env)))`` (one env);
    * else, if ``reset_pool`` (default: ``env.unwrapped.expensive_reset``):
      ``EpisodeStats(PooledAutoReset(RescaleActions(env), num_envs))``;
    * else ``Batch(EpisodeStats(AutoReset(RescaleActions(env))), num_envs)``.
    """
    if reset_pool is None:
        reset_pool = bool(getattr(env.unwrapped, "expensive_reset", False))
    if num_envs is not None and reset_pool:
        return EpisodeStats(PooledAutoReset(RescaleActions(env), num_envs))
    wrapped = EpisodeStats(AutoReset(RescaleActions(env)))
    return wrapped if num_envs is None else Batch(wrapped, num_envs)


__all__ = ["AutoReset", "Batch", "EpisodeStats", "PooledAutoReset", "PooledEnvState", "RescaleActions", "Wrapper",
           "wrap_for_training"]
