"""HASAC: the sequential actor update (later agents see earlier agents' NEW actions), the soft twin-critic target, the
automatic temperatures, config validation and presets; n-step replay sampling against a plain Python loop."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from svnr_jax import replay
from svnr_jax.algorithms.base import make_agent
from svnr_jax.algorithms.hasac import HASACConfig, soft_target, temperature_loss
from svnr_jax.config import make_config
from svnr_jax.envs.base import EnvSpec
from svnr_jax.presets import preset
from svnr_jax.replay import NStepTransition, Transition

SPEC = EnvSpec(name="toy3", num_agents=3, obs_sizes=(3, 2, 3), action_sizes=(2, 1, 2), state_size=4,
               action_low=-1.0, action_high=1.0, episode_length=5)
CFG = HASACConfig(actor_hidden=(16,), critic_hidden=(16,), actor_lr=1e-2, critic_lr=1e-2, alpha_lr=1e-2, gamma=0.9)


def make_batch(key, b=6, spec=SPEC) -> NStepTransition:
    ks = jax.random.split(key, 6)
    n, o, a, s = spec.num_agents, spec.obs_dim, spec.action_dim, spec.state_size
    obs_mask = jnp.asarray(spec.obs_mask, jnp.float32)
    act_mask = jnp.asarray(spec.action_mask, jnp.float32)
    return NStepTransition(
        obs=jax.random.normal(ks[0], (b, n, o)) * obs_mask, state=jax.random.normal(ks[1], (b, s)),
        action=jax.random.uniform(ks[2], (b, n, a), minval=-1, maxval=1) * act_mask,
        reward=jax.random.normal(ks[3], (b,)), next_obs=jax.random.normal(ks[4], (b, n, o)) * obs_mask,
        next_state=jax.random.normal(ks[5], (b, s)), terminal=(jnp.arange(b) % 3 == 1).astype(jnp.float32),
        discount=jnp.full((b,), 0.9), steps=jnp.ones((b,), jnp.int32))


@pytest.fixture(scope="module")
def agent():
    return make_agent("hasac", SPEC, CFG)


@pytest.fixture(scope="module")
def trained(agent):
    """Learner state after two full updates (Adam moments non-zero, so a step depends on the gradient's size)."""
    ls = agent.init(jax.random.key(0))
    upd = jax.jit(agent.update)
    for s in range(2):
        ls, metrics = upd(ls, make_batch(jax.random.key(10 + s)), jax.random.key(20 + s), 0)
    assert all(np.isfinite(float(v)) for v in metrics.values())
    return ls


def test_actor_last_hidden_layer_is_tanh(agent):
    """HARL's actor (PlainMLP, ``final_activation_func: tanh``): ReLU hidden layers, the last one tanh. Its features
    lie in [-1, 1], so for any input |μ_j| ≤ Σ_k |W_kj| + |b_j| of the head (a ReLU last layer grows with the input)."""
    params = _take(agent.init(jax.random.key(1)).actor_params, 0)
    head = params["params"][max(params["params"], key=lambda name: int(name.split("_")[-1]))]
    bound = jnp.sum(jnp.abs(head["kernel"]), axis=0) + jnp.abs(head["bias"])
    obs = 1e4 * jax.random.normal(jax.random.key(2), (64, SPEC.obs_dim))
    out = jax.vmap(agent.actor.apply, (None, 0))(params, obs)
    mu_and_log_sig = jnp.concatenate(out, axis=-1)
    assert bool(jnp.all(jnp.abs(mu_and_log_sig) <= bound + 1e-4))
    assert float(jnp.max(jnp.abs(mu_and_log_sig))) > 0.5 * float(jnp.min(bound))  # saturated, not near 0


# ------------------------------------------------------------------------------------------ sequential update


def _take(tree, i):
    return jax.tree.map(lambda x: x[i], tree)


def _expected_step(agent, ls, batch, noise, i, u_others):
    """Agent i's Adam step recomputed directly: its loss against ``u_others`` at its parameters before the phase."""
    alpha = jnp.exp(ls.log_alpha)
    p_i = _take(ls.actor_params, i)
    (loss, _), g = jax.value_and_grad(agent.actor_loss_i, has_aux=True)(
        p_i, i, u_others, batch.obs[:, i], batch.state, noise.own[:, i], alpha[i], ls.critic_params)
    upd, _ = agent.adam_actor.update(g, _take(ls.actor_opt, i), p_i)
    return jax.tree.map(lambda p, d: p + d, p_i, upd), g, loss


def _max_diff(a, b) -> float:
    return max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def test_each_agent_sees_the_new_actions_of_the_agents_updated_before_it(agent, trained):
    ls = trained
    batch = make_batch(jax.random.key(3))
    order = jnp.array([2, 0, 1], jnp.int32)
    noise = agent.actor_noise(jax.random.key(4), batch.reward.shape[0])
    new, _, _ = jax.jit(agent.actor_phase)(ls, batch, order, noise)

    def sample(params, j, eps):  # agent j's action from `params` (stacked) with noise eps [B, N, A]
        return agent.policy(_take(params, j), j, batch.obs[:, j], eps[:, j])[0]

    old_u = jnp.stack([sample(ls.actor_params, j, noise.current) for j in range(3)], axis=1)
    new_u = jnp.stack([sample(new.actor_params, j, noise.new) for j in range(3)], axis=1)
    for pos, i in enumerate([2, 0, 1]):
        earlier = np.isin(np.arange(3), [2, 0, 1][:pos])[None, :, None]
        seen = jnp.where(earlier, new_u, old_u)  # earlier agents: new actors; later: current actors
        want, g_seen, _ = _expected_step(agent, ls, batch, noise, i, seen)
        got = _take(new.actor_params, i)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), got, want)
        stale, g_stale, _ = _expected_step(agent, ls, batch, noise, i, old_u)  # what a simultaneous update would do
        gap = _max_diff(g_seen, g_stale)
        if pos == 0:
            assert gap == 0.0  # the first agent sees only current actions
        else:
            assert gap > 1e-4, (i, gap)
            diff = _max_diff(got, stale)
            assert diff > 1e-6, (i, diff)


