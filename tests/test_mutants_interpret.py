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
    # L0 below 1 (a share rather than a count) is still compared
    assert matched_l0(0.5, 0.6) and not matched_l0(0.5, 1.0) and not matched_l0(1.0, 0.5)


def test_bootstrap_interval_is_the_percentile_of_the_resampled_means():
    """The interval's ends are the tail percentiles of resampled means, drawn from ``default_rng(seed)`` in chunks
    of 250 (a's indices, then b's): redrawn here, so a changed chunk, tail or index range shows."""
    rng = np.random.default_rng(7)
    a, b = rng.random(9), rng.random(6) + 0.2
    d = bootstrap_diff(a, b, n_boot=600, seed=4, level=0.8)
    draw = np.random.default_rng(4)
    boots = []
    for m in (250, 250, 100):
        ia, ib = draw.integers(0, 9, (m, 9)), draw.integers(0, 6, (m, 6))
        boots += list(a[ia].mean(axis=1) - b[ib].mean(axis=1))
    assert (d["lo"], d["hi"]) == pytest.approx(tuple(np.percentile(boots, [10, 90])), rel=1e-12)
    assert d["diff"] == pytest.approx(a.mean() - b.mean())
    p = bootstrap_diff(a[:6], b, n_boot=300, seed=2, paired=True)
    draw, boots = np.random.default_rng(2), []
    for m in (250, 50):
        idx = draw.integers(0, 6, (m, 6))
        boots += list(a[:6][idx].mean(axis=1) - b[idx].mean(axis=1))
    assert (p["lo"], p["hi"]) == pytest.approx(tuple(np.percentile(boots, [2.5, 97.5])), rel=1e-12)
    # defaults: 2000 resamples, seed 0 (continuous values: one resample more moves the ends)
    assert bootstrap_diff(a, b) == bootstrap_diff(a, b, n_boot=2000, seed=0)
    assert bootstrap_diff(a, b)["lo"] != bootstrap_diff(a, b, n_boot=2001)["lo"]
    # every index can be drawn: a lone large value at index 0 widens the interval on its side
    assert bootstrap_diff([8.0, 0, 0, 0], [0.0] * 4, n_boot=400)["hi"] > 1
    assert bootstrap_diff([0.0] * 4, [8.0, 0, 0, 0], n_boot=400)["lo"] < -1
    # None is a missing value, like NaN
    n = bootstrap_diff([1.0, None, 3.0], [None, 0.5], n_boot=50)
    assert (n["n_a"], n["n_b"], n["diff"]) == (2, 1, 1.5)
    assert verdict({"diff": -0.1, "lo": -0.3, "hi": 0.0}) == "level"  # an interval touching 0 is not below


def test_rate_matched_dictionary_seed_and_input_errors():
    x = np.random.default_rng(1).standard_normal((30, 5))
    d0 = rate_matched_dictionary(x, [0.2, 0.5])
    assert np.array_equal(d0.directions, rate_matched_dictionary(x, [0.2, 0.5], seed=0).directions)
    assert np.array_equal(rate_matched_dictionary(x, [0.2], seed=9).directions,
                          rate_matched_dictionary(x, [0.2], seed=9).directions)
    with pytest.raises(ValueError, match=r"^x: expected a 2-d array, got shape \(5,\)$"):
        rate_matched_dictionary(np.zeros(5), [0.5])


def test_random_dictionary_codes_match_each_sides_rates():
    from sparseclip.eval.sparsity import firing_frequency
    from sparseclip.interpret.baselines import RANDOM_DICTIONARY, random_dictionary_codes
    from sparseclip.interpret.inputs import CodeSet

    rng = np.random.default_rng(3)
    towers = CodeSet("towers", rng.standard_normal((40, 6)), rng.standard_normal((40, 6)),
                     rng.standard_normal((5, 6)), {"task": rng.standard_normal((7, 6))})
    like_img, like_txt = rng.random((40, 4)), rng.random((40, 4)) ** 2  # values in (0, 1): tau 0.5 matters
    like = CodeSet("model", like_img, like_txt, rng.random((5, 4)))
    got = random_dictionary_codes(towers, like, tau=0.5, seed=2)
    img = rate_matched_dictionary(towers.image, firing_frequency(like_img, 0.5), 2)
    txt = rate_matched_dictionary(towers.text, firing_frequency(like_txt, 0.5), 3)
    assert got.name == RANDOM_DICTIONARY
    assert np.allclose(got.image, img.encode(towers.image)) and np.allclose(got.text, txt.encode(towers.text))
    assert np.allclose(got.terms, txt.encode(towers.terms)) and list(got.tasks) == ["task"]
    assert np.allclose(got.tasks["task"], img.encode(towers.tasks["task"]))
    assert (got.image > 0).sum(axis=0).tolist() == (like_img > 0.5).sum(axis=0).tolist()
    assert (got.text > 0).sum(axis=0).tolist() == (like_txt > 0.5).sum(axis=0).tolist()
    default = random_dictionary_codes(towers, like, tau=0.5, name="rd")
    assert default.name == "rd"
    assert np.allclose(default.image, rate_matched_dictionary(towers.image, firing_frequency(like_img, 0.5),
                                                             0).encode(towers.image))


