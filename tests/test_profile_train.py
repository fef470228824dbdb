"""benchmarks/profile_train.py and the wrapped-env rows of benchmarks/envs.py end to end on tiny settings."""

import json
import math

import jax
import pytest


def test_profile_train_quick_writes_shares(tmp_path):
    from benchmarks import profile_train

    out = tmp_path / "profile.json"
    with jax.debug_key_reuse(False):  # the timing loop calls each piece again with the same keys
        result = profile_train.main(["--quick", "--env", "particle_gather", "--repeats", "1", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["env"] == "particle_gather" and saved["config"]["num_envs"] == 4
    assert [r["piece"] for r in saved["rows"]] == list(profile_train.PIECES)
    for r in saved["rows"]:
        assert math.isfinite(r["ms_per_iteration"]) and r["ms_per_iteration"] > 0, r
        assert 0 < r["share"] < 10, r
    by = {r["piece"]: r for r in result["rows"]}
    assert by["train_step"]["share"] + by["evaluate"]["share"] == pytest.approx(1.0)


def test_env_benchmark_times_the_training_stack(tmp_path):
    """--variants raw wrapped wrapped_autoreset: the training stack (pooled for MaMuJoCo) and the previous one beside
    raw mjx.step, with per-round median ratios, and the pool statistics."""
    from benchmarks import envs as env_bench

    out = tmp_path / "envs.json"
    with jax.debug_key_reuse(False):  # see test_benchmarks.test_env_benchmark_tiny_grid_writes_json
        result = env_bench.main(["--quick", "--variants", "raw", "wrapped", "wrapped_autoreset", "--repeats", "2",
                                 "--pool-stats", "3", "--out", str(out)])
    (row,) = json.loads(out.read_text())["rows"]
    assert row["wrapped_stack"] == \
        "EpisodeStats(PooledAutoReset(RescaleActions(MaMuJoCo(HalfCheetah-2x3)), num_envs=4))"
    for k in ("raw_env_steps_per_s_median", "wrapped_env_steps_per_s_median",
              "wrapped_autoreset_env_steps_per_s_median", "wrapped_over_raw_median",
              "wrapped_autoreset_over_raw_median", "wrapped_over_autoreset_median"):
        assert math.isfinite(row[k]) and row[k] > 0, (k, row)
    assert "ours_env_steps_per_s" not in row
    stats = row["pool_stats"]
    assert stats["steps"] == 3 and stats["episodes"] == 0 and stats["refills"] == 0  # HalfCheetah: 1000-step episodes
    assert result["rows"][0]["task"] == "HalfCheetah-2x3"
