"""The interpretation's baselines, clarity and concept lattice on hand-made inputs whose answers are computed by
hand (docs/mutants.md: what the mutation run showed no interpretation test compared): the random dictionary's
exact firing counts and thresholds, bootstrap intervals and verdicts, clarity's pair average, the lattice's
support rules, orders and subsets."""

import math

import numpy as np
import pytest

from sparseclip.interpret.baselines import bootstrap_diff, rate_matched_dictionary, verdict
from sparseclip.interpret.clarity import clarity, clarity_all, feature_clarity, random_clarity
from sparseclip.interpret.lattice import build_lattice, caption_words, concept_parts, table_lattice


def test_rate_matched_dictionary_fires_on_exactly_the_rates():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20, 4)).astype(np.float32)
    d = rate_matched_dictionary(x, [0.0, 0.05, 0.5, 1.0], seed=3)
    assert d.directions.shape == (4, 4)
    assert np.allclose(np.linalg.norm(d.directions, axis=0), 1.0, atol=1e-6)  # unit directions
    codes = d.encode(x)
    assert (codes > 0).sum(axis=0).tolist() == [0, 1, 10, 20] and (codes >= 0).all()
    assert math.isinf(d.thresholds[0])
    proj = x @ d.directions
    # rate 1: the threshold is 1 below the smallest projection; rate 0.5: the 11th largest projection
    assert d.thresholds[3] == pytest.approx(proj[:, 3].min() - 1.0)
    assert d.thresholds[2] == pytest.approx(np.sort(proj[:, 2])[::-1][10])
    assert np.allclose(codes[:, 2], np.maximum(proj[:, 2] - d.thresholds[2], 0.0), atol=1e-6)
    other = rate_matched_dictionary(x, [0.5], seed=4)
    assert not np.allclose(other.directions[:, 0], d.directions[:, 2])  # the seed is used
    with pytest.raises(ValueError, match=r"^rates: a 1-d array of firing rates in \[0, 1\]$"):
        rate_matched_dictionary(x, [1.5])
    with pytest.raises(ValueError, match="^rates"):
        rate_matched_dictionary(x, [-0.1])
    with pytest.raises(ValueError, match="^rates"):
        rate_matched_dictionary(x, [[0.5]])
    with pytest.raises(ValueError, match=r"^x: expected a 2-d array"):
        d.encode(np.zeros(4))


def test_bootstrap_diff_intervals_pairing_and_verdicts():
    a, b = [1.0, 2.0, 3.0, np.nan], [0.0, 0.5, np.nan, 1.0]
    d = bootstrap_diff(a, b, n_boot=600, seed=1)
    # NaNs dropped on each side: mean 2.0 - mean 0.5
    assert d["diff"] == pytest.approx(1.5) and (d["n_a"], d["n_b"]) == (3, 3)
    assert d["lo"] < 1.5 < d["hi"] and d["lo"] > 0 and verdict(d) == "above"
    # every resample of a constant difference is that difference
    p = bootstrap_diff([1.0, 2.0, 3.0], [0.5, 1.5, 2.5], n_boot=300, paired=True)
    assert (p["diff"], p["lo"], p["hi"]) == pytest.approx((0.5, 0.5, 0.5))
    # paired: a NaN on either side drops the unit from both
    p = bootstrap_diff([1.0, np.nan, 5.0], [0.0, 1.0, np.nan], paired=True)
    assert (p["n_a"], p["n_b"], p["diff"]) == (1, 1, 1.0)
    with pytest.raises(ValueError, match=r"^paired values need equal shapes, got \(2,\) and \(1,\)$"):
        bootstrap_diff([1.0, 2.0], [1.0], paired=True)
    e = bootstrap_diff([], [1.0])
    assert math.isnan(e["diff"]) and math.isnan(e["lo"]) and (e["n_a"], e["n_b"]) == (0, 1) and verdict(e) == "n/a"
    assert math.isnan(bootstrap_diff([1.0], [])["hi"])
    # the interval's level: a narrower level gives a narrower interval inside the wider one
    xa, xb = [0.0, 1.3, 2.1, 3.7, 0.4, 2.9], [1.0, 1.55, 0.25]
    w = bootstrap_diff(xa, xb, n_boot=1000, seed=2)
    n = bootstrap_diff(xa, xb, n_boot=1000, seed=2, level=0.5)
    assert w["lo"] < n["lo"] < n["hi"] < w["hi"]
    assert bootstrap_diff(xa, xb, n_boot=1000, seed=3)["lo"] != w["lo"]  # the seed is used
    # 2000 resamples by default, drawn in chunks of 250: the same as asking for them
    assert bootstrap_diff([0.0, 1.0, 5.0], [1.0, 2.0]) == bootstrap_diff([0.0, 1.0, 5.0], [1.0, 2.0], n_boot=2000)
    assert verdict({"diff": -1.0, "lo": -2.0, "hi": -0.5}) == "below"
    assert verdict({"diff": 0.1, "lo": -0.1, "hi": 0.3}) == "level"
    assert verdict({"diff": 0.1, "lo": 0.0, "hi": 0.3}) == "level"  # an interval touching 0 is not above


