"""``sparseclip ablate``: the paper's ablations as one resumable sweep (table + plots)."""

from __future__ import annotations

import argparse
import shlex
import sys

HELP = """Train and evaluate one-factor-at-a-time sweeps with identical towers, data, steps and seeds:

  expansion   expansion 1..32 with ReLU and with the parameter-matched linear_wide control (+ dense)
  sparsifier  ReLU vs ReLU + L1 penalty vs TopK at equal width (L0 over training from each log)
  cap         logit-scale cap 20 / 40 / 50 / 100
  placement   replace vs append, ReLU vs RepReLU (accuracy, L0, dead features)

Every cell runs for --seeds seeds (mean ± std). Writes OUT/summary.md, OUT/summary.json, OUT/plots/*.png and
keeps each run in OUT/runs/<name>: re-running reuses finished runs and resumes crashed ones.
Default size: the micro preset, about an hour for all grids on 2 CPU cores; --quick: a few minutes.
--config points at your own base config (its size is kept; add key=value overrides to change it).
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ablate", help="reproduce the paper's ablations as one sweep (table + plots)",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", default="all", help="all (default), a grid name, a grid .yaml file, or a comma list")
    p.add_argument("--quick", action="store_true", help="minutes instead of an hour (few steps, small eval)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per cell (default 3)")
    p.add_argument("--out", default="ablate_out", help="output folder (default ablate_out)")
    p.add_argument("--config", help="base config: preset name or YAML file (default: the micro preset)")
    p.add_argument("--list", action="store_true", help="list the grids and their cells, then exit")
    p.add_argument("--render", metavar="SUMMARY_JSON",
                   help="regenerate summary.md (tables, verdicts) and plots from a summary.json's runs; no training")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="overrides for the base config")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..experiments.ablate import render_summary, run_ablation
    from ..experiments.grids import resolve_grids

    if args.render:
        print(render_summary(args.render))
        return 0
    if args.list:
        for g in resolve_grids(args.grid):
            print(f"{g.name}: {g.title} ({len(g.cells)} cells)")
            for c in g.cells:
                print(f"  {c.label}")
        return 0
    out = run_ablation(args.grid, quick=args.quick, seeds=args.seeds, out=args.out, config=args.config,
                       overrides=args.overrides, progress=not args.no_progress,
                       command="sparseclip " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    print(f"[ablate] done. Look at {out / 'summary.md'} and {out / 'plots'}")
    return 0
