"""Metrics that cannot flatter: exact values on hand-built codes, and the degenerate codes (constant, dense,
all-dead, polysemantic, random) on which a metric must not score well."""

import numpy as np
import pytest
import torch

from sparseclip.eval.sparsity import firing_frequency
from sparseclip.interpret.alignment import alignment, strict_alignment
from sparseclip.interpret.clarity import clarity, clarity_all
from sparseclip.interpret.modality import modality, selective_multimodal


def _colours(n=600, seed=0):
    col = np.random.default_rng(seed).integers(0, 3, n)  # 0 red, 1 blue, 2 green
    return col, np.stack([col == 0, col == 1, col == 2], 1)


def _selective(img, txt):
    mod = modality(img, txt)
    freq = firing_frequency(np.concatenate([img, txt]))
    return selective_multimodal(mod.image_share, mod.live, freq)


def test_constant_code_is_multimodal_but_never_selective():
    img, txt = np.ones((50, 8)), np.ones((50, 8))
    assert modality(img, txt).multimodal_fraction() == 1.0  # the old number flatters it
    assert _selective(img, txt) == (0.0, 0.0)


def test_selective_multimodal_by_hand():
    img = np.zeros((10, 4))
    txt = np.zeros((10, 4))
    img[0:2, 0], txt[0:2, 0] = 1, 1  # feature 0: 4 of 20 inputs (< 20%? no: exactly 20%) -> not selective
    img[0, 1], txt[0, 1] = 1, 1  # feature 1: 2 of 20, half image: selective and multimodal
    img[0:2, 2] = 1  # feature 2: 2 of 20, images only: selective, not multimodal
    # feature 3: dead
    assert _selective(img, txt) == (pytest.approx(2 / 4), pytest.approx(1 / 4))


def test_strict_monosemanticity_rejects_polysemantic_features():
    col, y = _colours()
    red = (col == 0) * 1.0
    red_or_blue = np.isin(col, [0, 1]) * 1.0  # AUROC for red 0.75..1 depending on ties: not strict
    loud_red = np.where(col == 0, 1.0, 0.5)  # 1.0 on red, 0.5 elsewhere: AUROC 1.0, but not low elsewhere
    noise = np.random.default_rng(1).random(len(col))
    x = np.stack([red, red_or_blue, loud_red, noise], 1)
    old = alignment(x, y, ["color:red", "color:blue", "color:green"], n_min=1)
    assert old.feature_best_auroc[2] == 1.0  # the AUROC-only test calls the loud feature monosemantic
    s = strict_alignment(x, y, np.ones(4, dtype=bool))
    assert s.monosemantic.tolist() == [True, False, False, False]
    assert s.fraction == 0.25
    assert s.precision[1] < 0.9 and s.precision[0] == 1.0
    assert s.ratio[2] == pytest.approx(0.5)


def test_random_codes_are_not_monosemantic_and_selection_is_held_out():
    _, y = _colours(2000)
    x = np.random.default_rng(2).random((2000, 512))
    s = strict_alignment(x, y, np.ones(512, dtype=bool))
    assert s.fraction == 0.0
    # the in-sample best AUROC over 512 random features is biased upwards; the held-out one is not
    in_sample = alignment(x, y, ["r", "g", "b"], n_min=1).mean_best_auroc
    assert in_sample > 0.53 and abs(s.mean_best_auroc - 0.5) < 0.03


def test_all_dead_code():
    x = np.zeros((20, 6))
    ref = np.random.default_rng(0).random((20, 5))
    assert np.isnan(clarity(x, ref)) and clarity_all(x, ref) == 0.0
    assert np.isnan(modality(x, x).multimodal_fraction())
    assert _selective(x, x) == (0.0, 0.0)
    _, y = _colours(20)
    assert np.isnan(strict_alignment(x, y, np.zeros(6, dtype=bool)).fraction)


def test_clarity_by_hand_and_dead_features_count_in_clarity_all():
    ref = np.array([[1.0, 0], [1.0, 0], [0, 1.0], [0, 1.0]])
    x = np.zeros((4, 4))
    x[[0, 1], 0] = 1  # fires on two identical references: clarity 1
    x[[0, 2], 1] = 1  # on two orthogonal ones: clarity 0
    # features 2, 3 dead
    assert clarity(x, ref, n_min=2) == pytest.approx(0.5)
    assert clarity_all(x, ref, n_min=2) == pytest.approx((1 + 0 + 0 + 0) / 4)


def test_gradient_checkpointing_equals_the_plain_forward():
    from sparseclip.config import load_config
    from sparseclip.model import create_model

    cfg = load_config("micro")
    torch.manual_seed(0)
    plain = create_model(cfg.model)
    ckpt = create_model(cfg.model)
    ckpt.load_state_dict(plain.state_dict())
    ckpt.set_grad_checkpointing(True)
    plain.train()
    ckpt.train()
    images = torch.randn(4, 3, 32, 32)
    tokens = torch.randint(1, 1000, (4, 32))
    grads = []
    for m in (plain, ckpt):
        out = m(images, tokens)
        loss = out["image_features"].square().sum() + out["text_features"].sum()
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None})
        grads[-1]["_loss"] = loss.detach()
    assert grads[0].keys() == grads[1].keys()
    for k in grads[0]:
        assert torch.allclose(grads[0][k], grads[1][k], atol=1e-6, rtol=1e-5), k
