"""``sparseclip analyze RUN_OR_CHECKPOINT``: feature metrics, names, alignment and plots for a run."""

from __future__ import annotations

import argparse

from . import UserError
from ._model import add_model_arguments, is_shipped, model_target
from ._paths import check_out_dir

HELP = """Analyse a trained model's features: sparsity (L0, active %), clarity, modality, naming, ground-truth
alignment, training dynamics over the run's checkpoints, and occlusion heatmaps.

On the procedural world by default (ground truth for every image). With --data CSV, on your own image-caption
pairs (the training CSV format; the first --n distinct images, each with its first caption; names from a
vocabulary of the captions' words and phrases, plus --wordnet / --wordfreq); each --label-key COL adds
ground-truth alignment against that column's values (concepts COL:value) and class consistency.

Writes RUN_DIR/analysis/ (or --out): summary.json (one row per model), features.json (the selected
features), feature_names.json, dynamics.json, plots/*.png, images/*.png, heatmaps/*.png; then run
`sparseclip report RUN` for the HTML page. Examples:
  sparseclip analyze runs/tiny_sparse --dense runs/tiny_dense --n 1000 --features 32
  sparseclip analyze runs/mine --data val.csv --label-key category --out runs/mine/analysis_val
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="analyse a trained model's features", description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(p, "target", "RUN_OR_CHECKPOINT", "a run dir or a checkpoint dir")
    p.add_argument("--dense", metavar="RUN_OR_CKPT",
                   help="the dense baseline: adds its row and serves as the clarity reference encoder "
                        "(a run or checkpoint dir, or NAME:TAG of a shipped model)")
    p.add_argument("--out", metavar="DIR", help="output directory (default RUN_DIR/analysis)")
    p.add_argument("--data", metavar="CSV",
                   help="analyse on your CSV of image-caption pairs instead of the procedural world")
    p.add_argument("--label-key", action="append", default=[], metavar="COL",
                   help="a CSV column of per-image labels: ground-truth concepts COL:value (repeatable)")
    p.add_argument("--label-words", action="store_true",
                   help="with --data: the captions' words (3+ letters, no stopwords) are ground-truth concepts "
                   "word:x too, for captions that state what the image is (names, class descriptions)")
    p.add_argument("--csv-img-key", help="CSV image column (default: the run's data.csv_img_key)")
    p.add_argument("--csv-caption-key", help="CSV caption column (default: the run's data.csv_caption_key)")
    p.add_argument("--n", type=int, default=1000,
                   help="images analysed, one caption each (default 1000; with --data the first N distinct)")
    p.add_argument("--features", type=int, default=32, metavar="K", help="features in features.json (32)")
    p.add_argument("--select", choices=("auroc", "frequency", "density"), default="auroc",
                   help="how features.json's features are chosen (default: best ground-truth AUROC)")
    p.add_argument("--n-task", type=int, default=100,
                   help="images per zero-shot task for class consistency (100; 0 skips it)")
    p.add_argument("--sae", action="store_true",
                   help="add SAE baselines trained on the dense model's embeddings (needs --dense)")
    p.add_argument("--sae-steps", type=int, default=1000,
                   help="the most steps an SAE trains (1000): it stops earlier when its held-out FVU is flat; rows "
                        "record the steps run and whether it converged")
    p.add_argument("--sae-train", type=int, default=4000, metavar="N",
                   help="training scenes (with --data: images of the dense run's training CSV) whose "
                        "embeddings train the SAEs (4000)")
    p.add_argument("--band", type=float, nargs=2, default=(0.1, 0.9), metavar=("LOW", "HIGH"),
                   help="image-share band that counts as multimodal (0.1 0.9)")
    p.add_argument("--tau", type=float, default=1e-3, help="firing threshold (0.001)")
    p.add_argument("--n-min", type=int, default=2, help="inputs a feature must fire on to be active (2)")
    p.add_argument("--wordnet", action="store_true", help="add WordNet lemmas to the naming vocabulary")
    p.add_argument("--wordfreq", type=int, default=0, metavar="N", help="add the N commonest English words")
    p.add_argument("--reference", choices=("auto", "lite", "dense", "self"), default="auto",
                   help="clarity reference encoder, the same for every row: lite (pretrained towers independent "
                        "of the models), dense (the --dense model), self; auto: lite if installed, else dense, "
                        "else self")
    p.add_argument("--no-baselines", action="store_true",
                   help="skip the random-init and shuffled-labels baseline rows")
    p.add_argument("--no-dynamics", action="store_true", help="skip the training-dynamics pass")
    p.add_argument("--no-heatmaps", action="store_true", help="skip occlusion heatmaps")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..interpret import AnalyzeConfig, Options, analyze

    target = model_target(args, "target", "RUN_OR_CHECKPOINT")
    if is_shipped(target) and not args.out:
        from ..weights import resolve

        resolve(target)  # a wrong name or tag first
        raise UserError(f"{target} is a shipped model, with no run folder to write its analysis into: give --out DIR")
    lo, hi = args.band
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"--band: need 0 <= LOW <= HIGH <= 1, got {lo} {hi}")
    minimum = {"--n": (args.n, 2), "--features": (args.features, 0), "--n-task": (args.n_task, 0),
               "--sae-steps": (args.sae_steps, 1), "--sae-train": (args.sae_train, 2),
               "--n-min": (args.n_min, 1), "--tau": (args.tau, 0)}
    for flag, (value, low) in minimum.items():
        if value < low:
            raise ValueError(f"{flag}: must be >= {low}, got {value}")
    cfg = AnalyzeConfig(n=args.n, features=args.features, select=args.select, n_task=args.n_task,
                        sae=args.sae, sae_steps=args.sae_steps, sae_train=args.sae_train,
                        wordnet=args.wordnet, wordfreq=args.wordfreq, dynamics=not args.no_dynamics,
                        heatmaps=not args.no_heatmaps, progress=not args.no_progress, data=args.data,
                        baselines=not args.no_baselines, reference=args.reference,
                        label_keys=tuple(args.label_key), label_words=args.label_words,
                        csv_img_key=args.csv_img_key,
                        csv_caption_key=args.csv_caption_key, threads=args.threads)
    opts = Options(tau=args.tau, n_min=args.n_min, band=(lo, hi))
    check_out_dir(args.out)
    out = analyze(target, dense=args.dense, out=args.out, cfg=cfg, opts=opts)
    _print_summary(out)
    print(f"analysis written to {out} (summary.json, features.json, plots/); `sparseclip report` renders it")
    return 0


def _print_summary(out) -> None:
    """One line per model row, then the first features with their names and best concepts."""
    import json

    from ..model.rundir import FEATURES_JSON, SUMMARY_JSON

    def num(v, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    summary = json.loads((out / SUMMARY_JSON).read_text())
    for r in summary["rows"]:
        print(f"{r['model']}: L0 image {num(r.get('L0_image'), '.1f')} / text {num(r.get('L0_text'), '.1f')} of "
              f"{r.get('code_dim')}, active {num(r.get('active_pct'), '.1f')}%, "
              f"clarity {num(r.get('clarity'), '.3f')}, held-out mean best AUROC "
              f"{num(r.get('mean_best_auroc_heldout'), '.3f')}, strictly monosemantic "
              f"{num(r.get('monosemantic_strict_frac'), '.3f')}")
    if summary.get("verdicts"):
        held = [v["metric"] for v in summary["verdicts"] if v["holds"]]
        tested = [v for v in summary["verdicts"] if v["against"]]
        untested = [v["metric"] for v in summary["verdicts"] if not v["against"]]
        none = f"; no baseline for {', '.join(untested)} in this run" if untested else ""
        print(f"verdicts: {len(held)} of {len(tested)} metrics beat every baseline they must{none} "
              f"(`sparseclip compare {out / SUMMARY_JSON}` shows each with its intervals)")
    for f in json.loads((out / FEATURES_JSON).read_text())["features"][:3]:
        best = f" ({f['best_concept']}, AUROC {f['best_auroc']:.2f})" if f.get("best_concept") else ""
        print(f"  feature {f['id']}: {f['name'] or '(unnamed)'}{best}")
