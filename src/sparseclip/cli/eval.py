"""``sparseclip eval CHECKPOINT``: zero-shot, retrieval, linear probe and sparsity, as JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval", help="evaluate a checkpoint (zero-shot, retrieval, linear probe, sparsity)",
        description="Evaluate a checkpoint or run directory on the procedural world's validation sets with "
                    "CLIP_benchmark semantics. Prints a summary; --out writes the full JSON.")
    p.add_argument("checkpoint", help="checkpoint dir (model.safetensors + config.json) or run dir")
    p.add_argument("--out", help="write the results JSON here (default: print it)")
    p.add_argument("--data", metavar="PATH",
                   help="evaluate on your data instead of the procedural world: a CSV of image-caption pairs "
                        "(retrieval; with --label-key also zero-shot and a linear probe), an image folder (one "
                        "subfolder per class) or CLIP_benchmark's layout (zero-shot and a linear probe)")
    p.add_argument("--label-key", default="", metavar="COL", help="CSV column holding each image's class")
    p.add_argument("--templates", metavar="FILE", help="prompt templates, one per line with {} for the class")
    p.add_argument("--csv-img-key", help="CSV image column (default: the run's data.csv_img_key)")
    p.add_argument("--csv-caption-key", help="CSV caption column (default: the run's data.csv_caption_key)")
    p.add_argument("--no-probe", action="store_true", help="skip the linear probe")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def evaluate_to_file(checkpoint: str, out: Path | None, progress: bool = True, probe: bool = True) -> dict:
    from ..checkpoint import load_model
    from ..eval import evaluate

    model, cfg = load_model(checkpoint)
    result = {"checkpoint": str(checkpoint), "model": cfg.name, "head": cfg.model.head.kind,
              **evaluate(model, cfg, progress=progress, probe=probe)}
    if out is not None:
        _write_json(Path(out), result)
    return result


def _write_json(path: Path, obj: dict) -> None:
    """Atomically: a temporary file, then rename."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    tmp.replace(path)


def check_out(out: str | None) -> None:
    """Refuse an unusable --out before any work: a folder, or a file in a missing or unwritable folder."""
    import os

    if out is None:
        return
    p = Path(out)
    if p.is_dir():
        raise ValueError(f"--out {out}: is a folder; give a file path (e.g. {p / 'eval.json'})")
    if not p.parent.is_dir():
        raise ValueError(f"--out {out}: the folder {p.parent} does not exist")
    if not os.access(p.parent, os.W_OK):
        raise ValueError(f"--out {out}: the folder {p.parent} is not writable")


def evaluate_data_to_file(args: argparse.Namespace) -> dict:
    from ..checkpoint import load_model
    from ..eval.dataset import evaluate_data, templates_from_file

    templates = templates_from_file(args.templates) if args.templates else None
    model, cfg = load_model(args.checkpoint)
    result = {"checkpoint": str(args.checkpoint), "model": cfg.name, "head": cfg.model.head.kind,
              **evaluate_data(model, cfg, args.data, label_key=args.label_key, templates=templates,
                              probe=not args.no_probe, img_key=args.csv_img_key, caption_key=args.csv_caption_key)}
    if args.out:
        _write_json(Path(args.out), result)
    return result


def run(args: argparse.Namespace) -> int:
    check_out(args.out)
    if args.data:
        result = evaluate_data_to_file(args)
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
        print(f"wrote {args.out}")
        return 0
    result = evaluate_to_file(args.checkpoint, Path(args.out) if args.out else None,
                              progress=not args.no_progress, probe=not args.no_probe)
    if args.out:
        zs = ", ".join(f"{k} {v['acc1']:.3f}" for k, v in result["zeroshot"].items())
        r = result["retrieval"]
        print(f"zero-shot acc1: {zs} (mean {result['zeroshot_mean_acc1']:.3f})")
        print(f"retrieval R@1: text->image {r['text_to_image_R@1']:.3f}, image->text {r['image_to_text_R@1']:.3f}")
        print(f"image L0: {result['sparsity']['image']['L0']:.1f} ({result['sparsity']['image']['L0_pct']:.2f}% "
              f"of {result['sparsity']['image']['dim']} dims)")
        print(f"wrote {args.out}")
    else:
        print(json.dumps(result, indent=2))
    return 0
