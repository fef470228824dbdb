"""Per-agent negotiation policies and the joint critic."""

import jax
import jax.numpy as jnp
import numpy as np

from svnr_jax.algorithms.svnr import SVNR, SVNRConfig
from svnr_jax.envs import make
from svnr_jax.negotiation import topology_mask
from svnr_jax.networks import make_critic, make_policy


def test_policy_shapes_bounds_and_stacked_params():
    n, o, a = 3, 4, 2
    pol = make_policy(n, o, a, topology_mask("nested", n), hidden=(8, 8))
    params = pol.init(jax.random.key(0))
    assert all(x.shape[0] == n for x in jax.tree.leaves(params))
    obs, noise = jax.random.normal(jax.random.key(1), (5, n, o)), 3 * jax.random.normal(jax.random.key(2), (5, n, a))
    u = jax.jit(jax.vmap(pol.apply, (None, 0, 0)))(params, obs, noise)
    assert u.shape == (5, n, a)
    assert float(jnp.max(jnp.abs(u))) <= 1.0


def test_agent_reads_only_the_noise_of_its_negotiation_set():
    n = 3
    mask = topology_mask("nested", n)  # C_0 = {0}, C_1 = {0, 1}, C_2 = all
    pol = make_policy(n, 1, 1, mask, hidden=(8,))
    params = pol.init(jax.random.key(0))
    obs = jnp.ones((n, 1))
    xi = jax.random.normal(jax.random.key(1), (n, 1))
    base = jax.jit(pol.apply)(params, obs, xi)
    for j in range(n):
        changed = jax.jit(pol.apply)(params, obs, xi.at[j].add(1.0))
        moved = np.abs(np.asarray(changed - base))[:, 0] > 1e-7
        np.testing.assert_array_equal(moved, mask[:, j])  # agent i moves iff j ∈ C_i


def test_padded_action_entries_are_zero():
    amask = np.array([[True, True], [True, False]])
    pol = make_policy(2, 3, 2, np.ones((2, 2), bool), hidden=(8,), action_mask=amask)
    u = pol.apply(pol.init(jax.random.key(0)), jnp.ones((2, 3)), jnp.ones((2, 2)))
    assert float(u[1, 1]) == 0.0 and float(jnp.abs(u[0, 1])) > 0


def test_shared_seed_execution_is_decentralised():
    # Mode (a): each agent regenerates ξ from the shared key alone; stacking their actions equals act().
    env = make("max_of_three", num_agents=3)
    agent = SVNR(env.spec, SVNRConfig(policy_hidden=(8,), critic_hidden=(8,)))
    ls = agent.init(jax.random.key(0))
    obs, state = jnp.ones((3, 1)), jnp.ones((1,))
    shared, t = jax.random.key(7), jnp.asarray(4)
    joint = jax.jit(lambda ls: agent.act(ls, obs, state, shared, t, 0))(ls)
    own = jnp.stack([agent.agent_action(ls.policy_params, i, obs[i], shared, t) for i in range(3)])
    np.testing.assert_allclose(joint, own, rtol=1e-6)
    det = agent.act(ls, obs, state, shared, t, 0, "deterministic")
    again = agent.act(ls, obs, state, jax.random.key(8), t + 1, 0, "deterministic")
    np.testing.assert_allclose(det, again)  # ξ = 0 ignores the key
    neg = jax.jit(lambda ls: agent.act(ls, obs, state, shared, t, 0, "negotiate"))(ls)
    assert neg.shape == (3, 1) and bool(jnp.all(jnp.abs(neg) <= 1.0))


def test_critic_twin_shapes():
    c = make_critic(5, 2, 3, hidden=(8,), twin=True)
    p = c.init(jax.random.key(0))
    q = jax.jit(jax.vmap(c.apply, (None, 0, 0)))(p, jnp.ones((4, 5)), jnp.ones((4, 2, 3)))
    assert q.shape == (4, 2)
    assert not np.allclose(q[:, 0], q[:, 1])  # independent initialisations


def test_noise_skip_initial_policy_is_centred_and_spread():
    pol = make_policy(2, 1, 1, topology_mask("nested", 2), hidden=(16,), out_scale=0.01, noise_skip=1.0)
    params = pol.init(jax.random.key(0))
    xi = jax.random.normal(jax.random.key(1), (4000, 2, 1))
    u = jax.vmap(pol.apply, (None, None, 0))(params, jnp.ones((2, 1)), xi)
    np.testing.assert_allclose(u, jnp.tanh(xi), atol=0.05)  # ≈ tanh(ξ_i) whatever the observation
    own = jax.tree.map(lambda p: p[1], params)
    np.testing.assert_allclose(pol.apply_agent(own, 1, jnp.ones((1,)), xi[0]), u[0, 1], rtol=1e-5)


def test_leader_lr_scale_slows_the_leader():
    from svnr_jax.replay import Transition

    env = make("two_modalities")
    agent = SVNR(env.spec, SVNRConfig(policy_hidden=(8,), critic_hidden=(8,), num_particles=4, leader_lr_scale=0.1,
                                      gamma=0.0))
    np.testing.assert_allclose(agent.agent_lr, [0.1, 1.0])
    ls = agent.init(jax.random.key(0))
    b = 4
    batch = Transition(jnp.ones((b, 2, 1)), jnp.ones((b, 1)), jnp.zeros((b, 2, 1)), jnp.ones((b,)),
                       jnp.ones((b, 2, 1)), jnp.ones((b, 1)), jnp.ones((b,)))
    new, _ = jax.jit(agent.update)(ls, batch, jax.random.key(1), 0)
    d = jax.tree.map(lambda x, y: jnp.max(jnp.abs(x - y), axis=tuple(range(1, x.ndim))), new.policy_params,
                     ls.policy_params)
    step = np.max(np.stack(jax.tree.leaves(d)), axis=0)  # [N] largest parameter change per agent
    assert step[0] < 0.2 * step[1]
