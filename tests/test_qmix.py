"""COMIX (registry name ``qmix``): the monotonic mixer (numpy reference, ∂Q_tot/∂Q_i ≥ 0), the CEM (quadratic
utilities, a step-by-step numpy replay), the critic target, execution modes, config validation, jit/vmap of act and
update (learning on ``single_peak``: tests/test_algorithms.py)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import svnr_jax.algorithms.qmix  # noqa: F401  (registers "qmix")
from svnr_jax.algorithms.base import EXPLORE, get_algorithm, make_agent
from svnr_jax.algorithms.qmix import QMIX, QMIXConfig, cem_argmax, make_mixer
from svnr_jax.envs.base import EnvSpec
from svnr_jax.replay import Transition

SPEC = EnvSpec(name="toy", num_agents=2, obs_sizes=(3, 2), action_sizes=(2, 1), state_size=4, action_low=-1.0,
               action_high=1.0, episode_length=5)
CFG = QMIXConfig(agent_hidden=(8,), mixing_embed_dim=6, hypernet_embed=5, gamma=0.9, tau=0.1, reward_scale=2.0,
                 cem_samples=16, cem_elite_samples=4)


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
    return make_agent("qmix", SPEC, CFG)


def test_registered():
    assert get_algorithm("qmix") == (QMIXConfig, QMIX)
    for f in dataclasses.fields(QMIXConfig):
        assert f.default is not dataclasses.MISSING
    # the reference's CEM constants and mixer sizes are the defaults
    c = QMIXConfig()
    assert (c.cem_samples, c.cem_elite_samples, c.cem_iterations, c.cem_init_std) == (64, 6, 2, 1.0)
    assert (c.mixing_embed_dim, c.hypernet_embed, c.hypernet_layers) == (64, 64, 2)


# ------------------------------------------------------------------------------------------ mixer


def numpy_mixer(p, q, s, layers):
    """QMIX's mixer written out in numpy (float64)."""
    p = jax.tree.map(lambda x: np.asarray(x, np.float64), p)

    def lin(name, x):
        return x @ p[name]["kernel"] + p[name]["bias"]

    def hyper(prefix):
        return lin(f"{prefix}_1", np.maximum(lin(f"{prefix}_0", s), 0)) if layers == 2 else lin(f"{prefix}_0", s)

    n = q.shape[0]
    w1 = np.abs(hyper("w1")).reshape(n, -1)
    pre = q @ w1 + lin("b1", s)
    hidden = np.where(pre > 0, pre, np.expm1(pre))  # elu
    w2 = np.abs(hyper("w2"))
    v = lin("v_1", np.maximum(lin("v_0", s), 0))[0]
    return hidden @ w2 + v


@pytest.mark.parametrize("layers", [1, 2])
def test_mixer_matches_numpy_on_hand_set_params(layers):
    n, s, e, h = 3, 4, 5, 7
    mixer = make_mixer(n, s, embed_dim=e, hypernet_embed=h, hypernet_layers=layers)
    template = mixer.init(jax.random.key(0))
    expected_shapes = {"b1": (s, e), "v_0": (s, e), "v_1": (e, 1)}
    expected_shapes.update({"w1_0": (s, h), "w1_1": (h, n * e), "w2_0": (s, h), "w2_1": (h, e)} if layers == 2
                           else {"w1_0": (s, n * e), "w2_0": (s, e)})
    assert {k: v["kernel"].shape for k, v in template.items()} == expected_shapes
    # hand-set parameters (negative entries included, so a missing abs() would show)
    rng = np.random.default_rng(1)
    params = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), jnp.float32), template)
    apply = jax.jit(mixer.apply)
    for _ in range(5):
        q = rng.normal(size=n) * 3
        st = rng.normal(size=s)
        got = float(apply(params, jnp.asarray(q, jnp.float32), jnp.asarray(st, jnp.float32)))
        np.testing.assert_allclose(got, numpy_mixer(params, q, st, layers), rtol=1e-4, atol=1e-4)


