"""Values computed by hand that the mutation run showed no eval test checked (docs/mutants.md): the keys of
``sparsity_stats`` beyond L0, thresholds at exactly ``tau``, per-row normalisation where row norms differ, acc@5's
class count, ties among many candidates, the probe's regularisation, the training log's batch view."""

import math

import numpy as np
import pytest
import torch

from sparseclip.eval import sparsity as sp
from sparseclip.eval.linear_probe import linear_probe
from sparseclip.eval.retrieval import retrieval_metrics
from sparseclip.eval.zeroshot import classification_metrics, zero_shot_eval


def test_sparsity_stats_every_key_by_hand():
    # 3 inputs x 4 features; 0.001 is exactly tau (does not fire), 0.002 fires; feature 3 never fires
    codes = torch.tensor([[0.001, 2.0, 0.0, 0.0], [0.0, 1.0, 0.002, 0.0], [3.0, 0.0, 0.002, 0.0]])
    s = sp.sparsity_stats(codes)
    assert s == {"L0": pytest.approx(6 / 3), "L0_pct": pytest.approx(100 * 6 / 12),
                 "L0_tau": pytest.approx(5 / 3), "L0_tau_pct": pytest.approx(100 * 5 / 12), "tau": 1e-3,
                 # fire counts (> tau): 1, 2, 2, 0 -> active (>= 2 inputs): features 1, 2; dead: feature 3
                 "active_pct": 50.0, "dead_pct": 25.0, "dim": 4}
    # n_min = 1 counts feature 0 too; tau = 0.0015 leaves feature 0 fired once (3.0) and drops nothing else
    assert sp.sparsity_stats(codes, n_min=1)["active_pct"] == 75.0
    assert sp.sparsity_stats(codes, tau=0.0025)["dead_pct"] == 50.0  # features 2 and 3 never exceed 0.0025
    assert sp.sparsity_stats(codes.numpy(), tau=0.0025)["L0_tau"] == pytest.approx(3 / 3)


def test_l0_threshold_is_strict_and_numpy_and_torch_agree():
    x = np.array([[0.5, -0.5, 0.25, 0.0], [0.0, 0.0, 0.0, 1.0]])
    assert sp.l0(x) == 2.0 and sp.l0(torch.tensor(x)) == 2.0
    assert sp.l0(x, eps=0.25) == pytest.approx(3 / 2)  # |value| > 0.25: 0.5, -0.5 and 1.0
    assert sp.l0(torch.tensor(x), eps=0.25) == pytest.approx(3 / 2)
    assert sp.l0(x, eps=1.0) == 0.0  # nothing is above 1 (eps = 1 is a threshold like any other)
    # fire counts count values strictly above tau, per feature, as numpy from either input
    assert sp.fire_counts(x, tau=0.25).tolist() == [1, 0, 0, 1]
    assert sp.fire_counts(torch.tensor(x), tau=0.0).tolist() == [1, 0, 1, 1]
    assert sp.firing_frequency(x, tau=0.25).tolist() == [0.5, 0.0, 0.0, 0.5]
    assert sp.active_mask(x, tau=0.0, n_min=1).tolist() == [True, False, True, True]
    assert sp.active_fraction(x, tau=0.0, n_min=1) == 0.75 and sp.active_fraction(x, tau=0.3, n_min=1) == 0.5
    assert sp.active_fraction(np.ones((2, 4)), tau=0.5, n_min=2) == 1.0
    assert sp.dead_mask(x, tau=0.25).tolist() == [False, True, True, False]


