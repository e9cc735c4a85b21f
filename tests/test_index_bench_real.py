"""benchmarks/search_real.py: resampled codes keep the real codes' per-feature frequencies and values."""

import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from search_real import resample  # noqa: E402


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
