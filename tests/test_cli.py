"""The svnr CLI: help, validation before compiling, train + eval of a tiny run."""

import dataclasses
import json

import pytest
from conftest import tiny_train_args

from svnr_jax import cli
from svnr_jax.algorithms.svnr import SVNRConfig
from svnr_jax.config import TrainConfig, field_docs, make_config, preset


@pytest.mark.parametrize(
    "argv, name",
    [
        (["--env", "max_of_three", "--num-particles", "7"], "algo_config.num_particles=7"),
        (["--env", "max_of_three", "--alpha-min", "50"], "algo_config.alpha_min=50.0"),
        (["--env", "nope"], "env='nope'"),
        (["--env", "max_of_three", "--iterations", "333"], "iterations=333"),
        (["--env", "max_of_three", "--env-config", "bogus=1"], "env_config"),
        (["--env", "max_of_three", "--gamma", "1.5"], "algo_config.gamma=1.5"),
    ],
)
def test_bad_values_rejected_before_compiling(argv, name, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", *argv, "--show-config"])
    assert e.value.code == 2
    assert name in capsys.readouterr().err


def test_bad_types_and_choices_rejected(capsys):
    for argv in (["--seeds", "two"], ["--topology", "star"], ["--twin-critic", "maybe"]):
        with pytest.raises(SystemExit) as e:
            cli.main(["train", "--env", "max_of_two", *argv])
        assert e.value.code == 2


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    out = capsys.readouterr().out
    for cls in (TrainConfig, SVNRConfig):
        docs = field_docs(cls)
        assert set(docs) >= {f.name for f in dataclasses.fields(cls)}
    assert "--num-particles" in out and "Negotiation sets" in out and "--seeds" in out


def test_show_config_uses_preset_and_overrides(capsys):
    assert cli.main(["train", "--env", "max_of_three", "--seeds", "10", "--topology", "full", "--show-config"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["num_seeds"] == 10 and d["algo_config"]["topology"] == "full"
    assert d["iterations"] == preset("max_of_three").iterations


def test_config_validation_messages():
    with pytest.raises(ValueError, match="algo_config.topology='star'"):
        make_config(env="max_of_two", algo_config=dict(topology="star"))
    with pytest.raises(ValueError, match="unknown config field"):
        make_config(env="max_of_two", bogus=1)
    with pytest.raises(ValueError, match="chunk_iterations"):
        make_config(env="max_of_two", eval_every=30, chunk_iterations=100, iterations=100)


def test_train_then_eval(tmp_path, capsys):
    run_dir = str(tmp_path / "run")
    args = tiny_train_args("max_of_two", run_dir, envs=4, iterations=20, batch=8, buffer=128, episodes=4, hidden=8)
    assert cli.main(args) == 0
    assert cli.main(["eval", run_dir, "--episodes", "4"]) == 0
    out = capsys.readouterr().out
    for mode in ("shared_seed", "deterministic", "negotiate"):
        assert mode in out
    res = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert set(res["returns"]) == {"shared_seed", "deterministic", "negotiate"}


def test_custom_negotiation_mask_from_cli_and_config(tmp_path, capsys):
    """A custom [N, N] mask reaches the agent: '1,0;1,1' is the nested mask; a mask of the wrong size for the env
    is refused (exit 2) before anything is written."""
    import numpy as np

    from svnr_jax.training import build

    assert cli.main(["train", "--env", "max_of_three", "--topology", "1,0;1,1", "--show-config"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["algo_config"]["topology"] == [[1, 0], [1, 1]]
    cfg = make_config(env="max_of_three", algo_config=dict(topology=((1, 0), (1, 1))))
    np.testing.assert_array_equal(build(cfg).agent.mask, build(make_config(env="max_of_three")).agent.mask)
    with pytest.raises(ValueError, match="algo_config.topology"):
        make_config(env="max_of_three", algo_config=dict(topology=((0, 1), (1, 1))))  # i not in C_i
    run_dir = tmp_path / "bad"
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--env", "max_of_three", "--topology", "1,0,0;1,1,0;1,1,1", "--run-dir", str(run_dir)])
    assert e.value.code == 2 and "expected (N, N) = (2, 2)" in capsys.readouterr().err
    assert not run_dir.exists()
