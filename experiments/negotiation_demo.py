"""Negotiation demo: ``svnr_jax.negotiate`` on the two-peak and three-peak differential games (docs/environments.md).

M joint-action particles ``[M, 2, 1]`` start scattered uniformly over the action box [-10, 10]² and
negotiate on ``log p(a) = r(a) / α``, with α annealed geometrically over repeated calls of ``negotiate``
(each call K rounds, step size ε = ``step_scale`` · α, particles clipped to the box between calls):

* ``two_modalities``: ``r = max(fA, fB)``, ``fA = 10 - (a1 - 5)² - (a2 - 5)²``, fB the same at (-5, -5).
  Good outcome: particles on both peaks, paired (same sign for both agents), none on the bad corners
  (5, -5), (-5, 5).
* ``max_of_three``: adds ``fC = 2 - 0.5 [(a1/4)² + (a2/4)²]``, a broad low bump at the origin (the trap).

Each landscape is run with the ``nested`` topology (SVNR's default) and, for contrast, ``full`` (plain
SVGD on the joint) and ``independent`` (no reasoning about the teammate), all from the same start. Prints
a summary and saves one PNG of particles before/after over the reward contours. Rewards are plain ``jnp``
formulas (no clipping, so the score is defined everywhere).

Pass criterion printed for ``two_modalities`` (docs/environments.md, PRO): each good peak holds ≥ 20 % of the
particles and the bad corners ≤ 5 %. For ``max_of_three`` the summary gives the fraction within 1 of a
height-10 peak (docs/environments.md, ERO) and the fraction left near the origin bump.

    python -m experiments.negotiation_demo [--out DIR] [--seed S]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from svnr_jax import negotiate

ACTION_LIMIT = 10.0
PEAK = 5.0
NEAR = 1.5  # a particle is "at" a point when within this distance of it
TOPOLOGIES = ("nested", "full", "independent")


# --------------------------------------------------------------------------- landscapes (docs/environments.md)


def _peak(a: jax.Array, centre: float) -> jax.Array:
    return 10.0 - jnp.sum((a - centre) ** 2, axis=-1)


def reward_two_modalities(a: jax.Array) -> jax.Array:
    """``max(fA, fB)`` for joint actions ``a [..., 2]`` in action units ([-10, 10])."""
    return jnp.maximum(_peak(a, PEAK), _peak(a, -PEAK))


def reward_max_of_three(a: jax.Array) -> jax.Array:
    """``max(fA, fB, fC)`` with the broad origin bump ``fC = 2 - 0.5 Σ (a_i / 4)²``."""
    f_c = 2.0 - 0.5 * jnp.sum((a / 4.0) ** 2, axis=-1)
    return jnp.maximum(reward_two_modalities(a), f_c)


def _log_p_two_modalities(u: jax.Array, alpha: jax.Array) -> jax.Array:
    return reward_two_modalities(u[:, 0]) / alpha  # u [N=2, d=1]


def _log_p_max_of_three(u: jax.Array, alpha: jax.Array) -> jax.Array:
    return reward_max_of_three(u[:, 0]) / alpha


LANDSCAPES: dict[str, tuple[Callable, Callable]] = {
    "two_modalities": (reward_two_modalities, _log_p_two_modalities),
    "max_of_three": (reward_max_of_three, _log_p_max_of_three),
}


# --------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class DemoConfig:
    """Demo settings.

    Attributes:
      num_particles: M joint-action particles.
      alpha_start, alpha_end: temperature annealed geometrically from start to end over the calls.
      num_calls: calls of ``negotiate`` (one temperature each).
      rounds_per_call: K rounds per call.
      step_scale: step size ε = step_scale · α, so that ε · score = step_scale · ∇r at every α. Inside a
        tight cluster near a peak (curvature 2) one round contracts by 1 - 2 · step_scale · Σ_m k / M,
        which stays in (-1, 1) for step_scale < 1; 0.5 was the best of 0.1 / 0.5 / 1 / 2 / 4 we tried.
      tol: agreement threshold passed to ``negotiate``.
    """

    num_particles: int = 64
    alpha_start: float = 30.0
    alpha_end: float = 0.3
    num_calls: int = 40
    rounds_per_call: int = 20
    step_scale: float = 0.5
    tol: float = 1e-3


def alpha_schedule(cfg: DemoConfig) -> np.ndarray:
    """``[num_calls]`` geometric temperatures from ``alpha_start`` to ``alpha_end``."""
    return np.geomspace(cfg.alpha_start, cfg.alpha_end, cfg.num_calls).astype(np.float32)


def make_annealed_negotiation(log_p: Callable, topology: str, cfg: DemoConfig) -> Callable:
    """Jitted ``(particles [M, 2, 1], alphas [C]) -> (particles, rounds_used [C], converged [C],
    max_phi [C])``: one ``negotiate`` call per temperature, max_phi = max ||φ|| in each call's last round."""

    def one_call(u, alpha):
        res = negotiate(
            log_p,
            u,
            topology=topology,
            num_rounds=cfg.rounds_per_call,
            step_size=cfg.step_scale * alpha,
            tol=cfg.tol,
            args=(alpha,),
        )
        diagnostics = (res.rounds_used, res.converged, res.max_phi_norm[-1])
        return jnp.clip(res.particles, -ACTION_LIMIT, ACTION_LIMIT), diagnostics

    def run(particles, alphas):
        final, (used, converged, max_phi) = jax.lax.scan(one_call, particles, alphas)
        return final, used, converged, max_phi

    return jax.jit(run)


