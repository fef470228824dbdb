"""PR2-AC: the opponent conditional's amortized SVGD (library direction, convergence to a known conditional), the
actor's best response under ρ, the critic target against numpy, execution modes, config checks, jit/vmap, learning."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import svnr_jax.algorithms.pr2  # noqa: F401  (registers "pr2")
from svnr_jax.algorithms.base import EXPLORE, gradient_step
from svnr_jax.algorithms.pr2 import PR2, CriticFn, PR2Config
from svnr_jax.envs.base import EnvSpec
from svnr_jax.kernels import svgd_direction, tanh_correction
from svnr_jax.losses import sample_proposal
from svnr_jax.replay import Transition

TINY = PR2Config(actor_hidden=(8,), conditional_hidden=(8,), critic_hidden=(8,), num_particles=6, value_samples=5)

#: One-step game settings: ml3705454/mapr2 experiment/run_baselines.py + maci/get_agents.py pr2ac_agent (100-100
#: networks, critic lr 1e-2, α 0.1, 32 kernel / 16 value particles, τ 0.01), γ = 0, and the actor/conditional lr at the
#: reference class default 1e-3 (the script's 1e-2 saturates the tanh actor here: the reference's game observation
#: is 0, so its actor is in effect tanh(bias); ours is 1, which drives the hidden layers: 0/6 seeds at 1e-2, 6/6 at
#: 1e-3).
GAME = dict(actor_hidden=(100, 100), conditional_hidden=(100, 100), critic_hidden=(100, 100), policy_lr=1e-3,
            critic_lr=1e-2, num_particles=32, value_samples=16, tau=0.01, gamma=0.0, alpha_init=0.1, alpha_min=0.1)


def spec(action_sizes=(1, 1), state_size=2):
    n = len(action_sizes)
    return EnvSpec("tiny", n, (1,) * n, tuple(action_sizes), state_size, -1.0, 1.0, 1)


def make_batch(sp: EnvSpec, b: int = 4, seed: int = 0) -> Transition:
    rng = np.random.default_rng(seed)
    n, o, a, s = sp.num_agents, sp.obs_dim, sp.action_dim, sp.state_size
    act = rng.uniform(-1, 1, (b, n, a)) * sp.action_mask
    f = lambda *shape: jnp.asarray(rng.normal(size=shape), jnp.float32)  # noqa: E731
    return Transition(obs=f(b, n, o), state=f(b, s), action=jnp.asarray(act, jnp.float32), reward=f(b),
                      next_obs=f(b, n, o), next_state=f(b, s), terminal=jnp.asarray(rng.integers(0, 2, b), jnp.float32))


def known_critic(fn) -> CriticFn:
    """Every agent's critic = ``fn(w, s, u)`` with a per-agent scalar parameter ``w`` (stacked ``[N]``)."""
    return CriticFn(init=lambda k: {"w": jnp.asarray(1.0)}, apply=lambda p, s, u: fn(p["w"], s, u))


def constant_actor(agent: PR2, pre: np.ndarray):
    """Actor params ``{"b": [N, A]}`` and an ``actor_pre`` override: μ_i = tanh(b_i) (padded entries 0)."""
    mask = jnp.asarray(agent.action_mask)
    agent.actor_pre = lambda p, i, o: p["b"] * mask[i]
    return {"b": jnp.asarray(pre, jnp.float32)}


# ------------------------------------------------------------------------------------------ critic target


