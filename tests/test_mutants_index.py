"""Search results and their explanations, line by line on a hand-built index whose every number is known
(docs/mutants.md: what the mutation run showed no index test compared): filter effects, the printed lines, the
JSON, singular and plural, the concept groups beyond the top three, the refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import sparseclip.interpret.concepts  # noqa: F401  (search_index imports these first: loaded once, not per test)
import sparseclip.model.embed  # noqa: F401
from sparseclip.index import SparseIndex
from sparseclip.index.codes import SparseIndexError
from sparseclip.index.explain import UNASSIGNED, ConceptGroup, explanation_coverage, group_contributions, top_share
from sparseclip.index.query import (
    FilterEffect,
    SearchResult,
    _words,
    effect_lines,
    filter_effect,
    format_result,
    group_line,
    item_image,
    query_model,
    search_index,
    share_line,
)
from sparseclip.index.sparse_index import Contribution, Hit

#: 4 items x 5 features (raw dot products): feature 4 is on no item
CODES = np.array([[1.0, 1.0, 1.0, 1.0, 0.0],
                  [0.0, 0.0, 2.0, 0.0, 0.0],
                  [0.0, 0.0, 0.0, 1.0, 0.0],
                  [0.5, 0.0, 0.0, 0.0, 0.0]])


def _index(**kw) -> SparseIndex:
    names = {0: "red things", 1: "circles", 2: "big", 3: "two objects"}
    return SparseIndex.build(sp.csr_matrix(CODES), ["a", "b", "c", "d"], normalize=False, feature_names=names,
                             captions=["cap a", "cap  b\nwrapped", "", "cap d"], **kw)


def test_filter_effects_count_items_per_feature_and_off_topic_names():
    ix = _index()
    e = filter_effect(ix, "exclude 'red circles'", [0, 1, 4], phrase="red circles")
    # items with feature 0: a, d; with 1: a; with 4: none -> the exclusion removes a and d
    assert (e.features, e.kept, e.of, e.removed, e.per_feature) == ([0, 1, 4], 2, 4, 2, {0: 2, 1: 1, 4: 0})
    assert e.off_topic == []  # "red things" shares "red", "circles" shares "circle"; feature 4 has no name
    assert filter_effect(ix, "x", [2, 3], phrase="circle").off_topic == [2, 3]
    assert filter_effect(ix, "x", [1], phrase="circle").off_topic == []  # a plural "s" is dropped on both sides
    assert filter_effect(ix, "x", [0], phrase="Reds").off_topic == []
    assert _words("Gas, CIRCLES bus3 x") == ["gas", "circle", "bus3", "x"]  # 3-letter words keep their "s"
    any_ = filter_effect(ix, "require", [2, 3], keep_any=True)  # items with 2 or 3: a, b, c
    all_ = filter_effect(ix, "require", [2, 3], keep_any=False)  # items with both: a
    assert (any_.kept, all_.kept) == (3, 1)
    assert filter_effect(ix, "x", [0], min_activation=0.75).per_feature == {0: 1}  # d's 0.5 is below
    # no features: an exclusion keeps everything, a requirement nothing
    assert (filter_effect(ix, "x", []).kept, filter_effect(ix, "x", [], keep_any=True).kept) == (4, 0)
    assert filter_effect(ix, "x", [], keep_any=False) == FilterEffect("x", [], 0, 4)
    assert filter_effect(ix, "x", []) == FilterEffect("x", [], 4, 4)
    assert filter_effect(ix, "x", [0]).off_topic == []  # no phrase: nothing is off topic
    assert filter_effect(ix, "x", [0], min_activation=0.75).kept == 3  # only a's 1.0 is above 0.75: d stays
    assert e.to_dict() == {"what": "exclude 'red circles'", "features": [0, 1, 4], "kept": 2, "removed": 2, "of": 4,
                           "items_per_feature": {"0": 2, "1": 1, "4": 0}, "names_off_topic": []}


def test_effect_lines_say_kept_or_removed_and_name_off_topic_features():
    ix = _index()
    req = FilterEffect("require 'big'", [2], kept=2, of=4, per_feature={2: 2})
    assert effect_lines(req, ix) == ["[require 'big' kept 2 of 4 items; active on: f2 (big) on 2]"]
    exc = FilterEffect("exclude 'red'", [4, 1], kept=3, of=4, per_feature={4: 0, 1: 1}, off_topic=[1, 4])
    assert effect_lines(exc, ix) == [
        "[exclude 'red' removed 1 of 4 items; active on: f4 on 0, f1 (circles) on 1]",
        "[  the names of f1, f4 do not mention the phrase: they may stand for something else; --exclude-feature / "
        "--require-feature ID filter single features]"]
    assert effect_lines(FilterEffect("exclude features", [], 4, 4), ix) == [
        "[exclude features removed 0 of 4 items: no features]"]


def test_groups_shares_order_and_the_top_three():
    contrib = [Contribution(f, None, 1.0, v, v) for f, v in [(1, 0.1), (2, 0.4), (3, 0.2), (4, 0.06), (5, 0.26),
                                                              (6, 0.36)]]
    concepts = {1: "a", 2: "b", 3: "c", 4: "d", 6: "a"}
    groups = group_contributions(contrib, 2.0, concepts)
    assert [(g.concept, g.features) for g in groups] == [("a", [1, 6]), ("b", [2]), ("c", [3]), ("d", [4]),
                                                         (UNASSIGNED, [5])]
    assert [g.share for g in groups] == pytest.approx([0.23, 0.2, 0.1, 0.03, 0.13])
    assert [g.contribution for g in groups] == pytest.approx([0.46, 0.4, 0.2, 0.06, 0.26])
    assert top_share(groups) == pytest.approx(0.53) and top_share(groups, 4) == pytest.approx(0.56)
    assert [g.share for g in group_contributions(contrib, 0.0, concepts)] == [0.0] * 5
    assert group_line(groups) == ("a +0.4600 (23%), b +0.4000 (20%), c +0.2000 (10%), 1 other concepts +0.0600 "
                                  "(3%), (no concept) +0.2600 (13%)")
    assert group_line(groups, top=5) == ("a +0.4600 (23%), b +0.4000 (20%), c +0.2000 (10%), d +0.0600 (3%), "
                                         "(no concept) +0.2600 (13%)")


def test_share_line_singular_plural_and_zero_score():
    one = Hit(1, 0, "a", 2.0, contributions=[Contribution(0, None, 1.0, 0.5, 0.5)])
    g1 = [ConceptGroup("red", 0.5, 0.25), ConceptGroup(UNASSIGNED, 1.0, 0.5)]
    assert share_line(one, 7, g1) == ("the 1 feature listed holds 25% of the score (of 7 shared); the 1 largest "
                                      "concept group holds 25%")
    two = Hit(1, 0, "a", 0.0, contributions=[Contribution(0, None, 1.0, 0.5, 0.5)] * 2)
    g2 = [ConceptGroup(c, 0.1, 0.1) for c in "abcd"]
    assert share_line(two, None, g2) == ("the 2 features listed hold n/a of the score; the 3 largest concept groups "
                                         "hold 30%")
    assert share_line(Hit(1, 0, "a", 1.0), None, None) == ""


def test_format_result_line_by_line():
    ix = _index(feature_concepts={0: "color:red", 2: "size:big"})
    q = sp.csr_matrix(np.array([[1.0, 1.0, 0.5, 1.0, 0.0]]))
    hits = ix.search(q, k=2, explain=2)
    groups = {h.row: group_contributions(ix.explain(q, h.row).contributions, h.score, ix.feature_concepts)
              for h in hits}
    exc = FilterEffect("exclude 'x'", [4], 4, 4, {4: 0})
    r = SearchResult(index=ix, hits=hits, groups=groups, query="text 'q'", effects=[exc], shared={0: 4},
                     filters={"exclude 'x'": [4], "require 'y'": [0, 4]})
    lines = format_result(r)
    # item a: 1 + 1 + 0.5 + 1 = 3.5 (features 0, 1, 3 tie at 1.0: the lower number first); item b: 0.5 x 2 = 1.0
    assert lines == [
        "searched 4 items for text 'q': 2 hits",
        "score = dot product of the query's and the item's raw codes = the sum over the features both have active "
        "of query value x item value; 0 = nothing shared",
        "[require 'y': features 0 (red things), 4]",
        "[exclude 'x' removed 0 of 4 items; active on: f4 on 0]",
        "  1  3.5000  a  cap a",
        "       the 2 features listed hold 57% of the score (of 4 shared); the 2 largest concept groups hold 43%",
        "       f0 red things: +1.0000 (29%)  (query 1.000 x item 1.000)",
        "       f1 circles: +1.0000 (29%)  (query 1.000 x item 1.000)",
        "       other shared features: +1.5000 (43%)",
        "       by concept: color:red +1.0000 (29%), size:big +0.5000 (14%), (no concept) +2.0000 (57%)",
        "  2  1.0000  b  cap b wrapped",
        "       the 1 feature listed holds 100% of the score; the 1 largest concept group holds 100%",
        "       f2 big: +1.0000 (100%)  (query 0.500 x item 2.000)",
        "       by concept: size:big +1.0000 (100%)"]
    d = r.to_dict()
    assert d["searched"] == 4 and d["filters"] == r.filters and d["score"] == lines[1]
    assert d["filter_effects"] == [exc.to_dict()]
    assert [h["shared_features"] for h in d["hits"]] == [4, None]
    assert d["hits"][1]["concept_groups"] == [{"concept": "size:big", "contribution": 1.0, "share": 1.0,
                                               "features": [2]}]
    assert d["hits"][0]["id"] == "a" and d["hits"][0]["rest"] == pytest.approx(1.5)


def test_no_hits_lines_and_the_cosine_and_boost_headers():
    ix = SparseIndex.build(sp.csr_matrix(np.eye(2)), ["a", "b"])
    gone = FilterEffect("require 'z'", [1], 0, 2)
    r = SearchResult(index=ix, hits=[], effects=[gone, FilterEffect("exclude 'w'", [0], 2, 2)], boosted=True)
    lines = format_result(r)
    assert lines[0] == "searched 2 items: 0 hits"
    assert lines[1] == ("score = cosine similarity of the query's and the item's codes (each scaled to length 1) = "
                        "the sum over the features both have active of query value x item value; 1 = the same code, "
                        "0 = nothing shared; the query's code was boosted (--boost)")
    assert lines[-1] == "no hits: require 'z' left no item"
    r2 = SearchResult(index=ix, hits=[], effects=[FilterEffect("exclude 'w'", [0], 2, 2)])
    assert format_result(r2)[-1] == ("no hits: no indexed item shares an active feature with the query (after "
                                     "filters)")
    assert not r2.score_line().endswith("(--boost)")


def test_explanation_coverage_over_two_hits_and_list_queries():
    codes = sp.csr_matrix(np.array([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0]]))
    ix = SparseIndex.build(codes, ["a", "b", "c"], normalize=False, feature_concepts={0: "red", 1: "red",
                                                                                      2: "circle"})
    q = sp.csr_matrix(np.array([[1.0, 1.0, 0.5, 1.0], [0.0, 0.0, 0.0, 1.0]]))
    cov = explanation_coverage(ix, q, n=1, hits=2)
    # query 0: a (3.5: red 2.0, top feature 1.0), b (1.0: circle 1.0); query 1: a (1.0, unassigned only)
    assert cov["hits"] == 3 and cov["n"] == 1 and cov["assigned_features"] == 3
    assert cov["group_shares"] == pytest.approx([2 / 3.5, 1.0, 0.0])
    assert cov["feature_shares"] == pytest.approx([1 / 3.5, 1.0, 1.0])
    assert cov["top_groups_share"] == pytest.approx((2 / 3.5 + 1.0) / 3)
    assert cov["top_features_share"] == pytest.approx((1 / 3.5 + 2.0) / 3)
    dense = [np.array([1.0, 1.0, 0.5, 1.0]), np.array([0.0, 0.0, 0.0, 1.0])]
    assert explanation_coverage(ix, dense, n=1, hits=2)["group_shares"] == pytest.approx(cov["group_shares"])
    none = explanation_coverage(ix, sp.csr_matrix(np.zeros((1, 4))), n=2)
    assert none["hits"] == 0 and math.isnan(none["top_groups_share"]) and math.isnan(none["top_features_share"])


def test_item_image_renders_world_scenes_and_reads_files(tmp_path):
    from PIL import Image

    from sparseclip.data.world import World

    ix = _index(model={"config": {"data": {"image_size": 40, "max_objects": 1}}})
    img = item_image(ix, "world:3:2")  # scene 2 has one object at max_objects 1, three at the default 3
    world = World(seed=3, image_size=40, max_objects=1)
    assert img.size == (40, 40) and np.array_equal(np.asarray(img), np.asarray(world.render(world.scene(2), 2)))
    assert item_image(_index(), "world:3:5").size == (64, 64)  # no recorded settings: the defaults
    Image.new("RGB", (7, 5), (255, 0, 0)).save(tmp_path / "r.png")
    assert np.asarray(item_image(ix, str(tmp_path / "r.png"))).tolist()[0][0] == [255, 0, 0]
    (tmp_path / "bad.png").write_bytes(b"not an image")
    assert item_image(ix, str(tmp_path / "bad.png")) is None and item_image(ix, str(tmp_path / "nope")) is None


def test_query_model_and_search_refusals(tmp_path, monkeypatch):
    import types

    import sparseclip.model.checkpoint as ckpt

    ix = _index()
    no_model = "^this index records no model to embed queries with; pass --model RUN_OR_CKPT$"
    with pytest.raises(SparseIndexError, match=no_model):
        query_model(ix)
    with pytest.raises(SparseIndexError, match=f"^the index's model {tmp_path / 'gone'} is not there any more"):
        query_model(ix, tmp_path / "gone")
    monkeypatch.setattr(ckpt, "load_model", lambda path: (types.SimpleNamespace(code_dim=int(path.name)), "cfg"))
    (tmp_path / "3").mkdir()
    (tmp_path / "5").mkdir()
    with pytest.raises(SparseIndexError, match=f"^model {tmp_path / '3'} makes 3-feature codes, the index has 5$"):
        query_model(ix, tmp_path / "3")
    assert query_model(ix, tmp_path / "5")[1] == "cfg"
    ix.model = {"checkpoint": tmp_path / "5"}
    assert query_model(ix)[0].code_dim == 5
    with pytest.raises(SparseIndexError, match="^-k and --concept-k must be >= 1$"):
        search_index(ix, text="x", k=0)
    with pytest.raises(SparseIndexError, match="^-k and --concept-k must be >= 1$"):
        search_index(ix, text="x", concept_k=0)
    with pytest.raises(SparseIndexError, match="^give one query: a text or an image$"):
        search_index(ix, text="x", image="y.png")
    with pytest.raises(SparseIndexError, match="^give one query"):
        search_index(ix)


@pytest.fixture
def fake_model(monkeypatch):
    """search_index with a stand-in model: the text "q" and any image embed to fixed codes; phrases map to
    features by a table (what ``concept_features`` would rank), so every hit and filter is known."""
    import types

    import sparseclip.index.query as query
    import sparseclip.interpret.concepts as concepts
    import sparseclip.model as model
    import sparseclip.model.embed as embed

    seen = {}
    cfg = types.SimpleNamespace(model="MODEL_CFG", data=types.SimpleNamespace(image_size=12))
    def model_for(index, override):
        seen["override"], seen["index"] = override, index
        return "NET", cfg

    def texts(net, tok, texts):
        seen["text"] = (net, tok, texts)
        return torch.tensor([[1.0, 1.0, 0.5, 1.0, 0.0]])

    def images(net, imgs, size):
        seen["image"] = (net, size, len(imgs))
        return torch.tensor([[0.0, 0.0, 1.0, 0.0, 0.0]])

    monkeypatch.setattr(query, "query_model", model_for)
    monkeypatch.setattr(model, "get_tokenizer", lambda mcfg: f"TOK({mcfg})")
    monkeypatch.setattr(embed, "encode_texts", texts)
    monkeypatch.setattr(embed, "encode_images", images)
    table = {"circle": [1, 3, 0, 2], "red": [0, 2, 1, 3]}

    def features(net, tok, phrase, k, baseline=None):
        assert (net, tok) == ("NET", "TOK(MODEL_CFG)")
        seen.setdefault("phrases", []).append((phrase, k, baseline))
        return table[phrase][:k]

    monkeypatch.setattr(concepts, "concept_features", features)
    return seen


def test_search_index_filters_explains_and_reports_what_each_filter_did(fake_model):
    ix = _index(feature_concepts={0: "color:red", 2: "size:big"})
    r = search_index(ix, text="q", k=3, explain=2, model="M")
    assert fake_model["override"] == "M" and fake_model["text"] == ("NET", "TOK(MODEL_CFG)", ["q"])
    # scores (raw dot): a 3.5, b 1.0, c 1.0, d 0.5
    assert [(h.id, h.score) for h in r.hits] == [("a", 3.5), ("b", 1.0), ("c", 1.0)]
    assert r.query == "text 'q'" and r.filters == {} and r.effects == [] and not r.boosted
    assert r.shared == {0: 4, 1: 1, 2: 1} and [len(h.contributions) for h in r.hits] == [2, 1, 1]
    assert [(g.concept, g.contribution) for g in r.groups[0]] == [("color:red", 1.0), ("size:big", 0.5),
                                                                  (UNASSIGNED, 2.0)]
    assert r.index is ix and fake_model["index"] is ix and ix._approx is None  # exact unless asked
    assert [g.share for g in r.groups[0]] == pytest.approx([1 / 3.5, 0.5 / 3.5, 2 / 3.5])
    # exclude "circle" (top 2 features: 1 and 3) and require "red" (top 2: 0 and 2): a and c go; b and d stay
    r = search_index(ix, text="q", k=3, exclude_phrases=["circle"], require_phrases=["red"], concept_k=2,
                     baseline="B", min_activation=0.0)
    assert fake_model["phrases"] == [("red", 2, "B"), ("circle", 2, "B")]
    assert [h.id for h in r.hits] == ["b", "d"] and r.groups == {} and r.shared == {}
    assert r.filters == {"require 'red'": [0, 2], "exclude 'circle'": [1, 3]}
    assert [(e.what, e.kept, e.removed, e.off_topic) for e in r.effects] == [
        ("require 'red'", 3, 1, [2]), ("exclude 'circle'", 2, 2, [3])]  # "big", "two objects": off topic
    # features and phrases excluded together; the default of 3 features per phrase
    r = search_index(ix, text="q", exclude_features=[2], exclude_phrases=["circle"], concept_k=2)
    assert [h.id for h in r.hits] == ["d"]
    r = search_index(ix, text="q", exclude_phrases=["circle"])
    assert [h.id for h in r.hits] == ["b"] and r.filters == {"exclude 'circle'": [1, 3, 0]}
    r = search_index(ix, text="q", k=4, exclude_features=[0], min_activation=0.75)
    assert [h.id for h in r.hits] == ["b", "c", "d"] and r.effects[0].removed == 1
    r = search_index(ix, text="q", k=4, require_features=[0, 2])
    assert [h.id for h in r.hits] == ["a"] and r.effects[0].kept == 1  # every required feature
    r = search_index(ix, text="q", k=1, approximate=True)
    assert [h.id for h in r.hits] == ["a"] and ix._approx is not None
    # explanations of a boosted query explain the boosted score
    r = search_index(ix, text="q", k=2, explain=1, boost={2: 10.0})
    assert [(g.concept, g.contribution) for g in r.groups[1]] == [("size:big", pytest.approx(21.0))]
    big = SparseIndex.build(sp.csr_matrix(np.ones((12, 5))), normalize=False)
    assert len(search_index(big, text="q").hits) == 10  # ten hits by default
    # two required phrases must both hold; features by number, and a boost
    r = search_index(ix, text="q", k=4, require_phrases=["circle", "red"], concept_k=1)
    assert [h.id for h in r.hits] == ["a"]  # circle's feature 1 (a) and red's feature 0 (a, d)
    r = search_index(ix, text="q", k=4, require_features=[2], exclude_features=[3], boost={2: 10.0})
    # the boost adds to the query's value: (0.5 + 10) x item b's 2.0
    assert [h.id for h in r.hits] == ["b"] and r.boosted and r.hits[0].score == pytest.approx((0.5 + 10.0) * 2.0)
    assert [(e.what, e.kept, e.removed) for e in r.effects] == [("require features", 2, 2),
                                                                ("exclude features", 2, 2)]
    r = search_index(ix, text="q", k=4, require_features=[0], min_activation=0.75)
    assert [h.id for h in r.hits] == ["a"] and r.effects[0].kept == 1  # d's feature 0 (0.5) is below the floor
    r = search_index(ix, text="q", k=4, require_phrases=["red"], concept_k=1, min_activation=0.75)
    assert [h.id for h in r.hits] == ["a"] and r.effects[0].kept == 1


def test_search_index_image_queries_and_refusals(fake_model, tmp_path):
    from PIL import Image

    ix = _index()
    Image.new("RGB", (4, 4)).save(tmp_path / "q.png")
    r = search_index(ix, image=tmp_path / "q.png", k=1)
    assert fake_model["image"] == ("NET", 12, 1) and [h.id for h in r.hits] == ["b"]
    assert r.query == f"image {tmp_path / 'q.png'}"
    (tmp_path / "bad.png").write_bytes(b"no")
    with pytest.raises(SparseIndexError, match=f"^image {tmp_path / 'bad.png'}: cannot read it \\("):
        search_index(ix, image=tmp_path / "bad.png")
    with pytest.raises(SparseIndexError, match="^the text query is empty$"):
        search_index(ix, text="  ")
    ix.save(tmp_path / "ix")
    assert [h.id for h in search_index(tmp_path / "ix", text="q", k=1).hits] == ["a"]  # a path is loaded


def test_format_result_edges():
    ix = _index()
    named = [ConceptGroup(c, 0.1, 0.1, [i]) for i, c in enumerate("abc")]
    hits = [Hit(1, 0, "a", 1.0),  # no caption, no contributions, concept groups
            Hit(2, 1, "b", 2.0, caption="x", contributions=[Contribution(7, None, 1.0, 1.0, 1.0)], rest=0.5),
            Hit(3, 2, "c", 1.0, contributions=[Contribution(2, "big", 1.0, 1.0, 1.0)], rest=1e-8)]
    gone = [FilterEffect("require 'p'", [1], 0, 4), FilterEffect("exclude 'q'", [0], 0, 4)]
    r = SearchResult(index=ix, hits=hits, groups={0: named}, filters={"require 'y'": []}, effects=gone)
    lines = format_result(r)
    assert lines[2] == "[require 'y': features none active]"
    assert lines[5:] == [
        "  1  1.0000  a",
        "       the 3 largest concept groups hold 30%",  # groups, no listed features
        "       by concept: a +0.1000 (10%), b +0.1000 (10%), c +0.1000 (10%)",  # exactly 3: no "other" part
        "  2  2.0000  b  x",
        "       the 1 feature listed holds 50% of the score",  # features, no groups
        "       f7: +1.0000 (50%)  (query 1.000 x item 1.000)",  # a feature without a name
        "       other shared features: +0.5000 (25%)",
        "  3  1.0000  c",
        "       the 1 feature listed holds 100% of the score",
        "       f2 big: +1.0000 (100%)  (query 1.000 x item 1.000)"]  # a rest of 1e-8 is no rest
    assert format_result(SearchResult(index=ix, hits=[], effects=gone))[-1] == (
        "no hits: require 'p' and exclude 'q' left no item")
    assert SearchResult(index=ix, hits=hits[:1]).to_dict()["hits"][0]["concept_groups"] == []
    four = named + [ConceptGroup("d", 0.6, 0.6, [3])]
    assert group_line(four, top=3).endswith("1 other concepts +0.6000 (60%)")
    assert share_line(hits[0], None, four, top=2) == "the 2 largest concept groups hold 20%"


def test_explanation_coverage_defaults_three_groups_one_hit():
    codes = sp.csr_matrix(np.array([[1.0, 1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0, 0.0]]))
    concepts = {0: "a", 1: "b", 2: "c", 3: "d"}
    ix = SparseIndex.build(codes, ["x", "y"], normalize=False, feature_concepts=concepts)
    q = sp.csr_matrix(np.array([[1.0, 1.0, 1.0, 1.0, 1.0]]))
    cov = explanation_coverage(ix, q)
    # one hit (x, score 5): the top 3 of its 4 named groups carry 3 / 5, its top 3 features 3 / 5
    assert (cov["n"], cov["hits"]) == (3, 1) and cov["top_groups_share"] == pytest.approx(0.6)
