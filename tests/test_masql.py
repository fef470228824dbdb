"""MASQL: critic target and SVGD direction against hand computations, execution modes, config checks, jit/vmap."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from svnr_jax.algorithms.base import EXPLORE
from svnr_jax.algorithms.masql import MASQL, MASQLConfig
from svnr_jax.envs.base import EnvSpec
from svnr_jax.kernels import svgd_direction, tanh_correction
from svnr_jax.losses import sample_proposal
from svnr_jax.networks import CriticNet
from svnr_jax.replay import Transition

TINY = MASQLConfig(policy_hidden=(8,), critic_hidden=(8,), num_particles=6, value_samples=5)


def spec(action_sizes=(1, 1), state_size=2):
    n = len(action_sizes)
    return EnvSpec("tiny", n, (1,) * n, tuple(action_sizes), state_size, -1.0, 1.0, 1)


def make_batch(sp: EnvSpec, b: int = 4, seed: int = 0) -> Transition:
    rng = np.random.default_rng(seed)
    n, o, a, s = sp.num_agents, sp.obs_dim, sp.action_dim, sp.state_size
    act = rng.uniform(-1, 1, (b, n, a)) * sp.action_mask
    f = lambda *shape: jnp.asarray(rng.normal(size=shape), jnp.float32)
    return Transition(obs=f(b, n, o), state=f(b, s), action=jnp.asarray(act, jnp.float32), reward=f(b),
                      next_obs=f(b, n, o), next_state=f(b, s), terminal=jnp.asarray(rng.integers(0, 2, b), jnp.float32))


# ------------------------------------------------------------------------------------------ critic target


def known_critic(twin: bool) -> CriticNet:
    """Q_1(s, u) = w·(s_0 + u_00 − 2 u_10²); with ``twin`` a second critic Q_1 + 0.5 (the minimum is Q_1)."""
    def apply(p, s, u):
        q = p["w"] * (s[0] + u[0, 0] - 2.0 * u[1, 0] ** 2)
        return jnp.stack([q, q + 0.5]) if twin else q[None]
    return CriticNet(init=lambda k: {"w": jnp.asarray(1.5)}, apply=apply, num_critics=2 if twin else 1)


@pytest.mark.parametrize("twin", [False, True])
def test_critic_target_matches_numpy(twin):
    sp = spec()
    cfg = dataclasses.replace(TINY, gamma=0.9, reward_scale=0.5, value_samples=7, twin_critic=twin)
    agent = MASQL(sp, cfg)
    agent.critic = known_critic(twin)
    params = agent.critic.init(None)
    batch = make_batch(sp, b=3)
    alpha = 0.7
    y, v = jax.jit(agent.target)(params, batch, jax.random.key(3), alpha)
    # the same proposal samples: example b uses split(key, B)[b]
    keys = jax.random.split(jax.random.key(3), 3)
    want_y = []
    for b in range(3):
        u, _ = sample_proposal(keys[b], 7, sp.action_mask)
        u = np.asarray(u, np.float64)
        s = np.asarray(batch.next_state[b], np.float64)
        q = 1.5 * (s[0] + u[:, 0, 0] - 2.0 * u[:, 1, 0] ** 2)  # [M_v]
        d = 2  # real action entries; importance weight 1/q(u) = 2^D inside the α (losses.soft_value)
        vb = alpha * (np.log(np.mean(np.exp(q / alpha))) + d * math.log(2.0))
        np.testing.assert_allclose(v[b], vb, rtol=1e-5, atol=1e-5)
        want_y.append(0.5 * float(batch.reward[b]) + 0.9 * (1.0 - float(batch.terminal[b])) * vb)
    np.testing.assert_allclose(y, want_y, rtol=1e-5, atol=1e-5)
    # the loss the critic step differentiates: ½ mean_b Σ_k (y − Q_k)²
    loss, aux = jax.jit(agent.critic_loss)(params, params, batch, jax.random.key(3), alpha)
    s, u = np.asarray(batch.state, np.float64), np.asarray(batch.action, np.float64)
    q1 = 1.5 * (s[:, 0] + u[:, 0, 0] - 2.0 * u[:, 1, 0] ** 2)
    qs = [q1, q1 + 0.5] if twin else [q1]
    want_loss = 0.5 * np.mean(sum((np.asarray(want_y) - q) ** 2 for q in qs))
    np.testing.assert_allclose(loss, want_loss, rtol=1e-5)
    np.testing.assert_allclose(aux["target_mean"], np.mean(want_y), rtol=1e-5, atol=1e-6)


def test_value_of_constant_critic_is_c_plus_alpha_d_log2():
    # Q ≡ c: V = c + α D log 2 exactly, D counts real entries only (agent 0 has 1 of 2 padded entries).
    sp = spec(action_sizes=(1, 2))
    agent = MASQL(sp, TINY)
    agent.critic = CriticNet(init=lambda k: {"c": jnp.asarray(2.0)},
                             apply=lambda p, s, u: p["c"][None] + 0.0 * jnp.sum(u), num_critics=1)
    _, v = jax.jit(agent.target)(agent.critic.init(None), make_batch(sp), jax.random.key(0), 0.3)
    np.testing.assert_allclose(v, 2.0 + 0.3 * 3 * math.log(2.0), rtol=1e-6)


# ------------------------------------------------------------------------------------------ policy step


def test_svgd_step_is_full_kernel_svgd_on_the_joint():
    sp = spec(action_sizes=(1, 2))
    cfg = dataclasses.replace(TINY, num_particles=8, kernel_update_ratio=0.25)  # 6 fixed, 2 updated
    agent = MASQL(sp, cfg)
    ls = jax.jit(agent.init)(jax.random.key(0))
    obs, state, alpha = jnp.ones((2, 1)), jnp.array([0.3, -0.2]), 0.5
    fixed, scores, updated, delta = jax.jit(agent.svgd_step)(ls.policy_params, ls.critic_params, obs, state,
                                                              jax.random.key(1), alpha)
    assert fixed.shape == (6, 2, 2) and updated.shape == (2, 2, 2)
    # particles: the joint sampler's outputs with the same key, fixed half first
    u = jax.jit(agent.joint_particles, static_argnums=3)(ls.policy_params, obs, jax.random.key(1), 8)
    np.testing.assert_allclose(fixed, u[:6], rtol=1e-6)
    np.testing.assert_allclose(updated, u[6:], rtol=1e-6)
    # scores: ∇_u [Q(s, u)/α + Σ log(1 − u² + 1e-6)] on the real entries
    mask = sp.action_mask.astype(np.float32)
    lp = lambda x: agent.critic.apply(ls.critic_params, state, x)[0] / alpha + tanh_correction(x * mask)
    np.testing.assert_allclose(scores, jax.jit(jax.vmap(jax.grad(lp)))(fixed) * mask, rtol=1e-5, atol=1e-6)
    # direction: plain SVGD on the flattened joint (one kernel over every coordinate)
    want = jax.jit(svgd_direction)(fixed.reshape(6, -1), scores.reshape(6, -1), queries=updated.reshape(2, -1))
    np.testing.assert_allclose(delta.reshape(2, -1), want, rtol=1e-4, atol=1e-5)
    assert np.all(np.asarray(delta)[:, 0, 1] == 0)  # padded entry


def test_policy_gradient_pulls_the_direction_back_through_the_sampler():
    sp = spec()
    agent = MASQL(sp, TINY)
    ls = jax.jit(agent.init)(jax.random.key(0))
    obs, state, alpha = jnp.ones((1, 2, 1)), jnp.array([[0.1, 0.4]]), 0.8

    @jax.jit
    def both(pp, key):
        grads = jax.grad(lambda p: agent.policy_loss(p, ls.critic_params, obs, state, key, alpha)[0])(pp)
        k0 = jax.random.split(jax.random.clone(key), 1)[0]  # the key of the batch's only example
        _, _, _, delta = agent.svgd_step(pp, ls.critic_params, obs[0], state[0], jax.random.clone(k0), alpha)
        upd = lambda p: agent.joint_particles(p, obs[0], k0, agent.config.num_particles)[agent.num_fixed:]
        _, vjp = jax.vjp(upd, pp)
        return grads, vjp(-delta / agent.num_updated)[0]  # batch of 1: mean over states = the one state

    grads, want = both(ls.policy_params, jax.random.key(5))
    jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-7), grads, want)


# ------------------------------------------------------------------------------------------ execution


def copy_xi1_params(agent: MASQL):
    """Policy params (hidden (2,)) with every head = tanh(relu(ξ_1) − relu(−ξ_1)) = tanh(ξ_1): the learned joint
    puts all its mass on the diagonal u_0 = u_1."""
    p = jax.tree.map(jnp.zeros_like, agent.init(jax.random.key(0)).policy_params)
    mlp = p["params"]["MLP_0"]
    o = agent.spec.obs_dim  # input = [o_i, ξ_0 (agent 0's noise), ξ_1, ...]: ξ_1 above is agent 0's noise entry
    mlp["Dense_0"]["kernel"] = mlp["Dense_0"]["kernel"].at[:, o, 0].set(1.0).at[:, o, 1].set(-1.0)
    mlp["Dense_1"]["kernel"] = mlp["Dense_1"]["kernel"].at[:, 0, 0].set(1.0).at[:, 1, 0].set(-1.0)
    return p


def test_execution_modes_on_a_correlated_joint():
    sp = spec()
    agent = MASQL(sp, dataclasses.replace(TINY, policy_hidden=(2,)))
    ls = agent.init(jax.random.key(1)).replace(policy_params=copy_xi1_params(agent))
    obs, state = jnp.ones((2, 1)), jnp.zeros(2)
    keys = jax.random.split(jax.random.key(2), 2000)

    def run(mode, t=3):
        return np.asarray(jax.jit(jax.vmap(lambda k: agent.act(ls, obs, state, k, t, 0, mode)))(keys))[:, :, 0]

    shared, indep, det, explore = run("shared_seed"), run("independent"), run("deterministic"), run(EXPLORE)
    np.testing.assert_allclose(shared[:, 0], shared[:, 1], rtol=1e-6)  # a sample of the joint: on the diagonal
    assert np.std(shared[:, 0]) > 0.4
    assert abs(np.corrcoef(indep.T)[0, 1]) < 0.1  # product of marginals: the correlation is gone
    assert np.std(indep[:, 0]) > 0.4 and np.std(indep[:, 1]) > 0.4  # same marginals, still spread
    np.testing.assert_allclose(np.mean(np.abs(indep)), np.mean(np.abs(shared)), atol=0.05)
    np.testing.assert_array_equal(explore, indep)  # data collection executes the reference's behaviour
    assert np.all(det == det[0]) and np.allclose(det, 0.0)  # ξ = 0: constant
    assert not np.allclose(run("independent", t=4), indep)  # step noise is fold_in(key, t)


@pytest.mark.parametrize("mode", MASQL.modes)
def test_each_agent_computes_its_own_action(mode):
    sp = spec(action_sizes=(1, 2))
    agent = MASQL(sp, TINY)
    ls = jax.jit(agent.init)(jax.random.key(0))
    obs = jnp.array([[0.5], [-1.0]])
    act = jax.jit(lambda k: agent.act(ls, obs, jnp.zeros(2), k, 7, 0, mode))(jax.random.key(4))
    for i in range(2):
        own = jax.jit(lambda k, i=i: agent.agent_action(ls.policy_params, i, obs[i], k, 7, mode))(jax.random.key(4))
        np.testing.assert_allclose(act[i], own, rtol=1e-6, atol=1e-7)
    assert act[0, 1] == 0.0 and np.all(np.abs(np.asarray(act)) <= 1.0)


def test_unknown_mode_raises():
    agent = MASQL(spec(), TINY)
    ls = agent.init(jax.random.key(0))
    with pytest.raises(ValueError, match="negotiate"):
        agent.act(ls, jnp.ones((2, 1)), jnp.zeros(2), jax.random.key(1), 0, 0, "negotiate")


# ------------------------------------------------------------------------------------------ config


def test_defaults_valid_and_registered():
    MASQLConfig().check()
    TINY.check()
    assert MASQL.name == "masql"
    assert MASQL.test_mode in MASQL.modes and set(MASQL.eval_modes) <= set(MASQL.modes)


@pytest.mark.parametrize("field, value", [
    ("num_particles", 1), ("kernel_update_ratio", 1.0), ("kernel_update_ratio", 0.01), ("value_samples", 0),
    ("gamma", 1.5), ("tau", 0.0), ("target_update_interval", 0), ("policy_lr", -1e-3), ("critic_lr", float("nan")),
    ("grad_clip", -1.0), ("reward_scale", 0.0), ("alpha_schedule", "cosine"), ("alpha_min", 2.0),
    ("alpha_anneal_fraction", 0.0), ("policy_hidden", ()), ("critic_hidden", (8, 0)), ("twin_critic", "yes"),
])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=rf"algo_config\.{field}="):
        dataclasses.replace(MASQLConfig(), **{field: value}).check()


# ------------------------------------------------------------------------------------------ learning


def test_update_and_act_vmapped_over_learner_states():
    sp = spec(action_sizes=(1, 2))
    cfg = dataclasses.replace(TINY, alpha_schedule="exponential", alpha_init=2.0, alpha_min=0.5,
                              alpha_anneal_fraction=0.5)
    agent = MASQL(sp, cfg, total_iterations=10)
    batch = make_batch(sp, b=4)
    ls = jax.jit(jax.vmap(agent.init))(jax.random.split(jax.random.key(0), 3))
    upd = jax.jit(jax.vmap(agent.update, (0, None, 0, None)))

    new, m = upd(ls, batch, jax.random.split(jax.random.key(1), 3), 2)
    again, m2 = upd(ls, batch, jax.random.split(jax.random.key(1), 3), 2)
    for k in ("critic_loss", "policy_loss", "alpha", "q_mean", "target_mean", "svgd_norm"):
        assert m[k].shape == (3,) and np.all(np.isfinite(m[k])), k
    np.testing.assert_allclose(m["alpha"], 2.0 * 0.25 ** (2 / 5), rtol=1e-5)  # α at iteration 2 of 5
    jax.tree.map(np.testing.assert_array_equal, (new, m), (again, m2))  # same key, same result
    assert np.all(np.asarray(new.updates) == 1)
    changed = jax.tree.map(lambda a, b: bool(np.any(a != b)), (new.policy_params, new.critic_params),
                           (ls.policy_params, ls.critic_params))
    assert all(jax.tree.leaves(changed))

    obs = jnp.ones((2, 1))
    for mode in MASQL.modes:
        a = jax.jit(jax.vmap(lambda x, m=mode: agent.act(x, obs, jnp.zeros(2), jax.random.key(9), 0, 0, m)))(new)
        assert a.shape == (3, 2, 2) and np.all(np.isfinite(a)) and np.all(np.asarray(a)[:, 0, 1] == 0)


def test_pretrain_is_critic_only_and_target_interval():
    sp = spec()
    agent = MASQL(sp, dataclasses.replace(TINY, target_update_interval=2, alpha_init=3.0, alpha_min=3.0))
    ls = jax.jit(agent.init)(jax.random.key(0))
    batch = make_batch(sp)
    pre = jax.jit(agent.pretrain)
    ls1, m = pre(ls, batch, jax.random.key(1))
    assert float(m["alpha"]) == 3.0 and np.isfinite(m["critic_loss"])
    jax.tree.map(np.testing.assert_array_equal, ls1.policy_params, ls.policy_params)
    jax.tree.map(np.testing.assert_array_equal, ls1.target_params, ls.target_params)  # 1st update: no target step
    ls2, _ = pre(ls1, batch, jax.random.key(2))
    moved = jax.tree.map(lambda a, b: bool(np.any(a != b)), ls2.target_params, ls1.target_params)
    assert all(jax.tree.leaves(moved))  # 2nd update: Polyak step
    expect = jax.tree.map(lambda c, t: 0.01 * c + 0.99 * t, ls2.critic_params, ls1.target_params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), ls2.target_params, expect)
