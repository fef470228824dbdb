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
