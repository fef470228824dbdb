"""The ``svnr`` command line: ``svnr train`` and ``svnr eval``.

    svnr train --env max_of_three --seeds 10                 # preset of the env, 10 vmapped seeds
    svnr train --env two_modalities --topology independent --iterations 2000 --run-dir runs/pro-indep
    svnr train --run-dir runs/pro-indep --resume             # continue a run (config read from the folder)
    svnr eval runs/pro-indep                                 # returns per execution mode

Options are generated from the fields of :class:`svnr_jax.config.TrainConfig` and
:class:`svnr_jax.config.SVNRConfig` (their docstrings are the help texts). Values you do not give come
from the env's preset (``svnr_jax.config.PRESETS``), then from the dataclass defaults. Every value is
validated before anything compiles; a bad one exits with status 2 and a message naming it.
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

from svnr_jax.config import EXEC_MODES, PROPOSALS, SCHEDULES, TOPOLOGIES, SVNRConfig, TrainConfig, field_docs

_CHOICES = {"topology": TOPOLOGIES, "alpha_schedule": SCHEDULES, "value_proposal": PROPOSALS}
_ALIASES = {"num_seeds": ["--seeds"]}


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


def _parse_env_config(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    try:
        value = json.loads(v)
    except json.JSONDecodeError:
        value = v
    return (k.strip(), value)


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    """One option per config field (default ``None`` = take the preset's value)."""
    for cls, title in ((TrainConfig, "run options"), (SVNRConfig, "algorithm options (SVNRConfig)")):
        group = parser.add_argument_group(title)
        docs = field_docs(cls)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name == "svnr":
                continue
            default = f.default
            hint = hints[f.name]
            kwargs: dict[str, Any] = {"dest": f.name, "default": None}
            help_text = docs.get(f.name, "")
            if f.name == "env_config":
                kwargs.update(type=_parse_env_config, action="append", metavar="KEY=VALUE")
                help_text += " Repeat the option for several keys."
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
                if f.name in _CHOICES:
                    kwargs.update(choices=_CHOICES[f.name], metavar="{" + ",".join(_CHOICES[f.name]) + "}")
            if f.name != "env":
                help_text += f" (default: preset, else {default})"
            group.add_argument(_flag(f.name), *_ALIASES.get(f.name, []), help=help_text, **kwargs)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` of parsed ``svnr train`` options (preset + given values), validated.

    Raises:
      ValueError: a value is invalid (the message names it).
    """
    from svnr_jax.config import load_json, preset

    tnames = {f.name for f in dataclasses.fields(TrainConfig)} - {"svnr"}
    anames = {f.name for f in dataclasses.fields(SVNRConfig)}
    given = {k: v for k, v in vars(args).items() if k in tnames | anames and v is not None}
    if "env_config" in given:
        given["env_config"] = tuple(given["env_config"])
    svnr = {k: given.pop(k) for k in list(given) if k in anames}
    if getattr(args, "resume", False) and args.run_dir and os.path.exists(os.path.join(args.run_dir, "config.json")):
        saved = load_json(os.path.join(args.run_dir, "config.json"))
        if given or svnr:
            raise ValueError("--resume takes the config saved in the run folder; do not pass config options")
        return saved
    env = given.pop("env", None)
    if env is None:
        raise ValueError("--env is required (or --resume with --run-dir of an existing run)")
    return preset(env, svnr=svnr, **given)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="svnr", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="train SVNR (vmapped seeds, chunked, checkpointed)",
                        description="Train SVNR. Unspecified options come from the env's preset.",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    tr.add_argument("--run-dir", default=None, help="output folder (default runs/<env>-<time>)")
    tr.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last checkpoint")
    tr.add_argument("--no-progress", action="store_true", help="no progress line per chunk")
    tr.add_argument("--show-config", action="store_true", help="print the resolved config as JSON and exit")
    _add_config_options(tr)
    ev = sub.add_parser("eval", help="evaluate a run's latest checkpoint per execution mode",
                        description="Mean ± std over seeds of the episode return per execution mode: "
                                    "shared_seed (a), deterministic (b), negotiate (c).")
    ev.add_argument("run_dir", help="a folder written by `svnr train`")
    ev.add_argument("--episodes", type=int, default=None, help="episodes per mode and seed (default: the run's)")
    ev.add_argument("--modes", nargs="+", default=list(EXEC_MODES), choices=EXEC_MODES, help="execution modes")
    ev.add_argument("--seed", type=int, default=12345, help="evaluation seed")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``svnr`` console script. Returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "train":
        return _train(parser, args)
    return _eval(parser, args)


def _train(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from svnr_jax.config import to_dict

    try:
        config = config_from_args(args)
    except ValueError as e:
        parser.error(str(e))
    if args.show_config:
        print(json.dumps(to_dict(config), indent=2))
        return 0
    if args.resume and not args.run_dir:
        parser.error("--resume needs --run-dir")
    run_dir = args.run_dir or os.path.join("runs", f"{config.env}-{time.strftime('%Y%m%d-%H%M%S')}")
    from svnr_jax.training import run

    print(f"training {config.env}: {config.num_seeds} seed(s), {config.iterations} iterations -> {run_dir}",
          file=sys.stderr)
    result = run(config, run_dir, resume=args.resume, progress=not args.no_progress)
    print(result.message, file=sys.stderr)
    return {"finished": 0, "interrupted": 130, "nonfinite": 1}[result.status]


def _eval(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if not os.path.exists(os.path.join(args.run_dir, "config.json")):
        parser.error(f"{args.run_dir!r} is not a run folder (no config.json)")
    if args.episodes is not None and args.episodes < 1:
        parser.error(f"--episodes must be >= 1, got {args.episodes}")
    from svnr_jax.training import evaluate_run

    res = evaluate_run(args.run_dir, episodes=args.episodes, modes=tuple(args.modes), seed=args.seed)
    print(f"{res['env']} @ iteration {res['iteration']} ({res['episodes']} episodes per mode and seed)")
    for mode, r in res["returns"].items():
        print(f"  {mode:<14} {r['mean']:9.3f} ± {r['std']:.3f}")
    with open(os.path.join(args.run_dir, "eval.json"), "w") as f:
        json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
