"""Name → environment constructor registry: ``make(name, **config)`` and ``list_envs()``.

Besides registered names, ``make`` accepts a user env as ``"package.module:factory"`` (a class or function
returning an :class:`~svnr_jax.envs.base.Env`, importable from the Python path): a user's env trains and
evaluates (also ``svnr eval`` in a fresh process) without editing svnr-jax.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

from svnr_jax.envs.base import Env

_REGISTRY: dict[str, tuple[Callable[..., Env], dict[str, Any] | Callable[[], dict[str, Any]]]] = {}


def register(
    name: str,
    constructor: Callable[..., Env],
    defaults: dict[str, Any] | Callable[[], dict[str, Any]] | None = None,
) -> None:
    """Register ``constructor(**config)`` under ``name``. ``defaults`` lists every accepted config key
    (``make`` rejects any other key); it may be a function returning them, called once when they are first
    needed, so that an env family with a heavy import (MaMuJoCo: MJX) is only imported when one of its envs is
    made. Re-registering a name replaces it."""
    if defaults is None:
        defaults = constructor.default_config() if hasattr(constructor, "default_config") else {}
    _REGISTRY[name] = (constructor, defaults if callable(defaults) else dict(defaults))


def _entry(name: str) -> tuple[Callable[..., Env], dict[str, Any]]:
    """The constructor and default config of a registered name (lazy defaults resolved here, once)."""
    constructor, defaults = _REGISTRY[name]
    if callable(defaults):
        defaults = dict(defaults())
        _REGISTRY[name] = (constructor, defaults)
    return constructor, defaults


def _user_env(name: str) -> tuple[Callable[..., Env], dict[str, Any] | None]:
    """``"package.module:factory"`` → the factory and its default config (``None``: any keys are passed on)."""
    import importlib

    module, _, attr = name.partition(":")
    try:
        factory = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot load env {name!r} ({type(e).__name__}: {e}); a user env is given as "
                         "'package.module:factory', importable from the current Python path") from None
    if not callable(factory):
        raise ValueError(f"env {name!r} is not callable (a class or a function returning an Env)")
    defaults = factory.default_config() if hasattr(factory, "default_config") else None
    return factory, (dict(defaults) if defaults is not None else None)


def is_user_env(name: Any) -> bool:
    """Whether ``name`` names a user env (``"package.module:factory"``) rather than a registered one."""
    return isinstance(name, str) and ":" in name


def list_envs() -> list[str]:
    """Sorted names of every registered environment."""
    _ensure_builtin()
    return sorted(_REGISTRY)


def env_defaults(name: str) -> dict[str, Any]:
    """The default config of a registered env (a copy)."""
    _ensure_builtin()
    if is_user_env(name):
        defaults = _user_env(name)[1]
        return {} if defaults is None else defaults
    _check_name(name)
    return dict(_entry(name)[1])


def make(name: str, **config: Any) -> Env:
    """Build a registered environment.

    Raises:
      ValueError: unknown ``name`` (the message lists the registered names) or unknown config key
        (lists the accepted keys). Invalid config values are rejected by the env's constructor.
    """
    _ensure_builtin()
    if is_user_env(name):
        factory, defaults = _user_env(name)
        env = factory(**({**defaults, **config} if defaults is not None else config))
        if not isinstance(env, Env):
            raise ValueError(f"env {name!r} returned a {type(env).__name__}, not an svnr_jax.envs.base.Env")
        return env
    _check_name(name)
    constructor, defaults = _entry(name)
    unknown = sorted(set(config) - set(defaults))
    if unknown:
        raise ValueError(
            f"unknown config key(s) {unknown} for env {name!r}; allowed keys: {sorted(defaults)}"
        )
    return constructor(**{**defaults, **config})


def _check_name(name: str) -> None:
    if name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=3)
        hint = f" (did you mean {close}?)" if close else ""
        raise ValueError(f"unknown env name {name!r}{hint}; registered envs: {sorted(_REGISTRY)}")


_BUILTIN_LOADED = False


def _ensure_builtin() -> None:
    """Import the env modules that register themselves (lazily, so importing the registry is cheap)."""
    global _BUILTIN_LOADED
    if _BUILTIN_LOADED:
        return
    _BUILTIN_LOADED = True
    import importlib

    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


# Modules whose import registers envs. New env families add themselves here.
_BUILTIN_MODULES: list[str] = [
    "svnr_jax.envs.games",
    "svnr_jax.envs.particle_gather",
    "svnr_jax.envs.mamujoco",
]