def test_mixer_hand_computed_single_agent_value():
    """One agent, one embedding unit, 1-layer hypernets, every weight set by hand:
    Q_tot = elu(q·|w1| + b1)·|w2| + v_1(relu(v_0 s))."""
    mixer = make_mixer(1, 1, embed_dim=1, hypernet_layers=1)

    def layer(k, b):
        return {"kernel": jnp.array([[k]]), "bias": jnp.array([b])}

    p = {"w1_0": layer(-2.0, 0.0), "b1": layer(0.0, -1.0), "w2_0": layer(0.0, -3.0), "v_0": layer(1.0, 0.0),
         "v_1": layer(0.5, 0.25)}
    s = jnp.array([2.0])
    # w1 = |−2·2| = 4; q = 1: elu(4 − 1) = 3; w2 = |−3| = 3; V = 0.5·relu(2) + 0.25 = 1.25 → 10.25
    assert float(mixer.apply(p, jnp.array([1.0]), s)) == pytest.approx(10.25, rel=1e-6)
    # q = −1: elu(−5) = e^−5 − 1
    assert float(mixer.apply(p, jnp.array([-1.0]), s)) == pytest.approx(3 * np.expm1(-5.0) + 1.25, rel=1e-6)


@pytest.mark.parametrize("layers", [1, 2])
def test_mixer_monotone(layers):
    """∂Q_tot/∂Q_i ≥ 0 for random parameters, states and utilities (and > 0 somewhere)."""
    n, s = 4, 6
    mixer = make_mixer(n, s, embed_dim=8, hypernet_embed=8, hypernet_layers=layers)
    params = jax.vmap(mixer.init)(jax.random.split(jax.random.key(2), 16))
    kq, ks = jax.random.split(jax.random.key(3))
    q = jax.random.normal(kq, (16, 32, n)) * 5
    st = jax.random.normal(ks, (16, 32, s)) * 3
    grad = jax.grad(mixer.apply, argnums=1)
    g = jax.jit(jax.vmap(jax.vmap(grad, (None, 0, 0)), (0, 0, 0)))(params, q, st)
    g = np.asarray(g)
    assert g.shape == (16, 32, n)
    assert np.all(g >= 0) and np.mean(g > 0) > 0.9
    # and increasing any Q_i never lowers Q_tot
    mix = jax.jit(jax.vmap(jax.vmap(mixer.apply, (None, 0, 0)), (0, 0, 0)))
    base = np.asarray(mix(params, q, st))
    for i in range(n):
        assert np.all(np.asarray(mix(params, q.at[..., i].add(1.0), st)) >= base - 1e-5)


# ------------------------------------------------------------------------------------------ CEM


def quad(c, mask=None):
    c = jnp.asarray(c, jnp.float32)
    m = jnp.ones_like(c) if mask is None else jnp.asarray(mask, jnp.float32)
    return lambda u: -jnp.sum(((u - c) * m) ** 2, axis=-1)


@jax.jit
def _cem_many(c, keys):
    return jax.vmap(lambda k: cem_argmax(quad(c), k, c.shape[0])[0])(keys)


def test_cem_quadratic_inside_box():
    """Q(u) = −|u − c|² with c inside the box: the reference CEM (64 samples, top 6, 2 iterations) lands near c."""
    for j, c in enumerate(([0.3], [-0.6], [0.0])):
        u = np.asarray(_cem_many(jnp.asarray(c), jax.random.split(jax.random.key(40 + j), 200)))[:, 0]
        assert np.all(np.abs(u - c[0]) < 0.1), (c, np.abs(u - c[0]).max())
        assert np.median(np.abs(u - c[0])) < 0.02
    c2 = jnp.array([0.5, -0.3])
    u2 = np.asarray(_cem_many(c2, jax.random.split(jax.random.key(4), 200)))
    assert np.all(np.linalg.norm(u2 - np.asarray(c2), axis=1) < 0.25)
    assert np.median(np.linalg.norm(u2 - np.asarray(c2), axis=1)) < 0.1


def test_cem_quadratic_outside_box_goes_to_nearest_edge():
    """c outside [-1, 1]: the CEM action is at the nearest edge (tanh keeps it strictly inside; with the reference's
    two iterations of 64 samples it gets within ~0.02 of the edge typically, 0.1 at worst)."""
    for j, (c, edge) in enumerate(((1.7, 1.0), (-3.0, -1.0))):
        u = np.asarray(_cem_many(jnp.array([c]), jax.random.split(jax.random.key(50 + j), 200)))[:, 0]
        assert np.all(np.abs(u) < 1.0) and np.all(np.abs(u - edge) < 0.12), (c, u.min(), u.max())
        assert np.median(np.abs(u - edge)) < 0.03
    # one coordinate outside, one inside (two iterations of 64 samples in 2-D are crude: loose bounds, tight medians)
    u = np.asarray(_cem_many(jnp.array([2.0, 0.2]), jax.random.split(jax.random.key(5), 200)))
    assert np.all(u[:, 0] > 0.8) and np.median(u[:, 0]) > 0.96
    assert np.all(np.abs(u[:, 1] - 0.2) < 0.5) and np.median(np.abs(u[:, 1] - 0.2)) < 0.1


