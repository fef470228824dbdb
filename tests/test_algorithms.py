"""Every registered algorithm through the shared stack: smoke (finite metrics, shapes), determinism, retrace
guard, exact resume, execution modes, checkpoints refused across algorithms, CLI. Parametrised over the
registry, so an algorithm added later is covered without a change here."""

import csv
import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_algo_config

from svnr_jax import checkpoint, cli, runner, training
from svnr_jax.algorithms import EXPLORE, get_algorithm, list_algorithms
from svnr_jax.config import make_config

ALGOS = list_algorithms()
RUN = dict(env="max_of_two", num_envs=4, iterations=60, eval_every=20, chunk_iterations=20, batch_size=8,
           buffer_size=256, warmup_iterations=2, eval_episodes=4, num_seeds=2, seed=3)


def tiny(algo: str, **over):
    return make_config(algo, tiny_algo_config(algo), **{**RUN, **over})


@pytest.fixture(scope="module", params=ALGOS)
def runs(request, tmp_path_factory):
    """Per algorithm: a full 3-chunk run, and a 1-chunk run resumed to the end (one compile: train_step may
    be traced only once for all of them)."""
    algo = request.param
    cfg = tiny(algo)
    base = tmp_path_factory.mktemp(algo)
    original = training.train_step
    chex.clear_trace_counter()
    training.train_step = chex.assert_max_traces(original, n=1)
    try:
        full = runner.run(cfg, str(base / "full"), progress=False)
        part = runner.run(cfg, str(base / "part"), max_chunks=1, progress=False)
        resumed = runner.run(cfg, str(base / "part"), resume=True, progress=False)
    finally:
        training.train_step = original
    return algo, cfg, base, full, part, resumed


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_smoke_metrics_finite_and_shaped(runs):
    algo, cfg, base, full, _, _ = runs
    assert full.status == "finished" and full.chunks_done == 3
    rows = _rows(base / "full" / "metrics.csv")
    assert len(rows) == cfg.iterations * cfg.num_seeds
    losses = [k for k in rows[0] if k.endswith("loss")]
    assert losses, f"{algo} reports no *loss metric"
    for k in losses:
        assert all(np.isfinite(float(r[k])) for r in rows), k
    evals = _rows(base / "full" / "eval.csv")
    _, agent_cls = get_algorithm(algo)
    assert {f"eval_{m}" for m in agent_cls.eval_modes} <= set(evals[0])
    assert sorted({int(r["iteration"]) for r in evals}) == [20, 40, 60]
    st = full.state
    assert np.all(np.asarray(st.iteration) == cfg.iterations)
    warmup = 0 if agent_cls.on_policy else cfg.warmup_iterations  # on-policy: no uniform warm-up
    steps = cfg.iterations * training.env_steps_per_iteration(cfg) + warmup * cfg.num_envs
    assert np.all(np.asarray(st.env_steps) == steps)


def test_exact_resume_and_determinism(runs):
    """Same keys → bit-identical state whether run in one go or interrupted and resumed; seeds differ."""
    _, cfg, base, full, part, resumed = runs
    assert part.status == "interrupted" and part.chunks_done == 1
    assert resumed.status == "finished" and resumed.chunks_done == 3
    jax.tree.map(np.testing.assert_array_equal, checkpoint.to_saveable(full.state),
                 checkpoint.to_saveable(resumed.state))
    assert _rows(base / "full" / "metrics.csv") == _rows(base / "part" / "metrics.csv")
    leaves = jax.tree.leaves(full.state.learner)
    big = max((x for x in leaves if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating)),
              key=lambda x: x.size)
    assert not np.allclose(big[0], big[1]), "the two seeds trained identical parameters"


def test_every_mode_acts_in_the_box(runs):
    algo, cfg, _, full, _, _ = runs
    setup = training.build(cfg)
    agent = setup.agent
    ls = jax.tree.map(lambda x: x[0], full.state.learner)
    es = setup.eval_env.reset(jax.random.key(0))
    for mode in (*agent.modes, EXPLORE):
        u = jax.jit(lambda ls, k, m=mode: agent.act(ls, es.obs, es.global_state, k, es.time, 10, m))(
            ls, jax.random.key(1))
        assert u.shape == agent.action_mask.shape, (algo, mode)
        assert bool(jnp.all(jnp.abs(u) <= 1.0)) and bool(jnp.all(jnp.isfinite(u))), (algo, mode)
    assert agent.test_mode in agent.modes and set(agent.eval_modes) <= set(agent.modes)
    with pytest.raises(ValueError, match="unknown execution mode"):
        agent.act(ls, es.obs, es.global_state, jax.random.key(1), es.time, 0, "nope")


