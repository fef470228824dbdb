"""The paper's MaMuJoCo table: every algorithm × MaMuJoCo tasks × S vmapped seeds, one env-step budget.

For each (algorithm, task) one compiled program trains the S seeds at once (:func:`svnr_jax.runner.run` with
``num_seeds = S``: chunks, checkpoints, metrics, exact resume) in ``<runs-dir>/<budget>/<task>/<algo>``. After
training every seed plays ``--test-episodes`` episodes in the algorithm's test mode (SVNR shared-seed sampling,
MASQL independent sampling, MAPPO/HASAC/MADDPG/... their deterministic policies: ``Agent.test_mode``), which
gives the table's cell: the paper's form, mean ± std over seeds, plus IQM with a 95 % bootstrap CI.

Budgets (``--budget``): every algorithm of a table runs at the same env steps, env batch and evaluation
points (:mod:`svnr_jax.presets`: the env's run preset; on-policy algorithms get the same env steps in
rollouts); algorithm settings are each algorithm's MaMuJoCo preset (published values where there are any).

* ``paper``: the presets (2M env steps, one gradient update per env step, evaluation every 80k steps) — for
  an accelerator.
* ``cpu`` [ours]: fits 2 CPU cores: ``--env-steps`` (default 20k, plus 2000 uniform warm-up steps for the
  off-policy algorithms, as the presets count iterations after the warm-up), 2 updates per 16 env steps (the
  presets' update-to-data ratio 1 cut to 1/8 and their batch 256 to 64, for every off-policy algorithm; each
  algorithm's own networks and learning rates), evaluation every 4k env steps (2 episodes per mode), and MJX
  solver settings 4 Newton / 8 line-search iterations (float32-level one-step error against MuJoCo C,
  ``benchmarks/speed_options.py``; 3-4× faster than the defaults). An early-learning snapshot (2500 gradient
  updates: on HalfCheetah-2x3 no algorithm learns to run yet), not the paper's regime.

Outputs (``--out``, default ``experiments/results/mamujoco/<budget>``): ``results.json`` (per (algo, task):
per-seed test returns, summary, in-scan evaluation curve per seed, wall time, env steps/s, config; results of
pairs not rerun are kept), ``table.md`` (the table in the paper's form and with IQM [CI]), ``curves_<task>.png``
(test-mode in-scan evaluation against env steps, a line per algorithm: mean over seeds, band = min..max).

Re-running skips finished (algorithm, task) runs whose config is unchanged and continues interrupted ones
from their last checkpoint; ``--fresh`` retrains them.

    python -m experiments.mamujoco --budget cpu --algos all --tasks HalfCheetah-2x3 Walker2d-2x3 --seeds 3
    python -m experiments.mamujoco --budget paper --algos all --seeds 5      # the paper's four tasks, 2M steps
    python -m experiments.mamujoco --budget paper --estimate --algos svnr --tasks HalfCheetah-2x3 \
        --env-config impl=warp --env-config capsule_frame=mjx --out runs/warp   # Warp (NVIDIA GPU): time per run
    python -m experiments.mamujoco --budget cpu --report                     # reprint the stored table
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import sys
import time

import jax
import numpy as np

from svnr_jax.algorithms import get_algorithm, list_algorithms
from svnr_jax.cli import parse_env_config
from svnr_jax.config import TrainConfig, to_dict, training_differences, validate
from svnr_jax.presets import MAMUJOCO_TASKS, preset
from svnr_jax.runner import RunDirError, evaluate_state, run
from svnr_jax.stats import summarize
from svnr_jax.training import env_steps_per_iteration

TASKS = ("HalfCheetah-2x3", "CoupledHalfCheetah-1p1", "Ant-2x4", "Walker2d-2x3")
BUDGETS = ("cpu", "paper")
#: The paper's table (SPEC §8: final test return, mean ± std over 5 seeds; budget not published).
PAPER = {
    "svnr": (8853, 212, 423, 89, 536, 31, 1678, 275), "pr2": (8662, 45, 381, 11, 354, 58, 1422, 79),
    "rommeo": (8305, 127, 296, 62, 424, 60, 1399, 32), "qmix": (8263, 618, 3, 27, 212, 209, 495, 243),
    "facmac": (8210, 584, 131, 72, 398, 36, 536, 205), "mappo": (6087, 1177, 15, 138, 87, 135, 672, 59),
    "maddpg": (112, 135, -561, 67, 108, 26, 529, 33), "masql": (56, 65, -490, 86, 225, 34, 332, 18),
    "mmq": (-134, 16, -524, 37, 116, 53, 487, 72)}

# CPU budget [ours]: the run fields every algorithm shares (off-policy fields dropped for on-policy algorithms).
CPU_STEPS = 20_000
CPU_RUN = dict(num_envs=16, updates_per_iteration=2, batch_size=64, warmup_iterations=125, buffer_size=100_000,
               eval_episodes=2,
               env_config=dict(solver_iterations=4, ls_iterations=8))
CPU_EVAL_STEPS = 4_000
OFF_POLICY_ONLY = ("updates_per_iteration", "warmup_iterations", "buffer_size", "batch_size", "critic_warmup_updates",
                   "checkpoint_buffer")


def budget_config(task: str, algo: str, budget: str, seeds: int, env_steps: int | None, seed: int = 0,
                  env_config: dict | None = None) -> TrainConfig:
    """The config of (``algo``, ``task``) at ``budget`` for ``seeds`` vmapped seeds.

    ``env_steps`` (per seed) overrides the budget's; iterations, evaluation period and chunk are converted with
    the algorithm's env steps per iteration, so every algorithm gets the same env steps and evaluation points.
    ``env_config`` (e.g. ``{"impl": "warp", "capsule_frame": "mjx"}``) is added to the budget's env config.
    Raises ValueError when the budget does not divide into whole iterations.
    """
    _, agent_cls = get_algorithm(algo)
    on_policy = bool(getattr(agent_cls, "on_policy", False))
    over: dict = dict(seed=seed, num_seeds=seeds)
    if budget == "cpu":
        over.update({k: v for k, v in CPU_RUN.items() if not (on_policy and k in OFF_POLICY_ONLY)})
        over["env_config"] = dict(CPU_RUN["env_config"])
    if env_config:
        base = over.get("env_config", dict(preset(task, algo).env_config))
        over["env_config"] = {**base, **env_config}
    cfg = preset(task, algo, **over)
    spi = env_steps_per_iteration(cfg)
    if budget == "cpu":
        steps, every = env_steps or CPU_STEPS, CPU_EVAL_STEPS
    else:
        steps = env_steps or cfg.iterations * spi
        every = cfg.eval_every * spi
    every = min(every, steps)
    if steps % spi or every % spi or steps % every:
        raise ValueError(f"{algo} on {task}: an env-step budget of {steps} with evaluation every {every} steps does "
                         f"not divide into iterations of {spi} env steps; choose --env-steps a multiple of {every}")
    cfg = dataclasses.replace(cfg, iterations=steps // spi, eval_every=every // spi, chunk_iterations=every // spi)
    validate(cfg)
    return cfg


def eval_curve(run_dir: str, mode: str, spi: int) -> dict:
    """In-scan evaluations of ``mode``: ``{"env_steps": [P], "returns": [P][seeds]}``."""
    rows: dict[int, dict[int, float]] = {}
    with open(os.path.join(run_dir, "eval.csv")) as f:
        for r in csv.DictReader(f):
            rows.setdefault(int(r["iteration"]), {})[int(r["seed"])] = float(r[f"eval_{mode}"])
    its = sorted(rows)
    return {"env_steps": [i * spi for i in its], "returns": [[rows[i][s] for s in sorted(rows[i])] for i in its]}


def train_one(algo: str, task: str, args, results: dict) -> dict | None:
    """Train (or resume, or skip) one (algorithm, task) run; returns its result entry (``None``: not finished)."""
    cfg = budget_config(task, algo, args.budget, args.seeds, args.env_steps, env_config=args.env_config)
    _, agent_cls = get_algorithm(algo)
    key = f"{algo}/{task}"
    old = results.get(key)
    stored_cfg = json.loads(json.dumps(to_dict(cfg)))
    if (old is not None and not old.get("partial") and not training_differences(old.get("config", {}), cfg)
            and not args.fresh):
        print(f"[{key}] finished earlier: skipped", file=sys.stderr)
        return old
    run_dir = os.path.join(args.runs_dir, args.budget, task, algo)
    resume = os.path.exists(os.path.join(run_dir, "config.json")) and not args.fresh
    spi = env_steps_per_iteration(cfg)
    print(f"[{key}] {cfg.num_seeds} seeds x {cfg.iterations * spi} env steps "
          f"({'resuming' if resume else 'new run'}) in {run_dir}", file=sys.stderr, flush=True)
    t0 = time.time()
    try:
        res = run(cfg, run_dir, resume=resume, overwrite=args.fresh, progress=not args.no_progress)
    except RunDirError as e:
        raise SystemExit(f"[{key}] {e}\n(the folder holds a run of another budget or config: pass --fresh to retrain "
                         f"it, or another --runs-dir)") from None
    prev_wall = old.get("train_seconds", 0.0) if (old and old.get("partial") and resume) else 0.0
    train_s = prev_wall + time.time() - t0  # all sessions of the run, compilation included
    if res.status != "finished":
        print(f"[{key}] {res.status}: {res.message}", file=sys.stderr)
        results[key] = {"partial": True, "train_seconds": train_s, "config": stored_cfg, "run_dir": run_dir}
        return None
    t1 = time.time()
    test = evaluate_state(cfg, res.state, modes=(agent_cls.test_mode,), episodes=args.test_episodes)
    per_seed = [float(x) for x in test[agent_cls.test_mode]]
    if not np.all(np.isfinite(per_seed)):
        raise RuntimeError(f"[{key}] non-finite test returns {per_seed}")
    return {"algo": algo, "task": task, "budget": args.budget, "test_mode": agent_cls.test_mode,
            "test_episodes": args.test_episodes, "per_seed": per_seed, "summary": summarize(np.array(per_seed)),
            "curve": eval_curve(run_dir, agent_cls.test_mode, spi), "env_steps": cfg.iterations * spi,
            "train_seconds": train_s, "test_seconds": time.time() - t1, "resumed": resume,
            "env_steps_per_second": cfg.iterations * spi * cfg.num_seeds / max(train_s, 1e-9),
            "device": str(jax.devices()[0]), "config": stored_cfg, "run_dir": run_dir}


def estimate(algo: str, task: str, args, iterations: int = 16) -> dict:
    """Expected wall time of one (algorithm, task) run at ``args.budget`` on this device, measured: one chunk of
    ``iterations`` training iterations (all seeds vmapped, its evaluation included) and one in-scan evaluation on
    their own, both timed after compiling; the run's time is extrapolated as
    ``iterations_of_run × (chunk − eval) / iterations + evaluations_of_run × eval``. Compile time is reported apart."""
    from svnr_jax.training import evaluate, make_trainer, seed_keys

    cfg = budget_config(task, algo, args.budget, args.seeds, args.env_steps, env_config=args.env_config)
    k = min(iterations, cfg.iterations)
    small = dataclasses.replace(cfg, iterations=k, eval_every=k, chunk_iterations=k)
    tr = make_trainer(small)
    t0 = time.time()
    state = jax.block_until_ready(tr.init(seed_keys(small)))
    state, out = jax.block_until_ready(tr.chunk(state))  # compile + first run
    compile_s = time.time() - t0
    t0 = time.time()
    state, out = jax.block_until_ready(tr.chunk(state))
    chunk_s = time.time() - t0
    ev = jax.jit(jax.vmap(lambda ts, key: evaluate(tr.setup, ts, key)))
    keys = jax.random.split(jax.random.key(0), small.num_seeds)
    jax.block_until_ready(ev(state, keys))
    t0 = time.time()
    jax.block_until_ready(ev(state, keys))
    eval_s = time.time() - t0
    per_it = max(chunk_s - eval_s, 0.0) / k
    n_evals = cfg.iterations // cfg.eval_every
    total = cfg.iterations * per_it + n_evals * eval_s
    return {"algo": algo, "task": task, "budget": args.budget, "seeds": cfg.num_seeds, "iterations": cfg.iterations,
            "env_steps": cfg.iterations * env_steps_per_iteration(cfg), "seconds_per_iteration": per_it,
            "seconds_per_evaluation": eval_s, "evaluations": n_evals, "compile_seconds": compile_s,
            "expected_hours": total / 3600, "device": str(jax.devices()[0]), "measured_iterations": k,
            "load_average": os.getloadavg()[0], "cpu_count": os.cpu_count(), "env_config": dict(cfg.env_config)}


def _cell(s: dict) -> str:
    return f"{s['mean']:.0f} ± {s['std']:.0f}"


def table(results: dict, algos: list[str], tasks: list[str]) -> str:
    """Markdown: the paper's form (mean ± std), IQM [95 % CI], wall time and env steps/s per run."""
    have = [t for t in tasks if any(f"{a}/{t}" in results for a in algos)]
    def block(cell) -> list[str]:  # one row per algorithm, one column per task; cell(result) -> text
        rows = ["| algorithm | " + " | ".join(have) + " |", "|---|" + "---|" * len(have)]
        for a in algos:
            rows.append(f"| {a} | " + " | ".join(cell(results[f"{a}/{t}"]) if f"{a}/{t}" in results else "–"
                                                 for t in have) + " |")
        return rows

    lines = block(lambda r: _cell(r["summary"]))
    lines += ["", "IQM [95 % bootstrap CI] over seeds:", ""]
    lines += block(lambda r: f"{r['summary']['iqm']:.0f} [{r['summary']['iqm_ci_low']:.0f}, "
                             f"{r['summary']['iqm_ci_high']:.0f}]")
    lines += ["", "Training wall time (s) · env steps/s (all seeds together):", ""]
    lines += block(lambda r: f"{r['train_seconds']:.0f} · {r['env_steps_per_second']:.0f}")
    paper_tasks = [t for t in have if t in TASKS]
    if paper_tasks:
        lines += ["", "The paper's table (final test return, mean ± std, 5 seeds; its budget is not published):", "",
                  "| algorithm | " + " | ".join(paper_tasks) + " |", "|---|" + "---|" * len(paper_tasks)]
        for a in algos:
            if a in PAPER:
                v = PAPER[a]
                lines.append(f"| {a} | " + " | ".join(f"{v[2 * TASKS.index(t)]} ± {v[2 * TASKS.index(t) + 1]}"
                                                      for t in paper_tasks) + " |")
    some = next(iter(results.values()), None)
    if some:
        lines += ["", f"{some['summary']['n']} seeds, {some['env_steps']} env steps per seed, test return = mean of "
                  f"{some['test_episodes']} episodes per seed in each algorithm's test mode; device {some['device']}."]
    return "\n".join(lines)


