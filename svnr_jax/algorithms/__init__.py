"""Algorithms: one module each (config + agent), registered by name; the contract is in :mod:`.base`.

``list_algorithms()`` names them; ``get_algorithm(name) -> (Config, Agent)``; ``make_agent(name, spec, config)``.
"""

from svnr_jax.algorithms.base import EXPLORE, Agent, AlgoConfig, get_algorithm, list_algorithms, make_agent, register

__all__ = ["EXPLORE", "AlgoConfig", "Agent", "get_algorithm", "list_algorithms", "make_agent", "register"]