def test_cem_step_by_step_against_numpy():
    """The CEM replayed in numpy from the same normal draws: start N(0, init_std²) on the pre-tanh action, keep the
    top-k, refit mean and unbiased std, return tanh of the best sample of the last iteration."""
    c = jnp.array([0.4, -0.7, 0.1])
    mask = jnp.array([1.0, 1.0, 0.0])  # last entry padded
    key = jax.random.key(6)
    k_samples, k_elite, its, std0 = 10, 3, 3, 0.7
    u, q = cem_argmax(quad(c, mask), key, 3, num_samples=k_samples, num_elites=k_elite, iterations=its, init_std=std0,
                      action_mask=mask)
    same_key = jax.random.key(6)  # a fresh object holding the same key (the key-reuse checker tracks objects)
    eps = [np.asarray(jax.random.normal(k, (k_samples, 3)), np.float64) for k in jax.random.split(same_key, its)]
    mu, std = np.zeros(3), np.full(3, std0)
    cn, mn = np.asarray(c, np.float64), np.asarray(mask, np.float64)
    for e in eps:
        x = mu + std * e
        uu = np.tanh(x) * mn
        qq = -(((uu - cn) * mn) ** 2).sum(-1)
        top = np.argsort(-qq)[:k_elite]
        mu, std = x[top].mean(0), x[top].std(0, ddof=1)
    best = int(np.argmax(qq))
    np.testing.assert_allclose(np.asarray(u), uu[best], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(q), qq[best], rtol=1e-5, atol=1e-6)
    assert float(u[2]) == 0.0


# ------------------------------------------------------------------------------------------ critic target


def test_critic_target_by_hand(agent):
    ls = jax.jit(agent.init)(jax.random.key(7))
    # make the targets differ from the online nets so that using the wrong ones would show
    ls = ls.replace(target_params=jax.tree.map(lambda x: x + 0.3, ls.target_params))
    batch = make_batch(jax.random.key(8))
    key = jax.random.key(9)
    y = jax.jit(agent.target)(ls, batch, key)

    tp = ls.target_params
    mask = np.asarray(SPEC.action_mask, np.float32)
    c = CFG
    expected = []
    @jax.jit
    def agent_cem(p_i, o_i, mask_i, k):
        """Agent i's CEM on its own target utility Q̄_i(o'_i, ·), and Q̄_i at the chosen action."""

        def q_fn(u):
            return jax.vmap(lambda uk: agent.utility.apply(p_i, jnp.concatenate([o_i, uk]))[0])(u)

        u_i, _ = cem_argmax(q_fn, k, SPEC.action_dim, num_samples=c.cem_samples, num_elites=c.cem_elite_samples,
                            iterations=c.cem_iterations, action_mask=mask_i)
        return u_i, agent.utility.apply(p_i, jnp.concatenate([o_i, u_i]))[0]

    for b, kb in enumerate(jax.random.split(jax.random.key(9), batch.reward.shape[0])):
        qs = []
        for i, ki in enumerate(jax.random.split(kb, SPEC.num_agents)):
            p_i = jax.tree.map(lambda x, i=i: x[i], tp["agents"])
            u_i, q_i = agent_cem(p_i, batch.next_obs[b, i], jnp.asarray(mask[i]), ki)
            assert np.all(np.asarray(u_i)[mask[i] == 0] == 0)
            qs.append(float(q_i))
        q_tot = numpy_mixer(tp["mixer"], np.asarray(qs), np.asarray(batch.next_state[b], np.float64), 2)
        expected.append(2.0 * float(batch.reward[b]) + 0.9 * (1 - float(batch.terminal[b])) * q_tot)
    np.testing.assert_allclose(np.asarray(y), np.asarray(expected), rtol=1e-4, atol=1e-4)
    term = np.asarray(batch.terminal) == 1
    np.testing.assert_allclose(np.asarray(y)[term], 2.0 * np.asarray(batch.reward)[term], rtol=1e-6)


