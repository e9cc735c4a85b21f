"""``sparseclip train CONFIG [key=value ...]``."""

from __future__ import annotations

import argparse

HELP = """Train a (Sparse) CLIP model.

CONFIG is a preset name ({presets}) or a YAML file. Any field can be overridden with key=value, e.g.
  sparseclip train tiny_sparse train.steps=200 model.head.expansion=16 model.logit_scale_max=50
Writes RUN_DIR (train.output_dir, or --out) with config.json, log.jsonl (JSON lines), tb/ (TensorBoard),
checkpoints/step_XXXXXX/ (safetensors + optimiser state; kept at 1/3/10/30/100% of training) and final/.
"""


def _describe(p: argparse.ArgumentParser) -> None:
    """The description names the presets: read when ``train`` is parsed or its help shown, not on every command."""
    from ..config import preset_names

    p.description = HELP.format(presets=", ".join(preset_names()))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model from a config", complete=_describe,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="preset name or YAML file")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p.add_argument("--out", help="run directory (overrides train.output_dir)")
    p.add_argument("--resume", metavar="latest|CKPT", help="continue a run exactly from its newest checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in the folder (without it, a non-empty run folder is refused)")
    p.add_argument("--shrink", action="store_true", help="a seconds-long smoke run of this config")
    p.add_argument("--eval", action="store_true", help="evaluate the final model and write eval.json")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (same as train.progress=false)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..config import load_config

    overrides = list(args.overrides)
    if args.out:
        overrides.append(f"train.output_dir={args.out}")
    cfg = load_config(args.config, overrides, shrink=args.shrink)
    from ..model.rundir import RunDir
    from ..train import train

    show = cfg.train.progress and not args.no_progress
    run_dir = train(cfg, resume=args.resume, progress=show, overwrite=args.overwrite)
    print(f"trained: {RunDir(run_dir).final}")
    if args.eval:
        from ..eval.run import evaluate_run

        evaluate_run(run_dir, RunDir(run_dir).eval_json, progress=show)
    return 0
