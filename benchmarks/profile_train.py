"""Where one SVNR training iteration spends its time (default: the HalfCheetah-2x3 preset, on the present device).

Every piece is jitted on its own, under a ``vmap`` over one seed (as ``training.make_trainer``), from a state whose
buffer holds ``--fill`` uniform-warm-up iterations (the preset's warm-up and critic warm-up are skipped: they do
not change what an iteration costs). Pieces (per training iteration):

* ``explore_act``: the B exploration actions (the policy, ``agent.explore_act``);
* ``env_step``: the B env steps of the training stack (``wrap_for_training``: every wrapper, the auto-reset
  included) with given actions;
* ``collect``: ``training.collect`` = exploration actions + env steps + replay ``add`` (the iteration's env part);
* ``sample``: U = ``updates_per_iteration`` replay samples (``agent.sample_batch``);
* ``critic``: U critic updates (``agent.pretrain``: the soft Bellman step + Polyak target, SVNR's
  ``_update_critic``) on pre-sampled batches;
* ``policy``: U policy (amortised SVGD) updates on pre-sampled batches: the policy half of ``SVNR.update``;
* ``update``: ``training.update`` (U x (sample + critic + policy): what the iteration runs);
* ``train_step``: ``training.train_step`` (``collect`` + ``update``: one whole iteration);
* ``evaluate``: ``training.evaluate`` (``eval_episodes`` episodes per evaluation mode), divided by ``eval_every``
  (it runs once per ``eval_every`` iterations).

``collect`` and ``train_step`` write the buffer: they donate their state and take their previous output next round
(the training chunk updates the buffer in place). The pieces are timed interleaved (each round runs every piece
once), ``--repeats`` rounds; the table gives median
ms per iteration and each piece's share of one iteration = ``train_step`` + ``evaluate`` / ``eval_every``. Pieces
overlap by design (``collect`` ⊃ ``explore_act`` + ``env_step``; ``update`` ⊃ ``sample`` + ``critic`` + ``policy``).
JSON goes to ``benchmarks/results/profile_train.json`` with the config, device and machine load.

Usage:
  python -m benchmarks.profile_train                       # HalfCheetah-2x3 preset
  python -m benchmarks.profile_train --quick               # tiny config (tests)
  python -m benchmarks.profile_train --env Walker2d-2x3 --repeats 5
  python -m benchmarks.profile_train --budget cpu --out benchmarks/results/profile_train_cpu_budget.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="HalfCheetah-2x3")
    p.add_argument("--algo", default="svnr", help="only svnr has the critic / policy split")
    p.add_argument("--budget", choices=("preset", "cpu"), default="preset",
                   help="the env's preset, or experiments/mamujoco.py's CPU budget (16 envs, 2 updates of 64, speed "
                        "options, evaluation every 250 iterations)")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds (medians reported)")
    p.add_argument("--fill", type=int, default=32, help="uniform warm-up iterations that fill the buffer first")
    p.add_argument("--buffer-size", type=int, default=None, help="override the preset's buffer size (memory)")
    p.add_argument("--seeds", type=int, default=1, help="seeds vmapped in every piece (1: as one seed of a run)")
    p.add_argument("--quick", action="store_true", help="tiny networks, batch and evaluation (tests)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "profile_train.json"))
    p.add_argument("--notes", default="")
    return p.parse_args(argv)


PIECES = ("explore_act", "env_step", "collect", "sample", "critic", "policy", "update", "train_step", "evaluate")


def make_config(args):
    import dataclasses

    from svnr_jax.presets import preset

    overrides = dict(warmup_iterations=1, critic_warmup_updates=0, num_seeds=1)
    if args.budget == "cpu":
        from experiments.mamujoco import budget_config

        return dataclasses.replace(budget_config(args.env, args.algo, "cpu", 1, None), **overrides)
    algo = {}
    if args.buffer_size:
        overrides["buffer_size"] = args.buffer_size
    if args.quick:
        overrides.update(num_envs=4, updates_per_iteration=2, batch_size=16, buffer_size=256, eval_episodes=1)
        algo = dict(policy_hidden=(16,), critic_hidden=(16,), num_particles=4, value_samples=4)
    return preset(args.env, args.algo, algo or None, **overrides)


def policy_update_fn(agent):
    """The policy half of :meth:`SVNR.update` (its ``gradient_step(policy_loss, ...)`` call, as written there)."""
    import jax

    from svnr_jax.algorithms.base import gradient_step
    from svnr_jax.losses import policy_loss

    c = agent.config

    def step(ls, batch, key, alpha):
        scale = None
        if c.leader_lr_scale != 1.0:
            scale = lambda upd: jax.tree.map(lambda u: u * agent.agent_lr[(...,) + (None,) * (u.ndim - 1)], upd)
        pp, po, aux = gradient_step(
            policy_loss, ls.policy_params, ls.policy_opt, agent.policy_tx, ls.critic_params, batch.obs, batch.state,
            key, alpha, scale=scale, policy=agent.policy, critic=agent.critic, mask=agent.mask,
            action_mask=agent.action_mask, num_particles=c.num_particles, bandwidth=agent.bandwidth)
        return ls.replace(policy_params=pp, policy_opt=po), aux

    return step


def main(argv=None):
    args = parse_args(argv)
    import jax
    import jax.numpy as jnp
    import numpy as np

    from svnr_jax import training

    cfg = make_config(args)
    setup = training.build(cfg)
    agent, u, b = setup.agent, cfg.updates_per_iteration, cfg.num_envs
    if not hasattr(agent, "pretrain") or agent.pretrain is None:
        raise SystemExit(f"{cfg.algo} has no critic-only update: the critic / policy split needs svnr")
    seeds = lambda f: jax.jit(jax.vmap(f))  # every piece under a vmap over one seed, as make_trainer

    t0 = time.perf_counter()
    ts = seeds(lambda k: training.init(setup, k))(jax.random.split(jax.random.key(cfg.seed), args.seeds))

    def fill(ts):
        def one(ts, _):
            key, k = jax.random.split(ts.key)
            return training.collect(setup, ts.replace(key=key), k, random=True)[0], None
        return jax.lax.scan(one, ts, None, length=args.fill)[0]

    ts = jax.block_until_ready(seeds(fill)(ts))
    setup_s = time.perf_counter() - t0

    def act(ts, key):
        es = ts.env_state
        keys = jax.random.split(key, b)
        return jax.vmap(lambda o, s, k, t: agent.explore_act(ts.learner, o, s, k, t, ts.iteration))(
            es.obs, es.global_state, keys, es.time)[0]

    def env_step(ts, actions, key):
        return setup.env.step(ts.env_state, actions, key)

    def sample_u(ts, key):
        return jax.vmap(lambda k: agent.sample_batch(ts.buffer, k, cfg.batch_size))(jax.random.split(key, u))

    def scan_updates(fn):
        def run(ls, batches, key, iteration):
            def one(ls, xs):
                batch, k = xs
                return fn(ls, batch, k, iteration), None
            return jax.lax.scan(one, ls, (batches, jax.random.split(key, u)))[0]
        return run

    policy_step = policy_update_fn(agent)
    critic_u = scan_updates(lambda ls, batch, k, it: agent._update_critic(ls, batch, k, agent.alpha(it))[0])
    policy_u = scan_updates(lambda ls, batch, k, it: policy_step(ls, batch, k, agent.alpha(it))[0])

    k = jax.random.split(jax.random.key(1), (9, args.seeds))
    actions = seeds(act)(ts, k[0])
    batches = seeds(sample_u)(ts, k[1])
    it = ts.iteration
    # (fn, args, donated): a donated piece writes the buffer; it gets its own copy of the state, donates it and takes
    # its previous output next round, as the training chunk updates the buffer in place (without donation every
    # call would copy the whole buffer: 140 ms per iteration at the preset's 1e6 transitions)
    own = lambda tree: jax.tree.map(jnp.copy, tree)
    calls = {
        "explore_act": (seeds(act), (ts, k[2]), False),
        "env_step": (seeds(env_step), (ts, actions, k[3]), False),
        "collect": (jax.jit(jax.vmap(lambda t, kk: training.collect(setup, t, kk)[0]), donate_argnums=0),
                    (own(ts), k[4]), True),
        "sample": (seeds(sample_u), (ts, k[5]), False),
        "critic": (seeds(critic_u), (ts.learner, batches, k[6], it), False),
        "policy": (seeds(policy_u), (ts.learner, batches, k[7], it), False),
        "update": (seeds(lambda t, kk: training.update(setup, t, kk)[0].learner), (ts, k[8]), False),
        "train_step": (jax.jit(jax.vmap(lambda t: training.train_step(setup, t)[0]), donate_argnums=0),
                       (own(ts),), True),
        "evaluate": (seeds(lambda t, kk: training.evaluate(setup, t, kk)), (ts, k[0]), False),
    }
    compile_s = {}
    compiled = {}
    for name, (f, fargs, donated) in calls.items():
        t0 = time.perf_counter()
        compiled[name] = [f.lower(*fargs).compile(), fargs, donated]
        compile_s[name] = time.perf_counter() - t0
    times = {name: [] for name in calls}
    cpu_times = {name: [] for name in calls}  # process CPU seconds (all threads): steadier than wall under load
    for _ in range(args.repeats):
        for name, entry in compiled.items():
            f, fargs, donated = entry
            t0, c0 = time.perf_counter(), time.process_time()
            out = jax.block_until_ready(f(*fargs))
            times[name].append(time.perf_counter() - t0)
            cpu_times[name].append(time.process_time() - c0)
            if donated:
                entry[1] = (out, *fargs[1:])

    per_iter = {name: float(np.median(ts_)) for name, ts_ in times.items()}
    per_iter["evaluate"] /= cfg.eval_every
    cpu_iter = {name: float(np.median(ts_)) for name, ts_ in cpu_times.items()}
    cpu_iter["evaluate"] /= cfg.eval_every
    iteration = per_iter["train_step"] + per_iter["evaluate"]
    rows = [{"piece": name, "ms_per_iteration": 1e3 * per_iter[name], "share": per_iter[name] / iteration,
             "ms_per_call_median": 1e3 * float(np.median(times[name])),
             "ms_per_call_all": [1e3 * x for x in times[name]], "cpu_ms_per_iteration": 1e3 * cpu_iter[name],
             "compile_s": compile_s[name]} for name in PIECES]
    result = {
        "env": cfg.env, "algo": cfg.algo, "budget": args.budget, "quick": args.quick, "seeds": args.seeds,
        "config": {"num_envs": b, "updates_per_iteration": u, "batch_size": cfg.batch_size,
                   "buffer_size": cfg.buffer_size, "eval_every": cfg.eval_every, "eval_episodes": cfg.eval_episodes,
                   "eval_modes": list(agent.eval_modes), "episode_length": setup.env.spec.episode_length,
                   "algo_config": dataclasses.asdict(cfg.algo_config), "env_kwargs": dict(cfg.env_kwargs),
                   "env_stack": repr(setup.env)},
        "iteration_ms": 1e3 * iteration,
        "env_steps_per_s": b / iteration,
        "parts_check": {
            "collect_over_act_plus_env": per_iter["collect"] / (per_iter["explore_act"] + per_iter["env_step"]),
            "update_over_sample_critic_policy": per_iter["update"] / (per_iter["sample"] + per_iter["critic"]
                                                                      + per_iter["policy"]),
            "train_step_over_collect_plus_update": per_iter["train_step"] / (per_iter["collect"] + per_iter["update"]),
        },
        "rows": rows,
        "setup_s": setup_s,
        "repeats": args.repeats,
        "device": f"{jax.devices()[0].device_kind} ({jax.default_backend()})",
        "host": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "versions": {"jax": jax.__version__},
        "notes": args.notes,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1, default=str)
    print_table(result)
    return result


def print_table(result):
    print(f"{result['env']} {result['algo']} ({result['budget']}): one iteration = {result['iteration_ms']:.1f} ms "
          f"({result['env_steps_per_s']:.0f} env steps/s incl. amortised evaluation); load {result['load_average']}")
    print(f"{'piece':<12} {'ms/iter':>10} {'share':>7} {'cpu ms':>8} {'compile s':>10}")
    for r in result["rows"]:
        print(f"{r['piece']:<12} {r['ms_per_iteration']:>10.2f} {100 * r['share']:>6.1f}% "
              f"{r.get('cpu_ms_per_iteration', float('nan')):>8.2f} {r['compile_s']:>10.1f}")
    print("checks (1 = the parts add up):", {k: round(v, 2) for k, v in result["parts_check"].items()})


if __name__ == "__main__":
    main()
