"""ROMMEO-AC: the tanh-Gaussian density against a change of variables, the prior's maximum-likelihood step, the
opponent-model / policy losses and the critic target against numpy on the same samples, execution modes, config
checks, jit/vmap (learning on single_peak: tests/test_algorithms.py)."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from svnr_jax.algorithms.base import EXPLORE
from svnr_jax.algorithms.rommeo import (
    ROMMEO,
    GaussianNet,
    ROMMEOConfig,
    atanh_clipped,
    gaussian_scale,
    tanh_gaussian_log_prob,
    tanh_gaussian_sample,
)
from svnr_jax.envs.base import EnvSpec
from svnr_jax.networks import CriticNet
from svnr_jax.replay import Transition

TINY = ROMMEOConfig(policy_hidden=(8,), opponent_hidden=(8,), critic_hidden=(8,))


def spec(action_sizes=(1, 1), state_size=2):
    n = len(action_sizes)
    return EnvSpec("tiny", n, tuple(action_sizes), tuple(action_sizes), state_size, -1.0, 1.0, 1)


def make_batch(sp: EnvSpec, b: int = 4, seed: int = 0) -> Transition:
    rng = np.random.default_rng(seed)
    n, o, a, s = sp.num_agents, sp.obs_dim, sp.action_dim, sp.state_size
    act = rng.uniform(-1, 1, (b, n, a)) * sp.action_mask
    f = lambda *shape: jnp.asarray(rng.normal(size=shape), jnp.float32)  # noqa: E731
    return Transition(obs=f(b, n, o), state=f(b, s), action=jnp.asarray(act, jnp.float32), reward=f(b),
                      next_obs=f(b, n, o), next_state=f(b, s), terminal=jnp.asarray(rng.integers(0, 2, b), jnp.float32))


# ------------------------------------------------------------------------------------------ tanh-Gaussian


def np_log_prob(raw, mu, scale, mask):
    """The reference's tanh-Gaussian log-density in numpy (float64)."""
    z = (raw - mu) / scale
    ln = -0.5 * z**2 - np.log(scale) - 0.5 * math.log(2 * math.pi)
    return np.sum(mask * (ln - np.log(1 - np.tanh(raw) ** 2 + 1e-6)), axis=-1)


def test_tanh_gaussian_density_is_the_change_of_variables():
    mu, scale = np.array([0.3, -1.2]), np.array([0.7, 0.4])
    u = np.array([[-0.9, -0.95], [-0.2, -0.8], [0.0, -0.5], [0.6, 0.1], [0.97, 0.4]])
    raw = np.arctanh(u)
    got = jax.jit(tanh_gaussian_log_prob)(raw, mu, scale, np.ones(2))
    # numerical density of u = tanh(x), x ~ N(μ, σ²): P(u − h < U < u + h) / 2h from the Gaussian CDF, per entry
    h = 1e-5
    phi = np.vectorize(lambda z: 0.5 * math.erfc(-z / math.sqrt(2.0)))  # standard normal CDF
    cdf = lambda v: phi((np.arctanh(v) - mu) / scale)  # noqa: E731
    numeric = np.sum(np.log((cdf(u + h) - cdf(u - h)) / (2 * h)), axis=-1)
    # the +1e-6 inside log(1 − tanh² + ε) shifts it by ≈ −Σ 1e-6 / (1 − u²) (< 3e-5 here)
    np.testing.assert_allclose(got, numeric, rtol=0, atol=5e-5)
    # it is a density on (−1, 1): integrates to 1 (1-D, midpoint rule in u)
    grid = -1.0 + (np.arange(200_000) + 0.5) * 1e-5
    dens = np.exp(np.asarray(jax.jit(tanh_gaussian_log_prob)(np.arctanh(grid)[:, None], mu[:1], scale[:1],
                                                              np.ones(1))))
    np.testing.assert_allclose(np.sum(dens) * 1e-5, 1.0, atol=2e-3)


