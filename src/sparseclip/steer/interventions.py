"""Interventions on codes: suppress or boost a concept's features, with a principled strength.

A concept's features are the top-K features the TEXT tower activates for a word or phrase
(:func:`sparseclip.interpret.concepts.concept_features`). ``suppress`` sets them to 0; ``boost`` sets them to a
strength, either absolute or *relative*: a multiple of the feature's own ``q``-th percentile over a reference
set of image codes (:class:`FeatureReference`), so "strength 2" means "twice as strong as the feature
ever gets on 1% of real images", whatever the feature's scale. The same edited codes feed the VLM, zero-shot
classification (:func:`steered_zero_shot`) or retrieval. :func:`dense_shift` is the comparable edit for a dense
CLIP: add the scaled difference of the target's and source's text embeddings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..model.embed import encode_texts
from .text import SteerError


@dataclass(frozen=True)
class Intervention:
    """Features to set to 0 (``suppress``) and to a strength (``boost``).

    ``relative``: the boosted value is ``strength`` times the feature's reference percentile; otherwise it
    is ``strength`` itself. A feature in both lists is boosted.
    """

    suppress: tuple[int, ...] = ()
    boost: tuple[int, ...] = ()
    strength: float = 2.0
    relative: bool = False


class FeatureReference:
    """Per-feature activation percentile over a reference set of codes (N, D)."""

    def __init__(self, codes: torch.Tensor, q: float = 99.0):
        if codes.ndim != 2 or codes.shape[0] == 0:
            raise SteerError("reference codes must be a non-empty (N, D) matrix")
        if not 0 < q <= 100:
            raise SteerError(f"percentile q must be in (0, 100], got {q}")
        arr = codes.detach().float().cpu().numpy()
        self.q = q
        self.percentile = torch.from_numpy(np.percentile(arr, q, axis=0).astype(np.float32))
        self.max = torch.from_numpy(arr.max(axis=0).astype(np.float32))
        self.mean_norm = float(np.linalg.norm(arr, axis=1).mean())

    def scale(self, features: Sequence[int]) -> torch.Tensor:
        """The reference value of each feature: its percentile, or its maximum where the percentile is 0
        (a rare feature); 0 for a feature that never fires on the reference set."""
        idx = torch.as_tensor(list(features), dtype=torch.long)
        p = self.percentile[idx]
        return torch.where(p > 0, p, self.max[idx])


def boost_values(iv: Intervention, reference: FeatureReference | None = None) -> torch.Tensor:
    """The value each boosted feature is set to."""
    n = len(iv.boost)
    if not iv.relative:
        return torch.full((n,), float(iv.strength))
    if reference is None:
        raise SteerError("a relative strength needs a FeatureReference (reference codes)")
    return iv.strength * reference.scale(iv.boost)


def apply_intervention(codes: torch.Tensor, iv: Intervention, reference: FeatureReference | None = None
                       ) -> torch.Tensor:
    """A copy of ``codes`` (..., D) with ``iv`` applied on the last axis (works on pooled and patch codes)."""
    out = codes.clone()
    width = out.shape[-1]
    bad = [f for f in (*iv.suppress, *iv.boost) if not 0 <= f < width]
    if bad:
        raise SteerError(f"feature index {bad[0]} out of range for codes of width {width}")
    boost = set(iv.boost)
    sup = [f for f in iv.suppress if f not in boost]
    if sup:
        out[..., sup] = 0
    if iv.boost:
        out[..., list(iv.boost)] = boost_values(iv, reference).to(out.dtype).to(out.device)
    return out


def concept_features_checked(model, tokenizer, phrase: str, k: int, vocabulary=None) -> list[int]:
    """Top-``k`` text-tower features for ``phrase``; :class:`SteerError` if a word is outside ``vocabulary``
    (e.g. the words the VLM was trained on) or the phrase activates no feature."""
    from ..interpret.concepts import concept_features

    if k < 1:
        raise SteerError(f"k must be >= 1, got {k}")
    if not phrase.strip():
        raise SteerError("empty concept phrase")
    if vocabulary is not None:
        unknown = vocabulary.unknown_words(phrase)
        if unknown:
            raise SteerError(f"unknown concept word {unknown[0]!r}: not in the model's vocabulary")
    feats = [int(f) for f in concept_features(model, tokenizer, phrase, k)]
    if not feats:
        raise SteerError(f"{phrase!r} activates no feature of the text tower")
    return feats


def concept_intervention(model, tokenizer, suppress: Sequence[str] = (), boost: Sequence[str] = (), k: int = 2,
                         strength: float = 2.0, relative: bool = True, vocabulary=None) -> Intervention:
    """An :class:`Intervention` from concept words: suppress the top-``k`` features of each ``suppress``
    phrase, boost those of each ``boost`` phrase."""
    if not suppress and not boost:
        raise SteerError("nothing to do: give at least one concept to suppress or boost")
    sup: list[int] = []
    for phrase in suppress:
        sup += [f for f in concept_features_checked(model, tokenizer, phrase, k, vocabulary) if f not in sup]
    bst: list[int] = []
    for phrase in boost:
        bst += [f for f in concept_features_checked(model, tokenizer, phrase, k, vocabulary) if f not in bst]
    return Intervention(tuple(sup), tuple(bst), float(strength), bool(relative))


def changed_features(before: torch.Tensor, after: torch.Tensor, tol: float = 1e-6) -> list[tuple[int, float, float]]:
    """(feature, before, after) for each feature of a single code (D,) that the edit changed."""
    diff = (after - before).abs() > tol
    return [(int(f), float(before[f]), float(after[f])) for f in torch.nonzero(diff).flatten().tolist()]


def text_direction(model, tokenizer, source: str, target: str) -> torch.Tensor:
    """Unit-norm text embedding of ``target`` minus that of ``source`` (D,)."""
    t = F.normalize(encode_texts(model, tokenizer, [source, target]), dim=-1)
    return t[1] - t[0]


def dense_shift(codes: torch.Tensor, direction: torch.Tensor, strength: float, scale: float = 1.0) -> torch.Tensor:
    """The dense baseline's edit: ``codes + strength * scale * direction`` (``scale``: e.g. the reference set's
    mean code norm, so that ``strength`` is in units of a typical image code)."""
    return codes + strength * scale * direction.to(codes.device, codes.dtype)


@torch.no_grad()
def class_embeddings(model, tokenizer, classnames: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
    """(C, D) unit class embeddings: the normalised mean of the normalised template embeddings (CLIP's recipe)."""
    cls = []
    for name in classnames:
        t = F.normalize(encode_texts(model, tokenizer, [tp.format(name) for tp in templates]), dim=-1)
        cls.append(F.normalize(t.mean(0), dim=0))
    return torch.stack(cls)


@torch.no_grad()
def steered_zero_shot(model, tokenizer, image_codes: torch.Tensor, classnames: Sequence[str],
                      templates: Sequence[str], iv: Intervention | None = None,
                      reference: FeatureReference | None = None, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Zero-shot predictions (class indices) for image codes after an optional intervention.

    ``weights``: precomputed :func:`class_embeddings` (else computed from ``classnames`` and ``templates``).
    """
    codes = apply_intervention(image_codes, iv, reference) if iv is not None else image_codes
    w = class_embeddings(model, tokenizer, classnames, templates) if weights is None else weights
    return (F.normalize(codes.float(), dim=-1) @ w.T).argmax(-1)


@torch.no_grad()
def steered_retrieval(model, tokenizer, image_codes: torch.Tensor, query: str, k: int = 5,
                      iv: Intervention | None = None, reference: FeatureReference | None = None) -> list[int]:
    """Indices of the ``k`` images (after an optional intervention on their codes) that best match ``query``."""
    codes = apply_intervention(image_codes, iv, reference) if iv is not None else image_codes
    q = F.normalize(encode_texts(model, tokenizer, [query]), dim=-1)[0]
    sims = F.normalize(codes.float(), dim=-1) @ q
    return sims.topk(min(k, len(sims))).indices.tolist()
