"""Turning what a user has (numpy arrays, torch tensors, scipy matrices) into CSR float32 codes."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp


class SparseIndexError(ValueError):
    """An index or an input that cannot be used, described in one line."""


def as_csr(codes: Any, n_features: int | None = None, what: str = "codes") -> sp.csr_matrix:
    """``codes`` (1-D or 2-D; numpy, torch or scipy.sparse) as a float32 CSR matrix with no explicit zeros.

    A 1-D input is one row. Raises :class:`SparseIndexError` on a wrong width or non-finite values.
    """
    if hasattr(codes, "detach") and hasattr(codes, "cpu"):  # torch tensor, without importing torch
        codes = codes.detach().cpu().float().numpy()
    if sp.issparse(codes):
        m = sp.csr_matrix(codes, dtype=np.float32)
    else:
        arr = np.asarray(codes, dtype=np.float32)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2:
            raise SparseIndexError(f"{what} must be 1-D or 2-D, got shape {arr.shape}")
        m = sp.csr_matrix(arr)
    if n_features is not None and m.shape[1] != n_features:
        raise SparseIndexError(f"{what} have {m.shape[1]} features, the index has {n_features}")
    if not np.isfinite(m.data).all():
        raise SparseIndexError(f"{what} contain NaN or infinite values")
    m.eliminate_zeros()
    m.sum_duplicates()
    m.sort_indices()
    return m


def check_nonnegative(m: sp.csr_matrix, what: str = "codes") -> None:
    """Item codes must be non-negative (ReLU codes): scores and explanations rely on it."""
    if m.nnz and float(m.data.min()) < 0:
        raise SparseIndexError(f"{what} must be non-negative (Sparse CLIP ReLU codes); found {m.data.min():.3g}")


def row_scales(m: sp.csr_matrix, chunk: int = 65536) -> np.ndarray:
    """1 / (L2 norm) of each row as float32 (0 for all-zero rows); works in row chunks to keep temporaries small."""
    sq = np.zeros(m.shape[0], np.float64)
    for s in range(0, m.shape[0], chunk):
        e = min(m.shape[0], s + chunk)
        vals = m.data[m.indptr[s]:m.indptr[e]].astype(np.float64)
        rows = np.repeat(np.arange(e - s), np.diff(m.indptr[s:e + 1]))
        sq[s:e] = np.bincount(rows, weights=vals * vals, minlength=e - s)
    inv = np.zeros_like(sq)
    np.divide(1.0, np.sqrt(sq), out=inv, where=sq > 0)
    return inv.astype(np.float32)


def scale_columns_of_rows(m: sp.csc_matrix, scale: np.ndarray, chunk: int = 1 << 24) -> None:
    """In place: multiply each stored value of CSC ``m`` by ``scale`` of its row (chunked)."""
    for s in range(0, m.nnz, chunk):
        m.data[s:s + chunk] *= scale[m.indices[s:s + chunk]]


def l2_normalize_rows(m: sp.csr_matrix) -> sp.csr_matrix:
    """Rows scaled to unit L2 norm (all-zero rows stay zero)."""
    out = m.copy()
    out.data *= np.repeat(row_scales(m), np.diff(m.indptr))
    return out