def test_masked_entries_do_not_count_and_samples_are_reparameterised():
    mu, scale, mask = jnp.array([0.5, 9.0]), jnp.array([0.3, 2.0]), jnp.array([1.0, 0.0])
    noise = jnp.array([0.7, -1.3])
    u, raw, lp = jax.jit(tanh_gaussian_sample)(mu, scale, noise, mask)
    np.testing.assert_allclose(raw, [0.5 + 0.3 * 0.7, 9.0 - 2.6], rtol=1e-6)
    np.testing.assert_allclose(u, [np.tanh(0.71), 0.0], rtol=1e-6)
    assert u[1] == 0  # padded entry
    np.testing.assert_allclose(lp, np_log_prob(np.array([0.71]), 0.5, 0.3, 1.0), rtol=1e-5)
    # σ = exp(clip(log σ, −20, 2)) + 0.01; a buffer action of exactly ±1 has a finite pre-tanh value
    np.testing.assert_allclose(gaussian_scale(jnp.array([-30.0, 0.0, 5.0])), [0.01, 1.01, math.exp(2) + 0.01],
                               rtol=1e-6)
    assert np.all(np.isfinite(atanh_clipped(jnp.array([-1.0, 1.0]))))


# ------------------------------------------------------------------------------------------ known networks


def linear_net(rng, n, in_dim, out_dim):
    """GaussianNet μ = W x + b, log σ = c (per agent), parameters drawn from ``rng``."""
    p = {"W": jnp.asarray(rng.normal(size=(n, out_dim, in_dim)) * 0.5, jnp.float32),
         "b": jnp.asarray(rng.normal(size=(n, out_dim)) * 0.3, jnp.float32),
         "c": jnp.asarray(rng.normal(size=(n, out_dim)) * 0.3 - 0.5, jnp.float32)}
    return GaussianNet(init=lambda k: p, apply=lambda q, x: (q["W"] @ x + q["b"], q["c"])), p


def np_linear(p, i, x):
    mu = np.asarray(p["W"][i], np.float64) @ x + np.asarray(p["b"][i], np.float64)
    log_sig = np.asarray(p["c"][i], np.float64)
    return mu, log_sig, np.exp(np.clip(log_sig, -20, 2)) + 0.01


def np_q(w, s, u):
    return w * (s[0] + u[0, 0] - 2.0 * u[1, 0] ** 2 + 0.5 * u[1, 1] + u[2, 0] * u[0, 0])


def known_critic():
    """Q_i(s, u) = w_i (s_0 + u_00 − 2 u_10² + 0.5 u_11 + u_20 u_00) (three agents, A = 2)."""
    return CriticNet(init=lambda k: {"w": jnp.ones((1,))},  # leading [n_critics = 1] axis, as make_critic's
                     apply=lambda p, s, u: p["w"] * (s[0] + u[0, 0] - 2.0 * u[1, 0] ** 2 + 0.5 * u[1, 1]
                                                     + u[2, 0] * u[0, 0]),
                     num_critics=1)


def known_agent(cfg=TINY, seed=0):
    """Three agents with action sizes (1, 2, 1) (padded to 2) and linear-Gaussian π, ρ, P, a known critic."""
    sp = spec(action_sizes=(1, 2, 1))
    agent = ROMMEO(sp, cfg)
    rng = np.random.default_rng(seed)
    n, o, a, d = 3, sp.obs_dim, sp.action_dim, agent.opp_dim
    agent.rho_net, rho = linear_net(rng, n, o, d)
    agent.prior_net, prior = linear_net(rng, n, o, d)
    agent.pi_net, pi = linear_net(rng, n, o + d, a)
    agent.critic = known_critic()
    critic = {"w": jnp.array([1.5, -0.5, 2.0])[:, None]}  # [N, n_critics]
    return agent, sp, dict(rho=rho, prior=prior, pi=pi, critic=critic)


def np_reg(mu, log_sig, mask):
    m = np.broadcast_to(mask, mu.shape)
    ls = np.broadcast_to(np.clip(log_sig, -20, 2), mu.shape)
    return 0.5 * np.sum(m * ls**2) / m.sum() + 0.5 * np.sum(m * mu**2) / m.sum()


