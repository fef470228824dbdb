#!/usr/bin/env bash
# Throughput at accelerator sizes, in one go (about 8 minutes on one GPU; JSON under benchmarks/results/accelerator/):
#   1. MaMuJoCo env steps as training uses them, HalfCheetah-2x3 and Ant-2x4 at B = 1024 and 8192 envs
#      (agent-steps/s = env steps/s x agents); 1b. the same with MJX's Warp backend, raw and under the training
#      wrappers, where warp-lang and a CUDA GPU are present (skipped with a printed reason otherwise);
#   2. negotiate vs its score evaluations at 4096 states;
#   3. a hyperparameter grid as one program vs one program per point, and 64 seeds vmapped vs sequential;
#   4. the expected wall time of paper-scale MaMuJoCo runs (HalfCheetah-2x3, 2M env steps, 5 seeds) of SVNR, MADDPG,
#      HASAC and MAPPO, measured on this device (`experiments.mamujoco --estimate`; the other algorithms: run it
#      with --algos all when there is time); 4b. with WARP_ESTIMATE=1 the same for SVNR on MJX's Warp backend.
# QUICK=1 runs the same steps at CPU sizes (a smoke test of the script). PY selects the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-benchmarks/results/accelerator}
mkdir -p "$OUT"
if [[ "${QUICK:-0}" == 1 ]]; then
  ENV_B=(16); NEG_B=64; NEG_M=(16); GRID_ARGS=(--quick); EST_ALGOS=(maddpg); EST_SEEDS=1
else
  ENV_B=(1024 8192); NEG_B=4096; NEG_M=(16 32 64); GRID_ARGS=(--scaling-seeds 64); EST_ALGOS=(svnr maddpg hasac mappo)
  EST_SEEDS=5
fi
"$PY" -c "import jax; print('devices:', jax.devices())" | tee "$OUT/devices.txt"
t0=$(date +%s)
timeout 240 "$PY" -m benchmarks.envs --tasks HalfCheetah-2x3 Ant-2x4 --batch-sizes "${ENV_B[@]}" --steps 100 \
  --skip-reference --out "$OUT/envs.json" || echo "envs benchmark failed or timed out (status $?)"
# 1b. optional: the same env steps with MJX's Warp backend (impl="warp"), raw (vmapped env.step) and as training
#     steps them (wrap_for_training: pooled resets, episode statistics); only where warp-lang imports and JAX has a
#     CUDA GPU (SVNR_WARP_CPU=1: Warp's CPU device, a smoke test; printed reason otherwise); MJX's own capsule frame /
#     RK4 on both sides (Warp has no C-matching patches)
timeout 300 "$PY" - "$OUT/envs_warp.json" "${ENV_B[@]}" <<'PYEOF' || echo "warp env benchmark failed or timed out (status $?)"
import json, os, sys, time
import jax
from svnr_jax.envs import make
from svnr_jax.envs.mamujoco._mjx_import import import_mjx
from svnr_jax.envs.wrappers import wrap_for_training
mjxw = import_mjx().warp
out, sizes = sys.argv[1], [int(b) for b in sys.argv[2:]]
try:
    cuda = bool(jax.devices("cuda"))
except RuntimeError:
    cuda = False
if not (mjxw.WARP_INSTALLED and mjxw.mujoco_warp is not None):
    sys.exit(print("warp env benchmark skipped: warp-lang is not importable (pip install 'svnr-jax[warp]')"))
if not (cuda or os.environ.get("SVNR_WARP_CPU") == "1"):
    sys.exit(print(f"warp env benchmark skipped: no CUDA GPU (JAX devices: {jax.devices()})"))
