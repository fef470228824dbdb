"""Losses against hand-computed values on tiny inputs (docs/algorithms.md)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from svnr_jax.losses import (
    Transition,
    critic_loss,
    critic_target,
    mixture_log_density,
    policy_loss,
    soft_value,
    surrogate_policy_loss,
    svgd_policy_direction,
    uniform_log_density,
)
from svnr_jax.networks import CriticNet, make_policy


def test_soft_value_uniform_matches_hand_computation():
    q = jnp.array([1.0, 2.0, 4.0])
    alpha, d = 0.5, 2
    got = jax.jit(soft_value)(q, jnp.full((3,), uniform_log_density(d)), alpha)
    # α [log Σ exp(Q/α) - log M + D log 2]
    want = 0.5 * (math.log(math.exp(2.0) + math.exp(4.0) + math.exp(8.0)) - math.log(3) + 2 * math.log(2))
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_critic_target_with_terminal():
    f = jax.jit(critic_target)
    np.testing.assert_allclose(f(1.0, 0.0, 2.0, 0.9), 2.8, rtol=1e-6)
    np.testing.assert_allclose(f(1.0, 1.0, 2.0, 0.9), 1.0, rtol=1e-6)


def _const_critic(c):
    """A critic whose value is params['c'] everywhere (one critic)."""
    return CriticNet(init=lambda k: {"c": jnp.full((1,), c)},
                     apply=lambda p, s, u: p["c"] + 0.0 * jnp.sum(u) + 0.0 * jnp.sum(s), num_critics=1)


def test_critic_loss_uniform_proposal_includes_d_log2():
    # Constant Q = c: V = α [c/α + log M - log M + D log 2] = c + α D log 2 (exactly), D = 2 agents × 1.
    c, alpha, gamma, r, scale = 1.5, 0.7, 0.9, 0.25, 2.0
    critic = _const_critic(c)
    policy = make_policy(2, 1, 1, np.tril(np.ones((2, 2), bool)), hidden=(4,))
    b = 3
    batch = Transition(obs=jnp.ones((b, 2, 1)), state=jnp.ones((b, 1)), action=jnp.zeros((b, 2, 1)),
                       reward=jnp.full((b,), r), next_obs=jnp.ones((b, 2, 1)), next_state=jnp.ones((b, 1)),
                       terminal=jnp.array([0.0, 1.0, 0.0]))
    params = critic.init(None)

    @jax.jit
    def f(p, k):
        return critic_loss(p, p, None, batch, k, alpha, policy=policy, critic=critic,
                           action_mask=np.ones((2, 1), np.float32), gamma=gamma, reward_scale=scale, value_samples=5)

    loss, aux = f(params, jax.random.key(0))
    v = c + alpha * 2 * math.log(2.0)
    y = np.array([scale * r + gamma * v, scale * r, scale * r + gamma * v])
    np.testing.assert_allclose(aux["soft_value_mean"], v, rtol=1e-5)
    np.testing.assert_allclose(loss, np.mean(0.5 * (y - c) ** 2), rtol=1e-5)


def test_mixture_log_density_hand_values():
    a = jnp.array([0.1, -0.2])
    centres = jnp.array([[0.0, 0.0], [0.5, 0.5]])
    w, s = 0.3, 0.2
    got = jax.jit(lambda a, c: mixture_log_density(a, c, weight=w, std=s, joint_dim=2))(a, centres)
    gauss = [math.exp(-0.5 * float(jnp.sum((a - c) ** 2)) / s**2) / (2 * math.pi * s**2) for c in centres]
    want = math.log(w / 4 + (1 - w) * np.mean(gauss))
    np.testing.assert_allclose(got, want, rtol=1e-5)
    uni = mixture_log_density(a, centres, weight=1.0, std=s, joint_dim=2)
    np.testing.assert_allclose(uni, -2 * math.log(2), rtol=1e-6)


def test_svgd_policy_direction_matches_double_loop():
    rng = np.random.default_rng(0)
    fixed = rng.normal(size=(3, 2, 1)).astype(np.float32)
    scores = rng.normal(size=(3, 2, 1)).astype(np.float32)
    upd = rng.normal(size=(2, 2, 1)).astype(np.float32)
    mask = np.array([[1, 0], [1, 1]], bool)  # nested
    h = 0.8
    got = jax.jit(lambda f, s, u: svgd_policy_direction(f, s, u, mask, bandwidth=h))(fixed, scores, upd)
    want = np.zeros_like(upd)
    for q in range(2):
        for i in range(2):
            for m in range(3):
                sq = sum(float(np.sum((upd[q, j] - fixed[m, j]) ** 2)) for j in range(2) if mask[i, j])
                k = math.exp(-sq / h)
                want[q, i] += (k * scores[m, i] + 2.0 / h * (upd[q, i] - fixed[m, i]) * k) / 3
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_surrogate_loss_value_and_gradient():
    delta = jnp.array([[[1.0], [2.0]], [[-1.0], [0.5]]])
    u = jnp.array([[[0.1], [0.2]], [[0.3], [-0.4]]]) + jnp.array([0.0, 0.0, 0.0, 0.5]).reshape(2, 2, 1)
    loss, g = jax.jit(jax.value_and_grad(surrogate_policy_loss, argnums=1))(delta, u)
    np.testing.assert_allclose(loss, -(0.1 + 0.4 - 0.3 - 0.2 + 0.25) / 2, rtol=1e-5)
    np.testing.assert_allclose(g, -delta / 2)  # descent moves u along Δ


@pytest.mark.parametrize("topology_mask", [np.tril(np.ones((2, 2), bool)), np.eye(2, dtype=bool)])
def test_policy_step_moves_particles_along_svgd_direction(topology_mask):
    # Q pulls every action towards +0.5: after one small SGD step on the surrogate, the same noises give
    # actions that moved along Δ (positive inner product).
    policy = make_policy(2, 1, 1, topology_mask, hidden=(16,))
    critic = CriticNet(init=lambda k: {}, apply=lambda p, s, u: -jnp.sum((u - 0.5) ** 2)[None] * 20.0,
                       num_critics=1)
    params = policy.init(jax.random.key(1))
    obs, state = jnp.ones((4, 2, 1)), jnp.ones((4, 1))
    key = jax.random.key(2)
    kw = dict(policy=policy, critic=critic, mask=topology_mask, action_mask=np.ones((2, 1), np.float32),
              num_particles=8)
    grads = jax.jit(jax.grad(lambda p: policy_loss(p, {}, obs, state, key, 1.0, **kw)[0]))(params)
    new = jax.tree.map(lambda p, g: p - 1e-3 * g, params, grads)
    noise = jax.random.normal(jax.random.key(3), (16, 2, 1))
    before = jax.vmap(policy.apply, (None, None, 0))(params, obs[0], noise)
    after = jax.vmap(policy.apply, (None, None, 0))(new, obs[0], noise)
    # Mean action moves towards the mode at 0.5.
    assert float(jnp.mean(jnp.abs(after - 0.5))) < float(jnp.mean(jnp.abs(before - 0.5)))


def test_temperature_schedules():
    from svnr_jax.algorithms.svnr import SVNRConfig, temperature

    f = lambda sched, it: float(jax.jit(lambda i: temperature(
        SVNRConfig(alpha_init=10.0, alpha_min=0.1, alpha_schedule=sched, alpha_anneal_fraction=0.5), i, 100))(it))
    assert f("constant", 0) == pytest.approx(10.0, rel=1e-5) and f("constant", 100) == pytest.approx(10.0, rel=1e-5)
    assert f("linear", 0) == pytest.approx(10.0, rel=1e-5) and f("linear", 25) == pytest.approx(5.05, rel=1e-5)
    assert f("linear", 50) == pytest.approx(0.1, rel=1e-5) and f("linear", 99) == pytest.approx(0.1, rel=1e-5)
    assert f("exponential", 25) == pytest.approx(1.0, rel=1e-5) and f("exponential", 80) == pytest.approx(0.1, rel=1e-5)


@pytest.mark.parametrize("proposal, twin", [("mixture", True)])
def test_update_with_twin_critics_and_mixture_proposal(proposal, twin):
    from svnr_jax.algorithms.svnr import SVNR, SVNRConfig
    from svnr_jax.envs import make

    spec = make("particle_gather").spec
    agent = SVNR(spec, SVNRConfig(policy_hidden=(8,), critic_hidden=(8,), num_particles=4, value_samples=6,
                                  twin_critic=twin, value_proposal=proposal, gamma=0.9))
    ls = agent.init(jax.random.key(0))
    b, n, o, a, s = 5, spec.num_agents, spec.obs_dim, spec.action_dim, spec.state_size
    ks = jax.random.split(jax.random.key(1), 4)
    batch = Transition(jax.random.normal(ks[0], (b, n, o)), jax.random.normal(ks[1], (b, s)),
                       jax.random.uniform(ks[2], (b, n, a), minval=-1, maxval=1), jnp.ones((b,)),
                       jax.random.normal(ks[3], (b, n, o)), jnp.zeros((b, s)), jnp.zeros((b,)))
    new, m = jax.jit(agent.update)(ls, batch, jax.random.key(2), 0)  # iteration 0
    assert all(np.isfinite(float(v)) for v in m.values())
    assert jax.tree.leaves(new.critic_params)[0].shape[0] == (2 if twin else 1)
    assert int(new.updates) == 1
    moved = jax.tree.map(lambda x, y: float(jnp.max(jnp.abs(x - y))), new.policy_params, ls.policy_params)
    assert max(jax.tree.leaves(moved)) > 0


def test_mixture_proposal_samples_and_density_are_consistent():
    from svnr_jax.losses import sample_proposal

    centres = jnp.array([[[0.5], [0.5]], [[-0.5], [-0.5]]])
    a, log_q = jax.jit(lambda k: sample_proposal(k, 4000, np.ones((2, 1), np.float32), centres=centres,
                                                 weight=0.5, std=0.1))(jax.random.key(0))
    assert a.shape == (4000, 2, 1) and bool(jnp.all(jnp.abs(a) <= 1.0))
    near = jnp.linalg.norm(a[:, :, 0] - 0.5, axis=-1) < 0.3
    assert 0.2 < float(jnp.mean(near)) < 0.32  # half Gaussian mass split over 2 centres (+ a little uniform)
    assert float(jnp.max(log_q)) > uniform_log_density(2) + 1.0  # KDE peaks dominate the uniform floor