def np_step(agent, p, i, o, eps_rho, eps_pi):
    """One agent's sample chain in numpy: ρ-sample, log ρ, log P (at the pre-tanh ρ-sample), π-sample, log π, Q."""
    omask, amask = agent.opp_mask[i], agent.action_mask[i]
    mu_r, ls_r, s_r = np_linear(p["rho"], i, o)
    raw_r = mu_r + s_r * eps_rho
    u_opp = np.tanh(raw_r) * omask
    log_rho = np_log_prob(raw_r, mu_r, s_r, omask)
    mu_p, _, s_p = np_linear(p["prior"], i, o)
    log_p = np_log_prob(raw_r, mu_p, s_p, omask)
    mu_pi, ls_pi, s_pi = np_linear(p["pi"], i, np.concatenate([o, u_opp]))
    raw_pi = mu_pi + s_pi * eps_pi
    u_i = np.tanh(raw_pi) * amask
    log_pi = np_log_prob(raw_pi, mu_pi, s_pi, amask)
    u = np.zeros((3, 2))
    u[[j for j in range(3) if j != i]] = u_opp.reshape(2, 2)
    u[i] = u_i
    return dict(log_rho=log_rho, log_p=log_p, log_pi=log_pi, u=u, mu_r=mu_r, ls_r=ls_r, mu_pi=mu_pi, ls_pi=ls_pi)


def f64(x):
    return np.asarray(x, np.float64)


# ------------------------------------------------------------------------------------------ losses vs numpy


def test_opponent_and_policy_losses_match_numpy():
    cfg = dataclasses.replace(TINY, policy_reg=0.3)  # a visible regulariser
    agent, sp, p = known_agent(cfg)
    batch = make_batch(sp, b=3)
    eps_rho, eps_pi = agent.noises(jax.random.key(3), (3,))  # [B, N, 4], [B, N, 2]
    alpha = 0.7
    opp = jax.jit(agent.opponent_loss_i)
    pol = jax.jit(agent.policy_loss_i)
    for i in range(3):
        sl = lambda t, i=i: jax.tree.map(lambda x: x[i], t)  # noqa: E731
        got, aux = opp(sl(p["rho"]), sl(p["pi"]), sl(p["prior"]), sl(p["critic"]), i, batch.obs[:, i], batch.state,
                       eps_rho[:, i], eps_pi[:, i], alpha)
        got_pi, _ = pol(sl(p["pi"]), sl(p["rho"]), sl(p["critic"]), i, batch.obs[:, i], batch.state, eps_rho[:, i],
                        eps_pi[:, i], alpha)
        terms, terms_pi, mus, mus_pi = [], [], [], []
        for b in range(3):
            r = np_step(agent, p, i, f64(batch.obs[b, i]), f64(eps_rho[b, i]), f64(eps_pi[b, i]))
            q = np_q(float(p["critic"]["w"][i, 0]), f64(batch.state[b]), r["u"])
            terms.append(r["log_rho"] - r["log_p"] - q + alpha * r["log_pi"])
            terms_pi.append(alpha * r["log_pi"] - q)
            mus.append(r["mu_r"])
            mus_pi.append(r["mu_pi"])
        want = np.mean(terms) + 0.3 * np_reg(np.array(mus), r["ls_r"], agent.opp_mask[i])
        want_pi = np.mean(terms_pi) + 0.3 * np_reg(np.array(mus_pi), r["ls_pi"], agent.action_mask[i])
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)
        np.testing.assert_allclose(got_pi, want_pi, rtol=2e-5, atol=2e-5)
        assert np.isfinite(aux["kl_rho_prior"])


def test_opponent_gradient_reaches_rho_through_pi_and_q():
    # ∂L_ρ/∂ρ includes the paths through π's input u_-i and through Q: with log ρ − log P fixed (P := ρ) the gradient
    # with respect to ρ's bias is −∂Q/∂u_-i·∂u_-i/∂b + α ∂log π/∂b (finite differences).
    agent, sp, p = known_agent(dataclasses.replace(TINY, policy_reg=0.0))
    batch = make_batch(sp, b=2)
    eps_rho, eps_pi = agent.noises(jax.random.key(1), (2,))
    i, sl = 1, (lambda t: jax.tree.map(lambda x: x[1], t))

    def loss(bias):
        rho = dict(sl(p["rho"]), b=bias)
        return agent.opponent_loss_i(rho, sl(p["pi"]), rho, sl(p["critic"]), i, batch.obs[:, i], batch.state,
                                     eps_rho[:, i], eps_pi[:, i], 0.5)[0]

    b0 = sl(p["rho"])["b"]
    g = jax.jit(jax.grad(loss))(b0)
    e = 1e-2
    fd = [(loss(b0.at[k].add(e)) - loss(b0.at[k].add(-e))) / (2 * e) for k in range(4)]
    assert np.linalg.norm(g) > 1e-2
    np.testing.assert_allclose(g, fd, rtol=2e-2, atol=2e-3)


