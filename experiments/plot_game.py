"""Save reward-landscape PNGs of the two-agent one-step games.

Usage::

    python -m experiments.plot_game max_of_three            # outputs/plots/max_of_three.png
    python -m experiments.plot_game all --out /tmp/plots    # every game
"""

from __future__ import annotations

import argparse
import os
import sys

import matplotlib

matplotlib.use("Agg")

from svnr_jax.envs.games import GAME_NAMES  # noqa: E402
from svnr_jax.plotting import plot_reward_landscape  # noqa: E402


def main(argv: list[str] | None = None) -> list[str]:
    """Parse arguments, draw the requested games, print and return the PNG paths."""
    parser = argparse.ArgumentParser(prog="python -m experiments.plot_game", description=__doc__.split("\n")[0])
    parser.add_argument("game", choices=[*GAME_NAMES, "all"], help="game to draw, or 'all'")
    parser.add_argument("--out", default=os.path.join("outputs", "plots"), help="output directory")
    parser.add_argument("--resolution", type=int, default=241, help="grid points per axis")
    args = parser.parse_args(argv)

    os.makedirs(args.out, exist_ok=True)
    names = GAME_NAMES if args.game == "all" else (args.game,)
    paths = []
    for name in names:
        path = os.path.join(args.out, f"{name}.png")
        plot_reward_landscape(name, path=path, resolution=args.resolution)
        print(path)
        paths.append(path)
    return paths


if __name__ == "__main__":
    main(sys.argv[1:])
