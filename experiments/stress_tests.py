"""SVNR stress tests: two_modalities (PRO), max_of_three (ERO), climbing, particle_gather.

Every game trains S seeds at once (``jax.jit(jax.vmap(make_train(cfg)))``), then plays executed
episodes under the shared-seed (a), deterministic (b) and explicit-negotiation (c, 100 episodes: the
amortization gap) execution modes and applies the pass criteria (to mode a):

* ``two_modalities`` (PRO, SPEC §6), judged on the policy's joint samples (mode a) at the final
  temperature (a moderate α, where the optimal joint policy is bimodal): each good peak (±5, ±5) holds
  ≥ 20 % of the samples (within distance 2.5, native units), the bad corners (5,-5), (-5,5) hold ≤ 2 %
  (within 2.5).
* ``max_of_three`` (ERO): ≥ 90 % of the executed joint actions (mode a) within distance 1 of a
  height-10 peak (reward ≥ 9).
* ``climbing``: ≥ 90 % of the executed joint actions (mode a) in the optimal cell (0, 0) (reward 11).
* ``particle_gather`` [ours]: mean executed episode return (mode a) > 0 — positive return needs steps
  with every agent inside the landmark (+10); waiting outside (the RO trap) earns a small negative
  return. Reported beside it: the fraction of episodes that end with every agent inside.

Outputs (``--out``, default ``experiments/results/stress``): ``stress_results.json``, per game
``<game>_samples.png`` (joint samples of each seed over the reward landscape) and
``<game>_curves.png`` (learning curves), and a printed table.

    python -m experiments.stress_tests                 # 10 seeds, full budget
    python -m experiments.stress_tests --small         # make demo: 3 seeds, small budget, minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import numpy as np

from svnr_jax.config import TrainConfig, preset
from svnr_jax.training import build, make_train, rollout, seed_keys

GAMES = ("two_modalities", "max_of_three", "climbing", "particle_gather")
SAMPLE_EPISODES = 1000


def pass_criteria(game: str, returns: np.ndarray, actions: np.ndarray, low: float, high: float) -> dict:
    """Pass criteria of one seed.

    Args:
      game: env name. returns: ``[E]`` executed episode returns (mode a). actions: ``[E, N, A]`` first
        joint actions in ``[-1, 1]``. low, high: native action bounds.
    Returns:
      dict with ``pass`` (bool) and the measured quantities.
    """
    a = low + 0.5 * (np.clip(actions[:, :, 0], -1, 1) + 1.0) * (high - low)  # [E, N] native
    if game == "two_modalities":
        n = a.shape[1]
        near = lambda c: np.mean(np.linalg.norm(a - np.asarray(c), axis=-1) < 2.5)
        share_pos, share_neg = near([5.0] * n), near([-5.0] * n)
        bad = float(np.mean([near(c) for c in ([5.0, -5.0], [-5.0, 5.0])]) * 2) if n == 2 else float(
            np.mean(np.any(np.sign(a) != np.sign(a[:, :1]), axis=1) & (np.abs(a).min(1) > 2.5)))
        pairing = float(np.mean(np.all(np.sign(a) == np.sign(a[:, :1]), axis=1)))
        ok = share_pos >= 0.2 and share_neg >= 0.2 and bad <= 0.02
        return {"pass": bool(ok), "share_pos_peak": float(share_pos), "share_neg_peak": float(share_neg),
                "bad_corners": bad, "pairing": pairing}
    if game == "max_of_three":
        frac = float(np.mean(returns >= 9.0))
        origin = float(np.mean(np.linalg.norm(a, axis=-1) < 2.0))
        return {"pass": frac >= 0.9, "frac_at_peak": frac, "frac_at_origin": origin}
    if game in ("climbing", "penalty"):
        best = 11.0 if game == "climbing" else 10.0
        frac = float(np.mean(returns >= best - 1e-3))
        return {"pass": frac >= 0.9, "frac_optimal": frac}
    if game == "particle_gather":
        return {"pass": bool(np.mean(returns) > 0.0), "mean_return": float(np.mean(returns))}
    return {"pass": False}


def game_config(game: str, seeds: int, small: bool, **overrides) -> TrainConfig:
    """The stress-test config of ``game`` (its preset; ``small`` shrinks the budget for ``make demo``)."""
    over: dict = dict(num_seeds=seeds)
    if small:
        its = {"climbing": 300, "particle_gather": 300}.get(game, 1000)
        over.update(iterations=its, chunk_iterations=its, eval_every=its // 4)
    svnr = overrides.pop("svnr", {})
    over.update(overrides)
    return preset(game, **over, svnr=svnr)


def run_game(game: str, cfg: TrainConfig, sample_episodes: int = SAMPLE_EPISODES) -> dict:
    """Train ``cfg.num_seeds`` seeds of ``game`` vmapped, then evaluate and judge every seed."""
    setup = build(cfg)
    train = jax.jit(jax.vmap(make_train(cfg)))
    t0 = time.time()
    out = jax.block_until_ready(train(seed_keys(cfg)))
    train_time = time.time() - t0
    episodes = sample_episodes if setup.agent.spec.episode_length == 1 else 100

    @jax.jit
    def play(ls, iteration, key):
        alpha = setup.agent.alpha(iteration)
        return {m: rollout(setup, ls, jax.random.fold_in(key, i), alpha, m, episodes if m != "negotiate" else 100)
                for i, m in enumerate(("shared_seed", "deterministic", "negotiate"))}

    plays = jax.device_get(jax.vmap(play, (0, 0, None))(out.state.learner, out.state.iteration, jax.random.key(999)))
    spec = setup.agent.spec
    per_seed = []
    for s in range(cfg.num_seeds):
        ret_a, act_a = plays["shared_seed"][0][s], plays["shared_seed"][1][s]
        ret_b, ret_c = plays["deterministic"][0][s], plays["negotiate"][0][s]
        crit = pass_criteria(game, ret_a, act_a, spec.action_low, spec.action_high)
        per_seed.append({"seed": s, **crit, "return_shared_seed": float(np.mean(ret_a)),
                         "return_deterministic": float(np.mean(ret_b)), "return_negotiate": float(np.mean(ret_c))})
    ra = np.array([p["return_shared_seed"] for p in per_seed])
    rb = np.array([p["return_deterministic"] for p in per_seed])
    rc = np.array([p["return_negotiate"] for p in per_seed])
    evals = jax.device_get(out.eval)
    metrics = jax.device_get(out.metrics)
    return {
        "game": game, "seeds": cfg.num_seeds, "iterations": cfg.iterations, "train_seconds": train_time,
        "pass_rate": float(np.mean([p["pass"] for p in per_seed])), "passes": int(sum(p["pass"] for p in per_seed)),
        "return_shared_seed": [float(ra.mean()), float(ra.std())],
        "return_deterministic": [float(rb.mean()), float(rb.std())],
        "return_negotiate": [float(rc.mean()), float(rc.std())],
        "final_alpha": float(np.asarray(metrics["alpha"])[0, -1]),
        "per_seed": per_seed,
        "curves": {"eval_iteration": np.asarray(evals["eval_iteration"][0]).tolist(),
                   "eval_shared_seed": np.asarray(evals["eval_shared_seed"]).tolist(),
                   "eval_deterministic": np.asarray(evals["eval_deterministic"]).tolist()},
        "_samples": plays["shared_seed"][1], "_config": cfg,
    }


def plot_samples(result: dict, path: str, max_seeds: int = 10) -> None:
    """Joint samples (mode a) of each seed over the game's reward landscape (two-agent one-step games)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cfg = result["_config"]
    spec = build(cfg).agent.spec
    if spec.episode_length != 1 or spec.num_agents != 2:
        return
    try:
        from svnr_jax.plotting import plot_reward_landscape
    except ImportError:  # pragma: no cover
        plot_reward_landscape = None
    seeds = min(result["seeds"], max_seeds)
    cols = min(seeds, 5)
    rows = (seeds + cols - 1) // cols
    fig = Figure(figsize=(3.2 * cols, 3.2 * rows))
    FigureCanvasAgg(fig)
    lo, hi = spec.action_low, spec.action_high
    for s in range(seeds):
        ax = fig.add_subplot(rows, cols, s + 1)
        if plot_reward_landscape is not None:
            plot_reward_landscape(cfg.env, ax=ax, **cfg.env_kwargs)
            leg = ax.get_legend()
            if leg is not None:
                leg.remove()
        u = np.asarray(result["_samples"][s])[:300, :, 0]
        a = lo + 0.5 * (u + 1.0) * (hi - lo)
        ax.scatter(a[:, 0], a[:, 1], s=4, c="cyan", edgecolors="none", alpha=0.7)
        ok = result["per_seed"][s]["pass"]
        ax.set_title(f"seed {s}: {'pass' if ok else 'FAIL'}", fontsize=9)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
    fig.suptitle(f"{result['game']}: SVNR joint samples (shared-seed mode), α={result['final_alpha']:.2g}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def plot_curves(result: dict, path: str) -> None:
    """Evaluation return (modes a and b) over iterations, mean ± std over seeds."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    x = np.asarray(result["curves"]["eval_iteration"])
    for name in ("eval_shared_seed", "eval_deterministic"):
        y = np.asarray(result["curves"][name])
        m, s = y.mean(0), y.std(0)
        ax.plot(x, m, label=name.replace("eval_", ""))
        ax.fill_between(x, m - s, m + s, alpha=0.2)
    ax.set_xlabel("iteration")
    ax.set_ylabel("episode return")
    ax.set_title(f"{result['game']} ({result['seeds']} seeds)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def print_table(results: list[dict], file=sys.stdout) -> None:
    """Per game: pass rate, executed return (modes a, b, c) mean ± std over seeds."""
    print(f"{'game':<17}{'pass':>8}{'return (shared seed)':>24}{'return (ξ=0)':>20}{'return (negotiate)':>22}"
          f"{'train s':>9}", file=file)
    for r in results:
        a, b = r["return_shared_seed"], r["return_deterministic"]
        c = r.get("return_negotiate", [float("nan")] * 2)
        print(f"{r['game']:<17}{r['passes']:>4}/{r['seeds']:<3}{a[0]:>15.2f} ± {a[1]:<6.2f}"
              f"{b[0]:>11.2f} ± {b[1]:<6.2f}{c[0]:>13.2f} ± {c[1]:<6.2f}{r['train_seconds']:>9.0f}", file=file)


def parse_overrides(items: list[str]) -> dict:
    """``["batch_size=32", "svnr.bandwidth=1.0"]`` → ``{"batch_size": 32, "svnr": {"bandwidth": 1.0}}``."""
    out: dict = {}
    for item in items:
        key, _, text = item.partition("=")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        if isinstance(value, list):
            value = tuple(value)
        if key.startswith("svnr."):
            out.setdefault("svnr", {})[key[5:]] = value
        else:
            out[key] = value
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--games", nargs="+", default=list(GAMES), choices=GAMES, help="games to run")
    p.add_argument("--seeds", type=int, default=10, help="seeds per game (vmapped)")
    p.add_argument("--small", action="store_true",
                   help="small budget for `make demo`: 3 seeds unless --seeds is given, 1000 iterations for the "
                        "differential games, 300 for climbing and particle_gather")
    p.add_argument("--iterations", type=int, default=None, help="override the preset's iterations")
    p.add_argument("--out", default="experiments/results/stress", help="output folder")
    p.add_argument("--set", nargs="+", default=[], metavar="FIELD=VALUE",
                   help="config overrides for every game, e.g. batch_size=32 svnr.bandwidth=1.0 (JSON values)")
    args = p.parse_args(argv)
    seeds = 3 if args.small and "--seeds" not in (argv or sys.argv) else args.seeds
    os.makedirs(args.out, exist_ok=True)
    results = []
    for game in args.games:
        over = {}
        if args.iterations:
            over.update(iterations=args.iterations, chunk_iterations=args.iterations)
        over.update(parse_overrides(args.set))
        cfg = game_config(game, seeds, args.small, **over)
        print(f"== {game}: {seeds} seeds, {cfg.iterations} iterations", flush=True)
        r = run_game(game, cfg)
        plot_samples(r, os.path.join(args.out, f"{game}_samples.png"))
        plot_curves(r, os.path.join(args.out, f"{game}_curves.png"))
        results.append(r)
        print_table([r])
    print()
    print_table(results)
    clean = [{k: v for k, v in r.items() if not k.startswith("_")} for r in results]
    path = os.path.join(args.out, "stress_results.json")
    with open(path, "w") as f:
        json.dump({"device": str(jax.devices()[0]), "results": clean}, f, indent=1)
    print(f"results: {path}; plots: {args.out}/<game>_samples.png, <game>_curves.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