def test_critic_target_matches_numpy():
    cfg = dataclasses.replace(TINY, gamma=0.9, reward_scale=0.5)
    agent, sp, p = known_agent(cfg)
    batch = make_batch(sp, b=3)
    eps_rho, eps_pi = agent.noises(jax.random.key(4), (3,))
    alpha = 0.4
    target_w = jnp.array([0.5, 1.0, -1.0])[:, None]
    for i in range(3):
        sl = lambda t, i=i: jax.tree.map(lambda x: x[i], t)  # noqa: E731
        y, soft = jax.jit(agent.target_i)({"w": target_w[i]}, sl(p["rho"]), sl(p["pi"]), sl(p["prior"]), i, batch,
                                          eps_rho[:, i], eps_pi[:, i], alpha)
        for b in range(3):
            r = np_step(agent, p, i, f64(batch.next_obs[b, i]), f64(eps_rho[b, i]), f64(eps_pi[b, i]))
            q_bar = np_q(float(target_w[i, 0]), f64(batch.next_state[b]), r["u"])
            v = q_bar - alpha * r["log_pi"] - r["log_rho"] + r["log_p"]
            want = 0.5 * float(batch.reward[b]) + 0.9 * (1 - float(batch.terminal[b])) * v
            np.testing.assert_allclose(soft[b], v, rtol=2e-5, atol=2e-5)
            np.testing.assert_allclose(y[b], want, rtol=2e-5, atol=2e-5)
        # the loss: ½ mean (y − Q_i(s, u_buffer))²
        loss, _ = jax.jit(agent.critic_loss_i)(sl(p["critic"]), {"w": target_w[i]}, sl(p["rho"]), sl(p["pi"]),
                                              sl(p["prior"]), i, batch, eps_rho[:, i], eps_pi[:, i], alpha)
        q = [np_q(float(p["critic"]["w"][i, 0]), f64(batch.state[b]), f64(batch.action[b])) for b in range(3)]
        np.testing.assert_allclose(loss, 0.5 * np.mean((np.asarray(y, np.float64) - q) ** 2), rtol=2e-5)


def test_update_wires_the_losses_to_the_key_scheme():
    """update's metrics = Σ_i of the per-agent losses with the noises of split(key, 3) = (critic, opponent, policy),
    every loss at the parameters before the update."""
    agent, sp, p = known_agent(dataclasses.replace(TINY, policy_reg=0.2, prior_reg=0.5))
    batch = make_batch(sp, b=3)
    ls = agent.init(jax.random.key(0)).replace(rho_params=p["rho"], prior_params=p["prior"], pi_params=p["pi"],
                                                critic_params=p["critic"], target_params=p["critic"])
    ls = ls.replace(pi_opt=agent.policy_tx.init(p["pi"]), rho_opt=agent.policy_tx.init(p["rho"]),
                    prior_opt=agent.policy_tx.init(p["prior"]), critic_opt=agent.critic_tx.init(p["critic"]))
    _, m = jax.jit(agent.update)(ls, batch, jax.random.key(7), 0)
    k_c, k_o, k_p = jax.random.split(jax.random.key(7), 3)
    alpha = float(agent.alpha(0))
    want = {"critic_loss": 0.0, "opponent_loss": 0.0, "policy_loss": 0.0, "prior_loss": 0.0}
    er_c, ep_c = agent.noises(k_c, (3,))
    er_o, ep_o = agent.noises(k_o, (3,))
    er_p, ep_p = agent.noises(k_p, (3,))
    for i in range(3):
        sl = lambda t, i=i: jax.tree.map(lambda x: x[i], t)  # noqa: E731
        want["critic_loss"] += agent.critic_loss_i(sl(p["critic"]), sl(p["critic"]), sl(p["rho"]), sl(p["pi"]),
                                                   sl(p["prior"]), i, batch, er_c[:, i], ep_c[:, i], alpha)[0]
        want["opponent_loss"] += agent.opponent_loss_i(sl(p["rho"]), sl(p["pi"]), sl(p["prior"]), sl(p["critic"]), i,
                                                       batch.obs[:, i], batch.state, er_o[:, i], ep_o[:, i], alpha)[0]
        want["policy_loss"] += agent.policy_loss_i(sl(p["pi"]), sl(p["rho"]), sl(p["critic"]), i, batch.obs[:, i],
                                                   batch.state, er_p[:, i], ep_p[:, i], alpha)[0]
        want["prior_loss"] += agent.prior_loss_i(sl(p["prior"]), i, batch.obs[:, i], batch.action)[0]
    for k, v in want.items():
        np.testing.assert_allclose(m[k], v, rtol=1e-4, atol=1e-3, err_msg=k)


