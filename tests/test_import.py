"""Import boundary: importing svnr-jax and making an env print nothing on stdout, and MJX loads only for MaMuJoCo.

Each check runs in a fresh interpreter (what a user's script sees; this test process has MJX loaded already).
"""

import json
import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=600)


def _report(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stderr.strip().splitlines()[-1])


def test_make_a_game_prints_nothing_and_does_not_load_mjx():
    proc = _run("""
        import json, sys
        import svnr_jax, svnr_jax.envs
        env = svnr_jax.envs.make("max_of_two")
        names = svnr_jax.envs.list_envs()
        sys.stderr.write(json.dumps({"mjx": "mujoco.mjx" in sys.modules, "env_module": "svnr_jax.envs.mamujoco.env"
                                     in sys.modules, "halfcheetah_listed": "HalfCheetah-2x3" in names}) + "\\n")
    """)
    report = _report(proc)
    assert proc.stdout == ""
    assert report == {"mjx": False, "env_module": False, "halfcheetah_listed": True}
    assert "warp" not in proc.stderr


def test_make_a_mamujoco_task_prints_nothing_on_stdout():
    proc = _run("""
        import json, sys
        import svnr_jax.envs
        env = svnr_jax.envs.make("HalfCheetah-2x3")
        import mujoco.mjx.warp
        sys.stderr.write(json.dumps({"mjx": "mujoco.mjx" in sys.modules, "warp": "warp" in sys.modules,
                                     "warp_installed": mujoco.mjx.warp.WARP_INSTALLED}) + "\\n")
    """)
    report = _report(proc)
    assert proc.stdout == ""
    assert "Failed to import" not in proc.stderr
    assert report["mjx"] is True
    try:
        import warp  # noqa: F401
    except ImportError:  # warp absent here: nothing pretends otherwise
        assert report == {"mjx": True, "warp": False, "warp_installed": False}


_FAKE_MJX = """
    import importlib.abc, importlib.machinery, json, sys

    class Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, name, path, target=None):
            if name == "mujoco.mjx":
                return importlib.machinery.ModuleSpec(name, self)
            return None
        def create_module(self, spec):
            return None
        def exec_module(self, module):
            {body}

    sys.meta_path.insert(0, Finder())
    import mujoco  # the real package; only its mjx submodule is replaced
    from svnr_jax.envs.mamujoco._mjx_import import import_mjx
"""


def test_quiet_import_drops_only_the_warp_lines():
    body = ("print('Failed to import warp: No module named warp'); print('something else'); "
            "print('Failed to import mujoco_warp: No module named warp')")
    proc = _run(textwrap.dedent(_FAKE_MJX).format(body=body) + "mjx = import_mjx()\nprint('after')\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "something else\nafter\n"


def test_quiet_import_keeps_import_errors():
    body = "print('partial output'); raise ImportError('mjx is broken')"
    code = textwrap.dedent(_FAKE_MJX).format(body=body) + textwrap.dedent("""
        try:
            import_mjx()
        except ImportError as e:
            print('raised:', e)
    """)
    proc = _run(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "partial output\nraised: mjx is broken\n"


def test_mamujoco_names_and_defaults_without_importing_mjx_first():
    proc = _run("""
        import json, sys
        from svnr_jax.envs import env_defaults, list_envs
        from svnr_jax.envs.mamujoco.tasks import TASKS
        listed = sorted(set(TASKS) & set(list_envs())) == sorted(TASKS)
        before = "mujoco.mjx" in sys.modules
        defaults = env_defaults("Hopper-3x1")
        from svnr_jax.envs.mamujoco import MaMuJoCo
        sys.stderr.write(json.dumps({"listed": listed, "mjx_before_defaults": before,
                                     "defaults_match": defaults == MaMuJoCo.default_config()}) + "\\n")
    """)
    assert _report(proc) == {"listed": True, "mjx_before_defaults": False, "defaults_match": True}
    assert proc.stdout == ""
