"""Purity computed by hand (issue 39; docs/mutants.md): every value of feature_purity, its summary, detector_passes
and the name checks, against a plain loop over a small input (or numbers worked out by hand), so that a planted bug
in one of them fails a test."""

from __future__ import annotations

import numpy as np
import pytest

from sparseclip.interpret.purity import ALPHA, detector_passes, feature_purity, name_purity, named_concept


def _f1_count(tp: int, n_pos: int, n_fire: int) -> float:
    return 2 * tp / (n_pos + n_fire) if n_pos + n_fire else 0.0


def _passes_by_hand(value_adj: float, bar: float, share: float, n: int, base: float) -> bool:
    """detector_passes for one unit: P(X >= hits) for X ~ Binomial(n, base), summed term by term."""
    from math import comb

    share = 0.0 if np.isnan(share) else share
    base = 1.0 if np.isnan(base) else min(max(base, 0.0), 1.0)
    hits = int(round(share * n))
    p = sum(comb(n, k) * base ** k * (1 - base) ** (n - k) for k in range(hits, n + 1))
    return (not np.isnan(value_adj)) and value_adj >= bar and n >= 5 and p < 0.01


def _purity_by_hand(x, lat, feats, tau, top_n, min_support):
    """feature_purity's fields, one feature and one concept at a time (even rows choose, odd rows score)."""
    a, b = list(range(0, len(x), 2)), list(range(1, len(x), 2))
    y = lat.matrix

    def counts(rows, f, c):
        fire = [r for r in rows if x[r, f] > tau]
        pos = [r for r in rows if y[r, c]]
        return sum(1 for r in fire if y[r, c]), len(pos), len(fire)

    def usable(c):
        return min_support <= counts(a, 0, c)[1] < len(a) and min_support <= counts(b, 0, c)[1] < len(b)

    sem = [c for c in range(len(lat.names)) if usable(c) and not lat.pixel[c]]
    pix = [c for c in range(len(lat.names)) if usable(c) and lat.pixel[c]]
    out = {k: [] for k in ("concept", "n_fire", "rate", "precision", "f1", "topn", "base_rate", "f1_chance", "pixel",
                           "pixel_f1", "conjunction")}
    nb = len(b)
    for f in feats:
        f1a = {c: _f1_count(*counts(a, f, c)) for c in range(len(lat.names))}
        c = max(sem, key=lambda j: (f1a[j], -j)) if sem else -1  # the first of the best
        fire_b = [r for r in b if x[r, f] > tau]
        out["n_fire"].append(len(fire_b))
        out["rate"].append(len(fire_b) / nb)
        if c < 0:
            for k in ("precision", "f1", "topn", "base_rate", "f1_chance"):
                out[k].append(np.nan)
            out["conjunction"].append(False)
        else:
            tp, pos, nf = counts(b, f, c)
            base, rate = pos / nb, nf / nb
            out["precision"].append(tp / nf if nf else np.nan)
            out["f1"].append(_f1_count(tp, pos, nf))
            out["base_rate"].append(base)
            out["f1_chance"].append(2 * base * rate / (base + rate) if base + rate else np.nan)
            k = min(top_n, nf)
            top = sorted(b, key=lambda r: -x[r, f])[:k]  # sorted() is stable: ties keep the row order
            out["topn"].append(sum(bool(y[r, c]) for r in top) / k if k else np.nan)
            out["conjunction"].append(lat.order[c] > 1)
        out["concept"].append(c)
        if pix:
            pc = max(pix, key=lambda j: (f1a[j], -j))
            out["pixel"].append(f1a[pc] > (max(f1a[j] for j in sem) if sem else -np.inf))
            out["pixel_f1"].append(_f1_count(*counts(b, f, pc)))
        else:
            out["pixel"].append(False)
            out["pixel_f1"].append(np.nan)
    per_concept = {"concept_ids": sem, "concept_f1": [], "concept_chance": [], "concept_covered": []}
    for c in sem:
        best = max(range(len(feats)), key=lambda i: (_f1_count(*counts(a, feats[i], c)), -i))
        tp, pos, nf = counts(b, feats[best], c)
        f1, p, r = _f1_count(tp, pos, nf), pos / nb, nf / nb
        chance = 2 * p * r / (p + r) if p + r else np.nan
        per_concept["concept_f1"].append(f1)
        per_concept["concept_chance"].append(chance)
        per_concept["concept_covered"].append(_passes_by_hand((f1 - chance) / (1 - chance), 0.5,
                                                              tp / nf if nf else np.nan, nf, p))
    return out, per_concept


