"""``sparseclip eval CHECKPOINT``: zero-shot, retrieval, linear probe and sparsity, as JSON."""

from __future__ import annotations

import argparse
import json
import sys

from ._model import add_model_arguments, model_target
from ._paths import check_out


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval", help="evaluate a checkpoint (zero-shot, retrieval, linear probe, sparsity)",
        description="Evaluate a checkpoint or run directory on the procedural world's validation sets with "
                    "CLIP_benchmark semantics. Prints a summary; --out writes the full JSON.")
    add_model_arguments(p, "checkpoint", "CHECKPOINT", "checkpoint dir (model.safetensors + config.json) or run dir")
    p.add_argument("--out", help="write the results JSON here (default: print it)")
    p.add_argument("--data", metavar="PATH",
                   help="evaluate on your data instead of the procedural world: a CSV of image-caption pairs, "
                        "or a file of another registered data format (retrieval; with --label-key also zero-shot "
                        "and a linear probe), an image folder (one "
                        "subfolder per class) or CLIP_benchmark's layout (zero-shot and a linear probe)")
    p.add_argument("--label-key", default="", metavar="COL", help="CSV column holding each image's class")
    p.add_argument("--templates", metavar="FILE", help="prompt templates, one per line with {} for the class")
    p.add_argument("--csv-img-key", help="CSV image column (default: the run's data.csv_img_key)")
    p.add_argument("--csv-caption-key", help="CSV caption column (default: the run's data.csv_caption_key)")
    p.add_argument("--no-probe", action="store_true", help="skip the linear probe")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..eval.dataset import templates_from_file
    from ..eval.run import evaluate_run

    check_out(args.out)
    templates = templates_from_file(args.templates) if args.templates else None
    target = model_target(args, "checkpoint", "CHECKPOINT")
    result = evaluate_run(target, args.out, data=args.data, label_key=args.label_key, templates=templates,
                          probe=not args.no_probe, progress=not args.no_progress, img_key=args.csv_img_key,
                          caption_key=args.csv_caption_key,
                          note=lambda msg: print(f"sparseclip: note: {msg}", file=sys.stderr))
    if args.data:
        if not args.out:
            print(json.dumps(result, indent=2))
            return 0
        d = result["dataset"]
        print(f"{d['name']}: {d['images']} images" + (f", {d['captions']} captions" if "captions" in d else ""))
        if "retrieval" in result:
            r = result["retrieval"]
            print(f"retrieval R@1: text->image {r['text_to_image_R@1']:.3f}, "
                  f"image->text {r['image_to_text_R@1']:.3f}")
        for k, v in result.get("zeroshot", {}).items():
            print(f"zero-shot {k}: acc1 {v['acc1']:.3f} over {len(d['classes'])} classes")
        print(f"image L0: {result['sparsity']['image']['L0']:.1f} ({result['sparsity']['image']['L0_pct']:.2f}% "
              f"of {result['sparsity']['image']['dim']} dims)")
        _print_health(result)
        print(f"wrote {args.out}")
        return 0
    if args.out:
        zs = ", ".join(f"{k} {v['acc1']:.3f}" for k, v in result["zeroshot"].items())
        r = result["retrieval"]
        print(f"zero-shot acc1: {zs} (mean {result['zeroshot_mean_acc1']:.3f})")
        print(f"retrieval R@1: text->image {r['text_to_image_R@1']:.3f}, image->text {r['image_to_text_R@1']:.3f}")
        print(f"image L0: {result['sparsity']['image']['L0']:.1f} ({result['sparsity']['image']['L0_pct']:.2f}% "
              f"of {result['sparsity']['image']['dim']} dims)")
        _print_health(result)
        print(f"wrote {args.out}")
    else:
        print(json.dumps(result, indent=2))
    return 0


def _print_health(result: dict) -> None:
    """The dictionary's health on the training inputs, one line (or why it was not counted)."""
    from ..eval.health import health_line

    health = result.get("dictionary") or {}
    if "error" in health:
        print(f"dictionary on the training inputs: not counted ({health['error']})")
    elif health:
        print(health_line(health))
