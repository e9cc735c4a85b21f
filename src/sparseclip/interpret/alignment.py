"""Ground-truth alignment on the procedural world, where every image's concepts are known.

For each concept (``sparseclip.data.world.CONCEPTS``, e.g. ``"color:red"``) the AUROC of every feature at
detecting it on labelled images; per concept the best single feature; per live feature its best concept.
Summary: mean best-AUROC over concepts and the fraction of live features that are *monosemantic* (best
AUROC >= 0.9). :func:`name_matches` says whether a feature's name is its ground-truth concept.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..data.world import CONCEPTS, COUNT_WORDS
from ._arrays import as_numpy, auroc_matrix
from .stats import N_MIN, TAU, active_mask

MONOSEMANTIC_AUROC = 0.9


def concept_matrix(labels: Sequence[Iterable[str]], concepts: Sequence[str] = CONCEPTS) -> np.ndarray:
    """Binary (N, C) matrix: row n has a 1 for each concept in ``labels[n]``."""
    index = {c: k for k, c in enumerate(concepts)}
    out = np.zeros((len(labels), len(concepts)), dtype=bool)
    for n, labs in enumerate(labels):
        for lab in labs:
            if lab in index:
                out[n, index[lab]] = True
    return out


@dataclass
class Alignment:
    """AUROCs of live features against concepts, with the per-concept and per-feature bests."""

    concepts: list[str]
    features: np.ndarray  # (F,) ids of the live features evaluated
    auroc: np.ndarray  # (C, F); NaN for a concept absent (or always present) in the data
    best_auroc: np.ndarray  # (C,) best live feature's AUROC per concept (0.5 if no live feature)
    best_feature: np.ndarray  # (C,) its feature id (-1 if none)
    feature_best_concept: dict[int, str]  # live feature id -> concept with its highest AUROC
    feature_best_auroc: dict[int, float]

    @property
    def mean_best_auroc(self) -> float:
        """Mean over concepts (present in the data) of the best single feature's AUROC."""
        valid = ~np.isnan(self.best_auroc)
        return float(self.best_auroc[valid].mean()) if valid.any() else float("nan")

    def monosemantic_fraction(self, threshold: float = MONOSEMANTIC_AUROC) -> float:
        """Fraction of live features whose best concept AUROC is ``>= threshold``."""
        vals = np.array(list(self.feature_best_auroc.values()))
        return float((vals >= threshold).mean()) if vals.size else float("nan")


def alignment(codes, concept_labels, concepts: Sequence[str] = CONCEPTS, tau: float = TAU,
              n_min: int = N_MIN, live=None) -> Alignment:
    """Ground-truth alignment of the features of ``codes`` (N, D) with binary ``concept_labels`` (N, C).

    Only live features (``live`` mask, default: active on these inputs) are scored; a dead feature would
    score 0.5 anyway.
    """
    x = as_numpy(codes, 2, "codes")
    y = np.asarray(concept_labels, dtype=bool)
    if y.shape != (x.shape[0], len(concepts)):
        raise ValueError(f"concept_labels: expected shape ({x.shape[0]}, {len(concepts)}), got {y.shape}")
    live_mask = active_mask(x, tau, n_min) if live is None else np.asarray(live, dtype=bool)
    feats = np.flatnonzero(live_mask)
    if not len(concepts):  # no ground truth (e.g. a CSV without label columns): nothing to align with
        return Alignment([], feats, np.zeros((0, feats.size)), np.zeros(0), np.zeros(0, dtype=int), {}, {})
    auc = auroc_matrix(x[:, feats], y) if feats.size else np.zeros((len(concepts), 0))
    best = np.full(len(concepts), 0.5)
    best_f = np.full(len(concepts), -1)
    present = ~np.isnan(auc).all(axis=1) if feats.size else y.any(axis=0) & ~y.all(axis=0)
    best[~present] = np.nan
    if feats.size:
        filled = np.where(np.isnan(auc), -np.inf, auc)
        arg = filled.argmax(axis=1)
        best[present] = filled[present, arg[present]]
        best_f[present] = feats[arg[present]]
        fb = filled.argmax(axis=0)
        f_best_c = {int(f): concepts[int(fb[k])] for k, f in enumerate(feats)}
        f_best_a = {int(f): float(filled[fb[k], k]) for k, f in enumerate(feats)}
    else:
        f_best_c, f_best_a = {}, {}
    return Alignment(list(concepts), feats, auc, best, best_f, f_best_c, f_best_a)


def concept_terms(concept: str) -> set[str]:
    """The names that count as naming ``concept`` (``"count:2"`` -> ``{"2", "two", "two shapes", ...}``)."""
    kind, _, value = concept.partition(":")
    terms = {value}
    if kind == "count" and value.isdigit():
        word = COUNT_WORDS.get(int(value), value)
        terms |= {word, f"{word} shapes", f"{word} objects"}
    elif kind == "background":
        terms |= {f"{value} background"}
    elif kind == "position":
        terms |= {f"the {value}", f"at the {value}", f"in the {value}"}
    return terms


def name_matches(name: str, concept: str) -> bool:
    """Whether a feature name (case and surrounding space ignored) names ``concept``."""
    return name.strip().lower() in concept_terms(concept)


def name_mentions(name: str, concept: str) -> bool:
    """Whether a feature name contains a name of ``concept`` as whole words ("large red circle" mentions
    ``color:red``)."""
    padded = f" {' '.join(name.lower().split())} "
    return any(f" {t} " in padded for t in concept_terms(concept))


def name_match_rate(names: dict[int, str], best_concepts: dict[int, str], contains: bool = False) -> float:
    """Fraction of features (present in both dicts) whose name names their best concept (exactly, or with
    ``contains`` anywhere in the name)."""
    common = [f for f in names if f in best_concepts]
    if not common:
        return float("nan")
    test = name_mentions if contains else name_matches
    return float(np.mean([test(names[f], best_concepts[f]) for f in common]))
