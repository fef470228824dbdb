"""The paper's stress-test comparison: every algorithm × the stress games × S vmapped seeds, one budget.

For each (algorithm, game) one compiled program trains the S seeds at once
(``jax.jit(jax.vmap(make_train(cfg)))``) with the game's run preset (the same env-step budget and pass
criterion for every algorithm; algorithm settings from :mod:`svnr_jax.presets`). Then every seed plays
executed episodes in each of the algorithm's execution modes, and the pass criterion is applied to its
**test mode** (what the algorithm executes: SVNR shared-seed sampling, MASQL each agent sampling its own
component, MADDPG its deterministic actors); the same criterion in the other modes is reported beside it
(``passes_by_mode``, from fewer episodes), which separates what was learned from how it is executed:

* ``max_of_two`` [PR2 §5.2]: ≥ 90 % of the executed joint actions at the narrow global peak (reward ≥ 9).
* ``two_modalities`` (PRO, docs/environments.md), judged on the executed joint samples at the final temperature: each
  good peak (±5, ±5) holds ≥ 20 % of the samples (within distance 2.5, native units), the bad corners
  (5,-5), (-5,5) hold ≤ 2 % (within 2.5). A deterministic policy can hold at most one peak: it fails.
* ``max_of_three`` (ERO): ≥ 90 % of the executed joint actions within distance 1 of a height-10 peak
  (reward ≥ 9).
* ``climbing`` / ``penalty``: ≥ 90 % of the executed joint actions in an optimal cell (11 / 10).
* ``particle_gather`` [ours]: mean executed episode return > 0 — positive return needs steps with every
  agent inside the landmark (+10); waiting outside (the RO trap) earns a small negative return.
* ``single_peak`` (RO-free sanity game): ≥ 90 % of the executed joint actions with reward ≥ 8.

Outputs (``--out``, default ``experiments/results/stress``): ``stress_results.json`` (per algorithm and
game: pass count with a Wilson 95 % interval, per-seed returns per mode, mean ± std, IQM with a 95 %
bootstrap CI, wall time), per game ``<game>_samples.png`` (a panel per algorithm: executed joint samples
of the seeds over the reward landscape; two-agent one-step games; from ``samples_<game>_<algo>.npy``) and
``<game>_curves.png`` (in-scan evaluation return of the test mode, a line per algorithm), and a printed
table. Results of (algorithm, game) pairs not rerun are kept, and the figures show every stored algorithm.

    python -m experiments.stress_tests                                 # every algorithm, six games, 10 seeds
    python -m experiments.stress_tests --algos svnr masql maddpg       # some algorithms
    python -m experiments.stress_tests --small                         # make demo: SVNR, MASQL, MADDPG on the
                                                                       # PRO and ERO games, 3 seeds, small budget
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import numpy as np

from svnr_jax import acting
from svnr_jax.algorithms import list_algorithms
from svnr_jax.config import TrainConfig
from svnr_jax.presets import preset
from svnr_jax.stats import pass_rate_ci, summarize
from svnr_jax.training import build, make_train, seed_keys

GAMES = ("max_of_two", "two_modalities", "max_of_three", "particle_gather", "climbing", "penalty")
SMALL_GAMES = ("two_modalities", "max_of_three")
SMALL_ALGOS = ("svnr", "masql", "maddpg")  # the method and the two baselines that define the paper's failure modes
SAMPLE_EPISODES = 1000  # executed episodes per seed in the test mode (one-step games)
OTHER_EPISODES = 100  # per seed in the other modes, and in the test mode of multi-step games


def pass_criteria(game: str, returns: np.ndarray, actions: np.ndarray, low: float, high: float) -> dict:
    """Pass criterion of one seed from its executed episodes in the algorithm's test mode.

    Args:
      game: env name. returns: ``[E]`` executed episode returns. actions: ``[E, N, A]`` first joint
        actions in ``[-1, 1]``. low, high: native action bounds.
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
    if game in ("max_of_three", "max_of_two"):
        frac = float(np.mean(returns >= 9.0))
        origin = float(np.mean(np.linalg.norm(a, axis=-1) < 2.0))
        return {"pass": frac >= 0.9, "frac_at_peak": frac, "frac_at_origin": origin}
    if game in ("climbing", "penalty"):
        best = 11.0 if game == "climbing" else 10.0
        frac = float(np.mean(returns >= best - 1e-3))
        return {"pass": frac >= 0.9, "frac_optimal": frac}
    if game == "particle_gather":
        return {"pass": bool(np.mean(returns) > 0.0), "mean_return": float(np.mean(returns))}
    if game == "single_peak":
        frac = float(np.mean(returns >= 8.0))
        return {"pass": frac >= 0.9, "frac_above_8": frac}
    raise ValueError(f"no pass criterion for game {game!r}; games with one: {list(GAMES) + ['single_peak']}")