def test_eval_reads_the_algorithm_from_the_run(runs, capsys):
    algo, _, base, _, _, _ = runs
    assert cli.main(["eval", str(base / "full"), "--episodes", "2"]) == 0
    res = json.loads((base / "full" / "eval.json").read_text())
    _, agent_cls = get_algorithm(algo)
    assert res["algo"] == algo and set(res["returns"]) == set(agent_cls.modes)


def test_checkpoint_of_another_algorithm_is_refused(runs):
    algo, cfg, base, _, _, _ = runs
    other = next((a for a in ALGOS if a != algo), None)
    if other is None:
        pytest.skip("one algorithm registered")
    mgr = checkpoint.manager(str(base / "full"))
    try:
        template = jax.eval_shape(training.make_trainer(cfg).init, training.seed_keys(cfg))
        with pytest.raises(ValueError, match=f"written by algorithm '{algo}', this run is '{other}'"):
            checkpoint.check_compatible(checkpoint.read_meta(mgr, mgr.latest_step()), template, algo=other)
    finally:
        mgr.close()


def test_unknown_algorithm_is_a_clear_error(capsys):
    with pytest.raises(ValueError, match="registered algorithms"):
        make_config("nope", env="max_of_two")
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--algo", "nope", "--env", "max_of_two"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "unknown algorithm 'nope'" in err and all(a in err for a in ALGOS)


@pytest.mark.parametrize("algo", ALGOS)
def test_cli_options_come_from_the_algorithm_config(algo, capsys):
    import dataclasses

    config_cls, _ = get_algorithm(algo)
    with pytest.raises(SystemExit):
        cli.main(["train", "--algo", algo, "--help"])
    out = capsys.readouterr().out
    for f in dataclasses.fields(config_cls):
        assert "--" + f.name.replace("_", "-") in out, f.name
    assert cli.main(["train", "--algo", algo, "--env", "max_of_three", "--show-config"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["algo"] == algo and set(d["algo_config"]) == {f.name for f in dataclasses.fields(config_cls)}


@pytest.mark.parametrize("algo", ALGOS)
def test_learns_single_peak(algo):
    """The RO-free sanity game: every algorithm, with its preset, reaches team reward >= 8 (best 10) in its
    test mode within 300 iterations (4.8k env steps), in each of 2 seeds."""
    from svnr_jax import acting
    from svnr_jax.presets import preset

    cfg = preset("single_peak", algo, num_seeds=2, iterations=300, chunk_iterations=300, eval_every=300)
    out = jax.jit(jax.vmap(training.make_train(cfg)))(training.seed_keys(cfg))
    setup = training.build(cfg)
    agent = setup.agent
    returns = jax.jit(jax.vmap(lambda ls, it: acting.rollout(
        setup.eval_env, acting.agent_policy(agent, ls, it, agent.test_mode), jax.random.key(5), 64).returns))(
        out.state.learner, out.state.iteration)
    per_seed = np.asarray(returns).mean(axis=1)
    assert np.all(per_seed >= 8.0), (algo, per_seed)


@pytest.mark.slow
@pytest.mark.parametrize("algo", ALGOS)
def test_runs_on_mamujoco(algo, tmp_path):
    """A short run of every algorithm on HalfCheetah-2x3 (MJX; minutes of compile each on 2 CPU cores)."""
    cfg = make_config(algo, tiny_algo_config(algo), env="HalfCheetah-2x3", num_envs=2, iterations=4,
                      chunk_iterations=2, eval_every=2, eval_episodes=1, warmup_iterations=2, updates_per_iteration=1,
                      batch_size=16, buffer_size=256, num_seeds=1)
    res = runner.run(cfg, str(tmp_path / "run"), progress=False)
    assert res.status == "finished", res.message
    rows = _rows(tmp_path / "run" / "metrics.csv")
    assert len(rows) == 4 and all(np.isfinite(float(r[k])) for r in rows for k in r if k.endswith("loss"))
