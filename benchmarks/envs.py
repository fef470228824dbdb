"""Throughput of the MaMuJoCo MJX envs vs raw ``mjx.step`` and the C reference.

For each task and batch size B, env steps/s (compile time reported apart) of, each in a jitted ``lax.scan``:

* ``ours``: the raw env, ``vmap(env.step)``, agent steps/s = env steps/s x N agents;
* ``raw``: ``mjx.step`` x frame_skip on the same batch and actions (the physics alone);
* ``wrapped``: the env exactly as training steps it: ``wrap_for_training(env, B).step`` (every wrapper, the
  auto-reset included) with uniform actions in ``[-1, 1]`` (masked), the key split as ``training.env_step`` does,
  under a ``vmap`` over one seed (as ``make_trainer``); for MaMuJoCo that is the pooled auto-reset
  (``PooledAutoReset``);
* ``wrapped_autoreset``: the same with the previous stack (``reset_pool=False``: ``AutoReset`` computes a reset
  for every env at every step);

  both timed from the state one (untimed) rollout after the reset, so that episodes of terminating tasks have ended
  and the pool is partly used;

plus Gymnasium-Robotics (one env, Python loop) and ``mujoco.rollout`` over all cores (open-loop physics, env
steps = physics steps / frame_skip). Goal: ``wrapped`` >= 0.9x ``raw`` at the same B. The variants are timed
interleaved (round r times every variant once), ``--repeats`` rounds: each row has the best and the median rate of
every variant and the median over rounds of the per-round ratios (``wrapped_over_raw_median``, ...), which a
background load hits alike. ``--pool-stats T`` also runs the pooled stack T steps (random actions) and counts
the episodes that ended, the pool's refills (B resets each) and its fewest fresh states. Results go to
``benchmarks/results/envs.json`` with the device, versions and the machine load (``os.getloadavg``).

Usage:
  python -m benchmarks.envs --tasks HalfCheetah-2x3 --batch-sizes 16 256 --steps 50
  python -m benchmarks.envs --quick                      # a tiny grid (tests)
  python -m benchmarks.envs --variants raw wrapped wrapped_autoreset --skip-reference --repeats 5  # before/after
  python -m benchmarks.envs --tasks Walker2d-2x3 --batch-sizes 16 --variants --pool-stats 400       # resets counted
  python -m benchmarks.envs --host-devices 2 ...          # split the batch of ours/raw over 2 CPU host devices
  python -m benchmarks.envs --solver-iterations 4 --ls-iterations 8   # speed options (change dynamics)
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
VARIANTS = ("ours", "raw", "wrapped", "wrapped_autoreset")


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
    p.add_argument("--variants", nargs="*", choices=VARIANTS, default=["ours", "raw", "wrapped"],
                   help="which rollouts to time (module docstring; default: all but wrapped_autoreset, the stack "
                        "before the reset pool; none: only --pool-stats)")
    p.add_argument("--pool-stats", type=int, default=0, metavar="T",
                   help="also run the pooled stack T steps and count ended episodes and pool refills")
    p.add_argument("--quick", action="store_true",
                   help="tiny grid: HalfCheetah-2x3, B = 4, 3 steps, 1 round, no C / Gymnasium reference")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "envs.json"))
    p.add_argument("--notes", default="", help="free text stored with the results (machine load, GPU availability)")
    p.add_argument("--append", action="store_true", help="append rows to an existing JSON instead of replacing")
    if p.parse_known_args(argv)[0].quick:  # the tiny grid as defaults: explicit options still win
        p.set_defaults(tasks=["HalfCheetah-2x3"], batch_sizes=[4], steps=3, max_work=8, repeats=1, skip_reference=True)
    args = p.parse_args(argv)
    if args.skip_raw:
        args.variants = [v for v in args.variants if v != "raw"]
    return args


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
    """``rollout(state, key_data) -> state``: ``steps`` env steps of random actions in a ``lax.scan`` (one env).

    Every rollout here returns its whole final state, as the training chunk does: XLA removes loop-carried values
    that nothing reads after the loop, so a rollout returning only the reward would leave out work that training
    pays (e.g. the parts of a reset's ``mjx.forward`` that the next ``mjx.step`` recomputes)."""
    import jax

    def rollout(state, key_data):
        def body(s, k):
            k_act, k_step = jax.random.split(k)
            return env.step(s, random_actions(env, k_act), k_step), ()

        s, _ = jax.lax.scan(body, state, jax.random.split(jax.random.wrap_key_data(key_data), steps))
        return s

    return rollout


def wrapped_rollout_fn(wenv, steps: int):
    """``rollout(state, key) -> state``: ``steps`` steps of the training stack ``wenv`` (batched) as
    ``training.env_step`` takes them (uniform actions in ``[-1, 1]`` times the action mask; ``k_act, k_env =
    split(key)``), in a ``lax.scan``, under a ``vmap`` over one seed (state and key with a leading ``[1]``)."""
    import jax
    import jax.numpy as jnp

    spec, b = wenv.spec, wenv.num_envs
    mask = jnp.asarray(spec.action_mask, jnp.float32)

    def one_seed(state, key_data):
        def body(s, k):
            k_act, k_env = jax.random.split(k)
            a = jax.random.uniform(k_act, (b, spec.num_agents, spec.action_dim), minval=-1.0, maxval=1.0) * mask
            return wenv.step(s, a, k_env), ()

        s, _ = jax.lax.scan(body, state, jax.random.split(jax.random.wrap_key_data(key_data), steps))
        return s

    return jax.vmap(one_seed)


def wrapped_start(wenv):
    """The training stack's reset state and a rollout key (raw data), each with a leading ``[1]`` seed axis."""
    import jax

    state = jax.block_until_ready(jax.jit(jax.vmap(wenv.reset))(jax.random.split(jax.random.key(0), 1)))
    return state, jax.random.key_data(jax.random.split(jax.random.key(1), 1))


def pool_stats(wenv, steps: int) -> dict:
    """Run the pooled stack ``wenv`` ``steps`` steps (random actions, one seed) and count: ``episodes`` ended,
    ``refills`` of the pool (steps where its keys changed; B resets each), ``resets`` computed in all (= refills x B;
    ``AutoReset`` computes steps x B), ``max_ends_per_step``, ``min_fresh`` (fewest fresh pool states after a step)
    and the mean length of the episodes that ended."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    spec, b = wenv.spec, wenv.num_envs
    mask = jnp.asarray(spec.action_mask, jnp.float32)

    @jax.jit
    def run(key):
        k0, k1 = jax.random.split(key)

        def body(s, k):
            k_act, k_env = jax.random.split(k)
            a = jax.random.uniform(k_act, (b, spec.num_agents, spec.action_dim), minval=-1.0, maxval=1.0) * mask
            nxt = wenv.step(s, a, k_env)
            refilled = jnp.any(nxt.env_state.pool_keys != s.env_state.pool_keys)
            return nxt, (nxt.done, refilled, jnp.sum(nxt.env_state.pool_fresh),
                         jnp.where(nxt.done, nxt.info["returned_episode_length"], 0))

        return jax.lax.scan(body, wenv.reset(k0), jax.random.split(k1, steps))[1]

    t0 = time.perf_counter()
    done, refilled, fresh, lengths = (np.asarray(x) for x in run(jax.random.key(2)))
    ended = int(done.sum())
    return {"steps": steps, "episodes": ended, "refills": int(refilled.sum()), "resets": int(refilled.sum()) * b,
            "autoreset_resets": steps * b, "max_ends_per_step": int(done.sum(1).max()), "min_fresh": int(fresh.min()),
            "mean_episode_length": float(lengths.sum() / max(ended, 1)), "seconds": time.perf_counter() - t0}


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

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from svnr_jax.envs.mamujoco import MaMuJoCo
    from svnr_jax.envs.mamujoco._mjx_import import import_mjx
    from svnr_jax.envs.mamujoco.tasks import REFERENCE_ARGS
    from svnr_jax.envs.wrappers import wrap_for_training

    mjx = import_mjx()  # mujoco.mjx without its "Failed to import warp" lines on stdout
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

    def interleaved_times(calls: dict) -> dict:
        """``{name: [wall time per round]}`` of each ``name: (compiled fn, args)``, ``repeats`` rounds, each round
        running every fn once (interleaved, so that load from other processes hits all of them alike)."""
        times = {name: [] for name in calls}
        for _ in range(args.repeats):
            for name, (f, fargs) in calls.items():
                t0 = time.perf_counter()
                jax.block_until_ready(f(*fargs))
                times[name].append(time.perf_counter() - t0)
        return times

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
            calls = {}

            if "ours" in args.variants:
                ours, row["ours_compile_s"] = compile_fn(batched(env_rollout_fn(env, steps), batch), state0, keys)
                calls["ours"] = (ours, (state0, keys))

            if "raw" in args.variants:
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
                    return d

                raw, row["raw_compile_s"] = compile_fn(batched(raw_rollout, batch), state0, keys)
                calls["raw"] = (raw, (state0, keys))

            for name, pooled in (("wrapped", None), ("wrapped_autoreset", False)):
                if name in args.variants:
                    wenv = wrap_for_training(env, batch, reset_pool=pooled)
                    w0, wkey = wrapped_start(wenv)
                    f, row[f"{name}_compile_s"] = compile_fn(wrapped_rollout_fn(wenv, steps), w0, wkey)
                    # timed from the state one rollout after the reset: episodes already ended and the pool used
                    calls[name] = (f, (jax.block_until_ready(f(w0, wkey)), wkey))
                    if name == "wrapped":
                        row["wrapped_stack"] = repr(wenv)

            times = interleaved_times(calls)
            for name, ts in times.items():
                row[f"{name}_env_steps_per_s"] = batch * steps / min(ts)
                row[f"{name}_env_steps_per_s_median"] = batch * steps / float(np.median(ts))
            if "ours" in times:
                row["ours_agent_steps_per_s"] = row["ours_env_steps_per_s"] * n_agents
            if "raw" in times:
                if "ours" in times:
                    row["ours_over_raw"] = row["ours_env_steps_per_s"] / row["raw_env_steps_per_s"]
                for name in ("ours", "wrapped", "wrapped_autoreset"):
                    if name in times:  # median over rounds of the per-round ratio
                        row[f"{name}_over_raw_median"] = float(np.median(np.divide(times["raw"], times[name])))
            if "wrapped" in times and "wrapped_autoreset" in times:
                row["wrapped_over_autoreset_median"] = float(
                    np.median(np.divide(times["wrapped_autoreset"], times["wrapped"])))
            if args.pool_stats:
                wenv = wrap_for_training(env, batch, reset_pool=True)
                row["pool_stats"] = pool_stats(wenv, args.pool_stats)

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
        "load_average": os.getloadavg(),
        "repeats": args.repeats,
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
    return result


def print_table(rows):
    cols = [
        ("task", "task", "{}"),
        ("B", "batch", "{}"),
        ("ours env/s", "ours_env_steps_per_s", "{:.0f}"),
        ("ours agent/s", "ours_agent_steps_per_s", "{:.0f}"),
        ("compile s", "ours_compile_s", "{:.1f}"),
        ("raw env/s", "raw_env_steps_per_s", "{:.0f}"),
        ("ours/raw", "ours_over_raw", "{:.2f}"),
        ("wrapped env/s (med)", "wrapped_env_steps_per_s_median", "{:.0f}"),
        ("autoreset env/s (med)", "wrapped_autoreset_env_steps_per_s_median", "{:.0f}"),
        ("wrapped/raw (med)", "wrapped_over_raw_median", "{:.2f}"),
        ("autoreset/raw (med)", "wrapped_autoreset_over_raw_median", "{:.2f}"),
        ("wrapped/autoreset (med)", "wrapped_over_autoreset_median", "{:.2f}"),
        ("C rollout env/s", "c_rollout_env_steps_per_s", "{:.0f}"),
        ("GR env/s", "gymnasium_robotics_env_steps_per_s", "{:.0f}"),
    ]
    print(" | ".join(h for h, _, _ in cols))
    for r in rows:
        print(" | ".join(fmt.format(r[k]) if k in r else "-" for _, k, fmt in cols))


if __name__ == "__main__":
    main()