def test_codes_with_gradients_and_bad_shapes():
    x = torch.tensor([[1.0, 0.0], [0.0, 0.0]], requires_grad=True)
    assert sp.l0(x) == 0.5 and sp.fire_counts(x).tolist() == [1, 0]
    assert sp.as_numpy(x).dtype == np.float64 and sp.as_numpy(x).tolist() == [[1.0, 0.0], [0.0, 0.0]]
    assert sp.as_numpy([[1, 2]], ndim=2).dtype == np.float64
    assert sp.as_numpy([1, 2]).tolist() == [1.0, 2.0]  # no ndim: any shape
    with pytest.raises(ValueError, match=r"^array: expected a 2-d array, got shape \(2,\)$"):
        sp.as_numpy([1, 2], ndim=2)
    with pytest.raises(ValueError, match=r"^codes: expected a 2-d array, got shape \(3,\)$"):
        sp.l0(np.zeros(3))
    with pytest.raises(ValueError, match=r"^codes: need at least one row$"):
        sp.l0(np.zeros((0, 3)))
    assert sp.l0(np.ones((1, 3))) == 3.0  # one row is enough
    assert sp.l0(np.ones((2, 0))) == 0.0  # rows without features: nothing to count, not "no rows"


def test_batch_stats_by_hand():
    # 2 inputs x 4 dims: L0 = (2 + 1) / 2; alive at tau 0 on >= 1 input: dims 0, 1, 2 (0.0005 counts at tau 0)
    codes = torch.tensor([[1.0, 0.0005, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0]])
    assert sp.batch_stats(codes) == {"l0": 1.5, "l0_pct": pytest.approx(37.5), "alive_pct": 75.0}


def test_firing_window_on_numpy_codes_at_exactly_tau():
    w = sp.FiringWindow(tau=0.25)
    w.add(np.array([[0.25, 0.5, 0.0], [0.0, 0.0, 0.0]]))  # 0.25 is not above tau: only feature 1 fired
    assert w.take() == {"unfired_pct": pytest.approx(100 * 2 / 3), "window_inputs": 2}


def test_classification_acc5_needs_more_than_five_classes_and_counts_five():
    # five classes: no acc5; six: acc5 present; seven: the 6th-ranked class is not in the top 5
    assert "acc5" not in classification_metrics(torch.zeros(2, 5), torch.tensor([0, 1]))
    assert classification_metrics(torch.zeros(2, 6), torch.tensor([4, 5]))["acc5"] == 0.5
    logits = torch.tensor([[7.0, 6, 5, 4, 3, 2, 1]])
    assert classification_metrics(logits, torch.tensor([5]))["acc5"] == 0.0
    assert classification_metrics(logits, torch.tensor([4]))["acc5"] == 1.0


def test_ties_among_many_candidates_keep_the_lower_index():
    # torch's default (unstable) sort reorders ties among ~100 candidates; the metrics must not
    n = 200
    m = classification_metrics(torch.zeros(3, n), torch.tensor([0, 1, n - 1]))
    assert m["acc1"] == pytest.approx(1 / 3) and m["acc5"] == pytest.approx(2 / 3)
    # every caption belongs to image 0 and all images tie: each caption finds image 0 first
    r = retrieval_metrics(torch.ones(n, 2), torch.ones(5, 2), [0] * 5, ks=(1,))
    assert r["text_to_image_R@1"] == 1.0
    # images 0 and 1 tie over all 200 captions and own the first and the last; image 2 owns the others (and finds
    # one of them): image 0 finds its caption first, image 1 does not
    img = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    txt = torch.tensor([[1.0, 1.0, 0.0]] + [[1.0, 0.0, 1.0]] * (n - 2) + [[1.0, 1.0, 0.0]])
    r = retrieval_metrics(img, txt, [0] + [2] * (n - 2) + [1], ks=(1,))
    assert r["image_to_text_R@1"] == pytest.approx(2 / 3)


