"""Whole steering tasks the CLI calls in one line each: steer one image (:func:`steer_image`), train a VLM
(:func:`train_and_save`), run the sweep (:func:`run_sweep`). Errors are :class:`SteerError` (one line)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..files.atomic import write_text_atomic
from .text import QUESTIONS, SteerError


def load_pair(model_path: str | Path, vlm_path: str | Path):
    """(CLIP model, its config, its tokenizer, the adapter VLM); :class:`SteerError` if their widths differ."""
    from ..model import get_tokenizer
    from ..model.checkpoint import load_model
    from .vlm import AdapterVLM

    model, cfg = load_model(model_path)
    vlm = AdapterVLM.load(vlm_path)
    if vlm.cfg.code_dim != model.code_dim:
        raise SteerError(f"{vlm_path} reads codes of width {vlm.cfg.code_dim}, {model_path} makes {model.code_dim}")
    return model, cfg, get_tokenizer(cfg.model), vlm


def reference_codes(model, image_size: int, n: int = 1000) -> torch.Tensor:
    """Codes of ``n`` training images of the world: the reference set of relative strengths."""
    from .fit import image_codes, training_scenes

    _, images = training_scenes(n, 0, image_size)
    return image_codes(model, images, image_size)[0]


@dataclass
class FeatureChange:
    feature: int
    name: str  # the caption-vocabulary term whose text code points most at it ("?" if none)
    role: str  # "boost" or "suppress"
    before: float
    after: float


@dataclass
class SteerOutcome:
    """What :func:`steer_image` did: the question, both answers and the changed features."""

    question: str
    before: str
    after: str
    image: str = ""  # a description of a world scene ("" for an image file)
    changes: list[FeatureChange] = field(default_factory=list)


def _image(path: str | None, world_index: int | None, cfg):
    from ..data.world import World

    if path:
        from ..data.base import SkipSample, open_rgb

        try:
            return open_rgb(path), ""
        except SkipSample as e:
            raise SteerError(f"cannot read image {path} ({e})") from None
    if world_index is None:
        raise SteerError("give an image file or a world scene index")
    w = World(seed=cfg.data.val_seed, image_size=cfg.data.image_size, max_objects=1)
    scene = w.scene(world_index)
    return w.render(scene, world_index), f"world validation scene {world_index} ({scene.caption})"


def steer_image(model_path: str | Path, vlm_path: str | Path, suppress: Sequence[str] = (),
                boost: Sequence[str] = (), k: int = 2, strength: float = 2.0, relative: bool = False,
                percentile: float = 99.0, question: str = "caption", image_path: str | None = None,
                world_index: int | None = None) -> SteerOutcome:
    """Answer ``question`` (``caption``/``color``/``shape`` or a text) about one image before and after
    suppressing/boosting the top-``k`` text-tower features of concept words; name each changed feature."""
    from ..data.world import World
    from ..interpret.naming import build_vocabulary, name_features, term_scores
    from ..model.embed import encode_texts
    from .fit import image_codes
    from .interventions import FeatureReference, apply_intervention, changed_features, concept_intervention

    if not suppress and not boost:
        raise SteerError("give at least one --suppress or --boost concept")
    model, cfg, tok, vlm = load_pair(model_path, vlm_path)
    size = cfg.data.image_size
    image, described = _image(image_path, world_index, cfg)
    iv = concept_intervention(model, tok, suppress, boost, k, strength, relative, vocabulary=vlm.tokenizer)
    codes, pcodes = image_codes(model, [image], size, patches=vlm.cfg.patch_tokens)
    reference = FeatureReference(reference_codes(model, size), percentile) if relative else None
    edited = apply_intervention(codes, iv, reference)
    pedited = apply_intervention(pcodes, iv, reference) if pcodes is not None else None
    q = QUESTIONS.get(question, question)
    before = vlm.generate(codes, q, patch_codes=pcodes)[0]
    after = vlm.generate(edited, q, patch_codes=pedited)[0]
    changes = changed_features(codes[0], edited[0])
    vocab = build_vocabulary(World(seed=cfg.data.train_seed).scene(i).caption for i in range(2000))
    with torch.no_grad():
        scores = term_scores(encode_texts(model, tok, vocab))
    names = name_features(scores, vocab, [f for f, _, _ in changes])
    return SteerOutcome(q, before, after, described, [
        FeatureChange(f, names[f] or "?", "boost" if f in iv.boost else "suppress", b, a) for f, b, a in changes])


def train_and_save(model_path: str | Path, out: str | Path, lm: str | None = None, images: int = 3000,
                   steps: int = 800, batch_size: int = 64, patch_tokens: bool = False, seed: int = 0,
                   log: Callable[[str], None] | None = None) -> dict:
    """Train an adapter VLM on a CLIP model's codes and write it (and ``train_summary.json``) to ``out``."""
    from ..model.checkpoint import load_model
    from .fit import VLMTrainConfig, train_vlm

    model, cfg = load_model(model_path)
    tcfg = VLMTrainConfig(n_images=images, lm_steps=steps, stage1_steps=steps, stage2_steps=steps,
                          batch_size=batch_size, patch_tokens=patch_tokens, seed=seed)
    vlm, summ = train_vlm(model, cfg.data.image_size, tcfg, lm_dir=lm, clip_name=str(model_path), log=log)
    vlm.save(out)
    write_text_atomic(Path(out) / "train_summary.json", json.dumps(summ, indent=2))
    return summ


def run_sweep(sparse: Sequence[str], dense: Sequence[str] | None, out: str | Path, bcfg, command: str = "",
              log: Callable[[str], None] | None = None) -> dict:
    """The steering benchmark on a sparse (model, VLM) pair and optionally a dense one; writes
    ``steering.json/md/png`` into ``out`` and returns the summary."""
    from .bench import run_benchmark
    from .judge import TextJudge
    from .report import write_results

    judge = TextJudge()
    results = []
    for method, pair in (("sparse", sparse), ("dense", dense)):
        if pair is None:
            continue
        model, cfg, tok, vlm = load_pair(*pair)
        ref = reference_codes(model, cfg.data.image_size, bcfg.n_reference)
        results.append(run_benchmark(vlm, model, tok, cfg.data.image_size, bcfg, method, ref, log=log, judge=judge))
    return write_results(results, out, command)
