"""Throughput of ``svnr_jax.negotiate`` batched over states, with a small MLP critic as log-density.

For every (M particles, N agents, d action dims) in the grid, with K rounds and a batch of B states:

* ``negotiations_per_s``: B / (run time of one jitted ``vmap``-over-states call of ``negotiate``);
* ``ratio_vs_scores``: that run time / (K × run time of the batched scores alone, i.e. ``jax.grad`` of
  the critic w.r.t. u vmapped over particles and states). K score evaluations are part of the negotiation,
  so the ratio is 1 + (kernel machinery and bookkeeping) / (the K score evaluations); the goal (issue 13) is
  ≤ 1.5, i.e. the kernel costs at most half of the gradients it needs. ``ratio_vs_scores`` divides the
  fastest calls, ``ratio_vs_scores_median`` the medians;
* ``speedup_vs_numpy``: time per negotiation of the NumPy reference (``benchmarks/numpy_negotiate.py``,
  run on the first ``--numpy-states`` states of the batch and scaled per negotiation) / the JAX time.

Compile time (``jit(...).lower(...).compile()``) is reported apart from run time. After one warm-up call each,
the negotiation, the scores (and the baseline, below) are timed interleaved, ``--repeats`` rounds of one call
each, every call ended by ``block_until_ready``: on a shared machine interference hits them alike. Before
timing, the NumPy reference is checked against ``negotiate`` on a small case.

Before/after: ``--baseline-rev REV`` also times ``negotiate`` as it is at git revision REV (its
``svnr_jax/kernels.py`` and ``svnr_jax/negotiation.py``, read with ``git show``), interleaved with the current
code in the same process, and reports its ratio and its largest deviation from the current particles;
``--baseline-json PATH`` shows the ratios of an earlier results file next to the new ones.

Usage::

    python -m benchmarks.negotiate                   # the full grid, writes benchmarks/results/negotiate.json
    python -m benchmarks.negotiate --baseline-rev 11d8ef5     # ... with the kernels of that commit alongside
    python -m benchmarks.negotiate --quick --out /tmp/n.json
    python -m benchmarks.negotiate --M 64 --N 6 --d 3 --breakdown            # where the time goes
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import numpy_negotiate as npn
from svnr_jax import negotiate, topology_mask
from svnr_jax.kernels import masked_svgd_direction, median_bandwidth
from svnr_jax.negotiation import TOPOLOGIES

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "negotiate.json"
STATE_DIM = 8
HIDDEN = 64
ALPHA = 1.0
STEP_SIZE = 0.05
BREAKDOWN_UNITLESS = ("ratio_direction_vs_scores", "ratio_fixed_bandwidth_vs_scores")


# --------------------------------------------------------------------------- the critic (JAX side)


def critic_q(u: jax.Array, state: jax.Array, params: npn.MLPParams) -> jax.Array:
    """``Q(s, u)`` for ONE state ``[S]`` and ONE joint action ``[N, d]``: 2×64 tanh MLP, scalar out."""
    x = jnp.concatenate([state, u.reshape(-1)])
    h1 = jnp.tanh(x @ params.w1 + params.b1)
    h2 = jnp.tanh(h1 @ params.w2 + params.b2)
    return (h2 @ params.w3 + params.b3)[0]


def log_prob(u: jax.Array, state: jax.Array, params: npn.MLPParams) -> jax.Array:
    """``log π*(u | s) = Q(s, u) / α`` up to a constant (the log-density handed to ``negotiate``)."""
    return critic_q(u, state, params) / ALPHA


def make_negotiate_batch(
    num_rounds: int, step_size: float, topology: str = "nested", tol: float = 0.0, negotiate_fn: Callable = negotiate
) -> Callable:
    """Jitted ``(params, states [B, S], particles [B, M, N, d]) -> NegotiationResult`` (vmap over states);
    ``negotiate_fn`` replaces ``svnr_jax.negotiate`` (the baseline revision's, see :func:`negotiate_at_revision`)."""

    def one(state, parts, params):
        return negotiate_fn(
            log_prob,
            parts,
            topology=topology,
            num_rounds=num_rounds,
            step_size=step_size,
            tol=tol,
            args=(state, params),
        )

    return jax.jit(lambda params, states, particles: jax.vmap(one, in_axes=(0, 0, None))(states, particles, params))


def make_score_batch() -> Callable:
    """Jitted ``(params, states [B, S], particles [B, M, N, d]) -> scores [B, M, N, d]``."""
    per_state = jax.vmap(jax.grad(log_prob), in_axes=(0, None, None))
    batched = jax.vmap(per_state, in_axes=(0, 0, None))
    return jax.jit(lambda params, states, particles: batched(particles, states, params))


# --------------------------------------------------------------------------- timing helpers


def time_jitted(fn: Callable, *args: Any, repeats: int) -> dict[str, float]:
    """Compile time apart from run time: lower+compile, one warm-up call, then ``repeats`` timed calls.

    Returns ``compile_s``, ``run_s`` (the fastest call: the machine may be shared, and interference only
    adds time) and ``run_median_s``.
    """
    return time_interleaved({"fn": (fn, args)}, repeats=repeats)["fn"]


def time_interleaved(fns: dict[str, tuple[Callable, tuple]], *, repeats: int) -> dict[str, dict[str, float]]:
    """:func:`time_jitted` for several jitted functions at once: each is compiled and warmed up, then the timed
    calls alternate between them (``repeats`` rounds of one call each), so that load from other processes
    affects them alike. Returns ``{name: {compile_s, run_s, run_median_s}}``."""
    compiled, out = {}, {}
    for name, (fn, args) in fns.items():
        t0 = time.perf_counter()
        compiled[name] = fn.lower(*args).compile()
        out[name] = {"compile_s": time.perf_counter() - t0}
        jax.block_until_ready(compiled[name](*args))  # warm-up
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, (_, args) in fns.items():
            t0 = time.perf_counter()
            jax.block_until_ready(compiled[name](*args))
            times[name].append(time.perf_counter() - t0)
    for name, ts in times.items():
        out[name].update(run_s=float(np.min(ts)), run_median_s=float(np.median(ts)))
    return out


def negotiate_at_revision(rev: str) -> Callable:
    """``negotiate`` as of git revision ``rev``: that revision's ``svnr_jax/kernels.py`` and
    ``svnr_jax/negotiation.py`` (read with ``git show``, nothing checked out), loaded as private modules next to
    the current package (the rest of ``svnr_jax`` is shared)."""
    root = Path(__file__).resolve().parent.parent
    tag = re.sub(r"\W", "_", rev)

    def module(path: str, name: str, replace: tuple[str, str] | None = None) -> types.ModuleType:
        text = subprocess.run(
            ["git", "-C", str(root), "show", f"{rev}:{path}"], capture_output=True, text=True, check=True
        ).stdout
        if replace:
            text = text.replace(*replace)
        mod = types.ModuleType(name)
        mod.__file__ = f"{rev}:{path}"
        sys.modules[name] = mod
        exec(compile(text, mod.__file__, "exec"), mod.__dict__)
        return mod

    kernels = module("svnr_jax/kernels.py", f"_baseline_kernels_{tag}")
    negotiation = module(
        "svnr_jax/negotiation.py",
        f"_baseline_negotiation_{tag}",
        ("from svnr_jax.kernels import", f"from {kernels.__name__} import"),
    )
    return negotiation.negotiate


def time_numpy(fn: Callable, repeats: int) -> dict[str, float]:
    """Fastest and median wall time of ``fn()`` over ``repeats`` calls (NumPy has no compile step)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"run_s": float(np.min(times)), "run_median_s": float(np.median(times))}


def device_info() -> dict[str, Any]:
    dev = jax.devices()[0]
    return {
        "platform": dev.platform,
        "device_kind": dev.device_kind,
        "num_devices": jax.device_count(),
        "jax": jax.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
        "loadavg_1_5_15_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def make_problem(seed: int, batch: int, m: int, n: int, d: int, dtype=np.float32, hidden: int = HIDDEN):
    """Random critic params (``hidden`` units per layer), states ``[B, S]`` and initial particles ``[B, M, N, d]``
    (NumPy arrays)."""
    rng = np.random.default_rng(seed)
    params = npn.init_mlp(rng, STATE_DIM + n * d, hidden, dtype)
    states = rng.normal(size=(batch, STATE_DIM)).astype(dtype)
    particles = rng.normal(size=(batch, m, n, d)).astype(dtype)
    return params, states, particles


# --------------------------------------------------------------------------- NumPy vs JAX check


def check_numpy_matches_jax(
    seed: int = 0,
    *,
    batch: int = 3,
    m: int = 8,
    n: int = 3,
    d: int = 2,
    num_rounds: int = 8,
    step_size: float = 0.3,
    topology: str = "nested",
    tol: float = 0.0,
) -> dict[str, float]:
    """Max abs differences between the NumPy reference and ``negotiate`` on a small float32 case.

    Also returns the largest particle displacement (so a check cannot pass by nothing moving) and the
    number of states whose ``rounds_used`` / ``converged`` differ (non-zero only matters with ``tol > 0``).
    """
    params, states, particles = make_problem(seed, batch, m, n, d)
    mask = topology_mask(topology, n)
    ref = npn.negotiate_numpy(
        params, states, particles, mask, num_rounds=num_rounds, step_size=step_size, alpha=ALPHA, tol=tol
    )
    jparams = jax.tree.map(jnp.asarray, params)
    out = make_negotiate_batch(num_rounds, step_size, topology, tol)(
        jparams, jnp.asarray(states), jnp.asarray(particles)
    )
    scores = make_score_batch()(jparams, jnp.asarray(states), jnp.asarray(particles))
    return {
        "particles_max_abs_diff": float(np.max(np.abs(np.asarray(out.particles) - ref.particles))),
        "max_phi_norm_max_abs_diff": float(np.max(np.abs(np.asarray(out.max_phi_norm) - ref.max_phi_norm))),
        "scores_max_abs_diff": float(
            np.max(np.abs(np.asarray(scores) - npn.critic_scores(params, states, particles, ALPHA)))
        ),
        "particles_max_abs_displacement": float(np.max(np.abs(ref.particles - particles))),
        "rounds_used_mismatches": int(np.sum(np.asarray(out.rounds_used) != ref.rounds_used)),
        "converged_mismatches": int(np.sum(np.asarray(out.converged) != ref.converged)),
    }


# --------------------------------------------------------------------------- the benchmark


def bench_one(
    m: int,
    n: int,
    d: int,
    *,
    batch: int,
    num_rounds: int,
    repeats: int,
    numpy_states: int,
    numpy_repeats: int,
    topology: str,
    seed: int,
    baseline: Callable | None = None,
    hidden: int = HIDDEN,
) -> dict[str, Any]:
    params, states, particles = make_problem(seed, batch, m, n, d, hidden=hidden)
    jparams = jax.tree.map(jnp.asarray, params)
    jstates, jparts = jnp.asarray(states), jnp.asarray(particles)
    args = (jparams, jstates, jparts)

    fns = {
        "negotiate": (make_negotiate_batch(num_rounds, STEP_SIZE, topology), args),
        "scores": (make_score_batch(), args),
    }
    if baseline is not None:
        fns["baseline"] = (make_negotiate_batch(num_rounds, STEP_SIZE, topology, negotiate_fn=baseline), args)
    timed = time_interleaved(fns, repeats=repeats)
    neg, sco = timed["negotiate"], timed["scores"]

    mask = topology_mask(topology, n)
    nb = min(numpy_states, batch)
    np_s = time_numpy(
        lambda: npn.negotiate_numpy(
            params, states[:nb], particles[:nb], mask, num_rounds=num_rounds, step_size=STEP_SIZE, alpha=ALPHA, tol=0.0
        ),
        numpy_repeats,
    )
    jax_per_neg = neg["run_s"] / batch
    numpy_per_neg = np_s["run_s"] / nb
    row = {
        "M": m,
        "N": n,
        "d": d,
        "K": num_rounds,
        "batch": batch,
        "compile_s": neg["compile_s"],
        "run_s": neg["run_s"],
        "run_median_s": neg["run_median_s"],
        "negotiations_per_s": batch / neg["run_s"],
        "score_compile_s": sco["compile_s"],
        "score_run_s": sco["run_s"],
        "score_run_median_s": sco["run_median_s"],
        "ratio_vs_scores": neg["run_s"] / (num_rounds * sco["run_s"]),
        "ratio_vs_scores_median": neg["run_median_s"] / (num_rounds * sco["run_median_s"]),
        "numpy_states": nb,
        "numpy_run_s": np_s["run_s"],
        "numpy_run_median_s": np_s["run_median_s"],
        "numpy_negotiations_per_s": 1.0 / numpy_per_neg,
        "speedup_vs_numpy": numpy_per_neg / jax_per_neg,
    }
    if baseline is not None:
        base = timed["baseline"]
        ours = fns["negotiate"][0](*args).particles
        theirs = fns["baseline"][0](*args).particles
        row.update(
            baseline_run_s=base["run_s"],
            baseline_run_median_s=base["run_median_s"],
            baseline_ratio_vs_scores=base["run_s"] / (num_rounds * sco["run_s"]),
            baseline_ratio_vs_scores_median=base["run_median_s"] / (num_rounds * sco["run_median_s"]),
            speedup_vs_baseline_median=base["run_median_s"] / neg["run_median_s"],
            baseline_particles_max_abs_diff=float(jnp.max(jnp.abs(ours - theirs))),
        )
    return row


# --------------------------------------------------------------------------- profiling one round


def make_scan_batch(direction_fn: Callable, num_rounds: int, step_size: float, mask: Any) -> Callable:
    """K plain Jacobi rounds ``u += ε direction(u, scores(u))`` in a scan, vmapped over states (no diagnostics,
    no convergence check, no non-finite guard)."""
    score = jax.vmap(jax.grad(log_prob), in_axes=(0, None, None))

    def one(state, u, params):
        def body(u, _):
            return u + step_size * direction_fn(u, score(u, state, params), mask), None

        return jax.lax.scan(body, u, None, length=num_rounds)[0]

    return jax.jit(lambda params, states, particles: jax.vmap(one, in_axes=(0, 0, None))(states, particles, params))


def set_sq_dists(u: jax.Array, mask: np.ndarray) -> jax.Array:
    """``[N, M, M]`` squared distances on each agent's negotiation-set coordinates (what the kernel builds)."""
    per_agent = jnp.sum((u[None, :, :, :] - u[:, None, :, :]) ** 2, axis=-1)  # [M, M, N]
    return jnp.einsum("mlj,ij->iml", per_agent, jnp.asarray(mask, u.dtype))


def breakdown(
    m: int, n: int, d: int, *, batch: int, num_rounds: int, repeats: int, topology: str, seed: int,
    hidden: int = HIDDEN,
) -> dict[str, Any]:
    """Run times (s, fastest of ``repeats``, interleaved) of the pieces of one round on the batch, and of
    K-round scans with the library's direction, with a fixed bandwidth (no median) and with the scores alone."""
    params, states, particles = make_problem(seed, batch, m, n, d, hidden=hidden)
    args = (jax.tree.map(jnp.asarray, params), jnp.asarray(states), jnp.asarray(particles))
    jparts = args[2]
    mask = topology_mask(topology, n)
    scores = make_score_batch()(*args)
    sq = jax.jit(jax.vmap(lambda u: set_sq_dists(u, mask)))(jparts)
    direction = lambda u, s, mk: masked_svgd_direction(u, s, mk)  # noqa: E731
    fixed_bandwidth = lambda u, s, mk: masked_svgd_direction(u, s, mk, bandwidth=1.0)  # noqa: E731
    pieces = {
        "scores": (make_score_batch(), args),
        "direction": (jax.jit(jax.vmap(lambda u, s: masked_svgd_direction(u, s, mask))), (jparts, scores)),
        "direction_fixed_bandwidth": (
            jax.jit(jax.vmap(lambda u, s: masked_svgd_direction(u, s, mask, bandwidth=1.0))),
            (jparts, scores),
        ),
        "median_bandwidth": (jax.jit(jax.vmap(lambda q: median_bandwidth(q, m, symmetric=True))), (sq,)),
        "negotiate_K": (make_negotiate_batch(num_rounds, STEP_SIZE, topology), args),
        "scan_direction_K": (make_scan_batch(direction, num_rounds, STEP_SIZE, mask), args),
        "scan_fixed_bandwidth_K": (make_scan_batch(fixed_bandwidth, num_rounds, STEP_SIZE, mask), args),
        "scan_scores_only_K": (make_scan_batch(lambda u, s, mk: s, num_rounds, STEP_SIZE, mask), args),
    }
    timed = time_interleaved(pieces, repeats=repeats)
    out: dict[str, Any] = {name: t["run_s"] for name, t in timed.items()}
    out["ratio_direction_vs_scores"] = out["direction"] / out["scores"]
    out["ratio_fixed_bandwidth_vs_scores"] = out["direction_fixed_bandwidth"] / out["scores"]
    return out


def format_table(rows: Sequence[dict[str, Any]], baseline: dict[tuple[int, int, int], dict] | None = None) -> str:
    """The results table; with a baseline (``--baseline-rev`` rows carry one, ``--baseline-json`` passes one)
    a column ``before -> after`` of the median-based ratio."""
    has_before = baseline is not None or any("baseline_ratio_vs_scores_median" in r for r in rows)
    head = (
        f"{'M':>3} {'N':>2} {'d':>2} | {'compile s':>9} {'run ms':>9} {'negot/s':>10} | {'score ms':>8} "
        f"{'ratio min/med':>13}"
        + (f" {'before -> after (med)':>22}" if has_before else "")
        + f" | {'numpy negot/s':>13} {'vs numpy':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        line = (
            f"{r['M']:>3} {r['N']:>2} {r['d']:>2} | {r['compile_s']:>9.2f} {1e3 * r['run_median_s']:>9.2f} "
            f"{r['batch'] / r['run_median_s']:>10.0f} | {1e3 * r['score_run_median_s']:>8.3f} "
            f"{r['ratio_vs_scores']:>6.2f}/{r['ratio_vs_scores_median']:<6.2f}"
        )
        if has_before:
            before = r.get("baseline_ratio_vs_scores_median")
            if before is None and baseline is not None:
                old = baseline.get((r["M"], r["N"], r["d"]))
                before = None if old is None else old.get("ratio_vs_scores_median", old.get("ratio_vs_scores"))
            text = "n/a" if before is None else f"{before:.2f} -> {r['ratio_vs_scores_median']:.2f}"
            line += f" {text:>22}"
        line += f" | {r['numpy_negotiations_per_s']:>13.1f} {r['speedup_vs_numpy']:>7.1f}x"
        lines.append(line)
    return "\n".join(lines)


def load_baseline_json(path: Path) -> dict[tuple[int, int, int], dict]:
    """Rows of an earlier results file, keyed by (M, N, d)."""
    rows = json.loads(Path(path).read_text())["results"]
    return {(r["M"], r["N"], r["d"]): r for r in rows}


def _grid_point(text: str) -> tuple[int, int, int]:
    try:
        m, n, d = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected M,N,d (three ints), got {text!r}") from None
    return m, n, d


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--M", type=int, nargs="+", default=[16, 32, 64], help="particle counts (default 16 32 64)")
    p.add_argument("--N", type=int, nargs="+", default=[2, 4, 6], help="agent counts (default 2 4 6)")
    p.add_argument("--d", type=int, nargs="+", default=[1, 3], help="per-agent action dims (default 1 3)")
    p.add_argument("--K", type=int, default=10, help="negotiation rounds (default 10)")
    p.add_argument("--batch", type=int, default=256, help="states per batch (default 256)")
    p.add_argument("--hidden", type=int, default=HIDDEN,
                   help=f"critic units per hidden layer (default {HIDDEN}; the MaMuJoCo presets use 256)")
    p.add_argument("--topology", default="nested", choices=TOPOLOGIES, help="negotiation topology (default nested)")
    p.add_argument(
        "--repeats", type=int, default=5, help="timed JAX calls per measurement; fastest and median kept (default 5)"
    )
    p.add_argument(
        "--numpy-states",
        type=int,
        default=32,
        help="states the NumPy reference runs on, scaled per negotiation (default 32)",
    )
    p.add_argument("--numpy-repeats", type=int, default=2, help="timed NumPy calls; fastest reported (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--quick", action="store_true", help="tiny grid (M=8, N=2, d=1, K=3, batch 8, 2 repeats) for tests / smoke runs"
    )
    p.add_argument(
        "--breakdown",
        nargs="*",
        type=_grid_point,
        default=None,
        metavar="M,N,d",
        help="also time the pieces of one round (scores, directions, median, K-round scans);\n"
        "with no value at every grid point, else only at the given points, e.g. --breakdown 16,2,3 64,6,3",
    )
    p.add_argument(
        "--baseline-rev",
        default=None,
        metavar="REV",
        help="also time negotiate as of this git revision (its kernels.py and negotiation.py), interleaved",
    )
    p.add_argument(
        "--baseline-json",
        type=Path,
        default=None,
        metavar="PATH",
        help="an earlier results JSON whose ratios are shown as 'before' (rows matched on M, N, d)",
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON output path (default {DEFAULT_OUT})")
    args = p.parse_args(argv)
    if args.quick:
        args.M, args.N, args.d, args.K, args.batch, args.repeats = [8], [2], [1], 3, 8, 2
        args.numpy_states, args.numpy_repeats = 8, 1
    for name in ("M", "N", "d"):
        vals = getattr(args, name)
        low = 2 if name == "M" else 1
        if any(v < low for v in vals):
            p.error(f"--{name} values must be >= {low}; got {vals}")
    if min(args.K, args.batch, args.repeats, args.numpy_states, args.numpy_repeats, args.hidden) < 1:
        p.error("--K, --batch, --repeats, --numpy-states, --numpy-repeats and --hidden must be >= 1")
    return args


def _git_revision(rev: str | None = None) -> str | None:
    """``git describe --always --dirty`` of the checkout, or ``git rev-parse --short rev`` (None outside git)."""
    command = ["describe", "--always", "--dirty"] if rev is None else ["rev-parse", "--short", rev]
    try:
        out = subprocess.run(
            ["git", "-C", str(Path(__file__).resolve().parent.parent), *command],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    device = device_info()  # before the runs: the load average says whether others share the machine
    check = check_numpy_matches_jax(args.seed)
    print(f"NumPy reference vs negotiate (small case): {check}")
    if check["particles_max_abs_diff"] > 1e-4:
        raise RuntimeError(f"NumPy reference disagrees with negotiate: {check}")
    baseline_fn = None if args.baseline_rev is None else negotiate_at_revision(args.baseline_rev)
    baseline_rows = None if args.baseline_json is None else load_baseline_json(args.baseline_json)

    rows = []
    print(format_table([], baseline_rows if baseline_fn is None else {}), flush=True)
    for m in args.M:
        for n in args.N:
            for d in args.d:
                row = bench_one(
                    m,
                    n,
                    d,
                    batch=args.batch,
                    num_rounds=args.K,
                    repeats=args.repeats,
                    numpy_states=args.numpy_states,
                    numpy_repeats=args.numpy_repeats,
                    topology=args.topology,
                    seed=args.seed,
                    baseline=baseline_fn,
                    hidden=args.hidden,
                )
                if args.breakdown is not None and (not args.breakdown or (m, n, d) in args.breakdown):
                    row["breakdown"] = breakdown(
                        m,
                        n,
                        d,
                        batch=args.batch,
                        num_rounds=args.K,
                        repeats=args.repeats,
                        topology=args.topology,
                        seed=args.seed,
                        hidden=args.hidden,
                    )
                rows.append(row)
                print(format_table([row], baseline_rows).splitlines()[-1], flush=True)
                if "breakdown" in row:
                    bd = row["breakdown"]
                    ms = ", ".join(f"{k}={1e3 * v:.2f}" for k, v in bd.items() if k not in BREAKDOWN_UNITLESS)
                    extra = ", ".join(f"{k}={bd[k]:.3g}" for k in BREAKDOWN_UNITLESS)
                    print(f"    breakdown (fastest of repeats, ms): {ms}; {extra}", flush=True)

    result = {
        "benchmark": "negotiate",
        "device": device,
        "config": {
            "K": args.K,
            "batch": args.batch,
            "topology": args.topology,
            "order": "jacobi",
            "step_size": STEP_SIZE,
            "tol": 0.0,
            "alpha": ALPHA,
            "critic": f"MLP [{STATE_DIM}+N*d] -> {args.hidden} -> {args.hidden} -> 1, tanh",
            "repeats": args.repeats,
            "numpy_states": args.numpy_states,
            "numpy_repeats": args.numpy_repeats,
            "dtype": "float32",
            "seed": args.seed,
            "quick": args.quick,
            "timing": (
                "compile = lower+compile; after a warm-up each, negotiate / scores (/ baseline) timed interleaved,"
                " block_until_ready; run = fastest of repeats, *_median_s = median"
            ),
            "revision": _git_revision(),
            "baseline_rev": args.baseline_rev,
            "baseline_commit": None if args.baseline_rev is None else _git_revision(args.baseline_rev),
            "baseline_json": None if args.baseline_json is None else str(args.baseline_json),
            "numpy_scaling": "NumPy runs on numpy_states states; its time is divided by that count",
        },
        "numpy_check": check,
        "results": rows,
    }
    if hasattr(os, "getloadavg"):
        result["device"]["loadavg_1_5_15_at_end"] = list(os.getloadavg())
    print()
    print(
        f"device: {result['device']['platform']} ({result['device']['device_kind']}), K={args.K}, "
        f"batch={args.batch}, topology={args.topology}; NumPy on {min(args.numpy_states, args.batch)} states; "
        f"load average at start/end {device.get('loadavg_1_5_15_at_start')} / {device.get('loadavg_1_5_15_at_end')}"
    )
    print(format_table(rows, baseline_rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