def test_own_row_is_reparameterised_and_others_are_held_fixed(agent, trained):
    ls, batch = trained, make_batch(jax.random.key(5))
    noise = agent.actor_noise(jax.random.key(6), 6)
    u = agent.policy_all(ls.actor_params, batch.obs, noise.current)[0]
    i = 1
    loss = lambda u_others: agent.actor_loss_i(_take(ls.actor_params, i), i, u_others, batch.obs[:, i],
                                               batch.state, noise.own[:, i], 1.0, ls.critic_params)[0]
    g = jax.grad(loss)(u)
    assert float(jnp.max(jnp.abs(g))) == 0.0  # stop-gradient on the others' actions (and the own row is replaced)
    # the own row of u_others is ignored: the loss depends on the other rows only
    assert float(loss(u)) == float(loss(u.at[:, i].set(0.3)))
    assert float(loss(u)) != float(loss(u.at[:, 0].set(0.3)))


def test_order_is_a_random_permutation_per_key_or_fixed(agent):
    orders = {tuple(np.asarray(agent.order(jax.random.key(s)))) for s in range(12)}
    assert all(sorted(o) == [0, 1, 2] for o in orders) and len(orders) > 2
    fixed = make_agent("hasac", SPEC, dataclasses.replace(CFG, fixed_order=True))
    assert tuple(np.asarray(fixed.order(jax.random.key(0)))) == (0, 1, 2)


# ------------------------------------------------------------------------------------------ critic and temperature


def test_soft_target_on_hand_values():
    reward = jnp.array([1.0, 2.0, -1.0])
    discount = jnp.array([0.9, 0.81, 0.5])
    terminal = jnp.array([0.0, 0.0, 1.0])
    q_next = jnp.array([[3.0, 5.0], [-2.0, -1.0], [100.0, 100.0]])  # min of the twins: 3, -2, 100
    logp = jnp.array([[0.5, -1.5], [1.0, 1.0], [9.0, 9.0]])  # Σ_i: -1, 2, 18
    y = soft_target(reward, discount, terminal, q_next, logp, jnp.asarray(0.5))
    np.testing.assert_allclose(y, [1.0 + 0.9 * (3.0 + 0.5), 2.0 + 0.81 * (-2.0 - 1.0), -1.0], rtol=1e-6)


def test_critic_step_regresses_both_critics_on_the_target(agent, trained):
    ls, batch = trained, make_batch(jax.random.key(7))
    y = jnp.linspace(-1.0, 1.0, 6)
    loss, aux = agent.critic_loss(ls.critic_params, batch, y)
    q = jax.vmap(agent.critic.apply, (None, 0, 0))(ls.critic_params, batch.state, batch.action)
    np.testing.assert_allclose(loss, np.mean((q[:, 0] - y) ** 2) + np.mean((q[:, 1] - y) ** 2), rtol=1e-5)
    new, _ = jax.jit(agent.critic_step)(ls, batch, jax.random.key(8))
    assert not np.allclose(jax.tree.leaves(new.critic_params)[0], jax.tree.leaves(ls.critic_params)[0])
    jax.tree.map(np.testing.assert_array_equal, new.target_params, ls.target_params)  # targets move in polyak only


