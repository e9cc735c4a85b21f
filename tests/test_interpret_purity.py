"""Ground-truth purity, the rate-matched random dictionary, cross-modal agreement and the verdicts, on hand-built
codes whose answers are known (issue 22): a perfect conjunction feature scores 1, a random feature of the same
firing rate scores chance and fails every bar, a background-only feature is flagged, degenerate codes (dense,
constant, all-dead) cannot pass."""

from __future__ import annotations

import numpy as np
import pytest

from sparseclip.interpret.baselines import bootstrap_diff, rate_matched_dictionary, verdict
from sparseclip.interpret.lattice import build_lattice, caption_words, table_lattice
from sparseclip.interpret.modality import crossmodal_agreement
from sparseclip.interpret.purity import ALPHA, detector_passes, feature_purity, name_purity, named_concept
from sparseclip.interpret.verdicts import CONTROLS, above_chance, row_kind, verdicts

COLORS, SHAPES = ("red", "blue", "green"), ("circle", "square", "triangle")
N = 600


def scenes(seed: int = 0):
    """N one-object scenes with a random colour, shape and size, and a light or dark background."""
    rng = np.random.default_rng(seed)
    objs, labels, attrs = [], [], []
    for _ in range(N):
        c, s = COLORS[rng.integers(3)], SHAPES[rng.integers(3)]
        z, bg = ("small", "large")[rng.integers(2)], ("light", "dark")[rng.integers(2)]
        objs.append([{f"color:{c}", f"shape:{s}", f"size:{z}"}])
        labels.append([f"background:{bg}"])
        attrs.append((c, s, z, bg))
    return build_lattice(objs, labels), attrs


def column(lat, name: str) -> np.ndarray:
    return lat.matrix[:, lat.names.index(name)]


def test_lattice_has_conjunctions_and_marks_pixel_concepts():
    lat, _ = scenes()
    assert "color:red&shape:circle" in lat.names and "shape:circle&size:large" in lat.names
    assert lat.pixel[lat.names.index("background:dark")] and not lat.pixel[lat.names.index("color:red")]
    assert not any("background" in n and "&" in n for n in lat.names)  # scene labels are not conjoined
    red, circle = column(lat, "color:red"), column(lat, "shape:circle")
    assert np.array_equal(column(lat, "color:red&shape:circle"), red & circle)
    # a concept on every input or on fewer than min_support inputs is dropped
    tiny = build_lattice([[{"a:x"}]] * 5 + [[{"a:y"}]] * 20, min_support=10)
    assert tiny.names == ["a:y"]
    tl = table_lattice({"group": ["g1"] * 12 + ["g2"] * 12}, caption_words(["a red apple"] * 12 + ["blue"] * 12))
    assert "group:g1&word:red" in tl.names or "group:g1&word:apple" in tl.names


def test_perfect_conjunction_feature_scores_one_and_random_feature_of_same_rate_scores_chance():
    lat, _ = scenes()
    target = column(lat, "color:red&shape:circle")
    rng = np.random.default_rng(1)
    random_feat = np.zeros(N, dtype=bool)
    random_feat[rng.choice(N, target.sum(), replace=False)] = True
    dense = np.ones(N)  # fires on everything
    codes = np.stack([target * 2.0, random_feat * 2.0, dense], axis=1)
    pur = feature_purity(codes, lat, live=np.ones(3, dtype=bool))
    assert lat.names[pur.concept[0]] == "color:red&shape:circle" and pur.conjunction[0]
    assert pur.f1[0] == pytest.approx(1.0) and pur.values("f1")[0] == pytest.approx(1.0)
    assert pur.precision[0] == pytest.approx(1.0) and pur.passes("f1")[0] and pur.passes("precision")[0]
    # the random feature: its held-out corrected F1 is near 0 and it passes no bar
    assert abs(pur.values("f1")[1]) < 0.25 and not pur.passes("f1")[1] and not pur.passes("precision")[1]
    # a feature firing on everything: F1 can be high against a common concept, its corrected F1 is 0 at most
    assert pur.values("f1")[2] <= 1e-9 and not pur.passes("f1")[2]
    summary = pur.summary()
    assert summary["f1_frac"] == pytest.approx(1 / 3) and summary["conjunction_frac"] == pytest.approx(1 / 3)


def test_background_only_feature_is_flagged_and_not_credited():
    lat, attrs = scenes()
    dark = np.array([a[3] == "dark" for a in attrs], dtype=float)
    pur = feature_purity(dark[:, None], lat, live=np.ones(1, dtype=bool))
    assert pur.pixel[0] and pur.pixel_f1[0] == pytest.approx(1.0)
    assert not pur.passes("f1")[0]  # its best semantic concept is unrelated: no bar passed
    assert pur.summary()["pixel_frac"] == 1.0


def test_degenerate_codes_pass_nothing():
    lat, _ = scenes()
    for codes in (np.zeros((N, 8)), np.full((N, 8), 3.0), np.random.default_rng(0).random((N, 8)) + 0.5):
        pur = feature_purity(codes, lat)
        s = pur.summary()
        assert not pur.passes("f1").any() and not pur.passes("precision").any()
        assert s["live"] == 0 or s["purity_f1_adj"] <= 1e-9


