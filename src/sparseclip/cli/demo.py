"""``sparseclip demo``: the embedded default, end to end on a laptop CPU."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

HELP = """Two comparisons on the built-in procedural world (coloured shapes with captions and ground truth):

  from scratch        a tiny dense CLIP vs a tiny Sparse CLIP (same towers, data, steps): the paper's recipe at
                      a CPU's budget (64k samples; the paper's < 1% L0 comes after ~450M)
  pretrained towers   frozen EfficientNet-Lite0 + MiniLM (from pip wheels) with a dense head, a 32x ReLU head
                      (Sparse CLIP, sparse for real) and the parameter-matched 32x linear head

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
    p.add_argument("--no-analysis", action="store_true", help="skip feature analysis and the report")
    p.add_argument("--sae", action="store_true",
                   help="also train SAE baselines on the dense model for the comparison (several minutes more)")
    p.add_argument("--fresh", action="store_true", help="retrain even if finished runs exist")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--render", metavar="RESULTS_JSON",
                   help="only re-render results.md next to a demo's results.json (e.g. docs/demo/results.json)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..train.demo import run_demo

    if args.render:
        from ..train.demo import render_results

        print(render_results(Path(args.render)))
        return 0
    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps: must be >= 1, got {args.steps}")
    t0 = time.time()
    times: dict[str, float] = {}
    out = run_demo(args.out, steps=args.steps, overrides=args.overrides, progress=not args.no_progress,
                   resume=not args.fresh, times=times)
    look = [out / "results.md", out / "plots"]
    if not args.no_analysis:
        t1 = time.time()
        look += analyse_and_report(out, progress=not args.no_progress, sae=args.sae)
        times["analysis + report"] = time.time() - t1
        t1 = time.time()
        look += build_index(out)
        times["index + search"] = time.time() - t1
    print("\n[demo] time per stage:")
    for stage, sec in times.items():
        print(f"  {stage:<24} {sec:6.1f} s")
    from ..train.demo import record_stage_times

    record_stage_times(out / "results.json", times, time.time() - t0)
    print(f"\n[demo] done in {time.time() - t0:.0f} s. Look at:")
    for p in look:
        print(f"  {p}")
    return 0


def build_index(out: Path, n: int = 2000) -> list:
    """A searchable inverted index of the sparse model's codes of ``n`` world images, and a sample query."""
    from ..train.demo import SPARSE_RUN
    from . import main as cli_main

    print(f"[demo] indexing {n} images with the sparse model ({SPARSE_RUN})")
    if (out / "index").is_dir():  # the demo's own index of a previous run: rebuilt from this run's model
        import shutil

        shutil.rmtree(out / "index")
    build = ["index", "build", str(out / SPARSE_RUN), "--out", str(out / "index"), "--n", str(n)]
    names = out / "analysis" / "feature_names.json"
    if names.is_file():  # the analysis' feature names explain the matches
        build += ["--feature-names", str(names)]
    if cli_main(build) != 0:
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
    from ..train.demo import DENSE_RUN, SPARSE_RUN

    print(f"[demo] analysing features of {SPARSE_RUN} (vs {DENSE_RUN}" + (" and SAEs)" if sae else ")"))
    # SAEs get 300 steps here (1000 in `sparseclip analyze --sae`) to keep the demo within minutes
    cfg = AnalyzeConfig(sae=sae, sae_steps=300, progress=progress)
    analyze(out / SPARSE_RUN, dense=out / DENSE_RUN, out=out / "analysis", cfg=cfg)
    made.append(out / "analysis")
    try:
        from ..report import write_report
    except ImportError:
        return made
    print("[demo] writing the report")
    made.insert(0, write_report(out))
    return made
