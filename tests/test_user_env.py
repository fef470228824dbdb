"""A user brings their own env: ``package.module:factory`` trains through the Python API and the CLI and is
evaluated in a fresh process; a game's preset applies to another env; a state in memory is evaluated directly."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from svnr_jax import runner
from svnr_jax.presets import preset

ENV_MODULE = textwrap.dedent('''
    import jax.numpy as jnp
    from svnr_jax.envs.games import OneStepGame, _game_spec

    class Bowl(OneStepGame):
        """Two agents, one peak at (2, 2): r = 10 - sum (a - 2)^2."""

        def __init__(self, height: float = 10.0):
            self.height = float(height)
            self.spec = _game_spec("bowl", 2, -10.0, 10.0, self.height)

        @classmethod
        def default_config(cls):
            return {"height": 10.0}

        def reward(self, actions):
            return self.height - jnp.sum((self._clip(actions) - 2.0) ** 2)
''')


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "envs.py").write_text(ENV_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return str(tmp_path)


def test_user_env_trains_and_evaluates_in_a_fresh_process(user_module, tmp_path):
    cfg = preset("single_peak", "maddpg", env="mypkg.envs:Bowl", env_config={"height": 5.0}, num_seeds=2,
                 iterations=200, chunk_iterations=200, eval_every=200)
    assert cfg.env == "mypkg.envs:Bowl" and cfg.env_kwargs == {"height": 5.0}
    assert cfg.algo_config.actor_lr == preset("single_peak", "maddpg").algo_config.actor_lr  # the game's preset
    d = str(tmp_path / "run")
    res = runner.run(cfg, d, progress=False)
    assert res.status == "finished"
    mem = runner.evaluate_state(cfg, res.state, episodes=16)  # in memory
    assert set(mem) == {"deterministic"} and mem["deterministic"].shape == (2,) and np.all(mem["deterministic"] > 3)
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": user_module + os.pathsep + os.environ.get("PYTHONPATH",
                                                                                                     "")}
    out = subprocess.run([sys.executable, "-m", "svnr_jax.cli", "eval", d, "--episodes", "16"], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    saved = json.loads(open(os.path.join(d, "eval.json")).read())
    np.testing.assert_allclose(saved["returns"]["deterministic"]["per_seed"], mem["deterministic"], rtol=1e-5)


def test_bad_user_env_names_are_clear_errors(user_module):
    from svnr_jax.config import make_config

    with pytest.raises(ValueError, match="cannot load env 'mypkg.nope:Bowl'"):
        make_config("maddpg", env="mypkg.nope:Bowl")
    with pytest.raises(ValueError, match="env_config"):
        make_config("maddpg", env="mypkg.envs:Bowl", env_config={"width": 1})