# ------------------------------------------------------------------------------------------ prior


def constant_prior(mu, c):
    """A prior that ignores o_i: μ and log σ are the parameters (two agents, A = 1: one teammate entry each)."""
    params = {"mu": jnp.asarray(mu, jnp.float32), "c": jnp.asarray(c, jnp.float32)}  # [N, 1]
    return GaussianNet(init=lambda k: params, apply=lambda q, x: (q["mu"], q["c"])), params


def test_prior_gradient_and_step_move_the_mean_towards_the_teammates():
    agent = ROMMEO(spec(), dataclasses.replace(TINY, prior_reg=0.2))
    agent.prior_net, params = constant_prior([[0.1], [-0.4]], [[-0.3], [0.2]])
    u = np.array([[0.5, 0.8], [0.7, 0.9], [0.2, 0.6]], np.float32)  # [B, N] buffer actions (A = 1)
    batch = make_batch(agent.spec, b=3)._replace(action=jnp.asarray(u[:, :, None]))
    for i in range(2):
        sl = jax.tree.map(lambda x, i=i: x[i], params)
        g = jax.jit(jax.grad(lambda q, i=i: agent.prior_loss_i(q, i, batch.obs[:, i], batch.action)[0]))(sl)
        x = np.arctanh(u[:, 1 - i].astype(np.float64))  # agent i's teammate
        mu, c = float(sl["mu"][0]), float(sl["c"][0])
        s = math.exp(c) + 0.01
        # L = −mean_b log N(x_b; μ, σ) + const + 0.2·½(c² + μ²): ∂L/∂μ = −mean_b (x_b − μ)/σ² + 0.2 μ
        np.testing.assert_allclose(g["mu"][0], -np.mean(x - mu) / s**2 + 0.2 * mu, rtol=1e-5)
        # ∂L/∂c = (1 − mean_b (x_b − μ)²/σ²)·e^c/σ + 0.2 c
        np.testing.assert_allclose(g["c"][0], (1 - np.mean((x - mu) ** 2) / s**2) * math.exp(c) / s + 0.2 * c,
                                   rtol=1e-5)
    # the update's Adam step moves each prior mean towards its teammate's actions (first step: by ≈ lr)
    ls = agent.init(jax.random.key(0))
    ls = ls.replace(prior_params=params, prior_opt=agent.policy_tx.init(params))
    new, _ = jax.jit(agent.update)(ls, batch, jax.random.key(1), 0)
    step = np.asarray(new.prior_params["mu"] - params["mu"])[:, 0]
    towards = np.array([np.mean(np.arctanh(u[:, 1])), np.mean(np.arctanh(u[:, 0]))]) - np.asarray(params["mu"])[:, 0]
    assert np.all(np.sign(step) == np.sign(towards)) and np.allclose(np.abs(step), agent.config.policy_lr, rtol=1e-3)


def test_prior_converges_to_the_maximum_likelihood_fit():
    # reg 0, o-independent prior: the ML fit of x = atanh(u) is μ = mean x, σ = std x (population std).
    agent = ROMMEO(spec(), dataclasses.replace(TINY, prior_reg=0.0, policy_lr=3e-2))
    agent.prior_net, params = constant_prior([[0.0], [0.0]], [[0.0], [0.0]])
    rng = np.random.default_rng(0)
    u = np.tanh(rng.normal([0.6, -0.4], [0.3, 0.5], size=(64, 2))).astype(np.float32)
    batch = make_batch(agent.spec, b=64)._replace(action=jnp.asarray(u[:, :, None]))
    loss = lambda q: jnp.sum(jax.vmap(agent.prior_loss_i, (0, 0, 1, None))(  # noqa: E731
        q, jnp.arange(2), batch.obs, batch.action)[0])

    @jax.jit
    def fit(q):
        def step(carry, _):
            q, opt = carry
            g = jax.grad(loss)(q)
            upd, opt = agent.policy_tx.update(g, opt, q)
            return (jax.tree.map(jnp.add, q, upd), opt), None
        return jax.lax.scan(step, (q, agent.policy_tx.init(q)), None, 1500)[0][0]

    q = fit(params)
    x = np.arctanh(u.astype(np.float64))
    np.testing.assert_allclose(np.asarray(q["mu"])[:, 0], x.mean(0)[::-1], atol=2e-3)
    np.testing.assert_allclose(np.exp(np.asarray(q["c"])[:, 0]) + 0.01, x.std(0)[::-1], rtol=1e-2)


