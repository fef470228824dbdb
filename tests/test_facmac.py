"""FACMAC: the centralised policy gradient (every agent's CURRENT action through the mixed critic, buffer actions
unused, post-tanh regulariser) on hand-computed values, the mixed critic target, exploration, config validation,
jit/vmap of act and update (learning on single_peak: tests/test_algorithms.py)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import svnr_jax.algorithms.facmac  # noqa: F401  (registers "facmac")
from svnr_jax.algorithms.base import EXPLORE, get_algorithm, make_agent
from svnr_jax.algorithms.facmac import FACMAC, FACMACConfig, actor_loss
from svnr_jax.envs.base import EnvSpec
from svnr_jax.networks import MLP
from svnr_jax.replay import Transition

SPEC = EnvSpec(name="toy", num_agents=2, obs_sizes=(3, 2), action_sizes=(2, 1), state_size=4, action_low=-1.0,
               action_high=1.0, episode_length=5)
CFG = FACMACConfig(actor_hidden=(8,), critic_hidden=(8,), mixing_embed=4, hypernet_embed=4, gamma=0.9, tau=0.1,
                   reward_scale=2.0)



def make_batch(key, b=5, spec=SPEC):
    ks = jax.random.split(key, 6)
    n, o, a, s = spec.num_agents, spec.obs_dim, spec.action_dim, spec.state_size
    obs_mask = jnp.asarray(spec.obs_mask, jnp.float32)
    act_mask = jnp.asarray(spec.action_mask, jnp.float32)
    return Transition(
        obs=jax.random.normal(ks[0], (b, n, o)) * obs_mask,
        state=jax.random.normal(ks[1], (b, s)),
        action=jax.random.uniform(ks[2], (b, n, a), minval=-1, maxval=1) * act_mask,
        reward=jax.random.normal(ks[3], (b,)),
        next_obs=jax.random.normal(ks[4], (b, n, o)) * obs_mask,
        next_state=jax.random.normal(ks[5], (b, s)),
        terminal=jnp.array([0.0, 1.0, 0.0, 0.0, 1.0])[:b],
    )


@pytest.fixture(scope="module")
def agent():
    return make_agent("facmac", SPEC, CFG)


def test_registered():
    assert get_algorithm("facmac") == (FACMACConfig, FACMAC)
    for f in dataclasses.fields(FACMACConfig):
        assert f.default is not dataclasses.MISSING


# ------------------------------------------------------------------------------------------ critic target


def test_critic_target_by_hand(agent):
    """y = r_s·r + γ(1−d)·Mix_target(s', [Q̄_i(o'_i, μ̄_i(o'_i))]_i), every net the TARGET one, computed per sample."""
    ls = jax.jit(agent.init)(jax.random.key(0))
    # make the targets differ from the online nets so that using the wrong ones would show
    ls = ls.replace(target_actor_params=jax.tree.map(lambda x: x + 0.3, ls.target_actor_params),
                    target_critic_params=jax.tree.map(lambda x: x - 0.2, ls.target_critic_params))
    batch = make_batch(jax.random.key(1))
    y = jax.jit(agent.target)(ls, batch)

    mask = np.asarray(SPEC.action_mask, np.float32)
    actor, critic = MLP(CFG.actor_hidden, SPEC.action_dim), MLP(CFG.critic_hidden, 1)
    tc = ls.target_critic_params
    expected = []
    for b in range(batch.reward.shape[0]):
        qs = []
        for i in range(SPEC.num_agents):
            p_i = jax.tree.map(lambda x, i=i: x[i], ls.target_actor_params)
            u_i = np.tanh(np.asarray(actor.apply(p_i, batch.next_obs[b, i]))) * mask[i]
            c_i = jax.tree.map(lambda x, i=i: x[i], tc["agents"])
            qs.append(float(critic.apply(c_i, jnp.concatenate([batch.next_obs[b, i], jnp.asarray(u_i)]))[0]))
        q_next = float(agent.mixer.apply(tc["mixer"], jnp.asarray(qs), batch.next_state[b]))
        expected.append(2.0 * float(batch.reward[b]) + 0.9 * (1 - float(batch.terminal[b])) * q_next)
    np.testing.assert_allclose(np.asarray(y), np.asarray(expected), rtol=1e-5, atol=1e-5)
    term = np.asarray(batch.terminal) == 1
    np.testing.assert_allclose(np.asarray(y)[term], 2.0 * np.asarray(batch.reward)[term], rtol=1e-6)
    # the critic conditions on o_i (not on the state): the state only enters through the mixer
    q_a = agent.agent_qs(ls.critic_params, batch.obs[0], batch.action[0])
    assert q_a.shape == (SPEC.num_agents,)


def test_critic_step_fits_target(agent):
    """The critic loss is the mean squared TD error of Q_tot against the (fixed) target; pretrain reduces it and
    moves critics and mixer, not the actors."""
    ls = jax.jit(agent.init)(jax.random.key(2))
    batch = make_batch(jax.random.key(3))
    pre = jax.jit(agent.pretrain)
    _, m0 = pre(ls, batch, jax.random.key(4))
    y = agent.target(ls, batch)
    q = jax.vmap(agent.q_tot, (None, 0, 0, 0))(ls.critic_params, batch.obs, batch.state, batch.action)
    np.testing.assert_allclose(float(m0["critic_loss"]), float(jnp.mean((q - y) ** 2)), rtol=1e-5)
    ls1, _ = pre(ls, batch, jax.random.key(5))
    for a, b in zip(jax.tree.leaves(ls.actor_params), jax.tree.leaves(ls1.actor_params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for part in ("agents", "mixer"):
        moved = [not np.array_equal(np.asarray(a), np.asarray(b)) for a, b in
                 zip(jax.tree.leaves(ls.critic_params[part]), jax.tree.leaves(ls1.critic_params[part]), strict=True)]
        assert any(moved), part
    for _ in range(30):
        ls1, m = pre(ls1, batch, jax.random.key(6))
    assert float(m["critic_loss"]) < float(m0["critic_loss"])


# ------------------------------------------------------------------------------------------ actor loss

N, A = 2, 2
AMASK = np.array([[1.0, 1.0], [1.0, 0.0]], np.float32)  # agent 1 has one real action entry
C = np.array([[0.5, -0.2], [-0.4, 0.0]], np.float32)
K = 1.5  # coupling between agent 0's first and agent 1's action


def table_apply(params, obs):
    """A toy 'actor': its pre-tanh output is a parameter table ``[N, A]`` (independent of the observation)."""
    del obs
    pre = params["pre"]
    return jnp.tanh(pre) * AMASK, pre


def coupled_q(obs, state, u):
    """Q_tot = −Σ_i |u_i − c_i|² + K·u_{0,0}·u_{1,0}: agent 0's best response depends on agent 1's action."""
    del obs, state
    return -jnp.sum(((u - C) * AMASK) ** 2) + K * u[0, 0] * u[1, 0]


def grads(pre, reg=0.0, b=3):
    obs, state = jnp.zeros((b, N, 1)), jnp.zeros((b, 1))

    def f(p):
        return actor_loss(p, obs, state, actor_apply=table_apply, q_tot_fn=coupled_q, action_mask=AMASK,
                          action_reg=reg)

    return jax.jit(jax.grad(lambda p: f(p)[0]))({"pre": pre})["pre"], jax.jit(f)({"pre": pre})[1]


def analytic(pre, reg):
    """dL/dpre = −∂Q/∂u·(1 − u²) + reg·2u(1 − u²)/#real entries, with ∂Q/∂u = −2(u − c) + K·(partner's action)."""
    pre = np.asarray(pre, np.float64)
    u = np.tanh(pre) * AMASK
    dq = -2 * (u - C) * AMASK
    dq[0, 0] += K * u[1, 0]
    dq[1, 0] += K * u[0, 0]
    return (-dq * (1 - u**2) + reg * 2 * u * (1 - u**2) / AMASK.sum()) * AMASK


def test_centralised_policy_gradient_by_hand():
    pre = jnp.array([[0.3, -0.7], [1.1, 0.4]])
    for reg in (0.0, 1e-3, 0.5):
        g, aux = grads(pre, reg)
        np.testing.assert_allclose(np.asarray(g), analytic(pre, reg), rtol=1e-5, atol=1e-7)
        # the regulariser: mean over batch and real entries of the POST-tanh action² (facmac: (pi²).mean())
        u = np.tanh(np.asarray(pre)) * AMASK
        np.testing.assert_allclose(float(aux["reg"]), (u**2).sum() / AMASK.sum(), rtol=1e-6)
    assert FACMACConfig().action_reg == 1e-3


def test_gradient_follows_teammates_current_actors():
    """Changing agent 1's actor changes agent 0's gradient by exactly −K·Δu_1·(1 − u_0²)."""
    pre = jnp.array([[0.3, -0.7], [1.1, 0.4]])
    pre2 = pre.at[1, 0].set(-0.8)
    g, _ = grads(pre)
    g2, _ = grads(pre2)
    u0, u1, u1b = np.tanh(0.3), np.tanh(1.1), np.tanh(-0.8)
    np.testing.assert_allclose(float(g2[0, 0] - g[0, 0]), -K * (u1b - u1) * (1 - u0**2), rtol=1e-5)
    assert abs(float(g2[0, 0] - g[0, 0])) > 0.5
    np.testing.assert_allclose(np.asarray(g2), analytic(pre2, 0.0), rtol=1e-5, atol=1e-7)
    # agent 0's other (uncoupled) entry is unaffected
    np.testing.assert_allclose(float(g2[0, 1]), float(g[0, 1]), rtol=1e-6)


def test_buffer_actions_do_not_matter_and_teammates_do(agent):
    """With the real actors and mixed critic: agent 0's actor gradient ignores the replay actions entirely, and changes
    when agent 1's CURRENT actor changes (the mixer couples the agents)."""
    ls = agent.init(jax.random.key(7))
    batch = make_batch(jax.random.key(8))
    grad = jax.jit(jax.grad(lambda ap, cp, b: agent.actor_objective(ap, cp, b)[0]))

    def agent0(g):
        return np.concatenate([np.asarray(x[0]).ravel() for x in jax.tree.leaves(g)])

    g = grad(ls.actor_params, ls.critic_params, batch)
    other = batch._replace(action=-batch.action * 0.5 + 0.3 * jnp.asarray(SPEC.action_mask, jnp.float32))
    np.testing.assert_array_equal(agent0(grad(ls.actor_params, ls.critic_params, other)), agent0(g))
    moved = jax.tree.map(lambda x: x.at[1].add(0.5), ls.actor_params)  # agent 1's actor only
    g2 = grad(moved, ls.critic_params, batch)
    assert not np.allclose(agent0(g2), agent0(g), rtol=1e-3, atol=1e-6)
    assert np.all(np.isfinite(agent0(g2)))


# ------------------------------------------------------------------------------------------ exploration


def test_exploration_noise_and_padding(agent):
    ls = agent.init(jax.random.key(9))
    # zero the actors' output layers: μ(o) = 0 exactly, so the explore actions are the (clipped) noise
    zero_out = {"params": {**ls.actor_params["params"],
                           "Dense_1": jax.tree.map(jnp.zeros_like, ls.actor_params["params"]["Dense_1"])}}
    ls = ls.replace(actor_params=zero_out)
    obs = jax.random.normal(jax.random.key(10), (SPEC.num_agents, SPEC.obs_dim)) * SPEC.obs_mask
    state = jnp.zeros((SPEC.state_size,))
    key = jax.random.key(11)
    act = jax.jit(agent.act, static_argnames="mode")
    e = np.asarray(jax.jit(jax.vmap(lambda t: agent.act(ls, obs, state, key, t, 0, EXPLORE)))(jnp.arange(2000)))
    mask = np.asarray(SPEC.action_mask)
    assert np.all(e[:, ~mask] == 0)
    np.testing.assert_allclose(e[:, mask].std(axis=0), CFG.exploration_noise, rtol=0.08)
    assert np.all(np.abs(e[:, mask].mean(axis=0)) < 0.01)
    # same key and t -> same action; different t -> different action
    np.testing.assert_array_equal(np.asarray(act(ls, obs, state, key, 3, 0, mode=EXPLORE)), e[3])
    assert not np.allclose(e[3], e[4])
    for t in (0, 7):  # deterministic mode is noise-free
        d = act(ls, obs, state, jax.random.key(t), t, 0, mode="deterministic")
        np.testing.assert_array_equal(np.asarray(d), 0.0)


def test_deterministic_is_mu_and_padded_zero(agent):
    ls = agent.init(jax.random.key(12))
    obs = jax.random.normal(jax.random.key(13), (SPEC.num_agents, SPEC.obs_dim))
    d = jax.jit(agent.act, static_argnames="mode")(ls, obs, jnp.zeros(4), jax.random.key(14), 0, 0,
                                                     mode="deterministic")
    assert d.shape == (SPEC.num_agents, SPEC.action_dim)
    np.testing.assert_allclose(np.asarray(d), np.asarray(agent.actor_apply(ls.actor_params, obs)[0]), rtol=1e-6)
    assert float(d[1, 1]) == 0.0 and np.all(np.abs(np.asarray(d)) <= 1)
    with pytest.raises(ValueError, match="deterministic"):
        agent.act(ls, obs, jnp.zeros(4), jax.random.key(15), 0, 0, mode="shared_seed")


def test_shared_parameters():
    """share_parameters: one actor and one critic (leading [1]); equal observations give equal actions."""
    ag = make_agent("facmac", SPEC, dataclasses.replace(CFG, share_parameters=True))
    ls = ag.init(jax.random.key(24))
    for leaf in jax.tree.leaves((ls.actor_params, ls.critic_params["agents"])):
        assert leaf.shape[0] == 1
    obs = jnp.ones((SPEC.num_agents, SPEC.obs_dim))
    u = ag.act(ls, obs, jnp.zeros(4), jax.random.key(25), 0, 0, "deterministic")
    np.testing.assert_allclose(np.asarray(u[1, 0]), np.asarray(u[0, 0]), rtol=1e-6)
    new, m = jax.jit(ag.update)(ls, make_batch(jax.random.key(26)), jax.random.key(27), 0)
    assert jax.tree.map(jnp.shape, new.actor_params) == jax.tree.map(jnp.shape, ls.actor_params)
    assert all(np.isfinite(float(v)) for v in m.values())


# ------------------------------------------------------------------------------------------ config


@pytest.mark.parametrize("field,value", [
    ("actor_hidden", ()), ("critic_hidden", (8, 0)), ("mixing_embed", 0), ("hypernet_embed", 1.5),
    ("hypernet_layers", 3), ("hypernet_layers", True), ("share_parameters", 1), ("actor_lr", 0.0),
    ("critic_lr", -1e-3), ("adam_eps", 0.0), ("gamma", 1.5), ("gamma", -0.1), ("tau", 0.0), ("tau", 1.1),
    ("grad_clip", -1.0), ("exploration_noise", -0.1), ("exploration_noise", float("nan")), ("action_reg", -1e-3),
    ("reward_scale", 0.0), ("actor_lr", True),
])
def test_config_validation(field, value):
    cfg = dataclasses.replace(FACMACConfig(), **{field: value})
    with pytest.raises(ValueError, match=rf"algo_config\.{field}"):
        cfg.check()


def test_default_config_valid():
    FACMACConfig().check()
    dataclasses.replace(FACMACConfig(), grad_clip=0.0, exploration_noise=0.0, action_reg=0.0, gamma=0.0,
                        hypernet_layers=1).check()


# ------------------------------------------------------------------------------------------ jit / vmap


def test_jit_vmap_update_and_act(agent):
    k = 3
    lss = jax.jit(jax.vmap(agent.init))(jax.random.split(jax.random.key(16), k))
    batch = make_batch(jax.random.key(17))
    update = jax.jit(jax.vmap(agent.update, (0, None, 0, None)))
    new, metrics = update(lss, batch, jax.random.split(jax.random.key(18), k), 0)
    for name in ("critic_loss", "policy_loss", "q_mean", "target_mean", "policy_q", "action_reg_term"):
        assert metrics[name].shape == (k,)
        assert np.all(np.isfinite(np.asarray(metrics[name])))
    assert np.all(np.asarray(new.updates) == 1)
    # targets (critics, mixer, actors) moved by τ towards the online nets
    for t0, t1, p1 in zip(jax.tree.leaves((lss.target_critic_params, lss.target_actor_params)),
                          jax.tree.leaves((new.target_critic_params, new.target_actor_params)),
                          jax.tree.leaves((new.critic_params, new.actor_params)), strict=True):
        np.testing.assert_allclose(np.asarray(t1), np.asarray(0.9 * t0 + 0.1 * p1), rtol=1e-5, atol=1e-6)
    # same key -> same result
    new2, metrics2 = update(lss, batch, jax.random.split(jax.random.key(18), k), 0)
    for a, b in zip(jax.tree.leaves((new, metrics)), jax.tree.leaves((new2, metrics2)), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    obs = jnp.broadcast_to(batch.obs[0], (k, *batch.obs.shape[1:]))
    state = jnp.broadcast_to(batch.state[0], (k, SPEC.state_size))
    act = jax.jit(jax.vmap(lambda ls, o, s, kk: agent.act(ls, o, s, kk, 2, 0, EXPLORE)))
    u = act(new, obs, state, jax.random.split(jax.random.key(19), k))
    assert u.shape == (k, SPEC.num_agents, SPEC.action_dim)
    assert np.all(np.abs(np.asarray(u)) <= 1) and np.all(np.asarray(u)[:, 1, 1] == 0)
    u2 = act(new, obs, state, jax.random.split(jax.random.key(19), k))
    np.testing.assert_array_equal(np.asarray(u), np.asarray(u2))


# ------------------------------------------------------------------------------------------ learning