def _toy(seed: int = 5, n: int = 64):
    """A hand-made lattice (red, circle, their conjunction, a pixel background, a concept too rare in the odd
    half, one on every even row, one on every odd row, a pixel concept of even rows only) and codes: detectors of
    red, of the conjunction and of the background, a random feature, one that fires on even rows only, a noisy
    circle detector, a constant, one whose values sit exactly at tau on half its rows, a dead one, one that fires
    once, one on the even-only pixel concept, one of three levels (ties in its top rows) and one that fires on odd
    rows only (F1 0 with every concept on the even rows: a tie of pixel and semantic) and a red-circle detector sitting
    exactly at tau on the other circles (were they firing, circle would be its concept)."""
    from sparseclip.eval.sparsity import TAU
    from sparseclip.interpret.lattice import Lattice

    rng = np.random.default_rng(seed)
    red, circle, dark = rng.random(n) < 0.4, rng.random(n) < 0.5, rng.random(n) < 0.5
    rare = np.zeros(n, bool)
    rare[[0, 2, 4, 1]] = True  # 3 even rows, 1 odd row
    evens = np.zeros(n, bool)
    evens[::2] = True
    evens[[1, 3]] = True
    odds = np.arange(n) % 2 == 1
    odds[[0, 2]] = True
    spot = np.isin(np.arange(n), [0, 2, 4, 6])
    five = np.isin(np.arange(n), np.arange(10))  # exactly 5 rows in each half
    names = ["color:red", "shape:circle", "background:dark", "count:9", "size:large", "color:red&shape:circle",
             "size:small", "background:spot", "count:5"]
    matrix = np.stack([red, circle, dark, rare, evens, red & circle, odds, spot, five], axis=1)
    lat = Lattice(names, matrix, np.array([1, 1, 1, 1, 1, 2, 1, 1, 1]),
                  np.array([False, False, True, False, False, False, False, True, False]))
    u = rng.uniform(1.0, 2.0, n)
    noisy = circle ^ (rng.random(n) < 0.15)
    at_tau = np.where(rng.random(n) < 0.5, TAU, 1.5) * red
    once = np.zeros(n)
    once[7] = 3.0
    even_only = np.where(np.arange(n) % 2 == 0, u, 0.0)
    codes = np.stack([red * u, (red & circle) * u, dark * u, (rng.random(n) < 0.3) * u, even_only, noisy * u,
                      np.ones(n), at_tau, np.zeros(n), once, spot | np.isin(np.arange(n), [1, 3]),
                      rng.integers(0, 3, n).astype(float), np.where(np.arange(n) % 2 == 1, u, 0.0),
                      np.where(red & circle, u, np.where(circle, TAU, 0.0))], axis=1)
    return codes, lat


