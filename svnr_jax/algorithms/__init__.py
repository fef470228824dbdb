"""Learners: SVNR (and, later, the baselines) sharing networks, losses and replay."""

from svnr_jax.algorithms.svnr import SVNR, LearnerState, temperature

__all__ = ["SVNR", "LearnerState", "temperature"]