def test_temperature_gradient_sign():
    g = jax.grad(temperature_loss)
    assert float(g(0.0, jnp.array([2.0, 3.0]), -1.0)) < 0  # entropy -log π = -2.5 below target -1: raise log α
    assert float(g(0.0, jnp.array([-2.0, -1.0]), 1.0 * -1.0)) > 0  # entropy 1.5 above target -1: lower log α


def _with_log_sigma(ls, value: float):
    """Actors whose output is μ = 0, log σ = ``value`` whatever the observation (output kernel 0)."""
    params = jax.tree.map(lambda x: x, ls.actor_params)
    out = params["params"]["Dense_1"]
    a = out["bias"].shape[-1] // 2
    out["kernel"] = jnp.zeros_like(out["kernel"])
    out["bias"] = jnp.concatenate([jnp.zeros_like(out["bias"][:, :a]), jnp.full_like(out["bias"][:, a:], value)], 1)
    return ls.replace(actor_params=params)


@pytest.mark.parametrize("log_sigma, direction", [(-4.0, 1.0), (0.0, -1.0)])
def test_automatic_temperatures_move_towards_the_target_entropy(agent, log_sigma, direction):
    """Narrow policies (entropy far below −dim A_i) raise every log α_i and log α_c; σ = 1 (squashed entropy ≈ 0.5
    per dimension, above the target) lowers them. (A much wider σ piles the squashed mass at ±1: low entropy.)"""
    ls = _with_log_sigma(agent.init(jax.random.key(1)), log_sigma)
    new, metrics = jax.jit(agent.update)(ls, make_batch(jax.random.key(2)), jax.random.key(3), 0)
    assert np.all(direction * (np.asarray(new.log_alpha) - np.asarray(ls.log_alpha)) > 0)
    assert direction * (float(new.critic_log_alpha) - float(ls.critic_log_alpha)) > 0
    np.testing.assert_allclose(agent.target_entropy, [-2.0, -1.0, -2.0])  # −(real action dims) per agent


def test_fixed_temperature_stays():
    ag = make_agent("hasac", SPEC, dataclasses.replace(CFG, auto_alpha=False, alpha=0.3))
    ls = ag.init(jax.random.key(0))
    new, metrics = jax.jit(ag.update)(ls, make_batch(jax.random.key(1)), jax.random.key(2), 0)
    np.testing.assert_allclose(metrics["alpha"], 0.3, rtol=1e-6)
    np.testing.assert_allclose(metrics["critic_alpha"], 0.3, rtol=1e-6)


def test_update_is_deterministic_and_respects_padded_actions(agent, trained):
    batch = make_batch(jax.random.key(9))
    a, _ = jax.jit(agent.update)(trained, batch, jax.random.key(1), 0)
    b, _ = jax.jit(agent.update)(trained, batch, jax.random.key(1), 0)
    jax.tree.map(np.testing.assert_array_equal, a, b)
    obs = batch.obs[0]
    for mode in ("sample", "deterministic", "explore"):
        u = agent.act(a, obs, batch.state[0], jax.random.key(2), jnp.asarray(3), 0, mode)
        assert u.shape == (3, 2) and float(u[1, 1]) == 0.0 and bool(jnp.all(jnp.abs(u) <= 1.0))
    # decentralised: agent 0's action does not change with agent 1's observation
    u1 = agent.act(a, obs.at[1].set(5.0), batch.state[0], jax.random.key(2), jnp.asarray(3), 0, "sample")
    u0 = agent.act(a, obs, batch.state[0], jax.random.key(2), jnp.asarray(3), 0, "sample")
    np.testing.assert_array_equal(u0[0], u1[0])


# ------------------------------------------------------------------------------------------ config and presets


@pytest.mark.parametrize("field, value", [("actor_lr", 0.0), ("gamma", 1.5), ("tau", 0.0), ("n_step", 0),
                                          ("alpha", -1.0), ("target_entropy", float("nan")), ("replay_stride", -1),
                                          ("auto_alpha", 1), ("actor_hidden", ())])
def test_bad_config_values_are_named(field, value):
    with pytest.raises(ValueError, match=f"algo_config.{field}"):
        dataclasses.replace(CFG, **{field: value}).check()


