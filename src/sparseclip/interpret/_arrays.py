"""Array helpers shared by the metrics, in float64 numpy (inputs: :func:`sparseclip.eval.sparsity.as_numpy`)."""

from __future__ import annotations

import numpy as np


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows of ``x`` scaled to unit L2 norm (all-zero rows stay zero)."""
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, eps)


def nanmean(x) -> float:
    """Mean of the non-NaN values (NaN when there are none)."""
    x = np.asarray(x, dtype=np.float64)
    x = x[~np.isnan(x)]
    return float(x.mean()) if x.size else float("nan")


def auroc_matrix(scores: np.ndarray, targets: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """AUROC of every score column at detecting every target column, shape (n_targets, n_scores).

    ``scores`` is (N, F), ``targets`` is (N, C) binary. Ties get half credit (average ranks), so a
    constant score gives 0.5. A target with no positives or no negatives gives NaN.
    """
    from scipy.stats import rankdata

    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    if scores.ndim == 1:
        scores = scores[:, None]
    if targets.ndim == 1:
        targets = targets[:, None]
    if scores.shape[0] != targets.shape[0]:
        raise ValueError(f"scores have {scores.shape[0]} rows but targets have {targets.shape[0]}")
    n_pos = targets.sum(axis=0)  # (C,)
    n_neg = targets.shape[0] - n_pos
    auc = np.empty((targets.shape[1], scores.shape[1]))
    for start in range(0, scores.shape[1], chunk):  # bounded memory for wide codes
        ranks = rankdata(scores[:, start:start + chunk], axis=0)  # average ranks for ties
        rank_sum = targets.T @ ranks  # (C, chunk)
        with np.errstate(invalid="ignore", divide="ignore"):
            auc[:, start:start + chunk] = (rank_sum - (n_pos * (n_pos + 1) / 2)[:, None]) / (
                n_pos * n_neg)[:, None]
    auc[(n_pos == 0) | (n_neg == 0)] = np.nan
    return auc


def paired_auroc(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Column-wise AUROC: column ``f`` of ``scores`` at detecting column ``f`` of binary ``targets``.

    Both are (N, F); returns (F,), NaN where a target column has no positives or no negatives.
    """
    from scipy.stats import rankdata

    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    if scores.shape != targets.shape or scores.ndim != 2:
        raise ValueError(f"scores {scores.shape} and targets {targets.shape} must be equal (N, F) shapes")
    ranks = rankdata(scores, axis=0)
    n_pos = targets.sum(axis=0)
    n_neg = targets.shape[0] - n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = ((targets * ranks).sum(axis=0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    auc[(n_pos == 0) | (n_neg == 0)] = np.nan
    return auc
