"""Explanations that explain: a hit's shared features grouped by the concept each belongs to, with the share of the
score each group carries.

A hit's score is a sum over the features the query and the item share (``query value x item value``). Listing the
top three features shows a few per cent of it when each item has ~100 active features; grouping them by concept
(``SparseIndex.feature_concepts``: each feature's concept by evidence, :func:`sparseclip.interpret.evidence.
feature_concepts`, written by ``analyze`` on labelled data) says which concepts the match is made of.
:func:`explanation_coverage` measures, over a set of queries, the share of each top hit's score its top-n groups
carry, next to the share of its top-n single features (the old explanation).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

#: the group of the shared features that belong to no concept
UNASSIGNED = "(no concept)"


@dataclass
class ConceptGroup:
    """The shared features of one concept in a hit: their summed contribution and its share of the score."""

    concept: str
    contribution: float
    share: float
    features: list[int] = field(default_factory=list)


def group_contributions(contributions, score: float, concepts: Mapping[int, str]) -> list[ConceptGroup]:
    """Group ``contributions`` (every shared feature of a hit, :class:`~sparseclip.index.sparse_index.
    Contribution`) by ``concepts[feature]``, largest contribution first; the features of no concept form one
    :data:`UNASSIGNED` group, always last. ``share`` = contribution / ``score`` (0 for a zero score)."""
    sums: dict[str, float] = {}
    feats: dict[str, list[int]] = {}
    for c in contributions:
        key = concepts.get(int(c.feature), UNASSIGNED)
        sums[key] = sums.get(key, 0.0) + float(c.contribution)
        feats.setdefault(key, []).append(int(c.feature))
    groups = [ConceptGroup(k, v, v / score if score else 0.0, feats[k]) for k, v in sums.items()]
    groups.sort(key=lambda g: (g.concept == UNASSIGNED, -g.contribution))
    return groups


def top_share(groups: list[ConceptGroup], n: int = 3) -> float:
    """The share of the score the ``n`` largest concept groups carry (the unassigned group does not count)."""
    named = [g for g in groups if g.concept != UNASSIGNED]
    return float(sum(g.share for g in named[:n]))


def explanation_coverage(index, queries, n: int = 3, hits: int = 1) -> dict:
    """Over ``queries`` (codes, one per row, as :meth:`SparseIndex.search_batch` takes them): for each query's
    top ``hits`` hits, the share of the score carried by its top-``n`` concept groups and by its top-``n`` single
    features. Returns the means, their per-hit values and the number of hits scored."""
    results = index.search_batch(queries, k=hits)
    group_shares, feature_shares = [], []
    for qi, row_hits in enumerate(results):
        for h in row_hits:
            full = index.explain(_row(queries, qi), h.row)
            if full.score <= 0:
                continue
            contrib = sorted((c.contribution for c in full.contributions), reverse=True)
            feature_shares.append(sum(contrib[:n]) / full.score)
            group_shares.append(top_share(group_contributions(full.contributions, full.score,
                                                              index.feature_concepts), n))
    return {"n": n, "hits": len(group_shares), "top_groups_share": _mean(group_shares),
            "top_features_share": _mean(feature_shares), "group_shares": group_shares,
            "feature_shares": feature_shares,
            "assigned_features": len(index.feature_concepts)}


def _row(queries, i: int):
    return queries[i:i + 1] if hasattr(queries, "shape") else [queries[i]]


def _mean(x: list[float]) -> float:
    return float(np.mean(x)) if x else float("nan")