def test_n_step_needs_the_runs_num_envs():
    with pytest.raises(ValueError, match="algo_config.replay_stride"):
        HASACConfig(n_step=3).check()
    with pytest.raises(ValueError, match="algo_config.replay_stride=.*num_envs=4"):
        make_config("hasac", dict(n_step=3, replay_stride=8), env="max_of_two", num_envs=4)
    assert make_config("hasac", dict(n_step=3, replay_stride=4), env="max_of_two", num_envs=4).algo_config.n_step == 3


def test_presets():
    cfg = preset("HalfCheetah-2x3", "hasac")
    c = cfg.algo_config
    assert (c.n_step, c.actor_lr, c.critic_lr, c.auto_alpha, c.actor_hidden, c.gamma, c.tau) == (
        10, 1e-3, 1e-3, True, (256, 256), 0.99, 0.005)
    assert c.replay_stride == cfg.num_envs
    assert preset("HalfCheetah-2x3", "hasac", num_envs=4).algo_config.replay_stride == 4
    ant = preset("Ant-2x4", "hasac").algo_config
    assert (ant.n_step, ant.auto_alpha, ant.alpha, ant.critic_lr) == (5, False, 0.2, 3e-4)
    for game in ("single_peak", "max_of_two", "two_modalities", "max_of_three", "climbing", "penalty"):
        g = preset(game, "hasac").algo_config
        assert g.gamma == 0.0 and g.n_step == 1
    assert preset("particle_gather", "hasac").algo_config.n_step == 20


# ------------------------------------------------------------------------------------------ n-step sampling

B, N_AG = 3, 2


def _fill(capacity: int, iterations: int, ends: dict[tuple[int, int], str], seed: int = 0):
    """Write ``iterations`` × B transitions the way the training loop does; ``ends[(env, t)]`` = "term" or "reset"
    (a truncation: no terminal flag, the next entry starts from a fresh reset). Returns the buffer and, per env,
    the Python log of its steps (dicts) and their global write counters."""
    rng = np.random.default_rng(seed)
    ex = Transition(jnp.zeros((N_AG, 2)), jnp.zeros((3,)), jnp.zeros((N_AG, 1)), jnp.zeros(()), jnp.zeros((N_AG, 2)),
                    jnp.zeros((3,)), jnp.zeros(()))
    buf = replay.init(ex, capacity)
    counter = iter(range(1, 10_000))
    fresh = lambda: float(next(counter))  # unique observation values
    cur = [fresh() for _ in range(B)]
    logs = [[] for _ in range(B)]
    obs_of = lambda c: np.full((N_AG, 2), c, np.float32) * np.array([[1, 2], [3, 4]], np.float32)
    state_of = lambda c: np.array([c, -c, 0.5 * c], np.float32)
    for t in range(iterations):
        rows = []
        for e in range(B):
            nxt = fresh()
            end = ends.get((e, t))
            step = dict(obs=obs_of(cur[e]), state=state_of(cur[e]), action=rng.uniform(-1, 1, (N_AG, 1)),
                        reward=float(rng.normal()), next_obs=obs_of(nxt), next_state=state_of(nxt),
                        terminal=float(end == "term"), ended=end is not None, write=t * B + e)
            logs[e].append(step)
            rows.append(step)
            cur[e] = fresh() if end else nxt
        items = Transition(*(jnp.asarray(np.stack([r[f] for r in rows]), jnp.float32) for f in Transition._fields))
        buf = replay.add(buf, items)
    return buf, logs


def _reference(buf, logs, n: int, gamma: float, iterations: int):
    """Plain Python n-step transitions per valid start slot: walk the env's own trajectory, stop after a step that
    ended its episode; a start is valid when its env wrote n − 1 more steps (all newer, so still in the buffer)."""
    cap, total = buf.capacity, iterations * B
    out = {}
    for e in range(B):
        for t, step in enumerate(logs[e]):
            if step["write"] < total - cap or t + n - 1 > iterations - 1:  # overwritten, or too few successors
                continue
            ret, m = 0.0, 0
            for j in range(n):
                s = logs[e][t + j]
                ret += gamma**j * s["reward"]
                m = j + 1
                if s["ended"]:
                    break
            last = logs[e][t + m - 1]
            out[step["write"] % cap] = dict(obs=step["obs"], reward=ret, next_obs=last["next_obs"],
                                            next_state=last["next_state"], terminal=last["terminal"],
                                            discount=gamma**m, steps=m)
    return out