def test_retrieval_normalises_each_row_and_clips_k_per_direction():
    # image 1 is long: unnormalised it would win every caption; caption 1 is long, likewise for images
    img = torch.tensor([[1.0, 0.0], [0.0, 10.0], [1.0, 1.0]])
    txt = torch.tensor([[1.0, 0.1], [0.0, 10.0], [1.0, 0.9], [0.1, 1.0]])
    r = retrieval_metrics(img, txt, [0, 1, 2, 1], ks=(1,))
    # cosines: caption 0 -> image 0; caption 1 -> image 1; caption 2 -> image 2; caption 3 -> image 1
    assert r["text_to_image_R@1"] == 1.0
    # image 0 -> caption 0; image 1 -> caption 1 (1.0); image 2 -> caption 2 (0.9986 vs caption 0's 0.7740)
    assert r["image_to_text_R@1"] == 1.0
    # 2 images, 6 captions, k = 5: each image ranks 5 of the 6 captions (k is clipped by the captions' count)
    img2 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    txt2 = torch.tensor([[0.0, 1.0]] * 5 + [[1.0, 0.0]])
    r2 = retrieval_metrics(img2, txt2, [1, 1, 1, 1, 1, 0], ks=(5,))
    # image 0's caption (index 5) ranks first; image 1's captions 0-4 rank first
    assert r2["image_to_text_R@5"] == 1.0 and r2["text_to_image_R@5"] == 1.0
    txt3 = torch.tensor([[0.0, 1.0]] * 5 + [[0.0, 1.0]])  # image 0's caption now ties with image 1's, ranks 6th
    assert retrieval_metrics(img2, txt3, [1, 1, 1, 1, 1, 0], ks=(5,))["image_to_text_R@5"] == 0.5
    # image 0's caption ranks 3rd of 6 for it: in its top 5 (k is clipped by the 6 captions, not the 2 images)
    txt4 = torch.tensor([[1.0, 0.1], [1.0, 0.2], [1.0, 0.3], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    assert retrieval_metrics(img2, txt4, [1, 1, 0, 1, 1, 1], ks=(5,))["image_to_text_R@5"] == 1.0


def test_zero_shot_eval_normalises_images_per_row_not_per_feature():
    # classes along x and y; image 1 is long along y: normalised per feature (column) its x part would dominate
    weights = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    images = torch.tensor([[1.0, 0.1], [0.5, 10.0], [0.2, 0.1], [0.1, 0.5]])
    m = zero_shot_eval(images, weights, [0, 1, 0, 1])
    assert m["acc1"] == 1.0 and m["mean_per_class_recall"] == 1.0


def test_zero_shot_weights_use_the_model_and_tokenizer_given(monkeypatch):
    import sparseclip.eval.zeroshot as zs

    seen = []

    def encode(model, tok, texts):
        seen.append((model, tok))
        return torch.tensor([[3.0, 4.0] for _ in texts])

    monkeypatch.setattr(zs, "encode_texts", encode)
    w = zs.classifier_weights("MODEL", "TOK", ["a"], ["{}", "a {}"])
    assert seen == [("MODEL", "TOK")] and torch.allclose(w, torch.tensor([[0.6], [0.8]]))


def test_linear_probe_regularisation_and_row_normalisation():
    # three class-0 codes along x, one class-1 code along y: at C = 1 the penalty keeps the lone class-1 example
    # on the wrong side; at C = 2 it is learnt (sklearn's lbfgs, deterministic)
    train = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    targets = [0, 0, 0, 1]
    y = torch.tensor([[0.0, 1.0]])
    assert linear_probe(train, targets, y, [1])["acc1"] == 0.0
    assert linear_probe(train, targets, y, [1], c=2.0)["acc1"] == 1.0
    # each row is L2-normalised on its own: rows rescaled by any positive factor give the same predictions
    scale = torch.tensor([[10.0], [0.1], [3.0], [0.2]])
    test = torch.tensor([[0.0, 5.0], [7.0, 0.0], [0.0, 0.1]])
    m = linear_probe(train * scale, targets, test, [1, 0, 1], c=2.0)
    assert m == {"acc1": 1.0, "mean_per_class_recall": 1.0}
    assert math.isclose(linear_probe(train, targets, test, [1, 0, 1], c=2.0, seed=5)["acc1"], 1.0)
