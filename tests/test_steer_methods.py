"""Steering methods (sparseclip.steer.methods) and the evidence they rest on, on hand-built codes with known
answers: evidence finds the feature planted for a concept, effect ranking finds the feature that moves the output,
the clamp and the sparse-cleaned vector edit exactly what they say."""

import numpy as np
import pytest
import torch

from sparseclip.interpret.evidence import active_means, effect_ranking
from sparseclip.steer import FeatureReference, SteerError
from sparseclip.steer.methods import ConceptEvidence, MethodEdits, clamp_edit, top_coordinates


class _It:
    def __init__(self, kind, source, target):
        self.kind, self.source, self.target = kind, source, target


def _planted(n=200, d=12, seed=0):
    """Codes where feature 1 fires (value ~3) on every "red" image, feature 2 on every "blue" one, feature 5 on
    half the "blue" ones; the rest is noise that ignores the labels."""
    rng = np.random.default_rng(seed)
    names = ["red", "blue", "circle", "star"]
    labels = np.zeros((n, 4), dtype=bool)
    colour = rng.integers(0, 2, n)
    shape = rng.integers(2, 4, n)
    labels[np.arange(n), colour] = labels[np.arange(n), shape] = True
    x = rng.random((n, d)) * (rng.random((n, d)) < 0.3)
    x[:, [1, 2, 5]] = 0
    x[colour == 0, 1] = 3 + 0.1 * rng.random((colour == 0).sum())
    x[colour == 1, 2] = 2
    blue = np.flatnonzero(colour == 1)
    x[blue[::2], 5] = 4
    return torch.tensor(x, dtype=torch.float32), labels, names


def test_active_means_is_the_mean_where_the_feature_fires():
    x = np.array([[2.0, 0.0], [4.0, 1.0], [0.0, 0.0], [9.0, 9.0]])
    y = np.array([[1], [1], [1], [0]], dtype=bool)
    assert active_means(x, y).tolist() == [[3.0, 1.0]]  # (2 + 4) / 2; 1 / 1; the 4th row is not the concept's
    assert active_means(np.zeros((3, 2)), np.ones((3, 1), bool)).tolist() == [[0.0, 0.0]]  # all-dead: 0, not nan


def test_evidence_ranks_the_planted_features_and_clamps_to_their_typical_value():
    codes, labels, names = _planted()
    ev = ConceptEvidence.of(codes, labels, names)
    assert ev.ranked("red", 1) == [1] and ev.ranked("blue", 2) == [2, 5]
    assert ev.typical_of("blue")[5] == pytest.approx(4.0) and ev.typical_of("red")[1] == pytest.approx(3.05, abs=0.06)
    edits = MethodEdits(None, None, ev, FeatureReference(codes))
    code = codes[int(np.flatnonzero(labels[:, 0])[0])]  # a red image
    out = edits.edit("evidence", 2, 2.0)(code, _It("color", "red", "blue"))
    assert out[1] == 0 and out[2] == pytest.approx(4.0) and out[5] == pytest.approx(8.0)  # 2 x typical
    untouched = [i for i in range(codes.shape[1]) if i not in (1, 2, 5)]
    assert torch.equal(out[untouched], code[untouched])
    with pytest.raises(SteerError, match="no evidence for concept 'green'"):
        ev.ranked("green", 1)


def test_clamp_and_top_coordinates():
    code = torch.tensor([1.0, 2.0, 3.0, 4.0])
    out = clamp_edit(code, [0, 3], [3, 1], torch.tensor([9.0, 8.0, 7.0, 6.0]))
    assert out.tolist() == [0.0, 8.0, 3.0, 6.0]  # 0 suppressed; 3 is boosted, not suppressed
    v = torch.tensor([0.5, -3.0, 2.0, 0.1])
    assert top_coordinates(v, 2).tolist() == [0.0, -3.0, 2.0, 0.0]
    assert torch.equal(top_coordinates(v, 4), v) and torch.equal(top_coordinates(v, 10), v)


def test_means_topk_is_a_clipped_step_along_the_cleaned_difference_of_means():
    codes, labels, names = _planted()
    ev = ConceptEvidence.of(codes, labels, names)
    edits = MethodEdits(None, None, ev, FeatureReference(codes))
    code = codes[int(np.flatnonzero(labels[:, 0])[0])]  # a red image: its red feature can fall
    diff = ev.means[1] - ev.means[0]  # blue - red
    full = edits.edit("means-topk", codes.shape[1], 0.5)(code, _It("color", "red", "blue"))
    expect = torch.relu(code + 0.5 * edits.mean_norm * diff / diff.norm())
    assert torch.allclose(full, expect) and full.min() >= 0
    one = edits.edit("means-topk", 1, 0.5)(code, _It("color", "red", "blue"))
    k = int(diff.abs().argmax())
    changed = torch.nonzero(one != code).flatten().tolist()
    assert changed == [k]
    assert [s[0] for s in edits.settings("means-topk", (1, 2), (1.0,), (0.5,))] == [1, 2, codes.shape[1]]


def test_effect_ranking_finds_the_feature_that_moves_the_output():
    torch.manual_seed(0)
    codes = torch.rand(30, 6)
    w = torch.tensor([0.0, 0.0, 0.0, 2.0, 0.0, -1.0])  # only feature 3 raises the score; 5 lowers it

    def score(c):
        return c @ w
    values = torch.full((6,), 5.0)
    ranked = effect_ranking(codes, [0, 5, 3, 1], values, score)
    assert [f for f, _ in ranked] == [3]  # 5 hurts, 0 and 1 do nothing: dropped
    assert ranked[0][1] == pytest.approx(float((2.0 * (5.0 - codes[:, 3])).mean()), rel=1e-5)
    every = effect_ranking(codes, [0, 5, 3], values, score, keep_positive=False)
    assert [f for f, _ in every][0] == 3 and [f for f, _ in every][-1] == 5


def test_answer_logprob_is_the_teacher_forced_loss():
    pytest.importorskip("transformers")
    from sparseclip.steer import WordTokenizer
    from sparseclip.steer.text import Q_COLOR
    from sparseclip.steer.vlm import AdapterVLM, VLMConfig, tiny_lm

    tok = WordTokenizer.for_world()
    vlm = AdapterVLM(VLMConfig(code_dim=8, hidden=8), tiny_lm(len(tok), 1, 16, 2), tok).eval()
    codes = torch.rand(3, 8)
    lp = vlm.answer_logprob(codes, Q_COLOR, "red triangle")
    assert lp.shape == (3,) and (lp < 0).all()
    for i in range(3):
        with torch.no_grad():
            loss = vlm.loss(codes[i:i + 1], [tok.prompt_ids(Q_COLOR)], [tok.encode("red triangle")])
        assert float(lp[i]) == pytest.approx(-2 * float(loss), rel=1e-4)  # two answer tokens, mean loss
    with pytest.raises(SteerError, match="no tokens"):
        vlm.answer_logprob(codes, Q_COLOR, "")


def test_unknown_method_is_one_clear_error():
    codes, labels, names = _planted(40)
    edits = MethodEdits(None, None, ConceptEvidence.of(codes, labels, names), FeatureReference(codes))
    with pytest.raises(SteerError, match="unknown steering method 'magic'"):
        edits.edit("magic", 1, 1.0)
    with pytest.raises(SteerError, match="need the VLM"):
        edits.features("effect", "color", "red", "boost")