ENDS = {(0, 2): "term", (1, 4): "reset", (0, 6): "reset", (2, 7): "term", (1, 8): "term", (2, 1): "reset"}


@pytest.mark.parametrize("capacity, iterations", [(17, 11), (17, 6), (64, 11), (30, 10)])
def test_nstep_matches_a_python_loop(capacity, iterations):
    n, gamma = 3, 0.9
    buf, logs = _fill(capacity, iterations, ENDS)
    ref = _reference(buf, logs, n, gamma, iterations)
    valid = np.array(sorted(ref))
    count = int(buf.size) - (n - 1) * B
    starts = np.asarray(replay.nstep_starts(buf, jnp.arange(count), n, B))
    assert sorted(starts.tolist()) == valid.tolist()  # a bijection onto the valid starts
    got = jax.jit(replay.nstep_at, static_argnums=(2, 3, 4))(buf, jnp.asarray(valid), n, gamma, B)
    for k, slot in enumerate(valid):
        r = ref[int(slot)]
        np.testing.assert_array_equal(got.obs[k], r["obs"])
        np.testing.assert_allclose(got.reward[k], r["reward"], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(got.next_obs[k], r["next_obs"])
        np.testing.assert_array_equal(got.next_state[k], r["next_state"])
        assert float(got.terminal[k]) == r["terminal"] and int(got.steps[k]) == r["steps"], slot
        np.testing.assert_allclose(got.discount[k], r["discount"], rtol=1e-6)
    steps = np.asarray(got.steps)
    assert {1, 2, 3} <= set(steps.tolist())  # chains cut by episode ends and full chains
    if capacity < iterations * B:  # some full chain crosses the end of the storage
        crossing = (valid + (n - 1) * B >= capacity) & (steps == n)
        assert crossing.any()
    batch = jax.jit(replay.sample_nstep, static_argnums=(2, 3, 4, 5))(buf, jax.random.key(0), 4000, n, gamma, B)
    drawn = {float(x) for x in np.asarray(batch.obs[:, 0, 0])}
    assert drawn == {float(ref[int(s)]["obs"][0, 0]) for s in valid}  # every valid start, nothing else


def test_nstep_too_little_data_cuts_chains_at_the_newest_entry():
    buf, logs = _fill(32, 2, {})  # 6 entries < (n − 1)·B + 1 = 10
    batch = replay.sample_nstep(buf, jax.random.key(1), 500, 4, 0.5, B)
    older = np.asarray(batch.obs[:, 0, 0]) <= max(s["obs"][0, 0] for s in (lg[0] for lg in logs))
    np.testing.assert_array_equal(np.asarray(batch.steps), np.where(older, 2, 1))
    np.testing.assert_allclose(np.asarray(batch.discount), np.where(older, 0.25, 0.5))


def test_wrong_num_envs_never_mixes_envs():
    """With a stride that is not the data's, links fail the bit-equality test: one-step transitions."""
    buf, _ = _fill(64, 8, {})
    batch = replay.sample_nstep(buf, jax.random.key(2), 200, 3, 0.9, B + 1)
    assert np.all(np.asarray(batch.steps) == 1)


def test_one_step_is_the_uniform_sampler():
    buf, _ = _fill(17, 11, ENDS)
    key = jax.random.key(3)  # the same key for both samplers (cloned: the key-reuse checker is on)
    one = replay.sample_nstep(buf, jax.random.clone(key), 64, 1, 0.7, B)
    plain = replay.sample(buf, jax.random.clone(key), 64)
    for f in Transition._fields:
        np.testing.assert_array_equal(getattr(one, f), getattr(plain, f))
    np.testing.assert_allclose(one.discount, 0.7, rtol=1e-7)
    assert np.all(np.asarray(one.steps) == 1)
    zero = replay.sample_nstep(buf, jax.random.clone(key), 64, 1, 0.0, B)  # one-step games: γ = 0, no bootstrap
    assert np.all(np.asarray(zero.discount) == 0.0)


def test_agent_samples_nstep_batches_with_the_runs_stride():
    buf, _ = _fill(64, 8, {})
    ag = make_agent("hasac", SPEC, dataclasses.replace(CFG, n_step=3, replay_stride=B))
    batch = ag.sample_batch(buf, jax.random.key(0), 50)
    assert isinstance(batch, NStepTransition) and np.all(np.asarray(batch.steps) == 3)
    np.testing.assert_allclose(batch.discount, 0.9**3, rtol=1e-6)
