"""Hyperparameter sweeps as one compiled program: a grid of an algorithm's shape-free hyperparameters × seeds.

The hyperparameters named in the grid become traced inputs: the agent is built inside the traced function from a
config whose swept fields hold tracers, so every grid point and seed runs in ONE jitted, vmapped program
(compiled once; sharded over devices, padded to a multiple of them). Which fields can be swept is decided by
tracing, not by a list: a float field of the algorithm's config is sweepable unless the algorithm uses its value in
Python (a branch, a NumPy constant); such fields, and int/bool/str/tuple fields (sizes, particle counts, modes:
they change shapes or the program), are refused with a message saying why — run them as separate programs.

    grid = parse_grid(["policy_lr=1e-4,3e-4,1e-3", "alpha_min=0.05,0.1"])
    res = run_sweep(preset("max_of_three", "svnr", num_seeds=10), grid, out_dir="runs/sweep")

Every grid point uses the same seed keys (``training.seed_keys``: common random numbers across points). Results
per point: the final in-scan evaluation of the algorithm's test mode per seed, its IQM with a 95 % bootstrap CI,
mean ± std; ``sweep.json``, ``sweep.md`` and ``sweep.png`` in ``out_dir``, where every chunk is also checkpointed
(``resume=True`` / ``svnr sweep --resume`` continues an interrupted sweep).

Several processes (:mod:`svnr_jax.distributed`): the rows (point × seed) are sharded over every process's devices;
each process writes the rows it holds to ``sweep.p<k>.json``, and after a barrier :func:`merge_slices` builds the
one result from them (process 0 writes it): the same as a single-process run of the sweep.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import signal
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from svnr_jax import checkpoint, distributed, runner, training
from svnr_jax.algorithms.base import get_algorithm
from svnr_jax.config import TrainConfig, to_dict, training_differences, validate
from svnr_jax.envs import make
from svnr_jax.envs.wrappers import RescaleActions, wrap_for_training
from svnr_jax.stats import summarize


def parse_grid(items: list[str]) -> dict[str, tuple[float, ...]]:
    """``["name=v1,v2", ...]`` → ``{name: (v1, v2)}``; a clear ``ValueError`` for a malformed item."""
    grid: dict[str, tuple[float, ...]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        if not sep or not name or not values:
            raise ValueError(f"bad grid item {item!r}: expected name=value1,value2,...")
        try:
            vals = tuple(float(v) for v in values.split(","))
        except ValueError:
            raise ValueError(f"bad grid item {item!r}: values must be numbers") from None
        if name in grid:
            raise ValueError(f"grid field {name!r} given twice")
        grid[name.strip()] = vals
    if not grid:
        raise ValueError("empty grid: give at least one name=value1,value2,...")
    return grid


def grid_points(grid: dict[str, tuple[float, ...]]) -> list[dict[str, float]]:
    """The Cartesian product of the grid, in order (the last field varies fastest)."""
    names = list(grid)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(grid[n] for n in names))]


def _setup(config: TrainConfig, base_env, algo_config) -> training.Setup:
    """A :class:`training.Setup` with an agent built from ``algo_config`` (whose fields may hold tracers; it was
    checked with concrete values before)."""
    _, agent_cls = get_algorithm(config.algo)
    agent = agent_cls(base_env.spec, algo_config, config.iterations)
    return training.Setup(config, wrap_for_training(base_env, config.num_envs), RescaleActions(base_env), agent)


def check_grid(config: TrainConfig, grid: dict[str, tuple[float, ...]]) -> list[str]:
    """Validate a grid for ``config``: every field exists in the algorithm's config, is a float field, can be
    traced (the algorithm does not use its value in Python), and every point is a valid config.

    Returns:
      the swept field names, in grid order.
    Raises:
      ValueError: naming the field or point and why.
    """
    validate(config)
    ac = config.algo_config
    fields = {f.name: f for f in dataclasses.fields(ac)}
    for name in grid:
        if name not in fields:
            raise ValueError(f"{name!r} is not a field of {config.algo}'s config; fields: {sorted(fields)}")
        value = getattr(ac, name)
        if not isinstance(value, float):
            raise ValueError(f"{config.algo}'s {name}={value!r} is of type {type(value).__name__}: it changes shapes "
                             "or the program's structure, so it cannot be a traced value in one program; run one "
                             "sweep per value instead")
    for point in grid_points(grid):
        try:
            validate(dataclasses.replace(config, algo_config=dataclasses.replace(ac, **point)))
        except ValueError as e:
            raise ValueError(f"grid point {point}: {e}") from None
    base_env = make(config.env, **config.env_kwargs)
    for name in grid:  # a field the algorithm reads in Python cannot be traced: find out by tracing
        def one(v, key, name=name):
            setup = _setup(config, base_env, dataclasses.replace(ac, **{name: v}))
            return training.period(setup, training.init(setup, key))[0].iteration

        try:
            jax.eval_shape(one, jnp.float32(getattr(ac, name)), jax.random.key(0))
        except (jax.errors.ConcretizationTypeError, jax.errors.TracerBoolConversionError,
                jax.errors.TracerArrayConversionError, jax.errors.TracerIntegerConversionError) as e:
            raise ValueError(f"{config.algo}'s {name} is used in Python by the algorithm (not a traced value: "
                             f"{type(e).__name__}); sweep it as separate programs") from None
    return list(grid)


def make_sweep(config: TrainConfig, names: list[str], sharding=None):
    """``init(values [R, F], keys [R]) -> TrainState`` and ``chunk(values, state) -> (state, (metrics, evals))``
    over R = points × seeds rows (F = swept fields, in ``names`` order), the rows vectorised as
    ``config.seed_batch`` says (:func:`svnr_jax.training.over_seeds`; ``sharding``: the rows' sharding)."""
    base_env = make(config.env, **config.env_kwargs)

    def setup_for(vals):
        return _setup(config, base_env, dataclasses.replace(config.algo_config,
                                                            **{n: vals[i] for i, n in enumerate(names)}))

    def init(vals, key):
        return training.init(setup_for(vals), key)

    def chunk(vals, ts):
        return training.chunk(setup_for(vals), ts)

    return (training.over_seeds(init, config.seed_batch, sharding),
            training.over_seeds(chunk, config.seed_batch, sharding))


class SweepResumeError(ValueError):
    """``out_dir`` holds another sweep's checkpoints, or checkpoints without ``resume``, or none with it."""


class SweepInterrupted(Exception):
    """SIGINT/SIGTERM stopped a checkpointed sweep after a chunk; its message says what was saved."""


def run_sweep(config: TrainConfig, grid: dict[str, tuple[float, ...]], *, out_dir: str | None = None,
              progress: bool = True, resume: bool = False, handle_signals: bool = True) -> dict[str, Any]:
    """Train every grid point × ``config.num_seeds`` seeds as one program (chunked, progress per chunk) and
    summarise the final test-mode evaluation per point.

    With ``out_dir``, the state of every row and the evaluations so far are checkpointed after each chunk
    (``out_dir/checkpoints``, orbax, the newest ``config.keep_checkpoints`` kept; the replay buffers unless
    ``config.checkpoint_buffer`` is False); an interrupted sweep loses at most the chunk in progress and continues
    with ``resume=True`` (the same config and grid; execution-only fields such as ``seed_batch`` may change).
    There (and with ``handle_signals``), SIGINT/SIGTERM end the sweep after the current chunk and its checkpoint
    (:class:`SweepInterrupted`); a second signal stops at once.

    Returns:
      ``{"algo", "env", "fields", "points": [{point, per_seed, summary, curve}], "wall_seconds", ...}`` (also
      written to ``out_dir``).
    Raises:
      SweepResumeError: ``out_dir`` has checkpoints and ``resume`` is False, ``resume`` without checkpoints, or
        checkpoints of another config or grid. SweepInterrupted: a signal, after the checkpoint it names.
    """
    names = check_grid(config, grid)
    points = grid_points(grid)
    multi = distributed.process_count() > 1
    if multi and not out_dir:
        raise ValueError("a multi-process sweep needs out_dir (a folder every process sees): the processes' slices "
                         "of the results are merged through it")
    if resume and not out_dir:
        raise SweepResumeError("resume needs out_dir (the folder of the sweep to continue)")
    p, s = len(points), config.num_seeds
    values = np.repeat(np.array([[pt[n] for n in names] for pt in points], np.float32), s, axis=0)  # [P*S, F]
    keys = jnp.concatenate([training.seed_keys(config)] * p)  # point-major: row r = point r // S, seed r % S
    rows = p * s
    padded = training.padded_seeds(rows)
    sharding = training.seed_sharding(rows)
    by_row = training.Trainer(None, None, None, sharding, rows, padded)  # its real()/pad(): drop/restore padding
    # padding rows repeat the last real row; placed on the row sharding (several processes: global arrays, each
    # process filling its own devices' rows)
    values, keys = by_row.pad((jnp.asarray(values), keys))
    v_init, v_chunk = make_sweep(config, names, sharding)
    if sharding is None:
        j_init, j_chunk = jax.jit(v_init), jax.jit(v_chunk, donate_argnums=1)
    else:
        j_init = jax.jit(v_init, in_shardings=(sharding, sharding), out_shardings=sharding)
        j_chunk = jax.jit(v_chunk, in_shardings=(sharding, sharding), out_shardings=sharding, donate_argnums=1)
    _, agent_cls = get_algorithm(config.algo)
    mode = agent_cls.test_mode
    t0 = time.time()
    state = j_init(values, keys)
    n_chunks = config.iterations // config.chunk_iterations
    evals: list[dict[str, np.ndarray]] = []  # per chunk: {"iteration", "ret"} [rows, E_chunk], on every process
    manager, start = None, 0
    if out_dir:
        identity = {"config": to_dict(config), "grid": {n: [float(v) for v in grid[n]] for n in names}}
        manager = checkpoint.manager(out_dir, max_to_keep=config.keep_checkpoints)
        state, start, evals = _resume(manager, out_dir, state, by_row, identity, resume=resume, algo=config.algo)
    skip = () if config.checkpoint_buffer else ("buffer.",)
    stop: dict = {"signal": None}
    with contextlib.ExitStack() as stack:
        if manager is not None:
            stack.callback(manager.close)
            stack.enter_context(runner.stop_on_signals(handle_signals, stop))
        for k in range(start, n_chunks):
            if manager is not None and (sig := runner.agreed_signal(stop)) is not None:
                saved = f"its last checkpoint (chunk {k}) is kept" if k else "no checkpoint was written"
                raise SweepInterrupted(f"received {signal.Signals(sig).name} before chunk {k + 1} of {n_chunks}; "
                                       f"{saved} in {out_dir}; continue with --resume (resume=True)")
            state, (_, ev) = j_chunk(values, state)
            ev = distributed.gather({"iteration": ev["eval_iteration"], "ret": ev[f"eval_{mode}"]})  # all processes
            evals.append({n: np.asarray(x)[:rows] for n, x in ev.items()})
            if manager is not None:
                history = {n: np.concatenate([e[n] for e in evals], axis=1).tolist() for n in ("iteration", "ret")}
                checkpoint.save(manager, k + 1, by_row.real(state), algo=config.algo,
                                meta={"sweep": identity, "evals": history}, skip=skip)
            if progress and distributed.is_primary():
                best = np.nanmax(np.mean(evals[-1]["ret"][:, -1].reshape(p, s), axis=1))
                print(f"sweep {config.algo} on {config.env}: chunk {k + 1}/{n_chunks}, {time.time() - t0:.0f} s, "
                      f"best point's mean {mode} return {best:.3f}", file=sys.stderr, flush=True)
            if manager is not None and k + 1 < n_chunks and (sig := runner.agreed_signal(stop)) is not None:
                raise SweepInterrupted(f"received {signal.Signals(sig).name}; saved checkpoint {k + 1} of {n_chunks} "
                                       f"in {out_dir}; continue with --resume (resume=True)")
    wall = time.time() - t0
    head = {"algo": config.algo, "env": config.env, "fields": names, "seeds": s, "test_mode": mode,
            "iterations": config.iterations, "wall_seconds": wall, "device": str(jax.devices()[0]),
            "num_devices": len(jax.devices()), "rows_padded": padded}
    its = np.concatenate([e["iteration"] for e in evals], axis=1)  # [rows, E]
    ret = np.concatenate([e["ret"] for e in evals], axis=1)  # [rows, E]
    if multi:  # each process writes the rows its devices hold
        own = sorted(r for r in distributed.local_rows(values) if r < rows)
        write_slice(out_dir, head, points, {r: {"iteration": its[r], "ret": ret[r]} for r in own})
        distributed.barrier("svnr-sweep-slices-written")
        result = merge_slices(out_dir)
        if distributed.is_primary():
            write_results(result, out_dir)
        return result
    result = _summarise(head, points, its[0], ret.reshape(p, s, -1))
    if out_dir:
        write_results(result, out_dir)
    return result


def _resume(manager, out_dir: str, state, by_row, identity: dict, *, resume: bool, algo: str):
    """``(state, chunks done, evaluations so far)``: the fresh ``state`` when starting, else the latest valid
    checkpoint of the same sweep in ``out_dir`` (see :func:`run_sweep`)."""
    latest = manager.latest_step()
    if latest is None:
        if resume:
            raise SweepResumeError(f"nothing to resume: {out_dir!r} has no sweep checkpoint")
        return state, 0, []
    if not resume:
        raise SweepResumeError(f"{out_dir!r} already holds a sweep's checkpoints (chunk {latest}): continue it with "
                               "--resume (resume=True) or choose another folder")
    stored = checkpoint.read_meta(manager, latest).get("sweep", {})
    if stored.get("grid") != identity["grid"]:
        raise SweepResumeError(f"resume: {out_dir!r} holds a sweep of another grid ({stored.get('grid')}); this one "
                               f"is {identity['grid']}")
    if diff := training_differences(stored["config"], identity["config"]):
        raise SweepResumeError(f"resume: the sweep in {out_dir!r} was trained with another config (differs in "
                               f"{diff}); start a new folder instead")
    real, step = checkpoint.restore(manager, by_row.real(state), algo=algo)
    history = checkpoint.read_meta(manager, step)["evals"]
    evals = [{n: np.asarray(history[n], np.float32 if n == "ret" else np.int32) for n in ("iteration", "ret")}]
    if distributed.is_primary():
        print(f"resuming the sweep in {out_dir} after chunk {step}", file=sys.stderr, flush=True)
    return by_row.pad(real), step, evals


def _summarise(head: dict, points: list[dict], its: np.ndarray, ret: np.ndarray) -> dict:
    """The sweep's result: ``head`` plus, per grid point, the final returns per seed, their summary and the mean
    curve (``its [E]``, ``ret [P, S, E]``)."""
    final = ret[:, :, -1]
    p = len(points)
    if not np.all(np.isfinite(final)) and distributed.is_primary():
        bad = [points[i] for i in range(p) if not np.all(np.isfinite(final[i]))]
        print(f"warning: non-finite final returns at grid points {bad}", file=sys.stderr)
    return {**head,
            "points": [{"point": points[i], "per_seed": [float(x) for x in final[i]],
                        "summary": summarize(final[i]) if np.all(np.isfinite(final[i])) else None,
                        "curve": {"iteration": [int(x) for x in its],
                                  "mean": [float(x) for x in np.mean(ret[i], axis=0)]}} for i in range(p)]}


def slice_path(out_dir: str, process: int) -> str:
    """Where process ``process`` of a multi-process sweep writes its rows: ``out_dir/sweep.p<process>.json``."""
    return os.path.join(out_dir, f"sweep.p{process}.json")


def write_slice(out_dir: str, head: dict, points: list[dict], own: dict[int, dict[str, np.ndarray]]) -> str:
    """Write this process's rows of a sweep (``{row: {"iteration": [E], "ret": [E]}}``, row = point × S + seed)
    with the sweep's description to :func:`slice_path` (through a temporary file and a rename). Returns the path."""
    os.makedirs(out_dir, exist_ok=True)
    k = distributed.process_index()
    dtype = str(next(iter(own.values()))["ret"].dtype) if own else "float32"
    body = {"process": k, "num_processes": distributed.process_count(), "sweep": head, "points": points,
            "dtype": dtype, "rows": {str(r): {"iteration": [int(x) for x in c["iteration"]],
                                              "ret": [float(x) for x in c["ret"]]} for r, c in sorted(own.items())}}
    path = slice_path(out_dir, k)
    with open(path + ".tmp", "w") as f:
        json.dump(body, f)
    os.replace(path + ".tmp", path)
    return path


def _read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def merge_slices(out_dir: str) -> dict:
    """The result of a multi-process sweep from its slices in ``out_dir`` (every ``sweep.p<k>.json``): the same dict
    :func:`run_sweep` returns in one process (plus ``num_processes``; ``wall_seconds`` = the slowest process's).

    Raises:
      FileNotFoundError: a process's slice is missing (``out_dir`` not shared by every host?). ValueError: slices of
        different sweeps, or rows missing or given twice.
    """
    def read(k: int) -> dict:
        path = slice_path(out_dir, k)
        if not os.path.exists(path):
            raise FileNotFoundError(f"the slice of process {k} ({path}) is missing: the sweep's folder must be one "
                                    "that every host writes to (a shared file system)")
        return _read_json(path)

    first = read(0)
    slices = [first] + [read(k) for k in range(1, first["num_processes"])]
    head, points = dict(first["sweep"]), first["points"]
    for sl in slices[1:]:
        other = {k: v for k, v in sl["sweep"].items() if k != "wall_seconds"}
        if other != {k: v for k, v in head.items() if k != "wall_seconds"} or sl["points"] != points:
            raise ValueError(f"slice of process {sl['process']} in {out_dir!r} belongs to another sweep")
    head["wall_seconds"] = max(sl["sweep"]["wall_seconds"] for sl in slices)
    head["num_processes"] = len(slices)
    p, s = len(points), head["seeds"]
    found: dict[int, dict] = {}
    for sl in slices:
        for r, c in sl["rows"].items():
            if int(r) in found:
                raise ValueError(f"row {r} of the sweep in {out_dir!r} is in two slices")
            found[int(r)] = c
    missing = sorted(set(range(p * s)) - set(found))
    if missing:
        raise ValueError(f"rows {missing[:10]} of the sweep in {out_dir!r} are in no slice")
    its = np.asarray(found[0]["iteration"])
    ret = np.stack([np.asarray(found[r]["ret"], first["dtype"]) for r in range(p * s)]).reshape(p, s, -1)
    return _summarise(head, points, its, ret)


def table(result: dict) -> str:
    """Markdown table: one row per grid point, IQM [95 % CI] and mean ± std of the final test-mode return."""
    names = result["fields"]
    lines = ["| " + " | ".join(names) + f" | IQM [95 % CI] ({result['test_mode']}) | mean ± std |",
             "|" + "---|" * (len(names) + 2)]
    for r in result["points"]:
        s = r["summary"]
        cells = [f"{r['point'][n]:g}" for n in names]
        stat = (f"{s['iqm']:.3f} [{s['iqm_ci_low']:.3f}, {s['iqm_ci_high']:.3f}] | {s['mean']:.3f} ± {s['std']:.3f}"
                if s else "non-finite | –")
        lines.append("| " + " | ".join(cells) + f" | {stat} |")
    lines.append("")
    procs = f" of {result['num_processes']} processes" if result.get("num_processes", 1) > 1 else ""
    lines.append(f"{result['algo']} on {result['env']}, {result['seeds']} seeds per point, {result['iterations']} "
                 f"iterations; one program, {result['wall_seconds']:.0f} s on {result['num_devices']} device(s)"
                 f"{procs}.")
    return "\n".join(lines)


def write_results(result: dict, out_dir: str) -> None:
    """``sweep.json``, ``sweep.md`` and ``sweep.png`` (IQM with its CI per grid point) in ``out_dir``."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "sweep.json"), "w") as f:
        json.dump(result, f, indent=1)
    with open(os.path.join(out_dir, "sweep.md"), "w") as f:
        f.write(table(result) + "\n")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    pts = [r for r in result["points"] if r["summary"]]
    fig = Figure(figsize=(max(4.0, 0.6 * len(pts) + 2), 3.6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(pts))
    iqm = np.array([r["summary"]["iqm"] for r in pts])
    lo = iqm - np.array([r["summary"]["iqm_ci_low"] for r in pts])
    hi = np.array([r["summary"]["iqm_ci_high"] for r in pts]) - iqm
    ax.errorbar(x, iqm, yerr=[lo, hi], fmt="o", capsize=3)
    ax.set_xticks(x)
    ax.set_xticklabels(["\n".join(f"{n}={r['point'][n]:g}" for n in result["fields"]) for r in pts], fontsize=7)
    ax.set_ylabel(f"final {result['test_mode']} return (IQM, 95 % CI)")
    ax.set_title(f"{result['algo']} on {result['env']}")
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "sweep.png"), dpi=90)


__all__ = ["SweepInterrupted", "SweepResumeError", "check_grid", "grid_points", "make_sweep", "merge_slices",
           "parse_grid", "run_sweep", "slice_path", "table", "write_results", "write_slice"]