def plot_curves(results: dict, algos: list[str], task: str, path: str) -> None:
    """Test-mode in-scan evaluation return against env steps: mean over seeds, band from min to max."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for a in algos:
        r = results.get(f"{a}/{task}")
        if r is None or not r["curve"]["env_steps"]:
            continue
        x, y = np.array(r["curve"]["env_steps"]), np.array(r["curve"]["returns"])
        (line,) = ax.plot(x, y.mean(axis=1), label=a, lw=2.2 if a == "svnr" else 1.3)
        ax.fill_between(x, y.min(axis=1), y.max(axis=1), color=line.get_color(), alpha=0.12)
    ax.set_xlabel("env steps")
    ax.set_ylabel("test-mode return")
    ax.set_title(task)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def _save(results: dict, path: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(results, f, indent=1)
    os.replace(tmp, path)  # a kill never leaves a half-written results file


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algos", nargs="+", default=["all"], help="algorithms, or 'all' (default)")
    p.add_argument("--tasks", nargs="+", default=list(TASKS), help="MaMuJoCo tasks (default: the paper's four)")
    p.add_argument("--seeds", type=int, default=5, help="seeds per (algorithm, task), trained vmapped (default 5)")
    p.add_argument("--budget", choices=BUDGETS, default="cpu", help="cpu (default, 2 cores) or paper (2M steps)")
    p.add_argument("--env-steps", type=int, default=None,
                   help=f"env steps per seed (default: cpu {CPU_STEPS}, paper: the presets' 2M)")
    p.add_argument("--test-episodes", type=int, default=5, help="test episodes per seed after training (5)")
    p.add_argument("--runs-dir", default="runs/mamujoco", help="run folders (checkpoints, metrics)")
    p.add_argument("--out", default=None, help="results folder (default experiments/results/mamujoco/<budget>)")
    p.add_argument("--env-config", type=parse_env_config, action="append", metavar="KEY=VALUE", default=None,
                   help="env option for every run, repeatable (e.g. --env-config impl=warp --env-config "
                        "capsule_frame=mjx: MJX's Warp backend on an NVIDIA GPU); use another --out for such runs")
    p.add_argument("--fresh", action="store_true", help="retrain runs that are finished or were interrupted")
    p.add_argument("--report", action="store_true", help="only print and write the stored table and curves")
    p.add_argument("--no-progress", action="store_true", help="no progress line per chunk")
    p.add_argument("--estimate", action="store_true",
                   help="train nothing: measure a few iterations of each run and print its expected wall time at the "
                        "budget on this device (writes estimate_<device>.json)")
    args = p.parse_args(argv)
    args.env_config = dict(args.env_config or ())
    algos = list_algorithms() if args.algos == ["all"] else args.algos
    for a in algos:
        get_algorithm(a)  # unknown names: the registry's error, before any work
    bad = [t for t in args.tasks if t not in MAMUJOCO_TASKS]
    if bad:
        p.error(f"unknown MaMuJoCo task(s) {bad}; known: {list(MAMUJOCO_TASKS)}")
    if args.seeds < 1 or args.test_episodes < 1 or (args.env_steps is not None and args.env_steps < 1):
        p.error("--seeds, --test-episodes and --env-steps must be >= 1")
    out = args.out or os.path.join("experiments", "results", "mamujoco", args.budget)
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "results.json")
    results = json.load(open(path)) if os.path.exists(path) else {}
    if args.estimate:
        rows = []
        for t in args.tasks:
            for a in algos:
                r = estimate(a, t, args)
                rows.append(r)
                print(f"[{a}/{t}] {r['seconds_per_iteration'] * 1e3:8.1f} ms/iteration, eval "
                      f"{r['seconds_per_evaluation']:.1f} s x {r['evaluations']}, compile {r['compile_seconds']:.0f} s "
                      f"-> expected {r['expected_hours']:.1f} h "
                      f"for {r['seeds']} seeds x {r['env_steps']} env steps on {r['device']}", flush=True)
                _save(rows, os.path.join(out, f"estimate_{jax.devices()[0].platform}.json"))
        return 0
    if not args.report:
        for t in args.tasks:  # configs first: a bad budget is reported before hours of training
            for a in algos:
                try:
                    budget_config(t, a, args.budget, args.seeds, args.env_steps, env_config=args.env_config)
                except ValueError as e:
                    p.error(str(e))
        for t in args.tasks:
            for a in algos:
                entry = train_one(a, t, args, results)
                if entry is not None:
                    results[f"{a}/{t}"] = entry
                _save(results, path)
                if entry is None:
                    print("stopped; run the same command again to continue", file=sys.stderr)
                    return 130
                s = entry["summary"]
                print(f"[{a}/{t}] test return {s['mean']:.1f} ± {s['std']:.1f} (IQM {s['iqm']:.1f}), "
                      f"{entry['train_seconds']:.0f} s, {entry['env_steps_per_second']:.0f} env steps/s", flush=True)
    # every stored algorithm (results of runs not rerun now are kept, so the table and curves show them too)
    shown = [a for a in list_algorithms() if any(k.startswith(a + "/") for k in results)]
    tasks = [t for t in TASKS + tuple(MAMUJOCO_TASKS) if any(k.endswith("/" + t) for k in results)]
    tasks = list(dict.fromkeys(tasks))
    done = {k: v for k, v in results.items() if not v.get("partial")}
    text = table(done, shown, tasks)
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(text + "\n")
    for t in tasks:
        plot_curves(done, shown, t, os.path.join(out, f"curves_{t}.png"))
    print(text)
    print(f"wrote {path}, {os.path.join(out, 'table.md')} and curves_<task>.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
