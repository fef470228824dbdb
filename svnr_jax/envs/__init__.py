"""Pure-JAX multi-agent environments: one API (:mod:`svnr_jax.envs.base`), one registry."""

from svnr_jax.envs.base import Env, EnvSpec, State
from svnr_jax.envs.registry import env_defaults, list_envs, make, register

__all__ = ["Env", "EnvSpec", "State", "env_defaults", "list_envs", "make", "register"]
