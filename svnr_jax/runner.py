"""The host side of a run: chunks, progress, metric files, checkpoints, signals, non-finite stop.

:func:`run` trains ``config.num_seeds`` seeds of any registered algorithm in chunks of C iterations
(the jitted ``init``/``chunk`` of :func:`svnr_jax.training.make_trainer`), writes the metrics the agent
returns, whatever their names (``metrics.csv``, ``metrics.jsonl``, ``eval.csv``, TensorBoard), saves an
orbax checkpoint per chunk (:mod:`svnr_jax.checkpoint`), resumes exactly, handles SIGINT/SIGTERM, and
stops on a non-finite loss (any metric whose name ends in ``loss``) or a non-finite env step (a NaN action,
reward or observation: ``nonfinite_steps`` > 0). :func:`load_run` and
:func:`evaluate_run` read a run folder back.

Several processes (after :func:`svnr_jax.distributed.initialize`): every process runs :func:`run` on the same
(shared) folder; process 0 alone locks it, writes ``config.json`` and the metric files (the metrics gathered from
all processes), every process writes its own shards of each checkpoint (orbax), and stopping (signals) is agreed
after each chunk. Details: ``docs/distributed.md``.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import shutil
import signal
import sys
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from svnr_jax import acting, checkpoint, distributed
from svnr_jax.config import TrainConfig, save_json
from svnr_jax.training import Trainer, TrainState, env_steps_per_iteration, make_trainer, seed_keys


def _complete_lines(path: str) -> list[str]:
    """The lines of a text file that end with a newline (a partial last line, cut by a kill, is dropped)."""
    with open(path, newline="") as f:
        lines = f.read().splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines = lines[:-1]
    return lines


def _atomic_write(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (a crash leaves the old or the new file)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class RunDirError(ValueError):
    """The run folder cannot be used as asked (it holds another run, is missing, is not writable)."""


#: What a run writes in its folder (``--overwrite`` removes exactly these).
RUN_FILES = ("config.json", "metrics.csv", "metrics.jsonl", "eval.csv", "eval.json", "tb", "checkpoints",
             "render.gif")


def prepare_run_dir(run_dir: str, *, resume: bool, overwrite: bool) -> None:
    """Check (and create) the run folder before anything is written.

    Raises:
      RunDirError: a run is already there (without ``resume``/``overwrite``), nothing is there to resume, or the
        folder cannot be created or written.
    """
    if resume and overwrite:
        raise RunDirError("--resume and --overwrite exclude each other")
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise RunDirError(f"run folder {run_dir!r} is a file")
    present = [n for n in RUN_FILES if os.path.exists(os.path.join(run_dir, n))]
    if resume:
        if not present:
            raise RunDirError(f"nothing to resume in {run_dir!r} (no run there); drop --resume to start a new run")
        return
    if present and not overwrite:
        raise RunDirError(f"run folder {run_dir!r} already holds a run ({', '.join(present)}); use --resume to "
                          "continue it or --overwrite to replace it")
    try:
        os.makedirs(run_dir, exist_ok=True)
        for n in present:  # --overwrite: the old run goes completely
            path = os.path.join(run_dir, n)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
        probe = os.path.join(run_dir, ".write_test")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as e:
        raise RunDirError(f"cannot write the run folder {run_dir!r}: {e.strerror or e}") from None


@contextlib.contextmanager
def run_dir_lock(run_dir: str):
    """Hold an exclusive lock on ``run_dir`` (``flock`` on ``run_dir/.lock``, released when the process ends, also
    by a kill) while a run writes there: a second process training into the same folder would interleave metric
    rows and checkpoints.

    Raises:
      RunDirError: another live process holds the folder (its pid is named), or the folder cannot be created.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock
        yield
        return
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise RunDirError(f"run folder {run_dir!r} is a file")
    try:
        os.makedirs(run_dir, exist_ok=True)
        f = open(os.path.join(run_dir, ".lock"), "a+")
    except OSError as e:
        raise RunDirError(f"cannot write the run folder {run_dir!r}: {e.strerror or e}") from None
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            raise RunDirError(f"run folder {run_dir!r} is in use by another process (pid {holder}); wait for it to "
                              "finish or stop it first") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        yield
    finally:
        f.close()  # releases the lock


