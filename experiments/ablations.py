"""SVNR ablations on the stress tests: negotiation topology and particle count M.

* topology ∈ {nested, full, independent} on ``two_modalities`` (PRO) and ``max_of_three`` (ERO): the
  independent topology (C_i = {i}, no reasoning about teammates) is expected to fail the PRO test.
* M ∈ {8, 16, 32, 40} on ``two_modalities``.

Same presets, pass criteria and seeds-vmapped training as :mod:`experiments.stress_tests`.
Writes ``<out>/ablations.json`` and prints a table.

    python -m experiments.ablations --seeds 4
"""

from __future__ import annotations

import argparse
import json
import os

import jax

from experiments.stress_tests import game_config, run_game

TOPOLOGIES = ("nested", "full", "independent")
PARTICLES = (8, 16, 32, 40)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=4, help="seeds per setting (vmapped)")
    p.add_argument("--small", action="store_true", help="small budget (as the stress tests' --small)")
    p.add_argument("--what", nargs="+", default=["topology", "particles"], choices=["topology", "particles"])
    p.add_argument("--games", nargs="+", default=["two_modalities", "max_of_three"],
                   help="games of the topology ablation")
    p.add_argument("--out", default="experiments/results/ablations")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    rows = []

    def record(kind, game, value, r):
        ret = {m: [v["mean"], v["std"]] for m, v in r["returns"].items()}
        row = {"ablation": kind, "game": game, "value": value, "passes": r["passes"], "seeds": r["seeds"],
               "return_shared_seed": ret["shared_seed"], "return_deterministic": ret["deterministic"],
               "per_seed": r["per_seed"]}
        rows.append(row)
        a = ret["shared_seed"]
        print(f"{kind:<10}{game:<16}{str(value):<13}{r['passes']:>3}/{r['seeds']:<3}{a[0]:>9.2f} ± {a[1]:.2f}",
              flush=True)
        with open(os.path.join(args.out, "ablations.json"), "w") as f:
            json.dump({"device": str(jax.devices()[0]), "rows": rows}, f, indent=1)

    print(f"{'ablation':<10}{'game':<16}{'value':<13}{'pass':>7}{'return (shared seed)':>22}")
    if "topology" in args.what:
        for game in args.games:
            for topo in TOPOLOGIES:
                cfg = game_config(game, "svnr", args.seeds, args.small, algo_config=dict(topology=topo))
                record("topology", game, topo, run_game(game, cfg))
    if "particles" in args.what:
        for m in PARTICLES:
            cfg = game_config("two_modalities", "svnr", args.seeds, args.small, algo_config=dict(num_particles=m))
            record("M", "two_modalities", m, run_game("two_modalities", cfg))
    print(f"wrote {os.path.join(args.out, 'ablations.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
