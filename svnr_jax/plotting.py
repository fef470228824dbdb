"""Figures: reward landscapes of the two-agent one-step games.

Uses matplotlib's object API with the Agg canvas (no pyplot, no global backend change), so it works
headless and inside notebooks alike.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from svnr_jax.envs import make
from svnr_jax.envs.base import Env
from svnr_jax.envs.games import BIN_EDGES, MatrixGame, OneStepGame

_MARKERS = {
    "global": dict(marker="*", s=320, c="gold", edgecolors="black", linewidths=1.0, label="global optimum"),
    "local": dict(marker="^", s=110, c="white", edgecolors="black", linewidths=1.0, label="local optimum"),
    "trap": dict(marker="X", s=110, c="crimson", edgecolors="white", linewidths=0.8, label="trap"),
}


def reward_grid(env: OneStepGame, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """Team reward over a grid of joint actions in the env's native bounds.

    Args:
      env: a two-agent one-step game with one action entry per agent.
      resolution: R grid points per axis.

    Returns:
      ``xs [R]`` (the action values, both axes) and ``rewards [R, R]`` with ``rewards[j, i]`` the reward
      of agent 1 playing ``xs[i]`` and agent 2 playing ``xs[j]`` (image layout: row = y = agent 2).
    """
    xs = np.linspace(env.spec.action_low, env.spec.action_high, resolution, dtype=np.float32)
    a1, a2 = np.meshgrid(xs, xs)  # [R, R], a1 varies along columns
    joint = np.stack([a1.reshape(-1), a2.reshape(-1)], axis=-1)[:, :, None]  # [R*R, 2, 1]
    rewards = jax.jit(jax.vmap(env.reward))(jnp.asarray(joint))
    return xs, np.asarray(rewards).reshape(resolution, resolution)


def plot_reward_landscape(
    env_name: str | Env,
    ax: Axes | None = None,
    path: str | None = None,
    resolution: int = 241,
    floor: float | None = -30.0,
    **config: Any,
) -> Axes:
    """Plot a two-agent one-step game's team reward over joint actions (native bounds) and mark its
    global optima (stars), local optima (triangles) and traps (crosses).

    Differential games are drawn as filled contours, matrix games as their piecewise-constant bins with
    the payoff written in each cell. Axes are in native action units, x = agent 1, y = agent 2; to
    overlay policy samples ``u`` in ``[-1, 1]`` use ``low + (u + 1) / 2 · (high - low)``.

    Args:
      env_name: a registered game name (``svnr_jax.envs.games.GAME_NAMES``) or a game instance.
      ax: axes to draw on; a new figure (Agg canvas) when ``None``.
      path: save the figure there (PNG by suffix) when given.
      resolution: grid points per axis (>= 2).
      floor: colours saturate below this reward (the deep corners would otherwise wash the peaks out);
        ``None`` uses the full range.
      **config: passed to ``make`` with ``env_name``.

    Returns:
      The axes, for further drawing.

    Raises:
      ValueError: not a two-agent one-step game with one action per agent, or resolution < 2.
    """
    env = make(env_name, **config) if isinstance(env_name, str) else env_name
    game = env.unwrapped
    spec = game.spec
    if not isinstance(game, OneStepGame) or spec.num_agents != 2 or spec.action_sizes != (1, 1):
        raise ValueError(f"plot_reward_landscape needs a two-agent one-step game with 1-D actions, got {env!r} "
                         f"(num_agents={spec.num_agents}, action_sizes={spec.action_sizes})")
    if resolution < 2:
        raise ValueError(f"resolution must be >= 2, got {resolution!r}")

    if ax is None:
        fig = Figure(figsize=(5.6, 4.8))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
    xs, z = reward_grid(game, resolution)
    low, high = spec.action_low, spec.action_high

    if isinstance(game, MatrixGame):
        vmin = None if floor is None else max(float(z.min()), floor)
        mesh = ax.pcolormesh(xs, xs, z, shading="nearest", cmap="viridis", vmin=vmin)
        for edge in BIN_EDGES:
            ax.axvline(edge, color="white", lw=0.8, alpha=0.7)
            ax.axhline(edge, color="white", lw=0.8, alpha=0.7)
        centres = (-2 / 3, 0.0, 2 / 3)
        for i, x in enumerate(centres):
            for j, y in enumerate(centres):
                ax.text(x, y - 0.17, f"{game.payoff[i, j]:g}", ha="center", va="center", fontsize=10,
                        color="white", fontweight="bold")
        clipped = vmin is not None and vmin > z.min()
        ax.figure.colorbar(mesh, ax=ax, label="team reward" + (f" (clipped at {vmin:g})" if clipped else ""))
    else:
        lo = z.min() if floor is None else max(float(z.min()), floor)
        levels = np.linspace(lo, float(z.max()), 31)
        filled = ax.contourf(xs, xs, np.maximum(z, lo), levels=levels, cmap="viridis", extend="neither")
        ax.contour(xs, xs, z, levels=levels[::3], colors="black", linewidths=0.4, alpha=0.5)
        ax.figure.colorbar(filled, ax=ax, label="team reward" + (f" (clipped at {lo:g})" if lo > z.min() else ""))

    for kind, points in game.special_points().items():
        if points:
            p = np.asarray(points, float)
            ax.scatter(p[:, 0], p[:, 1], zorder=3, **_MARKERS[kind])
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_aspect("equal")
    ax.set_xlabel("agent 1 action $a_1$")
    ax.set_ylabel("agent 2 action $a_2$")
    ax.set_title(f"{spec.name} (best team reward {spec.best_team_reward:g})")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3, fontsize=8, frameon=False,
              scatterpoints=1, markerscale=0.6)
    if path is not None:
        ax.figure.savefig(path, dpi=120, bbox_inches="tight")
    return ax


__all__ = ["plot_reward_landscape", "reward_grid"]