def test_clarity_parameters_and_input_errors():
    ref = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    codes = np.array([[1.0, 1.0, 0.0],
                      [1.0, 0.0, 1e-3],
                      [0.0, 1.0, 0.5],
                      [0.0, 1.0, 0.5]])
    # n_min 3: the feature on two inputs is no longer active
    assert math.isnan(feature_clarity(codes, ref, n_min=3)[0]) and feature_clarity(codes, ref, n_min=3)[1] == \
        pytest.approx(-1 / 3)
    assert clarity(codes, ref, n_min=3) == pytest.approx(-1 / 3)
    assert clarity_all(codes, ref, n_min=3) == pytest.approx(-1 / 9)
    # f2 fires on inputs 2 and 3 (cosine 0); its value at exactly tau on input 1 does not fire
    assert feature_clarity(codes, ref)[2] == pytest.approx(0.0)
    with pytest.raises(ValueError, match=r"^codes: expected a 2-d array"):
        feature_clarity(np.zeros(4), ref)
    with pytest.raises(ValueError, match=r"^reference: expected a 2-d array"):
        feature_clarity(codes, np.zeros(4))
    with pytest.raises(ValueError, match=r"^reference: expected a 2-d array"):
        random_clarity(np.zeros(4))
    with pytest.raises(ValueError, match="^reference has 4 rows but codes have 3$"):
        feature_clarity(codes[:3, :2], ref)


def test_lattice_defaults_colons_empty_inputs_and_world_scenes():
    from sparseclip.data.world import World
    from sparseclip.interpret.lattice import MIN_SUPPORT, scene_objects, world_lattice

    three = [[{"a:1", "b:1", "c:1"}], [{"a:2", "b:2", "c:2"}]] * 2
    assert max(build_lattice(three, min_support=1).order) == 2  # default max_order 2: no triples
    assert max(build_lattice(three, min_support=1, max_order=3).order) == 3
    # a value with a colon keeps its kind: "background:12:30" is a pixel concept
    px = build_lattice([[{"background:12:30"}], [{"color:red"}]] * 2, min_support=1)
    assert px.names == ["background:12:30", "color:red"] and px.pixel.tolist() == [True, False]
    # an input without objects: no empty concept
    lat = build_lattice([[{"a:x", "b:y"}]] * 3 + [[]], min_support=1)
    assert lat.names == ["a:x", "b:y", "a:x&b:y"]
    # a lattice without concepts still says which are semantic
    none = build_lattice([[{"a:x"}]] * 3)
    assert none.names == [] and none.semantic.tolist() == [] and none.semantic.dtype == bool
    assert caption_words(["the cat"]) == [frozenset({"word:the", "word:cat"})]  # default min_len 3
    tl = table_lattice({"k": ["a", "a", "b", "b"], "s": ["x", "y", "x", "y"], "t": ["p", "p", "q", "q"]},
                       min_support=1)
    assert max(tl.order) == 2 and "k:a" in tl.names and tl.matrix.shape[0] == 4  # columns alone give the rows
    scenes = [World(0, 32).scene(i) for i in range(40)]
    objs = [[frozenset({f"color:{o.color}", f"shape:{o.shape}", f"size:{o.size}", f"position:{o.position}"})
             for o in s.objects] for s in scenes]
    assert scene_objects(scenes[0]) == objs[0]
    want = build_lattice(objs, [s.labels for s in scenes], 2, MIN_SUPPORT)
    got = world_lattice(scenes)
    assert got.names == want.names and np.array_equal(got.matrix, want.matrix)
    assert any(n.startswith("count:") for n in got.names) and got.pixel.any() and (got.order == 2).any()
    # the default order 2: no triple, even where one is common enough
    assert max(world_lattice(scenes, min_support=2).order) == 2 and max(world_lattice(scenes, 3, 2).order) == 3
    small = world_lattice(scenes, max_order=1, min_support=3)
    assert small.names == build_lattice(objs, [s.labels for s in scenes], 1, 3).names and (small.order == 1).all()


