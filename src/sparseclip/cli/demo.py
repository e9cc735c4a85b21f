"""``sparseclip demo``: the embedded default, end to end on a laptop CPU."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

HELP = """Train a dense CLIP and a Sparse CLIP with identical towers on the built-in procedural world
(coloured shapes with captions), evaluate both (zero-shot per task, retrieval, linear probe, sparsity),
analyse the sparse model's features and write everything into one folder:

  OUT/results.md, results.json   the side-by-side table
  OUT/plots/*.png                loss and L0 over steps, accuracy bars
  OUT/report/index.html          the report (feature browser; SAE comparison with --sae)
  OUT/dense, OUT/sparse          the two runs (checkpoints, logs, eval.json)
  OUT/index                      an inverted index of the sparse codes (sparseclip index search)

About 10 minutes on 2 CPU cores. Re-running reuses finished runs with the same config.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train, evaluate and compare dense vs sparse on the procedural world",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    p.add_argument("--steps", type=int, help="training steps per model (default: the preset's)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for both models")
    p.add_argument("--no-analysis", action="store_true", help="skip feature analysis and the report")
    p.add_argument("--sae", action="store_true",
                   help="also train SAE baselines on the dense model for the comparison (several minutes more)")
    p.add_argument("--fresh", action="store_true", help="retrain even if finished runs exist")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..train.demo import run_demo

    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps: must be >= 1, got {args.steps}")
    t0 = time.time()
    out = run_demo(args.out, steps=args.steps, overrides=args.overrides, progress=not args.no_progress,
                   resume=not args.fresh)
    look = [out / "results.md", out / "plots"]
    if not args.no_analysis:
        look += analyse_and_report(out, progress=not args.no_progress, sae=args.sae)
        look += build_index(out)
    print(f"\n[demo] done in {time.time() - t0:.0f} s. Look at:")
    for p in look:
        print(f"  {p}")
    return 0


def build_index(out: Path, n: int = 2000) -> list:
    """A searchable inverted index of the sparse model's codes of ``n`` world images, and a sample query."""
    from . import main as cli_main

    print(f"[demo] indexing {n} images with the sparse model")
    if cli_main(["index", "build", str(out / "sparse"), "--out", str(out / "index"), "--n", str(n)]) != 0:
        return []
    query = ["index", "search", str(out / "index"), "--text", "a red circle", "-k", "3", "--explain", "3"]
    print("[demo] sparseclip " + " ".join(f'"{q}"' if " " in q else q for q in query))
    cli_main(query)
    return [f"sparseclip index search {out / 'index'} --text \"a red circle\" --explain 3"]


def analyse_and_report(out: Path, progress: bool = True, sae: bool = False) -> list[Path]:
    """Analyse the sparse run against the dense one and render the report (if those modules exist)."""
    made: list[Path] = []
    try:
        from ..interpret import AnalyzeConfig, analyze
    except ImportError:
        return made
    print("[demo] analysing features of the sparse model (vs the dense baseline" + (" and SAEs)" if sae else ")"))
    # SAEs get 300 steps here (1000 in `sparseclip analyze --sae`) to keep the demo within minutes
    cfg = AnalyzeConfig(sae=sae, sae_steps=300, progress=progress)
    analyze(out / "sparse", dense=out / "dense", out=out / "analysis", cfg=cfg)
    made.append(out / "analysis")
    try:
        from ..report import write_report
    except ImportError:
        return made
    print("[demo] writing the report")
    made.insert(0, write_report(out))
    return made
