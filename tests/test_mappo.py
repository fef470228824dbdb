"""MAPPO's pieces on hand values (GAE, clipped surrogate, clipped value loss, tanh-Gaussian density, value normaliser),
the generic on-policy loop (trajectory shapes, env-step counts, episode ends), the budget conversion of the presets, and
the run-config fields an on-policy algorithm ignores or refuses. (The registry-parametrised checks of every algorithm
are in test_algorithms.py.)"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from svnr_jax import training
from svnr_jax.algorithms import mappo
from svnr_jax.config import make_config
from svnr_jax.presets import MAMUJOCO_TASKS, RUN_PRESETS, on_policy_run, preset

TINY_ALGO = dict(actor_hidden=(8,), critic_hidden=(8,), rollout_length=4)


def tiny(**over):
    algo = {**TINY_ALGO, **over.pop("algo_config", {})}
    run = dict(env="max_of_two", num_envs=4, iterations=4, eval_every=2, chunk_iterations=2, eval_episodes=2)
    return make_config("mappo", algo, **{**run, **over})


# ------------------------------------------------------------------------------------------ GAE


def _gae_by_definition(r, v, nv, term, done, gamma, lam):
    """A_t = Σ_k (γλ)^k δ_{t+k}, summed forward until the episode's last step (inclusive) or the rollout's end."""
    t_len = len(r)
    delta = r + gamma * (1 - term) * nv - v
    adv = np.zeros_like(r)
    for t in range(t_len):
        for k in range(t, t_len):
            adv[t] += (gamma * lam) ** (k - t) * delta[k]
            if done[k]:
                break
    return adv


def _mc_returns(r, nv, term, done, gamma):
    """λ = 1: discounted rewards until the episode ends or the rollout is cut, then γ V(s') unless terminated."""
    t_len = len(r)
    out = np.zeros_like(r)
    for t in range(t_len):
        g, disc = 0.0, 1.0
        for k in range(t, t_len):
            g += disc * r[k]
            disc *= gamma
            if done[k] or k == t_len - 1:
                g += disc * (1 - term[k]) * nv[k]
                break
        out[t] = g
    return out


def test_gae_matches_the_definition_with_termination_and_truncation():
    rng = np.random.default_rng(0)
    t_len, b = 7, 3
    r = rng.normal(size=(t_len, b)).astype(np.float32)
    v = rng.normal(size=(t_len, b)).astype(np.float32)
    nv = rng.normal(size=(t_len, b)).astype(np.float32)
    term = np.zeros((t_len, b), np.float32)
    done = np.zeros((t_len, b), np.float32)
    term[1, 0] = done[1, 0] = 1.0  # env 0: terminated at step 1 (no bootstrap, recursion cut)
    done[3, 1] = 1.0  # env 1: truncated at step 3 (bootstrap from its final state, recursion cut)
    term[2, 2] = done[2, 2] = 1.0  # env 2: a termination, then a truncation, then the rollout's cut
    done[5, 2] = 1.0
    for gamma, lam in ((0.99, 0.95), (0.9, 0.0), (0.97, 1.0)):
        got = np.asarray(mappo.gae(jnp.asarray(r), jnp.asarray(v), jnp.asarray(nv), jnp.asarray(term),
                                   jnp.asarray(done), gamma, lam))
        want = np.stack([_gae_by_definition(r[:, i], v[:, i], nv[:, i], term[:, i], done[:, i], gamma, lam)
                         for i in range(b)], axis=1)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # λ = 1: advantage + V = the Monte-Carlo return within the episode, bootstrapped at truncations and at the cut
    # (the telescoping needs V(s'_t) = V(s_{t+1}) within an episode, as a real rollout has)
    nv[:-1] = np.where(done[:-1] > 0, nv[:-1], v[1:])
    got = np.asarray(mappo.gae(jnp.asarray(r), jnp.asarray(v), jnp.asarray(nv), jnp.asarray(term), jnp.asarray(done),
                               0.97, 1.0)) + v
    want = np.stack([_mc_returns(r[:, i], nv[:, i], term[:, i], done[:, i], 0.97) for i in range(b)], axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # the terminated step's return is its reward alone; the truncated one bootstraps from V(s')
    assert got[1, 0] == pytest.approx(r[1, 0], abs=1e-6)
    assert got[3, 1] == pytest.approx(r[3, 1] + 0.97 * nv[3, 1], abs=1e-5)


def test_gae_one_step_episodes_is_reward_minus_value():
    r, v = jnp.array([[1.0, 4.0]]), jnp.array([[0.5, 5.0]])
    ones = jnp.ones_like(r)
    np.testing.assert_allclose(mappo.gae(r, v, 100.0 * ones, ones, ones, 0.99, 0.95), [[0.5, -1.0]])


# ------------------------------------------------------------------------------------------ losses


def test_clipped_surrogate_on_hand_values():
    # ratio 1.5 with A = 2 is clipped to 1.2 (2.4); ratio 0.5 with A = -1 keeps the clipped, more pessimistic 0.8 · -1
    logp_old = jnp.zeros(2)
    logp = jnp.log(jnp.array([1.5, 0.5]))
    loss, aux = mappo.surrogate_loss(logp, logp_old, jnp.array([2.0, -1.0]), 0.2)
    assert float(loss) == pytest.approx(-(2.4 - 0.8) / 2, rel=1e-6)
    assert float(aux["ratio"]) == pytest.approx(1.0) and float(aux["clip_fraction"]) == 1.0
    # inside the clip range the surrogate is r·A; ratio 1.5 with A < 0 is not clipped (min picks the unclipped -1.5)
    loss, aux = mappo.surrogate_loss(jnp.log(jnp.array([1.1, 1.5])), jnp.zeros(2), jnp.array([1.0, -1.0]), 0.2)
    assert float(loss) == pytest.approx(-(1.1 - 1.5) / 2, rel=1e-6)
    assert float(aux["clip_fraction"]) == 0.5
    # the gradient vanishes where clipping binds (ratio above 1 + ε with A > 0)
    g = jax.grad(lambda lp: mappo.surrogate_loss(lp, jnp.zeros(2), jnp.array([2.0, 1.0]), 0.2)[0])(
        jnp.log(jnp.array([1.5, 1.1])))
    assert float(g[0]) == 0.0 and float(g[1]) == pytest.approx(-1.1 / 2, rel=1e-6)


def test_clipped_value_loss_on_hand_values():
    assert float(mappo.huber(jnp.array(1.0), 10.0)) == 0.5
    assert float(mappo.huber(jnp.array(-3.0), 1.0)) == pytest.approx(2.5)
    # v moved 1.0 from v_old = 0 (clip 0.2): the clipped prediction 0.2 has the larger error 1.8 → ½·1.8²
    loss = mappo.clipped_value_loss(jnp.array([1.0]), jnp.array([0.0]), jnp.array([2.0]), 0.2, 10.0)
    assert float(loss) == pytest.approx(0.5 * 1.8**2)
    # with Huber δ = 1: 1·(1.8 − ½)
    loss = mappo.clipped_value_loss(jnp.array([1.0]), jnp.array([0.0]), jnp.array([2.0]), 0.2, 1.0)
    assert float(loss) == pytest.approx(1.3)
    # within the clip range both are the same (1.9); beyond it the max keeps the clipped error (1.8) even where the
    # unclipped one is smaller (v = 3 overshoots the target 2 by 1): a move beyond ε earns nothing
    loss = mappo.clipped_value_loss(jnp.array([0.1, 3.0]), jnp.array([0.0, 0.0]), jnp.array([2.0, 2.0]), 0.2, 10.0)
    assert float(loss) == pytest.approx((0.5 * 1.9**2 + 0.5 * 1.8**2) / 2)


# ------------------------------------------------------------------------------------------ tanh-Gaussian


def test_tanh_gaussian_density_is_the_change_of_variables():
    mu, std = 0.3, 0.5
    x = np.linspace(-4.0, 4.0, 9)
    want = (-0.5 * ((x - mu) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi)) - np.log(1 - np.tanh(x) ** 2)
    got = mappo.tanh_gaussian_log_prob(jnp.asarray(x)[:, None], jnp.full((9, 1), mu), jnp.full((9, 1), std),
                                       jnp.ones(1))
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)
    # it is a density over u ∈ (-1, 1): integrates to 1
    u = np.linspace(-1 + 1e-7, 1 - 1e-7, 400_001)
    logp = mappo.tanh_gaussian_log_prob(jnp.asarray(np.arctanh(u), jnp.float32)[:, None], jnp.full((u.size, 1), mu),
                                        jnp.full((u.size, 1), std), jnp.ones(1))
    assert np.trapezoid(np.exp(np.asarray(logp, np.float64)), u) == pytest.approx(1.0, abs=2e-3)
    # saturated pre-tanh values (tanh = ±1 in float32) keep a finite log-density
    big = mappo.tanh_log_det(jnp.array([[20.0, -20.0]]), jnp.ones(2))
    assert np.isfinite(np.asarray(big)).all() and float(big[0]) == pytest.approx(2 * 2 * (np.log(2) - 20), rel=1e-5)
    # padded entries do not count; entropy of N(μ, σ²) per real entry
    lp = mappo.gaussian_log_prob(jnp.array([[0.1, 99.0]]), jnp.zeros((1, 2)), jnp.ones((1, 2)), jnp.array([1.0, 0.0]))
    assert float(lp[0]) == pytest.approx(-0.5 * 0.01 - 0.5 * np.log(2 * np.pi), rel=1e-6)
    ent = mappo.gaussian_entropy(jnp.array([[2.0, 5.0]]), jnp.array([1.0, 0.0]))
    assert float(ent[0]) == pytest.approx(0.5 * np.log(2 * np.pi * np.e) + np.log(2.0), rel=1e-6)


# ------------------------------------------------------------------------------------------ value normaliser


def test_value_normaliser_statistics():
    beta = 0.9
    rng = np.random.default_rng(1)
    batches = [rng.normal(3.0, 2.0, size=50).astype(np.float32) for _ in range(4)]
    vn = mappo.value_norm_init()
    mean0, var0 = mappo.value_norm_stats(vn)  # empty: mean 0 and the variance floor
    assert float(mean0) == 0.0 and float(var0) == pytest.approx(1e-2)
    m = m2 = d = 0.0
    for x in batches:
        vn = mappo.value_norm_update(vn, jnp.asarray(x), beta)
        m, m2, d = beta * m + (1 - beta) * x.mean(), beta * m2 + (1 - beta) * (x**2).mean(), beta * d + (1 - beta)
    mean, var = mappo.value_norm_stats(vn)
    assert float(mean) == pytest.approx(m / d, rel=1e-5)
    assert float(var) == pytest.approx(m2 / d - (m / d) ** 2, rel=1e-4)
    # one update is debiased exactly: the batch's own mean and variance
    one = mappo.value_norm_update(mappo.value_norm_init(), jnp.asarray(batches[0]), 0.99999)
    mean, var = mappo.value_norm_stats(one)
    assert float(mean) == pytest.approx(batches[0].mean(), rel=1e-3)
    assert float(var) == pytest.approx(batches[0].var(), rel=1e-2)
    y = jnp.array([-1.0, 0.0, 7.5])
    np.testing.assert_allclose(mappo.value_norm_denormalize(one, mappo.value_norm_normalize(one, y)), y, atol=1e-5)


# ------------------------------------------------------------------------------------------ the on-policy loop


def test_rollout_shapes_steps_and_episode_ends():
    """T = 5 steps of B = 2 envs of 3-step episodes: done at the episode's last step, the final (not the reset) state
    as next_state there, T·B env steps per iteration, no buffer."""
    cfg = make_config("mappo", dict(TINY_ALGO, rollout_length=5), env="particle_gather", num_envs=2, iterations=2,
                      eval_every=2, chunk_iterations=2, eval_episodes=2, env_config=dict(episode_length=3))
    assert training.env_steps_per_iteration(cfg) == 10
    setup = training.build(cfg)
    agent = setup.agent
    assert agent.on_policy and agent.rollout_length == 5
    ts = jax.jit(lambda k: training.init(setup, k))(jax.random.key(0))
    assert ts.buffer is None and int(ts.env_steps) == 0  # no warm-up, no buffer
    ts2, traj, metrics = jax.jit(lambda t, k: training.rollout(setup, t, k))(ts, jax.random.key(1))
    n, o, a, s = agent.spec.num_agents, agent.spec.obs_dim, agent.spec.action_dim, agent.spec.state_size
    assert traj.obs.shape == (5, 2, n, o) and traj.next_obs.shape == (5, 2, n, o)
    assert traj.state.shape == (5, 2, s) and traj.action.shape == (5, 2, n, a) and traj.extras.shape == (5, 2, n, a)
    assert traj.reward.shape == traj.terminal.shape == traj.done.shape == (5, 2)
    np.testing.assert_array_equal(traj.done, [[0, 0], [0, 0], [1, 1], [0, 0], [0, 0]])
    np.testing.assert_array_equal(traj.terminal, 0.0)  # particle_gather only truncates
    assert int(ts2.env_steps) == 10 and float(metrics["train_episodes"]) == 2.0
    assert np.isfinite(float(metrics["train_return"])) and float(metrics["nonfinite_steps"]) == 0.0
    # within an episode next_state is the next row's state; at the end it is the final state, not the reset one
    np.testing.assert_array_equal(traj.next_state[:2], traj.state[1:3])
    np.testing.assert_array_equal(traj.next_state[3:4], traj.state[4:5])
    assert not np.allclose(traj.next_state[2], traj.state[3])
    # the executed actions are tanh of the stored pre-tanh samples
    np.testing.assert_allclose(traj.action, np.tanh(traj.extras) * agent.action_mask, atol=1e-6)

    ts3, m = jax.jit(lambda t: training.train_step(setup, t))(ts2)
    assert int(ts3.env_steps) == 20 and int(ts3.iteration) == 1
    for k in ("policy_loss", "value_loss", "entropy", "train_return", "train_episodes", "nonfinite_steps"):
        assert np.isfinite(float(m[k])), k


def test_old_log_probs_are_exact():
    """With one epoch of one minibatch the ratio at the collecting parameters is exactly 1 (the update recomputes the
    old log-probs from the stored pre-tanh samples, with the parameters that sampled them)."""
    cfg = tiny(algo_config=dict(ppo_epochs=1, critic_epochs=1))
    setup = training.build(cfg)
    ts = jax.jit(lambda k: training.init(setup, k))(jax.random.key(0))
    _, m = jax.jit(lambda t: training.train_step(setup, t))(ts)
    assert float(m["ratio"]) == pytest.approx(1.0, abs=1e-6)
    assert float(m["approx_kl"]) == pytest.approx(0.0, abs=1e-6) and float(m["clip_fraction"]) == 0.0


def test_shared_actor_and_lr_decay_run():
    cfg = tiny(algo_config=dict(share_actor=True, linear_lr_decay=True, actor_minibatches=2, critic_minibatches=4))
    out = jax.jit(training.make_train(cfg))(jax.random.key(0))
    for k in ("policy_loss", "value_loss", "actor_grad_norm"):
        assert np.all(np.isfinite(np.asarray(out.metrics[k]))), k
    assert "Dense_0" in out.state.learner.actor_params["params"]["Torso_0"]  # one network, no agent axis
    assert out.state.learner.actor_params["params"]["Torso_0"]["Dense_0"]["kernel"].ndim == 2


def test_too_many_minibatches_is_a_clear_error():
    cfg = tiny(algo_config=dict(actor_minibatches=17))  # 4 steps × 4 envs = 16 samples
    setup = training.build(cfg)
    ts = training.init(setup, jax.random.key(0))
    with pytest.raises(ValueError, match="actor_minibatches=17"):
        training.train_step(setup, ts)


# ------------------------------------------------------------------------------------------ run config


def test_replay_fields_are_ignored_and_critic_warmup_refused():
    # warm-up, buffer and batch settings mean nothing on-policy: accepted (even a buffer smaller than the env batch)
    # and without effect
    cfg = tiny(warmup_iterations=8, buffer_size=1, batch_size=3, updates_per_iteration=5, checkpoint_buffer=False)
    out = jax.jit(training.make_train(cfg))(jax.random.key(0))
    assert out.state.buffer is None
    assert int(out.state.env_steps) == cfg.iterations * 4 * 4
    with pytest.raises(ValueError, match="critic_warmup_updates"):
        tiny(critic_warmup_updates=5)
    with pytest.raises(ValueError, match="rollout_length"):
        tiny(algo_config=dict(rollout_length=0))
    with pytest.raises(ValueError, match="value_norm_beta"):
        tiny(algo_config=dict(value_norm_beta=1.0))


# ------------------------------------------------------------------------------------------ presets


@pytest.mark.parametrize("env", ["single_peak", "max_of_two", "two_modalities", "max_of_three", "climbing", "penalty",
                                 "particle_gather", *MAMUJOCO_TASKS])
def test_preset_gives_the_shared_env_step_budget(env):
    """Same env steps, env batch and evaluation points (in env steps) as an off-policy algorithm on that env."""
    on, off = preset(env, "mappo"), preset(env, "maddpg")
    spi_on, spi_off = training.env_steps_per_iteration(on), training.env_steps_per_iteration(off)
    assert spi_off == off.num_envs and spi_on == on.num_envs * on.algo_config.rollout_length
    assert on.num_envs == off.num_envs
    assert on.iterations * spi_on == off.iterations * spi_off
    assert on.eval_every * spi_on == off.eval_every * spi_off
    assert on.chunk_iterations * spi_on == off.chunk_iterations * spi_off
    assert on.warmup_iterations == 0 and on.critic_warmup_updates == 0
    if env in MAMUJOCO_TASKS:
        assert on.algo_config.gamma == 0.99 and on.algo_config.rollout_length == 125
    elif env != "particle_gather":
        assert on.algo_config.gamma == 0.0 and on.algo_config.rollout_length == 1


def test_preset_conversion_errors_and_harl_values():
    with pytest.raises(ValueError, match=r"iterations=1000.*rollout_length=3"):
        preset("max_of_two", "mappo", algo_config=dict(rollout_length=3))
    run = on_policy_run(RUN_PRESETS["HalfCheetah-2x3"], 125, "HalfCheetah-2x3")
    assert run["iterations"] == 1000 and run["eval_every"] == 40 and run["chunk_iterations"] == 40
    assert not {"buffer_size", "batch_size", "updates_per_iteration"} & set(run) and run["warmup_iterations"] == 0
    # overrides are the algorithm's own iterations
    assert preset("max_of_two", "mappo", iterations=20, chunk_iterations=20, eval_every=10).iterations == 20
    hc = preset("HalfCheetah-2x3", "mappo").algo_config  # HARL tuned HalfCheetah-v2-2x3
    assert (hc.clip, hc.ppo_epochs, hc.actor_minibatches, hc.entropy_coef, hc.actor_lr) == (0.05, 15, 1, 0.01, 5e-4)
    assert hc.actor_hidden == (128, 128, 128) and hc.huber_delta == 10.0 and hc.max_grad_norm == 10.0
    walker = preset("Walker2d-2x3", "mappo").algo_config
    assert (walker.actor_minibatches, walker.actor_lr, walker.linear_lr_decay) == (2, 1e-3, True)