def test_critic_target_matches_numpy():
    sp = spec(action_sizes=(1, 2))
    cfg = dataclasses.replace(TINY, gamma=0.9, reward_scale=0.5, value_samples=7)
    agent = PR2(sp, cfg)
    agent.critic = known_critic(lambda w, s, u: w * (s[0] + u[0, 0] - 2.0 * u[1, 0] ** 2 + u[1, 1]))
    wq = np.array([1.5, -0.5], np.float32)
    tb = np.array([[0.4, 0.0], [-0.3, 0.8]], np.float32)  # target actors: μ̄_i = tanh(tb_i)
    ls = agent.init(jax.random.key(0))
    ls = ls.replace(target_critic_params={"w": jnp.asarray(wq)}, target_actor_params=constant_actor(agent, tb))
    batch = make_batch(sp, b=3)
    alpha = 0.7
    y, v = jax.jit(agent.target)(ls, batch, jax.random.key(3), alpha)
    assert y.shape == (2, 3) and v.shape == (2, 3)
    mask = sp.action_mask.astype(np.float64)
    agent_keys = jax.random.split(jax.random.key(3), 2)
    for i in range(2):
        keys = jax.random.split(agent_keys[i], 3)
        d_opp = mask.sum() - mask[i].sum()  # opponents' real entries: agent 0 → 2, agent 1 → 1
        for b in range(3):
            u, _ = sample_proposal(keys[b], 7, sp.action_mask)
            u = np.array(u, np.float64)
            u[:, i] = np.tanh(tb[i]) * mask[i]  # own row: the target actor; the others stay uniform
            s = np.asarray(batch.next_state[b], np.float64)
            q = wq[i] * (s[0] + u[:, 0, 0] - 2.0 * u[:, 1, 0] ** 2 + u[:, 1, 1])
            vb = alpha * (np.log(np.mean(np.exp(q / alpha))) + d_opp * math.log(2.0))
            np.testing.assert_allclose(v[i, b], vb, rtol=1e-5, atol=1e-5)
            want = 0.5 * float(batch.reward[b]) + 0.9 * (1.0 - float(batch.terminal[b])) * vb
            np.testing.assert_allclose(y[i, b], want, rtol=1e-5, atol=1e-5)
    # the loss: Σ_i ½ mean_b (y_ib − Q_i(s_b, u_b))² with the current critics
    qp = {"w": jnp.asarray([2.0, 1.0])}
    loss, _ = jax.jit(agent.critic_loss)(qp, ls, batch, jax.random.key(3), alpha)
    s, u = np.asarray(batch.state, np.float64), np.asarray(batch.action, np.float64)
    base = s[:, 0] + u[:, 0, 0] - 2.0 * u[:, 1, 0] ** 2 + u[:, 1, 1]
    want_loss = sum(0.5 * np.mean((np.asarray(y[i]) - w * base) ** 2) for i, w in enumerate([2.0, 1.0]))
    np.testing.assert_allclose(loss, want_loss, rtol=1e-5)


# ------------------------------------------------------------------------------------------ opponent conditional


def test_svgd_step_is_the_library_direction_on_the_opponents_coordinates():
    sp = spec(action_sizes=(1, 2, 2), state_size=3)  # agent 0 has a padded entry
    cfg = dataclasses.replace(TINY, num_particles=8, kernel_update_ratio=0.25)  # 6 fixed, 2 updated
    agent = PR2(sp, cfg)
    ls = jax.jit(agent.init)(jax.random.key(0))
    i = 1
    cp, qp = (jax.tree.map(lambda x: x[i], p) for p in (ls.conditional_params, ls.critic_params))
    obs_i, own, state, alpha = jnp.array([0.5]), jnp.array([0.3, -0.6]), jnp.array([0.3, -0.2, 0.1]), 0.5
    fixed, scores, updated, delta = jax.jit(agent.svgd_step)(cp, qp, i, obs_i, own, state, jax.random.key(1), alpha)
    assert fixed.shape == (6, 3, 2) and updated.shape == (2, 3, 2)
    # particles: ρ_i's outputs with the same key, fixed half first; own row and padded entries 0
    u = jax.jit(agent.conditional)(cp, i, obs_i, own, agent.opponent_noise(jax.random.key(1), i, 8))
    np.testing.assert_allclose(fixed, u[:6], rtol=1e-6)
    np.testing.assert_allclose(updated, u[6:], rtol=1e-6)
    assert np.all(np.asarray(u)[:, i] == 0) and np.all(np.asarray(u)[:, 0, 1] == 0)
    # scores: ∇_{u_−i} [Q_i(s, (u_−i, own))/α + Σ log(1 − u_−i² + 1e-6)] on the opponents' real entries
    opp = agent.opp_mask[i]

    def log_p(x):
        joint = x.at[i].set(own)
        return agent.critic.apply(qp, state, joint) / alpha + tanh_correction(x * opp)

    np.testing.assert_allclose(scores, jax.vmap(jax.grad(log_p))(fixed) * opp, rtol=1e-5, atol=1e-6)
    # direction: kernels.svgd_direction on the same particles, whether zero coordinates are kept or dropped
    want = svgd_direction(fixed.reshape(6, -1), scores.reshape(6, -1), queries=updated.reshape(2, -1))
    np.testing.assert_allclose(delta.reshape(2, -1), want, rtol=1e-5, atol=1e-6)
    real = opp.reshape(-1) > 0
    compact = svgd_direction(fixed.reshape(6, -1)[:, real], scores.reshape(6, -1)[:, real],
                             queries=updated.reshape(2, -1)[:, real])
    np.testing.assert_allclose(delta.reshape(2, -1)[:, real], compact, rtol=1e-5, atol=1e-6)
    assert np.all(np.asarray(delta).reshape(2, -1)[:, ~real] == 0)


