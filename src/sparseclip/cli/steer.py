"""``sparseclip steer`` (edit one image's code, answer before/after), ``steer-train`` (build the adapter VLM)
and ``steer-bench`` (the steering sweep)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from . import UserError
from ._model import SHIPPED_HELP, add_model_arguments, model_target


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "steer", help="steer a VLM by editing named features of an image's sparse code",
        description="Answer a question about one image with the adapter VLM, before and after suppressing "
                    "and/or boosting the top-K text-tower features of concept words. Prints both answers and "
                    "the features that changed, with their names.")
    p.add_argument("--model", required=True, help=f"Sparse CLIP run or checkpoint dir, or {SHIPPED_HELP}")
    p.add_argument("--vlm", required=True, help="VLM dir written by `sparseclip steer-train`")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", help="an image file")
    src.add_argument("--world-index", type=int, help="a one-object validation scene of the procedural world")
    p.add_argument("--suppress", action="append", default=[], help="concept word/phrase to suppress (repeatable)")
    p.add_argument("--boost", action="append", default=[], help="concept word/phrase to boost (repeatable)")
    p.add_argument("-k", type=int, default=2, help="features per concept (default 2)")
    p.add_argument("--strength", type=float, default=2.0, help="boost value (default 2)")
    p.add_argument("--relative", action="store_true",
                   help="strength is a multiple of each feature's reference percentile (--percentile)")
    p.add_argument("--percentile", type=float, default=99.0, help="reference percentile for --relative")
    p.add_argument("--question", default="caption", help="caption, color, shape, or a question text")
    # no argparse choices: they would import the steering methods (and scikit-learn) for every sparseclip command;
    # the library refuses an unknown method in one line, listing the registered ones
    p.add_argument("--method", default="text-word", metavar="METHOD",
                   help="which features a concept edits: the top-K its word gives the text tower (text-word, the "
                        "default), the top-K with most evidence on labelled world images (evidence), or those with "
                        "most effect on the VLM's answer (effect); evidence/effect clamp boosted features to "
                        "--strength x their typical activation (docs/steering.md)")
    p.add_argument("--json", metavar="PATH", help="also write the outcome (answers, changed features, setting) as JSON")
    p.set_defaults(func=run_steer)

    t = sub.add_parser("steer-train", help="train the adapter VLM on a CLIP model's codes",
                       description="Train a 2-layer MLP adapter from the model's codes to prefix embeddings of a "
                                   "causal LM on the procedural world's captions and Q/A: stage 0 (tiny LM on "
                                   "text), stage 1 (adapter only), stage 2 (adapter + LM).")
    add_model_arguments(t, "model", "MODEL", "CLIP run or checkpoint dir")
    t.add_argument("--out", required=True, help="VLM directory to write")
    t.add_argument("--lm", help="a local Hugging Face causal LM directory (default: a tiny GPT-2 trained here)")
    t.add_argument("--images", type=int, default=3000)
    t.add_argument("--steps", type=int, default=800, help="steps per stage")
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--patch-tokens", action="store_true", help="also feed per-patch codes")
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=run_train)

    b = sub.add_parser("steer-bench", help="the steering benchmark sweep (sparse, and a dense baseline)",
                       description="Sweep every steering method (text-word, evidence and effect-ranked features, "
                                   "the sparse-cleaned difference of means on the sparse model; the text and "
                                   "mean-code differences on the dense model) over K x strength; choose on the "
                                   "select split, report on the test split. "
                                   "Success is judged by string match and by a separate text model reading the "
                                   "answer; corruption includes answers unfaithful to the image in attributes not "
                                   "steered; side effects are counted. Writes steering.json, steering.md and "
                                   "steering.png (every rate with n and a 95% Wilson interval).")
    b.add_argument("--sparse", nargs="+", metavar="PATH",
                   help="the sparse model, then its VLM (several VLMs: one per seed, their rates pooled) (required)")
    b.add_argument("--dense", nargs="+", metavar="PATH", help="the dense model, then its VLM(s)")
    b.add_argument("--methods", help="comma-separated subset of: text-word, evidence, effect, means-topk (sparse "
                                     "model), dense-text, dense-means (dense model); default all")
    b.add_argument("--out", help="folder for steering.json, steering.md and steering.png")
    b.add_argument("--render", metavar="STEERING_JSON",
                   help="regenerate steering.md and steering.png from a steering.json (tables with 95%% intervals); "
                        "no VLM runs")
    b.add_argument("--n", type=int, default=100, help="images per split and concept kind")
    b.add_argument("--ks", default="1,2,4,8", help="features per concept (comma-separated; means-topk also "
                                                   "tries all of them)")
    b.add_argument("--strengths", default="0.5,1,2,4,8",
                   help="multiples of each feature's p99 (text-word) or typical activation (evidence, effect)")
    b.add_argument("--dense-strengths", default="0.25,0.5,1,2,4",
                   help="multiples of the mean image-code norm (means-topk, dense-text, dense-means)")
    b.set_defaults(func=run_bench)


def run_steer(args: argparse.Namespace) -> int:
    from ..steer.pipeline import steer_image

    if not args.suppress and not args.boost:
        raise UserError("give at least one --suppress or --boost concept")
    if args.json and not Path(args.json).resolve().parent.is_dir():
        raise UserError(f"--json {args.json}: the folder {Path(args.json).parent} does not exist")
    res = steer_image(args.model, args.vlm, args.suppress, args.boost, args.k, args.strength, args.relative,
                      args.percentile, args.question, image_path=args.image, world_index=args.world_index,
                      method=args.method)
    if args.json:
        from ..files.atomic import write_json_atomic

        write_json_atomic(args.json, res.to_dict())
    print(res.text())
    return 0


def run_train(args: argparse.Namespace) -> int:
    from ..steer.pipeline import train_and_save

    summ = train_and_save(model_target(args, "model", "MODEL"), args.out, lm=args.lm, images=args.images,
                          steps=args.steps,
                          batch_size=args.batch_size, patch_tokens=args.patch_tokens, seed=args.seed,
                          log=lambda m: print(m, flush=True))
    print(f"wrote {args.out} ({summ['seconds']} s)")
    return 0


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise UserError(f"expected comma-separated numbers, got {text!r}") from None


def run_bench(args: argparse.Namespace) -> int:
    from ..steer.bench import BenchConfig
    from ..steer.pipeline import run_sweep
    from ..steer.report import render_results

    if args.render:
        print(render_results(args.render))
        return 0
    if not args.sparse or not args.out:
        raise UserError("steer-bench needs --sparse MODEL VLM and --out DIR (or --render STEERING_JSON)")
    ks, strengths, dense = _floats(args.ks), _floats(args.strengths), _floats(args.dense_strengths)
    for name, vals in (("--ks", ks), ("--strengths", strengths), ("--dense-strengths", dense)):
        if not vals or min(vals) <= 0:
            raise UserError(f"{name} needs positive numbers, got {getattr(args, name[2:].replace('-', '_'))!r}")
    if any(k != int(k) for k in ks) or args.n < 1:
        raise UserError("--ks takes whole numbers of features and --n at least 1 image")
    bcfg = BenchConfig(n_images=args.n, ks=tuple(int(k) for k in ks), strengths=strengths, dense_strengths=dense)
    command = "sparseclip " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["steer-bench"] \
        else "sparseclip steer-bench ..."
    for name, pair in (("--sparse", args.sparse), ("--dense", args.dense)):
        if pair is not None and len(pair) < 2:
            raise UserError(f"{name} needs a model and at least one VLM: {name} MODEL VLM [VLM ...]")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    summ = run_sweep(args.sparse, args.dense, args.out, bcfg, command, log=lambda m: print(m, flush=True),
                     methods=methods)
    for key, val in summ.items():
        t = val["test"]
        print(f"{key}: K={val['k']} strength={val['strength']:g}: test success {t['success']:.1%} "
              f"(judge {t['judge_success']:.1%}), corruption {t['corrupt']:.1%}, side effects {t['side_effect']:.1%}")
    print(f"wrote {args.out}/steering.md, steering.json, steering.png")
    return 0