@contextlib.contextmanager
def stop_on_signals(enabled: bool, stop: dict):
    """SIGINT/SIGTERM set ``stop["signal"]`` (the run or sweep ends after the current chunk, saved); a second one
    raises ``KeyboardInterrupt`` at once (the last checkpoint stays). The previous handlers come back on exit."""
    old = {}

    def handler(signum, frame):
        if stop["signal"] is not None:
            raise KeyboardInterrupt
        stop["signal"] = signum
        print(f"received {signal.Signals(signum).name}: finishing the current chunk, then saving (again to quit at "
              "once, keeping the last checkpoint)", file=sys.stderr, flush=True)

    if enabled:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                old[sig] = signal.signal(sig, handler)
            except ValueError:  # not in the main thread
                pass
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def agreed_signal(stop: dict) -> int | None:
    """The signal that stops the run: this process's, or with several processes any process's (a collective, so
    that all of them stop after the same chunk)."""
    if distributed.process_count() == 1:
        return stop["signal"]
    return distributed.agree_max(stop["signal"] or 0) or None


@contextlib.contextmanager
def _own_run_dir(run_dir: str, config: TrainConfig, *, resume: bool, overwrite: bool):
    """Lock and prepare ``run_dir`` (:func:`run_dir_lock`, :func:`prepare_run_dir`, the saved config checked
    against ``config`` on a resume) for the whole ``with`` block. Several processes: process 0 alone does it and the
    others learn whether it could (they raise :class:`RunDirError` too if not).

    Raises:
      RunDirError: as :func:`prepare_run_dir` and :func:`run_dir_lock`; a resume whose config differs.
    """
    from svnr_jax.config import load_json, training_differences

    def prepare(stack: contextlib.ExitStack) -> None:
        stack.enter_context(run_dir_lock(run_dir))
        prepare_run_dir(run_dir, resume=resume, overwrite=overwrite)
        cfg_path = os.path.join(run_dir, "config.json")
        if resume and os.path.exists(cfg_path) and (diff := training_differences(load_json(cfg_path), config)):
            raise RunDirError(f"resume: config differs from the one saved in {cfg_path} (in {diff})")

    with contextlib.ExitStack() as stack:
        if distributed.process_count() == 1:
            prepare(stack)
        else:
            error = None
            if distributed.is_primary():
                try:
                    prepare(stack)
                except RunDirError as e:
                    error = e
            if distributed.agree_max(int(error is not None)):
                raise error or RunDirError(f"process 0 could not use the run folder {run_dir!r} (its log says why)")
        yield


class RunResult(NamedTuple):
    """What :func:`run` returns.

    Attributes:
      status: ``"finished"``, ``"interrupted"`` (signal or ``max_chunks``) or ``"nonfinite"``.
      state: the last good :class:`TrainState` (seed-batched).
      chunks_done: chunks completed (and checkpointed).
      message: human-readable summary.
    """

    status: str
    state: Any
    chunks_done: int
    message: str