def outcome(actions: np.ndarray, reward_fn: Callable) -> dict[str, float]:
    """Where joint actions ``[M, 2]`` ended: fractions near each peak / bad corner / origin, pairing."""
    points = {
        "peak_pp": (PEAK, PEAK),
        "peak_mm": (-PEAK, -PEAK),
        "bad_pm": (PEAK, -PEAK),
        "bad_mp": (-PEAK, PEAK),
        "origin": (0.0, 0.0),
    }
    dist = {name: np.linalg.norm(actions - np.array(p), axis=-1) for name, p in points.items()}
    out = {name: float(np.mean(d < NEAR)) for name, d in dist.items()}
    out["bad_corners"] = out.pop("bad_pm") + out.pop("bad_mp")
    out["within_1_of_peak"] = float(np.mean(np.minimum(dist["peak_pp"], dist["peak_mm"]) < 1.0))
    out["paired"] = float(np.mean(np.sign(actions[:, 0]) == np.sign(actions[:, 1])))
    out["mean_reward"] = float(np.mean(np.asarray(reward_fn(jnp.asarray(actions)))))
    return out


def run_demo(cfg: DemoConfig, seed: int) -> dict[str, Any]:
    """All landscapes × topologies from the same scattered start. Returns initial/final particles and stats."""
    key = jax.random.key(seed)
    init = jax.random.uniform(key, (cfg.num_particles, 2, 1), minval=-ACTION_LIMIT, maxval=ACTION_LIMIT)
    alphas = jnp.asarray(alpha_schedule(cfg))
    runs: dict[str, Any] = {"initial": np.asarray(init[:, :, 0]), "landscapes": {}}
    for name, (reward_fn, log_p) in LANDSCAPES.items():
        per_topology = {}
        for topology in TOPOLOGIES:
            fn = make_annealed_negotiation(log_p, topology, cfg)
            t0 = time.perf_counter()
            compiled = fn.lower(init, alphas).compile()
            t1 = time.perf_counter()
            final, used, converged, max_phi = jax.block_until_ready(compiled(init, alphas))
            t2 = time.perf_counter()
            actions = np.asarray(final[:, :, 0])
            per_topology[topology] = {
                "final": actions,
                "stats": outcome(actions, reward_fn),
                "rounds_used": int(np.sum(used)),
                "rounds_max": cfg.num_calls * cfg.rounds_per_call,
                "converged_last_call": bool(np.asarray(converged)[-1]),
                "final_max_phi": float(np.asarray(max_phi)[-1]),
                "compile_s": t1 - t0,
                "run_s": t2 - t1,
            }
        runs["landscapes"][name] = per_topology
    runs["initial_stats"] = {name: outcome(runs["initial"], fns[0]) for name, fns in LANDSCAPES.items()}
    return runs


# --------------------------------------------------------------------------- reporting


def pro_pass(stats: dict[str, float]) -> bool:
    """The PRO criterion on ``two_modalities``: each good peak ≥ 20 % of particles, bad corners ≤ 5 %."""
    return stats["peak_pp"] >= 0.2 and stats["peak_mm"] >= 0.2 and stats["bad_corners"] <= 0.05


