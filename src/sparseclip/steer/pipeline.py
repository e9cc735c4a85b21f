"""Whole steering tasks the CLI calls in one line each: steer one image (:func:`steer_image`), train a VLM
(:func:`train_and_save`), run the sweep (:func:`run_sweep`). Errors are :class:`SteerError` (one line)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
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


def _from_text(method: str | None) -> bool:
    """Whether ``method`` reads features off the text tower (its strength may be ``--relative``)."""
    from .methods import STEER_METHODS

    return method in STEER_METHODS and STEER_METHODS.get(method).from_text


@dataclass
class FeatureChange:
    feature: int
    name: str  # the caption-vocabulary term whose text code points most at it ("?" if none)
    role: str  # "boost" or "suppress"
    before: float
    after: float


@dataclass
class SteerOutcome:
    """What :func:`steer_image` did: the question, both answers, the changed features and the setting."""

    question: str
    before: str
    after: str
    image: str = ""  # a description of a world scene ("" for an image file)
    changes: list[FeatureChange] = field(default_factory=list)
    setting: dict = field(default_factory=dict)  # method, suppress, boost, k, strength, relative

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> SteerOutcome:
        return cls(**{**data, "changes": [FeatureChange(**c) for c in data.get("changes", [])]})

    def command(self) -> str:
        """The ``sparseclip steer`` command line that makes this outcome (from its setting)."""
        st = self.setting
        where = f"--image {st['image']}" if st.get("image") else f"--world-index {st.get('world_index')}"
        words = [f"--suppress {w}" for w in st.get("suppress", [])] + [f"--boost {w}" for w in st.get("boost", [])]
        parts = [f"sparseclip steer --model {st.get('model')} --vlm {st.get('vlm')} {where}",
                 f"--question {st.get('question', 'caption')} {' '.join(words)} --method {st.get('method')}",
                 f"-k {st.get('k')} --strength {st.get('strength'):g}"
                 + (" --relative" if st.get("relative") and _from_text(st.get("method")) else "")]
        return " \\\n    ".join(parts)

    def text(self) -> str:
        """What ``sparseclip steer`` prints."""
        lines = [f"image: {self.image}"] if self.image else []
        lines += [f"question: {self.question}", f"before:   {self.before}", f"after:    {self.after}",
                  f"changed features ({len(self.changes)}):"]
        lines += [f"  {c.feature:6d} {c.name:<22} {c.role:<8} {c.before:8.3f} -> {c.after:8.3f}" for c in self.changes]
        return "\n".join(lines)


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


def _evidence_edit(model, tok, vlm, size: int, method: str, suppress: Sequence[str], boost: Sequence[str], k: int,
                   strength: float, n_evidence: int):
    """An edit of codes (..., D) by features chosen by evidence (or their effect on ``vlm``), clamped to
    ``strength`` x each boosted feature's typical activation; the edited features' roles."""
    from .interventions import FeatureReference
    from .methods import KINDS, ConceptEvidence, MethodEdits, clamp_edit, evidence_split

    kind_of = {v: kind for kind, values in KINDS.items() for v in values}
    for word in (*suppress, *boost):
        if word not in kind_of:
            raise SteerError(f"--method {method} steers the world's colours and shapes; {word!r} is neither "
                             f"(known: {', '.join(kind_of)})")
    ev = ConceptEvidence.of(*evidence_split(model, size, n_evidence, seed=1))
    edits = MethodEdits(model, tok, ev, FeatureReference(ev.codes), vlm)
    sup = list(dict.fromkeys(f for w in suppress for f in edits.features(method, kind_of[w], w, "suppress")[:k]))
    values = torch.zeros(ev.codes.shape[1])
    bst: list[int] = []
    for w in boost:
        feats = edits.features(method, kind_of[w], w, "boost")[:k]
        values[feats] = strength * ev.typical_of(w)[feats]
        bst += [f for f in feats if f not in bst]
    if not sup and not bst:
        raise SteerError(f"no feature has evidence for {', '.join((*suppress, *boost))}")
    return (lambda c: clamp_edit(c, sup, bst, values)), set(bst)


def steer_image(model_path: str | Path, vlm_path: str | Path, suppress: Sequence[str] = (),
                boost: Sequence[str] = (), k: int = 2, strength: float = 2.0, relative: bool = False,
                percentile: float = 99.0, question: str = "caption", image_path: str | None = None,
                world_index: int | None = None, method: str = "text-word", n_evidence: int = 1000) -> SteerOutcome:
    """Answer ``question`` (``caption``/``color``/``shape`` or a text) about one image before and after editing
    the features of concept words, and name each changed feature. ``method``: ``text-word`` (the top-``k``
    text-tower features of each word; ``strength`` absolute, or relative to each feature's ``percentile`` on
    reference images), ``evidence`` or ``effect`` (the features with the most evidence for the concept on
    ``n_evidence`` labelled world images, or those with the most effect on the VLM's answer, clamped to
    ``strength`` x their typical activation; see :mod:`.methods`)."""
    from ..data.world import World
    from ..interpret.naming import build_vocabulary, name_features, term_scores
    from ..model.embed import encode_texts
    from .fit import image_codes
    from .interventions import FeatureReference, apply_intervention, changed_features, concept_intervention

    if not suppress and not boost:
        raise SteerError("give at least one --suppress or --boost concept")
    from .methods import STEER_METHODS, named_feature_methods

    if method not in named_feature_methods():
        raise SteerError(f"unknown --method {method!r} ({', '.join(named_feature_methods())})")
    if k < 1:
        raise SteerError(f"k must be >= 1, got {k}")
    model, cfg, tok, vlm = load_pair(model_path, vlm_path)
    size = cfg.data.image_size
    image, described = _image(image_path, world_index, cfg)
    for word in (*suppress, *boost):
        unknown = vlm.tokenizer.unknown_words(word)
        if unknown:
            raise SteerError(f"unknown concept word {unknown[0]!r}: not in the model's vocabulary")
    if STEER_METHODS.get(method).from_text:  # the text tower's features of each word (the old method)
        iv = concept_intervention(model, tok, suppress, boost, k, strength, relative, vocabulary=vlm.tokenizer)
        reference = FeatureReference(reference_codes(model, size), percentile) if relative else None
        boosted = set(iv.boost)

        def edit(c):
            return apply_intervention(c, iv, reference)
    else:
        relative = True
        edit, boosted = _evidence_edit(model, tok, vlm, size, method, suppress, boost, k, strength, n_evidence)
    codes, pcodes = image_codes(model, [image], size, patches=vlm.cfg.patch_tokens)
    edited = edit(codes)
    pedited = edit(pcodes) if pcodes is not None else None
    q = QUESTIONS.get(question, question)
    before = vlm.generate(codes, q, patch_codes=pcodes)[0]
    after = vlm.generate(edited, q, patch_codes=pedited)[0]
    changes = changed_features(codes[0], edited[0])
    vocab = build_vocabulary(World(seed=cfg.data.train_seed).scene(i).caption for i in range(2000))
    with torch.no_grad():
        scores = term_scores(encode_texts(model, tok, vocab))
    names = name_features(scores, vocab, [f for f, _, _ in changes])
    setting = {"method": method, "suppress": list(suppress), "boost": list(boost), "k": k, "strength": strength,
               "relative": relative, "question": question, "model": str(model_path), "vlm": str(vlm_path),
               "image": image_path or "", "world_index": world_index}
    return SteerOutcome(q, before, after, described, [
        FeatureChange(f, names[f] or "?", "boost" if f in boosted else "suppress", b, a) for f, b, a in changes],
        setting)


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
              log: Callable[[str], None] | None = None, methods: Sequence[str] | None = None) -> dict:
    """The steering benchmark on a Sparse CLIP and its VLM(s) (``sparse``: MODEL, VLM [, VLM ...], one VLM per
    seed) and optionally a dense CLIP and its VLM(s); every method of :mod:`.methods` that applies to each model
    (or those in ``methods``); seeds pooled (:func:`.bench.pool_seeds`). Writes ``steering.json/md/png`` into
    ``out`` and returns the summary."""
    from .bench import pool_seeds, run_benchmark
    from .judge import TextJudge
    from .methods import STEER_METHODS, methods_for
    from .report import write_results

    known = STEER_METHODS.names()
    unknown = [m for m in methods or () if m not in known]
    if unknown:
        raise SteerError(f"unknown steering method {unknown[0]!r} (known: {', '.join(known)})")
    judge = TextJudge()
    pooled = []
    for pair, kinds in ((sparse, methods_for("sparse")), (dense, methods_for("dense"))):
        if pair is None:
            continue
        chosen = [m for m in kinds if methods is None or m in methods]
        if len(pair) < 2:
            raise SteerError("give a model and at least one VLM")
        if not chosen:
            continue
        per_seed = []
        for vlm_path in pair[1:]:
            model, cfg, tok, vlm = load_pair(pair[0], vlm_path)
            if log:
                log(f"{pair[0]} with {vlm_path}: {', '.join(chosen)}")
            ref = reference_codes(model, cfg.data.image_size, bcfg.n_reference)
            per_seed.append(run_benchmark(vlm, model, tok, cfg.data.image_size, bcfg, chosen, ref, log=log,
                                          judge=judge))
        pooled += pool_seeds(per_seed)
    return write_results(pooled, out, command)