def test_conditional_gradient_pulls_the_direction_back_through_rho():
    sp = spec()
    agent = PR2(sp, TINY)
    ls = jax.jit(agent.init)(jax.random.key(0))
    batch = make_batch(sp, b=1)

    @jax.jit
    def both(rp, key):
        grads = jax.grad(lambda p: agent.conditional_loss(p, ls.critic_params, batch, key, 0.8)[0])(rp)
        want = []
        for i, k_i in enumerate(jax.random.split(jax.random.clone(key), 2)):
            k = jax.random.split(k_i, 1)[0]
            cp_i, qp_i = (jax.tree.map(lambda x, i=i: x[i], p) for p in (rp, ls.critic_params))
            args = (i, batch.obs[0, i], batch.action[0, i])
            _, _, _, delta = agent.svgd_step(cp_i, qp_i, *args, batch.state[0], jax.random.clone(k), 0.8)
            upd = lambda p, args=args, k=k: agent.conditional(  # noqa: E731
                p, *args, agent.opponent_noise(k, args[0], agent.config.num_particles))[agent.num_fixed:]
            _, vjp = jax.vjp(upd, cp_i)
            want.append(vjp(-delta / agent.num_updated)[0])
        return grads, jax.tree.map(lambda *x: jnp.stack(x), *want)

    grads, want = both(ls.conditional_params, jax.random.key(5))
    jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-7), grads, want)


def exact_conditional_moments(u0: float, k: float, rho: float, alpha: float) -> tuple[float, float]:
    """Mean and std of p(u1 | u0) ∝ exp(Q(u0, u1)/α)·(1 − u1² + 1e-6) on (−1, 1), Q = −k (u1 − ρ u0)²: the SVGD
    target of ρ_0 (the critic's Boltzmann conditional with the tanh correction), by quadrature on a fine grid."""
    g = np.linspace(-1, 1, 200_001)[1:-1]
    logp = -k * (g - rho * u0) ** 2 / alpha + np.log(1 - g**2 + 1e-6)
    p = np.exp(logp - logp.max())
    p /= p.sum()
    mean = float((p * g).sum())
    return mean, float(np.sqrt((p * (g - mean) ** 2).sum()))