def summary_lines(runs: dict[str, Any], cfg: DemoConfig) -> list[str]:
    alphas = alpha_schedule(cfg)
    lines = [
        f"negotiate demo: M={cfg.num_particles} particles [M, 2 agents, 1 dim] scattered uniformly on [-10, 10]^2; "
        f"alpha {alphas[0]:g} -> {alphas[-1]:g} over {cfg.num_calls} calls x K={cfg.rounds_per_call} rounds, "
        f"step = {cfg.step_scale:g} * alpha",
        f"columns: fraction within {NEAR:g} of peak (5,5) | peak (-5,-5); of the bad corners (5,-5), (-5,5); of the "
        "origin; paired = same sign for both agents; rounds applied (stop at max|phi| < tol)",
    ]
    for name, per_topology in runs["landscapes"].items():
        s0 = runs["initial_stats"][name]
        lines.append(f"[{name}] start: paired {s0['paired']:.2f}, mean reward {s0['mean_reward']:.1f}")
        for topology, r in per_topology.items():
            s = r["stats"]
            if name == "two_modalities":
                verdict = "PRO pass" if pro_pass(s) else "PRO fail"
            else:
                verdict = f"within 1 of a height-10 peak {s['within_1_of_peak']:.2f}"
            lines.append(
                f"  {topology:<11} peaks {s['peak_pp']:.2f} | {s['peak_mm']:.2f}  bad {s['bad_corners']:.2f}  "
                f"origin {s['origin']:.2f}  paired {s['paired']:.2f}  mean reward {s['mean_reward']:5.2f}  "
                f"rounds {r['rounds_used']}/{r['rounds_max']} (last max|phi| {r['final_max_phi']:.2g})  "
                f"compile {r['compile_s']:.1f}s run {r['run_s']:.2f}s  -> {verdict}"
            )
    return lines


def save_plot(runs: dict[str, Any], path: Path) -> None:
    """One PNG: a row per landscape; columns start / nested / independent over the reward contours."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.linspace(-ACTION_LIMIT, ACTION_LIMIT, 201)
    a1, a2 = np.meshgrid(grid, grid)
    mesh = jnp.asarray(np.stack([a1, a2], axis=-1))
    names = list(runs["landscapes"])
    fig, axes = plt.subplots(len(names), 1 + len(TOPOLOGIES), figsize=(4.2 * (1 + len(TOPOLOGIES)), 4 * len(names)))
    for row, name in enumerate(names):
        r = np.asarray(LANDSCAPES[name][0](mesh))
        panels = [("start", runs["initial"], runs["initial_stats"][name])]
        panels += [(t, v["final"], v["stats"]) for t, v in runs["landscapes"][name].items()]
        for col, (title, pts, stats) in enumerate(panels):
            ax = axes[row, col]
            cs = ax.contourf(a1, a2, r, levels=np.linspace(-40, 10, 26), cmap="viridis", extend="min")
            ax.contour(a1, a2, r, levels=[0, 5, 9], colors="white", linewidths=0.5)
            ax.scatter(pts[:, 0], pts[:, 1], s=14, c="red", edgecolors="black", linewidths=0.4, zorder=3)
            ax.set_title(f"{name}: {title}\npaired {stats['paired']:.2f}, bad corners {stats['bad_corners']:.2f}")
            ax.set_xlim(-ACTION_LIMIT, ACTION_LIMIT)
            ax.set_ylim(-ACTION_LIMIT, ACTION_LIMIT)
            ax.set_aspect("equal")
            ax.set_xlabel("agent 1 action")
            ax.set_ylabel("agent 2 action")
        fig.colorbar(cs, ax=axes[row, -1], label="reward")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the demo; returns ``{"runs", "summary" (lines), "png" (path)}``."""
    parser = argparse.ArgumentParser(description="negotiate() on the two-peak and three-peak games")
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"), help="output dir (default outputs/demo)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the scattered initial particles (default 0)")
    args = parser.parse_args(argv)
    cfg = DemoConfig()
    t0 = time.perf_counter()
    runs = run_demo(cfg, args.seed)
    png = args.out / "negotiation_demo.png"
    save_plot(runs, png)
    lines = summary_lines(runs, cfg)
    lines.append(f"total wall time {time.perf_counter() - t0:.1f}s (compile included); plot: {png}")
    print("\n".join(lines))
    return {"runs": runs, "summary": lines, "png": png}


if __name__ == "__main__":
    main()