rows, steps = [], int(os.environ.get("WARP_STEPS", 100))
for task in ("HalfCheetah-2x3", "Ant-2x4"):
    for batch in sizes:
        row = {"task": task, "batch": batch, "steps": steps}
        for impl in ("jax", "warp"):
            env = make(task, impl=impl, capsule_frame="mjx", rk4_rotations="mjx", warp_batch=batch)
            a_shape = (batch, env.spec.num_agents, max(env.spec.action_sizes))
            low, high = env.spec.action_low, env.spec.action_high
            wrapped = wrap_for_training(env, batch)  # actions in [-1, 1]

            def raw(state, key, env=env, a_shape=a_shape, low=low, high=high):
                def body(s, k):
                    return jax.vmap(env.step)(s, jax.random.uniform(k, a_shape, minval=low, maxval=high)), ()
                return jax.lax.scan(body, state, jax.random.split(key, steps))[0].reward

            def trained(state, key, wrapped=wrapped, a_shape=a_shape):
                def body(s, k):
                    ka, ks = jax.random.split(k)
                    return wrapped.step(s, jax.random.uniform(ka, a_shape, minval=-1.0, maxval=1.0), ks), ()
                return jax.lax.scan(body, state, jax.random.split(key, steps))[0].reward

            for variant, fn, state in (
                    ("raw", raw, jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.PRNGKey(0), batch))),
                    ("wrapped", trained, jax.jit(wrapped.reset)(jax.random.PRNGKey(0)))):
                t0 = time.perf_counter()
                f = jax.jit(fn).lower(state, jax.random.PRNGKey(1)).compile()
                row[f"{impl}_{variant}_compile_s"] = time.perf_counter() - t0
                jax.block_until_ready(f(state, jax.random.PRNGKey(1)))
                t0 = time.perf_counter()
                jax.block_until_ready(f(state, jax.random.PRNGKey(2)))
                row[f"{impl}_{variant}_env_steps_per_s"] = batch * steps / (time.perf_counter() - t0)
        for variant in ("raw", "wrapped"):
            row[f"warp_over_jax_{variant}"] = row[f"warp_{variant}_env_steps_per_s"] / row[f"jax_{variant}_env_steps_per_s"]
        print(json.dumps(row), flush=True)
        rows.append(row)
json.dump({"devices": [str(d) for d in jax.devices()], "rows": rows}, open(out, "w"), indent=1)
PYEOF
timeout 120 "$PY" -m benchmarks.negotiate --batch "$NEG_B" --M "${NEG_M[@]}" --N 2 6 --d 1 \
  --out "$OUT/negotiate.json" || echo "negotiate benchmark failed or timed out (status $?)"
timeout 180 "$PY" -m benchmarks.sweep "${GRID_ARGS[@]}" --out "$OUT/sweep.json" \
  || echo "sweep benchmark failed or timed out (status $?)"
timeout 240 "$PY" -m experiments.mamujoco --budget paper --estimate --seeds "$EST_SEEDS" --tasks HalfCheetah-2x3 \
  --algos "${EST_ALGOS[@]}" --out "$OUT" || echo "estimate failed or timed out (status $?)"
# 4b. opt-in (WARP_ESTIMATE=1; a few more minutes): the same estimate for SVNR with MJX's Warp backend, where
#     warp-lang and a CUDA GPU are present (results under $OUT/warp)
if [[ "${WARP_ESTIMATE:-0}" == 1 ]]; then
  if "$PY" -c "import sys; from svnr_jax.envs.mamujoco.env import warp_device; sys.exit(warp_device().platform != 'gpu')" \
    2>/dev/null
  then
    timeout 300 "$PY" -m experiments.mamujoco --budget paper --estimate --seeds "$EST_SEEDS" --tasks HalfCheetah-2x3 \
      --algos svnr --env-config impl=warp --env-config capsule_frame=mjx --out "$OUT/warp" \
      || echo "warp estimate failed or timed out (status $?)"
  else
    echo "warp estimate skipped: needs warp-lang and a CUDA GPU"
  fi
fi
echo "accelerator benchmarks: $(( $(date +%s) - t0 )) s; results in $OUT"