def test_clarity_is_the_mean_pairwise_cosine_of_each_features_inputs():
    # reference vectors: inputs 0 and 1 point the same way, 2 is orthogonal, 3 opposite to 0
    ref = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    codes = np.array([[1.0, 1.0, 0.0, 0.0],
                      [1.0, 0.0, 0.0, 0.5],
                      [0.0, 1.0, 0.0, 0.0],
                      [0.0, 1.0, 0.0, 0.0]])
    per = feature_clarity(codes, ref)
    # f0: inputs 0, 1 -> cos 1; f1: inputs 0, 2, 3 -> pairs (0,2) 0, (0,3) -1, (2,3) 0 -> -1/3; f2 dead; f3 fires once
    assert per[0] == pytest.approx(1.0) and per[1] == pytest.approx(-1 / 3)
    assert math.isnan(per[2]) and math.isnan(per[3])
    assert clarity(codes, ref) == pytest.approx((1 - 1 / 3) / 2)
    assert clarity_all(codes, ref) == pytest.approx((1 - 1 / 3) / 4)  # dead and single-input features count 0
    # n_min = 1 still needs two inputs for a pair; tau decides what fires (0.5 is not above 0.5)
    assert math.isnan(feature_clarity(codes, ref, n_min=1)[3])
    assert math.isnan(feature_clarity(codes, ref, tau=1.0)[0])
    # an input without a reference vector is not scored: f1 keeps inputs 0 and 2
    ref0 = ref.copy()
    ref0[3] = 0.0
    assert feature_clarity(codes, ref0)[1] == pytest.approx(0.0)
    assert math.isnan(clarity(np.zeros((4, 2)), ref)) and math.isnan(clarity_all(np.zeros((4, 0)), ref))
    with pytest.raises(ValueError, match="^reference has 3 rows but codes have 4$"):
        feature_clarity(codes, ref[:3])
    # random inputs: the mean over all 6 pairs of the 4 reference vectors: (1 + 0 - 1 + 0 - 1 + 0) / 6
    assert random_clarity(ref) == pytest.approx(-1 / 6)
    assert random_clarity(np.vstack([ref, np.zeros((1, 2))])) == pytest.approx(-1 / 6)
    with pytest.raises(ValueError, match="^reference: need at least 2 rows for a pairwise similarity$"):
        random_clarity(np.array([[1.0, 0.0], [0.0, 0.0]]))


def test_lattice_support_orders_and_pixel_concepts():
    red_circle = {"color:red", "shape:circle"}
    blue_circle = {"color:blue", "shape:circle"}
    objects = [[red_circle]] * 3 + [[blue_circle, {"color:red", "shape:star"}]] * 2 + [[blue_circle]]
    labels = [{"background:dark", "count:1"}] * 3 + [{"background:light", "count:2"}] * 2 + [{"count:1"}]
    lat = build_lattice(objects, labels, min_support=2)
    # singles (order 1) first, then pairs of the same object; shape:circle is on every input: dropped
    assert lat.names == ["background:dark", "background:light", "color:blue", "color:red", "count:1", "count:2",
                         "shape:star", "color:blue&shape:circle", "color:red&shape:circle", "color:red&shape:star"]
    assert lat.order.tolist() == [1] * 7 + [2] * 3
    assert lat.pixel.tolist() == [True, True] + [False] * 8 and lat.semantic.tolist() == [False, False] + [True] * 8
    assert lat.matrix[:, lat.names.index("color:red&shape:circle")].tolist() == [True] * 3 + [False] * 3
    assert lat.matrix[:, lat.names.index("color:blue")].tolist() == [False] * 3 + [True] * 3
    assert lat.to_dict() == {"concepts": 10, "singles": 7, "conjunctions": 3, "pixel": 2, "inputs": 6}
    # support: at least min_support inputs (red&star has 2), never all of them
    assert "color:red&shape:star" not in build_lattice(objects, labels, min_support=3).names
    assert "count:1" in build_lattice(objects, labels, min_support=4).names
    assert build_lattice(objects, labels, max_order=1, min_support=2).order.tolist() == [1] * 7
    # a pixel kind is never conjoined
    lat_px = build_lattice([[{"background:dark", "color:red"}], [{"color:blue"}]] * 2, min_support=1)
    assert lat_px.names == ["background:dark", "color:blue", "color:red"]
    sub = lat.rows([5, 0])
    assert sub.matrix.tolist() == [lat.matrix[5].tolist(), lat.matrix[0].tolist()] and sub.names == lat.names
    cols = lat.columns(np.array([False, True] + [False] * 7 + [True]))
    assert cols.names == ["background:light", "color:red&shape:star"] and cols.order.tolist() == [1, 2]
    assert cols.pixel.tolist() == [True, False] and cols.matrix.shape == (6, 2)
    assert lat.columns([9, 0]).names == ["color:red&shape:star", "background:dark"]
    assert concept_parts("a:x&b:y") == ["a:x", "b:y"]
    with pytest.raises(ValueError, match="^labels: 1 rows for 6 inputs$"):
        build_lattice(objects, labels[:1])
    with pytest.raises(ValueError, match="^max_order must be >= 1, got 0$"):
        build_lattice(objects, labels, max_order=0)