@pytest.mark.parametrize("top_n,min_support", [(20, 5), (3, 2)])
def test_feature_purity_equals_a_loop_over_features_and_concepts(top_n, min_support):
    codes, lat = _toy()
    pur = feature_purity(codes, lat, top_n=top_n, min_support=min_support)
    assert pur.features.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 10, 11, 12, 13]  # not the dead one nor the one firing once
    out, per = _purity_by_hand(codes, lat, pur.features.tolist(), 1e-3, top_n, min_support)
    for k, v in out.items():
        np.testing.assert_allclose(np.asarray(getattr(pur, k), dtype=float), np.asarray(v, dtype=float), rtol=1e-9,
                                   err_msg=k)
    for k, v in per.items():
        np.testing.assert_allclose(np.asarray(getattr(pur, k), dtype=float), np.asarray(v, dtype=float), rtol=1e-9,
                                   err_msg=k)
    assert pur.names == lat.names
    # worked by hand: the red detector picks red (F1 1, precision 1, its chance its base rate and firing rate)
    red_b = lat.matrix[1::2, 0].mean()
    assert pur.concept[0] == 0 and pur.f1[0] == 1.0 and pur.precision[0] == 1.0 and pur.topn[0] == 1.0
    assert pur.base_rate[0] == pytest.approx(red_b) and pur.rate[0] == pytest.approx(red_b)
    assert pur.f1_chance[0] == pytest.approx(red_b) and pur.values("f1")[0] == pytest.approx(1.0)
    assert pur.concept[1] == 5 and pur.conjunction[1] and not pur.conjunction[0]
    assert pur.pixel[2] and pur.pixel_f1[2] == 1.0 and not pur.pixel[0]
    # the feature firing on even rows only: no held-out firing, so no precision or top-n
    assert pur.n_fire[4] == 0 and np.isnan(pur.precision[4]) and np.isnan(pur.topn[4]) and pur.f1[4] == 0.0
    # the rare concept (1 odd row) and the one on every even row are never chosen nor scored per concept
    assert not {3, 4, 6} & set(pur.concept.tolist()) and pur.concept_ids.tolist() == [0, 1, 5, 8]
    assert not pur.pixel[-2]  # a tie of pixel and semantic F1 (0 and 0) is not flagged
    assert pur.concept[-1] == 5
    # tau: values exactly at tau do not fire
    assert pur.n_fire[7] == int(((codes[1::2, 7] > 1e-3)).sum()) < int((codes[1::2, 7] > 0).sum())


def test_feature_purity_of_given_live_features_and_tau_and_n_min():
    codes, lat = _toy()
    live = np.zeros(codes.shape[1], bool)
    live[[5, 0]] = True
    pur = feature_purity(codes, lat, live=live)
    assert pur.features.tolist() == [0, 5] and pur.concept.tolist() == [0, 1]
    out, per = _purity_by_hand(codes, lat, [0, 5], 1e-3, 20, 5)
    np.testing.assert_allclose(pur.f1, out["f1"]) and np.testing.assert_allclose(pur.concept_f1, per["concept_f1"])
    # tau 1.2: only the larger activations fire
    hi = feature_purity(codes, lat, live=live, tau=1.2)
    out, _ = _purity_by_hand(codes, lat, [0, 5], 1.2, 20, 5)
    np.testing.assert_allclose(hi.n_fire, out["n_fire"]) and np.testing.assert_allclose(hi.f1, out["f1"])
    assert hi.n_fire[0] < pur.n_fire[0]
    # n_min: the feature firing once (on a held-out row) is live at n_min 1, its top-1 scored
    one = feature_purity(codes, lat, n_min=1)
    assert 9 in one.features.tolist()
    out, _ = _purity_by_hand(codes, lat, one.features.tolist(), 1e-3, 20, 5)
    for k, v in out.items():
        np.testing.assert_allclose(np.asarray(getattr(one, k), dtype=float), np.asarray(v, dtype=float), err_msg=k)
    # a support of 0: a concept absent from the held-out half and a feature silent there score F1 0, not 0/0
    spot = lat.columns([7])
    spot.pixel = np.array([False])  # the even-only concept, made semantic
    lone = feature_purity(codes[:, [4]], spot, live=[True], min_support=0)
    assert lone.f1.tolist() == [0.0] and lone.concept_f1.tolist() == [0.0] and np.isnan(lone.concept_chance).all()
    assert 9 not in feature_purity(codes, lat, n_min=2).features.tolist()
    with pytest.raises(ValueError, match="^lattice has 64 rows but codes have 63$"):
        feature_purity(codes[:63], lat)
    with pytest.raises(ValueError, match=r"^codes: expected a 2-d array"):
        feature_purity(codes[:, 0], lat)
    with pytest.raises(ValueError, match=r"^codes: expected a 2-d array"):
        feature_purity(codes[:, 0], lat, live=[True])
    # defaults: the top 20 (the constant feature fires on all 32 held-out rows) and a support of 5
    default, explicit = feature_purity(codes, lat), feature_purity(codes, lat, top_n=20, min_support=5)
    np.testing.assert_array_equal(default.topn, explicit.topn)
    np.testing.assert_array_equal(default.concept_ids, explicit.concept_ids)
    assert default.topn[6] != feature_purity(codes, lat, top_n=21).topn[6]
    # three rows: one held out, so the rate of a feature firing there is 1
    assert feature_purity(np.ones((3, 1)), lat.rows([0, 1, 2]), live=[True]).rate.tolist() == [1.0]


