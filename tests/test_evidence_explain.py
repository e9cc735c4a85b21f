"""Concepts -> features from evidence, and search explanations grouped by concept (issue 23, items 1 and 4), on
hand-built codes whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from sparseclip.index import SparseIndex
from sparseclip.index.explain import UNASSIGNED, explanation_coverage, group_contributions, top_share
from sparseclip.index.query import SearchResult, format_result
from sparseclip.index.sparse_index import Contribution
from sparseclip.interpret.evidence import concept_scores, evidence_features, feature_concepts


def labelled_codes(n: int = 400, seed: int = 0):
    """Codes of 6 features over n inputs with concepts red, circle, red&circle and a pixel-level dark: f0 fires on
    red, f1 on red circles, f2 on dark backgrounds, f3 on everything (constant), f4 never, f5 at random."""
    rng = np.random.default_rng(seed)
    red, circle, dark = rng.random(n) < 0.4, rng.random(n) < 0.4, rng.random(n) < 0.5
    x = np.zeros((n, 6))
    x[:, 0] = red * (1 + rng.random(n))
    x[:, 1] = (red & circle) * 2.0
    x[:, 2] = dark * 1.5
    x[:, 3] = 1.0
    x[:, 5] = (rng.random(n) < 0.3) * rng.random(n)
    labels = np.stack([red, circle, red & circle, dark], axis=1)
    return x, labels, ["color:red", "shape:circle", "color:red&shape:circle", "background:dark"]


def test_scores_find_the_feature_of_each_concept_and_ignore_constant_dead_and_random_ones():
    x, y, names = labelled_codes()
    s = concept_scores(x, y)
    assert s.shape == (4, 6)
    assert np.all(s[:, 3] == 0) and np.all(s[:, 4] == 0)  # constant and dead features carry no evidence
    assert np.all(np.abs(s[:, 5]) < 0.3)  # a random feature: near 0
    top = evidence_features(x, y, names, k=2)
    assert top["color:red"][0] == 0 and top["color:red&shape:circle"][0] == 1 and top["background:dark"] == [2]
    owner = feature_concepts(x, y, names, allowed=np.array([True, True, True, False]))
    assert owner[0][0] == "color:red" and owner[1][0] == "color:red&shape:circle"
    assert 2 not in owner and 3 not in owner and 4 not in owner and 5 not in owner  # pixel concept not allowed
    with pytest.raises(ValueError):
        concept_scores(x, y[:10])


def test_groups_add_up_to_the_score():
    contrib = [Contribution(1, None, 1.0, 0.3, 0.30), Contribution(2, None, 1.0, 0.2, 0.20),
               Contribution(3, None, 1.0, 0.1, 0.10), Contribution(4, None, 1.0, 0.4, 0.40)]
    groups = group_contributions(contrib, 1.0, {1: "color:red", 2: "color:red", 3: "shape:circle"})
    assert [(g.concept, round(g.contribution, 6)) for g in groups] == [
        ("color:red", 0.5), ("shape:circle", 0.1), (UNASSIGNED, 0.4)]
    assert sum(g.share for g in groups) == pytest.approx(1.0)
    assert top_share(groups, 1) == pytest.approx(0.5) and top_share(groups, 3) == pytest.approx(0.6)


def test_explanation_coverage_and_the_search_line():
    # 4 features: 0, 1 belong to "red", 2 to "circle", 3 to none; items share them with the query in known amounts
    codes = sp.csr_matrix(np.array([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 1.0]]))
    index = SparseIndex.build(codes, ["a", "b", "c"], normalize=False, feature_concepts={0: "red", 1: "red",
                                                                                          2: "circle"})
    q = sp.csr_matrix(np.array([[1.0, 1.0, 0.5, 1.0]]))
    cov = explanation_coverage(index, q, n=1, hits=1)
    # top hit is item a (score 3.5): red carries 2.0 of it, the top single feature 1.0
    assert cov["hits"] == 1 and cov["top_groups_share"] == pytest.approx(2 / 3.5)
    assert cov["top_features_share"] == pytest.approx(1 / 3.5)
    hit = index.search(q, k=1, explain=2)[0]
    full = index.explain(q, hit.row)
    groups = {hit.row: group_contributions(full.contributions, full.score, index.feature_concepts)}
    lines = format_result(SearchResult(index=index, hits=[hit], groups=groups))
    assert lines[-1].strip() == "by concept: red +2.0000 (57%), circle +0.5000 (14%), (no concept) +1.0000 (29%)"


def test_index_keeps_feature_concepts(tmp_path):
    codes = sp.csr_matrix(np.eye(3))
    index = SparseIndex.build(codes, ["a", "b", "c"], feature_concepts={1: "shape:circle"})
    index.save(tmp_path / "ix")
    assert SparseIndex.load(tmp_path / "ix").feature_concepts == {1: "shape:circle"}