def test_caption_words_and_table_lattice():
    words = caption_words(["Red Apple, an apple!", "the big cat"], stopwords={"the"}, min_len=3)
    assert words == [frozenset({"word:red", "word:apple"}), frozenset({"word:big", "word:cat"})]
    assert caption_words(["an ox"], min_len=2) == [frozenset({"word:an", "word:ox"})]
    lat = table_lattice({"kind": ["cat", "cat", "dog", ""], "size": ["big", "small", "big", "big"]},
                        words=[{"word:x"}, set(), {"word:x"}, set()], min_support=2)
    # empty values are skipped; words join each row's object; pairs of the same row are conjunctions
    assert lat.names == ["kind:cat", "size:big", "word:x", "size:big&word:x"]
    assert lat.matrix.tolist() == [[True, True, True, True], [True, False, False, False],
                                   [False, True, True, True], [False, True, False, False]]
    assert table_lattice({}, words=[{"word:a"}, {"word:b"}] * 2, min_support=2).names == ["word:a", "word:b"]


def test_row_kinds_chance_counts_and_matched_l0():
    from sparseclip.interpret.baselines import RANDOM_DICTIONARY
    from sparseclip.interpret.verdicts import RANDOM_INIT, SHUFFLED, above_chance, matched_l0, row_kind, shares_ids

    assert [row_kind(n) for n in (RANDOM_DICTIONARY, RANDOM_INIT, SHUFFLED, "dense (lite_dense)", "SAE topk",
                                  "sae relu", "lite_sparse", "dense")] == [
        "random dictionary", "random init", "shuffled labels", "dense", "SAE", "SAE", "model", "model"]
    # 3 passes of 10 units at a chance rate of 0.01: P(X >= 3) = 1 - P(X <= 2) for Binomial(10, 0.01)
    p3 = 1 - sum(math.comb(10, k) * 0.01 ** k * 0.99 ** (10 - k) for k in range(3))
    r = above_chance([1, 0, 1, np.nan, 0, 0, 1, 0, 0, 0, 0])
    assert (r["passes"], r["units"], r["above"]) == (3, 10, True) and r["p_value"] == pytest.approx(p3)
    one = above_chance([1] + [0] * 9)  # P(X >= 1) = 1 - 0.99^10 = 0.096: not above
    assert one["p_value"] == pytest.approx(1 - 0.99 ** 10) and one["above"] is False
    empty = above_chance([np.nan])
    assert (empty["passes"], empty["units"], empty["above"]) == (0, 0, False) and math.isnan(empty["p_value"])
    assert shares_ids("SAE topk (shared)") and not shares_ids("SAE topk (one per modality)")
    assert matched_l0(10, 15) and matched_l0(15, 10) and not matched_l0(10, 15.1) and not matched_l0(15.1, 10)
    assert matched_l0(10, 19, factor=2.0) and not matched_l0(10, 21, factor=2.0)
    assert matched_l0(None, 3) and matched_l0("x", 3) and matched_l0(float("nan"), 3) and matched_l0(0, 3)
    assert matched_l0(3, -1) and matched_l0(3, float("inf"))
