"""benchmarks/search_real.py: resampled codes keep the real codes' per-feature frequencies and values."""

import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from search_real import resample, resample_dense  # noqa: E402


def test_resample_keeps_feature_frequency_and_values():
    rng = np.random.default_rng(0)
    freq = np.linspace(0.01, 0.5, 40)
    real = sp.csr_matrix((rng.random((2000, 40)) < freq) * rng.integers(1, 5, (2000, 40)).astype(np.float32))
    out = resample(real, 20000, seed=1)
    assert out.shape == (20000, 40) and out.dtype == np.float32
    got = np.diff(sp.csc_matrix(out).indptr) / 20000
    want = np.diff(sp.csc_matrix(real).indptr) / 2000
    np.testing.assert_allclose(got, want, atol=0.02)
    col_out, col_real = sp.csc_matrix(out), sp.csc_matrix(real)
    for j in (0, 17, 39):  # every value drawn is one the feature really took
        seen = set(col_real.data[col_real.indptr[j]:col_real.indptr[j + 1]].tolist())
        assert set(col_out.data[col_out.indptr[j]:col_out.indptr[j + 1]].tolist()) <= seen
    dedup = out.copy()
    dedup.sum_duplicates()
    assert dedup.nnz == out.nnz  # an item holds a feature at most once


def test_resampled_dense_embeddings_keep_the_runs_mean_direction_and_spread():
    rng = np.random.default_rng(0)
    d = 16
    scale = np.linspace(0.05, 1.0, d)  # anisotropic, with a strong mean direction on feature 0
    xb = rng.standard_normal((4000, d)) * scale
    xb[:, 0] += 3.0
    xb /= np.linalg.norm(xb, axis=1, keepdims=True)
    out = resample_dense(xb.astype(np.float32), 5000, seed=1)
    assert out.shape == (5000, d) and out.dtype == np.float32
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    m_real, m_out = xb.mean(0), out.mean(0)
    assert m_real @ m_out / np.linalg.norm(m_real) / np.linalg.norm(m_out) > 0.99
    # the per-dimension spread follows the real one (a random isotropic draw would not)
    assert np.corrcoef(xb.std(0), out.std(0))[0, 1] > 0.95
    assert np.array_equal(out, resample_dense(xb.astype(np.float32), 5000, seed=1))
    iso = rng.standard_normal((5000, d))
    iso /= np.linalg.norm(iso, axis=1, keepdims=True)
    assert np.corrcoef(xb.std(0), iso.std(0))[0, 1] < 0.9