def test_conditional_converges_to_the_known_boltzmann_conditional_for_each_own_action():
    """Q(u0, u1) = −k (u1 − ρ u0)² (a coupling term): agent 0's ρ_0(u1 | u0) must learn the conditional of
    exp(Q/α) at u0 = −0.8 and at u0 = +0.8 (two different targets: the conditional depends on u_i)."""
    sp = spec()
    k, rho, alpha = 1.0, 0.6, 0.05
    cfg = dataclasses.replace(TINY, conditional_hidden=(32, 32), num_particles=16, policy_lr=3e-3)
    agent = PR2(sp, cfg)
    agent.critic = known_critic(lambda w, s, u: -w * k * (u[1, 0] - rho * u[0, 0]) ** 2)
    ls = agent.init(jax.random.key(0))
    own = jnp.array([-0.8, 0.8] * 4, jnp.float32)
    batch = Transition(obs=jnp.ones((8, 2, 1)), state=jnp.zeros((8, 2)),
                       action=jnp.stack([own, -own], axis=1)[:, :, None], reward=jnp.zeros(8),
                       next_obs=jnp.ones((8, 2, 1)), next_state=jnp.zeros((8, 2)), terminal=jnp.ones(8))

    @jax.jit
    def train(rp, opt, key):
        def step(carry, t):
            p, o = carry
            p, o, aux = gradient_step(agent.conditional_loss, p, o, agent.conditional_tx, ls.critic_params, batch,
                                      jax.random.fold_in(key, t), alpha)
            return (p, o), aux["svgd_norm"]

        (p, o), norms = jax.lax.scan(step, (rp, opt), jnp.arange(1500))
        return p, norms

    rp, norms = train(ls.conditional_params, ls.conditional_opt, jax.random.key(1))
    cp0 = jax.tree.map(lambda x: x[0], rp)
    for u0 in (-0.8, 0.8):
        samples = agent.conditional(cp0, 0, jnp.ones(1), jnp.array([u0]), agent.opponent_noise(jax.random.key(2), 0,
                                                                                               2000))
        s = np.asarray(samples)[:, 1, 0]
        mean, std = exact_conditional_moments(u0, k, rho, alpha)
        assert abs(s.mean() - mean) < 0.05, (u0, s.mean(), mean)
        assert 0.6 * std < s.std() < 1.4 * std, (u0, s.std(), std)
    assert np.mean(np.asarray(norms)[-100:]) < np.mean(np.asarray(norms)[:20])  # the direction shrinks towards 0


# ------------------------------------------------------------------------------------------ actor


def quadratic_team(beta: float, c: float):
    """Q(u0, u1) = −2 (u0 − β u1 − c)² − u1²: agent 0's best response to u1 is u0* = β u1 + c."""
    return known_critic(lambda w, s, u: w * (-2.0 * (u[0, 0] - beta * u[1, 0] - c) ** 2 - u[1, 0] ** 2))


def test_actor_gradient_is_the_soft_best_response_gradient_under_rho():
    sp = spec()
    agent = PR2(sp, dataclasses.replace(TINY, value_samples=9))
    beta, c, alpha = 0.5, 0.2, 0.3
    agent.critic = quadratic_team(beta, c)
    ls = agent.init(jax.random.key(0))
    ap = constant_actor(agent, np.array([[0.1], [-0.4]]))
    batch = make_batch(sp, b=1)
    key = jax.random.key(7)
    grads, aux = jax.jit(jax.grad(agent.actor_loss, has_aux=True))(ap, ls.conditional_params, ls.critic_params,
                                                                  batch, key, alpha)
    # by hand: agent 0's samples u1^j ~ ρ_0(· | o_0, the BUFFER's u_0); J = α log mean_j exp(Q_j/α);
    # dJ/dμ0 = Σ_j softmax(Q/α)_j ∂Q/∂u0(μ0, u1^j); the loss is −J, through μ0 = tanh(b0)
    k0 = jax.random.split(jax.random.split(jax.random.clone(key), 2)[0], 1)[0]
    cp0 = jax.tree.map(lambda x: x[0], ls.conditional_params)
    u1 = np.asarray(agent.conditional(cp0, 0, batch.obs[0, 0], batch.action[0, 0],
                                      agent.opponent_noise(jax.random.clone(k0), 0, 9)), np.float64)[:, 1, 0]
    mu0 = math.tanh(0.1)
    q = -2.0 * (mu0 - beta * u1 - c) ** 2 - u1**2
    w = np.exp((q - q.max()) / alpha)
    w /= w.sum()
    dj = np.sum(w * (-4.0) * (mu0 - beta * u1 - c))
    np.testing.assert_allclose(grads["b"][0, 0], -dj * (1 - mu0**2), rtol=1e-4)
    br = beta * np.sum(w * u1) + c  # the soft best response: the gradient points from μ0 towards it
    assert np.sign(-grads["b"][0, 0]) == np.sign(br - mu0)
    j0 = agent.actor_objective(jax.tree.map(lambda x: x[0], ap), cp0, jax.tree.map(lambda x: x[0], ls.critic_params),
                               0, batch.obs[0, 0], batch.action[0, 0], batch.state[0], k0, alpha)
    np.testing.assert_allclose(j0, alpha * np.log(np.mean(np.exp(q / alpha))), rtol=1e-5)
    assert np.isfinite(aux["policy_q"])