class _Analysis:
    """What the verdicts read of a ModelAnalysis: ``codes.name``, ``units`` and (optionally) ``row``."""

    def __init__(self, name: str, units: dict, l0: float | None = None):
        self.codes = type("C", (), {"name": name})()
        self.units = {k: np.asarray(v, dtype=float) for k, v in units.items()}
        if l0 is not None:
            self.row = {"L0_image": l0}


def _rows():
    """A model and one row of each kind, with constant per-unit values (exact intervals) except precision_frac
    (5 passes of 600: above the random dictionary, not above chance)."""
    from sparseclip.interpret.baselines import RANDOM_DICTIONARY
    from sparseclip.interpret.verdicts import SHUFFLED

    prec = np.zeros(600)
    prec[[3, 50, 99, 400, 599]] = 1.0
    model = _Analysis("sparse (x)", {"f1_frac": np.ones(20), "precision_frac": prec, "clarity": np.full(5, 0.6),
                                     "crossmodal_adj": np.full(4, 0.5)}, l0=10.0)
    others = [_Analysis(RANDOM_DICTIONARY, {"f1_frac": np.zeros(20), "precision_frac": np.zeros(600),
                                            "clarity": np.full(5, 0.2), "crossmodal_adj": np.full(4, 0.1)}),
              _Analysis(SHUFFLED, {"f1_frac": np.zeros(20), "clarity": np.full(5, 0.9),
                                   "crossmodal_adj": np.full(4, 0.9)}),
              _Analysis("dense (d)", {"f1_frac": np.ones(20)}),
              _Analysis("SAE topk (shared)", {"f1_frac": np.zeros(20), "crossmodal_adj": np.full(4, 0.7)}, l0=12.0),
              _Analysis("SAE relu (one per modality)", {"f1_frac": np.ones(20), "crossmodal_adj": np.zeros(4)},
                        l0=30.0)]
    return model, others


