"""MMQ: the optimistic (max over model-sampled next states) target on hand-built values, the quantile model's pinball
loss against numpy, independence of the learners, exploration, config validation, jit/vmap, pretrain."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import svnr_jax.algorithms.mmq  # noqa: F401  (registers "mmq")
from svnr_jax.algorithms.base import EXPLORE, get_algorithm, make_agent
from svnr_jax.algorithms.mmq import MMQ, MMQConfig, optimistic_target, pinball_loss, sample_candidates
from svnr_jax.envs.base import EnvSpec
from svnr_jax.replay import Transition

SPEC = EnvSpec(name="toy", num_agents=2, obs_sizes=(3, 2), action_sizes=(2, 1), state_size=4, action_low=-1.0,
               action_high=1.0, episode_length=5)
CFG = MMQConfig(actor_hidden=(8,), critic_hidden=(8,), model_hidden=(8,), gamma=0.9, tau=0.1, reward_scale=2.0,
                next_state_samples=4, quantile=0.1)
OMASK = np.asarray(SPEC.obs_mask, np.float32)
AMASK = np.asarray(SPEC.action_mask, np.float32)



def make_batch(key, b=5, spec=SPEC):
    ks = jax.random.split(key, 6)
    n, o, a, s = spec.num_agents, spec.obs_dim, spec.action_dim, spec.state_size
    return Transition(
        obs=jax.random.normal(ks[0], (b, n, o)) * OMASK,
        state=jax.random.normal(ks[1], (b, s)),
        action=jax.random.uniform(ks[2], (b, n, a), minval=-1, maxval=1) * AMASK,
        reward=jax.random.normal(ks[3], (b,)),
        next_obs=jax.random.normal(ks[4], (b, n, o)) * OMASK,
        next_state=jax.random.normal(ks[5], (b, s)),
        terminal=jnp.array([0.0, 1.0, 0.0, 0.0, 1.0])[:b],
    )


@pytest.fixture(scope="module")
def agent():
    return make_agent("mmq", SPEC, CFG)


def test_registered():
    assert get_algorithm("mmq") == (MMQConfig, MMQ)
    for f in dataclasses.fields(MMQConfig):
        assert f.default is not dataclasses.MISSING


# ------------------------------------------------------------------------------------------ optimistic target


def test_optimistic_target_pure_by_hand():
    """y = r_s·r + γ(1−d) max_k V_k: numbers worked out by hand."""
    reward = jnp.array([1.0, -2.0])
    terminal = jnp.array([0.0, 1.0])
    values = jnp.array([[[0.0, 3.0, -1.0], [2.0, 2.5, 1.0]],
                        [[5.0, 6.0, 7.0], [1.0, 1.0, 1.0]]])  # [B=2, N=2, K=3]
    y = jax.jit(optimistic_target, static_argnums=(3, 4))(reward, terminal, values, 0.5, 2.0)
    np.testing.assert_allclose(np.asarray(y), [[2.0 + 1.5, 2.0 + 1.25], [-4.0, -4.0]], rtol=1e-6)


class HandModel(MMQ):
    """An MMQ whose 'model' returns known candidates (the model network is bypassed)."""

    fixed: jnp.ndarray = None

    def candidates(self, ls, batch, key):
        del ls, batch, key
        return self.fixed


def hand_candidates(b, k=3):
    """Known candidates [B, N, K, O] (padded obs entries 0), distinct per (b, i, k)."""
    base = np.arange(b * 2 * k * 3, dtype=np.float32).reshape(b, 2, k, 3) / 10.0 - 1.5
    return jnp.asarray(np.cos(base * 3.0) * OMASK[None, :, None, :])


def test_target_max_over_model_candidates_known_value():
    """Hand-built model (known K candidates) and a known value function V_i(x) = w_i·x: the target is
    r_s·r + γ(1−d) max_k V_i(x_k), not the mean over k."""
    w = jnp.array([[1.0, -2.0, 0.5], [0.3, 1.0, 0.0]])

    class Known(HandModel):
        def next_values(self, ls, cand):
            return jnp.einsum("bnko,no->bnk", cand, w)

    ag = Known(SPEC, CFG)
    batch = make_batch(jax.random.key(0))
    ag.fixed = hand_candidates(5)
    ls = ag.init(jax.random.key(1))
    y, aux = jax.jit(ag.target)(ls, batch, jax.random.key(2))

    cand = np.asarray(ag.fixed)
    r, d = np.asarray(batch.reward), np.asarray(batch.terminal)
    expected = np.zeros((5, 2))
    mean_target = np.zeros((5, 2))
    for b in range(5):
        for i in range(2):
            vals = [float(np.dot(cand[b, i, k], np.asarray(w[i]))) for k in range(cand.shape[2])]
            expected[b, i] = 2.0 * r[b] + 0.9 * (1 - d[b]) * max(vals)
            mean_target[b, i] = 2.0 * r[b] + 0.9 * (1 - d[b]) * np.mean(vals)
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-5, atol=1e-6)
    live = d == 0
    assert np.all(np.asarray(y)[live] > mean_target[live] + 1e-3)  # optimistic: strictly above the mean here
    np.testing.assert_allclose(np.asarray(y)[~live], 2.0 * r[~live, None].repeat(2, 1), rtol=1e-6)
    assert float(aux["optimism_gain"]) > 0


def test_target_max_with_target_actor_and_critic(agent):
    """With the real target nets: V_i(x) = Q̄_i(x, μ̄_i(x)) (the max over actions is the target actor's action at the
    candidate), and the target takes the best candidate. Checked per (b, i, k) with the per-agent networks."""
    ag = HandModel(SPEC, CFG)
    ag.fixed = hand_candidates(5)
    ls = ag.init(jax.random.key(3))
    # targets differ from the online nets, so using the wrong ones would show
    ls = ls.replace(target_actor_params=jax.tree.map(lambda x: x + 0.3, ls.target_actor_params),
                    target_critic_params=jax.tree.map(lambda x: x - 0.2, ls.target_critic_params))
    batch = make_batch(jax.random.key(4))
    y, _ = jax.jit(ag.target)(ls, batch, jax.random.key(5))
    cand = np.asarray(ag.fixed)
    expected = np.zeros((5, 2))
    for b in range(5):
        for i in range(2):
            ap = jax.tree.map(lambda x, i=i: x[i], ls.target_actor_params)
            cp = jax.tree.map(lambda x, i=i: x[i], ls.target_critic_params)
            vals = []
            for k in range(cand.shape[2]):
                x = jnp.asarray(cand[b, i, k])
                u = np.tanh(np.asarray(ag.actor_module.apply(ap, x))) * AMASK[i]
                vals.append(float(ag.critic_module.apply(cp, jnp.concatenate([x, jnp.asarray(u)]))[0]))
            expected[b, i] = 2.0 * float(batch.reward[b]) + 0.9 * (1 - float(batch.terminal[b])) * max(vals)
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------ model


def test_pinball_loss_by_hand():
    """τ = 0.1: e = target − pred = (1, −2) → (0.1·1, 0.9·2) → mean 0.95; a padded entry does not count."""
    pred = jnp.array([[0.0, 0.0, 7.0]])
    target = jnp.array([[1.0, -2.0, 0.0]])
    mask = jnp.array([1.0, 1.0, 0.0])
    np.testing.assert_allclose(float(jax.jit(pinball_loss)(pred, target, 0.1, mask)), 0.95, rtol=1e-6)
    np.testing.assert_allclose(float(pinball_loss(pred, target, 0.9, mask)), (0.9 * 1 + 0.1 * 2) / 2, rtol=1e-6)


def test_model_loss_matches_numpy(agent):
    """The model's training loss on a tiny batch: Σ_i [pinball_τ(q_lo_i, o'_i) + pinball_{1−τ}(q_hi_i, o'_i)], each a
    mean over batch and agent i's real observation entries, recomputed in numpy from the model's outputs."""
    ls = agent.init(jax.random.key(6))
    batch = make_batch(jax.random.key(7), b=4)
    loss, aux = jax.jit(agent.model_loss)(ls.model_params, batch)
    tau = CFG.quantile
    total = 0.0
    for i in range(2):
        p_i = jax.tree.map(lambda x, i=i: x[i], ls.model_params)
        real = OMASK[i] > 0
        o = int(real.sum())
        rho_lo, rho_hi = [], []
        for b in range(4):
            x = np.concatenate([np.asarray(batch.obs[b, i]), np.asarray(batch.action[b, i])])
            out = np.asarray(agent.model_module.apply(p_i, jnp.asarray(x)))
            lo = np.asarray(batch.obs[b, i]) + out[:3]
            hi = np.asarray(batch.obs[b, i]) + out[3:]
            nxt = np.asarray(batch.next_obs[b, i])
            e_lo, e_hi = (nxt - lo)[real], (nxt - hi)[real]
            rho_lo.append(np.maximum(tau * e_lo, (tau - 1) * e_lo))
            rho_hi.append(np.maximum((1 - tau) * e_hi, -tau * e_hi))
        total += np.sum(rho_lo) / (4 * o) + np.sum(rho_hi) / (4 * o)
    np.testing.assert_allclose(float(loss), total, rtol=1e-5)
    np.testing.assert_allclose(float(aux["model_loss"]), total / 2, rtol=1e-5)


def test_candidates_between_quantiles(agent):
    """Candidates lie between the model's quantiles, entry by entry, fill the box uniformly, padded entries are 0; the
    observed next observation is appended if asked; same key -> same candidates."""
    ls = agent.init(jax.random.key(8))
    batch = make_batch(jax.random.key(9), b=3)
    cand = jax.jit(agent.candidates)(ls, batch, jax.random.key(10))
    assert cand.shape == (3, 2, CFG.next_state_samples, 3)
    lo, hi = jax.vmap(agent.model_bounds, (None, 0, 0))(ls.model_params, batch.obs, batch.action)
    lo_, hi_ = np.minimum(lo, hi)[:, :, None], np.maximum(lo, hi)[:, :, None]
    c = np.asarray(cand)
    assert np.all(c >= lo_ - 1e-6) and np.all(c <= hi_ + 1e-6)
    assert np.all(c[:, 1, :, 2] == 0)
    np.testing.assert_array_equal(c, np.asarray(jax.jit(agent.candidates)(ls, batch, jax.random.key(10))))
    # uniform in the box: the mean of many draws is the midpoint
    many = jax.jit(lambda k: sample_candidates(lo, hi, k, 4000, OMASK[None]))(jax.random.key(11))
    np.testing.assert_allclose(np.asarray(many.mean(axis=2)), np.asarray((lo + hi) / 2), atol=0.02 + 0.02 * float(
        np.abs(np.asarray(hi - lo)).max()))
    ag = make_agent("mmq", SPEC, dataclasses.replace(CFG, include_observed_next=True))
    cand2 = ag.candidates(ls, batch, jax.random.key(12))
    assert cand2.shape == (3, 2, CFG.next_state_samples + 1, 3)
    np.testing.assert_array_equal(np.asarray(cand2[:, :, -1]), np.asarray(batch.next_obs))


def test_model_fits_quantiles():
    """On o' = o + ε, ε ~ U[0, 1] (whatever the action), the fitted model's bounds approach the τ and 1 − τ quantiles
    of ε (0.1 and 0.9)."""
    spec = EnvSpec(name="m", num_agents=2, obs_sizes=(1, 1), action_sizes=(1, 1), state_size=1, action_low=-1.0,
                   action_high=1.0, episode_length=1)
    ag = make_agent("mmq", spec, dataclasses.replace(CFG, model_hidden=(16,), model_lr=1e-2, grad_clip=0.0,
                                                     adam_eps=1e-8))
    b = 512
    k1, k2, k3 = jax.random.split(jax.random.key(13), 3)
    obs = jax.random.uniform(k1, (b, 2, 1), minval=-1, maxval=1)
    act = jax.random.uniform(k2, (b, 2, 1), minval=-1, maxval=1)
    nxt = obs + jax.random.uniform(k3, (b, 2, 1))
    batch = Transition(obs, jnp.zeros((b, 1)), act, jnp.zeros((b,)), nxt, jnp.zeros((b, 1)), jnp.zeros((b,)))
    from svnr_jax.algorithms.base import gradient_step

    @jax.jit
    def fit(ls):
        def body(carry, _):
            mp, mo = carry
            mp, mo, _ = gradient_step(ag.model_loss, mp, mo, ag.model_tx, batch)
            return (mp, mo), None

        return jax.lax.scan(body, (ls.model_params, ls.model_opt), None, length=1500)[0][0]

    mp = fit(ag.init(jax.random.key(14)))
    lo, hi = jax.vmap(ag.model_bounds, (None, 0, 0))(mp, obs, act)
    np.testing.assert_allclose(np.asarray(lo - obs).mean(), 0.1, atol=0.05)
    np.testing.assert_allclose(np.asarray(hi - obs).mean(), 0.9, atol=0.05)


# ------------------------------------------------------------------------------------------ independence


def test_each_learner_uses_only_its_own_action_and_observation(agent):
    """Agent i's critic Q_i, model f_i and target y_i read (o_i, u_i) only: their derivatives w.r.t. teammates' actions
    and observations are exactly 0, and changing a teammate's action in the batch (same observations) leaves agent i's
    critic value, target, critic loss term and model loss term unchanged."""
    ls = agent.init(jax.random.key(15))
    batch = make_batch(jax.random.key(16), b=3)
    q = jax.jit(jax.vmap(agent.q, (None, 0, 0)))
    dq_du = jax.jacrev(lambda a: q(ls.critic_params, batch.obs, a))(batch.action)  # [B, N, B, N, A]
    dq_do = jax.jacrev(lambda o: q(ls.critic_params, o, batch.action))(batch.obs)
    for d in (dq_du, dq_do):
        d = np.asarray(d)
        assert np.all(d[:, 0, :, 1] == 0) and np.all(d[:, 1, :, 0] == 0)
        assert np.abs(d[:, 0, :, 0]).sum() > 0 and np.abs(d[:, 1, :, 1]).sum() > 0

    def per_agent(b, key):
        y, _ = agent.target(ls, b, key)
        qv = q(ls.critic_params, b.obs, b.action)
        lo, hi = jax.vmap(agent.model_bounds, (None, 0, 0))(ls.model_params, b.obs, b.action)
        return y, qv, ((qv - y) ** 2).mean(0), lo, hi

    f = jax.jit(per_agent)
    base = f(batch, jax.random.key(17))
    moved = batch._replace(action=batch.action.at[:, 1].set(-batch.action[:, 1]))  # teammate 1's actions change
    out = f(moved, jax.random.key(17))
    for a, b in zip(base, out, strict=True):  # agent 0's quantities unchanged ...
        np.testing.assert_array_equal(np.asarray(a)[:, 0] if a.ndim > 1 else np.asarray(a)[0],
                                      np.asarray(b)[:, 0] if b.ndim > 1 else np.asarray(b)[0])
    assert not np.allclose(np.asarray(base[1])[:, 1], np.asarray(out[1])[:, 1])  # ... agent 1's own do change
    # the teammate's action reaches agent 0 only through the next observation it causes: with the observed next
    # observation as a candidate, a better o'_0 raises agent 0's target, a change of o'_1 does not touch it
    ag = make_agent("mmq", SPEC, dataclasses.replace(CFG, include_observed_next=True))
    y0, _ = ag.target(ls, batch, jax.random.key(18))
    grad = jax.grad(lambda n: ag.target(ls, batch._replace(next_obs=n), jax.random.key(18))[0][:, 0].sum())(
        batch.next_obs)
    assert np.all(np.asarray(grad)[:, 1] == 0)
    assert np.all(np.isfinite(np.asarray(y0)))


def test_gradients_stay_within_each_agent(agent):
    """The summed critic, actor and model losses: each agent's parameters get gradient only from its own term."""
    ls = agent.init(jax.random.key(19))
    batch = make_batch(jax.random.key(20))
    y, _ = agent.target(ls, batch, jax.random.key(21))

    def critic_terms(cp):
        qv = jax.vmap(agent.q, (None, 0, 0))(cp, batch.obs, batch.action)
        return ((qv - y) ** 2).mean(0)  # [N]

    def actor_terms(ap):
        u, _ = jax.vmap(agent.actor_apply, (None, 0))(ap, batch.obs)
        return -jax.vmap(agent.q, (None, 0, 0))(ls.critic_params, batch.obs, u).mean(0)

    for fn, params in ((critic_terms, ls.critic_params), (actor_terms, ls.actor_params)):
        jac = jax.jit(jax.jacrev(fn))(params)
        for leaf in jax.tree.leaves(jac):
            leaf = np.asarray(leaf).reshape(2, 2, -1)
            assert np.all(leaf[0, 1] == 0) and np.all(leaf[1, 0] == 0)
        assert any(np.abs(np.asarray(x)).sum() > 0 for x in jax.tree.leaves(jac))


# ------------------------------------------------------------------------------------------ execution


def test_exploration_noise_and_padding(agent):
    ls = agent.init(jax.random.key(22))
    zero_out = {"params": {**ls.actor_params["params"],
                           "Dense_1": jax.tree.map(jnp.zeros_like, ls.actor_params["params"]["Dense_1"])}}
    ls = ls.replace(actor_params=zero_out)  # μ(o) = 0 exactly: explore actions are the clipped noise
    obs = jax.random.normal(jax.random.key(23), (2, 3)) * OMASK
    state = jnp.zeros((4,))
    key = jax.random.key(24)
    e = np.asarray(jax.jit(jax.vmap(lambda t: agent.act(ls, obs, state, key, t, 0, EXPLORE)))(jnp.arange(2000)))
    mask = SPEC.action_mask
    assert np.all(e[:, ~mask] == 0)
    np.testing.assert_allclose(e[:, mask].std(axis=0), CFG.exploration_noise, rtol=0.08)
    assert np.all(np.abs(e[:, mask].mean(axis=0)) < 0.01)
    act = jax.jit(agent.act, static_argnames="mode")
    np.testing.assert_array_equal(np.asarray(act(ls, obs, state, key, 3, 0, mode=EXPLORE)), e[3])
    assert not np.allclose(e[3], e[4])
    for t in (0, 7):
        d = act(ls, obs, state, jax.random.key(100 + t), t, 0, mode="deterministic")
        np.testing.assert_array_equal(np.asarray(d), 0.0)


def test_deterministic_is_mu_and_padded_zero(agent):
    ls = agent.init(jax.random.key(25))
    obs = jax.random.normal(jax.random.key(26), (2, 3)) * OMASK
    d = jax.jit(agent.act, static_argnames="mode")(ls, obs, jnp.zeros(4), jax.random.key(27), 0, 0,
                                                     mode="deterministic")
    for i in range(2):
        p_i = jax.tree.map(lambda x, i=i: x[i], ls.actor_params)
        np.testing.assert_allclose(np.asarray(d[i]), np.tanh(np.asarray(agent.actor_module.apply(p_i, obs[i])))
                                   * AMASK[i], rtol=1e-5, atol=1e-7)
    assert float(d[1, 1]) == 0.0 and np.all(np.abs(np.asarray(d)) <= 1)
    with pytest.raises(ValueError, match="deterministic"):
        agent.act(ls, obs, jnp.zeros(4), jax.random.key(28), 0, 0, mode="shared_seed")


# ------------------------------------------------------------------------------------------ config


@pytest.mark.parametrize("field,value", [
    ("actor_hidden", ()), ("critic_hidden", (8, 0)), ("model_hidden", ()), ("actor_lr", 0.0), ("critic_lr", -1e-3),
    ("model_lr", 0.0), ("adam_eps", 0.0), ("gamma", 1.5), ("gamma", -0.1), ("tau", 0.0), ("tau", 1.1),
    ("grad_clip", -1.0), ("exploration_noise", -0.1), ("exploration_noise", float("nan")), ("action_reg", -1e-3),
    ("reward_scale", 0.0), ("actor_lr", True), ("next_state_samples", 0), ("next_state_samples", 2.0),
    ("quantile", 0.0), ("quantile", 0.5), ("quantile", float("inf")), ("include_observed_next", 1),
])
def test_config_validation(field, value):
    cfg = dataclasses.replace(MMQConfig(), **{field: value})
    with pytest.raises(ValueError, match=rf"algo_config\.{field}"):
        cfg.check()


def test_default_config_valid():
    MMQConfig().check()
    dataclasses.replace(MMQConfig(), grad_clip=0.0, exploration_noise=0.0, action_reg=0.0, gamma=0.0,
                        next_state_samples=1, quantile=0.49, include_observed_next=True).check()


# ------------------------------------------------------------------------------------------ jit / vmap, pretrain


def test_jit_vmap_update_and_act(agent):
    k = 3
    lss = jax.jit(jax.vmap(agent.init))(jax.random.split(jax.random.key(29), k))
    batch = make_batch(jax.random.key(30))
    update = jax.jit(jax.vmap(agent.update, (0, None, 0, None)))
    new, metrics = update(lss, batch, jax.random.split(jax.random.key(31), k), 0)
    for name in ("critic_loss", "policy_loss", "model_loss", "q_mean", "target_mean", "optimism_gain"):
        assert metrics[name].shape == (k,)
        assert np.all(np.isfinite(np.asarray(metrics[name])))
    assert np.all(np.asarray(new.updates) == 1)
    for t0, t1, p1 in zip(jax.tree.leaves((lss.target_critic_params, lss.target_actor_params)),
                          jax.tree.leaves((new.target_critic_params, new.target_actor_params)),
                          jax.tree.leaves((new.critic_params, new.actor_params)), strict=True):
        np.testing.assert_allclose(np.asarray(t1), np.asarray(0.9 * t0 + 0.1 * p1), rtol=1e-5, atol=1e-6)
    new2, metrics2 = update(lss, batch, jax.random.split(jax.random.key(31), k), 0)
    for a, b in zip(jax.tree.leaves((new, metrics)), jax.tree.leaves((new2, metrics2)), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    obs = jnp.broadcast_to(batch.obs[0], (k, *batch.obs.shape[1:]))
    state = jnp.broadcast_to(batch.state[0], (k, 4))
    act = jax.jit(jax.vmap(lambda ls, o, s, kk: agent.act(ls, o, s, kk, 2, 0, EXPLORE)))
    u = act(new, obs, state, jax.random.split(jax.random.key(32), k))
    assert u.shape == (k, 2, 2)
    assert np.all(np.abs(np.asarray(u)) <= 1) and np.all(np.asarray(u)[:, 1, 1] == 0)
    np.testing.assert_array_equal(np.asarray(u), np.asarray(act(new, obs, state, jax.random.split(jax.random.key(32),
                                                                                                   k))))


def test_pretrain_is_model_and_critic_only(agent):
    ls = jax.jit(agent.init)(jax.random.key(33))
    batch = make_batch(jax.random.key(34))
    pre = jax.jit(agent.pretrain)
    ls1, m0 = pre(ls, batch, jax.random.key(35))
    for a, b in zip(jax.tree.leaves((ls.actor_params, ls.target_actor_params)),
                    jax.tree.leaves((ls1.actor_params, ls1.target_actor_params)), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert any(not np.array_equal(np.asarray(a), np.asarray(b))
               for a, b in zip(jax.tree.leaves(ls.model_params), jax.tree.leaves(ls1.model_params), strict=True))
    for i in range(40):
        ls1, m = pre(ls1, batch, jax.random.key(36 + i))
    assert float(m["critic_loss"]) < float(m0["critic_loss"])
    assert float(m["model_loss"]) < float(m0["model_loss"])


# ------------------------------------------------------------------------------------------ learning