def test_feature_purity_without_semantic_or_pixel_concepts_or_features():
    codes, lat = _toy()
    only_pixel = lat.columns([2])
    pur = feature_purity(codes, only_pixel, live=np.ones(codes.shape[1], bool))
    assert (pur.concept == -1).all() and np.isnan(pur.f1).all() and np.isnan(pur.base_rate).all()
    assert np.isnan(pur.f1_chance).all()
    assert np.isnan(pur.topn).all() and np.isnan(pur.precision).all() and not pur.conjunction.any()
    assert pur.pixel[2] and pur.pixel_f1[2] == 1.0  # without a semantic concept any pixel F1 > -inf flags
    assert pur.concept_ids.size == 0 and pur.concept_covered.size == 0
    sem = lat.columns([0, 1, 5])
    pur = feature_purity(codes, sem)
    assert not pur.pixel.any() and np.isnan(pur.pixel_f1).all()
    assert pur.features[~pur.pixel].tolist() == pur.features.tolist()  # the flags select features
    # no concept usable (support 100): no conjunction either, whatever concept comes first
    assert not feature_purity(codes, lat.columns([5, 2]), min_support=100).conjunction.any()
    none = feature_purity(np.zeros((64, 3)), lat)
    assert none.features.size == 0 and none.concept_ids.tolist() == [0, 1, 5, 8] and none.topn.tolist() == []
    assert none.concept_f1.tolist() == [0.0, 0.0, 0.0, 0.0] and not none.concept_covered.any()
    assert none.concept_ids[~none.concept_covered].tolist() == [0, 1, 5, 8]
    assert none.features[~none.conjunction].size == 0
    s = none.summary()
    assert s["live"] == 0 and np.isnan(s["f1_frac"]) and np.isnan(s["pixel_frac"]) and np.isnan(s["conjunction_frac"])
    unusable = feature_purity(codes, lat.columns([3, 4, 6]))  # too rare in a half; on every row of a half
    assert np.isnan(unusable.summary()["concept_covered_frac"]) and (unusable.concept == -1).all()


def test_a_perfect_detector_on_five_inputs_is_not_coverage_by_luck():
    """Held out, a feature that is exactly a concept of base rate 1/2 on 5 of 10 inputs: F1 1, corrected 1, but 5 hits
    at a base rate of 1/2 happen by luck with p = 1/32, so the concept is not covered."""
    from sparseclip.interpret.lattice import Lattice

    c = np.zeros(20, bool)
    c[[0, 2, 4, 6, 8, 1, 3, 5, 7, 9]] = True
    lat = Lattice(["a:x"], c[:, None], np.array([1]), np.array([False]))
    pur = feature_purity(c[:, None].astype(float), lat, live=[True])
    assert pur.concept_f1.tolist() == [1.0] and pur.concept_chance.tolist() == [0.5]
    assert pur.concept_covered.tolist() == [False] and pur.passes("f1").tolist() == [False]