def test_verdicts_rows_beats_and_lines_by_hand():
    from sparseclip.interpret.baselines import RANDOM_DICTIONARY
    from sparseclip.interpret.verdicts import CONTROLS, SHUFFLED, verdicts

    model, others = _rows()
    out = verdicts(model, others)
    assert [v["metric"] for v in out] == ["f1_frac", "precision_frac", "clarity", "crossmodal_adj"]
    f1, prec, clar, cross = out
    assert (f1["says"], f1["per"], f1["value"]) == (CONTROLS["f1_frac"].says, "feature", 1.0)

    def row(name, kind, theirs, diff, verdict, **extra):
        return {"baseline": name, "kind": kind, "baseline_value": theirs, "diff": diff, "lo": diff, "hi": diff,
                "verdict": verdict, **extra}

    assert f1["rows"] == [row(RANDOM_DICTIONARY, "random dictionary", 0.0, 1.0, "above"),
                          row(SHUFFLED, "shuffled labels", 0.0, 1.0, "above"),
                          row("dense (d)", "dense", 1.0, 0.0, "level"),
                          row("SAE topk (shared)", "SAE", 0.0, 1.0, "above", L0_image=12.0, matched_l0=True),
                          row("SAE relu (one per modality)", "SAE", 1.0, 0.0, "level", L0_image=30.0,
                              matched_l0=False)]
    assert f1["against"] == [{k: v for k, v in r.items() if k not in ("L0_image", "matched_l0")} for r in f1["rows"]]
    assert f1["chance"]["above"] and f1["chance"]["passes"] == 20
    # the dense head is level: the metric does not hold; the unmatched SAE does not count
    assert f1["holds"] is False and f1["beats"] == {"SAE": True, "dense": False, "controls": True}
    assert f1["text"] == ("f1_frac 1.000 (above chance); vs baseline: random dictionary (rate-matched) 0.000: "
                          "+1.000 [+1.000, +1.000] above; vs baseline: shuffled concept labels 0.000: +1.000 "
                          "[+1.000, +1.000] above; vs dense (d) 1.000: +0.000 [+0.000, +0.000] level; vs SAE topk "
                          "(shared) 0.000: +1.000 [+1.000, +1.000] above; vs SAE relu (one per modality) (image L0 "
                          "30.0: not matched) 1.000: +0.000 [+0.000, +0.000] level. beats every SAE at matched L0: "
                          "yes; the dense head: no; the random controls: yes")
    # above the random dictionary, but 5 passes of 600 are not above the 1% chance: no control verdict
    d = bootstrap_diff(model.units["precision_frac"], np.zeros(600), n_boot=2000, seed=0)
    assert d["lo"] > 0 and [r["verdict"] for r in prec["rows"]] == ["above"]
    assert (prec["rows"][0]["lo"], prec["rows"][0]["hi"]) == (d["lo"], d["hi"])
    assert prec["chance"]["above"] is False and prec["holds"] is False
    assert prec["beats"] == {"SAE": None, "dense": None, "controls": False}
    assert prec["text"] == (f"precision_frac 0.008 (NOT above chance); vs baseline: random dictionary (rate-matched) "
                            f"0.000: +0.008 [{d['lo']:+.3f}, {d['hi']:+.3f}] above. beats every SAE at matched L0: "
                            f"none in this run; the dense head: none in this run; the random controls: no")
    # clarity: label-free, so the shuffled-label row (the model's own codes) is not compared
    assert [r["kind"] for r in clar["rows"]] == ["random dictionary"] and "chance" not in clar
    assert clar["holds"] is True and clar["beats"] == {"SAE": None, "dense": None, "controls": True}
    assert clar["text"] == ("clarity 0.600; vs baseline: random dictionary (rate-matched) 0.200: +0.400 [+0.400, "
                            "+0.400] above. beats every SAE at matched L0: none in this run; the dense head: none in "
                            "this run; the random controls: yes")
    # cross-modal: needs ids shared by images and captions, so the per-modality SAE is not compared either
    assert [r["baseline"] for r in cross["rows"]] == [RANDOM_DICTIONARY, "SAE topk (shared)"]
    assert cross["holds"] is False and cross["beats"] == {"SAE": False, "dense": None, "controls": True}
    assert cross["text"].endswith("vs SAE topk (shared) 0.700: -0.200 [-0.200, -0.200] below. beats every SAE at "
                                  "matched L0: no; the dense head: none in this run; the random controls: yes")
    # without the model's L0 every SAE counts as matched
    del model.row
    f1 = verdicts(model, others)[0]
    assert f1["rows"][4]["matched_l0"] is True and f1["beats"]["SAE"] is False
    assert "not matched" not in f1["text"]


def test_verdict_intervals_use_the_seed_resamples_and_pairing():
    from sparseclip.interpret.baselines import RANDOM_DICTIONARY
    from sparseclip.interpret.verdicts import verdicts

    rng = np.random.default_rng(0)
    base = rng.random(12)
    mine = base + 0.05 + 0.02 * rng.standard_normal(12)  # per concept, correlated with the row's
    model = _Analysis("sparse (x)", {"ksparse_auroc_1": mine, "f1_adj": mine})
    rd = _Analysis(RANDOM_DICTIONARY, {"ksparse_auroc_1": base, "f1_adj": base})
    dense = _Analysis("dense (d)", {"ksparse_auroc_1": base[:10]})  # other concepts: not paired
    f1, k1 = verdicts(model, [rd, dense])  # in the order of CONTROLS
    assert k1["per"] == "concept" and f1["per"] == "feature"
    paired = bootstrap_diff(mine, base, n_boot=2000, seed=0, paired=True)
    unpaired = bootstrap_diff(mine, base, n_boot=2000, seed=0)
    assert paired["hi"] - paired["lo"] < 0.5 * (unpaired["hi"] - unpaired["lo"])
    assert (k1["rows"][0]["lo"], k1["rows"][0]["hi"]) == (paired["lo"], paired["hi"])
    assert (f1["rows"][0]["lo"], f1["rows"][0]["hi"]) == (unpaired["lo"], unpaired["hi"])
    other = bootstrap_diff(mine, base[:10], n_boot=2000, seed=0)
    assert (k1["rows"][1]["lo"], k1["rows"][1]["hi"]) == (other["lo"], other["hi"])
    assert k1["rows"][1]["baseline_value"] == pytest.approx(base[:10].mean())
    k1b = verdicts(model, [rd], n_boot=300, seed=5)[1]
    want = bootstrap_diff(mine, base, n_boot=300, seed=5, paired=True)
    assert (k1b["rows"][0]["lo"], k1b["rows"][0]["hi"]) == (want["lo"], want["hi"])
    assert verdicts(_Analysis("m", {"unknown": mine}), [rd]) == []