# ------------------------------------------------------------------------------------------ execution


@pytest.mark.parametrize("mode", ROMMEO.modes + (EXPLORE,))
def test_execution_shapes_padding_and_own_computation(mode):
    sp = spec(action_sizes=(1, 2, 1))
    agent = ROMMEO(sp, TINY)
    ls = jax.jit(agent.init)(jax.random.key(0))
    obs = jnp.array([[0.5, 0.0], [-1.0, 0.3], [0.2, 0.0]])
    act = jax.jit(lambda k: agent.act(ls, obs, jnp.zeros(2), k, 7, 0, mode))
    a1, a2 = act(jax.random.key(4)), act(jax.random.key(4))
    assert a1.shape == (3, 2) and np.all(np.abs(np.asarray(a1)) <= 1.0)
    assert a1[0, 1] == 0 and a1[2, 1] == 0  # padded entries
    np.testing.assert_array_equal(a1, a2)  # same key, same action
    for i in range(3):  # decentralised: agent i's action from o_i, the key and t alone
        own = jax.jit(lambda k, i=i: agent.agent_action(ls, i, obs[i], k, 7, mode))(jax.random.key(4))
        np.testing.assert_allclose(a1[i], own, rtol=1e-6, atol=1e-7)


def test_sample_mode_is_noisy_and_mean_mode_is_not():
    sp = spec()
    agent = ROMMEO(sp, TINY)
    ls = jax.jit(agent.init)(jax.random.key(0))
    obs = jnp.ones((2, 1))
    keys = jax.random.split(jax.random.key(2), 500)

    def run(mode, t=3):
        return np.asarray(jax.jit(jax.vmap(lambda k: agent.act(ls, obs, jnp.zeros(2), k, t, 0, mode)))(keys))

    sample, explore, mean = run("sample"), run(EXPLORE), run("mean")
    np.testing.assert_array_equal(explore, sample)  # data collection executes the reference's sampling
    assert np.all(np.std(sample[:, :, 0], axis=0) > 0.1)
    assert np.all(mean == mean[0])  # deterministic
    assert not np.allclose(run("sample", t=4), sample)  # step noise is fold_in(key, t)
    # mean mode: u_-i = tanh(μ_ρ(o_i)) then u_i = tanh(μ_π(o_i, u_-i))
    for i in range(2):
        sl = jax.tree.map(lambda x, i=i: x[i], (ls.rho_params, ls.pi_params))
        mu_r, _ = agent.rho_net.apply(sl[0], obs[i])
        mu_pi, _ = agent.pi_net.apply(sl[1], jnp.concatenate([obs[i], jnp.tanh(mu_r)]))
        np.testing.assert_allclose(mean[0, i], jnp.tanh(mu_pi), rtol=1e-5, atol=1e-6)


def test_unknown_mode_and_single_agent_raise():
    agent = ROMMEO(spec(), TINY)
    ls = agent.init(jax.random.key(0))
    with pytest.raises(ValueError, match="shared_seed"):
        agent.act(ls, jnp.ones((2, 1)), jnp.zeros(2), jax.random.key(1), 0, 0, "shared_seed")
    with pytest.raises(ValueError, match=">= 2 agents"):
        ROMMEO(spec(action_sizes=(1,)), TINY)


# ------------------------------------------------------------------------------------------ config