def test_purity_summary_by_hand():
    from sparseclip.interpret.purity import Purity

    nan = np.nan
    p = Purity(features=np.arange(4), concept=np.array([0, 1, 1, -1]), n_fire=np.array([10, 8, 0, 6]),
               rate=np.array([0.5, 0.4, 0.0, 0.3]), precision=np.array([1.0, 0.5, nan, 0.9]),
               f1=np.array([0.9, 0.4, 0.0, 0.6]), topn=np.array([1.0, 0.5, nan, 0.8]),
               base_rate=np.array([0.5, 0.25, 0.25, 0.2]), f1_chance=np.array([0.5, 0.2, 0.0, 0.3]),
               pixel=np.array([False, True, True, False]), pixel_f1=np.array([0.1, 0.7, 0.3, nan]),
               names=["a", "b"], conjunction=np.array([True, True, False, False]), concept_ids=np.array([0, 1]),
               concept_f1=np.array([0.9, 0.5]), concept_chance=np.array([0.5, 0.0]),
               concept_covered=np.array([True, False]))
    s = p.summary()
    assert s["live"] == 4
    assert s["purity_f1"] == pytest.approx((0.9 + 0.4 + 0.0 + 0.6) / 4)
    assert s["purity_f1_chance"] == pytest.approx((0.5 + 0.2 + 0.0 + 0.3) / 4)
    # corrected F1: (0.9-0.5)/0.5, (0.4-0.2)/0.8, 0, (0.6-0.3)/0.7
    assert s["purity_f1_adj"] == pytest.approx((0.8 + 0.25 + 0.0 + 3 / 7) / 4)
    assert s["purity_precision"] == pytest.approx(2.4 / 3)
    assert s["purity_precision_chance"] == pytest.approx((0.5 + 0.25 + 0.2) / 3)  # NaN precision: no chance
    assert s["purity_precision_adj"] == pytest.approx((1.0 + 1 / 3 + 0.875) / 3)
    assert s["purity_topn"] == pytest.approx(2.3 / 3) and s["purity_topn_adj"] == pytest.approx((1 + 1 / 3 + 0.75) / 3)
    # passing F1: feature 0 (0.8, 10 hits of 10 at base 0.5: p = 1/1024); 1: 0.25 < 0.5; 3: 0.43 < 0.5
    assert s["f1_frac"] == pytest.approx(0.25)
    # precision bar 0.8: feature 0 (1.0), feature 3 (0.875, 5 or 6 hits of 6 at 0.2: p < 0.01)
    assert s["precision_frac"] == pytest.approx(0.5)
    assert "topn_frac" not in s
    assert s["conjunction_frac"] == pytest.approx(0.25)  # feature 0: a conjunction that passes; 1 does not pass
    assert s["pixel_frac"] == pytest.approx(0.5) and s["pixel_f1"] == pytest.approx(0.5)
    assert s["concept_f1"] == pytest.approx(0.7) and s["concept_f1_adj"] == pytest.approx((0.8 + 0.5) / 2)
    assert s["concept_covered_frac"] == pytest.approx(0.5)
    assert p.values("f1", corrected=False) is p.f1 and p.values("topn")[1] == pytest.approx(1 / 3)
    # bar 0.2: feature 1 (0.25) has 4 hits of 8 at base 0.25 (p = 0.11: luck); feature 3 (0.43) 5 of 6 at 0.2
    assert p.passes("f1", bar=0.2).tolist() == [True, False, False, True]
    assert p.passes("precision", bar=0.9).tolist() == [True, False, False, False]  # 0.875 < 0.9
    p.pixel[:] = False
    assert np.isnan(p.summary()["pixel_f1"])


