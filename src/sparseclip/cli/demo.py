"""``sparseclip demo``: the embedded default, end to end on a laptop CPU."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = """Two comparisons on the built-in procedural world (coloured shapes with captions and ground truth):

  from scratch        a tiny dense CLIP vs a tiny Sparse CLIP (same towers, data, steps): the paper's recipe at
                      a CPU's budget (64k samples; the paper's < 1% L0 comes after ~450M)
  pretrained towers   frozen EfficientNet-Lite0 + MiniLM (from pip wheels) with a dense head, a 64x ReLU head
                      (Sparse CLIP, sparse for real) and the parameter-matched 64x linear head

All five are evaluated alike (zero-shot per task, retrieval, linear probe, sparsity); the pretrained-towers
Sparse CLIP is analysed, reported and indexed. Everything goes into one folder:

  OUT/results.md, results.json   the side-by-side table (one row per model, with what it was)
  OUT/plots/*.png                loss and L0 against samples seen, accuracy bars
  OUT/report/index.html          the report (feature browser; SAE comparison with --sae)
  OUT/<model>/                   the five runs (checkpoints, logs, eval.json)
  OUT/index                      an inverted index of the sparse codes (sparseclip index search)

About 8.5 minutes on 2 idle CPU cores (measured: 505 s); the time of each stage is printed at the end.
Re-running reuses finished runs with the same config.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train, evaluate and compare dense vs sparse on the procedural world",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    p.add_argument("--steps", type=int, help="training steps per model (default: the preset's)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for both models")
    p.add_argument("--no-analysis", action="store_true", help="skip feature analysis, the report and the index")
    p.add_argument("--sae", action="store_true",
                   help="also train SAE baselines on the dense model for the comparison (several minutes more)")
    p.add_argument("--fresh", action="store_true", help="retrain even if finished runs exist")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--render", metavar="RESULTS_JSON",
                   help="only re-render results.md next to a demo's results.json (e.g. docs/demo/results.json)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..experiments.demo import render_results, run_demo

    if args.render:
        print(render_results(Path(args.render)))
        return 0
    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps: must be >= 1, got {args.steps}")
    done = run_demo(args.out, steps=args.steps, overrides=args.overrides, progress=not args.no_progress,
                    resume=not args.fresh, analysis=not args.no_analysis, sae=args.sae)
    print("\n[demo] time per stage:")
    for stage, sec in done.times.items():
        print(f"  {stage:<24} {sec:6.1f} s")
    print(f"\n[demo] done in {done.total_seconds:.0f} s. Look at:")
    for p in done.look:
        print(f"  {p}")
    return 0
