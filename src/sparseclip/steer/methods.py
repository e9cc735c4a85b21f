"""Steering methods: which coordinates of a code an edit touches, and how much.

Every method turns a (source, target) pair of concept values (e.g. ``red`` -> ``blue``) and a setting (K features,
a strength) into an edit of one image code. On a Sparse CLIP:

- ``text-word`` (the old method, kept as a baseline row): suppress the top-K features the *text tower* gives the
  source word, boost those of the target word to ``strength`` x their 99th percentile on reference images.
- ``evidence``: the top-K features by *evidence* (:func:`sparseclip.interpret.evidence.evidence_features`: the
  standardised contrast of mean image codes with and without the concept, on labelled images); the source's are
  clamped to 0, the target's to ``strength`` x their typical activation (their mean on the target's images where
  they fire).
- ``effect``: evidence candidates (the top ``EFFECT_CANDIDATES``) re-ranked by their measured *effect* on the VLM
  (:func:`sparseclip.interpret.evidence.effect_ranking`): a target candidate set alone to 4 x its typical value on
  images without the target must raise the VLM's log-probability of answering the target word; a source candidate
  zeroed on the source's images must lower that of the source word. Top-K of each, clamped as ``evidence``.
- ``means-topk`` (a sparse-cleaned dense vector): the difference of the mean image codes of target and source
  images, restricted to its K largest coordinates (by magnitude), unit-normalised, added at ``strength`` x the
  mean image-code norm; the result is clipped at 0 (codes are non-negative). K = the code width is the dense
  difference of means itself.

On a dense CLIP: ``dense-text`` (add the difference of the unit text embeddings of target and source, at
``strength`` x the mean image-code norm: the old dense baseline, unchanged) and ``dense-means`` (add the unit
difference of the mean image codes of target and source images, the stronger dense baseline).

The labelled images are an *evidence* split of one-object world scenes disjoint from the benchmark's select and
test splits (:func:`evidence_split`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from ..data.tasks import hash_seed
from ..data.world import COLORS, SHAPES, World
from ..interpret.evidence import MIN_SCORE, active_means, concept_scores, effect_ranking, top_features
from ..model.embed import encode_images
from ..registry import Registry
from .interventions import FeatureReference, Intervention, apply_intervention, text_direction
from .text import QUESTIONS, SteerError

KINDS = {"color": tuple(COLORS), "shape": tuple(SHAPES)}
EFFECT_CANDIDATES = 32
EFFECT_PROBE = 4.0  # x typical activation: the strength at which a candidate's effect is measured
EFFECT_IMAGES = 64
ATTRIBUTE_QUESTION = {"color": QUESTIONS["color"], "shape": QUESTIONS["shape"]}

Edit = Callable[[torch.Tensor, object], torch.Tensor]


def evidence_split(model, image_size: int, n: int, seed: int) -> tuple[torch.Tensor, np.ndarray, list[str]]:
    """Codes (n, D) of ``n`` one-object world scenes of the evidence split, their (n, C) concept labels (the
    object's colour and shape) and the C concept names (the values themselves)."""
    world = World(seed=hash_seed(seed, "steer-evidence"), image_size=image_size, max_objects=1)
    names = [*KINDS["color"], *KINDS["shape"]]
    labels = np.zeros((n, len(names)), dtype=bool)
    images = []
    for i in range(n):
        scene = world.scene(i)
        o = scene.objects[0]
        labels[i, names.index(o.color)] = labels[i, names.index(o.shape)] = True
        images.append(world.render(scene, i))
    return encode_images(model, images, image_size), labels, names


@dataclass
class ConceptEvidence:
    """What the evidence split says about each concept value for one model."""

    codes: torch.Tensor  # (N, D)
    labels: np.ndarray  # (N, C)
    names: list[str]
    scores: np.ndarray  # (C, D) standardised contrast
    typical: np.ndarray  # (C, D) mean activation where active
    means: torch.Tensor  # (C, D) mean code of the concept's images

    @classmethod
    def of(cls, codes: torch.Tensor, labels: np.ndarray, names: Sequence[str]) -> ConceptEvidence:
        y = torch.as_tensor(labels, dtype=torch.float32)
        means = (y.T @ codes.float()) / y.sum(0).clamp_min(1)[:, None]
        return cls(codes, labels, list(names), concept_scores(codes, labels), active_means(codes, labels), means)

    def index(self, value: str) -> int:
        if value not in self.names:
            raise SteerError(f"no evidence for concept {value!r} (known: {', '.join(self.names)})")
        return self.names.index(value)

    def ranked(self, value: str, k: int, min_score: float = MIN_SCORE) -> list[int]:
        """Up to ``k`` features of highest evidence for ``value`` (score >= ``min_score``), strongest first."""
        return top_features(self.scores[self.index(value)], k, min_score)

    def typical_of(self, value: str) -> torch.Tensor:
        return torch.from_numpy(self.typical[self.index(value)].astype(np.float32))


def clamp_edit(code: torch.Tensor, suppress: Sequence[int], boost: Sequence[int], values: torch.Tensor
               ) -> torch.Tensor:
    """``code`` with ``suppress`` set to 0 and each of ``boost`` set to ``values[f]`` (a boosted feature that is
    also suppressed is boosted)."""
    out = code.clone()
    sup = [f for f in suppress if f not in set(boost)]
    if sup:
        out[..., sup] = 0
    if boost:
        idx = list(boost)
        out[..., idx] = values[idx].to(out.dtype)
    return out


def effect_order(vlm, ev: ConceptEvidence, kind: str, value: str, role: str,
                 n_candidates: int = EFFECT_CANDIDATES, n_images: int = EFFECT_IMAGES) -> list[int]:
    """Evidence candidates for ``value`` ordered by their effect on the VLM's answer to the attribute question
    of ``kind`` (see the module docstring); candidates without the expected effect are dropped."""
    j = ev.index(value)
    has = ev.labels[:, j]
    cands = ev.ranked(value, n_candidates)
    if not cands:
        return []
    q = ATTRIBUTE_QUESTION[kind]
    if role == "boost":
        pool = ev.codes[torch.from_numpy(np.flatnonzero(~has)[:n_images])]
        values = EFFECT_PROBE * ev.typical_of(value)
        return [f for f, _ in effect_ranking(pool, cands, values, lambda c: vlm.answer_logprob(c, q, value))]
    pool = ev.codes[torch.from_numpy(np.flatnonzero(has)[:n_images])]
    zeros = torch.zeros(ev.codes.shape[1])
    return [f for f, _ in effect_ranking(pool, cands, zeros, lambda c: -vlm.answer_logprob(c, q, value))]


def _unit(v: torch.Tensor) -> torch.Tensor:
    n = v.norm()
    if float(n) == 0:
        raise SteerError("a zero steering direction (the two concepts' mean codes are equal)")
    return v / n


def top_coordinates(v: torch.Tensor, k: int) -> torch.Tensor:
    """``v`` with all but its ``k`` largest-magnitude coordinates set to 0 (``k`` >= width: ``v`` itself)."""
    if k >= v.shape[-1]:
        return v.clone()
    out = torch.zeros_like(v)
    idx = v.abs().topk(k).indices
    out[idx] = v[idx]
    return out


class MethodEdits:
    """Builds each method's edits for one model: ``settings(method)`` lists (K, strength) pairs and
    ``edit(method, k, strength)`` returns ``edit(code, item)`` (item: ``.kind``, ``.source``, ``.target``); the
    work is the method's entry in :data:`STEER_METHODS` (this object holds what they share and cache)."""

    def __init__(self, model, tokenizer, ev: ConceptEvidence, reference: FeatureReference, vlm=None,
                 text_k: int = 16, log: Callable[[str], None] | None = None):
        self.model, self.tok, self.ev, self.reference, self.vlm = model, tokenizer, ev, reference, vlm
        self.width = ev.codes.shape[1]
        self.mean_norm = reference.mean_norm
        self._text: dict[str, list[int]] = {}
        self._effect: dict[tuple[str, str], list[int]] = {}
        self._dirs: dict[tuple[str, str, str], torch.Tensor] = {}
        self.text_k, self.log = text_k, log

    def features(self, method: str, kind: str, value: str, role: str) -> list[int]:
        """The ordered features ``method`` would edit for ``value`` in ``role`` ("boost"/"suppress")."""
        return self.method(method).features(self, kind, value, role)

    def edit(self, method: str, k: int, strength: float) -> Edit:
        return self.method(method).edit(self, k, strength)

    def settings(self, method: str, ks: Sequence[int], strengths: Sequence[float],
                 dense_strengths: Sequence[float]) -> list[tuple[int, float]]:
        return self.method(method).settings(self, ks, strengths, dense_strengths)

    @staticmethod
    def method(name: str) -> SteerMethod:
        """The registered method ``name`` (an unknown name is one :class:`SteerError`)."""
        if name not in STEER_METHODS:
            raise SteerError(f"unknown steering method {name!r} (known: {', '.join(STEER_METHODS)})")
        return STEER_METHODS.get(name)

    def means_direction(self, source: str, target: str) -> torch.Tensor:
        """The difference of the mean image codes of ``target`` and ``source`` images (cached)."""
        key = ("means", source, target)
        if key not in self._dirs:
            self._dirs[key] = self.ev.means[self.ev.index(target)] - self.ev.means[self.ev.index(source)]
        return self._dirs[key]


class SteerMethod:
    """A steering method (an entry of :data:`STEER_METHODS`): it declares which CLIP it edits (``edits``:
    ``"sparse"`` or ``"dense"``), how its strength reads (``unit``, None: the mean image-code norm), whether it
    edits named features (``named_features``: :meth:`features` works, and ``sparseclip steer`` can use it on one
    image) and whether the benchmark's target is about it (``candidate``); it lists its settings and builds its
    edits. Nothing outside an entry compares method names."""

    edits: ClassVar[str] = "sparse"
    unit: ClassVar[str | None] = None
    named_features: ClassVar[bool] = False
    candidate: ClassVar[bool] = False
    #: its features are the text tower's reading of each word, at an absolute strength unless ``--relative``
    from_text: ClassVar[bool] = False

    def features(self, e: MethodEdits, kind: str, value: str, role: str) -> list[int]:
        raise SteerError("this steering method edits no named features")

    def settings(self, e: MethodEdits, ks: Sequence[int], strengths: Sequence[float],
                 dense_strengths: Sequence[float]) -> list[tuple[int, float]]:
        """(K, strength) pairs: K features at each per-feature strength by default."""
        return [(k, s) for k in ks for s in strengths]

    def edit(self, e: MethodEdits, k: int, strength: float) -> Edit:
        raise NotImplementedError


#: ``--method`` -> :class:`SteerMethod`; the sweep, the one-image command and the report ask these entries
STEER_METHODS: Registry[SteerMethod] = Registry("steering method", "--method")


class TextWord(SteerMethod):
    """The old method (a baseline row): the text tower's top features of each word, boosted relative to p99."""

    unit, named_features, from_text = "x p99", True, True

    def features(self, e: MethodEdits, kind: str, value: str, role: str) -> list[int]:
        if value not in e._text:
            from .interventions import concept_features_checked

            e._text[value] = concept_features_checked(e.model, e.tok, value, e.text_k)
        return e._text[value]

    def edit(self, e: MethodEdits, k: int, strength: float) -> Edit:
        def text_edit(c, it):
            iv = Intervention(tuple(self.features(e, it.kind, it.source, "suppress")[:k]),
                              tuple(self.features(e, it.kind, it.target, "boost")[:k]), strength, True)
            return apply_intervention(c, iv, e.reference)
        return text_edit


class Evidence(SteerMethod):
    """The top features by evidence, clamped: the source's to 0, the target's to strength x typical."""

    unit, named_features, candidate = "x typical", True, True

    def features(self, e: MethodEdits, kind: str, value: str, role: str) -> list[int]:
        return e.ev.ranked(value, EFFECT_CANDIDATES)

    def edit(self, e: MethodEdits, k: int, strength: float) -> Edit:
        def clamp(c, it):
            boost = self.features(e, it.kind, it.target, "boost")[:k]
            return clamp_edit(c, self.features(e, it.kind, it.source, "suppress")[:k], boost,
                              strength * e.ev.typical_of(it.target))
        return clamp


class Effect(Evidence):
    """Evidence candidates re-ranked by their measured effect on the VLM, clamped as ``evidence``."""

    def features(self, e: MethodEdits, kind: str, value: str, role: str) -> list[int]:
        if e.vlm is None:
            raise SteerError("effect-ranked features need the VLM whose answers they move")
        key = (value, role)
        if key not in e._effect:
            e._effect[key] = effect_order(e.vlm, e.ev, kind, value, role)
        return e._effect[key]


class MeansTopK(SteerMethod):
    """The difference of mean codes restricted to its K largest coordinates, added, clipped at 0."""

    candidate = True

    def settings(self, e: MethodEdits, ks: Sequence[int], strengths: Sequence[float],
                 dense_strengths: Sequence[float]) -> list[tuple[int, float]]:
        return [(k, s) for k in (*ks, e.width) for s in dense_strengths]

    def edit(self, e: MethodEdits, k: int, strength: float) -> Edit:
        def cleaned(c, it):
            d = _unit(top_coordinates(e.means_direction(it.source, it.target), k))
            return F.relu(c + strength * e.mean_norm * d.to(c.dtype))
        return cleaned


class DenseShift(SteerMethod):
    """Add a direction at strength x the mean image-code norm (a dense CLIP)."""

    edits, unit = "dense", "x mean code norm"

    def settings(self, e: MethodEdits, ks: Sequence[int], strengths: Sequence[float],
                 dense_strengths: Sequence[float]) -> list[tuple[int, float]]:
        return [(0, s) for s in dense_strengths]

    def direction(self, e: MethodEdits, source: str, target: str) -> torch.Tensor:
        return _unit(e.means_direction(source, target))

    def edit(self, e: MethodEdits, k: int, strength: float) -> Edit:
        def shift(c, it):
            return c + strength * e.mean_norm * self.direction(e, it.source, it.target).to(c.dtype)
        return shift


class DenseText(DenseShift):
    """The old dense baseline: the difference of the unit text embeddings of target and source (not rescaled)."""

    def direction(self, e: MethodEdits, source: str, target: str) -> torch.Tensor:
        key = ("dense-text", source, target)
        if key not in e._dirs:
            e._dirs[key] = text_direction(e.model, e.tok, source, target)
        return e._dirs[key]


STEER_METHODS.register("text-word", TextWord())
STEER_METHODS.register("evidence", Evidence())
STEER_METHODS.register("effect", Effect())
STEER_METHODS.register("means-topk", MeansTopK())
STEER_METHODS.register("dense-text", DenseText())
STEER_METHODS.register("dense-means", DenseShift())


def methods_for(edits: str) -> tuple[str, ...]:
    """The registered methods that edit a ``"sparse"`` or a ``"dense"`` CLIP, in registration order."""
    return tuple(n for n, m in STEER_METHODS.items() if m.edits == edits)


def named_feature_methods() -> tuple[str, ...]:
    """The registered methods that edit named features (usable on one image by ``sparseclip steer``)."""
    return tuple(n for n, m in STEER_METHODS.items() if m.named_features)


SPARSE_METHODS = methods_for("sparse")
DENSE_METHODS = methods_for("dense")
