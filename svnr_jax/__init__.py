"""svnr-jax: JAX-native SVNR (Stein Variational Negotiated Reasoning) for cooperative MARL."""

from svnr_jax.kernels import masked_svgd_direction, median_bandwidth, rbf_kernel, svgd_direction
from svnr_jax.negotiation import NegotiationResult, init_particles, negotiate, topology_mask

__version__ = "0.1.0"

__all__ = [
    "NegotiationResult",
    "init_particles",
    "masked_svgd_direction",
    "median_bandwidth",
    "negotiate",
    "rbf_kernel",
    "svgd_direction",
    "topology_mask",
]
