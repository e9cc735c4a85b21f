"""Concepts -> features from evidence: which features fire more on inputs that show a concept than on inputs that
do not, measured on labelled images (or captions), not guessed from the text tower's code of one word.

The score of feature f for concept c is a standardised contrast of mean codes,
``(mean(x_f | c) - mean(x_f | not c)) / std(x_f)``: positive where the feature is stronger with the concept, 0 for
a feature that ignores it (or never fires), and comparable across features of different scales. A feature
*belongs* to the concept of its highest score (:func:`feature_concepts`), which is how search explanations group a
hit's shared features (:mod:`sparseclip.index.explain`).

>>> scores = concept_scores(image_codes, labels)                   # (C, D)
>>> top = evidence_features(image_codes, labels, names, k=8)       # {"color:red": [f1, f2, ...], ...}
>>> owner = feature_concepts(image_codes, labels, names)           # {feature: ("color:red", score)}

:func:`effect_ranking` re-orders candidate features by their measured effect on an output (set each one alone on
neutral inputs and watch a score move), which is how steering picks features that *do* something rather than
features that merely co-occur with a concept.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..eval.sparsity import as_numpy

#: a feature is assigned to a concept only when its standardised contrast reaches this
MIN_SCORE = 0.5


def concept_scores(codes, labels) -> np.ndarray:
    """(C, D) standardised contrast of mean codes between the inputs with and without each concept; 0 where a
    concept is on no input or on every input, or a feature is constant."""
    x = as_numpy(codes, 2, "codes").astype(np.float64)
    y = np.asarray(labels, dtype=bool)
    if y.ndim != 2 or y.shape[0] != x.shape[0]:
        raise ValueError(f"labels must be (N, C) with N = {x.shape[0]} rows, got {y.shape}")
    n_pos = y.sum(axis=0).astype(np.float64)  # (C,)
    n_neg = y.shape[0] - n_pos
    total = x.sum(axis=0)  # (D,)
    pos_sum = y.T.astype(np.float64) @ x  # (C, D)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_pos = pos_sum / n_pos[:, None]
        mean_neg = (total[None, :] - pos_sum) / n_neg[:, None]
        std = x.std(axis=0)
        out = (mean_pos - mean_neg) / std[None, :]
    out[~np.isfinite(out)] = 0.0
    out[(n_pos == 0) | (n_neg == 0)] = 0.0
    return out


def evidence_features(codes, labels, names: Sequence[str], k: int = 8,
                      min_score: float = MIN_SCORE) -> dict[str, list[int]]:
    """Per concept, up to ``k`` features of highest score (at least ``min_score``), strongest first."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    s = concept_scores(codes, labels)
    if len(names) != s.shape[0]:
        raise ValueError(f"{len(names)} names for {s.shape[0]} concepts")
    return {name: top_features(s[c], k, min_score) for c, name in enumerate(names)}


def top_features(scores: np.ndarray, k: int, min_score: float = MIN_SCORE) -> list[int]:
    """The up to ``k`` features of highest score in one concept's row of :func:`concept_scores` (at least
    ``min_score``), strongest first."""
    order = np.argsort(-scores, kind="stable")[:k]
    return [int(f) for f in order if scores[f] >= min_score]


def feature_concepts(codes, labels, names: Sequence[str], min_score: float = MIN_SCORE,
                     allowed: np.ndarray | None = None) -> dict[int, tuple[str, float]]:
    """Per feature, the concept of its highest score and that score, for features whose best score reaches
    ``min_score`` (others belong to no concept). ``allowed``: (C,) bool, the concepts a feature may be given
    (e.g. the semantic ones, not pixel statistics)."""
    s = concept_scores(codes, labels)
    if allowed is not None:
        s = np.where(np.asarray(allowed, dtype=bool)[:, None], s, -np.inf)
    if s.shape[0] == 0:
        return {}
    best = s.argmax(axis=0)
    score = s[best, np.arange(s.shape[1])]
    return {int(f): (names[int(best[f])], float(score[f])) for f in np.flatnonzero(score >= min_score)}


def active_means(codes, labels) -> np.ndarray:
    """(C, D) a feature's typical activation on each concept's inputs: its mean over the inputs with the concept
    where it fires (> 0); 0 where it never fires on them."""
    x = as_numpy(codes, 2, "codes").astype(np.float64)
    y = np.asarray(labels, dtype=bool).T.astype(np.float64)  # (C, N)
    fired = y @ (x > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (y @ x) / fired
    out[~np.isfinite(out)] = 0.0
    return out


def effect_ranking(codes, candidates: Sequence[int], values, score, keep_positive: bool = True
                   ) -> list[tuple[int, float]]:
    """Candidates ordered by their measured effect: each feature ``f`` alone is set to ``values[f]`` on every
    input of ``codes`` (N, D; torch), and its effect is the mean change of ``score(codes) -> (N,)`` (e.g. the
    VLM's log-probability of the concept's word, or a zero-shot logit), strongest first. ``keep_positive``:
    drop candidates that do not move the score up. Suppression is ranked the same way with ``values`` 0 and a
    score that should fall (pass its negative)."""
    base = score(codes).float()
    out = []
    for f in candidates:
        edited = codes.clone()
        edited[:, int(f)] = float(values[int(f)])
        out.append((int(f), float((score(edited).float() - base).mean())))
    out.sort(key=lambda t: -t[1])
    return [t for t in out if t[1] > 0] if keep_positive else out
