"""Pure-JAX multi-agent environments: one API (:mod:`svnr_jax.envs.base`), one registry."""

from svnr_jax.envs.base import Env, EnvSpec, State
from svnr_jax.envs.registry import env_defaults, list_envs, make, register
from svnr_jax.envs.wrappers import (
    AutoReset,
    Batch,
    EpisodeStats,
    PooledAutoReset,
    RescaleActions,
    Wrapper,
    wrap_for_training,
)

__all__ = [
    "AutoReset",
    "Batch",
    "Env",
    "EnvSpec",
    "EpisodeStats",
    "PooledAutoReset",
    "RescaleActions",
    "State",
    "Wrapper",
    "env_defaults",
    "list_envs",
    "make",
    "register",
    "wrap_for_training",
]
