"""svnr-jax: JAX-native SVNR (Stein Variational Negotiated Reasoning) for cooperative MARL."""

__version__ = "0.1.0"
