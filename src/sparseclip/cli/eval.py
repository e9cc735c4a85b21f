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
        Path(out).write_text(json.dumps(result, indent=2))
    return result


def run(args: argparse.Namespace) -> int:
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
