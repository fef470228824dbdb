"""Test configuration: CPU only, key-reuse checks on."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_debug_key_reuse", True)
