"""The evaluation metrics against values computed by hand: ties, several captions per image, degenerate codes."""

import pytest
import torch

from sparseclip.eval.linear_probe import linear_probe
from sparseclip.eval.retrieval import retrieval_metrics
from sparseclip.eval.sparsity import sparsity_stats
from sparseclip.eval.zeroshot import classification_metrics


def test_classification_metrics_by_hand():
    logits = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1], [0.1, 0.1, 0.8]])
    targets = torch.tensor([0, 1, 1, 2])
    m = classification_metrics(logits, targets)
    assert m["acc1"] == pytest.approx(3 / 4)
    assert m["mean_per_class_recall"] == pytest.approx((1 + 1 / 2 + 1) / 3)
    assert "acc5" not in m  # only with more than 5 classes


def test_classification_ties_pick_the_lower_class_and_acc5():
    # constant logits: every prediction is class 0, whatever the targets
    targets = torch.tensor([0, 3, 6, 6])
    m = classification_metrics(torch.zeros(4, 7), targets)
    assert m["acc1"] == pytest.approx(1 / 4)
    assert m["acc5"] == pytest.approx(2 / 4)  # classes 0..4 are the top 5: targets 0 and 3 are in
    assert m["mean_per_class_recall"] == pytest.approx((1 + 0 + 0) / 3)


def test_retrieval_several_captions_per_image_by_hand():
    img = torch.eye(3)
    # captions 0,1 -> image 0; 2 -> image 1; 3 -> image 2; caption 1 is closest to image 1 (wrong)
    txt = torch.tensor([[1.0, 0, 0], [0.2, 1.0, 0], [0.5, 0.6, 0], [0, 0.5, 0.6]])
    r = retrieval_metrics(img, txt, [0, 0, 1, 2], ks=(1, 2))
    assert r["text_to_image_R@1"] == pytest.approx(3 / 4)
    assert r["text_to_image_R@2"] == pytest.approx(4 / 4)
    # cosines: image 1 scores caption 1 (0.98, image 0's) above its own caption 2 (0.77); images 0, 2 find theirs
    assert r["image_to_text_R@1"] == pytest.approx(2 / 3)
    assert r["image_to_text_R@2"] == pytest.approx(3 / 3)


def test_linear_probe_separable_and_constant_codes():
    train = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    test = torch.tensor([[0.8, 0.2], [0.2, 0.8]])
    m = linear_probe(train, [0, 0, 1, 1], test, [0, 1])
    assert m == {"acc1": 1.0, "mean_per_class_recall": 1.0}
    # constant codes carry no information: one class for every test input, recall 1 on it and 0 on the other
    m = linear_probe(torch.ones(4, 2), [0, 0, 1, 1], torch.ones(2, 2), [0, 1])
    assert m["acc1"] == pytest.approx(0.5) and m["mean_per_class_recall"] == pytest.approx(0.5)


def test_sparsity_stats_by_hand_and_degenerate():
    codes = torch.tensor([[0.0, 2.0, 0.0, 0.0], [0.0, 1.0, 0.0005, 0.0], [3.0, 1.0, 0.0, 0.0]])
    s = sparsity_stats(codes)
    assert s["L0"] == pytest.approx(5 / 3) and s["L0_pct"] == pytest.approx(100 * 5 / 12)
    # active: fires > 1e-3 on >= 2 inputs: only feature 1 (feature 0 once, feature 2 below tau, 3 never)
    assert s["active_pct"] == pytest.approx(25.0) and s["dim"] == 4
    dead = sparsity_stats(torch.zeros(5, 8))
    assert dead["L0"] == 0 and dead["active_pct"] == 0
    dense = sparsity_stats(torch.ones(5, 8))
    assert dense["L0_pct"] == 100 and dense["active_pct"] == 100


def test_zero_shot_weights_normalise_each_prompt_then_the_mean(monkeypatch):
    """CLIP_benchmark's classifier: each prompt's text code L2-normalised, averaged, the mean renormalised. Hand-made
    codes where skipping either normalisation changes the prediction (issue 39: a planted un-normalised average
    passed every eval test). Class "a" has a long prompt code (10, 0) and a short one (0, 1): normalised first, they
    weigh the same and the class points at 45 degrees; averaged raw, the long one wins and it points along x."""
    import math

    import sparseclip.eval.zeroshot as zs

    codes = {"a photo of a": [10.0, 0.0], "a drawing of a": [0.0, 1.0],
             "a photo of b": [0.6, 0.8], "a drawing of b": [0.3, 0.4]}
    monkeypatch.setattr(zs, "encode_texts", lambda model, tok, texts: torch.tensor([codes[t] for t in texts]))
    w = zs.classifier_weights(None, None, ["a", "b"], ["a photo of {}", "a drawing of {}"])
    h = 1 / math.sqrt(2)
    assert torch.allclose(w, torch.tensor([[h, 0.6], [h, 0.8]]), atol=1e-6)  # (code_dim, classes), unit columns
    # an image at 45 degrees: cosine 1.0 with "a", 0.990 with "b" (raw mean: 0.774 with "a"; no renormalisation:
    # 0.707 with "a"); an image along y: "b" either way
    images = torch.tensor([[2.0, 2.0], [0.0, 3.0]])
    m = zs.zero_shot_eval(images, w, [0, 1])
    assert m["acc1"] == 1.0 and m["mean_per_class_recall"] == 1.0
