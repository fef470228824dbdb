"""MJX speed options: what each buys in env steps/s and what it costs in dynamics error vs the C reference.

For each task and each setting (the env's explicit speed options: solver iterations, line-search iterations,
solver, integrator; the defaults are the reference's), in one run:

* throughput: env steps/s of our jitted, vmapped ``env.step`` in a ``lax.scan`` at ``--batch`` (compile apart),
  and the speed-up over the default setting measured in the same run;
* dynamics error: from ``--states`` physics states visited by the C reference (MuJoCo C, float64, the model
  with the reference's settings) under random actions, one env step (frame_skip physics steps) with the same
  control in MJX under the setting and in C; reported as the max |Δqpos| and |Δqvel| over states and DOFs and
  as the relative error ``max|Δqvel| / max|qvel|``. The default setting's error is MJX's float32 rounding
  (the equivalence tests' bound): a setting's excess over it is the dynamics change it buys speed with.

Results go to ``benchmarks/results/speed_options.json``.

Usage:
  python -m benchmarks.speed_options                                  # 4 tasks x all settings, B=256
  python -m benchmarks.speed_options --tasks Ant-2x4 --settings default it4_ls8 --batch 64
  python -m benchmarks.speed_options --skip-throughput                 # dynamics errors only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

MAIN_TASKS = ["HalfCheetah-2x3", "CoupledHalfCheetah-1p1", "Ant-2x4", "Walker2d-2x3"]
#: name -> MaMuJoCo speed options (``None`` = the reference's value).
SETTINGS = {
    "default": {},
    "it4_ls8": dict(solver_iterations=4, ls_iterations=8),
    "it1_ls4": dict(solver_iterations=1, ls_iterations=4),
    "cg": dict(solver="cg"),
    "euler": dict(integrator="euler"),
    "implicitfast": dict(integrator="implicitfast"),
    "it4_ls8_euler": dict(solver_iterations=4, ls_iterations=8, integrator="euler"),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=MAIN_TASKS)
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--batch", type=int, default=256, help="envs per vmapped step (throughput)")
    p.add_argument("--steps", type=int, default=20, help="env steps per timed rollout")
    p.add_argument("--repeats", type=int, default=2, help="timed rollouts (best kept)")
    p.add_argument("--states", type=int, default=32, help="C reference states for the dynamics error")
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "speed_options.json"))
    args = p.parse_args(argv)
    for name in ("batch", "steps", "repeats", "states"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    return args


def reference_states(task: str, num: int, seed: int = 0):
    """``num`` (qpos, qvel, ctrl) triples: C (float64, reference settings) states reached after 0-60 env steps of
    uniformly random control from the reset distribution, and the next control to apply."""
    import mujoco
    import numpy as np

    from svnr_jax.envs.mamujoco import MaMuJoCo

    env = MaMuJoCo(task)
    m = env.mj_model
    rng = np.random.default_rng(seed)
    lo, hi = m.actuator_ctrlrange[:, 0], m.actuator_ctrlrange[:, 1]
    out = []
    for _ in range(num):
        d = mujoco.MjData(m)
        d.qpos[:] = env._qpos0 + rng.uniform(-0.1, 0.1, m.nq)
        d.qvel[:] = 0.1 * rng.standard_normal(m.nv)
        for _ in range(int(rng.integers(0, 61))):
            d.ctrl[:] = rng.uniform(lo, hi)
            mujoco.mj_step(m, d, env.task.frame_skip)
        out.append((d.qpos.copy(), d.qvel.copy(), rng.uniform(lo, hi)))
    return out


def dynamics_error(task: str, options: dict, states) -> dict:
    """One env step from each reference state in C (reference settings, float64) and in MJX under ``options``."""
    import jax
    import jax.numpy as jnp
    import mujoco
    import numpy as np

    from svnr_jax.envs.mamujoco import MaMuJoCo

    c_model = MaMuJoCo(task).mj_model
    env = MaMuJoCo(task, **options)
    qpos = np.stack([s[0] for s in states])
    qvel = np.stack([s[1] for s in states])
    ctrl = np.stack([s[2] for s in states])
    c_next = []
    for q, v, u in states:
        d = mujoco.MjData(c_model)
        d.qpos[:], d.qvel[:], d.ctrl[:] = q, v, u
        mujoco.mj_step(c_model, d, env.task.frame_skip)
        c_next.append((d.qpos.copy(), d.qvel.copy()))

    @jax.jit
    def mjx_step(q, v, u):
        def one(q, v, u):
            data = env.state_from_physics(q, v).env_state.data
            data = env.physics_step(data, u.astype(data.ctrl.dtype))
            return data.qpos, data.qvel

        return jax.vmap(one)(q, v, u)

    m_q, m_v = jax.device_get(mjx_step(jnp.asarray(qpos), jnp.asarray(qvel), jnp.asarray(ctrl)))
    c_q = np.stack([c[0] for c in c_next])
    c_v = np.stack([c[1] for c in c_next])
    dq, dv = np.abs(m_q - c_q), np.abs(m_v - c_v)
    return {"max_abs_dqpos": float(dq.max()), "max_abs_dqvel": float(dv.max()),
            "median_abs_dqvel": float(np.median(dv.max(-1))), "rel_dqvel": float(dv.max() / np.abs(c_v).max())}


def throughput(task: str, options: dict, batch: int, steps: int, repeats: int) -> dict:
    """Env steps/s of the jitted, vmapped env step (uniform random actions) in a scan; compile apart."""
    import jax

    from benchmarks.envs import env_rollout_fn, start_states
    from svnr_jax.envs.mamujoco import MaMuJoCo

    env = MaMuJoCo(task, **options)
    state0, key_data = start_states(env, batch)
    rollout = env_rollout_fn(env, steps)

    t0 = time.perf_counter()
    fn = jax.jit(jax.vmap(rollout)).lower(state0, key_data).compile()
    compile_s = time.perf_counter() - t0
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(state0, key_data))
        best = min(best, time.perf_counter() - t0)
    return {"compile_s": compile_s, "env_steps_per_s": batch * steps / best}


def _solver_options(task: str, options: dict) -> tuple:
    """The model options a setting acts on (settings that give the same options are run once)."""
    from svnr_jax.envs.mamujoco import MaMuJoCo

    o = MaMuJoCo(task, **options).mj_model.opt
    return int(o.solver), int(o.iterations), int(o.ls_iterations), int(o.integrator)


def main(argv=None) -> int:
    args = parse_args(argv)
    import jax
    import mujoco

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    rows = []
    for task in args.tasks:
        states = reference_states(task, args.states)
        base = None
        seen = {}  # model options -> the setting that ran them
        for name in args.settings:
            opt = _solver_options(task, SETTINGS[name])
            if opt in seen:  # e.g. "euler" on HalfCheetah, whose model already integrates with Euler
                print(f"{task}: {name} sets the same model options as {seen[opt]}: skipped", flush=True)
                continue
            seen[opt] = name
            row = {"task": task, "setting": name, "options": SETTINGS[name]}
            row.update(dynamics_error(task, SETTINGS[name], states))
            if not args.skip_throughput:
                row.update(throughput(task, SETTINGS[name], args.batch, args.steps, args.repeats))
                if name == "default":
                    base = row["env_steps_per_s"]
                if base is not None:
                    row["speedup_vs_default"] = row["env_steps_per_s"] / base
            rows.append(row)
            print(json.dumps(row), flush=True)
    result = {"device": f"{jax.devices()[0].device_kind} ({jax.default_backend()})",
              "host": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
              "versions": {"jax": jax.__version__, "mujoco": mujoco.__version__},
              "batch": args.batch, "steps": args.steps, "states": args.states, "rows": rows}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print_table(rows)
    return 0


def print_table(rows) -> None:
    print(f"{'task':<24}{'setting':<15}{'env/s':>9}{'speed-up':>10}{'max|Δqpos|':>12}{'max|Δqvel|':>12}"
          f"{'rel Δqvel':>11}")
    for r in rows:
        sps = f"{r['env_steps_per_s']:>9.0f}" if "env_steps_per_s" in r else f"{'-':>9}"
        up = f"{r['speedup_vs_default']:>10.2f}" if "speedup_vs_default" in r else f"{'-':>10}"
        print(f"{r['task']:<24}{r['setting']:<15}{sps}{up}{r['max_abs_dqpos']:>12.2e}{r['max_abs_dqvel']:>12.2e}"
              f"{r['rel_dqvel']:>11.2e}")


if __name__ == "__main__":
    raise SystemExit(main())