def test_detector_passes_and_adjusted_by_hand():
    from sparseclip.interpret.purity import MIN_FIRE, adjusted

    assert MIN_FIRE == 5 and ALPHA == 0.01
    one = lambda v, share, n, base, bar=0.5: bool(detector_passes(v, bar, share, n, base))  # noqa: E731
    # P(X >= 6 | 10, 0.2) = 0.0064 < 0.01 passes; P(X >= 5) = 0.033 does not
    assert one(0.6, 0.6, 10, 0.2) and not one(0.6, 0.5, 10, 0.2)
    assert one(0.6, 0.58, 10, 0.2)  # 5.8 hits round to 6
    assert not one(0.6, 0.54, 10, 0.2)  # 5.4 round to 5
    # the bar is inclusive; a NaN value fails; MIN_FIRE inputs: 5 of 5 passes, 4 of 4 does not
    assert one(0.5, 1.0, 10, 0.1) and not one(0.4999, 1.0, 10, 0.1) and not one(np.nan, 1.0, 10, 0.1)
    assert not one(np.nan, 1.0, 10, 0.1, bar=-1.0)  # a NaN value fails any bar
    assert one(1.0, 1.0, 5, 0.01) and not one(1.0, 1.0, 4, 0.01)
    # a NaN share counts no hit; a NaN base rate is 1 (nothing beats it); a base rate above 1 is clipped to 1
    assert not one(1.0, np.nan, 10, 0.01) and not one(1.0, 1.0, 10, np.nan) and not one(1.0, 1.0, 10, 1.5)
    assert one(1.0, 1.0, 10, -0.5)  # clipped to 0: any hit beats it
    # P(X >= 3 | 20, 0.02) = 0.0071 passes, P(X >= 2 | 20, 0.02) = 0.060 does not
    assert one(0.9, 3 / 20, 20, 0.02) and not one(0.9, 2 / 20, 20, 0.02)
    v = detector_passes([0.9, 0.9], 0.5, [1.0, 0.2], [8, 8], [0.3, 0.3])
    assert v.tolist() == [True, False]
    assert adjusted(0.75, 0.5) == pytest.approx(0.5) and adjusted(0.2, 0.6) == pytest.approx(-1.0)
    assert np.isnan(adjusted(1.0, 1.0)) and np.isnan(adjusted(0.3, np.nan)) and adjusted(0.3, 0.0) == 0.3
    assert np.isnan(adjusted(0.5, 1.0)) and np.isnan(adjusted(0.5, 1.5))  # no correction at or above a chance of 1
    assert adjusted([0.5, 1.0], [0.0, 0.5]).tolist() == [0.5, 1.0]