def test_luck_does_not_pass_a_bar():
    # 5 hits out of 5 against a concept of base rate 0.7: corrected precision 1, but p = 0.17 > ALPHA
    assert not detector_passes(np.array([1.0]), 0.5, np.array([1.0]), np.array([5]), np.array([0.7]))[0]
    assert detector_passes(np.array([1.0]), 0.5, np.array([1.0]), np.array([30]), np.array([0.3]))[0]


def test_rate_matched_dictionary_matches_rates_exactly():
    x = np.random.default_rng(0).standard_normal((400, 16))
    rates = np.array([0.0, 0.01, 0.1, 0.5, 1.0, 0.3333])
    d = rate_matched_dictionary(x, rates, seed=3)
    fired = (d.encode(x) > 0).sum(axis=0)  # rows fired: exactly round(rate * 400), one row off fails
    assert fired.tolist() == [0, 4, 40, 200, 400, 133]
    with pytest.raises(ValueError):
        rate_matched_dictionary(x, [1.5])


def test_crossmodal_agreement_can_fail():
    rng = np.random.default_rng(0)
    img = (rng.random((500, 6)) < 0.1).astype(float)
    same = crossmodal_agreement(img, img)
    assert np.allclose(same.f1, 1.0)
    other = crossmodal_agreement(img, (rng.random((500, 6)) < 0.1).astype(float))
    assert np.all(np.abs(other.f1 - other.chance) < 0.15) and other.f1.mean() < 0.3


def test_names_are_checked_against_the_images():
    lat, _ = scenes()
    assert lat.names[named_concept("red circle", lat)] == "color:red&shape:circle"
    assert named_concept("zebra", lat) == -1
    target = column(lat, "color:red&shape:circle").astype(float)[:, None]
    good = name_purity(target, lat, {0: "red circle"})
    wrong = name_purity(target, lat, {0: "blue square"})
    assert good["name_true_frac"] == 1.0 and good["name_purity"] == pytest.approx(1.0)
    assert wrong["name_true_frac"] == 0.0 and wrong["name_purity"] == pytest.approx(0.0)


class _Row:  # the two attributes of a ModelAnalysis that the verdicts read
    def __init__(self, name: str, units: dict):
        self.codes = type("C", (), {"name": name})()
        self.units = units


def test_verdicts_say_above_below_level_and_chance():
    rng = np.random.default_rng(0)
    good = (rng.random(300) < 0.4).astype(float)
    none = np.zeros(300)
    model = _Row("sparse (x)", {"f1_frac": good, "clarity": rng.normal(0.6, 0.05, 300)})
    rnd = _Row("baseline: random dictionary (rate-matched)", {"f1_frac": none, "clarity": rng.normal(0.6, 0.05, 300)})
    shuf = _Row("baseline: shuffled concept labels", {"f1_frac": good.copy()})
    out = {v["metric"]: v for v in verdicts(model, [rnd, shuf])}
    f1 = out["f1_frac"]
    assert [a["verdict"] for a in f1["against"]] == ["above", "level"] and not f1["holds"]
    assert f1["chance"]["above"] and "the random controls: no" in f1["text"] and f1["beats"]["controls"] is False
    assert out["clarity"]["against"][0]["verdict"] == "level"
    assert not above_chance(np.zeros(500))["above"]
    assert not above_chance((rng.random(500) < ALPHA / 2).astype(float))["above"]
    assert row_kind("SAE topk on dense embeddings") == "SAE" and row_kind("dense (lite_dense)") == "dense"
    assert all(c.must_beat for c in CONTROLS.values())
    d = bootstrap_diff([1, 1, 1], [0, 0, 0])
    assert verdict(d) == "above" and verdict(bootstrap_diff([], [1])) == "n/a"


def test_label_free_and_by_construction_metrics_are_read_only_where_they_can_fail():
    # multimodal_selective is 0 by construction for a dense code and copied by the rate-matched dictionary, and
    # name_score uses no labels: neither may be "beaten" against a row that cannot differ from it by construction
    rng = np.random.default_rng(1)
    mm = (rng.random(400) < 0.3).astype(float)
    names = rng.normal(0.8, 0.05, 200)
    model = _Row("sparse (x)", {"multimodal_selective_frac": mm, "name_score": names})
    dense = _Row("dense (d)", {"multimodal_selective_frac": np.zeros(400), "name_score": names - 0.3})
    shuf = _Row("baseline: shuffled concept labels", {"multimodal_selective_frac": mm, "name_score": names})
    sae = _Row("SAE topk on dense embeddings", {"multimodal_selective_frac": mm * 0})
    rnd = _Row("baseline: random dictionary (rate-matched)", {"name_score": rng.normal(0.8, 0.05, 200)})
    out = {v["metric"]: v for v in verdicts(model, [dense, shuf, sae, rnd])}
    assert [a["kind"] for a in out["multimodal_selective_frac"]["against"]] == ["SAE"]
    assert out["multimodal_selective_frac"]["holds"]
    assert [a["kind"] for a in out["name_score"]["against"]] == ["random dictionary"]
    assert not out["name_score"]["holds"]  # level with random directions: fails, as it should


