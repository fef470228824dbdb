"""MADDPG: critic target, actor loss (teammates' actions from the buffer, pre-tanh regulariser), exploration,
config validation, jit/vmap of act and update."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from svnr_jax.algorithms.base import EXPLORE, get_algorithm, make_agent
from svnr_jax.algorithms.maddpg import MADDPG, MADDPGConfig, actor_loss
from svnr_jax.envs.base import EnvSpec
from svnr_jax.networks import MLP
from svnr_jax.replay import Transition

SPEC = EnvSpec(name="toy", num_agents=2, obs_sizes=(3, 2), action_sizes=(2, 1), state_size=4, action_low=-1.0,
               action_high=1.0, episode_length=5)
CFG = MADDPGConfig(actor_hidden=(8,), critic_hidden=(8,), gamma=0.9, tau=0.1, reward_scale=2.0)


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
    return make_agent("maddpg", SPEC, CFG)


def test_registered():
    assert get_algorithm("maddpg") == (MADDPGConfig, MADDPG)
    for f in dataclasses.fields(MADDPGConfig):
        assert f.default is not dataclasses.MISSING


# ------------------------------------------------------------------------------------------ critic target


def test_critic_target_by_hand(agent):
    ls = jax.jit(agent.init)(jax.random.key(0))
    # make the targets differ from the online nets so that using the wrong ones would show
    ls = ls.replace(target_actor_params=jax.tree.map(lambda x: x + 0.3, ls.target_actor_params),
                    target_critic_params=jax.tree.map(lambda x: x - 0.2, ls.target_critic_params))
    batch = make_batch(jax.random.key(1))
    y = jax.jit(agent.target)(ls, batch)

    mask = np.asarray(SPEC.action_mask, np.float32)
    expected = []
    for b in range(batch.reward.shape[0]):
        rows = []
        for i in range(SPEC.num_agents):
            p_i = jax.tree.map(lambda x, i=i: x[i], ls.target_actor_params)
            rows.append(np.tanh(np.asarray(agent.actor_module.apply(p_i, batch.next_obs[b, i]))) * mask[i])
        u = np.stack(rows)
        x = jnp.concatenate([batch.next_state[b], jnp.asarray(u).reshape(-1)])
        cp = jax.tree.map(lambda v: v[0], ls.target_critic_params)
        qn = float(MLP(CFG.critic_hidden, 1).apply(cp, x)[0])
        expected.append(2.0 * float(batch.reward[b]) + 0.9 * (1 - float(batch.terminal[b])) * qn)
    np.testing.assert_allclose(np.asarray(y), np.asarray(expected), rtol=1e-5, atol=1e-5)
    # terminal transitions carry only the scaled reward
    term = np.asarray(batch.terminal) == 1
    np.testing.assert_allclose(np.asarray(y)[term], 2.0 * np.asarray(batch.reward)[term], rtol=1e-6)


def test_critic_step_fits_target(agent):
    """The critic loss is the mean squared TD error against the (fixed) target; pretrain reduces it."""
    ls = jax.jit(agent.init)(jax.random.key(2))
    batch = make_batch(jax.random.key(3))
    pre = jax.jit(agent.pretrain)
    _, m0 = pre(ls, batch, jax.random.key(4))
    y = agent.target(ls, batch)
    q = jax.vmap(agent.q, (None, 0, 0))(ls.critic_params, batch.state, batch.action)
    np.testing.assert_allclose(float(m0["critic_loss"]), float(jnp.mean((q - y) ** 2)), rtol=1e-5)
    ls1, _ = pre(ls, batch, jax.random.key(5))
    # actors untouched by pretrain
    for a, b in zip(jax.tree.leaves(ls.actor_params), jax.tree.leaves(ls1.actor_params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for _ in range(30):
        ls1, m = pre(ls1, batch, jax.random.key(6))
    assert float(m["critic_loss"]) < float(m0["critic_loss"])


# ------------------------------------------------------------------------------------------ actor loss

N, A = 2, 2
AMASK = np.array([[1.0, 1.0], [1.0, 0.0]], np.float32)  # agent 1 has one real action entry


def table_apply(params, obs):
    """A toy 'actor': its pre-tanh output is a parameter table ``[N, A]`` (independent of the observation)."""
    del obs
    pre = params["pre"]
    return jnp.tanh(pre) * AMASK, pre


def grads(q_fn, pre, action, reg=0.0, b=3):
    obs = jnp.zeros((b, N, 1))
    state = jnp.zeros((b, 1))
    action = jnp.broadcast_to(action, (b, N, A))

    def f(p):
        return actor_loss(p, obs, state, action, actor_apply=table_apply, q_fn=q_fn, action_mask=AMASK,
                          action_reg=reg)

    return jax.jit(jax.grad(lambda p: f(p)[0]))({"pre": pre})["pre"], jax.jit(f)({"pre": pre})[1]


def test_actor_gradient_quadratic_critic():
    """Q = −Σ_i |u_i − c_i|²: dL_i/dpre_i = 2(u_i − c_i)(1 − u_i²) + reg · 2 pre_i / A_i (real entries only)."""
    c = jnp.array([[0.5, -0.2], [-0.4, 0.0]])

    def q_fn(s, u):
        del s
        return -jnp.sum(((u - c) * AMASK) ** 2)

    pre = jnp.array([[0.3, -0.7], [1.1, 0.4]])
    buffer = jnp.array([[0.9, 0.9], [-0.9, 0.0]])
    u = np.tanh(np.asarray(pre)) * AMASK
    for reg in (0.0, 1e-3, 0.5):
        g, aux = grads(q_fn, pre, buffer, reg)
        a_i = AMASK.sum(-1, keepdims=True)
        expected = (2 * (u - np.asarray(c)) * (1 - u**2) + reg * 2 * np.asarray(pre) / a_i) * AMASK
        np.testing.assert_allclose(np.asarray(g), expected, rtol=1e-5, atol=1e-7)
        # the regulariser value: mean over batch and real entries of pre², per agent
        np.testing.assert_allclose(np.asarray(aux["reg"]),
                                   ((np.asarray(pre) ** 2) * AMASK).sum(-1) / AMASK.sum(-1), rtol=1e-6)
    # the default weight is the reference's 1e-3
    assert MADDPGConfig().action_reg == 1e-3


def test_actor_uses_teammates_buffer_actions():
    """Q = −(u_1 − u_2)²: agent 1's gradient is 2(u_1 − a_2^buffer)(1 − u_1²), whatever agent 2's current actor."""

    def q_fn(s, u):
        del s
        return -(u[0, 0] - u[1, 0]) ** 2

    pre = jnp.array([[0.3, 0.0], [0.3, 0.0]])  # current actions agree: the gradient would vanish with them
    u1 = np.tanh(0.3)
    buf = jnp.array([[0.8, 0.0], [-0.5, 0.0]])
    g, _ = grads(q_fn, pre, buf)
    np.testing.assert_allclose(float(g[0, 0]), 2 * (u1 - (-0.5)) * (1 - u1**2), rtol=1e-5)
    np.testing.assert_allclose(float(g[1, 0]), 2 * (u1 - 0.8) * (1 - u1**2), rtol=1e-5)
    assert abs(float(g[0, 0])) > 0.5

    # changing the buffer action of agent 2 changes agent 1's gradient accordingly ...
    buf2 = buf.at[1, 0].set(0.6)
    g2, _ = grads(q_fn, pre, buf2)
    np.testing.assert_allclose(float(g2[0, 0]), 2 * (u1 - 0.6) * (1 - u1**2), rtol=1e-5)
    # ... while agent 1's own buffer action and agent 2's current actor do not matter to it
    g3, _ = grads(q_fn, pre.at[1, 0].set(-2.0), buf.at[0, 0].set(-0.9))
    np.testing.assert_allclose(float(g3[0, 0]), float(g[0, 0]), rtol=1e-6)


def test_each_agent_gradient_only_through_its_own_actor(agent):
    """With the real actors and critic, L_i's gradient w.r.t. agent j ≠ i's parameters is exactly 0."""
    ls = agent.init(jax.random.key(7))
    batch = make_batch(jax.random.key(8))

    def per_agent(ap):
        return actor_loss(ap, batch.obs, batch.state, batch.action, actor_apply=agent.actor_apply,
                          q_fn=lambda s, u: agent.q(ls.critic_params, s, u), action_mask=agent.action_mask,
                          action_reg=1e-3)[1]["per_agent"]

    jac = jax.jit(jax.jacrev(per_agent))(ls.actor_params)  # leaves [N (loss), N (agent), ...]
    for leaf in jax.tree.leaves(jac):
        leaf = np.asarray(leaf).reshape(SPEC.num_agents, SPEC.num_agents, -1)
        assert np.all(leaf[0, 1] == 0) and np.all(leaf[1, 0] == 0)
    assert any(np.abs(np.asarray(x)).sum() > 0 for x in jax.tree.leaves(jac))


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
    ts = jnp.arange(2000)
    act = jax.jit(agent.act, static_argnames="mode")
    explore = jax.jit(jax.vmap(lambda t: agent.act(ls, obs, state, key, t, 0, EXPLORE)))(ts)
    mask = np.asarray(SPEC.action_mask)
    e = np.asarray(explore)
    assert np.all(e[:, ~mask] == 0)
    std = e[:, mask].std(axis=0)
    np.testing.assert_allclose(std, CFG.exploration_noise, rtol=0.08)
    assert np.all(np.abs(e[:, mask].mean(axis=0)) < 0.01)
    # same key and t -> same action; different t -> different action
    a0 = act(ls, obs, state, key, 3, 0, mode=EXPLORE)
    np.testing.assert_array_equal(np.asarray(a0), e[3])
    assert not np.allclose(e[3], e[4])
    # deterministic mode is noise-free: μ(o) = 0 whatever the key or t
    for t in (0, 7):
        d = act(ls, obs, state, jax.random.key(t), t, 0, mode="deterministic")
        np.testing.assert_array_equal(np.asarray(d), 0.0)


def test_deterministic_is_mu_and_padded_zero(agent):
    ls = agent.init(jax.random.key(12))
    obs = jax.random.normal(jax.random.key(13), (SPEC.num_agents, SPEC.obs_dim))
    d = jax.jit(agent.act, static_argnames="mode")(ls, obs, jnp.zeros(4), jax.random.key(14), 0, 0,
                                                     mode="deterministic")
    np.testing.assert_allclose(np.asarray(d), np.asarray(agent.actor_apply(ls.actor_params, obs)[0]), rtol=1e-6)
    assert float(d[1, 1]) == 0.0 and np.all(np.abs(np.asarray(d)) <= 1)
    with pytest.raises(ValueError, match="deterministic"):
        agent.act(ls, obs, jnp.zeros(4), jax.random.key(15), 0, 0, mode="shared_seed")


# ------------------------------------------------------------------------------------------ config


@pytest.mark.parametrize("field,value", [
    ("actor_hidden", ()), ("critic_hidden", (8, 0)), ("actor_lr", 0.0), ("critic_lr", -1e-3),
    ("adam_eps", 0.0), ("gamma", 1.5), ("gamma", -0.1), ("tau", 0.0), ("tau", 1.1), ("grad_clip", -1.0),
    ("exploration_noise", -0.1), ("exploration_noise", float("nan")), ("action_reg", -1e-3),
    ("reward_scale", 0.0), ("actor_lr", True),
])
def test_config_validation(field, value):
    cfg = dataclasses.replace(MADDPGConfig(), **{field: value})
    with pytest.raises(ValueError, match=rf"algo_config\.{field}"):
        cfg.check()


def test_default_config_valid():
    MADDPGConfig().check()
    dataclasses.replace(MADDPGConfig(), grad_clip=0.0, exploration_noise=0.0, action_reg=0.0, gamma=0.0).check()


# ------------------------------------------------------------------------------------------ jit / vmap


def test_jit_vmap_update_and_act(agent):
    k = 3
    lss = jax.jit(jax.vmap(agent.init))(jax.random.split(jax.random.key(16), k))
    batch = make_batch(jax.random.key(17))
    update = jax.jit(jax.vmap(agent.update, (0, None, 0, None)))
    keys = jax.random.split(jax.random.key(18), k)
    new, metrics = update(lss, batch, keys, 0)
    for name in ("critic_loss", "policy_loss", "q_mean"):
        assert metrics[name].shape == (k,)
        assert np.all(np.isfinite(np.asarray(metrics[name])))
    assert np.all(np.asarray(new.updates) == 1)
    # targets moved by τ towards the online nets
    for t0, t1, p1 in zip(jax.tree.leaves(lss.target_critic_params), jax.tree.leaves(new.target_critic_params),
                          jax.tree.leaves(new.critic_params), strict=True):
        np.testing.assert_allclose(np.asarray(t1), np.asarray(0.9 * t0 + 0.1 * p1), rtol=1e-5, atol=1e-6)
    # same key -> same result
    keys2 = jax.random.split(jax.random.key(18), k)
    new2, metrics2 = update(lss, batch, keys2, 0)
    for a, b in zip(jax.tree.leaves((new, metrics)), jax.tree.leaves((new2, metrics2)), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    obs = jnp.broadcast_to(batch.obs[0], (k, *batch.obs.shape[1:]))
    state = jnp.broadcast_to(batch.state[0], (k, SPEC.state_size))
    act = jax.jit(jax.vmap(lambda ls, o, s, kk: agent.act(ls, o, s, kk, 2, 0, EXPLORE)))
    akeys = jax.random.split(jax.random.key(19), k)
    u = act(new, obs, state, akeys)
    assert u.shape == (k, SPEC.num_agents, SPEC.action_dim)
    assert np.all(np.abs(np.asarray(u)) <= 1) and np.all(np.asarray(u)[:, 1, 1] == 0)
    u2 = act(new, obs, state, jax.random.split(jax.random.key(19), k))
    np.testing.assert_array_equal(np.asarray(u), np.asarray(u2))


def test_learns_one_step_quadratic():
    """Sanity: on a fixed one-step batch with r = −Σ(u − 0.5)², a few hundred updates move μ towards 0.5."""
    spec = EnvSpec(name="q", num_agents=2, obs_sizes=(1, 1), action_sizes=(1, 1), state_size=1, action_low=-1.0,
                   action_high=1.0, episode_length=1)
    cfg = MADDPGConfig(actor_hidden=(16,), critic_hidden=(32, 32), gamma=0.0, actor_lr=3e-3, critic_lr=3e-3,
                       adam_eps=1e-8, tau=0.05)
    ag = make_agent("maddpg", spec, cfg)
    b = 256
    act = jax.random.uniform(jax.random.key(20), (b, 2, 1), minval=-1, maxval=1)
    batch = Transition(obs=jnp.ones((b, 2, 1)), state=jnp.ones((b, 1)), action=act,
                       reward=-jnp.sum((act[..., 0] - 0.5) ** 2, -1), next_obs=jnp.ones((b, 2, 1)),
                       next_state=jnp.ones((b, 1)), terminal=jnp.ones((b,)))

    @jax.jit
    def train(ls):
        def body(ls, k):
            return ag.update(ls, batch, k, 0)

        return jax.lax.scan(body, ls, jax.random.split(jax.random.key(21), 400))

    ls, _ = train(ag.init(jax.random.key(22)))
    u = ag.act(ls, jnp.ones((2, 1)), jnp.ones((1,)), jax.random.key(23), 0, 0, "deterministic")
    np.testing.assert_allclose(np.asarray(u)[:, 0], 0.5, atol=0.15)
