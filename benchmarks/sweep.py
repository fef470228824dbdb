"""Sweeps as one program against separate programs (issue: "sweeps as one program").

Measures, in one run on the present devices:

* grid: P points × S seeds as ONE compiled program (:func:`svnr_jax.sweep.run_sweep`: compile + run) against P
  separate programs of S vmapped seeds each (every one compiled and run, as a loop over hyperparameter values
  would do); ratio one / separate;
* seeds: S seeds in one program (the run's trainer, with ``seed_batch`` 0 = all vmapped and 1 = one at a time per
  device) against S one-seed calls of one compiled one-seed program one after another (compile excluded); ratios
  one program / sequential, of wall and of process CPU time. On the CPU, give the cores as host devices to split
  the seeds over them: ``XLA_FLAGS=--xla_force_host_platform_device_count=2``.

Prints a table and writes ``benchmarks/results/sweep.json``.

    python -m benchmarks.sweep                 # SVNR on max_of_three, 16 points x 4 seeds, 8 seeds for scaling
    python -m benchmarks.sweep --quick         # 4 points x 2 seeds, fewer iterations
    XLA_FLAGS=--xla_force_host_platform_device_count=2 python -m benchmarks.sweep --skip-grid  # seeds over 2 cores
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time

import jax

from svnr_jax import sweep, training
from svnr_jax.presets import preset

GRIDS = {"svnr": {"policy_lr": (3e-4, 1e-3, 3e-3, 1e-2), "alpha_min": (0.03, 0.1, 0.3, 1.0)},
         "maddpg": {"actor_lr": (1e-4, 1e-3, 1e-2, 3e-2), "tau": (0.005, 0.01, 0.05, 0.1)}}


def _block(x):
    return jax.block_until_ready(x)


def grid_vs_separate(cfg, grid) -> dict:
    """Wall time of the grid as one program vs one program per point (each compiled + run)."""
    t0 = time.perf_counter()
    sweep.run_sweep(cfg, grid, progress=False)
    one = time.perf_counter() - t0
    t0 = time.perf_counter()
    for point in sweep.grid_points(grid):
        c = dataclasses.replace(cfg, algo_config=dataclasses.replace(cfg.algo_config, **point))
        _block(jax.jit(jax.vmap(training.make_train(c)))(training.seed_keys(c)))
    separate = time.perf_counter() - t0
    return {"points": len(sweep.grid_points(grid)), "seeds": cfg.num_seeds, "one_program_s": one,
            "separate_programs_s": separate, "ratio": one / separate}


def seeds_vmapped_vs_sequential(cfg, seeds: int, repeats: int = 3) -> dict:
    """Run time (compile excluded, median of ``repeats``) of ``seeds`` seeds in one program against as many one-seed
    calls of one compiled one-seed program (one device), one after another. The one program is the run's trainer
    (``training.make_trainer``: init + all iterations; sharded over the devices when several) with
    ``seed_batch`` 0 (all seeds vmapped) and 1 (each device's seeds one at a time, ``lax.map``). Wall and process
    CPU time (all threads; steadier than wall on a loaded machine) are reported."""
    import numpy as np

    one = dataclasses.replace(cfg, num_seeds=1)
    f_one = jax.jit(jax.vmap(training.make_train(one)))
    keys = lambda: training.seed_keys(dataclasses.replace(cfg, num_seeds=seeds))  # fresh (equal) keys per call
    variants = {}
    for k in (0, 1):
        tr = training.make_trainer(dataclasses.replace(cfg, num_seeds=seeds, seed_batch=k))
        variants[f"seed_batch={k}"] = lambda tr=tr: tr.chunk(tr.init(keys()))
    variants["sequential"] = lambda: [_block(f_one(keys()[s:s + 1])) for s in range(seeds)]
    for f in variants.values():  # compile
        _block(f())
    wall = {n: [] for n in variants}
    cpu = {n: [] for n in variants}
    for _ in range(repeats):  # interleaved rounds
        for n, f in variants.items():
            t0, c0 = time.perf_counter(), time.process_time()
            _block(f())
            wall[n].append(time.perf_counter() - t0)
            cpu[n].append(time.process_time() - c0)
    med = lambda xs: float(np.median(xs))
    out = {"seeds": seeds, "devices": len(jax.devices()), "repeats": repeats,
           "wall_s": {n: med(v) for n, v in wall.items()}, "cpu_s": {n: med(v) for n, v in cpu.items()}}
    for n in ("seed_batch=0", "seed_batch=1"):
        out[f"ratio_{n}"] = out["wall_s"][n] / out["wall_s"]["sequential"]
        out[f"cpu_ratio_{n}"] = out["cpu_s"][n] / out["cpu_s"]["sequential"]
    out["vmapped_s"], out["sequential_s"] = out["wall_s"]["seed_batch=0"], out["wall_s"]["sequential"]
    out["ratio"] = out["ratio_seed_batch=0"]  # as before: all seeds vmapped / sequential
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algo", default="svnr", choices=sorted(GRIDS))
    p.add_argument("--env", default="max_of_three")
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--quick", action="store_true", help="4 points x 2 seeds, 50 iterations (a smoke run)")
    p.add_argument("--scaling-seeds", type=int, default=8, help="seeds of the vmapped-vs-sequential comparison (8)")
    p.add_argument("--skip-grid", action="store_true", help="only the seeds comparison")
    p.add_argument("--out", default="benchmarks/results/sweep.json")
    args = p.parse_args(argv)
    its = 50 if args.quick else args.iterations
    grid = GRIDS[args.algo]
    if args.quick:
        grid = {k: v[:2] for k, v in grid.items()}
    seeds = 2 if args.quick else 4
    cfg = preset(args.env, args.algo, iterations=its, eval_every=its, chunk_iterations=its, num_seeds=seeds)
    res = {"device": str(jax.devices()[0]), "num_devices": len(jax.devices()), "platform": platform.platform(),
           "cpu_count": os.cpu_count(), "jax": jax.__version__, "algo": args.algo, "env": args.env,
           "iterations": its, "load_before": os.getloadavg()[0]}
    if not args.skip_grid:
        res["grid"] = grid_vs_separate(cfg, grid)
        g = res["grid"]
        print(f"grid {g['points']} points x {g['seeds']} seeds: one program {g['one_program_s']:.1f} s, "
              f"{g['points']} programs {g['separate_programs_s']:.1f} s, ratio {g['ratio']:.2f}", flush=True)
    res["seeds"] = seeds_vmapped_vs_sequential(cfg, 2 if args.quick else args.scaling_seeds)
    s = res["seeds"]
    print(f"{s['seeds']} seeds in one program on {s['devices']} device(s) vs {s['seeds']} one-seed calls "
          f"(compile excluded; wall s / CPU s):", flush=True)
    for n in ("seed_batch=0", "seed_batch=1", "sequential"):
        r = "" if n == "sequential" else f"  ratio {s[f'ratio_{n}']:.2f} (CPU {s[f'cpu_ratio_{n}']:.2f})"
        print(f"  {n:<14} {s['wall_s'][n]:7.2f} / {s['cpu_s'][n]:7.2f}{r}", flush=True)
    res["load_after"] = os.getloadavg()[0]
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1)
    print(f"wrote {args.out} (load {res['load_before']:.1f} -> {res['load_after']:.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
