"""Throughput of the MaMuJoCo MJX envs vs raw ``mjx.step`` and the C reference.

For each task and batch size: env steps/s and agent steps/s (= env steps/s x N agents) of our jitted
``env.step`` in a ``lax.scan`` (compile time reported apart), the raw ``mjx.step`` x frame_skip on the same
batch (goal: ours >= 0.9x raw), Gymnasium-Robotics (one env, Python loop) and ``mujoco.rollout`` over all
cores (open-loop physics, env steps = physics steps / frame_skip). Results go to
``benchmarks/results/envs.json`` with the device and versions.

Usage:
  python benchmarks/envs.py --tasks HalfCheetah-2x3 --batch-sizes 16 256 --steps 50
  python benchmarks/envs.py --host-devices 2 ...          # split the batch over 2 CPU host devices
  python benchmarks/envs.py --solver-iterations 4 --ls-iterations 8   # speed options (change dynamics)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

MAIN_TASKS = ["HalfCheetah-2x3", "CoupledHalfCheetah-1p1", "Ant-2x4", "Walker2d-2x3"]
GRID = [1, 16, 64, 256, 1024, 4096]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=MAIN_TASKS)
    p.add_argument("--batch-sizes", nargs="+", type=int, default=GRID)
    p.add_argument("--steps", type=int, default=50, help="env steps per timed rollout (at most; see --max-work)")
    p.add_argument("--max-work", type=int, default=8192,
                   help="cap on batch x steps per timed rollout: large batches run fewer steps (at least 2)")
    p.add_argument("--repeats", type=int, default=2, help="timed rollouts (best is kept)")
    p.add_argument("--host-devices", type=int, default=1, help="XLA CPU host devices to shard the batch over")
    p.add_argument("--solver-iterations", type=int, default=None)
    p.add_argument("--ls-iterations", type=int, default=None)
    p.add_argument("--integrator", default=None)
    p.add_argument("--skip-reference", action="store_true", help="skip Gymnasium-Robotics and mujoco.rollout")
    p.add_argument("--skip-raw", action="store_true", help="skip the raw mjx.step baseline")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "envs.json"))
    p.add_argument("--notes", default="", help="free text stored with the results (machine load, GPU availability)")
    p.add_argument("--append", action="store_true", help="append rows to an existing JSON instead of replacing")
    return p.parse_args(argv)


def random_actions(env, key):
    """Uniform random actions ``[N, A]`` in the env's action box (the rollouts' policy)."""
    import jax

    return jax.random.uniform(key, (env.spec.num_agents, env.spec.action_dim), minval=env.spec.action_low,
                              maxval=env.spec.action_high)


def start_states(env, batch: int):
    """``batch`` reset states (reset is not timed) and the rollout keys as raw key data: every timed call
    replays the same rollout, so the keys are re-wrapped inside rather than consumed."""
    import jax

    state0 = jax.block_until_ready(jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.key(0), batch)))
    return state0, jax.random.key_data(jax.random.split(jax.random.key(1), batch))


def env_rollout_fn(env, steps: int):
    """``rollout(state, key_data) -> reward``: ``steps`` env steps of random actions in a ``lax.scan`` (one env)."""
    import jax

    def rollout(state, key_data):
        def body(s, k):
            k_act, k_step = jax.random.split(k)
            return env.step(s, random_actions(env, k_act), k_step), ()

        s, _ = jax.lax.scan(body, state, jax.random.split(jax.random.wrap_key_data(key_data), steps))
        return s.reward

    return rollout


def main(argv=None):
    args = parse_args(argv)
    if args.host_devices > 1:  # must precede the first jax import
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={args.host_devices}"
        )
    import jax
    import jax.numpy as jnp
    import mujoco
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec
    from mujoco import mjx

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from svnr_jax.envs.mamujoco import MaMuJoCo
    from svnr_jax.envs.mamujoco.tasks import REFERENCE_ARGS

    devices = jax.devices()[: args.host_devices]
    mesh = Mesh(np.array(devices), ("b",))
    speed = {
        "solver_iterations": args.solver_iterations,
        "ls_iterations": args.ls_iterations,
        "integrator": args.integrator,
    }

    def shard(tree, batch):
        if len(devices) == 1 or batch % len(devices):
            return tree
        return jax.device_put(tree, NamedSharding(mesh, PartitionSpec("b")))

    def batched(fn, batch):
        """vmap over the batch; over several host devices each runs its shard (shard_map)."""
        f = jax.vmap(fn)
        if len(devices) == 1 or batch % len(devices):
            return f
        # check_vma=False: MJX's solver lax.cond branches mix batch-varying and invariant values
        return jax.shard_map(f, mesh=mesh, in_specs=PartitionSpec("b"), out_specs=PartitionSpec("b"), check_vma=False)

    def compile_fn(fn, *fargs):
        t0 = time.perf_counter()
        compiled = jax.jit(fn).lower(*fargs).compile()
        return compiled, time.perf_counter() - t0

    def best_times(compiled_fns, *fargs):
        """Best wall time of each compiled fn over ``repeats`` rounds, interleaved so that load from other
        processes on a shared machine hits all of them alike."""
        best = [float("inf")] * len(compiled_fns)
        for _ in range(args.repeats):
            for i, f in enumerate(compiled_fns):
                t0 = time.perf_counter()
                jax.block_until_ready(f(*fargs))
                best[i] = min(best[i], time.perf_counter() - t0)
        return best

    rows = []
    for task in args.tasks:
        env = MaMuJoCo(task, **speed)
        n_agents, fs = env.spec.num_agents, env.task.frame_skip
        low, high = env.spec.action_low, env.spec.action_high
        for batch in args.batch_sizes:
            steps = max(2, min(args.steps, args.max_work // batch))
            row = {"task": task, "batch": batch, "steps": steps, "agents": n_agents}
            state0, keys = start_states(env, batch)
            state0, keys = shard(state0, batch), shard(keys, batch)
            env_rollout = env_rollout_fn(env, steps)

            ours, c = compile_fn(batched(env_rollout, batch), state0, keys)
            row["ours_compile_s"] = c
            fns = [ours]

            if not args.skip_raw:
                mx = env.mjx_model

                def raw_rollout(state, key):
                    def body(d, k):
                        # the same actions as env_rollout (same keys, same agent -> actuator map): both simulate
                        # the same trajectory, so MJX's data-dependent solver iterations cost both alike
                        a = random_actions(env, jax.random.split(k)[0])
                        d = d.replace(ctrl=jnp.reshape(a, (-1,))[env.action_gather].astype(d.ctrl.dtype))
                        with env.mjx_functions():  # the same physics as the env (its MJX-side fixes)
                            d = jax.lax.fori_loop(0, fs, lambda _, x: mjx.step(mx, x), d)
                        return d, ()

                    keys = jax.random.split(jax.random.wrap_key_data(key), steps)
                    d, _ = jax.lax.scan(body, state.env_state.data, keys)
                    return d.qpos

                raw, c = compile_fn(batched(raw_rollout, batch), state0, keys)
                row["raw_compile_s"] = c
                fns.append(raw)

            times = best_times(fns, state0, keys)
            row["ours_env_steps_per_s"] = batch * steps / times[0]
            row["ours_agent_steps_per_s"] = row["ours_env_steps_per_s"] * n_agents
            if not args.skip_raw:
                row["raw_env_steps_per_s"] = batch * steps / times[1]
                row["ours_over_raw"] = row["ours_env_steps_per_s"] / row["raw_env_steps_per_s"]

            if not args.skip_reference:
                m = env.mj_model
                d = mujoco.MjData(m)
                nthread = os.cpu_count() or 1
                rng = np.random.default_rng(0)
                c_state0 = np.zeros((batch, mujoco.mj_stateSize(m, mujoco.mjtState.mjSTATE_FULLPHYSICS)))
                mujoco.mj_getState(m, d, c_state0[0], mujoco.mjtState.mjSTATE_FULLPHYSICS)
                c_state0[:] = c_state0[0]
                ctrl = rng.uniform(low, high, (batch, steps * fs, m.nu))
                datas = [mujoco.MjData(m) for _ in range(nthread)]
                from mujoco import rollout

                t0 = time.perf_counter()
                rollout.rollout(m, datas, c_state0, ctrl)
                r = time.perf_counter() - t0
                row["c_rollout_threads"] = nthread
                row["c_rollout_env_steps_per_s"] = batch * steps / r
            rows.append(row)
            print(json.dumps(row), flush=True)

        if not args.skip_reference:
            sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
            from mamujoco_reference import make_reference

            ref = make_reference(*REFERENCE_ARGS[task])
            ref.reset(seed=0)
            rng = np.random.default_rng(0)
            acts = [
                {a: rng.uniform(low, high, ref.action_space(a).shape) for a in ref.possible_agents} for _ in range(200)
            ]
            t0 = time.perf_counter()
            for a in acts:
                ref.step(a)
            r = time.perf_counter() - t0
            for row in rows:
                if row["task"] == task:
                    row["gymnasium_robotics_env_steps_per_s"] = len(acts) / r

    result = {
        "device": f"{jax.devices()[0].device_kind} x{len(devices)} ({jax.default_backend()})",
        "host": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "versions": {"jax": jax.__version__, "mujoco": mujoco.__version__},
        "speed_options": speed,
        "notes": args.notes,
        "rows": rows,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    if args.append and os.path.exists(args.out):
        with open(args.out) as f:
            old = json.load(f)
        runs = old.get("runs", [old])
        result = {"runs": [*runs, result]}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print_table(rows)


def print_table(rows):
    cols = [
        ("task", "task", "{}"),
        ("B", "batch", "{}"),
        ("ours env/s", "ours_env_steps_per_s", "{:.0f}"),
        ("ours agent/s", "ours_agent_steps_per_s", "{:.0f}"),
        ("compile s", "ours_compile_s", "{:.1f}"),
        ("raw env/s", "raw_env_steps_per_s", "{:.0f}"),
        ("ours/raw", "ours_over_raw", "{:.2f}"),
        ("C rollout env/s", "c_rollout_env_steps_per_s", "{:.0f}"),
        ("GR env/s", "gymnasium_robotics_env_steps_per_s", "{:.0f}"),
    ]
    print(" | ".join(h for h, _, _ in cols))
    for r in rows:
        print(" | ".join(fmt.format(r[k]) if k in r else "-" for _, k, fmt in cols))


if __name__ == "__main__":
    main()