def test_beats_and_verdict_line_from_an_entry():
    from sparseclip.interpret.verdicts import beats, verdict_line

    rows = [{"kind": "shuffled labels", "verdict": "below"}, {"kind": "random dictionary", "verdict": "above"},
            {"kind": "SAE", "verdict": "above"}, {"kind": "SAE", "verdict": "below", "matched_l0": False},
            {"kind": "dense", "verdict": "above"}]
    # clarity need not beat the shuffled labels: only the random dictionary counts among the controls
    assert beats({"metric": "clarity", "rows": rows}) == {"SAE": True, "dense": True, "controls": True}
    # a metric of no control: the control kinds all count
    assert beats({"metric": "nope", "rows": rows}) == {"SAE": True, "dense": True, "controls": False}
    assert beats({"metric": "clarity", "rows": rows[1:2], "chance": {"above": False}})["controls"] is False
    assert beats({"metric": "clarity", "rows": []}) == {"SAE": None, "dense": None, "controls": None}
    assert beats({"metric": "clarity", "rows": [{"kind": "SAE", "verdict": "level"}]})["SAE"] is False
    entry = {"metric": "m", "value": float("nan"),
             "against": [{"baseline": "b", "baseline_value": None, "diff": 0.25, "lo": -0.5, "hi": float("inf"),
                          "verdict": "level", "kind": "dense"}]}
    # without rows, the line lists the rows it must beat, and its verdicts (from the rows) are all none
    assert verdict_line(entry) == ("m n/a; vs b n/a: +0.250 [-0.500, n/a] level. beats every SAE at matched L0: none "
                                   "in this run; the dense head: none in this run; the random controls: none in this "
                                   "run")
    entry["rows"] = [{"baseline": "s", "baseline_value": 0.5, "diff": -0.1, "lo": -0.2, "hi": -0.05,
                      "verdict": "below", "kind": "SAE", "matched_l0": False, "L0_image": None}]
    entry["beats"] = {"SAE": None, "dense": True, "controls": False}
    assert verdict_line(entry) == ("m n/a; vs s (image L0 nan: not matched) 0.500: -0.100 [-0.200, -0.050] below. "
                                   "beats every SAE at matched L0: none in this run; the dense head: yes; the random "
                                   "controls: no")


def test_render_verdicts_and_row_chance_by_hand():
    from sparseclip.interpret.baselines import RANDOM_DICTIONARY
    from sparseclip.interpret.verdicts import render_verdicts, row_chance, verdicts

    model, others = _rows()
    assert row_chance(model) == {"f1_frac": True, "precision_frac": False}
    vs = verdicts(model, others)
    extra = {"metric": "m", "value": None, "text": "m line",
             "against": [{"kind": "dense", "baseline_value": None, "verdict": "above"},
                         {"kind": "dense", "baseline_value": 0.3, "verdict": "level"},
                         {"kind": "SAE", "baseline_value": 0.9, "verdict": "below", "matched_l0": False},
                         {"kind": "random init", "baseline_value": 0.1, "verdict": "above"},
                         {"kind": "random init", "baseline_value": 0.2, "verdict": "below"}]}
    summary = {"rows": [{"model": "sparse (x)"}], "verdicts": vs + [extra],
               "above_chance": {"sparse (x)": {"f1_frac": True, "precision_frac": False, "x_frac": True},
                                RANDOM_DICTIONARY: {"f1_frac": False}}}
    head = ("| metric | sparse (x) | random dictionary | random init | shuffled labels | dense | SAE | beats every SAE "
            "at matched L0 | beats the dense head | beats the random controls |")
    table = [head, "|---" * 10 + "|",
             "| f1_frac | 1.000 | 0.000 |  | 0.000 | 1.000 (level) | 0.000 | yes | **no** | yes |",
             "| precision_frac | 0.008 (chance) | 0.000 |  |  |  |  |  |  | **no** |",
             "| clarity | 0.600 | 0.200 |  |  |  |  |  |  | yes |",
             "| crossmodal_adj | 0.500 | 0.100 |  |  |  | 0.700 (below) | **no** |  | yes |",
             "| m | n/a |  | 0.200 (below) |  | 0.300 (level) |  |  |  |  |"]
    text = "\n".join(table) + (
        "\n\nVerdicts (model - row, 95% bootstrap interval over features or concepts; an SAE row not at the model's "
        "L0 is marked and does not count):\n\n") + "\n".join(f"- {v['text']}" for v in vs) + "\n- m line" + (
        "\n\nBar fractions above chance (binomial test of the passes against the 1% a feature unrelated to the "
        "labels can reach):\n\n- sparse (x): f1_frac, x_frac\n- baseline: random dictionary (rate-matched): none")
    assert render_verdicts(summary) == text
    del summary["above_chance"]
    assert render_verdicts(summary) == text.split("\n\nBar fractions")[0]


