"""Networks of SVNR (docs/algorithms.md): per-agent negotiation policies and the joint soft critic (flax linen).

* Policy: agent i acts ``u_i = tanh(g_ψi(o_i, ξ_{C_i}))`` — its own observation and the noises of its
  negotiation set C_i (noises of agents outside C_i are zeroed), never teammates' actions or
  observations. The N agents' parameters are stacked on a leading agent axis and applied with ``vmap``:
  one compiled graph whatever N and whatever the (heterogeneous) sets C_i.
* Critic: ``Q_θ(s, u)`` on the global state and the flattened joint action; optionally twin critics,
  stacked on a leading ``[n_critics]`` axis.

Both are pairs of pure functions (``init``, ``apply``) built from static configuration.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from svnr_jax.types import Array, PRNGKey


class MLP(nn.Module):
    """ReLU MLP ``[..., in] -> [..., out]``.

    Attributes:
      hidden: hidden layer sizes.
      out_dim: output size.
      first_scale: gain of the first layer's init (variance scaling, fan-in).
      out_scale: gain of the output layer's init.
      last_hidden_activation: activation of the last hidden layer (ReLU like the others by default; HARL's
        actors use tanh there, its ``final_activation_func``).
    """

    hidden: Sequence[int]
    out_dim: int
    first_scale: float = 1.0
    out_scale: float = 1.0
    last_hidden_activation: Callable[[Array], Array] = nn.relu

    @nn.compact
    def __call__(self, x: Array) -> Array:
        for k, width in enumerate(self.hidden):
            gain = self.first_scale if k == 0 else 1.0
            init = nn.initializers.variance_scaling(2.0 * gain**2, "fan_in", "truncated_normal")
            act = self.last_hidden_activation if k == len(self.hidden) - 1 else nn.relu
            x = act(nn.Dense(width, kernel_init=init)(x))
        init = nn.initializers.variance_scaling(self.out_scale**2, "fan_in", "truncated_normal")
        return nn.Dense(self.out_dim, kernel_init=init)(x)


class Generator(nn.Module):
    """Agent generator ``g(o_i, ξ_{C_i})``: :class:`MLP` on ``[o_i, masked noise]`` plus, if
    ``noise_skip > 0``, a learnable linear map of the agent's own noise ξ_i (init gain ``noise_skip``).

    ``__call__(x [O + N·dξ], own_noise [dξ]) -> [A]`` (pre-tanh).
    """

    hidden: Sequence[int]
    out_dim: int
    first_scale: float = 1.0
    out_scale: float = 1.0
    noise_skip: float = 0.0

    @nn.compact
    def __call__(self, x: Array, own_noise: Array) -> Array:
        out = MLP(self.hidden, self.out_dim, self.first_scale, self.out_scale)(x)
        if self.noise_skip > 0:
            init = nn.initializers.variance_scaling(self.noise_skip**2, "fan_in", "normal")
            if own_noise.shape[-1] == self.out_dim:  # one gain per action entry, init noise_skip
                gain = self.param("noise_gain", nn.initializers.constant(self.noise_skip), (self.out_dim,))
                out = out + gain * own_noise
            else:
                out = out + nn.Dense(self.out_dim, use_bias=False, kernel_init=init, name="noise_skip")(own_noise)
        return out


class PolicyNet(NamedTuple):
    """Per-agent generators stacked on the agent axis.

    Attributes:
      init: ``key -> params`` (every leaf has a leading ``[N]`` agent axis).
      apply: ``(params, obs [N, O], noise [N, dξ]) -> u [N, A]`` in ``[-1, 1]`` (padded entries 0).
      apply_agent: ``(agent_params, i, obs_i [O], noise [N, dξ]) -> u_i [A]``: what agent i computes on its
        own (``agent_params`` = its slice of the stacked params; ``i`` a Python int); it only reads the
        noises of C_i.
      noise_dim: dξ, the per-agent noise size.
    """

    init: callable
    apply: callable
    apply_agent: callable
    noise_dim: int


class CriticNet(NamedTuple):
    """Joint soft critic(s).

    Attributes:
      init: ``key -> params`` (leading ``[n_critics]`` axis).
      apply: ``(params, global_state [S], u [N, A]) -> q [n_critics]``.
      num_critics: 1 or 2.
    """

    init: callable
    apply: callable
    num_critics: int


def make_policy(
    num_agents: int,
    obs_dim: int,
    action_dim: int,
    mask: np.ndarray,
    *,
    hidden: Sequence[int] = (64, 64),
    noise_dim: int = 0,
    first_scale: float = 1.0,
    out_scale: float = 1.0,
    noise_skip: float = 0.0,
    action_mask: np.ndarray | None = None,
) -> PolicyNet:
    """Build the N agents' negotiation policies (docs/algorithms.md).

    Args:
      num_agents: N.
      obs_dim: padded per-agent observation size O.
      action_dim: padded per-agent action size A.
      mask: ``[N, N]`` bool negotiation sets (row i = C_i).
      hidden: generator hidden sizes.
      noise_dim: dξ per agent (0 = A).
      first_scale, out_scale: init gains of the first and output layers.
      noise_skip: [ours] init gain of a learnable linear path from the agent's own noise ξ_i to the
        pre-tanh output (0 = none). With a small ``out_scale`` the initial policy is then close to
        ``tanh(noise_skip · ξ_i)``: centred and spread over the action box whatever the observation.
      action_mask: ``[N, A]`` bool real action entries (padded ones are output as 0).
    Returns:
      :class:`PolicyNet`.
    """
    n, dxi = num_agents, (noise_dim or action_dim)
    module = Generator(tuple(hidden), action_dim, first_scale, out_scale, noise_skip)
    noise_mask = jnp.asarray(np.asarray(mask, np.float32))  # [N, N]
    amask = jnp.asarray(np.ones((n, action_dim), np.float32) if action_mask is None
                        else np.asarray(action_mask, np.float32))

    def init(key: PRNGKey):
        dummy = jnp.zeros((obs_dim + n * dxi,), jnp.float32)
        return jax.vmap(lambda k: module.init(k, dummy, jnp.zeros((dxi,))))(jax.random.split(key, n))

    def apply(params, obs: Array, noise: Array) -> Array:
        masked = (noise_mask[:, :, None] * noise[None, :, :]).reshape(n, n * dxi)  # [N, N·dξ]
        x = jnp.concatenate([obs, masked], axis=-1)  # [N, O + N·dξ]
        pre = jax.vmap(module.apply)(params, x, noise)  # [N, A]
        return jnp.tanh(pre) * amask

    def apply_agent(agent_params, i: int, obs_i: Array, noise: Array) -> Array:
        masked = (noise_mask[i][:, None] * noise).reshape(n * dxi)
        pre = module.apply(agent_params, jnp.concatenate([obs_i, masked]), noise[i])
        return jnp.tanh(pre) * amask[i]

    return PolicyNet(init, apply, apply_agent, dxi)


def make_critic(
    state_dim: int,
    num_agents: int,
    action_dim: int,
    *,
    hidden: Sequence[int] = (64, 64),
    twin: bool = False,
) -> CriticNet:
    """Build the joint soft critic ``Q(s, u)`` (docs/algorithms.md), twin if asked.

    Args:
      state_dim: S. num_agents: N. action_dim: padded A.
      hidden: hidden sizes. twin: two independent critics.
    Returns:
      :class:`CriticNet`.
    """
    module = MLP(tuple(hidden), 1)
    nc = 2 if twin else 1

    def init(key: PRNGKey):
        dummy = jnp.zeros((state_dim + num_agents * action_dim,), jnp.float32)
        return jax.vmap(lambda k: module.init(k, dummy))(jax.random.split(key, nc))

    def apply(params, state: Array, u: Array) -> Array:
        x = jnp.concatenate([state, u.reshape(-1)])
        return jax.vmap(module.apply, in_axes=(0, None))(params, x)[:, 0]

    return CriticNet(init, apply, nc)


__all__ = ["MLP", "CriticNet", "Generator", "PolicyNet", "make_critic", "make_policy"]