def test_actor_steps_reach_the_best_response_to_a_constant_rho():
    """ρ_0 outputs u1 = tanh(0.5) whatever its input: repeated actor steps on the real actor MLP bring μ0 to the best
    response β·tanh(0.5) + c of the known quadratic; ρ's samples carry no gradient to μ."""
    sp = spec()
    agent = PR2(sp, dataclasses.replace(TINY, actor_hidden=(16,), policy_lr=1e-2))
    beta, c = -0.5, 0.3
    agent.critic = quadratic_team(beta, c)
    ls = agent.init(jax.random.key(0))
    rp = jax.tree.map(jnp.zeros_like, ls.conditional_params)
    out_bias = rp["params"]["Dense_1"]["bias"]
    rp["params"]["Dense_1"]["bias"] = out_bias.at[:, 1].set(0.5).at[:, 0].set(0.5)
    batch = make_batch(sp, b=8)

    @jax.jit
    def train(ap, opt):
        def step(carry, t):
            p, o = carry
            p, o, _ = gradient_step(agent.actor_loss, p, o, agent.actor_tx, rp, ls.critic_params, batch,
                                    jax.random.fold_in(jax.random.key(3), t), 0.1)
            return (p, o), None

        return jax.lax.scan(step, (ap, opt), jnp.arange(400))[0][0]

    ap = train(ls.actor_params, ls.actor_opt)
    mu = np.asarray(jax.vmap(agent.actions, (None, 0))(ap, batch.obs))[:, 0, 0]
    np.testing.assert_allclose(mu, beta * math.tanh(0.5) + c, atol=0.02)


# ------------------------------------------------------------------------------------------ execution


def test_execution_modes():
    sp = spec(action_sizes=(1, 2))
    cfg = dataclasses.replace(TINY, exploration_noise=0.3, exploration_noise_min=0.05, noise_schedule="linear",
                              noise_anneal_fraction=0.5)
    agent = PR2(sp, cfg, total_iterations=100)
    ls = jax.jit(agent.init)(jax.random.key(1))
    obs, state = jnp.array([[0.5], [-1.0]]), jnp.zeros(2)
    keys = jax.random.split(jax.random.key(2), 4000)

    def run(mode, t=3, it=0, ls=ls):
        return np.asarray(jax.jit(jax.vmap(lambda k: agent.act(ls, obs, state, k, t, it, mode)))(keys))

    det, exp0 = run("deterministic"), run(EXPLORE)
    mu = np.asarray(agent.actions(ls.actor_params, obs))
    assert det.shape == (4000, 2, 2) and np.all(det == det[0]) and np.allclose(det[0], mu)
    assert mu[0, 1] == 0 and np.all(exp0[:, 0, 1] == 0) and np.all(np.abs(exp0) <= 1.0)
    # noise std: σ(0) = 0.3, then linear to 0.05 at iteration 50 and held (zero actor: μ = 0, no clipping)
    zero = ls.replace(actor_params=jax.tree.map(jnp.zeros_like, ls.actor_params))
    real = sp.action_mask
    for it, sigma in ((0, 0.3), (25, 0.175), (80, 0.05)):
        acts = run(EXPLORE, it=it, ls=zero)
        np.testing.assert_allclose(np.std(acts, axis=0)[real], sigma, rtol=0.06)
        np.testing.assert_allclose(np.mean(acts, axis=0)[real], 0.0, atol=0.02)  # centred on μ(o)
    np.testing.assert_array_equal(run(EXPLORE), exp0)  # same key, same action
    assert not np.allclose(run(EXPLORE, t=4), exp0)  # step noise is fold_in(key, t)
    with pytest.raises(ValueError, match="shared_seed"):
        agent.act(ls, obs, state, jax.random.key(1), 0, 0, "shared_seed")


