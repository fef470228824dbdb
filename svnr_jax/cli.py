"""The ``svnr`` command line: ``svnr train``, ``svnr eval``, ``svnr render`` and ``svnr algos``.

    svnr train --env max_of_three --seeds 10                 # SVNR, the env's preset, 10 vmapped seeds
    svnr train --algo maddpg --env max_of_three --seeds 10   # another algorithm, same budget
    svnr train --env two_modalities --topology independent --iterations 2000 --run-dir runs/pro-indep
    svnr train --run-dir runs/pro-indep --resume             # continue a run (config read from the folder)
    svnr eval runs/pro-indep                                 # returns per execution mode of the run's algorithm
    svnr render runs/cheetah --steps 200                     # GIF of one episode (MaMuJoCo runs only)
    svnr algos                                               # registered algorithms and their modes
    svnr train ... --run-dir /shared/run --distributed       # one process per host (TPU pod slice, SLURM)

Options are generated from the fields of :class:`svnr_jax.config.TrainConfig` and of the chosen algorithm's
config class (``svnr train --algo NAME --help`` lists them; their docstrings are the help texts). Values
you do not give come from the (algorithm, env) preset (:mod:`svnr_jax.presets`), then from the dataclass
defaults. Every value is validated before anything compiles; a bad one exits with status 2 and a message
naming it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
import typing
from typing import Any

from svnr_jax.algorithms.base import SCHEDULES, get_algorithm, list_algorithms
from svnr_jax.config import TrainConfig, field_docs

#: Choices of string fields (any algorithm's field of that name).
_CHOICES = {"alpha_schedule": SCHEDULES}
_ALIASES = {"num_seeds": ["--seeds"]}
_RUN_SKIP = ("algo", "algo_config")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parse_bool(text: str) -> bool:
    t = text.lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _parse_int_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 64,64, got {text!r}") from e


def _parse_topology(text: str) -> str | tuple[tuple[int, ...], ...]:
    """A topology name, or a custom mask with rows separated by ';' (``1,0;1,1``)."""
    if ";" not in text and "," not in text:
        return text
    try:
        return tuple(tuple(int(x) for x in row.split(",")) for row in text.split(";"))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected a topology name or a 0/1 mask like 1,0;1,1, got {text!r}") from e


def parse_env_config(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` of ``--env-config`` -> ``(key, value)``; VALUE as JSON where it parses (numbers, true/false,
    lists), else the string."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    try:
        value = json.loads(v)
    except json.JSONDecodeError:
        value = v
    return (k.strip(), value)


def _add_config_options(parser: argparse.ArgumentParser, algo: str) -> None:
    """One option per run field and per field of ``algo``'s config (default ``None`` = the preset's value)."""
    config_cls, _ = get_algorithm(algo)
    for cls, title in ((TrainConfig, "run options"), (config_cls, f"algorithm options ({config_cls.__name__})")):
        group = parser.add_argument_group(title)
        docs = field_docs(cls)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if cls is TrainConfig and f.name in _RUN_SKIP:
                continue
            default = f.default
            hint = hints[f.name]
            kwargs: dict[str, Any] = {"dest": f.name, "default": None}
            help_text = docs.get(f.name, "")
            if f.name == "env_config":
                kwargs.update(type=parse_env_config, action="append", metavar="KEY=VALUE")
                help_text += " Repeat the option for several keys."
            elif f.name == "topology":
                kwargs.update(type=_parse_topology, metavar="NAME|MASK")
            elif hint is bool:
                kwargs.update(type=_parse_bool, metavar="BOOL")
            elif hint is int:
                kwargs.update(type=int, metavar="INT")
            elif hint is float:
                kwargs.update(type=float, metavar="FLOAT")
            elif hint == tuple[int, ...]:
                kwargs.update(type=_parse_int_tuple, metavar="INT,INT")
                default = ",".join(map(str, default))
            else:
                kwargs.update(type=str, metavar="STR")
                choices = getattr(cls, "choices", {}).get(f.name) or _CHOICES.get(f.name)
                if choices:
                    kwargs.update(choices=choices, metavar="{" + ",".join(choices) + "}")
            if f.name != "env":
                help_text += f" (default: preset, else {default})"
            help_text = help_text.replace("%", "%%")  # argparse %-formats help texts
            group.add_argument(_flag(f.name), *_ALIASES.get(f.name, []), help=help_text, **kwargs)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` of parsed ``svnr train`` options (preset + given values), validated.

    Raises:
      ValueError: a value is invalid (the message names it).
    """
    from svnr_jax.config import load_json
    from svnr_jax.presets import preset

    algo = args.algo
    config_cls, _ = get_algorithm(algo)
    tnames = {f.name for f in dataclasses.fields(TrainConfig)} - set(_RUN_SKIP)
    anames = {f.name for f in dataclasses.fields(config_cls)}
    given = {k: v for k, v in vars(args).items() if k in tnames | anames and v is not None}
    if "env_config" in given:
        given["env_config"] = tuple(given["env_config"])
    algo_fields = {k: given.pop(k) for k in list(given) if k in anames}
    if getattr(args, "resume", False) and args.run_dir and os.path.exists(os.path.join(args.run_dir, "config.json")):
        saved = load_json(os.path.join(args.run_dir, "config.json"))
        if given or algo_fields or args.algo_given:
            raise ValueError("--resume takes the config saved in the run folder; do not pass config options")
        return saved
    env = given.pop("env", None)
    if env is None:
        raise ValueError("--env is required (or --resume with --run-dir of an existing run)")
    return preset(env, algo, algo_config=algo_fields, **given)


