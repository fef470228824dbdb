"""experiments/stress_tests.py: the pass criteria on hand-made executed actions, and the comparison end to end
(tiny budget) writing its table, JSON and one figure per game with a panel per algorithm."""

import json

import numpy as np
import pytest

from experiments import stress_tests as st


def _to_unit(a):  # native [-10, 10] -> [-1, 1]
    return np.asarray(a, np.float32)[:, :, None] / 10.0


def test_pro_criterion_needs_both_peaks_and_correct_pairing():
    rng = np.random.default_rng(0)
    peaks = np.where(rng.random(1000)[:, None] < 0.5, 5.0, -5.0) * np.ones((1, 2))
    paired = peaks + 0.3 * rng.standard_normal((1000, 2))
    assert st.pass_criteria("two_modalities", np.zeros(1000), _to_unit(paired), -10, 10)["pass"]
    one_peak = np.full((1000, 2), 5.0)
    assert not st.pass_criteria("two_modalities", np.zeros(1000), _to_unit(one_peak), -10, 10)["pass"]
    independent = np.where(rng.random((1000, 2)) < 0.5, 5.0, -5.0)  # the product of the marginals
    res = st.pass_criteria("two_modalities", np.zeros(1000), _to_unit(independent), -10, 10)
    assert not res["pass"] and res["bad_corners"] > 0.4


@pytest.mark.parametrize("game, good, bad", [("max_of_three", 10.0, 2.0), ("max_of_two", 9.5, 0.0),
                                             ("climbing", 11.0, 7.0), ("penalty", 10.0, 2.0),
                                             ("single_peak", 9.0, 6.75), ("particle_gather", 3.0, -1.0)])
def test_return_criteria(game, good, bad):
    acts = np.zeros((100, 2, 1), np.float32)
    assert st.pass_criteria(game, np.full(100, good), acts, -10, 10)["pass"]
    assert not st.pass_criteria(game, np.full(100, bad), acts, -10, 10)["pass"]


def test_unknown_game_has_no_criterion():
    with pytest.raises(ValueError, match="no pass criterion"):
        st.pass_criteria("HalfCheetah-2x3", np.zeros(3), np.zeros((3, 2, 1)), -1, 1)


def test_comparison_end_to_end(tmp_path, capsys):
    out = tmp_path / "stress"
    assert st.main(["--algos", "svnr", "maddpg", "--games", "max_of_three", "--seeds", "2", "--iterations", "8",
                    "--set", "num_envs=4", "eval_episodes=4", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "max_of_three    svnr" in table and "max_of_three    maddpg" in table
    res = json.loads((out / "stress_results.json").read_text())["results"]
    assert {(r["algo"], r["game"]) for r in res} == {("svnr", "max_of_three"), ("maddpg", "max_of_three")}
    for r in res:
        assert len(r["per_seed"]) == 2 and r["iterations"] == 8
        assert r["returns"][r["test_mode"]]["iqm_ci_low"] <= r["returns"][r["test_mode"]]["iqm_ci_high"]
        assert set(r["passes_by_mode"]) >= {r["test_mode"]}
    assert (out / "max_of_three_samples.png").stat().st_size > 1000
    assert (out / "samples_max_of_three_svnr.npy").exists()
    assert st.main(["--report", "--out", str(out)]) == 0 and "| max_of_three | **" in capsys.readouterr().out
    assert (out / "max_of_three_curves.png").stat().st_size > 1000
    # a rerun of one algorithm keeps the other's results
    assert st.main(["--algos", "maddpg", "--games", "max_of_three", "--seeds", "2", "--iterations", "8",
                    "--set", "num_envs=4", "eval_episodes=4", "--out", str(out)]) == 0
    res = json.loads((out / "stress_results.json").read_text())["results"]
    assert sorted(r["algo"] for r in res) == ["maddpg", "svnr"]


def test_bad_algorithm_or_override_is_exit_2(tmp_path, capsys):
    for argv in (["--algos", "nope"], ["--set", "algo.nope=1"]):
        with pytest.raises(SystemExit) as e:
            st.main([*argv, "--games", "max_of_three", "--out", str(tmp_path)])
        assert e.value.code == 2