# ------------------------------------------------------------------------------------------ config


def test_defaults_valid_and_registered():
    PR2Config().check()
    TINY.check()
    PR2Config(**GAME).check()
    assert PR2.name == "pr2"
    assert PR2.test_mode in PR2.modes and set(PR2.eval_modes) <= set(PR2.modes)
    with pytest.raises(ValueError, match="at least 2 agents"):
        PR2(spec(action_sizes=(1,)), TINY)


@pytest.mark.parametrize("field, value", [
    ("num_particles", 1), ("kernel_update_ratio", 1.0), ("kernel_update_ratio", 0.01), ("value_samples", 0),
    ("gamma", 1.5), ("tau", 0.0), ("target_update_interval", 0), ("policy_lr", -1e-3), ("critic_lr", float("nan")),
    ("grad_clip", -1.0), ("action_reg", -1e-3), ("reward_scale", 0.0), ("alpha_schedule", "cosine"),
    ("alpha_min", 2.0), ("alpha_anneal_fraction", 0.0), ("exploration_noise", -0.1), ("exploration_noise_min", 0.5),
    ("noise_schedule", "step"), ("noise_anneal_fraction", 1.5), ("actor_hidden", ()), ("conditional_hidden", (8, 0)),
    ("critic_hidden", (0,)),
])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=rf"algo_config\.{field}="):
        dataclasses.replace(PR2Config(), **{field: value}).check()


def test_exponential_noise_needs_a_positive_end():
    with pytest.raises(ValueError, match=r"algo_config\.exploration_noise_min="):
        PR2Config(noise_schedule="exponential", exploration_noise_min=0.0).check()
    PR2Config(noise_schedule="exponential", exploration_noise=0.3, exploration_noise_min=0.01).check()


# ------------------------------------------------------------------------------------------ learning