def test_loss_update_and_pretrain(agent):
    """The loss is the mean squared TD error of Q_tot at the buffer's actions; updates reduce it on a fixed batch;
    targets move by τ; pretrain (COMIX has only a critic) is the same update."""
    ls = jax.jit(agent.init)(jax.random.key(10))
    batch = make_batch(jax.random.key(11))
    key = jax.random.key(12)
    update = jax.jit(agent.update)
    new, m0 = update(ls, batch, key, 0)
    y = jax.jit(agent.target)(ls, batch, jax.random.key(12))
    q = jax.jit(jax.vmap(agent.q_tot, (None, 0, 0, 0)))(ls.params, batch.obs, batch.state, batch.action)
    np.testing.assert_allclose(float(m0["critic_loss"]), float(jnp.mean((q - y) ** 2)), rtol=1e-5)
    for t0, t1, p1 in zip(jax.tree.leaves(ls.target_params), jax.tree.leaves(new.target_params),
                          jax.tree.leaves(new.params), strict=True):
        np.testing.assert_allclose(np.asarray(t1), np.asarray(0.9 * t0 + 0.1 * p1), rtol=1e-5, atol=1e-6)
    pre, mp = jax.jit(agent.pretrain)(ls, batch, jax.random.key(12))
    for a, b in zip(jax.tree.leaves((new, m0)), jax.tree.leaves((pre, mp)), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    ls1 = new
    for k in jax.random.split(jax.random.key(13), 40):
        ls1, m = update(ls1, batch, k, 0)
    assert int(ls1.updates) == 41
    assert float(m["critic_loss"]) < float(m0["critic_loss"])


def test_single_agent_has_no_mixer():
    spec = EnvSpec(name="one", num_agents=1, obs_sizes=(2,), action_sizes=(1,), state_size=3, action_low=-1.0,
                   action_high=1.0, episode_length=1)
    ag = make_agent("qmix", spec, CFG)
    ls = ag.init(jax.random.key(14))
    obs, st, u = jnp.ones((1, 2)), jnp.ones((3,)), jnp.full((1, 1), 0.3)
    np.testing.assert_allclose(float(ag.q_tot(ls.params, obs, st, u)),
                               float(ag.agent_q(ls.params["agents"], obs, u)[0]), rtol=1e-6)


# ------------------------------------------------------------------------------------------ execution


def test_greedy_is_cem_argmax_and_padded_zero(agent):
    ls = agent.init(jax.random.key(15))
    obs = jax.random.normal(jax.random.key(16), (SPEC.num_agents, SPEC.obs_dim)) * SPEC.obs_mask
    act = jax.jit(agent.act, static_argnames="mode")
    key = jax.random.key(17)
    g = act(ls, obs, jnp.zeros(4), key, 3, 0, mode="greedy")
    assert g.shape == (SPEC.num_agents, SPEC.action_dim)
    assert float(g[1, 1]) == 0.0 and np.all(np.abs(np.asarray(g)) < 1)
    # each agent's action is its own CEM on its own utility, with the samples of fold_in(key, t)
    k_cem, _ = jax.random.split(jax.random.fold_in(key, 3))
    u, _ = agent.cem_actions(ls.params["agents"], obs, k_cem)
    np.testing.assert_allclose(np.asarray(g), np.asarray(u), rtol=1e-6)
    # same key and t -> same action; the global state does not matter (decentralised execution)
    np.testing.assert_array_equal(np.asarray(g), np.asarray(act(ls, obs, jnp.ones(4) * 5, key, 3, 0, mode="greedy")))
    with pytest.raises(ValueError, match="greedy"):
        agent.act(ls, obs, jnp.zeros(4), key, 0, 0, mode="deterministic")


def test_exploration_noise(agent):
    """EXPLORE = the greedy CEM action (same samples) + N(0, 0.1²), clipped, padded entries 0."""
    ls = agent.init(jax.random.key(18))
    obs = jax.random.normal(jax.random.key(19), (SPEC.num_agents, SPEC.obs_dim)) * SPEC.obs_mask
    state = jnp.zeros((SPEC.state_size,))
    key = jax.random.key(20)
    ts = jnp.arange(2000)
    both = jax.jit(jax.vmap(lambda t: (agent.act(ls, obs, state, key, t, 0, EXPLORE),
                                       agent.act(ls, obs, state, key, t, 0, "greedy"))))
    e, g = (np.asarray(x) for x in both(ts))
    mask = np.asarray(SPEC.action_mask)
    assert np.all(e[:, ~mask] == 0) and np.all(np.abs(e) <= 1)
    d = (e - g)[:, mask]
    far = np.abs(g[:, mask]) < 0.5  # 5σ from the box edges: never clipped (selecting on e would bias the mean)
    assert far.sum() > 300, far.sum()
    np.testing.assert_allclose(d[far].std(), CFG.exploration_noise, rtol=0.12)
    assert abs(d[far].mean()) < 4 * CFG.exploration_noise / np.sqrt(far.sum())
    # clipping at the edges
    np.testing.assert_allclose(e[:, mask], np.clip(e[:, mask], -1, 1))
    assert not np.allclose(e[3], e[4])
    np.testing.assert_allclose(np.asarray(agent.act(ls, obs, state, key, 3, 0, EXPLORE)), e[3], rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------ config


@pytest.mark.parametrize("field,value", [
    ("agent_hidden", ()), ("agent_hidden", (8, 0)), ("mixing_embed_dim", 0), ("hypernet_embed", -1),
    ("hypernet_layers", 3), ("hypernet_layers", 0), ("lr", 0.0), ("lr", True), ("adam_eps", -1.0), ("gamma", 1.5),
    ("gamma", -0.1), ("tau", 0.0), ("tau", 1.1), ("grad_clip", -1.0), ("exploration_noise", -0.1),
    ("exploration_noise", float("nan")), ("cem_samples", 0), ("cem_samples", 2.5), ("cem_elite_samples", 1),
    ("cem_elite_samples", 65), ("cem_iterations", 0), ("cem_init_std", 0.0), ("reward_scale", 0.0),
])
def test_config_validation(field, value):
    cfg = dataclasses.replace(QMIXConfig(), **{field: value})
    with pytest.raises(ValueError, match=rf"algo_config\.{field}"):
        cfg.check()


def test_default_config_valid():
    QMIXConfig().check()
    dataclasses.replace(QMIXConfig(), grad_clip=0.0, exploration_noise=0.0, gamma=0.0, hypernet_layers=1,
                        cem_samples=4, cem_elite_samples=4).check()


# ------------------------------------------------------------------------------------------ jit / vmap


def test_jit_vmap_update_and_act(agent):
    k = 3
    lss = jax.jit(jax.vmap(agent.init))(jax.random.split(jax.random.key(21), k))
    batch = make_batch(jax.random.key(22))
    update = jax.jit(jax.vmap(agent.update, (0, None, 0, None)))
    new, metrics = update(lss, batch, jax.random.split(jax.random.key(23), k), 0)
    for name in ("critic_loss", "q_taken_mean", "target_mean"):
        assert metrics[name].shape == (k,)
        assert np.all(np.isfinite(np.asarray(metrics[name])))
    assert np.all(np.asarray(new.updates) == 1)
    new2, metrics2 = update(lss, batch, jax.random.split(jax.random.key(23), k), 0)
    for a, b in zip(jax.tree.leaves((new, metrics)), jax.tree.leaves((new2, metrics2)), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    obs = jnp.broadcast_to(batch.obs[0], (k, *batch.obs.shape[1:]))
    state = jnp.broadcast_to(batch.state[0], (k, SPEC.state_size))
    for mode in (EXPLORE, "greedy"):
        act = jax.jit(jax.vmap(lambda ls, o, s, kk, mode=mode: agent.act(ls, o, s, kk, 2, 0, mode)))
        u = act(new, obs, state, jax.random.split(jax.random.key(24), k))
        assert u.shape == (k, SPEC.num_agents, SPEC.action_dim)
        assert np.all(np.abs(np.asarray(u)) <= 1) and np.all(np.asarray(u)[:, 1, 1] == 0)
        u2 = act(new, obs, state, jax.random.split(jax.random.key(24), k))
        np.testing.assert_array_equal(np.asarray(u), np.asarray(u2))


# ------------------------------------------------------------------------------------------ learning
