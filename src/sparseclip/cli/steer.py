"""``sparseclip steer`` (edit one image's code, answer before/after), ``steer-train`` (build the adapter VLM)
and ``steer-bench`` (the steering sweep)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from ..fileio import write_text_atomic
from . import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "steer", help="steer a VLM by editing named features of an image's sparse code",
        description="Answer a question about one image with the adapter VLM, before and after suppressing "
                    "and/or boosting the top-K text-tower features of concept words. Prints both answers and "
                    "the features that changed, with their names.")
    p.add_argument("--model", required=True, help="Sparse CLIP run or checkpoint dir")
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
    p.set_defaults(func=run_steer)

    t = sub.add_parser("steer-train", help="train the adapter VLM on a CLIP model's codes",
                       description="Train a 2-layer MLP adapter from the model's codes to prefix embeddings of a "
                                   "causal LM on the procedural world's captions and Q/A: stage 0 (tiny LM on "
                                   "text), stage 1 (adapter only), stage 2 (adapter + LM).")
    t.add_argument("model", help="CLIP run or checkpoint dir")
    t.add_argument("--out", required=True, help="VLM directory to write")
    t.add_argument("--lm", help="a local Hugging Face causal LM directory (default: a tiny GPT-2 trained here)")
    t.add_argument("--images", type=int, default=3000)
    t.add_argument("--steps", type=int, default=800, help="steps per stage")
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--patch-tokens", action="store_true", help="also feed per-patch codes")
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=run_train)

    b = sub.add_parser("steer-bench", help="the steering benchmark sweep (sparse, and a dense baseline)",
                       description="Sweep K x relative strength on the sparse model and the text-difference shift "
                                   "on the dense model; choose on the select split, report on the test split. "
                                   "Writes steering.json, steering.md and steering.png.")
    b.add_argument("--sparse", nargs=2, metavar=("MODEL", "VLM"), help="the sparse model and its VLM (required)")
    b.add_argument("--dense", nargs=2, metavar=("MODEL", "VLM"))
    b.add_argument("--out")
    b.add_argument("--render", metavar="STEERING_JSON",
                   help="regenerate steering.md and steering.png from a steering.json (tables with 95%% intervals); "
                        "no VLM runs")
    b.add_argument("--n", type=int, default=100, help="images per split and concept kind")
    b.add_argument("--ks", default="1,2,4,8")
    b.add_argument("--strengths", default="0.5,1,2,4,8")
    b.add_argument("--dense-strengths", default="0.25,0.5,1,2,4")
    b.set_defaults(func=run_bench)


def _question(q: str) -> str:
    from ..steer.text import QUESTIONS

    return QUESTIONS.get(q, q)


def _load(model_path: str, vlm_path: str):
    from ..checkpoint import load_model
    from ..model import get_tokenizer
    from ..steer.vlm import AdapterVLM

    model, cfg = load_model(model_path)
    vlm = AdapterVLM.load(vlm_path)
    if vlm.cfg.code_dim != model.code_dim:
        raise UserError(f"{vlm_path} reads codes of width {vlm.cfg.code_dim}, {model_path} makes {model.code_dim}")
    return model, cfg, get_tokenizer(cfg.model), vlm


def _reference_codes(model, image_size: int, n: int = 1000):
    from ..steer.fit import image_codes, training_scenes

    _, images = training_scenes(n, 0, image_size)
    return image_codes(model, images, image_size)[0]


def run_steer(args: argparse.Namespace) -> int:
    import torch

    from ..data.world import World
    from ..interpret.naming import build_vocabulary, name_features, term_scores
    from ..steer.fit import image_codes
    from ..steer.interventions import FeatureReference, apply_intervention, changed_features, concept_intervention

    if not args.suppress and not args.boost:
        raise UserError("give at least one --suppress or --boost concept")
    model, cfg, tok, vlm = _load(args.model, args.vlm)
    size = cfg.data.image_size
    if args.image:
        from ..data.sources import SkipSample, open_rgb

        try:
            image = open_rgb(args.image)
        except SkipSample as e:
            raise UserError(f"cannot read image {args.image} ({e})") from None
    else:
        w = World(seed=cfg.data.val_seed, image_size=size, max_objects=1)
        scene = w.scene(args.world_index)
        image = w.render(scene, args.world_index)
        print(f"image: world validation scene {args.world_index} ({scene.caption})")
    iv = concept_intervention(model, tok, args.suppress, args.boost, args.k, args.strength, args.relative,
                              vocabulary=vlm.tokenizer)
    codes, pcodes = image_codes(model, [image], size, patches=vlm.cfg.patch_tokens)
    reference = FeatureReference(_reference_codes(model, size), args.percentile) if args.relative else None
    edited = apply_intervention(codes, iv, reference)
    pedited = apply_intervention(pcodes, iv, reference) if pcodes is not None else None
    question = _question(args.question)
    before = vlm.generate(codes, question, patch_codes=pcodes)[0]
    after = vlm.generate(edited, question, patch_codes=pedited)[0]
    print(f"question: {question}")
    print(f"before:   {before}")
    print(f"after:    {after}")
    changes = changed_features(codes[0], edited[0])
    vocab = build_vocabulary(World(seed=cfg.data.train_seed).scene(i).caption for i in range(2000))
    from ..embed import encode_texts

    with torch.no_grad():
        scores = term_scores(encode_texts(model, tok, vocab))
    names = name_features(scores, vocab, [f for f, _, _ in changes])
    print(f"changed features ({len(changes)}):")
    for f, b, a in changes:
        role = "boost" if f in iv.boost else "suppress"
        print(f"  {f:6d} {names[f] or '?':<22} {role:<8} {b:8.3f} -> {a:8.3f}")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from ..checkpoint import load_model
    from ..steer.fit import VLMTrainConfig, train_vlm

    model, cfg = load_model(args.model)
    tcfg = VLMTrainConfig(n_images=args.images, lm_steps=args.steps, stage1_steps=args.steps,
                          stage2_steps=args.steps, batch_size=args.batch_size, patch_tokens=args.patch_tokens,
                          seed=args.seed)
    vlm, summ = train_vlm(model, cfg.data.image_size, tcfg, lm_dir=args.lm, clip_name=str(args.model),
                          log=lambda m: print(m, flush=True))
    vlm.save(args.out)
    write_text_atomic(Path(args.out) / "train_summary.json", json.dumps(summ, indent=2))
    print(f"wrote {args.out} ({summ['seconds']} s)")
    return 0


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise UserError(f"expected comma-separated numbers, got {text!r}") from None


def run_bench(args: argparse.Namespace) -> int:
    from ..steer.bench import BenchConfig, render_results, run_benchmark, write_results

    if args.render:
        print(render_results(args.render))
        return 0
    if not args.sparse or not args.out:
        raise UserError("steer-bench needs --sparse MODEL VLM and --out DIR (or --render STEERING_JSON)")

    bcfg = BenchConfig(n_images=args.n, ks=tuple(int(k) for k in _floats(args.ks)), strengths=_floats(args.strengths),
                       dense_strengths=_floats(args.dense_strengths))
    results = []
    for method, pair in (("sparse", args.sparse), ("dense", args.dense)):
        if pair is None:
            continue
        model, cfg, tok, vlm = _load(*pair)
        ref = _reference_codes(model, cfg.data.image_size, bcfg.n_reference)
        results.append(run_benchmark(vlm, model, tok, cfg.data.image_size, bcfg, method, ref,
                                     log=lambda m: print(m, flush=True)))
    command = "sparseclip " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["steer-bench"] \
        else "sparseclip steer-bench ..."
    summ = write_results(results, args.out, command)
    for key, val in summ.items():
        print(f"{key}: K={val['k']} strength={val['strength']:g}: test success {val['test']['success']:.1%}, "
              f"corruption {val['test']['corrupt']:.1%}")
    print(f"wrote {args.out}/steering.md, steering.json, steering.png")
    return 0