def game_config(game: str, algo: str, seeds: int, small: bool, algo_config: dict | None = None, **overrides
                ) -> TrainConfig:
    """The stress-test config of (``algo``, ``game``): the presets; ``small`` shrinks the budget (make demo)."""
    over: dict = dict(num_seeds=seeds)
    if small:
        its = {"climbing": 300, "particle_gather": 300}.get(game, 1000)
        over.update(iterations=its, chunk_iterations=its, eval_every=its // 4)
    over.update(overrides)
    return preset(game, algo, algo_config=algo_config, **over)


def run_game(game: str, cfg: TrainConfig) -> dict:
    """Train ``cfg.num_seeds`` seeds vmapped, then play every execution mode and judge each seed."""
    setup = build(cfg)
    agent, spec = setup.agent, setup.agent.spec
    train = jax.jit(jax.vmap(make_train(cfg)))
    t0 = time.time()
    out = jax.block_until_ready(train(seed_keys(cfg)))
    train_time = time.time() - t0
    test_episodes = SAMPLE_EPISODES if spec.episode_length == 1 else OTHER_EPISODES

    @jax.jit
    def play(ls, iteration, key):
        res = {}
        for i, m in enumerate(agent.modes):
            n = test_episodes if m == agent.test_mode else OTHER_EPISODES
            r = acting.rollout(setup.eval_env, acting.agent_policy(agent, ls, iteration, m), jax.random.fold_in(key, i),
                               n)
            res[m] = (r.returns, r.first_actions)
        return res

    plays = jax.device_get(jax.vmap(play, (0, 0, None))(out.state.learner, out.state.iteration, jax.random.key(999)))
    per_seed = []
    for s in range(cfg.num_seeds):
        ret, act = plays[agent.test_mode][0][s], plays[agent.test_mode][1][s]
        crit = pass_criteria(game, ret, act, spec.action_low, spec.action_high)
        other = {f"pass_{m}": bool(pass_criteria(game, plays[m][0][s], plays[m][1][s], spec.action_low,
                                                 spec.action_high)["pass"]) for m in agent.modes}
        per_seed.append({"seed": s, **crit, **other,
                         **{f"return_{m}": float(np.mean(plays[m][0][s])) for m in agent.modes}})
    passes = int(sum(p["pass"] for p in per_seed))
    passes_by_mode = {m: int(sum(p[f"pass_{m}"] for p in per_seed)) for m in agent.modes}
    evals, metrics = jax.device_get(out.eval), jax.device_get(out.metrics)
    test_key = f"eval_{agent.test_mode}"
    curve_key = test_key if test_key in evals else f"eval_{agent.eval_modes[0]}"
    return {
        "algo": cfg.algo, "game": game, "seeds": cfg.num_seeds, "iterations": cfg.iterations,
        "env_steps": int(out.state.env_steps[0]), "num_envs": cfg.num_envs, "train_seconds": train_time,
        "test_mode": agent.test_mode,
        "passes": passes, "pass_rate": passes / cfg.num_seeds, "passes_by_mode": passes_by_mode,
        "pass_rate_ci95": list(pass_rate_ci(passes, cfg.num_seeds)),
        "returns": {m: summarize(np.array([p[f"return_{m}"] for p in per_seed])) for m in agent.modes},
        "final_alpha": float(np.asarray(metrics["alpha"])[0, -1]) if "alpha" in metrics else None,
        "per_seed": per_seed,
        "curve": {"eval_iteration": np.asarray(evals["eval_iteration"][0]).tolist(), "mode": curve_key[5:],
                  "returns": np.asarray(evals[curve_key]).tolist()},
        "_samples": plays[agent.test_mode][1], "_config": cfg,
    }


def plot_samples(results: list[dict], path: str, out: str, max_seeds: int = 10) -> bool:
    """One figure for a game: a panel per algorithm with the executed joint samples (test mode) of its seeds
    over the reward landscape (two-agent one-step games with stored samples; returns False otherwise)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from svnr_jax.envs import make
    from svnr_jax.plotting import plot_reward_landscape

    game = results[0]["game"]
    spec = make(game).spec
    files = {r["algo"]: os.path.join(out, f"samples_{game}_{r['algo']}.npy") for r in results}
    results = [r for r in results if os.path.exists(files[r["algo"]])]
    if spec.episode_length != 1 or spec.num_agents != 2 or not results:
        return False
    cols = min(len(results), 4)
    rows = (len(results) + cols - 1) // cols
    fig = Figure(figsize=(3.6 * cols, 3.6 * rows))
    FigureCanvasAgg(fig)
    lo, hi = spec.action_low, spec.action_high
    colors = ["cyan", "magenta", "lime", "orange", "white", "yellow", "red", "blue", "black", "pink"]
    for j, r in enumerate(results):
        ax = fig.add_subplot(rows, cols, j + 1)
        plot_reward_landscape(game, ax=ax)
        leg = ax.get_legend()
        if leg is not None:
            leg.remove()
        samples = np.load(files[r["algo"]])
        for s in range(min(len(samples), max_seeds)):
            u = samples[s][:, :, 0]
            a = lo + 0.5 * (u + 1.0) * (hi - lo)
            ax.scatter(a[:, 0], a[:, 1], s=8, c=colors[s % len(colors)], edgecolors="black", linewidths=0.2, alpha=0.7,
                       zorder=5)
        ax.set_title(f"{r['algo']} ({r['test_mode']}): {r['passes']}/{r['seeds']} pass", fontsize=9)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
    fig.suptitle(f"{game}: executed joint actions (a colour per seed)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    return True


def plot_curves(results: list[dict], path: str) -> None:
    """In-scan evaluation return (each algorithm's test mode) over env steps, mean ± std over seeds."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 3.6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for r in results:
        x = np.asarray(r["curve"]["eval_iteration"]) * r["num_envs"]
        y = np.asarray(r["curve"]["returns"])
        m, s = y.mean(0), y.std(0)
        ax.plot(x, m, label=f"{r['algo']} ({r['curve']['mode']})")
        ax.fill_between(x, m - s, m + s, alpha=0.2)
    ax.set_xlabel("env steps (after warm-up)")
    ax.set_ylabel("episode return")
    ax.set_title(f"{results[0]['game']} ({results[0]['seeds']} seeds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def plot_game(game: str, results: list[dict], out: str) -> None:
    """The figures of one game from every stored result of it: ``<game>_samples.png``, ``<game>_curves.png``."""
    if results:
        plot_samples(results, os.path.join(out, f"{game}_samples.png"), out)
        plot_curves(results, os.path.join(out, f"{game}_curves.png"))


def print_table(results: list[dict], file=None) -> None:
    """Per (game, algorithm): passes, test-mode return mean ± std and IQM [95 % CI], wall time."""
    file = sys.stdout if file is None else file
    print(f"{'game':<16}{'algo':<8}{'test mode':<14}{'pass':>7}{'return mean ± std':>22}{'IQM [95% CI]':>26}"
          f"{'train s':>9}  passes in the other modes", file=file)
    for r in results:
        t = r["returns"][r["test_mode"]]
        others = " ".join(f"{m} {k}/{r['seeds']}" for m, k in r.get("passes_by_mode", {}).items()
                          if m != r["test_mode"])
        print(f"{r['game']:<16}{r['algo']:<8}{r['test_mode']:<14}{r['passes']:>3}/{r['seeds']:<3}"
              f"{t['mean']:>12.2f} ± {t['std']:<7.2f}{t['iqm']:>10.2f} [{t['iqm_ci_low']:.2f}, {t['iqm_ci_high']:.2f}]"
              f"{r['train_seconds']:>9.0f}  {others}", file=file)


def markdown_table(results: list[dict]) -> str:
    """A markdown table (a row per game, a column per algorithm): passes and the test-mode return IQM."""
    algos = list(dict.fromkeys(r["algo"] for r in results))
    games = list(dict.fromkeys(r["game"] for r in results))
    by = {(r["game"], r["algo"]): r for r in results}
    lines = ["| game | " + " | ".join(algos) + " |", "|---|" + "---|" * len(algos)]
    for g in games:
        cells = []
        for a in algos:
            r = by.get((g, a))
            if r is None:
                cells.append("–")
                continue
            t = r["returns"][r["test_mode"]]
            cells.append(f"**{r['passes']}/{r['seeds']}** · {t['iqm']:.2f} [{t['iqm_ci_low']:.2f}, "
                         f"{t['iqm_ci_high']:.2f}]")
        lines.append(f"| {g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_overrides(items: list[str]) -> tuple[dict, dict]:
    """``["batch_size=32", "algo.bandwidth=1.0"]`` → ``({"batch_size": 32}, {"bandwidth": 1.0})`` (JSON values)."""
    run, algo = {}, {}
    for item in items:
        key, _, text = item.partition("=")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        if isinstance(value, list):
            value = tuple(value)
        if key.startswith("algo."):
            algo[key[5:]] = value
        else:
            run[key] = value
    return run, algo


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algos", nargs="+", default=None,
                   help=f"algorithms to compare, or all (default; with --small: {' '.join(SMALL_ALGOS)}); registered: "
                        f"{list_algorithms()}")
    p.add_argument("--games", nargs="+", default=None, choices=(*GAMES, "single_peak"),
                   help=f"games (default: {' '.join(GAMES)}; with --small: {' '.join(SMALL_GAMES)})")
    p.add_argument("--seeds", type=int, default=None, help="seeds per (algorithm, game), vmapped (default 10; 3 "
                                                           "with --small)")
    p.add_argument("--small", action="store_true",
                   help="small budget for `make demo`: 3 seeds, the PRO and ERO games, 1000 iterations (300 for "
                        "climbing and particle_gather)")
    p.add_argument("--iterations", type=int, default=None, help="override the preset's iterations")
    p.add_argument("--out", default="experiments/results/stress", help="output folder")
    p.add_argument("--fresh", action="store_true", help="drop earlier results in --out (default: keep the results "
                                                         "of (algorithm, game) pairs not rerun now)")
    p.add_argument("--set", nargs="+", default=[], metavar="FIELD=VALUE",
                   help="overrides for every run, e.g. batch_size=32 algo.gamma=0.0 (JSON values; algo.* fields "
                        "must exist in every chosen algorithm's config)")
    p.add_argument("--report", action="store_true",
                   help="train nothing: print the stored results of --out as tables and redraw its figures")
    args = p.parse_args(argv)
    if args.report:
        with open(os.path.join(args.out, "stress_results.json")) as f:
            stored = json.load(f)["results"]
        order = [*GAMES, "single_peak"]
        algos_known = list_algorithms()
        stored.sort(key=lambda r: (order.index(r["game"]) if r["game"] in order else len(order),
                                   algos_known.index(r["algo"]) if r["algo"] in algos_known else len(algos_known)))
        print_table(stored)
        print()
        print(markdown_table(stored))
        for game in dict.fromkeys(r["game"] for r in stored):
            plot_game(game, [r for r in stored if r["game"] == game], args.out)
        return 0
    algos = args.algos or (list(SMALL_ALGOS) if args.small else ["all"])
    algos = list_algorithms() if algos == ["all"] else algos
    unknown = [a for a in algos if a not in list_algorithms()]
    if unknown:
        p.error(f"unknown algorithm(s) {unknown}; registered: {list_algorithms()}")
    games = args.games or (SMALL_GAMES if args.small else GAMES)
    seeds = args.seeds or (3 if args.small else 10)
    run_over, algo_over = parse_overrides(args.set)
    if args.iterations:
        n = args.iterations
        run_over.update(iterations=n, chunk_iterations=n, eval_every=n // 4 if n % 4 == 0 else n)
    os.makedirs(args.out, exist_ok=True)
    try:  # every config validated before anything trains
        configs = {(g, a): game_config(g, a, seeds, args.small, algo_over, **run_over) for g in games for a in algos}
    except ValueError as e:
        p.error(str(e))
    path = os.path.join(args.out, "stress_results.json")
    kept = []  # results of other (algorithm, game) pairs already in the output folder are kept
    if os.path.exists(path) and not args.fresh:
        with open(path) as f:
            kept = [r for r in json.load(f).get("results", []) if (r.get("game"), r.get("algo")) not in configs]
        if kept:
            print(f"keeping {len(kept)} earlier results from {path} (--fresh to drop them)")
    results = []
    for game in games:
        per_game = []
        for algo in algos:
            cfg = configs[(game, algo)]
            print(f"== {game} / {algo}: {seeds} seeds, {cfg.iterations} iterations", flush=True)
            r = run_game(game, cfg)
            per_game.append(r)
            print_table([r])
        for r in per_game:  # executed joint samples (test mode, ≤ 200 per seed) kept for the figures
            np.save(os.path.join(args.out, f"samples_{game}_{r['algo']}.npy"), np.asarray(r["_samples"])[:, :200])
        results += per_game
        clean = kept + [{k: v for k, v in r.items() if not k.startswith("_")} for r in results]
        plot_game(game, [r for r in clean if r["game"] == game], args.out)
        with open(path + ".tmp", "w") as f:  # after every game: nothing lost
            json.dump({"device": str(jax.devices()[0]), "results": clean}, f, indent=1)
        os.replace(path + ".tmp", path)
    print()
    print_table(results)
    print(f"results: {path}; plots: {args.out}/<game>_samples.png, "
          "<game>_curves.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
