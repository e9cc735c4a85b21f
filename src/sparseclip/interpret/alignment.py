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
from ..eval.sparsity import N_MIN, TAU, active_mask, as_numpy
from ._arrays import auroc_matrix

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


#: strict monosemanticity thresholds: held-out AUROC, R-precision of the top activations, and the ratio of the
#: mean activation on inputs without the concept to the mean on inputs with it
STRICT_AUROC, STRICT_PRECISION, STRICT_RATIO = 0.9, 0.9, 0.2


@dataclass
class StrictAlignment:
    """Held-out alignment: each live feature's concept (and each concept's best feature) chosen on one half of
    the inputs (even rows), scored on the other (odd rows)."""

    n_features: int  # live features scored
    monosemantic: np.ndarray  # (F,) bool: strictly monosemantic on the held-out half
    auroc: np.ndarray  # (F,) held-out AUROC for the feature's chosen concept
    precision: np.ndarray  # (F,) held-out R-precision of its top activations
    ratio: np.ndarray  # (F,) held-out mean activation without / with the concept
    mean_best_auroc: float  # per concept: the best feature chosen on the first half, AUROC on the second

    @property
    def fraction(self) -> float:
        return float(self.monosemantic.mean()) if self.n_features else float("nan")


#: a concept is judged only with at least this many inputs having it in each half
MIN_SUPPORT = 5


def strict_alignment(codes, concept_labels, live, auroc_min: float = STRICT_AUROC,
                     precision_min: float = STRICT_PRECISION, ratio_max: float = STRICT_RATIO,
                     min_support: int = MIN_SUPPORT) -> StrictAlignment:
    """Strict, held-out monosemanticity of the ``live`` features of ``codes`` (N, D) against binary
    ``concept_labels`` (N, C).

    A feature is monosemantic for its concept c (the concept of highest AUROC on the even rows) when, on the odd
    rows: its AUROC for c is >= ``auroc_min``, the share of inputs with c among its k highest activations
    (k = the number of inputs with c, "R-precision") is >= ``precision_min``, and its mean activation on
    inputs without c is at most ``ratio_max`` times its mean on inputs with c. A feature that fires on red or
    blue alike separates red (AUROC ~0.75-1) but fails the precision and ratio tests. Concepts with fewer than
    ``min_support`` inputs in either half are not chosen (on a handful of inputs anything looks monosemantic).
    """
    x = as_numpy(codes, 2, "codes")
    y = np.asarray(concept_labels, dtype=bool)
    feats = np.flatnonzero(np.asarray(live, dtype=bool))
    empty = np.zeros(0)
    if feats.size == 0 or y.shape[1] == 0 or x.shape[0] < 4:
        return StrictAlignment(0, np.zeros(0, dtype=bool), empty, empty, empty, float("nan"))
    a, b = np.arange(0, x.shape[0], 2), np.arange(1, x.shape[0], 2)
    xa, xb, ya, yb = x[a][:, feats], x[b][:, feats], y[a], y[b]
    auc_a = np.nan_to_num(auroc_matrix(xa, ya), nan=-np.inf)  # (C, F)
    supported = (ya.sum(axis=0) >= min_support) & (yb.sum(axis=0) >= min_support)
    auc_a[~supported] = -np.inf
    auc_b = auroc_matrix(xb, yb)
    if not supported.any():
        return StrictAlignment(int(feats.size), np.zeros(feats.size, dtype=bool), np.full(feats.size, np.nan),
                               np.full(feats.size, np.nan), np.full(feats.size, np.nan), float("nan"))
    chosen = auc_a.argmax(axis=0)  # (F,) concept per feature, chosen on half a
    cols = np.arange(feats.size)
    auroc = auc_b[chosen, cols]
    pos = yb[:, chosen]  # (Nb, F): does each held-out input have the feature's concept
    k = pos.sum(axis=0)
    order = np.argsort(-xb, axis=0, kind="stable")
    ranks = np.empty_like(order)
    ranks[order, cols[None, :].repeat(order.shape[0], 0)] = np.arange(order.shape[0])[:, None]
    in_top = ranks < k[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = (in_top & pos).sum(axis=0) / k
        mean_with = (xb * pos).sum(axis=0) / k
        mean_without = (xb * ~pos).sum(axis=0) / (~pos).sum(axis=0)
        ratio = np.where(mean_with > 0, np.clip(mean_without, 0, None) / mean_with, np.inf)
    mono = (np.nan_to_num(auroc, nan=0) >= auroc_min) & (np.nan_to_num(precision, nan=0) >= precision_min) \
        & (ratio <= ratio_max)
    best_a = auc_a.argmax(axis=1)  # (C,) feature per concept, chosen on half a
    present = supported & ~np.isnan(auc_b).all(axis=1) & np.isfinite(auc_a.max(axis=1))
    held = auc_b[np.arange(y.shape[1]), best_a][present]
    held = held[~np.isnan(held)]
    return StrictAlignment(int(feats.size), mono, auroc, precision, ratio,
                           float(held.mean()) if held.size else float("nan"))
