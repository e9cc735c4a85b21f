"""Metric values of sparseclip.interpret on small hand-made arrays."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from sparseclip.data.world import CONCEPTS
from sparseclip.eval.sparsity import active_fraction, active_mask, dead_mask, l0
from sparseclip.interpret import (
    alignment,
    build_vocabulary,
    caption_ngrams,
    clarity,
    class_consistency,
    concept_matrix,
    effective_rank,
    feature_clarity,
    frequency_histogram,
    modality,
    multimodal_fraction,
    name_features,
    name_match_rate,
    name_matches,
    name_quality,
    occlusion_drops,
    occlusion_heatmap,
    random_clarity,
    term_scores,
    top_terms,
    wordnet_lemmas,
)
from sparseclip.interpret._arrays import auroc_matrix, paired_auroc


def test_l0_active_dead_on_known_matrix():
    codes = np.array([[0.0, 0.5, 0.0, 0.0002],
                      [0.0, 0.7, 0.0, 0.0],
                      [0.0, 0.0, 0.3, 0.0]])
    assert l0(codes) == pytest.approx(4 / 3)
    # feature 1 fires on 2 inputs (active); 2 on one (not active, not dead); 3 only below tau; 0 never
    assert active_mask(codes).tolist() == [False, True, False, False]
    assert active_fraction(codes) == 0.25
    assert active_fraction(codes, n_min=1) == 0.5
    assert dead_mask(codes).tolist() == [True, False, False, True]
    assert l0(torch.tensor(codes)) == pytest.approx(4 / 3)  # torch input works too
    with pytest.raises(ValueError, match="2-d"):
        l0(np.zeros(3))


def test_frequency_histogram_log_bins():
    codes = np.zeros((100, 3))
    codes[:, 0] = 1.0  # fires everywhere: log10 f = 0
    codes[:10, 1] = 1.0  # f = 0.1
    h = frequency_histogram(codes, bins=4)
    assert h.n_dead == 1
    assert sum(h.counts) == 2
    assert h.bin_edges[0] == pytest.approx(-2.0) and h.bin_edges[-1] == 0.0
    assert h.counts[-1] == 1 and h.counts[2] == 1  # [-0.5, 0] holds f=1; [-1, -0.5) holds f=0.1


def test_effective_rank_extremes():
    rank1 = np.outer(np.arange(1, 6), np.array([1.0, 2.0, 3.0]))
    assert effective_rank(rank1, center=False) == pytest.approx(1.0)
    assert effective_rank(np.eye(4), center=False) == pytest.approx(4.0)


def test_class_consistency():
    labels = np.array([0, 0, 1, 1])
    pure = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=float)
    assert class_consistency(pure, labels) == 1.0
    mixed = np.ones((4, 1))
    assert class_consistency(mixed, labels) == 0.5
    # top_k keeps the two highest activations, both class 1
    graded = np.array([[0.1], [0.2], [0.9], [0.8]])
    assert class_consistency(graded, labels, top_k=2) == 1.0
    assert np.isnan(class_consistency(np.zeros((4, 2)), labels))


def _brute_clarity(codes, ref, tau=1e-3):
    ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    vals = []
    for j in range(codes.shape[1]):
        idx = np.flatnonzero(codes[:, j] > tau)
        if idx.size < 2:
            continue
        vals.append(np.mean([ref[a] @ ref[b] for a, b in itertools.permutations(idx, 2)]))
    return float(np.mean(vals))


def test_clarity_constructed_and_brute_force():
    # two orthogonal clusters of reference embeddings
    ref = np.array([[1, 0], [2, 0], [0, 1], [0, 3]], dtype=float)
    codes = np.array([[1, 0, 1], [1, 0, 0], [0, 1, 1], [0, 1, 0]], dtype=float)
    per = feature_clarity(codes, ref)
    assert per[0] == pytest.approx(1.0) and per[1] == pytest.approx(1.0)
    assert per[2] == pytest.approx(0.0)  # fires on one input of each cluster
    assert clarity(codes, ref) == pytest.approx(2 / 3)
    # random-inputs baseline: mean over the 12 ordered distinct pairs, 4 of which have cosine 1
    assert random_clarity(ref) == pytest.approx(4 / 12)
    rng = np.random.default_rng(0)
    c = np.maximum(rng.normal(size=(12, 5)), 0)
    r = rng.normal(size=(12, 3))
    assert clarity(c, r) == pytest.approx(_brute_clarity(c, r))


def test_modality_shares_and_multimodal_fraction():
    img = np.array([[1.0, 0.0, 1.0, 0.0], [1.0, 0.0, 1.0, 0.0]])
    txt = np.array([[0.0, 1.0, 1.0, 0.0], [0.0, 1.0, 1.0, 0.0]])
    m = modality(img, txt, normalize=False)
    assert m.image_share[0] == 1.0  # image-only feature
    assert m.image_share[1] == 0.0  # text-only feature
    assert m.image_share[2] == 0.5
    assert np.isnan(m.image_share[3]) and not m.live[3]
    assert m.density[2] == pytest.approx(1.0) and m.density[0] == pytest.approx(0.5)
    assert m.multimodal_fraction() == pytest.approx(1 / 3)
    assert multimodal_fraction([0.05, 0.5, 0.95], band=(0.0, 1.0)) == 1.0
    with pytest.raises(ValueError, match="band"):
        multimodal_fraction([0.5], band=(0.9, 0.1))


def test_auroc_matches_sklearn_and_indicator_feature():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    scores = rng.normal(size=(40, 3))
    scores[:, 2] = np.round(scores[:, 2])  # ties
    y = rng.random((40, 2)) < 0.4
    auc = auroc_matrix(scores, y, chunk=2)
    for c in range(2):
        for f in range(3):
            assert auc[c, f] == pytest.approx(roc_auc_score(y[:, c], scores[:, f]))
    assert paired_auroc(scores[:, :2], y) == pytest.approx(auc.diagonal())


def test_alignment_indicator_feature_has_auroc_one():
    labels = [{"color:red", "shape:star"}, {"color:blue", "shape:star"}, {"color:red", "shape:circle"},
              {"color:blue", "shape:circle"}]
    y = concept_matrix(labels)
    assert y.shape == (4, len(CONCEPTS))
    red = y[:, CONCEPTS.index("color:red")].astype(float)
    star = y[:, CONCEPTS.index("shape:star")].astype(float)
    codes = np.stack([red, 0.5 * star + 0.1, np.array([0.3, 0.2, 0.0, 0.4])], axis=1)
    al = alignment(codes, y)
    k_red = CONCEPTS.index("color:red")
    assert al.best_auroc[k_red] == 1.0 and al.best_feature[k_red] == 0
    assert al.feature_best_concept[0] == "color:red" and al.feature_best_auroc[0] == 1.0
    assert al.feature_best_concept[1] == "shape:star"
    assert al.feature_best_auroc[2] < 0.9
    assert al.monosemantic_fraction() == pytest.approx(2 / 3)
    # concepts absent from the data are NaN and left out of the mean
    assert np.isnan(al.best_auroc[CONCEPTS.index("color:green")])
    present = ~np.isnan(al.best_auroc)
    assert al.mean_best_auroc == pytest.approx(al.best_auroc[present].mean())


def test_name_matches_concepts():
    assert name_matches("two", "count:2") and name_matches("Two shapes ", "count:2")
    assert name_matches("top left", "position:top left") and name_matches("dark background", "background:dark")
    assert not name_matches("red", "color:blue")
    assert name_match_rate({1: "red", 2: "star"}, {1: "color:red", 2: "shape:circle"}) == 0.5


def test_caption_ngrams_and_vocabulary():
    caps = ["a red circle at the top left", "two shapes: a red circle and a blue star", "a red circle"]
    v = caption_ngrams(caps, max_n=3, min_count=1)
    assert v[0] == "circle" or v[0] == "red"
    assert "red circle" in v and "top left" in v and "two shapes" in v
    assert "a red" not in v and "at the" not in v  # stopword-bounded n-grams dropped
    assert "shapes a red" not in v and "circle and a" not in v  # no n-gram across punctuation / "and"
    assert "blue star" not in caption_ngrams(caps, min_count=2)
    vocab = build_vocabulary(caps, min_count=1, wordnet=False, wordfreq_n=0)
    assert vocab == v


def test_wordnet_lemmas_reads_index_files(tmp_path):
    (tmp_path / "index.noun").write_text("  1 licence line\nzebra n 1 0\nice_cream n 1 0\n3d n 1 0\n")
    (tmp_path / "index.adj").write_text("striped a 1 0\n")
    assert wordnet_lemmas(tmp_path) == ["ice cream", "striped", "zebra"]
    assert wordnet_lemmas(tmp_path / "missing") == []


def test_naming_picks_planted_word():
    rng = np.random.default_rng(2)
    vocab = ["red", "zebra", "circle", "top left"]
    terms = np.abs(rng.normal(size=(4, 6))) * 0.1
    terms[1, 3] = 5.0  # "zebra" maps strongly onto feature 3
    terms[0] *= 100  # a loud term does not win by magnitude alone
    scores = term_scores(terms)
    assert name_features(scores, vocab, [3])[3] == "zebra"
    assert top_terms(scores, vocab, 3, k=2)[0][0] == "zebra"
    assert name_features(np.zeros((4, 6)), vocab, [0])[0] == ""


def test_name_quality():
    acts = np.array([[3.0], [2.0], [0.0], [0.0], [0.0]])
    assert name_quality(acts, acts * 2, top_k=2)[0] == 1.0
    assert name_quality(acts, -acts, top_k=2)[0] == 0.0
    assert np.isnan(name_quality(np.zeros((5, 1)), acts, top_k=2)[0])


def test_occlusion_heatmap_finds_the_patch():
    def encode(x: torch.Tensor) -> torch.Tensor:  # feature 1 = mean of the top-left 4x4 patch
        return torch.stack([x.mean(dim=(1, 2, 3)), x[:, :, :4, :4].mean(dim=(1, 2, 3))], dim=1)

    image = torch.ones(3, 8, 8)
    heat = occlusion_heatmap(encode, image, feature=1, patch=4)
    assert heat.shape == (2, 2)
    assert heat[0, 0] == pytest.approx(1.0) and np.abs(heat.ravel()[1:]).max() == pytest.approx(0.0)
    drops = occlusion_drops(encode, image, patch=4)  # every feature from one set of passes
    assert drops.shape == (2, 2, 2) and np.array_equal(drops[:, :, 1], heat)
    assert np.allclose(drops[:, :, 0], 0.25)  # each quarter of the image holds a quarter of the mean
    with pytest.raises(ValueError, match="patch"):
        occlusion_heatmap(encode, image, feature=1, patch=9)
    from PIL import Image

    from sparseclip.interpret import heatmap_overlay

    over = heatmap_overlay(Image.new("RGB", (8, 8)), heat, scale=2)
    assert over.size == (2 * 16 + 2, 16)  # plain and attributed side by side


def test_summarize_row_and_varied_feature_selection():
    from sparseclip.interpret import AnalysisData, CodeSet, select_features, summarize

    labels = [{"color:red", "shape:star"} if i % 2 == 0 else {"color:blue", "shape:circle"} for i in range(8)]
    labels[1] = {"color:blue", "shape:star"}  # star no longer coincides with red
    y = concept_matrix(labels)
    red = y[:, CONCEPTS.index("color:red")].astype(float)
    star = y[:, CONCEPTS.index("shape:star")].astype(float)
    noisy_star = star.copy()
    noisy_star[[2, 4]] = 0.0
    img = np.stack([red, 0.5 * red, red * 0.9, noisy_star], axis=1)
    txt = np.stack([red, 0.0 * red, red, star], axis=1)
    terms = np.array([[1.0, 0.3, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    data = AnalysisData(images=[], captions=[""] * 8, concepts=y, vocab=["red", "star"])
    a = summarize(CodeSet("toy", img, txt, terms), data, reference_image=np.eye(8))
    row = a.row
    assert row["model"] == "toy" and row["L0_image"] == pytest.approx(img.astype(bool).sum(1).mean())
    assert row["clarity"] == pytest.approx(0.0)  # orthonormal reference: distinct inputs never alike
    assert row["clarity_random"] == pytest.approx(0.0)
    assert row["multimodal_frac"] == pytest.approx(3 / 4)  # feature 1 never fires on text
    assert row["monosemantic_frac"] == pytest.approx(3 / 4)
    assert a.names[0] == "red" and a.names[3] == "star"
    assert row["name_match_rate"] == pytest.approx(1.0)
    # the best "star" feature comes right after the best "red" one, before the other red detectors
    assert select_features(a, 2) == [0, 3]
    assert select_features(a, 4, by="density") == [int(i) for i in np.argsort(-a.modality.density, kind="stable")]
    with pytest.raises(ValueError, match="select"):
        select_features(a, 2, by="nope")


def test_markdown_table():
    from sparseclip.interpret import markdown_table

    text = markdown_table([{"model": "sparse", "L0_image": 123.456, "clarity": 0.51234, "active_pct": None}],
                          columns=("L0_image", "clarity", "active_pct"))
    lines = text.splitlines()
    assert lines[0] == "| model | L0_image | clarity | active_pct |"
    assert lines[2] == "| sparse | 123.5 | 0.512 | - |"