def test_verdicts_at_matched_live_features_by_hand():
    from sparseclip.interpret.verdicts import matched_live, render_verdicts, sae_match, verdicts

    assert matched_live(100, 125) and matched_live(125, 100)
    assert not matched_live(100, 126) and not matched_live(126, 100)
    assert matched_live(10, 19, factor=2.0) and not matched_live(10, 21, factor=2.0)
    assert not matched_live(None, 100) and not matched_live(100, 0) and not matched_live(100, float("nan"))
    assert [sae_match(c) for c in ({"matched_l0": False, "matched_live": True}, {}, {"matched_live": True},
                                   {"matched_l0": True, "matched_live": False})] == [
        "none", "L0 only", "L0 and live", "L0 only"]

    def sae(name, value, **row):
        a = _Analysis(name, {"f1_frac": np.full(20, value)})
        a.row = row
        return a

    model = _Analysis("sparse (x)", {"f1_frac": np.ones(20)})
    model.row = {"L0_image": 10.0, "live_features": 100}
    others = [sae("SAE a", 0.0, L0_image=12.0, live_features=110), sae("SAE b", 1.0, L0_image=11.0, live_features=200),
              sae("SAE c", 0.0, L0_image=11.0), sae("SAE d", 1.0, L0_image=40.0, live_features=100)]
    (v,) = verdicts(model, others)
    assert [(r["live_features"], r["matched_live"]) for r in v["rows"]] == [(110, True), (200, False), (None, False),
                                                                           (100, True)]
    assert all(set(a) == {"baseline", "kind", "baseline_value", "diff", "lo", "hi", "verdict"} for a in v["against"])
    assert v["beats"] == {"SAE": False, "dense": None, "controls": None, "SAE_live": True}
    assert v["text"] == ("f1_frac 1.000 (above chance); vs SAE a (matched L0 and live features) 0.000: +1.000 [+1.000, "
                         "+1.000] above; vs SAE b (matched L0 only: 200 live features) 1.000: +0.000 [+0.000, +0.000] "
                         "level; vs SAE c (matched L0 only: live features not counted) 0.000: +1.000 [+1.000, +1.000] "
                         "above; vs SAE d (image L0 40.0: not matched) 1.000: +0.000 [+0.000, +0.000] level. beats "
                         "every SAE at matched L0: no; at matched L0 and live features: yes; the dense head: none in "
                         "this run; the random controls: none in this run")
    head = ("| metric | sparse (x) | random dictionary | random init | shuffled labels | dense | SAE | beats every SAE "
            "at matched L0 | beats the dense head | beats the random controls | beats every SAE at matched L0 and "
            "live features |")
    assert render_verdicts({"rows": [{"model": "sparse (x)"}], "verdicts": [v]}) == "\n".join([
        head, "|---" * 11 + "|", "| f1_frac | 1.000 |  |  |  |  | 1.000 (level) | **no** |  |  | yes |", "",
        "Verdicts (model - row, 95% bootstrap interval over features or concepts; an SAE row not at the model's L0 is "
        "marked and does not count; each SAE row at it says whether it is matched on L0 only or on live features "
        "too):", "", f"- {v['text']}"])
    # live features counted for the model only, or for the SAE rows only: no verdict at matched live features
    for row in ({"L0_image": 10.0, "live_features": 100}, {"L0_image": 10.0}):
        model.row = row
        counted = others if "live_features" not in row else [sae("SAE c", 0.0, L0_image=11.0),
                                                             _Analysis("SAE e", {"f1_frac": np.zeros(20)})]
        (v,) = verdicts(model, counted)
        assert "SAE_live" not in v["beats"] and all("matched_live" not in r for r in v["rows"])
        assert "live features" not in v["text"]