def test_defaults_valid_and_registered():
    ROMMEOConfig().check()
    TINY.check()
    assert ROMMEO.name == "rommeo"
    assert ROMMEO.test_mode in ROMMEO.modes and set(ROMMEO.eval_modes) <= set(ROMMEO.modes)
    # α schedule default: the reference's 500 → 0.1 within the first 1 % of training
    agent = ROMMEO(spec(), ROMMEOConfig(), total_iterations=1000)
    assert float(agent.alpha(0)) == 500.0 and abs(float(agent.alpha(10)) - 0.1) < 1e-6


@pytest.mark.parametrize("field, value", [
    ("gamma", 1.5), ("tau", 0.0), ("target_update_interval", 0), ("policy_lr", -1e-3), ("critic_lr", float("nan")),
    ("grad_clip", -1.0), ("reward_scale", 0.0), ("policy_reg", -1.0), ("prior_reg", float("inf")),
    ("alpha_init", 0.0), ("alpha_schedule", "cosine"), ("alpha_min", 1e4), ("alpha_anneal_fraction", 0.0),
    ("policy_hidden", ()), ("opponent_hidden", (8, 0)), ("critic_hidden", (1.5,)),
])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=rf"algo_config\.{field}="):
        dataclasses.replace(ROMMEOConfig(), **{field: value}).check()


# ------------------------------------------------------------------------------------------ learning


def test_update_and_act_vmapped_over_learner_states():
    sp = spec(action_sizes=(1, 2))
    agent = ROMMEO(sp, dataclasses.replace(TINY, alpha_init=2.0, alpha_min=0.5, alpha_anneal_fraction=0.5),
                   total_iterations=10)
    batch = make_batch(sp, b=4)
    ls = jax.jit(jax.vmap(agent.init))(jax.random.split(jax.random.key(0), 3))
    upd = jax.jit(jax.vmap(agent.update, (0, None, 0, None)))
    new, m = upd(ls, batch, jax.random.split(jax.random.key(1), 3), 2)
    again, m2 = upd(ls, batch, jax.random.split(jax.random.key(1), 3), 2)
    for k in ("critic_loss", "opponent_loss", "policy_loss", "prior_loss", "alpha", "q_mean", "target_mean",
              "log_pi", "log_rho", "kl_rho_prior"):
        assert m[k].shape == (3,) and np.all(np.isfinite(m[k])), k
    np.testing.assert_allclose(m["alpha"], 2.0 * 0.25 ** (2 / 5), rtol=1e-5)  # α at iteration 2 of 5
    jax.tree.map(np.testing.assert_array_equal, (new, m), (again, m2))  # same key, same result
    assert np.all(np.asarray(new.updates) == 1)
    changed = jax.tree.map(lambda a, b: bool(np.any(a != b)),
                           (new.pi_params, new.rho_params, new.prior_params, new.critic_params, new.target_params),
                           (ls.pi_params, ls.rho_params, ls.prior_params, ls.critic_params, ls.target_params))
    assert all(jax.tree.leaves(changed))
    obs = jnp.ones((2, 2))
    for mode in ROMMEO.modes:
        a = jax.jit(jax.vmap(lambda x, m=mode: agent.act(x, obs, jnp.zeros(2), jax.random.key(9), 0, 0, m)))(new)
        assert a.shape == (3, 2, 2) and np.all(np.isfinite(a)) and np.all(np.asarray(a)[:, 0, 1] == 0)


def test_pretrain_is_critic_only_and_target_interval():
    sp = spec()
    agent = ROMMEO(sp, dataclasses.replace(TINY, target_update_interval=2, alpha_init=3.0, alpha_min=3.0))
    ls = jax.jit(agent.init)(jax.random.key(0))
    batch = make_batch(sp)
    pre = jax.jit(agent.pretrain)
    ls1, m = pre(ls, batch, jax.random.key(1))
    assert float(m["alpha"]) == 3.0 and np.isfinite(m["critic_loss"])
    for name in ("pi_params", "rho_params", "prior_params", "target_params"):
        jax.tree.map(np.testing.assert_array_equal, getattr(ls1, name), getattr(ls, name))
    assert any(jax.tree.leaves(jax.tree.map(lambda a, b: bool(np.any(a != b)), ls1.critic_params, ls.critic_params)))
    ls2, _ = pre(ls1, batch, jax.random.key(2))
    expect = jax.tree.map(lambda c, t: 0.01 * c + 0.99 * t, ls2.critic_params, ls1.target_params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), ls2.target_params, expect)