def test_update_and_act_vmapped_over_learner_states():
    sp = spec(action_sizes=(1, 2))
    cfg = dataclasses.replace(TINY, alpha_schedule="exponential", alpha_init=2.0, alpha_min=0.5,
                              alpha_anneal_fraction=0.5, action_reg=1e-3)
    agent = PR2(sp, cfg, total_iterations=10)
    batch = make_batch(sp, b=4)
    ls = jax.jit(jax.vmap(agent.init))(jax.random.split(jax.random.key(0), 3))
    upd = jax.jit(jax.vmap(agent.update, (0, None, 0, None)))

    new, m = upd(ls, batch, jax.random.split(jax.random.key(1), 3), 2)
    again, m2 = upd(ls, batch, jax.random.split(jax.random.key(1), 3), 2)
    for k in ("critic_loss", "conditional_loss", "policy_loss", "policy_q", "action_reg_term", "alpha", "q_mean",
              "target_mean", "soft_value_mean", "svgd_norm", "exploration_noise"):
        assert m[k].shape == (3,) and np.all(np.isfinite(m[k])), k
    np.testing.assert_allclose(m["alpha"], 2.0 * 0.25 ** (2 / 5), rtol=1e-5)  # α at iteration 2 of 5
    jax.tree.map(np.testing.assert_array_equal, (new, m), (again, m2))  # same key, same result
    assert np.all(np.asarray(new.updates) == 1)
    changed = jax.tree.map(lambda a, b: bool(np.any(a != b)), (new.actor_params, new.conditional_params,
                                                               new.critic_params),
                           (ls.actor_params, ls.conditional_params, ls.critic_params))
    assert all(jax.tree.leaves(changed))
    # Polyak targets from the NEW parameters (the reference runs the target ops after the training ops)
    for new_p, old_t, new_t in ((new.actor_params, ls.target_actor_params, new.target_actor_params),
                                (new.critic_params, ls.target_critic_params, new.target_critic_params)):
        want = jax.tree.map(lambda p, t: 0.01 * p + 0.99 * t, new_p, old_t)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), new_t, want)

    obs = jnp.ones((2, 1))
    for mode in (*PR2.modes, EXPLORE):
        a = jax.jit(jax.vmap(lambda x, m=mode: agent.act(x, obs, jnp.zeros(2), jax.random.key(9), 0, 0, m)))(new)
        assert a.shape == (3, 2, 2) and np.all(np.isfinite(a)) and np.all(np.asarray(a)[:, 0, 1] == 0)


def test_all_steps_use_the_parameters_before_the_update():
    """Critic, ρ and actor steps are each the optimiser step of their own loss at the OLD parameters."""
    sp = spec()
    agent = PR2(sp, TINY)
    ls = jax.jit(agent.init)(jax.random.key(0))
    batch = make_batch(sp)
    key = jax.random.key(4)
    new, _ = jax.jit(agent.update)(ls, batch, key, 0)
    k_q, k_r, k_a = jax.random.split(jax.random.clone(key), 3)
    alpha = agent.alpha(0)
    want_r, _, _ = gradient_step(agent.conditional_loss, ls.conditional_params, ls.conditional_opt,
                                 agent.conditional_tx, ls.critic_params, batch, k_r, alpha)
    want_a, _, _ = gradient_step(agent.actor_loss, ls.actor_params, ls.actor_opt, agent.actor_tx,
                                 ls.conditional_params, ls.critic_params, batch, k_a, alpha)
    want_q, _, _ = gradient_step(agent.critic_loss, ls.critic_params, ls.critic_opt, agent.critic_tx, ls, batch,
                                 k_q, alpha)
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)  # noqa: E731
    jax.tree.map(close, new.conditional_params, want_r)
    jax.tree.map(close, new.actor_params, want_a)
    jax.tree.map(close, new.critic_params, want_q)


def test_pretrain_is_critic_only_and_target_interval():
    sp = spec()
    agent = PR2(sp, dataclasses.replace(TINY, target_update_interval=2, alpha_init=3.0, alpha_min=3.0))
    ls = jax.jit(agent.init)(jax.random.key(0))
    batch = make_batch(sp)
    pre = jax.jit(agent.pretrain)
    ls1, m = pre(ls, batch, jax.random.key(1))
    assert float(m["alpha"]) == 3.0 and np.isfinite(m["critic_loss"])
    for name in ("actor_params", "conditional_params", "target_actor_params", "target_critic_params"):
        jax.tree.map(np.testing.assert_array_equal, getattr(ls1, name), getattr(ls, name))  # 1st: no target step
    assert not np.allclose(jax.tree.leaves(ls1.critic_params)[0], jax.tree.leaves(ls.critic_params)[0])
    ls2, _ = pre(ls1, batch, jax.random.key(2))
    expect = jax.tree.map(lambda c, t: 0.01 * c + 0.99 * t, ls2.critic_params, ls1.target_critic_params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), ls2.target_critic_params,
                 expect)  # 2nd update: Polyak step
    jax.tree.map(np.testing.assert_array_equal, ls2.target_actor_params, ls.target_actor_params)
