"""Real codes for bench_search.py: a trained run's sparse codes of its cached training images (items) and
captions (queries), a dense run's embeddings of the same images and captions, and larger sets resampled from
the real codes' measured statistics.

A run trained with frozen towers on a finite set (the demo's ``lite_sparse``) keeps its tower outputs in
``RUN/features.safetensors``; the codes are its heads applied to them, so no image is encoded again.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp


def _cached_heads(run_dir: Path):
    """(model, image tower features, text tower features) of a run with a feature cache."""
    import torch

    from sparseclip.model.checkpoint import load_model
    from sparseclip.model.feature_cache import FeatureCache

    cache_path = Path(run_dir) / "features.safetensors"
    if not cache_path.is_file():
        raise SystemExit(f"{run_dir}: no features.safetensors (a run with frozen towers and a feature cache)")
    model, _ = load_model(run_dir)
    model.eval()
    cache = FeatureCache.load(cache_path)
    torch.set_grad_enabled(False)
    return model, cache.image.float(), cache.text.float()


def _heads(head, feats, chunk: int = 2048) -> np.ndarray:
    return np.concatenate([head(feats[s:s + chunk]).numpy() for s in range(0, len(feats), chunk)])


def run_codes(run_dir: Path, n_queries: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(image codes of every cached image, text codes of the first ``n_queries`` captions), CSR float32."""
    model, img, txt = _cached_heads(run_dir)
    if not model.image_head.nonnegative:
        raise SystemExit(f"{run_dir}: not a sparse (non-negative) model")
    items = sp.csr_matrix(_heads(model.image_head, img), dtype=np.float32)
    queries = sp.csr_matrix(_heads(model.text_head, txt[:n_queries]), dtype=np.float32)
    items.eliminate_zeros()
    queries.eliminate_zeros()
    return items, queries


def dense_embeddings(run_dir: Path, n_queries: int) -> tuple[np.ndarray, np.ndarray]:
    """A dense run's unit-norm embeddings of the same cached images (items) and first captions (queries)."""
    model, img, txt = _cached_heads(run_dir)
    xb = _heads(model.image_head, img).astype(np.float32)
    xq = _heads(model.text_head, txt[:n_queries]).astype(np.float32)
    xb /= np.maximum(np.linalg.norm(xb, axis=1, keepdims=True), 1e-12)
    xq /= np.maximum(np.linalg.norm(xq, axis=1, keepdims=True), 1e-12)
    return np.ascontiguousarray(xb), np.ascontiguousarray(xq)


def resample(real: sp.csr_matrix, n: int, seed: int = 0) -> sp.csr_matrix:
    """``n`` codes with the real codes' per-feature activation frequency and per-feature value distribution
    (each feature on independently; its values drawn from its observed ones). Built column by column (CSC),
    returned as CSR."""
    rng = np.random.default_rng(seed)
    col = sp.csc_matrix(real)
    freq = np.diff(col.indptr) / real.shape[0]
    counts = rng.binomial(n, freq)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    indices = np.empty(indptr[-1], np.int32)
    data = np.empty(indptr[-1], np.float32)
    for j in np.flatnonzero(counts):
        rows = np.sort(rng.choice(n, size=counts[j], replace=False)) if counts[j] < n else np.arange(n)
        indices[indptr[j]:indptr[j + 1]] = rows
        observed = col.data[col.indptr[j]:col.indptr[j + 1]]
        data[indptr[j]:indptr[j + 1]] = observed[rng.integers(0, observed.size, counts[j])]
    return sp.csc_matrix((data, indices, indptr), shape=(n, real.shape[1])).tocsr()


def resample_dense(xb: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` unit vectors drawn from a Gaussian with the dense embeddings' mean and covariance: the dense side's
    counterpart of :func:`resample` (the run's own embedding statistics, not random directions)."""
    rng = np.random.default_rng(seed)
    mean = xb.mean(axis=0)
    cov = np.cov(xb, rowvar=False)
    out = rng.multivariate_normal(mean, cov, size=n, method="eigh").astype(np.float32)
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return np.ascontiguousarray(out)
