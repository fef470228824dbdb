"""SVNR on the paper's MaMuJoCo tasks (docs/environments.md, §8) with the MaMuJoCo presets of :mod:`svnr_jax.config`.

Tasks: HalfCheetah-2x3, CoupledHalfCheetah-1p1, Ant-2x4, Walker2d-2x3 (any registered MaMuJoCo task may be
named with --task). Each (task, seed) is one :func:`svnr_jax.runner.run` in ``<runs-dir>/<task>/seed<s>``
(config, metrics, eval.csv, checkpoints); the final in-scan evaluation (deterministic ξ = 0 and shared-seed
sampled execution) is reported. Prints a table and writes ``<out>/mamujoco.json``.

The presets are the full-scale GPU budget (2M env steps per run). ``--small`` is a CPU budget (8 envs, one
update per env step, 60k env steps by default, 128-128 networks, M = 16, a single critic, 1 evaluation
episode per mode every 4000 env steps), SQL's HalfCheetah settings (reward scale 30, α = 1 constant, 16
value samples, batch 128): on 2 CPU cores HalfCheetah-2x3 takes ~16 min per seed and its deterministic return
rises from -142 / +208 (seeds 0 / 1, at 4k env steps) to 1987 / 2034 at 60k (``experiments/results/mamujoco/``).
Also writes ``<out>/<task>_curves.png``.

    python -m experiments.mamujoco --task HalfCheetah-2x3 --seeds 0 1 2 3 4
    python -m experiments.mamujoco --task HalfCheetah-2x3 --seeds 0 --small
    python -m experiments.mamujoco --task HalfCheetah-2x3 --seeds 0 --small --steps 8000   # smoke test
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time

import jax
import numpy as np

from svnr_jax.config import to_dict
from svnr_jax.presets import RUN_PRESETS, preset
from svnr_jax.runner import run

TASKS = ("HalfCheetah-2x3", "CoupledHalfCheetah-1p1", "Ant-2x4", "Walker2d-2x3")
MODES = ("deterministic", "shared_seed")
# CPU budget [ours, after SQL's MuJoCo settings]: 8 envs × 7500 iterations = 60k env steps after 1000 uniform
# warm-up steps, 8 updates per iteration (one per env step), batch 128, 128-128 networks, M = 16 particles and
# 16 value samples, one critic, α = 1 constant on rewards scaled by the preset's reward_scale; one evaluation
# episode per mode every 500 iterations.
SMALL = dict(num_envs=8, iterations=7500, chunk_iterations=500, eval_every=500, eval_episodes=1,
             updates_per_iteration=8, batch_size=128, warmup_iterations=125, buffer_size=200_000,
             algo_config=dict(policy_hidden=(128, 128), critic_hidden=(128, 128), num_particles=16, value_samples=16,
                       twin_critic=False, alpha_schedule="constant", alpha_init=1.0, alpha_min=1.0))


def task_config(task: str, seed: int, small: bool, steps: int | None):
    """The preset config of ``task`` for ``seed`` (``small``: CPU smoke budget; ``steps``: env-step budget)."""
    over: dict = dict(seed=seed, num_seeds=1)
    if small:
        over.update(SMALL)
        over["algo_config"] = dict(SMALL["algo_config"])
    if steps is not None:
        base = {**RUN_PRESETS.get(task, {}), **over}
        its = max(1, steps // base["num_envs"])
        chunk = min(base["chunk_iterations"], its)
        its -= its % chunk
        every = base["eval_every"] if chunk % base["eval_every"] == 0 else chunk
        over.update(iterations=its, chunk_iterations=chunk, eval_every=every)
    return preset(task, **over)


def eval_curve(run_dir: str) -> list[dict]:
    """The in-scan evaluations of a run: ``[{iteration, eval_<mode>...}]`` (seed 0)."""
    with open(os.path.join(run_dir, "eval.csv")) as f:
        return [{k: (int(v) if k in ("iteration", "seed") else float(v)) for k, v in r.items()}
                for r in csv.DictReader(f)]


def plot_curves(rows: list[dict], task: str, path: str) -> None:
    """Evaluation return of every seed of ``task`` (both execution modes) against env steps."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for r in (r for r in rows if r["task"] == task):
        envs = r["config"]["num_envs"]
        x = [e["iteration"] * envs for e in r["eval_curve"]]
        for m, style in zip(MODES, ("-", "--"), strict=True):
            ax.plot(x, [e[f"eval_{m}"] for e in r["eval_curve"]], style, label=f"seed {r['seed']} {m}")
    ax.set_xlabel("env steps")
    ax.set_ylabel("episode return")
    ax.set_title(f"SVNR on {task}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", nargs="+", default=list(TASKS), help="MaMuJoCo task(s) (default: the paper's four)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds (one run each)")
    p.add_argument("--steps", type=int, default=None,
                   help="env-step budget per run (default: the preset's, 2M; with --small, 60k)")
    p.add_argument("--small", action="store_true",
                   help="CPU budget (8 envs, 60k env steps, 128-128 nets, SQL's alpha=1; ~15 min on 2 cores)")
    p.add_argument("--runs-dir", default="runs/mamujoco", help="run folders (checkpoints, metrics)")
    p.add_argument("--out", default="experiments/results/mamujoco", help="folder of mamujoco.json")
    p.add_argument("--no-progress", action="store_true", help="no progress line per chunk")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    out_path = os.path.join(args.out, "mamujoco.json")
    rows = []
    for task in args.task:
        for seed in args.seeds:
            cfg = task_config(task, seed, args.small, args.steps)
            run_dir = os.path.join(args.runs_dir, task, f"seed{seed}")
            t0 = time.time()
            resume = os.path.exists(os.path.join(run_dir, "config.json"))  # continue (or skip) an earlier run
            res = run(cfg, run_dir, resume=resume, progress=not args.no_progress)
            curve = eval_curve(run_dir)
            last = curve[-1] if curve else {}
            rows.append({"task": task, "seed": seed, "status": res.status, "message": res.message,
                         "env_steps": cfg.iterations * cfg.num_envs, "wall_seconds": time.time() - t0,
                         **{f"final_{m}": last.get(f"eval_{m}", float("nan")) for m in MODES},
                         "eval_curve": curve, "config": to_dict(cfg), "run_dir": run_dir})
            with open(out_path, "w") as f:
                json.dump({"device": str(jax.devices()[0]), "small": args.small, "rows": rows}, f, indent=1)
    for task in args.task:
        plot_curves(rows, task, os.path.join(args.out, f"{task.replace('|', '_')}_curves.png"))
    print(f"\n{'task':<24}{'seeds':>6}{'env steps':>11}{'deterministic':>22}{'shared_seed':>22}")
    for task in args.task:
        rs = [r for r in rows if r["task"] == task]
        cols = []
        for m in MODES:
            v = np.array([r[f"final_{m}"] for r in rs])
            cols.append(f"{np.mean(v):>12.1f} ± {np.std(v):<7.1f}")
        print(f"{task:<24}{len(rs):>6}{rs[0]['env_steps']:>11}{cols[0]:>22}{cols[1]:>22}")
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
