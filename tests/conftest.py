"""Test configuration: CPU only, key-reuse checks on."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_debug_key_reuse", True)


def tiny_train_args(env: str, run_dir: str, *, envs: int, iterations: int, batch: int, buffer: int,
                    episodes: int, hidden: int) -> list[str]:
    """``svnr train`` arguments for a tiny run (one chunk, one evaluation) used by the CLI tests."""
    return ["train", "--env", env, "--run-dir", run_dir, "--num-envs", str(envs), "--iterations", str(iterations),
            "--chunk-iterations", str(iterations), "--eval-every", str(iterations), "--batch-size", str(batch),
            "--buffer-size", str(buffer), "--warmup-iterations", "1", "--eval-episodes", str(episodes),
            "--num-particles", "4", "--policy-hidden", str(hidden), "--critic-hidden", str(hidden), "--no-progress"]


def tiny_algo_config(algo: str) -> dict:
    """Small settings of any registered algorithm's config, for fast tests: hidden sizes (8,), particle and
    sample counts 4, an on-policy rollout length 4 (a new algorithm is covered without listing it here)."""
    import dataclasses

    from svnr_jax.algorithms import get_algorithm

    config_cls, _ = get_algorithm(algo)
    out = {}
    for f in dataclasses.fields(config_cls):
        if isinstance(f.default, tuple) and f.default and all(isinstance(h, int) for h in f.default):
            out[f.name] = (8,)
        elif isinstance(f.default, int) and not isinstance(f.default, bool) and (
                "particles" in f.name or "samples" in f.name or f.name == "rollout_length"):
            out[f.name] = 4
    return out