def test_named_concept_and_name_purity_by_hand():
    from sparseclip.interpret.lattice import Lattice

    names = ["background:dark", "color:red", "color:blue", "shape:circle", "color:red&shape:circle",
             "background:dark&color:red", "shape:circle&size:large", "color:blue&shape:circle"]
    n = 24
    m = np.zeros((n, len(names)), bool)
    red, circle = np.arange(n) < 6, np.isin(np.arange(n), [0, 1, 2, 6, 7, 8])
    m[:, 1], m[:, 2], m[:, 3], m[:, 4] = red, ~red, circle, red & circle
    m[:, 0] = np.arange(n) < 12
    m[:, 7] = ~red & circle
    # (the pixel single's conjunction is marked semantic here: only semantic SINGLES may be named, so "dark red"
    # still names red alone)
    lat = Lattice(names, m, np.array([1, 1, 1, 1, 2, 2, 2, 2]), np.array([True] + [False] * 7))
    assert named_concept("", lat) == -1
    assert named_concept("red", lat) == 1 and named_concept("a red circle", lat) == 4
    assert named_concept("circle", lat) == 3 and named_concept("large circle", lat) == 3  # size:large not a single
    assert named_concept("dark red", lat) == 1  # the pixel single and its conjunction are not semantic
    assert named_concept("red blue circle", lat) == 4  # two pairs of two parts: the first one
    assert named_concept("dark", lat) == -1
    # codes: f0 fires on the 3 red circles (values 3, 2, 1) and on row 6 (a blue circle, value 5); f1 never; f2 on
    # the 6 red rows (precision 1 at base rate 1/4: p = 4^-6 passes); f3 on rows 0-7 (precision 3/4: 2/3 corrected)
    x = np.zeros((n, 4))
    x[[0, 1, 2, 6], 0] = [3.0, 2.0, 1.0, 5.0]
    x[:, 2] = red * np.arange(1, n + 1)
    x[:, 3] = np.where(np.arange(n) < 8, 1.0, 0.0)  # constant on rows 0-7: ties keep the row order
    got = name_purity(x, lat, {0: "red circle", 1: "red", 2: "red", 3: "red", 5: "", 7: "zebra"}, top_n=2)
    assert got["passed"].tolist() == [False, False, True, False, False]  # features 0, 1, 2, 3, 7 (5 has no name)
    assert np.array([0, 1, 2, 3, 7])[got["passed"]].tolist() == [2]
    # top-2: f0's top rows are 6 (blue) and 0 (red circle) -> 1/2; f1 fires nowhere -> NaN; f2 rows 5, 4 -> 1;
    # f3 rows 0, 1 (ties in row order) -> 1
    np.testing.assert_allclose(got["values"], [0.5, np.nan, 1.0, 1.0])
    np.testing.assert_allclose(got["chance"], [0.125, 0.25, 0.25, 0.25])
    assert got["name_purity"] == pytest.approx(2.5 / 3)
    assert got["name_purity_chance"] == pytest.approx(0.625 / 3)  # f1's chance is left out with its NaN value
    assert got["name_purity_adj"] == pytest.approx((3 / 7 + 1 + 1) / 3)
    assert got["name_grounded_frac"] == pytest.approx(4 / 5) and got["name_true_frac"] == pytest.approx(1 / 5)
    # the default top 20: a feature ranking the rows in order has the 6 red rows among its top 20
    x[:, 1] = n - np.arange(n)
    assert name_purity(x, lat, {1: "red"})["values"].tolist() == pytest.approx([6 / 20])
    with pytest.raises(ValueError, match=r"^codes: expected a 2-d array"):
        name_purity(x[:, 0], lat, {0: "red"})
    top3 = name_purity(x, lat, {0: "red circle"}, top_n=3)
    assert top3["values"].tolist() == pytest.approx([2 / 3])
    hi_tau = name_purity(x, lat, {0: "red circle"}, tau=1.5, top_n=5)  # fires on rows 6, 0, 1
    assert hi_tau["values"].tolist() == pytest.approx([2 / 3])
    none = name_purity(x, lat, {5: ""})
    assert np.isnan(none["name_grounded_frac"]) and np.isnan(none["name_true_frac"]) and none["passed"].size == 0
    ungrounded = name_purity(x, lat, {0: "zebra"})
    assert ungrounded["name_grounded_frac"] == 0.0 and ungrounded["values"].size == 0
    assert ungrounded["chance"].tolist() == []
    # red first (concept 0); a feature firing once has its top-1; tau: values at tau do not fire. f0 fires on the
    # red rows 0-4 (2.0) and row 12 (1.0), row 5 (red) sits at tau: top-6 5/6, precision 5/6 (corrected 0.78 < 0.8)
    red_first = lat.columns([1, 2, 3, 4])
    y = np.zeros((n, 2))
    y[[0, 1, 2, 3, 4, 12, 5], 0] = [2.0] * 5 + [1.0, 1e-3]
    y[3, 1] = 1.0
    got = name_purity(y, red_first, {0: "red", 1: "red"})
    assert got["values"].tolist() == pytest.approx([5 / 6, 1.0]) and got["passed"].tolist() == [False, False]