def _algo_of(argv: list[str]) -> tuple[str | None, bool]:
    """The ``--algo`` value in ``argv`` (before the full parser exists: its options depend on it)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--algo", default=None)
    known, _ = pre.parse_known_args(argv)
    return known.algo, known.algo is not None


def _add_distributed_options(parser: argparse.ArgumentParser, folder: str) -> None:
    """``--distributed`` (auto-detected) and ``--coordinator/--num-processes/--process-id`` (explicit)."""
    group = parser.add_argument_group(
        "multi-process (several hosts)",
        "Every process runs the same command; the seeds (rows) are sharded over all\nprocesses' devices. "
        f"{folder} must be a folder every host sees (a shared\nfile system). See docs/distributed.md.")
    group.add_argument("--distributed", action="store_true",
                       help="join a multi-process run whose processes are detected from the cluster (TPU pod slice, "
                            "SLURM, Open MPI)")
    group.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                       help="explicit launch: the address of process 0 (with --num-processes and --process-id)")
    group.add_argument("--num-processes", type=int, default=None, metavar="N", help="explicit launch: processes")
    group.add_argument("--process-id", type=int, default=None, metavar="K",
                       help="explicit launch: this process's index in [0, N)")


def _join(parser: argparse.ArgumentParser, args: argparse.Namespace, folder_flag: str, folder: str | None) -> None:
    """Initialise the multi-process run the options ask for (nothing without them), before any JAX computation."""
    explicit = (args.coordinator, args.num_processes, args.process_id)
    if not args.distributed and all(v is None for v in explicit):
        return
    if folder is None:
        parser.error(f"a multi-process run needs {folder_flag}: the same folder on every host (a shared file system)")
    from svnr_jax import distributed

    try:
        distributed.initialize(*explicit)
    except (distributed.DistributedError, RuntimeError) as e:
        parser.error(str(e))


def build_parser(algo: str = "svnr") -> argparse.ArgumentParser:
    """The ``svnr`` parser, with the config options of algorithm ``algo`` under ``svnr train``."""
    parser = argparse.ArgumentParser(prog="svnr", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="train an algorithm (vmapped seeds, chunked, checkpointed)",
                        description=f"Train an algorithm (here: {algo}; `--algo NAME --help` shows another's "
                                    "options). Unspecified options come from the (algorithm, env) preset.",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    tr.add_argument("--algo", default=algo, choices=list_algorithms(),
                    help=f"algorithm (default svnr); one of {list_algorithms()}")
    tr.add_argument("--run-dir", default=None, help="output folder (default runs/<env>-<time>)")
    tr.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last checkpoint")
    tr.add_argument("--overwrite", action="store_true",
                    help="replace the run already in --run-dir (its files are removed); without --resume or "
                         "--overwrite a folder holding a run is refused")
    tr.add_argument("--no-progress", action="store_true", help="no progress line per chunk")
    tr.add_argument("--show-config", action="store_true", help="print the resolved config as JSON and exit")
    _add_distributed_options(tr, "--run-dir")
    _add_config_options(tr, algo)
    ev = sub.add_parser("eval", help="evaluate a run's latest checkpoint per execution mode",
                        description="Mean ± std over seeds of the episode return per execution mode of the run's "
                                    "algorithm (SVNR: shared_seed (a), deterministic (b), negotiate (c)).")
    ev.add_argument("run_dir", help="a folder written by `svnr train`")
    ev.add_argument("--episodes", type=int, default=None, help="episodes per mode and seed (default: the run's)")
    ev.add_argument("--modes", nargs="+", default=None,
                    help="execution modes (default: every mode of the run's algorithm)")
    ev.add_argument("--seed", type=int, default=12345, help="evaluation seed")
    rd = sub.add_parser("render", help="GIF of one episode of a MaMuJoCo run's latest checkpoint",
                        description="Roll out the policy of a run's latest checkpoint for one episode in an "
                                    "execution mode and write the frames as a GIF (needs an OpenGL backend; "
                                    "MUJOCO_GL defaults to egl).")
    rd.add_argument("run_dir", help="a folder written by `svnr train` on a MaMuJoCo env")
    rd.add_argument("--seed-index", type=int, default=0, help="which of the run's seeds (default 0)")
    rd.add_argument("--steps", type=int, default=200, help="env steps to roll out = frames (default 200)")
    rd.add_argument("--mode", default=None,
                    help="execution mode (default: deterministic where the algorithm has it, else its test mode)")
    rd.add_argument("--out", default=None, help="output GIF path (default RUN_DIR/render.gif)")
    rd.add_argument("--seed", type=int, default=0, help="rollout seed (reset noise, shared-seed noise)")
    rd.add_argument("--height", type=int, default=240, help="frame height in pixels")
    rd.add_argument("--width", type=int, default=320, help="frame width in pixels")
    rd.add_argument("--fps", type=float, default=30.0, help="GIF frames per second")
    sub.add_parser("algos", help="list the registered algorithms with their execution modes")
    sw = sub.add_parser("sweep", help="a grid of hyperparameters x seeds as one compiled program",
                        description="Train every point of a grid of the algorithm's shape-free (float) "
                                    "hyperparameters x --seeds seeds as ONE jitted, vmapped program (compiled once), "
                                    "from the (algorithm, env) preset; writes sweep.json, sweep.md (per point: IQM "
                                    "[95 %% CI] and mean ± std of the final test-mode return over seeds) and "
                                    "sweep.png. Fields that change shapes (sizes, particle counts) or that the "
                                    "algorithm reads in Python are refused with the reason.")
    sw.add_argument("--algo", default=algo, choices=list_algorithms(), help="algorithm (default svnr)")
    sw.add_argument("--env", required=True, help="env name (its preset is used)")
    sw.add_argument("--grid", nargs="+", required=True, metavar="NAME=V1,V2",
                    help="hyperparameters of the algorithm's config and their values, e.g. policy_lr=1e-4,3e-4")
    sw.add_argument("--seeds", type=int, default=4, help="seeds per grid point (default 4)")
    sw.add_argument("--seed-batch", type=int, default=0, metavar="K",
                    help="rows (points x seeds) vectorised together per device: 0 = all (accelerators, default); "
                         "K = K at a time, one group after another in the same program (faster per row on CPU)")
    sw.add_argument("--iterations", type=int, default=None, help="training iterations (default: the preset's)")
    sw.add_argument("--out", default=None, help="results folder (default runs/sweep-<algo>-<env>-<time>); the sweep "
                                                "is checkpointed there after every chunk")
    sw.add_argument("--checkpoint-buffer", choices=("true", "false"), default=None,
                    help="store every row's replay buffer in the checkpoints (default: the preset's, true); false "
                         "keeps them small (MaMuJoCo: 1M transitions per row); a resume is then not exact (fresh "
                         "buffers)")
    sw.add_argument("--resume", action="store_true",
                    help="continue the interrupted sweep in --out from its last checkpoint (same arguments)")
    sw.add_argument("--no-progress", action="store_true", help="no line per chunk")
    _add_distributed_options(sw, "--out")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``svnr`` console script. Returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    algo, given = _algo_of(argv)
    if algo is not None and algo not in list_algorithms():
        build_parser().error(f"unknown algorithm {algo!r}; registered algorithms: {list_algorithms()}")
    parser = build_parser(algo or "svnr")
    args = parser.parse_args(argv)
    args.algo_given = given
    if args.command == "algos":
        return _algos()
    if args.command == "train":
        return _train(parser, args)
    if args.command == "render":
        return _render(parser, args)
    if args.command == "sweep":
        return _sweep(parser, args)
    return _eval(parser, args)


def _sweep(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from svnr_jax import sweep
    from svnr_jax.presets import preset

    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    if args.resume and not args.out:
        parser.error("--resume needs --out (the folder of the sweep to continue)")
    _join(parser, args, "--out", args.out)
    try:
        over: dict = {"num_seeds": args.seeds, "seed_batch": args.seed_batch}
        if args.checkpoint_buffer is not None:
            over["checkpoint_buffer"] = args.checkpoint_buffer == "true"
        if args.iterations is not None:
            base = preset(args.env, args.algo)
            chunk = base.chunk_iterations if args.iterations % base.chunk_iterations == 0 else args.iterations
            over.update(iterations=args.iterations, chunk_iterations=chunk,
                        eval_every=base.eval_every if chunk % base.eval_every == 0 else chunk)
        config = preset(args.env, args.algo, **over)
        grid = sweep.parse_grid(args.grid)
        sweep.check_grid(config, grid)
    except ValueError as e:
        parser.error(str(e))
    out = args.out or os.path.join("runs", f"sweep-{args.algo}-{args.env}-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        result = sweep.run_sweep(config, grid, out_dir=out, progress=not args.no_progress, resume=args.resume)
    except sweep.SweepResumeError as e:
        print(f"svnr sweep: error: {e}", file=sys.stderr)
        return 2
    except sweep.SweepInterrupted as e:
        print(e, file=sys.stderr)
        return 130
    except KeyboardInterrupt:  # a second signal: quit at once
        print(f"interrupted at once; the checkpoints already in {out} are kept", file=sys.stderr)
        return 130
    from svnr_jax import distributed

    if not distributed.is_primary():  # process 0 reports the merged table
        return 0
    print(sweep.table(result))
    print(f"wrote {out}/sweep.json, sweep.md, sweep.png", file=sys.stderr)
    return 0


def _train(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from svnr_jax.config import to_dict

    if not args.show_config:
        _join(parser, args, "--run-dir", args.run_dir)
    try:
        config = config_from_args(args)
    except ValueError as e:
        parser.error(str(e))
    if args.show_config:
        print(json.dumps(to_dict(config), indent=2))
        return 0
    if args.resume and not args.run_dir:
        parser.error("--resume needs --run-dir")
    run_dir = args.run_dir or os.path.join("runs", f"{config.algo}-{config.env}-{time.strftime('%Y%m%d-%H%M%S')}")
    from svnr_jax.runner import run

    start = (f"training {config.algo} on {config.env}: {config.num_seeds} seed(s), {config.iterations} iterations "
             f"-> {run_dir}")
    try:
        result = run(config, run_dir, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress,
                     announce=start)
    except ValueError as e:  # e.g. a topology mask of the wrong size for the env, a checkpoint of another layout
        parser.error(str(e))
    except KeyboardInterrupt:  # a second signal: quit at once
        print(f"interrupted at once; the checkpoints already in {run_dir} are kept", file=sys.stderr)
        return 130
    from svnr_jax import distributed

    if distributed.is_primary():
        print(result.message, file=sys.stderr)
    return {"finished": 0, "interrupted": 130, "nonfinite": 1}[result.status]


def _eval(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if not os.path.exists(os.path.join(args.run_dir, "config.json")):
        parser.error(f"{args.run_dir!r} is not a run folder (no config.json)")
    if args.episodes is not None and args.episodes < 1:
        parser.error(f"--episodes must be >= 1, got {args.episodes}")
    from svnr_jax.runner import evaluate_run

    try:
        modes = None if args.modes is None else tuple(args.modes)
        res = evaluate_run(args.run_dir, episodes=args.episodes, modes=modes, seed=args.seed)
    except (ValueError, FileNotFoundError) as e:  # an unknown mode, a checkpoint of another layout, none at all
        parser.error(str(e))
    print(f"{res['algo']} on {res['env']} @ iteration {res['iteration']} ({res['episodes']} episodes per mode and "
          "seed)")
    for mode, r in res["returns"].items():
        print(f"  {mode:<14} {r['mean']:9.3f} ± {r['std']:.3f}")
    with open(os.path.join(args.run_dir, "eval.json"), "w") as f:
        json.dump(res, f, indent=1)
    return 0


def _render(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    os.environ.setdefault("MUJOCO_GL", "egl")  # must precede the first import of mujoco
    if not os.path.exists(os.path.join(args.run_dir, "config.json")):
        parser.error(f"{args.run_dir!r} is not a run folder (no config.json)")
    if args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    from svnr_jax.config import load_json
    from svnr_jax.envs import make
    from svnr_jax.envs.mamujoco.env import MaMuJoCo

    config = load_json(os.path.join(args.run_dir, "config.json"))
    if not isinstance(make(config.env, **config.env_kwargs).unwrapped, MaMuJoCo):
        parser.error(f"run {args.run_dir!r} is on env {config.env!r}, which is not a MaMuJoCo env; "
                     "render needs a MaMuJoCo task (e.g. HalfCheetah-2x3)")
    if not 0 <= args.seed_index < config.num_seeds:
        parser.error(f"--seed-index must be in [0, {config.num_seeds}) for this run, got {args.seed_index}")

    import jax
    import numpy as np

    from svnr_jax.acting import agent_policy, rollout
    from svnr_jax.envs.mamujoco.render import render_trajectory, save_video
    from svnr_jax.runner import load_run

    try:
        config, trainer, state, step = load_run(args.run_dir)
    except (ValueError, FileNotFoundError) as e:
        parser.error(str(e))
    setup = trainer.setup
    env, agent = setup.eval_env, setup.agent
    mode = args.mode or ("deterministic" if "deterministic" in agent.modes else agent.test_mode)
    try:
        agent.check_mode(mode)
    except ValueError as e:
        parser.error(str(e))
    ts = jax.tree.map(lambda x: x[args.seed_index], state)

    @jax.jit
    def episode(learner, iteration, key):
        record = lambda st, nxt: (st.env_state.data.qpos, st.env_state.data.qvel, nxt.done)
        return rollout(env, agent_policy(agent, learner, iteration, mode), key, 1, horizon=args.steps,
                       record=record).records

    qpos, qvel, done = (x[0] for x in jax.device_get(episode(ts.learner, ts.iteration, jax.random.key(args.seed))))
    ended = np.flatnonzero(done)
    n = int(ended[0]) + 1 if ended.size else args.steps  # frame t = state before step t; stop at episode end
    model = env.unwrapped.mj_model
    import mujoco

    camera = "track" if mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, "track") >= 0 else -1
    frames = render_trajectory(model, qpos[:n], qvel[:n], height=args.height, width=args.width, camera=camera)
    out = args.out or os.path.join(args.run_dir, "render.gif")
    save_video(frames, out, fps=args.fps)
    print(f"{config.algo} on {config.env} @ iteration {step * config.chunk_iterations}, seed {args.seed_index}, "
          f"{mode}: {len(frames)} frames", file=sys.stderr)
    print(out)
    return 0


def _algos() -> int:
    for name in list_algorithms():
        config_cls, agent_cls = get_algorithm(name)
        print(f"{name:<10} config {config_cls.__name__:<14} modes {', '.join(agent_cls.modes)} "
              f"(test: {agent_cls.test_mode}; in-scan eval: {', '.join(agent_cls.eval_modes)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