class _Progress:
    """A minimal text progress bar on stderr (one line per chunk; no host sync inside the scan)."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled, self.t0 = total, enabled, time.time()

    def update(self, done: int, info: str) -> None:
        if not self.enabled:
            return
        frac = done / max(self.total, 1)
        bar = "#" * int(30 * frac) + "." * (30 - int(30 * frac))
        print(f"[{bar}] {done}/{self.total} it  {time.time() - self.t0:6.1f}s  {info}", file=sys.stderr, flush=True)


class MetricsWriter:
    """Per-iteration metrics → ``metrics.csv`` / ``metrics.jsonl`` (one row per iteration and seed),
    evaluations → ``eval.csv``, seed means → TensorBoard (``tb/``, if tensorboardX is installed)."""

    def __init__(self, run_dir: str, keep_below: int | None = None):
        self.dir = run_dir
        self.paths = {n: os.path.join(run_dir, n) for n in ("metrics.csv", "metrics.jsonl", "eval.csv")}
        if keep_below is None:
            for p in self.paths.values():
                if os.path.exists(p):
                    os.remove(p)
        else:
            self.truncate(keep_below)
        try:
            from tensorboardX import SummaryWriter

            self.tb = SummaryWriter(os.path.join(run_dir, "tb"), purge_step=keep_below)
        except ImportError:  # pragma: no cover - optional
            self.tb = None

    def truncate(self, iteration: int) -> None:
        """Cut every metric file back to a checkpoint at ``iteration``: per-iteration rows of iterations
        ``< iteration`` (0-based) and evaluations at iterations ``<= iteration`` stay, rows after it and a partial
        last line (a kill mid-write) go. Rewritten through a temporary file and a rename, never in place."""

        def first_field(line: str) -> int | None:
            try:
                return int(line.split(",", 1)[0])
            except ValueError:
                return None

        def json_iteration(line: str) -> int | None:
            try:
                return int(json.loads(line)["iteration"])
            except (ValueError, KeyError, TypeError):
                return None

        for name, it_of, keep in (("metrics.csv", first_field, lambda i: i < iteration),
                                  ("eval.csv", first_field, lambda i: i <= iteration),
                                  ("metrics.jsonl", json_iteration, lambda i: i < iteration)):
            p = self.paths[name]
            if not os.path.exists(p):
                continue
            lines = _complete_lines(p)
            head = lines[:1] if name.endswith(".csv") else []
            body = lines[len(head):]
            kept = [ln for ln in body if (i := it_of(ln)) is not None and keep(i)]
            _atomic_write(p, "".join(head + kept) if kept or head else "")

    def _append_csv(self, name: str, rows: list[dict]) -> None:
        if not rows:
            return
        p = self.paths[name]
        new = not os.path.exists(p) or os.path.getsize(p) == 0
        with open(p, "a", newline="") as f:
            w = csv.DictWriter(f, list(rows[0].keys()))
            if new:
                w.writeheader()
            w.writerows(rows)

    def write(self, first_iteration: int, metrics: dict, evals: dict) -> None:
        """``metrics`` leaves ``[seeds, C]`` (numpy), ``evals`` leaves ``[seeds, C/E]``."""
        names = sorted(metrics)
        seeds, c = metrics[names[0]].shape
        rows = [{"iteration": first_iteration + t, "seed": s, **{k: float(metrics[k][s, t]) for k in names}}
                for t in range(c) for s in range(seeds)]
        self._append_csv("metrics.csv", rows)
        with open(self.paths["metrics.jsonl"], "a") as f:
            for r in rows:
                f.write(json.dumps({k: (None if isinstance(v, float) and math.isnan(v) else v)
                                    for k, v in r.items()}) + "\n")
        enames = sorted(k for k in evals if k != "eval_iteration")
        erows = [{"iteration": int(evals["eval_iteration"][s, p]), "seed": s,
                  **{k: float(evals[k][s, p]) for k in enames}}
                 for p in range(evals["eval_iteration"].shape[1]) for s in range(seeds)]
        self._append_csv("eval.csv", erows)
        if self.tb is not None:
            for t in range(c):
                for k in names:
                    v = np.nanmean(metrics[k][:, t]) if np.isfinite(metrics[k][:, t]).any() else np.nan
                    if np.isfinite(v):
                        self.tb.add_scalar(f"train/{k}", float(v), first_iteration + t + 1)
            for p in range(evals["eval_iteration"].shape[1]):
                for k in enames:
                    self.tb.add_scalar(f"eval/{k}", float(np.mean(evals[k][:, p])), int(evals["eval_iteration"][0, p]))
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def run(
    config: TrainConfig,
    run_dir: str,
    *,
    resume: bool = False,
    overwrite: bool = False,
    max_chunks: int | None = None,
    progress: bool = True,
    handle_signals: bool = True,
    announce: str | None = None,
) -> RunResult:
    """Train ``config.num_seeds`` seeds in chunks, logging and checkpointing each chunk. With several processes
    every process calls it alike (same arguments, a folder all of them see): process 0 writes the folder's files,
    all write their checkpoint shards.

    Args:
      config: validated (and the env and agent built) before anything is written.
      run_dir: output folder (``config.json``, ``metrics.csv``, ``metrics.jsonl``, ``eval.csv``,
        ``tb/``, ``checkpoints/``).
      resume: continue from the latest checkpoint in ``run_dir`` (the config must match the saved one, and the
        one stored in the checkpoint); the metric files are cut back to the checkpoint's iteration.
      overwrite: replace a run already in ``run_dir`` (its files are removed first). Without ``resume`` or
        ``overwrite`` a folder holding a run is refused.
      max_chunks: stop (as if interrupted) after this many chunks in this call — for tests and budgets.
      progress: print a progress line per chunk.
      handle_signals: SIGINT/SIGTERM finish the current chunk, save, and return ``"interrupted"``.
      announce: a line printed to stderr once the signal handlers are in place (the CLI's start line).
    Returns:
      :class:`RunResult`.
    Raises:
      ValueError: a bad config; :class:`RunDirError`: the folder cannot be used as asked; a resume whose
        config differs from the saved one.
    """
    from svnr_jax.config import to_dict, training_differences

    primary = distributed.is_primary()  # the one process that writes the folder's files (always, with one process)
    stop: dict = {"signal": None}
    with stop_on_signals(handle_signals, stop):  # from the start: a signal during set-up or compile is handled too
        if announce and primary:
            print(announce, file=sys.stderr, flush=True)
        trainer = make_trainer(config)  # validates the config, builds env + agent before anything is written
        if resume and not os.path.isdir(run_dir):  # nothing to resume: that error, and no folder created
            prepare_run_dir(run_dir, resume=resume, overwrite=overwrite)
        with _own_run_dir(run_dir, config, resume=resume, overwrite=overwrite):  # one process per run folder
            cfg_path = os.path.join(run_dir, "config.json")
            manager = checkpoint.manager(run_dir, max_to_keep=config.keep_checkpoints)
            skip = () if config.checkpoint_buffer else ("buffer.",)
            if resume and manager.latest_step() is not None:
                stored = checkpoint.read_meta(manager, manager.latest_step()).get("config")
                if stored is not None and (diff := training_differences(stored, config)):
                    manager.close()
                    raise RunDirError(f"resume: the checkpoint in {run_dir!r} was trained with another config "
                                      f"(differs in {diff}); start a new run folder instead")
            if primary:
                save_json(config, cfg_path)

            state = trainer.init(seed_keys(config))  # [padded seeds]: a multiple of the devices
            start_chunk = 0
            if resume and manager.latest_step() is not None:  # checkpoints hold the real seeds only
                state, start_chunk = checkpoint.restore(manager, trainer.real(state), algo=config.algo)
                state = trainer.pad(state)
            if progress and primary:
                total, buffer = checkpoint.size_bytes(state, skip), checkpoint.size_bytes(state.buffer)
                note = ("no replay buffer: on-policy" if state.buffer is None else
                        f"replay buffer {buffer / 2**20 / trainer.padded:.1f} MiB of it; --checkpoint-buffer false "
                        "leaves it out, then a resume is not exact" if config.checkpoint_buffer else
                        "without the replay buffer: a resume is not exact")
                print(f"checkpoint: {total / 2**20 / trainer.padded:.1f} MiB per seed ({note}), the newest "
                      f"{config.keep_checkpoints} kept", file=sys.stderr)
            total_chunks = config.iterations // config.chunk_iterations
            writer = (MetricsWriter(run_dir, keep_below=start_chunk * config.chunk_iterations if resume else None)
                      if primary else None)
            bar = _Progress(config.iterations, progress and primary)

            status, message, done = "finished", "", start_chunk
            try:
                for k in range(start_chunk, total_chunks):
                    if max_chunks is not None and k - start_chunk >= max_chunks:
                        status, message = "interrupted", f"stopped after max_chunks={max_chunks}"
                        break
                    if (sig := agreed_signal(stop)) is not None:  # received before this chunk (e.g. while compiling)
                        status = "interrupted"
                        message = (f"received {signal.Signals(sig).name} before chunk {k + 1}; " + (
                            f"the last checkpoint ({k}) is kept" if k else "no checkpoint was written") + "; exited")
                        break
                    t0 = time.time()
                    new_state, (metrics, evals) = trainer.chunk(state)
                    # the padding seeds dropped; with several processes every one gets all seeds' metrics
                    metrics, evals = trainer.real(distributed.gather((metrics, evals)))
                    # non-finite env steps (a NaN action pays a NaN reward) count as non-finite values, and are named
                    # first when a loss turns non-finite at the same iteration (they are the cause)
                    flagged = sorted(m for m in metrics if m.startswith("nonfinite_"))
                    watched = flagged + sorted(m for m in metrics if m.endswith("loss"))
                    losses = np.stack([np.where(metrics[m] > 0, np.nan, 0.0) if m in flagged else metrics[m]
                                       for m in watched]) if watched else np.zeros((0, 1, 1))
                    if not np.all(np.isfinite(losses)):
                        bad_at = np.argwhere(~np.isfinite(losses))  # [(loss, seed, t)]
                        bad = bad_at[np.argmin(bad_at[:, 2])]  # the first bad iteration
                        first, t_bad = k * config.chunk_iterations, int(bad[2])
                        if t_bad > 0 and writer is not None:  # the failing chunk's rows before it are kept
                            keep = evals["eval_iteration"][0] <= first + t_bad
                            writer.write(first, {n: v[:, :t_bad] for n, v in metrics.items()},
                                         {n: v[:, keep] for n, v in evals.items()})
                        last = manager.latest_step()
                        where = (f"last good checkpoint: {os.path.join(run_dir, 'checkpoints', str(last))} "
                                 f"(after iteration {last * config.chunk_iterations})" if last is not None
                                 else "no checkpoint was saved yet")
                        status = "nonfinite"
                        name = watched[bad[0]]
                        what = ("env step (a NaN/inf reward, observation or state; a non-finite action pays a NaN "
                                "reward, as does a MaMuJoCo impl='warp' step whose contacts overflowed warp_batch)"
                                if name.startswith("nonfinite_") else name)
                        message = (f"non-finite {what} at iteration {first + t_bad + 1} (seed {bad[1]}); "
                                   f"stopping. {where}")
                        # the chunk consumed (donated) `state`: return the last good one, from its checkpoint
                        again = seed_keys(config)  # fresh key arrays (the first ones were consumed by init)
                        fresh = trainer.real(trainer.init(again))
                        state = checkpoint.restore(manager, fresh, algo=config.algo)[0] if last is not None else fresh
                        state = trainer.pad(state)
                        break
                    state = new_state
                    done = k + 1
                    # metrics first, then the checkpoint: a kill in between leaves rows beyond the checkpoint, which a
                    # resume cuts back (never a checkpoint whose rows are missing)
                    if writer is not None:
                        writer.write(k * config.chunk_iterations, metrics, evals)
                    checkpoint.save(manager, done, trainer.real(state), algo=config.algo,
                                    meta={"config": to_dict(config)}, skip=skip)
                    steps = config.chunk_iterations * env_steps_per_iteration(config) * config.num_seeds
                    rate = steps / (time.time() - t0)
                    ev = {m[5:]: float(np.mean(evals[m][:, -1])) for m in sorted(evals) if m != "eval_iteration"}
                    bar.update(done * config.chunk_iterations,
                               f"{rate:8.0f} env-steps/s  eval " + " ".join(f"{m}={v:.2f}" for m, v in ev.items()))
                    if (sig := agreed_signal(stop)) is not None:
                        status = "interrupted"
                        message = (f"received {signal.Signals(sig).name}; saved checkpoint {done} and exited cleanly")
                        break
                else:
                    message = f"finished {total_chunks} chunks ({config.iterations} iterations)"
            finally:
                if writer is not None:
                    writer.close()
                manager.close()
            return RunResult(status, trainer.real(state), done, message)


def load_run(run_dir: str, step: int | None = None) -> tuple[TrainConfig, Trainer, TrainState, int]:
    """Config, trainer and the latest (or given) checkpointed state of a run folder."""
    from svnr_jax.config import load_json

    config = load_json(os.path.join(run_dir, "config.json"))
    trainer = make_trainer(config)
    template = jax.eval_shape(lambda k: trainer.real(trainer.init(k)), seed_keys(config))
    template = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype) if not checkpoint.is_key(s) else
                            jax.random.wrap_key_data(jnp.zeros(jax.eval_shape(jax.random.key_data,
                                                                              s).shape, jnp.uint32)),
                            template)
    manager = checkpoint.manager(run_dir)
    try:
        state, step = checkpoint.restore(manager, template, algo=config.algo, step=step)
    finally:
        manager.close()
    return config, trainer, state, step


def evaluate_state(config: TrainConfig, state: TrainState, *, modes: tuple[str, ...] | None = None,
                   episodes: int | None = None, seed: int = 12345) -> dict[str, np.ndarray]:
    """Mean episode return per execution mode and seed of a seed-batched state in memory (``RunResult.state``,
    ``TrainOutput.state``, or :func:`load_run`'s).

    Args:
      modes: execution modes of the config's algorithm (default: all of them). episodes: per mode and seed
        (default ``config.eval_episodes``). seed: evaluation seed.
    Returns:
      ``{mode: [seeds] mean returns}``.
    Raises:
      ValueError: an unknown mode for the algorithm.
    """
    trainer = make_trainer(config)
    setup = trainer.setup
    agent = setup.agent
    modes = tuple(agent.modes) if modes is None else tuple(modes)
    for m in modes:
        agent.check_mode(m)
    n_ep = episodes or config.eval_episodes

    @jax.jit
    def eval_all(ts):
        return jax.vmap(lambda t: acting.evaluate(agent, setup.eval_env, t.learner, t.iteration,
                                                  jax.random.key(seed), modes, n_ep))(ts)

    res = distributed.gather(eval_all(state))
    return {m: np.asarray(res[f"eval_{m}"]) for m in modes}


def evaluate_run(run_dir: str, *, episodes: int | None = None, modes: tuple[str, ...] | None = None,
                 seed: int = 12345) -> dict:
    """Mean ± std over seeds of the episode return per execution mode (default: every mode of the run's
    algorithm), from a run's latest checkpoint."""
    config, _, state, step = load_run(run_dir)
    res = evaluate_state(config, state, modes=modes, episodes=episodes, seed=seed)
    return {"env": config.env, "algo": config.algo, "checkpoint": step, "iteration": step * config.chunk_iterations,
            "episodes": episodes or config.eval_episodes,
            "returns": {m: {"mean": float(np.mean(v)), "std": float(np.std(v)), "per_seed": [float(x) for x in v]}
                        for m, v in res.items()}}


__all__ = ["RUN_FILES", "MetricsWriter", "RunDirError", "RunResult", "agreed_signal", "evaluate_run", "evaluate_state",
           "load_run", "prepare_run_dir", "run", "run_dir_lock", "stop_on_signals"]