def test_clarity_ignores_inputs_without_a_reference_vector():
    # label clarity: an input with no label has an all-zero reference row; it must not drag clarity below 0
    from sparseclip.interpret.clarity import feature_clarity, random_clarity

    codes = np.ones((4, 1))
    ref = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    assert feature_clarity(codes, ref)[0] == pytest.approx(1.0)
    assert random_clarity(ref) == pytest.approx(1.0)


def test_analysis_table_states_how_each_sae_trained(tmp_path):
    import json

    from sparseclip.report.tables import analysis_table

    rows = [{"model": "sparse (x)", "L0_image": 10.0},
            {"model": "SAE relu on dense embeddings", "L0_image": 7.5, "fvu_image": 0.25, "sae_converged_image": 0.0,
             "fvu_text": 0.1, "sae_converged_text": 1.0, "sae_k_or_l1": 0.02}]
    path = tmp_path / "summary.json"
    path.write_text(json.dumps({"rows": rows}))
    text = analysis_table(path)
    assert ("- SAE relu on dense embeddings: image FVU 0.250 (NOT converged), text FVU 0.100 (converged), L1 0.02; "
            "image L0 reached 7.5") in text
    assert "- sparse (x)" not in text


def test_shuffled_label_baseline_scores_chance_on_codes_that_track_the_labels(monkeypatch):
    """Issue 39: the shuffled-concept-labels row, computed by the analysis's own ``_baselines``, on a code whose
    features are exactly the concepts: the model's own labels give AUROC 1 and every feature passes the F1 bar;
    the shuffled labels (a permutation of the rows that differs from the original, lattice rows permuted with
    them) give chance and no feature passes. The row's label-free columns stay the model's."""
    import torch
    from PIL import Image

    from sparseclip.config import load_config
    from sparseclip.interpret import pipeline
    from sparseclip.interpret.inputs import AnalysisData, CodeSet
    from sparseclip.interpret.summary import Options, summarize
    from sparseclip.model import create_model

    lat, attrs = scenes()
    lat = lat.columns([i for i, n in enumerate(lat.names) if "&" not in n])  # the single concepts
    rng = np.random.default_rng(0)
    images = [Image.new("RGB", (8, 8), tuple(int(v) for v in rng.integers(0, 256, 3))) for _ in range(N)]
    data = AnalysisData(images, [" ".join(a) for a in attrs], lat.matrix.copy(), ["red", "blue", "circle"],
                        concept_names=list(lat.names), lattice=lat)
    codes = lat.matrix.astype(np.float64) * rng.uniform(1.0, 2.0, lat.matrix.shape)  # feature j fires on concept j
    sparse = CodeSet("sparse (x)", codes, codes.copy(), rng.random((3, codes.shape[1])))
    towers = CodeSet("towers", rng.standard_normal((N, 16)), rng.standard_normal((N, 16)),
                     rng.standard_normal((3, 16)))
    ref = rng.standard_normal((N, 16))
    seen = []

    def recording(cs, d, *args, **kwargs):
        seen.append((cs.name, d))
        return summarize(cs, d, *args, **kwargs)

    monkeypatch.setattr(pipeline, "summarize", recording)
    cfg = load_config("micro")
    torch.manual_seed(0)
    model = create_model(cfg.model)
    opts = Options()
    rows = pipeline._baselines(model, cfg, sparse, towers, data, ref, ref, opts,
                               pipeline.AnalyzeConfig(progress=False), [])
    own = summarize(sparse, data, ref, ref, opts).row
    shuf = rows[2].row
    assert shuf["model"] == "baseline: shuffled concept labels"
    # the labels it was scored against: a permutation of the rows, not the rows themselves
    (name, shuffled), = [(n, d) for n, d in seen if n == "baseline: shuffled concept labels"]
    assert not np.array_equal(shuffled.concepts, data.concepts)
    order = lambda m: sorted(map(bytes, np.packbits(m, axis=1)))  # noqa: E731 - the multiset of rows
    assert order(shuffled.concepts) == order(data.concepts)
    assert np.array_equal(shuffled.lattice.matrix, shuffled.concepts)  # lattice rows moved with the labels
    assert shuffled.images is data.images and shuffled.captions is data.captions  # only the labels move
    # values: the model's labels are found perfectly, the shuffled ones at chance
    # (the two background features are pixel concepts, never credited: 8 of the 10 features pass)
    assert own["mean_best_auroc"] == pytest.approx(1.0) and own["f1_frac"] == pytest.approx(0.8)
    assert abs(shuf["mean_best_auroc"] - 0.5) < 0.1 and shuf["f1_frac"] == 0.0
    assert shuf["monosemantic_frac"] == 0.0 < own["monosemantic_frac"]
    assert shuf["L0_image"] == own["L0_image"] and shuf["clarity"] == own["clarity"]
