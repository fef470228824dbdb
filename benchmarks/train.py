"""Throughput and memory of SVNR training chunks.

Measures, on the current device (compile time apart from run time, ``block_until_ready``):

* env steps/s and gradient updates/s of one training chunk (C iterations, B envs, U updates);
* memory of the training state per seed (buffer, params, optimiser states, env state) and how it grows
  with M (particles: no state growth, compute only), N (agents) and the buffer size;
* seed scaling: 1, 2, 4, 8 seeds vmapped in one jitted call vs the same seeds run one after another
  (goal on CPU: 8 vmapped ≤ 0.5 × 8 sequential).

Writes ``benchmarks/results/train.json`` and prints a table.

    python -m benchmarks.train            # full
    python -m benchmarks.train --quick    # smaller chunk, fewer points
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import jax
import numpy as np

from svnr_jax.config import preset
from svnr_jax.training import make_trainer, seed_keys


def tree_bytes(tree) -> int:
    """Bytes of every array leaf (typed keys counted by their raw data)."""
    total = 0
    for x in jax.tree.leaves(tree):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            total += int(np.prod(x.shape)) * 8  # threefry: 2 × uint32
        else:
            total += int(np.prod(x.shape)) * x.dtype.itemsize
    return total


def state_memory(cfg) -> dict:
    """Bytes per seed of each part of the training state (from shapes only: nothing runs)."""
    tr = make_trainer(cfg)
    st = jax.eval_shape(tr.init, seed_keys(cfg))
    per = lambda t: tree_bytes(t) // cfg.num_seeds
    ls = st.learner
    return {
        "buffer": per(st.buffer),
        "policy_params": per(ls.policy_params),
        "critic_params": per(ls.critic_params) * 2,  # + target
        "optimiser": per(ls.policy_opt) + per(ls.critic_opt),
        "env_state": per(st.env_state),
        "total": per(st),
    }


def time_chunk(cfg, repeats: int = 2) -> dict:
    """Compile time and best-of-``repeats`` run time of one chunk of ``cfg`` (all seeds vmapped)."""
    tr = make_trainer(cfg)
    st = jax.block_until_ready(tr.init(seed_keys(cfg)))
    t0 = time.perf_counter()
    compiled = (
        jax.jit(jax.vmap(lambda s: __import__("svnr_jax.training", fromlist=["chunk"]).chunk(tr.setup, s)))
        .lower(st)
        .compile()
    )
    compile_s = time.perf_counter() - t0
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        st, out = compiled(st)
        jax.block_until_ready(out)
        best = min(best, time.perf_counter() - t0)
    its = cfg.chunk_iterations
    return {
        "compile_s": compile_s,
        "run_s": best,
        "env_steps_per_s": its * cfg.num_envs * cfg.num_seeds / best,
        "updates_per_s": its * cfg.updates_per_iteration * cfg.num_seeds / best,
        "iterations": its,
        "seeds": cfg.num_seeds,
    }


def sharded_chunk_time(env: str, base: dict, seeds: int) -> dict | None:
    """Chunk time of ``seeds`` vmapped seeds sharded over 2 host CPU devices, measured in a subprocess."""
    import subprocess
    import sys

    code = (
        "import json, jax\n"
        "from benchmarks.train import time_chunk\n"
        "from svnr_jax.config import preset\n"
        f"r = time_chunk(preset({env!r}, **{base!r}, num_seeds={seeds}))\n"
        "r['devices'] = len(jax.devices())\n"
        "print('RESULT', json.dumps(r))\n"
    )
    env_vars = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", code], env=env_vars, capture_output=True, text=True, timeout=1200,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    print(out.stderr[-1000:])
    return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="max_of_three")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default="benchmarks/results/train.json")
    p.add_argument("--no-sharded", action="store_true", help="skip the 2-host-device seed-sharding measurement")
    args = p.parse_args(argv)
    chunk = 50 if args.quick else 100
    base = dict(iterations=chunk, chunk_iterations=chunk, eval_every=chunk, eval_episodes=64)
    res = {
        "device": str(jax.devices()[0]),
        "num_devices": len(jax.devices()),
        "platform": platform.platform(),
        "jax": jax.__version__,
        "cpu_count": os.cpu_count(),
        "env": args.env,
    }

    # 1) throughput of the preset (one seed) and of particle_gather
    res["throughput"] = {}
    for env in (args.env, "particle_gather"):
        cfg = preset(env, **base)
        res["throughput"][env] = time_chunk(cfg)
        print(f"{env}: {res['throughput'][env]}", flush=True)

    # 2) memory per seed and growth with M, N, buffer size
    res["memory"] = {"preset": state_memory(preset(args.env))}
    res["memory"]["by_M"] = {
        m: state_memory(preset(args.env, algo_config=dict(num_particles=m)))["total"] for m in (8, 16, 32, 64)
    }
    res["memory"]["by_N"] = {
        n: state_memory(preset(args.env, env_config={"num_agents": n}))["total"] for n in (2, 4, 8)
    }
    res["memory"]["by_buffer"] = {
        b: state_memory(preset(args.env, buffer_size=b))["total"] for b in (10_000, 100_000, 1_000_000)
    }
    res["compute_by_M"] = {}
    for m in (8, 32) if args.quick else (8, 16, 32, 64):
        r = time_chunk(preset(args.env, **base, algo_config=dict(num_particles=m)), repeats=1)
        res["compute_by_M"][m] = r["updates_per_s"]
        print(f"M={m}: {r['updates_per_s']:.0f} updates/s", flush=True)

    # 3) seed scaling: S vmapped seeds in one call vs S sequential single-seed calls
    one = time_chunk(preset(args.env, **base, num_seeds=1))
    res["seed_scaling"] = {}
    for s in (1, 2, 8) if args.quick else (1, 2, 4, 8):
        v = time_chunk(preset(args.env, **base, num_seeds=s)) if s > 1 else one
        seq = s * one["run_s"]
        res["seed_scaling"][s] = {
            "vmapped_s": v["run_s"],
            "sequential_s": seq,
            "ratio": v["run_s"] / seq,
            "compile_s": v["compile_s"],
        }
        print(
            f"seeds={s}: vmapped {v['run_s']:.2f}s vs sequential {seq:.2f}s (ratio {v['run_s'] / seq:.2f})", flush=True
        )

    # 4) the same seeds vmapped and sharded over 2 host devices (a subprocess: the device count is fixed at
    #    start-up), against the single-device sequential time measured above.
    if not args.no_sharded:
        res["seed_scaling_2_devices"] = {}
        for s in ((2, 8) if args.quick else (2, 4, 8)):
            r = sharded_chunk_time(args.env, base, s)
            if r is not None:
                seq = s * one["run_s"]
                r.update(sequential_s=seq, ratio=r["run_s"] / seq)
                res["seed_scaling_2_devices"][s] = r
                print(f"seeds={s} on 2 host devices: {r['run_s']:.2f}s vs sequential {seq:.2f}s "
                      f"(ratio {r['ratio']:.2f})", flush=True)

    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1)
    print_table(res)
    print(f"wrote {args.out}")
    return 0


def print_table(res: dict) -> None:
    print(f"\nSVNR training on {res['device']} ({res['cpu_count']} CPUs), jax {res['jax']}")
    print(f"{'env':<18}{'compile s':>10}{'env steps/s':>13}{'updates/s':>11}")
    for env, r in res["throughput"].items():
        print(f"{env:<18}{r['compile_s']:>10.1f}{r['env_steps_per_s']:>13.0f}{r['updates_per_s']:>11.0f}")
    mem = res["memory"]["preset"]
    print("memory per seed (KiB): " + ", ".join(f"{k} {v / 1024:.0f}" for k, v in mem.items()))
    for name in ("by_M", "by_N", "by_buffer"):
        print(f"  total {name}: " + ", ".join(f"{k}: {v / 1024:.0f} KiB" for k, v in res["memory"][name].items()))
    print("updates/s by M: " + ", ".join(f"{k}: {v:.0f}" for k, v in res["compute_by_M"].items()))
    print(f"{'seeds':>6}{'vmapped s':>11}{'sequential s':>14}{'ratio':>7}")
    for s, r in res["seed_scaling"].items():
        print(f"{s:>6}{r['vmapped_s']:>11.2f}{r['sequential_s']:>14.2f}{r['ratio']:>7.2f}")
    for s, r in res.get("seed_scaling_2_devices", {}).items():
        print(f"{s:>6}{r['run_s']:>11.2f}{r['sequential_s']:>14.2f}{r['ratio']:>7.2f}  (vmapped + sharded, 2 devices)")


if __name__ == "__main__":
    raise SystemExit(main())
