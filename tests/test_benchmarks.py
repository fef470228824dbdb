"""The negotiate benchmark: its NumPy reference agrees with ``negotiate``, and the quick grid writes
well-formed JSON."""

import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import negotiate as bench
from benchmarks import numpy_negotiate as npn
from svnr_jax import masked_svgd_direction, topology_mask

ROW_FIELDS = (
    "compile_s",
    "run_s",
    "run_median_s",
    "negotiations_per_s",
    "score_compile_s",
    "score_run_s",
    "ratio_vs_scores",
    "numpy_run_s",
    "numpy_negotiations_per_s",
    "speedup_vs_numpy",
)


@pytest.mark.parametrize("topology", ["nested", "full", "independent"])
def test_numpy_reference_matches_negotiate(topology):
    check = bench.check_numpy_matches_jax(1, topology=topology)
    assert check["particles_max_abs_displacement"] > 0.1  # the particles really moved
    assert check["particles_max_abs_diff"] < 1e-4
    assert check["max_phi_norm_max_abs_diff"] < 1e-4
    assert check["scores_max_abs_diff"] < 1e-5


def test_numpy_reference_matches_negotiate_with_early_agreement():
    # tol between the per-state max ||φ|| values, so states stop after different numbers of rounds.
    case = dict(batch=6, num_rounds=6, step_size=0.3, tol=0.25)
    params, states, particles = bench.make_problem(2, case["batch"], 8, 3, 2)
    ref = npn.negotiate_numpy(
        params, states, particles, topology_mask("nested", 3), num_rounds=6, step_size=0.3, tol=0.25
    )
    assert len(set(ref.rounds_used.tolist())) >= 3, ref.rounds_used  # the case really exercises early stopping
    check = bench.check_numpy_matches_jax(2, **case)
    assert check["particles_max_abs_diff"] < 1e-4
    assert check["rounds_used_mismatches"] == 0
    assert check["converged_mismatches"] == 0


def test_numpy_scores_are_the_gradient_of_the_critic():
    params, states, particles = bench.make_problem(3, 2, 4, 2, 3, dtype=np.float64)
    eps = 1e-6
    scores = npn.critic_scores(params, states, particles)
    bump = np.zeros_like(particles)
    bump[1, 2, 1, 0] = eps
    fd = npn.critic_values(params, states, particles + bump) - npn.critic_values(params, states, particles - bump)
    np.testing.assert_allclose(fd[1, 2] / (2 * eps), scores[1, 2, 1, 0], rtol=1e-6)


def test_numpy_directions_match_kernels():
    rng = np.random.default_rng(4)
    u = rng.normal(size=(2, 7, 3, 2)).astype(np.float32)
    s = rng.normal(size=(2, 7, 3, 2)).astype(np.float32)
    mask = topology_mask("ring", 3)
    want = jax.jit(jax.vmap(lambda a, b: masked_svgd_direction(a, b, jnp.asarray(mask))))(u, s)
    np.testing.assert_allclose(npn.masked_directions(u, s, mask), np.asarray(want), atol=1e-5)


@pytest.mark.parametrize("m", [2, 5, 8])
def test_breakdown_distances_and_median_match_jnp(m):
    """The distances the breakdown times are the kernel's, and their median is ``jnp.median``'s."""
    u = jax.random.normal(jax.random.key(m), (m, 3, 2))
    mask = topology_mask("nested", 3)
    sq = bench.set_sq_dists(u, mask)
    per_agent = np.sum((np.asarray(u)[None] - np.asarray(u)[:, None]) ** 2, axis=-1)  # [M, M, N]
    np.testing.assert_allclose(sq, np.einsum("mlj,ij->iml", per_agent, mask.astype(np.float32)), rtol=1e-6, atol=1e-7)
    want = np.maximum(np.asarray(jnp.median(sq.reshape(3, -1), axis=-1)) / np.log(m + 1.0), 1e-3)
    got = jax.jit(jax.vmap(lambda q: bench.median_bandwidth(q, m, symmetric=True)))(sq)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_quick_grid_writes_json(tmp_path):
    out = tmp_path / "negotiate.json"
    bench.main(["--quick", "--breakdown", "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["device"]["platform"] in {"cpu", "gpu", "tpu", "cuda", "rocm"}
    assert result["config"]["K"] == 3
    assert result["numpy_check"]["particles_max_abs_diff"] < 1e-4
    (row,) = result["results"]
    assert (row["M"], row["N"], row["d"], row["batch"]) == (8, 2, 1, 8)
    for field in ROW_FIELDS:
        assert math.isfinite(row[field]) and row[field] > 0, (field, row[field])
    for name, value in row["breakdown"].items():
        assert math.isfinite(value) and value >= 0, (name, value)
    assert row["ratio_vs_scores_median"] > 0


def test_baseline_revision_runs_interleaved_and_agrees(tmp_path):
    """--baseline-rev loads negotiate from a git revision (HEAD here) and times it next to the current code;
    both move the particles alike (the kernel changes only float32 rounding)."""
    import subprocess

    root = Path(bench.__file__).resolve().parent.parent
    if subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")
    out = tmp_path / "negotiate.json"
    result = bench.main(["--quick", "--baseline-rev", "HEAD", "--out", str(out)])
    (row,) = result["results"]
    assert row["baseline_particles_max_abs_diff"] < 1e-4
    assert row["baseline_ratio_vs_scores_median"] > 0 and row["speedup_vs_baseline_median"] > 0
    again = bench.main(["--quick", "--baseline-json", str(out), "--out", str(tmp_path / "again.json")])
    assert again["config"]["baseline_json"] == str(out)


def test_cli_rejects_bad_grid():
    with pytest.raises(SystemExit):
        bench.parse_args(["--M", "1"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--breakdown", "8,2"])


def test_env_benchmark_tiny_grid_writes_json(tmp_path):
    """benchmarks/envs.py end to end on a tiny grid: ours, raw mjx.step, mujoco.rollout and Gymnasium-Robotics
    rows with positive rates, the work cap shortening large batches, and the table's JSON."""
    from benchmarks import envs as env_bench

    out = tmp_path / "envs.json"
    # The key-reuse checker reports a false positive inside vmapped MJX steps ("In scan, argument 371 is already
    # consumed", with or without any key use in the step); the rollouts here are benchmarks, not sampling code.
    with jax.debug_key_reuse(False):
        env_bench.main(["--tasks", "HalfCheetah-2x3", "--batch-sizes", "4", "--steps", "3",
                        "--max-work", "8", "--repeats", "1", "--out", str(out)])
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert [(r["batch"], r["steps"]) for r in rows] == [(4, 2)]  # 4 x 3 > max-work 8 -> 2 steps
    for r in rows:
        for k in ("ours_env_steps_per_s", "raw_env_steps_per_s", "c_rollout_env_steps_per_s",
                  "gymnasium_robotics_env_steps_per_s"):
            assert math.isfinite(r[k]) and r[k] > 0, (k, r)
        assert r["ours_agent_steps_per_s"] == pytest.approx(2 * r["ours_env_steps_per_s"])
    assert "cpu" in result["device"].lower()


def test_hidden_sets_the_critic_width():
    params, _, _ = bench.make_problem(0, 2, 4, 2, 1, hidden=16)
    assert params.w1.shape == (bench.STATE_DIM + 2, 16) and params.w2.shape == (16, 16)
    assert bench.parse_args(["--hidden", "256"]).hidden == 256
    with pytest.raises(SystemExit):
        bench.parse_args(["--hidden", "0"])
