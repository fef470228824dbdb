#!/usr/bin/env bash
# Throughput at accelerator sizes, in one go (about 8 minutes on one GPU; JSON under benchmarks/results/accelerator/):
#   1. MaMuJoCo env steps as training uses them, HalfCheetah-2x3 and Ant-2x4 at B = 1024 and 8192 envs
#      (agent-steps/s = env steps/s x agents);
#   2. negotiate vs its score evaluations at 4096 states;
#   3. a hyperparameter grid as one program vs one program per point, and 64 seeds vmapped vs sequential;
#   4. the expected wall time of paper-scale MaMuJoCo runs (HalfCheetah-2x3, 2M env steps, 5 seeds) of SVNR, MADDPG,
#      HASAC and MAPPO, measured on this device (`experiments.mamujoco --estimate`; the other algorithms: run it
#      with --algos all when there is time).
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
timeout 120 "$PY" -m benchmarks.negotiate --batch "$NEG_B" --M "${NEG_M[@]}" --N 2 6 --d 1 \
  --out "$OUT/negotiate.json" || echo "negotiate benchmark failed or timed out (status $?)"
timeout 180 "$PY" -m benchmarks.sweep "${GRID_ARGS[@]}" --out "$OUT/sweep.json" \
  || echo "sweep benchmark failed or timed out (status $?)"
timeout 240 "$PY" -m experiments.mamujoco --budget paper --estimate --seeds "$EST_SEEDS" --tasks HalfCheetah-2x3 \
  --algos "${EST_ALGOS[@]}" --out "$OUT" || echo "estimate failed or timed out (status $?)"
echo "accelerator benchmarks: $(( $(date +%s) - t0 )) s; results in $OUT"
